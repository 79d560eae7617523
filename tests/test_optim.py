"""Adam and the learning-rate schedule against numbers worked out by hand."""
import math
import unittest

from support import microgpt

Value = microgpt.Value


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
        self.assertEqual(microgpt.lr_schedule(0, 100, lr), 0.01)                 # cos 0 = 1
        self.assertAlmostEqual(microgpt.lr_schedule(50, 100, lr), 0.005, places=15)   # cos(pi/2) = 0
        self.assertAlmostEqual(microgpt.lr_schedule(25, 100, lr), 0.005 * (1 + math.sqrt(0.5)), places=15)
        self.assertAlmostEqual(microgpt.lr_schedule(75, 100, lr), 0.005 * (1 - math.sqrt(0.5)), places=15)
        self.assertAlmostEqual(microgpt.lr_schedule(100, 100, lr), 0.0, places=15)    # cos pi = -1


if __name__ == "__main__":
    unittest.main()
