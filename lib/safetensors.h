/* safetensors.h: reading a safetensors file, memory-mapped, and writing one.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON (an
 * object: per tensor name {"dtype", "shape", "data_offsets": [begin, end]},
 * offsets relative to the byte after the header; an optional "__metadata__"
 * object of strings), then the data. Everything is checked at open: the
 * header's length against the file and a bound, every dtype known, every
 * shape's size against its offsets without overflow, offsets inside the file,
 * no two tensors overlapping, no name twice. */
#ifndef RL_SAFETENSORS_H
#define RL_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dtype.h"

#define RL_ST_MAX_DIMS 8
#define RL_ST_MAX_HEADER (100u << 20) /* bytes of JSON header accepted */

typedef struct {
	char *name;              /* NUL-terminated, owned by the file */
	char st_dtype[12];       /* as the header says: "F32", "BF16", "I64", ... */
	int dtype;               /* rl_dtype for F32, F16, BF16; -1 for other dtypes */
	int ndim;
	uint64_t shape[RL_ST_MAX_DIMS]; /* outermost first */
	const void *data;        /* into the mapping */
	size_t bytes;
} rl_st_tensor;

typedef struct {
	char *path;
	void *map;               /* the whole file, read-only */
	size_t size;
	int ntensors;
	rl_st_tensor *tensors;   /* (ntensors) sorted by name */
	int nmeta;
	char **meta;             /* (2 * nmeta) the __metadata__ keys and values */
} rl_safetensors;

/* Maps and validates path. Returns 0, or -1 with rl_err naming the path and
 * what is wrong; st is then empty. */
int rl_safetensors_open(rl_safetensors *st, const char *path);
/* The tensor called name, or NULL. */
const rl_st_tensor *rl_safetensors_find(const rl_safetensors *st, const char *name);
/* The __metadata__ value of key, or NULL. */
const char *rl_safetensors_meta(const rl_safetensors *st, const char *key);
/* Unmaps (unless map was taken: set st->map = NULL to keep it) and frees. */
void rl_safetensors_close(rl_safetensors *st);

/* ---- writing ---- */

/* One tensor to write: F32, F16 or BF16, shape outermost first. */
typedef struct {
	const char *name;
	rl_dtype dtype;
	int ndim;
	uint64_t shape[RL_ST_MAX_DIMS];
} rl_st_entry;

/* Writes a safetensors file to f (path names it in messages): the header
 * lists the n entries sorted by name (a name twice is an error) and the
 * metadata, nmeta key/value pairs of strings (kv[2i], kv[2i+1]), always with
 * "format": "pt" first as Hugging Face's writers put it; the JSON is padded
 * with spaces so the data starts 8-byte aligned. Then the data, in the
 * header's order: write_data(arg, e, f) must write exactly e's bytes
 * (little-endian) and return 0, or -1 after rl_seterr. Returns 0, or -1 with
 * rl_err naming path. */
int rl_safetensors_write(FILE *f, const char *path, const rl_st_entry *e, int n, const char *const *kv, int nmeta,
			 int (*write_data)(void *arg, const rl_st_entry *e, FILE *f), void *arg);
/* Bytes of e's data (0 when the size overflows). */
size_t rl_st_entry_bytes(const rl_st_entry *e);

#endif
