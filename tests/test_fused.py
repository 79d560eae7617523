"""The fused engine against the atomic reference: same values, same gradients, same training."""
import gc
import math
import random
import unittest

try:
    import tracemalloc
except ImportError:                 # PyPy
    tracemalloc = None

import atomic_reference as ref
from support import microgpt, tiny_gpt

Value = microgpt.Value


def assert_all_close(test, got, want, rel):
    """Each got[i] within rel * (largest |want|) of want[i]: relative to the vector's scale, so entries
    that cancel to nearly zero are held to the same absolute standard as the rest."""
    test.assertEqual(len(got), len(want))
    scale = max(1e-300, max(abs(w) for w in want))
    for i, (g, w) in enumerate(zip(got, want)):
        test.assertLessEqual(abs(g - w), rel * scale, f"entry {i}: {g!r} vs {w!r}")


class TestEachNodeEqualsItsPrimitiveComposition(unittest.TestCase):
    """Value and every child's gradient, fused vs built from + * / ** exp log, to 1e-12 relative."""

    def compare(self, fused, atomic, inputs, n_out=1):
        results = []
        for build in (fused, atomic):
            xs = [Value(x) for x in inputs]
            outs = build(xs)
            outs = outs if isinstance(outs, list) else [outs]
            # a random weighting of the outputs, so every output's gradient path is exercised
            weights = random.Random(3).sample([0.3, -1.7, 2.2, 0.9, -0.4, 1.1, -2.5, 0.05] * 8, len(outs))
            (ref.dot(outs, [Value(w) for w in weights]) if len(outs) > 1 else outs[0]).backward()
            results.append(([o.data for o in outs], [x.grad for x in xs]))
        (fused_values, fused_grads), (atomic_values, atomic_grads) = results
        assert_all_close(self, fused_values, atomic_values, 1e-12)
        assert_all_close(self, fused_grads, atomic_grads, 1e-12)

    def random_vectors(self, n, scales=(1.0, 5.0)):
        """Random inputs at a few scales, then large positive and large negative ones (where exp would
        overflow or underflow without the max-subtraction). The spread stays small enough that no
        probability rounds to exactly 0 or 1, where both sides' gradients are rounding noise."""
        rng = random.Random(n)
        for scale in scales:
            yield [rng.gauss(0.0, scale) for _ in range(n)]
        for offset in (1000.0, -700.0):
            yield [offset + rng.gauss(0.0, 3.0) for _ in range(n)]

    def test_dot(self):
        for v in self.random_vectors(16):
            self.compare(lambda xs: microgpt.dot(xs[:8], xs[8:]), lambda xs: ref.dot(xs[:8], xs[8:]), v)

    def test_total(self):
        for v in self.random_vectors(9):
            self.compare(microgpt.total, ref.total, v)

    def test_linear(self):
        for v in self.random_vectors(4 + 12):
            w = lambda xs: [xs[4 + 4 * i:8 + 4 * i] for i in range(3)]    # 3 rows of 4
            floats = lambda rows: [[x.data for x in row] for row in rows]
            self.compare(lambda xs: microgpt.linear(xs[:4], w(xs), floats(w(xs))),
                         lambda xs: ref.linear(xs[:4], w(xs)), v)

    def test_softmax(self):
        for v in self.random_vectors(7):
            self.compare(microgpt.softmax, ref.softmax, v)

    def test_softmax_with_temperature(self):
        # moderate logits only: at 1000 +- 3 the reference's own z / T rounds away 1e-13 of each logit,
        # more than the tolerance; the fused node divides (z - max z) instead and is the accurate one
        for t in (0.5, 2.0):
            for v in list(self.random_vectors(5))[:2]:
                self.compare(lambda xs: microgpt.softmax(xs, t), lambda xs: ref.softmax([x / t for x in xs]), v)

    def test_rmsnorm(self):
        for v in self.random_vectors(8, scales=(0.01, 1.0, 300.0)):     # rmsnorm has no softmax
            self.compare(microgpt.rmsnorm, ref.rmsnorm, v)

    def test_cross_entropy(self):
        for v in self.random_vectors(27):
            for target in (0, 13, 26):
                self.compare(lambda xs: microgpt.cross_entropy(xs, target),
                             lambda xs: ref.cross_entropy(xs, target), v)

    def test_cross_entropy_by_hand(self):
        # logits (1, 2, 0.5, -1), target 1: sum of exps 12.12394, p_1 = 0.609460, loss -ln p_1 = 0.495182
        z = [Value(x) for x in (1.0, 2.0, 0.5, -1.0)]
        loss = microgpt.cross_entropy(z, 1)
        loss.backward()
        self.assertAlmostEqual(loss.data, 0.495182, places=6)
        self.assertAlmostEqual(z[1].grad, 0.609460 - 1.0, places=6)     # p_target - 1
        self.assertAlmostEqual(sum(x.grad for x in z), 0.0, places=15)  # the gradients sum to zero

    def test_uniform_logits_give_ln_vocab_size(self):
        self.assertEqual(microgpt.cross_entropy([Value(0.0)] * 27, 5).data, math.log(27))


class TestWholeModelAgainstReference(unittest.TestCase):
    def test_loss_and_every_gradient_on_one_document(self):
        for gpt in (tiny_gpt(), microgpt.GPT(27, rng=random.Random(5))):
            tokens = [gpt.vocab_size - 1, 3, 1, 4, 1, 0, 2, 2, gpt.vocab_size - 1]
            fused = microgpt.document_loss(gpt, tokens)
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
        fused_step = lambda gpt, adam, tokens, lr: microgpt.train_step(gpt, adam, [tokens], lr)[0]
        for name, step in (("fused", fused_step), ("atomic", ref.train_step)):
            gpt = microgpt.GPT(tokenizer.vocab_size, rng=random.Random(42))
            adam = microgpt.Adam(gpt.params)
            losses[name] = [step(gpt, adam, tokenizer.encode(docs[i % len(docs)]), microgpt.lr_schedule(i, 20, 0.01))
                            for i in range(20)]
        self.assertLess(losses["fused"][-1], losses["fused"][0])
        for f, a in zip(losses["fused"], losses["atomic"]):
            self.assertLessEqual(abs(f - a), 1e-9, f"{f} vs {a}")


class TestTapeAgainstSearch(unittest.TestCase):
    """Training runs on a Tape; Value.backward() searches the graph. Both must give the same numbers."""

    def test_loss_and_every_gradient_to_1e_12(self):
        for gpt in (tiny_gpt(), microgpt.GPT(27, rng=random.Random(5))):
            tokens = [gpt.vocab_size - 1, 3, 1, 4, 1, 0, 2, 2, gpt.vocab_size - 1]
            searched = microgpt.document_loss(gpt, tokens)
            searched.backward()
            want = [p.grad for p in gpt.params]
            for p in gpt.params:
                p.grad = 0.0
            with microgpt.Tape() as tape:
                taped = microgpt.document_loss(gpt, tokens)
            tape.backward(taped)
            self.assertEqual(taped.data, searched.data)
            assert_all_close(self, [p.grad for p in gpt.params], want, 1e-12)

    def test_twenty_training_steps_to_1e_9(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        runs = []
        for taped in (True, False):
            gpt = microgpt.GPT(tokenizer.vocab_size, n_layer=2, rng=random.Random(42))
            adam = microgpt.Adam(gpt.params)
            losses = []
            for i in range(20):
                batch = [tokenizer.encode(docs[(2 * i + j) % len(docs)]) for j in range(2)]
                lr = microgpt.lr_schedule(i, 20, 0.01)
                if taped:
                    losses.append(microgpt.train_step(gpt, adam, batch, lr)[0])
                else:                                   # the same step, with the searching backward()
                    n = sum(min(gpt.block_size, len(t) - 1) for t in batch)
                    doc_losses = [microgpt.total(microgpt.document_losses(gpt, t)) / n for t in batch]
                    for loss in doc_losses:
                        loss.backward()
                    losses.append(sum(loss.data for loss in doc_losses))
                    adam.step(lr)
            runs.append((losses, [p.data for p in gpt.params]))
        (losses_a, params_a), (losses_b, params_b) = runs
        assert_all_close(self, losses_a, losses_b, 1e-9)
        assert_all_close(self, params_a, params_b, 1e-9)
        self.assertLess(losses_a[-1], losses_a[0])


class TestNoGraphKeptAlive(unittest.TestCase):
    def setUp(self):
        if tracemalloc is None and self._testMethodName != "test_no_grad_builds_no_graph":
            self.skipTest("this Python has no tracemalloc")

    def traced_growth(self, run, warmup, rounds):
        """Bytes allocated by microgpt.py's code and still alive after warmup + rounds calls of run(),
        beyond those alive after warmup calls. Traced throughout, so the floats each call replaces
        count on both sides; other code (another thread, a library) is filtered out."""
        only_microgpt = [tracemalloc.Filter(True, microgpt.__file__)]

        def alive():
            gc.collect()
            return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(only_microgpt).traces)

        tracemalloc.start()
        try:
            for _ in range(warmup):
                run()
            before = alive()
            for _ in range(rounds):
                run()
            return alive() - before
        finally:
            tracemalloc.stop()

    def test_memory_does_not_grow_across_training_steps(self):
        tokenizer = microgpt.Tokenizer.from_docs(["annabelle"])
        gpt = microgpt.GPT(tokenizer.vocab_size, rng=random.Random(0))
        adam = microgpt.Adam(gpt.params)
        tokens = tokenizer.encode("annabelle")
        growth = self.traced_growth(lambda: microgpt.train_step(gpt, adam, [tokens], 0.01), 5, 30)
        self.assertLess(growth, 20_000)          # one step's graph alone is over a megabyte

    def test_a_graph_recorded_but_never_back_propagated_is_freed_with_its_tape(self):
        tokenizer = microgpt.Tokenizer.from_docs(["annabelle"])
        gpt = microgpt.GPT(tokenizer.vocab_size, rng=random.Random(0))
        tokens = tokenizer.encode("annabelle")

        def forgotten():
            with microgpt.Tape():
                microgpt.document_loss(gpt, tokens)     # recorded, then never back-propagated

        self.assertLess(self.traced_growth(forgotten, 3, 20), 20_000)    # one graph is over a megabyte

    def test_memory_does_not_grow_while_sampling(self):
        tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba"])
        gpt = microgpt.GPT(tokenizer.vocab_size, rng=random.Random(0))
        rng = random.Random(0)
        growth = self.traced_growth(lambda: microgpt.sample(gpt, tokenizer, rng), 20, 200)
        self.assertLess(growth, 20_000)

    def test_no_grad_builds_no_graph(self):
        a = Value(2.0)
        with microgpt.no_grad():
            b = microgpt.dot([a, a], [a, Value(3.0)])
        self.assertEqual((b.data, b._groups), (10.0, ()))
        self.assertTrue(Value.grad_enabled)
        c = a * a
        c.backward()
        self.assertEqual(a.grad, 4.0)


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
        gpt = microgpt.GPT(11, n_embd=8, n_head=2, n_layer=2, block_size=6, rng=random.Random(9))
        tokens = [10, 3, 1, 4, 1, 5, 9, 2, 6, 10]
        loss = microgpt.document_loss(gpt, tokens)
        loss.backward()
        torch_loss, torch_grads = self.torch_loss(gpt, tokens)
        self.assertLessEqual(abs(loss.data - torch_loss), 1e-10 * torch_loss)
        assert_all_close(self, [p.grad for p in gpt.params], torch_grads, 1e-10)


if __name__ == "__main__":
    unittest.main()
