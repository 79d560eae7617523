"""Looking inside: samples while training, --explain, --gradcheck, the update ratio in the log, the plot."""
import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import random
import re
import unittest

import atomic_reference as ref
from support import FEW_NAMES, FewNamesCase, ROOT, microgpt, run_main, write_file

Value = microgpt.Value
TIMES = re.compile(r"\d+\.\d (s|min)( left)?|\d+\.\d ms/step")

spec = importlib.util.spec_from_file_location("plot", os.path.join(ROOT, "tools", "plot.py"))
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


class InsideCase(FewNamesCase, unittest.TestCase):
    pass


class TestSamplesWhileTraining(InsideCase):
    RUN = ["--steps", 30, "--eval-every", 10, "--samples", 4, "--temperature", 0.9]

    def test_they_change_nothing_else(self):
        """Bug: drawing them from the run's own generator (rng) shifts the final samples and the state."""
        outputs, states = [], []
        for n in (0, 5):
            path = os.path.join(self.tmp, f"run{n}.json")
            out = self.ok(*self.RUN, "--eval-samples", n, "--save", path)
            outputs.append([TIMES.sub("<time>", line).replace(path, "<path>") for line in out.splitlines()])
            with open(path) as f:
                states.append(json.load(f))
        without, with_samples = outputs
        samples = [line for line in with_samples if line.startswith("  samples at step")]
        self.assertEqual([line.split(":")[0] for line in samples],
                         ["  samples at step 10", "  samples at step 20", "  samples at step 30"])
        self.assertEqual([line for line in with_samples if line not in samples], without)
        for key in ("params", "adam", "rng_state", "step"):
            self.assertTrue(states[0][key] == states[1][key], key)
        self.assertNotIn("samples at step", "\n".join(without))

    def test_each_evaluation_has_a_generator_of_its_own_from_seed_and_step(self):
        """Bug: one generator for all evaluations (then 2 and 5 samples per evaluation would drift apart)."""
        found = {}
        for n in (2, 5):
            out = self.ok(*self.RUN, "--eval-samples", n)
            found[n] = [line.split(": ", 1)[1].split(", ") for line in out.splitlines()
                        if line.startswith("  samples at step")]
        self.assertEqual([texts[:2] for texts in found[5]], found[2])
        self.assertNotEqual(found[5][0], found[5][1])

    def test_a_count_out_of_range_is_refused(self):
        """Drawn inside a training step, where Ctrl-C only asks to stop after the step: a huge count could never
        be interrupted (PyPy's list of 10^12 fails at once; CPython's would run for ever)."""
        for count in (-1, 101, 10 ** 12):
            status, out, err = run_main("--data", self.data, "--eval-samples", count)
            self.assertEqual(status, 2)
            self.assertIn(f"--eval-samples must be between 0 and 100, got {count}", err)


def attention_by_hand(gpt, tokens):
    """Layer 0's attention weights, worked out with plain floats: [position][head] -> pos + 1 weights."""
    sd, hd = {k: [[p.data for p in row] for row in m] for k, m in gpt.state_dict.items()}, gpt.head_dim
    norm = lambda v: [x / math.sqrt(sum(y * y for y in v) / len(v) + 1e-5) for x in v]
    matvec = lambda m, v: [sum(a * b for a, b in zip(row, v)) for row in m]
    qs, ks = [], []
    for t, token in enumerate(tokens):
        x = norm(norm([a + b for a, b in zip(sd["wte"][token], sd["wpe"][t])]))
        qs.append(matvec(sd["layer0.attn_wq"], x))
        ks.append(matvec(sd["layer0.attn_wk"], x))
    out = []
    for t in range(len(tokens)):
        heads = []
        for h in range(gpt.n_head):
            s = slice(h * hd, (h + 1) * hd)
            scores = [sum(a * b for a, b in zip(qs[t][s], ks[u][s])) / math.sqrt(hd) for u in range(t + 1)]
            exps = [math.exp(z - max(scores)) for z in scores]
            heads.append([e / sum(exps) for e in exps])
        out.append(heads)
    return out


class TestExplain(InsideCase):
    def setUp(self):
        super().setUp()
        self.tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        self.gpt = microgpt.GPT(self.tokenizer.vocab_size, n_embd=8, n_head=2, n_layer=2, rng=random.Random(7))
        self.adam = microgpt.Adam(self.gpt.params)
        self.tokens = self.tokenizer.encode("emma")
        self.x = microgpt.explain_document(self.gpt, self.tokenizer, self.adam, "emma", 0.01)

    def test_the_positions_against_the_atomic_reference(self):
        """Bugs: p(target) or the top 3 read at the wrong position; softmax with a temperature left on."""
        keys, values = [[], []], [[], []]
        losses = microgpt.document_losses(self.gpt, self.tokens)
        self.assertEqual(len(self.x["positions"]), 5)
        for t, (inp, target, p, loss, top3) in enumerate(self.x["positions"]):
            logits = [z.data for z in ref.gpt_forward(self.gpt, self.tokens[t], t, keys, values)]
            exps = [math.exp(z) for z in logits]
            probs = [e / sum(exps) for e in exps]
            self.assertEqual((inp, target), (self.tokens[t], self.tokens[t + 1]))
            self.assertAlmostEqual(p, probs[target], places=12)
            self.assertAlmostEqual(loss, losses[t].data, places=12)
            self.assertAlmostEqual(math.exp(-loss), p, places=12)
            want = sorted(range(len(probs)), key=lambda i: -probs[i])[:3]
            self.assertEqual([i for i, _ in top3], want)
            for (_, q), i in zip(top3, want):
                self.assertAlmostEqual(q, probs[i], places=12)

    def test_attention_rows_sum_to_one_over_the_past_and_match_a_computation_by_hand(self):
        """Bugs: the weights recorded before the softmax; the head or layer order mixed up."""
        by_hand = attention_by_hand(self.gpt, self.tokens[:5])
        for t, heads in enumerate(self.x["attention"]):
            self.assertEqual(len(heads), 2 * 2)                         # layers x heads
            for weights in heads:
                self.assertEqual(len(weights), t + 1)                   # nothing from the future
                self.assertAlmostEqual(sum(weights), 1.0, places=12)
            for h in range(2):                                          # layer 0 held to the floats
                for got, want in zip(heads[h], by_hand[t][h]):
                    self.assertAlmostEqual(got, want, places=12)

    def test_the_traced_step_and_that_nothing_changed(self):
        """Bugs: the trial step left in place; the gradient of one matrix reported for another."""
        params_before = [p.data for p in self.gpt.params]
        twin = microgpt.GPT(self.tokenizer.vocab_size, n_embd=8, n_head=2, n_layer=2, rng=random.Random(7))
        loss = microgpt.document_loss(twin, self.tokens)
        loss.backward()
        step = self.x["step"]
        self.assertAlmostEqual(step["loss"], loss.data, places=12)
        for name, mat in twin.state_dict.items():
            grads = [p.grad for row in mat for p in row]
            weights = [p.data for row in mat for p in row]
            # Adam's first step by hand: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)
            update = [0.01 * g / (abs(g) + 1e-8) for g in grads]
            rms = lambda xs: math.sqrt(sum(x * x for x in xs) / len(xs))
            norm, ratio = step["matrices"][name]
            self.assertAlmostEqual(norm, math.sqrt(sum(g * g for g in grads)), places=12)
            self.assertAlmostEqual(ratio, rms(update) / rms(weights), places=9)
        self.assertEqual([p.data for p in self.gpt.params], params_before)
        self.assertEqual([p.grad for p in self.gpt.params if p.grad], [])
        self.assertEqual((self.adam.t, self.adam.m, self.adam.v), (0, [0.0] * len(params_before),
                                                                   [0.0] * len(params_before)))

    def test_the_printed_page(self):
        out = self.ok("--explain", "emma")
        rows = [line for line in out.splitlines() if re.match(r" +\d+ \| ", line)]
        self.assertRegex(rows[0], r"^ +0 \|   BOS \(21\) \|   'e' \( 4\) \|   \d\.\d{4}  \|   \d\.\d{4}    \| "
                                  r"(\S+ \d\.\d\d  ){2}\S+ \d\.\d\d$")
        losses = [float(r.split("|")[4]) for r in rows]
        mean = float(re.search(r"mean loss (\d\.\d+) over 5 positions", out).group(1))
        self.assertAlmostEqual(mean, sum(losses) / 5, delta=1e-4)
        heatmap = [line for line in out.splitlines() if re.match(r" +\d+ +\S+ reads ", line)]
        self.assertEqual(len(heatmap), 1 * 2 * 5)                      # 1 layer, 2 heads, 5 positions
        self.assertRegex(heatmap[0], r"^ +0 BOS reads +(@@) +most: BOS 100%$")   # position 0 sees only itself
        self.assertEqual(len(re.findall(r"^  (layer0\.\w+|wte|wpe|lm_head) +\d+\.\d{6} +-?\d+\.\d\d$", out, re.M)), 9)

    def test_a_loaded_model_is_explained_with_its_own_adam_state(self):
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 12, "--samples", 0, "--save", path)
        out = self.ok("--load", path, "--explain", "ava")
        self.assertIn("explain 'ava' (model at step 12, the end of its run: its step traced at the peak lr)", out)
        status, out, err = run_main("--data", self.data, *self.SMALL, "--explain", "zoë")
        self.assertEqual((status, err.strip()), (2, "microgpt: error: --explain 'zoë' has characters the model "
                                                    "does not know: ë"))


class TestGradcheck(InsideCase):
    def test_passes_on_the_default_model(self):
        status, out, err = run_main("--gradcheck", "emma")
        self.assertEqual(status, 0, err)
        self.assertRegex(out, r"gradcheck passed: the worst relative error is \d\.\de-\d\d \(\S+\), under the "
                              r"tolerance 1e-04")
        self.assertEqual(len(re.findall(r"^  (layer0\.\w+|wte|wpe|lm_head) +\d+ / \d+ ", out, re.M)), 9)

    def planted(self, cls, name, wrong):
        original = getattr(cls, name)
        setattr(cls, name, wrong)
        self.addCleanup(setattr, cls, name, original)

    def test_fails_on_a_wrong_relu_derivative(self):
        self.planted(Value, "relu", lambda a: Value(max(0.0, a.data), ((a,), (0.5 * (a.data > 0),))))
        status, out, err = run_main("--data", self.data, *self.SMALL, "--gradcheck", "emma")
        self.assertEqual(status, 1, err)
        self.assertRegex(out, r"gradcheck FAILED: \S+ is off by a relative")

    def test_fails_on_a_wrong_softmax_derivative(self):
        def softmax(logits, temperature=1.0):             # the derivative forgets the temperature
            probs = microgpt.softmax_data([z.data for z in logits], temperature)
            return [Value(p_i, (logits, [p_i * ((i == j) - p_j) for j, p_j in enumerate(probs)]))
                    for i, p_i in enumerate(probs)]
        self.planted(microgpt, "softmax", softmax)
        status, out, err = run_main("--data", self.data, *self.SMALL, "--gradcheck", "emma")
        self.assertEqual(status, 1, err)
        self.assertRegex(out, r"FAILED: layer0\.attn_w[qk] is off")          # where attention's softmax sits

    def test_unknown_characters(self):
        status, out, err = run_main("--data", self.data, "--gradcheck", "x-1")
        self.assertEqual((status, err.strip()), (2, "microgpt: error: --gradcheck 'x-1' has characters the model "
                                                    "does not know: -1x"))


class TestHealthInTheLog(InsideCase):
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

        microgpt.train_step = train_step
        try:
            self.ok("--steps", 12, "--samples", 0, "--grad-clip", 1.45, "--log", log)
        finally:
            microgpt.train_step = original
        with open(log, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
        self.assertEqual(len(rows), 12)
        for row, (ratio, norm) in zip(rows, snapshots):
            self.assertAlmostEqual(float(row["update_ratio"]), ratio, places=12)
            self.assertEqual(row["clipped"], "1" if norm > 1.45 else "0")
            self.assertEqual(row["grad_clip"], "1.45")
        self.assertEqual({r["clipped"] for r in rows}, {"0", "1"})            # both cases occur here


class TestPlot(InsideCase):
    def test_reads_a_real_log(self):
        log = os.path.join(self.tmp, "run.csv")
        out = self.ok("--steps", 25, "--eval-every", 10, "--samples", 0, "--grad-clip", 2.5, "--log", log)
        run = plot.read_log(log)
        self.assertEqual(run["step"], list(range(1, 26)))
        printed = [(int(s), float(v)) for s, v in re.findall(r"^eval +(\d+) \|.*\| val loss (\d\.\d{4})", out, re.M)]
        self.assertEqual([(s, round(v, 4)) for s, v in run["val"]], printed)
        self.assertEqual(len(run["update_ratio"]), 25)
        self.assertEqual(run["grad_clip"], 2.5)

    def test_bad_logs_are_one_line_and_status_2(self):
        cases = {"missing.csv": (None, "not found"),
                 "foreign.csv": ("a,b\n1,2\n", "is not a microgpt log"),
                 "short.csv": (",".join(microgpt.CSV_COLUMNS) + "\ntrain" + ",1" * 12 + "\n",
                               "a plot needs at least 2"),
                 "bad.csv": (",".join(microgpt.CSV_COLUMNS) + "\ntrain,1,x" + ",1" * 10 + "\n", "loss is 'x'")}
        for name, (text, says) in cases.items():
            with self.subTest(log=name):
                path = os.path.join(self.tmp, name)
                if text is not None:
                    write_file(self.tmp, name, text)
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    self.assertEqual(plot.main(["plot.py", path]), 2)
                self.assertEqual(len(err.getvalue().strip().splitlines()), 1)
                self.assertIn(says, err.getvalue())

    def test_draws_a_png(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("matplotlib is not installed (make plot installs it in a throwaway venv)")
        log = os.path.join(self.tmp, "run.csv")
        self.ok("--steps", 25, "--eval-every", 10, "--samples", 0, "--log", log)
        self.assertEqual(plot.main(["plot.py", log]), 0)
        with open(os.path.join(self.tmp, "run.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
