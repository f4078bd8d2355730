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

#endif
