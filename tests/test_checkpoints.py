"""Checkpoints: what one holds, a resume that continues the run exactly (after a real Ctrl-C too), --load,
every way a file can be damaged or be something else, and a save killed at random moments."""
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

from support import (FAST, FEW_NAMES, ROOT, SCRIPT, TIMES, FewNamesCase, TempDirTestCase, microgpt, replaced,
                     run_main, slow, workbench, write_file)

TIMES = re.compile(TIMES)


def losses_of(text):
    return [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", text, re.M)]


def samples_of(text):
    return re.findall(r"^sample +\d+: (.*)$", text, re.M)


def load_json(path):
    with open(path) as f:
        return json.load(f)


class CheckpointCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 10, "--print-every", 1]
    RUN = ["--steps", 40, "--batch-size", 2, "--warmup-steps", 5, "--min-lr", 0.001, "--samples", 6, "--top-k", 5]

    def checkpoint(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 2, "--samples", 0, "--save", path)
        return path

    def interrupted_at(self, step, path):
        """Run self.RUN with --save path, stopping it (as Ctrl-C does) after `step` steps."""
        original = workbench.Watch.on_step

        def on_step(watch, *a):
            watch.stop.requested = watch.step_done + 1 == step      # what the Ctrl-C handler sets
            return original(watch, *a)

        with replaced(workbench.Watch, "on_step", on_step):
            status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--save", path)
        self.assertEqual(status, 130, err)
        self.assertIn(f"interrupted at step {step}: saved {path}; continue with --resume {path}", out)
        return load_json(path)


class TestWhatACheckpointHolds(CheckpointCase):
    def test_plain_json_with_everything_resuming_needs(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 3, "--samples", 0, "--save", path)
        state = load_json(path)
        self.assertEqual(set(state), {"format", "config", "chars", "settings", "step", "params", "adam",
                                      "rng_state", "metrics", "data_sha256"})
        with open(self.data, "rb") as f:
            self.assertEqual(state["data_sha256"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(state["config"], {"vocab_size": 22, "n_embd": 8, "n_head": 2, "n_layer": 1,
                                           "block_size": 16})
        self.assertEqual(state["adam"]["t"], 3)
        self.assertEqual(len(state["metrics"]["train"]), 3)
        self.assertEqual(state["settings"]["data"], os.path.abspath(self.data))
        self.assertEqual(set(state["settings"]), {s.name for s in workbench.kept(workbench.MicrogptEngine)})

    def test_resume_after_25_steps_is_bit_for_bit_the_uninterrupted_40(self):
        full, half, end = (os.path.join(self.tmp, name) for name in ("full.json", "half.json", "end.json"))
        whole = self.ok(*self.RUN, "--save", full)
        self.assertEqual(self.interrupted_at(25, half)["step"], 25)     # between two evaluations
        resumed = self.ok("--resume", half, "--samples", 6, "--top-k", 5, "--save", end)
        self.assertIn(f"resuming {half} at step 25", resumed)
        self.assertEqual(len(losses_of(resumed)), 15)
        self.assertEqual(losses_of(whole)[25:], losses_of(resumed))
        evals = lambda text: re.findall(r"^eval .*$", text, re.M)
        self.assertEqual(evals(whole)[2:], evals(resumed))          # at 30 (steps 21-30) and 40 alike
        self.assertEqual(samples_of(whole), samples_of(resumed))
        a, b = load_json(full), load_json(end)
        self.assertTrue(a["params"] == b["params"], "parameters differ")   # exact: JSON keeps every bit
        self.assertTrue(a["adam"] == b["adam"], "Adam's state differs")
        self.assertEqual(a["rng_state"], b["rng_state"])
        self.assertEqual([r[1:4] for r in a["metrics"]["train"]], [r[1:4] for r in b["metrics"]["train"]])

    def test_a_failed_write_leaves_the_old_checkpoint_whole(self):
        path = write_file(self.tmp, "model.json", '{"old": true}')

        def crash(*a):
            raise OSError(28, "No space left on device")

        with replaced(os, "replace", crash):
            with self.assertRaises(workbench.OutputError):
                workbench.write_atomically(path, '{"new": true}')
        with open(path) as f:
            self.assertEqual(f.read(), '{"old": true}')
        self.assertEqual(sorted(os.listdir(self.tmp)), ["model.json", "names.txt"])     # no temporary left


class TestResumeRefusesAnotherRun(CheckpointCase):
    def test_another_seed_or_validation_fraction(self):
        """Bug: the split's settings left out of the check in resolve_settings()."""
        path = self.checkpoint()
        for option, value, says in (("--seed", 7, "has seed 42, not 7"),
                                    ("--val-fraction", 0.2, "has val_fraction 0.1, not 0.2")):
            status, out, err = run_main("--resume", path, option, value)
            self.assertEqual(status, 2, out)
            self.assertIn(says, err)
        self.assertEqual(run_main("--resume", path, "--seed", 42, "--steps", 3, "--samples", 0)[0], 0)

    def test_another_model_size(self):
        path = self.checkpoint()
        self.fails("--resume", path, "--n-embd", 16, says="has n_embd 8, not 16")
        self.fails("--load", path, "--block-size", 8, says="has block_size 16, not 8")

    def test_data_of_another_vocabulary(self):
        path = self.checkpoint()
        other = write_file(self.tmp, "other.txt", "zoë\nemma\n")
        self.fails("--resume", path, "--data", other, "--new-data", says="has characters checkpoint")

    def test_other_data_is_refused_unless_asked_for_and_then_starts_its_history_again(self):
        """Bugs: another data file resumed after a notice only (the run overwrites its checkpoint, and its
        summary compares validation losses of two texts); --new-data keeping the old text's history."""
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 20, "--samples", 0, "--save", path)
        other = write_file(self.tmp, "other.txt", "\n".join(reversed(FEW_NAMES)) + "\nemma\n")
        with open(path, "rb") as f:
            before = f.read()
        line = self.fails("--resume", path, "--data", other, says="is not the text checkpoint")
        self.assertIn("give --new-data to train it on this text all the same", line)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)                          # nothing written
        out = self.ok("--resume", path, "--data", other, "--new-data", "--steps", 40)
        self.assertIn("its validation history starts again at step 20", out)
        state = workbench.load_checkpoint(path)
        evals = [(row["step"], row["val_loss"] is None) for row in state["metrics"]["eval"]]
        self.assertEqual(evals, [(10, True), (20, True), (30, False), (40, False)])     # the old text's blanked
        self.assertEqual([row["step"] for row in state["metrics"]["train"]], list(range(1, 41)))
        with open(other, "rb") as f:
            self.assertEqual(state["data_sha256"], hashlib.sha256(f.read()).hexdigest())
        self.assertRegex(out, r"where it stands: val loss \d\.\d{4} at step 40 ")
        self.fails("--new-data", "--steps", 3, says="--new-data goes with --resume")

    def test_fewer_steps_than_done(self):
        path = self.checkpoint()
        self.fails("--resume", path, "--steps", 1, says="--steps 1 is fewer than the 2 steps checkpoint")


class TestFilesThatAreNotCheckpoints(CheckpointCase):
    def test_missing(self):
        self.fails("--load", os.path.join(self.tmp, "nope.json"), says="not found")

    def test_not_json(self):
        self.fails("--resume", write_file(self.tmp, "x.json", "emma\nolivia\n"), says="not valid JSON")

    def test_truncated(self):
        path = self.checkpoint()
        with open(path) as f:
            text = f.read()
        write_file(self.tmp, "model.json", text[:len(text) // 2])
        self.fails("--resume", path, says="not valid JSON, perhaps truncated")

    def test_json_that_is_not_a_checkpoint(self):
        self.fails("--load", write_file(self.tmp, "x.json", '{"hello": 1}'), says="not a microgpt checkpoint")

    def test_damaged_in_ways_the_message_names(self):
        """The first problem found is named, with where it is."""
        path = self.checkpoint()
        state = load_json(path)

        def drop_a_row(st):              # consistent counts, wrong shape: lm_head one row short
            n = len(st["params"]["lm_head"].pop())
            st["adam"]["m"], st["adam"]["v"] = st["adam"]["m"][n:], st["adam"]["v"][n:]

        cases = [(lambda st: st["params"]["wte"][0].__setitem__(0, "x"), "params.wte[0][0] is not a finite number"),
                 (drop_a_row, "params.lm_head is not a list of 22"),
                 (lambda st: st.__setitem__("chars", st["chars"][:-1]), "config.vocab_size is not a whole number"),
                 (lambda st: st["adam"].__setitem__("t", 1), "adam.t is not a whole number from 2 to 2"),
                 (lambda st: st["rng_state"][1].__setitem__(624, 625), "rng_state is not a state of random.Random"),
                 (lambda st: st["metrics"]["train"].reverse(), "metrics.train is not the rows of steps 1 to 2")]
        for damage, says in cases:
            broken = json.loads(json.dumps(state))
            damage(broken)
            write_file(self.tmp, "broken.json", json.dumps(broken))
            with self.subTest(says=says):
                line = self.fails("--load", os.path.join(self.tmp, "broken.json"), says="is damaged")
                self.assertIn(says, line)


def read_csv_without_times(path):
    """The CSV's rows with the wall-clock columns (tokens_per_sec, elapsed_s) blanked."""
    with open(path) as f:
        rows = [line.rstrip("\n").split(",") for line in f]
    return [row[:5] + ["", ""] + row[7:] if row[0] == "train" else row for row in rows]


class TestCtrlCThenResume(TempDirTestCase, unittest.TestCase):
    RUN = ["--steps", 300, "--n-embd", 8, "--n-head", 2, "--batch-size", 2, "--eval-every", 10,
           "--eval-docs", 3, "--print-every", 25, "--save-every", 100, "--samples", 5, "--temperature", 0.8,
           "--top-k", 6, "--warmup-steps", 20, "--min-lr", 0.001]

    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")
        for folder in ("full", "part"):
            os.mkdir(os.path.join(self.tmp, folder))

    def files(self, folder):
        folder = os.path.join(self.tmp, folder)
        return ["--save", os.path.join(folder, "run.json"), "--log", os.path.join(folder, "run.csv")]

    def interrupt_a_real_run(self):
        """Start the run in a child process, press Ctrl-C (SIGINT) once training is under way, and return
        the step it stopped at. A child that dies early fails the test at once; one that hangs is killed
        after 60 s, which ends its output, so this can never hang the suite."""
        argv = [sys.executable, SCRIPT, "--data", self.data, *map(str, self.RUN), *self.files("part")]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:                        # ends at end of file: the child has exited
                if line.startswith("step "):
                    break
            else:
                proc.wait()
                self.fail(f"the run ended before training started (status {proc.returncode}): {proc.stderr.read()}")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 130, err)
        self.assertNotIn("Traceback", err)
        last = out.strip().splitlines()[-1]
        path = os.path.join(self.tmp, "part", "run.json")
        log = os.path.join(self.tmp, "part", "run.csv")        # every output the run had, --log too
        match = re.fullmatch(rf"interrupted at step (\d+): saved {re.escape(path)}; continue with --resume "
                             rf"{re.escape(path)} --log {re.escape(log)}", last)
        self.assertIsNotNone(match, last)
        return int(match.group(1))

    @slow
    def test_resume_continues_the_run_line_for_line_to_the_same_checkpoint(self):
        """--resume PATH --log LOG after a real Ctrl-C: the rest of the run as it would have been, saved to PATH.
        (The log is given again: a path to write is never taken from a checkpoint.)"""
        status, whole, err = run_main("--data", self.data, *self.RUN, *self.files("full"))
        self.assertEqual(status, 0, err)
        stopped = self.interrupt_a_real_run()
        self.assertLess(stopped, 300)
        self.assertEqual(load_json(os.path.join(self.tmp, "part", "run.json"))["step"], stopped)
        status, resumed, err = run_main("--resume", os.path.join(self.tmp, "part", "run.json"),
                                        "--log", os.path.join(self.tmp, "part", "run.csv"))
        self.assertEqual(status, 0, err)

        def after(text, folder):
            """The lines after the step the run was stopped at, times blanked and the folder named alike."""
            lines = TIMES.sub("<time>", text.replace(os.path.join(self.tmp, folder), "<dir>")).splitlines()
            first = next(i for i, line in enumerate(lines) if re.match(r"(step|eval) +(\d+)", line)
                         and int(re.match(r"\w+ +(\d+)", line).group(1)) > stopped)
            return lines[first:]

        self.assertEqual(after(whole, "full"), after(resumed, "part"))
        self.assertIn(f"resuming {self.tmp}/part/run.json at step {stopped}\n  it saves to {self.tmp}/part/run.json "
                      f"as it goes, the file it resumes (--save PATH saves elsewhere)\n", resumed)
        self.assertRegex(resumed, r"trained 300 steps in .* evaluation took")
        self.assertEqual(len(re.findall(r"^eval ", resumed, re.M)), 30 - stopped // 10)
        self.assertGreaterEqual(stopped, 20)            # the history the resumed log rewrites holds evaluations
        self.assertEqual(len(re.findall(r"^sample +\d+: ", resumed, re.M)), 5)
        states = []
        for folder in ("full", "part"):
            with open(os.path.join(self.tmp, folder, "run.json")) as f:
                states.append(json.load(f))
        for key in ("params", "adam", "step", "rng_state"):
            self.assertTrue(states[0][key] == states[1][key], f"{key} differs")
        self.assertEqual(read_csv_without_times(os.path.join(self.tmp, "full", "run.csv")),
                         read_csv_without_times(os.path.join(self.tmp, "part", "run.csv")))

    def test_options_given_on_resume_override_the_saved_ones(self):
        path = os.path.join(self.tmp, "part", "run.json")
        run_main("--data", self.data, "--steps", 40, "--n-embd", 8, "--n-head", 2, "--eval-every", 10,
                 "--samples", 0, "--save", path, "--save-every", 20)
        state = load_json(path)
        state["step"], state["adam"]["t"] = 20, 20                    # as if stopped at step 20
        state["metrics"]["train"] = state["metrics"]["train"][:20]
        state["metrics"]["eval"] = state["metrics"]["eval"][:2]
        write_file(self.tmp, "part/run.json", json.dumps(state))
        status, out, err = run_main("--resume", path, "--eval-every", 5, "--print-every", 10)
        self.assertEqual(status, 0, err)
        self.assertEqual(re.findall(r"^eval +(\d+)", out, re.M), ["25", "30", "35", "40"])
        self.assertEqual(re.findall(r"^step +(\d+)", out, re.M), ["30", "40"])
        self.assertNotRegex(out, r"(?m)^sample +\d+:")             # --samples 0 was kept


# ---- the damaged-checkpoint fuzz

DELETE = object()
DAMAGES = [("deleted", DELETE), ("null", None), ("a string", "x"), ("a boolean", True), ("NaN", math.nan),
           ("infinity", math.inf), ("-infinity", -math.inf), ("negative", -1), ("zero", 0), ("huge", 10 ** 12),
           ("an empty list", []), ("an object", {})]
NEVER_VALID = {"a boolean", "NaN", "infinity", "-infinity", "an object"}
OPTIONAL = {s.name for s in workbench.SETTINGS if s.group in ("watching", "saving", "sampling")}   # default if missing
OPTIONAL.add("text")                    # (a checkpoint from before --text is of a documents run)


def damage_points(state):
    """Every field of a checkpoint to damage, as a path of keys: every key of every object, and the first
    and last element of every list (all of them for short lists such as rng_state)."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            keys = list(node)
        elif isinstance(node, list):
            keys = list(range(len(node))) if len(node) <= 4 else [0, len(node) - 1]
        else:
            return
        for key in keys:
            paths.append(path + (key,))
            walk(node[key], path + (key,))

    walk(state, ())
    return paths


def damaged(text, path, value):
    """The checkpoint `text` with the field at `path` damaged: a fresh copy parsed from the text."""
    broken = json.loads(text)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return broken


class TestDamagedCheckpoints(TempDirTestCase, unittest.TestCase):
    """Every field of a real checkpoint, damaged every way, through --load and --resume in this process:
    each must work or end with one line on stderr and status 2; never a traceback, a hang, or a model
    built from a non-finite number or a missing field."""

    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")
        self.path = os.path.join(self.tmp, "model.json")
        status, out, err = run_main("--data", self.data, "--steps", 3, "--n-embd", 8, "--n-head", 2,
                                    "--block-size", 6, "--eval-every", 2, "--samples", 0, "--save", self.path,
                                    "--log", os.path.join(self.tmp, "run.csv"))
        self.assertEqual(status, 0, err)
        with open(self.path) as f:
            self.state = json.load(f)
        self.state["settings"]["steps"] = 10            # mid-run: --resume goes on training, Adam and all
        cwd = os.getcwd()
        os.chdir(self.tmp)                      # a damaged relative --log or --save lands in the temp folder
        self.addCleanup(os.chdir, cwd)
        # Whatever a damaged checkpoint asks for, the harness presses Ctrl-C after two training steps or
        # three samples, so a valid but long run (10^12 steps or samples) ends like a user's.
        on_step, sample = workbench.Watch.on_step, microgpt.sample
        calls = {"samples": 0}

        def stop_after_two(watch, *a):
            watch.stop.requested = watch.step_done + 1 - watch.run.step >= 2
            return on_step(watch, *a)

        def interrupt_after_three(*a, **k):
            calls["samples"] += 1
            if calls["samples"] > 3:
                raise KeyboardInterrupt
            return sample(*a, **k)

        workbench.Watch.on_step, microgpt.sample = stop_after_two, interrupt_after_three
        self.addCleanup(setattr, workbench.Watch, "on_step", on_step)
        self.addCleanup(setattr, microgpt, "sample", sample)
        self.calls = calls

    def outcome(self, text, mode):
        """'works' or 'error' for the checkpoint text under --load or --resume; fails on anything else."""
        path = write_file(self.tmp, "case.json", text)
        self.calls["samples"] = 0
        try:
            status, out, err = run_main(mode, path)
        except BaseException as e:              # a traceback: exactly what must never happen
            raise AssertionError(f"{type(e).__name__}: {e}") from e
        if status == 2:
            lines = err.strip().splitlines()
            self.assertEqual(len(lines), 1, err)
            self.assertTrue(lines[0].startswith("microgpt: error: "), lines[0])
            return "error"
        self.assertIn(status, (0, 130), err)
        self.assertNotIn("Traceback", err)
        return "works"

    def test_every_field_damaged_every_way(self):
        """Every field of a real checkpoint, damaged each way, under --load and --resume (make test-fast: 300 of
        the cases, drawn by a fixed seed; make test: all of them)."""
        points = damage_points(self.state)
        self.assertGreater(len(points), 120)
        tried, original = 0, json.dumps(self.state)
        cases = [(i, j, mode) for i in range(len(points)) for j in range(len(DAMAGES))
                 for mode in ("--load", "--resume")]
        chosen = set(random.Random(0).sample(cases, 300)) if FAST else set(cases)
        for i, path in enumerate(points):
            where = ".".join(map(str, path))
            for j, (name, value) in enumerate(DAMAGES):
                modes = [mode for mode in ("--load", "--resume") if (i, j, mode) in chosen]
                text = json.dumps(damaged(original, path, value)) if modes else None
                for mode in modes:
                    with self.subTest(field=where, damage=name, mode=mode):
                        got = self.outcome(text, mode)
                        optional = path[:1] == ("settings",) and path[1:2] and path[1] in OPTIONAL
                        required = not optional and path[:2] != ("metrics", "eval") and path != ("data_sha256",)
                        switch = path[:1] == ("settings",) and path[1:] == ("text",)     # (true is --text)
                        if (name in NEVER_VALID and not (switch and name == "a boolean")) or (
                                name == "deleted" and required):
                            self.assertEqual(got, "error")
                    tried += 1
        self.assertGreater(tried, 299 if FAST else 3000)
        every = len(points) * len(DAMAGES) * 2
        print(f"\n{len(points)} fields x {len(DAMAGES)} damages x 2 modes = {every:,} damaged checkpoints" +
              ("" if tried == every else f", {tried:,} of them tried (make test-fast: a sample)"), file=sys.stderr)

    def test_the_undamaged_checkpoint_works_both_ways(self):
        """The harness can tell 'works' from 'error': without damage, both modes work."""
        text = json.dumps(self.state)
        self.assertEqual([self.outcome(text, mode) for mode in ("--load", "--resume")], ["works", "works"])

    def test_whole_files_that_are_not_checkpoints(self):
        text = json.dumps(self.state)
        cases = {"empty": "", "truncated early": text[:50], "truncated late": text[:-3], "a list": "[1, 2]",
                 "a number": "42", "a string": '"checkpoint"', "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
                 "object nested 100,000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
                 "another format": text.replace(workbench.CHECKPOINT_FORMAT, "microgpt checkpoint 1"),
                 "a 5000-digit number": text.replace('"step": 3', '"step": ' + "9" * 5000),
                 "a 400-digit step": json.dumps(damaged(text, ("step",), 10 ** 400)),
                 "a 400-digit weight": json.dumps(damaged(text, ("params", "wte", 0, 0), 10 ** 400)),
                 "a 400-digit Adam v": json.dumps(damaged(text, ("adam", "v", 0), -10 ** 400))}
        for name, content in cases.items():
            for mode in ("--load", "--resume"):
                with self.subTest(case=name, mode=mode):
                    self.assertEqual(self.outcome(content, mode), "error")
        path = os.path.join(self.tmp, "latin1.json")
        with open(path, "wb") as f:
            f.write(text[:-1].encode() + b', "note": "zo\xeb"}')           # 0xEB: Latin-1 for ë, not UTF-8
        self.assertIn("is not UTF-8 text", run_main("--load", path)[2])

    def test_a_checkpoint_of_absurd_size_is_refused_before_anything_is_built(self):
        """Consistent and huge: a config of n_embd 10^6 whose params claim to match. Refused by the memory
        estimate or the shape check at once, not by trying to allocate 10^13 Values."""
        state = json.loads(json.dumps(self.state))
        for section in ("config", "settings"):
            state[section]["n_embd"] = 10 ** 6
        t0 = time.perf_counter()
        self.assertEqual(self.outcome(json.dumps(state), "--load"), "error")
        self.assertLess(time.perf_counter() - t0, 5)


# ---- crash safety

SAVER = """
import random, sys
sys.path.insert(0, {root!r})
import microgpt, workbench
path = sys.argv[1]
settings = {{**{{s.name: s.default for s in workbench.kept(workbench.MicrogptEngine)}}, "n_embd": 32, "n_layer": 2,
            "block_size": 16, "data": "names.txt", "save": path}}
tokenizer = microgpt.Tokenizer([chr(97 + i) for i in range(26)])
engine = workbench.MicrogptEngine(settings, tokenizer, random.Random(0))
texts = []
for step in (1, 2):               # two checkpoints, as a run writes them, one step apart
    engine.optimizer.t = step
    row = dict(zip(workbench.TRAIN_FIELDS, [0, 1.0, 0.01, 1.0, 1.0, 1.0, None, 0]))
    metrics = {{"train": [dict(row, step=i + 1) for i in range(step)], "eval": []}}
    texts.append(workbench.checkpoint_text(engine.state(), tokenizer.chars, settings, step,
                                           random.Random(0).getstate(), metrics))
print("ready", flush=True)
n = 0
while True:                       # save after save through the same atomic write, until killed
    workbench.write_atomically(path, texts[n % 2])
    n += 1
"""


class TestKilledWhileSaving(TempDirTestCase, unittest.TestCase):
    @slow
    def test_sigkill_at_random_moments_leaves_a_whole_checkpoint_and_no_temporary_file_after(self):
        """A child saves checkpoints back to back; SIGKILL lands at a random moment of a save (opening,
        writing, syncing or renaming). Bugs it catches: writing the checkpoint in place (a killed save
        leaves half a file), a temporary name per process (a killed save leaves a file no later save
        removes)."""
        path = os.path.join(self.tmp, "run.json")
        code = SAVER.format(root=ROOT)
        rng = random.Random(0)
        for kill in range(15):
            proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            watchdog = threading.Timer(60, proc.kill)
            watchdog.start()
            try:
                ready = proc.stdout.readline()
                self.assertEqual(ready, "ready\n", proc.stderr.read() if not ready else ready)
                time.sleep(rng.uniform(0.0, 0.03))          # one save takes a few milliseconds
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
            finally:
                watchdog.cancel()
            with self.subTest(kill=kill):
                state = workbench.load_checkpoint(path)     # complete and valid, or this raises
                self.assertIn(state["step"], (1, 2))        # the old checkpoint or the new one
        leftovers = [name for name in os.listdir(self.tmp) if name != "run.json"]
        # a later save that completes leaves nothing behind, whatever the killed ones left
        settings = {**{s.name: s.default for s in workbench.kept(workbench.MicrogptEngine)}, "n_embd": 8, "n_head": 2,
                    "data": "x"}
        tokenizer = microgpt.Tokenizer([chr(97 + i) for i in range(26)])
        engine = workbench.MicrogptEngine(settings, tokenizer, random.Random(0))
        workbench.write_atomically(path, workbench.checkpoint_text(engine.state(), tokenizer.chars, settings, 0,
                                                                   random.Random(0).getstate(),
                                                                   {"train": [], "eval": []}))
        self.assertEqual(os.listdir(self.tmp), ["run.json"], f"left by the killed saves: {leftovers}")
        self.assertEqual(workbench.load_checkpoint(path)["step"], 0)


if __name__ == "__main__":
    unittest.main()
