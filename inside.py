"""inside.py: looking inside a microgpt model, in numbers.

What a model believes and attends to, one training step traced, and its gradients checked: for one
document, at each position the probability given to the token that came and the three likeliest; where
each attention head looked; for one training step on the document, taken and undone, each matrix's
gradient and the size of Adam's update beside its weights; and backward()'s gradients against finite
differences. Each function returns numbers and leaves the model as it was; the workbench prints them
(`--explain`, `--gradcheck`). It reads microgpt.py's model from the inside, so it is microgpt's alone:
microgpt_torch.py has no such module. Standard library only.
"""
import math

import microgpt
from workbench.engine import update_ratio


def mean_loss(gpt, tokens):
    """The mean of microgpt.document_losses(): one Value, in nats per predicted token, with its graph."""
    losses = microgpt.document_losses(gpt, tokens)
    return microgpt.total(losses) / len(losses)


def explain(engine, doc, lr):
    """explain_document() on a workbench.MicrogptEngine's model and optimizer: the engine interface's explain."""
    return explain_document(engine.gpt, engine.tokenizer, engine.optimizer, doc, lr)


def gradcheck(engine, doc, rng, on_matrix=None):
    """gradient_check() on a workbench.MicrogptEngine's model: the engine interface's gradient check."""
    return gradient_check(engine.gpt, engine.tokenizer.encode(doc), rng, on_matrix=on_matrix)


def explain_document(gpt, tokenizer, optimizer, doc, lr):
    """What the model does with one document, as numbers: a dict with
      "tokens": the token ids; "positions": per predicted position t, (input id, target id, p(target),
        loss in nats, the three likeliest next tokens as (id, probability)), microgpt.n_predicted() of them;
      "attention": per position, per layer and head (layer by layer), its attention weights over
        positions 0..t (t + 1 floats, summing to 1);
      "step": traced_step() on the document's mean loss at learning rate lr.
    The model, its gradients and the optimizer are left as they were."""
    tokens = tokenizer.encode(doc)
    n = microgpt.n_predicted(tokens, gpt.block_size)
    heads = []                                              # every head's weights, position after position
    logits = microgpt.document_logits(gpt, tokens[:n], attention=heads)     # the forward pass of document_losses
    positions, losses = [], []
    for t, z in enumerate(logits):
        probs, target = microgpt.softmax_data([x.data for x in z]), tokens[t + 1]
        top3 = sorted(range(len(probs)), key=lambda i: -probs[i])[:3]
        losses.append(microgpt.cross_entropy(z, target))
        positions.append((tokens[t], target, probs[target], losses[-1].data, [(i, probs[i]) for i in top3]))
    per_position = gpt.n_layer * gpt.n_head
    return {"tokens": tokens, "positions": positions,
            "attention": [heads[t * per_position:(t + 1) * per_position] for t in range(n)],
            "step": traced_step(gpt, optimizer, microgpt.total(losses) / n, lr)}


def traced_step(gpt, optimizer, loss, lr):
    """Adam's next step on `loss`, measured and undone: {"loss": nats, "lr": lr, "matrices": {name:
    (gradient norm, update_ratio of the matrix)}}. The step is the one training would take next: Adam's
    moments and count are a copy of optimizer's, so its bias correction is that of step optimizer.t + 1.
    The model, its gradients and optimizer are left as they were."""
    loss.backward()
    flat = lambda mat, key: [getattr(p, key) for row in mat for p in row]
    before = {name: flat(mat, "data") for name, mat in gpt.state_dict.items()}
    norms = {name: math.sqrt(sum(g * g for g in flat(mat, "grad"))) for name, mat in gpt.state_dict.items()}
    trial = microgpt.Adam(gpt.params, optimizer.beta1, optimizer.beta2, optimizer.eps)
    trial.m, trial.v, trial.t = list(optimizer.m), list(optimizer.v), optimizer.t
    trial.step(lr)                                          # moves the weights and resets the gradients
    matrices = {name: (norms[name], update_ratio(before[name], flat(mat, "data")))
                for name, mat in gpt.state_dict.items()}
    for p, x in zip(gpt.params, [x for xs in before.values() for x in xs]):
        p.data = x                                          # undone: the model is as it was
    return {"loss": loss.data, "lr": lr, "matrices": matrices}


def gradient_check(gpt, tokens, rng, h=1e-5, tolerance=1e-4, sample_size=100, on_matrix=None):
    """Hold backward()'s gradient against central finite differences, (L(p + h) - L(p - h)) / 2h, in nats
    per unit of the parameter, on the parameters the document reaches (its tokens' rows of wte, its
    positions' rows of wpe, every other matrix whole): all of them in a matrix where up to sample_size
    are reached, else sample_size drawn with rng. Returns {name: {"checked", "nonzero" (of those checked,
    how many have a gradient that is not 0), "reached", "total", "worst" (the largest relative error
    |analytic - numeric| / max(|analytic|, |numeric|, 1e-5) of those checked)}}.

    h = 1e-5 balances the difference's two errors in float64, truncation (~h^2) and rounding (~1e-16 / h):
    on the default model the worst absolute error is 2e-10, and the floor of 1e-5 keeps that from looking
    large beside the smallest gradients (worst relative error 5e-6). A parameter over the tolerance is
    checked again with h / 100, as a ReLU switched by the nudge can mislead one difference; a wrong
    derivative stays wrong. The model is left as it was, gradients at zero. on_matrix(name, its report,
    entries checked so far, entries to check in all), if given, is called as each matrix is done: two
    forward passes an entry take a while on a larger model."""
    loss = mean_loss(gpt, tokens)
    reached = {id(node) for node in loss.graph() if not node._groups}      # the leaves: parameters, constants
    loss.backward()

    def error(p, step):
        x = p.data
        with microgpt.no_grad():
            p.data = x + step
            up = mean_loss(gpt, tokens).data
            p.data = x - step
            down = mean_loss(gpt, tokens).data
        p.data = x
        numeric = (up - down) / (2 * step)
        return abs(p.grad - numeric) / max(abs(p.grad), abs(numeric), 1e-5)

    report, plan = {}, {}
    for name, mat in gpt.state_dict.items():
        params = [p for row in mat for p in row]
        reachable = [p for p in params if id(p) in reached]
        chosen = reachable if len(reachable) <= sample_size else rng.sample(reachable, sample_size)
        plan[name] = (chosen, len(reachable), len(params))
    done, total = 0, sum(len(chosen) for chosen, _, _ in plan.values())
    for name, (chosen, n_reached, n_params) in plan.items():
        errors = []
        for p in chosen:
            e = error(p, h)
            errors.append(min(e, error(p, h / 100)) if e > tolerance else e)     # a ReLU switched: try again
        report[name] = {"checked": len(chosen), "nonzero": sum(p.grad != 0.0 for p in chosen),
                        "reached": n_reached, "total": n_params, "worst": max(errors, default=0.0)}
        done += len(chosen)
        if on_matrix:
            on_matrix(name, report[name], done, total)
    for p in gpt.params:
        p.grad = 0.0
    return report


def graph_dot(output, gpt):
    """The computation graph behind the Value `output` of `gpt` as Graphviz DOT text, computed left to right:
    a box per Value it was computed from, with the operation that made it, its value and its gradient
    (backward() first, to see gradients); the parameters gathered into one box per matrix, the constants
    (a Value made from a plain number) into one; an arrow from each Value to each it helped make."""
    matrix_of = {id(p): name for name, mat in gpt.state_dict.items() for row in mat for p in row}
    order = output.graph()
    number = {id(v): i for i, v in enumerate(order)}
    key = lambda v: f'"{matrix_of[id(v)]}"' if id(v) in matrix_of else '"constants"' if not v._op else \
        f'"v{number[id(v)]}"'
    escape = lambda text: "".join("\\" + c if c in '{}|<>"' else c for c in text)
    boxes, arrows = {}, set()
    for v in order:
        if v._op:
            boxes[key(v)] = f"{{{escape(v._op)}|{v.data:.4g}|grad {v.grad:.3g}}}"
        elif id(v) in matrix_of:
            rows = gpt.state_dict[matrix_of[id(v)]]
            boxes[key(v)] = f"{{{escape(matrix_of[id(v)])}|{len(rows)} x {len(rows[0])}|parameters}}"
        else:
            boxes[key(v)] = "{constants}"
        for children, _ in v._groups:
            arrows.update((key(child), key(v)) for child in children)
    colour = lambda k: ', fillcolor="#dde8f3"' if not k.startswith(('"v', '"c')) else ""   # the parameters stand out
    lines = ["digraph microgpt {", "  rankdir=LR;",
             '  node [shape=record, fontname="Helvetica", fontsize=10, style=filled, fillcolor="#f6f4ee"];']
    lines += [f'  {k} [label="{label}"{colour(k)}];' for k, label in boxes.items()]
    lines += [f"  {a} -> {b};" for a, b in sorted(arrows)]
    return "\n".join(lines + ["}"]) + "\n"
