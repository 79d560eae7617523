#!/usr/bin/env python3
"""microgpt_torch.py: microgpt.py's GPT and its training, in PyTorch tensors.

The same model: microgpt.GPT's parameter names and shapes, RMSNorm without gain, a ReLU MLP, no biases,
attention scaled by sqrt(head_dim). The same training: the data, split, walk through the documents,
learning-rate schedule, Adam constants and checkpoint file all come from microgpt.py, so both always
train on the same documents from the same first weights, and a checkpoint from either runs in the other.
What changes is the unit of work. microgpt.py computes one position of one document at a time, a Value
per number; here a batch of documents, every position at once, is a few tensor operations, which is
what lets a bigger model train in minutes, on a GPU, or on several processes at once:

  python3 microgpt_torch.py                                        # microgpt.py's run, in tensors
  python3 microgpt_torch.py --n-embd 128 --n-layer 4 --block-size 32 --batch-size 64 --steps 3000
  torchrun --nproc_per_node 2 microgpt_torch.py --batch-size 8    # DistributedDataParallel

Each stage names the microgpt.py function it mirrors. Needs PyTorch; microgpt.py itself never does.
"""
import argparse
import math
import os
import random
import signal
import sys

import microgpt
from microgpt import DataError

try:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
except ImportError:
    if __name__ == "__main__":
        print("microgpt_torch: error: PyTorch is not installed; install it with `pip install torch` "
              "(microgpt.py needs nothing)", file=sys.stderr)
        sys.exit(2)
    raise

IGNORE = -100                   # the target of a padding position: cross_entropy skips it


# ---- the model: microgpt.GPT, every position of a batch at once

def rmsnorm(x):
    """microgpt.rmsnorm along the last axis: x / sqrt(mean(x^2) + 1e-5), no gain. (..., C) -> (..., C)."""
    return x * (x.pow(2).mean(dim=-1, keepdim=True) + 1e-5).rsqrt()


class GPT(torch.nn.Module):
    """microgpt.GPT in tensors. The parameters keep microgpt's names, shapes (a row per output) and order:
    wte (V, C), wpe (block_size, C), lm_head (V, C), per layer attn_wq/wk/wv/wo (C, C), mlp_fc1 (4C, C)
    and mlp_fc2 (C, 4C)."""

    def __init__(self, weights, n_head, dtype, device):
        """weights: {microgpt name: rows of floats}, as microgpt.GPT.weights() or a checkpoint has them."""
        super().__init__()
        self.w = {}                 # "layer0.attn_wq" cannot name a torch parameter (a dot means a submodule)
        for name, rows in weights.items():
            self.w[name] = torch.nn.Parameter(torch.tensor(rows, dtype=dtype, device=device))
            self.register_parameter(name.replace(".", "_"), self.w[name])
        self.n_head, self.n_layer = n_head, sum(name.endswith("attn_wq") for name in weights)
        self.block_size, self.n_embd = self.w["wpe"].shape

    def forward(self, idx):
        """Token ids (B, T) -> logits (B, T, V): microgpt.GPT.__call__, for every position at once."""
        B, T = idx.shape
        C, nh, w = self.n_embd, self.n_head, self.w
        x = rmsnorm(w["wte"][idx] + w["wpe"][:T])                      # what + where: (B, T, C)
        # The causal mask. microgpt needs none: its KV list holds only the positions read so far. Here all
        # positions are computed at once, so each must be kept from attending to those after it.
        future = torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(1)     # (T, T), True above the diagonal
        for i in range(self.n_layer):
            h = rmsnorm(x)
            # q, k, v: (B, T, C), split into heads (B, nh, T, hd), as q[lo:hi] in microgpt
            q, k, v = (F.linear(h, w[f"layer{i}.attn_w{c}"]).view(B, T, nh, C // nh).transpose(1, 2)
                       for c in "qkv")
            scores = q @ k.transpose(-2, -1) / math.sqrt(C // nh)     # (B, nh, T, T): every dot(q, k) at once
            attn = scores.masked_fill(future, float("-inf")).softmax(dim=-1)    # each row sums to 1 over the past
            heads = (attn @ v).transpose(1, 2).reshape(B, T, C)       # the heads side by side: (B, T, C)
            x = x + F.linear(heads, w[f"layer{i}.attn_wo"])            # residual, as in microgpt
            x = x + F.linear(F.relu(F.linear(rmsnorm(x), w[f"layer{i}.mlp_fc1"])), w[f"layer{i}.mlp_fc2"])
        return F.linear(x, w["lm_head"])                               # logits: (B, T, V)


# ---- the loss: microgpt.document_losses, a batch of documents of different lengths

def batch_tensors(batch, block_size, device):
    """Documents (token lists with BOS at both ends) -> (inputs, targets), (B, T) each, T the longest
    document's positions: the next-token shift of every row. A shorter document is padded, its inputs
    with 0 and its targets with IGNORE; the causal mask keeps the padding from touching real positions."""
    n = [min(block_size, len(tokens) - 1) for tokens in batch]         # positions each document trains
    inputs = torch.zeros(len(batch), max(n), dtype=torch.long)
    targets = torch.full((len(batch), max(n)), IGNORE, dtype=torch.long)
    for row, (tokens, k) in enumerate(zip(batch, n)):
        inputs[row, :k] = torch.tensor(tokens[:k])                      # tokens[:-1]
        targets[row, :k] = torch.tensor(tokens[1:k + 1])                # tokens[1:]
    return inputs.to(device), targets.to(device)


def loss_sum(model, batch, block_size, device):
    """The cross-entropy summed over every real position of the batch (nats): a 0-dim tensor."""
    inputs, targets = batch_tensors(batch, block_size, device)
    logits = model(inputs)                                              # (B, T, V)
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),      # (B*T, V) and (B*T,)
                           ignore_index=IGNORE, reduction="sum")


def n_predicted(batch, block_size):
    return sum(min(block_size, len(tokens) - 1) for tokens in batch)


# ---- training: microgpt.train and microgpt.train_step

def train(model, step_model, optimizer, tokenizer, docs, s, start_step, on_step, device, rank=0, world=1):
    """Optimizer steps start_step .. s["steps"] - 1. Step i trains docs[i * batch_size % len(docs)] and the
    batch_size - 1 after them, microgpt's walk; with several processes each takes every world-th document
    of that batch. The loss is the mean over every predicted token of the whole batch. on_step(step, loss,
    lr, grad_norm, batch) as in microgpt.train; rank 0's answer stops every process.
    Raises FloatingPointError, before the update, if the loss or the gradient is not finite."""
    for step in range(start_step, s["steps"]):
        first = step * s["batch_size"]
        batch = [tokenizer.encode(docs[(first + j) % len(docs)]) for j in range(s["batch_size"])]
        lr = microgpt.lr_schedule(step, s["steps"], s["lr"], s["warmup_steps"], s["min_lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr                            # once per optimizer step, never per document
        optimizer.zero_grad()                           # microgpt resets in Adam.step, after the update: the same
        mine = loss_sum(step_model, batch[rank::world], s["block_size"], device)
        # DistributedDataParallel averages the processes' gradients, so each scales its sum by world over
        # the whole batch's tokens: the average is then the gradient of the batch's mean loss.
        (mine * world / n_predicted(batch, s["block_size"])).backward()
        # the norm before clipping; PyTorch scales by clip / (norm + 1e-6) where microgpt divides by the norm
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"] or math.inf).item()
        total = mine.detach().clone()
        if world > 1:
            dist.all_reduce(total)                      # the batch's summed loss, every process's share
        loss = total.item() / n_predicted(batch, s["block_size"])
        if not (math.isfinite(loss) and math.isfinite(norm)):
            optimizer.zero_grad()
            raise FloatingPointError(f"loss {loss}, gradient norm {norm}")
        optimizer.step()                                # Adam, microgpt's constants (see adam())
        stop = torch.tensor(int(bool(on_step(step, loss, lr, norm, batch))))
        if world > 1:
            dist.broadcast(stop, src=0)
        if stop.item():
            break


def adam(model):
    """torch.optim.Adam with microgpt.Adam's constants: beta1 0.85, beta2 0.99, eps 1e-8, no weight decay.
    The update is microgpt's, lr * m_hat / (sqrt(v_hat) + eps), up to rounding: PyTorch divides sqrt(v)
    by sqrt(1 - beta2^t) where microgpt takes the square root of the quotient."""
    return torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.85, 0.99), eps=1e-8)


def evaluate(model, tokenizer, docs, block_size, device, chunk=256):
    """microgpt.evaluate: the mean loss per predicted token over docs (nats), in batches, no graph."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(docs), chunk):
            batch = [tokenizer.encode(doc) for doc in docs[i:i + chunk]]
            total += loss_sum(model, batch, block_size, device).item()
            count += n_predicted(batch, block_size)
    return total / count


def sample(model, tokenizer, rng, temperature, top_k, prefix, device):
    """microgpt.sample: the same draws from the same generator, so a checkpoint samples the same names in
    both. Without a KV cache, each position runs the whole document so far again (short documents)."""
    ids = [tokenizer.BOS] + [tokenizer.ids[ch] for ch in prefix]
    with torch.no_grad():
        for _ in range(len(ids) - 1, model.block_size):
            logits = model(torch.tensor([ids], device=device))[0, -1]           # the last position's (V,)
            probs = microgpt.next_token_probs(logits.tolist(), temperature, top_k)
            token_id = rng.choices(range(len(probs)), weights=probs)[0]
            if token_id == tokenizer.BOS:
                break
            ids.append(token_id)
    return tokenizer.decode(ids[1:])


# ---- checkpoints: microgpt's JSON file, both ways

def adam_state(model, optimizer):
    """(t, m, v) in microgpt's form: one float per parameter in state_dict order (zeros before step 1)."""
    states = [optimizer.state.get(p, {}) for p in model.w.values()]
    if not states[0]:
        n = sum(p.numel() for p in model.w.values())
        return 0, [0.0] * n, [0.0] * n
    flat = lambda key: torch.cat([state[key].flatten() for state in states]).tolist()
    return int(states[0]["step"]), flat("exp_avg"), flat("exp_avg_sq")


def restore_adam(model, optimizer, t, m, v):
    """Adam's state from microgpt's (t, m, v), so that the next step is the one microgpt would take."""
    if t == 0:
        return
    i = 0
    for p in model.w.values():
        n = p.numel()
        as_p = lambda xs: torch.tensor(xs[i:i + n], dtype=p.dtype, device=p.device).view_as(p)
        optimizer.state[p] = {"step": torch.tensor(float(t)), "exp_avg": as_p(m), "exp_avg_sq": as_p(v)}
        i += n


# ---- the command line: microgpt.py's options and its harness, plus the device and the dtype

def parse_args(argv=None):
    p = microgpt.build_parser("Train microgpt's GPT with PyTorch tensors (same data, model, checkpoints).")
    g = p.add_argument_group("tensors")
    g.add_argument("--device", default="cpu", help="cpu, or cuda when PyTorch sees a GPU (default cpu)")
    g.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="(default float32)")
    args = microgpt.parse_args(argv, p)
    if args.explain is not None or args.gradcheck is not None:
        raise DataError("--explain and --gradcheck are microgpt.py's: python3 microgpt.py --load PATH --explain DOC")
    return args


def check_memory(s, vocab_size, dtype, device):
    """DataError, before anything is allocated, if the weights, gradients, Adam's moments and one batch's
    activations (a generous count) would not fit in the device's memory."""
    n_params = sum(r * c for r, c in microgpt.parameter_shapes(vocab_size, s["n_embd"], s["n_layer"],
                                                                s["block_size"]).values())
    B, T, C = s["batch_size"], s["block_size"], s["n_embd"]
    floats = 4 * n_params + B * T * (s["n_layer"] * (16 * C + 3 * s["n_head"] * T) + 3 * vocab_size)
    need = floats * torch.finfo(dtype).bits // 8
    have = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else \
        microgpt.physical_memory()
    if have and need > have:
        raise DataError(f"{n_params:,} parameters and a batch of {B} need about {need / 1e9:,.1f} GB, more than "
                        f"the {have / 1e9:,.1f} GB of {device}; choose a smaller model or batch")


def start(args):
    """(device, dtype, rank, world): one process, or one of torchrun's (WORLD_SIZE set), which joins the
    process group: gloo on CPUs, nccl on GPUs."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {args.device}: PyTorch sees no GPU here (torch.cuda.is_available() is "
                        f"False); use --device cpu")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise DataError(f"--device {args.device}: {e}; use cpu or cuda")
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, getattr(torch, args.dtype), rank, world


def run(args, log=print):
    checkpoint, s, docs, tokenizer = microgpt.read_inputs(args)
    device, dtype, rank, world = start(args)
    if world > s["batch_size"]:
        raise DataError(f"--batch-size {s['batch_size']} leaves some of the {world} processes no document")
    check_memory(s, tokenizer.vocab_size, dtype, device)
    if not args.load and rank == 0:
        microgpt.check_outputs(s)
    rng = random.Random(s["seed"])
    rng.shuffle(docs)                                   # microgpt's order and split, from the same seed
    train_docs, val_docs = microgpt.split_docs(docs, s["val_fraction"])
    shapes = microgpt.parameter_shapes(tokenizer.vocab_size, s["n_embd"], s["n_layer"], s["block_size"])
    weights = {name: [[rng.gauss(0.0, 0.08) for _ in range(cols)] for _ in range(rows)]   # microgpt.GPT's draws
               for name, (rows, cols) in shapes.items()}
    step, metrics = 0, {"train": [], "eval": []}
    if checkpoint:
        weights = checkpoint["params"]
        rng.setstate(checkpoint["rng_state"])
        if args.resume:
            step, metrics = checkpoint["step"], checkpoint["metrics"]
    model = GPT(weights, s["n_head"], dtype, device)
    optimizer = adam(model)
    if checkpoint:
        restore_adam(model, optimizer, *(checkpoint["adam"][key] for key in ("t", "m", "v")))
    step_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    def save(step_done):
        params = {name: p.tolist() for name, p in model.w.items()}
        microgpt.write_checkpoint(s["save"], tokenizer.chars, s, step_done, params, adam_state(model, optimizer),
                                  rng.getstate(), metrics)

    r = argparse.Namespace(
        args=args, log=log, console=microgpt.Console(log), checkpoint=checkpoint, settings=s, docs=docs,
        train_docs=train_docs, val_docs=val_docs, tokenizer=tokenizer, rng=rng, step=step, metrics=metrics,
        n_params=sum(p.numel() for p in model.parameters()), save=save,
        train=lambda on_step: train(model, step_model, optimizer, tokenizer, train_docs, s, step, on_step, device,
                                    rank, world),
        evaluate=lambda docs: evaluate(model, tokenizer, docs, s["block_size"], device),
        sample=lambda rng: sample(model, tokenizer, rng, s["temperature"], s["top_k"], s["prefix"], device),
        weights=lambda: torch.cat([p.detach().flatten() for p in model.parameters()]).tolist())
    if rank > 0:                                        # the other processes train and stay silent
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # rank 0 hears Ctrl-C and stops everyone
        try:
            if not args.load:
                r.train(lambda *a: False)
        except FloatingPointError:
            return 2                                    # rank 0 says why
        return 0
    microgpt.print_header(r)
    log(f"tensors: {dtype} on {device}" + (f", {world} processes, each a share of every batch" if world > 1 else ""))
    if not args.load:
        status = microgpt.train_run(r)
        if status is not None:
            return status
    microgpt.sample_run(r)
    return 0


def main(argv=None):
    try:
        status = run(parse_args(argv))
    except DataError as e:
        print(f"microgpt_torch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("microgpt_torch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return microgpt.closed_pipe()
    if dist.is_initialized():                           # (after a failure torchrun stops the others)
        dist.barrier()                                  # leave together: rank 0 may still be saving
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
