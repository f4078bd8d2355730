/* gguf.h: GGUF files (version 2 and 3), as llama.cpp writes them: a header of
 * typed key-value metadata and tensor descriptions, then aligned tensor data.
 * The reader maps the file and checks every length, count, type, offset and
 * size against it before use, so hostile bytes give an error, not a crash. */
#ifndef RL_GGUF_H
#define RL_GGUF_H
#include <stddef.h>
#include <stdint.h>

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

#endif
