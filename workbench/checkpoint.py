"""The checkpoint file: its description (Checked, Each, Row, Object), held against a file field by field
before anything is built from it, and its text when a run saves."""
import json
import math

import microgpt
from .common import DataError, shown
from .engine import MicrogptEngine, count_parameters
from .settings import check_together, check_value, kept
from .files import EVAL_FIELDS, TRAIN_FIELDS, printable, read_text


CHECKPOINT_FORMAT = "microgpt checkpoint 2"


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
    optional["text"] = None                 # (a checkpoint from before --text is of a documents run)
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
    allowed = lambda c: printable(c) or (c == "\n" and s["text"])           # (a newline is a token of --text)
    if not all(map(allowed, chars)):
        raise DataError(f"chars has {shown(next(c for c in chars if not allowed(c)))}, a control character")
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
