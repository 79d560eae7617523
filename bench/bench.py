"""Time microgpt's training step against the atomic reference (tests/atomic_reference.py).

For each configuration both engines start from the same parameters and train on the same documents,
one step each in turn (so a noisy neighbour slows both alike). Printed per engine: the median ms per
training step (forward, backward and Adam update), graph nodes and edges of one step on the first
document (every Value the step creates, parameters excluded; an edge is one child link), and the peak
memory tracemalloc sees during that step. The ratio column is reference time / microgpt time, from this run.

Usage: python3 bench/bench.py [--configs default,classic,wide] [--rounds N]
"""
import argparse
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
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import microgpt  # noqa: E402
import atomic_reference  # noqa: E402

# name: (n_embd, n_head, n_layer, block_size, timed steps per engine)
CONFIGS = {
    "default": (16, 4, 1, 8, 15),
    "classic": (16, 4, 1, 16, 15),
    "wide": (64, 4, 4, 16, 3),
}


def graph_size(loss, params):
    """(nodes, edges) of the graph behind `loss`, parameters not counted as nodes."""
    params = {id(p) for p in params}
    seen, stack, nodes, edges = set(), [loss], 0, 0
    while stack:
        v = stack.pop()
        if id(v) in seen or id(v) in params:
            continue
        seen.add(id(v))
        nodes += 1
        edges += len(v._children)
        stack.extend(v._children)
    return nodes, edges


def peak_memory(step):
    """Peak bytes allocated while `step()` runs, as tracemalloc counts them (None without tracemalloc)."""
    if tracemalloc is None:
        return None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def bench_config(name, docs, tokenizer, rounds=None):
    n_embd, n_head, n_layer, block_size, default_rounds = CONFIGS[name]
    rounds = rounds or default_rounds
    engines = {}
    for engine, loss_fn in (("microgpt", microgpt.document_loss), ("atomic", atomic_reference.document_loss)):
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd, n_head, n_layer, block_size, random.Random(1))
        engines[engine] = (gpt, microgpt.Adam(gpt.params), loss_fn)

    def step(engine, tokens):
        gpt, adam, loss_fn = engines[engine]
        loss = loss_fn(gpt, tokens)
        loss.backward()
        adam.step(0.01)
        return loss

    times = {engine: [] for engine in engines}
    for i in range(rounds):
        tokens = tokenizer.encode(docs[i])
        for engine in engines:               # alternate: one step each on the same document
            t0 = time.perf_counter()
            step(engine, tokens)
            times[engine].append(time.perf_counter() - t0)
    tokens = tokenizer.encode(docs[0])           # graph size and memory: the same document everywhere
    rows = {}
    for engine, (gpt, _, loss_fn) in engines.items():
        loss = loss_fn(gpt, tokens)
        nodes, edges = graph_size(loss, gpt.params)
        for p in gpt.params:
            p.grad = 0.0
        del loss
        memory = peak_memory(lambda: step(engine, tokens))
        rows[engine] = (statistics.median(times[engine]) * 1000, nodes, edges, memory)
    return rows, len(engines["microgpt"][0].params)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="default,classic,wide")
    ap.add_argument("--rounds", type=int, default=None, help="timed steps per engine (default: per config)")
    ap.add_argument("--no-header", action="store_true", help="print the rows only (for a second Python)")
    args = ap.parse_args()
    docs = microgpt.load_docs(os.path.join(ROOT, "names.txt"))
    random.Random(42).shuffle(docs)
    tokenizer = microgpt.Tokenizer.from_docs(docs)
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    if not args.no_header:
        print(f"timed: {', '.join(args.configs.split(','))}, each engine the same documents in turn; nodes, edges "
              f"and peak memory: one step on {docs[0]!r}")
        print(f"{'python':<14} {'config':<8} {'params':>7} | {'engine':<8} {'ms/step':>9} {'nodes':>9} "
              f"{'edges':>10} {'peak MB':>8} | atomic / microgpt")
    for name in args.configs.split(","):
        rows, n_params = bench_config(name, docs, tokenizer, args.rounds)
        ratio = rows["atomic"][0] / rows["microgpt"][0]
        for engine, (ms, nodes, edges, memory) in rows.items():
            tail = ""
            if engine == "atomic":
                tail = f"{ratio:5.1f}x time"
                if memory is not None:
                    tail += f", {memory / rows['microgpt'][3]:.1f}x memory"
            memory = "n/a" if memory is None else f"{memory / 1e6:.2f}"
            print(f"{impl:<14} {name:<8} {n_params:>7,} | {engine:<8} {ms:>9.2f} {nodes:>9,} {edges:>10,} "
                  f"{memory:>8} | {tail}", flush=True)


if __name__ == "__main__":
    main()
