"""The GPT: parameter count, whole-model gradients, the loss at initialisation, causality."""
import math
import random
import unittest

from support import NAMES, microgpt, tiny_gpt


class TestShape(unittest.TestCase):
    def test_default_model_has_4064_parameters(self):
        gpt = microgpt.GPT(27)
        self.assertEqual(len(gpt.params), 4064)
        self.assertEqual(len(gpt.state_dict["layer0.mlp_fc1"]), 64)
        self.assertEqual(len(gpt.state_dict["layer0.mlp_fc1"][0]), 16)

    def test_init_is_gaussian_with_std_008(self):
        gpt = microgpt.GPT(27, n_embd=32, rng=random.Random(1))
        xs = [p.data for p in gpt.params]
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        self.assertAlmostEqual(mean, 0.0, delta=0.002)
        self.assertAlmostEqual(std, 0.08, delta=0.002)

    def test_n_embd_must_divide_by_n_head(self):
        with self.assertRaises(ValueError):
            microgpt.GPT(27, n_embd=10, n_head=4)


class TestWholeModelGradient(unittest.TestCase):
    def test_every_parameter_matches_finite_differences(self):
        gpt = tiny_gpt()                       # 2 layers, n_embd 8, 2 heads, block 4, 5 tokens
        tokens = [4, 1, 3, 0, 2, 4]             # longer than block_size: the last position is cut
        loss = microgpt.document_loss(gpt, tokens)
        loss.backward()
        h = 1e-5
        for p in gpt.params:
            x = p.data
            p.data = x + h
            up = microgpt.document_loss(gpt, tokens).data
            p.data = x - h
            down = microgpt.document_loss(gpt, tokens).data
            p.data = x
            numeric = (up - down) / (2 * h)
            self.assertTrue(math.isclose(p.grad, numeric, rel_tol=1e-4, abs_tol=1e-8),
                            f"analytic {p.grad} vs numeric {numeric}")
        self.assertEqual(len(gpt.params), 5 * 8 * 2 + 4 * 8 + 2 * (4 * 64 + 2 * 32 * 8))


class TestInitialLoss(unittest.TestCase):
    def test_loss_at_init_on_names_is_near_ln_27(self):
        docs = microgpt.load_docs(NAMES)
        rng = random.Random(42)
        rng.shuffle(docs)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        self.assertEqual(tokenizer.vocab_size, 27)
        gpt = microgpt.GPT(tokenizer.vocab_size, rng=rng)
        losses = [microgpt.document_loss(gpt, tokenizer.encode(doc)).data for doc in docs[:40]]
        mean = sum(losses) / len(losses)
        self.assertLess(abs(mean - math.log(27)), 0.1, f"mean loss at init {mean}")


class TestCausality(unittest.TestCase):
    def logits_per_position(self, gpt, tokens):
        keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
        return [[z.data for z in gpt(t, pos, keys, values)] for pos, t in enumerate(tokens)]

    def test_a_later_token_does_not_change_earlier_logits(self):
        gpt = tiny_gpt()
        a = self.logits_per_position(gpt, [4, 1, 2, 3])
        b = self.logits_per_position(gpt, [4, 1, 2, 0])   # only the last token differs
        self.assertEqual(a[:3], b[:3])                     # exactly equal, bit for bit
        self.assertNotEqual(a[3], b[3])


class TestTokenizer(unittest.TestCase):
    def test_encode_wraps_in_bos_and_decode_inverts(self):
        tok = microgpt.Tokenizer.from_docs(["emma", "ava"])
        self.assertEqual(tok.chars, ["a", "e", "m", "v"])
        self.assertEqual((tok.BOS, tok.vocab_size), (4, 5))
        self.assertEqual(tok.encode("emma"), [4, 1, 2, 2, 0, 4])
        self.assertEqual(tok.decode([1, 2, 2, 0]), "emma")


if __name__ == "__main__":
    unittest.main()
