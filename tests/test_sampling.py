"""Sampling: the distribution each token is drawn from (temperature, top-k), the KV lists of several layers,
a prefix, no graph built, samples while training that change nothing else, the random generator a saved
model samples with, and the count of names that are new."""
import json
import math
import os
import random
import re
import unittest

from support import (FEW_NAMES, TIMES, FewNamesCase, document_loss, gpt as make_gpt, microgpt, replaced, sample,
                     split_of, workbench)

TOKENIZER = microgpt.Tokenizer.from_docs(FEW_NAMES)


def samples_of(text):
    return re.findall(r"^sample +\d+: (.*)$", text, re.M)


class RecordingRandom:
    """Stands in for random.Random in sample(): records the weights of every draw and draws the given
    tokens in turn, so a test decides the path and sees the distribution at every step of it."""

    def __init__(self, *tokens):
        self.tokens, self.draws = list(tokens), []

    def choices(self, population, weights):
        self.draws.append(list(weights))
        return [self.tokens[len(self.draws) - 1]]


class TestTheDistributionSampledFrom(unittest.TestCase):
    def setUp(self):
        self.gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=4)
        with microgpt.no_grad():
            self.logits = [z.data for z in self.gpt(TOKENIZER.BOS, 0, [[]], [[]])]

    def drawn_from(self, temperature, top_k=None):
        rng = RecordingRandom(TOKENIZER.BOS)                    # BOS ends the document after one draw
        sample(self.gpt, TOKENIZER, rng, temperature, top_k)
        self.assertEqual(len(rng.draws), 1)
        return rng.draws[0]

    def test_softmax_of_logits_over_temperature(self):
        """Bugs: softmax_data(zs) without the temperature; logits multiplied by it instead of divided."""
        for temperature in (0.5, 1.0, 2.0):
            exps = [math.exp(z / temperature) for z in self.logits]         # no max-shift: small logits
            want = [e / sum(exps) for e in exps]
            for g, w in zip(self.drawn_from(temperature), want):
                self.assertAlmostEqual(g, w, places=14)
        self.assertGreater(max(self.drawn_from(0.5)), max(self.drawn_from(2.0)))

    def test_top_k_renormalises_over_the_k_largest_logits(self):
        """Bug: `z > kth_largest` (keeps k - 1 tokens)."""
        top3 = sorted(range(len(self.logits)), key=lambda i: -self.logits[i])[:3]
        exps = {i: math.exp(self.logits[i] / 0.7) for i in top3}
        want = [exps[i] / sum(exps.values()) if i in exps else 0.0 for i in range(len(self.logits))]
        for g, w in zip(self.drawn_from(0.7, top_k=3), want):
            self.assertAlmostEqual(g, w, places=14)

    def test_top_k_1_is_the_most_likely_token_every_time(self):
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=2)
        greedy, keys, values, token = [], [[]], [[]], TOKENIZER.BOS
        for pos in range(gpt.block_size):
            logits = [z.data for z in gpt(token, pos, keys, values)]
            token = logits.index(max(logits))
            if token == TOKENIZER.BOS:
                break
            greedy.append(token)
        for seed in range(3):
            self.assertEqual(sample(gpt, TOKENIZER, random.Random(seed), 1.0, top_k=1), TOKENIZER.decode(greedy))

    def test_top_k_never_samples_outside_the_k_most_likely(self):
        tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba", "cd"])
        gpt = make_gpt(tokenizer.vocab_size, n_embd=4, n_head=1, block_size=2)
        logits = [z.data for z in gpt(tokenizer.BOS, 0, [[]], [[]])]
        top2 = sorted(range(len(logits)), key=lambda i: -logits[i])[:2]
        rng = random.Random(0)
        firsts = {sample(gpt, tokenizer, rng, 5.0, top_k=2)[:1] for _ in range(200)}
        self.assertEqual(firsts, {"" if i == tokenizer.BOS else tokenizer.chars[i] for i in top2})

    def test_sampling_with_three_layers_draws_from_the_distributions_computed_from_scratch(self):
        """Bugs: one KV list for all layers in sample() (`[[]] * n_layer`, or keys[0] for every layer)."""
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, n_layer=3, seed=6)
        path = [TOKENIZER.ids[ch] for ch in "isab"] + [TOKENIZER.BOS]
        rng = RecordingRandom(*path)
        self.assertEqual(sample(gpt, TOKENIZER, rng, 1.0), "isab")
        tokens = [TOKENIZER.BOS] + path[:-1]
        for pos, drawn in enumerate(rng.draws):               # position pos, recomputed from nothing
            keys, values = [[] for _ in range(3)], [[] for _ in range(3)]
            with microgpt.no_grad():
                for p in range(pos + 1):
                    logits = [z.data for z in gpt(tokens[p], p, keys, values)]
            exps = [math.exp(z) for z in logits]
            for g, w in zip(drawn, [e / sum(exps) for e in exps]):
                self.assertAlmostEqual(g, w, places=14)
        self.assertEqual(len(rng.draws), 5)

    def test_a_prefix_is_read_then_continued(self):
        """Bug: the prefix's tokens drawn over (or skipped) instead of read; a prefix longer than the draws."""
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=3)
        rng = RecordingRandom(TOKENIZER.ids["n"], TOKENIZER.BOS)
        self.assertEqual(sample(gpt, TOKENIZER, rng, 1.0, prefix="el"), "eln")
        keys, values = [[]], [[]]
        with microgpt.no_grad():
            for p, token in enumerate([TOKENIZER.BOS, TOKENIZER.ids["e"], TOKENIZER.ids["l"]]):
                logits = [z.data for z in gpt(token, p, keys, values)]
        exps = [math.exp(z) for z in logits]
        for g, w in zip(rng.draws[0], [e / sum(exps) for e in exps]):     # the first draw follows "el"
            self.assertAlmostEqual(g, w, places=14)


class TestNoGraph(unittest.TestCase):
    def setUp(self):
        self.gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, n_layer=2, seed=1)
        self.outputs = []
        original = microgpt.GPT.__call__

        def recording_call(gpt, *args):
            logits = original(gpt, *args)
            self.outputs.extend(logits)
            return logits

        microgpt.GPT.__call__ = recording_call
        self.addCleanup(setattr, microgpt.GPT, "__call__", original)

    def assert_no_graph(self):
        self.assertGreater(len(self.outputs), self.gpt.vocab_size)      # several positions were computed
        self.assertEqual([z for z in self.outputs if z._groups], [])    # no Value remembers its inputs

    def test_sampling_builds_no_graph(self):
        """Bug: the `with no_grad():` in sample() removed."""
        for seed in range(3):
            sample(self.gpt, TOKENIZER, random.Random(seed))
        self.assert_no_graph()

    def test_evaluation_builds_no_graph(self):
        """Bug: the `with no_grad():` in evaluate() removed."""
        microgpt.evaluate(self.gpt, TOKENIZER, ["emma", "isabella"])
        self.assert_no_graph()

    def test_training_does_build_one(self):
        """The check above can fail: the same recording sees a graph while training."""
        document_loss(self.gpt, TOKENIZER.encode("emma"))
        self.assertTrue(all(z._groups for z in self.outputs))


class SamplingCase(FewNamesCase, unittest.TestCase):
    SMALL = ["--n-embd", 8, "--n-head", 2, "--eval-every", 10]


class TestInTheRun(SamplingCase):
    def test_prefix_completes_names_that_start_with_it(self):
        samples = samples_of(self.ok("--steps", 5, "--samples", 8, "--prefix", "el"))
        self.assertEqual(len(samples), 8)
        self.assertTrue(all(s.startswith("el") for s in samples), samples)

    def test_reports_how_many_samples_are_new(self):
        out = self.ok("--steps", 5, "--samples", 10)
        new = re.search(r"^new: (\d+) of 10 samples are not training documents$", out, re.M)
        train_docs = set(split_of(FEW_NAMES, 42)[0])
        self.assertEqual(int(new.group(1)), sum(s not in train_docs for s in samples_of(out)))

    def test_a_validation_name_counts_as_new(self):
        """Bug: known = set(r.docs) (validation names would count as seen)."""
        train_docs, val_docs = split_of(FEW_NAMES, 42)
        texts = iter([val_docs[0], train_docs[0], "zzyzx"])
        with replaced(microgpt, "sample", lambda *a, **k: next(texts)):
            out = self.ok("--steps", 1, "--samples", 3, "--eval-samples", 0)
        self.assertIn("new: 2 of 3 samples are not training documents", out)


class TestSamplesWhileTraining(SamplingCase):
    RUN = ["--steps", 30, "--samples", 4, "--temperature", 0.9]

    def test_they_change_nothing_else(self):
        """Bug: drawing them from the run's own generator (rng) shifts the final samples and the state."""
        outputs, states = [], []
        for n in (0, 5):
            path = os.path.join(self.tmp, f"run{n}.json")
            out = self.ok(*self.RUN, "--eval-samples", n, "--save", path)
            outputs.append([re.sub(TIMES, "<time>", line).replace(path, "<path>").replace(path[:-5], "<path>")
                            for line in out.splitlines()])
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


class TestAfterLoad(SamplingCase):
    def test_load_samples_without_training_and_repeats_the_runs_samples(self):
        path = os.path.join(self.tmp, "model.json")
        trained = self.ok("--steps", 15, "--samples", 5, "--save", path)
        for extra in ([], ["--steps", 0]):
            loaded = self.ok("--load", path, "--samples", 5, *extra)
            self.assertNotRegex(loaded, r"(?m)^step ")                # no training step
            self.assertIn(f"loaded {path} at step 15", loaded)
            self.assertEqual(samples_of(loaded), samples_of(trained))

    def test_samples_come_from_the_checkpoints_random_state(self):
        """Bugs: --load drawing from a generator seeded afresh (the state restored, then ignored), or
        restoring the weights but not the generator."""
        path = os.path.join(self.tmp, "model.json")
        self.ok("--steps", 15, "--samples", 0, "--save", path)
        state = workbench.load_checkpoint(path)
        rng = random.Random()
        rng.setstate(state["rng_state"])
        tokenizer = microgpt.Tokenizer(state["chars"])
        engine = workbench.MicrogptEngine(state["settings"], tokenizer, random.Random(0), state)
        want = [engine.sample(rng, 0.5, None, "") for _ in range(5)]
        self.assertEqual(samples_of(self.ok("--load", path, "--samples", 5)), want)
        with open(path) as f:
            raw = json.load(f)
        raw["rng_state"][1][-1] = (raw["rng_state"][1][-1] + 7) % 624     # the generator moved on 7 numbers
        with open(path, "w") as f:
            json.dump(raw, f)
        self.assertNotEqual(samples_of(self.ok("--load", path, "--samples", 5)), want)


if __name__ == "__main__":
    unittest.main()
