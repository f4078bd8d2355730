/* safetensors.h: reading a safetensors file, memory-mapped.
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
} rl_safetensors;

/* Maps and validates path. Returns 0, or -1 with rl_err naming the path and
 * what is wrong; st is then empty. */
int rl_safetensors_open(rl_safetensors *st, const char *path);
/* The tensor called name, or NULL. */
const rl_st_tensor *rl_safetensors_find(const rl_safetensors *st, const char *name);
/* Unmaps (unless map was taken: set st->map = NULL to keep it) and frees. */
void rl_safetensors_close(rl_safetensors *st);

#endif
