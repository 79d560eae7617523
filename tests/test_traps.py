"""traps.py: a fair comparison (its correct loop is microgpt.train, exactly), every symptom as stated, and the
report's numbers those of the runs."""
import math
import os
import random
import re
import unittest

from support import (NAMES, ROOT, TempDirTestCase, gpt as make_gpt, microgpt, run_main as run, slow, workbench,
                     write_file)

import traps

FEW = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn"]


class TestTheCorrectLoopIsMicrogpts(unittest.TestCase):
    def test_the_same_losses_and_weights_as_microgpt_train_exactly(self):
        """Bug it guards: a traps.py loop that drifted from microgpt.train (then every comparison is unfair)."""
        tokenizer = microgpt.Tokenizer.from_docs(FEW)
        runs = []
        for loop in ("microgpt", "traps"):
            gpt = make_gpt(tokenizer.vocab_size, n_layer=2, seed=3)
            if loop == "microgpt":
                losses = microgpt.train(gpt, microgpt.Adam(gpt.params), tokenizer, FEW, 24, 0.01, 0, 0.0, 3, None)
            else:
                losses = [h[0] for h in traps.train(gpt, tokenizer, FEW, 24, 0.01, batch_size=3)]
            runs.append((losses, [p.data for p in gpt.params]))
        self.assertEqual(runs[0][0], runs[1][0])                   # bit for bit
        self.assertEqual(runs[0][1], runs[1][1])

    def test_the_start_is_microgpts_start(self):
        """traps.setup and run_one begin where a run of microgpt.py begins: the same split and weights."""
        start = traps.setup(NAMES, 42)
        r = workbench.prepare(workbench.parse_args([]), workbench.MicrogptEngine, log=lambda *a: None)
        self.assertEqual((start[1], start[2]), (r.train_docs, r.val_docs))
        rng = random.Random()
        rng.setstate(start[0])
        gpt = microgpt.GPT(start[3].vocab_size, 16, 4, 1, 16, rng)
        self.assertEqual(gpt.weights(), r.engine.weights())


@slow
class TestEverySymptomAsStated(unittest.TestCase):
    """Every trap at its own settings (the correct runs shared, as --all shares them)."""

    @classmethod
    def setUpClass(cls):
        cls.start = traps.setup(NAMES, 42)
        cls.vocab_size = cls.start[3].vocab_size
        correct_runs = {}
        cls.runs = {name: traps.run_trap(name, cls.start, 42, correct_runs) for name in traps.TRAPS}

    def check(self, name):
        correct, trapped = self.runs[name]
        holds, text = traps.TRAPS[name]["check"](correct, trapped, self.vocab_size)
        self.assertTrue(holds, f"{name}: {text}")
        return correct, trapped, text

    def test_the_summary_on_the_traps_page_is_these_runs(self):
        """Bug: the page's table left from other settings (block_size 8 before it became 16) or edited by hand:
        every validation loss it quotes is this lab's, to the digit."""
        with open(os.path.join(ROOT, "docs", "traps.md"), encoding="utf-8") as f:
            page = f.read()
        rows = re.findall(r"^  ([\w-]+) +(\d+\.\d{4}) +(\d+\.\d{4}) +yes$", page, re.M)
        self.assertEqual([name for name, _, _ in rows], list(traps.TRAPS))
        for name, correct, trapped in rows:
            self.assertEqual((correct, trapped), tuple(f"{run['val']:.4f}" for run in self.runs[name]), name)

    def test_unshifted_labels(self):
        correct, trapped, text = self.check("unshifted-labels")
        self.assertGreater(trapped["val"], math.log(self.vocab_size))          # worse than knowing nothing
        self.assertLess(trapped["history"][-1][0], 0.2)

    def test_zero_grad_early(self):
        correct, trapped, text = self.check("zero-grad-early")
        self.assertEqual(trapped["weights_after"], trapped["weights_before"])  # not one weight moved
        self.assertEqual({h[1] for h in trapped["history"]}, {0.0})

    def test_never_reset(self):
        correct, trapped, text = self.check("never-reset")
        self.assertGreater(trapped["history"][-1][1], 50 * correct["history"][-1][1])   # the norm piles up

    def test_schedule_per_document(self):
        correct, trapped, text = self.check("schedule-per-document")
        # the last document of the last batch is document 99 * 4 + 3: the cosine has come back to the peak
        self.assertEqual(trapped["history"][-1][2], microgpt.lr_schedule(99 * 4 + 3, 100, traps.LR, 0, 0.0))
        self.assertGreater(trapped["history"][-1][2], 0.99 * traps.LR)
        self.assertEqual(correct["history"][-1][2], microgpt.lr_schedule(99, 100, traps.LR, 0, 0.0))

    def test_fresh_adam(self):
        correct, trapped, text = self.check("fresh-adam")
        at = traps.RESUME_STEPS // 2
        self.assertEqual(trapped["history"][:at], correct["history"][:at])   # the same run up to the resume
        self.assertIn("A weak symptom here", text)

    def test_high_lr(self):
        correct, trapped, text = self.check("high-lr")
        self.assertAlmostEqual(trapped["history"][0][3] / correct["history"][0][3], 20, delta=1)   # 0.2 / 0.01
        loss_at = traps.first_crossing([h[0] for h in trapped["history"]], 1.2)
        norm_at = traps.first_crossing([h[1] for h in trapped["history"]], 2.0)
        self.assertIn(f"at step {loss_at}", text)                            # the order printed is the measured one
        self.assertIn(f"at step {norm_at}" if norm_at else "at never", text)

    def test_sum_not_mean(self):
        correct, trapped, text = self.check("sum-not-mean")
        self.assertIn("no visible effect", text)

    def test_the_report_prints_the_runs_numbers_in_their_columns(self):
        """Bug: two columns of the report's table swapped (the correct run's beside the trapped one's), which
        nothing else that is printed would show."""
        lines = []
        correct, trapped = self.runs["high-lr"]
        traps.report("high-lr", correct, trapped, self.vocab_size, lines.append)
        rows = [line.split() for line in lines if re.match(r"^ +\d+ +\d+\.\d{4} ", line)]
        window = lambda run, at: run["history"][max(0, at - 20):at]
        mean = lambda run, at, i: sum(h[i] for h in window(run, at)) / len(window(run, at))
        self.assertEqual([int(row[0]) for row in rows], [20, 50, 100, 120, 150, 200])
        for row in rows:
            at = int(row[0])
            last_c, last_t = correct["history"][at - 1], trapped["history"][at - 1]
            want = [f"{mean(correct, at, 0):.4f}", f"{mean(trapped, at, 0):.4f}", f"{last_c[1]:.2f}",
                    f"{last_t[1]:.2f}", f"{last_c[2]:.5f}", f"{last_t[2]:.5f}", f"{last_c[3]:.4f}", f"{last_t[3]:.4f}"]
            self.assertEqual(row[1:], want)
        self.assertIn(f"validation loss, 100 held-out names: {correct['val']:.4f} correct, {trapped['val']:.4f} "
                      f"trapped", "\n".join(lines))


class TestTheTrapsAreVisible(unittest.TestCase):
    def test_each_trap_marks_its_lines_in_the_loop(self):
        for name in traps.TRAPS:
            with self.subTest(trap=name):
                correct, trapped = traps.changed_lines(name)
                self.assertGreaterEqual(len(trapped), 1)
                self.assertLessEqual(len(trapped), 3)                          # one or two lines (and a loop head)
                self.assertTrue(correct)

    def test_the_list_and_an_unknown_name(self):
        status, out, err = run(main=traps.main)
        self.assertEqual(status, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()[:-1]], list(traps.TRAPS))
        status, out, err = run("no-such-trap", main=traps.main)
        self.assertEqual(status, 2)
        self.assertEqual(err.strip(), f"traps: error: no trap 'no-such-trap'; the traps are: {', '.join(traps.TRAPS)}")
        status, out, err = run("zero-grad-early", "--data", os.path.join(ROOT, "nope.txt"), main=traps.main)
        self.assertEqual(status, 2)
        self.assertIn("not found", err)


class TestBadData(TempDirTestCase, unittest.TestCase):
    def test_a_file_too_small_for_the_traps_is_one_line(self):
        """Bug: no check, so a run with nothing held out divides by zero in evaluate() (a traceback)."""
        four = write_file(self.tmp, "four.txt", "emma\nava\nmia\nzoe\n")
        status, out, err = run("high-lr", "--data", four, main=traps.main)
        self.assertEqual(status, 2)
        self.assertEqual(err.strip(), f"traps: error: {four} has 4 document(s); the traps hold out a tenth of them "
                                      f"for validation and need at least 5")


if __name__ == "__main__":
    unittest.main()
