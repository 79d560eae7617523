#!/usr/bin/env python3
"""microgpt: train a tiny GPT on a list of names and make up new ones, in one file of plain Python.

Nothing is imported from outside the standard library, and nothing is hidden: every multiplication the
model does is in this file. Read it top to bottom; the sections follow the data's path:

   1. Dataset     a text file -> documents (names)
   2. Tokenizer   a document -> token ids, with BOS
   3. Autograd    Value: a float that knows its past
   4. Model       token, position -> logits
   5. Loss        logits, next token -> cross-entropy
   6. Optimizer   gradients -> Adam's step
   7. Training    forward, backward, update: a step
   8. Sampling    the model -> new documents
   9. One run     sections 1-8 assembled

A reader who stops after section 8 has seen the whole algorithm; section 9 is the run `python3 microgpt.py`
makes. The workbench beside it (workbench/) adds options (--help), checkpoints and watching, and no number.
"""
import gc
import math
import operator
import os
import random
import sys


# ----------------------------------------------------------------------------------------------------
# 1. Dataset: a text file, one document (here: one name) per line.
#
# In: the text of a file. Out: a list of strings, one per non-blank line. The model never sees the file
# again; from here on a "document" is one of these strings, and training learns what usually comes next
# inside one.

def documents(text):
    """The documents of a text, a list of strings: its lines (ended by \\n, \\r\\n or \\r), stripped, not blank."""
    docs = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return [doc for doc in docs if doc]                     # blank lines are not documents


def load_docs(path):
    """documents() of the UTF-8 text file at `path` (a byte-order mark is not a character: utf-8-sig drops
    it). Raises OSError or UnicodeDecodeError if it cannot."""
    with open(path, encoding="utf-8-sig") as f:
        return documents(f.read())                          # names.txt: 29,910 names, 'emma' first


# ----------------------------------------------------------------------------------------------------
# 2. Tokenizer: one id per distinct character, plus BOS.
#
# In: documents (strings). Out: lists of integer token ids, the only thing the model reads. Each distinct
# character gets an id 0..n-1 in sorted order; one extra token, BOS ("beginning of sequence"), id n,
# marks where a document starts and also where it ends. For names that is a-z plus BOS: 27 tokens.

class Tokenizer:
    """Characters to ids and back: character chars[i] (sorted) has id i, and BOS = len(chars) marks both the
    start and the end of a document, so vocab_size = len(chars) + 1 (27 for names: a-z and BOS)."""

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
    """One float in a computation graph, with the gradient of the final loss with respect to it. A Value
    computed from others names the operation that made it ("*", "dot") and keeps the Values it was
    computed from in groups, pairs (children, local_grads) of equal length: the children and its partial
    derivative with respect to each. a * b has one group, ((a, b), (b.data, a.data)); a dot product w . x
    has two, (w, x's floats) and (x, w's floats). A parameter has none. backward() applies the chain rule."""
    __slots__ = ("data", "grad", "_groups", "_op")
    grad_enabled = True     # False inside `with no_grad():`
    tape = None             # inside `with Tape() as tape:`, the list that every new computed Value joins

    def __init__(self, data, op="", *groups):
        self.data = data                    # the float this Value holds
        self._op = op                       # the operation that made it ("*", "dot", ...); "" for a parameter
        self.grad = 0.0                     # d loss / d self, filled in by backward(); 0 until then
        if not Value.grad_enabled:          # remember nothing: no graph, nothing kept alive
            groups = ()
        elif groups and Value.tape is not None:
            Value.tape.append(self)         # made after its children: the tape is a topological order
        self._groups = groups               # ((children, d self / d each child), ...); () for a parameter

    # The primitive operations. Each line is a micrograd lesson: the value, then d(out)/d(each input).
    def __add__(self, other):                       # d(a+b)/da = 1, d(a+b)/db = 1
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, "+", ((self, other), (1.0, 1.0)))

    def __mul__(self, other):                       # d(ab)/da = b, d(ab)/db = a
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, "*", ((self, other), (other.data, self.data)))

    def __pow__(self, n):                           # d(a^n)/da = n a^(n-1), n a plain number
        return Value(self.data ** n, f"**{n:g}", ((self,), (n * self.data ** (n - 1),)))

    def exp(self):                                  # d(e^a)/da = e^a
        e = math.exp(self.data)
        return Value(e, "exp", ((self,), (e,)))

    def log(self):                                  # d(ln a)/da = 1/a
        return Value(math.log(self.data), "log", ((self,), (1.0 / self.data,)))

    def relu(self):                                 # 1 where a > 0, else 0
        return Value(max(0.0, self.data), "relu", ((self,), (float(self.data > 0),)))

    # Everything else is made of the above: a - b = a + (-1)b, a / b = a * b^-1.
    def __neg__(self): return self * -1.0
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def __repr__(self): return f"Value({self._op or 'leaf'}, data={self.data:.6g}, grad={self.grad:.6g})"

    def graph(self):
        """Every Value this one was computed from, itself included, in a topological order: each Value
        after all the Values it was made from. Found by depth-first search with an explicit stack, never
        recursion, so a chain of 100,000 nodes is fine."""
        # Each stack entry is (node, children_done); a node is pushed twice, once to expand its children
        # and once, beneath them, to be emitted after them.
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)          # everything node was computed from is already in order
            elif node not in visited:       # (reached again by another path: already expanded)
                visited.add(node)
                stack.append((node, True))
                for children, _ in node._groups:
                    stack.extend((child, False) for child in children)
        return order

    def backward(self, order=None):
        """Fill in .grad of every Value this one depends on: d(self)/d(node), added to what is there.

        `order` is a topological order of the graph (a node after everything computed from it); a Tape
        passes its record, else graph() finds it."""
        if order is None:
            order = self.graph()
        # The chain rule, from the output back: d self/d child = sum over parents of
        # d self/d parent * d parent/d child. Walking `order` backwards, every parent of a node is done
        # before the node itself, so node.grad is complete when it is passed on. `+=` sums the paths, and
        # also adds to whatever .grad held before: backward() on several losses adds their gradients.
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
    tape.backward(loss) runs backward() along that record: a Value is made after the Values it comes from,
    so the order of making is already topological and the search (as costly as the chain rule itself) is
    skipped. Values made before the block (the parameters) are leaves to it; the record is used once."""

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

    def __enter__(self): self.previous, Value.grad_enabled = Value.grad_enabled, False

    def __exit__(self, *exc_info): Value.grad_enabled = self.previous


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
# other Value. Built from + * exp (reference/atomic.py, held to these by the tests), they would make one
# node per operation: for one training step on a five-letter name that is 39,443 nodes instead of 1,878.

def dot(a, b):
    """sum_i a_i * b_i over two equal-length lists of Values -> one Value with 2n children.
    d/da_i = b_i and d/db_i = a_i: each side's local gradients are the other side's values, so the node
    keeps two groups, (a, b's floats) and (b, a's floats)."""
    a_data, b_data = [x.data for x in a], [x.data for x in b]                  # n floats each
    return Value(sum(map(operator.mul, a_data, b_data)), "dot", (a, b_data), (b, a_data))


def total(xs):
    """sum_i x_i over a list of Values -> one Value; d/dx_i = 1 for every child."""
    return Value(sum(x.data for x in xs), "sum", (xs, [1.0] * len(xs)))


def linear(x, w, w_data):
    """Matrix-vector product: x (n_in Values), w (n_out rows of n_in Values) -> n_out Values.
    Output i is the dot product of row i and x, one node with two groups: the row with x's floats
    (d/dw_ij = x_j) and x with the row's floats (d/dx_j = w_ij), lists shared by every output.
    w_data: w's rows as floats (GPT reads them once per document: GPT.__call__)."""
    x_data = [xi.data for xi in x]                          # n_in floats, shared by every row
    return [Value(sum(map(operator.mul, row_data, x_data)), "linear", (row, x_data), (x, row_data))
            for row, row_data in zip(w, w_data)]            # one output per row: n_out in all


def softmax_data(zs, temperature=1.0):
    """Softmax of plain floats: exp((z_i - max z) / T) / sum_j exp((z_j - max z) / T), same length.
    Subtracting max z keeps exp from overflowing (exp(1000) would) and cancels in the ratio: exp(z_i - c) /
    sum_j exp(z_j - c) = exp(z_i) / sum_j exp(z_j) for any constant c."""
    max_z = max(zs)
    exps = [math.exp((z - max_z) / temperature) for z in zs]  # all in (0, 1], the largest exactly 1
    s = sum(exps)
    return [e / s for e in exps]                            # non-negative, sums to 1


def softmax(logits, temperature=1.0):
    """Probabilities from a list of n logit Values -> n Values, each with all n logits as children.
    p_i = exp(z_i / T) / sum_j exp(z_j / T), and dp_i/dz_j = p_i * ([i == j] - p_j) / T."""
    probs = softmax_data([z.data for z in logits], temperature)       # n floats summing to 1
    return [Value(p_i, "softmax", (logits, [p_i * ((i == j) - p_j) / temperature for j, p_j in enumerate(probs)]))
            for i, p_i in enumerate(probs)]                           # every p_i depends on every z_j


def rmsnorm(x):
    """RMSNorm without a learned gain (Zhang & Sennrich 2019): x_i * s with s = (mean_j x_j^2 + 1e-5)^-1/2,
    n Values in and out. The scale s is one node with the n inputs as children: ds/dx_j = -s^3 * x_j / n."""
    # Rescales the vector to a root-mean-square of 1, whatever its size was: each layer then reads inputs
    # of a steady scale, which keeps training stable. Unlike LayerNorm it does not subtract the mean.
    n = len(x)
    x_data = [xi.data for xi in x]
    s = (sum(v * v for v in x_data) / n + 1e-5) ** -0.5     # 1 / rms(x); 1e-5 guards against 0
    scale = Value(s, "rmsnorm", (x, [-s * s * s * v / n for v in x_data]))
    return [xi * scale for xi in x]                         # n Values with mean(x_i^2) = 1


def parameter_shapes(vocab_size, n_embd, n_layer, block_size):
    """{name: (rows, columns)} of every parameter matrix, in the order the model keeps them. A matrix has a
    row per output, so x times it is one dot product per row. No biases, no norm gains."""
    shapes = {"wte": (vocab_size, n_embd),                  # token embeddings: a row per token
              "wpe": (block_size, n_embd),                  # position embeddings: a row per position
              "lm_head": (vocab_size, n_embd)}              # n_embd -> one logit per token
    for i in range(n_layer):
        shapes[f"layer{i}.attn_wq"] = (n_embd, n_embd)      # x -> query
        shapes[f"layer{i}.attn_wk"] = (n_embd, n_embd)      # x -> key
        shapes[f"layer{i}.attn_wv"] = (n_embd, n_embd)      # x -> value
        shapes[f"layer{i}.attn_wo"] = (n_embd, n_embd)      # heads -> residual stream
        shapes[f"layer{i}.mlp_fc1"] = (4 * n_embd, n_embd)  # widen 4x: 16 -> 64
        shapes[f"layer{i}.mlp_fc2"] = (n_embd, 4 * n_embd)  # and back: 64 -> 16
    return shapes


def initial_weights(shapes, rng, std=0.08):
    """{name: rows of floats}: each matrix of `shapes` drawn row by row from a Gaussian of mean 0, std std."""
    # Small random weights: with std 0.08 every logit starts close to 0, so softmax starts close to
    # uniform and the first loss close to ln(vocab_size) (section 5). Larger weights would make the
    # untrained model confidently wrong and the first loss higher.
    return {name: [[rng.gauss(0.0, std) for _ in range(cols)] for _ in range(rows)]
            for name, (rows, cols) in shapes.items()}


class GPT:
    """The model's parameters and its forward pass for one position. state_dict holds every matrix of
    parameter_shapes() as rows of Values, drawn by initial_weights() from the random generator rng.
    Raises ValueError if n_head does not divide n_embd: the heads would leave part of every vector unread."""

    def __init__(self, vocab_size, n_embd, n_head, n_layer, block_size, rng):
        self.vocab_size, self.n_embd, self.n_head = vocab_size, n_embd, n_head
        self.n_layer, self.block_size = n_layer, block_size
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.head_dim = n_embd // n_head                    # each head reads its own slice: 16 / 4 = 4
        shapes = parameter_shapes(vocab_size, n_embd, n_layer, block_size)
        self.state_dict = {name: [[Value(x) for x in row] for row in rows]          # a Value per number
                           for name, rows in initial_weights(shapes, rng).items()}
        # Every parameter in one flat list, in state_dict order: 432 + 256 + 432 + 4*256 + 1024 + 1024
        # = 4,192 numbers with the defaults. The optimizer and checkpoints walk this list.
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]
        self.w_data = None      # weights() of the document being read, taken at its position 0 (speed: below)

    def weights(self):
        """Every matrix as plain floats, {name: rows}: what a checkpoint keeps, and w_data."""
        return {name: [[p.data for p in row] for row in mat] for name, mat in self.state_dict.items()}

    def __call__(self, token_id, pos_id, keys, values, attention=None):
        """Logits for the token after `token_id` at position `pos_id`: a list of vocab_size Values.
        keys[i] and values[i] hold layer i's key and value vectors (n_embd Values each) of positions
        0..pos_id-1; this call appends position pos_id's, so attention sees exactly the past and present.
        A list `attention` receives each head's attention weights (pos_id + 1 floats), layer by layer."""
        if pos_id == 0 or self.w_data is None:  # (speed, 10%: weights change only in Adam's step, never inside a
            self.w_data = self.weights()    # document, so it reads them as floats once; its caller lets them go)
        sd, w = self.state_dict, self.w_data
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
# In: a document's token ids. Out: one cross-entropy per position, in nats. A perfect model scores 0; a
# uniform guess over vocab_size tokens scores ln(vocab_size), ln 27 = 3.30 for names, and the small
# initial weights (section 4) make an untrained model score close to that.

def cross_entropy(logits, target_id):
    """Minus the log-probability that softmax(logits) gives the target: one Value, in nats.
    With p = softmax(z): loss = -log p_target = log sum_j exp(z_j) - z_target, and d loss/dz_j =
    p_j - [j == target]: the probability given to each token, minus 1 at the token that came."""
    zs = [z.data for z in logits]                           # vocab_size floats
    probs = softmax_data(zs)                                # the model's distribution over the next token
    # -log p_target, computed as log-sum-exp minus the target's logit rather than as log(probs[target]):
    # the same number, but it never takes the log of a probability that rounded to 0.
    max_z = max(zs)
    log_sum_exp = max_z + math.log(sum(math.exp(z - max_z) for z in zs))
    # The gradient says: push every logit down by the probability it got, and the target's up by 1.
    return Value(log_sum_exp - zs[target_id], "cross-entropy",
                 (logits, [p - (j == target_id) for j, p in enumerate(probs)]))


def n_predicted(tokens, block_size):
    """How many next tokens a document of token ids (BOS at both ends) is scored on: one per position,
    len(tokens) - 1, cut to block_size, as there are only block_size position embeddings."""
    return min(block_size, len(tokens) - 1)


def document_logits(gpt, inputs, attention=None):
    """The logits at every position of one document read left to right: inputs (n token ids, n <=
    block_size) -> n lists of vocab_size Values, list t computed from inputs[0..t]. attention, if a
    list, receives each head's attention weights at every position (GPT.__call__)."""
    # Fresh KV lists: one list of keys and one of values per layer, empty before position 0.
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    logits = [gpt(token_id, pos_id, keys, values, attention) for pos_id, token_id in enumerate(inputs)]
    gpt.w_data = None           # (speed: the floats GPT read at position 0 go with the document, see GPT.__call__)
    return logits


def document_losses(gpt, tokens):
    """Cross-entropy at each position of one document: a list of n Values (nats), n =
    n_predicted(tokens, block_size). Position t reads tokens[t] and is scored on tokens[t + 1].

    For 'emma' at initialisation (default seed and settings; `--explain emma` prints this table):
      pos  input  target  loss
        0  BOS    e       3.7198
        1  e      m       3.3593
        2  m      m       3.4958
        3  m      a       3.2518
        4  a      BOS     2.9512     mean 3.3556, beside ln 27 = 3.2958"""
    n = n_predicted(tokens, gpt.block_size)
    # The next-token shift: the inputs are tokens[:-1] and the targets tokens[1:]. This is teacher
    # forcing: the model always reads the real previous token, never its own guess, so every position of
    # the document is a training example of one pass.
    inputs, targets = tokens[:n], tokens[1:n + 1]
    logits = document_logits(gpt, inputs)                   # n lists of vocab_size logits: a distribution each
    return [cross_entropy(z, target_id) for z, target_id in zip(logits, targets)]     # how surprised, nats


# ----------------------------------------------------------------------------------------------------
# 6. Optimizer: Adam, and a learning rate that warms up, then decays along a cosine.
#
# In: every parameter's gradient. Out: every parameter moved a small step downhill, sized by this step's
# learning rate. Gradients say which way is downhill for one batch; Adam smooths them over steps and
# scales each parameter's step by how large its gradients have been.

def lr_schedule(step, num_steps, lr, warmup_steps, min_lr):
    """Learning rate of optimizer step `step` (0-based) of `num_steps`: linear warmup over the first
    warmup_steps steps, lr * (step + 1) / warmup_steps; then cosine decay (Loshchilov & Hutter 2016) from
    lr to min_lr: min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2, progress = (step - warmup_steps)
    / (num_steps - warmup_steps). With no warmup and min_lr 0: lr * (1 + cos(pi * step / num_steps)) / 2."""
    # Warmup: the first updates are taken from random weights and Adam's barely-started averages, so
    # they are kept small and grow to lr. Decay: near the end, small steps settle into a minimum
    # instead of bouncing around it. The schedule counts optimizer steps, not documents.
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, num_steps - warmup_steps)     # 0 -> 1 over the decay
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Adam:
    """Adam (Kingma & Ba 2014) over a list of parameter Values, with the constants microgpt trains with. m
    and v: running means of each parameter's gradient and squared gradient (a float each); t: updates made."""

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


def document_gradient(gpt, tokens, n_tokens):
    """Forward and backward for one document of a batch: its cross-entropies summed and divided by n_tokens,
    the batch's count of predicted tokens, then back-propagated, so its gradient adds into every p.grad.
    Returns that share of the batch's loss (a float, nats)."""
    with Tape() as tape:                                    # forward, recording each node as it is made
        doc_loss = total(document_losses(gpt, tokens)) / n_tokens
    tape.backward(doc_loss)                                 # backward along the record, newest first
    return doc_loss.data


def batch_gradient(gpt, batch):
    """Forward and backward over a batch (lists of token ids): returns its loss, the mean cross-entropy over
    every predicted token (nats), and leaves its gradient in p.grad (0 before)."""
    # The mean, not the sum: summed, a batch of long names would give a bigger loss and bigger gradients
    # than one of short names, and the step size would depend on document length and batch size.
    n_tokens = sum(n_predicted(tokens, gpt.block_size) for tokens in batch)
    if len(batch) == 1:
        return document_gradient(gpt, batch[0], n_tokens)   # one document: its gradient is the batch's, as is
    # Gradient accumulation: one document's graph at a time, so memory holds one graph, not the batch's. Each
    # one's gradient starts from 0, added in the batch's order: float sums depend on order, and this is fixed.
    loss, summed = 0.0, [0.0] * len(gpt.params)
    for tokens in batch:
        loss += document_gradient(gpt, tokens, n_tokens)
        summed = [g + p.grad for g, p in zip(summed, gpt.params)]
        for p in gpt.params:
            p.grad = 0.0
    for p, g in zip(gpt.params, summed):
        p.grad = g
    return loss


def train_step(gpt, optimizer, batch, lr, grad_clip, gradient=batch_gradient):
    """One optimizer step on a batch: a list of documents, each a list of token ids with BOS at both ends.
    Forward and backward (gradient: batch_gradient), the gradient clipped to a global norm of grad_clip if
    it is larger (None: never), then Adam's update of every parameter. Returns (the loss in nats per
    token, the gradient norm before clipping). Raises FloatingPointError, before any parameter changes,
    if the loss or the gradient is not finite."""
    loss = gradient(gpt, batch)                             # forward and backward: p.grad for every parameter
    norm = grad_norm(optimizer.params)                      # how big this step's gradient is, all in all
    if not (math.isfinite(loss) and math.isfinite(norm)):
        for p in optimizer.params:
            p.grad = 0.0
        raise FloatingPointError(f"loss {loss}, gradient norm {norm}")
    if grad_clip is not None and norm > grad_clip:          # a rare huge gradient is cut to size
        for p in optimizer.params:
            p.grad *= grad_clip / norm
    optimizer.step(lr)                                      # update, then grads reset to 0
    return loss, norm


def train(gpt, optimizer, tokenizer, docs, num_steps, lr, warmup_steps, min_lr, batch_size, grad_clip,
          start_step=0, on_step=None, gradient=batch_gradient):
    """Run optimizer steps start_step .. num_steps - 1 and return their losses (floats, nats per token).
    Step i trains on batch_size documents starting at docs[i * batch_size % len(docs)]. After each step,
    on_step(step, loss, lr, grad_norm, batch) is called if given; a true return value stops training.
    gradient(gpt, batch) does each step's forward and backward: batch_gradient, unless the workbench's
    --workers passes one that shares the documents among processes (the same sum, in the same order)."""
    losses = []
    for step in range(start_step, num_steps):
        first = step * batch_size                           # the dataset is walked in order, and wraps
        batch = [tokenizer.encode(docs[(first + j) % len(docs)]) for j in range(batch_size)]
        lr_t = lr_schedule(step, num_steps, lr, warmup_steps, min_lr)
        loss, norm = train_step(gpt, optimizer, batch, lr_t, grad_clip, gradient)
        losses.append(loss)
        if on_step is not None and on_step(step, loss, lr_t, norm, batch):
            break
    return losses


# ----------------------------------------------------------------------------------------------------
# 8. Sampling: new documents, one token at a time, fed back through the KV lists.
#
# In: the trained model and a random generator. Out: a new document. This is KV-cache decoding, the
# other regime from training: there is no real next token to read, so each sampled token is fed back in
# as the next input, and the past positions' keys and values stay in the KV lists, never recomputed.

def next_token_probs(zs, temperature, top_k):
    """The distribution a next token is drawn from: logits zs (vocab_size floats) -> probabilities."""
    # top-k: every token outside the k most likely gets probability 0, never a rare odd pick.
    if top_k is not None and top_k < len(zs):
        kth_largest = sorted(zs, reverse=True)[top_k - 1]
        zs = [z if z >= kth_largest else -math.inf for z in zs]
    # Temperature divides the logits: below 1 sharpens the distribution towards the likeliest tokens
    # (safer, more common names), above 1 flattens it (more surprising ones).
    return softmax_data(zs, temperature)


def sample(gpt, tokenizer, rng, temperature, top_k, prefix):
    """One new document, a string (the prefix included, BOS not): from BOS and the prefix's tokens, each next
    token drawn from softmax(logits / temperature), among the top_k largest logits if top_k is given, until
    BOS or block_size. Raises KeyError for a prefix character outside the vocabulary."""
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]   # empty KV lists
    token_ids = [tokenizer.BOS] + [tokenizer.ids[ch] for ch in prefix]  # BOS says: a document starts
    with no_grad():                                         # no gradient needed, so no graph is built
        for pos_id in range(gpt.block_size):
            logits = gpt(token_ids[pos_id], pos_id, keys, values)       # vocab_size logits
            if pos_id + 1 < len(token_ids):
                continue                                    # still reading the prefix: next token given
            probs = next_token_probs([z.data for z in logits], temperature, top_k)
            token_id = rng.choices(range(gpt.vocab_size), weights=probs)[0]   # draw one token id
            if token_id == tokenizer.BOS:
                break                                       # the model says the document ends here
            token_ids.append(token_id)                      # fed back in as the next position's input
    gpt.w_data = None                                       # (as in document_logits)
    return tokenizer.decode(token_ids[1:])


# ----------------------------------------------------------------------------------------------------
# 9. One run: sections 1 to 8 assembled, from a text file to new names.
#
# In: the settings below. Out: a trained model, its loss on names it never trained on, and new names. One
# random generator, seeded once, gives the documents' order, the first weights and the samples: one seed,
# one run. The workbench takes the same steps, with options, checkpoints and watching around them.

DEFAULTS = {
    "data": "names.txt", "seed": 42, "val_fraction": 0.1,          # the documents (sections 1, 2), held out
    "n_embd": 16, "n_head": 4, "n_layer": 1, "block_size": 16,    # the model (section 4)
    "steps": 500, "lr": 0.01, "warmup_steps": 0, "min_lr": 0.0,   # the learning rate's schedule (section 6)
    "batch_size": 1, "grad_clip": None, "eval_docs": 100,         # training (section 7), validation
    "samples": 20, "temperature": 0.5, "top_k": None, "prefix": "",   # sampling (section 8)
}


def split_docs(docs, val_fraction):
    """(training docs, validation docs): the first round(len(docs) * val_fraction) documents of the
    (already shuffled) list are held out for validation."""
    n_val = int(len(docs) * val_fraction + 0.5)
    return docs[n_val:], docs[:n_val]


def evaluate(gpt, tokenizer, docs):
    """Mean negative log-likelihood per predicted token over `docs` (nats), and the number of predicted tokens.
    On held-out documents, never trained on: while it falls with the training loss the model is learning what
    names are like; when it levels off or rises while the training loss falls, it has started memorising."""
    loss_sum, n_tokens = 0.0, 0
    with no_grad():                                         # no gradient needed, so no graph is built
        for doc in docs:
            losses = document_losses(gpt, tokenizer.encode(doc))
            loss_sum += sum(loss.data for loss in losses)
            n_tokens += len(losses)                         # per token: a long name weighs more than a short one
    return loss_sum / n_tokens, n_tokens


def run(s, log=print):
    """Train a model with the settings `s` (DEFAULTS) and print its loss as it falls, its validation loss
    and s["samples"] new documents. The data file is s["data"], beside this file unless a full path."""
    docs = load_docs(os.path.join(os.path.dirname(os.path.abspath(__file__)), s["data"]))
    rng = random.Random(s["seed"])          # one generator: the data's order, the first weights, the samples
    rng.shuffle(docs)                       # the order, and so which documents are held out
    train_docs, val_docs = split_docs(docs, s["val_fraction"])
    tokenizer = Tokenizer.from_docs(docs)
    gpt = GPT(tokenizer.vocab_size, s["n_embd"], s["n_head"], s["n_layer"], s["block_size"], rng)
    optimizer = Adam(gpt.params)
    log(f"{len(docs):,} documents, vocab_size {tokenizer.vocab_size}, {len(gpt.params):,} parameters; the loss "
        f"starts near ln(vocab_size) = {math.log(tokenizer.vocab_size):.4f}")

    def progress(step, loss, lr, grad_norm, batch):        # train() calls this after every step
        log(f"step {step + 1:4d} / {s['steps']:4d} | loss {loss:.4f} | lr {lr:.5f}")

    train(gpt, optimizer, tokenizer, train_docs, s["steps"], s["lr"], s["warmup_steps"], s["min_lr"],
          s["batch_size"], s["grad_clip"], on_step=progress)
    val_loss, _ = evaluate(gpt, tokenizer, val_docs[:s["eval_docs"]])     # names it never trained on
    log(f"val loss {val_loss:.4f} | val perplexity {math.exp(val_loss):.2f}")    # exp(loss): unsure among that many
    for i in range(s["samples"]):
        log(f"sample {i + 1:2d}: {sample(gpt, tokenizer, rng, s['temperature'], s['top_k'], s['prefix'])}")


def main(argv):
    """`python3 microgpt.py [options]`: the workbench's command line if it is here, else run(DEFAULTS). Returns the
    exit status, saying one line at most: 2 no data file (or options alone), 130 Ctrl-C, 141 `| head` (silent)."""
    try:
        try:
            import workbench                                # options, checkpoints, watching
            return workbench.main(argv)
        except ModuleNotFoundError as e:
            if e.name != "workbench":
                raise
        if argv:
            print("microgpt: error: options need the workbench (workbench/) beside microgpt.py", file=sys.stderr)
            return 2
        if sys.implementation.name != "pypy":       # (speed, 10%: a graph has no cycles, so the cyclic garbage
            gc.disable()                            # collector finds nothing; PyPy's is what frees each graph)
        run(DEFAULTS)
        sys.stdout.flush()                                  # (a reader gone by now is met here, not at exit)
        return 0
    except FileNotFoundError as e:                          # the data: names.txt comes with microgpt
        print(f"microgpt: error: {e.filename} not found; put the names.txt that comes with microgpt beside this "
              f"file, or any text file with one name per line", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                                 # nothing more can be shown, so nothing is said
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.modules["microgpt"] = sys.modules[__name__]         # one module: workbench's `import microgpt` is this
    sys.exit(main(sys.argv[1:]))
