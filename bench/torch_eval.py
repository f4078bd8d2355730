#!/usr/bin/python3
"""torch_eval.py: PyTorch scoring multiple-choice items, the peer of evalrun's mc task.

usage: /usr/bin/python3 bench/torch_eval.py MODEL.bin ITEMS.jsonl [--items N] [--threads T]

Loads a llama2.c checkpoint with tests/ref/stories260k.py's reader and
tokenizer, and for each of the first N items of a query/choices jsonl file
runs one batch of its choices (right-padded, causal, float32, torch's
causal softmax attention), summing each choice's token log-probabilities
by the continuation rule. Prints one line of JSON: {"items_per_s": ...,
"acc": ...}; acc lets the caller check that both sides scored the same thing.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("items")
    ap.add_argument("--items", dest="n", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    import stories260k as ref
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    cfg, w64 = ref.read_checkpoint(args.model)
    w = {k: v.float() for k, v in w64.items()}
    pieces, scores = ref.read_tokenizer(os.path.join(os.path.dirname(os.path.abspath(args.model)), "tok512.bin"),
                                        cfg["vocab"])
    enc = ref.Encoder(pieces, scores)
    NH, KV, hs, L = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_size"], cfg["n_layers"]
    j = torch.arange(hs // 2, dtype=torch.float32)
    freq = ref.ROPE_BASE ** (-2.0 * j / hs)
    angle = torch.arange(cfg["seq_len"], dtype=torch.float32)[:, None] * freq
    cos_t, sin_t = torch.cos(angle), torch.sin(angle)
    causal = torch.ones(cfg["seq_len"], cfg["seq_len"], dtype=torch.bool).tril()

    def norm(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + ref.EPS) * g

    def rope(x):  # (B, H, T, hs), interleaved pairs
        T = x.shape[2]
        c, s = cos_t[:T], sin_t[:T]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    def forward(tok):  # (B, T) -> log-probs (B, T, V)
        B, T = tok.shape
        x = w["emb"][tok]
        for l in range(L):
            h = norm(x, w["rms_att"][l])
            q = (h @ w["wq"][l].T).view(B, T, NH, hs).transpose(1, 2)
            k = (h @ w["wk"][l].T).view(B, T, KV, hs).transpose(1, 2)
            v = (h @ w["wv"][l].T).view(B, T, KV, hs).transpose(1, 2)
            q, k = rope(q), rope(k)
            k = k.repeat_interleave(NH // KV, dim=1)
            v = v.repeat_interleave(NH // KV, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
            att = att.masked_fill(~causal[:T, :T], float("-inf")).softmax(-1)
            o = att @ v
            x = x + o.transpose(1, 2).reshape(B, T, NH * hs) @ w["wo"][l].T
            h = norm(x, w["rms_ffn"][l])
            x = x + (F.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
        return (norm(x, w["rms_final"]) @ w["wcls"].T).log_softmax(-1)

    items = []
    with open(args.items, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                items.append(json.loads(line))
            if len(items) == args.n:
                break
    t0 = time.perf_counter()
    right = 0
    for it in items:
        ctx = it["query"].encode()
        a = enc.encode(ctx)
        seqs, spans = [], []
        for c in it["choices"]:
            c = c.encode()
            b = enc.encode(ctx + (b"" if c[:1].isspace() else b" ") + c)
            lcp = 0
            while lcp < min(len(a), len(b)) and a[lcp] == b[lcp]:
                lcp += 1
            seqs.append(b)
            spans.append(lcp)
        T = max(len(s) for s in seqs)
        tok = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            tok[i, :len(s)] = torch.tensor(s)
        lp = forward(tok)
        ll = []
        for i, s in enumerate(seqs):
            tgt = torch.tensor(s[spans[i]:])
            ll.append(float(lp[i, spans[i] - 1:len(s) - 1].gather(1, tgt[:, None]).sum()))
        right += max(range(len(ll)), key=lambda i: (ll[i], -i)) == it["gold"]
    dt = time.perf_counter() - t0
    print(json.dumps({"items_per_s": len(items) / dt, "items": len(items), "acc": right / len(items),
                      "seconds": dt}))


if __name__ == "__main__":
    main()
