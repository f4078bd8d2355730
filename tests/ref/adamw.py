#!/usr/bin/python3
"""adamw.py: torch.optim.AdamW and clip_grad_norm_ on fixed numbers, the
independent reference for lib/optim.c.

Regenerate (repository root, Debian's interpreter):
    /usr/bin/python3 tests/ref/adamw.py
writes tests/fixtures/adamw.json: 16 parameters, 6 steps of given gradients
at learning rates from a warmup+cosine schedule (written here from its
definition), with clipping to norm 1.0 and weight decay 0.1, and the
parameters after each step.
"""
import json
import math
import os

import torch

N, STEPS, LR, WARMUP, MIN_RATIO = 16, 6, 0.01, 2, 0.1
torch.manual_seed(7)
p0 = torch.randn(N, dtype=torch.float32)
grads = [torch.randn(N, dtype=torch.float32) * (3.0 if s % 2 else 0.2) for s in range(STEPS)]


def lr_at(step):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = (step - WARMUP) / (STEPS - WARMUP)
    return LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * p)))


p = torch.nn.Parameter(p0.clone())
opt = torch.optim.AdamW([p], lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
after, lrs, norms = [], [], []
for s in range(STEPS):
    for g in opt.param_groups:
        g["lr"] = lr_at(s)
    lrs.append(lr_at(s))
    p.grad = grads[s].clone()
    norms.append(float(torch.nn.utils.clip_grad_norm_([p], 1.0)))
    opt.step()
    after.append(p.detach().tolist())
out = {"n": N, "lr": LR, "warmup": WARMUP, "total": STEPS, "min_ratio": MIN_RATIO, "clip": 1.0,
       "weight_decay": 0.1, "p0": p0.tolist(), "grads": [g.tolist() for g in grads], "lrs": lrs,
       "norms": norms, "after": after}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "adamw.json")
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
print("wrote", path)
