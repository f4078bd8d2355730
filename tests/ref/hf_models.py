#!/usr/bin/python3
"""hf_models.py: tiny random Hugging Face model directories and reference logits.

Writes three model directories the way Hugging Face's save_pretrained lays them
out (config.json, safetensors written here by hand from the format's public
description, a sharded one with model.safetensors.index.json), and for each the
logits of a small PyTorch implementation of the architecture, written from the
models' published descriptions (RMSNorm, rotate-half RoPE, grouped-query
attention, SwiGLU MLP), not from our C code.  The forward pass runs in float64
on the weights as stored (rounded to f16 / bf16 first where stored so).

    llama/  LlamaForCausalLM, f32, GQA (4 heads, 2 KV heads), untied classifier,
            rope_theta 10000, no tokenizer.json (our loader's rule: byte-level
            tokenizer)
    qwen2/  Qwen2ForCausalLM, f16, q/k/v biases, tied embeddings
    qwen3/  Qwen3ForCausalLM, bf16, q/k RMSNorm, head_dim 8 with hidden 16 and
            4 heads (head_dim != dim/heads), tied embeddings, two shards and
            model.safetensors.index.json, a tiny byte-level BPE tokenizer.json
            and tokenizer_config.json; config vocab_size 300 is larger than the
            tokenizer's 267 tokens, as Qwen's padded vocabularies are

Regenerate (from the repository root; Debian's interpreter, which has
python3-torch and python3-numpy):

    /usr/bin/python3 tests/ref/hf_models.py

Outputs, in tests/fixtures/hf/: the three directories, and NAME.ref for each:
magic "RLHF", int32 version 1, int32 nseq, int32 V, then per sequence int32 T,
int32 tokens[T], float32 logits[T*V] (row t: the logits after tokens[0..t],
every sequence starting at position 0).
"""
import json
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "fixtures", "hf")

# ---------------------------------------------------------------- safetensors

ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def tensor_bytes(t, dtype):
    """Bytes of a float64 tensor stored as dtype (little-endian), and the stored values as float64."""
    if dtype == "f32":
        s = t.to(torch.float32)
        raw = s.numpy().astype("<f4").tobytes()
    elif dtype == "f16":
        s = t.to(torch.float16)
        raw = s.numpy().astype("<f2").tobytes()
    else:
        s = t.to(torch.bfloat16)
        raw = s.view(torch.int16).numpy().astype("<i2").tobytes()
    return raw, s.to(torch.float64)


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, raw bytes, shape).  Header entries in name order,
    data in the same order; header padded with spaces to a multiple of 8."""
    header, blobs, off = {}, [], 0
    for name, raw, shape in sorted(tensors, key=lambda e: e[0]):
        header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


# ---------------------------------------------------------------- models

def make_weights(cfg, seed):
    """HF-named float64 weights, drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    C, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", C // H)

    def mat(rows, cols):
        return torch.randn(rows, cols, generator=g, dtype=torch.float64) / cols ** 0.5

    def vec(n, center, scale):
        return center + scale * torch.randn(n, generator=g, dtype=torch.float64)

    w = {"model.embed_tokens.weight": torch.randn(V, C, generator=g, dtype=torch.float64)}
    for l in range(L):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = vec(C, 1.0, 0.1)
        w[p + "self_attn.q_proj.weight"] = mat(H * D, C)
        w[p + "self_attn.k_proj.weight"] = mat(KH * D, C)
        w[p + "self_attn.v_proj.weight"] = mat(KH * D, C)
        w[p + "self_attn.o_proj.weight"] = mat(C, H * D)
        if cfg["model_type"] == "qwen2":
            w[p + "self_attn.q_proj.bias"] = vec(H * D, 0.0, 0.2)
            w[p + "self_attn.k_proj.bias"] = vec(KH * D, 0.0, 0.2)
            w[p + "self_attn.v_proj.bias"] = vec(KH * D, 0.0, 0.2)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = vec(D, 1.0, 0.1)
            w[p + "self_attn.k_norm.weight"] = vec(D, 1.0, 0.1)
        w[p + "post_attention_layernorm.weight"] = vec(C, 1.0, 0.1)
        w[p + "mlp.gate_proj.weight"] = mat(F, C)
        w[p + "mlp.up_proj.weight"] = mat(F, C)
        w[p + "mlp.down_proj.weight"] = mat(C, F)
    w["model.norm.weight"] = vec(C, 1.0, 0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(V, C)
    return w


def rmsnorm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, tokens):
    """Logits (T, V) for one sequence from position 0, float64."""
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H, KH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", C // H)
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(tokens)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]              # (T, C)
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":  # position interpolation
        inv_freq = inv_freq / rs["factor"]
    elif kind == "llama3":  # Llama 3.1: long wavelengths / factor, short kept, blended between
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / rs["low_freq_factor"], old / rs["high_freq_factor"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (old / wavelen - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
        blended = (1 - smooth) * inv_freq / rs["factor"] + smooth * inv_freq
        inv_freq = torch.where(wavelen < hi_wl, inv_freq, torch.where(wavelen > lo_wl, inv_freq / rs["factor"], blended))
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]   # (T, D/2)
    cos = torch.cat((angle.cos(), angle.cos()), dim=-1)                   # (T, D)
    sin = torch.cat((angle.sin(), angle.sin()), dim=-1)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        p = "model.layers.%d." % l
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ w[p + "self_attn.%s.weight" % name].T
            b = w.get(p + "self_attn.%s.bias" % name)
            return y if b is None else y + b

        q = proj("q_proj").view(T, H, D).transpose(0, 1)                  # (H, T, D)
        k = proj("k_proj").view(T, KH, D).transpose(0, 1)                 # (KH, T, D)
        v = proj("v_proj").view(T, KH, D).transpose(0, 1)
        if cfg["model_type"] == "qwen3":
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KH, dim=0)                           # (H, T, D)
        v = v.repeat_interleave(H // KH, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / D ** 0.5 + mask, dim=-1) @ v  # (H, T, D)
        x = x + att.transpose(0, 1).reshape(T, H * D) @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


# ---------------------------------------------------------------- tokenizer

def bytes_to_unicode():
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest shift past 255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_tokenizer():
    """A byte-level BPE tokenizer.json: 256 byte tokens, 8 merges, 3 added tokens (267 ids)."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = []
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        added.append({"id": len(vocab) + len(added), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    config = {"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>",
              "model_max_length": 64, "tokenizer_class": "Qwen2Tokenizer"}
    return tok, config


# ---------------------------------------------------------------- fixtures

MODELS = [
    ("llama", "f32", 1, {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 272, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}),
    ("qwen2", "f16", 1, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 16,
        "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 272, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "hidden_act": "silu", "use_sliding_window": False, "sliding_window": 64, "torch_dtype": "float16"}),
    ("qwen3", "bf16", 2, {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 16,
        "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 300, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": True,
        "hidden_act": "silu", "attention_bias": False, "torch_dtype": "bfloat16"}),
    # RoPE scaling: head_dim 8 at theta 10000 has wavelengths 6.3 to 4.6e3, so
    # with an original context of 16 the llama3 rule keeps, blends and divides
    ("llama3rope", "f16", 1, {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 272, "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "torch_dtype": "float16"}),
    ("linearrope", "f16", 1, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 272, "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "rope_scaling": {"type": "linear", "factor": 4.0},
        "hidden_act": "silu", "use_sliding_window": False, "torch_dtype": "float16"}),
]

SEQUENCES = [[0, 5, 17, 200, 33, 33, 7], [261, 1, 2, 3, 4, 5, 6, 7, 100, 150, 250, 9]]


def main():
    for seed, (name, dtype, nshards, cfg) in enumerate(MODELS):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        w = make_weights(cfg, 1234 + seed)
        stored, entries = {}, []
        for k, t in w.items():
            raw, s = tensor_bytes(t, dtype)
            stored[k] = s
            entries.append((k, raw, tuple(t.shape)))
        if nshards == 1:
            write_safetensors(os.path.join(d, "model.safetensors"), entries, dtype)
        else:
            # the embedding and layer 0 in the first shard, the rest in the second
            first = [e for e in entries if e[0].startswith(("model.embed_tokens.", "model.layers.0."))]
            rest = [e for e in entries if e not in first]
            files = ["model-%05d-of-%05d.safetensors" % (i + 1, nshards) for i in range(nshards)]
            total = 0
            weight_map = {}
            for fname, part in zip(files, [first, rest]):
                total += write_safetensors(os.path.join(d, fname), part, dtype)
                for e in part:
                    weight_map[e[0]] = fname
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                          f, indent=2)
                f.write("\n")
        if name == "qwen3":
            tok, tcfg = tiny_tokenizer()
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                json.dump(tok, f, ensure_ascii=False)
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(tcfg, f, indent=2)
                f.write("\n")
        V = cfg["vocab_size"]
        with open(os.path.join(OUT, name + ".ref"), "wb") as f:
            f.write(b"RLHF" + struct.pack("<iii", 1, len(SEQUENCES), V))
            for toks in SEQUENCES:
                logits = forward(cfg, stored, toks)
                f.write(struct.pack("<i", len(toks)) + struct.pack("<%di" % len(toks), *toks))
                f.write(logits.numpy().astype("<f4").tobytes())
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print("%s: %s, %d bytes in %s" % (name, dtype, size, d))


if __name__ == "__main__":
    main()
