"""Looking inside a model: --explain (beliefs, attention, one step traced), --gradcheck, and the plot of a
run's log."""
import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from support import (FEW_NAMES, FewNamesCase, ROOT, SCRIPT, TempDirTestCase, document_loss, gpt as make_gpt, inside,
                     microgpt, replaced, run_main, slow, split_of, workbench, write_file)
import reference.atomic as ref  # (support puts the project on the path)
import traps

Value = microgpt.Value

spec = importlib.util.spec_from_file_location("plot", os.path.join(ROOT, "tools", "plot.py"))
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


class InsideCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 10, "--print-every", 1]


def losses_of(text):
    return [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", text, re.M)]


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
        self.gpt = make_gpt(self.tokenizer.vocab_size, n_embd=8, n_head=2, n_layer=2, seed=7)
        self.adam = microgpt.Adam(self.gpt.params)
        self.tokens = self.tokenizer.encode("emma")
        self.x = inside.explain_document(self.gpt, self.tokenizer, self.adam, "emma", 0.01)

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
        twin = make_gpt(self.tokenizer.vocab_size, n_embd=8, n_head=2, n_layer=2, seed=7)
        loss = document_loss(twin, self.tokens)
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
                                                    "does not know: 'ë'"))


class TestExplainPrinted(InsideCase):
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
        self.assertIn("cut: block_size 4 leaves out the last 6 targets", out)



class TestTheTracedStepIsTheNextOne(InsideCase):
    """The step --explain traces is the one training would take next, at the learning rate it prints."""

    def traced(self, *argv, steps=None):
        """(explain's output, the checkpoint's state, the update ratios printed) for a model trained with
        argv and saved; `steps` makes the checkpoint's run that long, so that it stopped mid-way."""
        path = os.path.join(self.tmp, "model.json")
        self.ok(*argv, "--samples", 0, "--save", path)
        if steps:
            with open(path) as f:
                raw = json.load(f)
            raw["settings"]["steps"] = steps
            write_file(self.tmp, "model.json", json.dumps(raw))
        out = self.ok("--load", path, "--explain", "ava")
        printed = {m: float(r) for m, r in re.findall(r"^  (\S+) +\d+\.\d{6} +(-?\d+\.\d\d)$", out, re.M)}
        self.assertEqual(len(printed), 9)
        return out, workbench.load_checkpoint(path), printed

    def by_hand(self, state, lr):
        """log10 of each matrix's update ratio for Adam's step t + 1 from the checkpoint's m, v and t."""
        tokenizer = microgpt.Tokenizer(state["chars"])
        engine = workbench.MicrogptEngine(state["settings"], tokenizer, random.Random(0), state)
        document_loss(engine.gpt, tokenizer.encode("ava")).backward()
        adam, t, i, ratios = state["adam"], state["adam"]["t"] + 1, 0, {}
        for name, mat in engine.gpt.state_dict.items():
            params = [p for row in mat for p in row]
            update = []
            for p in params:
                m = 0.85 * adam["m"][i] + 0.15 * p.grad
                v = 0.99 * adam["v"][i] + 0.01 * p.grad ** 2
                update.append(lr * (m / (1 - 0.85 ** t)) / (math.sqrt(v / (1 - 0.99 ** t)) + 1e-8))
                i += 1
            ratios[name] = math.log10(math.sqrt(sum(u * u for u in update) / sum(p.data ** 2 for p in params)))
        return ratios

    def test_mid_run_with_adams_real_step_count_and_the_schedules_learning_rate(self):
        """Bugs: a trial Adam of t = 0 (the bias correction of step 1, not of step 13); the peak learning rate
        traced in the middle of a run."""
        out, state, printed = self.traced("--steps", 12, "--warmup-steps", 3, "--min-lr", 0.001, steps=40)
        lr = microgpt.lr_schedule(12, 40, 0.01, 3, 0.001)
        self.assertIn("(model at step 12), a training document: tokens", out)
        self.assertIn(f"learning rate {lr:.5f}", out)
        for name, ratio in self.by_hand(state, lr).items():
            self.assertAlmostEqual(printed[name], ratio, delta=0.006)

    def test_a_finished_run_with_a_floor_under_its_learning_rate(self):
        """Bug: the printed learning rate is not the one used (the schedule's min_lr used, the peak printed)."""
        out, state, printed = self.traced("--steps", 12, "--min-lr", 0.004)
        self.assertIn("(model at step 12, the end of its run: its step traced at the peak lr)", out)
        self.assertIn("learning rate 0.01000", out)
        for name, ratio in self.by_hand(state, 0.01).items():
            self.assertAlmostEqual(printed[name], ratio, delta=0.006)
        low = self.by_hand(state, 0.004)
        self.assertTrue(any(abs(printed[name] - low[name]) > 0.1 for name in low))   # the two are told apart


class TestGradcheck(InsideCase):
    def test_passes_on_the_default_model(self):
        status, out, err = run_main("--gradcheck", "emma")
        self.assertEqual(status, 0, err)
        self.assertRegex(out, r"gradcheck passed: the worst relative error is \d\.\de-\d\d \(\S+\), under the "
                              r"tolerance 1e-04")
        rows = re.findall(r"^  (layer0\.\w+|wte|wpe|lm_head) +(\d+) \( *(\d+)\) / +(\d+) / (\d+) ", out, re.M)
        self.assertEqual(len(rows), 9)
        counts = {name: tuple(map(int, row)) for name, *row in rows}
        self.assertEqual(counts["wte"], (64, 64, 64, 432))           # 4 letters read (BOS e m a) x n_embd 16
        self.assertEqual(counts["wpe"], (80, 80, 80, 256))           # 5 positions x 16, of block_size 16
        self.assertEqual(counts["lm_head"][1:], (100, 432, 432))     # every logit: all reached, 100 sampled

    def test_it_checks_the_entries_the_document_reaches_and_counts_them(self):
        """Bug: sampling from every entry of a matrix (rows of wte the document lacks have gradient 0 on both
        sides, and would pass whatever backward() does)."""
        gpt = make_gpt(7, n_embd=4, n_head=2, n_layer=1, block_size=4, seed=1)
        tokens = [6, 2, 2, 0, 5, 1, 6]                              # cut to block 4: reads 6 2 2 0
        report = inside.gradient_check(gpt, tokens, random.Random(0))
        self.assertEqual({k: report["wte"][k] for k in ("checked", "reached", "total")},
                         {"checked": 12, "reached": 12, "total": 28})          # rows 6, 2, 0
        self.assertEqual(report["wpe"]["reached"], 16)
        self.assertEqual(report["lm_head"]["reached"], 28)
        for name, m in report.items():
            self.assertLessEqual(m["nonzero"], m["checked"])
            self.assertEqual(m["checked"], min(m["reached"], 100))

    def test_the_worst_error_of_a_matrix_is_the_largest_not_the_last(self):
        """Bug: `worst = e` in the loop (the last entry checked is reported). One wrong gradient, on the first
        entry of wte that the document reaches, must be the matrix's worst."""
        gpt = make_gpt(7, n_embd=4, n_head=2, n_layer=1, block_size=4, seed=1)
        original = Value.backward

        def wrong_by_one_entry(loss, order=None):
            original(loss, order)
            gpt.state_dict["wte"][6][0].grad += 0.01

        with replaced(Value, "backward", wrong_by_one_entry):
            report = inside.gradient_check(gpt, [6, 2, 2, 0, 5, 1, 6], random.Random(0))
        self.assertGreater(report["wte"]["worst"], 1e-3)
        self.assertLess(max(m["worst"] for name, m in report.items() if name != "wte"), 1e-4)

    def planted(self, cls, name, wrong):
        original = getattr(cls, name)
        setattr(cls, name, wrong)
        self.addCleanup(setattr, cls, name, original)

    def test_fails_on_a_wrong_relu_derivative(self):
        self.planted(Value, "relu", lambda a: Value(max(0.0, a.data), "relu", ((a,), (0.5 * (a.data > 0),))))
        status, out, err = run_main("--data", self.data, *self.SMALL, "--gradcheck", "emma")
        self.assertEqual(status, 1, err)
        self.assertRegex(out, r"gradcheck FAILED: \S+ is off by a relative")

    def test_fails_on_a_wrong_softmax_derivative(self):
        def softmax(logits, temperature=1.0):             # the derivative forgets the temperature
            probs = microgpt.softmax_data([z.data for z in logits], temperature)
            return [Value(p_i, "softmax", (logits, [p_i * ((i == j) - p_j) for j, p_j in enumerate(probs)]))
                    for i, p_i in enumerate(probs)]
        self.planted(microgpt, "softmax", softmax)
        status, out, err = run_main("--data", self.data, *self.SMALL, "--gradcheck", "emma")
        self.assertEqual(status, 1, err)
        self.assertRegex(out, r"gradcheck FAILED: \S+ is off by a relative")
        worst = dict(re.findall(r"^  (\S+) +\d+ \( *\d+\) / +\d+ / \d+ +(\S+)$", out, re.M))
        # off where attention's softmax sits, and in everything beneath it (the query, the key, and through
        # them the embeddings); right in the value, the output projection, the MLP and lm_head, above it
        self.assertEqual(sorted(name for name, error in worst.items() if float(error) > 1e-4),
                         ["layer0.attn_wk", "layer0.attn_wq", "wpe", "wte"])

    def test_unknown_characters(self):
        status, out, err = run_main("--data", self.data, "--gradcheck", "x-1")
        self.assertEqual((status, err.strip()), (2, "microgpt: error: --gradcheck 'x-1' has characters the model "
                                                    "does not know: '-1x'"))


class TestWhatExplainSays(InsideCase):
    def test_whether_the_document_was_trained_on(self):
        """Bug: --explain silent on whether the model trained on the document (its loss means another thing)."""
        train_docs, val_docs = split_of(FEW_NAMES, 42)
        for doc, said in ((train_docs[0], "a training document"), (val_docs[0], "held out for validation"),
                          ("mmm", "in neither the training nor the validation documents")):
            with self.subTest(doc=doc):
                self.assertRegex(self.ok("--explain", doc), rf"explain '{doc}' \(model at step 0\), {said}: tokens")

    def test_a_loaded_model_prints_no_training_lines_and_the_legend_names_every_shade(self):
        """Bugs: --load printing "loss at initialisation should be..." and "cut: ... train on"; a legend of 3
        of the 9 shades."""
        path = os.path.join(self.tmp, "m.json")
        self.ok("--steps", 2, "--samples", 0, "--save", path)
        out = self.ok("--load", path, "--explain", "emma")
        self.assertNotIn("loss at initialisation", out)
        self.assertNotIn("cut:", out.split("explain")[0])
        legend = re.search(r"Shades: ' ' under 10%, (.*) or more", out).group(1)
        shades = [(c, str(10 * i)) for i, c in enumerate(" .:-=+*#%@")][1:]
        self.assertEqual(re.findall(r"'(.)' (\d+)%", legend), shades)


class TestTheUpdateRatioRule(unittest.TestCase):
    """--explain's rule for the update-to-weight ratio, held to what the default model does: the bounds and
    the ranges its footnote quotes are measured here, on names.txt, at the default lr and the high-lr trap's."""

    def traced(self, *argv):
        out = []
        self.assertEqual(workbench.run(workbench.parse_args(["--explain", "emma", *map(str, argv)]), log=out.append), 0)
        rows = re.findall(r"^  (wte|wpe|lm_head|layer0\.\w+) +\d+\.\d{6} +(-?\d+\.\d\d)(.*)$", "\n".join(out), re.M)
        self.assertEqual(len(rows), 9)
        return {name: (float(size), said.strip()) for name, size, said in rows}, out[-1]

    def test_the_default_lr_is_within_the_bounds_and_the_high_lr_trap_above(self):
        """Bugs: a rule that calls the project's own default too high (the 1e-3 of large models); bounds
        that the high-lr trap's first step does not cross; a footnote quoting other numbers than these."""
        default, footnote = self.traced()
        self.assertEqual({said for _, said in default.values()}, {""})             # nothing flagged
        sizes = [size for size, _ in default.values()]
        self.assertTrue(all(workbench.RATIO_BARELY < size < workbench.RATIO_TOO_HIGH for size in sizes), sizes)
        self.assertIn(f"first step is {min(sizes):.1f} to {max(sizes):.1f}", footnote)
        high, _ = self.traced("--lr", traps.HIGH_LR)
        self.assertEqual({said for _, said in high.values()}, {"too high"})       # every matrix flagged
        sizes = [size for size, _ in high.values()]
        low = round(min(sizes), 1) + 0.0                                          # (-0.02: "0.0", not "-0.0")
        self.assertIn(f"the high-lr trap's first step, {low:.1f} to {max(sizes):.1f}", footnote)
        self.assertIn(f"at {traps.HIGH_LR / traps.LR:.0f} times that lr", footnote)


class TestTheGraphDrawn(unittest.TestCase):
    def setUp(self):
        tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba"])
        self.gpt = make_gpt(tokenizer.vocab_size, n_embd=4, n_head=1, n_layer=1, block_size=4)
        tokens = tokenizer.encode("ab")
        self.loss = microgpt.cross_entropy(microgpt.document_logits(self.gpt, tokens[:1])[0], tokens[1])
        self.loss.backward()
        self.dot = inside.graph_dot(self.loss, self.gpt)

    def test_every_value_a_box_with_its_operation_value_and_gradient(self):
        """Bugs: a node left out or drawn twice; the value and the gradient swapped; an arrow the wrong way."""
        nodes = [v for v in self.loss.graph() if v._op]
        boxes = re.findall(r'^  "v(\d+)" \[label="\{(.*?)\|(.*?)\|grad (.*?)\}"\];$', self.dot, re.M)
        self.assertEqual(len(boxes), len(nodes))
        self.assertEqual([(op.replace("\\", ""), float(data), float(grad)) for _, op, data, grad in boxes],
                         [(v._op, float(f"{v.data:.4g}"), float(f"{v.grad:.3g}")) for v in nodes])
        last = boxes[-1]
        self.assertEqual((last[1], float(last[3])), ("cross-entropy", 1.0))       # the loss: d loss / d loss = 1
        matrices = re.findall(r'^  "([\w.]+)" \[label="\{[\w.]+\|(\d+) x (\d+)\|parameters\}"', self.dot, re.M)
        self.assertEqual({name: (int(r), int(c)) for name, r, c in matrices},
                         {name: (len(m), len(m[0])) for name, m in self.gpt.state_dict.items()})
        arrows = set(re.findall(r'^  "(\S+)" -> "(\S+)";$', self.dot, re.M))
        key = {id(v): f"v{i}" for i, v in enumerate(self.loss.graph())}
        logits = self.loss._groups[0][0]                    # what the loss was made from: the logits
        self.assertLessEqual({(key[id(z)], key[id(self.loss)]) for z in logits}, arrows)
        self.assertIn(("lm_head", key[id(logits[0])]), arrows)     # a matrix's arrow runs to what it made
        self.assertNotIn((key[id(self.loss)], key[id(logits[0])]), arrows)

    def test_the_tool_writes_it_and_graphviz_draws_it(self):
        spec = importlib.util.spec_from_file_location("graph", os.path.join(ROOT, "tools", "graph.py"))
        graph = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(graph)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "g.dot")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(graph.main(["graph.py", out]), 0)
            with open(out) as f:
                self.assertTrue(f.read().startswith("digraph microgpt {"))
            if shutil.which("dot"):
                with open(os.path.join(tmp, "g.svg")) as f:
                    self.assertIn("<svg", f.read())


class TestToolsSayOneLine(TempDirTestCase, unittest.TestCase):
    """tools/graph.py, make_docs.py and make_names.py hold the program's contract: bad input is one line, status 2."""

    def tool(self, name, *argv):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *map(str, argv)], capture_output=True,
                           text=True, timeout=120)
        return r.returncode, r.stderr

    @slow
    def test_graph_and_make_docs_refuse_in_one_line(self):
        """Bugs: graph.py writing into a folder that is not there or onto a folder (tracebacks); make_docs.py
        on any file but microgpt.py (ModuleNotFoundError or SyntaxError), or over a user's own file."""
        mine = write_file(self.tmp, "mine.html", "my notes\n")
        text = write_file(self.tmp, "notes.txt", "not python (\n")
        cases = [("graph.py", [os.path.join(self.tmp, "nope", "g.dot")], "graph: error: ", "does not exist"),
                 ("graph.py", [self.tmp], "graph: error: ", "is a folder"),
                 ("graph.py", [mine], "graph: error: ", "is not a graph this script wrote"),
                 ("make_docs.py", [text, os.path.join(self.tmp, "p.html")], "make_docs: error: ", "is not Python"),
                 ("make_docs.py", [os.path.join(ROOT, "traps.py"), os.path.join(self.tmp, "p.html")],
                  "make_docs: error: ", "is not microgpt.py"),
                 ("make_docs.py", [os.path.join(self.tmp, "none.py")], "make_docs: error: ", "cannot read"),
                 ("make_docs.py", [SCRIPT, mine], "make_docs: error: ", "is not a reading page this script wrote")]
        for name, argv, starts, says in cases:
            with self.subTest(tool=name, argv=argv):
                status, err = self.tool(name, *argv)
                self.assertEqual(status, 2, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith(starts), err)
                self.assertIn(says, err)
        with open(mine) as f:
            self.assertEqual(f.read(), "my notes\n")
        status, err = self.tool("make_docs.py", SCRIPT, os.path.join(self.tmp, "p.html"))    # a copy's page, then
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.tool("make_docs.py", SCRIPT, os.path.join(self.tmp, "p.html")), (0, ""))  # over it


    def test_make_names_refuses_in_one_line(self):
        """Bugs: tools/make_names.py writing into a folder that is not there, or onto a folder (tracebacks, after
        the records were read); a missing pyarrow as a ModuleNotFoundError traceback (it is found only where
        `make names` installed it)."""
        cases = [([os.path.join(self.tmp, "nope", "names.txt")], "does not exist"), ([self.tmp], "is a folder")]
        if importlib.util.find_spec("pyarrow") is None:
            cases.append(([os.path.join(self.tmp, "names.txt")], "pyarrow is not installed; run `make names`"))
        for argv, says in cases:
            with self.subTest(argv=argv):
                status, err = self.tool("make_names.py", *argv)
                self.assertEqual(status, 2, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("make_names: error: "), err)
                self.assertIn(says, err)
        self.assertEqual(os.listdir(self.tmp), [])


class TestPlot(InsideCase):
    def test_reads_a_real_log(self):
        log = os.path.join(self.tmp, "run.csv")
        out = self.ok("--steps", 25, "--eval-every", 10, "--samples", 0, "--grad-clip", 2.5, "--log", log)
        run = plot.read_log(log)
        baselines = re.search(r"uniform (\d\.\d{4}), unigram (\d\.\d{4}), bigram (\d\.\d{4})", out).groups()
        self.assertEqual([f"{run['baselines'][b]:.4f}" for b in ("uniform", "unigram", "bigram")], list(baselines))
        self.assertEqual(run["step"], list(range(1, 26)))
        printed = [(int(s), float(v)) for s, v in re.findall(r"^eval +(\d+) \|.*\| val loss (\d\.\d{4})", out, re.M)]
        self.assertEqual([(s, round(v, 4)) for s, v in run["val"]], printed)
        self.assertEqual(len(run["update_ratio"]), 25)
        self.assertEqual(run["grad_clip"], 2.5)

    def test_the_clipped_steps_are_those_whose_gradient_was_clipped(self):
        """Bug: `if row["clipped"]:` (the string '0' is true, so every step would count as clipped)."""
        log = os.path.join(self.tmp, "run.csv")
        self.ok("--steps", 12, "--eval-every", 10, "--samples", 0, "--grad-clip", 1.45, "--log", log)
        with open(log, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
        clipped = [int(r["step"]) for r in rows if r["clipped"] == "1"]
        self.assertTrue(0 < len(clipped) < 12, clipped)                  # both kinds of step occur
        self.assertEqual(plot.read_log(log)["clipped"], clipped)

    def test_bad_logs_are_one_line_and_status_2(self):
        cases = {"missing.csv": (None, "not found"),
                 "foreign.csv": ("a,b\n1,2\n", "is not a microgpt log"),
                 "short.csv": (",".join(workbench.CsvLog.COLUMNS) + "\ntrain" + ",1" * 12 + "\n",
                               "a plot needs at least 2"),
                 "bad.csv": (",".join(workbench.CsvLog.COLUMNS) + "\ntrain,1,x" + ",1" * 10 + "\n", "loss is 'x'")}
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

    def test_a_cut_last_row_and_outputs_it_must_not_write(self):
        """Bugs: a log whose last row a full disk cut short failing with a TypeError traceback; the picture
        written into a folder that is not there (a traceback), through a link planted at its name, or over a
        user's own file at its name without a word."""
        log = os.path.join(self.tmp, "run.csv")
        self.ok("--steps", 12, "--eval-every", 100, "--samples", 0, "--log", log)
        with open(log) as f:
            text = f.read()
        cut = write_file(self.tmp, "cut.csv", text[:text.rindex(",", 0, len(text) - 40)])    # mid-row, mid-column
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            run = plot.read_log(cut)
        self.assertEqual((run["step"], run["val"]), (list(range(1, 13)), []))   # the last row, the evaluation, cut
        self.assertIn("its last row is cut short", err.getvalue())
        mine = write_file(self.tmp, "mine.png", "my own picture\n")
        ours = write_file(self.tmp, "ours.png", b"\x89PNG..." + plot.MARK.encode())
        link = os.path.join(self.tmp, "link.png")
        os.symlink(mine, link)
        for out, says in ((os.path.join(self.tmp, "nope", "x.png"), "does not exist"),
                          (self.tmp, "is a folder"), (mine, "is not a picture this script drew"),
                          (log, "a log it reads")):
            with self.subTest(out=out):
                with self.assertRaisesRegex(plot.LogError, says):
                    plot.check_output(out, [log])
        for out in (ours, link, os.path.join(self.tmp, "new.png")):       # (a link is replaced, never followed)
            plot.check_output(out, [log])

    def test_draws_a_png_of_one_run_or_of_several(self):
        """Bug: the second log of `make plot LOG="a.csv b.csv"` read over the first (one run drawn twice)."""
        self.assertEqual(plot.output_path(["/x/a.csv"]), "/x/a.png")
        self.assertEqual(plot.output_path(["/x/a.csv", "/y/b.csv"]), "/x/a-vs-b.png")
        logs = [os.path.join(self.tmp, name) for name in ("a.csv", "b.csv")]
        for log, lr in zip(logs, (0.01, 0.003)):
            self.ok("--steps", 25, "--eval-every", 10, "--samples", 0, "--log", log, "--lr", lr)
        drawn = []
        with replaced(plot, "draw", lambda runs, out: drawn.append((runs, out))), \
                contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(plot.main(["plot.py", *logs]), 0)
        runs, out = drawn[0]
        self.assertEqual((list(runs), out), (["a", "b"], os.path.join(self.tmp, "a-vs-b.png")))
        self.assertEqual([run["lr"][0] for run in runs.values()], [0.01, 0.003])
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("matplotlib is not installed (make plot installs it in .venv-plot)")
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(plot.main(["plot.py", *logs]), 0)
        with open(os.path.join(self.tmp, "a-vs-b.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
