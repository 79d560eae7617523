"""Watching a run: the step lines (a status line on a terminal), the time left, the evaluations, the CSV log
(every step and evaluation, the update ratio and clipping), the loss curve, periodic saves, the baselines
and where a run stands among them, and overfitting said and its best model kept."""
import contextlib
import csv
import io
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import unittest
from types import SimpleNamespace

from support import ROOT, FewNamesCase, microgpt, replaced, run_main, schedule, workbench, write_file

SMALL = ["--n-embd", 8, "--n-head", 2]


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
        with replaced(workbench.watch.time, "perf_counter", lambda: next(ticks) * 0.5):
            out = self.ok("--steps", 4, "--samples", 0, "--eval-every", 2, "--eval-samples", 0)
        left = [float(x) for x in re.findall(r"\| (\d+\.\d) s left", out)]
        self.assertEqual(len(left), 4)
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
            seen.append((loss, norm, sum(min(microgpt.DEFAULTS["block_size"], len(t) - 1) for t in batch)))
            return loss, norm

        with replaced(microgpt, "train_step", train_step), \
                replaced(workbench.watch.time, "perf_counter", lambda: next(ticks) * 0.5):    # 0.5 s per reading
            out = self.ok("--steps", 25, "--samples", 0, "--log", log, "--batch-size", 2)
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        self.assertEqual([r["kind"] for r in rows][:15], ["uniform", "unigram", "bigram"] + ["train"] * 10 +
                         ["eval", "train"])                                          # in time order
        baselines = re.search(r"uniform (\d\.\d{4}), unigram (\d\.\d{4}), bigram (\d\.\d{4})", out).groups()
        self.assertEqual([f"{float(r['val_loss']):.4f}" for r in rows[:3]], list(baselines))
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

        def train_step(gpt, opt, batch, lr, clip, *a):
            before = [p.data for p in gpt.params]
            result = original(gpt, opt, batch, lr, clip, *a)
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
        chart = "\n".join(row[8:8 + 30] for row in curve[1:11])           # the grid, without the labels
        self.assertEqual(chart.count("o"), 3)
        columns = ["".join(row[8 + col] for row in curve[1:11]) for col in range(30)]    # 30 steps, 30 columns
        for col, cells in enumerate(columns):               # one training point per column, unless an o covers it
            self.assertTrue(cells.count(".") == 1 or (cells.count(".") == 0 and "o" in cells), f"column {col}")
        self.assertRegex(curve[-1], r"step 1 +step 30$")

    def test_save_every_writes_during_training(self):
        path = os.path.join(self.tmp, "run.json")
        steps = []
        original = workbench.Run.save
        with replaced(workbench.Run, "save", lambda run, step, path=None: path or steps.append(step) or
                      original(run, step, path)):
            self.ok("--steps", 25, "--samples", 0, "--save", path, "--save-every", 10)
        self.assertEqual(steps, [10, 20, 25])
        self.assertEqual(workbench.load_checkpoint(path)["step"], 25)


if __name__ == "__main__":
    unittest.main()


class TestBaselines(unittest.TestCase):
    def test_the_counts_by_hand(self):
        """Bugs: no smoothing (a log of 0); counting the validation documents; the bigram read the wrong way
        round (current given next); positions past block_size counted."""
        tokenizer = microgpt.Tokenizer(["a", "b"])                  # a = 0, b = 1, BOS = 2
        # training "ab", "aa": pairs (BOS a) (a b) (b BOS) (BOS a) (a a) (a BOS); targets a a b a BOS BOS
        # unigram with add-one: a 3+1, b 1+1, BOS 2+1 of 9; bigram rows: BOS: a 2+1, b 1, BOS 1 (of 5);
        # a: a 1+1, b 1+1, BOS 1+1 (of 6); b: BOS 1+1, a 1, b 1 (of 4)
        got = workbench.baselines(tokenizer, ["ab", "aa"], ["ba"], block_size=8)
        # validation "ba": (BOS b) (b a) (a BOS)
        unigram = -(math.log(2 / 9) + math.log(4 / 9) + math.log(3 / 9)) / 3
        bigram = -(math.log(1 / 5) + math.log(1 / 4) + math.log(2 / 6)) / 3
        self.assertEqual(got["uniform"], math.log(3))
        self.assertAlmostEqual(got["unigram"], unigram, places=15)
        self.assertAlmostEqual(got["bigram"], bigram, places=15)
        # at block_size 2 the last pair of each document is left out: in training, (b BOS) and (a BOS), so the
        # rows are BOS: a 2+1, b 1, BOS 1 (of 5); a: a 1+1, b 1+1, BOS 1 (of 5); b: all 1 (of 3)
        cut = workbench.baselines(tokenizer, ["ab", "aa"], ["ba"], block_size=2)
        self.assertAlmostEqual(cut["bigram"], -(math.log(1 / 5) + math.log(1 / 3)) / 2, places=15)


class TestWhereItStands(WatchCase):
    def test_the_header_and_the_end_place_the_run_among_the_baselines(self):
        out = self.ok("--steps", 20, "--samples", 0, "--eval-every", 10)
        header = re.search(r"^baselines on the 3 validation documents each evaluation reads: uniform (\d\.\d{4}), "
                           r"unigram (\d\.\d{4}), bigram (\d\.\d{4}) \(nats per token; counted from the training "
                           r"documents, add-one smoothing\)$", out, re.M)
        end = re.search(r"^where it stands: val loss (\d\.\d{4}) at step 20 \| bigram (\d\.\d{4}) \| unigram "
                        r"(\d\.\d{4}) \| uniform (\d\.\d{4}): ", out, re.M)
        self.assertEqual(header.groups(), (end.group(4), end.group(3), end.group(2)))
        self.assertEqual(float(header.group(1)), round(math.log(22), 4))
        last_eval = re.findall(r"^eval +20 \|.*val loss (\d\.\d{4})", out, re.M)
        self.assertEqual(last_eval, [end.group(1)])


class TestOverfitting(FewNamesCase, unittest.TestCase):
    """A wide model on 18 random strings memorises them within a hundred steps (measured: best validation
    at step 50, then up while the training loss falls)."""

    def setUp(self):
        super().setUp()
        rng = random.Random(1)
        words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 6))) for _ in range(24)]
        self.data = write_file(self.tmp, "words.txt", "\n".join(words) + "\n")
        self.path = os.path.join(self.tmp, "m.json")
        self.out = self.ok("--n-embd", 16, "--n-head", 1, "--block-size", 8, "--steps", 120, "--eval-every", 10,
                           "--lr", 0.05,
                           "--val-fraction", 0.25, "--samples", 0, "--eval-samples", 0, "--save", self.path)

    def test_it_is_said_once_and_the_best_model_is_kept_loadable(self):
        """Bugs: no check (the run saves its final, worst model and says nothing); the warning at every later
        evaluation; the best file overwritten by a later, worse evaluation."""
        evals = [(int(step), float(val)) for step, val in re.findall(r"^eval +(\d+) \|.*val loss (\d\.\d{4})",
                                                                        self.out, re.M)]
        best_step, best_val = min(evals, key=lambda e: e[1])
        said = re.findall(r"^overfitting: since step (\d+) the validation loss has risen from its best, (\d\.\d{4}),",
                          self.out, re.M)
        self.assertEqual(said, [(str(best_step), f"{best_val:.4f}")])
        best = workbench.load_checkpoint(os.path.join(self.tmp, "m.best.json"))
        self.assertEqual(best["step"], best_step)
        self.assertEqual(workbench.load_checkpoint(self.path)["step"], 120)       # the main one: resumable, last
        self.assertIn(f"  its best: val loss {best_val:.4f} at step {best_step}, kept in "
                      f"{os.path.join(self.tmp, 'm.best.json')}", self.out)
        status, out, err = run_main("--load", os.path.join(self.tmp, "m.best.json"), "--samples", 2)
        self.assertEqual(status, 0, err)
        self.assertIn(f"loaded {os.path.join(self.tmp, 'm.best.json')} at step {best_step}", out)

    def test_the_best_model_always_exists_where_the_output_says(self):
        """Bugs: --resume m.best.json saving the last model over the best (then naming m.best.best.json, never
        written: the best gone); --resume m.json --save other.json naming other.best.json for a best that came
        before the resume and that this run never wrote."""
        best = os.path.join(self.tmp, "m.best.json")
        with open(best, "rb") as f:
            before = f.read()
        line = run_main("--resume", best, "--steps", 130)[2]
        self.assertIn("is a run's best model: going on in it would replace it", line)
        with open(best, "rb") as f:
            self.assertEqual(f.read(), before)
        other = os.path.join(self.tmp, "other.json")
        status, out, err = run_main("--resume", self.path, "--save", other, "--steps", 125, "--eval-every", 5)
        self.assertEqual(status, 0, err)
        named = re.findall(r"(?:kept in|not kept)(?: (\S+?))?(?:,|:|$)", out, re.M)
        step = workbench.load_checkpoint(best)["step"]
        if os.path.exists(os.path.join(self.tmp, "other.best.json")):
            self.fail("a new best came after the resume: this test needs a history whose best came before it")
        self.assertIn(f"at step {step}, kept in {best}", out)                # where it is, not other.best.json
        val = [row["val_loss"] for row in workbench.load_checkpoint(best)["metrics"]["eval"] if row["step"] == step][0]
        self.assertIn(f"the best model by validation loss is kept in {other[:-5]}.best.json as the run goes, once one "
                      f"beats the best so far (val loss {val:.4f} at step {step}, in {best})\n", out)
        self.assertNotIn("other.best.json", out.split("the best model by validation loss is kept in")[-1]
                         .split("\n", 1)[-1])
        self.assertTrue(named)

    def test_a_best_file_of_another_run_is_never_replaced_without_a_word(self):
        """Bug: a new run saving to m.json replaced m.best.json, an earlier run's best model (here the one this
        setUp's run kept), at its first evaluation without a word. A resumed run's own best, which only a
        better model replaces, is not announced."""
        status, out, err = run_main("--resume", self.path, "--steps", 121, "--samples", 0)
        self.assertEqual((status, err), (0, ""))
        self.assertNotIn("holds another run's model", out)
        best = os.path.join(self.tmp, "m.best.json")
        held = workbench.load_checkpoint(best)
        val = [row["val_loss"] for row in held["metrics"]["eval"] if row["step"] == held["step"]][0]
        line = (f"  {best} holds another run's model now (step {held['step']}, val loss {val:.4f}): its first "
                f"evaluation replaces it (give --save another name to keep it)")
        status, out, err = run_main("--data", self.data, "--steps", 0, "--save", self.path, "--samples", 0)
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"kept in {best} as the run goes\n{line}\n", out)

    def test_a_best_file_is_known_by_its_model_not_its_step(self):
        """Bug: a best file taken for this run's because it holds the step of this run's best: two runs evaluated
        alike have their best at the same step, and a run resumed from one and saving to the other replaced
        the other's best without a word."""
        run = ["--data", self.data, "--n-embd", 8, "--n-head", 2, "--steps", 4, "--eval-every", 2, "--samples", 0,
               "--eval-samples", 0, "--val-fraction", 0.25]
        a, b = (os.path.join(self.tmp, name) for name in ("a.json", "b.json"))
        self.assertEqual(run_main(*run, "--save", a)[0], 0)
        self.assertEqual(run_main(*run, "--save", b, "--seed", 3)[0], 0)      # (its best at step 4 too, measured)
        steps = [workbench.load_checkpoint(path)["step"] for path in (a[:-5] + ".best.json", b[:-5] + ".best.json")]
        self.assertEqual(steps[0], steps[1])                    # the same step: the case that fooled it
        status, out, err = run_main("--resume", a, "--steps", 6, "--save", b)
        self.assertEqual((status, err), (0, ""))
        self.assertRegex(out, rf"\n  {re.escape(b[:-5])}\.best\.json holds another run's model now \(step "
                              rf"{steps[1]}, val loss \d\.\d{{4}}\): its first model better than its best so far "
                              rf"\(\d\.\d{{4}}\) replaces it \(give --save another name to keep it\)\n")

    def test_a_healthy_run_says_nothing(self):
        """The check can stay quiet: the default names, a short run, no memorising."""
        out = run_main("--data", os.path.join(ROOT, "names.txt"), "--steps", 60, "--eval-every", 10, "--samples", 0,
                       "--eval-samples", 0)[1]
        self.assertEqual(len(re.findall(r"^eval ", out, re.M)), 6)
        self.assertNotIn("overfitting", out)


class TestJudgedByHand(unittest.TestCase):
    """Judge and standing() on evaluation rows written by hand: (step, train loss, validation loss)."""

    def judge(self, rows):
        said = []
        r = SimpleNamespace(metrics={"eval": []}, best_path=None, console=SimpleNamespace(line=said.append),
                            args=SimpleNamespace(resume=None))
        judge = workbench.Judge(r)
        for step, train, val in rows:
            judge({"step": step, "train_loss": train, "val_loss": val})
        return [re.match(r"overfitting: since step (\d+) .*, to (\d\.\d+),", line).groups() for line in said]

    def test_overfitting_is_two_rises_past_the_wobble_while_the_training_loss_falls(self):
        """Bugs: a rise inside the 2% wobble counted; a run whose training loss rises too (a learning rate
        too large, not memorising) called overfitting; the count not started again when it comes back."""
        cases = {"two rises of 5% while training falls": ([(10, 2.0, 2.0), (20, 1.9, 2.1), (30, 1.8, 2.15),
                                                           (40, 1.7, 2.2)], [("10", "2.1500")]),
                 "rises of 1.5%, inside the wobble": ([(10, 2.0, 2.0), (20, 1.9, 2.03), (30, 1.8, 2.03)], []),
                 "training loss rising with it": ([(10, 2.0, 2.0), (20, 2.1, 2.1), (30, 2.2, 2.2)], []),
                 "a rise, back, a rise": ([(10, 2.0, 2.0), (20, 1.9, 2.1), (30, 1.8, 2.0), (40, 1.7, 2.1)], []),
                 "a new best resets it": ([(10, 2.0, 2.0), (20, 1.9, 2.1), (30, 1.8, 1.9), (40, 1.7, 1.95)], [])}
        for name, (rows, said) in cases.items():
            with self.subTest(name):
                self.assertEqual(self.judge(rows), said)

    def test_where_a_run_stands_among_the_baselines(self):
        """Bugs: the verdict taken against the worst baseline, or the names on the wrong side of it."""
        b = {"uniform": 3.3, "unigram": 2.8, "bigram": 2.5}
        verdicts = {2.4: "below every baseline, 0.1000 nats under the bigram: it has learnt more than which token "
                         "follows which",
                    2.6: "between the baselines: below the uniform and the unigram, above the bigram",
                    3.0: "between the baselines: below the uniform, above the unigram and the bigram",
                    3.4: "above every baseline: it has learnt nothing yet, or memorised its training documents"}
        for val, verdict in verdicts.items():
            with self.subTest(val=val):
                rows = [{"step": 10, "train_loss": 2.0, "val_loss": 2.2}, {"step": 20, "train_loss": 1.9,
                                                                           "val_loss": val}]
                with tempfile.TemporaryDirectory() as tmp:
                    best = os.path.join(tmp, "m.best.json")
                    r = SimpleNamespace(metrics={"eval": rows}, baselines=b, best_path=best,
                                        args=SimpleNamespace(resume=None), settings={"seed": 42})
                    self.assertEqual(workbench.standing(r)[1:], ["  its best: val loss 2.2000 at step 10, not kept"])
                    held = lambda step, seed, val: ('{"step": %d, "settings": {"seed": %d}, "metrics": {"eval": '
                                                    '[[%d, 2.0, %r, 0.1]]}}' % (step, seed, step, val))
                    for other in (held(20, 42, 2.2), held(10, 7, 2.2), held(10, 42, 2.25)):    # another step,
                        write_file(tmp, "m.best.json", other)                   # seed, or model: not the best
                        self.assertEqual(workbench.standing(r)[1:], ["  its best: val loss 2.2000 at step 10, "
                                                                     "not kept"])
                    write_file(tmp, "m.best.json", held(10, 42, 2.2))           # (what the file says it holds)
                    lines = workbench.standing(r)
                self.assertEqual(lines[0], f"where it stands: val loss {val:.4f} at step 20 | bigram 2.5000 | "
                                           f"unigram 2.8000 | uniform 3.3000: {verdict}")
                self.assertEqual(lines[1:], [f"  its best: val loss 2.2000 at step 10, kept in {best}"])


PTY_RUN = """
import sys
sys.path.insert(0, {root!r})
import workbench
sys.exit(workbench.main({argv!r}))
"""


class TestOnATerminal(FewNamesCase, unittest.TestCase):
    def on_a_terminal(self, *argv, columns=200):
        """What the program writes to a pseudo-terminal `columns` wide (stdout and stderr), read until it ends."""
        import fcntl
        import pty
        import struct
        import termios
        argv = ["--data", self.data, *map(str, SMALL), "--samples", "0", *map(str, argv)]
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}    # the terminal's own size
        proc = subprocess.Popen([sys.executable, "-c", PTY_RUN.format(root=ROOT, argv=argv)], stdin=follower,
                                stdout=follower, stderr=follower, close_fds=True, env=env)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:                                 # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        self.assertEqual(proc.wait(timeout=60), 0)
        return b"".join(chunks).decode()

    def test_a_status_line_rewrites_itself_and_only_evaluations_stay(self):
        """Bugs: every step a permanent line on a terminal (the evaluations scroll away); the status line not
        cleared before a permanent line."""
        text = self.on_a_terminal("--steps", 30, "--eval-every", 10)
        lines = [part.split("\r\x1b[K")[-1] for part in text.replace("\r\n", "\n").split("\n")]
        self.assertEqual([line for line in lines if line.startswith("step ")], [])            # none stays
        self.assertEqual(len(re.findall(r"^eval +(10|20|30) \|", "\n".join(lines), re.M)), 3)
        status = re.findall(r"\r\x1b\[Kstep +(\d+) /   30 \| loss \d\.\d{4} \(mean of (\d+) steps?\) \| lr "
                            r"\d\.\d{5} \| [\d,]+ tokens/s \| \d+\.\d s left", text)
        self.assertEqual([int(step) for step, _ in status], list(range(1, 31)))
        self.assertEqual([int(n) for _, n in status][:3] + [int(n) for _, n in status][-1:], [1, 2, 3, 20])

    def test_the_status_line_fits_80_and_40_columns(self):
        """Bugs: a status line wider than the terminal (every redraw wraps and leaves a row behind: 542 rows
        for the default run at 80 columns); one that reaches the last column; the loss or the step dropped
        before the lesser fields; a fixed width instead of the terminal's own size."""
        for columns, fields in ((80, r"step +\d+ /   30 \| loss \d\.\d{4} \| lr \d\.\d{5} \| [\d,]+ tokens/s \| "
                                     r"\d+\.\d s left"),
                                (40, r"step +\d+ /   30 \| loss \d\.\d{4}")):
            text = self.on_a_terminal("--steps", 30, "--eval-every", 10, columns=columns)
            status = [part for line in text.split("\n") for part in line.split("\r\x1b[K")[1:]
                      if part.startswith("step ")]
            self.assertEqual(len(status), 30)
            for line in status:
                self.assertLessEqual(len(line.rstrip("\r")), columns - 1, line)
                self.assertRegex(line.rstrip("\r"), "^" + fields + "$")

    def test_a_status_of_one_text_is_shown_whole(self):
        """Bug: Console.status taking only ranked fields, so --gradcheck's status line (one text) on a terminal
        is read character by character and fails."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            console = workbench.Console(print)
            console.tty = True
            console.status("gradcheck: 100 of 900 entries, 3.0 s left")
        self.assertEqual(out.getvalue(), "\r\x1b[Kgradcheck: 100 of 900 entries, 3.0 s left")

    def test_fitted_drops_the_highest_rank_first_and_keeps_the_order(self):
        fields = [("step 1", 0), ("loss 2.5000", 0), ("(mean of 2 steps)", 4), ("lr 0.01000", 2), ("9 tokens/s", 3),
                  ("1.0 s left", 1)]
        self.assertEqual(workbench.fitted(fields, 200),
                         "step 1 | loss 2.5000 (mean of 2 steps) | lr 0.01000 | 9 tokens/s | 1.0 s left")
        self.assertEqual(workbench.fitted(fields, 60), "step 1 | loss 2.5000 | lr 0.01000 | 9 tokens/s | 1.0 s left")
        self.assertEqual(workbench.fitted(fields, 58), "step 1 | loss 2.5000 | lr 0.01000 | 1.0 s left")
        self.assertEqual(workbench.fitted(fields, 34), "step 1 | loss 2.5000 | 1.0 s left")   # 33 characters
        self.assertEqual(workbench.fitted(fields, 33), "step 1 | loss 2.5000")
        self.assertEqual(workbench.fitted(fields, 5), "loss")                                # cut, never wrapped

    def test_print_every_keeps_its_lines_on_a_terminal(self):
        text = self.on_a_terminal("--steps", 12, "--eval-every", 100, "--print-every", 5)
        lines = [part.split("\r\x1b[K")[-1] for part in text.replace("\r\n", "\n").split("\n")]
        self.assertEqual([line.split("|")[0].strip() for line in lines if line.startswith("step ")],
                         ["step    5 /   12", "step   10 /   12", "step   12 /   12"])


class TestTheStatusLine(unittest.TestCase):
    def test_its_loss_is_the_mean_of_exactly_the_steps_it_names_from_the_first(self):
        """Bugs: the mean over 21 steps labelled 20; divided by 20 before there are 20 (step 1 shows a twentieth
        of its loss); the step's own loss shown as the mean."""
        losses = [(i * i % 17) / 7 + 1 for i in range(1, 41)]
        watch, seen = object.__new__(workbench.Watch), []
        watch.settings, watch.print_every, watch.time_left = {"steps": 40}, None, lambda: 1.0
        for n in range(1, 41):
            rows = [{"loss": x, "tokens_per_sec": 100.0} for x in losses[:n]]
            watch.run = SimpleNamespace(metrics={"train": rows}, console=SimpleNamespace(status=seen.append))
            watch.step_done = n
            watch.show(losses[n - 1], 0.01)
            named = min(n, 20)
            self.assertEqual(seen[-1][1:3], [(f"loss {sum(losses[n - named:n]) / named:.4f}", 0),
                                             (f"(mean of {named} step{'s' if named > 1 else ''})", 4)])


class TestTimeLeft(WatchCase):
    def test_it_counts_the_evaluations_to_come(self):
        """Bug: time left from the training steps alone (at step 550 of a 5,000-step run: 84 s said, 125 s
        left). Under a clock that moves one second a training step, each evaluation made 10 seconds long."""
        ticks = [0]
        clock = lambda: ticks[0]
        original = workbench.evaluation

        def slow_evaluation(*a):
            ticks[0] += 10
            return original(*a)

        def tick(*a):
            ticks[0] += 1
            return original_step(*a)

        original_step = microgpt.train_step
        with replaced(workbench.watch.time, "perf_counter", clock), \
                replaced(workbench.watch, "evaluation", slow_evaluation), replaced(microgpt, "train_step", tick):
            out = self.ok("--steps", 40, "--eval-every", 10, "--samples", 0, "--eval-samples", 0)
        left = {int(n): float(s) for n, s in re.findall(r"^step +(\d+) /   40 \|.*\| (\d+\.\d) s left", out, re.M)}
        # at step 10 no evaluation has been timed yet: each is reckoned as its 3 documents at a third of a step's
        # second each, so 30 steps and 4 evaluations of 1 s; at step 11, after one of 10 s: 29 steps, 3 of them
        self.assertEqual(left[10], 30 + 4 * 1)
        self.assertEqual(left[11], 29 + 3 * 10)
        self.assertEqual(left[40], 0 + 1 * 10)                    # the last step: its evaluation still to come


class TestSmallThings(WatchCase):
    def test_counts_agree_in_number(self):
        """Bugs: "cut: 1 documents are", "mean of 1 steps", "trained 1 steps", "new: 1 of 1 samples are"."""
        data = write_file(self.tmp, "two.txt", "abcdefghij\nab\n")
        status, out, err = run_main("--data", data, *SMALL, "--steps", 1, "--samples", 1, "--val-fraction", 0,
                                    "--block-size", 8)
        self.assertEqual(status, 0, err)
        for said in ("cut: 1 document is longer than block_size 8 allows and trains on its first 8 positions only",
                     "(mean of 1 step)", "trained 1 step in", "new: 1 of 1 sample is not a training document"):
            self.assertIn(said, out)
        rows = [{"step": i, "loss": 2.0 - i / 10} for i in (1, 2, 3)]
        self.assertIn("running mean of 1 step)", workbench.loss_curve({"train": rows, "eval": []})[0])
        self.assertEqual(workbench.counted(2, "step"), "2 steps")
        self.assertEqual(workbench.counted(1234, "document is", "documents are"), "1,234 documents are")

    def test_the_cut_line_says_what_block_size_would_hold_99_percent(self):
        """Bugs: the 99th percentile one document off (the 199th of 200 taken: 10, not 4); a document's
        positions taken as its length (BOS forgotten: 3); no hint at all. Worked by hand: 198 names of 3
        letters (4 positions), one of 9 (10), one of 20 (21)."""
        data = write_file(self.tmp, "cut.txt", "abc\n" * 198 + "abcdefghi\n" + "abcdefghij" * 2 + "\n")
        out = run_main("--data", data, *SMALL, "--steps", 1, "--samples", 0, "--block-size", 8)[1]
        self.assertIn("cut: 2 documents are longer than block_size 8 allows and train on their first 8 positions "
                      "only; --block-size 4 would hold 99% of the documents whole, 21 every one\n", out)

    def test_the_curve_fits_80_columns_with_the_baselines_names(self):
        """Bug: a grid of 64 columns whatever its labels: the row of 'unigram 2.85' 85 characters wide, so an
        80-column terminal wraps the name onto the next row and the picture falls apart."""
        rows = [{"step": i, "loss": 3.3 - i / 500} for i in range(1, 501)]          # 3.3 down to 2.3
        baselines = {"uniform": 3.2958, "unigram": 2.8454, "bigram": 2.4866}
        lines = workbench.loss_curve({"train": rows, "eval": []}, baselines)
        self.assertEqual(max(map(len, lines)), 80)                  # 8 + 59 + 1 + len("unigram 2.85")
        self.assertEqual(lines[-2], "       +" + "-" * 59)
        self.assertEqual(len(next(line for line in lines if line.endswith("- unigram 2.85"))), 80)
        self.assertEqual(workbench.loss_curve({"train": rows, "eval": []})[-2], "       +" + "-" * 64)   # none

    def test_a_curve_of_losses_near_a_floats_largest(self):
        """Bug: the running sums of losses of 1.7e308 (a resumed checkpoint's history) overflowing to inf and
        inf - inf, and the curve's int(NaN) a traceback after the run was saved."""
        rows = [{"step": i, "loss": 1.7e308 if i <= 30 else 2.0 + i / 100} for i in range(1, 61)]
        lines = workbench.loss_curve({"train": rows, "eval": [{"step": 60, "val_loss": 1.7e308}]})
        self.assertTrue(lines[0].startswith("loss curve: "))
        self.assertEqual(len(lines), 1 + 10 + 2)                      # the title, 10 rows, the axis and its steps
        self.assertEqual(lines[1].split("|")[0].strip(), "1e+300")                 # drawn at 1e300, the top
        self.assertEqual(lines[10].split("|")[0].strip(), "2.32")    # steps 31-33's mean, 2.31 to 2.33 (not 0.00,
        self.assertEqual(lines[10].split("|")[1].count("."), 28)    # as a running sum beside 1e300 made it)
        self.assertEqual(lines[1][-1], "o")                                        # the evaluation, at the top

    def test_a_perplexity_past_floats_range(self):
        """Bug: f"{exp(loss):.2f}" printing 300 digits for a loss of 700 nats (and inf just past it)."""
        self.assertEqual(workbench.perplexity_text(math.log(11.91)), "11.91")
        self.assertEqual(workbench.perplexity_text(700.0), "1.01e+304")
        self.assertEqual(workbench.perplexity_text(800.0), "inf")
