"""The classic scalar engine: the baseline `make bench` holds microgpt against.

This is the autograd engine and GPT a learner would otherwise run, written the textbook way (micrograd's
Value, as Karpathy's microgpt gist writes it): every operation is a node with at most two children, a dot
product is a chain of `*` and `+`, a softmax is separate `exp`, sum and `/` nodes, and backward() finds
its order with a recursive depth-first search. It shares no code with microgpt.py's engine: its own Value,
its own backward, its own model functions and its own Adam. Of the classic styles it is the faster one
(`__slots__`, local derivatives stored on the node rather than a `_backward` closure per node), so the
ratio `make bench` prints is not flattered by a slow baseline.

It reads its weights from plain lists of floats, so tests and the bench can start it from exactly
microgpt's parameters (`ClassicGPT.from_microgpt`) and compare losses and gradients.
"""
import math
import sys

# The recursive topological sort below makes one nested Python call per node on the longest path through
# the graph. A deep model's graph is deeper than CPython's default limit of 1,000 frames, so the classic
# engine has to raise the limit (at n_embd 64 and 4 layers it crashes without this); microgpt's backward
# never recurses and needs no such thing.
sys.setrecursionlimit(100_000)


class Value:
    """One float in the graph, its gradient, its (at most two) children and the local derivatives."""
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return Value(self.data ** other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def backward(self):
        topo, visited = [], set()

        def build_topo(v):                      # recursive depth-first search: the classic way
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


def linear(x, w):
    return [sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]


def softmax(logits):
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x):
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


class ClassicGPT:
    """The same GPT as microgpt.GPT (wte, wpe, lm_head, per layer attn_wq/wk/wv/wo and mlp_fc1/fc2; RMSNorm
    without gain, ReLU, no biases, attention scaled by sqrt(head_dim)) on the classic Value."""

    def __init__(self, weights, n_head):
        """weights: {name: list of rows of floats}, microgpt's names and shapes."""
        self.state_dict = {name: [[Value(x) for x in row] for row in mat] for name, mat in weights.items()}
        self.n_embd = len(weights["wte"][0])
        self.n_head, self.head_dim = n_head, self.n_embd // n_head
        self.block_size = len(weights["wpe"])
        self.n_layer = sum(name.endswith("attn_wq") for name in weights)
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]

    @classmethod
    def from_microgpt(cls, gpt):
        return cls({name: [[p.data for p in row] for row in mat] for name, mat in gpt.state_dict.items()},
                   gpt.n_head)

    def __call__(self, token_id, pos_id, keys, values):
        sd, hd = self.state_dict, self.head_dim
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
        x = rmsnorm(x)
        for li in range(self.n_layer):
            x_residual = x
            x = rmsnorm(x)
            q = linear(x, sd[f"layer{li}.attn_wq"])
            k = linear(x, sd[f"layer{li}.attn_wk"])
            v = linear(x, sd[f"layer{li}.attn_wv"])
            keys[li].append(k)
            values[li].append(v)
            x_attn = []
            for h in range(self.n_head):
                hs = h * hd
                q_h = q[hs:hs + hd]
                k_h = [ki[hs:hs + hd] for ki in keys[li]]
                v_h = [vi[hs:hs + hd] for vi in values[li]]
                attn_logits = [sum(q_h[j] * k_h[t][j] for j in range(hd)) / hd ** 0.5 for t in range(len(k_h))]
                attn_weights = softmax(attn_logits)
                head_out = [sum(attn_weights[t] * v_h[t][j] for t in range(len(v_h))) for j in range(hd)]
                x_attn.extend(head_out)
            x = linear(x_attn, sd[f"layer{li}.attn_wo"])
            x = [a + b for a, b in zip(x, x_residual)]
            x_residual = x
            x = rmsnorm(x)
            x = linear(x, sd[f"layer{li}.mlp_fc1"])
            x = [xi.relu() for xi in x]
            x = linear(x, sd[f"layer{li}.mlp_fc2"])
            x = [a + b for a, b in zip(x, x_residual)]
        return linear(x, sd["lm_head"])


def document_loss(gpt, tokens):
    """Mean cross-entropy over the document's positions (at most block_size), as one classic Value."""
    n = min(gpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    losses = []
    for pos_id in range(n):
        logits = gpt(tokens[pos_id], pos_id, keys, values)
        probs = softmax(logits)
        losses.append(-probs[tokens[pos_id + 1]].log())
    return (1 / n) * sum(losses)


class Adam:
    """Adam as the classic loop writes it: one parameter at a time, microgpt's constants."""

    def __init__(self, params, lr=0.01, beta1=0.85, beta2=0.99, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m, self.v, self.t = [0.0] * len(params), [0.0] * len(params), 0

    def step(self, lr):
        self.t += 1
        for i, p in enumerate(self.params):
            self.m[i] = self.beta1 * self.m[i] + (1 - self.beta1) * p.grad
            self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * p.grad ** 2
            m_hat = self.m[i] / (1 - self.beta1 ** self.t)
            v_hat = self.v[i] / (1 - self.beta2 ** self.t)
            p.data -= lr * m_hat / (v_hat ** 0.5 + self.eps)
            p.grad = 0


def train_step(gpt, optimizer, tokens, lr):
    """One classic training step: forward, recursive backward, Adam. Returns the loss (a float)."""
    loss = document_loss(gpt, tokens)
    loss.backward()
    optimizer.step(lr)
    return loss.data

