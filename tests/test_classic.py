"""The classic engines of bench/classic.py, the bench's baseline: the same model, the same numbers."""
import os
import random
import re
import sys
import unittest

from support import ROOT, microgpt

sys.path.insert(0, os.path.join(ROOT, "bench"))
import classic  # noqa: E402  (bench/ is on the path only now)


def microgpt_loss_and_grads(gpt, tokens):
    loss = microgpt.document_loss(gpt, tokens)
    loss.backward()
    grads = [p.grad for p in gpt.params]
    for p in gpt.params:
        p.grad = 0.0
    return loss.data, grads


class TestClassicEngines(unittest.TestCase):
    def assert_close(self, got, want, rel):
        scale = max(abs(w) for w in want)
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertLessEqual(abs(g - w), rel * scale, f"entry {i}: {g!r} vs {w!r}")

    def test_same_loss_and_every_gradient_to_1e_10(self):
        for gpt in (microgpt.GPT(27, rng=random.Random(3)),
                    microgpt.GPT(11, n_embd=8, n_head=2, n_layer=3, block_size=6, rng=random.Random(9))):
            tokens = [gpt.vocab_size - 1, 3, 1, 4, 1, 5, 9, 2, 6, gpt.vocab_size - 1]
            loss, grads = microgpt_loss_and_grads(gpt, tokens)
            for name, value in classic.ENGINES.items():
                with self.subTest(engine=name, n_layer=gpt.n_layer):
                    model = classic.ClassicGPT.from_microgpt(gpt, value)
                    classic_loss = classic.document_loss(model, tokens)
                    classic_loss.backward()
                    self.assertLessEqual(abs(classic_loss.data - loss), 1e-10 * loss)
                    self.assert_close([p.grad for p in model.params], grads, 1e-10)

    def test_twenty_training_steps_to_1e_9(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = microgpt.GPT(tokenizer.vocab_size, rng=random.Random(42))
        model = classic.ClassicGPT.from_microgpt(gpt)
        adam, classic_adam = microgpt.Adam(gpt.params), classic.Adam(model.params)
        for i in range(20):
            tokens = tokenizer.encode(docs[i % len(docs)])
            lr = microgpt.lr_schedule(i, 20, 0.01)
            loss = microgpt.train_step(gpt, adam, [tokens], lr)[0]
            self.assertLessEqual(abs(classic.train_step(model, classic_adam, tokens, lr) - loss), 1e-9)
        self.assert_close([p.data for p in model.params], [p.data for p in gpt.params], 1e-9)

    def test_the_classic_engine_shares_nothing_with_microgpt(self):
        """The ratio the bench prints must not be blind to microgpt's engine (the old atomic reference was)."""
        with open(os.path.join(ROOT, "bench", "classic.py")) as f:
            source = f.read()
        self.assertEqual(re.findall(r"^\s*(?:import|from)\s+(\w+)", source, re.M), ["contextlib", "math", "sys"])


if __name__ == "__main__":
    unittest.main()
