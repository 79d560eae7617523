"""The GPT: its parameters (names, shapes, count, first weights), every gradient of the whole model against
finite differences, the atomic reference, the classic engines and PyTorch, the loss at initialisation,
causality and the tokenizer."""
import math
import os
import random
import re
import unittest

from support import (document_loss, NAMES, ROOT, assert_all_close, gpt as make_gpt, microgpt, schedule, tiny_gpt,
                     workbench)
import reference.atomic as ref  # (support puts the project on the path)
from reference import classic


class TestTheWeightsReadOncePerDocument(unittest.TestCase):
    def test_a_document_reads_the_weights_as_they_are_and_lets_them_go(self):
        """Bugs: the floats read at position 0 kept after the document (`gpt.w_data = None` left out: memory
        held through backward and Adam, ~10% slower for the wide model); read anywhere but at position 0 of
        each document (a step's update unseen by the next document)."""
        tokenizer = microgpt.Tokenizer.from_docs(["emma", "ava"])
        trained, fresh = make_gpt(tokenizer.vocab_size, seed=4), make_gpt(tokenizer.vocab_size, seed=9)
        adam = microgpt.Adam(trained.params)
        for doc in ("emma", "ava", "emma"):
            microgpt.train_step(trained, adam, [tokenizer.encode(doc)], 0.01, None)
            self.assertIsNone(trained.w_data)
            for p, q in zip(fresh.params, trained.params):
                p.data = q.data
            losses = lambda gpt: [x.data for x in microgpt.document_losses(gpt, tokenizer.encode("ava"))]
            self.assertEqual(losses(trained), losses(fresh))
        microgpt.sample(trained, tokenizer, random.Random(0), 0.5, None, "")
        self.assertIsNone(trained.w_data)


class TestShape(unittest.TestCase):
    def test_default_model_has_4192_parameters(self):
        gpt = make_gpt(27)
        self.assertEqual(len(gpt.params), 4192)              # 27*16 + 16*16 + 27*16 + 4*16*16 + 2*64*16
        self.assertEqual(len(gpt.state_dict["layer0.mlp_fc1"]), 64)
        self.assertEqual(len(gpt.state_dict["layer0.mlp_fc1"][0]), 16)

    def test_init_is_gaussian_with_std_008(self):
        gpt = make_gpt(27, n_embd=32, seed=1)
        xs = [p.data for p in gpt.params]
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        self.assertAlmostEqual(mean, 0.0, delta=0.002)
        self.assertAlmostEqual(std, 0.08, delta=0.002)

    def test_n_embd_must_divide_by_n_head(self):
        """Bug: head_dim's check removed (heads of n_embd // n_head would leave part of every vector unread)."""
        with self.assertRaisesRegex(ValueError, "n_embd 10 is not divisible by n_head 4"):
            make_gpt(27, n_embd=10, n_head=4)
        self.assertEqual(make_gpt(27, n_embd=16, n_head=4).head_dim, 4)

    def test_the_model_is_built_from_parameter_shapes_and_counted_by_arithmetic(self):
        """Bugs: a matrix of GPT that parameter_shapes does not describe (checkpoints are checked against it);
        count_parameters drifting from the shapes (the memory check and the checkpoint check use it)."""
        for vocab_size, n_embd, n_head, n_layer, block_size in ((27, 16, 4, 1, 8), (11, 8, 2, 3, 5), (3, 4, 1, 2, 2)):
            gpt = microgpt.GPT(vocab_size, n_embd, n_head, n_layer, block_size, random.Random(0))
            shapes = microgpt.parameter_shapes(vocab_size, n_embd, n_layer, block_size)
            self.assertEqual(list(gpt.state_dict), list(shapes))
            self.assertEqual({name: (len(mat), len(mat[0])) for name, mat in gpt.state_dict.items()}, shapes)
            count = workbench.count_parameters(vocab_size, n_embd, n_layer, block_size)
            self.assertEqual(count, len(gpt.params))
            self.assertEqual(count, sum(r * c for r, c in shapes.values()))

    def test_the_first_weights_are_initial_weights_in_order(self):
        """Bug: GPT drawing its weights in another order than initial_weights (the twin draws with it)."""
        shapes = microgpt.parameter_shapes(27, 16, 1, 16)
        want = microgpt.initial_weights(shapes, random.Random(3))
        self.assertEqual(make_gpt(27, seed=3).weights(), want)


class TestWholeModelGradient(unittest.TestCase):
    def test_every_parameter_matches_finite_differences(self):
        gpt = tiny_gpt()                       # 2 layers, n_embd 8, 2 heads, block 4, 5 tokens
        tokens = [4, 1, 3, 0, 2, 4]             # longer than block_size: the last position is cut
        loss = document_loss(gpt, tokens)
        loss.backward()
        h = 1e-5
        for p in gpt.params:
            x = p.data
            p.data = x + h
            up = document_loss(gpt, tokens).data
            p.data = x - h
            down = document_loss(gpt, tokens).data
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
        gpt = make_gpt(tokenizer.vocab_size)
        gpt = microgpt.GPT(tokenizer.vocab_size, gpt.n_embd, gpt.n_head, gpt.n_layer, gpt.block_size, rng)
        losses = [document_loss(gpt, tokenizer.encode(doc)).data for doc in docs[:40]]
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


class TestWholeModelAgainstReference(unittest.TestCase):
    def test_loss_and_every_gradient_on_one_document(self):
        for gpt in (tiny_gpt(), make_gpt(27, seed=5)):
            tokens = [gpt.vocab_size - 1, 3, 1, 4, 1, 0, 2, 2, gpt.vocab_size - 1]
            fused = document_loss(gpt, tokens)
            fused.backward()
            fused_grads = [p.grad for p in gpt.params]
            for p in gpt.params:
                p.grad = 0.0
            atomic = ref.document_loss(gpt, tokens)
            atomic.backward()
            self.assertLessEqual(abs(fused.data - atomic.data), 1e-10 * atomic.data)
            assert_all_close(self, fused_grads, [p.grad for p in gpt.params], 1e-10)

    def test_twenty_training_steps_give_the_same_losses(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        losses = {}
        fused_step = lambda gpt, adam, tokens, lr: microgpt.train_step(gpt, adam, [tokens], lr, None)[0]
        for name, step in (("fused", fused_step), ("atomic", ref.train_step)):
            gpt = make_gpt(tokenizer.vocab_size, seed=42)
            adam = microgpt.Adam(gpt.params)
            losses[name] = [step(gpt, adam, tokenizer.encode(docs[i % len(docs)]), schedule(i, 20, 0.01))
                            for i in range(20)]
        self.assertLess(losses["fused"][-1], losses["fused"][0])
        for f, a in zip(losses["fused"], losses["atomic"]):
            self.assertLessEqual(abs(f - a), 1e-9, f"{f} vs {a}")


class TestAgainstPyTorch(unittest.TestCase):
    """Optional: the same model in PyTorch float64 with microgpt's weights (skipped without torch)."""

    def setUp(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed (optional; .ci/run installs it when pip can)")
        self.torch = torch

    def torch_loss(self, gpt, tokens):
        torch = self.torch
        W = {name: torch.tensor([[p.data for p in row] for row in mat], dtype=torch.float64, requires_grad=True)
             for name, mat in gpt.state_dict.items()}

        def rmsnorm(x):
            return x * (x.pow(2).mean() + 1e-5) ** -0.5

        n = min(gpt.block_size, len(tokens) - 1)
        keys, values, losses = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)], []
        hd = gpt.head_dim
        for pos in range(n):
            x = rmsnorm(W["wte"][tokens[pos]] + W["wpe"][pos])
            for i in range(gpt.n_layer):
                residual = x
                x = rmsnorm(x)
                q = W[f"layer{i}.attn_wq"] @ x
                keys[i].append(W[f"layer{i}.attn_wk"] @ x)
                values[i].append(W[f"layer{i}.attn_wv"] @ x)
                K, V = torch.stack(keys[i]), torch.stack(values[i])       # (t, n_embd)
                heads = []
                for h in range(gpt.n_head):
                    s = slice(h * hd, (h + 1) * hd)
                    weights = torch.softmax(K[:, s] @ q[s] / math.sqrt(hd), dim=0)
                    heads.append(weights @ V[:, s])
                x = W[f"layer{i}.attn_wo"] @ torch.cat(heads) + residual
                residual = x
                x = W[f"layer{i}.mlp_fc2"] @ torch.relu(W[f"layer{i}.mlp_fc1"] @ rmsnorm(x)) + residual
            logits = W["lm_head"] @ x
            losses.append(torch.nn.functional.cross_entropy(logits[None], torch.tensor([tokens[pos + 1]])))
        loss = torch.stack(losses).mean()
        loss.backward()
        return loss.item(), [g for name in gpt.state_dict for g in W[name].grad.flatten().tolist()]

    def test_same_loss_and_gradients_in_float64(self):
        gpt = make_gpt(11, n_embd=8, n_head=2, n_layer=2, block_size=6, seed=9)
        tokens = [10, 3, 1, 4, 1, 5, 9, 2, 6, 10]
        loss = document_loss(gpt, tokens)
        loss.backward()
        torch_loss, torch_grads = self.torch_loss(gpt, tokens)
        self.assertLessEqual(abs(loss.data - torch_loss), 1e-10 * torch_loss)
        assert_all_close(self, [p.grad for p in gpt.params], torch_grads, 1e-10)


def microgpt_loss_and_grads(gpt, tokens):
    loss = document_loss(gpt, tokens)
    loss.backward()
    grads = [p.grad for p in gpt.params]
    for p in gpt.params:
        p.grad = 0.0
    return loss.data, grads


class TestClassicEngines(unittest.TestCase):
    """reference/classic.py, the bench's baselines: the same model, the same numbers."""

    def assert_close(self, got, want, rel):
        scale = max(abs(w) for w in want)
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertLessEqual(abs(g - w), rel * scale, f"entry {i}: {g!r} vs {w!r}")

    def test_same_loss_and_every_gradient_to_1e_10(self):
        for gpt in (make_gpt(27, seed=3), make_gpt(11, n_embd=8, n_head=2, n_layer=3, block_size=6, seed=9)):
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
        gpt = make_gpt(tokenizer.vocab_size, seed=42)
        model = classic.ClassicGPT.from_microgpt(gpt)
        adam, classic_adam = microgpt.Adam(gpt.params), classic.Adam(model.params)
        for i in range(20):
            tokens = tokenizer.encode(docs[i % len(docs)])
            lr = schedule(i, 20, 0.01)
            loss = microgpt.train_step(gpt, adam, [tokens], lr, None)[0]
            self.assertLessEqual(abs(classic.train_step(model, classic_adam, tokens, lr) - loss), 1e-9)
        self.assert_close([p.data for p in model.params], [p.data for p in gpt.params], 1e-9)

    def test_the_classic_engine_shares_nothing_with_microgpt(self):
        """The ratio the bench prints must not be blind to microgpt's engine (the old atomic reference was)."""
        with open(os.path.join(ROOT, "reference", "classic.py")) as f:
            source = f.read()
        self.assertEqual(re.findall(r"^\s*(?:import|from)\s+(\w+)", source, re.M), ["contextlib", "math", "sys"])


if __name__ == "__main__":
    unittest.main()
