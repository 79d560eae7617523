"""The scalar autograd engine: every primitive operation's value and gradient, backward on deep graphs, the
tape and no_grad, and each fused node of the model against the same function built from primitives."""
import gc
import math
import random
import unittest

try:
    import tracemalloc
except ImportError:                 # PyPy
    tracemalloc = None

from support import document_loss, assert_all_close, gpt as make_gpt, microgpt, sample, schedule, slow, tiny_gpt
import reference.atomic as ref  # (support puts the project on the path)

Value = microgpt.Value


def numeric_grad(f, xs, h=1e-6):
    """Central finite differences of f (floats -> float) at xs: (f(x+h) - f(x-h)) / 2h per argument."""
    grads = []
    for i in range(len(xs)):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((f(up) - f(down)) / (2 * h))
    return grads


class TestPrimitiveOps(unittest.TestCase):
    # each case: name, function of Values (or floats), the points to test at
    CASES = [
        ("a + b", lambda a, b: a + b, [(1.5, -2.25), (0.0, 3.0)]),
        ("a + 2", lambda a, b: a + 2.0, [(1.5, 0.0)]),
        ("2 + a", lambda a, b: 2.0 + a, [(1.5, 0.0)]),
        ("a - b", lambda a, b: a - b, [(1.5, -2.25)]),
        ("3 - a", lambda a, b: 3.0 - a, [(1.5, 0.0)]),
        ("a * b", lambda a, b: a * b, [(1.5, -2.25), (-0.5, 4.0)]),
        ("3 * a", lambda a, b: 3.0 * a, [(1.5, 0.0)]),
        ("a / b", lambda a, b: a / b, [(1.5, -2.25), (-0.5, 4.0)]),
        ("2 / a", lambda a, b: 2.0 / a, [(1.5, 0.0), (-0.25, 0.0)]),
        ("a ** 3", lambda a, b: a ** 3, [(1.5, 0.0), (-0.7, 0.0)]),
        ("a ** -0.5", lambda a, b: a ** -0.5, [(2.5, 0.0)]),
        ("-a", lambda a, b: -a, [(1.5, 0.0)]),
        ("exp(a)", lambda a, b: a.exp() if isinstance(a, Value) else math.exp(a), [(0.7, 0.0), (-3.0, 0.0)]),
        ("log(a)", lambda a, b: a.log() if isinstance(a, Value) else math.log(a), [(0.7, 0.0), (5.0, 0.0)]),
        ("relu(a)", lambda a, b: a.relu() if isinstance(a, Value) else max(0.0, a), [(0.7, 0.0), (-2.0, 0.0)]),
        ("mixed", lambda a, b: (a * b + a / b - 1.0) ** 2, [(1.3, 0.6)]),
    ]

    def test_value_and_gradient_match_finite_differences(self):
        for name, f, points in self.CASES:
            for x in points:
                with self.subTest(op=name, at=x):
                    a, b = Value(x[0]), Value(x[1])
                    out = f(a, b)
                    out.backward()
                    self.assertAlmostEqual(out.data, f(*x), places=12)
                    want = numeric_grad(lambda xs: f(*xs), list(x))
                    self.assertAlmostEqual(a.grad, want[0], places=6)
                    self.assertAlmostEqual(b.grad, want[1], places=6)

    def test_relu_of_a_negative_number_is_zero_with_zero_gradient(self):
        a = Value(-2.0)
        out = a.relu()
        out.backward()
        self.assertEqual((out.data, a.grad), (0.0, 0.0))


class TestBackward(unittest.TestCase):
    def test_gradient_accumulates_over_every_path(self):
        # f = a*a + a*b + b with a = 3, b = -2: df/da = 2a + b = 4, df/db = a + 1 = 4
        a, b = Value(3.0), Value(-2.0)
        f = a * a + a * b + b
        f.backward()
        self.assertEqual((f.data, a.grad, b.grad), (1.0, 4.0, 4.0))

    def test_backward_adds_to_existing_gradients(self):
        # two backward passes without a reset: gradients add up, as in gradient accumulation
        a = Value(2.0)
        (a * 3.0).backward()
        (a * 5.0).backward()
        self.assertEqual(a.grad, 8.0)

    def test_a_chain_of_100000_nodes_needs_no_recursion(self):
        x = Value(1.0)
        y = x
        for _ in range(100_000):
            y = y * 1.0 + 0.0          # 200,000 nodes in one chain
        y.backward()
        self.assertEqual(y.data, 1.0)
        self.assertEqual(x.grad, 1.0)

    def test_diamond_shared_subexpression_counted_once_per_path(self):
        # c = a + a is used twice: f = c * c = 4a^2, df/da = 8a
        a = Value(1.5)
        c = a + a
        f = c * c
        f.backward()
        self.assertEqual(a.grad, 12.0)


class TestOperationNames(unittest.TestCase):
    def test_each_value_names_the_operation_that_made_it(self):
        """Bugs: an operation that forgets its name (a graph drawn with blank boxes); a name on the wrong one."""
        a, b = Value(2.0), Value(3.0)
        xs = [Value(0.5), Value(-1.0), Value(2.0)]
        made = {"+": a + b, "*": a * b, "**2": a ** 2, "**-1": a ** -1, "exp": a.exp(), "log": a.log(),
                "relu": a.relu(), "dot": microgpt.dot(xs, xs), "sum": microgpt.total(xs),
                "linear": microgpt.linear(xs, [xs], [[x.data for x in xs]])[0],
                "softmax": microgpt.softmax(xs)[0], "cross-entropy": microgpt.cross_entropy(xs, 1),
                "rmsnorm": microgpt.rmsnorm(xs)[0]._groups[0][0][1]}           # x_i * scale: the scale's node
        for op, value in made.items():
            self.assertEqual(value._op, op)
        self.assertEqual((a._op, (a - b)._op, (a / b)._op), ("", "+", "*"))     # a parameter; a + (-1)b; a * b^-1
        self.assertEqual(repr(a * b), "Value(*, data=6, grad=0)")
        self.assertEqual(repr(a), "Value(leaf, data=2, grad=0)")


class TestGraph(unittest.TestCase):
    def test_every_value_once_each_after_what_it_was_made_from(self):
        """Bugs: a node emitted before its children (backward would pass on an unfinished gradient); the
        leaves left out (the gradient check finds the parameters a document reaches through them)."""
        a, b = Value(2.0), Value(3.0)
        c = a * b
        d = c + a
        e = d * c
        order = e.graph()
        self.assertEqual(len(order), 5)
        self.assertEqual({id(v) for v in order}, {id(v) for v in (a, b, c, d, e)})
        at = {id(v): i for i, v in enumerate(order)}
        for v in order:
            for children, _ in v._groups:
                for child in children:
                    self.assertLess(at[id(child)], at[id(v)])
        self.assertIs(order[-1], e)

    def test_a_chain_of_100000_nodes_needs_no_recursion(self):
        x = Value(1.0)
        y = x
        for _ in range(100_000):
            y = y + 1.0
        self.assertEqual(len(y.graph()), 200_001)           # each + makes a node and its constant 1.0


class TestTape(unittest.TestCase):
    """The tape's rules, each at its edge (Tape's docstring states them)."""

    def test_the_tape_gives_the_gradients_backward_gives(self):
        """Bug it guards: recording a node before its children (the order would not be topological)."""
        def f(a, b):
            c = a * b + a.exp()
            return (c * c + b.log() - a / b).relu() + c ** 3
        searched = [Value(0.7), Value(1.3)]
        f(*searched).backward()
        taped = [Value(0.7), Value(1.3)]
        with microgpt.Tape() as tape:
            out = f(*taped)
        tape.backward(out)
        self.assertEqual([v.grad for v in taped], [v.grad for v in searched])

    def test_values_made_before_the_tape_are_leaves_to_it(self):
        a, b = Value(2.0), Value(3.0)
        x = a * b                                       # made before the tape: not recorded
        with microgpt.Tape() as tape:
            loss = x * Value(5.0)
        tape.backward(loss)
        self.assertEqual((x.grad, a.grad, b.grad), (5.0, 0.0, 0.0))

    def test_two_graphs_on_one_tape_do_not_mix(self):
        a, b = Value(2.0), Value(3.0)
        with microgpt.Tape() as tape:
            first = a * a                               # d/da = 2a = 4
            second = a * b                              # not back-propagated: contributes nothing
        tape.backward(first)
        self.assertEqual((a.grad, b.grad, second.grad), (4.0, 0.0, 0.0))

    def test_backward_once_and_only_for_a_loss_on_the_tape(self):
        a = Value(2.0)
        with microgpt.Tape() as tape:
            loss = a * a
        other = a * 3.0                                 # made after the block: not on the tape
        with self.assertRaisesRegex(RuntimeError, "not on this tape"):
            tape.backward(other)
        tape.backward(loss)
        with self.assertRaisesRegex(RuntimeError, "not on this tape"):
            tape.backward(loss)                         # the record was consumed
        self.assertEqual(a.grad, 4.0)

    def test_tapes_do_not_nest_and_recording_stops_with_the_block(self):
        with self.assertRaisesRegex(RuntimeError, "do not nest"):
            with microgpt.Tape():
                with microgpt.Tape():
                    pass
        self.assertIsNone(Value.tape)
        with self.assertRaises(ZeroDivisionError):
            with microgpt.Tape():
                Value(1.0) / Value(0.0)                 # an error inside the block stops recording too
        self.assertIsNone(Value.tape)
        with microgpt.Tape() as tape, microgpt.no_grad():
            Value(1.0) * Value(2.0)                     # no_grad records nothing
        self.assertEqual(tape.nodes, [])

    def test_a_chain_of_100000_nodes_on_the_tape(self):
        x = Value(1.0)
        with microgpt.Tape() as tape:
            y = x
            for _ in range(100_000):
                y = y * 1.0 + 0.0
        tape.backward(y)
        self.assertEqual((len(tape.nodes), x.grad), (0, 1.0))


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


class TestTapeAgainstSearch(unittest.TestCase):
    """Training runs on a Tape; Value.backward() searches the graph. Both must give the same numbers."""

    def test_loss_and_every_gradient_to_1e_12(self):
        for gpt in (tiny_gpt(), make_gpt(27, seed=5)):
            tokens = [gpt.vocab_size - 1, 3, 1, 4, 1, 0, 2, 2, gpt.vocab_size - 1]
            searched = document_loss(gpt, tokens)
            searched.backward()
            want = [p.grad for p in gpt.params]
            for p in gpt.params:
                p.grad = 0.0
            with microgpt.Tape() as tape:
                taped = document_loss(gpt, tokens)
            tape.backward(taped)
            self.assertEqual(taped.data, searched.data)
            assert_all_close(self, [p.grad for p in gpt.params], want, 1e-12)

    def test_twenty_training_steps_to_1e_9(self):
        docs = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia"]
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        runs = []
        for taped in (True, False):
            gpt = make_gpt(tokenizer.vocab_size, n_layer=2, seed=42)
            adam = microgpt.Adam(gpt.params)
            losses = []
            for i in range(20):
                batch = [tokenizer.encode(docs[(2 * i + j) % len(docs)]) for j in range(2)]
                lr = schedule(i, 20, 0.01)
                if taped:
                    losses.append(microgpt.train_step(gpt, adam, batch, lr, None)[0])
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

    @slow
    def test_memory_does_not_grow_across_training_steps(self):
        tokenizer = microgpt.Tokenizer.from_docs(["annabelle"])
        gpt = make_gpt(tokenizer.vocab_size)
        adam = microgpt.Adam(gpt.params)
        tokens = tokenizer.encode("annabelle")
        growth = self.traced_growth(lambda: microgpt.train_step(gpt, adam, [tokens], 0.01, None), 5, 30)
        self.assertLess(growth, 20_000)          # one step's graph alone is over a megabyte

    def test_a_graph_recorded_but_never_back_propagated_is_freed_with_its_tape(self):
        tokenizer = microgpt.Tokenizer.from_docs(["annabelle"])
        gpt = make_gpt(tokenizer.vocab_size)
        tokens = tokenizer.encode("annabelle")

        def forgotten():
            with microgpt.Tape():
                document_loss(gpt, tokens)     # recorded, then never back-propagated

        self.assertLess(self.traced_growth(forgotten, 3, 20), 20_000)    # one graph is over a megabyte

    def test_memory_does_not_grow_while_sampling(self):
        tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba"])
        gpt = make_gpt(tokenizer.vocab_size)
        rng = random.Random(0)
        growth = self.traced_growth(lambda: sample(gpt, tokenizer, rng), 20, 200)
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


if __name__ == "__main__":
    unittest.main()
