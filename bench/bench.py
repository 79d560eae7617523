"""Time microgpt's training step against the classic scalar engines of reference/classic.py.

For each configuration every engine starts from the same parameters and trains on the same documents, one
step each in turn (forward, backward and Adam's update), so a noisy neighbour slows all of them alike.
Before each timed step the cyclic garbage collector clears what the previous step left (untimed): the
classic engines leave their graphs to it (a reference cycle holds each one), and without this whichever
engine happened to trigger a collection would pay for another's garbage. It flatters the classic engines,
whose collection is not timed, and so keeps the ratios honest. Printed per engine: the median ms per step;
the nodes and edges of one step's graph on the first document (every Value the step creates, parameters
excluded; an edge is one child link); the peak memory tracemalloc sees during that step. The ratio column
is engine time / microgpt time (and memory), from this run. Under PyPy, steps run untimed first so that
the JIT has compiled them.

Usage: python3 bench/bench.py [--configs classic,wide] [--rounds N] [--warmup N] [--no-header]
"""
import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time

try:
    import tracemalloc
except ImportError:              # PyPy has no tracemalloc: its rows show no memory figure
    tracemalloc = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import inside  # noqa: E402
import microgpt  # noqa: E402
from reference import classic, graph_size  # noqa: E402

# name: (n_embd, n_head, n_layer, block_size, timed steps per engine, classic engines timed); "classic" is the
# gist's model, and microgpt's default
CONFIGS = {
    "classic": (16, 4, 1, 16, 15, ("gist", "micrograd")),
    "wide": (64, 4, 4, 16, 3, ("gist",)),       # micrograd's engine would take minutes a step here
}


def peak_memory(step):
    """Peak bytes allocated while `step()` runs, as tracemalloc counts them (None without tracemalloc)."""
    if tracemalloc is None:
        return None
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def collector_off(step, *args):
    """step(*args) with the cyclic garbage collector off, as a run trains (workbench.MicrogptEngine.train);
    returns None (no graph is left to count)."""
    gc.disable()
    try:
        step(*args)
    finally:
        gc.enable()


def classic_step(model, optimizer, tokens):
    """classic.train_step, returning the loss Value: its graph is still whole, to be counted."""
    loss = classic.document_loss(model, tokens)
    loss.backward()
    optimizer.step(0.01)
    return loss


def engines_for(name, tokenizer):
    """{engine: (params, train step on tokens, graph size)} for configuration `name`. A step returns the
    loss Value if its graph can be counted after the step (the classic engines), else None."""
    n_embd, n_head, n_layer, block_size, _, baselines = CONFIGS[name]
    gpt = microgpt.GPT(tokenizer.vocab_size, n_embd, n_head, n_layer, block_size, random.Random(1))
    adam = microgpt.Adam(gpt.params)
    step = lambda tokens: collector_off(microgpt.train_step, gpt, adam, [tokens], 0.01, None)
    engines = {"microgpt": (gpt.params, step, lambda tokens: graph_size(inside.mean_loss(gpt, tokens), gpt.params))}
    for engine in baselines:
        model = classic.ClassicGPT.from_microgpt(gpt, classic.ENGINES[engine])
        optimizer = classic.Adam(model.params)
        engines[engine] = (model.params, lambda tokens, m=model, o=optimizer: classic_step(m, o, tokens),
                           lambda loss, m=model: graph_size(loss, m.params))
    return engines


def bench_config(name, docs, tokenizer, rounds=None, warmup=0):
    """Rows {engine: (median ms, nodes, edges, peak bytes)} and the parameter count of one configuration."""
    rounds = rounds or CONFIGS[name][4]
    engines = engines_for(name, tokenizer)
    times, sizes = {engine: [] for engine in engines}, {}
    first = tokenizer.encode(docs[0])                    # graph size and memory: the same document everywhere
    for i in range(warmup + rounds):
        tokens = tokenizer.encode(docs[(i - warmup) % len(docs)])
        for engine, (_, step, size) in engines.items():  # alternate: one step each on the same document
            gc.collect()
            t0 = time.perf_counter()
            loss = step(tokens)
            if i >= warmup:
                times[engine].append(time.perf_counter() - t0)
            if i == warmup:                              # docs[0]: count this step's graph, after the timing
                sizes[engine] = size(loss) if loss is not None else size(first)
            del loss
    rows = {}
    for engine, (params, step, size) in engines.items():
        for p in params:
            p.grad = 0.0
        rows[engine] = (statistics.median(times[engine]) * 1000, *sizes[engine], peak_memory(lambda: step(first)))
    return rows, len(engines["microgpt"][0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="classic,wide")
    ap.add_argument("--rounds", type=int, default=None, help="timed steps per engine (default: per config)")
    ap.add_argument("--warmup", type=int, default=0, help="untimed steps per engine first (for a JIT)")
    ap.add_argument("--no-header", action="store_true", help="print the rows only (for a second Python)")
    args = ap.parse_args()
    docs = microgpt.load_docs(os.path.join(ROOT, "names.txt"))
    random.Random(42).shuffle(docs)
    tokenizer = microgpt.Tokenizer.from_docs(docs)
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    if not args.no_header:
        print(f"each engine one training step per document in turn, the same documents; medians. Nodes, edges "
              f"and peak memory: one step on {docs[0]!r}")
        print(f"{'python':<14} {'config':<8} {'params':>7} | {'engine':<9} {'ms/step':>9} {'nodes':>9} "
              f"{'edges':>10} {'peak MB':>8} | engine / microgpt")
    for name in args.configs.split(","):
        rows, n_params = bench_config(name, docs, tokenizer, args.rounds, args.warmup)
        base_ms, _, _, base_memory = rows["microgpt"]
        for engine, (ms, nodes, edges, memory) in rows.items():
            tail = ""
            if engine != "microgpt":
                tail = f"{ms / base_ms:5.1f}x time"
                if memory is not None:
                    tail += f", {memory / base_memory:.1f}x memory"
            memory = "n/a" if memory is None else f"{memory / 1e6:.2f}"
            print(f"{impl:<14} {name:<8} {n_params:>7,} | {engine:<9} {ms:>9.2f} {nodes:>9,} {edges:>10,} "
                  f"{memory:>8} | {tail}", flush=True)


if __name__ == "__main__":
    main()
