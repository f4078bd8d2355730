#!/usr/bin/python3
"""torch_prefill.py: PyTorch's prefill speed on a random-weight Qwen3-style model.

usage: /usr/bin/python3 bench/torch_prefill.py CONFIG.json [--tokens N] [--reps R] [--threads T] [--seed S]

Builds the model described by an HF-style config.json (hidden_size,
intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
head_dim, vocab_size, rms_norm_eps, rope_theta, tie_word_embeddings) with random
float32 weights, written with torch.nn.functional ops (no transformers library),
and times one forward of a batch of one sequence of N random ids under
torch.no_grad(), logits for every position included (as a prefill that returns
all logits does).  One warm-up, then R timed repetitions.  Prints one line of
JSON: {"tokens_per_s": N / median seconds, "seconds": [...], "threads": T, ...}.
Figures are for random weights (speed does not depend on the values).

Qwen3: RMSNorm before attention and MLP; q/k RMSNorm per head over head_dim,
applied before RoPE; rotate-half RoPE; grouped-query attention; SwiGLU MLP; no
biases; final RMSNorm; classifier tied to the embedding when
tie_word_embeddings is true.

Threads: this torch (Debian's) runs its own ops on OpenMP threads and its
matrix products in OpenBLAS (libblas.so.3), which keeps its own threads and
ignores torch.set_num_threads().  Left alone, both pools use every core and
spin-wait against each other, which costs PyTorch about 40% on 2 cores.  So
before torch is loaded the script sets, unless already set in the environment,
OPENBLAS_NUM_THREADS=T, OMP_NUM_THREADS=T and OMP_WAIT_POLICY=PASSIVE (the
fastest of the settings we tried), and calls torch.set_num_threads(T).  The
values in effect are printed in the JSON under "env".
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


def rmsnorm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Qwen3:
    def __init__(self, cfg, seed):
        g = torch.Generator().manual_seed(seed)
        self.C = cfg["hidden_size"]
        self.H = cfg["intermediate_size"]
        self.L = cfg["num_hidden_layers"]
        self.NH = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads", self.NH)
        self.hd = cfg.get("head_dim", self.C // self.NH)
        self.V = cfg["vocab_size"]
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.theta = float(cfg.get("rope_theta", 10000.0))
        if cfg.get("rope_scaling"):
            sys.exit("torch_prefill.py: rope_scaling is not implemented")
        C, H, NH, KV, hd = self.C, self.H, self.NH, self.KV, self.hd

        def rand(*shape):
            return torch.randn(*shape, generator=g) * 0.02

        def ones_ish(n):
            return 1.0 + 0.1 * torch.randn(n, generator=g)

        self.embed = rand(self.V, C)                          # (V, C)
        self.layers = []
        for _ in range(self.L):
            self.layers.append(dict(
                attn_norm=ones_ish(C),                          # (C,)
                wq=rand(NH * hd, C),                            # (NH*hd, C)
                wk=rand(KV * hd, C),                            # (KV*hd, C)
                wv=rand(KV * hd, C),                            # (KV*hd, C)
                q_norm=ones_ish(hd),                            # (hd,)
                k_norm=ones_ish(hd),                            # (hd,)
                wo=rand(C, NH * hd),                            # (C, NH*hd)
                ffn_norm=ones_ish(C),                           # (C,)
                w_gate=rand(H, C),                              # (H, C)
                w_up=rand(H, C),                                # (H, C)
                w_down=rand(C, H),                              # (C, H)
            ))
        self.final_norm = ones_ish(C)
        self.lm_head = self.embed if cfg.get("tie_word_embeddings", False) else rand(self.V, C)

    def rope_tables(self, T):
        inv = self.theta ** (-torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd)  # (hd/2,)
        ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]               # (T, hd/2)
        ang = torch.cat((ang, ang), dim=-1)                                             # (T, hd)
        return ang.cos(), ang.sin()

    def forward(self, ids):
        """ids (B, T) -> logits (B, T, V)."""
        B, T = ids.shape
        NH, KV, hd = self.NH, self.KV, self.hd
        G = NH // KV
        cos, sin = self.rope_tables(T)
        mask = torch.full((T, T), float("-inf")).triu(1)      # (T, T)
        scale = 1.0 / math.sqrt(hd)
        x = F.embedding(ids, self.embed)                      # (B, T, C)
        for w in self.layers:
            h = rmsnorm(x, w["attn_norm"], self.eps)
            q = F.linear(h, w["wq"]).view(B, T, NH, hd)
            k = F.linear(h, w["wk"]).view(B, T, KV, hd)
            v = F.linear(h, w["wv"]).view(B, T, KV, hd)
            q = rmsnorm(q, w["q_norm"], self.eps).transpose(1, 2)   # (B, NH, T, hd)
            k = rmsnorm(k, w["k_norm"], self.eps).transpose(1, 2)   # (B, KV, T, hd)
            v = v.transpose(1, 2)                                   # (B, KV, T, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            # GQA without copying k and v: query heads grouped G to a kv head.
            q = q.reshape(B, KV, G, T, hd)
            att = torch.matmul(q, k.unsqueeze(2).transpose(-1, -2)) * scale  # (B, KV, G, T, T)
            att = torch.softmax(att + mask, dim=-1)
            out = torch.matmul(att, v.unsqueeze(2))                         # (B, KV, G, T, hd)
            out = out.reshape(B, NH, T, hd).transpose(1, 2).reshape(B, T, NH * hd)
            x = x + F.linear(out, w["wo"])
            h = rmsnorm(x, w["ffn_norm"], self.eps)
            x = x + F.linear(F.silu(F.linear(h, w["w_gate"])) * F.linear(h, w["w_up"]), w["w_down"])
        x = rmsnorm(x, self.final_norm, self.eps)
        return F.linear(x, self.lm_head)                      # (B, T, V)


def main():
    ap = argparse.ArgumentParser(description="time PyTorch's prefill of a random-weight Qwen3-style model")
    ap.add_argument("config", help="HF-style config.json")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.tokens < 1 or args.reps < 1 or args.threads < 1:
        ap.error("--tokens, --reps and --threads must be at least 1")
    with open(args.config) as f:
        cfg = json.load(f)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    global torch, F
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Qwen3(cfg, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, model.V, (1, args.tokens), generator=g)
    seconds = []
    with torch.no_grad():
        model.forward(ids)  # warm-up
        for _ in range(args.reps):
            t0 = time.perf_counter()
            logits = model.forward(ids)
            seconds.append(time.perf_counter() - t0)
            if not torch.isfinite(logits).all():
                sys.exit("torch_prefill.py: non-finite logits")
            del logits
    med = statistics.median(seconds)
    print(json.dumps({
        "tokens_per_s": round(args.tokens / med, 3),
        "seconds": [round(s, 4) for s in seconds],
        "threads": args.threads,
        "tokens": args.tokens,
        "torch": torch.__version__,
        "weights": "random",
        "env": {k: os.environ[k] for k in THREAD_ENV},
    }))


if __name__ == "__main__":
    main()
