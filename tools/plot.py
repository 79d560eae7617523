"""Plot a microgpt run from its CSV log (`--log run.csv`): run.png beside it, panels sharing the step axis.

Panels, top to bottom: the training loss (every step, faint, and a running mean) with the validation
losses; the learning rate; the gradient norm, with the clip level when there is one; the update-to-weight
ratio (log scale, the RMS of Adam's update over the RMS of the weights); tokens per second. This is the
expert's timeline: a gradient norm that climbs before the loss does warns of a learning rate too high.

The script reads only the CSV, with the standard library; matplotlib draws it. `make plot LOG=run.csv`
installs matplotlib in a throwaway virtual environment, as `make names` does with its packages, so
microgpt itself never needs it.

Usage: python3 tools/plot.py RUN.csv [OUT.png]     (exit status 2 and one line for a bad log)
"""
import csv
import math
import os
import sys

NEEDED = ("kind", "step", "loss", "lr", "grad_norm", "tokens_per_sec", "update_ratio", "clipped", "grad_clip",
          "val_loss")


class LogError(Exception):
    """A log this script cannot plot: main() prints the message on one line and exits with status 2."""


def number(text, row, column):
    try:
        value = float(text)
    except ValueError:
        raise LogError(f"row {row}: {column} is {text!r}, not a number")
    if not math.isfinite(value):
        raise LogError(f"row {row}: {column} is {text}")
    return value


def read_log(path):
    """The run in the CSV at `path`: {"step", "loss", "lr", "grad_norm", "tokens_per_sec": lists, one entry
    per training step; "update_ratio": (step, ratio) pairs where measured; "grad_clip": the clip level
    or None; "clipped": steps whose gradient was clipped; "val": (step, validation loss) pairs}.
    Raises LogError if the file is missing, not a microgpt log, or holds a row that is not."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise LogError(f"{path} not found; give the CSV a run wrote with --log")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LogError(f"cannot read {path} as CSV ({e})")
    if not rows or any(column not in rows[0] for column in NEEDED):
        raise LogError(f"{path} is not a microgpt log: it needs the columns {', '.join(NEEDED)}")
    run = {key: [] for key in ("step", "loss", "lr", "grad_norm", "tokens_per_sec", "update_ratio", "clipped", "val")}
    run["grad_clip"] = None
    for i, row in enumerate(rows, start=2):                 # row 1 is the header
        if row["kind"] == "eval":
            run["val"].append((number(row["step"], i, "step"), number(row["val_loss"], i, "val_loss")))
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
            raise LogError(f"row {i}: kind is {row['kind']!r}, not train or eval")
    if len(run["step"]) < 2:
        raise LogError(f"{path} has {len(run['step'])} training step(s); a plot needs at least 2")
    return run


def running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def draw(run, out):
    """Write the figure of `run` (read_log) to the PNG file `out`."""
    import matplotlib
    matplotlib.use("Agg")                                   # no screen needed
    import matplotlib.pyplot as plt

    steps = run["step"]
    fig, axes = plt.subplots(5, 1, figsize=(10, 12), sharex=True, constrained_layout=True)
    loss_ax, lr_ax, norm_ax, ratio_ax, speed_ax = axes
    window = max(1, len(steps) // 50)
    loss_ax.plot(steps, run["loss"], color="tab:blue", alpha=0.2, linewidth=0.7, label="training loss")
    loss_ax.plot(steps, running_mean(run["loss"], window), color="tab:blue",
                 label=f"training loss, mean of {window} steps")
    if run["val"]:
        loss_ax.plot(*zip(*run["val"]), "o-", color="tab:orange", label="validation loss")
    ordered = sorted(run["loss"])                            # rare spikes would squash the curves: cut the
    loss_ax.set_ylim(ordered[0] - 0.1, ordered[int(0.995 * (len(ordered) - 1))] + 0.2)     # view at 99.5%
    loss_ax.set_ylabel("loss (nats)")
    loss_ax.legend(loc="upper right")
    lr_ax.plot(steps, run["lr"], color="tab:green")
    lr_ax.set_ylabel("learning rate")
    norm_ax.plot(steps, run["grad_norm"], color="tab:red", linewidth=0.8, label="gradient norm")
    if run["grad_clip"] is not None:
        norm_ax.axhline(run["grad_clip"], color="black", linestyle="--", linewidth=0.8,
                        label=f"clip level {run['grad_clip']:g} ({len(run['clipped'])} steps clipped)")
        norm_ax.legend(loc="upper right")
    norm_ax.set_ylabel("gradient norm")
    norm_ax.set_yscale("log")
    if run["update_ratio"]:
        ratio_ax.plot(*zip(*run["update_ratio"]), color="tab:purple", linewidth=0.8)
        ratio_ax.axhline(1e-3, color="gray", linestyle=":", linewidth=0.8)
        ratio_ax.set_yscale("log")
    else:
        ratio_ax.text(0.5, 0.5, "not measured in this log", ha="center", va="center", transform=ratio_ax.transAxes)
    ratio_ax.set_ylabel("update / weight (RMS)")
    speed_ax.plot(steps, running_mean(run["tokens_per_sec"], window), color="tab:brown")
    speed_ax.set_ylabel(f"tokens / s (mean of {window})")
    speed_ax.set_xlabel("step")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"microgpt run: {len(steps):,} steps")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv):
    if len(argv) not in (2, 3):
        print("plot: usage: python3 tools/plot.py RUN.csv [OUT.png]", file=sys.stderr)
        return 2
    path = argv[1]
    out = argv[2] if len(argv) == 3 else os.path.splitext(path)[0] + ".png"
    try:
        run = read_log(path)
    except LogError as e:
        print(f"plot: error: {e}", file=sys.stderr)
        return 2
    draw(run, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
