#!/usr/bin/python3
"""torch_train.py: PyTorch's speed at distill's training step, the peer of
bench/distill.sh.

usage: /usr/bin/python3 bench/torch_train.py CONFIG.json [--batch B] [--len T]
       [--rank R] [--topk K] [--steps S] [--threads N] [--seed S]

The same step as distill's (bin/distill.c, lib/train.c): a LLaMA-family model
described by an HF-style config.json with frozen float32 weights (a quantized
student's, dequantized: PyTorch has no 2- or 4-bit matrices) and LoRA adapters
of rank R, scale alpha/R = 1, on every block's ffn_gate and ffn_up (distill's
default targets under W4/W2-GateUp); a batch of B sequences of T tokens;
the loss is KL(teacher || student) over the teacher's top-K logits plus one
tail bucket, averaged over the positions; backward to the adapters (the
activation gradient flows through every layer); gradient clipping at norm 1;
one AdamW step.  Written with torch.nn.functional ops (no transformers
library); attention is the explicit causal softmax (this torch predates
scaled_dot_product_attention).  Weights are random (speed does not depend on
the values); so are the teacher's top-K logits.

One warm-up step, then S timed steps; prints one line of JSON:
{"tokens_per_s": B*T / median step seconds, "seconds": [...], ...}.

Threads: as bench/torch_prefill.py, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
OMP_WAIT_POLICY=PASSIVE are set (unless already in the environment) before
torch is loaded, and torch.set_num_threads(N).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")
torch = F = None  # imported in main(), after the thread settings are in the environment
prefill = None    # bench/torch_prefill.py: the random model, its norms and RoPE


class Student:
    """torch_prefill.py's random model (weights frozen: no gradient) plus LoRA
    A (R, in), B (out, R) on ffn_gate and ffn_up, A drawn as PEFT draws it, B
    zero.  The q/k norms apply to Qwen3 configs only."""

    def __init__(self, cfg, rank, seed):
        self.base = prefill.Qwen3(cfg, seed)
        self.qk_norm = cfg.get("model_type") == "qwen3"
        g = torch.Generator().manual_seed(seed + 7)
        C, H = self.base.C, self.base.H

        def lora_a(n_in):
            bound = 1.0 / math.sqrt(n_in)
            return ((torch.rand(rank, n_in, generator=g) * 2 - 1) * bound).requires_grad_()

        self.params = []
        for w in self.base.layers:
            w.update(gate_a=lora_a(C),                                 # (R, C)
                     gate_b=torch.zeros(H, rank, requires_grad=True),  # (H, R)
                     up_a=lora_a(C),                                   # (R, C)
                     up_b=torch.zeros(H, rank, requires_grad=True))    # (H, R)
            self.params += [w["gate_a"], w["gate_b"], w["up_a"], w["up_b"]]

    def forward(self, ids):
        """ids (B, T) -> logits (B, T, V)."""
        m = self.base
        rmsnorm, rotate_half, eps = prefill.rmsnorm, prefill.rotate_half, m.eps
        B, T = ids.shape
        NH, KV, hd = m.NH, m.KV, m.hd
        G = NH // KV
        cos, sin = m.rope_tables(T)
        mask = torch.full((T, T), float("-inf")).triu(1)      # (T, T)
        scale = 1.0 / math.sqrt(hd)
        x = F.embedding(ids, m.embed)                         # (B, T, C)
        for w in m.layers:
            h = rmsnorm(x, w["attn_norm"], eps)
            q = F.linear(h, w["wq"]).view(B, T, NH, hd)
            k = F.linear(h, w["wk"]).view(B, T, KV, hd)
            v = F.linear(h, w["wv"]).view(B, T, KV, hd)
            if self.qk_norm:
                q = rmsnorm(q, w["q_norm"], eps)
                k = rmsnorm(k, w["k_norm"], eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            q = q.reshape(B, KV, G, T, hd)
            att = torch.matmul(q, k.unsqueeze(2).transpose(-1, -2)) * scale  # (B, KV, G, T, T)
            att = torch.softmax(att + mask, dim=-1)
            out = torch.matmul(att, v.unsqueeze(2))                         # (B, KV, G, T, hd)
            out = out.reshape(B, NH, T, hd).transpose(1, 2).reshape(B, T, NH * hd)
            x = x + F.linear(out, w["wo"])
            h = rmsnorm(x, w["ffn_norm"], eps)
            gate = F.linear(h, w["w_gate"]) + F.linear(F.linear(h, w["gate_a"]), w["gate_b"])
            up = F.linear(h, w["w_up"]) + F.linear(F.linear(h, w["up_a"]), w["up_b"])
            x = x + F.linear(F.silu(gate) * up, w["w_down"])
        x = rmsnorm(x, m.final_norm, eps)
        return F.linear(x, m.lm_head)                      # (B, T, V)


def kl_topk_tail(z, ids, tlogits, lse):
    """Mean KL(p || q) over rows: z (N, V) student logits; ids, tlogits (N, K)
    the teacher's top-K; lse (N,) its logsumexp over the whole vocabulary."""
    logq = torch.log_softmax(z, dim=-1)
    logq_top = torch.gather(logq, 1, ids)
    logp = tlogits - lse[:, None]
    p = logp.exp()
    kl = (p * (logp - logq_top)).sum(dim=1)
    p_tail = (1 - p.sum(dim=1)).clamp(min=0)
    q_tail = (1 - logq_top.exp().sum(dim=1)).clamp(min=1e-30)
    kl = kl + torch.where(p_tail > 0, p_tail * (p_tail.clamp(min=1e-30).log() - q_tail.log()), torch.zeros_like(p_tail))
    return kl.mean()


def main():
    ap = argparse.ArgumentParser(description="time PyTorch at distill's LoRA distillation step")
    ap.add_argument("config", help="HF-style config.json")
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--len", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if min(args.batch, args.len, args.rank, args.topk, args.steps, args.threads) < 1:
        ap.error("every count must be at least 1")
    with open(args.config) as f:
        cfg = json.load(f)
    if args.topk > cfg["vocab_size"]:
        ap.error("--topk exceeds the vocabulary")
    for k in THREAD_ENV:
        os.environ.setdefault(k, str(args.threads) if k != "OMP_WAIT_POLICY" else "PASSIVE")
    global torch, F, prefill
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_prefill as prefill
    prefill.torch, prefill.F = torch, F
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Student(cfg, args.rank, args.seed)
    opt = torch.optim.AdamW(model.params, lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    B, T, K, V = args.batch, args.len, args.topk, model.base.V
    ids = torch.randint(0, V, (B, T), generator=g)
    # a teacher: K distinct ids per position, logits sorted descending, and a logsumexp above them
    tz = torch.randn(B * T, V, generator=g) * 3
    tlogits, tids = torch.topk(tz, K, dim=1)
    lse = torch.logsumexp(tz, dim=1)
    del tz

    def step():
        opt.zero_grad(set_to_none=True)
        z = model.forward(ids).reshape(B * T, V)
        loss = kl_topk_tail(z, tids, tlogits, lse)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.params, 1.0)
        opt.step()
        return float(loss)

    step()  # warm-up
    seconds = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - t0)
        if not math.isfinite(loss):
            sys.exit("torch_train.py: the loss is not finite")
    med = statistics.median(seconds)
    print(json.dumps({
        "tokens_per_s": round(B * T / med, 3),
        "seconds": [round(s, 4) for s in seconds],
        "threads": args.threads,
        "batch": B, "len": T, "rank": args.rank, "topk": K,
        "loss": round(loss, 5),
        "torch": torch.__version__,
        "weights": "random",
        "env": {k: os.environ[k] for k in THREAD_ENV},
    }))


if __name__ == "__main__":
    main()
