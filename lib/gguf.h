/* gguf.h: GGUF files (version 2 and 3), as llama.cpp writes them: a header of
 * typed key-value metadata and tensor descriptions, then aligned tensor data.
 * The reader maps the file and checks every length, count, type, offset and
 * size against it before use, so hostile bytes give an error, not a crash. */
#ifndef RL_GGUF_H
#define RL_GGUF_H
#include <stddef.h>
#include <stdint.h>

#include "lora.h"
#include "model.h"

enum {
	RL_GGUF_U8, RL_GGUF_I8, RL_GGUF_U16, RL_GGUF_I16, RL_GGUF_U32, RL_GGUF_I32, RL_GGUF_F32,
	RL_GGUF_BOOL, RL_GGUF_STRING, RL_GGUF_ARRAY, RL_GGUF_U64, RL_GGUF_I64, RL_GGUF_F64,
};

typedef struct {
	const char *key;        /* NUL-terminated copy */
	uint32_t type;          /* RL_GGUF_* */
	uint32_t atype;         /* arrays: the elements' type */
	uint64_t n;             /* arrays: elements; strings: bytes */
	const unsigned char *p; /* the value (arrays: the first element) in the mapping */
} rl_gguf_kv;

typedef struct {
	const char *name;
	uint32_t ggml_type;
	int ndim;
	uint64_t ne[4];         /* GGUF's order: innermost first */
	uint64_t offset;        /* from the start of the data section */
	size_t bytes;
	const void *data;
} rl_gguf_tensor;

typedef struct {
	const char *path;
	unsigned char *map;
	size_t size;
	uint32_t version;
	uint64_t alignment;
	int nkv, ntensors;
	rl_gguf_kv *kv;
	rl_gguf_tensor *tensors;
	char *names;            /* storage for keys and tensor names */
} rl_gguf;

int rl_gguf_open(rl_gguf *g, const char *path);
void rl_gguf_close(rl_gguf *g);        /* unmaps unless the mapping was taken (map = NULL) */
const rl_gguf_kv *rl_gguf_find(const rl_gguf *g, const char *key);

/* A model from a GGUF file of the llama, qwen2 or qwen3 architecture: config
 * from the metadata, tensors (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q2_K: ggml's
 * blocks are ours byte for byte) in place in the mapping, the tokenizer (SentencePiece "llama" or
 * byte-level BPE "gpt2"). llama's weights are in the interleaved RoPE layout
 * (llama.cpp's converter permutes HF's q/k rows to it), qwen2's and qwen3's in
 * rotate-half, so both run as they are. */
int rl_model_load_gguf(const char *path, rl_model *m);

/* ---- writing (gguf_write.c) ----
 *
 * GGUF version 3, alignment 32, laid out as llama.cpp's converter does: its
 * tensor names and metadata keys for the architecture, dimensions innermost
 * first, norms and biases f32, the tokenizer as tokenizer.ggml.*. Tensors
 * whose dtype is a ggml type (f32, f16, bf16, q4_0, q8_0, q4_K, q2_K) are
 * written byte for byte as stored; the others (our group formats) are
 * dequantized exactly and written as opts->other. llama.cpp's "llama"
 * architecture runs RoPE on interleaved pairs and "qwen2"/"qwen3" on
 * rotate-half: q/k rows (and their biases and norms) of a model stored in
 * the other layout are permuted on the way out, whole rows, so quantized
 * blocks move unchanged. The model's identity goes along as recover.source
 * (always) and recover.content (only when every tensor is written exactly),
 * which rl_model_load_gguf takes back. Written through afile.h: the file
 * appears whole or not at all; tensors stream from the model a row at a time. */
typedef struct {
	rl_dtype other;    /* RL_F32 (default, exact) or RL_F16 */
	const char *name;  /* general.name; NULL: the model's origin, without directories */
} rl_gguf_write_opts;

int rl_gguf_write_model(const rl_model *m, const char *path, const rl_gguf_write_opts *o);

/* llama.cpp's LoRA adapter file for adapter a of model m: general.type
 * "adapter", adapter.type "lora", adapter.lora.alpha (f32), the architecture,
 * tensors NAME.lora_a (dims innermost first: IC, r) and NAME.lora_b (r, OC)
 * in f32, lora_b's rows permuted as the model's q/k rows are. llama.cpp
 * scales by alpha / r as we do (an alpha of 0 means 1 to it, so 0 is refused).
 * The base identity goes along as recover.base.content / recover.base.source.
 * a must have been made for m's tensors (names and shapes are checked). */
int rl_gguf_write_adapter(const rl_adapter *a, const rl_model *m, const char *path);

/* Reads a LoRA adapter GGUF (ours or llama.cpp's convert_lora_to_gguf.py's)
 * for model m, as rl_adapter_read does an adapter stream: the architecture,
 * names and shapes checked against m, lora_a/lora_b in f32, f16 or bf16, one
 * rank; the base identity checked when the file carries one (unless flags has
 * RL_ADAPTER_ANY_BASE). lora_b's rows are put back into m's RoPE layout. */
int rl_adapter_read_gguf(const char *path, const rl_model *m, int flags, rl_adapter *a);

/* Between the writer and the reader: how the rows of m's tensor name move
 * between m's RoPE layout and the one llama.cpp's architecture m->arch runs.
 * Returns 0 (they stay), +1 (rotate-half to interleaved pairs) or -1 (the
 * reverse), with the heads and the rows of each head (D) it applies over. */
int rl_gguf_rope_permutation(const rl_model *m, const char *name, uint64_t *heads, uint64_t *D);
/* Row r of the permuted tensor is row rl_gguf_source_row(r, D, dir) of the
 * original (dir as above; -dir undoes it). */
uint64_t rl_gguf_source_row(uint64_t r, uint64_t D, int dir);
/* ggml's type id of dt, or -1 when GGUF has no such type. */
int rl_gguf_ggml_type(rl_dtype dt);
/* What a tokenizer.ggml.pre name implies beside its regex
 * (rl_bpe_pretokenizer_regex): NFC (qwen2) and ignore_merges (llama-bpe). */
void rl_gguf_pre_flags(const char *pre, int *nfc, int *ignore_merges);

#endif
