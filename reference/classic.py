"""The classic scalar engines: the baselines `make bench` holds microgpt against.

This is the autograd engine and GPT a learner would otherwise run, written the textbook way: every
operation is a node with at most two children, a dot product is a chain of `*` and `+`, a softmax is
separate `exp`, sum and `/` nodes, and backward() finds its order with a recursive depth-first search.
It shares no code with microgpt.py: its own Value classes, backward, model functions and Adam.

Two Values, both classic:
- MicrogradValue, micrograd's design: a `_backward` closure per node that knows its local derivatives,
  the children in a `_prev` set, an `_op` label. Every node is in a reference cycle (the closure refers
  to the node that holds it), so only the cyclic garbage collector frees a graph.
- GistValue, the design of Karpathy's microgpt gist: `__slots__`, the children and their local
  derivatives stored on the node, one loop in backward(). The faster of the two, about 4x, and the
  stricter baseline. Its recursive build_topo closure refers to itself, so its graphs too wait for
  the cyclic collector.

ClassicGPT builds the same model as microgpt.GPT on either, from microgpt's weights
(ClassicGPT.from_microgpt), so tests can compare losses and gradients and the bench can time both
engines on the same documents.
"""
import contextlib
import math
import sys




@contextlib.contextmanager
def deep_recursion(limit=100_000):
    """The classic recursive depth-first search makes one nested Python call per node on the longest path
    through the graph. A deep model's graph is deeper than CPython's default limit of 1,000 frames, so the
    classic engine has to raise the limit while it searches (at n_embd 64 and 4 layers it crashes without
    this; raised for good, the limit would let C code such as the JSON parser overflow the stack).
    microgpt's backward never recurses and needs no such thing."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


class MicrogradValue:
    """micrograd's Value: the float, its gradient, and a closure that passes the gradient on."""

    def __init__(self, data, _children=(), _op=""):
        self.data = data
        self.grad = 0
        self._backward = lambda: None
        self._prev = set(_children)
        self._op = _op

    def __add__(self, other):
        other = other if isinstance(other, MicrogradValue) else MicrogradValue(other)
        out = MicrogradValue(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, MicrogradValue) else MicrogradValue(other)
        out = MicrogradValue(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, other):
        out = MicrogradValue(self.data ** other, (self,), f"**{other}")

        def _backward():
            self.grad += other * self.data ** (other - 1) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        out = MicrogradValue(math.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = MicrogradValue(math.log(self.data), (self,), "log")

        def _backward():
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def relu(self):
        out = MicrogradValue(0 if self.data < 0 else self.data, (self,), "ReLU")

        def _backward():
            self.grad += (out.data > 0) * out.grad
        out._backward = _backward
        return out

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
                for child in v._prev:
                    build_topo(child)
                topo.append(v)

        with deep_recursion():
            build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            v._backward()


class GistValue:
    """The gist's Value: the float, its gradient, its (at most two) children and the local derivatives."""
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, GistValue) else GistValue(other)
        return GistValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, GistValue) else GistValue(other)
        return GistValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return GistValue(self.data ** other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return GistValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return GistValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return GistValue(max(0, self.data), (self,), (float(self.data > 0),))

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

        with deep_recursion():
            build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


ENGINES = {"micrograd": MicrogradValue, "gist": GistValue}


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
    without gain, ReLU, no biases, attention scaled by sqrt(head_dim)) on a classic Value."""

    def __init__(self, weights, n_head, value=GistValue):
        """weights: {name: list of rows of floats}, microgpt's names and shapes; value: the Value class."""
        self.state_dict = {name: [[value(x) for x in row] for row in mat] for name, mat in weights.items()}
        self.n_embd = len(weights["wte"][0])
        self.n_head, self.head_dim = n_head, self.n_embd // n_head
        self.block_size = len(weights["wpe"])
        self.n_layer = sum(name.endswith("attn_wq") for name in weights)
        self.params = [p for mat in self.state_dict.values() for row in mat for p in row]

    @classmethod
    def from_microgpt(cls, gpt, value=GistValue):
        """The same model as the microgpt.GPT `gpt`, its current weights copied, on the classic `value`."""
        return cls({name: [[p.data for p in row] for row in mat] for name, mat in gpt.state_dict.items()},
                   gpt.n_head, value)

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

    def __init__(self, params, beta1=0.85, beta2=0.99, eps=1e-8):
        self.params, self.beta1, self.beta2, self.eps = params, beta1, beta2, eps
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

