"""The training tool around the algorithm: validation, metrics, schedule and batches, checkpoints that
resume exactly, sampling controls, the one-step trace, custom data, and every kind of bad input."""
import csv
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import unittest

from support import FEW_NAMES, FewNamesCase, SCRIPT, TempDirTestCase, microgpt, run_main, write_file

Value = microgpt.Value


def losses_of(text):
    return [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", text, re.M)]


def samples_of(text):
    return re.findall(r"^sample +\d+: (.*)$", text, re.M)


class ToolTestCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", "8", "--n-head", "2", "--eval-every", "10", "--print-every", "1"]

    def fails(self, *argv, says, status=2):
        got, out, err = run_main("--data", self.data, *self.SMALL, *argv)
        self.assertEqual(got, status, out + err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(says, lines[0])
        return lines[0]


class TestValidation(ToolTestCase):
    def test_split_is_fixed_by_the_seed_and_never_trained_on(self):
        docs = list(FEW_NAMES)
        random.Random(3).shuffle(docs)
        train, val = microgpt.split_docs(docs, 0.1)
        self.assertEqual((len(train), len(val)), (27, 3))
        self.assertEqual(val, docs[:3])
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(0))
        seen = []

        def record(step, loss, lr, norm, batch):
            seen.extend(tokenizer.decode(tokens[1:-1]) for tokens in batch)

        microgpt.train(gpt, microgpt.Adam(gpt.params), tokenizer, train, 60, 0.01, batch_size=2, on_step=record)
        self.assertEqual(set(seen), set(train))                 # every training doc, cycled
        self.assertFalse(set(seen) & set(val))

    def test_eval_lines_report_validation_loss_and_perplexity(self):
        out = self.ok("--steps", 20, "--samples", 0)
        evals = re.findall(r"^eval +(\d+) \| train loss (\d\.\d+) \(mean of (\d+) steps\) \| val loss (\d\.\d+) "
                           r"\| val perplexity (\d+\.\d+)$", out, re.M)
        self.assertEqual([(e[0], e[2]) for e in evals], [("10", "10"), ("20", "10")])
        for _, _, _, val, ppl in evals:
            self.assertAlmostEqual(float(ppl), math.exp(float(val)), delta=0.01)
        self.assertAlmostEqual(float(evals[0][1]), sum(losses_of(out)[:10]) / 10, delta=0.0001)

    def test_evaluate_is_the_mean_per_token_and_builds_no_graph(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(0))
        docs = ["ava", "charlotte"]                       # 4 and 8 predicted tokens
        loss, n = microgpt.evaluate(gpt, tokenizer, docs)
        by_hand = sum(microgpt.document_loss(gpt, tokenizer.encode(d)).data * k for d, k in zip(docs, (4, 8))) / 12
        self.assertEqual(n, 12)
        self.assertAlmostEqual(loss, by_hand, places=12)
        self.assertTrue(all(p.grad == 0.0 for p in gpt.params))


class TestScheduleAndBatches(unittest.TestCase):
    def test_warmup_then_cosine_to_min_lr_by_hand(self):
        f = lambda step: microgpt.lr_schedule(step, 100, 0.01, warmup_steps=10, min_lr=0.001)
        self.assertAlmostEqual(f(0), 0.001, places=15)        # 0.01 * 1/10
        self.assertAlmostEqual(f(4), 0.005, places=15)        # 0.01 * 5/10
        self.assertAlmostEqual(f(9), 0.01, places=15)         # warmup done
        self.assertAlmostEqual(f(10), 0.01, places=15)        # cosine starts at the peak
        self.assertAlmostEqual(f(55), 0.0055, places=15)      # halfway through 90 steps: (0.01 + 0.001) / 2
        self.assertAlmostEqual(f(100), 0.001, places=15)      # ends at min_lr

    def test_a_batch_averages_over_every_token_and_accumulates_the_gradient_of_the_mean(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        batch = [tokenizer.encode(d) for d in ("ava", "charlotte", "mia")]       # 4 + 8 + 4 tokens
        results = []
        for accumulate in (True, False):
            gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(1))
            adam = microgpt.Adam(gpt.params)
            captured = {}
            adam.step = lambda lr: captured.update(grads=[p.grad for p in gpt.params])
            if accumulate:
                loss, _ = microgpt.train_step(gpt, adam, batch, 0.01)
            else:   # one graph for the whole batch: the mean of all 16 position losses
                losses = [l for tokens in batch for l in microgpt.document_losses(gpt, tokens)]
                mean = microgpt.total(losses) / len(losses)
                mean.backward()
                loss = mean.data
                adam.step(0.01)
            results.append((loss, captured["grads"]))
        (loss_a, grads_a), (loss_b, grads_b) = results
        self.assertAlmostEqual(loss_a, loss_b, places=13)
        for a, b in zip(grads_a, grads_b):
            self.assertAlmostEqual(a, b, places=13)

    def test_grad_clip_scales_the_gradient_to_the_given_norm(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(1))
        adam = microgpt.Adam(gpt.params)
        seen = {}
        adam.step = lambda lr: seen.update(norm=microgpt.grad_norm(gpt.params))
        _, norm = microgpt.train_step(gpt, adam, [tokenizer.encode("emma")], 0.01, grad_clip=0.1)
        twin = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(1))
        microgpt.document_loss(twin, tokenizer.encode("emma")).backward()
        self.assertAlmostEqual(norm, microgpt.grad_norm(twin.params), places=12)   # reported: before clipping
        self.assertGreater(norm, 0.2)                                               # so the clip did cut it
        self.assertAlmostEqual(seen["norm"], 0.1, places=12)

    def test_a_non_finite_loss_raises_before_any_parameter_changes(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(1))
        gpt.state_dict["wte"][0][0].data = math.inf
        before = [p.data for p in gpt.params]
        with self.assertRaises(FloatingPointError):
            microgpt.train_step(gpt, microgpt.Adam(gpt.params), [tokenizer.encode("ava")], 0.01)
        self.assertEqual([p.data for p in gpt.params], before)


class TestMetricsAndCurve(ToolTestCase):
    def test_csv_log_has_every_step_and_every_evaluation(self):
        log = os.path.join(self.tmp, "metrics.csv")
        seen = []                                   # (loss, grad norm, predicted tokens) of every step
        original_step, original_clock = microgpt.train_step, microgpt.time.perf_counter
        ticks = iter(range(10 ** 6))

        def train_step(gpt, opt, batch, *a):
            loss, norm = original_step(gpt, opt, batch, *a)
            seen.append((loss, norm, sum(min(8, len(t) - 1) for t in batch)))
            return loss, norm

        microgpt.train_step = train_step
        microgpt.time.perf_counter = lambda: next(ticks) * 0.5      # a clock that moves 0.5 s per reading
        try:
            out = self.ok("--steps", 25, "--samples", 0, "--log", log, "--batch-size", 2)
        finally:
            microgpt.train_step, microgpt.time.perf_counter = original_step, original_clock
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        self.assertEqual([r["kind"] for r in rows][:12], ["train"] * 10 + ["eval", "train"])    # in time order
        self.assertEqual([int(r["step"]) for r in train], list(range(1, 26)))
        self.assertEqual([int(r["step"]) for r in evals], [10, 20, 25])
        self.assertEqual([round(float(r["loss"]), 4) for r in train], losses_of(out))
        self.assertEqual([(float(r["loss"]), float(r["grad_norm"])) for r in train], [s[:2] for s in seen])
        self.assertEqual([float(r["lr"]) for r in train], [microgpt.lr_schedule(i, 25, 0.01) for i in range(25)])
        # between two readings of the clock around a step, exactly one tick (0.5 s) passed
        self.assertEqual([float(r["tokens_per_sec"]) for r in train], [s[2] / 0.5 for s in seen])
        self.assertEqual(float(evals[0]["val_ppl"]), math.exp(float(evals[0]["val_loss"])))

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

    def test_print_every_thins_the_step_lines_but_keeps_the_last(self):
        out = self.ok("--steps", 25, "--samples", 0, "--print-every", 10)
        self.assertEqual(re.findall(r"^step +(\d+)", out, re.M), ["10", "20", "25"])


class TestCheckpoints(ToolTestCase):
    RUN = ["--steps", 40, "--batch-size", 2, "--warmup-steps", 5, "--min-lr", 0.001, "--samples", 6,
           "--top-k", 5]

    def test_resume_after_25_steps_is_bit_for_bit_the_uninterrupted_40(self):
        full = os.path.join(self.tmp, "full.json")
        half = os.path.join(self.tmp, "half.json")
        whole = self.ok(*self.RUN, "--save", full)
        self.assertEqual(self.interrupted_at(25, half)["step"], 25)     # between two evaluations
        end = os.path.join(self.tmp, "end.json")
        resumed = self.ok("--resume", half, "--samples", 6, "--top-k", 5, "--save", end)
        self.assertIn(f"resuming {half} at step 25", resumed)
        self.assertEqual(len(losses_of(resumed)), 15)
        self.assertEqual(losses_of(whole)[25:], losses_of(resumed))
        evals = lambda text: re.findall(r"^eval .*$", text, re.M)
        self.assertEqual(evals(whole)[2:], evals(resumed))          # at 30 (steps 21-30) and 40 alike
        self.assertEqual(samples_of(whole), samples_of(resumed))
        with open(full) as f:
            a = json.load(f)
        with open(end) as f:
            b = json.load(f)
        self.assertTrue(a["params"] == b["params"], "parameters differ")   # exact: JSON keeps every bit
        self.assertTrue(a["adam"] == b["adam"], "Adam's state differs")
        self.assertEqual(a["rng_state"], b["rng_state"])
        self.assertEqual([r[1:4] for r in a["metrics"]["train"]], [r[1:4] for r in b["metrics"]["train"]])

    def test_save_every_writes_during_training(self):
        path = os.path.join(self.tmp, "run.json")
        original = microgpt.save_checkpoint
        steps = []
        microgpt.save_checkpoint = lambda p, *a: steps.append(a[4]) or original(p, *a)
        try:
            self.ok("--steps", 25, "--samples", 0, "--save", path, "--save-every", 10)
        finally:
            microgpt.save_checkpoint = original
        self.assertEqual(steps, [10, 20, 25])

    def interrupted_at(self, step, path):
        """Run self.RUN with --save path, stopping it (as Ctrl-C does) after `step` steps."""
        original = microgpt.Monitor.on_step

        def on_step(monitor, *a):
            monitor.stop_requested = monitor.step_done + 1 == step     # what the Ctrl-C handler sets
            return original(monitor, *a)

        microgpt.Monitor.on_step = on_step
        try:
            status, out, err = run_main("--data", self.data, *self.SMALL, *self.RUN, "--save", path)
        finally:
            microgpt.Monitor.on_step = original
        self.assertEqual(status, 130, err)
        self.assertIn(f"interrupted at step {step}: saved {path}; continue with --resume {path}", out)
        with open(path) as f:
            return json.load(f)

    def test_load_samples_without_training_and_repeats_the_runs_samples(self):
        path = os.path.join(self.tmp, "model.json")
        trained = self.ok("--steps", 15, "--samples", 5, "--save", path)
        for extra in ([], ["--steps", 0]):
            loaded = self.ok("--load", path, "--samples", 5, *extra)
            self.assertEqual(losses_of(loaded), [])
            self.assertIn(f"loaded {path} at step 15", loaded)
            self.assertEqual(samples_of(loaded), samples_of(trained))

    def test_checkpoint_is_plain_json_with_everything_resuming_needs(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 3, "--samples", 0, "--save", path)
        with open(path) as f:
            state = json.load(f)
        self.assertEqual(set(state), {"format", "config", "chars", "settings", "step", "params", "adam",
                                      "rng_state", "metrics"})
        self.assertEqual(state["config"], {"vocab_size": 22, "n_embd": 8, "n_head": 2, "n_layer": 1,
                                           "block_size": 8})
        self.assertEqual(state["adam"]["t"], 3)
        self.assertEqual(len(state["metrics"]["train"]), 3)
        self.assertEqual(state["settings"]["data"], os.path.abspath(self.data))

    def test_a_failed_write_leaves_the_old_checkpoint_whole(self):
        path = write_file(self.tmp, "model.json", '{"old": true}')
        original = os.replace

        def crash(*a):
            raise OSError(28, "No space left on device")

        os.replace = crash
        try:
            with self.assertRaises(microgpt.DataError):
                microgpt.write_atomically(path, '{"new": true}')
        finally:
            os.replace = original
        with open(path) as f:
            self.assertEqual(f.read(), '{"old": true}')
        self.assertEqual(sorted(os.listdir(self.tmp)), ["model.json", "names.txt"])     # no temporary left


class TestSampling(ToolTestCase):
    def test_prefix_completes_names_that_start_with_it(self):
        out = self.ok("--steps", 5, "--samples", 8, "--prefix", "el")
        samples = samples_of(out)
        self.assertEqual(len(samples), 8)
        self.assertTrue(all(s.startswith("el") for s in samples), samples)

    def test_top_k_1_is_the_most_likely_token_every_time(self):
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=8, n_head=2, rng=random.Random(2))
        greedy = []
        keys, values = [[]], [[]]
        token = tokenizer.BOS
        for pos in range(gpt.block_size):
            logits = [z.data for z in gpt(token, pos, keys, values)]
            token = logits.index(max(logits))
            if token == tokenizer.BOS:
                break
            greedy.append(token)
        for seed in range(3):
            self.assertEqual(microgpt.sample(gpt, tokenizer, random.Random(seed), 1.0, top_k=1),
                             tokenizer.decode(greedy))

    def test_top_k_never_samples_outside_the_k_most_likely(self):
        tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba", "cd"])
        gpt = microgpt.GPT(tokenizer.vocab_size, n_embd=4, n_head=1, block_size=2, rng=random.Random(0))
        logits = [z.data for z in gpt(tokenizer.BOS, 0, [[]], [[]])]
        top2 = sorted(range(len(logits)), key=lambda i: -logits[i])[:2]
        rng = random.Random(0)
        firsts = {microgpt.sample(gpt, tokenizer, rng, 5.0, top_k=2)[:1] for _ in range(200)}
        allowed = {"" if i == tokenizer.BOS else tokenizer.chars[i] for i in top2}
        self.assertEqual(firsts, allowed)

    def test_reports_how_many_samples_are_new(self):
        out = self.ok("--steps", 5, "--samples", 10)
        new = re.search(r"^new: (\d+) of 10 samples are not training documents$", out, re.M)
        self.assertIsNotNone(new)
        docs = list(FEW_NAMES)
        random.Random(42).shuffle(docs)
        train = set(docs[3:])
        self.assertEqual(int(new.group(1)), sum(s not in train for s in samples_of(out)))


class TestExplain(ToolTestCase):
    def test_trace_table_of_a_document(self):
        out = self.ok("--explain", "emma")
        table = out[out.index("explain 'emma'"):].splitlines()
        rows = [r for r in table if re.match(r" +\d+ \|", r)]
        self.assertEqual(len(rows), 5)                                  # e m m a BOS: 5 predictions
        self.assertRegex(rows[0], r"^ +0 \|   BOS \(21\) \|   'e' \( 4\) \|   0\.\d{4}  \|   \d\.\d{4}    \| ")
        self.assertRegex(rows[4], r"^ +4 \|   'a' \( 0\) \|   BOS \(21\) \|   0\.\d{4}  \|   \d\.\d{4}    \| ")
        losses = [float(r.split("|")[4]) for r in rows]
        for row, loss in zip(rows, losses):                             # p(target) printed = exp(-loss)
            self.assertAlmostEqual(float(row.split("|")[3]), math.exp(-loss), delta=1e-4)
        mean = float(re.search(r"mean loss (\d\.\d+) over 5 positions", out).group(1))
        self.assertAlmostEqual(mean, sum(losses) / 5, delta=0.0001)
        self.assertIn(f"ln 22 = {math.log(22):.4f}", out)
        self.assertEqual(losses_of(out), [])                           # exits without training

    def test_default_document_is_the_first_training_document(self):
        docs = list(FEW_NAMES)
        random.Random(42).shuffle(docs)
        out = self.ok("--explain")
        self.assertIn(f"explain {docs[3]!r}", out)                      # 3 validation docs come first

    def test_a_document_longer_than_block_size_is_cut(self):
        out = self.ok("--explain", "charlotte", "--block-size", 4)
        self.assertIn("cut: block_size 4 leaves out the last 6 target(s)", out)


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


class TestBadInput(ToolTestCase):
    def checkpoint(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 2, "--samples", 0, "--save", path)
        return path

    def test_checkpoint_missing(self):
        self.fails("--load", os.path.join(self.tmp, "nope.json"), says="not found")

    def test_checkpoint_not_json(self):
        self.fails("--resume", write_file(self.tmp, "x.json", "emma\nolivia\n"), says="not valid JSON")

    def test_checkpoint_truncated(self):
        path = self.checkpoint()
        with open(path) as f:
            text = f.read()
        write_file(self.tmp, "model.json", text[:len(text) // 2])
        self.fails("--resume", path, says="not valid JSON, perhaps truncated")

    def test_json_that_is_not_a_checkpoint(self):
        self.fails("--load", write_file(self.tmp, "x.json", '{"hello": 1}'), says="not a microgpt checkpoint")

    def test_damaged_checkpoint(self):
        path = self.checkpoint()
        with open(path) as f:
            state = json.load(f)
        state["chars"] = state["chars"][:-1]
        write_file(self.tmp, "model.json", json.dumps(state))
        self.fails("--load", path, says="is damaged")

    def test_checkpoint_with_something_else_than_numbers_or_the_wrong_shape(self):
        path = self.checkpoint()
        with open(path) as f:
            state = json.load(f)
        def drop_a_row(st):              # consistent counts, wrong shape: lm_head one row short
            n = len(st["params"]["lm_head"].pop())
            st["adam"]["m"], st["adam"]["v"] = st["adam"]["m"][n:], st["adam"]["v"][n:]

        for damage, says in ((lambda st: st["params"]["wte"][0].__setitem__(0, "x"), "params.wte is not 22 rows"),
                             (drop_a_row, "params.lm_head is not 22 rows of 8 finite numbers")):
            broken = json.loads(json.dumps(state))
            damage(broken)
            write_file(self.tmp, "broken.json", json.dumps(broken))
            line = self.fails("--load", os.path.join(self.tmp, "broken.json"), says="is damaged")
            self.assertIn(says, line)

    def test_checkpoint_of_another_model_size(self):
        path = self.checkpoint()
        self.fails("--resume", path, "--n-embd", 16, says="has n_embd 8, not 16")
        self.fails("--load", path, "--block-size", 16, says="has block_size 8, not 16")

    def test_resume_with_data_of_another_vocabulary(self):
        path = self.checkpoint()
        other = write_file(self.tmp, "other.txt", "zoë\nemma\n")
        self.fails("--resume", path, "--data", other, says="has characters checkpoint")

    def test_prefix_with_an_unknown_character_or_too_long(self):
        self.fails("--prefix", "k9", says="--prefix 'k9' has characters the model does not know: 9")
        self.fails("--prefix", "abcdefgh", says="must be shorter than block_size 8")

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
        # 12 n_embd^2 per layer plus (2 vocab_size + block_size) n_embd: 12e12 + (2 * 22 + 8) * 1e6
        line = self.fails("--n-embd", 1_000_000, "--n-head", 1, says="has 12,000,052,000,000 parameters")
        self.assertRegex(line, r"needs about [\d,.]+ GB here; this machine has [\d,.]+ GB")
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

    def test_an_option_of_the_wrong_type_is_one_line(self):
        self.fails("--seed", "1.5", says="argument --seed: invalid int value: '1.5'; see --help")
        self.fails("--no-such-option", says="unrecognized arguments: --no-such-option")
        self.fails("--lr", "nan", says="--lr must be a finite number, got nan")

    def test_a_loss_that_stops_being_finite_saves_the_last_good_state(self):
        path = os.path.join(self.tmp, "run.json")
        line = self.fails("--lr", 1e300, "--steps", 10, "--save", path, says="training stopped at step 2")
        self.assertIn(f"saved the last good state (step 1) to {path}", line)
        with open(path) as f:
            state = json.load(f)
        self.assertEqual(state["step"], 1)
        self.assertTrue(all(math.isfinite(x) for mat in state["params"].values() for row in mat for x in row))


if __name__ == "__main__":
    unittest.main()
