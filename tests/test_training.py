"""Training: a step (the mean over a batch's tokens, gradient accumulation, clipping, a loss that stops being
finite), the walk through the documents, the validation split and its loss, and the run wired end to end:
which documents train and which validate, what the seed changes, the schedule's edges, the default run."""
import math
import os
import random
import re
import signal
import unittest

from support import (document_loss, FEW_NAMES, ROOT, TIMES, FewNamesCase, gpt as make_gpt, microgpt, run_main, slow,
                     spy, split_of, train, workbench)
import reference.atomic as ref  # (support puts the project on the path)

LOSS = re.compile(r"^step +\d+ / +\d+ \| loss (\d+\.\d+)", re.M)
TOKENIZER = microgpt.Tokenizer.from_docs(FEW_NAMES)


def losses_of(text):
    return [float(x) for x in LOSS.findall(text)]


def captured_step(gpt):
    """An Adam whose step records the gradients it would use instead of taking the step."""
    adam = microgpt.Adam(gpt.params)
    seen = {}
    adam.step = lambda lr: seen.update(grads=[p.grad for p in gpt.params], norm=microgpt.grad_norm(gpt.params))
    return adam, seen


class TestStep(unittest.TestCase):
    def test_a_batch_averages_over_every_token_and_accumulates_the_gradient_of_the_mean(self):
        """Bugs: each document's loss divided by its own length (a mean of means); the sum, not the mean."""
        batch = [TOKENIZER.encode(d) for d in ("ava", "charlotte", "mia")]       # 4 + 8 + 4 tokens
        results = []
        for accumulate in (True, False):
            gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=1)
            adam, seen = captured_step(gpt)
            if accumulate:
                loss, _ = microgpt.train_step(gpt, adam, batch, 0.01, None)
            else:   # one graph for the whole batch: the mean of all 16 position losses
                losses = [x for tokens in batch for x in microgpt.document_losses(gpt, tokens)]
                mean = microgpt.total(losses) / len(losses)
                mean.backward()
                loss = mean.data
                adam.step(0.01)
            results.append((loss, seen["grads"]))
        (loss_a, grads_a), (loss_b, grads_b) = results
        self.assertAlmostEqual(loss_a, loss_b, places=13)
        for a, b in zip(grads_a, grads_b):
            self.assertAlmostEqual(a, b, places=13)

    def test_grad_clip_scales_the_gradient_to_the_given_norm_and_only_above_it(self):
        """Bugs: the norm reported after clipping; clipping to clip / (norm + eps); clipping below the level."""
        tokens = [TOKENIZER.encode("emma")]
        steps = {}
        for clip in (None, 0.1, 100.0):
            gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=1)
            adam, seen = captured_step(gpt)
            _, norm = microgpt.train_step(gpt, adam, tokens, 0.01, clip)
            steps[clip] = (norm, seen)
        twin = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=1)
        document_loss(twin, tokens[0]).backward()
        norm, unclipped = steps[None]
        self.assertAlmostEqual(norm, microgpt.grad_norm(twin.params), places=14)
        self.assertEqual(norm, unclipped["norm"])
        self.assertGreater(norm, 0.2)                                       # so a clip of 0.1 cuts it
        self.assertEqual(steps[0.1][0], norm)                               # reported: before clipping
        self.assertEqual(steps[0.1][1]["grads"], [g * (0.1 / norm) for g in unclipped["grads"]])   # exactly
        self.assertAlmostEqual(steps[0.1][1]["norm"], 0.1, places=15)
        self.assertEqual(steps[100.0][1]["grads"], unclipped["grads"])      # above the norm: untouched

    def test_a_non_finite_loss_raises_before_any_parameter_changes(self):
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, seed=1)
        gpt.state_dict["wte"][0][0].data = math.inf
        before = [p.data for p in gpt.params]
        with self.assertRaises(FloatingPointError):
            microgpt.train_step(gpt, microgpt.Adam(gpt.params), [TOKENIZER.encode("ava")], 0.01, None)
        self.assertEqual([p.data for p in gpt.params], before)
        self.assertEqual([p.grad for p in gpt.params if p.grad], [])     # and no gradient left behind

    def test_a_short_run_on_a_few_names_lowers_the_loss_well_below_the_start(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = make_gpt(tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)

        def mean_loss():
            return sum(document_loss(gpt, tokenizer.encode(d)).data for d in docs) / len(docs)

        before = mean_loss()
        train(gpt, tokenizer, docs, 120, 0.02)
        after = mean_loss()
        self.assertLess(abs(before - math.log(16)), 0.15)     # ln(16): these 15 characters + BOS, untrained
        self.assertLess(after, 0.5 * before, f"loss {before:.3f} -> {after:.3f}")


class TestBatches(unittest.TestCase):
    def test_batches_are_consecutive_non_overlapping_documents_that_wrap_around(self):
        """Bugs: `first = step` (overlapping batches); `docs[first + j]` without the wrap (IndexError)."""
        docs = ["ab", "bc", "ca", "abc", "cab"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = make_gpt(tokenizer.vocab_size, n_embd=4, n_head=1)
        batches = []
        train(gpt, tokenizer, docs, 4, batch_size=3,
              on_step=lambda step, loss, lr, norm, batch: batches.append([tokenizer.decode(t[1:-1]) for t in batch]))
        self.assertEqual(batches, [["ab", "bc", "ca"], ["abc", "cab", "ab"], ["bc", "ca", "abc"],
                                   ["cab", "ab", "bc"]])

    def test_on_step_stops_training_when_it_answers_true(self):
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=4, n_head=1)
        losses = train(gpt, TOKENIZER, FEW_NAMES, 10, on_step=lambda step, *a: step == 2)
        self.assertEqual(len(losses), 3)


class TestValidation(unittest.TestCase):
    def test_split_is_fixed_by_the_seed_and_never_trained_on(self):
        docs = list(FEW_NAMES)
        random.Random(3).shuffle(docs)
        train_docs, val_docs = microgpt.split_docs(docs, 0.1)
        self.assertEqual((len(train_docs), len(val_docs)), (27, 3))
        self.assertEqual(val_docs, docs[:3])
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2)
        seen = []
        train(gpt, TOKENIZER, train_docs, 60, batch_size=2,
              on_step=lambda step, loss, lr, norm, batch: seen.extend(TOKENIZER.decode(t[1:-1]) for t in batch))
        self.assertEqual(set(seen), set(train_docs))                # every training doc, cycled
        self.assertFalse(set(seen) & set(val_docs))
        self.assertEqual(microgpt.split_docs(["a", "b"], 0.75), ([], ["a", "b"]))    # (the workbench refuses it)

    def test_evaluate_is_the_mean_per_token_and_builds_no_graph(self):
        """Bug: the mean of the documents' means (a short name would weigh as much as a long one)."""
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, block_size=8)
        docs = ["ava", "charlotte"]                       # 4 and 8 predicted tokens (cut at block 8)
        loss, n = microgpt.evaluate(gpt, TOKENIZER, docs)
        by_hand = sum(document_loss(gpt, TOKENIZER.encode(d)).data * k for d, k in zip(docs, (4, 8))) / 12
        self.assertEqual(n, 12)
        self.assertAlmostEqual(loss, by_hand, places=12)
        self.assertTrue(all(p.grad == 0.0 for p in gpt.params))

    def test_evaluation_with_three_layers_equals_the_atomic_reference(self):
        """Bugs: evaluate() averaging per document instead of per token; KV lists shared by layers."""
        gpt = make_gpt(TOKENIZER.vocab_size, n_embd=8, n_head=2, n_layer=3, block_size=8, seed=6)
        docs = ["ava", "charlotte", "mia"]                      # 4 + 8 (cut at block 8) + 4 predicted tokens
        loss, n = microgpt.evaluate(gpt, TOKENIZER, docs)
        want = sum(ref.document_loss(gpt, TOKENIZER.encode(d)).data * k for d, k in zip(docs, (4, 8, 4))) / 16
        self.assertEqual(n, 16)
        self.assertAlmostEqual(loss, want, places=12)

    def test_perplexity(self):
        self.assertEqual(workbench.perplexity(math.log(27)), math.exp(math.log(27)))
        self.assertEqual(workbench.perplexity(800.0), math.inf)            # past float's range: inf, no error


class TestScored(unittest.TestCase):
    def test_a_document_cut_to_block_size_plus_1_characters_has_the_same_positions_and_targets(self):
        """The workbench cuts documents to block_size + 1 characters before encoding them (a document of 200 MB
        is not encoded whole each step). Bugs: cut one character short (a --text window's last target lost);
        one long."""
        block_size = 5
        for tokenizer in (microgpt.Tokenizer("abc"), workbench.text.TextTokenizer("abc")):
            for n in range(10):
                doc = ("abc" * 4)[:n]
                cut = workbench.scored([doc], block_size)[0]
                full, short = tokenizer.encode(doc), tokenizer.encode(cut)
                k = microgpt.n_predicted(full, block_size)
                self.assertEqual((microgpt.n_predicted(short, block_size), short[:k + 1]), (k, full[:k + 1]))
                self.assertEqual(cut, doc[:min(n, block_size + 1)])


class WiringCase(FewNamesCase, unittest.TestCase):
    def trained_and_evaluated(self, *argv):
        """(documents of every training step in order, documents of every evaluation) of a run."""
        trained, evaluated = [], []
        decode = lambda tokens: TOKENIZER.decode(tokens[1:-1])
        with spy(microgpt, "train_step", lambda gpt, opt, batch, *a: trained.extend(map(decode, batch))), \
                spy(workbench.MicrogptEngine, "evaluate", lambda engine, docs, *a, **k: evaluated.append(list(docs))):
            self.ok(*argv)
        return trained, evaluated


class TestWhichDocumentsTrainAndValidate(WiringCase):
    def test_run_trains_on_the_training_split_in_order_and_evaluates_on_the_validation_split(self):
        """Bugs: training on r.docs instead of r.train_docs; evaluating r.train_docs; --eval-docs ignored;
        a batch that starts at `step` instead of `step * batch_size`."""
        train_docs, val_docs = split_of(FEW_NAMES, 42)
        trained, evaluated = self.trained_and_evaluated("--steps", 20, "--batch-size", 2, "--eval-every", 10,
                                                        "--eval-docs", 2, "--samples", 0)
        self.assertEqual(trained, [train_docs[i % len(train_docs)] for i in range(40)])     # 40 > 27: it wraps
        self.assertEqual(evaluated, [val_docs[:2], val_docs[:2]])                         # at steps 10 and 20
        self.assertFalse(set(trained) & set(val_docs))

    def test_eval_docs_0_means_every_validation_document(self):
        """Bug: val_docs[:0], an empty evaluation, for --eval-docs 0 (or no evaluation at all)."""
        data = os.path.join(self.tmp, "more.txt")
        with open(data, "w") as f:
            f.write("\n".join(FEW_NAMES * 2) + "\n")           # 60 documents: 6 validation, more than 2
        _, val_docs = split_of(FEW_NAMES * 2, 42)
        _, evaluated = self.trained_and_evaluated("--data", data, "--steps", 4, "--eval-every", 2, "--eval-docs", 0,
                                                  "--samples", 0)
        self.assertEqual(evaluated, [val_docs, val_docs])
        _, evaluated = self.trained_and_evaluated("--data", data, "--steps", 2, "--eval-docs", 4, "--samples", 0)
        self.assertEqual(evaluated, [val_docs[:4]])


class TestSeed(WiringCase):
    def initial_weights(self, seed):
        path = os.path.join(self.tmp, f"init{seed}.json")
        self.ok("--steps", 0, "--samples", 0, "--seed", seed, "--save", path)
        return workbench.load_checkpoint(path)["params"]

    def test_seed_changes_the_data_order_and_the_initial_weights_and_repeats_the_run(self):
        """Bugs: random.Random(DEFAULTS["seed"]) in prepare(); the GPT's weights drawn from a generator of
        their own; shuffling with a generator of its own."""
        order = {seed: self.trained_and_evaluated("--steps", 6, "--seed", seed, "--samples", 0)[0] for seed in (1, 2)}
        self.assertEqual(order[1], split_of(FEW_NAMES, 1)[0][:6])
        self.assertEqual(order[2], split_of(FEW_NAMES, 2)[0][:6])
        self.assertNotEqual(order[1], order[2])
        self.assertNotEqual(self.initial_weights(1), self.initial_weights(2))
        self.assertEqual(self.initial_weights(1), self.initial_weights(1))

    def test_one_seed_gives_the_same_losses_and_names(self):
        """Bug: a seed that is read but not used (another seed would then print the same run)."""
        args = ["--steps", 15, "--samples", 5, "--seed", 7]
        blank = lambda text: re.sub(TIMES, "<time>", text)
        first, second = blank(self.ok(*args)), blank(self.ok(*args))
        self.assertEqual(first, second)
        self.assertEqual(len(losses_of(first)), 15)
        other = blank(self.ok("--steps", 15, "--samples", 5, "--seed", 8))
        self.assertNotEqual(losses_of(first), losses_of(other))
        samples = lambda text: re.findall(r"^sample .*$", text, re.M)
        self.assertNotEqual(samples(first), samples(other))


class TestScheduleEdges(WiringCase):
    def test_a_warmup_as_long_as_the_run_and_a_run_of_no_steps(self):
        """Bugs: warmup_steps == steps refused, or dividing by zero at the step after it; --steps 0 failing."""
        out = self.ok("--steps", 4, "--warmup-steps", 4, "--samples", 0, "--eval-samples", 0)
        self.assertEqual(re.findall(r"\| lr (\S+) \|", out), ["0.00250", "0.00500", "0.00750", "0.01000"])
        path = os.path.join(self.tmp, "run.json")
        self.ok("--steps", 4, "--warmup-steps", 4, "--samples", 0, "--save", path)
        self.assertIn("learning rate 0.01000", self.ok("--load", path, "--explain", "ava"))
        out = self.ok("--steps", 0, "--samples", 2)
        self.assertEqual(losses_of(out), [])
        self.assertNotIn("trained", out)
        self.assertEqual(len(re.findall(r"^sample +\d+: ", out, re.M)), 2)


class TestAfterANonFiniteLoss(WiringCase):
    def test_gradients_are_zero_and_the_ctrl_c_handler_is_restored(self):
        """Bugs: the gradient reset before `raise FloatingPointError` removed; the SIGINT handler not put back."""
        models = []

        def handler(signum, frame):
            pass

        previous = signal.signal(signal.SIGINT, handler)
        try:
            with spy(microgpt, "train_step", lambda gpt, *a: models.append(gpt)):
                status, out, err = run_main("--data", self.data, *self.SMALL, "--lr", 1e300, "--steps", 10)
            self.assertIs(signal.getsignal(signal.SIGINT), handler)
        finally:
            signal.signal(signal.SIGINT, previous)
        self.assertEqual(status, 2)
        self.assertIn("training stopped at step 2", err)
        self.assertEqual(len(models), 2)
        self.assertEqual([p.grad for p in models[0].params if p.grad != 0.0], [])


class TestTheDefaultRun(unittest.TestCase):
    @slow
    def test_line_for_line_as_recorded(self):
        """The default run, `python3 microgpt.py`, prints what tests/data/default_run.txt holds, times blanked:
        every loss, evaluation, sample and the curve, as the one-file program printed them before the split
        into microgpt.py and workbench.py (since then, only the baselines' lines were added). Any change to
        the algorithm, the data's order, the first weights or what is printed shows here."""
        lines = []
        status = workbench.run(workbench.parse_args([]), log=lines.append)
        self.assertEqual(status, 0)
        with open(os.path.join(ROOT, "tests", "data", "default_run.txt"), encoding="utf-8") as f:
            want = f.read().splitlines()
        self.assertEqual([re.sub(TIMES, "<t>", line) for line in lines], want)
        first = next(line for line in lines if line.startswith("step "))
        self.assertTrue(first.startswith("step    1 /  500 | loss 3.1414 | lr 0.01000"))      # as recorded


if __name__ == "__main__":
    unittest.main()
