/* peft.h: LoRA adapters as PEFT directories (Hugging Face's peft library).
 *
 * A directory holds adapter_config.json (peft_type "LORA", task_type
 * "CAUSAL_LM", r, lora_alpha, target_modules as HF module names, bias "none",
 * fan_in_fan_out false, ...) and adapter_model.safetensors, whose tensors are
 * named after the HF modules they adapt:
 *   base_model.model.model.layers.N.mlp.gate_proj.lora_A.weight  (r, IC)
 *   base_model.model.model.layers.N.mlp.gate_proj.lora_B.weight  (OC, r)
 * (base_model.model.lm_head.lora_A.weight for the classifier). PEFT
 * computes y = W.x + (lora_alpha/r) . B.(A.x), as we do (lora.h).
 *
 * The adapter applies to the model as exported to HF (hf.h): for a model
 * whose RoPE pairs are interleaved, the rows of B on q and k are permuted as
 * the weights are. Our base identity (tstream(5)) travels in the
 * safetensors metadata ("recover.base_content", "recover.base_source"). */
#ifndef RL_PEFT_H
#define RL_PEFT_H
#include "lora.h"

/* Writes adapter a, made for model m, as the PEFT directory dir; it appears
 * whole (afile.h): an existing directory there is replaced, anything else is
 * an error. base_model_name_or_path is m's origin. 0, or -1 with rl_err. */
int rl_adapter_write_peft(const rl_adapter *a, const rl_model *m, const char *dir);

/* Reads the PEFT directory dir (ours, or one written by peft) as an adapter
 * for m. Every lora_A/lora_B pair must adapt a linear layer of m, in the
 * shapes r and the layer imply, f32, f16 or bf16; adapter_config.json must
 * say LORA with bias "none", no fan_in_fan_out, no DoRA, no per-module ranks
 * or alphas, no modules_to_save (use_rslora is taken into alpha). A base
 * identity in the metadata must be m's unless flags has RL_ADAPTER_ANY_BASE;
 * a directory without one (peft's own) is accepted on its shapes. Errors
 * name the file and the field or tensor. 0, or -1 (a is then empty). */
int rl_adapter_read_peft(const char *dir, const rl_model *m, int flags, rl_adapter *a);

#endif
