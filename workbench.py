"""workbench.py: what serves the person running a GPT, around an engine that trains it.

microgpt.py is the algorithm, read top to bottom; this file is the bench it runs on: each setting declared
once (and the command line, the checks and the checkpoint derived from it), inputs checked whole before
any work, checkpoints that resume exactly, a run watched as it trains (progress, validation, samples, a
CSV log, periodic saves, Ctrl-C), the loss curve, and what looking inside a model found, printed. None
of it changes what the model computes. `python3 microgpt.py [options]` runs it with microgpt.py's engine,
`python3 microgpt_torch.py [options]` with the PyTorch twin's. Standard library only.

The engine interface. An engine is a class (MicrogptEngine below, microgpt_torch.Engine) that provides:

  Engine(settings, tokenizer, rng, state=None)
      a model sized by the settings n_embd, n_head, n_layer, block_size (and the engine's own options),
      its first weights drawn from rng as microgpt.GPT draws them, and its optimizer; state, if given, is
      what state() returned (from a checkpoint), put in their place
  Engine.memory_needed(settings, vocab_size, training) -> bytes, from the settings alone
  Engine.memory_available(settings) -> bytes, or None for this machine's memory
  engine.n_params
  engine.train(docs, start_step, on_step, steps, lr, warmup_steps, min_lr, batch_size, grad_clip)
      optimizer steps start_step .. steps - 1 over docs (microgpt.train's walk and schedule); after each,
      on_step(step, loss, lr, grad_norm, batch), and a true answer stops training. Raises
      FloatingPointError, before the update, if the loss or the gradient is not finite
  engine.evaluate(docs) -> (mean loss per predicted token in nats, the number of predicted tokens)
  engine.sample(rng, temperature, top_k, prefix) -> one new document, drawn with rng
  engine.weights() -> {parameter name: rows of floats}, microgpt.parameter_shapes' names and shapes
  engine.state() -> {"params": weights(), "adam": {"t": steps taken, "m", "v": a float per parameter}}
and, if it has them:
  engine.document_gradients(batch, n_tokens) -> for each document of batch (lists of token ids), in order:
      (its summed loss / n_tokens, its gradient: a float per parameter), each computed from 0
  engine.document_nlls(batch) -> for each document: (its summed loss in nats, its predicted tokens)
  engine.set_weights(floats): a float per parameter, in weights()' order
      with these three, --workers shares work among processes: a worker process holds an Engine of its own
      and computes its share of a batch or an evaluation; train(..., gradients=) and evaluate(docs, nlls=)
      take the documents' parts so computed and add them up in their order (MicrogptEngine.added, as
      microgpt.batch_gradient adds them)
  Engine.options: the Settings of its own (microgpt_torch: --device, --dtype)
  Engine.inside: the name of a module with explain(engine, doc, lr) and gradcheck(engine, doc, rng)
      (microgpt: inside.py); without one, --explain and --gradcheck are not offered
  engine.about: a line for the header (microgpt_torch: its dtype and device)

Both engines share microgpt.py's data path (documents, Tokenizer, split_docs), its parameter names and
shapes, its learning-rate schedule and its checkpoint file, so the two train on the same documents from
the same first weights, and a checkpoint from either runs in the other.
"""
import argparse
import array
import csv
import gc
import hashlib
import importlib
import importlib.util
import json
import math
import os
import pickle
import random
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata

import microgpt
from inside import update_ratio

try:
    import fcntl                        # a lock on each output while a run writes it (POSIX)
except ImportError:
    fcntl = None


class DataError(Exception):
    """Bad input the user can fix (a missing file, an impossible option): main() prints the message on
    one line and exits with status 2."""


class OutputError(Exception):
    """An output could not be written (a full disk, a closed terminal): main() prints the message on one
    line and exits with status 74, after the run saved what it could. `path`: the file, if one."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class Stopped(Exception):
    """SIGTERM or SIGHUP outside training (inside, they stop it after the step, as Ctrl-C does)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def shown(text, limit=120):
    """User input as a message quotes it: as it is if printable and at most `limit` characters, else with
    every unprintable character escaped (a terminal escape never reaches the terminal) and cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------------------------------
# microgpt.py's engine: its GPT and Adam behind the interface above. What exists only to share a batch
# among processes, or only for speed, is here rather than in the textbook.

def count_parameters(vocab_size, n_embd, n_layer, block_size):
    """The number of parameters microgpt.parameter_shapes describes, by arithmetic alone (a model too big to
    build is counted at once): (2 vocab_size + block_size) n_embd for the embeddings and lm_head, 12
    n_embd^2 per layer (4 for attention, 8 for the MLP). 4,192 with the defaults and 27 tokens."""
    return (2 * vocab_size + block_size) * n_embd + 12 * n_layer * n_embd ** 2


def perplexity(loss):
    """exp(loss), the number of equally likely tokens that would be as uncertain; inf past a float's range."""
    return math.exp(loss) if loss < 709.0 else math.inf


class MicrogptEngine:
    """microgpt.GPT and its microgpt.Adam as an engine (this module's docstring). The settings n_embd, n_head,
    n_layer and block_size size the GPT; its first weights are drawn from rng; `state`, what state()
    returned (a checkpoint's), replaces them and the fresh Adam's state."""
    inside = "inside"                                       # the module that looks inside its models

    def __init__(self, settings, tokenizer, rng, state=None):
        s, self.tokenizer = settings, tokenizer
        self.gpt = microgpt.GPT(tokenizer.vocab_size, s["n_embd"], s["n_head"], s["n_layer"], s["block_size"],
                                rng)
        self.optimizer = microgpt.Adam(self.gpt.params)
        self.n_params = len(self.gpt.params)
        if state is not None:
            self.set_weights([x for rows in state["params"].values() for row in rows for x in row])
            adam = state["adam"]
            self.optimizer.t, self.optimizer.m, self.optimizer.v = adam["t"], list(adam["m"]), list(adam["v"])

    @staticmethod
    def memory_needed(settings, vocab_size, training):
        """Bytes for the model (and, to train, a graph and a batch), from the settings alone; measured with
        tracemalloc: ~185 a parameter (Value, float, Adam's m, v), ~60 a parameter and position in a graph."""
        n = count_parameters(vocab_size, settings["n_embd"], settings["n_layer"], settings["block_size"])
        return n * 200 + (n * 60 * settings["block_size"] + settings["batch_size"] * 200 if training else 0)

    memory_available = staticmethod(lambda settings: None)      # None: the machine's own

    def train(self, docs, start_step, on_step, steps, lr, warmup_steps, min_lr, batch_size, grad_clip,
              gradients=None):
        """microgpt.train. `gradients(batch, n_tokens)`, if given, computes the documents' parts elsewhere
        (document_gradients, in worker processes); they are added here as microgpt.batch_gradient adds
        them, so the numbers are the same. The cyclic garbage collector is off meanwhile: a graph has no
        cycle, reference counting frees it, and the collector's walks would cost 10% for nothing."""
        gradient = microgpt.batch_gradient if gradients is None else (
            lambda gpt, batch: self.added(batch, gradients))
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return microgpt.train(self.gpt, self.optimizer, self.tokenizer, docs, steps, lr, warmup_steps, min_lr,
                                  batch_size, grad_clip, start_step, on_step, gradient)
        finally:
            if was_enabled:
                gc.enable()

    def added(self, batch, gradients):
        """The batch's loss, its gradient left in p.grad: the parts gradients(batch, n_tokens) gives, added in
        order from 0, term for term as microgpt.batch_gradient adds them."""
        n_tokens = sum(microgpt.n_predicted(tokens, self.gpt.block_size) for tokens in batch)
        loss, summed = 0.0, [0.0] * self.n_params
        for doc_loss, grads in gradients(batch, n_tokens):
            loss += doc_loss
            summed = [g + x for g, x in zip(summed, grads)]
        for p, g in zip(self.gpt.params, summed):
            p.grad = g
        return loss

    def document_gradients(self, batch, n_tokens):
        """Each document's part of a batch (microgpt.document_gradient), in order: (its loss / n_tokens, its
        gradient, a float per parameter), each computed from 0; p.grad is left at 0."""
        parts = []
        for tokens in batch:
            doc_loss = microgpt.document_gradient(self.gpt, tokens, n_tokens)
            parts.append((doc_loss, [p.grad for p in self.gpt.params]))
            for p in self.gpt.params:
                p.grad = 0.0
        return parts

    def document_nlls(self, batch):
        """For each document: (its cross-entropies summed, in nats; its predicted tokens), summed as
        microgpt.evaluate sums them."""
        with microgpt.no_grad():
            losses = [microgpt.document_losses(self.gpt, tokens) for tokens in batch]
        return [(sum(loss.data for loss in doc), len(doc)) for doc in losses]

    def evaluate(self, docs, nlls=None):
        """microgpt.evaluate; given `nlls`, the documents' document_nlls computed elsewhere, added in order."""
        if nlls is None:
            return microgpt.evaluate(self.gpt, self.tokenizer, docs)
        loss_sum, n_tokens = 0.0, 0
        for doc_sum, n in nlls:
            loss_sum += doc_sum
            n_tokens += n
        return loss_sum / n_tokens, n_tokens

    def sample(self, rng, temperature, top_k, prefix):
        return microgpt.sample(self.gpt, self.tokenizer, rng, temperature, top_k, prefix)

    def weights(self):
        return self.gpt.weights()

    def set_weights(self, flat):
        """A float per parameter, in state_dict order."""
        for p, x in zip(self.gpt.params, flat):
            p.data = x

    def state(self):
        """What a checkpoint keeps of the model: {"params": weights(), "adam": {"t", "m", "v"}}, m and v a float
        per parameter in state_dict order: Adam's next steps depend on them as much as on the weights."""
        adam = self.optimizer
        return {"params": self.gpt.weights(), "adam": {"t": adam.t, "m": list(adam.m), "v": list(adam.v)}}


# ----------------------------------------------------------------------------------------------------
# 1. Settings, each declared once: its default, kind, rule, group and help. The command line, the
# checks, what a checkpoint keeps and what --resume and --load take from one all come from here.

class Setting:
    """One setting of a run. name: its key (the option is --name with dashes); default (None: off);
    kind: int, float or str; rule: (test, words) a value must pass; group: what it belongs to (GROUPS);
    help: one line for --help; metavar: its value's name there; shown: what --help says the default is,
    where the value alone does not say it; const: the value of the option given without one (--explain
    alone); choices: the only values it may take."""

    def __init__(self, name, default, kind, rule, group, help, metavar="N", shown=None, const=None,
                 choices=None):
        self.name, self.default, self.kind, self.rule, self.group = name, default, kind, rule, group
        self.help, self.metavar, self.shown, self.const, self.choices = help, metavar, shown, const, choices

    @property
    def option(self):
        return "--" + self.name.replace("_", "-")

    def described(self):
        """The help line, its default said from the declaration itself."""
        default = self.default if self.shown is None else self.shown
        if type(default) is float:
            default = f"{default:g}"                        # 0.0 -> 0, 0.01 -> 0.01
        return self.help if default is None or default == "" else f"{self.help} (default {default})"


ANY = (lambda v: True, "")
AT_LEAST_0, AT_LEAST_1 = (lambda v: v >= 0, "0 or more"), (lambda v: v >= 1, "at least 1")
ABOVE_0, A_FILE_NAME = (lambda v: v > 0, "greater than 0"), (bool, "a file name")
D = microgpt.DEFAULTS           # the algorithm's settings have their defaults where the algorithm is
SETTINGS = [
    Setting("data", D["data"], str, A_FILE_NAME, "data", "UTF-8 text file, one document per line", "PATH",
            shown=f"{D['data']} beside this script, or the checkpoint's"),
    Setting("seed", D["seed"], int, ANY, "split", "random seed; one seed, one run"),
    Setting("val_fraction", D["val_fraction"], float, (lambda v: 0 <= v < 1, "at least 0 and less than 1"),
            "split", "share of documents held out for validation, in [0, 1)", "X"),
    Setting("n_embd", D["n_embd"], int, AT_LEAST_1, "model", "embedding width"),
    Setting("n_head", D["n_head"], int, AT_LEAST_1, "model", "attention heads; must divide n_embd"),
    Setting("n_layer", D["n_layer"], int, AT_LEAST_1, "model", "transformer layers"),
    Setting("block_size", D["block_size"], int, (lambda v: v >= 2, "at least 2"), "model",
            "positions per document, >= 2"),
    Setting("steps", D["steps"], int, AT_LEAST_0, "training", "optimizer steps in the whole run"),
    Setting("lr", D["lr"], float, ABOVE_0, "training", "peak learning rate", "X"),
    Setting("warmup_steps", D["warmup_steps"], int, AT_LEAST_0, "training", "steps of linear warmup"),
    Setting("min_lr", D["min_lr"], float, AT_LEAST_0, "training", "learning rate the cosine decays to", "X"),
    Setting("batch_size", D["batch_size"], int, AT_LEAST_1, "training", "documents per optimizer step"),
    Setting("grad_clip", D["grad_clip"], float, ABOVE_0, "training", "clip the global gradient norm to X", "X",
            shown="off"),
    Setting("eval_every", 100, int, AT_LEAST_1, "watching", "steps between evaluations"),
    Setting("eval_docs", D["eval_docs"], int, AT_LEAST_0, "watching",
            "validation documents per evaluation, 0 for all"),
    Setting("eval_samples", 5, int, (lambda v: 0 <= v <= 100, "between 0 and 100"), "watching",
            "documents sampled at each evaluation, to watch them improve; 0 for none, at most 100"),
    Setting("print_every", None, int, AT_LEAST_1, "watching", "steps between step lines",
            shown="none on a terminal, where a status line rewrites itself; else 1 for runs of up to 1,000 steps, "
                  "else steps / 100"),
    Setting("log", None, str, A_FILE_NAME, "watching", "write every step's metrics and every evaluation to CSV",
            "PATH"),
    Setting("explain", None, str, ANY, "inside", "show what the model does with DOC (default: the first "
            "training document): each position's prediction, the attention of every head, one training step "
            "traced; then exit", "DOC", const=""),
    Setting("gradcheck", None, str, ANY, "inside", "check backward()'s gradients on DOC against finite "
            "differences; exit 1 if one is off", "DOC", const=""),
    Setting("save", None, str, A_FILE_NAME, "saving", "save a checkpoint (JSON) at the end, on Ctrl-C and when "
            "the loss stops being finite", "PATH"),
    Setting("save_every", None, int, AT_LEAST_1, "saving", "also save every N steps"),
    Setting("resume", None, str, A_FILE_NAME, "checkpoint", "continue the run saved in PATH exactly", "PATH"),
    Setting("load", None, str, A_FILE_NAME, "checkpoint", "sample from the model saved in PATH, without training",
            "PATH"),
    Setting("new_data", None, bool, ANY, "checkpoint", "with --resume: train on a data file that is not the text "
            "the checkpoint was trained on; its validation history (another text's losses) starts again",
            metavar=None),
    Setting("workers", None, int, (lambda v: 1 <= v <= 256, "from 1 to 256"), "machine", "processes that share "
            "each batch's documents and each evaluation's, with the same results whatever their number",
            shown="this machine's cores, at most 8"),
    Setting("samples", D["samples"], int, AT_LEAST_0, "sampling", "documents to generate"),
    Setting("temperature", D["temperature"], float, ABOVE_0, "sampling", "sampling temperature > 0", "X"),
    Setting("top_k", D["top_k"], int, AT_LEAST_1, "sampling", "sample only from the k most likely tokens",
            shown="all"),
    Setting("prefix", D["prefix"], str, ANY, "sampling", "complete documents that start with this text", "TEXT"),
]
# What each group is: its heading in --help, and what a checkpoint does with it. A checkpoint keeps the
# KEPT groups; --resume takes them all back and --load those of LOADED; an option that differs from a
# checkpoint's FIXED setting is refused, as the weights or the data's split would not be the same run's.
GROUPS = {"data": "data and model", "split": "data and model", "model": "data and model", "training": "training",
          "watching": "watching a run (a checkpoint keeps these; --resume goes on with them)",
          "inside": "looking inside a model (fresh, or with --load or --resume)", "saving": "checkpoints",
          "checkpoint": "checkpoints", "sampling": "sampling",
          "machine": "this machine (a checkpoint does not keep these)"}
KEPT = ("data", "split", "model", "training", "watching", "saving", "sampling")
LOADED = ("data", "split", "model", "training", "sampling")
FIXED = ("split", "model")
ACTIONS = ("inside", "checkpoint")      # what to do, not how: --explain, --gradcheck, --resume, --load
WRITTEN = ("save", "log")               # never taken from a checkpoint: someone else's file can name any path
KINDS = {int: "a whole number", float: "a finite number", str: "a string"}
MAX_WHOLE = 10 ** 18                    # no count of a run comes near; a 400-digit one would overflow a float


def settings_of(Engine):
    """Every Setting a run with Engine has: SETTINGS, less looking inside and --workers where the engine
    cannot, plus the engine's own options."""
    inside, spread = getattr(Engine, "inside", None), hasattr(Engine, "document_gradients")
    return [s for s in SETTINGS if (inside or s.group != "inside") and (spread or s.name != "workers")] + list(
        getattr(Engine, "options", ()))


def kept(Engine):
    """The Settings a checkpoint keeps."""
    return [s for s in settings_of(Engine) if s.group in KEPT]


def check_value(setting, value, name):
    """`value` if it keeps the setting's rule (a whole number is taken where a float is asked for, and None
    where the default is None), else DataError calling it `name` and saying what it must be."""
    kind, (test, words) = setting.kind, setting.rule
    if value is None and setting.default is None:
        return None
    if type(value) is int and abs(value) > MAX_WHOLE:       # before a float of it could overflow
        raise DataError(f"{name} must be at most {MAX_WHOLE:,} in size, got a number of {len(str(abs(value)))} "
                        f"digits")
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind or (kind is float and not math.isfinite(value)):   # bool is not int here
        raise DataError(f"{name} must be {KINDS[kind]}, got {shown(repr(value))}")
    if setting.choices and value not in setting.choices:
        raise DataError(f"{name} must be one of {', '.join(setting.choices)}, got {shown(repr(value))}")
    if not test(value):
        raise DataError(f"{name} must be {words}, got {shown(repr(value)) if kind is str else value}")
    return value


def check_together(s, name):
    """The rules between settings of a run `s`; name(key) is how errors call a setting."""
    if s["n_embd"] % s["n_head"]:              # (microgpt.GPT's rule: each head reads an equal slice)
        raise DataError(f"{name('n_embd')} {s['n_embd']} must be divisible by {name('n_head')} {s['n_head']}")
    if s["min_lr"] > s["lr"]:
        raise DataError(f"{name('min_lr')} {s['min_lr']} is above {name('lr')} {s['lr']}; the learning rate "
                        f"decays from lr down to min_lr, so min_lr must not be larger")
    if s["warmup_steps"] > s["steps"]:
        raise DataError(f"{name('warmup_steps')} {s['warmup_steps']} is more than {name('steps')} "
                        f"{s['steps']}; warm up for at most the whole run")
    if s.get("save_every") and not s.get("save"):
        raise DataError(f"{name('save_every')} needs {name('save')} PATH")


# ----------------------------------------------------------------------------------------------------
# 2. The command line, from the declarations.

class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):               # one line and exit status 2, like every other bad input
        raise DataError(f"{message}; see --help")

    def _print_message(self, message, file=None):       # argparse's own ignores a write that failed (--help
        if message:                                     # to a full disk): this one lets it be told
            (file or sys.stderr).write(message)


def build_parser(Engine, description):
    """The options of a run with Engine, one per Setting, in --help's groups. Every option defaults to None,
    "not given": resolve_settings() fills it in from a checkpoint or the declaration."""
    parser = ArgumentParser(description=description)
    groups = {}
    for s in settings_of(Engine):
        title = GROUPS.get(s.group, s.group)
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        kind = {"metavar": s.metavar, "help": s.described(), "choices": s.choices}
        if s.kind is bool:                                  # a switch: given or not
            group.add_argument(s.option, action="store_const", const=True, help=kind["help"])
        elif s.const is not None:
            group.add_argument(s.option, nargs="?", const=s.const, **kind)
        else:
            group.add_argument(s.option, type=s.kind, **kind)
    return parser


def parse_args(argv, Engine=None, description="Train a tiny GPT on a list of names (or any text file, one "
                                             "document per line) and sample new ones."):
    """Options -> argparse.Namespace. Raises DataError for an unknown option, a value of the wrong type,
    or options that cannot go together."""
    args = build_parser(Engine or MicrogptEngine, description).parse_args(argv)
    for action in ("explain", "gradcheck"):                 # not options of an engine that cannot look inside
        args.__dict__.setdefault(action, None)
    checks = [
        (args.resume is not None and args.load is not None, "give --resume or --load, not both"),
        (args.explain is not None and args.gradcheck is not None, "give --explain or --gradcheck, not both"),
        (args.load is not None and args.steps not in (None, 0),
         "--load samples from a saved model without training; use --resume PATH to train further"),
        (args.load is not None and (args.save or args.log or args.save_every),
         "--load samples without training, so --save, --save-every and --log have nothing to write"),
        (args.new_data and args.resume is None, "--new-data goes with --resume: it trains a saved model on "
                                                "another text"),
    ]
    for failed, message in checks:
        if failed:
            raise DataError(message)
    return args


def resolve_settings(args, checkpoint, path, Engine):
    """Every setting of the run: given on the command line, else kept in the checkpoint (under --load only
    the LOADED groups; never a path to WRITE: --resume saves to the file it resumes unless --save says
    otherwise), else the declaration's default; then each checked by its rule and all together. Paths
    are made absolute. Raises DataError where an option is invalid or contradicts the checkpoint's model,
    data split or step."""
    saved = checkpoint["settings"] if checkpoint else {}
    declared = {s.name: s for s in settings_of(Engine) if s.group not in ACTIONS}
    settings = {}
    for s in declared.values():
        given = getattr(args, s.name)
        taken = s.name in saved and s.name not in WRITTEN and (args.resume or s.group in LOADED)
        if given is not None and taken and s.group in FIXED and given != saved[s.name]:
            raise DataError(f"checkpoint {path} has {s.name} {saved[s.name]}, not {given}; leave out "
                            f"{s.option} or train a new model")
        settings[s.name] = given if given is not None else saved[s.name] if taken else s.default
    if args.data is None and not (checkpoint and "data" in saved):      # names.txt beside the program
        settings["data"] = os.path.join(os.path.dirname(os.path.abspath(microgpt.__file__)), settings["data"])
    if args.resume and args.save is None:
        settings["save"] = args.resume                      # the run goes on in the file it came from
    name = lambda key: declared[key].option
    settings = {key: check_value(declared[key], value, name(key)) for key, value in settings.items()}
    check_together(settings, name)
    for key in ("data", "log", "save"):             # absolute: a resumed run may start in another folder
        if settings[key]:
            settings[key] = os.path.abspath(settings[key])
    if checkpoint and args.resume and settings["steps"] < checkpoint["step"]:
        raise DataError(f"--steps {settings['steps']} is fewer than the {checkpoint['step']} steps checkpoint "
                        f"{path} has done; give more --steps to train further")
    return settings


# ----------------------------------------------------------------------------------------------------
# 3. Reading inputs: files, documents, checkpoints, each checked whole before anything is built from it.

MAX_BYTES = 256 * 2 ** 20             # a file larger than this is not a list of names (or a checkpoint of one)


def read_text(path, what, fix):
    """The whole of a UTF-8 text file as a string: a byte-order mark dropped, line ends as \\n. `what` names
    the file in errors ("data file") and `fix` says what to do instead. Raises DataError if it is missing,
    a folder, not a regular file (a pipe or a device would block or never end), a file that does not end
    (/proc/kmsg is "regular"; read without blocking, it says so), over MAX_BYTES, unreadable or not UTF-8."""
    where = f"{what} {shown(path)}"
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{where} not found; {fix}")
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror}; {fix}")
    if stat.S_ISDIR(kind):
        raise DataError(f"{where} is a folder; {fix}")
    if not stat.S_ISREG(kind):
        raise DataError(f"{where} is not a regular file (a pipe or a device?); {fix}")
    data = read_bytes(path, where, fix)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{where} is not UTF-8 text (byte {e.start}); {fix}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_bytes(path, where, fix):
    """The bytes of a regular file, read without ever blocking: DataError if it does not end or is too big."""
    chunks, size = [], 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise DataError(f"{where} is over {MAX_BYTES // 2 ** 20} MiB, too big to be read whole; {fix}")
        finally:
            os.close(fd)
    except BlockingIOError:
        raise DataError(f"{where} has no end to read to (a stream of the system, not a file); {fix}")
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror}; {fix}")


HIDDEN_CONTROLS = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")  # bidi, BOM


def printable(c):
    """Whether character c may be a token: not a control character (tab aside), a surrogate, a line or
    paragraph separator, a bidirectional control or a byte-order mark, so that no sample can write a
    terminal escape, break a line or turn the text around it."""
    return c == "\t" or (unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp") and c not in HIDDEN_CONTROLS)


def read_docs(path):
    """microgpt.documents() of the file at `path`, at least one, and the SHA-256 of its text (hex). Raises
    DataError if there is none, a character is not printable(), or the file cannot be read as text."""
    fix = "pass --data a UTF-8 text file, one document per line"
    text = read_text(path, "data file", fix)
    bad = sorted(c for c in set(text) - {"\n"} if not printable(c))
    if bad:
        line = next(i for i, row in enumerate(text.split("\n"), 1) if bad[0] in row)
        raise DataError(f"data file {shown(path)} line {line} has {shown(bad[0])}, a control character; microgpt "
                        f"learns printable text: remove it")
    docs = microgpt.documents(text)
    if not docs:
        raise DataError(f"data file {shown(path)} has no non-blank line; put one document per line")
    return docs, hashlib.sha256(text.encode("utf-8")).hexdigest()


CHECKPOINT_FORMAT = "microgpt checkpoint 2"
TRAIN_FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_sec", "elapsed_s", "update_ratio", "clipped")
EVAL_FIELDS = ("step", "train_loss", "val_loss", "seconds")


class Checked:
    """A description of a JSON value, held against one by check(value, where) -> the value as used
    (numbers as floats unless whole, rows as dicts), or DataError naming where it is not as described."""

    def __init__(self, what, test=lambda v: True, convert=lambda v: v):
        self.what, self.test, self.convert = what, test, convert

    def check(self, value, where):
        if not self.test(value):
            raise DataError(f"{where} is not {self.what}")
        return self.convert(value)


def number(low=-math.inf, high=math.inf, whole=False, nullable=False):
    """A finite number in [low, high] (a whole one if `whole`; None too if `nullable`)."""
    kinds = (int,) if whole else (int, float)
    g = lambda x: f"{x:g}" if type(x) is float else str(x)
    what = f"{'a whole' if whole else 'a finite'} number" + (f" from {g(low)} to {g(high)}" if math.isfinite(high)
                                                             else f" of at least {g(low)}" if math.isfinite(low)
                                                             else "")
    finite = lambda v: (type(v) is float and math.isfinite(v)) or (type(v) is int and -1e308 < v < 1e308)
    ok = lambda v: type(v) in kinds and finite(v) and low <= v <= high        # (JSON's 400-digit ints too)
    return Checked(what + (" or null" if nullable else ""), lambda v: (nullable and v is None) or ok(v),
                   lambda v: v if whole or v is None else float(v))


class Each(Checked):
    """A list of `count` items (any number if None), each as `item` describes."""

    def __init__(self, item, count=None):
        super().__init__("a list" if count is None else f"a list of {count}")
        self.item, self.count = item, count

    def check(self, value, where):
        if type(value) is not list or (self.count is not None and len(value) != self.count):
            raise DataError(f"{where} is not {self.what}")
        return [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]


class Row(Checked):
    """A list of len(fields) items, field by field as described; returned as a dict by field name."""

    def __init__(self, fields):
        super().__init__(f"a row of {len(fields)} ({', '.join(fields)})")
        self.fields = fields

    def check(self, value, where):
        if type(value) is not list or len(value) != len(self.fields):
            raise DataError(f"{where} is not {self.what}")
        return {name: item.check(v, f"{where}.{name}") for (name, item), v in zip(self.fields.items(), value)}


class Object(Checked):
    """A JSON object with these keys, each as described; a key of `optional`, {key: default}, may be missing
    and then has its default."""

    def __init__(self, fields, optional=None):
        super().__init__("an object")
        self.fields, self.optional = fields, optional or {}

    def check(self, value, where):
        if type(value) is not dict:
            raise DataError(f"{where or 'the checkpoint'} is not an object")
        prefix = f"{where}." if where else ""
        missing = [key for key in self.fields if key not in value and key not in self.optional]
        if missing:
            raise DataError(f"{prefix}{missing[0]} is missing")
        return {key: item.check(value[key], prefix + key) if key in value else self.optional[key]
                for key, item in self.fields.items()}


def settings_description(Engine):
    """A checkpoint's settings, each held to its declaration; those watching and sampling may be missing."""
    rule = lambda s: Checked("a setting", convert=lambda v, s=s: check_value(s, v, f"settings.{s.name}"))
    optional = {s.name: s.default for s in kept(Engine) if s.group not in ("data", "split", "model", "training")}
    return Object({s.name: rule(s) for s in kept(Engine)}, optional)


def state_description(settings, config, step):
    """What follows the settings in a checkpoint, its lengths tied to the configuration and the step."""
    n_params = count_parameters(config["vocab_size"], settings["n_embd"], settings["n_layer"],
                                         settings["block_size"])
    shapes = microgpt.parameter_shapes(config["vocab_size"], settings["n_embd"], settings["n_layer"],
                                       settings["block_size"])
    train_row = Row({"step": number(1, step, whole=True), "loss": number(0), "lr": number(0),
                     "grad_norm": number(0), "tokens_per_sec": number(0), "elapsed_s": number(0),
                     "update_ratio": number(0, nullable=True), "clipped": number(0, 1, whole=True)})
    eval_row = Row({"step": number(1, step, whole=True), "train_loss": number(), "val_loss": number(nullable=True),
                    "seconds": number(0)})
    return Object({
        "params": Object({name: Each(Each(number(-MAX_WEIGHT, MAX_WEIGHT), cols), rows)
                          for name, (rows, cols) in shapes.items()}),
        "adam": Object({"t": number(step, step, whole=True), "m": Each(number(), n_params),
                        "v": Each(number(0), n_params)}),
        "rng_state": Row({"version": number(3, 3, whole=True), "key": Each(number(0, 2 ** 32 - 1, whole=True), 625),
                          "gauss_next": number(nullable=True)}),
        "metrics": Object({"train": Each(train_row, step), "eval": Each(eval_row)}),
    })


MAX_WEIGHT = 1e30    # far past any trained model (the default run's largest weight is about 1); around 1e90 a
                     # forward pass overflows a float (logits grow as the weights cubed), and sampling fails
SHA256 = Checked("a SHA-256 in hex or null", lambda v: v is None or (type(v) is str and len(v) == 64 and
                                                                   set(v) <= set("0123456789abcdef")))


def validate_checkpoint(state, path, size, Engine):
    """Check a checkpoint's whole content once, before anything is built from it, against its description:
    first the settings, the configuration, the vocabulary and the step, then what their sizes fix (the
    parameters, Adam's state, the random generator's state, the metrics). Returns it as used: settings
    checked, numbers as floats, metric rows as dicts, rng_state as random.setstate() takes it. `size` is
    the file's length, so that a configuration of more parameters than the file could hold is refused
    before anything is sized from it. Raises DataError naming the first problem."""
    if type(state) is not dict or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{shown(path)} is not a microgpt checkpoint ({CHECKPOINT_FORMAT}); give one saved with "
                        f"--save")
    try:
        head, config = check_head(state, Engine)
        s = head["settings"]
        n = count_parameters(config["vocab_size"], s["n_embd"], s["n_layer"], s["block_size"])
        if 2 * n > size:
            raise DataError(f"its configuration has {n:,} parameters, more than its {size:,} bytes can hold")
        rest = state_description(s, config, head["step"]).check(state, "")
        check_history(rest, head["step"])
    except DataError as e:
        raise DataError(f"checkpoint {shown(path)} is damaged: {e}")
    rng_state = (3, tuple(rest["rng_state"]["key"]), rest["rng_state"]["gauss_next"])
    return {**state, **head, **rest, "config": config, "rng_state": rng_state}


def check_head(state, Engine):
    """The settings, vocabulary, step and data's hash of a checkpoint, checked, and its configuration."""
    head = Object({"settings": settings_description(Engine), "config": Object({}), "step": number(0, whole=True),
                   "chars": Each(Checked("a single character", lambda c: type(c) is str and len(c) == 1)),
                   "data_sha256": SHA256}, optional={"data_sha256": None}).check(state, "")
    s, chars = head["settings"], head["chars"]
    check_together(s, "settings.{}".format)
    config = Object({"vocab_size": number(len(chars) + 1, len(chars) + 1, whole=True),
                     **{k: number(s[k], s[k], whole=True) for k in ("n_embd", "n_head", "n_layer", "block_size")}
                     }).check(state["config"], "config")
    if not chars or len(set(chars)) != len(chars) or chars != sorted(chars):
        raise DataError("chars are not distinct characters in sorted order, as the tokenizer makes them")
    if not all(map(printable, chars)):
        raise DataError(f"chars has {shown(next(c for c in chars if not printable(c)))}, a control character")
    if head["step"] > s["steps"]:
        raise DataError(f"step {head['step']} is more than settings.steps {s['steps']}")
    return head, config


def check_history(rest, step):
    """What a description of one value cannot say: rows in order, the random state's position in range."""
    if rest["rng_state"]["key"][-1] > 624:
        raise DataError("rng_state is not a state of random.Random (its position is past 624)")
    if [row["step"] for row in rest["metrics"]["train"]] != list(range(1, step + 1)):
        raise DataError(f"metrics.train is not the rows of steps 1 to {step} in order")
    steps = [row["step"] for row in rest["metrics"]["eval"]]
    if steps != sorted(set(steps)):
        raise DataError("metrics.eval is not rows in order of their step")


def load_checkpoint(path, Engine=None):
    """Read a checkpoint and check all of it (validate_checkpoint). Returns the checked dict. Raises
    DataError if the file cannot be read, is not JSON (a truncated file is not), or is not a whole, valid
    microgpt checkpoint."""
    text = read_text(path, "checkpoint", "give a checkpoint saved with --save")
    try:
        state = json.loads(text)
    except ValueError as e:
        raise DataError(f"checkpoint {shown(path)} is not valid JSON, perhaps truncated ({e})")
    except RecursionError:
        raise DataError(f"checkpoint {shown(path)} is JSON nested too deeply to be a checkpoint")
    return validate_checkpoint(state, path, len(text), Engine or MicrogptEngine)


def physical_memory():
    """Bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_available(Engine, settings):
    """Bytes an engine's model may use: what the engine says (a GPU's), else this machine's; None if unknown."""
    return Engine.memory_available(settings) or physical_memory()


def check_memory(Engine, settings, vocab_size, training):
    """Raise DataError, before anything is allocated, if the engine says the model (and, to train, a step)
    needs more memory than there is."""
    workers = training and settings.get("workers")          # each process holds a model: --workers given
    need = Engine.memory_needed(settings, vocab_size, training) * (workers or 1)
    have = memory_available(Engine, settings)
    if have and need > have:
        n = count_parameters(vocab_size, settings["n_embd"], settings["n_layer"], settings["block_size"])
        raise DataError(f"a model of n_embd {settings['n_embd']}, n_layer {settings['n_layer']} and block_size "
                        f"{settings['block_size']} (batch {settings['batch_size']}) has {n:,} parameters and "
                        f"needs about {need / 1e9:,.1f} GB here" + (f" in {workers} processes" if workers else "") +
                        f"; this machine has {have / 1e9:,.1f} GB; choose a smaller model or batch" +
                        (" or fewer --workers" if workers else ""))


def read_inputs(args, Engine):
    """The checked inputs of a run, before anything is built: (checkpoint or None, settings, documents,
    tokenizer, the data's SHA-256). Raises DataError for bad input."""
    path = args.resume or args.load
    checkpoint = load_checkpoint(path, Engine) if path else None
    settings = resolve_settings(args, checkpoint, path, Engine)
    docs, sha256 = read_docs(settings["data"])
    if checkpoint and args.resume and not args.new_data and checkpoint["data_sha256"] not in (None, sha256):
        raise DataError(f"data file {shown(settings['data'])} is not the text checkpoint {shown(path)} was trained "
                        f"on (its SHA-256 differs), so the run would not go on as it was; give --new-data to train "
                        f"it on this text all the same (its validation history starts again), or resume with its "
                        f"own text")
    tokenizer = microgpt.Tokenizer(checkpoint["chars"]) if checkpoint else microgpt.Tokenizer.from_docs(docs)
    unknown = sorted(set("".join(docs)) - set(tokenizer.chars))
    if unknown and args.resume:
        raise DataError(f"{shown(settings['data'])} has characters checkpoint {shown(path)} does not know "
                        f"({shown(repr(''.join(unknown[:10])))}); train a new model on it instead of resuming")
    for option, text in (("--explain", args.explain or ""), ("--gradcheck", args.gradcheck or ""),
                         ("--prefix", settings["prefix"])):
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            raise DataError(f"{option} {shown(repr(text))} has characters the model does not know: "
                            f"{shown(repr(''.join(unknown)))}")
    if len(settings["prefix"]) >= settings["block_size"]:
        raise DataError(f"--prefix is {len(settings['prefix'])} characters; it must be shorter than block_size "
                        f"{settings['block_size']}")
    return checkpoint, settings, docs, tokenizer, sha256


# ----------------------------------------------------------------------------------------------------
# 4. Writing: checkpoints, whole or not at all.

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def hidden(path, suffix):
    """The hidden file beside `path` with this suffix: .NAME.tmp (a save's temporary), .NAME.lock (the claim)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{suffix}")


def write_atomically(path, text):
    """Write text to path through a temporary file beside it and a rename, so that a crash at any moment
    leaves either the old file or the new one, never half of one. The temporary file has one name per
    path, so a save killed half-way leaves nothing that the next save does not remove; it is made anew
    each time (O_EXCL), so a link planted at its name is removed, never followed. A run writes only the
    files it claimed (Claim), so no other run saves to the same path meanwhile. Raises OutputError if
    it cannot."""
    tmp = hidden(path, "tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)                                  # a killed save's leftover, or a planted link
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if os.path.isfile(path):
                os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))     # the file replaced keeps its mode
            f.write(text)
            f.flush()
            os.fsync(f.fileno())                            # the bytes are on disk before the rename
        os.replace(tmp, path)                               # atomic: readers see the old file or the new
    except BaseException as e:
        try:
            if os.path.lexists(tmp) and not os.path.isdir(tmp):
                os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {shown(path)}: {e.strerror}", path)
        raise


def check_output(path, option, kind, inputs):
    """Raise DataError now, before any work, unless `path` can take this output: its folder exists, it is
    not an input of the run (`inputs`, {path: what it is}), and what is there now, if anything, is a
    regular file of the same kind (`kind`: "checkpoint" or "log") or empty. The one place that decides
    what an output may replace: a checkpoint a newer one of the run, a log a log, nothing else."""
    folder, where = os.path.dirname(os.path.abspath(path)), f"{option} {shown(path)}"
    if path.endswith(os.sep):
        raise DataError(f"{where} names a folder; give a file name")
    if not os.path.isdir(folder):
        raise DataError(f"{where}: folder {shown(folder)} does not exist")
    for other, what in inputs.items():
        if same_file(path, other):
            raise DataError(f"{where} is {what}; an output never replaces an input: give another file name")
    if os.path.isdir(path):
        raise DataError(f"{where} is a folder; give a file name")
    if os.path.lexists(path):
        if kind == "log" and os.path.islink(path):
            raise DataError(f"{where} is a link; give the log's own file name (a log never writes through a link)")
        if not os.path.isfile(path):
            raise DataError(f"{where} is not a regular file (a pipe or a device?); give a file name")
        if not is_kind(path, kind):
            raise DataError(f"{where} is a file that is not a microgpt {kind}; a {kind} replaces only a {kind}: "
                            f"give a new file name")
    tmp = hidden(path, "tmp")
    if os.path.lexists(tmp) and not os.path.islink(tmp) and not leftover(tmp):
        raise DataError(f"{where}: {shown(tmp)}, the name its saves are written under, is there and is not a "
                        f"leftover of one; remove it or give another file name")


def leftover(tmp):
    """Whether the file at a save's temporary name is what a killed save leaves: a regular file of one link,
    empty or the start of a checkpoint (a link there is removed, never followed, whatever it points to)."""
    info = os.stat(tmp, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        return False
    with open(tmp, "rb") as f:
        start = f.read(32)
    return start in (b"", b'{"format": "microgpt checkpoint'[:len(start)])


def same_file(a, b):
    """Whether two paths name one file: the same path once links are resolved, or the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:                                         # one of them does not exist (yet)
        return False


def is_kind(path, kind):
    """Whether the file at path is empty, or a microgpt checkpoint (JSON with its "format", of any version)
    or a microgpt log (its header row)."""
    try:
        if os.path.getsize(path) == 0:
            return True
        if kind == "log":
            with open(path, "rb") as f:
                return f.readline().decode("utf-8", "replace").strip() == ",".join(CsvLog.COLUMNS)
        state = json.loads(read_text(path, "checkpoint", ""))
    except (OSError, ValueError, RecursionError, DataError):
        return False
    return type(state) is dict and str(state.get("format", "")).startswith("microgpt checkpoint")


class Claim:
    """A run's hold on one output file while it runs: an exclusive lock (fcntl.flock, where the system has
    it) on the hidden file .NAME.lock beside it, so that a second run writing the same file stops before
    any work with a line that names the clash, instead of the two saves renaming each other's files away.
    The lock file is made anew, or is a lock of microgpt's already (a regular file of one link holding a
    process number, left by a run that was killed): anything else at its name is refused, never written.
    A run that is killed loses its lock with it; release() removes the lock file."""

    def __init__(self, path, option):
        self.path, where = hidden(path, "lock"), f"{option} {shown(path)}"
        for _ in range(3):                                  # a lock file a finishing run removes: take the next
            self.fd = self.open(where)
            if fcntl is None or self.lock(where):
                return
        raise DataError(f"{where}: cannot hold {shown(self.path)}; give another file name")

    def open(self, where):
        """The lock file's descriptor: made anew, or the one a killed run left."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
        except FileExistsError:
            pass
        except OSError as e:
            raise DataError(f"{where}: cannot write in {shown(os.path.dirname(self.path))} ({e.strerror})")
        foreign = DataError(f"{where}: {shown(self.path)} is there and is not a lock of microgpt's; remove it or "
                            f"give another file name")
        try:
            fd = os.open(self.path, os.O_RDWR | NOFOLLOW)   # a link is refused here (ELOOP)
        except OSError:
            raise foreign
        info, held = os.fstat(fd), os.read(fd, 32).strip()
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or (held and not held.isdigit()):
            os.close(fd)
            raise foreign
        return fd

    def lock(self, where):
        """Take the lock; True if it is still the file at the path (else another run replaced it: try again)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.lseek(self.fd, 0, os.SEEK_SET)
            other = os.read(self.fd, 32).decode("ascii", "replace").strip() or "another"
            os.close(self.fd)
            raise DataError(f"{where}: process {shown(other)} is writing it now (it holds {shown(self.path)}); "
                            f"wait for it to end or give another file name")
        try:
            if os.fstat(self.fd).st_ino != os.stat(self.path, follow_symlinks=False).st_ino:
                os.close(self.fd)
                return False
        except OSError:
            os.close(self.fd)
            return False
        try:                                                # who holds it, for the line of a second run
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        except OSError:                                     # (a full disk: the lock holds without it)
            pass
        return True

    def release(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


def checkpoint_text(engine_state, chars, settings, step, rng_state, metrics, data_sha256=None):
    """A checkpoint as JSON text: the engine's state (its parameters and Adam's), the configuration, the
    vocabulary, the kept settings, the step, the random generator's state, the metrics (rows as lists in
    field order) and the SHA-256 of the data's text, so that a resume can tell the data changed. JSON keeps
    every float exactly."""
    model = {key: settings[key] for key in ("n_embd", "n_head", "n_layer", "block_size")}
    return json.dumps({
        "format": CHECKPOINT_FORMAT, "config": {"vocab_size": len(chars) + 1, **model}, "chars": list(chars),
        "settings": settings, "step": step, "params": engine_state["params"], "adam": engine_state["adam"],
        "rng_state": rng_state, "data_sha256": data_sha256,
        "metrics": {"train": [[row[f] for f in TRAIN_FIELDS] for row in metrics["train"]],
                    "eval": [[row[f] for f in EVAL_FIELDS] for row in metrics["eval"]]}}, allow_nan=False)


# ----------------------------------------------------------------------------------------------------
# 5. Watching a run: one part per job, put together in Watch.on_step, train()'s callback.

def format_seconds(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


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
        """On a terminal, the status line: `fields`, (text, rank) pairs, fitted() to the terminal's width."""
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
    COLUMNS = ("kind",) + TRAIN_FIELDS + ("grad_clip", "train_loss", "val_loss", "val_ppl")

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
    """train()'s on_step for a run `r`: records each step's metrics row, shows where the run is, and at their
    steps evaluates (with samples), judges the evaluation and saves; its answer is whether a stop was asked
    for. On a terminal one status line rewrites itself each step and only evaluations (and --print-every's
    steps, if given) stay; elsewhere (a pipe, a file) every print_every-th step is a line."""

    def __init__(self, r, stop, log):
        s = r.settings
        self.r, self.s, self.stop, self.csv = r, s, stop, log
        self.step_done, self.clock = r.step, Clock(r.metrics)
        self.print_every = s["print_every"] or (None if r.console.tty else 1 if s["steps"] <= 1000 else
                                                s["steps"] // 100)
        last_eval = r.metrics["eval"][-1]["step"] if r.metrics["eval"] else 0      # resuming: the steps since
        self.losses_since_eval = [row["loss"] for row in r.metrics["train"] if row["step"] > last_eval]
        self.weights_before = flat(r.engine.weights()) if log else None
        self.t_last = time.perf_counter()
        self.judge = Judge(r)

    def on_step(self, step, loss, lr, grad_norm, batch):
        self.step_done = step + 1
        self.r.metrics["train"].append(self.record(loss, lr, grad_norm, batch))
        if self.csv:
            self.csv.train(self.r.metrics["train"][-1])
        self.losses_since_eval.append(loss)
        self.show(loss, lr)
        last = self.step_done == self.s["steps"]
        if self.step_done % self.s["eval_every"] == 0 or last:
            self.evaluate()
        if self.r.workers and self.r.workers.failure:      # (its evaluation done: a resume goes on exactly)
            raise self.r.workers.failure
        if self.s["save_every"] and self.step_done % self.s["save_every"] == 0 and not last:
            self.r.save(self.step_done)
        self.t_last = time.perf_counter()
        return self.stop.requested

    def record(self, loss, lr, grad_norm, batch):
        """The metrics row of the step just taken."""
        n_tokens = sum(microgpt.n_predicted(tokens, self.s["block_size"]) for tokens in batch)
        ratio = None
        if self.weights_before is not None:                 # only with a log: it copies every weight
            after = flat(self.r.engine.weights())
            ratio, self.weights_before = update_ratio(self.weights_before, after), after
        clipped = int(self.s["grad_clip"] is not None and grad_norm > self.s["grad_clip"])
        return {"step": self.step_done, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_sec": n_tokens / max(time.perf_counter() - self.t_last, 1e-9),
                "elapsed_s": self.clock.before + self.clock.training(), "update_ratio": ratio, "clipped": clipped}

    def show(self, loss, lr):
        """The step's line: permanent every print_every steps and at the last (where there is a print_every),
        else, on a terminal, the status line: a smoothed loss and the speed beside the time left."""
        n, N = self.step_done, self.s["steps"]
        left = format_seconds(self.time_left())
        if self.print_every and (n % self.print_every == 0 or n == N):
            self.r.console.line(f"step {n:4d} / {N:4d} | loss {loss:.4f} | lr {lr:.5f} | {left} left")
            return
        recent = [row["loss"] for row in self.r.metrics["train"][-20:]]
        speed = self.r.metrics["train"][-1]["tokens_per_sec"]
        # Each field with its rank: the order in which they give way to a narrow terminal, the highest first.
        self.r.console.status([(f"step {n:4d} / {N:4d}", 0), (f"loss {sum(recent) / len(recent):.4f}", 0),
                               (f"(mean of {counted(len(recent), 'step')})", 4), (f"lr {lr:.5f}", 2),
                               (f"{speed:,.0f} tokens/s", 3), (f"{left} left", 1)])

    def time_left(self):
        """Seconds the run has left: its steps to go at this session's pace, and its evaluations to go at
        theirs. Before the first, an evaluation is reckoned as its documents and samples at a third of a
        training step's time per document (a forward pass without a graph, against forward, backward and
        Adam's update)."""
        n, N, every = self.step_done, self.s["steps"], self.s["eval_every"]
        per_step = self.clock.training() / (n - self.r.step)
        evaluations = N // every - (n - 1) // every + (1 if N % every else 0)     # this step's included
        done = self.clock.evaluations
        per_eval = (self.clock.eval_seconds / done if done else
                    per_step / self.s["batch_size"] * (len(self.r.eval_docs) + self.s["eval_samples"]) / 3)
        return per_step * (N - n) + per_eval * evaluations

    def evaluate(self):
        """Validation loss now, beside the mean training loss since the last evaluation; then a few
        samples, drawn from a generator seeded by the seed and the step alone, so that they change
        nothing else the run does (the final samples come from the run's own generator)."""
        if not self.losses_since_eval:
            return
        t0 = time.perf_counter()
        row = evaluation(self.r, self.step_done, self.losses_since_eval)
        row["seconds"] = time.perf_counter() - t0
        self.clock.eval_seconds += row["seconds"]
        self.clock.evaluations += 1
        self.r.metrics["eval"].append(row)
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

    def __init__(self, r):
        self.r, self.best, self.rises, self.said = r, None, 0, False
        for row in r.metrics["eval"]:                       # a resumed run goes on from its history
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
        r = self.r
        if self.judged(row):
            if r.best_path:
                r.save(row["step"], r.best_path)
            return
        best = self.best
        if self.said or self.rises < 2 or best is None or row["train_loss"] >= best["train_loss"]:
            return
        self.said = True
        kept = (f"the best model is kept in {shown(r.best_path)}: --load it to sample from it" if r.best_path else
                "give --save PATH to keep the best model of a run")
        r.console.line(f"overfitting: since step {best['step']} the validation loss has risen from its best, "
                       f"{best['val_loss']:.4f}, to {row['val_loss']:.4f}, while the training loss fell from "
                       f"{best['train_loss']:.4f} to {row['train_loss']:.4f}: the model is memorising its "
                       f"training documents rather than learning what they have in common; {kept}")


def evaluation(r, step, train_losses):
    """Print the evaluation at `step` and its samples; return its metrics row (without seconds)."""
    s, console = r.settings, r.console
    train_loss = sum(train_losses) / len(train_losses)
    text = f"eval {step:4d} | train loss {train_loss:.4f} (mean of {counted(len(train_losses), 'step')})"
    val_loss = None
    if r.eval_docs:
        shared = {}
        try:
            if r.workers:                                                               # (the same numbers)
                shared = {"nlls": r.workers.spread("nlls", [r.tokenizer.encode(doc) for doc in r.eval_docs])}
        except WorkerError as e:            # done here instead, as one process would; then the run stops
            r.workers.failure = e
        val_loss, _ = r.engine.evaluate(r.eval_docs, **shared)
        text += f" | val loss {val_loss:.4f} | val perplexity {perplexity_text(val_loss)}"
    rng = random.Random(f"{s['seed']}:{step}")
    texts = [r.engine.sample(rng, s["temperature"], s["top_k"], s["prefix"]) or "''"
             for _ in range(s["eval_samples"])]
    console.line(text)
    if texts:
        console.line(f"  samples at step {step}: {', '.join(texts)}")
    return {"step": step, "train_loss": train_loss, "val_loss": val_loss}


def perplexity_text(loss):
    """exp(loss) as printed: two decimals, or three digits and an exponent once it is large (1.2e+300, inf)."""
    ppl = perplexity(loss)
    return f"{ppl:.2f}" if ppl < 1e6 else f"{ppl:.3g}"


def flat(weights):
    """{name: rows} -> one list of floats, in order."""
    return [x for rows in weights.values() for row in rows for x in row]


def standing(r):
    """Where a run ends against the baselines: its last validation loss beside theirs, and its best."""
    evals = [row for row in r.metrics["eval"] if row["val_loss"] is not None]
    if not evals or not r.baselines:
        return []
    last, b = evals[-1], r.baselines
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
    best = min(evals, key=lambda row: row["val_loss"])
    if best is not last:
        lines.append(f"  its best: val loss {best['val_loss']:.4f} at step {best['step']}" +
                     (f", kept in {shown(r.best_path)}" if r.best_path else ""))
    return lines


def loss_curve(metrics, baselines=None, width=64, height=10):
    """The run's loss curve as text lines: '.' is the training loss, smoothed by a running mean over
    about a twentieth of the run and averaged per column; 'o' is a validation loss; '-' rows mark the
    baselines' losses (the bigram always, the others where they fall in the picture)."""
    train = [(row["step"], row["loss"]) for row in metrics["train"]]
    evals = [(row["step"], row["val_loss"]) for row in metrics["eval"] if row["val_loss"] is not None]
    if len(train) < 2:
        return []
    window = max(1, len(train) // 20)
    running, smoothed = 0.0, []
    for i, (step, loss) in enumerate(train):
        running += loss - (train[i - window][1] if i >= window else 0.0)
        smoothed.append((step, running / min(i + 1, window)))
    first, last = train[0][0], train[-1][0]
    width = min(width, last - first + 1)
    column = lambda step: min(width - 1, (step - first) * width // (last - first + 1))
    sums, counts = [0.0] * width, [0] * width
    for step, loss in smoothed:
        sums[column(step)] += loss
        counts[column(step)] += 1
    points = [(col, sums[col] / counts[col], ".") for col in range(width) if counts[col]]
    points += [(column(step), loss, "o") for step, loss in evals]
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
    lines = [f"loss curve: . training loss (running mean of {counted(window, 'step')}), o validation loss" +
             (", - a baseline's validation loss" if baselines else "")]
    for r, cells in enumerate(grid):
        label = f"{hi:.2f}" if r == 0 else f"{lo:.2f}" if r == height - 1 else ""
        lines.append(f"{label:>6} |{''.join(cells)}" + (f" {', '.join(names[r])}" if names[r] else ""))
    lines.append(f"{'':>6} +{'-' * width}")
    left, right = f"step {first}", f"step {last}"
    lines.append(f"{'':>8}{left}{right:>{max(len(right) + 1, width - len(left))}}")
    return lines


# ----------------------------------------------------------------------------------------------------
# 6. Printing what looking inside found (the numbers: inside.py).

SHADES = " .:-=+*#%@"         # the attention heatmap: weight 0-10% -> ' ', ..., 90-100% -> '@'


def print_explanation(r, doc, x, note=""):
    """Print explain()'s numbers `x` for `doc`: the next-token table, the attention heatmaps and the
    traced step."""
    tokenizer, log = r.tokenizer, r.log
    name = lambda t: "BOS" if t == tokenizer.BOS else repr(tokenizer.chars[t])
    show = lambda t: f"{name(t):>5} ({t:2d})"
    known = ("a training document" if doc in set(r.train_docs) else "held out for validation" if doc in
             set(r.val_docs) else "in neither the training nor the validation documents")
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
        log(f"  cut: block_size {r.settings['block_size']} leaves out the last "
            f"{counted(len(x['tokens']) - 1 - len(losses), 'target')}")
    print_attention(r, x, [name(t).strip("'") for t in x["tokens"][:len(losses)]])
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


def print_attention(r, x, labels):
    """The attention heatmaps of explain(): a row per position, a column per position it reads."""
    s, log = r.settings, r.log
    legend = ", ".join(f"'{c}' {10 * i}%" for i, c in enumerate(SHADES) if i)
    log(f"attention: each row is a position and where it looks, over the positions so far; above the diagonal, "
        f"the future: masked. Shades: ' ' under 10%, {legend} or more")
    for layer in range(s["n_layer"]):
        for head in range(s["n_head"]):
            log(f"  layer {layer} head {head}  " + "".join(f"{label:>4}" for label in labels))
            for t, label in enumerate(labels):
                weights = x["attention"][t][layer * s["n_head"] + head]
                cells = "".join(f"  {SHADES[min(9, int(w * 10))] * 2}" for w in weights)
                top = max(range(len(weights)), key=weights.__getitem__)
                log(f"  {t:2d} {label:>3} reads  {cells:<{4 * len(labels)}}  most: {labels[top]} {weights[top]:.0%}")


class GradcheckPrinter:
    """gradcheck()'s on_matrix: each matrix's line as soon as it is checked (the first with the heading), and
    on a terminal a status line of how long is left, so that a larger model's check is seen to work."""

    def __init__(self, r, doc):
        self.r, self.doc, self.start = r, doc, time.perf_counter()

    def __call__(self, name, m, done, total):
        r = self.r
        if not hasattr(self, "rows"):
            self.rows = True
            r.console.line(f"gradcheck {shown(repr(self.doc))}: backward() against central finite differences, "
                           f"(L(p+h) - L(p-h)) / 2h with h = 1e-5, on {total:,} entries among those the "
                           f"document reaches (two forward passes each)")
            r.console.line("  matrix             checked (non-zero) / reached / all    worst relative error")
        r.console.line(f"  {name:<16} {m['checked']:>5} ({m['nonzero']:>5}) / {m['reached']:>6} / {m['total']:<6} "
                       f"{m['worst']:10.1e}")
        seconds = time.perf_counter() - self.start
        r.console.status(f"gradcheck: {done:,} of {total:,} entries, {format_seconds(seconds / done * (total - done))} "
                         f"left")
        if r.log is print:
            sys.stdout.flush()                          # a pipe sees each line as it comes, not at the end


def print_verdict(r, report, tolerance=1e-4):
    """The gradient check's verdict. Returns the exit status: 0, or 1 if a relative error is over the
    tolerance."""
    name, worst = max(((name, m["worst"]) for name, m in report.items()), key=lambda item: item[1])
    if worst > tolerance:
        r.console.line(f"gradcheck FAILED: {name} is off by a relative {worst:.1e}, over the tolerance "
                       f"{tolerance:.0e}: backward() and the finite differences disagree there")
        return 1
    r.console.line(f"gradcheck passed: the worst relative error is {worst:.1e} ({name}), under the tolerance "
                   f"{tolerance:.0e}")
    return 0


# ----------------------------------------------------------------------------------------------------
# 7. Worker processes (--workers): a batch's documents, and an evaluation's, shared among processes.
# The engine adds the documents' parts up in their order, so the numbers are the same whoever computed
# each part (MicrogptEngine.added, MicrogptEngine.evaluate).

class WorkerError(Exception):
    """A worker process died or failed: main() prints the message on one line and exits with status 70,
    after the run saved its last good state."""


def cores():
    """The cores this process may run on (its CPU affinity where the system says, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


WORKER = "import sys; sys.path[0] = sys.argv[1]; import workbench; workbench.worker_main()"   # (not the cwd)


def worker_main():
    """A worker process (WORKER): reads pickled messages on stdin and answers on stdout. The first names
    the engine (its module's file and class) and the model's settings and characters; each of the others
    sends weights and documents and is answered with each document's part (engine.document_gradients or
    document_nlls), or the error that stopped it. Stdin's end, which comes however the run's process ended
    (killed included), ends it. It has a session of its own, so a terminal's Ctrl-C and a signal to the
    run's process group reach only the run, which finishes its step and closes the pipes."""
    gc.disable()                            # as MicrogptEngine.train does: a graph has no cycle to collect
    parent = os.getppid()

    def orphaned():                         # the run killed mid-share: the share is not waited for
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())     # a stray print cannot break a message
    try:
        (path, name, settings, chars), _ = read_message(stdin)
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
        if module.__spec__ is spec:
            spec.loader.exec_module(module)
        engine = getattr(module, name)(settings, microgpt.Tokenizer(chars), random.Random(0))
        while True:
            (kind, batch, n_tokens), (weights,) = read_message(stdin)
            try:
                engine.set_weights(unpacked(weights))
                if kind == "gradients":
                    parts = engine.document_gradients(batch, n_tokens)
                    answer, blobs = ("done", [loss for loss, _ in parts]), [packed(grads) for _, grads in parts]
                else:
                    answer, blobs = ("done", engine.document_nlls(batch)), []
            except Exception as e:                          # (MemoryError included) the run says it
                answer, blobs = ("failed", f"{type(e).__name__}: {e}"), []
            write_message(stdout, answer, blobs)
    except (EOFError, OSError):                             # the run closed the pipe, or is gone
        return


def write_message(stream, message, blobs=()):
    """A message: `message` pickled, with the lengths of `blobs` (bytes), which follow it as they are."""
    pickle.dump((message, [len(blob) for blob in blobs]), stream, pickle.HIGHEST_PROTOCOL)
    for blob in blobs:
        stream.write(blob)
    stream.flush()


def read_message(stream):
    """(message, blobs) that write_message() wrote. Raises EOFError if the stream ends first."""
    message, lengths = pickle.load(stream)
    blobs = [stream.read(n) for n in lengths]
    if any(len(blob) != n for blob, n in zip(blobs, lengths)):
        raise EOFError("the stream ended inside a message")
    return message, blobs


class Workers:
    """n processes, this one and n - 1 workers (WORKER) started once: each of spread()'s calls gives every
    process an equal, consecutive share of the documents (this one the first) and returns each document's
    part in their order. close() ends them all; a worker that outlives its closed pipe by a second is
    killed."""

    def __init__(self, n, r, stop=None):
        self.n, self.r, self.stop, self.processes, self.failure = n, r, stop, [], None

    def start(self):
        r, here = self.r, os.path.dirname(os.path.abspath(__file__))
        Engine = r.Engine
        hello = (os.path.abspath(sys.modules[Engine.__module__].__file__), Engine.__qualname__,
                 {key: r.settings[key] for key in ("n_embd", "n_head", "n_layer", "block_size")}, r.tokenizer.chars)
        for _ in range(self.n - 1):
            errors = tempfile.TemporaryFile()              # what a worker says if it fails, for the message
            try:
                process = subprocess.Popen([sys.executable, "-c", WORKER, here], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
            except OSError as e:                            # too many processes or open files, no memory
                raise WorkerError(f"could not start worker process {len(self.processes) + 1} of {self.n - 1} "
                                  f"({e.strerror}); give fewer --workers")
            process.errors = errors
            self.processes.append(process)
            self.send(process, hello)

    def send(self, process, message, blobs=()):
        try:
            write_message(process.stdin, message, blobs)
        except OSError:
            raise self.died(process)

    def died(self, process):
        """The WorkerError of a worker whose pipe broke: how it ended, if it did, and its last word."""
        try:
            how = f"died ({exit_description(process.wait(1))})"
        except subprocess.TimeoutExpired:
            how = "stopped answering"
        process.errors.seek(0)
        said = process.errors.read().decode("utf-8", "replace").strip().splitlines()
        return WorkerError(f"worker process {process.pid} {how}" + (f": {shown(said[-1])}" if said else ""))

    def answer(self, process):
        """A worker's answer, waited for; if a stop was asked for (Ctrl-C, SIGTERM) and the worker has not
        answered 10 seconds later (stopped, or stuck), WorkerError."""
        asked = None
        while not select.select([process.stdout], [], [], 0.25)[0]:
            if self.stop is not None and self.stop.requested:
                asked = asked or time.monotonic()
                if time.monotonic() - asked > 10:
                    raise WorkerError(f"worker process {process.pid} did not answer within 10 s of the stop")
        return read_message(process.stdout)

    def spread(self, kind, batch, n_tokens=None):
        """Each document's part of `kind` ("gradients" or "nlls") for batch (lists of token ids), in order.
        Raises WorkerError if a worker died or failed."""
        engine, shares = self.r.engine, shared_out(batch, self.n, self.r.settings["block_size"])
        weights = packed(flat(engine.weights()))
        sent = [process for process, share in zip(self.processes, shares[1:]) if share]
        for process, share in zip(self.processes, shares[1:]):
            if share:
                self.send(process, (kind, share, n_tokens), [weights])
        parts = engine.document_gradients(shares[0], n_tokens) if kind == "gradients" else \
            engine.document_nlls(shares[0])
        for process in sent:
            try:
                (status, answer), blobs = self.answer(process)
            except (EOFError, OSError, pickle.UnpicklingError):
                raise self.died(process)
            if status == "failed":
                raise WorkerError(f"worker process {process.pid} failed: {answer}")
            parts += list(zip(answer, map(unpacked, blobs))) if kind == "gradients" else answer
        return parts

    def close(self):
        for process in self.processes:
            for pipe in (process.stdin, process.stdout):
                try:
                    pipe.close()                            # the worker reads the end and returns
                except OSError:
                    pass
        for process in self.processes:
            try:
                process.wait(1)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.errors.close()
        self.processes = []


def packed(floats):
    """Floats as the bytes of their doubles, every bit kept: pickled far faster than a list (PyPy's pickle
    turns even an array into one)."""
    return array.array("d", floats).tobytes()


def unpacked(data):
    """packed()'s floats back, as an array."""
    floats = array.array("d")
    floats.frombytes(data)
    return floats


def shared_out(batch, n, block_size):
    """batch (lists of token ids) cut into n consecutive shares of about equal work, a document's work being
    the positions it is scored on (microgpt.n_predicted): share i ends at the document whose middle is
    nearest i / n of all the work; each share has a document while there are enough (with fewer, the
    last shares are empty)."""
    if len(batch) <= n:
        return [[tokens] for tokens in batch] + [[] for _ in range(n - len(batch))]
    work = [microgpt.n_predicted(tokens, block_size) for tokens in batch]
    total, shares, start, done = sum(work), [], 0, 0
    for i in range(1, n):
        end = start + 1                                     # one at least, and one left for each share after
        done += work[start]
        while end < len(batch) - (n - i) and (2 * done + work[end]) * n <= 2 * total * i:
            done, end = done + work[end], end + 1
        shares.append(batch[start:end])
        start = end
    return shares + [batch[start:]]


def exit_description(code):
    """A process's exit code in words: 'killed by SIGKILL', 'exit status 1'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit status {code}"


def workers_of(r, stop=None):
    """The Workers a training run shares its work with: as many as --workers says (default: the cores, at
    most 8), but no more than a batch, or an evaluation at two documents each, has work for; None for one
    process, or an engine that cannot share."""
    s = r.settings
    if not hasattr(r.Engine, "document_gradients") or r.step >= s["steps"]:
        return None
    n = s["workers"]
    if n is None:                                           # the cores, as many as the memory holds
        have = memory_available(r.Engine, s)
        n = min(8, cores(), have // r.Engine.memory_needed(s, r.tokenizer.vocab_size, True) if have else 8)
    n = min(n, max(s["batch_size"] if s["batch_size"] > 1 else 1, len(r.eval_docs) // 2))
    return Workers(n, r, stop) if n > 1 else None


# ----------------------------------------------------------------------------------------------------
# 8. The run: inputs checked, the engine built, then training, looking inside or sampling.

class Run:
    """What a run works with, all checked: the options, the settings, the documents (shuffled) and their
    split, the tokenizer, the random generator, the engine, the step and metrics to go on from, the
    checkpoint it came from (or None), and where it prints."""

    def __init__(self, **parts):
        self.__dict__.update(parts)

    def save(self, step_done, path=None):
        """Save the run at step_done to `path`, settings["save"] unless given. Raises DataError, writing
        nothing, for a state no checkpoint could hold (validate_checkpoint would refuse it): a weight past
        MAX_WEIGHT, a number that is not finite."""
        state = self.engine.state()
        worst = max((abs(x) for rows in state["params"].values() for row in rows for x in row), default=0.0)
        if not worst <= MAX_WEIGHT:
            raise DataError(f"not saved: a weight has grown to {worst:.3g}, past the {MAX_WEIGHT:g} a checkpoint "
                            f"may hold; the learning rate is far too high (--lr)")
        try:
            text = checkpoint_text(state, self.tokenizer.chars, {s.name: self.settings[s.name] for s in
                                                                 kept(self.Engine)},
                                   step_done, self.rng.getstate(), self.metrics, self.data_sha256)
        except ValueError:                                  # json's allow_nan=False: an inf or a NaN
            raise DataError("not saved: Adam's state or the metrics hold a number that is not finite; the "
                            "learning rate is far too high (--lr)")
        write_atomically(path or self.settings["save"], text)

    def release(self):
        """Let go of the output files this run claimed."""
        for claim in self.claims:
            claim.release()
        self.claims = []


def claim_outputs(args, settings):
    """Check --save and --log (check_output: what each may replace) and claim them (Claim). Returns the
    claims. --resume's checkpoint may be saved over, by the run it holds; nothing else the run reads."""
    program = {getattr(module, "__file__", "") for module in (microgpt, sys.modules[__name__])} | {sys.argv[0]}
    inputs = {path: "a file of this program" for path in program if path and os.path.isfile(path)}
    inputs[settings["data"]] = "the data file (--data)"
    outputs = [("--resume" if args.resume and not args.save else "--save", "save", "checkpoint"),
               ("--log", "log", "log")]
    if settings["save"]:
        settings = dict(settings, best=best_path(settings["save"]))
        outputs.append(("--save (its best model)", "best", "checkpoint"))
    written = [(option, settings[key]) for option, key, _ in outputs if settings[key]]
    for i, (option, path) in enumerate(written):            # no output is another, or another's hidden file
        for other_option, other in written[:i]:
            if same_file(path, other):
                raise DataError(f"{option} {shown(path)} is the file {other_option} writes too; give them "
                                f"different names")
        for _, other in written:
            if any(same_file(path, hidden(other, suffix)) for suffix in ("tmp", "lock")):
                raise DataError(f"{option} {shown(path)} is the name of a file microgpt keeps beside "
                                f"{shown(other)} while it writes it; give another file name")
    claims = []
    try:
        for option, key, kind in outputs:
            if settings[key]:
                others = dict(inputs, **({args.resume: "the checkpoint --resume reads"} if key == "log" and
                                         args.resume else {}))
                check_output(settings[key], option, kind, others)
                claims.append(Claim(settings[key], option))
    except DataError:
        for claim in claims:
            claim.release()
        raise
    return claims


def prepare(args, Engine, leader=True, log=print):
    """Everything a run starts from, all checked before any work (read_inputs, the model's memory, the
    output files, claimed); then the data shuffled and split, and the engine built (or restored). Raises
    DataError for bad input."""
    checkpoint, settings, docs, tokenizer, sha256 = read_inputs(args, Engine)
    training = not args.load and args.explain is None and args.gradcheck is None
    check_memory(Engine, settings, tokenizer.vocab_size, training)
    claims = claim_outputs(args, settings) if training and leader else []
    try:
        return build(args, Engine, log, checkpoint, settings, docs, tokenizer, sha256, claims)
    except BaseException:
        for claim in claims:
            claim.release()
        raise


def build(args, Engine, log, checkpoint, settings, docs, tokenizer, sha256, claims):
    """The run of prepare(): the documents shuffled by the seed and split, the engine built (or restored)."""
    rng = random.Random(settings["seed"])
    rng.shuffle(docs)                                       # the seed fixes the order and so the split
    train_docs, val_docs = microgpt.split_docs(docs, settings["val_fraction"])
    if not train_docs:
        raise DataError(f"--val-fraction {settings['val_fraction']} of {len(docs)} documents leaves none to "
                        f"train on; lower --val-fraction or add documents")
    engine = Engine(settings, tokenizer, rng, checkpoint)   # the first weights come from rng, as in section 9
    step, metrics = 0, {"train": [], "eval": []}
    if checkpoint:
        rng.setstate(checkpoint["rng_state"])
        if args.resume:
            step, metrics = checkpoint["step"], checkpoint["metrics"]
        if args.resume and checkpoint["data_sha256"] not in (None, sha256):    # --new-data: another text's
            metrics = {"train": metrics["train"],               # validation losses, blanked: not this text's
                       "eval": [dict(row, val_loss=None) for row in metrics["eval"]]}
    eval_docs = val_docs[:settings["eval_docs"]] if settings["eval_docs"] else val_docs
    return Run(args=args, Engine=Engine, log=log, console=Console(log), checkpoint=checkpoint, settings=settings,
               workers=None,
               docs=docs, train_docs=train_docs, val_docs=val_docs, eval_docs=eval_docs, tokenizer=tokenizer, rng=rng,
               engine=engine, step=step, metrics=metrics, data_sha256=sha256, claims=claims, baselines=None,
               best_path=best_path(settings["save"]) if val_docs else None)


def best_path(save):
    """Where a run saving to `save` keeps its best model by validation loss: model.json -> model.best.json."""
    if not save:
        return None
    root, extension = os.path.splitext(save)
    return f"{root}.best{extension}"


def baselines(tokenizer, train_docs, docs, block_size):
    """The losses on `docs` (nats per predicted token, on the positions the model is scored on) of three
    models anyone can count from the training documents: "uniform", every token equally likely (ln
    vocab_size); "unigram", each token as often as in training; "bigram", each token as often as it
    followed the token before it. Counts are over the positions the model trains on and start at 1
    (add-one, or Laplace, smoothing), so that no probability is 0."""
    V = tokenizer.vocab_size
    unigram, bigram = [1] * V, [[1] * V for _ in range(V)]          # add-one: every count starts at 1
    for tokens in map(tokenizer.encode, train_docs):
        for t in range(microgpt.n_predicted(tokens, block_size)):
            unigram[tokens[t + 1]] += 1
            bigram[tokens[t]][tokens[t + 1]] += 1
    unigram_total, bigram_totals = sum(unigram), [sum(row) for row in bigram]
    surprise = {"unigram": 0.0, "bigram": 0.0}
    n = 0
    for tokens in map(tokenizer.encode, docs):
        for t in range(microgpt.n_predicted(tokens, block_size)):
            current, target = tokens[t], tokens[t + 1]
            surprise["unigram"] -= math.log(unigram[target] / unigram_total)
            surprise["bigram"] -= math.log(bigram[current][target] / bigram_totals[current])
            n += 1
    return {"uniform": math.log(V), "unigram": surprise["unigram"] / n, "bigram": surprise["bigram"] / n}


def print_header(r):
    """What the run is about to do: data, vocabulary, model size, the loss to expect at the start."""
    s, log = r.settings, r.log
    log(f"documents: {len(r.docs):,} ({len(r.train_docs):,} for training, {len(r.val_docs):,} for validation)")
    log(f"vocab_size: {r.tokenizer.vocab_size} ({len(r.tokenizer.chars)} characters + BOS)")
    log(f"parameters: {r.engine.n_params:,} (n_embd {s['n_embd']}, n_head {s['n_head']}, n_layer {s['n_layer']}, "
        f"block_size {s['block_size']})")
    training = not r.args.load
    if training:
        log(f"loss at initialisation should be near ln(vocab_size) = {math.log(r.tokenizer.vocab_size):.4f}")
    n_cut = sum(len(doc) + 1 > s["block_size"] for doc in r.docs)
    if n_cut and training:
        log(f"cut: {counted(n_cut, 'document is', 'documents are')} longer than block_size {s['block_size']} "
            f"allows and {'trains on its' if n_cut == 1 else 'train on their'} first {s['block_size']} positions only")
    if training and r.eval_docs and r.args.explain is None and r.args.gradcheck is None:
        r.baselines = baselines(r.tokenizer, r.train_docs, r.eval_docs, s["block_size"])
        b = r.baselines
        log(f"baselines on the {counted(len(r.eval_docs), 'validation document')} each evaluation reads: uniform "
            f"{b['uniform']:.4f}, unigram {b['unigram']:.4f}, bigram {b['bigram']:.4f} (nats per token; counted from "
            f"the training documents, add-one smoothing)")
    if r.checkpoint:
        path = r.args.resume or r.args.load
        log(f"{'resuming' if r.args.resume else 'loaded'} {shown(path)} at step {r.checkpoint['step']}")
        for line in checkpoint_notes(r):
            log(line)
    if training and r.best_path and r.args.explain is None and r.args.gradcheck is None:
        log(f"the best model by validation loss is kept in {shown(r.best_path)} as the run goes")
    if getattr(r.engine, "about", None):
        log(r.engine.about)


def counted(n, one, many=None):
    """'1 step', '2 steps': a count and its noun (`one`; `many`, else one + 's'), agreed in number."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def checkpoint_notes(r):
    """What a run from a checkpoint should know before it starts: where it saves, where the checkpoint's
    own run saved and logged (never written unless given again), and whether the data changed."""
    s, saved, notes = r.settings, r.checkpoint["settings"], []
    if r.args.resume:
        notes.append(f"  it saves to {shown(s['save'])}" + (" as it goes, the file it resumes" if same_file(
            s["save"], r.args.resume) else "") + " (--save PATH saves elsewhere)")
        if saved["save"] and not same_file(saved["save"], s["save"]):
            notes.append(f"  its run saved to {shown(saved['save'])}: give --save {shown(saved['save'])} to save "
                         f"there instead")
        if saved["log"] and not s["log"]:
            notes.append(f"  its run logged to {shown(saved['log'])}; this run writes no log: give --log "
                         f"{shown(saved['log'])} to go on with it")
    if r.checkpoint["data_sha256"] not in (None, r.data_sha256):
        notes.append(f"  the data file {shown(s['data'])} is not the text the checkpoint was trained on (its "
                     f"SHA-256 differs): the documents, their order and split are this file's" +
                     (f"; its validation history starts again at step {r.step} (its validation losses were "
                      f"another text's)" if r.args.resume else ""))
    return notes


def train_run(r):
    """Train from r.step to the last step, watched; then the final save, the summary and the loss curve.
    Returns None when training finished; when a signal stopped it, after saving, 128 + the signal's number
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Raises DataError if the loss stops being finite, OutputError if
    an output fails (a full disk, a terminal gone), BrokenPipeError if the output's reader went away: each
    after saving the last good state where it can be."""
    s = r.settings
    with Stop() as stop:                        # through the final save: a signal now cannot cut it short
        watch, failure = watched_training(r, stop)
        if failure is not None:
            raise ended(r, watch, failure)
        if stop.requested:
            return interrupted(r, watch.step_done, stop.signum)
        if s["save"]:
            r.save(watch.step_done)             # first: nothing optional after it (summary, curve) can lose it
        if stop.requested:                      # (a signal during that save: it is done; stop now)
            return interrupted(r, watch.step_done, stop.signum)
    if watch.step_done:
        r.console.line(watch.clock.summary(watch.step_done))
    for line in standing(r) + loss_curve(r.metrics, r.baselines):
        r.log(line)
    if s["save"]:
        r.log(f"saved {shown(s['save'])} (sample from it later with --load {shown(s['save'])})")
    return None


def watched_training(r, stop):
    """The training of train_run(), watched by a Watch: (the watch, the exception that ended it or None)."""
    s = r.settings
    csv_log = CsvLog(s["log"], s["grad_clip"], r.metrics, r.baselines) if s["log"] else None
    watch, failure = Watch(r, stop, csv_log), None
    r.workers = workers_of(r, stop)
    # (Under PyPy a batch is shared only when --workers says so: at batch 8 two processes trained at 0.6x the
    # tokens per second of one on a 2-core machine, `make bench`; its evaluations are shared, 1.9x.)
    shared = {"gradients": lambda batch, n_tokens: r.workers.spread("gradients", batch, n_tokens)} if (
        r.workers and s["batch_size"] > 1 and (s["workers"] or sys.implementation.name != "pypy")) else {}
    try:
        if r.workers:
            r.workers.start()                   # now: they start up while the first steps train
        r.engine.train(r.train_docs, r.step, watch.on_step, s["steps"], s["lr"], s["warmup_steps"], s["min_lr"],
                       s["batch_size"], s["grad_clip"], **shared)
    except (FloatingPointError, OSError, OutputError, WorkerError) as e:
        failure = e
    finally:
        if r.workers:
            r.workers.close()
            r.workers = None
        if csv_log:
            failure = csv_log.close() or failure
    return watch, failure


def ended(r, watch, failure):
    """The exception a run that failed mid-way raises, once its last good state is saved where it can be."""
    s, step, saved = r.settings, watch.step_done, ""
    if s["save"] and getattr(failure, "path", None) != s["save"]:     # (unless the save itself failed)
        try:
            r.save(step)
            saved = f"; saved the last good state (step {step}) to {shown(s['save'])}"
        except (OutputError, DataError) as e:
            saved = f"; could not save the last good state either ({e})"
    if isinstance(failure, FloatingPointError):
        return DataError(f"training stopped at step {step + 1}: {failure}{saved}; try a lower --lr or --grad-clip")
    if isinstance(failure, BrokenPipeError):
        return failure                                      # the reader went away: nothing to tell it
    if isinstance(failure, (OutputError, WorkerError)):
        return type(failure)(f"{failure}{saved}")
    return OutputError(f"cannot write to the output ({failure.strerror}){saved}")


def interrupted(r, step, signum):
    """Save a run a signal stopped, say so (if the output still takes it) and return 128 + signum."""
    s, name = r.settings, signal.Signals(signum).name
    where = f"interrupted at step {step}" if signum == signal.SIGINT else f"stopped by {name} at step {step}"
    if s["save"]:
        r.save(step)
        text = f"{where}: saved {shown(s['save'])}; continue with {resume_command(s)}"
    else:
        text = f"{where}: nothing saved (give --save PATH to keep a run)"
    try:
        r.console.line(text)
    except OSError:                             # a closed terminal (SIGHUP): the checkpoint is what matters
        pass
    return 128 + signum


def resume_command(settings):
    """The options that go on with a run saved to settings["save"]: --resume, and every output the run had
    that a checkpoint never names (WRITTEN: --log)."""
    quoted = lambda key: shlex.quote(shown(settings[key], limit=4096))         # (whole: to be run)
    return " ".join([f"--resume {quoted('save')}"] + [f"--{key} {quoted(key)}" for key in WRITTEN
                                                        if key != "save" and settings[key]])


def sample_run(r):
    """Print settings["samples"] new documents, then how many of them are not training documents."""
    s = r.settings
    known, new = set(r.train_docs), 0
    for i in range(s["samples"]):
        text = r.engine.sample(r.rng, s["temperature"], s["top_k"], s["prefix"])
        r.log(f"sample {i + 1:2d}: {text}")
        new += text not in known                            # a validation name counts as new: never trained on
    if s["samples"]:
        of = counted(s["samples"], "sample is not a training document", "samples are not training documents")
        r.log(f"new: {new} of {of}")


def look_inside(r):
    """--explain DOC or --gradcheck DOC (default: the first training document), through the engine's inside
    module. Returns the exit status: 0, or 1 if the gradient check fails."""
    inside = importlib.import_module(r.Engine.inside)
    s, args = r.settings, r.args
    doc = (args.explain if args.explain is not None else args.gradcheck) or r.train_docs[0]
    if args.gradcheck is not None:
        return print_verdict(r, inside.gradcheck(r.engine, doc, random.Random(s["seed"]), GradcheckPrinter(r, doc)))
    step = r.checkpoint["step"] if r.checkpoint else 0                # the step the model would take next
    lr = microgpt.lr_schedule(step, s["steps"], s["lr"], s["warmup_steps"], s["min_lr"])
    note = f" (model at step {step})"
    if step >= s["steps"] or lr == 0:
        lr, note = s["lr"], f" (model at step {step}, the end of its run: its step traced at the peak lr)"
    print_explanation(r, doc, inside.explain(r.engine, doc, lr), note)
    return 0


def follow(r):
    """A process of a multi-process engine other than the first: trains its share, silent, deaf to Ctrl-C
    (the first hears it and stops everyone). Returns the exit status."""
    s = r.settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if not r.args.load:
            r.engine.train(r.train_docs, r.step, lambda *a: False, s["steps"], s["lr"], s["warmup_steps"],
                           s["min_lr"], s["batch_size"], s["grad_clip"])
    except FloatingPointError:
        return 2                                            # the first process says why
    return 0


def run(args, Engine=None, leader=True, log=print):
    """The whole program for parsed options. Returns the exit status; raises DataError for bad input."""
    r = prepare(args, Engine or MicrogptEngine, leader, log)
    try:
        if not leader:
            return follow(r)
        print_header(r)
        if args.explain is not None or args.gradcheck is not None:
            return look_inside(r)
        if not args.load:
            status = train_run(r)
            if status is not None:
                return status
        sample_run(r)
        return 0
    finally:
        r.release()


def abandon_stdout():
    """After the output failed (its reader went away, the disk is full): send the rest of stdout nowhere, so
    that not even Python's exit tries it again and prints a traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):           # (stdout is not a file: nothing to abandon)
        pass


def closed_pipe():
    """After BrokenPipeError (the reader of our output went away, as `| head` does): stdout abandoned, and
    141, a shell's status for a program its pipe stopped."""
    abandon_stdout()
    return 141


def say(program, message):
    """One line on stderr: the message with anything unprintable escaped, cut to a sane length."""
    try:
        print(f"{program}: {shown(message, 600)}", file=sys.stderr)
    except (AttributeError, OSError):                       # (stderr closed, or full: nothing more to do)
        pass


def raise_stopped(signum, frame):
    raise Stopped(signum)


def main(argv=None, Engine=None, program="microgpt", leader=True, description=None):
    """The command line of `python3 microgpt.py` (Engine None: MicrogptEngine) or of another engine's
    program. Returns the exit status: 0, 1 (a failed gradient check), 2 (bad input), 70 (a worker process
    died), 74 (an output could not be written), 128 + a signal's number (130 Ctrl-C, 143 SIGTERM, 129
    SIGHUP), 141 (the output's reader went away); each failure says why in one line on stderr."""
    def body():
        args = parse_args(argv, Engine, *([description] if description else []))
        return run(args, Engine, leader)
    return entry(program, body)


def entry(program, body):
    """body() -> its exit status, as a program ends: a character the terminal's encoding lacks shown escaped,
    SIGTERM and SIGHUP raising Stopped (training turns them into a stop after the step), standard output
    flushed where a failure is caught, and every way it can fail turned into a status and one line."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    previous = {signum: signal.getsignal(signum) for signum in stop_signals()}
    for signum in stop_signals()[1:]:
        signal.signal(signum, raise_stopped)
    try:
        return checked(program, body)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def checked(program, body):
    """body()'s status, every way it can end turned into an exit status and at most one line on stderr."""
    try:
        try:
            status = body()
        except SystemExit as e:                             # --help: argparse prints it and exits
            status = e.code
        if sys.stdout is not None:
            sys.stdout.flush()                  # now, where a failure is caught, not at the interpreter's exit
        return status
    except DataError as e:
        say(program, f"error: {e}")
        return 2
    except BrokenPipeError:
        return closed_pipe()
    except (OutputError, OSError) as e:                     # OSError: stdout itself, outside training
        abandon_stdout()
        say(program, f"error: {e if isinstance(e, OutputError) else f'cannot write to the output ({e.strerror})'}")
        return 74
    except WorkerError as e:
        say(program, f"error: {e}")
        return 70
    except Stopped as e:
        say(program, f"stopped by {e}")
        return 128 + e.signum
    except KeyboardInterrupt:
        say(program, "interrupted")
        return 130
