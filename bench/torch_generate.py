#!/usr/bin/python3
"""torch_generate.py: PyTorch's generation speed with a KV cache, the peer of teacher-gen.

usage: /usr/bin/python3 bench/torch_generate.py CONFIG.json [--batch B] [--steps T] [--topk K]
                                                [--reps R] [--threads N] [--seed S]

Builds the random-weight model of torch_prefill.py (q/k RMSNorm only when
model_type is qwen3) and generates B sequences of T tokens one step at a time
with a KV cache, doing per step what teacher-gen does per position: the logits,
their top-K and logsumexp, and a token drawn from the softmax. Prints one line
of JSON: {"tokens_per_s": B*T / median seconds, ...}. Speed does not depend on
the weights' values, so random weights stand for a checkpoint of that shape.
Threads are set as torch_prefill.py sets them (see there).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_prefill as tp  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="time PyTorch generation with a KV cache")
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for var, val in zip(tp.THREAD_ENV, (str(args.threads), str(args.threads), "PASSIVE")):
        os.environ.setdefault(var, val)
    import torch
    import torch.nn.functional as F
    tp.torch, tp.F = torch, F
    torch.set_num_threads(args.threads)
    with open(args.config) as f:
        cfg = json.load(f)
    m = tp.Qwen3(cfg, args.seed)
    qk_norm = cfg.get("model_type") == "qwen3"
    B, T, NH, KV, hd, L = args.batch, args.steps, m.NH, m.KV, m.hd, m.L
    G = NH // KV
    cos, sin = m.rope_tables(T)                                   # (T, hd)
    scale = 1.0 / math.sqrt(hd)

    def run():
        gen = torch.Generator().manual_seed(args.seed)
        ck = torch.zeros(L, B, KV, T, hd)
        cv = torch.zeros(L, B, KV, T, hd)
        ids = torch.ones(B, dtype=torch.long)                     # BOS
        for pos in range(T):
            x = F.embedding(ids, m.embed)                          # (B, C)
            for li, w in enumerate(m.layers):
                h = tp.rmsnorm(x, w["attn_norm"], m.eps)
                q = F.linear(h, w["wq"]).view(B, NH, hd)
                k = F.linear(h, w["wk"]).view(B, KV, hd)
                v = F.linear(h, w["wv"]).view(B, KV, hd)
                if qk_norm:
                    q = tp.rmsnorm(q, w["q_norm"], m.eps)
                    k = tp.rmsnorm(k, w["k_norm"], m.eps)
                q = q * cos[pos] + tp.rotate_half(q) * sin[pos]
                k = k * cos[pos] + tp.rotate_half(k) * sin[pos]
                ck[li, :, :, pos] = k
                cv[li, :, :, pos] = v
                keys, vals = ck[li, :, :, :pos + 1], cv[li, :, :, :pos + 1]       # (B, KV, P, hd)
                att = torch.matmul(q.view(B, KV, G, hd), keys.transpose(-1, -2)) * scale  # (B, KV, G, P)
                out = torch.matmul(torch.softmax(att, dim=-1), vals)             # (B, KV, G, hd)
                x = x + F.linear(out.reshape(B, NH * hd), w["wo"])
                h = tp.rmsnorm(x, w["ffn_norm"], m.eps)
                x = x + F.linear(F.silu(F.linear(h, w["w_gate"])) * F.linear(h, w["w_up"]), w["w_down"])
            z = F.linear(tp.rmsnorm(x, m.final_norm, m.eps), m.lm_head)        # (B, V)
            torch.topk(z, min(args.topk, m.V), dim=-1)
            torch.logsumexp(z, dim=-1)
            ids = torch.multinomial(torch.softmax(z, dim=-1), 1, generator=gen).view(B)

    with torch.no_grad():
        run()  # warm-up
        secs = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            run()
            secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    print(json.dumps({"tokens_per_s": round(B * T / med, 3), "seconds": [round(s, 4) for s in secs],
                      "batch": B, "steps": T, "threads": args.threads, "torch": torch.__version__,
                      "weights": "random", "env": {v: os.environ.get(v) for v in tp.THREAD_ENV}}))


if __name__ == "__main__":
    main()
