#!/usr/bin/env python3
"""microgpt: train a tiny GPT on a list of names and make up new ones, in one file of plain Python.

Everything is here and nothing is imported from outside the standard library: the dataset, the
tokenizer, a scalar autograd engine, the transformer, the cross-entropy loss, Adam, the training
loop and the sampling loop, in that order. Run `python3 microgpt.py --help` for the options.
"""
import argparse
import math
import operator
import os
import random
import sys
import time


class DataError(Exception):
    """Bad input the user can fix (a missing file, an impossible option): main() prints the message on
    one line and exits with status 2."""


# ----------------------------------------------------------------------------------------------------
# 1. Dataset: a text file, one document (here: one name) per line.

def load_docs(path):
    """Read the documents of a UTF-8 text file: one per line, whitespace stripped, blank lines skipped.

    Returns a list of strings (at least one). Raises DataError if the file is missing, unreadable,
    not UTF-8, or holds no non-blank line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"data file {path} not found; pass --data with a text file, one document per line")
    except IsADirectoryError:
        raise DataError(f"data file {path} is a folder; pass --data with a text file")
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8")
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}")
    docs = [line.strip() for line in text.splitlines()]
    docs = [doc for doc in docs if doc]
    if not docs:
        raise DataError(f"data file {path} has no non-blank line; put one document per line")
    return docs


# ----------------------------------------------------------------------------------------------------
# 2. Tokenizer: one id per distinct character, plus BOS.

class Tokenizer:
    """Characters to ids and back.

    `chars` is the sorted list of distinct characters; character chars[i] has id i. One extra token,
    BOS = len(chars), marks both the start and the end of a document, so vocab_size = len(chars) + 1
    (27 for names: a-z and BOS).
    """

    def __init__(self, chars):
        self.chars = list(chars)
        self.BOS = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self.ids = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_docs(cls, docs):
        """The tokenizer of a list of documents: every character that occurs in them, sorted."""
        return cls(sorted(set("".join(docs))))

    def encode(self, doc):
        """A document as token ids wrapped in BOS: 'emma' -> [BOS, 4, 12, 12, 0, BOS], len(doc) + 2 ids.

        Raises KeyError for a character outside the vocabulary."""
        return [self.BOS] + [self.ids[ch] for ch in doc] + [self.BOS]

    def decode(self, ids):
        """Token ids (without BOS) back to a string."""
        return "".join(self.chars[i] for i in ids)


# ----------------------------------------------------------------------------------------------------
# 3. Autograd: a scalar Value that remembers how it was made.

class Value:
    """One float in a computation graph, with the gradient of the final loss with respect to it.

    `_children` are the Values it was computed from, `_local_grads` the partial derivative of this
    Value with respect to each child (same length). backward() combines them with the chain rule.
    """
    __slots__ = ("data", "grad", "_children", "_local_grads")
    grad_enabled = True     # False inside `with no_grad():`

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0.0
        if not Value.grad_enabled:          # remember nothing: no graph, nothing kept alive
            children = local_grads = ()
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):                       # d(a+b)/da = 1, d(a+b)/db = 1
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):                       # d(ab)/da = b, d(ab)/db = a
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, n):                           # d(a^n)/da = n a^(n-1), n a plain number
        return Value(self.data ** n, (self,), (n * self.data ** (n - 1),))

    def exp(self):                                  # d(e^a)/da = e^a
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):                                  # d(ln a)/da = 1/a
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def relu(self):                                 # 1 where a > 0, else 0
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1.0
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def backward(self):
        """Fill in .grad of every Value this one depends on: d(self)/d(node), added to what is there.

        Walks the graph once in reverse topological order (a node after everything computed from it)
        with an explicit stack, never recursion, so a chain of 100,000 nodes is fine. Leaves (parameters
        and constants) have nothing to pass on and are left out of the order; their parents add to them.
        """
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)          # everything node was computed from is already in order
                continue
            if node in visited:
                continue
            visited.add(node)
            stack.append((node, True))
            for child in node._children:
                if child._children and child not in visited:
                    stack.append((child, False))
        self.grad = 1.0
        for node in reversed(order):
            node_grad = node.grad                   # final: every node computed from node is done
            if node_grad == 0.0:                    # nothing to pass on (say, behind a ReLU that was off)
                continue
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * node_grad     # chain rule, summed over every path


class no_grad:
    """`with no_grad():` computes values only: new Values keep no children, so no graph is built and
    backward() through them does nothing. For sampling and evaluation, which need no gradient."""

    def __enter__(self):
        self.previous, Value.grad_enabled = Value.grad_enabled, False

    def __exit__(self, *exc_info):
        Value.grad_enabled = self.previous


# ----------------------------------------------------------------------------------------------------
# 4. Model: a GPT-2-like transformer that reads one token at a time.

# The model's stages as single nodes with many children. Each computes its value from plain floats and
# stores the derivative with respect to every child, so backward() treats it like any other Value; the
# same function built from + * exp ... would make one node per arithmetic operation instead.

def dot(a, b):
    """sum_i a_i * b_i over two equal-length lists of Values -> one Value with 2n children.

    d/da_i = b_i and d/db_i = a_i: each side's local gradients are the other side's values.
    """
    a_data, b_data = [x.data for x in a], [x.data for x in b]
    return Value(sum(map(operator.mul, a_data, b_data)), a + b, b_data + a_data)


def total(xs):
    """sum_i x_i over a list of Values -> one Value; d/dx_i = 1 for every child."""
    return Value(sum(x.data for x in xs), tuple(xs), [1.0] * len(xs))


def linear(x, w):
    """Matrix-vector product: x (n_in Values), w (n_out rows of n_in Values) -> n_out Values.

    Output i is dot(w[i], x), one node with the row and x as children: d/dw_ij = x_j, d/dx_j = w_ij.
    Written out rather than calling dot() so that x's floats are read once, not once per row.
    """
    x_data = [xi.data for xi in x]
    out = []
    for row in w:
        row_data = [wij.data for wij in row]
        out.append(Value(sum(map(operator.mul, row_data, x_data)), row + x, x_data + row_data))
    return out


def softmax_data(zs, temperature=1.0):
    """Softmax of plain floats: exp((z_i - max z) / T) / sum_j exp((z_j - max z) / T), same length.
    Subtracting max z changes nothing mathematically and keeps exp from overflowing."""
    max_z = max(zs)
    exps = [math.exp((z - max_z) / temperature) for z in zs]
    s = sum(exps)
    return [e / s for e in exps]


def softmax(logits, temperature=1.0):
    """Probabilities from a list of n logit Values -> n Values, each with all n logits as children.

    p_i = exp(z_i / T) / sum_j exp(z_j / T), and dp_i/dz_j = p_i * ([i == j] - p_j) / T.
    """
    probs = softmax_data([z.data for z in logits], temperature)
    logits = tuple(logits)
    return [Value(p_i, logits, [p_i * ((i == j) - p_j) / temperature for j, p_j in enumerate(probs)])
            for i, p_i in enumerate(probs)]


def rmsnorm(x):
    """RMSNorm without a learned gain (Zhang & Sennrich 2019): x_i * s with s = (mean_j x_j^2 + 1e-5)^-1/2,
    n Values in and out.

    The scale s is one node with the n inputs as children: ds/dx_j = -s^3 * x_j / n.
    """
    n = len(x)
    x_data = [xi.data for xi in x]
    s = (sum(v * v for v in x_data) / n + 1e-5) ** -0.5
    scale = Value(s, tuple(x), [-s * s * s * v / n for v in x_data])
    return [xi * scale for xi in x]


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
        self.head_dim = n_embd // n_head
        rng = rng or random.Random(0)

        def matrix(n_out, n_in):
            return [[Value(rng.gauss(0.0, std)) for _ in range(n_in)] for _ in range(n_out)]

        self.state_dict = {"wte": matrix(vocab_size, n_embd), "wpe": matrix(block_size, n_embd),
                           "lm_head": matrix(vocab_size, n_embd)}
        for i in range(n_layer):
            self.state_dict[f"layer{i}.attn_wq"] = matrix(n_embd, n_embd)
            self.state_dict[f"layer{i}.attn_wk"] = matrix(n_embd, n_embd)
            self.state_dict[f"layer{i}.attn_wv"] = matrix(n_embd, n_embd)
            self.state_dict[f"layer{i}.attn_wo"] = matrix(n_embd, n_embd)
            self.state_dict[f"layer{i}.mlp_fc1"] = matrix(4 * n_embd, n_embd)
            self.state_dict[f"layer{i}.mlp_fc2"] = matrix(n_embd, 4 * n_embd)
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]

    def __call__(self, token_id, pos_id, keys, values):
        """Logits for the token after `token_id` at position `pos_id`: a list of vocab_size Values.

        keys[i] and values[i] hold layer i's key and value vectors (n_embd Values each) of positions
        0..pos_id-1; this call appends position pos_id's, so attention sees exactly the past and present.
        """
        sd = self.state_dict
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
        x = rmsnorm(x)
        for i in range(self.n_layer):
            x_residual = x
            x = rmsnorm(x)
            q = linear(x, sd[f"layer{i}.attn_wq"])
            keys[i].append(linear(x, sd[f"layer{i}.attn_wk"]))
            values[i].append(linear(x, sd[f"layer{i}.attn_wv"]))
            x_attn = []
            for h in range(self.n_head):
                lo, hi = h * self.head_dim, (h + 1) * self.head_dim
                q_h = q[lo:hi]
                attn_logits = [dot(q_h, k[lo:hi]) for k in keys[i]]
                attn_weights = softmax(attn_logits, temperature=math.sqrt(self.head_dim))
                x_attn += [dot(attn_weights, [v[j] for v in values[i]]) for j in range(lo, hi)]
            x = linear(x_attn, sd[f"layer{i}.attn_wo"])
            x = [a + b for a, b in zip(x, x_residual)]
            x_residual = x
            x = rmsnorm(x)
            x = [h.relu() for h in linear(x, sd[f"layer{i}.mlp_fc1"])]
            x = linear(x, sd[f"layer{i}.mlp_fc2"])
            x = [a + b for a, b in zip(x, x_residual)]
        return linear(x, sd["lm_head"])


# ----------------------------------------------------------------------------------------------------
# 5. Loss: how surprised the model is by each next token of a document.

def cross_entropy(logits, target_id):
    """Minus the log-probability that softmax(logits) gives the target: one Value, in nats.

    With p = softmax(z): loss = -log p_target = log sum_j exp(z_j) - z_target, and d loss/dz_j =
    p_j - [j == target]: the probability given to each token, minus 1 at the token that came.
    """
    zs = [z.data for z in logits]
    probs = softmax_data(zs)
    max_z = max(zs)
    log_sum_exp = max_z + math.log(sum(math.exp(z - max_z) for z in zs))
    return Value(log_sum_exp - zs[target_id], tuple(logits),
                 [p - (j == target_id) for j, p in enumerate(probs)])


def document_losses(gpt, tokens):
    """Cross-entropy at each position of one document: a list of n Values (nats), n = min(block_size,
    len(tokens) - 1). Position t reads tokens[t] and is scored on tokens[t + 1]."""
    n = min(gpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = gpt(token_id, pos_id, keys, values)
        losses.append(cross_entropy(logits, target_id))
    return losses


def document_loss(gpt, tokens):
    """The mean of document_losses(): one Value, in nats per predicted token."""
    losses = document_losses(gpt, tokens)
    return total(losses) / len(losses)


# ----------------------------------------------------------------------------------------------------
# 6. Optimizer: Adam, and a learning rate that decays along a cosine.

def lr_schedule(step, num_steps, lr):
    """Learning rate of optimizer step `step` (0-based) of `num_steps`: lr * (1 + cos(pi * step /
    num_steps)) / 2, from lr down towards 0 (cosine decay, Loshchilov & Hutter 2016)."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / num_steps))


class Adam:
    """Adam (Kingma & Ba 2014) over a list of parameter Values, with the constants microgpt trains with.

    m and v are the running means of each parameter's gradient and squared gradient (one float per
    parameter); t counts the updates made.
    """

    def __init__(self, params, beta1=0.85, beta2=0.99, eps=1e-8):
        self.params, self.beta1, self.beta2, self.eps = params, beta1, beta2, eps
        self.m = [0.0] * len(params)
        self.v = [0.0] * len(params)
        self.t = 0

    def step(self, lr):
        """Move every parameter against its bias-corrected gradient mean, then reset its grad to 0."""
        self.t += 1
        b1, b2, eps = self.beta1, self.beta2, self.eps
        bias1, bias2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        grads = [p.grad for p in self.params]
        self.m = [b1 * m + (1.0 - b1) * g for m, g in zip(self.m, grads)]      # running mean of g
        self.v = [b2 * v + (1.0 - b2) * g * g for v, g in zip(self.v, grads)]  # running mean of g^2
        for p, m, v in zip(self.params, self.m, self.v):
            p.data -= lr * (m / bias1) / (math.sqrt(v / bias2) + eps)
            p.grad = 0.0


# ----------------------------------------------------------------------------------------------------
# 7. Training: one document per step, cycling through the shuffled dataset.

def train_step(gpt, optimizer, tokens, lr):
    """Forward, backward and update on one document (token ids with BOS at both ends). Returns the
    loss before the update (float, nats per token)."""
    loss = document_loss(gpt, tokens)
    loss.backward()
    optimizer.step(lr)
    return loss.data


def train(gpt, optimizer, tokenizer, docs, num_steps, lr, log=print):
    """Train for num_steps steps; step i uses docs[i % len(docs)]. Prints one line per step through
    `log` and returns the losses (num_steps floats, nats)."""
    losses = []
    for step in range(num_steps):
        tokens = tokenizer.encode(docs[step % len(docs)])
        losses.append(train_step(gpt, optimizer, tokens, lr_schedule(step, num_steps, lr)))
        log(f"step {step + 1:4d} / {num_steps:4d} | loss {losses[-1]:.4f}")
    return losses


# ----------------------------------------------------------------------------------------------------
# 8. Sampling: new documents, one token at a time, fed back through the KV lists.

def sample(gpt, tokenizer, rng, temperature=0.5):
    """Generate one document: start from BOS, sample each next token from softmax(logits / temperature)
    and stop at BOS or after block_size tokens. Returns the string (without BOS)."""
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    token_id, out = tokenizer.BOS, []
    with no_grad():
        for pos_id in range(gpt.block_size):
            logits = gpt(token_id, pos_id, keys, values)
            probs = softmax(logits, temperature)
            token_id = rng.choices(range(gpt.vocab_size), weights=[p.data for p in probs])[0]
            if token_id == tokenizer.BOS:
                break
            out.append(token_id)
    return tokenizer.decode(out)


# ----------------------------------------------------------------------------------------------------
# Command line

def parse_args(argv=None):
    """Options -> argparse.Namespace; raises DataError for a value that cannot work."""
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="Train a tiny GPT on a list of names and sample new ones.")
    p.add_argument("--data", default=os.path.join(here, "names.txt"),
                   help="UTF-8 text file, one document per line (default: names.txt beside this script)")
    p.add_argument("--steps", type=int, default=500, help="training steps, one document each (default 500)")
    p.add_argument("--seed", type=int, default=42, help="random seed: same seed, same run (default 42)")
    p.add_argument("--n-embd", type=int, default=16, help="embedding width (default 16)")
    p.add_argument("--n-head", type=int, default=4, help="attention heads; must divide n_embd (default 4)")
    p.add_argument("--n-layer", type=int, default=1, help="transformer layers (default 1)")
    p.add_argument("--block-size", type=int, default=8, help="positions per document, at least 2 (default 8)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate of Adam (default 0.01)")
    p.add_argument("--samples", type=int, default=20, help="names to generate after training (default 20)")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature > 0 (default 0.5)")
    args = p.parse_args(argv)
    checks = [
        (args.steps < 0, f"--steps must be 0 or more, got {args.steps}"),
        (args.samples < 0, f"--samples must be 0 or more, got {args.samples}"),
        (args.n_embd < 1 or args.n_head < 1 or args.n_layer < 1,
         "--n-embd, --n-head and --n-layer must be at least 1"),
        (args.n_embd % max(args.n_head, 1) != 0,
         f"--n-embd {args.n_embd} must be divisible by --n-head {args.n_head}"),
        (args.block_size < 2, f"--block-size must be at least 2, got {args.block_size}"),
        (not args.lr > 0, f"--lr must be greater than 0, got {args.lr}"),
        (not args.temperature > 0, f"--temperature must be greater than 0, got {args.temperature}"),
    ]
    for failed, message in checks:
        if failed:
            raise DataError(message)
    return args


def run(args, log=print):
    """The whole program for parsed options: load, train, sample. Raises DataError for bad input."""
    docs = load_docs(args.data)
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    tokenizer = Tokenizer.from_docs(docs)
    gpt = GPT(tokenizer.vocab_size, args.n_embd, args.n_head, args.n_layer, args.block_size, rng)
    n_cut = sum(len(doc) + 1 > gpt.block_size for doc in docs)
    log(f"documents: {len(docs):,}")
    log(f"vocab_size: {tokenizer.vocab_size} ({len(tokenizer.chars)} characters + BOS)")
    log(f"parameters: {len(gpt.params):,}")
    log(f"loss at initialisation should be near ln(vocab_size) = {math.log(tokenizer.vocab_size):.4f}")
    if n_cut:
        log(f"cut: {n_cut:,} documents are longer than block_size {gpt.block_size} allows "
            f"and train on their first {gpt.block_size} positions only")
    start = time.perf_counter()
    train(gpt, Adam(gpt.params), tokenizer, docs, args.steps, args.lr, log)
    log(f"trained {args.steps} steps in {time.perf_counter() - start:.1f} s")
    for i in range(args.samples):
        log(f"sample {i + 1:2d}: {sample(gpt, tokenizer, rng, args.temperature)}")


def main(argv=None):
    try:
        run(parse_args(argv))
    except DataError as e:
        print(f"microgpt: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
