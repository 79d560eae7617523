"""Checkpoints as a user meets them: a real Ctrl-C and a resume that continues the run line for line, a
checkpoint damaged in every way a file can be, and a save killed at random moments."""
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

from support import FEW_NAMES, ROOT, SCRIPT, TempDirTestCase, microgpt, run_main, write_file

TIMES = re.compile(r"\d+\.\d (s|min)( left)?|\d+\.\d ms/step")


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
        match = re.fullmatch(rf"interrupted at step (\d+): saved {re.escape(path)}; continue with --resume "
                             rf"{re.escape(path)}", last)
        self.assertIsNotNone(match, last)
        return int(match.group(1))

    def test_resume_alone_continues_the_run_line_for_line_to_the_same_checkpoint(self):
        status, whole, err = run_main("--data", self.data, *self.RUN, *self.files("full"))
        self.assertEqual(status, 0, err)
        stopped = self.interrupt_a_real_run()
        self.assertLess(stopped, 300)
        with open(os.path.join(self.tmp, "part", "run.json")) as f:
            self.assertEqual(json.load(f)["step"], stopped)
        status, resumed, err = run_main("--resume", os.path.join(self.tmp, "part", "run.json"))
        self.assertEqual(status, 0, err)

        def after(text, folder):
            """The lines after the step the run was stopped at, times blanked and the folder named alike."""
            lines = TIMES.sub("<time>", text.replace(os.path.join(self.tmp, folder), "<dir>")).splitlines()
            first = next(i for i, line in enumerate(lines) if re.match(r"(step|eval) +(\d+)", line)
                         and int(re.match(r"\w+ +(\d+)", line).group(1)) > stopped)
            return lines[first:]

        self.assertEqual(after(whole, "full"), after(resumed, "part"))
        self.assertIn(f"resuming {self.tmp}/part/run.json at step {stopped}", resumed)
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
        with open(path) as f:
            state = json.load(f)
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
        on_step, sample = microgpt.Monitor.on_step, microgpt.sample
        calls = {"samples": 0}

        def stop_after_two(monitor, *a):
            monitor.stop_requested = monitor.step_done + 1 - monitor.start_step >= 2
            return on_step(monitor, *a)

        def interrupt_after_three(*a, **k):
            calls["samples"] += 1
            if calls["samples"] > 3:
                raise KeyboardInterrupt
            return sample(*a, **k)

        microgpt.Monitor.on_step, microgpt.sample = stop_after_two, interrupt_after_three
        self.addCleanup(setattr, microgpt.Monitor, "on_step", on_step)
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
        points = damage_points(self.state)
        self.assertGreater(len(points), 120)
        tried, original = 0, json.dumps(self.state)
        for path in points:
            where = ".".join(map(str, path))
            for name, value in DAMAGES:
                text = json.dumps(damaged(original, path, value))
                for mode in ("--load", "--resume"):
                    with self.subTest(field=where, damage=name, mode=mode):
                        got = self.outcome(text, mode)
                        optional = path[:1] == ("settings",) and path[1:2] and path[1] in microgpt.WATCH_DEFAULTS
                        required = not optional and path[:2] != ("metrics", "eval")
                        if name in NEVER_VALID or (name == "deleted" and required):
                            self.assertEqual(got, "error")
                    tried += 1
        self.assertGreater(tried, 3000)
        print(f"\n{len(points)} fields x {len(DAMAGES)} damages x 2 modes = {tried} damaged checkpoints",
              file=sys.stderr)

    def test_the_undamaged_checkpoint_works_both_ways(self):
        """The harness can tell 'works' from 'error': without damage, both modes work."""
        text = json.dumps(self.state)
        self.assertEqual([self.outcome(text, mode) for mode in ("--load", "--resume")], ["works", "works"])

    def test_whole_files_that_are_not_checkpoints(self):
        text = json.dumps(self.state)
        cases = {"empty": "", "truncated early": text[:50], "truncated late": text[:-3], "a list": "[1, 2]",
                 "a number": "42", "a string": '"checkpoint"', "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
                 "object nested 100,000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
                 "another format": text.replace(microgpt.CHECKPOINT_FORMAT, "microgpt checkpoint 1"),
                 "a 5000-digit number": text.replace('"step": 3', '"step": ' + "9" * 5000)}
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
import json, random, sys
sys.path.insert(0, {root!r})
import microgpt
path = sys.argv[1]
gpt = microgpt.GPT(27, 32, 4, 2, 16, random.Random(0))
tokenizer = microgpt.Tokenizer([chr(97 + i) for i in range(26)])
settings = {{**microgpt.DEFAULTS, **microgpt.WATCH_DEFAULTS, "n_embd": 32, "n_layer": 2, "block_size": 16,
            "data": "names.txt", "save": path}}
texts = []
for step in (1, 2):               # two checkpoints, as save_checkpoint writes them, one step apart
    optimizer = microgpt.Adam(gpt.params)
    optimizer.t = step
    metrics = {{"train": [[i + 1, 1.0, 0.01, 1.0, 1.0, 1.0, None, 0] for i in range(step)], "eval": []}}
    microgpt.save_checkpoint(path, gpt, tokenizer, optimizer, random.Random(0), step, settings, metrics)
    texts.append(open(path).read())
print("ready", flush=True)
n = 0
while True:                       # save after save through the same atomic write, until killed
    microgpt.write_atomically(path, texts[n % 2])
    n += 1
"""


class TestKilledWhileSaving(TempDirTestCase, unittest.TestCase):
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
                state = microgpt.load_checkpoint(path)      # complete and valid, or this raises
                self.assertIn(state["step"], (1, 2))        # the old checkpoint or the new one
        leftovers = [name for name in os.listdir(self.tmp) if name != "run.json"]
        # a later save that completes leaves nothing behind, whatever the killed ones left
        gpt = microgpt.GPT(27, 8, 2, 1, 8, random.Random(0))
        settings = {**microgpt.DEFAULTS, **microgpt.WATCH_DEFAULTS, "n_embd": 8, "n_head": 2, "data": "x"}
        microgpt.save_checkpoint(path, gpt, microgpt.Tokenizer([chr(97 + i) for i in range(26)]),
                                 microgpt.Adam(gpt.params), random.Random(0), 0, settings, {"train": [], "eval": []})
        self.assertEqual(os.listdir(self.tmp), ["run.json"], f"left by the killed saves: {leftovers}")
        self.assertEqual(microgpt.load_checkpoint(path)["step"], 0)


if __name__ == "__main__":
    unittest.main()
