"""The tensor twin, microgpt_torch.py, against microgpt.py: the same numbers (loss, gradients, clipping,
validation loss, training), the same files, the same update on one process or two, and a command line
that offers only what the twin does. Skipped, with the reason, where PyTorch is not installed."""
import json
import os
import random
import re
import socket
import subprocess
import sys
import unittest

from support import (FEW_NAMES, ROOT, TempDirTestCase, document_loss, gpt as make_gpt, microgpt, run_main, workbench,
                     write_file)

try:
    import torch
    import microgpt_torch as twin
except ImportError:
    torch = twin = None

run_twin = lambda *argv: run_main(*argv, main=twin.main)
TWIN = os.path.join(ROOT, "microgpt_torch.py")


def close(test, got, want, tol, what=""):
    scale = max(abs(w) for w in want)
    worst = max(abs(g - w) for g, w in zip(got, want))
    test.assertEqual(len(got), len(want))
    test.assertLessEqual(worst, tol * scale, f"{what}: off by {worst:.3e} (scale {scale:.3e})")


@unittest.skipIf(torch is None, "torch is not installed (optional; .ci/run installs it when pip can)")
class TestSameNumbers(unittest.TestCase):
    def setUp(self):
        self.tokenizer = microgpt.Tokenizer.from_docs(FEW_NAMES)
        self.gpt = make_gpt(self.tokenizer.vocab_size, n_embd=8, n_head=2, n_layer=2, block_size=8, seed=5)
        self.model = twin.GPT(self.gpt.weights(), 2, torch.float64, torch.device("cpu"))

    def twin_grads(self):
        return [g for p in self.model.w.values() for g in p.grad.flatten().tolist()]

    def test_one_document_loss_and_every_gradient_to_1e_10(self):
        for doc in ("emma", "charlotte", "ava"):                   # charlotte is cut at block_size 8
            with self.subTest(doc=doc):
                tokens = self.tokenizer.encode(doc)
                loss = document_loss(self.gpt, tokens)
                loss.backward()
                want = [p.grad for p in self.gpt.params]
                for p in self.gpt.params:
                    p.grad = 0.0
                self.model.zero_grad()
                got = twin.loss_sum(self.model, [tokens], 8, torch.device("cpu")) / twin.n_predicted([tokens], 8)
                got.backward()
                self.assertLessEqual(abs(got.item() - loss.data), 1e-10 * loss.data)
                close(self, self.twin_grads(), want, 1e-10, doc)

    def test_a_padded_batch_of_different_lengths_to_1e_10(self):
        """The padding is masked out of the loss and, by the causal mask, out of every real position."""
        batch = [self.tokenizer.encode(d) for d in ("ava", "isabella", "mia", "charlotte")]   # 4, 8, 4, 8 targets
        adam = microgpt.Adam(self.gpt.params)
        captured = {}
        adam.step = lambda lr: captured.update(grads=[p.grad for p in self.gpt.params])
        loss, _ = microgpt.train_step(self.gpt, adam, batch, 0.01, None)     # the mean over all 24 tokens
        inputs, targets = twin.batch_tensors(batch, 8, torch.device("cpu"))
        self.assertEqual(tuple(inputs.shape), (4, 8))
        self.assertEqual(int((targets != twin.IGNORE).sum()), 24)
        got = twin.loss_sum(self.model, batch, 8, torch.device("cpu")) / 24
        got.backward()
        self.assertLessEqual(abs(got.item() - loss), 1e-10 * loss)
        close(self, self.twin_grads(), captured["grads"], 1e-10, "padded batch")

    def test_the_same_first_weights_from_the_same_seed(self):
        """Bug: the twin drawing its weights in another order, or from a generator of its own."""
        with __import__("tempfile").TemporaryDirectory() as tmp:
            states = []
            for main in (run_main, run_twin):
                path = os.path.join(tmp, "init.json")
                status, out, err = main("--steps", 0, "--samples", 0, "--n-embd", 8, "--n-head", 2, "--seed", 3,
                                        "--save", path, *(["--dtype", "float64"] if main is run_twin else []))
                self.assertEqual(status, 0, err)
                with open(path) as f:
                    states.append(json.load(f))
        self.assertTrue(states[0]["params"] == states[1]["params"], "the first weights differ")
        self.assertEqual(states[0]["rng_state"], states[1]["rng_state"])

    def twenty_steps(self, grad_clip):
        """20 steps of batch 3 (warmup 5, min_lr 0.001) in both, from the same weights: (microgpt's losses,
        parameters and Adam's m, gradient norms), then the twin's (the same but the norms)."""
        docs = FEW_NAMES[:12]
        s = {**{x.name: x.default for x in workbench.settings_of(twin.Engine)}, "n_embd": 8, "n_head": 2,
             "n_layer": 2, "block_size": 8, "dtype": "float64"}                  # self.gpt's size
        adam = microgpt.Adam(self.gpt.params)
        losses, norms = {"microgpt": [], "twin": []}, []
        record = lambda name: (lambda step, loss, lr, norm, batch: losses[name].append(loss) or norms.append(norm))
        microgpt.train(self.gpt, adam, self.tokenizer, docs, 20, 0.01, 5, 0.001, 3, grad_clip,
                       on_step=record("microgpt"))
        engine = twin.Engine(s, self.tokenizer, random.Random(5))
        engine.train(docs, 0, record("twin"), dict(s, steps=20, lr=0.01, warmup_steps=5, min_lr=0.001, batch_size=3,
                                                   grad_clip=grad_clip))
        state = engine.state()
        flat = [x for rows in state["params"].values() for row in rows for x in row]
        return (losses["microgpt"], [p.data for p in self.gpt.params], adam.m, norms[:20]), \
            (losses["twin"], flat, state["adam"]["m"])

    def test_twenty_training_steps_to_1e_9(self):
        (losses, params, m, _), (twin_losses, twin_params, twin_m) = self.twenty_steps(None)
        close(self, twin_losses, losses, 1e-9, "losses")
        close(self, twin_params, params, 1e-9, "parameters")
        close(self, twin_m, m, 1e-9, "Adam's m")

    def test_twenty_clipped_steps_to_1e_9(self):
        """Bug: torch's clip_grad_norm_, which scales by clip / (norm + 1e-6) where microgpt scales by clip /
        norm: 4e-8 apart in Adam's m after 20 steps."""
        (losses, params, m, norms), (twin_losses, twin_params, twin_m) = self.twenty_steps(1.0)
        self.assertTrue(any(n > 1.0 for n in norms) and any(n < 1.0 for n in norms), norms)   # some clipped
        close(self, twin_losses, losses, 1e-9, "losses")
        close(self, twin_params, params, 1e-9, "parameters")
        close(self, twin_m, m, 1e-9, "Adam's m")

    def test_the_validation_loss_is_the_mean_per_token(self):
        """Bug: a twin that averages per document (or per batch of documents) instead of per predicted token."""
        docs = ["ava", "charlotte", "mia", "isabella", "eleanor", "luna"] * 50          # 300: two chunks of 256
        s = {**{x.name: x.default for x in workbench.settings_of(twin.Engine)}, "n_embd": 8, "n_head": 2,
             "n_layer": 2, "block_size": 8, "dtype": "float64"}                  # self.gpt's size
        engine = twin.Engine(s, self.tokenizer, random.Random(5))
        got, n = engine.evaluate(docs)
        want, n_want = microgpt.evaluate(self.gpt, self.tokenizer, docs)
        self.assertEqual(n, n_want)
        self.assertLessEqual(abs(got - want), 1e-10 * want)


@unittest.skipIf(torch is None, "torch is not installed (optional; .ci/run installs it when pip can)")
class TestCheckpointsBothWays(TempDirTestCase, unittest.TestCase):
    RUN = ["--n-embd", 8, "--n-head", 2, "--eval-every", 5, "--eval-samples", 0, "--samples", 5]

    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")
        self.path = lambda name: os.path.join(self.tmp, name)

    def load(self, name):
        with open(self.path(name)) as f:
            return json.load(f)

    def test_a_checkpoint_round_trips_through_the_twin_bit_for_bit(self):
        run_main("--data", self.data, *self.RUN, "--steps", 12, "--save", self.path("a.json"))
        status, out, err = run_twin("--resume", self.path("a.json"), "--dtype", "float64", "--save",
                                    self.path("b.json"))
        self.assertEqual(status, 0, err)
        a, b = self.load("a.json"), self.load("b.json")
        for key in ("params", "adam", "step", "rng_state", "settings", "chars", "config"):
            self.assertTrue(a[key] == b[key] or key == "settings", key)
        self.assertEqual({k: v for k, v in a["settings"].items() if k != "save"},
                         {k: v for k, v in b["settings"].items() if k != "save"})

    def test_twin_trained_samples_the_same_names_in_microgpt(self):
        status, out, err = run_twin("--data", self.data, *self.RUN, "--steps", 15, "--dtype", "float64",
                                    "--save", self.path("t.json"))
        self.assertEqual(status, 0, err)
        status, loaded, err = run_main("--load", self.path("t.json"))
        self.assertEqual(status, 0, err)
        samples = lambda text: [line for line in text.splitlines() if line.startswith("sample ")]
        self.assertEqual(len(samples(loaded)), 5)
        self.assertEqual(samples(loaded), samples(out))

    def test_resume_across_the_two_continues_the_same_run(self):
        """microgpt trains 20 steps and saves; the twin and microgpt each resume for 5 more: the same losses
        and parameters, so Adam's moments and step count crossed over too."""
        run_main("--data", self.data, *self.RUN, "--steps", 20, "--save", self.path("run.json"))
        status, a, err = run_twin("--resume", self.path("run.json"), "--dtype", "float64", "--steps", 25,
                                  "--save", self.path("twin.json"))
        self.assertEqual(status, 0, err)
        status, b, err = run_main("--resume", self.path("run.json"), "--steps", 25, "--save", self.path("m.json"))
        self.assertEqual(status, 0, err)
        losses = lambda text: [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\S+)", text, re.M)]
        self.assertEqual(len(losses(a)), 5)
        close(self, losses(a), losses(b), 1e-9, "resumed losses")
        flat = lambda name: [x for m in self.load(name)["params"].values() for row in m for x in row]
        close(self, flat("twin.json"), flat("m.json"), 1e-9, "parameters")


@unittest.skipIf(torch is None, "torch is not installed (optional; .ci/run installs it when pip can)")
class TestContinuousText(TempDirTestCase, unittest.TestCase):
    def test_a_text_run_resumed_in_the_twin_goes_on_as_in_microgpt_and_samples_the_same_text(self):
        """Bugs: the twin encoding text windows as documents (BOS around them), or sampling a text checkpoint
        as names (stopped at block_size or at BOS); the mode lost crossing over."""
        data = write_file(self.tmp, "poem.txt", "the owl and the pussy-cat went to sea\nin a beautiful pea-green "
                                                "boat,\nthey took some honey, and plenty of money\n" * 3)
        path = lambda name: os.path.join(self.tmp, name)
        run = ["--n-embd", 8, "--n-head", 2, "--block-size", 8, "--eval-every", 5, "--eval-samples", 0, "--samples",
               2, "--max-new-tokens", 30, "--prefix", "the "]
        self.assertEqual(run_main("--data", data, "--text", *run, "--steps", 10, "--save", path("run.json"))[0], 0)
        status, a, err = run_twin("--resume", path("run.json"), "--dtype", "float64", "--steps", 15, "--save",
                                  path("twin.json"))
        self.assertEqual((status, err), (0, ""))
        status, b, err = run_main("--resume", path("run.json"), "--steps", 15, "--save", path("m.json"))
        self.assertEqual((status, err), (0, ""))
        losses = lambda text: [float(x) for x in re.findall(r"^step +\d+ / +\d+ \| loss (\S+)", text, re.M)]
        self.assertEqual(len(losses(a)), 5)
        close(self, losses(a), losses(b), 1e-9, "resumed losses")
        status, c, err = run_main("--load", path("twin.json"))
        samples = lambda text: text.split("sample  1:\n", 1)[1]
        self.assertEqual(samples(c), samples(a))
        self.assertEqual(len(samples(c).split("sample  2:\n")[0]), len("the ") + 30 + 1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipIf(torch is None, "torch is not installed (optional; .ci/run installs it when pip can)")
class TestTwoProcesses(TempDirTestCase, unittest.TestCase):
    def test_two_gloo_processes_make_the_update_of_one_with_the_same_global_batch(self):
        data = write_file(self.tmp, "names.txt", "\n".join(FEW_NAMES) + "\n")
        common = ["--data", data, "--n-embd", 8, "--n-head", 2, "--steps", 6, "--batch-size", 4,
                  "--dtype", "float64", "--samples", 0, "--eval-every", 3]
        one = os.path.join(self.tmp, "one.json")
        status, out, err = run_twin(*common, "--save", one)
        self.assertEqual(status, 0, err)
        two = os.path.join(self.tmp, "two.json")
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), TWIN,
                            *map(str, common), "--save", two], capture_output=True, text=True, timeout=240,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        self.assertIn("2 processes, each a share of every batch", r.stdout)
        self.assertEqual(r.stdout.count("eval    6 |"), 1)                   # only rank 0 prints
        with open(one) as f, open(two) as g:
            a, b = json.load(f), json.load(g)
        flat = lambda state: [x for m in state["params"].values() for row in m for x in row]
        close(self, flat(b), flat(a), 1e-9, "parameters after 6 steps")
        self.assertEqual([round(row[1], 9) for row in a["metrics"]["train"]],
                         [round(row[1], 9) for row in b["metrics"]["train"]])


class TestBadInput(TempDirTestCase, unittest.TestCase):
    def test_without_torch_it_says_how_to_install_it(self):
        fake = os.path.join(self.tmp, "torch")
        os.mkdir(fake)
        write_file(fake, "__init__.py", "raise ImportError('No module named torch')\n")
        r = subprocess.run([sys.executable, TWIN], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=self.tmp))
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.strip(), "microgpt_torch: error: PyTorch is not installed; install it with "
                                           "`pip install torch` (microgpt.py needs nothing)")

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_help_lists_only_what_the_twin_does(self):
        """Bug: --explain and --gradcheck in the twin's --help (it has no inside module to answer them)."""
        r = subprocess.run([sys.executable, TWIN, "--help"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        for option in ("--device", "--dtype", "--steps", "--temperature", "--resume", "--log"):
            self.assertIn(option, r.stdout)
        self.assertNotIn("--explain", r.stdout)
        self.assertNotIn("--gradcheck", r.stdout)
        self.assertNotIn("--workers", r.stdout)                          # its batches run in tensors

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_bad_options_are_one_line_and_status_2(self):
        cases = [(("--dtype", "float16"), "argument --dtype: invalid choice: 'float16'"),
                 (("--lr", -1), "--lr must be greater than 0, got -1.0"),
                 (("--explain", "emma"), "unrecognized arguments: --explain emma"),
                 (("--resume", os.path.join(self.tmp, "nope.json")), "checkpoint"),
                 (("--device", "tpu9"), "--device must be cpu, cuda or cuda:N, got 'tpu9'")]
        if not torch.cuda.is_available():
            cases.append((("--device", "cuda"), "--device cuda: PyTorch sees no GPU here"))
        for argv, says in cases:
            with self.subTest(argv=argv):
                status, out, err = run_twin(*argv)
                self.assertEqual(status, 2, out + err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn(says, err)


if __name__ == "__main__":
    unittest.main()
