#!/usr/bin/python3
"""lora_grad.py: LoRA gradients of the distillation loss on stories260K, by
PyTorch autograd in float64, for tests/test_train.c.

Written from the math in lib/train.h's comment (KL at temperature tau over the
teacher's top-k plus one tail bucket, scaled by tau^2, mixed with
cross-entropy), not from the C code.  The model is llama2.c's (read by
stories260k.py's reader); adapters on every ffn_gate (w1) and ffn_up (w3):
y = W x + (alpha/r) B (A x).

Regenerate (from the repository root, Debian's interpreter with python3-torch):

    /usr/bin/python3 tests/ref/lora_grad.py ../shared/models/stories260K/stories260K.bin

writes tests/fixtures/lora_grad.bin, little-endian:
  "RLLG", int32 version 1, nseq, V, k, rank, ntargets, nparams;
  float32 alpha, tau, w_ce;
  int32 lens[nseq]; then over the N = sum(lens) positions, sequence by
  sequence: int32 tokens[N], int32 topk_ids[N*k], float32 topk_logits[N*k],
  float32 lse_tau[N], int32 ce_target[N];
  float32 params[nparams] (per target, layer by layer, gate then up: A (r, C)
  then B (F, r)); float64 loss; float32 grad[nparams].
The loss is the mean over all N positions of
  (1 - w_ce) tau^2 KL_topk_tail(teacher || student) + w_ce CE(ce_target).
"""
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from stories260k import read_checkpoint, rmsnorm, rope  # noqa: E402

RANK, ALPHA, TAU, W_CE, K = 4, 8.0, 2.0, 0.25, 16
LENS = [24, 17]


def forward(cfg, w, tokens, lora):
    """Logits (T, V) in float64 with the adapters applied unmerged."""
    T = len(tokens)
    NH, KV, hs = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_size"]
    s = ALPHA / RANK
    x = w["emb"][torch.tensor(tokens, dtype=torch.long)]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = (h @ w["wq"][l].T).view(T, NH, hs).transpose(0, 1)
        k = (h @ w["wk"][l].T).view(T, KV, hs).transpose(0, 1)
        v = (h @ w["wv"][l].T).view(T, KV, hs).transpose(0, 1)
        q, k = rope(q, hs), rope(k, hs)
        k = k.repeat_interleave(NH // KV, dim=0)
        v = v.repeat_interleave(NH // KV, dim=0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        x = x + (att @ v).transpose(0, 1).reshape(T, NH * hs) @ w["wo"][l].T
        h = rmsnorm(x, w["rms_ffn"][l])
        (ag, bg), (au, bu) = lora[2 * l], lora[2 * l + 1]
        gate = h @ w["w1"][l].T + s * (h @ ag.T) @ bg.T
        up = h @ w["w3"][l].T + s * (h @ au.T) @ bu.T
        x = x + (torch.nn.functional.silu(gate) * up) @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def kl_topk_tail(z, ids, tlogits, lse_tau):
    """KL(p || q) over the top-k ids plus one tail bucket; z (V,), float64."""
    logq = torch.log_softmax(z / TAU, dim=-1)
    logp = tlogits / TAU - lse_tau
    p = torch.exp(logp)
    kl = (p * (logp - logq[ids])).sum()
    p_tail = torch.clamp(1 - p.sum(), min=0.0)
    mask = torch.ones_like(z, dtype=torch.bool)
    mask[ids] = False
    q_tail = torch.exp(logq[mask]).sum()
    if p_tail > 0:
        kl = kl + p_tail * (torch.log(p_tail) - torch.log(q_tail))
    return kl


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: lora_grad.py stories260K.bin")
    cfg, w = read_checkpoint(sys.argv[1])
    V, C, F, L = cfg["vocab"], cfg["dim"], cfg["hidden"], cfg["n_layers"]
    # adapters rounded to float32, as the fixture stores them
    lora, flat = [], []
    for t in range(2 * L):
        ia = np.arange(RANK * C, dtype=np.float64).reshape(RANK, C)
        ib = np.arange(F * RANK, dtype=np.float64).reshape(F, RANK)
        a = (0.2 * np.sin(0.37 * ia + 1.3 * t)).astype(np.float32)
        b = (0.1 * np.cos(0.23 * ib + 0.7 * t)).astype(np.float32)
        flat += [a.ravel(), b.ravel()]
        lora.append((torch.tensor(a, dtype=torch.float64, requires_grad=True),
                     torch.tensor(b, dtype=torch.float64, requires_grad=True)))
    params = np.concatenate(flat)
    # sequences, and a teacher: the base model's logits bent by a fixed pattern
    seqs = []
    for si, n in enumerate(LENS):
        seqs.append([1] + [(i * 37 + 11 * si + 5) % V for i in range(1, n)])
    rows = []
    with torch.no_grad():
        nolora = [(torch.zeros(RANK, C, dtype=torch.float64), torch.zeros(F, RANK, dtype=torch.float64))
                  for _ in range(2 * L)]
        for si, toks in enumerate(seqs):
            z = forward(cfg, w, toks, nolora)
            bend = torch.sin(0.05 * torch.arange(V, dtype=torch.float64)[None, :] * (1 + si)
                             + torch.arange(len(toks), dtype=torch.float64)[:, None])
            tz = (z + 1.5 * bend).float().double()
            for t in range(len(toks)):
                vals, ids = torch.topk(tz[t], K)
                lse = torch.logsumexp(tz[t] / TAU, dim=0).float().double()
                target = toks[t + 1] if t + 1 < len(toks) else int(ids[0])
                rows.append((ids, vals.float().double(), lse, target))
    # the loss and its gradients
    loss = torch.zeros((), dtype=torch.float64)
    r = 0
    for toks in seqs:
        z = forward(cfg, w, toks, lora)
        for t in range(len(toks)):
            ids, vals, lse, target = rows[r]
            r += 1
            kl = kl_topk_tail(z[t], ids, vals, lse)
            ce = -torch.log_softmax(z[t], dim=-1)[target]
            loss = loss + (1 - W_CE) * TAU * TAU * kl + W_CE * ce
    loss = loss / len(rows)
    loss.backward()
    grad = np.concatenate([g.grad.numpy().astype(np.float32).ravel() for pair in lora for g in pair])
    out = os.path.join(os.path.dirname(HERE), "fixtures", "lora_grad.bin")
    with open(out, "wb") as f:
        f.write(b"RLLG")
        f.write(struct.pack("<7i", 1, len(LENS), V, K, RANK, 2 * L, params.size))
        f.write(struct.pack("<3f", ALPHA, TAU, W_CE))
        f.write(struct.pack("<%di" % len(LENS), *LENS))
        f.write(np.array([t for s in seqs for t in s], dtype="<i4").tobytes())
        f.write(np.array([row[0].numpy() for row in rows], dtype="<i4").tobytes())
        f.write(np.array([row[1].numpy() for row in rows], dtype="<f4").tobytes())
        f.write(np.array([float(row[2]) for row in rows], dtype="<f4").tobytes())
        f.write(np.array([row[3] for row in rows], dtype="<i4").tobytes())
        f.write(params.astype("<f4").tobytes())
        f.write(struct.pack("<d", float(loss)))
        f.write(grad.astype("<f4").tobytes())
    print("lora_grad.py: loss %.6f, |grad| %.4g, wrote %s" % (float(loss), float(np.linalg.norm(grad)), out))


if __name__ == "__main__":
    main()
