"""Options and the command line: each setting declared once (and --help, the checks and the checkpoint
derived from it), a run end to end in a subprocess, your own data, and every kind of bad input: one line
on stderr, exit status 2, before any work."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import unittest

from support import (SCRIPT, FewNamesCase, TempDirTestCase, microgpt, replaced, run_cli, run_main, workbench,
                     write_file)

LOSS = re.compile(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", re.M)


def losses_of(text):
    return [float(x) for x in LOSS.findall(text)]


def samples_of(text):
    return re.findall(r"^sample +\d+: (.*)$", text, re.M)


class OptionsCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 10, "--print-every", 1]

    def checkpoint(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 2, "--samples", 0, "--save", path)
        return path


class TestEachSettingDeclaredOnce(OptionsCase):
    def test_a_new_setting_declared_in_one_place_is_in_help_the_checks_and_the_checkpoint(self):
        """Bugs: a parser, a check or a checkpoint that lists the settings by hand (the new one would be
        missing from it)."""
        new = workbench.Setting("warmth", 3, int, workbench.AT_LEAST_1, "watching", "a setting of this test")
        with replaced(workbench.settings, "SETTINGS", workbench.SETTINGS + [new]):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(workbench.main(["--help"]), 0)
            self.assertRegex(out.getvalue(), r"--warmth N +a setting of this test \(default 3\)")
            self.fails("--warmth", 0, says="--warmth must be at least 1, got 0")
            path = os.path.join(self.tmp, "run.json")
            self.ok("--steps", 2, "--samples", 0, "--warmth", 7, "--save", path)
            with open(path) as f:
                state = json.load(f)
            self.assertEqual(state["settings"]["warmth"], 7)
            state["settings"]["warmth"] = "hot"
            write_file(self.tmp, "run.json", json.dumps(state))
            self.fails("--resume", path, says="settings.warmth must be a whole number, got 'hot'")
            del state["settings"]["warmth"]                         # a checkpoint from before it: the default
            write_file(self.tmp, "run.json", json.dumps(state))
            self.assertEqual(workbench.load_checkpoint(path)["settings"]["warmth"], 3)

    def test_help_says_every_default_from_the_declaration(self):
        r = run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for setting in workbench.SETTINGS:
            self.assertIn(setting.option, r.stdout)
        text = " ".join(r.stdout.split())
        for option, default in (("--temperature X", "0.5"), ("--steps N", "500"), ("--lr X", "0.01"),
                                ("--eval-every N", "100"), ("--n-embd N", "16"), ("--min-lr X", "0")):
            self.assertRegex(text, rf"{re.escape(option)} .*?\(default {re.escape(default)}\)")


class TestBadOptions(OptionsCase):
    def test_prefix_with_an_unknown_character_or_too_long(self):
        self.fails("--prefix", "k9", says="--prefix 'k9' has characters the model does not know: '9k'")
        self.fails("--prefix", "abcdefghabcdefgh", says="must be shorter than block_size 16")

    def test_bad_numbers(self):
        for args, says in [(("--top-k", 0), "--top-k must be at least 1"),
                           (("--batch-size", 0), "--batch-size must be at least 1"),
                           (("--val-fraction", 1), "--val-fraction must be at least 0 and less than 1"),
                           (("--val-fraction", -0.1), "--val-fraction must be at least 0 and less than 1")]:
            with self.subTest(args=args):
                self.fails(*args, says=says)

    def test_validation_split_that_leaves_no_training_document(self):
        one = write_file(self.tmp, "one.txt", "emma\n")
        got, out, err = run_main("--data", one, "--val-fraction", 0.5)
        self.assertEqual(got, 2)
        self.assertIn("leaves none to train on", err)

    def test_log_or_save_where_nothing_can_be_written(self):
        missing = os.path.join(self.tmp, "no", "such", "folder", "x.json")
        self.fails("--save", missing, says="does not exist")
        self.fails("--log", missing, says="does not exist")
        self.fails("--save", self.tmp, says="is a folder")
        not_a_folder = os.path.join(self.data, "x.csv")               # a file where a folder should be
        self.fails("--log", not_a_folder, says="does not exist")

    def test_options_that_would_do_nothing(self):
        path = self.checkpoint()
        self.fails("--load", path, "--steps", 5, says="use --resume PATH to train further")
        self.fails("--load", path, "--save", path, says="have nothing to write")
        self.fails("--load", path, "--log", os.path.join(self.tmp, "x.csv"), says="have nothing to write")
        self.fails("--save-every", 10, says="--save-every needs --save PATH")

    def test_options_that_contradict_each_other(self):
        self.fails("--lr", 0.01, "--min-lr", 0.02, says="--min-lr 0.02 is above --lr 0.01")
        self.fails("--steps", 10, "--warmup-steps", 11, says="--warmup-steps 11 is more than --steps 10")
        self.fails("--min-lr", 0.02, says="--min-lr 0.02 is above --lr 0.01")          # against the default lr
        self.ok("--steps", 10, "--warmup-steps", 10, "--min-lr", 0.01, "--samples", 0)   # the edges are allowed
        path = self.checkpoint()
        self.fails("--resume", path, "--steps", 1, says="--steps 1 is fewer than the 2 steps checkpoint")

    def test_a_model_too_big_for_this_machine_is_refused_before_it_is_built(self):
        t0 = time.perf_counter()
        # 12 n_embd^2 per layer plus (2 vocab_size + block_size) n_embd: 12e12 + (2 * 22 + 16) * 1e6
        line = self.fails("--n-embd", 1_000_000, "--n-head", 1, says="has 12,000,060,000,000 parameters")
        self.assertRegex(line, r"needs about [\d,.]+ GB here; this process may use [\d,.]+ GB")
        self.fails("--batch-size", 10 ** 12, says="(batch 1000000000000)")
        self.assertLess(time.perf_counter() - t0, 2)

    def test_files_that_are_not_regular_fail_at_once(self):
        """In a child process with a time limit: were the check missing, opening the FIFO would wait for a
        writer forever and /dev/zero would be read forever; the limit turns that into a failure."""
        fifo = os.path.join(self.tmp, "fifo")
        os.mkfifo(fifo)
        for option, path, says in (("--data", fifo, f"data file {fifo} is not a regular file"),
                                   ("--data", "/dev/zero", "data file /dev/zero is not a regular file"),
                                   ("--resume", fifo, f"checkpoint {fifo} is not a regular file"),
                                   ("--save", "/dev/null", "--save /dev/null is not a regular file")):
            with self.subTest(option=option, path=path):
                r = subprocess.run([sys.executable, SCRIPT, "--data", self.data, option, path, "--steps", "1"],
                                   capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
                self.assertIn(says, r.stderr)

    def test_eval_samples_out_of_range(self):
        """Drawn inside a training step, where Ctrl-C only asks to stop after the step: a huge count could never
        be interrupted (PyPy's list of 10^12 fails at once; CPython's would run for ever)."""
        for count in (-1, 101, 10 ** 12):
            self.fails("--eval-samples", count, says=f"--eval-samples must be between 0 and 100, got {count}")

    def test_an_empty_file_name(self):
        """Bug: `args.data or default`, which reads names.txt when --data '' was given."""
        self.fails("--data", "", says="--data must be a file name, got ''")
        self.fails("--save", "", says="--save must be a file name, got ''")

    def test_an_option_of_the_wrong_type_is_one_line(self):
        self.fails("--seed", "1.5", says="argument --seed: invalid int value: '1.5'; see --help")
        self.fails("--no-such-option", says="unrecognized arguments: --no-such-option")
        self.fails("--lr", "nan", says="--lr must be a finite number, got nan")

    def test_a_loss_that_stops_being_finite_saves_the_last_good_state(self):
        """Bug: nothing saved when the loss stops being finite (the run is lost with it)."""
        path = os.path.join(self.tmp, "run.json")
        original, calls = microgpt.train_step, []

        def third_goes_wrong(*a):
            calls.append(1)
            if len(calls) == 3:
                raise FloatingPointError("loss inf, gradient norm inf")
            return original(*a)

        with replaced(microgpt, "train_step", third_goes_wrong):
            line = self.fails("--steps", 10, "--save", path, says="training stopped at step 3: loss inf")
        self.assertIn(f"saved the last good state (step 2) to {path}", line)
        self.assertEqual(workbench.load_checkpoint(path)["step"], 2)

    def test_a_state_no_checkpoint_could_hold_is_not_saved(self):
        """Bug: saving weights of 1e300 (a learning rate of 1e300): a checkpoint the program's own --load then
        refuses, reported as "the last good state"."""
        path = os.path.join(self.tmp, "run.json")
        line = self.fails("--lr", 1e300, "--steps", 10, "--save", path, says="training stopped at step 2")
        self.assertIn("could not save the last good state either (not saved: a weight has grown to 1e+300, past "
                      "the 1e+30 a checkpoint may hold; the learning rate is far too high (--lr))", line)
        self.assertFalse(os.path.exists(path))


class TestCustomData(TempDirTestCase, unittest.TestCase):
    def test_another_alphabet_trains_and_samples(self):
        words = ["zoë", "renée", "chloé", "agent007", "r2d2", "añejo", "façade", "über", "naïve", "crème",
                 "c3po", "jalapeño", "smörgås", "ångström", "öl", "été"]
        data = write_file(self.tmp, "words.txt", "\n".join(words * 3) + "\n")
        status, out, err = run_main("--data", data, "--steps", 60, "--samples", 5, "--n-embd", 8,
                                        "--n-head", 2, "--val-fraction", 0, "--lr", 0.02)
        self.assertEqual(status, 0, err)
        chars = sorted(set("".join(words)))
        self.assertIn(f"vocab_size: {len(chars) + 1} ({len(chars)} characters + BOS)", out)
        samples = samples_of(out)
        self.assertEqual(len(samples), 5)
        self.assertTrue(all(set(s) <= set(chars) for s in samples))
        losses = losses_of(out)
        self.assertLess(sum(losses[-10:]) / 10, sum(losses[:10]) / 10 - 0.5)


class TestCommandLine(TempDirTestCase, unittest.TestCase):
    def test_a_few_steps_end_to_end(self):
        r = run_cli("--steps", 3, "--samples", 4)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("documents: 29,910", out)
        self.assertIn("vocab_size: 27", out)
        self.assertIn("parameters: 4,192", out)
        self.assertIn("ln(vocab_size) = 3.2958", out)
        self.assertNotIn("cut:", out)                # block_size 16 holds every name, the longest 15 letters
        losses = [float(x) for x in LOSS.findall(out)]
        self.assertEqual(len(losses), 3)
        self.assertEqual(losses[0], 3.1414)         # seed 42, the first document, at initialisation
        self.assertRegex(out, r"step    3 /    3 \| loss \d\.\d{4} \| lr 0\.00250 \| \d+\.\d s left\n")
        self.assertEqual(len(re.findall(r"^sample +\d+: [a-z]*$", out, re.M)), 4)

    def test_runs_from_any_folder_with_names_txt_beside_the_script(self):
        r = subprocess.run([sys.executable, SCRIPT, "--steps", "1", "--samples", "0"],
                           cwd=self.tmp, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("documents: 29,910", r.stdout)

    def test_a_reader_that_goes_away_stops_it_quietly(self):
        """`python3 microgpt.py | head -2`: no BrokenPipeError traceback, the shell's status 141."""
        proc = subprocess.Popen([sys.executable, SCRIPT, "--steps", "200"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.assertTrue(proc.stdout.readline().startswith("documents:"))
        proc.stdout.close()                         # the reader goes away
        err = proc.stderr.read()
        proc.stderr.close()
        self.assertEqual(proc.wait(timeout=60), 141, err)
        self.assertEqual(err, "")

    def test_help_lists_every_option(self):
        r = run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for option in ("--data", "--steps", "--seed", "--n-embd", "--n-head", "--n-layer", "--block-size",
                       "--lr", "--samples", "--temperature"):
            self.assertIn(option, r.stdout)


class TestBadFilesAndNumbers(TempDirTestCase, unittest.TestCase):
    def assert_fails(self, *args, says):
        r = run_cli(*args)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("microgpt: error: "), lines[0])
        self.assertIn(says, lines[0])

    def test_missing_data_file(self):
        self.assert_fails("--data", f"{self.tmp}/nope.txt", says="not found")

    def test_empty_data_file(self):
        self.assert_fails("--data", write_file(self.tmp, "empty.txt", ""), says="no non-blank line")

    def test_blank_lines_only(self):
        self.assert_fails("--data", write_file(self.tmp, "blank.txt", "\n  \n\t\n"), says="no non-blank line")

    def test_not_utf8(self):
        self.assert_fails("--data", write_file(self.tmp, "latin1.txt", "zoë\n", encoding="latin-1"),
                          says="not UTF-8")

    def test_data_path_is_a_folder(self):
        self.assert_fails("--data", self.tmp, says="is a folder")

    def test_a_file_that_fails_to_read(self):
        # /proc/self/mem opens but every read fails with EIO, even for root
        if not os.path.exists("/proc/self/mem"):
            self.skipTest("no /proc/self/mem on this system")
        self.assert_fails("--data", "/proc/self/mem", says="cannot read data file /proc/self/mem")

    def test_unreadable_data_file(self):
        path = write_file(self.tmp, "secret.txt", "anna\n")
        os.chmod(path, 0)
        if os.access(path, os.R_OK):
            self.skipTest("running as a user who can read any file (root)")
        self.assert_fails("--data", path, says="cannot read")

    def test_bad_options(self):
        cases = [
            (("--n-embd", 10, "--n-head", 4), "divisible"),
            (("--block-size", 1), "--block-size must be at least 2"),
            (("--steps", -1), "--steps must be 0 or more"),
            (("--samples", -3), "--samples must be 0 or more"),
            (("--temperature", 0), "--temperature must be greater than 0"),
            (("--temperature", -1), "--temperature must be greater than 0"),
            (("--lr", 0), "--lr must be greater than 0"),
            (("--lr", -0.1), "--lr must be greater than 0"),
        ]
        for args, says in cases:
            with self.subTest(args=args):
                self.assert_fails(*args, says=says)


if __name__ == "__main__":
    unittest.main()
