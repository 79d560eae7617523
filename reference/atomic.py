"""The atomic reference: microgpt's GPT built only from the primitive operations of microgpt's own Value.

This is how micrograd would write the model: every dot product a chain of `*` and `+`, every softmax
separate `exp`, `+` and `/` nodes. It reads the same parameters (gpt.state_dict) as microgpt's fused
model, so the tests hold each fused node, the whole forward pass and training to it: the fused nodes
must compute exactly what the primitive operations would. It shares microgpt's Value, so it is no
baseline for speed; `make bench` times the independent engines of classic.py instead. Not used by
microgpt.py.
"""
import microgpt

Value = microgpt.Value


def dot(a, b):
    """sum_i a_i * b_i as n multiplies and n adds (micrograd's Neuron writes it the same way)."""
    return sum((ai * bi for ai, bi in zip(a, b)), Value(0.0))


def total(xs):
    """sum_i x_i as n adds."""
    return sum(xs, Value(0.0))


def linear(x, w):
    return [dot(row, x) for row in w]


def softmax(logits):
    """exp(z_i - max z) / sum_j exp(z_j - max z); max z is a constant, so it carries no gradient."""
    max_logit = max(z.data for z in logits)
    exps = [(z - max_logit).exp() for z in logits]
    s = total(exps)
    return [e / s for e in exps]


def rmsnorm(x):
    scale = (total([xi * xi for xi in x]) / len(x) + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def cross_entropy(logits, target_id):
    return -softmax(logits)[target_id].log()


def gpt_forward(gpt, token_id, pos_id, keys, values):
    """The same computation as microgpt.GPT.__call__, on primitive ops only -> vocab_size logits."""
    sd, hd = gpt.state_dict, gpt.head_dim
    x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
    x = rmsnorm(x)
    for i in range(gpt.n_layer):
        x_residual = x
        x = rmsnorm(x)
        q = linear(x, sd[f"layer{i}.attn_wq"])
        keys[i].append(linear(x, sd[f"layer{i}.attn_wk"]))
        values[i].append(linear(x, sd[f"layer{i}.attn_wv"]))
        x_attn = []
        for h in range(gpt.n_head):
            lo, hi = h * hd, (h + 1) * hd
            attn_logits = [dot(q[lo:hi], k[lo:hi]) * hd ** -0.5 for k in keys[i]]
            attn_weights = softmax(attn_logits)
            x_attn += [dot(attn_weights, [v[j] for v in values[i]]) for j in range(lo, hi)]
        x = linear(x_attn, sd[f"layer{i}.attn_wo"])
        x = [a + b for a, b in zip(x, x_residual)]
        x_residual = x
        x = rmsnorm(x)
        x = [h.relu() for h in linear(x, sd[f"layer{i}.mlp_fc1"])]
        x = linear(x, sd[f"layer{i}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual)]
    return linear(x, sd["lm_head"])


def document_loss(gpt, tokens):
    """Mean cross-entropy over the document's positions, as one Value built from primitives."""
    n = min(gpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(gpt.n_layer)], [[] for _ in range(gpt.n_layer)]
    losses = [cross_entropy(gpt_forward(gpt, tokens[pos], pos, keys, values), tokens[pos + 1])
              for pos in range(n)]
    return total(losses) / n


def train_step(gpt, optimizer, tokens, lr):
    """One step the micrograd way: atomic forward and backward, then microgpt's own Adam update."""
    loss = document_loss(gpt, tokens)
    loss.backward()
    optimizer.step(lr)
    return loss.data
