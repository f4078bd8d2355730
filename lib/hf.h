/* hf.h: loading a Hugging Face model directory.
 *
 * dir/config.json (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM; read
 * by rl_config_from_json), the weights in dir/model.safetensors or in the
 * shards dir/model.safetensors.index.json names (F32, F16 or BF16, memory-
 * mapped: matrices stay in the files' dtype and are read in place; norms and
 * biases are widened to f32), and the tokenizer from dir/tokenizer.json
 * (rl_tokenizer_load_hf). A directory without tokenizer.json gets the
 * byte-level tokenizer of random models (rl_tokenizer_byte_level), and its
 * origin says so. HF's rotate-half RoPE layout is kept: rope_style half. */
#ifndef RL_HF_H
#define RL_HF_H
#include "model.h"

/* Returns 0, or -1 with rl_err naming the file and what is wrong; m is then
 * empty. */
int rl_model_load_hf(const char *dir, rl_model *m);

/* HF's name of one of our tensors ("blk.3.ffn_gate.weight" ->
 * "model.layers.3.mlp.gate_proj.weight"); a name we do not map is copied. */
void rl_hf_tensor_name(const char *ours, char *out, size_t size);
/* Our name for an HF tensor name into out: 1, or 0 when it is none we know. */
int rl_hf_our_name(const char *hf, char out[64]);

/* Writes m as a Hugging Face model directory (hf_write.c): config.json
 * (LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM as m->arch says),
 * model.safetensors with HF's tensor names in dtype (RL_F32, RL_F16 or
 * RL_BF16; quantized weights are dequantized exactly, then converted,
 * rounding to nearest even), and the tokenizer (rl_tokenizer_write_hf:
 * tokenizer.json, tokenizer_config.json). A model whose RoPE pairs are
 * interleaved (llama2.c, GGUF llama) has the rows of q and k (their biases
 * and q/k norms too) permuted within each head to HF's rotate-half layout,
 * so HF computes the same function. A model with an unmerged adapter is
 * refused (merge it, or write the adapter with peft.h). The directory
 * appears whole (afile.h):
 * an existing directory at dir is replaced, anything else there is an
 * error. Returns 0, or -1 with rl_err naming the path and the problem. */
int rl_model_write_hf(const rl_model *m, const char *dir, rl_dtype dtype);

/* Row r of an interleaved-layout q or k projection (head_dim D) goes to this
 * row of HF's rotate-half layout: within each head, pair j's two rows 2j and
 * 2j+1 become rows j and j + D/2. */
static inline uint64_t rl_hf_half_row(uint64_t r, int D)
{
	uint64_t head = r / (uint64_t)D, i = r % (uint64_t)D;
	return head * (uint64_t)D + (i % 2) * (uint64_t)(D / 2) + i / 2;
}

/* The inverse: HF's row o is the interleaved layout's row rl_hf_pair_row(o). */
static inline uint64_t rl_hf_pair_row(uint64_t o, int D)
{
	uint64_t head = o / (uint64_t)D, i = o % (uint64_t)D, half = (uint64_t)D / 2;
	return head * (uint64_t)D + 2 * (i % half) + i / half;
}

/* 1 when m's RoPE pairs are interleaved and our tensor name is one whose rows
 * (a matrix) or elements (a vector) are in RoPE's pair layout: q and k, their
 * biases and norms. Those move on export, and so do the rows of a LoRA B on
 * them (peft.h). */
int rl_hf_rope_permuted(const rl_model *m, const char *name);

#endif
