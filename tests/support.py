"""Shared helpers for the tests: the import path, small data files, and runs in this process or another."""
import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import microgpt  # noqa: E402  (after the path is set)

SCRIPT = os.path.join(ROOT, "microgpt.py")
NAMES = os.path.join(ROOT, "names.txt")


def write_file(folder, name, text, encoding="utf-8"):
    """Write `text` (str, or bytes as they are) to folder/name and return the path."""
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def run_main(*argv, main=None):
    """`main` (microgpt.main by default) in this process on argv -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = (main or microgpt.main)([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def run_cli(*args, timeout=120):
    """Run microgpt.py in a subprocess -> CompletedProcess with text stdout and stderr."""
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# Thirty names for quick runs: 22 tokens, six of them longer than the default block_size.
FEW_NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn",
             "abigail", "emily", "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria",
             "scarlett", "penelope", "layla", "chloe", "victoria", "madison", "eleanor", "grace", "nora", "riley"]


def tiny_gpt(vocab_size=5, n_embd=8, n_head=2, n_layer=2, block_size=4, seed=0):
    """A small model whose every gradient can be checked by finite differences in a few seconds."""
    import random
    return microgpt.GPT(vocab_size, n_embd, n_head, n_layer, block_size, random.Random(seed))


def assert_close(test, got, want, rel=1e-6, abs_=1e-9, msg=""):
    """Fail `test` unless |got - want| <= abs_ + rel * |want|."""
    if not math.isclose(got, want, rel_tol=rel, abs_tol=abs_):
        test.fail(f"{msg} got {got!r}, want {want!r}")


class TempDirTestCase:
    """Mixin: self.tmp is a fresh folder for each test, removed afterwards."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()


class FewNamesCase(TempDirTestCase):
    """Mixin: self.data is a file of FEW_NAMES in a fresh folder, and self.ok(*argv) runs microgpt.main() on
    it with the options SMALL, expecting status 0, and returns what it printed."""
    SMALL = ["--n-embd", 8, "--n-head", 2]

    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")

    def ok(self, *argv):
        status, out, err = run_main("--data", self.data, *self.SMALL, *argv)
        self.assertEqual(status, 0, err)
        return out
