"""Time --workers: training tokens per second at batch 8 and the evaluation of 1,000 documents, with 1 and 2
processes, side by side in one run; the per-step cost of sending the weights and the gradients between
processes, measured; and from them a projection for 8 and 16 cores.

The default model (n_embd 16, 4 heads, 1 layer, block 16) on names.txt, through workbench.Workers exactly as
a run uses it. The counts take turns, a few steps or one evaluation each, so that a noisy neighbour slows
both alike; figures are medians. The two engines start from the same weights and so train identically.

The projection: a step with N processes takes the compute of its largest share, ceil(B / N) documents at
the measured cost of one, plus what the first process does alone: sending the weights to N - 1 workers one
after another and taking their gradients back (measured below per worker), then adding the B gradients.
An evaluation: ceil(D / N) documents plus the same sending, once. It assumes N idle cores and no memory
bandwidth limit, so it is an upper bound.

Usage: python3 bench/scaling.py [--rounds N] [--no-header]
"""
import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import microgpt  # noqa: E402
import workbench  # noqa: E402

BATCH, EVAL_DOCS = 8, 1000
WARMUP = int(os.environ.get("WARMUP", 25))


def make_run(docs, n):
    """What workbench.Workers needs of a run, with its own engine, and its Workers (None for 1)."""
    tokenizer = microgpt.Tokenizer.from_docs(docs)
    settings = dict(microgpt.DEFAULTS, batch_size=BATCH, workers=n)
    r = SimpleNamespace(Engine=workbench.MicrogptEngine, settings=settings, tokenizer=tokenizer,
                        engine=workbench.MicrogptEngine(settings, tokenizer, random.Random(1)))
    r.workers = workbench.Workers(n, r) if n > 1 else None
    if r.workers:
        r.workers.start()
    return r


def train_steps(r, docs, start, steps):
    """Seconds for `steps` optimizer steps at batch 8 from step `start`, and the tokens they trained on."""
    gradients = {"gradients": lambda batch, n: r.workers.spread("gradients", batch, n)} if r.workers else {}
    tokens = []
    t = time.perf_counter()
    r.engine.train(docs, start, lambda step, loss, lr, norm, batch: tokens.extend(batch) and False,
                   dict(r.settings, steps=start + steps, lr=0.01, warmup_steps=0, min_lr=0.0, grad_clip=None),
                   **gradients)
    seconds = time.perf_counter() - t
    return seconds, sum(microgpt.n_predicted(tok, r.settings["block_size"]) for tok in tokens)


def evaluate(r, docs):
    t = time.perf_counter()
    nlls = {"nlls": r.workers.spread("nlls", [r.tokenizer.encode(d) for d in docs])} if r.workers else {}
    loss = r.engine.evaluate(docs, **nlls)[0]
    return time.perf_counter() - t, loss


def transfer_cost(r, rounds=20):
    """Seconds the first process spends per worker and step on sending: the weights there and a share of
    gradients back (BATCH / 2 documents), measured as a worker round trip with no documents plus the
    gradients' pickling both ways."""
    worker = r.workers.processes[0]
    weights = workbench.packed(workbench.flat(r.engine.weights()))
    trips = []
    for _ in range(rounds):
        t = time.perf_counter()
        r.workers.send(worker, ("nlls", [], None), [weights])
        r.workers.answer(worker)
        trips.append(time.perf_counter() - t)
    grads = [workbench.packed([0.001 * i for i in range(r.engine.n_params)]) for _ in range(BATCH // 2)]
    pickling = []
    for _ in range(rounds):
        t = time.perf_counter()
        for blob in grads:
            workbench.unpacked(blob)
        pickling.append(time.perf_counter() - t)
    return statistics.median(trips) + statistics.median(pickling)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="turns per process count (default 7)")
    ap.add_argument("--steps", type=int, default=4, help="training steps per turn (default 4)")
    ap.add_argument("--no-header", action="store_true", help="print the rows only (for a second Python)")
    args = ap.parse_args()
    docs = microgpt.load_docs(os.path.join(ROOT, "names.txt"))
    random.Random(42).shuffle(docs)
    train_docs, eval_docs = docs[EVAL_DOCS:], docs[:EVAL_DOCS]
    runs = {n: make_run(docs, n) for n in (1, 2)}
    python = f"{platform.python_implementation()} {platform.python_version()}"
    try:
        warmup = WARMUP if platform.python_implementation() == "PyPy" else 1
        for n, r in runs.items():                          # (workers started, and under PyPy the JIT warm)
            train_steps(r, train_docs, 0, warmup)
            evaluate(r, eval_docs[:200])
        rate, secs, step = {1: [], 2: []}, {1: [], 2: []}, warmup
        for _ in range(args.rounds):
            for n, r in runs.items():
                seconds, tokens = train_steps(r, train_docs, step, args.steps)
                rate[n].append(tokens / seconds)
            step += args.steps
            for n, r in runs.items():
                secs[n].append(evaluate(r, eval_docs)[0])
        cost = transfer_cost(runs[2])
    finally:
        for r in runs.values():
            if r.workers:
                r.workers.close()
    train_rate = {n: statistics.median(v) for n, v in rate.items()}
    eval_secs = {n: statistics.median(v) for n, v in secs.items()}
    if not args.no_header:
        print(f"--workers: batch {BATCH} training and the evaluation of {EVAL_DOCS:,} documents, medians of "
              f"{args.rounds} turns each; 2 processes against 1, side by side")
        print(f"{'python':15}{'work':34}{'1 process':>12}{'2 processes':>14}{'speed-up':>10}")
    print(f"{python:15}{'training, tokens/s (batch 8)':34}{train_rate[1]:12,.0f}{train_rate[2]:14,.0f}"
          f"{train_rate[2] / train_rate[1]:9.2f}x")
    print(f"{python:15}{'evaluation of 1,000 documents, s':34}{eval_secs[1]:12.2f}{eval_secs[2]:14.2f}"
          f"{eval_secs[1] / eval_secs[2]:9.2f}x")
    step_seconds = BATCH * statistics.median(rate[1]) ** -1 * tokens_per_doc(train_docs)
    per_doc = step_seconds / BATCH
    print(f"{'':15}sending weights and a share of gradients: {cost * 1e3:.2f} ms per worker and step "
          f"(a step of batch {BATCH} computes for {step_seconds * 1e3:.0f} ms in 1 process)")
    for cores, batch in ((8, 8), (16, 16)):
        one = batch * per_doc
        many = math.ceil(batch / cores) * per_doc + (cores - 1) * cost
        eval_one = eval_secs[1]
        eval_many = eval_one * math.ceil(EVAL_DOCS / cores) / EVAL_DOCS + (cores - 1) * cost
        print(f"{'':15}projected for {cores} cores: training at batch {batch} {one / many:.1f}x, evaluation "
              f"{eval_one / eval_many:.1f}x (an upper bound: idle cores, no memory limit)")


def tokens_per_doc(docs):
    """The mean number of predicted tokens of a training document at the default block_size."""
    return statistics.mean(min(microgpt.DEFAULTS["block_size"], len(d) + 1) for d in docs[:5000])


if __name__ == "__main__":
    main()
