/* safetensors.c: a memory-mapped, validated safetensors file. */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "safetensors.h"

/* Every dtype the format defines, with its element size; ours is the rl_dtype
 * we compute with, -1 for those we only recognise. */
static const struct { const char *name; size_t size; int ours; } st_dtypes[] = {
	{ "F32", 4, RL_F32 }, { "F16", 2, RL_F16 }, { "BF16", 2, RL_BF16 },
	{ "F64", 8, -1 }, { "I64", 8, -1 }, { "U64", 8, -1 }, { "I32", 4, -1 }, { "U32", 4, -1 },
	{ "I16", 2, -1 }, { "U16", 2, -1 }, { "I8", 1, -1 }, { "U8", 1, -1 }, { "BOOL", 1, -1 },
	{ "F8_E4M3", 1, -1 }, { "F8_E5M2", 1, -1 },
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const rl_st_tensor *)a)->name, ((const rl_st_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b)
{
	const rl_st_tensor *x = *(const rl_st_tensor *const *)a, *y = *(const rl_st_tensor *const *)b;
	return x->data < y->data ? -1 : x->data > y->data;
}

/* One header entry: fills t (name set by the caller) from obj; data offsets
 * relative to base, which holds avail bytes. */
static int parse_entry(const rl_json *obj, rl_st_tensor *t, const char *base, size_t avail)
{
	const rl_json *dtype = rl_json_get(obj, "dtype"), *shape = rl_json_get(obj, "shape"),
		      *offsets = rl_json_get(obj, "data_offsets");
	if (obj->type != RL_JSON_OBJECT || !dtype || dtype->type != RL_JSON_STRING || !shape ||
	    shape->type != RL_JSON_ARRAY || !offsets || offsets->type != RL_JSON_ARRAY || offsets->len != 2) {
		rl_seterr("not an object with dtype (a string), shape (an array) and data_offsets (two integers)");
		return -1;
	}
	size_t elsize = 0;
	t->dtype = -1;
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
		if (strcmp(dtype->string, st_dtypes[i].name) == 0) {
			elsize = st_dtypes[i].size;
			t->dtype = st_dtypes[i].ours;
		}
	if (!elsize) {
		rl_seterr("dtype \"%.20s\" is not a safetensors dtype", dtype->string);
		return -1;
	}
	snprintf(t->st_dtype, sizeof t->st_dtype, "%s", dtype->string);
	if (shape->len > RL_ST_MAX_DIMS) {
		rl_seterr("shape has %zu dimensions, more than %d", shape->len, RL_ST_MAX_DIMS);
		return -1;
	}
	t->ndim = (int)shape->len;
	size_t bytes = elsize;
	for (size_t i = 0; i < shape->len; i++) {
		const rl_json *d = shape->items[i];
		if (d->type != RL_JSON_NUMBER || !d->is_integer || d->integer < 0) {
			rl_seterr("shape[%zu] is not a non-negative integer", i);
			return -1;
		}
		t->shape[i] = (uint64_t)d->integer;
		if (rl_mul_size(bytes, (size_t)d->integer, &bytes)) {
			rl_seterr("shape's size overflows");
			return -1;
		}
	}
	long long off[2];
	for (int i = 0; i < 2; i++) {
		const rl_json *o = offsets->items[i];
		if (o->type != RL_JSON_NUMBER || !o->is_integer || o->integer < 0) {
			rl_seterr("data_offsets[%d] is not a non-negative integer", i);
			return -1;
		}
		off[i] = o->integer;
	}
	if (off[0] > off[1] || (unsigned long long)off[1] > avail) {
		rl_seterr("data_offsets [%lld, %lld] are out of range: the data holds %zu bytes (the file is truncated, or its header wrong)",
			  off[0], off[1], avail);
		return -1;
	}
	if ((size_t)(off[1] - off[0]) != bytes) {
		rl_seterr("data_offsets [%lld, %lld] hold %lld bytes, but %s of this shape needs %zu", off[0], off[1],
			  off[1] - off[0], t->st_dtype, bytes);
		return -1;
	}
	t->data = base + off[0];
	t->bytes = bytes;
	return 0;
}

static int parse_header(rl_safetensors *st, const char *json, size_t len, const char *base, size_t avail)
{
	rl_json *h = rl_json_parse(json, len);
	if (!h) {
		rl_seterr("%s: header: %s", st->path, rl_err());
		return -1;
	}
	int rc = -1;
	rl_st_tensor **order = NULL;
	if (h->type != RL_JSON_OBJECT) {
		rl_seterr("%s: header: not a JSON object", st->path);
		goto done;
	}
	st->tensors = calloc(h->len ? h->len : 1, sizeof *st->tensors);
	if (!st->tensors) {
		rl_seterr("%s: out of memory", st->path);
		goto done;
	}
	for (size_t i = 0; i < h->len; i++) {
		if (strcmp(h->keys[i], "__metadata__") == 0) {
			const rl_json *md = h->items[i];
			int ok = md->type == RL_JSON_OBJECT;
			for (size_t k = 0; ok && k < md->len; k++)
				ok = md->items[k]->type == RL_JSON_STRING;
			if (!ok) {
				rl_seterr("%s: header: __metadata__ is not an object of strings", st->path);
				goto done;
			}
			free(st->meta);
			st->nmeta = 0;
			if (!(st->meta = calloc(2 * md->len + 1, sizeof *st->meta))) {
				rl_seterr("%s: out of memory", st->path);
				goto done;
			}
			for (size_t k = 0; k < md->len; k++, st->nmeta++)
				if (!(st->meta[2 * k] = strdup(md->keys[k])) ||
				    !(st->meta[2 * k + 1] = strdup(md->items[k]->string))) {
					st->nmeta++;
					rl_seterr("%s: out of memory", st->path);
					goto done;
				}
			continue;
		}
		rl_st_tensor *t = &st->tensors[st->ntensors];
		if (!(t->name = strdup(h->keys[i]))) {
			rl_seterr("%s: out of memory", st->path);
			goto done;
		}
		st->ntensors++;
		if (parse_entry(h->items[i], t, base, avail)) {
			rl_seterr("%s: tensor %.200s: %s", st->path, t->name, rl_err());
			goto done;
		}
	}
	qsort(st->tensors, (size_t)st->ntensors, sizeof *st->tensors, by_name);
	for (int i = 1; i < st->ntensors; i++)
		if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
			rl_seterr("%s: tensor %.200s appears twice in the header", st->path, st->tensors[i].name);
			goto done;
		}
	/* no two tensors may share a byte */
	order = malloc((st->ntensors ? (size_t)st->ntensors : 1) * sizeof *order);
	if (!order) {
		rl_seterr("%s: out of memory", st->path);
		goto done;
	}
	int n = 0;
	for (int i = 0; i < st->ntensors; i++)
		if (st->tensors[i].bytes)
			order[n++] = &st->tensors[i];
	qsort(order, (size_t)n, sizeof *order, by_begin);
	for (int i = 1; i < n; i++)
		if ((const char *)order[i - 1]->data + order[i - 1]->bytes > (const char *)order[i]->data) {
			rl_seterr("%s: tensors %.200s and %.200s overlap (data_offsets from %zu and %zu)", st->path,
				  order[i - 1]->name, order[i]->name, (size_t)((const char *)order[i - 1]->data - base),
				  (size_t)((const char *)order[i]->data - base));
			goto done;
		}
	rc = 0;
done:
	free(order);
	rl_json_free(h);
	return rc;
}

int rl_safetensors_open(rl_safetensors *st, const char *path)
{
	memset(st, 0, sizeof *st);
	if (!(st->path = strdup(path))) {
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
		rl_seterr("%s: %s", path, S_ISREG(sb.st_mode) ? "shorter than the 8-byte header length of a safetensors file"
							     : "not a regular file");
		close(fd);
		goto fail;
	}
	st->size = (size_t)sb.st_size;
	st->map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (st->map == MAP_FAILED) {
		st->map = NULL;
		rl_seterr("%s: mmap: %s", path, strerror(errno));
		goto fail;
	}
	const unsigned char *p = st->map;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | p[i];
	if (hlen > st->size - 8) {
		rl_seterr("%s: the header length %llu runs past the end of the file (%zu bytes): truncated, or not safetensors",
			  path, (unsigned long long)hlen, st->size);
		goto fail;
	}
	if (hlen > RL_ST_MAX_HEADER || hlen < 2 || p[8] != '{') {
		rl_seterr("%s: a header of %llu bytes%s is not a safetensors header (a JSON object of at most %u bytes)",
			  path, (unsigned long long)hlen, hlen >= 2 && p[8] != '{' ? " not starting with '{'" : "",
			  RL_ST_MAX_HEADER);
		goto fail;
	}
	if (parse_header(st, (const char *)p + 8, (size_t)hlen, (const char *)p + 8 + hlen, st->size - 8 - (size_t)hlen))
		goto fail;
	return 0;
fail:
	rl_safetensors_close(st);
	return -1;
}

const rl_st_tensor *rl_safetensors_find(const rl_safetensors *st, const char *name)
{
	rl_st_tensor key = { .name = (char *)name };
	return st->ntensors ? bsearch(&key, st->tensors, (size_t)st->ntensors, sizeof key, by_name) : NULL;
}

const char *rl_safetensors_meta(const rl_safetensors *st, const char *key)
{
	for (int i = st->nmeta - 1; i >= 0; i--)
		if (strcmp(st->meta[2 * i], key) == 0)
			return st->meta[2 * i + 1];
	return NULL;
}

void rl_safetensors_close(rl_safetensors *st)
{
	for (int i = 0; i < 2 * st->nmeta; i++)
		free(st->meta[i]);
	free(st->meta);
	for (int i = 0; i < st->ntensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	if (st->map)
		munmap(st->map, st->size);
	free(st->path);
	memset(st, 0, sizeof *st);
}

/* ---- writing ---- */

static const char *st_dtype_name(rl_dtype dt)
{
	return dt == RL_F32 ? "F32" : dt == RL_F16 ? "F16" : dt == RL_BF16 ? "BF16" : NULL;
}

size_t rl_st_entry_bytes(const rl_st_entry *e)
{
	size_t bytes = e->dtype == RL_F32 ? 4 : 2;
	for (int d = 0; d < e->ndim; d++)
		if (rl_mul_size(bytes, (size_t)e->shape[d], &bytes))
			return 0;
	return bytes;
}

static int by_entry_name(const void *a, const void *b)
{
	return strcmp((*(const rl_st_entry *const *)a)->name, (*(const rl_st_entry *const *)b)->name);
}

int rl_safetensors_write(FILE *f, const char *path, const rl_st_entry *e, int n, const char *const *kv, int nmeta,
			 int (*write_data)(void *arg, const rl_st_entry *e, FILE *f), void *arg)
{
	const rl_st_entry **order = malloc((n ? (size_t)n : 1) * sizeof *order);
	char *header = NULL;
	size_t hlen = 0;
	FILE *h = NULL;
	int rc = -1;
	if (!order || !(h = open_memstream(&header, &hlen))) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	for (int i = 0; i < n; i++) {
		order[i] = &e[i];
		if (!st_dtype_name(e[i].dtype) || e[i].ndim < 0 || e[i].ndim > RL_ST_MAX_DIMS) {
			rl_seterr("%s: tensor %s: dtype %s or %d dimensions cannot be written (F32, F16, BF16; at most %d)",
				  path, e[i].name, rl_dtypes[e[i].dtype].name, e[i].ndim, RL_ST_MAX_DIMS);
			goto done;
		}
	}
	qsort(order, (size_t)n, sizeof *order, by_entry_name);
	for (int i = 1; i < n; i++)
		if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
			rl_seterr("%s: tensor %s twice", path, order[i]->name);
			goto done;
		}
	fputs("{\"__metadata__\":{\"format\":\"pt\"", h);
	for (int i = 0; i < nmeta; i++) {
		fputc(',', h);
		rl_json_write_string(h, kv[2 * i], strlen(kv[2 * i]));
		fputc(':', h);
		rl_json_write_string(h, kv[2 * i + 1], strlen(kv[2 * i + 1]));
	}
	fputc('}', h);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		size_t bytes = rl_st_entry_bytes(order[i]);
		if ((!bytes && order[i]->ndim) || __builtin_add_overflow(off, bytes, &off)) {
			rl_seterr("%s: tensor %s: its size overflows", path, order[i]->name);
			goto done;
		}
		fputc(',', h);
		rl_json_write_string(h, order[i]->name, strlen(order[i]->name));
		fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(order[i]->dtype));
		for (int d = 0; d < order[i]->ndim; d++)
			fprintf(h, "%s%llu", d ? "," : "", (unsigned long long)order[i]->shape[d]);
		fprintf(h, "],\"data_offsets\":[%zu,%zu]}", off - bytes, off);
	}
	fputc('}', h);
	while (ftello(h) % 8) /* the data starts 8-byte aligned after the 8-byte length */
		fputc(' ', h);
	if (fclose(h) != 0) {
		h = NULL;
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	h = NULL;
	unsigned char len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	if (fwrite(len, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen) {
		rl_seterr("%s: %s", path, strerror(errno));
		goto done;
	}
	for (int i = 0; i < n; i++) {
		off_t at = ftello(f);
		if (write_data(arg, order[i], f))
			goto done;
		if (ferror(f)) {
			rl_seterr("%s: %s", path, strerror(errno));
			goto done;
		}
		if (at >= 0 && ftello(f) - at != (off_t)rl_st_entry_bytes(order[i])) {
			rl_seterr("%s: tensor %s: %lld bytes written, %zu in the header", path, order[i]->name,
				  (long long)(ftello(f) - at), rl_st_entry_bytes(order[i]));
			goto done;
		}
	}
	rc = 0;
done:
	if (h)
		fclose(h);
	free(header);
	free(order);
	return rc;
}
