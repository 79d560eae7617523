"""Shared helpers for the tests: the import path, small data files, small models, and runs of the program in
this process or in another."""
import contextlib
import io
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inside  # noqa: E402  (after the path is set; the tests import these from here)
import microgpt  # noqa: E402
import workbench  # noqa: E402

SCRIPT = os.path.join(ROOT, "microgpt.py")
# `make test-fast` (MICROGPT_TESTS=fast): the tests of a few seconds or more are left to `make test`, or run in a
# smaller form where the behaviour allows it (a fixed-seed sample of the damaged checkpoints).
FAST = os.environ.get("MICROGPT_TESTS") == "fast"
slow = unittest.skipIf(FAST, "slow: `make test` runs it")
NAMES = os.path.join(ROOT, "names.txt")
D = microgpt.DEFAULTS
TIMES = r"\d+\.\d (s|min)( left)?|\d+\.\d ms/step"          # wall-clock figures, blanked before comparing


def write_file(folder, name, text, encoding="utf-8"):
    """Write `text` (str, or bytes as they are) to folder/name and return the path."""
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def run_main(*argv, main=None):
    """`main` (workbench.main, the program of `python3 microgpt.py`, by default) in this process on argv ->
    (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {signum: signal.getsignal(signum) for signum in workbench.stop_signals()}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = (main or workbench.main)([str(a) for a in argv])
    finally:                    # (a run a signal ended leaves them ignored, as a process that is ending should)
        for signum, handler in handlers.items():
            if signal.getsignal(signum) is signal.SIG_IGN:
                signal.signal(signum, handler)
    return status, out.getvalue(), err.getvalue()


def run_cli(*args, timeout=120, script=SCRIPT, cwd=None):
    """Run microgpt.py (or `script`) in a subprocess -> CompletedProcess with text stdout and stderr."""
    return subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)


# Thirty names for quick runs: 22 tokens, six of them longer than the default block_size.
FEW_NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn",
             "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria",
             "scarlett", "penelope", "layla", "chloe", "victoria", "madison", "eleanor", "grace", "nora", "riley"]


def gpt(vocab_size=27, n_embd=None, n_head=None, n_layer=None, block_size=None, seed=0):
    """A microgpt.GPT, the defaults' size unless given, its weights drawn from random.Random(seed)."""
    size = [D[key] if value is None else value for key, value in
            (("n_embd", n_embd), ("n_head", n_head), ("n_layer", n_layer), ("block_size", block_size))]
    return microgpt.GPT(vocab_size, *size, random.Random(seed))


document_loss = inside.mean_loss          # one document's mean loss, a Value with its graph (nats per token)


def tiny_gpt(vocab_size=5, n_embd=8, n_head=2, n_layer=2, block_size=4, seed=0):
    """A small model whose every gradient can be checked by finite differences in a few seconds."""
    return gpt(vocab_size, n_embd, n_head, n_layer, block_size, seed)


def train(model, tokenizer, docs, steps, lr=D["lr"], batch_size=1, warmup_steps=0, min_lr=0.0, grad_clip=None,
          on_step=None):
    """microgpt.train with a fresh Adam, the schedule's options set only where a test sets them."""
    return microgpt.train(model, microgpt.Adam(model.params), tokenizer, docs, steps, lr, warmup_steps, min_lr,
                          batch_size, grad_clip, on_step=on_step)


def sample(model, tokenizer, rng, temperature=D["temperature"], top_k=None, prefix=""):
    """microgpt.sample with the default temperature, no top-k and no prefix unless given."""
    return microgpt.sample(model, tokenizer, rng, temperature, top_k, prefix)


def schedule(step, num_steps, lr, warmup_steps=0, min_lr=0.0):
    return microgpt.lr_schedule(step, num_steps, lr, warmup_steps, min_lr)


def zero_grads(params):
    for p in params:
        p.grad = 0.0


def assert_close(test, got, want, rel=1e-6, abs_=1e-9, msg=""):
    """Fail `test` unless |got - want| <= abs_ + rel * |want|."""
    if not math.isclose(got, want, rel_tol=rel, abs_tol=abs_):
        test.fail(f"{msg} got {got!r}, want {want!r}")


def assert_all_close(test, got, want, rel):
    """Each got[i] within rel * (largest |want|) of want[i]: relative to the vector's scale, so entries
    that cancel to nearly zero are held to the same absolute standard as the rest."""
    test.assertEqual(len(got), len(want))
    scale = max(1e-300, max(abs(w) for w in want))
    for i, (g, w) in enumerate(zip(got, want)):
        test.assertLessEqual(abs(g - w), rel * scale, f"entry {i}: {g!r} vs {w!r}")


@contextlib.contextmanager
def replaced(owner, name, value):
    """owner.name = value for the block, the original back afterwards."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield original
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def spy(owner, name, record):
    """Replace owner.name by a wrapper that calls record(*args) and then the original."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        record(*args, **kwargs)
        return original(*args, **kwargs)

    with replaced(owner, name, wrapper):
        yield


def split_of(docs, seed, val_fraction=D["val_fraction"]):
    """The (train, validation) split a run should make of docs for a seed, worked out independently."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    n_val = round(len(docs) * val_fraction)
    return docs[n_val:], docs[:n_val]


class TempDirTestCase:
    """Mixin: self.tmp is a fresh folder for each test, removed afterwards."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()


class FewNamesCase(TempDirTestCase):
    """Mixin: self.data is a file of FEW_NAMES in a fresh folder; self.ok(*argv) runs the program in this
    process on it with the options SMALL, expecting status 0, and returns what it printed; self.fails(...)
    expects one line on stderr and status 2 (or `status`) and returns the line."""
    SMALL = ["--n-embd", 8, "--n-head", 2]

    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")

    def ok(self, *argv):
        status, out, err = run_main("--data", self.data, *self.SMALL, *argv)
        self.assertEqual(status, 0, err)
        return out

    def fails(self, *argv, says, status=2):
        got, out, err = run_main("--data", self.data, *self.SMALL, *argv)
        self.assertEqual(got, status, out + err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("microgpt: error: "), lines[0])
        self.assertIn(says, lines[0])
        return lines[0]
