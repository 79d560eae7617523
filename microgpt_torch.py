#!/usr/bin/env python3
"""microgpt_torch.py: microgpt.py's GPT and its training, in PyTorch tensors.

The same model: microgpt.GPT's parameter names and shapes, RMSNorm without gain, a ReLU MLP, no biases,
attention scaled by sqrt(head_dim). The same training: the data, split, walk through the documents,
learning-rate schedule, Adam constants, gradient clipping and checkpoint file all come from microgpt.py,
so both always train on the same documents from the same first weights, and a checkpoint from either
runs in the other. What changes is the unit of work. microgpt.py computes one position of one document
at a time, a Value per number; here a batch of documents, every position at once, is a few tensor
operations, which is what lets a bigger model train in minutes, on a GPU, or on several processes:

  python3 microgpt_torch.py                                        # microgpt.py's run, in tensors
  python3 microgpt_torch.py --n-embd 128 --n-layer 4 --block-size 32 --batch-size 64 --steps 3000
  torchrun --nproc_per_node 2 microgpt_torch.py --batch-size 8    # DistributedDataParallel

Its Engine is the interface the workbench drives (its package docstring lists it), so the command line,
checks, checkpoints and everything printed are microgpt.py's. Each stage names the microgpt.py function
it mirrors. Needs PyTorch; microgpt.py itself never does.
"""
import math
import os
import re
import signal
import sys

import microgpt
import workbench
from workbench import DataError, Setting
from workbench.text import TextTokenizer, continued

# Ctrl-C in the seconds PyTorch (and the workbench's program) take to import is held until they are imported
# (workbench.HeldCtrlC): interrupted inside an import, Python's import machinery can end in another error.
with workbench.HeldCtrlC(ending=__name__ == "__main__") as ctrl_c:
    try:
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F
    except ImportError:                     # (PyTorch's alone: the workbench is imported after)
        if __name__ == "__main__":
            print("microgpt_torch: error: PyTorch is not installed; install it with `pip install torch` "
                  "(microgpt.py needs nothing)", file=sys.stderr)
            sys.exit(2)
        raise
    import workbench.program                # (the workbench's run, loaded now rather than on first use)
if ctrl_c.held:
    if __name__ != "__main__":
        raise KeyboardInterrupt
    print("microgpt_torch: interrupted", file=sys.stderr)
    sys.exit(130)

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
        self.head_dim = self.n_embd // n_head                  # (the workbench checked n_head divides it)

    def forward(self, idx):
        """Token ids (B, T) -> logits (B, T, V): microgpt.GPT.__call__, for every position at once."""
        B, T = idx.shape
        C, nh, hd, w = self.n_embd, self.n_head, self.head_dim, self.w
        x = rmsnorm(w["wte"][idx] + w["wpe"][:T])                      # what + where: (B, T, C)
        # The causal mask. microgpt needs none: its KV list holds only the positions read so far. Here all
        # positions are computed at once, so each must be kept from attending to those after it.
        future = torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(1)     # (T, T), True above the diagonal
        for i in range(self.n_layer):
            h = rmsnorm(x)
            # q, k, v: (B, T, C), split into heads (B, nh, T, hd), as q[lo:hi] in microgpt
            q, k, v = (F.linear(h, w[f"layer{i}.attn_w{c}"]).view(B, T, nh, hd).transpose(1, 2) for c in "qkv")
            scores = q @ k.transpose(-2, -1) / math.sqrt(hd)          # (B, nh, T, T): every dot(q, k) at once
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
    n = [microgpt.n_predicted(tokens, block_size) for tokens in batch]      # positions each document trains
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
    """The predicted tokens of a batch: microgpt.n_predicted summed over its documents."""
    return sum(microgpt.n_predicted(tokens, block_size) for tokens in batch)


# ---- training: microgpt.train and microgpt.train_step

def train_step(model, step_model, optimizer, batch, lr, grad_clip, block_size, device, rank=0, world=1):
    """microgpt.train_step: one optimizer step on a batch, the loss the mean over every predicted token of
    it; with several processes each takes every world-th document. Returns (loss, gradient norm before
    clipping). Raises FloatingPointError, before the update, if the loss or the gradient is not finite."""
    for group in optimizer.param_groups:
        group["lr"] = lr                                # once per optimizer step, never per document
    optimizer.zero_grad()                               # microgpt resets in Adam.step, after the update: the same
    mine = loss_sum(step_model, batch[rank::world], block_size, device)
    # DistributedDataParallel averages the processes' gradients, so each scales its sum by world over the
    # whole batch's tokens: the average is then the gradient of the batch's mean loss.
    (mine * world / n_predicted(batch, block_size)).backward()
    grads = [p.grad for p in model.parameters()]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads)).item()    # microgpt.grad_norm: the global L2 norm
    total = mine.detach().clone()
    if world > 1:
        dist.all_reduce(total)                          # the batch's summed loss, every process's share
    loss = total.item() / n_predicted(batch, block_size)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        optimizer.zero_grad()
        raise FloatingPointError(f"loss {loss}, gradient norm {norm}")
    if grad_clip is not None and norm > grad_clip:      # microgpt's clipping: scale by clip / norm
        for g in grads:
            g.mul_(grad_clip / norm)
    try:
        optimizer.step()                                # Adam, microgpt's constants (Engine.__init__)
    except RuntimeError as e:                           # (a step past what the dtype holds)
        raise FloatingPointError(f"the update does not fit the tensors' floats ({e})")
    return loss, norm


def evaluate(model, tokenizer, docs, block_size, device, chunk=256):
    """microgpt.evaluate: (mean loss per predicted token over docs in nats, predicted tokens), no graph."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(docs), chunk):
            batch = [tokenizer.encode(doc) for doc in docs[i:i + chunk]]
            total += loss_sum(model, batch, block_size, device).item()
            count += n_predicted(batch, block_size)
    return total / count, count


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


# ---- the engine interface (the workbench's), over these tensors

def start(device_name):
    """(device, rank, world): one process, or one of torchrun's (WORLD_SIZE set), which joins the process
    group: gloo on CPUs, nccl on GPUs. Raises DataError for a device PyTorch cannot use."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {device_name}: PyTorch sees no GPU here (torch.cuda.is_available() is "
                        f"False); use --device cpu")
    device = torch.device(device_name)                  # cpu, cuda or cuda:N: the setting's rule
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DataError(f"--device {device_name}: PyTorch sees {torch.cuda.device_count()} GPU(s), numbered from 0")
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


class Engine:
    """workbench.MicrogptEngine's interface over tensors: a GPT of this file, torch's Adam with microgpt.Adam's
    constants, and, under torchrun, DistributedDataParallel. Its own settings: --device and --dtype.
    torch's Adam is microgpt's update, lr * m_hat / (sqrt(v_hat) + eps), up to rounding: it divides
    sqrt(v) by sqrt(1 - beta2^t) where microgpt takes the square root of the quotient."""
    options = [Setting("device", "cpu", str, (lambda v: re.fullmatch(r"cpu|cuda(:[0-9]+)?", v) is not None,
                                              "cpu, cuda or cuda:N"), "tensors",
                       "cpu, or cuda (cuda:N, the N-th GPU) when PyTorch sees one", "DEVICE"),
               Setting("dtype", "float32", str, workbench.ANY, "tensors", "the floats of the tensors: float32 or "
                       "float64", "DTYPE", choices=("float32", "float64"))]
    inside = None                                       # no --explain or --gradcheck: they are microgpt.py's

    def __init__(self, settings, tokenizer, rng, state=None):
        s, self.tokenizer = settings, tokenizer
        self.device, self.rank, self.world = start(s["device"])
        if self.world > s["batch_size"]:
            raise DataError(f"--batch-size {s['batch_size']} leaves some of the {self.world} processes no document")
        self.block_size, dtype = s["block_size"], getattr(torch, s["dtype"])
        if s["lr"] * 10 > torch.finfo(dtype).max:          # Adam's first step is lr / (1 - beta1): 6.7 lr
            raise DataError(f"--lr {s['lr']:g} is past what {s['dtype']} holds (at most {torch.finfo(dtype).max:.3g}, "
                            f"and Adam's first step is 6.7 times the learning rate); give a lower --lr or "
                            f"--dtype float64")
        shapes = microgpt.parameter_shapes(tokenizer.vocab_size, s["n_embd"], s["n_layer"], s["block_size"])
        weights = microgpt.initial_weights(shapes, rng)                   # microgpt.GPT's draws, in its order
        self.model = GPT(state["params"] if state else weights, s["n_head"], dtype, self.device)
        constants = microgpt.Adam([])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s["lr"], eps=constants.eps,
                                          betas=(constants.beta1, constants.beta2))
        if state:
            self.restore_adam(**state["adam"])
        self.step_model = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.about = f"tensors: {dtype} on {self.device}" + (
            f", {self.world} processes, each a share of every batch" if self.world > 1 else "")

    @staticmethod
    def memory_needed(settings, vocab_size, graph, positions=None):
        """Bytes for the weights, gradients, Adam's moments and one batch's activations (a generous count), a batch
        padded to `positions` (None: block_size), the most positions a document is read at."""
        n = workbench.count_parameters(vocab_size, settings["n_embd"], settings["n_layer"], settings["block_size"])
        B, T, C = settings["batch_size"], positions or settings["block_size"], settings["n_embd"]
        floats = 4 * n + B * T * (settings["n_layer"] * (16 * C + 3 * settings["n_head"] * T) + 3 * vocab_size)
        return floats * torch.finfo(getattr(torch, settings["dtype"])).bits // 8

    @staticmethod
    def memory_available(settings):
        """The GPU's memory with --device cuda, else None (the machine's)."""
        if settings["device"].startswith("cuda") and torch.cuda.is_available():
            return torch.cuda.get_device_properties(torch.device(settings["device"])).total_memory
        return None

    def train(self, docs, start_step, on_step, settings):
        """microgpt.train: the same walk through docs and the same schedule; rank 0's on_step stops all."""
        steps, lr, warmup_steps, min_lr = (settings[key] for key in ("steps", "lr", "warmup_steps", "min_lr"))
        batch_size, grad_clip = settings["batch_size"], settings["grad_clip"]
        for step in range(start_step, steps):
            batch = [self.tokenizer.encode(docs[(step * batch_size + j) % len(docs)]) for j in range(batch_size)]
            lr_t = microgpt.lr_schedule(step, steps, lr, warmup_steps, min_lr)
            loss, norm = train_step(self.model, self.step_model, self.optimizer, batch, lr_t, grad_clip,
                                    self.block_size, self.device, self.rank, self.world)
            stop = torch.tensor(int(bool(on_step(step, loss, lr_t, norm, batch))))
            if self.world > 1:
                dist.broadcast(stop, src=0)
            if stop.item():
                break

    def evaluate(self, docs):
        return evaluate(self.model, self.tokenizer, docs, self.block_size, self.device)

    def sample(self, rng, temperature, top_k, prefix, length=None):
        """sample(); with --text, workbench.text.continued over this model's logits: the same draws."""
        if isinstance(self.tokenizer, TextTokenizer):
            return continued(self.next_logits, self.tokenizer, rng, temperature, top_k, prefix,
                             length or self.block_size, self.block_size)
        return sample(self.model, self.tokenizer, rng, temperature, top_k, prefix, self.device)

    def next_logits(self, ids):
        """The logits (a list of vocab_size floats) at the last of `ids`, at most block_size token ids."""
        with torch.no_grad():
            return self.model(torch.tensor([ids], device=self.device))[0, -1].tolist()

    def weights(self):
        return {name: p.tolist() for name, p in self.model.w.items()}

    def state(self):
        """workbench.MicrogptEngine.state: the parameters, and Adam's (t, m, v), m and v a float per parameter in
        state_dict order (zeros before the first step)."""
        states = [self.optimizer.state.get(p, {}) for p in self.model.w.values()]
        if not states[0]:
            zeros = [0.0] * self.n_params
            return {"params": self.weights(), "adam": {"t": 0, "m": zeros, "v": list(zeros)}}
        flat = lambda key: torch.cat([state[key].flatten() for state in states]).tolist()
        return {"params": self.weights(), "adam": {"t": int(states[0]["step"]), "m": flat("exp_avg"),
                                                   "v": flat("exp_avg_sq")}}

    def restore_adam(self, t, m, v):
        """Adam's state from microgpt's (t, m, v), so that the next step is the one microgpt would take."""
        if t == 0:
            return
        i = 0
        for p in self.model.w.values():
            n = p.numel()
            as_p = lambda xs: torch.tensor(xs[i:i + n], dtype=p.dtype, device=p.device).view_as(p)
            self.optimizer.state[p] = {"step": torch.tensor(float(t)), "exp_avg": as_p(m), "exp_avg_sq": as_p(v)}
            i += n


def main(argv=None):
    """microgpt.py's command line (workbench.main) with this Engine; under torchrun, only rank 0 prints."""
    try:
        status = workbench.main(argv, Engine, "microgpt_torch", leader=int(os.environ.get("RANK", "0")) == 0,
                                description="Train microgpt's GPT with PyTorch tensors (same data, model, "
                                            "checkpoints).")
    except KeyboardInterrupt:               # (Ctrl-C in the moment before workbench.main takes the signals over)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("microgpt_torch: interrupted", file=sys.stderr)
        return 130
    if dist.is_initialized():                           # (after a failure torchrun stops the others)
        dist.barrier()                                  # leave together: rank 0 may still be saving
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
