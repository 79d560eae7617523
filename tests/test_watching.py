"""Watching a run: the step lines, the evaluations, the CSV log (every step and evaluation, the update ratio
and clipping), the loss curve, periodic saves and the summary."""
import csv
import math
import os
import re
import unittest

from support import FewNamesCase, microgpt, replaced, schedule, workbench


def losses_of(text):
    return [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", text, re.M)]


class WatchCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 10, "--print-every", 1]


class TestLines(WatchCase):
    def test_eval_lines_report_validation_loss_and_perplexity(self):
        """Bugs: the training loss averaged over the wrong steps; perplexity not exp(loss)."""
        out = self.ok("--steps", 20, "--samples", 0)
        evals = re.findall(r"^eval +(\d+) \| train loss (\d\.\d+) \(mean of (\d+) steps\) \| val loss (\d\.\d+) "
                           r"\| val perplexity (\d+\.\d+)$", out, re.M)
        self.assertEqual([(e[0], e[2]) for e in evals], [("10", "10"), ("20", "10")])
        for _, _, _, val, ppl in evals:
            self.assertAlmostEqual(float(ppl), math.exp(float(val)), delta=0.01)
        self.assertAlmostEqual(float(evals[0][1]), sum(losses_of(out)[:10]) / 10, delta=0.0001)
        self.assertAlmostEqual(float(evals[1][1]), sum(losses_of(out)[10:]) / 10, delta=0.0001)

    def test_print_every_thins_the_step_lines_but_keeps_the_last(self):
        out = self.ok("--steps", 25, "--samples", 0, "--print-every", 10)
        self.assertEqual(re.findall(r"^step +(\d+)", out, re.M), ["10", "20", "25"])

    def test_time_left_and_the_summary_under_a_clock_we_control(self):
        """Bugs: time left from all steps instead of those left; evaluation counted as training time."""
        ticks = iter(range(10 ** 6))
        with replaced(workbench.time, "perf_counter", lambda: next(ticks) * 0.5):
            out = self.ok("--steps", 4, "--samples", 0, "--eval-every", 2, "--eval-samples", 0)
        left = [float(x) for x in re.findall(r"\| (\d+\.\d) s left", out)]
        self.assertEqual(len(left), 4)
        self.assertEqual(left[-1], 0.0)
        self.assertGreater(left[0], left[1])
        self.assertGreater(left[1], left[2])
        summary = re.search(r"trained 4 steps in (\d+\.\d) s \((\d+\.\d) ms/step; evaluation took (\d+\.\d) s\)", out)
        trained, per_step, evaluation = map(float, summary.groups())
        self.assertAlmostEqual(per_step, 1000 * trained / 4, delta=0.1)
        self.assertGreater(evaluation, 0)


class TestCsvLog(WatchCase):
    def test_every_step_and_every_evaluation_in_order_with_exact_values(self):
        """Bugs: the wrong interval for tokens per second; rows out of time order; a loss not the step's."""
        log = os.path.join(self.tmp, "metrics.csv")
        seen = []                                   # (loss, grad norm, predicted tokens) of every step
        original_step = microgpt.train_step
        ticks = iter(range(10 ** 6))

        def train_step(gpt, opt, batch, *a):
            loss, norm = original_step(gpt, opt, batch, *a)
            seen.append((loss, norm, sum(min(8, len(t) - 1) for t in batch)))
            return loss, norm

        with replaced(microgpt, "train_step", train_step), \
                replaced(workbench.time, "perf_counter", lambda: next(ticks) * 0.5):    # 0.5 s per reading
            out = self.ok("--steps", 25, "--samples", 0, "--log", log, "--batch-size", 2)
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        self.assertEqual([r["kind"] for r in rows][:12], ["train"] * 10 + ["eval", "train"])    # in time order
        self.assertEqual([int(r["step"]) for r in train], list(range(1, 26)))
        self.assertEqual([int(r["step"]) for r in evals], [10, 20, 25])
        self.assertEqual([round(float(r["loss"]), 4) for r in train], losses_of(out))
        self.assertEqual([(float(r["loss"]), float(r["grad_norm"])) for r in train], [s[:2] for s in seen])
        self.assertEqual([float(r["lr"]) for r in train], [schedule(i, 25, 0.01) for i in range(25)])
        # between two readings of the clock around a step, exactly one tick (0.5 s) passed
        self.assertEqual([float(r["tokens_per_sec"]) for r in train], [s[2] / 0.5 for s in seen])
        self.assertEqual(float(evals[0]["val_ppl"]), math.exp(float(evals[0]["val_loss"])))

    def test_update_ratio_and_clipping_per_step(self):
        """Bugs: the ratio measured against the weights after the step; clipped written the wrong way round."""
        log = os.path.join(self.tmp, "run.csv")
        snapshots = []
        original = microgpt.train_step

        def train_step(gpt, opt, batch, lr, clip):
            before = [p.data for p in gpt.params]
            result = original(gpt, opt, batch, lr, clip)
            after = [p.data for p in gpt.params]
            snapshots.append((math.sqrt(sum((a - b) ** 2 for a, b in zip(after, before)) / sum(b * b for b in before)),
                              result[1]))
            return result

        with replaced(microgpt, "train_step", train_step):
            self.ok("--steps", 12, "--samples", 0, "--grad-clip", 1.45, "--log", log)
        with open(log, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
        self.assertEqual(len(rows), 12)
        for row, (ratio, norm) in zip(rows, snapshots):
            self.assertAlmostEqual(float(row["update_ratio"]), ratio, places=12)
            self.assertEqual(row["clipped"], "1" if norm > 1.45 else "0")
            self.assertEqual(row["grad_clip"], "1.45")
        self.assertEqual({r["clipped"] for r in rows}, {"0", "1"})            # both cases occur here


class TestCurveAndSaves(WatchCase):
    def test_the_loss_curve_is_drawn_with_validation_points(self):
        out = self.ok("--steps", 30, "--samples", 0)
        curve = out[out.index("loss curve"):].splitlines()
        self.assertEqual(len(curve), 1 + 10 + 2)
        chart = "\n".join(curve[1:11])
        self.assertEqual(chart.count("o"), 3)
        columns = ["".join(row[8 + col] for row in curve[1:11]) for col in range(30)]    # 30 steps, 30 columns
        for col, cells in enumerate(columns):               # one training point per column, unless an o covers it
            self.assertTrue(cells.count(".") == 1 or (cells.count(".") == 0 and "o" in cells), f"column {col}")
        self.assertRegex(curve[-1], r"step 1 +step 30$")

    def test_save_every_writes_during_training(self):
        path = os.path.join(self.tmp, "run.json")
        steps = []
        original = workbench.Run.save
        with replaced(workbench.Run, "save", lambda run, step: steps.append(step) or original(run, step)):
            self.ok("--steps", 25, "--samples", 0, "--save", path, "--save-every", 10)
        self.assertEqual(steps, [10, 20, 25])
        self.assertEqual(workbench.load_checkpoint(path)["step"], 25)


if __name__ == "__main__":
    unittest.main()
