"""The loss and the optimizer: cross-entropy over a document's positions (the next-token shift), Adam and
the learning-rate schedule, against numbers worked out by hand."""
import math
import random
import unittest

from support import FEW_NAMES, gpt as make_gpt, microgpt, schedule, workbench

Value = microgpt.Value


class TestDocumentLoss(unittest.TestCase):
    def test_position_t_reads_token_t_and_is_scored_on_token_t_plus_1(self):
        """Bugs: targets not shifted (tokens[:n]); the document not cut at block_size; the inputs shifted too."""
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = make_gpt(tokenizer.vocab_size, n_embd=8, n_head=2, block_size=6, seed=2)
        for doc in ("ava", "charlotte"):                    # 4 positions; 9 cut to block_size 6
            tokens = tokenizer.encode(doc)
            losses = [x.data for x in microgpt.document_losses(gpt, tokens)]
            n = min(6, len(tokens) - 1)
            self.assertEqual((len(losses), microgpt.n_predicted(tokens, 6)), (n, n))
            keys, values = [[]], [[]]
            for t in range(n):                              # one position at a time, by hand
                z = [v.data for v in gpt(tokens[t], t, keys, values)]
                want = math.log(sum(math.exp(x) for x in z)) - z[tokens[t + 1]]
                self.assertAlmostEqual(losses[t], want, places=12)

    def test_document_nll_is_the_sum_over_positions_with_no_graph(self):
        """Bugs: the mean instead of the sum (evaluate would weigh a short name like a long one); the count
        off by one; a graph built (evaluation as slow and as big as training)."""
        tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        gpt = make_gpt(tokenizer.vocab_size, n_embd=8, n_head=2, seed=2)
        tokens = tokenizer.encode("emma")
        losses = [x.data for x in microgpt.document_losses(gpt, tokens)]
        engine = workbench.MicrogptEngine(dict(microgpt.DEFAULTS, n_embd=8, n_head=2), tokenizer, random.Random(0))
        engine.gpt = gpt
        with microgpt.Tape() as tape:
            self.assertEqual(engine.nll_parts([tokens]), [(sum(losses), 5)])
        self.assertEqual(tape.nodes, [])

class TestAdam(unittest.TestCase):
    def test_two_steps_by_hand(self):
        # lr 0.01, beta1 0.85, beta2 0.99, eps 1e-8; p starts at 1.0
        p = Value(1.0)
        adam = microgpt.Adam([p])
        # step 1, grad 0.5: m = 0.15*0.5 = 0.075, v = 0.01*0.25 = 0.0025,
        # m_hat = 0.075/0.15 = 0.5, v_hat = 0.0025/0.01 = 0.25, p -= 0.01 * 0.5 / (0.5 + 1e-8)
        p.grad = 0.5
        adam.step(0.01)
        self.assertAlmostEqual(adam.m[0], 0.075, places=15)
        self.assertAlmostEqual(adam.v[0], 0.0025, places=15)
        self.assertAlmostEqual(p.data, 0.9900000002, places=15)
        self.assertEqual(p.grad, 0.0)            # reset after the update
        # step 2, grad -0.25: m = 0.85*0.075 - 0.15*0.25 = 0.02625, v = 0.99*0.0025 + 0.01*0.0625 = 0.0031,
        # m_hat = 0.02625/(1-0.85^2) = 0.0945946, v_hat = 0.0031/(1-0.99^2) = 0.1557789,
        # p -= 0.01 * 0.0945946 / 0.3946890 = 0.0023967 -> 0.9876033
        p.grad = -0.25
        adam.step(0.01)
        self.assertAlmostEqual(adam.m[0], 0.02625, places=15)
        self.assertAlmostEqual(adam.v[0], 0.0031, places=15)
        self.assertAlmostEqual(p.data, 0.9876033094453616, places=12)
        self.assertEqual(adam.t, 2)

    def test_the_first_step_moves_every_parameter_by_about_lr(self):
        # bias correction makes step 1 exactly lr * g/|g| (up to eps), whatever the gradient's size
        params = [Value(0.0) for _ in range(3)]
        for p, g in zip(params, (0.01, -3.0, 250.0)):
            p.grad = g
        microgpt.Adam(params).step(0.01)
        for p, sign in zip(params, (-1, 1, -1)):
            self.assertAlmostEqual(p.data, sign * 0.01, places=7)


class TestCosineSchedule(unittest.TestCase):
    def test_values_by_hand(self):
        lr = 0.01
        self.assertEqual(schedule(0, 100, lr), 0.01)                 # cos 0 = 1
        self.assertAlmostEqual(schedule(50, 100, lr), 0.005, places=15)   # cos(pi/2) = 0
        self.assertAlmostEqual(schedule(25, 100, lr), 0.005 * (1 + math.sqrt(0.5)), places=15)
        self.assertAlmostEqual(schedule(75, 100, lr), 0.005 * (1 - math.sqrt(0.5)), places=15)
        self.assertAlmostEqual(schedule(100, 100, lr), 0.0, places=15)    # cos pi = -1


    def test_warmup_then_cosine_to_min_lr_by_hand(self):
        f = lambda step: microgpt.lr_schedule(step, 100, 0.01, 10, 0.001)
        self.assertAlmostEqual(f(0), 0.001, places=15)        # 0.01 * 1/10
        self.assertAlmostEqual(f(4), 0.005, places=15)        # 0.01 * 5/10
        self.assertAlmostEqual(f(9), 0.01, places=15)         # warmup done
        self.assertAlmostEqual(f(10), 0.01, places=15)        # cosine starts at the peak
        self.assertAlmostEqual(f(55), 0.0055, places=15)      # halfway through 90 steps: (0.01 + 0.001) / 2
        self.assertAlmostEqual(f(100), 0.001, places=15)      # ends at min_lr

    def test_a_warmup_as_long_as_the_run(self):
        """Bug: max(1, num_steps - warmup_steps) dropped: the step after the run (what --explain traces on a
        finished model) would divide by zero when the warmup is the whole run."""
        self.assertEqual([microgpt.lr_schedule(s, 4, 0.01, 4, 0.0) for s in range(4)], [0.0025, 0.005, 0.0075, 0.01])
        self.assertEqual(microgpt.lr_schedule(4, 4, 0.01, 4, 0.0), 0.01)      # cos 0 at the end of no decay
        self.assertEqual(microgpt.lr_schedule(0, 0, 0.01, 0, 0.0), 0.01)      # a run of no steps


if __name__ == "__main__":
    unittest.main()
