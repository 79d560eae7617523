#!/usr/bin/env python3
"""microgpt: train a tiny GPT on a list of names and make up new ones, in one file of plain Python.

Nothing is imported from outside the standard library, and nothing is hidden: every multiplication the
model does is in this file. Read it top to bottom; the sections follow the data's path:

  1. Dataset      a text file -> a list of documents (names)
  2. Tokenizer    a document -> token ids, wrapped in BOS
  3. Autograd     Value: a float that remembers how it was computed, and backward()
  4. Model        token id + position -> logits, one score per vocabulary entry
  5. Loss         logits + the token that actually came next -> cross-entropy, in nats
  6. Optimizer    gradients -> a step for every parameter (Adam, cosine learning rate)
  7. Training     forward (4, 5), backward (3), update (6): one batch of documents per step
  8. Sampling     the trained model -> new documents, one token at a time

A reader who stops at the end of section 8 has seen the whole algorithm. The tooling after it (command
line, validation, metrics, checkpoints, looking inside a model) serves the person running it and changes
nothing the model computes. Run `python3 microgpt.py --help` for the options.
"""
import argparse
import csv
import gc
import json
import math
import operator
import os
import random
import signal
import stat
import sys
import time


class DataError(Exception):
    """Bad input the user can fix (a missing file, an impossible option): main() prints the message on
    one line and exits with status 2."""


# ----------------------------------------------------------------------------------------------------
# 1. Dataset: a text file, one document (here: one name) per line.
#
# In: the path of a UTF-8 text file. Out: a list of strings, one per non-blank line. The model never sees
# the file again; from here on a "document" is one of these strings, and training learns what usually
# comes next inside one.

def read_text(path, what, fix):
    """The whole of a UTF-8 text file, as a string. `what` names the file in errors ("data file") and
    `fix` says what to do instead.

    Raises DataError if it is missing, a folder, not a regular file, unreadable or not UTF-8.
    """
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{what} {path} not found; {fix}")
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror}; {fix}")
    if stat.S_ISDIR(kind):
        raise DataError(f"{what} {path} is a folder; {fix}")
    if not stat.S_ISREG(kind):                              # a FIFO would block open(), /dev/zero never ends
        raise DataError(f"{what} {path} is not a regular file (a pipe or a device?); {fix}")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text (byte {e.start}); {fix}")
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror}; {fix}")


def load_docs(path):
    """Read the documents of a UTF-8 text file: one per line, whitespace stripped, blank lines skipped.

    Returns a list of strings (at least one). Raises DataError if the file cannot be read as text
    (read_text) or holds no non-blank line.
    """
    text = read_text(path, "data file", "pass --data a UTF-8 text file, one document per line")
    docs = [line.strip() for line in text.splitlines()]    # one string per line, edges trimmed
    docs = [doc for doc in docs if doc]                     # blank lines are not documents
    if not docs:
        raise DataError(f"data file {path} has no non-blank line; put one document per line")
    return docs                                             # names.txt: 29,910 names, 'emma' first


# ----------------------------------------------------------------------------------------------------
# 2. Tokenizer: one id per distinct character, plus BOS.
#
# In: documents (strings). Out: lists of integer token ids, the only thing the model reads. Each distinct
# character gets an id 0..n-1 in sorted order; one extra token, BOS ("beginning of sequence"), id n,
# marks where a document starts and also where it ends. For names that is a-z plus BOS: 27 tokens.

class Tokenizer:
    """Characters to ids and back.

    `chars` is the sorted list of distinct characters; character chars[i] has id i. One extra token,
    BOS = len(chars), marks both the start and the end of a document, so vocab_size = len(chars) + 1
    (27 for names: a-z and BOS).
    """

    def __init__(self, chars):
        self.chars = list(chars)                            # id -> character, e.g. chars[4] == 'e'
        self.BOS = len(self.chars)                          # the id after the last character: 26 for names
        self.vocab_size = len(self.chars) + 1               # every id the model can read or predict: 27
        self.ids = {ch: i for i, ch in enumerate(self.chars)}   # character -> id, the inverse of chars

    @classmethod
    def from_docs(cls, docs):
        """The tokenizer of a list of documents: every character that occurs in them, sorted."""
        return cls(sorted(set("".join(docs))))

    def encode(self, doc):
        """A document as token ids wrapped in BOS: 'emma' -> [BOS, 4, 12, 12, 0, BOS], len(doc) + 2 ids.

        Raises KeyError for a character outside the vocabulary."""
        # BOS at the front gives the first letter something to be predicted from; BOS at the back is the
        # target after the last letter, which is how the model learns when a name ends.
        return [self.BOS] + [self.ids[ch] for ch in doc] + [self.BOS]

    def decode(self, ids):
        """Token ids (without BOS) back to a string."""
        return "".join(self.chars[i] for i in ids)


# ----------------------------------------------------------------------------------------------------
# 3. Autograd: a scalar Value that remembers how it was made.
#
# In: arithmetic on floats. Out: the same arithmetic, plus a graph of which Value was computed from which,
# and for every edge of it the local derivative. backward() walks that graph from the loss down and,
# with the chain rule, gives every parameter its gradient: how much the loss would change per unit change
# of that parameter. A Value may have any number of children; the model's stages in section 4 are single
# Values with many children, which is what makes this engine fast while staying scalar.

class Value:
    """One float in a computation graph, with the gradient of the final loss with respect to it.

    A Value computed from others keeps them in groups, pairs (children, local_grads) of equal length: the
    Values it was computed from and its partial derivative with respect to each. a * b has one group,
    ((a, b), (b.data, a.data)); a dot product w . x has two, (w, x's floats) and (x, w's floats), the
    lists it already holds. A parameter has none. backward() combines them with the chain rule.
    """
    __slots__ = ("data", "grad", "_groups")
    grad_enabled = True     # False inside `with no_grad():`
    tape = None             # inside `with Tape() as tape:`, the list that every new computed Value joins

    def __init__(self, data, *groups):
        self.data = data                    # the float this Value holds
        self.grad = 0.0                     # d loss / d self, filled in by backward(); 0 until then
        if not Value.grad_enabled:          # remember nothing: no graph, nothing kept alive
            groups = ()
        elif groups and Value.tape is not None:
            Value.tape.append(self)         # made after its children: the tape is a topological order
        self._groups = groups               # ((children, d self / d each child), ...); () for a parameter

    # The primitive operations. Each line is a micrograd lesson: the value, then d(out)/d(each input).
    def __add__(self, other):                       # d(a+b)/da = 1, d(a+b)/db = 1
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, ((self, other), (1.0, 1.0)))

    def __mul__(self, other):                       # d(ab)/da = b, d(ab)/db = a
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, ((self, other), (other.data, self.data)))

    def __pow__(self, n):                           # d(a^n)/da = n a^(n-1), n a plain number
        return Value(self.data ** n, ((self,), (n * self.data ** (n - 1),)))

    def exp(self):                                  # d(e^a)/da = e^a
        e = math.exp(self.data)
        return Value(e, ((self,), (e,)))

    def log(self):                                  # d(ln a)/da = 1/a
        return Value(math.log(self.data), ((self,), (1.0 / self.data,)))

    def relu(self):                                 # 1 where a > 0, else 0
        return Value(max(0.0, self.data), ((self,), (float(self.data > 0),)))

    # Everything else is made of the above: a - b = a + (-1)b, a / b = a * b^-1.
    def __neg__(self): return self * -1.0
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def backward(self, order=None):
        """Fill in .grad of every Value this one depends on: d(self)/d(node), added to what is there.

        `order` is a topological order of the graph (a node after everything computed from it); a Tape
        passes its record. Without one, it is found by depth-first search with an explicit stack, never
        recursion, so a chain of 100,000 nodes is fine. Leaves (parameters and constants) have nothing to
        pass on and are left out of the order; their parents add to them.
        """
        if order is None:
            # Each stack entry is (node, children_done); a node is pushed twice, once to expand its
            # children and once, beneath them, to be emitted after them.
            order, visited, stack = [], set(), [(self, False)]
            while stack:
                node, children_done = stack.pop()
                if children_done:
                    order.append(node)      # everything node was computed from is already in order
                elif node not in visited:   # (reached again by another path: already expanded)
                    visited.add(node)
                    stack.append((node, True))
                    for children, _ in node._groups:
                        stack.extend((child, False) for child in children if child._groups)
        # The chain rule, from the output back: d self/d child = sum over parents of
        # d self/d parent * d parent/d child. Walking `order` backwards, every parent of a node is done
        # before the node itself, so node.grad is complete when it is passed on. `+=` sums the paths, and
        # also adds to whatever .grad already held: calling backward() on several losses accumulates
        # their gradients, which is what a batch relies on (section 7).
        self.grad = 1.0                                 # d self / d self
        for node in reversed(order):
            node_grad = node.grad                   # final: every node computed from node is done
            if node_grad == 0.0:                    # nothing to pass on (say, behind a ReLU that was off)
                continue
            for children, local_grads in node._groups:
                for child, local_grad in zip(children, local_grads):
                    child.grad += local_grad * node_grad     # chain rule, summed over every path


class Tape:
    """`with Tape() as tape:` records every Value computed inside the block in the order it is made, and
    tape.backward(loss) runs backward() along that record: a Value is made after the Values it comes
    from, so the order of making is already topological and the search (as costly as the chain rule
    itself) is skipped. Rules, each tested: only Values made inside the block are recorded, and those
    made before it (the parameters) are leaves to it; backward(loss) needs loss on the tape and consumes
    the record, so a second call raises; nodes loss does not depend on get zero gradient; a record never
    back-propagated is freed with its tape, as nothing global keeps it; tapes do not nest.
    """

    def __enter__(self):
        if Value.tape is not None:
            raise RuntimeError("a Tape is already recording; tapes do not nest")
        self.nodes = Value.tape = []
        return self

    def __exit__(self, *exc_info): Value.tape = None

    def backward(self, loss):
        if not any(node is loss for node in reversed(self.nodes)):
            raise RuntimeError("tape.backward(loss): loss is not on this tape (made outside the `with` "
                               "block, under no_grad(), or already back-propagated)")
        nodes, self.nodes = self.nodes, []          # once: the record is consumed
        loss.backward(nodes)


class no_grad:
    """`with no_grad():` computes values only: new Values keep no children, so no graph is built and
    backward() through them does nothing. For sampling and evaluation, which need no gradient."""

    def __enter__(self):
        self.previous, Value.grad_enabled = Value.grad_enabled, False

    def __exit__(self, *exc_info):
        Value.grad_enabled = self.previous


# ----------------------------------------------------------------------------------------------------
# 4. Model: a GPT-2-like transformer that reads one token at a time.
#
# In: one token id, its position, and the keys and values of the positions before it. Out: logits, a list
# of vocab_size Values, one unnormalised score per possible next token (softmax turns them into
# probabilities in section 5). Vectors are plain lists of Values: "x: n_embd" below means a list of
# n_embd Values, and a matrix is a list of rows.
#
# First the model's building blocks. Each is a single node with many children: it computes its value from
# plain floats and stores the derivative with respect to every child, so backward() treats it like any
# other Value. Built from + * exp instead (tests/atomic_reference.py does exactly that, and the tests hold
# these to it), the same function would make one node per arithmetic operation: for one training step
# on a five-letter name that is 39,443 nodes instead of 1,878 (`make bench`).

def dot(a, b):
    """sum_i a_i * b_i over two equal-length lists of Values -> one Value with 2n children.

    d/da_i = b_i and d/db_i = a_i: each side's local gradients are the other side's values, so the node
    keeps two groups, (a, b's floats) and (b, a's floats).
    """
    a_data, b_data = [x.data for x in a], [x.data for x in b]                  # n floats each
    return Value(sum(map(operator.mul, a_data, b_data)), (a, b_data), (b, a_data))


def total(xs):
    """sum_i x_i over a list of Values -> one Value; d/dx_i = 1 for every child."""
    return Value(sum(x.data for x in xs), (xs, [1.0] * len(xs)))


def linear(x, w, w_data):
    """Matrix-vector product: x (n_in Values), w (n_out rows of n_in Values) -> n_out Values. w_data is w
    as plain floats (GPT.weights), read once per document rather than once per position.

    Output i is the dot product of row i and x, one node with two groups: the row with x's floats
    (d/dw_ij = x_j) and x with the row's floats (d/dx_j = w_ij), lists shared by every output.
    """
    x_data = [xi.data for xi in x]                          # n_in floats, shared by every row
    return [Value(sum(map(operator.mul, row_data, x_data)), (row, x_data), (x, row_data))
            for row, row_data in zip(w, w_data)]            # one output per row: n_out in all


def softmax_data(zs, temperature=1.0):
    """Softmax of plain floats: exp((z_i - max z) / T) / sum_j exp((z_j - max z) / T), same length.
    Subtracting max z changes nothing mathematically and keeps exp from overflowing."""
    # exp(1000) overflows a float; exp(z - max z) is at most exp(0) = 1, and the shift cancels in the
    # ratio because exp(z_i - c) / sum_j exp(z_j - c) = exp(z_i) / sum_j exp(z_j) for any constant c.
    max_z = max(zs)
    exps = [math.exp((z - max_z) / temperature) for z in zs]  # all in (0, 1], the largest exactly 1
    s = sum(exps)
    return [e / s for e in exps]                            # non-negative, sums to 1


def softmax(logits, temperature=1.0):
    """Probabilities from a list of n logit Values -> n Values, each with all n logits as children.

    p_i = exp(z_i / T) / sum_j exp(z_j / T), and dp_i/dz_j = p_i * ([i == j] - p_j) / T.
    """
    probs = softmax_data([z.data for z in logits], temperature)       # n floats summing to 1
    return [Value(p_i, (logits, [p_i * ((i == j) - p_j) / temperature for j, p_j in enumerate(probs)]))
            for i, p_i in enumerate(probs)]                           # every p_i depends on every z_j


def rmsnorm(x):
    """RMSNorm without a learned gain (Zhang & Sennrich 2019): x_i * s with s = (mean_j x_j^2 + 1e-5)^-1/2,
    n Values in and out.

    The scale s is one node with the n inputs as children: ds/dx_j = -s^3 * x_j / n.
    """
    # Rescales the vector to a root-mean-square of 1, whatever its size was: each layer then reads inputs
    # of a steady scale, which keeps training stable. Unlike LayerNorm it does not subtract the mean.
    n = len(x)
    x_data = [xi.data for xi in x]
    s = (sum(v * v for v in x_data) / n + 1e-5) ** -0.5     # 1 / rms(x); 1e-5 guards against 0
    scale = Value(s, (x, [-s * s * s * v / n for v in x_data]))
    return [xi * scale for xi in x]                         # n Values with mean(x_i^2) = 1


class GPT:
    """The model's parameters and its forward pass for one position.

    Parameters (each a list of rows of Values, initialised from a Gaussian with std 0.08):
      wte (vocab_size x n_embd), wpe (block_size x n_embd), lm_head (vocab_size x n_embd), and per layer i
      layer{i}.attn_wq, .attn_wk, .attn_wv, .attn_wo (n_embd x n_embd), layer{i}.mlp_fc1
      (4*n_embd x n_embd), layer{i}.mlp_fc2 (n_embd x 4*n_embd). No biases, no norm gains: 4,064 numbers
      with the defaults and 27 tokens.
    Raises ValueError if n_embd is not divisible by n_head.
    """

    def __init__(self, vocab_size, n_embd=16, n_head=4, n_layer=1, block_size=8, rng=None, std=0.08):
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.vocab_size, self.n_embd, self.n_head = vocab_size, n_embd, n_head
        self.n_layer, self.block_size = n_layer, block_size
        self.head_dim = n_embd // n_head                    # each head reads its own slice: 16 / 4 = 4
        rng = rng or random.Random(0)

        # Small random weights: with std 0.08 every logit starts close to 0, so softmax starts close to
        # uniform and the first loss close to ln(vocab_size) (section 5). Larger weights would make the
        # untrained model confidently wrong and the first loss higher.
        def matrix(n_out, n_in):
            return [[Value(rng.gauss(0.0, std)) for _ in range(n_in)] for _ in range(n_out)]

        self.state_dict = {"wte": matrix(vocab_size, n_embd),       # token embeddings: a row per token
                           "wpe": matrix(block_size, n_embd),       # position embeddings: a row per position
                           "lm_head": matrix(vocab_size, n_embd)}   # n_embd -> one logit per token
        for i in range(n_layer):
            self.state_dict[f"layer{i}.attn_wq"] = matrix(n_embd, n_embd)     # x -> query
            self.state_dict[f"layer{i}.attn_wk"] = matrix(n_embd, n_embd)     # x -> key
            self.state_dict[f"layer{i}.attn_wv"] = matrix(n_embd, n_embd)     # x -> value
            self.state_dict[f"layer{i}.attn_wo"] = matrix(n_embd, n_embd)     # heads -> residual stream
            self.state_dict[f"layer{i}.mlp_fc1"] = matrix(4 * n_embd, n_embd) # widen 4x: 16 -> 64
            self.state_dict[f"layer{i}.mlp_fc2"] = matrix(n_embd, 4 * n_embd) # and back: 64 -> 16
        # Every parameter in one flat list, in state_dict order: 432 + 128 + 432 + 4*256 + 1024 + 1024
        # = 4,064 numbers with the defaults. The optimizer and checkpoints walk this list.
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]

    def weights(self):
        """Every matrix as plain floats, {name: rows}; they change only in Adam's step, so can be shared."""
        return {name: [[p.data for p in row] for row in mat] for name, mat in self.state_dict.items()}

    def __call__(self, token_id, pos_id, keys, values, weights=None, attention=None):
        """Logits for the token after `token_id` at position `pos_id`: a list of vocab_size Values.

        keys[i] and values[i] hold layer i's key and value vectors (n_embd Values each) of positions
        0..pos_id-1; this call appends position pos_id's, so attention sees exactly the past and present.
        weights is self.weights(), read once by a caller that runs many positions (else read here). If
        attention is a list, each head's attention weights (pos_id + 1 floats) are appended to it, layer
        by layer (the trace of `--explain`).
        """
        sd, w = self.state_dict, weights or self.weights()
        project = lambda x, name: linear(x, sd[name], w[name])     # x times the matrix `name`: a row each
        # What the token is plus where it is: x, n_embd Values, the residual stream of this position.
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
        x = rmsnorm(x)                                      # x: n_embd, rms 1
        for i in range(self.n_layer):
            # Attention: this position looks back at every position so far and takes a weighted mix of
            # what they offer. The residual connection keeps x and adds the result to it, so each layer
            # only has to learn a correction and the gradient has a direct path back to the input.
            x_residual = x                                  # n_embd, kept to add back below
            x = rmsnorm(x)
            q = project(x, f"layer{i}.attn_wq")             # query, n_embd: what this position looks for
            # The KV list: this position's key (what it offers to be found by) and value (what it hands
            # over) join those of the positions before it. Positions to come are not in the list yet, so
            # attention cannot see the future: the causal mask is implicit, nothing needs masking. A
            # tensor framework computes all positions at once and masks the future out; here positions
            # are walked one by one and the list grows, which is why training and sampling share gpt().
            keys[i].append(project(x, f"layer{i}.attn_wk"))           # keys[i]: pos_id + 1 lists of n_embd
            values[i].append(project(x, f"layer{i}.attn_wv"))         # values[i]: the same shape
            x_attn = []                                     # the heads' outputs, concatenated: n_embd
            for h in range(self.n_head):                    # each head attends on its own slice of head_dim
                lo, hi = h * self.head_dim, (h + 1) * self.head_dim
                q_h = q[lo:hi]                              # head_dim Values
                # one score per past position t: how well key t matches the query (pos_id + 1 scores)
                attn_logits = [dot(q_h, k[lo:hi]) for k in keys[i]]
                # scores -> weights summing to 1 over the positions; dividing by sqrt(head_dim) (a
                # temperature) keeps the dot products' spread from growing with the head's width
                attn_weights = softmax(attn_logits, temperature=math.sqrt(self.head_dim))
                if attention is not None:
                    attention.append([a.data for a in attn_weights])
                # the head's output: the weighted mix of the values, head_dim Values
                x_attn += [dot(attn_weights, [v[j] for v in values[i]]) for j in range(lo, hi)]
            x = project(x_attn, f"layer{i}.attn_wo")        # mix the heads: n_embd
            x = [a + b for a, b in zip(x, x_residual)]      # residual: x + attention(x)
            # MLP: the same small network at every position, 4x wider in the middle, ReLU between.
            x_residual = x
            x = rmsnorm(x)
            x = [h.relu() for h in project(x, f"layer{i}.mlp_fc1")]     # 4 * n_embd, negatives -> 0
            x = project(x, f"layer{i}.mlp_fc2")                         # back to n_embd
            x = [a + b for a, b in zip(x, x_residual)]      # residual: x + mlp(x)
        # One score per vocabulary entry for the next token: vocab_size logits, one distribution's worth.
        return project(x, "lm_head")


# ----------------------------------------------------------------------------------------------------
# 5. Loss: how surprised the model is by each next token of a document.
#
# In: a document's token ids. Out: one cross-entropy per position, in nats. The model reads
# tokens[:-1] and is scored on tokens[1:]: position t sees tokens 0..t and must predict token t + 1. A
# perfect model scores 0; a uniform guess over vocab_size tokens scores ln(vocab_size), ln 27 = 3.30 for
# names, and the small initial weights (section 4) make an untrained model score close to that.

def cross_entropy(logits, target_id):
    """Minus the log-probability that softmax(logits) gives the target: one Value, in nats.

    With p = softmax(z): loss = -log p_target = log sum_j exp(z_j) - z_target, and d loss/dz_j =
    p_j - [j == target]: the probability given to each token, minus 1 at the token that came.
    """
    zs = [z.data for z in logits]                           # vocab_size floats
    probs = softmax_data(zs)                                # the model's distribution over the next token
    # -log p_target, computed as log-sum-exp minus the target's logit rather than as log(probs[target]):
    # the same number, but it never takes the log of a probability that rounded to 0.
    max_z = max(zs)
    log_sum_exp = max_z + math.log(sum(math.exp(z - max_z) for z in zs))
    # The gradient says: push every logit down by the probability it got, and the target's up by 1.
    return Value(log_sum_exp - zs[target_id], (logits, [p - (j == target_id) for j, p in enumerate(probs)]))


def document_losses(gpt, tokens):
    """Cross-entropy at each position of one document: a list of n Values (nats), n = min(block_size,
    len(tokens) - 1). Position t reads tokens[t] and is scored on tokens[t + 1].

    For 'emma' at initialisation (default seed and settings; `--explain emma` prints this table):
      pos  input  target  loss
        0  BOS    e       2.7695
        1  e      m       3.7314
        2  m      m       3.2050
        3  m      a       2.9959
        4  a      BOS     3.0988     mean 3.1601, beside ln 27 = 3.2958
    """
    # A document longer than block_size is cut: there are only block_size position embeddings.
    n = min(gpt.block_size, len(tokens) - 1)
    # Fresh KV lists: one list of keys and one of values per layer, empty before position 0.
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    weights = gpt.weights()                                 # the weights as floats, once for all n positions
    losses = []
    for pos_id in range(n):
        # The next-token shift: input tokens[t], target tokens[t + 1]. This is teacher forcing: the
        # model always reads the real previous token, never its own guess, so every position of the
        # document is a training example from one pass.
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = gpt(token_id, pos_id, keys, values, weights)   # vocab_size logits: one distribution
        losses.append(cross_entropy(logits, target_id))     # how surprised, in nats
    return losses                                           # n Values


def document_loss(gpt, tokens):
    """The mean of document_losses(): one Value, in nats per predicted token."""
    losses = document_losses(gpt, tokens)
    return total(losses) / len(losses)


# ----------------------------------------------------------------------------------------------------
# 6. Optimizer: Adam, and a learning rate that warms up, then decays along a cosine.
#
# In: every parameter's gradient. Out: every parameter moved a small step downhill, the step's size set by
# the learning rate of this step. Gradients say which way is downhill for one batch; Adam smooths them
# over steps and scales each parameter's step by how large its gradients have been.

def lr_schedule(step, num_steps, lr, warmup_steps=0, min_lr=0.0):
    """Learning rate of optimizer step `step` (0-based) of `num_steps`.

    Linear warmup over the first warmup_steps steps, lr * (step + 1) / warmup_steps; then cosine decay
    (Loshchilov & Hutter 2016) from lr to min_lr: min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2,
    progress = (step - warmup_steps) / (num_steps - warmup_steps). With no warmup and min_lr 0 this is
    lr * (1 + cos(pi * step / num_steps)) / 2.
    """
    # Warmup: the first updates are taken from random weights and Adam's barely-started averages, so
    # they are kept small and grow to lr. Decay: near the end, small steps settle into a minimum
    # instead of bouncing around it. The schedule counts optimizer steps, not documents.
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, num_steps - warmup_steps)     # 0 -> 1 over the decay
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Adam:
    """Adam (Kingma & Ba 2014) over a list of parameter Values, with the constants microgpt trains with.

    m and v are the running means of each parameter's gradient and squared gradient (one float per
    parameter); t counts the updates made.
    """

    def __init__(self, params, beta1=0.85, beta2=0.99, eps=1e-8):
        self.params, self.beta1, self.beta2, self.eps = params, beta1, beta2, eps
        self.m = [0.0] * len(params)        # first moment: running mean of g, one float per parameter
        self.v = [0.0] * len(params)        # second moment: running mean of g^2, one float per parameter
        self.t = 0                          # updates made so far

    def step(self, lr):
        """Move every parameter against its bias-corrected gradient mean, then reset its grad to 0."""
        self.t += 1
        b1, b2, eps = self.beta1, self.beta2, self.eps
        # m and v start at 0, so early on they are too small by a factor (1 - beta^t); dividing by it
        # (bias correction) makes the first steps full-sized instead of timid. Both factors go to 1.
        bias1, bias2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        grads = [p.grad for p in self.params]
        self.m = [b1 * m + (1.0 - b1) * g for m, g in zip(self.m, grads)]      # running mean of g
        self.v = [b2 * v + (1.0 - b2) * g * g for v, g in zip(self.v, grads)]  # running mean of g^2
        for p, m, v in zip(self.params, self.m, self.v):
            # step = lr * mean gradient / its typical size: about lr per parameter whatever the scale of
            # its gradient, smaller where gradients disagree from step to step.
            p.data -= lr * (m / bias1) / (math.sqrt(v / bias2) + eps)
            # Reset only now, after the update: backward() adds into .grad, so a gradient left in place
            # would be added to the next step's. Reset any earlier, between backward() and this line,
            # and the update would see zeros and not move at all.
            p.grad = 0.0


# ----------------------------------------------------------------------------------------------------
# 7. Training: one optimizer step per batch of documents, cycling through the shuffled dataset.
#
# In: the model, the optimizer, the documents. Out: trained parameters. Each step is the whole algorithm
# once: forward (sections 4 and 5) to a loss, backward (section 3) to gradients, update (section 6).

def grad_norm(params):
    """Global L2 norm of the gradients, sqrt(sum of p.grad^2) over all parameters (a float)."""
    return math.sqrt(sum(p.grad * p.grad for p in params))


def train_step(gpt, optimizer, batch, lr, grad_clip=None):
    """One optimizer step on a batch: a list of documents, each a list of token ids with BOS at both ends.

    The loss is the mean cross-entropy over every predicted token of the batch. Each document's graph is
    built, back-propagated and dropped in turn, its summed loss divided by the batch's token count, so
    the gradients that add up in p.grad are those of the mean (gradient accumulation). If grad_clip is
    given, gradients are scaled down to that global norm. Then Adam updates every parameter.
    Returns (loss in nats per token, gradient norm before clipping).
    Raises FloatingPointError, before any parameter changes, if the loss or the gradient is not finite.
    """
    # The mean, not the sum: summed, a batch of long names would give a bigger loss and bigger gradients
    # than one of short names, and the step size would depend on document length and batch size.
    n_tokens = sum(min(gpt.block_size, len(tokens) - 1) for tokens in batch)
    loss = 0.0
    # The cyclic garbage collector is paused (10-20% faster): a node refers only to the Values it was made
    # from, so the graph has no cycle and reference counting frees it; the collector would find nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for tokens in batch:
            # Gradient accumulation: one document's graph at a time, so memory holds one graph, not the
            # batch's; backward adds into p.grad, and dividing each document's sum by the batch's token
            # count makes the total exactly the gradient of the batch mean. One update follows, below.
            with Tape() as tape:                            # forward, recording each node as it is made
                doc_loss = total(document_losses(gpt, tokens)) / n_tokens
            tape.backward(doc_loss)                         # backward along the record, newest first
            loss += doc_loss.data
        norm = grad_norm(optimizer.params)                  # how big this step's gradient is, all in all
        if not (math.isfinite(loss) and math.isfinite(norm)):
            for p in optimizer.params:
                p.grad = 0.0
            raise FloatingPointError(f"loss {loss}, gradient norm {norm}")
        if grad_clip is not None and norm > grad_clip:      # a rare huge gradient is cut to size
            for p in optimizer.params:
                p.grad *= grad_clip / norm
        optimizer.step(lr)                                  # update, then grads reset to 0
    finally:
        if gc_was_enabled:
            gc.enable()
    return loss, norm


def train(gpt, optimizer, tokenizer, docs, num_steps, lr, warmup_steps=0, min_lr=0.0, batch_size=1,
          grad_clip=None, start_step=0, on_step=None):
    """Run optimizer steps start_step .. num_steps - 1 and return their losses (floats, nats per token).

    Step i trains on batch_size documents starting at docs[i * batch_size % len(docs)]. After each step,
    on_step(step, loss, lr, grad_norm, batch) is called if given; a true return value stops training.
    """
    losses = []
    for step in range(start_step, num_steps):
        first = step * batch_size                           # the dataset is walked in order, and wraps
        batch = [tokenizer.encode(docs[(first + j) % len(docs)]) for j in range(batch_size)]
        lr_t = lr_schedule(step, num_steps, lr, warmup_steps, min_lr)
        loss, norm = train_step(gpt, optimizer, batch, lr_t, grad_clip)
        losses.append(loss)
        if on_step is not None and on_step(step, loss, lr_t, norm, batch):
            break
    return losses


# ----------------------------------------------------------------------------------------------------
# 8. Sampling: new documents, one token at a time, fed back through the KV lists.
#
# In: the trained model and a random generator. Out: a new document. This is KV-cache decoding, the
# other regime from training: there is no real next token to read, so each sampled token is fed back in
# as the next input, and the keys and values of the positions so far are kept in the KV lists rather
# than recomputed. Each call of gpt() does one position's work.

def next_token_probs(zs, temperature, top_k=None):
    """The distribution a next token is drawn from: logits zs (vocab_size floats) -> probabilities."""
    # top-k: every token outside the k most likely gets probability 0, never a rare odd pick.
    if top_k is not None and top_k < len(zs):
        kth_largest = sorted(zs, reverse=True)[top_k - 1]
        zs = [z if z >= kth_largest else -math.inf for z in zs]
    # Temperature divides the logits: below 1 sharpens the distribution towards the likeliest tokens
    # (safer, more common names), above 1 flattens it (more surprising ones).
    return softmax_data(zs, temperature)


def sample(gpt, tokenizer, rng, temperature=0.5, top_k=None, prefix=""):
    """Generate one document and return it as a string (the prefix included, BOS not).

    Starts from BOS followed by the prefix's tokens; from then on samples each next token from
    softmax(logits / temperature), keeping only the top_k largest logits if top_k is given, and stops at
    BOS or after block_size positions. Raises KeyError for a prefix character outside the vocabulary.
    """
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]   # empty KV lists
    token_ids = [tokenizer.BOS] + [tokenizer.ids[ch] for ch in prefix]  # BOS says: a document starts
    weights = gpt.weights()                                 # read once for every position
    with no_grad():                                         # no gradient needed, so no graph is built
        for pos_id in range(gpt.block_size):
            logits = gpt(token_ids[pos_id], pos_id, keys, values, weights)   # vocab_size logits
            if pos_id + 1 < len(token_ids):
                continue                                    # still reading the prefix: next token given
            probs = next_token_probs([z.data for z in logits], temperature, top_k)
            token_id = rng.choices(range(gpt.vocab_size), weights=probs)[0]   # draw one token id
            if token_id == tokenizer.BOS:
                break                                       # the model says the document ends here
            token_ids.append(token_id)                      # fed back in as the next position's input
    return tokenizer.decode(token_ids[1:])


# ====================================================================================================
# Tooling: settings, validation, metrics, checkpoints, looking inside, and the command line.
#
# The algorithm ended with sampling, above. What follows serves the person running it: settings checked
# before any work, a validation split, metrics and a loss curve, checkpoints that resume exactly, a
# look inside a model, and the command line. None of it changes what the model computes.
#
# Settings first: every option of a run, its default, and the rule its value keeps. What fixes the model,
# the data split and the optimisation: a checkpoint keeps them, and --resume refuses another model size or
# split, which would not be the same run.
DEFAULTS = {"seed": 42, "val_fraction": 0.1, "n_embd": 16, "n_head": 4, "n_layer": 1, "block_size": 8,
            "steps": 500, "lr": 0.01, "warmup_steps": 0, "min_lr": 0.0, "batch_size": 1, "grad_clip": None}
# How a run is watched and sampled. A checkpoint keeps these too, so that --resume PATH alone goes on as
# the run was going; an option given on the command line wins. print_every None: chosen at the start.
WATCH_DEFAULTS = {"eval_every": 100, "eval_docs": 100, "eval_samples": 5, "print_every": None, "log": None,
                  "save": None, "save_every": None, "samples": 20, "temperature": 0.5, "top_k": None, "prefix": ""}
MODEL_KEYS = ("n_embd", "n_head", "n_layer", "block_size")   # fixed by a checkpoint's parameters
SPLIT_KEYS = ("seed", "val_fraction")                         # fixed by a checkpoint's data split
SAMPLING_KEYS = ("samples", "temperature", "top_k", "prefix")  # what --load takes from a checkpoint
CHECKPOINT_FORMAT = "microgpt checkpoint 2"

# The rule each setting keeps: (type, test, what the test asks for). A setting whose default is None may
# also be None. A whole number is accepted where a float is asked for.
AT_LEAST_1, AT_LEAST_0, ABOVE_0 = (lambda v: v >= 1, "at least 1"), (lambda v: v >= 0, "0 or more"), \
    (lambda v: v > 0, "greater than 0")
RULES = {
    "seed": (int, lambda v: True, ""), "val_fraction": (float, lambda v: 0 <= v < 1, "at least 0 and less than 1"),
    "n_embd": (int, *AT_LEAST_1), "n_head": (int, *AT_LEAST_1), "n_layer": (int, *AT_LEAST_1),
    "block_size": (int, lambda v: v >= 2, "at least 2"), "steps": (int, *AT_LEAST_0), "lr": (float, *ABOVE_0),
    "warmup_steps": (int, *AT_LEAST_0), "min_lr": (float, *AT_LEAST_0), "batch_size": (int, *AT_LEAST_1),
    "grad_clip": (float, *ABOVE_0), "eval_every": (int, *AT_LEAST_1), "eval_docs": (int, *AT_LEAST_0),
    "eval_samples": (int, lambda v: 0 <= v <= 100, "between 0 and 100"),   # drawn inside a step: keep it short
    "print_every": (int, *AT_LEAST_1), "log": (str, bool, "a file name"), "save": (str, bool, "a file name"),
    "save_every": (int, *AT_LEAST_1), "samples": (int, *AT_LEAST_0), "temperature": (float, *ABOVE_0),
    "top_k": (int, *AT_LEAST_1), "prefix": (str, lambda v: True, ""), "data": (str, bool, "a file name"),
}
NULLABLE = {key for key, value in {**DEFAULTS, **WATCH_DEFAULTS}.items() if value is None}
KINDS = {int: "a whole number", float: "a finite number", str: "a string"}
JSON_KINDS = {dict: "an object", list: "a list", int: "a whole number"}


def check_value(key, value, name):
    """`value` if it keeps the rule of setting `key` (as a float where a float is asked for), else DataError
    calling the setting `name` (an option, or a checkpoint's field) and saying what it must be."""
    kind, test, rule = RULES[key]
    if value is None and key in NULLABLE:
        return None
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind or (kind is float and not math.isfinite(value)):  # bool is not int here
        raise DataError(f"{name} must be {KINDS[kind]}, got {value!r}")
    if not test(value):
        raise DataError(f"{name} must be {rule}, got {value}")
    return value


def check_settings(settings, name):
    """Every setting checked by its rule and against the others; returns them with numbers of the right
    type. `name(key)` is how errors call a setting. Raises DataError naming the first problem."""
    s = {key: check_value(key, value, name(key)) for key, value in settings.items()}
    if s["n_embd"] % s["n_head"]:
        raise DataError(f"{name('n_embd')} {s['n_embd']} must be divisible by {name('n_head')} {s['n_head']}")
    if s["min_lr"] > s["lr"]:
        raise DataError(f"{name('min_lr')} {s['min_lr']} is above {name('lr')} {s['lr']}; the learning rate "
                        f"decays from lr down to min_lr, so min_lr must not be larger")
    if s["warmup_steps"] > s["steps"]:
        raise DataError(f"{name('warmup_steps')} {s['warmup_steps']} is more than {name('steps')} "
                        f"{s['steps']}; warm up for at most the whole run")
    if s.get("save_every") and not s.get("save"):
        raise DataError(f"{name('save_every')} needs {name('save')} PATH")
    return s


def parameter_shapes(vocab_size, n_embd, n_layer, block_size):
    """{name: (rows, columns)} of every parameter matrix GPT(...) makes, in state_dict order."""
    shapes = {"wte": (vocab_size, n_embd), "wpe": (block_size, n_embd), "lm_head": (vocab_size, n_embd)}
    for i in range(n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (n_embd, n_embd)
        shapes[f"layer{i}.mlp_fc1"], shapes[f"layer{i}.mlp_fc2"] = (4 * n_embd, n_embd), (n_embd, 4 * n_embd)
    return shapes


def physical_memory():
    """Bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(vocab_size, settings, training):
    """Raise DataError, before anything is allocated, if the model (and, to train, one document's graph
    and one batch) would need more memory than the machine has."""
    n_params = sum(r * c for r, c in parameter_shapes(vocab_size, *(settings[key] for key in MODEL_KEYS
                                                                    if key != "n_head")).values())
    # Measured with tracemalloc: about 185 bytes per parameter (its Value and float, and Adam's m and v);
    # a training step's graph adds about 60 per parameter and position, and a batch ~200 per document.
    need = n_params * 200
    if training:
        need += n_params * 60 * settings["block_size"] + settings["batch_size"] * 200
    have = physical_memory()
    if have and need > have:
        raise DataError(f"a model of n_embd {settings['n_embd']}, n_layer {settings['n_layer']} and block_size "
                        f"{settings['block_size']} (batch {settings['batch_size']}) has {n_params:,} parameters and "
                        f"needs about {need / 1e9:,.1f} GB here; this machine has {have / 1e9:,.1f} GB; choose a "
                        f"smaller model or batch")


def split_docs(docs, val_fraction):
    """(training docs, validation docs): the first round(len(docs) * val_fraction) documents of the
    (already shuffled) list are held out for validation. Raises DataError if none is left to train on."""
    n_val = int(len(docs) * val_fraction + 0.5)
    if n_val >= len(docs):
        raise DataError(f"--val-fraction {val_fraction} of {len(docs)} documents leaves none to train on; "
                        f"lower --val-fraction or add documents")
    return docs[n_val:], docs[:n_val]


def evaluate(gpt, tokenizer, docs):
    """Mean negative log-likelihood per predicted token over `docs`, in nats, with no graph built.
    Returns (loss, number of predicted tokens).

    Held-out documents were never trained on, so this is the loss on names the model has not seen: while
    it falls with the training loss the model is learning what names are like; when it levels off or
    rises while the training loss keeps falling, the model has started memorising its training names.
    Its exponential is the perplexity (Monitor.evaluation): exp(2.3) = 10 means the model is as unsure
    as a uniform choice among 10 tokens, against 27 for a uniform guess over every token.
    """
    loss_sum, n_tokens = 0.0, 0
    with no_grad():
        for doc in docs:
            losses = document_losses(gpt, tokenizer.encode(doc))
            loss_sum += sum(loss.data for loss in losses)
            n_tokens += len(losses)
    return loss_sum / n_tokens, n_tokens


def perplexity(loss):
    """exp(loss): the number of equally likely tokens that would be as uncertain; inf past float's range."""
    return math.exp(loss) if loss < 709.0 else math.inf


# ---- checkpoints: JSON data (never pickle), written atomically, checked whole before use

def temporary_path(path):
    """The hidden file beside `path` that a save writes before renaming it into place: one per path."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.tmp")


def write_atomically(path, text):
    """Write text to path through a temporary file beside it and a rename, so that a crash at any moment
    leaves either the old file or the new one, never half of one. The temporary file has one name per
    path, so a save killed half-way leaves nothing that the next save does not overwrite and rename.
    (Two runs saving to one path at the same time are not supported.) Raises DataError if it cannot."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())                            # the bytes are on disk before the rename
        os.replace(tmp, path)                               # atomic: readers see the old file or the new
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise DataError(f"cannot write {path}: {e.strerror}")
        raise


def check_writable(path, option):
    """Raise DataError now, before any training, if `path` cannot be written as a regular file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{option} {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{option} {path} is a folder; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise DataError(f"{option} {path} is not a regular file (a pipe or a device?); give a file name")
    try:
        with open(temporary_path(path), "w"):
            pass
        os.unlink(temporary_path(path))
    except OSError as e:
        raise DataError(f"{option} {path}: cannot write in {folder} ({e.strerror})")


def save_checkpoint(path, gpt, tokenizer, optimizer, rng, step, settings, metrics):
    """Save what resuming needs to continue exactly: the configuration and settings, the vocabulary,
    every parameter, Adam's moments and step count, the step, the random generator and the metrics."""
    params = {name: [[p.data for p in row] for row in mat] for name, mat in gpt.state_dict.items()}
    write_checkpoint(path, tokenizer.chars, settings, step, params, (optimizer.t, optimizer.m, optimizer.v),
                     rng.getstate(), metrics)


def write_checkpoint(path, chars, settings, step, params, adam, rng_state, metrics):
    """The checkpoint file from plain data: params {name: rows of floats}, adam (t, m, v) with m and v one
    float per parameter in state_dict order. microgpt_torch.py saves through this too."""
    # The parameters alone give back the model, not the run. Resuming exactly also needs Adam's m, v
    # and t (its next steps depend on them), the step (the learning rate and which documents come
    # next), the settings that fixed the data's order and split (seed, val_fraction, data; the order is
    # shuffled again from the seed), the vocabulary (which id is which character) and the random
    # generator's state (the samples to come). JSON keeps every float exactly.
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": {"vocab_size": len(chars) + 1, **{key: settings[key] for key in MODEL_KEYS}},
        "chars": chars,
        "settings": settings,
        "step": step,
        "params": params,
        "adam": {"t": adam[0], "m": adam[1], "v": adam[2]},
        "rng_state": rng_state,
        "metrics": metrics,
    }
    write_atomically(path, json.dumps(state))


def load_checkpoint(path):
    """Read a checkpoint and check all of it (validate_checkpoint). Returns the checked dict. Raises
    DataError if the file cannot be read, is not JSON (a truncated file is not), or is not a whole, valid
    microgpt checkpoint."""
    text = read_text(path, "checkpoint", "give a checkpoint saved with --save")
    try:
        state = json.loads(text)
    except ValueError as e:
        raise DataError(f"checkpoint {path} is not valid JSON, perhaps truncated ({e})")
    except RecursionError:
        raise DataError(f"checkpoint {path} is JSON nested too deeply to be a checkpoint")
    return validate_checkpoint(state, path)


def validate_checkpoint(state, path):
    """Check a checkpoint's whole content once, before anything is built from it: every field present, of
    the right type and range, finite, of the shape the configuration gives, and consistent with the rest.
    Returns it with numbers as floats and the random state as random.setstate() takes it. Raises
    DataError naming the first problem found."""
    whole = lambda x: type(x) is int                                       # bool is not a count
    finite = lambda x: type(x) in (int, float) and math.isfinite(x)
    numbers = lambda xs, n: type(xs) is list and len(xs) == n and all(map(finite, xs))

    def need(ok, problem):
        if not ok:
            raise DataError(f"checkpoint {path} is damaged: {problem}")

    def get(obj, key, where, kind=dict):                     # obj[key], which must be of type `kind`
        need(type(obj) is dict and key in obj, f"{where}{key} is missing")
        if kind is not None:
            need(type(obj[key]) is kind, f"{where}{key} is not {JSON_KINDS[kind]}")
        return obj[key]

    if type(state) is not dict or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path} is not a microgpt checkpoint ({CHECKPOINT_FORMAT}); give one saved with --save")
    saved = get(state, "settings", "")
    for key in list(DEFAULTS) + ["data"]:
        get(saved, key, "settings.", None)
    try:
        settings = check_settings({key: saved.get(key, default) for key, default in
                                   {**DEFAULTS, **WATCH_DEFAULTS, "data": None}.items()}, "settings.{}".format)
    except DataError as e:
        raise DataError(f"checkpoint {path} is damaged: {e}")
    config = get(state, "config", "")
    for key in MODEL_KEYS:
        need(get(config, key, "config.", None) == settings[key] and whole(config[key]),
             f"config.{key} {config[key]!r} is not settings.{key} {settings[key]}")
    vocab_size, chars = get(config, "vocab_size", "config.", int), get(state, "chars", "", list)
    need(vocab_size == len(chars) + 1 >= 2, f"config.vocab_size {vocab_size} is not 1 + {len(chars)} characters")
    need(all(type(ch) is str and len(ch) == 1 for ch in chars) and len(set(chars)) == len(chars),
         "chars are not distinct single characters")
    step = get(state, "step", "", int)
    need(0 <= step <= settings["steps"], f"step {step} is not between 0 and settings.steps {settings['steps']}")
    shapes = parameter_shapes(vocab_size, *(settings[key] for key in MODEL_KEYS if key != "n_head"))
    params = get(state, "params", "")
    need(set(params) == set(shapes), f"params are not {', '.join(shapes)}")
    for name, (rows, cols) in shapes.items():
        mat = params[name]
        need(type(mat) is list and len(mat) == rows and all(numbers(row, cols) for row in mat),
             f"params.{name} is not {rows} rows of {cols} finite numbers")
    n_params = sum(rows * cols for rows, cols in shapes.values())
    adam = get(state, "adam", "")
    need(get(adam, "t", "adam.", int) == step, f"adam.t {adam['t']} is not step {step}")
    need(numbers(get(adam, "m", "adam.", list), n_params) and numbers(get(adam, "v", "adam.", list), n_params)
         and min(adam["v"], default=0) >= 0, f"adam.m and adam.v are not {n_params} finite numbers (v >= 0)")
    rng_state = get(state, "rng_state", "", list)
    need(len(rng_state) == 3 and rng_state[0] == 3 and whole(rng_state[0]) and type(rng_state[1]) is list
         and len(rng_state[1]) == 625 and all(whole(x) and 0 <= x < 2 ** 32 for x in rng_state[1])
         and rng_state[1][-1] <= 624 and (rng_state[2] is None or finite(rng_state[2])),
         "rng_state is not a state of random.Random")
    metrics = get(state, "metrics", "")
    train, evals = get(metrics, "train", "metrics.", list), get(metrics, "eval", "metrics.", list)
    need(len(train) == step and all(type(row) is list and len(row) == 8 and numbers(row[:6], 6) and min(row[:6]) >= 0
                                    and row[0] == i + 1 and whole(row[0]) and row[7] in (0, 1) and whole(row[7])
                                    and (row[6] is None or (finite(row[6]) and row[6] >= 0))
                                    for i, row in enumerate(train)),
         f"metrics.train is not {step} rows of [step, loss, lr, grad_norm, tokens_per_sec, elapsed_s, "
         f"update_ratio, clipped]")
    need(all(type(row) is list and len(row) == 4 and whole(row[0]) and finite(row[1]) and finite(row[3])
             and row[3] >= 0
             and (row[2] is None or finite(row[2])) for row in evals)
         and [row[0] for row in evals] == sorted({row[0] for row in evals})
         and all(0 < row[0] <= step for row in evals),
         "metrics.eval is not rows of [step, train_loss, val_loss, seconds] in order")
    return dict(state, settings=settings, params={name: [list(map(float, row)) for row in params[name]]
                                                  for name in shapes},
                adam={"t": step, "m": list(map(float, adam["m"])), "v": list(map(float, adam["v"]))},
                rng_state=(3, tuple(rng_state[1]), rng_state[2]))


def restore_checkpoint(state, gpt, optimizer, rng, resume):
    """Put a checked checkpoint's parameters, random generator and Adam's state in place. Returns (step,
    metrics) to continue from: the checkpoint's when resuming, else a fresh start."""
    for name, mat in gpt.state_dict.items():
        for row, saved_row in zip(mat, state["params"][name]):
            for p, x in zip(row, saved_row):
                p.data = x
    rng.setstate(state["rng_state"])
    optimizer.t, optimizer.m, optimizer.v = state["adam"]["t"], state["adam"]["m"], state["adam"]["v"]
    if not resume:
        return 0, {"train": [], "eval": []}
    return state["step"], state["metrics"]


# ---- what the person running training sees

def format_seconds(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Console:
    """Permanent lines go through `log`; on a terminal, a status line rewrites itself in between."""

    def __init__(self, log):
        self.log = log
        self.tty = log is print and sys.stdout.isatty()
        self.status_shown = False

    def line(self, text):
        if self.status_shown:
            sys.stdout.write("\r\x1b[K")
            self.status_shown = False
        self.log(text)

    def status(self, text):
        if self.tty:
            sys.stdout.write("\r\x1b[K" + text)
            sys.stdout.flush()
            self.status_shown = True


CSV_COLUMNS = ["kind", "step", "loss", "lr", "grad_norm", "tokens_per_sec", "elapsed_s", "update_ratio",
               "clipped", "grad_clip", "train_loss", "val_loss", "val_ppl"]


class Monitor:
    """Watches training through train()'s on_step: prints step lines, evaluates and samples, writes the
    CSV log, saves periodic checkpoints and notices Ctrl-C. Metrics are kept for the checkpoint and the
    curve: metrics["train"] rows are [step, loss, lr, grad_norm, tokens_per_sec, elapsed_s, update_ratio,
    clipped] and metrics["eval"] rows are [step, train_loss, val_loss, seconds], steps counted from 1 and
    times in seconds; a resumed run carries on with the rows of the run so far. update_ratio, the RMS of
    Adam's update over the RMS of the weights, is measured only when a CSV log is written (it copies
    every weight each step) and is None otherwise; clipped is 1 if the gradient was clipped, else 0.
    weights() gives every parameter as a flat list of floats; sample_fn(rng) one sampled document."""

    def __init__(self, console, settings, weights, evaluate_val, sample_fn, save, metrics, start_step):
        self.console, self.settings, self.weights = console, settings, weights
        self.evaluate_val, self.sample_fn, self.save, self.metrics = evaluate_val, sample_fn, save, metrics
        self.start_step = self.step_done = start_step
        self.num_steps = settings["steps"]
        self.print_every = settings["print_every"] or (
            1 if console.tty or self.num_steps <= 1000 else max(1, self.num_steps // 100))
        self.elapsed_before = metrics["train"][-1][5] if metrics["train"] else 0.0
        self.eval_seconds_before = sum(row[3] for row in metrics["eval"])
        self.t_start = self.t_last = time.perf_counter()
        self.eval_seconds = 0.0
        self.stop_requested = False
        last_eval = metrics["eval"][-1][0] if metrics["eval"] else 0     # resuming: carry the pending steps
        self.losses_since_eval = [row[1] for row in metrics["train"] if row[0] > last_eval]
        self.csv = self.log_file = self.weights_before = None
        if settings["log"]:                 # line-buffered: every row is on disk as soon as it is written
            self.log_file = open(settings["log"], "w", newline="", encoding="utf-8", buffering=1)
            self.csv = csv.writer(self.log_file)
            self.csv.writerow(CSV_COLUMNS)
            evals = {row[0]: row for row in metrics["eval"]}
            for row in metrics["train"]:                    # the run so far, in the order it happened
                self.write_train_row(row)
                if row[0] in evals:
                    self.write_eval_row(evals[row[0]])
            self.weights_before = weights()

    def write_train_row(self, row):
        if self.csv:
            grad_clip = self.settings["grad_clip"]
            self.csv.writerow(["train"] + ["" if x is None else x for x in row] +
                              ["" if grad_clip is None else grad_clip, "", "", ""])

    def write_eval_row(self, row):
        step, train_loss, val_loss, _ = row
        if self.csv and val_loss is not None:
            self.csv.writerow(["eval", step] + [""] * 8 + [train_loss, val_loss, perplexity(val_loss)])

    def close(self):
        if self.log_file:
            self.log_file.close()

    def training_seconds(self):
        """Seconds spent training in this process, evaluation not counted."""
        return time.perf_counter() - self.t_start - self.eval_seconds

    def update_ratio(self):
        """RMS of the step's change to the weights over the RMS of the weights before it (None if unseen)."""
        if self.weights_before is None:
            return None
        after = self.weights()
        change = math.sqrt(sum((a - b) ** 2 for a, b in zip(after, self.weights_before)))
        size = math.sqrt(sum(b * b for b in self.weights_before))
        self.weights_before = after
        return change / size if size else None

    def on_step(self, step, loss, lr, norm, batch):
        now = time.perf_counter()
        n_tokens = sum(min(self.settings["block_size"], len(tokens) - 1) for tokens in batch)
        self.step_done = step + 1
        elapsed = self.elapsed_before + self.training_seconds()
        clipped = int(self.settings["grad_clip"] is not None and norm > self.settings["grad_clip"])
        row = [step + 1, loss, lr, norm, n_tokens / max(now - self.t_last, 1e-9), elapsed, self.update_ratio(),
               clipped]
        self.metrics["train"].append(row)
        self.write_train_row(row)
        self.losses_since_eval.append(loss)
        per_step = self.training_seconds() / (self.step_done - self.start_step)
        left = per_step * (self.num_steps - self.step_done)
        text = (f"step {step + 1:4d} / {self.num_steps:4d} | loss {loss:.4f} | lr {lr:.5f} | "
                f"{format_seconds(left)} left")
        last = self.step_done == self.num_steps
        if (step + 1) % self.print_every == 0 or last:
            self.console.line(text)
        else:
            self.console.status(text)
        if (step + 1) % self.settings["eval_every"] == 0 or last:
            self.evaluation()
        if self.settings["save_every"] and (step + 1) % self.settings["save_every"] == 0 and not last:
            self.save(self.step_done)
        self.t_last = time.perf_counter()
        return self.stop_requested

    def evaluation(self):
        """Validation loss now, beside the mean training loss since the last evaluation; then a few
        samples, drawn from a generator seeded by the seed and the step alone, so that they change
        nothing else the run does (the final samples come from the run's own generator)."""
        if not self.losses_since_eval:
            return
        train_loss = sum(self.losses_since_eval) / len(self.losses_since_eval)
        text = (f"eval {self.step_done:4d} | train loss {train_loss:.4f} "
                f"(mean of {len(self.losses_since_eval)} steps)")
        val_loss = None
        t0 = time.perf_counter()
        if self.evaluate_val:
            val_loss = self.evaluate_val()
            text += f" | val loss {val_loss:.4f} | val perplexity {perplexity(val_loss):.2f}"
        rng = random.Random(f"{self.settings['seed']}:{self.step_done}")
        texts = [self.sample_fn(rng) or "''" for _ in range(self.settings["eval_samples"])]
        seconds = time.perf_counter() - t0
        self.eval_seconds += seconds
        row = [self.step_done, train_loss, val_loss, seconds]
        self.metrics["eval"].append(row)
        self.write_eval_row(row)
        self.losses_since_eval = []
        self.console.line(text)
        if texts:
            self.console.line(f"  samples at step {self.step_done}: {', '.join(texts)}")

    def summary(self):
        """The line that closes training, for the whole run (a resumed run's earlier part included)."""
        steps = self.step_done
        seconds = self.elapsed_before + self.training_seconds()
        return (f"trained {steps} steps in {format_seconds(seconds)} ({1000 * seconds / steps:.1f} ms/step; "
                f"evaluation took {format_seconds(self.eval_seconds_before + self.eval_seconds)})")


def loss_curve(metrics, width=64, height=10):
    """The run's loss curve as text lines: '.' is the training loss, smoothed by a running mean over
    about a twentieth of the run and averaged per column; 'o' is a validation loss."""
    train = [(row[0], row[1]) for row in metrics["train"]]
    evals = [(row[0], row[2]) for row in metrics["eval"] if row[2] is not None]
    if len(train) < 2:
        return []
    window = max(1, len(train) // 20)
    running, smoothed = 0.0, []
    for i, (step, loss) in enumerate(train):
        running += loss - (train[i - window][1] if i >= window else 0.0)
        smoothed.append((step, running / min(i + 1, window)))
    first, last = train[0][0], train[-1][0]
    width = min(width, last - first + 1)
    column = lambda step: min(width - 1, (step - first) * width // (last - first + 1))
    sums, counts = [0.0] * width, [0] * width
    for step, loss in smoothed:
        sums[column(step)] += loss
        counts[column(step)] += 1
    points = [(col, sums[col] / counts[col], ".") for col in range(width) if counts[col]]
    points += [(column(step), loss, "o") for step, loss in evals]
    hi, lo = max(p[1] for p in points), min(p[1] for p in points)
    grid = [[" "] * width for _ in range(height)]
    for col, loss, mark in points:
        grid[round((hi - loss) / ((hi - lo) or 1.0) * (height - 1))][col] = mark
    lines = [f"loss curve: . training loss (running mean of {window} steps), o validation loss"]
    for r, cells in enumerate(grid):
        label = f"{hi:.2f}" if r == 0 else f"{lo:.2f}" if r == height - 1 else ""
        lines.append(f"{label:>6} |{''.join(cells)}")
    lines.append(f"{'':>6} +{'-' * width}")
    left, right = f"step {first}", f"step {last}"
    lines.append(f"{'':>8}{left}{right:>{max(1, width - len(left))}}")
    return lines


# ---- looking inside: one document explained, and the gradients checked

def explain_document(gpt, tokenizer, optimizer, doc, lr):
    """What the model does with one document, as numbers: a dict with
      "tokens": the token ids; "positions": per predicted position t, (input id, target id, p(target),
        loss in nats, the three likeliest next tokens as (id, probability)), at most block_size of them;
      "attention": per position, per layer and head (layer by layer), its attention weights over
        positions 0..t (pos + 1 floats, summing to 1);
      "step": one training step on the document, traced but not taken: {"loss": mean loss, "lr": lr,
        "matrices": {name: (gradient norm, RMS of Adam's update / RMS of the weights)}}.
    The model, its gradients and the optimizer are left as they were."""
    tokens = tokenizer.encode(doc)
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    positions, attention, losses, weights = [], [], [], gpt.weights()
    for t in range(min(gpt.block_size, len(tokens) - 1)):  # one forward pass, as document_losses does it
        heads = []
        logits = gpt(tokens[t], t, keys, values, weights, attention=heads)
        probs = softmax_data([z.data for z in logits])
        top3 = sorted(range(len(probs)), key=lambda i: -probs[i])[:3]
        target = tokens[t + 1]
        losses.append(cross_entropy(logits, target))
        positions.append((tokens[t], target, probs[target], losses[-1].data, [(i, probs[i]) for i in top3]))
        attention.append(heads)
    # The traced step: backward() for the gradients, then Adam's real step on a copy of its state, undone.
    loss = total(losses) / len(losses)                      # document_loss(), from the pass above
    loss.backward()
    grads = {name: [p.grad for row in mat for p in row] for name, mat in gpt.state_dict.items()}
    before = [p.data for p in gpt.params]
    trial = Adam(gpt.params, optimizer.beta1, optimizer.beta2, optimizer.eps)
    trial.m, trial.v, trial.t = list(optimizer.m), list(optimizer.v), optimizer.t
    trial.step(lr)                                          # moves the weights and resets the gradients
    matrices, i = {}, 0
    for name, mat in gpt.state_dict.items():
        n = sum(len(row) for row in mat)
        update = math.sqrt(sum((p.data - b) ** 2 for p, b in zip(gpt.params[i:i + n], before[i:i + n])) / n)
        size = math.sqrt(sum(b * b for b in before[i:i + n]) / n)
        matrices[name] = (math.sqrt(sum(g * g for g in grads[name])), update / size if size else math.inf)
        i += n
    for p, b in zip(gpt.params, before):
        p.data = b                                          # undone: the model is as it was
    return {"tokens": tokens, "positions": positions, "attention": attention,
            "step": {"loss": loss.data, "lr": lr, "matrices": matrices}}


SHADES = " .:-=+*#%@"         # the attention heatmap: weight 0-10% -> ' ', ..., 90-100% -> '@'


def print_explanation(gpt, tokenizer, doc, x, log, note=""):
    """Print explain_document()'s numbers `x` for `doc`: the next-token table, the attention heatmaps and
    the traced step."""
    name = lambda t: "BOS" if t == tokenizer.BOS else repr(tokenizer.chars[t])
    show = lambda t: f"{name(t):>5} ({t:2d})"
    log(f"explain {doc!r}{note}: tokens {x['tokens']}; position t reads tokens[t] and predicts tokens[t+1]")
    log("  pos |   input    |   target   | p(target) | loss (nats) | what the model believed came next")
    for t, (inp, target, p, loss, top3) in enumerate(x["positions"]):
        believed = "  ".join(f"{name(i)} {q:.2f}" for i, q in top3)
        log(f"{t:5d} | {show(inp)} | {show(target)} |   {p:.4f}  |   {loss:.4f}    | {believed}")
    losses = [pos[3] for pos in x["positions"]]
    v = tokenizer.vocab_size
    log(f"  mean loss {sum(losses) / len(losses):.4f} over {len(losses)} positions; a uniform guess over "
        f"{v} tokens scores ln {v} = {math.log(v):.4f}")
    if len(x["tokens"]) - 1 > len(losses):
        log(f"  cut: block_size {gpt.block_size} leaves out the last {len(x['tokens']) - 1 - len(losses)} target(s)")
    labels = [name(t).strip("'") for t in x["tokens"][:len(losses)]]
    log(f"attention: each row is a position and where it looks, over the positions so far (shade: "
        f"'{SHADES[1]}' 10%, '{SHADES[5]}' 50%, '{SHADES[9]}' 90%+); above the diagonal, the future: masked")
    for layer in range(gpt.n_layer):
        for head in range(gpt.n_head):
            log(f"  layer {layer} head {head}  " + "".join(f"{label:>4}" for label in labels))
            for t, label in enumerate(labels):
                weights = x["attention"][t][layer * gpt.n_head + head]
                cells = "".join(f"  {SHADES[min(9, int(w * 10))] * 2}" for w in weights)
                top = max(range(len(weights)), key=weights.__getitem__)
                log(f"  {t:2d} {label:>3} reads  {cells:<{4 * len(labels)}}  most: {labels[top]} {weights[top]:.0%}")
    step = x["step"]
    log(f"one training step on {doc!r}, traced (the model is left unchanged): mean loss {step['loss']:.4f}, "
        f"learning rate {step['lr']:.5f}")
    log("  matrix            gradient norm   update / weight (RMS, log10)")
    for matrix, (norm, ratio) in step["matrices"].items():
        log(f"  {matrix:<16} {norm:12.6f}   {math.log10(ratio) if ratio > 0 else -math.inf:8.2f}")
    log("  (an update near 1e-3 of the weights, log10 -3, is the usual healthy size; far above, the learning "
        "rate is too high for that matrix; far below, it barely learns)")


def gradient_check(gpt, tokens, rng, h=1e-5, tolerance=1e-4, sample_size=100):
    """Hold backward()'s gradient against central finite differences, (L(p + h) - L(p - h)) / 2h, in nats
    per unit of the parameter, for every parameter of a matrix of up to sample_size numbers and a sample of
    sample_size (drawn with rng) from each larger one. Returns {name: (checked, parameters, worst relative
    error)}, relative error |analytic - numeric| / max(|analytic|, |numeric|, 1e-5).

    h = 1e-5 balances the difference's two errors in float64, truncation (~h^2) and rounding (~1e-16 / h):
    on the default model the worst absolute error is 2e-10, and the floor of 1e-5 keeps that from looking
    large beside the smallest gradients (worst relative error 5e-6). A parameter over the tolerance is
    checked again with h / 100, as a ReLU switched by the nudge can mislead one difference; a wrong
    derivative stays wrong. The model is left as it was, gradients at zero."""
    loss = document_loss(gpt, tokens)
    loss.backward()

    def numeric(p, step):
        x = p.data
        with no_grad():
            p.data = x + step
            up = document_loss(gpt, tokens).data
            p.data = x - step
            down = document_loss(gpt, tokens).data
        p.data = x
        return (up - down) / (2 * step)

    def error(p, step):
        n = numeric(p, step)
        return abs(p.grad - n) / max(abs(p.grad), abs(n), 1e-5)

    report = {}
    for name, mat in gpt.state_dict.items():
        params = [p for row in mat for p in row]
        chosen = params if len(params) <= sample_size else rng.sample(params, sample_size)
        worst = 0.0
        for p in chosen:
            e = error(p, h)
            if e > tolerance:
                e = min(e, error(p, h / 100))
            worst = max(worst, e)
        report[name] = (len(chosen), len(params), worst)
    for p in gpt.params:
        p.grad = 0.0
    return report


# ---- the command line

class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):               # one line and exit status 2, like every other bad input
        raise DataError(f"{message}; see --help")


def build_parser(description="Train a tiny GPT on a list of names (or any text file, one document per line) "
                             "and sample new ones."):
    """The command line's options (microgpt_torch.py adds its own to the same parser). Every setting
    defaults to None, meaning "not given": resolve_settings() fills it in from a checkpoint or the
    defaults and checks it."""
    p = ArgumentParser(description=description)
    g = p.add_argument_group("data and model")
    g.add_argument("--data", metavar="PATH", help="UTF-8 text file, one document per line "
                                                  "(default: names.txt beside this script, or the checkpoint's)")
    g.add_argument("--seed", type=int, metavar="N", help="random seed; one seed, one run (default 42)")
    g.add_argument("--val-fraction", type=float, metavar="X",
                   help="share of documents held out for validation, in [0, 1) (default 0.1)")
    g.add_argument("--n-embd", type=int, metavar="N", help="embedding width (default 16)")
    g.add_argument("--n-head", type=int, metavar="N", help="attention heads; must divide n_embd (default 4)")
    g.add_argument("--n-layer", type=int, metavar="N", help="transformer layers (default 1)")
    g.add_argument("--block-size", type=int, metavar="N", help="positions per document, >= 2 (default 8)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, metavar="N", help="optimizer steps in the whole run (default 500)")
    g.add_argument("--lr", type=float, metavar="X", help="peak learning rate (default 0.01)")
    g.add_argument("--warmup-steps", type=int, metavar="N", help="steps of linear warmup (default 0)")
    g.add_argument("--min-lr", type=float, metavar="X", help="learning rate the cosine decays to (default 0)")
    g.add_argument("--batch-size", type=int, metavar="N", help="documents per optimizer step (default 1)")
    g.add_argument("--grad-clip", type=float, metavar="X", help="clip the global gradient norm to X (default off)")
    g = p.add_argument_group("watching a run (a checkpoint keeps these; --resume goes on with them)")
    g.add_argument("--eval-every", type=int, metavar="N", help="steps between evaluations (default 100)")
    g.add_argument("--eval-docs", type=int, metavar="N",
                   help="validation documents per evaluation, 0 for all (default 100)")
    g.add_argument("--eval-samples", type=int, metavar="N",
                   help="documents sampled at each evaluation, to watch them improve; 0 for none, at most 100 "
                        "(default 5)")
    g.add_argument("--print-every", type=int, metavar="N",
                   help="steps between step lines (default 1 on a terminal or for runs of up to 1,000 "
                        "steps, else steps / 100)")
    g.add_argument("--log", metavar="PATH", help="write every step's metrics and every evaluation to CSV")
    g = p.add_argument_group("looking inside a model (fresh, or with --load or --resume)")
    g.add_argument("--explain", nargs="?", const="", metavar="DOC",
                   help="show what the model does with DOC (default: the first training document): each "
                        "position's prediction, the attention of every head, one training step traced; then exit")
    g.add_argument("--gradcheck", nargs="?", const="", metavar="DOC",
                   help="check backward()'s gradients on DOC against finite differences; exit 1 if one is off")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--save", metavar="PATH", help="save a checkpoint (JSON) at the end, on Ctrl-C and "
                                                  "when the loss stops being finite")
    g.add_argument("--save-every", type=int, metavar="N", help="also save every N steps")
    g.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH exactly")
    g.add_argument("--load", metavar="PATH", help="sample from the model saved in PATH, without training")
    g = p.add_argument_group("sampling")
    g.add_argument("--samples", type=int, metavar="N", help="documents to generate (default 20)")
    g.add_argument("--temperature", type=float, metavar="X", help="sampling temperature > 0 (default 0.5)")
    g.add_argument("--top-k", type=int, metavar="N", help="sample only from the k most likely tokens (default: all)")
    g.add_argument("--prefix", metavar="TEXT", help="complete documents that start with this text")
    return p


def parse_args(argv=None, parser=None):
    """Options -> argparse.Namespace (build_parser(), or the given parser). Raises DataError for an unknown
    option, a value of the wrong type, or options that cannot go together."""
    args = (parser or build_parser()).parse_args(argv)
    checks = [
        (args.resume is not None and args.load is not None, "give --resume or --load, not both"),
        (args.explain is not None and args.gradcheck is not None, "give --explain or --gradcheck, not both"),
        (args.load is not None and args.steps not in (None, 0),
         "--load samples from a saved model without training; use --resume PATH to train further"),
        (args.load is not None and (args.save or args.log or args.save_every),
         "--load samples without training, so --save, --save-every and --log have nothing to write"),
    ]
    for failed, message in checks:
        if failed:
            raise DataError(message)
    return args


def resolve_settings(args, checkpoint, path):
    """Every setting of the run: given on the command line, else kept in the checkpoint, else the
    default; then all of them checked together (check_settings). Under --load only the model, the split
    and the sampling settings come from the checkpoint. Raises DataError where an option is invalid or
    contradicts the checkpoint's model, data split or step."""
    saved = dict(checkpoint["settings"]) if checkpoint else {}
    if args.load:
        saved = {key: value for key, value in saved.items() if key in DEFAULTS or key in SAMPLING_KEYS + ("data",)}
    settings = {}
    for key, default in {**DEFAULTS, **WATCH_DEFAULTS}.items():
        given = getattr(args, key)
        if given is not None and key in saved and key in MODEL_KEYS + SPLIT_KEYS and given != saved[key]:
            raise DataError(f"checkpoint {path} has {key} {saved[key]}, not {given}; leave out "
                            f"--{key.replace('_', '-')} or train a new model")
        settings[key] = given if given is not None else saved.get(key, default)
    names_txt = os.path.join(os.path.dirname(os.path.abspath(__file__)), "names.txt")
    settings["data"] = args.data or saved.get("data") or names_txt
    for key in ("data", "log", "save"):             # absolute: a resumed run may start in another folder
        if settings[key]:
            settings[key] = os.path.abspath(settings[key])
    settings = check_settings(settings, lambda key: "--" + key.replace("_", "-"))
    if checkpoint and args.resume and settings["steps"] < checkpoint["step"]:
        raise DataError(f"--steps {settings['steps']} is fewer than the {checkpoint['step']} steps checkpoint "
                        f"{path} has done; give more --steps to train further")
    return settings


def read_inputs(args):
    """The checked inputs of a run, before anything is built: (checkpoint or None, settings, documents,
    tokenizer). Shared with microgpt_torch.py. Raises DataError for bad input."""
    path = args.resume or args.load
    checkpoint = load_checkpoint(path) if path else None
    settings = resolve_settings(args, checkpoint, path)
    docs = load_docs(settings["data"])
    tokenizer = Tokenizer(checkpoint["chars"]) if checkpoint else Tokenizer.from_docs(docs)
    unknown = sorted(set("".join(docs)) - set(tokenizer.chars))
    if unknown and args.resume:
        raise DataError(f"{settings['data']} has characters checkpoint {path} does not know "
                        f"({''.join(unknown[:10])}); train a new model on it instead of resuming")
    for option, text in (("--explain", args.explain or ""), ("--gradcheck", args.gradcheck or ""),
                         ("--prefix", settings["prefix"])):
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            raise DataError(f"{option} {text!r} has characters the model does not know: {''.join(unknown)}")
    if len(settings["prefix"]) >= settings["block_size"]:
        raise DataError(f"--prefix is {len(settings['prefix'])} characters; it must be shorter than block_size "
                        f"{settings['block_size']}")
    return checkpoint, settings, docs, tokenizer


def check_outputs(settings):
    """Raise DataError now, before training, if --save or --log cannot be written."""
    for option, key in (("--save", "save"), ("--log", "log")):
        if settings[key]:
            check_writable(settings[key], option)


def prepare(args, log):
    """Everything a run starts from, all checked before any work (read_inputs, the model's memory, the
    output files). Returns the run: a namespace with the settings, the split documents, the tokenizer,
    the random generator, the step and metrics to continue from, the model and its optimizer (restored
    from the checkpoint), and what the harness below needs of the engine: train(on_step),
    evaluate(docs) -> loss, sample(rng) -> document, weights() -> floats, save(step_done).
    microgpt_torch.py builds the same namespace around its tensors. Raises DataError for bad input."""
    checkpoint, settings, docs, tokenizer = read_inputs(args)
    training = not args.load and args.explain is None and args.gradcheck is None
    check_memory(tokenizer.vocab_size, settings, training)
    if training:
        check_outputs(settings)
    rng = random.Random(settings["seed"])
    rng.shuffle(docs)                                       # the seed fixes the order and so the split
    train_docs, val_docs = split_docs(docs, settings["val_fraction"])
    gpt = GPT(tokenizer.vocab_size, *(settings[key] for key in MODEL_KEYS), rng=rng)
    optimizer = Adam(gpt.params)
    step, metrics = 0, {"train": [], "eval": []}
    if checkpoint:
        step, metrics = restore_checkpoint(checkpoint, gpt, optimizer, rng, bool(args.resume))
    s = settings
    return argparse.Namespace(
        args=args, log=log, console=Console(log), checkpoint=checkpoint, settings=settings, docs=docs,
        train_docs=train_docs, val_docs=val_docs, tokenizer=tokenizer, rng=rng, step=step, metrics=metrics,
        n_params=len(gpt.params), gpt=gpt, optimizer=optimizer,
        train=lambda on_step: train(gpt, optimizer, tokenizer, train_docs, s["steps"], s["lr"], s["warmup_steps"],
                                    s["min_lr"], s["batch_size"], s["grad_clip"], step, on_step),
        evaluate=lambda docs: evaluate(gpt, tokenizer, docs)[0],
        sample=lambda rng: sample(gpt, tokenizer, rng, s["temperature"], s["top_k"], s["prefix"]),
        weights=lambda: [p.data for p in gpt.params],
        save=lambda step_done: save_checkpoint(s["save"], gpt, tokenizer, optimizer, rng, step_done, s, metrics))


def print_header(r):
    """What the run is about to do: data, vocabulary, model size, the loss to expect at the start."""
    s, log = r.settings, r.log
    log(f"documents: {len(r.docs):,} ({len(r.train_docs):,} for training, {len(r.val_docs):,} for validation)")
    log(f"vocab_size: {r.tokenizer.vocab_size} ({len(r.tokenizer.chars)} characters + BOS)")
    log(f"parameters: {r.n_params:,} (n_embd {s['n_embd']}, n_head {s['n_head']}, n_layer {s['n_layer']}, "
        f"block_size {s['block_size']})")
    log(f"loss at initialisation should be near ln(vocab_size) = {math.log(r.tokenizer.vocab_size):.4f}")
    n_cut = sum(len(doc) + 1 > s["block_size"] for doc in r.docs)
    if n_cut:
        log(f"cut: {n_cut:,} documents are longer than block_size {s['block_size']} allows "
            f"and train on their first {s['block_size']} positions only")
    if r.checkpoint:
        path = r.args.resume or r.args.load
        log(f"{'resuming' if r.args.resume else 'loaded'} {path} at step {r.checkpoint['step']}")


def train_run(r):
    """Train from r.step to the last step, watched by a Monitor; then the summary, the loss curve and
    the final save. Returns None when training finished, 130 when Ctrl-C stopped it (after saving).
    Raises DataError (after saving the last good state) if the loss stops being finite."""
    settings, console, save = r.settings, r.console, r.save
    eval_docs = r.val_docs[:settings["eval_docs"]] if settings["eval_docs"] else r.val_docs
    evaluate_val = (lambda: r.evaluate(eval_docs)) if eval_docs else None
    monitor = Monitor(console, settings, r.weights, evaluate_val, r.sample, save, r.metrics, r.step)

    def on_sigint(signum, frame):
        monitor.stop_requested = True                       # finish this step, then stop and save

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        r.train(monitor.on_step)
    except FloatingPointError as e:
        saved = ""
        if settings["save"]:
            save(monitor.step_done)
            saved = f"; saved the last good state (step {monitor.step_done}) to {settings['save']}"
        raise DataError(f"training stopped at step {monitor.step_done + 1}: {e}{saved}; "
                        f"try a lower --lr or --grad-clip")
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        monitor.close()
    if monitor.stop_requested:
        where = f"interrupted at step {monitor.step_done}"
        if settings["save"]:
            save(monitor.step_done)
            console.line(f"{where}: saved {settings['save']}; continue with --resume {settings['save']}")
        else:
            console.line(f"{where}: nothing saved (give --save PATH to keep a run)")
        return 130
    if monitor.step_done:
        console.line(monitor.summary())
    for line in loss_curve(r.metrics):
        r.log(line)
    if settings["save"]:
        save(monitor.step_done)
        r.log(f"saved {settings['save']} (sample from it later with --load {settings['save']})")
    return None


def sample_run(r):
    """Print settings["samples"] new documents, then how many of them are not training documents."""
    n = r.settings["samples"]
    known, new = set(r.train_docs), 0
    for i in range(n):
        text = r.sample(r.rng)
        r.log(f"sample {i + 1:2d}: {text}")
        new += text not in known                            # a validation name counts as new: never trained on
    if n:
        r.log(f"new: {new} of {n} samples are not training documents")


def look_inside(r, doc):
    """--explain DOC or --gradcheck DOC (default: the first training document). Returns the exit status:
    0, or 1 if the gradient check fails."""
    s, doc = r.settings, doc or r.train_docs[0]
    if r.args.explain is not None:
        step = r.checkpoint["step"] if r.checkpoint else 0            # the step the model would take next
        lr = lr_schedule(step, s["steps"], s["lr"], s["warmup_steps"], s["min_lr"])
        note = f" (model at step {step})"
        if step >= s["steps"] or lr == 0:
            lr, note = s["lr"], f" (model at step {step}, the end of its run: its step traced at the peak lr)"
        print_explanation(r.gpt, r.tokenizer, doc, explain_document(r.gpt, r.tokenizer, r.optimizer, doc, lr),
                          r.log, note)
        return 0
    tolerance = 1e-4
    report = gradient_check(r.gpt, r.tokenizer.encode(doc), random.Random(s["seed"]), tolerance=tolerance)
    r.log(f"gradcheck {doc!r}: backward() against central finite differences, (L(p+h) - L(p-h)) / 2h with "
          f"h = 1e-5, on {len(r.gpt.params):,} parameters")
    r.log("  matrix             checked    worst relative error")
    for name, (checked, total_, worst) in report.items():
        r.log(f"  {name:<16} {checked:>4} / {total_:<6} {worst:10.1e}")
    name, (_, _, worst) = max(report.items(), key=lambda item: item[1][2])
    if worst > tolerance:
        r.log(f"gradcheck FAILED: {name} is off by a relative {worst:.1e}, over the tolerance {tolerance:.0e}: "
              f"backward() and the finite differences disagree there")
        return 1
    r.log(f"gradcheck passed: the worst relative error is {worst:.1e} ({name}), under the tolerance {tolerance:.0e}")
    return 0


def run(args, log=print):
    """The whole program for parsed options. Returns the exit status; raises DataError for bad input."""
    r = prepare(args, log)
    print_header(r)
    if args.explain is not None or args.gradcheck is not None:
        return look_inside(r, args.explain if args.explain is not None else args.gradcheck)
    if not args.load:
        status = train_run(r)
        if status is not None:
            return status
    sample_run(r)
    return 0


def closed_pipe():
    """After BrokenPipeError (the reader of our output went away, as `| head` does): send the rest of
    stdout nowhere, so that not even Python's exit prints a traceback, and return 141, a shell's status for
    a program its pipe stopped."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def main(argv=None):
    try:
        return run(parse_args(argv))
    except DataError as e:
        print(f"microgpt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_pipe()


if __name__ == "__main__":
    sys.exit(main())
