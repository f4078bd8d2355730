#!/usr/bin/python3
"""gguf_models.py: GGUF files of the tiny HF models in tests/fixtures/hf/, written
from the GGUF specification in ggml's documentation (not with our C code), as
llama.cpp's converter lays them out: its tensor names and metadata keys, dims
innermost first, and for the llama architecture the q/k rows permuted from
HF's rotate-half order to the interleaved pairs llama.cpp's llama RoPE uses.

Regenerate (repository root; needs only numpy):
    /usr/bin/python3 tests/ref/gguf_models.py
writes tests/fixtures/gguf/{llama,qwen2,qwen3}.gguf. tests/test_gguf.c loads
each and checks its logits against the HF directory it came from.
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
ALIGN = 32
T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML = {"F32": 0, "F16": 1, "BF16": 30}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        out[name] = (d["dtype"], d["shape"], raw[8 + n + a:8 + n + b])
    return out


def load_dir(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return cfg, tensors


def as_f32(dtype, shape, raw):
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:  # BF16: the high half of an f32
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return a.reshape(shape)


def permute(w, n_head):
    """HF rotate-half rows -> interleaved pairs: within each head, row j of the
    first half and row j of the second half become rows 2j and 2j+1."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
         "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module>.<sub>.(weight|bias)
    module = ".".join(parts[3:-1])
    return "blk.%s.%s.%s" % (parts[2], NAMES[module], parts[-1])


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def s(x):
        b = x.encode() if isinstance(x, str) else x
        return struct.pack("<Q", len(b)) + b

    def add(self, key, t, v, at=None):
        body = struct.pack("<I", t)
        if t == T_U32:
            body += struct.pack("<I", v)
        elif t == T_F32:
            body += struct.pack("<f", v)
        elif t == T_BOOL:
            body += struct.pack("<B", v)
        elif t == T_STRING:
            body += self.s(v)
        elif t == T_ARRAY:
            body += struct.pack("<IQ", at, len(v))
            for x in v:
                body += self.s(x) if at == T_STRING else struct.pack({T_F32: "<f", T_I32: "<i"}[at], x)
        self.kv.append(self.s(key) + body)

    def tensor(self, name, ggml_type, shape, raw):
        self.tensors.append((name, ggml_type, shape, raw))

    def write(self, path):
        out = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)) + b"".join(self.kv)
        off, infos, datas = 0, b"", []
        for name, t, shape, raw in self.tensors:
            dims = list(reversed(shape))  # innermost first
            infos += self.s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            infos += struct.pack("<IQ", t, off)
            pad = (-len(raw)) % ALIGN
            datas.append(raw + b"\0" * pad)
            off += len(raw) + pad
        out += infos
        out += b"\0" * ((-len(out)) % ALIGN)
        with open(path, "wb") as f:
            f.write(out + b"".join(datas))


def spm_vocab(V):
    """The byte-level vocabulary our HF loader gives a directory without
    tokenizer.json, as SentencePiece pieces: <unk>, <s>, </s>, <0x00>.. ."""
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    toks += ["<unused%d>" % i for i in range(V - len(toks))]
    types = [2, 3, 3] + [6] * 256 + [5] * (V - 259)
    return toks, types


def convert(arch):
    d = os.path.join(FIX, "hf", arch)
    cfg, tensors = load_dir(d)
    w = Writer()
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add("general.architecture", T_STRING, arch)
    w.add("general.alignment", T_U32, ALIGN)
    w.add(arch + ".context_length", T_U32, cfg["max_position_embeddings"])
    w.add(arch + ".embedding_length", T_U32, cfg["hidden_size"])
    w.add(arch + ".feed_forward_length", T_U32, cfg["intermediate_size"])
    w.add(arch + ".block_count", T_U32, cfg["num_hidden_layers"])
    w.add(arch + ".attention.head_count", T_U32, heads)
    w.add(arch + ".attention.head_count_kv", T_U32, kv_heads)
    if "head_dim" in cfg:
        w.add(arch + ".attention.key_length", T_U32, cfg["head_dim"])
        w.add(arch + ".attention.value_length", T_U32, cfg["head_dim"])
    w.add(arch + ".rope.freq_base", T_F32, cfg["rope_theta"])
    w.add(arch + ".attention.layer_norm_rms_epsilon", T_F32, cfg["rms_norm_eps"])
    tok_json = os.path.join(d, "tokenizer.json")
    if os.path.exists(tok_json):
        tj = json.load(open(tok_json))
        vocab = dict(tj["model"]["vocab"])
        for a in tj["added_tokens"]:
            vocab[a["content"]] = a["id"]
        toks = [None] * (max(vocab.values()) + 1)
        for t, i in vocab.items():
            toks[i] = t
        special = {a["id"] for a in tj["added_tokens"] if a["special"]}
        types = [3 if i in special else 1 for i in range(len(toks))]
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
        w.add("tokenizer.ggml.model", T_STRING, "gpt2")
        w.add("tokenizer.ggml.pre", T_STRING, "qwen2")
        w.add("tokenizer.ggml.tokens", T_ARRAY, toks, T_STRING)
        w.add("tokenizer.ggml.token_type", T_ARRAY, types, T_I32)
        w.add("tokenizer.ggml.merges", T_ARRAY, merges, T_STRING)
        w.add("tokenizer.ggml.eos_token_id", T_U32, vocab[tc["eos_token"]])
        w.add("tokenizer.ggml.add_bos_token", T_BOOL, 0)
    else:
        toks, types = spm_vocab(cfg["vocab_size"])
        w.add("tokenizer.ggml.model", T_STRING, "llama")
        w.add("tokenizer.ggml.tokens", T_ARRAY, toks, T_STRING)
        w.add("tokenizer.ggml.scores", T_ARRAY, [0.0] * len(toks), T_F32)
        w.add("tokenizer.ggml.token_type", T_ARRAY, types, T_I32)
        w.add("tokenizer.ggml.bos_token_id", T_U32, 1)
        w.add("tokenizer.ggml.eos_token_id", T_U32, 2)
    for hf in sorted(tensors):
        dtype, shape, raw = tensors[hf]
        name = gguf_name(hf)
        if len(shape) == 1:  # llama.cpp keeps norms and biases in f32
            w.tensor(name, GGML["F32"], shape, as_f32(dtype, shape, raw).astype("<f4").tobytes())
        elif arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            a = as_f32(dtype, shape, raw)
            a = permute(a, heads if "attn_q" in name else kv_heads)
            w.tensor(name, GGML["F32"], shape, a.astype("<f4").tobytes())
        else:
            w.tensor(name, GGML[dtype], shape, raw)
    os.makedirs(os.path.join(FIX, "gguf"), exist_ok=True)
    path = os.path.join(FIX, "gguf", arch + ".gguf")
    w.write(path)
    print("wrote", path, os.path.getsize(path), "bytes")


for a in ("llama", "qwen2", "qwen3"):
    convert(a)
