#!/usr/bin/env python3
"""traps.py: the silent failures of a training loop, each one run beside the correct loop and measured.

The training loop below is microgpt.train and microgpt.train_step written out in one place, on microgpt's
own parts (GPT, cross_entropy, Adam, lr_schedule, sample). Each trap is a change of one or two lines in
it, marked in the code: the correct line carries `# ok NAME`, the trapped one `# TRAP NAME`, and the
trapped line runs only when that trap is on. Nothing else changes: the correct and the trapped run start
from the same seed, the same weights and the same documents.

  python3 traps.py              # the traps, one line each
  python3 traps.py NAME         # one trap beside the correct run, its symptom and its lesson
  python3 traps.py --all        # every trap, then a summary table

Standard library only, like microgpt.py.
"""
import inspect
import math
import operator
import os
import random
import sys

import microgpt
from microgpt import Adam, Tape, cross_entropy, grad_norm, lr_schedule, total
from workbench import ArgumentParser, DataError, entry, read_docs, shown
from workbench.engine import update_ratio


# ---- the training loop, with every trap in it

def train(gpt, tokenizer, docs, num_steps, lr, batch_size, trap=None, resume_at=None):
    """Train gpt on docs as microgpt.train does (its losses exactly, when trap is None) and return the
    history: per step (loss in nats per token, gradient norm, learning rate, update-to-weight ratio). A
    run whose loss stops being finite ends there. resume_at: the step where the run is saved and resumed."""
    history, optimizer = [], Adam(gpt.params)
    for step in range(num_steps):
        if step == resume_at:                           # saved and resumed: what does the checkpoint bring back?
            m, v, t = optimizer.m, optimizer.v, optimizer.t
            optimizer = Adam(gpt.params)
            optimizer.m, optimizer.v, optimizer.t = m, v, t                     # ok fresh-adam
            if trap == "fresh-adam":
                optimizer = Adam(gpt.params)                                      # TRAP fresh-adam
        batch = [tokenizer.encode(docs[(step * batch_size + j) % len(docs)]) for j in range(batch_size)]
        loss, lr_t = forward_backward(gpt, batch, step, num_steps, lr, trap)
        if trap == "zero-grad-early":
            for p in gpt.params:                                                  # TRAP zero-grad-early
                p.grad = 0.0                                                      # TRAP zero-grad-early
        norm = grad_norm(gpt.params)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            break
        if trap == "never-reset":
            grads = [p.grad for p in gpt.params]                                  # TRAP never-reset
        before = [p.data for p in gpt.params]           # (watched: the update-to-weight ratio)
        optimizer.step(lr_t)                            # Adam; then every .grad back to 0
        if trap == "never-reset":
            for p, g in zip(gpt.params, grads):                                   # TRAP never-reset
                p.grad = g                                                        # TRAP never-reset
        history.append((loss, norm, lr_t, update_ratio(before, [p.data for p in gpt.params])))
    return history


def forward_backward(gpt, batch, step, num_steps, lr, trap):
    """microgpt.train_step up to the update: each document's graph built on microgpt's forward pass
    (document_logits), its summed loss over the batch's token count back-propagated, and the documents'
    gradients added in the batch's order into .grad (microgpt.batch_gradient). Returns (the batch's mean
    loss in nats per token, the step's learning rate)."""
    n_tokens = sum(microgpt.n_predicted(tokens, gpt.block_size) for tokens in batch)
    lr_t = lr_schedule(step, num_steps, lr, 0, 0.0)                               # ok schedule-per-document
    loss, summed = 0.0, None
    for j, tokens in enumerate(batch):
        if trap == "schedule-per-document":
            lr_t = lr_schedule(step * len(batch) + j, num_steps, lr, 0, 0.0)      # TRAP schedule-per-document
        n = microgpt.n_predicted(tokens, gpt.block_size)
        with Tape() as tape:
            logits = microgpt.document_logits(gpt, tokens[:n])                    # the inputs: tokens[:-1]
            targets = tokens[1:n + 1]                                             # ok unshifted-labels
            if trap == "unshifted-labels":
                targets = tokens[:n]                                              # TRAP unshifted-labels
            losses = [cross_entropy(z, target) for z, target in zip(logits, targets)]
            doc_loss = total(losses) / n_tokens                                   # ok sum-not-mean
            loss += doc_loss.data                       # (reported as the mean, whatever the trap)
            if trap == "sum-not-mean":
                doc_loss = total(losses)                                          # TRAP sum-not-mean
        tape.backward(doc_loss)
        grads = [p.grad for p in gpt.params]            # this document's gradient (with what .grad held)
        for p in gpt.params:
            p.grad = 0.0
        summed = grads if summed is None else list(map(operator.add, summed, grads))
    for p, g in zip(gpt.params, summed):
        p.grad = g
    return loss, lr_t


# ---- the traps: what each changes, how it is run, and what it shows

def mean(xs):
    return sum(xs) / len(xs)


def check_unshifted(c, t, v):
    train_c, train_t = mean([h[0] for h in c["history"][-20:]]), mean([h[0] for h in t["history"][-20:]])
    holds = train_t < train_c - 1.0 and t["val"] > math.log(v)
    empty = sum(not text for text in t["samples"])
    return holds, (f"the training loss fell to {train_t:.2f} (correct run {train_c:.2f}): copying the token it "
                   f"reads is easy. Scored on the next token, the validation loss is {t['val']:.2f} against "
                   f"{c['val']:.2f}, worse than the untrained model's ln {v} = {math.log(v):.2f}. {empty} of "
                   f"{len(t['samples'])} samples are empty: reading BOS, it predicts BOS, the end")


def check_zero_early(c, t, v):
    unmoved = t["weights_after"] == t["weights_before"]
    first, last = mean([h[0] for h in t["history"][:20]]), mean([h[0] for h in t["history"][-20:]])
    holds = unmoved and t["val"] > c["val"] + 0.5
    norms = {h[1] for h in t["history"]}
    return holds, (f"not one weight moved ({'all' if unmoved else 'not all'} {len(t['weights_after']):,} are as they "
                   f"started): the gradient norm at every update was {max(norms):g}, so Adam's m and v stayed 0 and "
                   f"every update was 0. The loss stays near its start ({first:.2f}, then {last:.2f}); validation "
                   f"{t['val']:.2f} against {c['val']:.2f}")


def check_never_reset(c, t, v):
    running = [mean([h[0] for h in t["history"][max(0, i - 19):i + 1]]) for i in range(len(t["history"]))]
    peak = max(range(len(running)), key=running.__getitem__)
    holds = running[peak] > running[0] + 1.0 and t["val"] > c["val"] + 1.0
    return holds, (f"the loss rose instead of falling, to {running[peak]:.2f} (mean of 20 steps) at step {peak + 1}: "
                   f"each update followed the sum of every gradient so far. Validation {t['val']:.2f} against "
                   f"{c['val']:.2f}")


def check_schedule(c, t, v):
    lr_c, lr_t = c["history"][-1][2], t["history"][-1][2]
    holds = lr_t > 0.5 * LR and lr_c < 0.01 * LR
    return holds, (f"the learning rate of the last step is {lr_t:.5f} instead of {lr_c:.5f}: counting documents, "
                   f"the cosine ran {BATCH} times as fast and came back up to the peak, so the run ends with full-"
                   f"size steps instead of settling. Validation {t['val']:.3f} against {c['val']:.3f} "
                   f"({t['val'] - c['val']:+.3f}): a real but modest cost here")


def check_fresh_adam(c, t, v):
    at = RESUME_STEPS // 2
    before = mean([h[3] for h in c["history"][at - 5:at]])
    jump_c, jump_t = c["history"][at][3], t["history"][at][3]
    after_c = mean([h[0] for h in c["history"][at:at + 20]])
    after_t = mean([h[0] for h in t["history"][at:at + 20]])
    holds = jump_t > 2 * jump_c
    return holds, (f"at the resume (step {at + 1}) the update-to-weight ratio jumped from {before:.4f} to "
                   f"{jump_t:.4f} ({jump_t / jump_c:.1f} times the correct run's {jump_c:.4f}): with m and v "
                   f"at 0, Adam's bias correction makes its first steps about lr for every weight. The loss "
                   f"barely shows it at this scale: {after_t:.3f} against {after_c:.3f} over the 20 steps after, "
                   f"validation {t['val']:.3f} against {c['val']:.3f}. A weak symptom here")


def first_crossing(xs, factor, window=10):
    """The first step (1-based) where the mean of `window` steps reaches factor x the first window's mean."""
    base = mean(xs[:window])
    for i in range(window, len(xs) + 1):
        if mean(xs[i - window:i]) >= factor * base:
            return i
    return None


def check_high_lr(c, t, v):
    ratio_c, ratio_t = c["history"][0][3], t["history"][0][3]
    loss_at = first_crossing([h[0] for h in t["history"]], 1.2)
    norm_at = first_crossing([h[1] for h in t["history"]], 2.0)
    says = lambda at: f"step {at}" if at else "never"
    order = ("the gradient norm first" if norm_at and (not loss_at or norm_at < loss_at) else
             "both at once" if norm_at == loss_at else "the loss first")
    holds = ratio_t > 5 * ratio_c and t["val"] > c["val"] + 0.5
    return holds, (f"from step 1 each update is {ratio_t:.2f} of the weights' size, {ratio_t / ratio_c:.0f} times the "
                   f"correct run's {ratio_c:.3f}. The loss (10-step mean) reached 1.2 times its start at "
                   f"{says(loss_at)}, the gradient norm 2 times its start at {says(norm_at)}: {order}. Validation "
                   f"{t['val']:.2f} against {c['val']:.2f}")


def check_sum(c, t, v):
    diff = t["val"] - c["val"]
    holds = abs(diff) < 0.05
    return holds, (f"no visible effect: validation {t['val']:.4f} against {c['val']:.4f} ({diff:+.4f}). The summed "
                   f"loss and its gradient are ~{BATCH * 7} times the mean's, but Adam divides each gradient by its "
                   f"own running size, so a constant factor cancels (only eps, 1e-8, notices)")


D = microgpt.DEFAULTS
LR, HIGH_LR, STEPS, BATCH, RESUME_STEPS = D["lr"], 0.2, 200, 4, 300
TRAPS = {   # name: what goes wrong, how long each run is, the check of its symptom, and the lesson
    "unshifted-labels": dict(
        what="labels not shifted: each position is scored on the token it reads, not the next one",
        steps=STEPS, batch=1, check=check_unshifted,
        why="the targets must be the inputs shifted by one (tokens[1:] for tokens[:-1]); unshifted, the task is "
            "to copy the input, which the model learns at once, and it never learns what comes next",
        tells="a training loss far lower than it could honestly be (near 0 for names) beside a validation loss "
              "that does not fall; samples that make no sense",
        concept="next-token prediction: inputs and labels are the same sequence, offset by one"),
    "zero-grad-early": dict(
        what="gradients reset between backward() and the update: the optimizer sees zeros",
        steps=STEPS, batch=1, check=check_zero_early,
        correct="(no reset here: the gradients stay in .grad until Adam.step has used them)",
        why="backward() leaves the gradients in .grad for the optimizer to read; reset before the step, they are "
            "gone when Adam looks. The reset belongs after the update (microgpt: the end of Adam.step)",
        tells="a loss that does not move from its first value, a gradient norm of 0 at the update, weights that "
              "never change; no warning, as every operation is legal",
        concept="forward, loss, backward, optimizer step, then reset: the order of the five operations"),
    "never-reset": dict(
        what="gradients never reset: each step's gradient adds to every earlier one",
        steps=STEPS, batch=1, check=check_never_reset,
        correct="(no lines here: Adam.step sets every .grad back to 0 after the update)",
        why="backward() adds into .grad; without a reset the gradient of step n is the sum of all n gradients so "
            "far, and the updates keep pushing the way the first documents pointed",
        tells="a gradient norm that grows step after step while the loss climbs; samples that collapse",
        concept="gradients accumulate on purpose within a batch and must be reset between updates"),
    "schedule-per-document": dict(
        what="the learning-rate schedule advanced per document of a batch instead of per optimizer step",
        steps=STEPS // 2, batch=BATCH, check=check_schedule,
        why="the schedule counts optimizer steps; counted per document of a batch of 4 it runs 4 times too fast, "
            "and the cosine, past its end, comes back up",
        tells="the logged learning rate: it reaches its minimum a quarter of the way in, then rises again",
        concept="gradient accumulation and the scheduler: step per optimizer step, not per micro-batch"),
    "fresh-adam": dict(
        what="resumed with the weights but a fresh Adam: its moments and step count start again",
        steps=RESUME_STEPS, batch=1, check=check_fresh_adam,
        why="Adam's update depends on m, v and t; a checkpoint without them resumes another optimizer, whose first "
            "steps (m and v at 0, bias-corrected) are full-size steps in every weight",
        tells="the update-to-weight ratio jumps at the resume; the run is no longer the one that never stopped "
              "(microgpt's resume test compares the two bit for bit)",
        concept="the state a checkpoint must keep: weights, optimizer state, step, random state"),
    "high-lr": dict(
        what=f"a learning rate far too high: {HIGH_LR} instead of {LR}",
        steps=STEPS, batch=1, check=check_high_lr,
        why="each Adam step moves every weight by about the learning rate; at 20 times the right one the weights "
            "overshoot from the first step, and the loss climbs until the cosine brings the rate down",
        tells="the update-to-weight ratio, wrong from step 1; then the loss and the gradient norm, which here rise "
              "within the same few steps. The common warning, 'the gradient norm spikes before the loss explodes', "
              "is a larger model's, or a slower drift's: with Adam at this scale the norm does not lead",
        concept="loss, learning rate, gradient norm and update size on one timeline"),
    "sum-not-mean": dict(
        what="the loss summed over the batch's tokens instead of averaged",
        steps=STEPS // 2, batch=BATCH, check=check_sum,
        why="the sum is the mean times the token count, so the gradient is ~28 times larger here; plain "
            "gradient descent would take steps 28 times too big, but Adam's update ignores a constant scale",
        tells="nothing, with Adam: that is the lesson. With SGD, or a gradient clip (a fixed level against the "
              "raw norm), the factor would matter",
        concept="the mean, not the sum, so the step does not depend on batch size or length"),
}


# ---- running a trap beside the correct loop

def setup(data, seed):
    """microgpt's start: the documents shuffled by the seed, split, and the tokenizer. Raises DataError if
    the file cannot be read or holds too few documents."""
    docs, _ = read_docs(data)
    if len(docs) < 5:                                   # a tenth held out, rounded: at least one to validate
        raise DataError(f"{data} has {len(docs)} document(s); the traps hold out a tenth of them for validation "
                        f"and need at least 5")
    rng = random.Random(seed)
    rng.shuffle(docs)
    train_docs, val_docs = microgpt.split_docs(docs, D["val_fraction"])
    return rng.getstate(), train_docs, val_docs, microgpt.Tokenizer.from_docs(docs)


def run_one(name, trap, start, seed):
    """One run for trap `name`, trapped or (trap None) correct: its history, validation loss on 100 held-out
    names, four samples, and the weights before and after."""
    rng_state, train_docs, val_docs, tokenizer = start
    rng = random.Random()
    rng.setstate(rng_state)                             # as microgpt: the model's weights come next from it
    gpt = microgpt.GPT(tokenizer.vocab_size, D["n_embd"], D["n_head"], D["n_layer"], D["block_size"], rng)
    steps, batch = TRAPS[name]["steps"], TRAPS[name]["batch"]
    lr = LR                                                                       # ok high-lr
    if trap == "high-lr":
        lr = HIGH_LR                                                              # TRAP high-lr
    weights_before = [p.data for p in gpt.params]
    history = train(gpt, tokenizer, train_docs, steps, lr, batch, trap,
                    resume_at=steps // 2 if name == "fresh-adam" else None)
    val = microgpt.evaluate(gpt, tokenizer, val_docs[:100])[0]
    sampler = random.Random(seed)                       # both runs draw from the same random numbers
    samples = [microgpt.sample(gpt, tokenizer, sampler, D["temperature"], None, "") for _ in range(4)]
    return {"history": history, "val": val, "samples": samples, "weights_before": weights_before,
            "weights_after": [p.data for p in gpt.params]}


def run_trap(name, start, seed, correct_runs=None):
    """(correct run, trapped run) of trap `name`; correct_runs caches the correct run by its length."""
    correct_runs = {} if correct_runs is None else correct_runs
    key = (TRAPS[name]["steps"], TRAPS[name]["batch"], name == "fresh-adam")
    if key not in correct_runs:
        correct_runs[key] = run_one(name, None, start, seed)
    return correct_runs[key], run_one(name, name, start, seed)


def changed_lines(name):
    """(correct lines, trapped lines) of this file for trap `name`, from the `# ok` and `# TRAP` marks."""
    source = inspect.getsource(sys.modules[__name__]).splitlines()

    def pick(tag):                                      # the marked lines, indented as they are in the loop
        lines = [line.split("#")[0].rstrip() for line in source if line.rstrip().endswith(f"# {tag} {name}")]
        margin = min((len(line) - len(line.lstrip()) for line in lines), default=0)
        return [line[margin:] for line in lines]

    return pick("ok") or [TRAPS[name]["correct"]], pick("TRAP")


def report(name, correct, trapped, vocab_size, log):
    """Print the trap beside the correct run: the change, the losses, validation, samples and the lesson."""
    t = TRAPS[name]
    log(f"trap {name}: {t['what']}")
    ok, bad = changed_lines(name)
    log("the change, in traps.py (the correct run above, the trapped one below):")
    for line in ok:
        log(f"    correct   {line}")
    for line in bad:
        log(f"    trapped   {line}")
    steps = len(correct["history"])
    log(f"both runs: the same seed, first weights and documents; {steps} steps of "
        f"{t['batch']} {'document' if t['batch'] == 1 else 'documents'}")
    log("   step    loss (mean of 20 steps)    gradient norm       learning rate       update / weight")
    log("          correct    trapped       correct   trapped    correct   trapped     correct   trapped")
    for at in sorted({20, steps // 4, steps // 2, steps // 2 + 20, 3 * steps // 4, steps}):
        row = []
        for run in (correct, trapped):
            h = run["history"][max(0, at - 20):at] or [(math.nan,) * 4]
            row.append((mean([x[0] for x in h]), h[-1][1], h[-1][2], h[-1][3]))
        (lc, nc, rc, uc), (lt, nt, rt, ut) = row
        log(f"  {at:5d}  {lc:8.4f}   {lt:8.4f}     {nc:8.2f}  {nt:8.2f}    {rc:.5f}   {rt:.5f}     "
            f"{uc:.4f}    {ut:.4f}")
    log(f"  validation loss, 100 held-out names: {correct['val']:.4f} correct, {trapped['val']:.4f} trapped")
    log("  samples:    correct          trapped")
    for a, b in zip(correct["samples"], trapped["samples"]):
        log(f"              {a or '(empty)':<16} {b or '(empty)'}")
    holds, symptom = t["check"](correct, trapped, vocab_size)
    log(f"symptom: {symptom}{'' if holds else ' (NOT as expected: see above)'}")
    log(f"why: {t['why']}")
    log(f"what would tell you: {t['tells']}")
    log(f"the concept: {t['concept']}")
    return holds


def main(argv=None):
    """The command line -> the exit status: 0, 2 (bad input), 74 (the output could not be written), 128 + a
    signal's number (130 Ctrl-C, 143 SIGTERM), 141 (the output's reader went away); one line on stderr says
    why (workbench.entry)."""
    p = ArgumentParser(description="The silent failures of a training loop, each run beside the correct one. "
                                   "With no name: the list.")
    p.add_argument("name", nargs="?", help="the trap to run")
    p.add_argument("--all", action="store_true", help="run every trap, then a summary table")
    p.add_argument("--seed", type=int, default=D["seed"], help=f"random seed, as in microgpt.py (default {D['seed']})")
    p.add_argument("--data", metavar="PATH", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                 D["data"]),
                   help=f"documents, one per line, as in microgpt.py (default: {D['data']} beside this script)")

    def body():
        args = p.parse_args(argv)
        if args.name and args.name not in TRAPS:
            raise DataError(f"no trap {shown(repr(args.name))}; the traps are: {', '.join(TRAPS)}")
        if args.name and args.all:
            raise DataError("give a trap's NAME or --all, not both")
        if not args.name and not args.all:
            for name, t in TRAPS.items():
                print(f"{name:<22} {t['what']}")
            print("run one: python3 traps.py NAME; all of them: python3 traps.py --all")
            return 0
        return run(args.name, args.all, setup(args.data, args.seed), args.seed)

    return entry("traps", body)


def run(name, all_traps, start, seed):
    """Run trap `name` (or all of them) and print its report (and the summary). Returns 0."""
    vocab_size, correct_runs, summary = start[3].vocab_size, {}, []
    for name in (TRAPS if all_traps else [name]):
        correct, trapped = run_trap(name, start, seed, correct_runs)
        holds = report(name, correct, trapped, vocab_size, print)
        summary.append((name, correct["val"], trapped["val"], holds))
        print()
    if all_traps:
        print("summary: validation loss on 100 held-out names (nats), correct and trapped, and whether the "
              "symptom showed as stated")
        print(f"  {'trap':<22} {'correct':>8} {'trapped':>8}   symptom as stated")
        for name, val_c, val_t, holds in summary:
            print(f"  {name:<22} {val_c:8.4f} {val_t:8.4f}   {'yes' if holds else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
