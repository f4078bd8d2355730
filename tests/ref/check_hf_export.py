#!/usr/bin/python3
"""check_hf_export.py: our Hugging Face and PEFT exports, read by code we did not write.

    /usr/bin/python3 tests/ref/check_hf_export.py DIR

DIR is what `tests/test_hf_export --make DIR` writes: HF model directories
(s260: stories260K with a LoRA adapter merged, f32; s260_bf16; qwen3 and
qwen3_bf16: the Qwen3 fixture), PEFT directories (s260_peft on s260_base,
qwen3_peft on qwen3), and NAME.ref files with our logits (for the PEFT ones,
the base with the adapter attached, unmerged).  This script parses each
model.safetensors itself (the 8-byte header length and the JSON header with
struct and json, the data through torch.frombuffer), checks the layout the
format and Hugging Face expect (aligned header, __metadata__ format pt,
contiguous data, HF's tensor names and shapes for config.json), then runs the
independent PyTorch Llama/Qwen forward pass of tests/ref/hf_models.py on the
weights and compares its logits with ours (1e-4 relative).  For PEFT
directories it checks adapter_config.json and the tensor names and shapes
peft uses, merges W + (lora_alpha/r) B.A itself and compares likewise.

Prints PASS/FAIL lines for tests/run.sh; exits 1 when anything failed.
"""
import json
import os
import re
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_models import forward  # noqa: E402  (the fixtures' reference forward pass)

TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
CONFIG_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
failed = False


def check(ok, name, why=""):
    global failed
    if ok:
        print("PASS %s" % name)
    else:
        print("FAIL %s: %s" % (name, why))
        failed = True
    sys.stdout.flush()
    return ok


def read_safetensors(path):
    """(tensors as float64 by name, dtype names by name, metadata); raises ValueError on a bad layout."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    if (8 + n) % 8:
        raise ValueError("header of %d bytes: the data does not start 8-byte aligned" % n)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    if meta is None or meta.get("format") != "pt":
        raise ValueError("__metadata__ %r lacks format pt" % meta)
    data = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    at = 0
    for b, e, k in spans:
        if b != at:
            raise ValueError("tensor %s starts at %d, not %d: the data is not contiguous" % (k, b, at))
        at = e
    if at != len(data):
        raise ValueError("the data holds %d bytes, the header %d" % (len(data), at))
    tensors, dtypes = {}, {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        dt = TORCH_DTYPE[v["dtype"]]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=dt) if e > b else torch.zeros(0, dtype=dt)
        size = 1
        for d in v["shape"]:
            size *= d
        if t.numel() != size:
            raise ValueError("tensor %s: %d elements for shape %s" % (k, t.numel(), v["shape"]))
        tensors[k] = t.reshape(v["shape"]).to(torch.float64)
        dtypes[k] = v["dtype"]
    return tensors, dtypes, meta


def expected_shapes(cfg):
    """HF's parameter names and shapes for a Llama/Qwen2/Qwen3 config.json."""
    C, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    s = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
    if not cfg["tie_word_embeddings"]:
        s["lm_head.weight"] = [V, C]
    for l in range(L):
        p = "model.layers.%d." % l
        s.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                  p + "self_attn.q_proj.weight": [H * D, C], p + "self_attn.k_proj.weight": [KH * D, C],
                  p + "self_attn.v_proj.weight": [KH * D, C], p + "self_attn.o_proj.weight": [C, H * D],
                  p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C],
                  p + "mlp.down_proj.weight": [C, F]})
        if cfg["model_type"] == "qwen2":
            s.update({p + "self_attn.q_proj.bias": [H * D], p + "self_attn.k_proj.bias": [KH * D],
                      p + "self_attn.v_proj.bias": [KH * D]})
        if cfg["model_type"] == "qwen3":
            s.update({p + "self_attn.q_norm.weight": [D], p + "self_attn.k_norm.weight": [D]})
    return s


def read_reference(path):
    """[(tokens, logits (T, V) float32)] from our NAME.ref."""
    raw = open(path, "rb").read()
    assert raw[:4] == b"RLHF"
    version, nseq, V = struct.unpack("<iii", raw[4:16])
    at, out = 16, []
    for _ in range(nseq):
        (T,) = struct.unpack("<i", raw[at:at + 4])
        tokens = list(struct.unpack("<%di" % T, raw[at + 4:at + 4 + 4 * T]))
        at += 4 + 4 * T
        logits = torch.frombuffer(bytearray(raw[at:at + 4 * T * V]), dtype=torch.float32).reshape(T, V)
        at += 4 * T * V
        out.append((tokens, logits))
    return out


def compare_logits(name, cfg, w, ref_path):
    worst = 0.0
    for tokens, ours in read_reference(ref_path):
        theirs = forward(cfg, w, tokens)
        err = (theirs - ours.to(torch.float64)).abs().max().item() / ours.abs().max().item()
        worst = max(worst, err)
    check(worst <= 1e-4, name + "_logits_match_pytorch", "relative error %.3g (limit 1e-4)" % worst)
    print("# %s: PyTorch's logits within %.2g relative of ours" % (name, worst))


def load_model_dir(d, name):
    """config and float64 weights of an HF directory, after the layout checks."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    want_arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
    check(cfg.get("architectures") == [want_arch.get(cfg.get("model_type"))], name + "_config_architecture",
          "architectures %r, model_type %r" % (cfg.get("architectures"), cfg.get("model_type")))
    w, dtypes, meta = read_safetensors(os.path.join(d, "model.safetensors"))
    shapes = expected_shapes(cfg)
    got = {k: list(v.shape) for k, v in w.items()}
    check(got == shapes, name + "_hf_names_and_shapes",
          "missing %s, unexpected %s" % (sorted(set(shapes) - set(got))[:4], sorted(set(got) - set(shapes))[:4]))
    want = CONFIG_DTYPE[cfg["torch_dtype"]]
    check(set(dtypes.values()) == {want}, name + "_dtype_as_config_says",
          "dtypes %s, torch_dtype %s" % (sorted(set(dtypes.values())), cfg["torch_dtype"]))
    tok = json.load(open(os.path.join(d, "tokenizer.json")))
    tcfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    check(tok["model"]["type"] == "BPE" and "add_bos_token" in tcfg, name + "_tokenizer_files", "model %r" % tok["model"].get("type"))
    return cfg, w


PEFT_NAME = re.compile(r"^base_model\.model\.(model\.layers\.\d+\.(?:self_attn|mlp)\.[a-z_]+|lm_head)\.lora_([AB])\.weight$")


def check_peft(d, base_w, name):
    """adapter_config.json and the tensors as peft names them; returns base_w with the adapter merged."""
    acfg = json.load(open(os.path.join(d, "adapter_config.json")))
    check(acfg.get("peft_type") == "LORA" and acfg.get("task_type") == "CAUSAL_LM" and acfg.get("bias") == "none"
          and acfg.get("fan_in_fan_out") is False and isinstance(acfg.get("r"), int)
          and isinstance(acfg.get("lora_alpha"), (int, float)) and isinstance(acfg.get("target_modules"), list),
          name + "_adapter_config", repr(acfg))
    t, dtypes, meta = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    check(re.fullmatch(r"[0-9a-f]{64}", meta.get("recover.base_content", "")) is not None, name + "_base_identity_in_metadata",
          repr(meta))
    r, scale = acfg["r"], acfg["lora_alpha"] / acfg["r"]
    mods, bad = {}, []
    for k, v in t.items():
        m = PEFT_NAME.match(k)
        if not m:
            bad.append(k)
            continue
        mods.setdefault(m.group(1), {})[m.group(2)] = v
    check(not bad and mods, name + "_peft_tensor_names", "unexpected names %s" % bad[:3])
    targets = acfg["target_modules"]
    ok, why, merged = True, "", dict(base_w)
    for mod, ab in sorted(mods.items()):
        W = base_w.get(mod + ".weight")
        listed = any(mod == x or mod.endswith("." + x) for x in targets)
        if W is None or set(ab) != {"A", "B"} or not listed:
            ok, why = False, "%s: base weight %s, halves %s, in target_modules %s" % (mod, W is not None, sorted(ab), listed)
            break
        A, B = ab["A"], ab["B"]
        if list(A.shape) != [r, W.shape[1]] or list(B.shape) != [W.shape[0], r]:
            ok, why = False, "%s: A %s, B %s for r %d and weight %s" % (mod, list(A.shape), list(B.shape), r, list(W.shape))
            break
        merged[mod + ".weight"] = W + scale * (B @ A)
    check(ok, name + "_peft_shapes_and_targets", why)
    return merged


def main():
    out = sys.argv[1]
    for name in ["s260", "s260_bf16", "qwen3", "qwen3_bf16"]:
        d = os.path.join(out, name)
        try:
            cfg, w = load_model_dir(d, name)
        except (ValueError, KeyError, OSError) as e:
            check(False, name + "_reads", str(e))
            continue
        compare_logits(name, cfg, w, d + ".ref")
    for name, base in [("s260_peft", "s260_base"), ("qwen3_peft", "qwen3")]:
        try:
            cfg, w = load_model_dir(os.path.join(out, base), name + "_base")
            merged = check_peft(os.path.join(out, name), w, name)
        except (ValueError, KeyError, OSError) as e:
            check(False, name + "_reads", str(e))
            continue
        compare_logits(name, cfg, merged, os.path.join(out, name + ".ref"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
