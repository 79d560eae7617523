"""The scalar autograd engine: every operation's value and gradient, and backward on deep graphs."""
import math
import unittest

from support import microgpt

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


if __name__ == "__main__":
    unittest.main()
