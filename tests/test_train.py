"""Training and sampling end to end: the loss falls, a seed repeats a run, the command line works."""
import math
import os
import random
import re
import subprocess
import sys
import unittest

from support import SCRIPT, TempDirTestCase, microgpt, run_cli, write_file

LOSS = re.compile(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", re.M)


def without_times(lines):
    """Output lines with the wall-clock figures (time left, time taken) blanked out."""
    return [re.sub(r"\d+\.\d (s|min)( left)?|\d+\.\d ms/step", "<time>", line) for line in lines]


def run_lines(*argv):
    """microgpt's output lines for the given options, run in this process."""
    lines = []
    status = microgpt.run(microgpt.parse_args(list(map(str, argv))), log=lines.append)
    assert status == 0, status
    return lines


class TestTraining(unittest.TestCase):
    def test_a_short_run_on_a_few_names_lowers_the_loss_well_below_the_start(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(0))

        def mean_loss():
            return sum(microgpt.document_loss(gpt, tokenizer.encode(d)).data for d in docs) / len(docs)

        before = mean_loss()
        microgpt.train(gpt, microgpt.Adam(gpt.params), tokenizer, docs, 120, 0.02)
        after = mean_loss()
        self.assertLess(abs(before - math.log(16)), 0.15)     # ln(16): these 15 characters + BOS, untrained
        self.assertLess(after, 0.5 * before, f"loss {before:.3f} -> {after:.3f}")


class TestDeterminism(TempDirTestCase, unittest.TestCase):
    def test_one_seed_gives_the_same_losses_and_names(self):
        data = write_file(self.tmp, "few.txt", "\n".join(["anna", "bob", "carla", "dmitri", "eve"]) + "\n")
        args = ["--data", data, "--steps", 15, "--samples", 5, "--seed", 7, "--n-embd", 8]
        first, second = without_times(run_lines(*args)), without_times(run_lines(*args))
        self.assertEqual(first, second)
        self.assertEqual(len(LOSS.findall("\n".join(first))), 15)
        # Like with like: another seed, times blanked the same way, changes the losses and the names.
        other = without_times(run_lines(*args[:-4], "--seed", 8, "--n-embd", 8))
        self.assertNotEqual(LOSS.findall("\n".join(first)), LOSS.findall("\n".join(other)))
        samples = lambda lines: [line for line in lines if line.startswith("sample")]
        self.assertNotEqual(samples(first), samples(other))


class TestCommandLine(TempDirTestCase, unittest.TestCase):
    def test_a_few_steps_end_to_end(self):
        r = run_cli("--steps", 3, "--samples", 4)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("documents: 29,910", out)
        self.assertIn("vocab_size: 27", out)
        self.assertIn("parameters: 4,064", out)
        self.assertIn("ln(vocab_size) = 3.2958", out)
        self.assertIn("cut: 4,764 documents", out)     # names of 8+ letters lose their final BOS target
        losses = [float(x) for x in LOSS.findall(out)]
        self.assertEqual(len(losses), 3)
        self.assertEqual(losses[0], 3.4206)         # seed 42, the first document; the README quotes it
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
        self.assertEqual(proc.wait(timeout=60), 141, err)
        self.assertEqual(err, "")

    def test_help_lists_every_option(self):
        r = run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for option in ("--data", "--steps", "--seed", "--n-embd", "--n-head", "--n-layer", "--block-size",
                       "--lr", "--samples", "--temperature"):
            self.assertIn(option, r.stdout)


class TestBadInput(TempDirTestCase, unittest.TestCase):
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
