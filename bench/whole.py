"""Whole processes, same work: the script microgpt is modelled on (Karpathy's microgpt gist) against
`microgpt.py`, each a fresh interpreter from start to exit.

`python3 bench/whole.py [--steps N]` is the classic script: what the gist does, on reference/classic.py's
GistValue engine and ClassicGPT (the gist's model: n_embd 16, 4 heads, 1 layer, block 16). It reads names.txt,
shuffles the documents with a seeded generator, builds the tokenizer, draws the first weights from the same
generator (Gaussian, std 0.08, matrix by matrix in microgpt's order), trains N steps of one document each
(docs[step % len(docs)]) with classic.Adam at the gist's lr 0.01 decayed linearly to 0 (beta1 0.85, beta2 0.99,
eps 1e-8), printing each step's loss as the gist does, then samples 20 names at temperature 0.5.

`python3 bench/whole.py --driver [--steps N] [--runs K]` times K such processes and K processes of

    microgpt.py --steps N --val-fraction 0 --eval-every N --eval-samples 0 --workers 1

taking turns, under the interpreter it is run with, and prints each one's median seconds and the ratio. The
two train on the same documents in the same order from the same first weights (seed 42, no document held
out). Work microgpt still does that the classic script does not: its checks (options, the data file read
whole, printable and hashed, the memory estimate), the run's header, a metrics row and a step line per step
(with the time left), one evaluation at the last step with no documents and no samples (the mean training
loss), the loss curve, and counting how many of the 20 samples are training names. Its learning rate decays
along a cosine rather than a line: the same arithmetic per step.
"""
import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 300             # about 45 s of the classic script on CPython 3.11 (2 shared cores), 15 s on PyPy 3.9


def classic_main(num_steps, seed=42, samples=20, temperature=0.5):
    """The gist's whole run, on reference/classic.py's engine."""
    sys.path.insert(0, ROOT)
    from reference import classic

    n_embd, n_head, n_layer, block_size = 16, 4, 1, 16
    rng = random.Random(seed)
    with open(os.path.join(ROOT, "names.txt"), encoding="utf-8") as f:
        docs = [line.strip() for line in f.read().strip().split("\n") if line.strip()]
    rng.shuffle(docs)
    print(f"num docs: {len(docs)}")
    uchars = sorted(set("".join(docs)))
    BOS, vocab_size = len(uchars), len(uchars) + 1
    print(f"vocab size: {vocab_size}")

    matrix = lambda nout, nin, std=0.08: [[rng.gauss(0, std) for _ in range(nin)] for _ in range(nout)]
    weights = {"wte": matrix(vocab_size, n_embd), "wpe": matrix(block_size, n_embd),
               "lm_head": matrix(vocab_size, n_embd)}
    for i in range(n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            weights[f"layer{i}.{name}"] = matrix(n_embd, n_embd)
        weights[f"layer{i}.mlp_fc1"] = matrix(4 * n_embd, n_embd)
        weights[f"layer{i}.mlp_fc2"] = matrix(n_embd, 4 * n_embd)
    gpt = classic.ClassicGPT(weights, n_head, classic.GistValue)
    print(f"num params: {len(gpt.params)}")
    optimizer = classic.Adam(gpt.params)

    lr = 0.01
    for step in range(num_steps):
        doc = docs[step % len(docs)]
        tokens = [BOS] + [uchars.index(ch) for ch in doc] + [BOS]
        lr_t = lr * (1 - step / num_steps)                  # the gist's linear decay
        loss = classic.train_step(gpt, optimizer, tokens, lr_t)
        print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}")

    print("--- inference (new, hallucinated names) ---")
    for sample_idx in range(samples):
        keys, values = [[] for _ in range(n_layer)], [[] for _ in range(n_layer)]
        token_id, sample = BOS, []
        for pos_id in range(block_size):
            logits = gpt(token_id, pos_id, keys, values)
            probs = classic.softmax([l / temperature for l in logits])
            token_id = rng.choices(range(vocab_size), weights=[p.data for p in probs])[0]
            if token_id == BOS:
                break
            sample.append(uchars[token_id])
        print(f"sample {sample_idx + 1:2d}: {''.join(sample)}")


def commands(steps):
    """{name: argv} of the two processes the driver times."""
    here = os.path.abspath(__file__)
    return {"classic": [sys.executable, here, "--steps", str(steps)],
            "microgpt": [sys.executable, os.path.join(ROOT, "microgpt.py"), "--steps", str(steps),
                         "--val-fraction", "0", "--eval-every", str(steps), "--eval-samples", "0", "--workers", "1"]}


def child_environment():
    """The environment of the timed processes: this one's, less what a user's shell would not have and that
    changes what is timed: PYTHONDONTWRITEBYTECODE (every module compiled from source at every start: PyPy
    takes about 0.5 s for microgpt.py and the workbench) and PYTHONUNBUFFERED (a write per printed line)."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}


def driver(steps, runs, quiet=False):
    """Time `runs` processes of each, taking turns; print the medians and the ratio. Returns the ratio. One
    short untimed process of each first, so that both start from compiled modules and a warm file cache."""
    cmds, seconds, env = commands(steps), {}, child_environment()
    for argv in commands(1).values():
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env, check=True)
    for i in range(runs):
        for name, argv in (cmds.items() if i % 2 == 0 else reversed(list(cmds.items()))):   # who goes first alternates
            t = time.perf_counter()
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
            seconds.setdefault(name, []).append(time.perf_counter() - t)
            if done.returncode:
                sys.exit(f"{name} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
            if not quiet:
                print(f"  run {i + 1} {name:8} {seconds[name][-1]:8.2f} s", file=sys.stderr, flush=True)
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    med = {name: statistics.median(v) for name, v in seconds.items()}
    spread = lambda v: f"{min(v):.2f}-{max(v):.2f}"
    ratio = med["classic"] / med["microgpt"]
    print(f"{impl:<14} whole process, {steps} steps + 20 samples, median of {runs} each, taking turns: classic "
          f"{med['classic']:.2f} s ({spread(seconds['classic'])}), microgpt {med['microgpt']:.2f} s "
          f"({spread(seconds['microgpt'])}): {ratio:.1f}x", flush=True)
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--driver", action="store_true", help="time the classic script against microgpt.py")
    ap.add_argument("--runs", type=int, default=3, help="processes of each, with --driver (default 3)")
    args = ap.parse_args()
    if args.driver:
        driver(args.steps, args.runs)
    else:
        classic_main(args.steps)


if __name__ == "__main__":
    main()
