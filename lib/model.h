/* model.h: a decoder-only transformer of the LLaMA family in memory, how it
 * is loaded from any model argument, written as a model stream, and run.
 *
 * Dimension letters: B = sequences, T = positions, N = tokens in a batch,
 * C = dim, H = n_heads, KH = n_kv_heads, D = head_dim, F = hidden_dim,
 * V = vocab, L = layers. */
#ifndef RL_MODEL_H
#define RL_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "stream.h"
#include "tokenizer.h"

typedef enum { RL_ROPE_INTERLEAVED, RL_ROPE_HALF } rl_rope_style;

/* RoPE frequency scaling for long contexts: none; "linear" (position
 * interpolation: every frequency / factor); "llama3" (Llama 3.1's: long
 * wavelengths / factor, short ones kept, a smooth blend between). */
typedef enum { RL_ROPE_SCALING_NONE, RL_ROPE_SCALING_LINEAR, RL_ROPE_SCALING_LLAMA3 } rl_rope_scaling;

typedef struct {
	int dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len;
	double rope_theta, norm_eps;
	rl_rope_style rope_style; /* interleaved pairs (llama2.c, Meta) or rotate-half (HF) */
	rl_rope_scaling rope_scaling;
	double rope_factor;       /* linear, llama3: > 0 */
	double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
	int rope_original_ctx;    /* llama3: original_max_position_embeddings */
	int qk_norm;              /* RMSNorm of each head of q and k before RoPE (Qwen3) */
	int qkv_bias;             /* biases on q, k, v (Qwen2) */
	int tied_embeddings;      /* the classifier is token_embd */
} rl_config;

typedef struct {
	char name[64];
	rl_dtype dtype;
	int ndim;
	uint64_t shape[2];  /* outermost first: (rows, cols) or (cols) */
	void *data;         /* owned unless the model's mapping holds it */
	size_t bytes;
} rl_tensor;

typedef struct {
	rl_tensor *attn_norm, *ffn_norm;                  /* (C) f32 */
	rl_tensor *attn_q, *attn_k, *attn_v, *attn_output; /* (H*D, C) (KH*D, C) (KH*D, C) (C, H*D) */
	rl_tensor *attn_q_norm, *attn_k_norm;             /* (D) f32, qk_norm only */
	rl_tensor *attn_q_bias, *attn_k_bias, *attn_v_bias; /* (H*D) (KH*D) (KH*D) f32, qkv_bias only */
	rl_tensor *ffn_gate, *ffn_up, *ffn_down;          /* (F, C) (F, C) (C, F) */
} rl_layer;

typedef struct rl_model {
	char arch[16];           /* "llama", "qwen2", "qwen3" */
	rl_config cfg;
	rl_tokenizer tok;
	char source[65];         /* sha256 of the canonical f32 tensors at import */
	char content[65];        /* sha256 of the stream's tensor payloads when loaded from one, else "" (lora.h) */
	char origin[512];        /* what it was loaded from, for messages */
	int ntensors;
	rl_tensor *tensors;      /* (ntensors) in canonical order */
	rl_tensor *token_embd;   /* (V, C) */
	rl_tensor *output_norm;  /* (C) */
	rl_tensor *output;       /* (V, C); token_embd when tied */
	rl_layer *layers;        /* (L) */
	void *mapping;           /* a memory-mapped file the tensors may point into */
	size_t mapping_size;
	struct rl_mapping { void *addr; size_t size; } *mappings; /* (nmappings) more of them (safetensors shards) */
	int nmappings;
	struct rl_adapter *adapter; /* an unmerged LoRA adapter the forward pass applies, or NULL; owned (lora.h) */
	int int8_act;            /* 1: the quantized linear layers take activations rounded to 8 bits (quant.h,
				  * RL_ACT_INT8) for every token, an option of the tools that run models; 0
				  * (the default): exact f32. Read by rl_forward_new. */
} rl_model;

typedef struct {
	const char *tokenizer;   /* llama2.c: tokenizer.bin to use instead of a search */
} rl_load_opts;

/* The one entry point for model arguments: a model stream (file or "-"), or
 * a llama2.c checkpoint. PATH+ADAPTER (when PATH+ADAPTER is not itself a
 * file: split at the last '+') loads PATH and attaches the adapter stream
 * ADAPTER (lora.h), refused unless it was made for that model.
 * Returns 0, or -1 with rl_err naming the path. */
int rl_model_load(const char *arg, const rl_load_opts *opts, rl_model *m);
void rl_model_free(rl_model *m);
/* A model stream from an open reader into m, which the caller has zeroed
 * (and may have given an origin); the reader stays open. */
int rl_model_load_reader(rl_reader *r, rl_model *m);

/* The rotation frequency of pair j (0 <= j < head_dim/2) in radians per
 * position: rope_theta^(-2j/head_dim), scaled as the config says. */
double rl_rope_freq(const rl_config *c, int j);

/* Config checks shared by every loader: sizes positive, consistent, bounded. */
int rl_config_check(const rl_config *c);
/* Sets up m->tensors for cfg with the canonical names and shapes (data NULL)
 * and links the per-layer pointers. */
int rl_model_layout(rl_model *m);
/* Reads an HF-style config.json (hidden_size, intermediate_size, ...) as used by
 * `qpack --random`; arch from model_type. */
int rl_config_from_json(const char *path, rl_config *c, char arch[16]);
/* A random-weight model for benchmarks and tests: every tensor is drawn from a
 * stream seeded by (seed, tensor name); byte-level tokenizer. */
int rl_model_random(const rl_config *c, const char *arch, uint64_t seed, rl_model *m);
/* The index in m->tensors of the tensor of that (canonical) name, or -1. */
int rl_model_tensor_index(const rl_model *m, const char *name);
/* Replaces t's (a tensor of m) storage with data (dtype dt, bytes long,
 * allocated with malloc or posix_memalign; m takes it), freeing the old
 * unless a mapping holds it. m->content no longer describes m: it is cleared. */
void rl_model_replace_tensor(rl_model *m, rl_tensor *t, rl_dtype dt, void *data, size_t bytes);
/* sha256 of the tensors as f32 (the "source" identity of an import). */
int rl_model_hash_f32(const rl_model *m, char hex[65]);

/* Writes the model as a stream: header, tokenizer, tensors, end.
 * write_tensor writes each tensor (e.g. quantized, with rl_write_tensor);
 * NULL writes them as they are stored. */
int rl_model_write(const rl_model *m, rl_writer *w, const char *producer,
		   int (*write_tensor)(rl_writer *w, const rl_tensor *t, void *arg), void *arg);

/* Threads of OpenBLAS and of our pool (parallel.h). n <= 0 means the number of cores. */
void rl_set_threads(int n);

/* ---- forward ---- */

typedef struct {
	int slot;           /* KV-cache slot (ignored without a cache) */
	int pos0;           /* position of the first token (0 without a cache) */
	int ntok;           /* tokens of this sequence in the batch */
	const int *tokens;  /* (ntok) */
} rl_seq;

/* Keys are stored dimension-major, so decode reads each dimension's positions
 * as one run: k (L, nslots, KH, D, stride), v (L, nslots, KH, ctx, D);
 * stride is ctx rounded up to a multiple of 8. Use the functions, not the layout. */
typedef struct {
	int nslots, ctx, kv_dim, n_layers, head_dim, stride;
	float *k, *v;
} rl_kvcache;

int rl_kvcache_init(rl_kvcache *c, const rl_model *m, int nslots, int ctx);
void rl_kvcache_free(rl_kvcache *c);
/* Copies positions [0, npos) of every layer from one slot to another (a shared prefix). */
void rl_kvcache_copy_prefix(rl_kvcache *c, int from, int to, int npos);

typedef struct rl_forward rl_forward;

/* Workspace for batches of up to max_tokens tokens, sequences up to ctx long. */
rl_forward *rl_forward_new(const rl_model *m, int max_tokens, int ctx);
void rl_forward_free(rl_forward *f);

/* Runs nseq sequences (N = sum of ntok <= max_tokens tokens) through the
 * model; logits (N, V) in batch order. Without a cache each sequence attends
 * within itself and must start at position 0 (the batched path); with one,
 * its keys and values are written to the cache at pos0.. and attention reads
 * positions 0..pos (the decode path, and prefill into a cache). */
int rl_forward_run(rl_forward *f, rl_kvcache *cache, int nseq, const rl_seq *seqs, float *logits);

/* With on = 1 every linear layer computes each token's outputs exactly as it
 * would for that token alone (our row kernels instead of sgemm), so a
 * sequence's logits do not depend on which others share its batch: what
 * sampling needs to be reproducible under any batching or sharding. Slower
 * for long prefills; decode batches read the weights once. */
int rl_forward_set_batch_invariant(rl_forward *f, int on);

/* Called with the input (N rows of IC) of every linear layer w as the forward
 * pass runs it: how qpack --importance gathers activation statistics. */
typedef void (*rl_linear_observer)(void *arg, const rl_tensor *w, const float *inp, int N, int IC);
void rl_forward_set_observer(rl_forward *f, rl_linear_observer fn, void *arg);

#endif
