"""Watching a run: one part per job, put together in Watch.on_step, train()'s callback (the status line,
the clock, the CSV log, signals, evaluations, the overfitting judge, the loss curve); and printing what
looking inside a model found (the numbers: inside.py)."""
import csv
import json
import math
import os
import random
import shutil
import signal
import sys
import time

import microgpt
from .common import OutputError, counted, flat, format_seconds, scored, shown
from .engine import perplexity, update_ratio
from .files import EVAL_FIELDS, LOG_COLUMNS, NOFOLLOW, TRAIN_FIELDS, best_path
from .workers import WorkerError


class Console:
    """Permanent lines go through `log`; on a terminal, a status line rewrites itself in between."""

    def __init__(self, log):
        self.log = log
        self.tty = log is print and bool(getattr(sys.stdout, "isatty", lambda: False)())   # (None: closed)
        self.status_shown = False

    def line(self, text):
        if self.status_shown:
            sys.stdout.write("\r\x1b[K")
            self.status_shown = False
        self.log(text)

    def status(self, fields):
        """On a terminal, the status line: `fields`, (text, rank) pairs (or one text), fitted() to the terminal's
        width."""
        if isinstance(fields, str):
            fields = [(fields, 0)]
        if self.tty:
            sys.stdout.write("\r\x1b[K" + fitted(fields, shutil.get_terminal_size().columns))
            sys.stdout.flush()
            self.status_shown = True


def fitted(fields, width):
    """The texts of `fields`, (text, rank) pairs, in their order, joined by ' | ' (by a space before a text
    in brackets, a note on the one before), in at most width - 1 characters: a line that reaches the last
    column wraps on some terminals, and every redraw would leave a row behind. The fields of the highest
    rank (the least useful) are dropped first; if what is left is still too long, it is cut."""
    def joined(fields):
        return "".join((" " if text.startswith("(") else " | ") * (i > 0) + text for i, (text, _) in enumerate(fields))
    fields, room = list(fields), max(width - 1, 1)
    while len(fields) > 1 and len(joined(fields)) > room:
        fields.remove(max(fields, key=lambda field: field[1]))
    return joined(fields)[:room]


class Clock:
    """Seconds of a run: training (evaluation left out) and evaluation, this session and, for a resumed
    run, the sessions before it (from its metrics)."""

    def __init__(self, metrics):
        self.before = metrics["train"][-1]["elapsed_s"] if metrics["train"] else 0.0
        self.eval_before = sum(row["seconds"] for row in metrics["eval"])
        self.start = time.perf_counter()
        self.eval_seconds, self.evaluations = 0.0, 0

    def training(self):
        """Seconds spent training in this session."""
        return time.perf_counter() - self.start - self.eval_seconds

    def summary(self, steps):
        seconds = self.before + self.training()
        return (f"trained {counted(steps, 'step')} in {format_seconds(seconds)} ({1000 * seconds / steps:.1f} ms/step; "
                f"evaluation took {format_seconds(self.eval_before + self.eval_seconds)})")


class CsvLog:
    """The run's metrics as CSV: a row per baseline (its kind the baseline's name, its val_loss the loss),
    then one row per training step and per evaluation, in the order they happened (a resumed run writes
    its history first); line-buffered, so every row is on disk once written. A link planted at the log's
    name is not followed. A failed write raises OutputError."""
    COLUMNS = LOG_COLUMNS

    def __init__(self, path, grad_clip, metrics, baselines=None):
        self.path, self.grad_clip = path, grad_clip
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o666)
            self.file = open(fd, "w", newline="", encoding="utf-8", buffering=1)
        except OSError as e:
            raise OutputError(f"cannot write the log {shown(path)}: {e.strerror}", path)
        self.writer = csv.writer(self.file)
        self.write(self.COLUMNS)
        for name, loss in (baselines or {}).items():        # a row per baseline: kind is its name, val_loss its loss
            self.write([name] + [""] * 10 + [loss, perplexity(loss)])
        evals = {row["step"]: row for row in metrics["eval"]}
        for row in metrics["train"]:
            self.train(row)
            if row["step"] in evals:
                self.eval(evals[row["step"]])

    def write(self, row):
        try:
            self.writer.writerow(row)
        except OSError as e:
            raise OutputError(f"cannot write the log {shown(self.path)}: {e.strerror}", self.path)

    def train(self, row):
        blank = lambda x: "" if x is None else x
        self.write(["train"] + [blank(row[f]) for f in TRAIN_FIELDS] + [blank(self.grad_clip), "", "", ""])

    def eval(self, row):
        if row["val_loss"] is not None:
            self.write(["eval", row["step"]] + [""] * 8 +
                       [row["train_loss"], row["val_loss"], perplexity(row["val_loss"])])

    def close(self):
        """Close the file; returns the OutputError of a failed last write, or None."""
        try:
            self.file.close()
        except OSError as e:
            return OutputError(f"cannot write the log {shown(self.path)}: {e.strerror}", self.path)
        return None


def stop_signals():
    """The signals that stop a run as Ctrl-C does: SIGINT, and SIGTERM and SIGHUP where the system has them
    (what `timeout`, `docker stop`, a scheduler and a closed terminal send)."""
    return [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]


class Stop:
    """`with Stop() as stop:` Ctrl-C, SIGTERM or SIGHUP asks the run to stop after the step it is in:
    stop.requested turns true and stop.signum says which. The handlers before are put back at the end."""

    def __enter__(self):
        self.requested, self.signum = False, signal.SIGINT
        self.previous = {signum: signal.signal(signum, self.request) for signum in stop_signals()}
        return self

    def request(self, signum, frame):
        self.requested, self.signum = True, signum

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():       # once stopped, the run is ending: no second stop
            signal.signal(signum, signal.SIG_IGN if self.requested else handler)


class Watch:
    """train()'s on_step for a run (and its Workers, or None): records each step's metrics row, shows where
    the run is, and at their steps evaluates (with samples), judges the evaluation and saves; its answer is
    whether a stop was asked for. On a terminal one status line rewrites itself each step and only
    evaluations (and --print-every's steps, if given) stay; elsewhere (a pipe, a file) every print_every-th
    step is a line."""

    def __init__(self, run, stop, log, workers):
        settings = run.settings
        self.run, self.settings, self.stop, self.csv, self.workers = run, settings, stop, log, workers
        self.step_done, self.clock = run.step, Clock(run.metrics)
        self.print_every = settings["print_every"] or (None if run.console.tty else 1 if settings["steps"] <= 1000
                                                       else settings["steps"] // 100)
        last_eval = run.metrics["eval"][-1]["step"] if run.metrics["eval"] else 0      # resuming: the steps since
        self.losses_since_eval = [row["loss"] for row in run.metrics["train"] if row["step"] > last_eval]
        self.weights_before = flat(run.engine.weights()) if log else None
        self.t_last = time.perf_counter()
        self.judge = Judge(run)
        self.given_up = None                    # the step whose evaluation a stop gave up, if one did

    def due(self):
        """Whether the step the run is at should have been evaluated and was not: a stop gave its evaluation up
        (evaluation), and the run resumed from it does it before its next step, as if never stopped."""
        n, every = self.step_done, self.settings["eval_every"]
        last = self.settings["steps"], self.run.checkpoint and self.run.checkpoint["settings"]["steps"]
        return bool(self.losses_since_eval) and n > 0 and (n % every == 0 or n in last)    # (its run's last too)

    def on_step(self, step, loss, lr, grad_norm, batch):
        self.step_done = step + 1
        self.run.metrics["train"].append(self.record(loss, lr, grad_norm, batch))
        if self.csv:
            self.csv.train(self.run.metrics["train"][-1])
        self.losses_since_eval.append(loss)
        self.show(loss, lr)
        last = self.step_done == self.settings["steps"]
        if self.step_done % self.settings["eval_every"] == 0 or last:
            self.evaluate()
        if self.workers and self.workers.failure:      # (its evaluation done: a resume goes on exactly)
            raise self.workers.failure
        if self.settings["save_every"] and self.step_done % self.settings["save_every"] == 0 and not last:
            self.run.save(self.step_done)
        self.t_last = time.perf_counter()
        return self.stop.requested

    def record(self, loss, lr, grad_norm, batch):
        """The metrics row of the step just taken."""
        n_tokens = sum(microgpt.n_predicted(tokens, self.settings["block_size"]) for tokens in batch)
        ratio = None
        if self.weights_before is not None:                 # only with a log: it copies every weight
            after = flat(self.run.engine.weights())
            ratio, self.weights_before = update_ratio(self.weights_before, after), after
        clipped = int(self.settings["grad_clip"] is not None and grad_norm > self.settings["grad_clip"])
        return {"step": self.step_done, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_sec": n_tokens / max(time.perf_counter() - self.t_last, 1e-9),
                "elapsed_s": self.clock.before + self.clock.training(), "update_ratio": ratio, "clipped": clipped}

    def show(self, loss, lr):
        """The step's line: permanent every print_every steps and at the last (where there is a print_every),
        else, on a terminal, the status line: a smoothed loss and the speed beside the time left."""
        n, N = self.step_done, self.settings["steps"]
        left = format_seconds(self.time_left())
        if self.print_every and (n % self.print_every == 0 or n == N):
            self.run.console.line(f"step {n:4d} / {N:4d} | loss {loss:.4f} | lr {lr:.5f} | {left} left")
            return
        recent = [row["loss"] for row in self.run.metrics["train"][-20:]]
        speed = self.run.metrics["train"][-1]["tokens_per_sec"]
        # Each field with its rank: the order in which they give way to a narrow terminal, the highest first.
        self.run.console.status([(f"step {n:4d} / {N:4d}", 0), (f"loss {sum(recent) / len(recent):.4f}", 0),
                                 (f"(mean of {counted(len(recent), 'step')})", 4), (f"lr {lr:.5f}", 2),
                                 (f"{speed:,.0f} tokens/s", 3), (f"{left} left", 1)])

    def time_left(self):
        """Seconds the run has left: its steps to go at this session's pace, and its evaluations to go at
        theirs. Before the first, an evaluation is reckoned as its documents and samples at a third of a
        training step's time per document (a forward pass without a graph, against forward, backward and
        Adam's update)."""
        n, N, every = self.step_done, self.settings["steps"], self.settings["eval_every"]
        per_step = self.clock.training() / (n - self.run.step)
        evaluations = N // every - (n - 1) // every + (1 if N % every else 0)     # this step's included
        done = self.clock.evaluations
        per_eval = (self.clock.eval_seconds / done if done else
                    per_step / self.settings["batch_size"] * (len(self.run.eval_docs) + self.settings["eval_samples"])
                    / 3)
        return per_step * (N - n) + per_eval * evaluations

    def evaluate(self):
        """Validation loss now, beside the mean training loss since the last evaluation; then a few
        samples, drawn from a generator seeded by the seed and the step alone, so that they change
        nothing else the run does (the final samples come from the run's own generator)."""
        if not self.losses_since_eval:
            return
        t0 = time.perf_counter()
        row = evaluation(self.run, self.workers, self.step_done, self.losses_since_eval, self.stop)
        if row is None:                                     # given up for a stop: the resumed run does it first
            self.given_up = self.step_done
            return
        row["seconds"] = time.perf_counter() - t0
        self.clock.eval_seconds += row["seconds"]
        self.clock.evaluations += 1
        self.run.metrics["eval"].append(row)
        if self.csv:
            self.csv.eval(row)
        self.losses_since_eval = []
        self.judge(row)


class Judge:
    """After each evaluation: keeps the best model by validation loss (with --save, in its own file, which
    --load can sample from) and says once, plainly, when the validation loss has stayed RISE above its best
    (2% more nats, past the wobble of a hundred documents) for two evaluations in a row while the training
    loss fell below where it was then: the model is memorising."""
    RISE = 1.02

    def __init__(self, run):
        self.run, self.best, self.rises, self.said = run, None, 0, False
        for row in run.metrics["eval"]:                       # a resumed run goes on from its history
            self.judged(row)

    def judged(self, row):
        """Update the best and the count of evaluations since it; True if row is the new best."""
        if row["val_loss"] is None:
            return False
        if self.best is None or row["val_loss"] < self.best["val_loss"]:
            self.best, self.rises = row, 0
            return True
        self.rises = self.rises + 1 if row["val_loss"] > self.RISE * self.best["val_loss"] else 0
        return False

    def __call__(self, row):
        run = self.run
        if self.judged(row):
            if run.best_path:
                run.save(row["step"], run.best_path)
            return
        best = self.best
        if self.said or self.rises < 2 or best is None or row["train_loss"] >= best["train_loss"]:
            return
        self.said = True
        where = kept_best(run, best)
        kept = (f"the best model is kept in {shown(where)}: --load it to sample from it" if where else
                "give --save PATH to keep the best model of a run" if not run.best_path else
                "the model of that step was not kept")
        run.console.line(f"overfitting: since step {best['step']} the validation loss has risen from its best, "
                         f"{best['val_loss']:.4f}, to {row['val_loss']:.4f}, while the training loss fell from "
                         f"{best['train_loss']:.4f} to {row['train_loss']:.4f}: the model is memorising its "
                         f"training documents rather than learning what they have in common; {kept}")


def evaluation(run, workers, step, train_losses, stop=None):
    """Print the evaluation at `step` and its samples, its documents shared among `workers` (or None); return
    its metrics row (without seconds), or None if a stop (stop.requested) gave it up (validation_loss)."""
    settings, console = run.settings, run.console
    train_loss = sum(train_losses) / len(train_losses)
    text = f"eval {step:4d} | train loss {train_loss:.4f} (mean of {counted(len(train_losses), 'step')})"
    val_loss = None
    if run.eval_docs:
        val_loss = validation_loss(run, workers, stop)
        if val_loss is None:
            return None
        text += f" | val loss {val_loss:.4f} | val perplexity {perplexity_text(val_loss)}"
    rng = random.Random(f"{settings['seed']}:{step}")
    texts = [run.engine.sample(rng, settings["temperature"], settings["top_k"], settings["prefix"]) or "''"
             for _ in range(settings["eval_samples"])]
    if settings["text"]:                                    # (a text's own commas and newlines: each quoted)
        texts = [repr(text) for text in texts]
    console.line(text)
    if texts:
        console.line(f"  samples at step {step}: {', '.join(texts)}")
    return {"step": step, "train_loss": train_loss, "val_loss": val_loss}


def validation_loss(run, workers, stop=None, per_process=8):
    """The loss on run.eval_docs (the engine's evaluate), or None if a stop came first: the documents are
    scored per_process a process at a time (shared among `workers`, if any) and a stop asked for between
    two rounds gives the evaluation up, so that a long one (thousands of documents: minutes) never holds a
    stop more than a round (a second or less). An engine without nll_parts evaluates in one go."""
    engine = run.engine
    if not hasattr(engine, "nll_parts"):
        return engine.evaluate(run.eval_docs)[0]
    tokens = [run.tokenizer.encode(doc) for doc in scored(run.eval_docs, run.settings["block_size"])]
    parts, size = [], per_process * (workers.n if workers else 1)
    for start in range(0, len(tokens), size):
        if stop is not None and stop.requested:
            return None
        docs = tokens[start:start + size]
        try:
            if workers and not workers.failure:                                           # (the same numbers)
                parts += workers.spread("nlls", docs)
                continue
        except WorkerError as e:            # done here instead, as one process would; then the run stops
            workers.failure = e
        parts += engine.nll_parts(docs)
    return engine.evaluate(run.eval_docs, nlls=parts)[0]


def perplexity_text(loss):
    """exp(loss) as printed: two decimals, or three digits and an exponent once it is large (1.2e+300, inf)."""
    ppl = perplexity(loss)
    return f"{ppl:.2f}" if ppl < 1e6 else f"{ppl:.3g}"


def standing(run):
    """Where a run ends against the baselines: its last validation loss beside theirs, and its best."""
    evals = [row for row in run.metrics["eval"] if row["val_loss"] is not None]
    if not evals or not run.baselines:
        return []
    last, b = evals[-1], run.baselines
    val, (best_name, best_loss) = last["val_loss"], min(b.items(), key=lambda item: item[1])
    if val < best_loss:
        verdict = f"below every baseline, {best_loss - val:.4f} nats under the {best_name}" + (
            ": it has learnt more than which token follows which" if best_name == "bigram" else "")
    elif val < max(b.values()):
        verdict = (f"between the baselines: below the {' and the '.join(n for n in b if val < b[n])}, above the "
                   f"{' and the '.join(n for n in b if val >= b[n])}")
    else:
        verdict = "above every baseline: it has learnt nothing yet, or memorised its training documents"
    lines = [f"where it stands: val loss {val:.4f} at step {last['step']} | bigram {b['bigram']:.4f} | "
             f"unigram {b['unigram']:.4f} | uniform {b['uniform']:.4f}: {verdict}"]
    best = best_so_far(run.metrics)
    if best is not last:
        where = kept_best(run, best)
        lines.append(f"  its best: val loss {best['val_loss']:.4f} at step {best['step']}" +
                     (f", kept in {shown(where)}" if where else ", not kept" if run.best_path else ""))
    return lines


def best_so_far(metrics):
    """The evaluation row of the lowest validation loss in `metrics`, or None."""
    rows = [row for row in metrics["eval"] if row["val_loss"] is not None]
    return min(rows, key=lambda row: row["val_loss"]) if rows else None


def holds(run, path, row):
    """Whether the checkpoint at `path` holds this run's model of the evaluation `row`: saved at its step, by a
    run of the same seed whose evaluation there found the same validation loss (a step alone is no proof: two
    runs evaluated alike have their best at the same step as often as not)."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        losses = {r[0]: r[EVAL_FIELDS.index("val_loss")] for r in state["metrics"]["eval"]}
        return (state["step"] == row["step"] and state["settings"]["seed"] == run.settings["seed"]
                and losses.get(row["step"]) == row["val_loss"])
    except (OSError, TypeError, ValueError, AttributeError, RecursionError, KeyError, IndexError):
        return False


def kept_best(run, row):
    """The checkpoint that holds the run's model of the evaluation `row` (its best), or None: the best file this
    run writes, or, for a resumed run whose best came before it, the best file of the run it resumes (or the
    file itself). Each is opened and checked (holds); a name alone is never taken for it."""
    candidates = [run.best_path]
    if run.args.resume:
        candidates += [best_path(run.args.resume), run.args.resume]
    return next((path for path in candidates if path and holds(run, path, row)), None)


def loss_curve(metrics, baselines=None, width=None, height=10):
    """The run's loss curve as text lines: '.' is the training loss, smoothed by a running mean over
    about a twentieth of the run and averaged per column; 'o' is a validation loss; '-' rows mark the
    baselines' losses (the bigram always, the others where they fall in the picture). width: the grid's
    columns; by default at most 64, and few enough that a row fits 80 columns with one baseline's name (two
    baselines on one row, or a scale of 1e4 and more, can pass it: a diverging run's)."""
    # (a loss near a float's largest, as a diverging run or an edited checkpoint has, is drawn at 1e300: summed
    # over a window it would overflow to inf, and inf - inf to NaN)
    train = [(row["step"], min(row["loss"], 1e300)) for row in metrics["train"]]
    huge = any(loss > 1e12 for _, loss in train)    # (a running sum would lose the small losses beside them)
    evals = [(row["step"], row["val_loss"]) for row in metrics["eval"] if row["val_loss"] is not None]
    if len(train) < 2:
        return []
    window = max(1, len(train) // 20)
    running, smoothed = 0.0, []
    for i, (step, loss) in enumerate(train):
        if huge:                                    # summed afresh, exactly: slower, and only for such a history
            running = math.fsum(x for _, x in train[max(0, i - window + 1):i + 1])
        else:
            running += loss - (train[i - window][1] if i >= window else 0.0)
        smoothed.append((step, running / min(i + 1, window)))
    first, last = train[0][0], train[-1][0]
    if width is None:                       # 80 = the scale's 8 + the grid + a space + "unigram 2.85" (12)
        width = min([64] + [71 - len(f"{name} {loss:.2f}") for name, loss in (baselines or {}).items()])
    width = min(width, last - first + 1)
    column = lambda step: min(width - 1, (step - first) * width // (last - first + 1))
    sums, counts = [0.0] * width, [0] * width
    for step, loss in smoothed:
        sums[column(step)] += loss
        counts[column(step)] += 1
    points = [(col, sums[col] / counts[col], ".") for col in range(width) if counts[col]]
    points += [(column(step), loss, "o") for step, loss in evals]
    points = [(col, min(loss, 1e300), mark) for col, loss, mark in points]      # (per column: the same bound)
    return draw_curve(points, baselines or {}, width, height, window, first, last)


def draw_curve(points, baselines, width, height, window, first, last):
    """The text grid of loss_curve(): points (column, loss, mark), the losses' range on the left, and a row
    of '-' for each baseline in the range (the bigram's widens it), its name on the right."""
    hi, lo = max(p[1] for p in points), min(p[1] for p in points)
    if "bigram" in baselines:
        hi, lo = max(hi, baselines["bigram"]), min(lo, baselines["bigram"])
    row_of = lambda loss: round((hi - loss) / ((hi - lo) or 1.0) * (height - 1))
    grid, names = [[" "] * width for _ in range(height)], [[] for _ in range(height)]
    for name, loss in sorted(baselines.items(), key=lambda item: item[1]):
        if lo <= loss <= hi:
            grid[row_of(loss)] = ["-"] * width
            names[row_of(loss)].append(f"{name} {loss:.2f}")
    for col, loss, mark in points:
        grid[row_of(loss)][col] = mark
    lines = [f"loss curve: . training (running mean of {counted(window, 'step')}), o validation" +
             (", - baselines" if baselines else "")]                # (within 80 columns: the grid's rows too)
    figure = lambda loss: f"{loss:.2f}" if abs(loss) < 1e5 else f"{loss:.2g}"    # (1.7e308 in 300 digits: no)
    for row, cells in enumerate(grid):
        label = figure(hi) if row == 0 else figure(lo) if row == height - 1 else ""
        lines.append(f"{label:>6} |{''.join(cells)}" + (f" {', '.join(names[row])}" if names[row] else ""))
    lines.append(f"{'':>6} +{'-' * width}")
    left, right = f"step {first}", f"step {last}"
    lines.append(f"{'':>8}{left}{right:>{max(len(right) + 1, width - len(left))}}")
    return lines


SHADES = " .:-=+*#%@"         # the attention heatmap: weight 0-10% -> ' ', ..., 90-100% -> '@'


def print_explanation(run, doc, x, note=""):
    """Print explain()'s numbers `x` for `doc`: the next-token table, the attention heatmaps and the
    traced step."""
    tokenizer, log = run.tokenizer, run.log
    name = lambda t: "BOS" if t == tokenizer.BOS else repr(tokenizer.chars[t])
    show = lambda t: f"{name(t):>5} ({t:2d})"
    if run.settings["text"]:
        known = "in the training text" if doc in run.train_docs.stream else "not in the training text"
    else:
        known = ("a training document" if doc in set(run.train_docs) else "held out for validation" if doc in
                 set(run.val_docs) else "in neither the training nor the validation documents")
    tokens = str(x["tokens"]) if len(x["tokens"]) <= 40 else f"{str(x['tokens'][:40])[:-1]}, ...]"
    log(f"explain {shown(repr(doc))}{note}, {known}: tokens {tokens}; position t reads tokens[t] and predicts "
        f"tokens[t+1]")
    log("  pos |   input    |   target   | p(target) | loss (nats) | what the model believed came next")
    for t, (inp, target, p, loss, top3) in enumerate(x["positions"]):
        believed = "  ".join(f"{name(i)} {q:.2f}" for i, q in top3)
        log(f"{t:5d} | {show(inp)} | {show(target)} |   {p:.4f}  |   {loss:.4f}    | {believed}")
    losses = [pos[3] for pos in x["positions"]]
    v = tokenizer.vocab_size
    log(f"  mean loss {sum(losses) / len(losses):.4f} over {counted(len(losses), 'position')}; a uniform guess over "
        f"{v} tokens scores ln {v} = {math.log(v):.4f}")
    if len(x["tokens"]) - 1 > len(losses):
        log(f"  cut: block_size {run.settings['block_size']} leaves out the last "
            f"{counted(len(x['tokens']) - 1 - len(losses), 'target')}")
    print_attention(run, x, [name(t).strip("'") for t in x["tokens"][:len(losses)]])
    step = x["step"]
    log(f"one training step on {shown(repr(doc))}, traced (the model is left unchanged): mean loss {step['loss']:.4f}, "
        f"learning rate {step['lr']:.5f}")
    log("  matrix            gradient norm   update / weight (RMS, log10)")
    for matrix, (norm, ratio) in step["matrices"].items():
        size = math.log10(ratio) if ratio else -math.inf
        said = ("   too high" if size > RATIO_TOO_HIGH else "   barely moves" if size < RATIO_BARELY else "")
        log(f"  {matrix:<16} {norm:12.6f}   {size:8.2f}{said}")
    log(f"  (log10 of Adam's update over the weights. For the default model at the default lr 0.01 the first step "
        f"is -1.3 to -0.9 (Adam's first steps are about lr, its weights about 0.08); at 20 times that lr, the high-lr "
        f"trap's first step, 0.0 to 0.4: above {RATIO_TOO_HIGH:g} the learning rate is too high for that matrix; "
        f"below {RATIO_BARELY:g} it barely learns)")


# The update-to-weight ratio's bounds, log10, measured on this model (python3 traps.py high-lr, --explain): the
# default lr's steps lie between them, the high-lr trap's first steps above, and the cosine's last below.
RATIO_TOO_HIGH, RATIO_BARELY = -0.5, -3.0


def print_attention(run, x, labels):
    """The attention heatmaps of explain(): a row per position, a column per position it reads."""
    settings, log = run.settings, run.log
    legend = ", ".join(f"'{c}' {10 * i}%" for i, c in enumerate(SHADES) if i)
    log(f"attention: each row is a position and where it looks, over the positions so far; above the diagonal, "
        f"the future: masked. Shades: ' ' under 10%, {legend} or more")
    for layer in range(settings["n_layer"]):
        for head in range(settings["n_head"]):
            log(f"  layer {layer} head {head}  " + "".join(f"{label:>4}" for label in labels))
            for t, label in enumerate(labels):
                weights = x["attention"][t][layer * settings["n_head"] + head]
                cells = "".join(f"  {SHADES[min(9, int(w * 10))] * 2}" for w in weights)
                top = max(range(len(weights)), key=weights.__getitem__)
                log(f"  {t:2d} {label:>3} reads  {cells:<{4 * len(labels)}}  most: {labels[top]} {weights[top]:.0%}")


class GradcheckPrinter:
    """gradcheck()'s on_matrix: each matrix's line as soon as it is checked (the first with the heading), and
    on a terminal a status line of how long is left, so that a larger model's check is seen to work."""

    def __init__(self, run, doc):
        self.run, self.doc, self.start = run, doc, time.perf_counter()

    def __call__(self, name, m, done, total):
        run = self.run
        if not hasattr(self, "rows"):
            self.rows = True
            run.console.line(f"gradcheck {shown(repr(self.doc))}: backward() against central finite differences, "
                             f"(L(p+h) - L(p-h)) / 2h with h = 1e-5, on {total:,} entries among those the "
                             f"document reaches (two forward passes each)")
            run.console.line("  matrix             checked (non-zero) / reached / all    worst relative error")
        run.console.line(f"  {name:<16} {m['checked']:>5} ({m['nonzero']:>5}) / {m['reached']:>6} / {m['total']:<6} "
                         f"{m['worst']:10.1e}")
        seconds = time.perf_counter() - self.start
        left = format_seconds(seconds / done * (total - done))
        run.console.status(f"gradcheck: {done:,} of {total:,} entries, {left} left")
        if run.log is print:
            sys.stdout.flush()                          # a pipe sees each line as it comes, not at the end


def print_verdict(run, report, tolerance=1e-4):
    """The gradient check's verdict. Returns the exit status: 0, or 1 if a relative error is over the
    tolerance."""
    name, worst = max(((name, m["worst"]) for name, m in report.items()), key=lambda item: item[1])
    if worst > tolerance:
        run.console.line(f"gradcheck FAILED: {name} is off by a relative {worst:.1e}, over the tolerance "
                         f"{tolerance:.0e}: backward() and the finite differences disagree there")
        return 1
    run.console.line(f"gradcheck passed: the worst relative error is {worst:.1e} ({name}), under the tolerance "
                     f"{tolerance:.0e}")
    return 0
