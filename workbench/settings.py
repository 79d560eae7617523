"""Settings, each declared once: its default, kind, rule, group and help. The command line, the checks, what
a checkpoint keeps and what --resume and --load take from one all come from SETTINGS."""
import argparse
import math
import os
import sys

import microgpt
from .common import DataError, shown
from .engine import MicrogptEngine


class Setting:
    """One setting of a run. name: its key (the option is --name with dashes); default (None: off);
    kind: int, float, str or bool (a flag); rule: (test, words) a value must pass; group: what it belongs to (GROUPS);
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
    Setting("text", None, bool, ANY, "split", "read the data file as one stream of characters, newlines included, "
            "and train on windows of block_size + 1 of them drawn from it (the last val_fraction held out); "
            "samples continue a prompt (--prefix)", metavar=None),
    Setting("seed", D["seed"], int, ANY, "split", "random seed; one seed, one run"),
    Setting("val_fraction", D["val_fraction"], float, (lambda v: 0 <= v < 1, "at least 0 and less than 1"),
            "split", "share of documents (with --text, the stream's end) held out for validation, in [0, 1)", "X"),
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
            shown="this machine's cores, at most 8; under PyPy a batch only when given"),
    Setting("samples", D["samples"], int, AT_LEAST_0, "sampling", "documents to generate"),
    Setting("temperature", D["temperature"], float, ABOVE_0, "sampling", "sampling temperature > 0", "X"),
    Setting("top_k", D["top_k"], int, AT_LEAST_1, "sampling", "sample only from the k most likely tokens",
            shown="all"),
    Setting("prefix", D["prefix"], str, ANY, "sampling", "complete documents that start with this text (with "
            "--text: the prompt each sample continues)", "TEXT"),
    Setting("max_new_tokens", 200, int, AT_LEAST_1, "sampling", "with --text: the characters each sample adds "
            "to its prompt"),
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
KINDS = {int: "a whole number", float: "a finite number", str: "a string", bool: "true or false"}
MAX_WHOLE = 10 ** 18                    # no count of a run comes near; a 400-digit one would overflow a float


def settings_of(Engine):
    """Every Setting a run with Engine has: SETTINGS, less looking inside and --workers where the engine
    cannot, plus the engine's own options."""
    inside, spread = getattr(Engine, "inside", None), hasattr(Engine, "gradient_parts")
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


def check_together(settings, name):
    """The rules between settings of a run; name(key) is how errors call a setting."""
    if settings["n_embd"] % settings["n_head"]:     # (microgpt.GPT's rule: each head reads an equal slice)
        raise DataError(f"{name('n_embd')} {settings['n_embd']} must be divisible by {name('n_head')} "
                        f"{settings['n_head']}")
    if settings["min_lr"] > settings["lr"]:
        raise DataError(f"{name('min_lr')} {settings['min_lr']} is above {name('lr')} {settings['lr']}; the learning "
                        f"rate decays from lr down to min_lr, so min_lr must not be larger")
    if settings["warmup_steps"] > settings["steps"]:
        raise DataError(f"{name('warmup_steps')} {settings['warmup_steps']} is more than {name('steps')} "
                        f"{settings['steps']}; warm up for at most the whole run")
    if settings.get("save_every") and not settings.get("save"):
        raise DataError(f"{name('save_every')} needs {name('save')} PATH")


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
            had = (f"was trained {'with' if saved[s.name] else 'without'} {s.option}" if s.kind is bool else
                   f"has {s.name} {saved[s.name]}, not {given}")    # (a flag's value says nothing: None, True)
            raise DataError(f"checkpoint {path} {had}; leave out {s.option} or train a new model")
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
