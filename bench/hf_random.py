#!/usr/bin/python3
"""hf_random.py CONFIG.json OUTDIR: a random-weight Hugging Face directory of
that config (config.json + model.safetensors, bf16), for timing imports.
Needs numpy only. Weights are N(0, 0.02), norms 1; values do not matter to
speed or memory, so random weights stand for a checkpoint of that shape.
"""
import json
import os
import struct
import sys

import numpy as np


def shapes(cfg):
    C, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    H, KH = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = cfg.get("head_dim", C // H)
    V = cfg["vocab_size"]
    out = [("model.embed_tokens.weight", (V, C))]
    for l in range(L):
        p = "model.layers.%d." % l
        out += [(p + "input_layernorm.weight", (C,)), (p + "post_attention_layernorm.weight", (C,)),
                (p + "self_attn.q_proj.weight", (H * D, C)), (p + "self_attn.k_proj.weight", (KH * D, C)),
                (p + "self_attn.v_proj.weight", (KH * D, C)), (p + "self_attn.o_proj.weight", (C, H * D)),
                (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
                (p + "mlp.down_proj.weight", (C, F))]
        if cfg["model_type"] == "qwen3":
            out += [(p + "self_attn.q_norm.weight", (D,)), (p + "self_attn.k_norm.weight", (D,))]
        if cfg["model_type"] == "qwen2":
            out += [(p + "self_attn.q_proj.bias", (H * D,)), (p + "self_attn.k_proj.bias", (KH * D,)),
                    (p + "self_attn.v_proj.bias", (KH * D,))]
    out.append(("model.norm.weight", (C,)))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, C)))
    return out


def main():
    cfg = json.load(open(sys.argv[1]))
    d = sys.argv[2]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(1)
    header, off = {}, 0
    for name, shape in shapes(cfg):
        n = int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + 2 * n]}
        off += 2 * n
    hb = json.dumps(header).encode()
    hb += b" " * ((-len(hb)) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape in shapes(cfg):
            n = int(np.prod(shape))
            for a in range(0, n, 1 << 24):  # in slices, to keep this script's memory small
                m = min(n - a, 1 << 24)
                x = (rng.standard_normal(m, dtype=np.float32) * 0.02) if len(shape) == 2 else np.ones(m, np.float32)
                f.write((x.view(np.uint32) >> 16).astype("<u2").tobytes())
    print(d)


if __name__ == "__main__":
    main()
