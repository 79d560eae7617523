"""Worker processes (--workers): a batch's documents, and an evaluation's, shared among processes. The engine
adds the documents' parts up in their order, so the numbers are the same whoever computed each part
(MicrogptEngine.added). A worker process imports this module, the engine's, and microgpt.py: nothing else."""
import array
import gc
import importlib
import os
import pickle
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import microgpt
from .common import flat, physical_memory, positions_read, shown
from .engine import COLLECTOR_OFF


def memory_available(Engine, settings):
    """Bytes an engine's model may use: what the engine says (a GPU's), else this machine's; None if unknown."""
    return Engine.memory_available(settings) or physical_memory()


class WorkerError(Exception):
    """A worker process died or failed: main() prints the message on one line and exits with status 70,
    after the run saved its last good state."""


def cores():
    """The cores this process may run on (its CPU affinity where the system says, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# A worker's program: the project's folder first on its path (not the cwd), and this module alone of the workbench.
WORKER = "import sys; sys.path[0] = sys.argv[1]; from workbench import workers; workers.worker_main()"


def worker_main():
    """A worker process (WORKER): reads pickled messages on stdin and answers on stdout. The first names
    the engine (its module's file and class) and the model's settings and characters; each of the others
    sends weights and documents and is answered with each document's part (engine.gradient_parts or
    nll_parts), or the error that stopped it. Stdin's end, which comes however the run's process ended
    (killed included), ends it. It has a session of its own, so a terminal's Ctrl-C and a signal to the
    run's process group reach only the run, which finishes its step and closes the pipes."""
    if COLLECTOR_OFF:                       # as MicrogptEngine.train does: under CPython, no cycle to collect
        gc.disable()
    parent = os.getppid()

    def orphaned():                         # the run killed mid-share: the share is not waited for
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())     # a stray print cannot break a message
    try:
        (module, root, name, settings, chars), _ = read_message(stdin.read)
        if root not in sys.path:                # the engine's own folder (microgpt_torch.py's, a package's, a test's)
            sys.path.insert(1, root)
        engine = getattr(importlib.import_module(module), name)(settings, microgpt.Tokenizer(chars), random.Random(0))
        while True:
            (kind, batch, n_tokens), (weights,) = read_message(stdin.read)
            try:
                engine.set_weights(unpacked(weights))
                if kind == "gradients":
                    parts = engine.gradient_parts(batch, n_tokens)
                    answer, blobs = ("done", [loss for loss, _ in parts]), [packed(grads) for _, grads in parts]
                else:
                    answer, blobs = ("done", engine.nll_parts(batch)), []
            except Exception as e:                          # (MemoryError included) the run says it
                answer, blobs = ("failed", f"{type(e).__name__}: {e}"), []
            write_message(stdout, answer, blobs)
    except (EOFError, OSError):                             # the run closed the pipe, or is gone
        return


def import_root(name, path):
    """(the name a worker imports an engine's module by, the folder it imports it from): for a module run as a
    program (__main__), its file's name in its folder; for a module of a package (a.b.c), the folder above the
    package, one folder up from the file's for each dot."""
    folder = os.path.dirname(os.path.abspath(path))
    if name == "__main__":
        return os.path.splitext(os.path.basename(path))[0], folder
    for _ in range(name.count(".")):
        folder = os.path.dirname(folder)
    return name, folder


def write_message(stream, message, blobs=()):
    """A message: the length of its head (8 bytes, little-endian), the head (`message` pickled, with the
    lengths of `blobs`), then the blobs (bytes) as they are: a reader knows how much is still to come."""
    head = pickle.dumps((message, [len(blob) for blob in blobs]), pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(head)) + head)
    for blob in blobs:
        stream.write(blob)
    stream.flush()


def read_message(read):
    """(message, blobs) that write_message() wrote, `read(n)` giving the next n bytes (fewer where the stream
    ends). Raises EOFError if the stream ends inside a message or before it."""
    def exactly(n):
        data = read(n)
        if len(data) != n:
            raise EOFError("the stream ended inside a message")
        return data
    message, lengths = pickle.loads(exactly(struct.unpack("<Q", exactly(8))[0]))
    return message, [exactly(n) for n in lengths]


class Workers:
    """n processes, this one and n - 1 workers (WORKER) started once: each of spread()'s calls gives every
    process an equal, consecutive share of the documents (this one the first) and returns each document's
    part in their order. close() ends them all; a worker that outlives its closed pipe by a second is
    killed."""

    def __init__(self, n, run, stop=None):
        self.n, self.run, self.stop, self.processes, self.failure, self.closed = n, run, stop, [], None, False

    def start(self):
        run, here = self.run, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the project's folder
        Engine = run.Engine
        module, root = import_root(Engine.__module__, sys.modules[Engine.__module__].__file__)
        hello = (module, root, Engine.__qualname__,
                 {key: run.settings[key] for key in ("n_embd", "n_head", "n_layer", "block_size")}, run.tokenizer.chars)
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

    GRACE = 10                      # seconds a worker has to answer once a stop is asked for

    def answer(self, process):
        """A worker's answer, read as it comes; if a stop was asked for (Ctrl-C, SIGTERM) and the worker has
        sent nothing for GRACE seconds since (stopped, or stuck: before its answer or inside it), WorkerError."""
        fd, since = process.stdout.fileno(), None

        def read(n):                                # (the pipe's own bytes: its buffered reader is never used)
            nonlocal since
            chunks, left = [], n
            while left:
                if select.select([fd], [], [], 0.25)[0]:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break                       # its end: read_message says so
                    chunks.append(chunk)
                    left -= len(chunk)
                    since = None
                elif self.stop is not None and self.stop.requested:
                    since = since or time.monotonic()
                    if time.monotonic() - since > self.GRACE:
                        raise WorkerError(f"worker process {process.pid} did not answer within {self.GRACE} s of "
                                          f"the stop")
            return b"".join(chunks)
        return read_message(read)

    def spread(self, kind, batch, n_tokens=None):
        """Each document's part of `kind` ("gradients" or "nlls") for batch (lists of token ids), in order.
        Raises WorkerError if a worker died or failed."""
        if self.closed:
            raise WorkerError("the worker processes were closed: their share cannot be computed")
        engine, shares = self.run.engine, shared_out(batch, self.n, self.run.settings["block_size"])
        weights = packed(flat(engine.weights()))
        sent = [(process, share) for process, share in zip(self.processes, shares[1:]) if share]
        for process, share in sent:
            self.send(process, (kind, share, n_tokens), [weights])
        parts = engine.gradient_parts(shares[0], n_tokens) if kind == "gradients" else \
            engine.nll_parts(shares[0])
        for process, share in sent:
            try:
                (status, answer), blobs = self.answer(process)
            except (EOFError, OSError, pickle.UnpicklingError, TypeError, ValueError):     # (not a message at all)
                raise self.died(process)
            if status == "failed":
                raise WorkerError(f"worker process {process.pid} failed: {shown(answer)}")
            parts += self.checked_answer(process, kind, share, answer, blobs)
        return parts

    def checked_answer(self, process, kind, share, answer, blobs):
        """A worker's answer for its share as spread() adds it: (loss, gradient) pairs, or (nats, tokens) pairs, a
        document each. Raises WorkerError if it is not one of the shape a share of len(share) documents has
        (a float per document, NaN included: training says so; a gradient of a float per parameter; whole
        numbers of predicted tokens)."""
        n, n_params = len(share), self.run.engine.n_params
        if kind == "gradients":
            grads = [unpacked(blob) if len(blob) == 8 * n_params else None for blob in blobs]
            right = (type(answer) is list and len(answer) == n and len(grads) == n and None not in grads
                     and all(type(x) is float for x in answer))
        else:
            right = type(answer) is list and len(answer) == n and all(
                type(pair) is tuple and len(pair) == 2 and type(pair[0]) is float and type(pair[1]) is int
                for pair in answer)
        if not right:
            raise WorkerError(f"worker process {process.pid} answered in a shape that is not its share's ({n} "
                              f"documents' {kind}); it is not the engine this run started")
        return list(zip(answer, grads)) if kind == "gradients" else answer

    def close(self):
        """End every worker. spread() refuses afterwards (a closed Workers would compute the first share only)."""
        self.closed = True
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


def workers_of(run, stop=None):
    """The Workers a training run shares its work with: as many as --workers says (default: the cores, at
    most 8), but no more than a batch, or an evaluation at two documents each, has work for; None for one
    process, or an engine that cannot share."""
    settings = run.settings
    if not hasattr(run.Engine, "gradient_parts") or run.step >= settings["steps"]:
        return None
    n = settings["workers"]
    if n is None:                                           # the cores, as many as the memory holds
        have = memory_available(run.Engine, settings)
        need = run.Engine.memory_needed(settings, run.tokenizer.vocab_size, True, positions_read(run.docs, settings))
        n = min(8, cores(), have // need if have else 8)
    n = min(n, max(settings["batch_size"] if settings["batch_size"] > 1 else 1, len(run.eval_docs) // 2))
    return Workers(n, run, stop) if n > 1 else None
