"""Worker processes (--workers): a batch's documents and an evaluation's shared among processes, with the
same numbers whatever their count, and no process left behind however a run ends."""
import ctypes
import io
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest
from types import SimpleNamespace

from support import (FEW_NAMES, SCRIPT, TIMES, FewNamesCase, assert_all_close, microgpt, replaced, run_main, slow,
                     workbench)

PR_SET_CHILD_SUBREAPER = 36         # prctl(2): this process adopts the orphans of its descendants (Linux)
ON_LINUX_PROC = os.path.isdir("/proc/self/task")


def load_json(path):
    with open(path) as f:
        return json.load(f)


class TestTheSumIsFixed(unittest.TestCase):
    def test_parts_from_elsewhere_give_the_same_bits_as_one_process(self):
        """Bugs: the parts added in another order (say, each process's share summed first); a document's
        gradient left on top of the one before (not computed from 0); p.grad not left at 0 between them."""
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        batch = [tokenizer.encode(doc) for doc in FEW_NAMES[:7]]
        n_tokens = sum(microgpt.n_predicted(tokens, 8) for tokens in batch)
        settings = dict(microgpt.DEFAULTS, n_embd=8, n_head=2, block_size=8)
        here, there = (workbench.MicrogptEngine(settings, tokenizer, random.Random(3)).gpt for _ in range(2))
        loss = microgpt.batch_gradient(here, batch)
        # as Workers.spread brings them: shares of 3, 3 and 1 documents, each computed by a model of its own
        worker = workbench.MicrogptEngine(settings, tokenizer, random.Random(3))
        parts = [part for share in (batch[:3], batch[3:6], batch[6:]) for part in
                 worker.gradient_parts(share, n_tokens)]
        self.assertTrue(all(p.grad == 0.0 for p in worker.gpt.params))
        engine = workbench.MicrogptEngine(settings, tokenizer, random.Random(3))
        engine.gpt = there
        self.assertEqual(engine.added(batch, lambda b, n: parts if (b, n) == (batch, n_tokens) else None), loss)
        self.assertEqual([p.grad for p in there.params], [p.grad for p in here.params])
        # each part the gradient of its document alone: against a fresh model per document, added exactly
        alone = []
        for tokens in batch:
            model = microgpt.GPT(tokenizer.vocab_size, 8, 2, 1, 8, random.Random(3))
            (microgpt.total(microgpt.document_losses(model, tokens)) / n_tokens).backward()
            alone.append([p.grad for p in model.params])
        assert_all_close(self, [p.grad for p in here.params], [math.fsum(g) for g in zip(*alone)], 1e-15)
        # and the order matters: the same parts added share by share are not the same bits
        shares = [[sum(g) for g in zip(*[grads for _, grads in parts[i:j]])] for i, j in ((0, 3), (3, 6), (6, 7))]
        by_share = [a + b + c for a, b, c in zip(*shares)]
        self.assertNotEqual(by_share, [p.grad for p in here.params])

    def test_evaluation_from_parts(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        engine = workbench.MicrogptEngine(dict(microgpt.DEFAULTS, n_embd=8, n_head=2, block_size=8), tokenizer,
                                          random.Random(3))
        nlls = engine.nll_parts([tokenizer.encode(doc) for doc in FEW_NAMES])
        self.assertEqual(engine.evaluate(FEW_NAMES, nlls), microgpt.evaluate(engine.gpt, tokenizer, FEW_NAMES))


class TestHowMany(unittest.TestCase):
    def workers(self, cores, given=None, batch_size=1, eval_docs=100):
        settings = dict(microgpt.DEFAULTS, workers=given, batch_size=batch_size, text=None)
        r = SimpleNamespace(Engine=workbench.MicrogptEngine, settings=settings, eval_docs=["x"] * eval_docs, step=0,
                            tokenizer=microgpt.Tokenizer("abc"), docs=["abc"])
        with replaced(workbench.workers, "cores", lambda: cores):
            workers = workbench.workers_of(r)
        return workers.n if workers else 1

    def test_the_cores_at_most_8_and_no_more_than_the_work(self):
        """Bugs: more processes than a batch has documents; processes started for a 3-document evaluation;
        a 64-core machine's every core; --workers ignored."""
        self.assertEqual(self.workers(cores=2), 2)                      # the default run on this machine
        self.assertEqual(self.workers(cores=64), 8)
        self.assertEqual(self.workers(cores=64, eval_docs=6), 3)          # two documents each at least
        self.assertEqual(self.workers(cores=8, eval_docs=3), 1)
        self.assertEqual(self.workers(cores=8, batch_size=4, eval_docs=3), 4)
        self.assertEqual(self.workers(cores=2, given=3, batch_size=8), 3)
        self.assertEqual(self.workers(cores=64, given=1, batch_size=8), 1)
        twin = SimpleNamespace(Engine=object, settings={"workers": 4, "batch_size": 8}, eval_docs=["x"] * 100)
        self.assertIsNone(workbench.workers_of(twin))                   # an engine that cannot share

    def test_none_for_a_run_with_nothing_left_to_train_nor_more_than_memory_holds(self):
        """Bugs: workers started for --steps 0 or a finished --resume; 8 copies of a model memory holds one of."""
        r = SimpleNamespace(Engine=workbench.MicrogptEngine, settings=dict(microgpt.DEFAULTS, workers=4, batch_size=8,
                                                                           text=None),
                            eval_docs=[], step=500, tokenizer=microgpt.Tokenizer("abc"), docs=["a" * 20])
        self.assertIsNone(workbench.workers_of(r))
        need = workbench.MicrogptEngine.memory_needed(r.settings, 4, True)      # block_size 16: what a name reads
        r.step, r.settings["workers"] = 0, None
        with replaced(workbench.workers, "cores", lambda: 8), \
                replaced(workbench.workers, "physical_memory", lambda: need * 3):
            self.assertEqual(workbench.workers_of(r).n, 3)
        r.settings["block_size"], r.docs = 256, ["emma"]        # Bug: counted at block_size, not the 5 positions read
        need = workbench.MicrogptEngine.memory_needed(r.settings, 4, True, 5)
        with replaced(workbench.workers, "cores", lambda: 8), \
                replaced(workbench.workers, "physical_memory", lambda: need * 8):
            self.assertEqual(workbench.workers_of(r).n, 8)

    def test_the_option_is_offered_where_the_engine_can_share(self):
        names = lambda Engine: [s.name for s in workbench.settings_of(Engine)]
        self.assertIn("workers", names(workbench.MicrogptEngine))
        self.assertNotIn("workers", names(object))
        kept = [s.name for s in workbench.kept(workbench.MicrogptEngine)]
        self.assertNotIn("workers", kept)                                   # the machine's, not the run's


class TestShares(unittest.TestCase):
    """shared_out(): consecutive shares of about equal work, a document's work the positions it is scored on
    (at block_size 8: a 10-token name is scored on 8, a 2-token one on 1). Worked by hand."""

    def test_cut_by_the_positions_scored_not_by_the_count(self):
        """Bug: shares of equal document counts, so the process given the long documents is waited on (here
        16 positions against 4)."""
        long, short = [0] * 10, [0, 1]
        # work 8, 8, 1, 1, 1, 1 (20 in all); half is 10: the second long document's middle (12) is past it
        self.assertEqual(workbench.shared_out([long, long, short, short, short, short], 2, 8),
                         [[long], [long, short, short, short, short]])
        # work 1, 1, 1, 1, 8, 8: the same cut from the other end
        self.assertEqual(workbench.shared_out([short, short, short, short, long, long], 2, 8),
                         [[short, short, short, short, long], [long]])
        docs = [[i] * 5 for i in range(9)]                   # nine alike: three each, in their order
        self.assertEqual(workbench.shared_out(docs, 3, 8), [docs[0:3], docs[3:6], docs[6:9]])

    def test_a_documents_work_is_capped_at_block_size(self):
        """Bug: a document's work taken as its length, not the positions it is scored on (at block_size 2, a
        10-token name is scored on 2, like a 3-token one): its share is cut as if it were nine times the work."""
        long, short = [0] * 10, [0, 1]
        # work 2, 1, 1, 1 (5 in all); half is 2.5: the first short document's middle (2.5) is not past it
        self.assertEqual(workbench.shared_out([long, short, short, short], 2, 2), [[long, short], [short, short]])

    def test_a_document_each_while_there_are_enough(self):
        """Bugs: an empty share while another holds two documents; documents lost or repeated."""
        a, b, c = [0] * 10, [0, 1], [0, 1]
        self.assertEqual(workbench.shared_out([a, b], 3, 8), [[a], [b], []])
        self.assertEqual(workbench.shared_out([a, b, c], 3, 8), [[a], [b], [c]])
        self.assertEqual(workbench.shared_out([a, a, b], 2, 8), [[a], [a, b]])

class WorkersCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 3, "--print-every", 1]
    RUN = ["--batch-size", 5, "--steps", 7, "--samples", 4, "--eval-samples", 2, "--grad-clip", 1]

    def run_with(self, n, *argv):
        path = os.path.join(self.tmp, f"w{n}.json")
        out = self.ok(*self.RUN, "--workers", n, "--save", path, *argv)
        return re.sub(TIMES, "<t>", out.replace(path, "<path>").replace(path[:-5], "<path>")), load_json(path)


class TestTheSameNumbers(WorkersCase):
    def test_one_two_or_three_workers_give_the_same_run(self):
        """Bugs: a batch's shares summed out of order, or a share dropped; an evaluation spread unevenly
        or its documents' sums added in another order; the weights sent before the update."""
        out1, saved1 = self.run_with(1)
        for n in (2, 3):
            with self.subTest(workers=n):
                out, saved = self.run_with(n)
                self.assertEqual(out, out1)
                for key in ("params", "adam", "rng_state", "step"):
                    self.assertTrue(saved[key] == saved1[key], key)      # exact: JSON keeps every bit
        self.assertEqual(len(re.findall(r"^eval ", out1, re.M)), 3)

    def test_resumed_with_another_count(self):
        """Bug: --workers kept in the checkpoint or changing what a resumed run computes."""
        _, whole = self.run_with(1)
        half = os.path.join(self.tmp, "half.json")
        original = workbench.Watch.on_step

        def on_step(watch, *a):
            watch.stop.requested = watch.step_done + 1 == 4         # what the Ctrl-C handler sets
            return original(watch, *a)

        with replaced(workbench.Watch, "on_step", on_step):
            status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--workers", 3, "--save", half)
        self.assertEqual(status, 130, err)
        self.ok("--resume", half, "--workers", 2)
        resumed = load_json(half)
        for key in ("params", "adam", "rng_state", "step"):
            self.assertTrue(resumed[key] == whole[key], key)
        self.assertNotIn("workers", resumed["settings"])


class TestTheEngineAWorkerImports(unittest.TestCase):
    def test_a_worker_imports_an_engine_from_the_folder_its_package_is_in(self):
        """Bugs: an engine of a package (mypkg.eng) looked for in the project's folder only (ModuleNotFoundError,
        exit 70, where the engine ran fine in one process); a program's own engine (__main__) sent by that name."""
        self.assertEqual(workbench.import_root("mypkg.eng", "/x/y/mypkg/eng.py"), ("mypkg.eng", "/x/y"))
        self.assertEqual(workbench.import_root("a.b.c", "/x/a/b/c.py"), ("a.b.c", "/x"))
        self.assertEqual(workbench.import_root("workbench.engine", "/p/workbench/engine.py"),
                         ("workbench.engine", "/p"))
        self.assertEqual(workbench.import_root("__main__", "/q/microgpt_torch.py"), ("microgpt_torch", "/q"))

    def test_closed_workers_refuse_to_share(self):
        """Bug: a closed Workers computing the first share only and dropping the others without a word."""
        r = SimpleNamespace(engine=None, settings={"block_size": 16})
        workers = workbench.Workers(2, r)
        workers.close()
        with self.assertRaisesRegex(workbench.WorkerError, "were closed"):
            workers.spread("nlls", [[1, 2, 1], [1, 3, 1]])


class TestAnAnswerCutShort(unittest.TestCase):
    def test_a_worker_stopped_inside_its_answer_cannot_hold_a_stop(self):
        """Bug: once the first bytes of an answer came, the rest was read blocking (pickle.load): a worker
        stopped inside its answer (SIGSTOP, a debugger) held the run for ever, deaf to the stop. Here the
        worker's pipe holds the first half of an answer and stays open."""
        import threading
        r, w = os.pipe()
        message = io.BytesIO()
        workbench.workers.write_message(message, ("done", [0.5]), [b"\0" * 64])
        os.write(w, message.getvalue()[:20])
        process = SimpleNamespace(stdout=os.fdopen(r, "rb"), pid=12345)
        self.addCleanup(process.stdout.close)
        self.addCleanup(os.close, w)
        workers = workbench.Workers(2, None, SimpleNamespace(requested=True))
        workers.GRACE = 0.3
        ended = []

        def answer():
            try:
                workers.answer(process)
            except workbench.WorkerError as e:
                ended.append(str(e))

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        thread.join(10)
        self.assertEqual(ended, ["worker process 12345 did not answer within 0.3 s of the stop"])

    def test_a_whole_answer_is_read_back_as_it_was_written(self):
        """Bug: the head's length or a blob misread (the answer of another share, or a gradient cut short)."""
        r, w = os.pipe()
        message = io.BytesIO()
        workbench.workers.write_message(message, ("done", [0.5, 0.25]), [b"\1" * 16, b"\2" * 8])
        os.write(w, message.getvalue() + b"next")
        os.close(w)
        process = SimpleNamespace(stdout=os.fdopen(r, "rb"), pid=1)
        self.addCleanup(process.stdout.close)
        workers = workbench.Workers(2, None, None)
        self.assertEqual(workers.answer(process), (("done", [0.5, 0.25]), [b"\1" * 16, b"\2" * 8]))
        self.assertEqual(os.read(r, 10), b"next")                 # not one byte past its answer


class TestWhenAWorkerFails(WorkersCase):
    def test_a_worker_answer_of_the_wrong_shape_ends_in_one_line_and_the_run_saved(self):
        """Bug: a worker's answer taken as it came (a third loss for a share of two documents, a gradient of
        another model's size, a loss that is not a number): `ValueError: too many values to unpack`, a
        traceback, nothing saved."""
        read = workbench.workers.read_message
        for name, spoil in (("a loss too many", lambda answer, blobs: (answer + [0.5], blobs)),
                            ("a gradient too short", lambda answer, blobs: (answer, [blob[:-8] for blob in blobs])),
                            ("a loss that is text", lambda answer, blobs: (["x"] * len(answer), blobs))):
            with self.subTest(answer=name):
                path = os.path.join(self.tmp, "bad.json")

                def spoiled(stream):
                    (status, answer), blobs = read(stream)
                    return (status, spoil(answer, blobs)[0]), spoil(answer, blobs)[1]

                with replaced(workbench.workers, "read_message", spoiled):
                    status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--workers", 2,
                                                "--save", path)
                self.assertEqual(status, 70, err)
                self.assertRegex(err, r"^microgpt: error: worker process \d+ answered in a shape that is not its "
                                      r"share's \(\d documents' gradients\); it is not the engine this run started; "
                                      r"saved the last good state \(step 0\) to .*bad\.json\n$")
                self.assertEqual(load_json(path)["step"], 0)

    def test_a_worker_lost_in_an_evaluation_is_done_here_and_the_resume_goes_on_exactly(self):
        """Bug: the run saved at step 3 without step 3's evaluation (a worker died in it), so the resumed run
        never has it, and its next evaluation averages twice the steps."""
        _, whole = self.run_with(1)
        path = os.path.join(self.tmp, "lost.json")
        spread = workbench.Workers.spread

        def dies_in_the_first_evaluation(workers, kind, batch, n_tokens=None):
            if kind == "nlls":
                raise workbench.WorkerError("worker process 1 died (killed by SIGKILL)")
            return spread(workers, kind, batch, n_tokens)

        with replaced(workbench.Workers, "spread", dies_in_the_first_evaluation):
            status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--workers", 2, "--save", path)
        self.assertEqual(status, 70, err)
        self.assertEqual(err, "microgpt: error: worker process 1 died (killed by SIGKILL); saved the last good state "
                              f"(step 3) to {path}\n")
        self.assertEqual([row[0] for row in load_json(path)["metrics"]["eval"]], [3])      # (step first)
        self.ok("--resume", path, "--workers", 2)
        for key in ("params", "adam", "rng_state", "step"):
            self.assertTrue(load_json(path)[key] == whole[key], key)
        self.assertEqual([row[:3] for row in load_json(path)["metrics"]["eval"]],      # step, losses (not seconds)
                         [row[:3] for row in whole["metrics"]["eval"]])

    def test_a_worker_that_cannot_be_started(self):
        """Bug: the OSError of a process that cannot start taken for the output's ('cannot write', 74)."""
        def refuse(*a, **k):
            raise OSError(24, "Too many open files")

        with replaced(workbench.workers.subprocess, "Popen", refuse):
            status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--workers", 3)
        self.assertEqual((status, err), (70, "microgpt: error: could not start worker process 1 of 2 (Too many "
                                             "open files); give fewer --workers\n"))


def descendants(pid):
    """The processes below `pid` (children, their children...), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def alive(pid):
    """True while `pid` runs (a zombie, its exit not yet collected, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@unittest.skipUnless(ON_LINUX_PROC, "needs /proc to find the worker processes")
class TestNoProcessLeftBehind(FewNamesCase, unittest.TestCase):
    """A real run in a process of its own, with 3 workers on batches of 6, ended every way a run can end;
    after each, every process it started is gone within 10 seconds."""

    def start(self, *extra, stdout=subprocess.PIPE, steps=100000):
        self.path = os.path.join(self.tmp, "m.json")
        argv = [sys.executable, SCRIPT, "--data", self.data, "--n-embd", 8, "--n-head", 2, "--batch-size", 6,
                "--workers", 3, "--steps", steps, "--eval-every", 50, "--save", self.path, *extra]
        run = subprocess.Popen([str(a) for a in argv], stdout=stdout, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)   # its own group, as in a shell
        self.addCleanup(lambda: run.poll() is None and run.kill() or run.communicate())
        deadline = time.monotonic() + 60
        workers = lambda: [pid for pid in descendants(run.pid) if "worker_main" in read(f"/proc/{pid}/cmdline")]
        while len(workers()) < 2:                                   # the two workers, started (exec'd)
            self.assertIsNone(run.poll(), run.stderr.read() if run.poll() is not None else "")
            self.assertLess(time.monotonic(), deadline, "the workers never started")
            time.sleep(0.05)
        time.sleep(0.5)                                             # a few steps in, the workers busy
        self.started, self.workers = descendants(run.pid), workers()
        self.assertEqual(len(self.workers), 2)
        return run

    @classmethod
    def setUpClass(cls):
        # This process adopts what the runs leave behind (PR_SET_CHILD_SUBREAPER), so that an orphan is found
        # even after the run that started it is gone: it would become a child of this process.
        cls.libc = ctypes.CDLL(None, use_errno=True) if hasattr(ctypes, "CDLL") else None
        cls.adopting = bool(cls.libc) and cls.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        cls.before = descendants(os.getpid())

    @classmethod
    def tearDownClass(cls):
        if cls.adopting:
            cls.libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

    def left_behind(self):
        """What the runs started that still runs: the processes seen under a run, and any adopted since."""
        while True:                                                 # (adopted and ended: collect them)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        adopted = descendants(os.getpid()) - self.before if self.adopting else set()
        return sorted(pid for pid in self.started | adopted if alive(pid))

    def assert_all_gone(self):
        deadline = time.monotonic() + 10
        while self.left_behind() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.left_behind(), [])

    def ended(self, run):
        out, err = run.communicate(timeout=60)
        return run.returncode, out, err

    def test_ctrl_c_and_sigterm_and_sighup(self):
        """Bugs: workers that die of the terminal's Ctrl-C mid-step (it reaches the whole group); a run that
        waits for them for ever; workers left running after the run saved and left."""
        for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)):
            with self.subTest(signal=signum.name):
                run = self.start()
                os.killpg(run.pid, signum)                          # the whole group, as a terminal does
                code, out, err = self.ended(run)
                self.assertEqual(code, status, err)
                self.assertEqual(err, "")
                self.assertEqual(load_json(self.path)["step"], int(re.search(r"at step (\d+)", out).group(1)))
                self.assert_all_gone()

    def test_the_run_killed(self):
        run = self.start()
        run.kill()
        run.wait(timeout=10)
        self.assert_all_gone()

    def test_a_worker_killed(self):
        """Bug: the run waits for ever on a dead worker's answer, or ends in a traceback."""
        run = self.start()
        os.kill(self.workers[0], signal.SIGKILL)
        code, out, err = self.ended(run)
        self.assertEqual(code, 70, err)
        line = err.strip().splitlines()
        self.assertEqual(len(line), 1, err)
        self.assertRegex(line[0], r"^microgpt: error: worker process \d+ died \(killed by SIGKILL\); saved the last "
                                  r"good state \(step (\d+)\) to ")
        self.assertEqual(load_json(self.path)["step"], int(re.search(r"step (\d+)\)", line[0]).group(1)))
        self.assert_all_gone()

    def test_the_output_gone(self):
        """A reader that goes away mid-run (`| head`): 141, and the workers with it. A full disk (/dev/full)
        fails the first write, before any worker: 74, one line, nothing started left behind."""
        run = self.start()
        run.stdout.close()
        self.assertEqual(run.wait(timeout=60), 141, run.stderr.read())
        self.assert_all_gone()
        if os.path.exists("/dev/full"):
            with open("/dev/full", "w") as full:
                run = subprocess.run([sys.executable, SCRIPT, "--data", self.data, "--batch-size", "6", "--workers",
                                      "3"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
            self.assertEqual((run.returncode, run.stderr), (74, "microgpt: error: cannot write to the output (No "
                                                               "space left on device)\n"))
            self.started = set()
            self.assert_all_gone()

    def test_a_run_that_finishes(self):
        run = self.start(steps=150)
        code, out, err = self.ended(run)
        self.assertEqual(code, 0, err)
        self.assertIn("trained 150 steps", out)
        self.assert_all_gone()

    @slow
    def test_a_stopped_worker_and_ctrl_c(self):
        """Bug: the run waits for ever on a worker that stopped (SIGSTOP, a debugger), deaf to Ctrl-C."""
        run = self.start()
        os.kill(self.workers[0], signal.SIGSTOP)
        self.addCleanup(lambda: alive(self.workers[0]) and os.kill(self.workers[0], signal.SIGKILL))
        time.sleep(0.5)
        os.killpg(run.pid, signal.SIGINT)
        code, out, err = self.ended(run)
        self.assertEqual(code, 70, err)
        self.assertRegex(err, r"^microgpt: error: worker process \d+ did not answer within 10 s of the stop; saved "
                              r"the last good state \(step \d+\) to .*\n$")
        self.assert_all_gone()

    def start_long(self):
        """A run whose shares take seconds (4 documents of 128 positions each), one second into a share."""
        long_docs = os.path.join(self.tmp, "long.txt")
        with open(long_docs, "w") as f:
            f.write("\n".join("".join(FEW_NAMES[i:] + FEW_NAMES[:i]) for i in range(12)) + "\n")
        run = self.start("--data", long_docs, "--block-size", 128, "--n-embd", 16, "--batch-size", 12)
        time.sleep(1.0)                             # inside a share of 4 documents of 128 positions: 4 s or so
        return run

    def test_a_worker_killed_mid_share(self):
        """Bug: the end of a dead worker's pipe, met while its answer is read (EOFError, not the OSError of a
        write), let through as a traceback."""
        run = self.start_long()
        os.kill(self.workers[0], signal.SIGKILL)
        code, out, err = self.ended(run)
        self.assertEqual(code, 70, err)
        self.assertRegex(err, r"^microgpt: error: worker process \d+ died \(killed by SIGKILL\); saved the last good "
                              r"state \(step \d+\) to .*\n$")
        self.assertEqual(load_json(self.path)["step"], int(re.search(r"step (\d+)\)", err).group(1)))
        self.assert_all_gone()

    def test_a_run_killed_mid_share_takes_its_workers_at_once(self):
        """Bug: a worker that notices its run is gone only when its share is done (minutes, on a big model)."""
        run = self.start_long()
        run.kill()
        run.wait(timeout=10)
        deadline = time.monotonic() + 1.5
        while self.left_behind() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.left_behind(), [])

    def test_a_module_in_the_current_folder_does_not_shadow_the_workers(self):
        """Bug: the workers' path starts with the current folder (python -c), so its csv.py is imported."""
        folder = os.path.join(self.tmp, "here")
        os.mkdir(folder)
        with open(os.path.join(folder, "csv.py"), "w") as f:
            f.write("raise ImportError('the csv.py of the current folder')\n")
        run = subprocess.run([sys.executable, SCRIPT, "--data", self.data, "--n-embd", "8", "--n-head", "2",
                              "--batch-size", "4", "--workers", "2", "--steps", "4", "--eval-every", "2"],
                             capture_output=True, text=True, timeout=120, cwd=folder, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, run.stderr)
