"""Plot microgpt runs from their CSV logs (`--log run.csv`): one run, or several overlaid to compare them.

Panels, top to bottom, sharing the step axis: the training loss (every step, faint, and a running mean)
with the validation losses and the baselines (dashed: the bigram, unigram and uniform guesses' validation
losses, as the run printed them); the learning rate; the gradient norm, with the clip level when there is
one; the update-to-weight ratio (log scale, the RMS of Adam's update over the RMS of the weights); tokens
per second. Each run has its colour, named after its file. This is the expert's timeline: a gradient norm
that climbs before the loss does warns of a learning rate too high.

The script reads only the CSVs, with the standard library; matplotlib draws them. `make plot LOG=run.csv`
(or LOG="a.csv b.csv") makes a virtual environment with matplotlib once, .venv-plot, and reuses it, so
microgpt itself never needs it.

Usage: python3 tools/plot.py RUN.csv [MORE.csv ...] [-o OUT.png]
  one log: RUN.png beside it; several: RUN-vs-MORE.png beside the first. Exit status 2 and one line for a
  bad log.
"""
import csv
import math
import os
import sys

NEEDED = ("kind", "step", "loss", "lr", "grad_norm", "tokens_per_sec", "update_ratio", "clipped", "grad_clip",
          "val_loss")
BASELINES = ("uniform", "unigram", "bigram")


class LogError(Exception):
    """A log this script cannot plot: main() prints the message on one line and exits with status 2."""


def number(text, row, column):
    if text is None:                                        # (csv's value for a column a short row lacks)
        raise LogError(f"row {row} is cut short: it has no {column}")
    try:
        value = float(text)
    except ValueError:
        raise LogError(f"row {row}: {column} is {text!r}, not a number")
    if not math.isfinite(value):
        raise LogError(f"row {row}: {column} is {text}")
    return value


def read_rows(path):
    """The CSV's rows as dicts. Raises LogError if it is missing, unreadable or not a microgpt log."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise LogError(f"{path} not found; give the CSV a run wrote with --log")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LogError(f"cannot read {path} as CSV ({e})")
    if not rows or any(column not in rows[0] for column in NEEDED):
        raise LogError(f"{path} is not a microgpt log: it needs the columns {', '.join(NEEDED)}")
    if None in rows[-1].values():                           # the last row cut short: a full disk, a killed run
        print(f"plot: {path}: its last row is cut short (a full disk or a killed run leaves that); plotting the "
              f"rows before it", file=sys.stderr)
        rows = rows[:-1]
    return rows


def read_log(path):
    """The run in the CSV at `path`: {"step", "loss", "lr", "grad_norm", "tokens_per_sec": lists, one entry
    per training step; "update_ratio": (step, ratio) pairs where measured; "grad_clip": the clip level
    or None; "clipped": steps whose gradient was clipped; "val": (step, validation loss) pairs;
    "baselines": {name: validation loss}}. Raises LogError if the file is missing, not a microgpt log, or
    holds a row that is not."""
    run = {key: [] for key in ("step", "loss", "lr", "grad_norm", "tokens_per_sec", "update_ratio", "clipped", "val")}
    run["grad_clip"], run["baselines"] = None, {}
    for i, row in enumerate(read_rows(path), start=2):      # row 1 is the header
        if row["kind"] == "eval":
            run["val"].append((number(row["step"], i, "step"), number(row["val_loss"], i, "val_loss")))
        elif row["kind"] in BASELINES:
            run["baselines"][row["kind"]] = number(row["val_loss"], i, "val_loss")
        elif row["kind"] == "train":
            step = number(row["step"], i, "step")
            run["step"].append(step)
            for key in ("loss", "lr", "grad_norm", "tokens_per_sec"):
                run[key].append(number(row[key], i, key))
            if row["update_ratio"]:
                run["update_ratio"].append((step, number(row["update_ratio"], i, "update_ratio")))
            if row["clipped"] == "1":
                run["clipped"].append(step)
            if row["grad_clip"]:
                run["grad_clip"] = number(row["grad_clip"], i, "grad_clip")
        else:
            raise LogError(f"row {i}: kind is {row['kind']!r}, not train, eval or a baseline")
    if len(run["step"]) < 2:
        raise LogError(f"{path} has {len(run['step'])} training step(s); a plot needs at least 2")
    return run


def running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def draw_losses(ax, runs, colours):
    """The loss panel: each run's training loss (faint, and its running mean), validation losses and
    baselines; the view cut at the 99.5th percentile, so that rare spikes do not squash the curves."""
    losses = sorted(loss for run in runs.values() for loss in run["loss"])
    for (name, run), colour in zip(runs.items(), colours):
        window = max(1, len(run["step"]) // 50)
        ax.plot(run["step"], run["loss"], color=colour, alpha=0.15, linewidth=0.6)
        ax.plot(run["step"], running_mean(run["loss"], window), color=colour,
                label=f"{name}: training loss, mean of {window} steps")
        if run["val"]:
            ax.plot(*zip(*run["val"]), "o-", color=colour, markersize=3, linewidth=1, markerfacecolor="white",
                    label=f"{name}: validation loss")
    baselines = {(name, round(loss, 4)) for run in runs.values() for name, loss in run["baselines"].items()}
    last_step = max(run["step"][-1] for run in runs.values())
    for name, loss in sorted(baselines):
        ax.axhline(loss, color="gray", linestyle="--", linewidth=0.8)
        ax.text(last_step, loss, f" {name} {loss:.2f}", va="bottom", ha="right", fontsize=8, color="dimgray")
    top = max([losses[int(0.995 * (len(losses) - 1))]] + [loss for name, loss in baselines if name == "bigram"])
    ax.set_ylim(losses[0] - 0.1, top + 0.2)
    ax.set_ylabel("loss (nats)")
    ax.legend(loc="upper center", fontsize=8)              # (the baselines are labelled on the right)


def draw_health(axes, runs, colours):
    """The learning rate, gradient norm (and clip level), update-to-weight ratio and speed panels."""
    lr_ax, norm_ax, ratio_ax, speed_ax = axes
    for (name, run), colour in zip(runs.items(), colours):
        steps, window = run["step"], max(1, len(run["step"]) // 50)
        lr_ax.plot(steps, run["lr"], color=colour)
        norm_ax.plot(steps, run["grad_norm"], color=colour, linewidth=0.8)
        if run["grad_clip"] is not None:
            norm_ax.axhline(run["grad_clip"], color=colour, linestyle="--", linewidth=0.8,
                            label=f"{name}: clip level {run['grad_clip']:g} ({len(run['clipped'])} steps clipped)")
        if run["update_ratio"]:
            ratio_ax.plot(*zip(*run["update_ratio"]), color=colour, linewidth=0.8)
        speed_ax.plot(steps, running_mean(run["tokens_per_sec"], window), color=colour)
    if any(run["grad_clip"] is not None for run in runs.values()):
        norm_ax.legend(loc="upper right", fontsize=8)
    if any(run["update_ratio"] for run in runs.values()):
        ratio_ax.axhline(1e-3, color="gray", linestyle=":", linewidth=0.8)
        ratio_ax.set_yscale("log")
    else:
        ratio_ax.text(0.5, 0.5, "not measured in this log", ha="center", va="center", transform=ratio_ax.transAxes)
    norm_ax.set_yscale("log")
    for ax, label in zip(axes, ("learning rate", "gradient norm", "update / weight (RMS)", "tokens / s (mean)")):
        ax.set_ylabel(label)


def draw(runs, out):
    """Write the figure of `runs` ({name: read_log()}) to the PNG file `out`."""
    import matplotlib
    matplotlib.use("Agg")                                   # no screen needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, figsize=(10, 12), sharex=True, constrained_layout=True)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    colours = (colours * (len(runs) // len(colours) + 1))[:len(runs)]
    draw_losses(axes[0], runs, colours)
    draw_health(axes[1:], runs, colours)
    axes[-1].set_xlabel("step")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle("microgpt: " + "; ".join(f"{name}, {len(run['step']):,} steps" for name, run in runs.items()))
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": MARK})
        os.replace(tmp, out)                                # (a link at out is replaced, never written through)
    finally:
        plt.close(fig)
        if os.path.lexists(tmp):
            os.unlink(tmp)


MARK = "microgpt tools/plot.py"                    # in every picture this script writes: it replaces only those


def check_output(out, logs):
    """Raises LogError unless `out` is a picture this script may write: in a folder that exists, not a
    folder, not a log it reads, and either new or a picture it wrote before (never a user's own file)."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise LogError(f"-o {out}: folder {folder} does not exist")
    if os.path.isdir(out):
        raise LogError(f"-o {out} is a folder; give a file name")
    if os.path.exists(out) and any(os.path.exists(log) and os.path.samefile(out, log) for log in logs):
        raise LogError(f"{out} is a log it reads; give another file name")
    if os.path.lexists(out) and not os.path.islink(out):
        with open(out, "rb") as f:
            head = f.read(4096)
        if head and MARK.encode() not in head:
            raise LogError(f"{out} is there and is not a picture this script drew; remove it or give -o another "
                           f"name")


def output_path(paths):
    """RUN.png beside RUN.csv; RUN-vs-MORE.png beside the first of several."""
    root = os.path.splitext(paths[0])[0]
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths[1:]]
    return "-vs-".join([root] + names) + ".png"


def main(argv):
    args, out = argv[1:], None
    if "-o" in args and args.index("-o") + 1 < len(args):
        at = args.index("-o")
        out, args = args[at + 1], args[:at] + args[at + 2:]
    if not args or "-o" in args:
        print("plot: usage: python3 tools/plot.py RUN.csv [MORE.csv ...] [-o OUT.png]", file=sys.stderr)
        return 2
    try:
        runs = {}
        for path in args:
            name = os.path.splitext(os.path.basename(path))[0]
            runs[name if name not in runs else path] = read_log(path)
    except LogError as e:
        print(f"plot: error: {e}", file=sys.stderr)
        return 2
    out = out or output_path(args)
    try:
        check_output(out, args)
    except LogError as e:
        print(f"plot: error: {e}", file=sys.stderr)
        return 2
    draw(runs, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
