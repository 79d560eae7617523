"""microgpt.py's engine: its GPT and Adam behind the engine interface (the package's docstring). What exists
only to share a batch among processes, or only for speed, lives here rather than in the textbook: the
documents' parts (gradient_parts, nll_parts) and their sum (added), the collector switched off
while training. Also the numbers a run reports about a model: its parameter count, perplexity, the
update-to-weight ratio."""
import gc
import math
import sys

import microgpt
from .text import TextTokenizer, continued

# Whether training switches the cyclic garbage collector off. CPython frees a graph by reference counting, and its
# collector's walks through the graph would find nothing (10%). PyPy has no reference counting: its collector is
# what frees every graph, and switched off it keeps them (a run at batch 8 grew to 2 GB in 300 steps, and two
# processes slowed to half speed as they grew: --workers 2 at 0.67x of one process, 0.79x to 1.20x with it on).
COLLECTOR_OFF = sys.implementation.name != "pypy"


def count_parameters(vocab_size, n_embd, n_layer, block_size):
    """The number of parameters microgpt.parameter_shapes describes, by arithmetic alone (a model too big to
    build is counted at once): (2 vocab_size + block_size) n_embd for the embeddings and lm_head, 12
    n_embd^2 per layer (4 for attention, 8 for the MLP). 4,192 with the defaults and 27 tokens."""
    return (2 * vocab_size + block_size) * n_embd + 12 * n_layer * n_embd ** 2


def update_ratio(before, after):
    """The update-to-weight ratio of a step: the RMS of the change over the RMS of the weights before it,
    for two equal-length lists of floats (None if the weights are all 0). What a size means here, measured
    (watch.RATIO_TOO_HIGH and RATIO_BARELY say it under --explain): at the default lr, 10^-1.3 to 10^-0.9 on a
    fresh model's first step and 10^-2.0 to 10^-1.6 once trained; the high-lr trap, 10^0 to 10^0.4."""
    change = math.sqrt(sum((a - b) ** 2 for a, b in zip(after, before)))
    size = math.sqrt(sum(b * b for b in before))
    return change / size if size else None


def perplexity(loss):
    """exp(loss), the number of equally likely tokens that would be as uncertain; inf past a float's range."""
    return math.exp(loss) if loss < 709.0 else math.inf


class MicrogptEngine:
    """microgpt.GPT and its microgpt.Adam as an engine (this module's docstring). The settings n_embd, n_head,
    n_layer and block_size size the GPT; its first weights are drawn from rng; `state`, what state()
    returned (a checkpoint's), replaces them and the fresh Adam's state."""
    inside = "inside"                                       # the module that looks inside its models

    def __init__(self, settings, tokenizer, rng, state=None):
        s, self.tokenizer = settings, tokenizer
        self.gpt = microgpt.GPT(tokenizer.vocab_size, s["n_embd"], s["n_head"], s["n_layer"], s["block_size"],
                                rng)
        self.optimizer = microgpt.Adam(self.gpt.params)
        self.n_params = len(self.gpt.params)
        self.kv = None                                      # a text sample's KV cache (next_logits)
        if state is not None:
            self.set_weights([x for rows in state["params"].values() for row in rows for x in row])
            adam = state["adam"]
            self.optimizer.t, self.optimizer.m, self.optimizer.v = adam["t"], list(adam["m"]), list(adam["v"])

    @staticmethod
    def memory_needed(settings, vocab_size, graph, positions=None):
        """Bytes for the model (and, if `graph`, one document's graph and a batch), from the settings and the most
        positions a document is read at (None: block_size). Measured with tracemalloc: ~185 a parameter (Value,
        float, Adam's m, v); in a graph, ~60 a parameter and position, and ~14 a layer and head times the
        positions cubed: at position t each of a head's t + 1 attention weights keeps t + 1 local derivatives
        (microgpt.softmax), a float of 32 bytes each, T^3 / 3 of them over T positions (12 by tracemalloc, 14 in
        the process's resident memory: 1.9 GB at T = 400, 6.2 GB at 600, with 2 heads). At block_size 16 that
        is 0.2 MB; at 1,000 (--text reads every window whole), 14 GB a head."""
        T = positions or settings["block_size"]
        n = count_parameters(vocab_size, settings["n_embd"], settings["n_layer"], settings["block_size"])
        graph_bytes = n * 60 * T + 14 * settings["n_layer"] * settings["n_head"] * T ** 3
        return n * 200 + (graph_bytes + settings["batch_size"] * 200 if graph else 0)

    memory_available = staticmethod(lambda settings: None)      # None: the machine's own

    def train(self, docs, start_step, on_step, settings, gradients=None):
        """microgpt.train. `gradients(batch, n_tokens)`, if given, computes the documents' parts elsewhere
        (gradient_parts, in worker processes); they are added here as microgpt.batch_gradient adds
        them, so the numbers are the same. Under CPython the cyclic garbage collector is off meanwhile
        (COLLECTOR_OFF): a graph has no cycle, reference counting frees it, and the collector's walks would
        cost 10% for nothing."""
        gradient = microgpt.batch_gradient if gradients is None else (
            lambda gpt, batch: self.added(batch, gradients))
        was_enabled = gc.isenabled()
        if COLLECTOR_OFF:
            gc.disable()
        try:
            # the one place the workbench spells out microgpt.train's call
            return microgpt.train(self.gpt, self.optimizer, self.tokenizer, docs, settings["steps"], settings["lr"],
                                  settings["warmup_steps"], settings["min_lr"], settings["batch_size"],
                                  settings["grad_clip"], start_step, on_step, gradient)
        finally:
            if was_enabled:
                gc.enable()

    def added(self, batch, gradients):
        """The batch's loss, its gradient left in p.grad: the parts gradients(batch, n_tokens) gives, added in
        order from 0, term for term as microgpt.batch_gradient adds them."""
        n_tokens = sum(microgpt.n_predicted(tokens, self.gpt.block_size) for tokens in batch)
        loss, summed = 0.0, [0.0] * self.n_params
        for doc_loss, grads in gradients(batch, n_tokens):
            loss += doc_loss
            summed = [g + x for g, x in zip(summed, grads)]
        for p, g in zip(self.gpt.params, summed):
            p.grad = g
        return loss

    def gradient_parts(self, batch, n_tokens):
        """Each document's part of a batch (microgpt.document_gradient), in order: (its loss / n_tokens, its
        gradient, a float per parameter), each computed from 0; p.grad is left at 0."""
        parts = []
        for tokens in batch:
            doc_loss = microgpt.document_gradient(self.gpt, tokens, n_tokens)
            parts.append((doc_loss, [p.grad for p in self.gpt.params]))
            for p in self.gpt.params:
                p.grad = 0.0
        return parts

    def nll_parts(self, batch):
        """For each document: (its cross-entropies summed, in nats; its predicted tokens), summed as
        microgpt.evaluate sums them."""
        with microgpt.no_grad():
            losses = [microgpt.document_losses(self.gpt, tokens) for tokens in batch]
        return [(sum(loss.data for loss in doc), len(doc)) for doc in losses]

    def evaluate(self, docs, nlls=None):
        """microgpt.evaluate; given `nlls`, the documents' nll_parts computed elsewhere, added in order."""
        if nlls is None:
            return microgpt.evaluate(self.gpt, self.tokenizer, docs)
        loss_sum, n_tokens = 0.0, 0
        for doc_sum, n in nlls:
            loss_sum += doc_sum
            n_tokens += n
        return loss_sum / n_tokens, n_tokens

    def sample(self, rng, temperature, top_k, prefix, length=None):
        """microgpt.sample; with --text (a TextTokenizer), text.continued: the prefix and `length` characters
        after it (block_size unless given)."""
        if isinstance(self.tokenizer, TextTokenizer):
            self.kv = None
            try:
                return continued(self.next_logits, self.tokenizer, rng, temperature, top_k, prefix,
                                 length or self.gpt.block_size, self.gpt.block_size)
            finally:
                self.kv, self.gpt.w_data = None, None           # (as microgpt.sample lets them go)
        return microgpt.sample(self.gpt, self.tokenizer, rng, temperature, top_k, prefix)

    def next_logits(self, ids):
        """The logits (vocab_size floats) at the last of `ids` (at most block_size token ids), without a graph.
        Within one sample, while ids only grow by one, the last call's keys and values are read on from (a KV
        cache, as microgpt.sample's); once the window slides, every position is read again from the first."""
        gpt, kv = self.gpt, self.kv
        with microgpt.no_grad():
            if kv and len(ids) == len(kv[0]) + 1 and ids[:-1] == kv[0]:
                keys, values = kv[1], kv[2]
                logits = gpt(ids[-1], len(ids) - 1, keys, values)
            else:
                keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
                logits = [gpt(token_id, pos_id, keys, values) for pos_id, token_id in enumerate(ids)][-1]
        self.kv = (list(ids), keys, values)
        return [z.data for z in logits]

    def weights(self):
        return self.gpt.weights()

    def set_weights(self, flat):
        """A float per parameter, in state_dict order."""
        for p, x in zip(self.gpt.params, flat):
            p.data = x

    def state(self):
        """What a checkpoint keeps of the model: {"params": weights(), "adam": {"t", "m", "v"}}, m and v a float
        per parameter in state_dict order: Adam's next steps depend on them as much as on the weights."""
        adam = self.optimizer
        return {"params": self.gpt.weights(), "adam": {"t": adam.t, "m": list(adam.m), "v": list(adam.v)}}
