"""Continuous text (--text): the stream, its windows and split, worked by hand; then training, evaluation, the
baselines, checkpoints, resume, workers, --explain and sampling through run(), on a small text with newlines."""
import os
import random
import re
import signal
import unittest

from support import FewNamesCase, microgpt, replaced, run_main, spy, workbench, write_file

try:
    import tracemalloc
except ImportError:                     # (PyPy has none)
    tracemalloc = None

text = workbench.text
SMALL = ["--n-embd", 8, "--n-head", 2, "--block-size", 8, "--eval-every", 3, "--eval-docs", 0, "--samples", 0]
# Six lines of a poem, 211 characters with their newlines: a stream to learn from, not a list of names.
POEM = ("the owl and the pussy-cat went to sea\nin a beautiful pea-green boat,\nthey took some honey, and plenty "
        "of money,\nwrapped up in a five-pound note.\nthe owl looked up to the stars above,\nand sang to a small "
        "guitar,\n")


class TestTheStream(unittest.TestCase):
    def test_a_window_is_its_characters_without_bos(self):
        """Bug: the documents' encode (BOS at both ends): every window would start from nothing and end a
        document, which a stream never does."""
        tokenizer = text.TextTokenizer.from_docs(["ab\nc"])
        self.assertEqual((tokenizer.chars, tokenizer.encode("c\na")), (["\n", "a", "b", "c"], [3, 0, 1]))
        self.assertEqual(tokenizer.vocab_size, 5)                       # BOS stays in the vocabulary, unread

    def test_windows_are_drawn_by_the_seed_and_their_number_alone(self):
        """Bugs: the window's offset drawn from a generator the run also uses (a resumed run draws others); a
        window one character short (a target lost) or running past the end."""
        stream = "".join(chr(97 + i % 26) for i in range(100))
        windows = text.Windows(stream, 8, seed=7)
        self.assertEqual(len(windows), 92)                              # offsets 0 .. 91 leave 9 characters
        for i in (0, 1, 91):
            start = random.Random(f"7:{i}").randrange(92)
            self.assertEqual(windows[i], stream[start:start + 9])
        self.assertEqual(windows[3], text.Windows(stream, 8, seed=7)[3])
        self.assertEqual(len(list(text.Windows("abcdefghij", 4, seed=7))), 6)     # a loop over them ends
        self.assertNotEqual([windows[i] for i in range(5)], [text.Windows(stream, 8, seed=8)[i] for i in range(5)])

    def test_the_last_tenth_is_held_out_and_read_once(self):
        """Bugs: the validation text taken from the front, or shuffled; consecutive windows that skip the
        character between two of them (a step of block_size + 1) or read one twice as a target."""
        stream = "abcdefghijklmnopqrstuvwxyz" * 4                           # 104 characters
        train, val = text.split_stream(stream, 0.1)
        self.assertEqual((train, val), (stream[:94], stream[94:]))       # round(10.4) = 10 held out: q to z
        windows = text.consecutive(val, 4)
        self.assertEqual(windows, ["qrstu", "uvwxy", "yz"])
        tokenizer = text.TextTokenizer.from_docs([stream])
        self.assertEqual(sum(microgpt.n_predicted(tokenizer.encode(w), 4) for w in windows), len(val) - 1)
        self.assertEqual((text.consecutive("a", 4), text.consecutive("ab", 4)), ([], ["ab"]))


class TestATextRun(FewNamesCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.data = write_file(self.tmp, "poem.txt", POEM)

    def test_training_reads_the_windows_and_the_baselines_count_the_training_text(self):
        """Bugs: the batch encoded as documents; the windows of another seed; the bigram counted over the
        consecutive windows with a character skipped between them (or over the validation text)."""
        batches = []
        with spy(microgpt, "train_step", lambda gpt, opt, batch, *a: batches.append(batch)):
            status, out, err = run_main("--data", self.data, "--text", *SMALL, "--steps", 3, "--batch-size", 2)
        self.assertEqual((status, err), (0, ""))
        tokenizer = text.TextTokenizer.from_docs([POEM])
        train, val = POEM[:190], POEM[190:]                                 # 21 of 211 held out
        windows = text.Windows(train, 8, 42)
        self.assertEqual(batches, [[tokenizer.encode(windows[2 * step + j]) for j in range(2)] for step in range(3)])
        self.assertIn("text: 211 characters (190 for training, 21 for validation), read in windows of block_size "
                      "+ 1 = 9\n", out)
        unigram, bigram = [1] * 28, [[1] * 28 for _ in range(28)]          # add-one, counted by hand
        ids = tokenizer.encode(train)
        for a, b in zip(ids, ids[1:]):
            unigram[b] += 1
            bigram[a][b] += 1
        v = tokenizer.encode(val)
        expected = -sum(math_log(bigram[a][b] / sum(bigram[a])) for a, b in zip(v, v[1:])) / (len(v) - 1)
        self.assertEqual(tokenizer.vocab_size, 28)
        self.assertIn(f"bigram {expected:.4f} (nats per token; counted from the training text", out)

    def test_the_validation_loss_is_every_held_out_character_once(self):
        """Bug: the validation windows cut to block_size characters as a document is (the last target of each
        lost), or the evaluation reading a documents' split of the text."""
        path = os.path.join(self.tmp, "t.json")
        out = run_main("--data", self.data, "--text", *SMALL, "--steps", 3, "--save", path)[1]
        val = float(re.findall(r"^eval +3 \|.*val loss (\d\.\d{4})", out, re.M)[0])
        engine = workbench.MicrogptEngine(dict(n_embd=8, n_head=2, n_layer=1, block_size=8),
                                          text.TextTokenizer.from_docs([POEM]), random.Random(0),
                                          workbench.load_checkpoint(path))
        loss, n_tokens = engine.evaluate(text.consecutive(POEM[190:], 8))
        self.assertEqual((f"{loss:.4f}", n_tokens), (f"{val:.4f}", 20))

    def test_a_checkpoint_says_its_mode_and_a_resume_goes_on_exactly(self):
        """Bugs: the mode not kept (a resumed or loaded text model read as documents: 'chars has \\n'); a
        documents checkpoint resumed with --text (another split of the same file); the resumed run drawing
        other windows than the whole run; its header promising the loss at initialisation of a model at step 3."""
        whole, half = (os.path.join(self.tmp, name) for name in ("whole.json", "half.json"))
        status, out, err = run_main("--data", self.data, "--text", *SMALL, "--steps", 6, "--save", whole)
        self.assertEqual(status, 0)
        self.assertIn("loss at initialisation should be near ln(vocab_size) = 3.3322\n", out)     # ln 28
        original, steps = microgpt.train_step, []

        def ctrl_c_after_3(*args):
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return original(*args)

        with replaced(microgpt, "train_step", ctrl_c_after_3):
            self.assertEqual(run_main("--data", self.data, "--text", *SMALL, "--steps", 6, "--save", half)[0], 130)
        self.assertEqual(workbench.load_checkpoint(half)["step"], 3)
        status, out, err = run_main("--resume", half)
        self.assertEqual((status, err), (0, ""))
        self.assertNotIn("loss at initialisation", out)         # (a model at step 3: its initialisation is past)
        a, b = (workbench.load_checkpoint(path) for path in (whole, half))
        self.assertIs(a["settings"]["text"], True)
        self.assertEqual((b["params"], b["adam"]), (a["params"], a["adam"]))
        documents = os.path.join(self.tmp, "documents.json")
        self.assertEqual(run_main("--data", self.data, *SMALL, "--steps", 1, "--save", documents)[0], 0)
        status, out, err = run_main("--resume", documents, "--text", "--steps", 2)
        self.assertEqual((status, err), (2, f"microgpt: error: checkpoint {documents} was trained without --text; "
                                            f"leave out --text or train a new model\n"))
        status, out, err = run_main("--load", whole, "--samples", 1, "--max-new-tokens", 30, "--prefix", "the owl")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(len(out.split("sample  1:\n")[1].rstrip("\n")), len("the owl") + 30)

    def test_workers_share_windows_with_the_same_numbers(self):
        """Bug: a worker encoding its share as documents (BOS around each window): other gradients."""
        paths = [os.path.join(self.tmp, f"w{n}.json") for n in (1, 2)]
        for n, path in zip((1, 2), paths):
            status, out, err = run_main("--data", self.data, "--text", *SMALL, "--steps", 3, "--batch-size", 4,
                                        "--workers", n, "--save", path)
            self.assertEqual((status, err), (0, ""))
        a, b = (workbench.load_checkpoint(path) for path in paths)
        self.assertEqual(a["params"], b["params"])

    def test_explain_reads_the_text_without_bos(self):
        """Bug: --explain encoding the text as a document: a BOS position first, the text's last character
        predicting the end of a document."""
        out = run_main("--data", self.data, "--text", *SMALL, "--explain", "boat,\nthey")[1]
        ids = text.TextTokenizer.from_docs([POEM]).encode("boat,\nthey")
        self.assertIn(f"explain 'boat,\\nthey' (model at step 0), in the training text: tokens {ids}; ", out)
        self.assertEqual(len(re.findall(r"^ +\d+ \| ", out, re.M)), 8)          # block_size 8 of its 9 targets
        self.assertRegex(out, r"\n +0 \| +'b' \( ?\d+\) \| +'o' \( ?\d+\) \|")    # the text's first character first

    def test_samples_continue_the_prompt_and_never_draw_bos(self):
        """Bugs: a sample stopped at block_size (the KV lists' end) or at a drawn BOS; the prompt not kept;
        the model reading more than its block_size positions (an IndexError past wpe)."""
        engine = workbench.MicrogptEngine(dict(n_embd=8, n_head=2, n_layer=1, block_size=8),
                                          text.TextTokenizer.from_docs([POEM]), random.Random(0))
        seen = []
        original = engine.next_logits

        def logits(ids):
            seen.append(len(ids))
            return [50.0 if i == engine.tokenizer.BOS else z for i, z in enumerate(original(ids))]

        with replaced(engine, "next_logits", logits):
            out = engine.sample(random.Random(1), 1.0, None, "the owl", 40)
        self.assertEqual((out[:7], len(out)), ("the owl", 47))
        self.assertEqual(seen, [min(7 + i, 8) for i in range(40)])
        self.assertEqual(len(engine.sample(random.Random(1), 1.0, None, "", 5)), 5)   # (the start's newline not in it)

    def test_the_kv_cache_gives_what_reading_every_position_again_gives(self):
        """Bug: the cache read on from after the window slid (positions past block_size, or the keys of
        characters no longer in the window). Weights ten times the first ones, so that what a position reads
        changes its logits plainly (with the first, small ones, that bug drew the same characters)."""
        engine = workbench.MicrogptEngine(dict(n_embd=8, n_head=2, n_layer=2, block_size=8),
                                          text.TextTokenizer.from_docs([POEM]), random.Random(3))
        engine.set_weights([10 * x for x in workbench.flat(engine.weights())])
        cached = engine.next_logits

        def again(ids):                                                 # every position read again, each time
            with microgpt.no_grad():
                return [z.data for z in microgpt.document_logits(engine.gpt, ids)[-1]]

        for prompt in ("", "the owl", "and sang to a small"):
            seen = {"cached": [], "again": []}
            for name, logits in (("cached", cached), ("again", again)):
                with replaced(engine, "next_logits", lambda ids: seen[name].append(logits(ids)) or seen[name][-1]):
                    engine.sample(random.Random(5), 1.0, None, prompt, 30)
            self.assertEqual(len(seen["cached"]), 30)
            self.assertEqual(seen["cached"], seen["again"])

    def test_a_windows_graph_grows_with_its_cube_and_a_run_too_big_is_refused_first(self):
        """Bugs: the memory estimate linear in block_size (a --text run at block_size 1,000 needed 24 GB against an
        estimate of 0.56 and was killed by the system, saying nothing); documents counted at block_size when each
        is shorter (a names run at block_size 256 refused for graphs of at most 7 positions); --explain's own
        text left out of the count (a long one's graph built whatever the names), or a short one's counted as a
        whole window of --text (refused for the memory of 256 positions)."""
        if tracemalloc is not None:                             # one window's graph, measured and estimated
            tokenizer, engine = text.TextTokenizer.from_docs([POEM]), workbench.MicrogptEngine
            gpt = microgpt.GPT(tokenizer.vocab_size, 8, 2, 1, 96, random.Random(0))
            tracemalloc.start()
            with microgpt.Tape() as tape:
                loss = microgpt.total(microgpt.document_losses(gpt, tokenizer.encode(POEM[:97])))
            tape.backward(loss)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            settings = dict(n_embd=8, n_head=2, n_layer=1, block_size=96, batch_size=1)
            graph = engine.memory_needed(settings, 28, True) - engine.memory_needed(settings, 28, False)
            self.assertTrue(0.9 * peak <= graph <= 1.5 * peak, (peak, graph))     # 34.7 MB measured, 36.2 guessed
        poem, names, saved = (write_file(self.tmp, "long.txt", POEM * 3), os.path.join(self.tmp, "names.txt"),
                              os.path.join(self.tmp, "m.json"))
        big = ["--n-embd", 8, "--n-head", 2, "--block-size", 256, "--steps", 1, "--samples", 0, "--save", saved]
        with replaced(workbench.workers, "physical_memory", lambda: 300e6):
            status, out, err = run_main("--data", poem, "--text", *big)
            said = ("microgpt: error: a model of n_embd 8, n_layer 1 and block_size 256 (batch 1) has 3,264 parameters "
                    "and needs about 0.5 GB here; this process may use 0.3 GB; choose a smaller block_size or model\n")
            self.assertEqual((status, err), (2, said))
            self.assertFalse(os.path.exists(saved))             # refused before anything was written
            self.assertEqual(run_main("--data", names, *big)[0], 0)
            look = ["--data", names, "--n-embd", 8, "--n-head", 2, "--block-size", 256, "--explain"]
            status, out, err = run_main(*look, "emma" * 60)         # a graph of 241 positions, whatever the names
            self.assertEqual(status, 2, err)
            self.assertIn("block_size 256 has 3,168 parameters and needs about 0.4 GB here; this process may use 0.3 "
                          "GB; give --explain or --gradcheck a shorter text, or look inside a smaller model", err)
            self.assertEqual(run_main(*look, "emma")[0], 0)
            status, out, err = run_main("--data", poem, "--text", *big[:6], "--explain", "the owl")   # 7 positions
            self.assertEqual((status, err), (0, ""))

    def test_a_held_out_character_alone_is_said_to_validate_nothing(self):
        """Bug: one character held out (--val-fraction 0.005 of 211), no window made of it, and the run silent
        about it: no validation loss, no baselines, and the header's '1 for validation'."""
        status, out, err = run_main("--data", self.data, "--text", *SMALL, "--steps", 1, "--val-fraction", 0.005)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("(210 for training, 1 for validation), read in windows of block_size + 1 = 9\n  the 1 held-out "
                      "character makes no window, so nothing is validated: give a larger --val-fraction\n", out)
        for fraction in (0.1, 0):                               # 21 held out, or none: nothing to say
            out = run_main("--data", self.data, "--text", *SMALL, "--steps", 1, "--val-fraction", fraction)[1]
            self.assertNotIn("held-out character", out)

    def test_bad_text_ends_in_one_line(self):
        """Bugs: a one-character file, or a training part no longer than block_size, ending in a traceback (an
        empty randrange) rather than one line."""
        one = write_file(self.tmp, "one.txt", "a")
        status, out, err = run_main("--data", one, "--text", *SMALL)
        self.assertEqual((status, err), (2, f"microgpt: error: data file {one} has 1 character; a stream to learn "
                                            f"from needs more\n"))
        status, out, err = run_main("--data", self.data, "--text", *SMALL, "--explain", "a")
        self.assertEqual((status, err), (2, "microgpt: error: --explain 'a': with --text a text of one character has "
                                            "nothing to predict; give at least two\n"))
        short = write_file(self.tmp, "short.txt", "abcdefgh\n")
        status, out, err = run_main("--data", short, "--text", *SMALL)
        self.assertEqual((status, err), (2, "microgpt: error: --text: the 8 characters left for training are fewer "
                                            "than a window of block_size + 1 = 9; lower --block-size or "
                                            "--val-fraction\n"))


def math_log(x):
    import math
    return math.log(x)
