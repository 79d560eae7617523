"""Continuous text (--text): the data file read as one stream of characters, newlines included, as nanoGPT's
shakespeare_char reads Shakespeare. The model and its training are microgpt.py's; what changes is what a
"document" is. Training draws windows of block_size + 1 characters from the stream (a window's first
block_size characters are the inputs, its last block_size the targets: no BOS, the text goes on past both
ends); validation reads the last val_fraction of the stream in consecutive windows; and a sample continues a
prompt for max_new_tokens characters, reading at most the last block_size of them (the model has block_size
positions).

The tokenizer keeps microgpt's BOS token (the vocabulary, the model's shapes and checkpoints are those of a
documents run), but a text run never reads it nor predicts it."""
import random

import microgpt


class TextTokenizer(microgpt.Tokenizer):
    """microgpt.Tokenizer for a stream: encode() gives a window's ids alone, without BOS around them
    ('emma' -> [4, 12, 12, 0]: three positions, each scored on the next character)."""
    text = True

    def encode(self, doc):
        return [self.ids[ch] for ch in doc]


class Windows:
    """The training windows of a stream, as the list of documents microgpt.train walks: window i is the
    block_size + 1 characters from an offset drawn by a generator seeded by the seed and i alone, so the
    windows need no memory, and a resumed run draws the ones the whole run would have. len() is the number
    of offsets a whole window starts from."""

    def __init__(self, stream, block_size, seed):
        self.stream, self.width, self.seed = stream, block_size + 1, seed
        self.n = len(stream) - block_size                   # offsets 0 .. n - 1 leave a whole window

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:                 # (microgpt.train's walk wraps; a loop over them ends)
            raise IndexError(f"window {i} of {self.n}")
        start = random.Random(f"{self.seed}:{i}").randrange(self.n)
        return self.stream[start:start + self.width]


def split_stream(stream, val_fraction):
    """(training text, validation text): the last round(len(stream) * val_fraction) characters are held out
    (a stream is not shuffled: its end is text the model never trained on)."""
    n_val = int(len(stream) * val_fraction + 0.5)
    return stream[:len(stream) - n_val], stream[len(stream) - n_val:]


def consecutive(stream, block_size):
    """The stream as consecutive windows of block_size + 1 characters, each beginning with the last character
    of the one before: every character after the first is a target once, read with up to block_size of the
    characters before it. The last window may be shorter; a stream of one character has none."""
    return [stream[start:start + block_size + 1] for start in range(0, max(len(stream) - 1, 0), block_size)]


def continued(next_logits, tokenizer, rng, temperature, top_k, prompt, length, block_size):
    """`prompt` and `length` characters drawn after it, a string: each drawn from next_token_probs() of the
    logits next_logits(ids) gives for the last of ids (the last block_size characters so far), never BOS.
    Without a prompt, the text starts as after a newline (or, with no newline in the text, after its first
    character), which is not part of what is returned."""
    start = prompt or ("\n" if "\n" in tokenizer.ids else tokenizer.chars[0])
    ids = [tokenizer.ids[ch] for ch in start]
    for _ in range(length):
        logits = next_logits(ids[-block_size:])[:tokenizer.BOS]         # BOS is never drawn: it ends nothing here
        probs = microgpt.next_token_probs(logits, temperature, top_k)
        ids.append(rng.choices(range(len(probs)), weights=probs)[0])
    return tokenizer.decode(ids[len(ids) - length - len(prompt):])
