/* stream.c: tstream reader and writer (see stream.h and tstream(5)). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "afile.h"
#include "err.h"
#include "stream.h"

enum { BEFORE_HEADER, IN_SEGMENT, AFTER_END };

struct rl_reader {
	int fd, own_fd;
	rl_read_fn read_fn;   /* reads through this instead of fd when set */
	void *read_arg;
	char name[512];
	unsigned char *buf;   /* bytes read ahead; the current message starts at start */
	size_t cap, len, start, msg_len;
	int eof;
	msgpack_unpacked msg;
	/* the segment's header, kept in its own copy so later messages can't move it */
	unsigned char *header_bytes;
	msgpack_unpacked header;
	int have_header;
	char kind[16];
	rl_samples_info samples;
	int state;
	uint64_t count;        /* messages in this segment so far */
	uint64_t total;        /* messages in the stream so far */
	/* the tensor being read in chunks */
	char cur_name[128];
	rl_dtype cur_dtype;
	int cur_ndim;
	uint64_t cur_shape[RL_MAX_DIMS], cur_rows_done;
	int in_tensor;
	rl_sha256 content;
	char type_buf[32];     /* an unknown message type's name, as printable text */
	uint64_t *ids;         /* sample ids seen, open addressing (id + 1; 0 = empty) */
	size_t ids_cap, ids_n;
};

/* Records a sample id; 1 if it was already there, -1 out of memory. */
static int seen_id(rl_reader *r, uint64_t id)
{
	if (2 * (r->ids_n + 1) > r->ids_cap) {
		size_t cap = r->ids_cap ? 2 * r->ids_cap : 1024;
		uint64_t *t = calloc(cap, sizeof *t);
		if (!t)
			return -1;
		for (size_t i = 0; i < r->ids_cap; i++)
			if (r->ids[i]) {
				size_t h = (size_t)(r->ids[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);
				while (t[h])
					h = (h + 1) & (cap - 1);
				t[h] = r->ids[i];
			}
		free(r->ids);
		r->ids = t;
		r->ids_cap = cap;
	}
	uint64_t key = id + 1;
	size_t h = (size_t)(key * 0x9e3779b97f4a7c15ull) & (r->ids_cap - 1);
	while (r->ids[h]) {
		if (r->ids[h] == key)
			return 1;
		h = (h + 1) & (r->ids_cap - 1);
	}
	r->ids[h] = key;
	r->ids_n++;
	return 0;
}

rl_reader *rl_reader_open(const char *path)
{
	rl_reader *r = calloc(1, sizeof *r);
	if (!r) {
		rl_seterr("%s: out of memory", path);
		return NULL;
	}
	if (strcmp(path, "-") == 0) {
		r->fd = 0;
		snprintf(r->name, sizeof r->name, "<stdin>");
	} else {
		r->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (r->fd < 0) {
			rl_seterr("%s: %s", path, strerror(errno));
			free(r);
			return NULL;
		}
		r->own_fd = 1;
		snprintf(r->name, sizeof r->name, "%s", path);
	}
	msgpack_unpacked_init(&r->msg);
	msgpack_unpacked_init(&r->header);
	rl_sha256_init(&r->content);
	return r;
}

rl_reader *rl_reader_open_fn(const char *name, rl_read_fn fn, void *arg)
{
	rl_reader *r = calloc(1, sizeof *r);
	if (!r) {
		rl_seterr("%s: out of memory", name);
		return NULL;
	}
	r->fd = -1;
	r->read_fn = fn;
	r->read_arg = arg;
	snprintf(r->name, sizeof r->name, "%s", name);
	msgpack_unpacked_init(&r->msg);
	msgpack_unpacked_init(&r->header);
	rl_sha256_init(&r->content);
	return r;
}

void rl_reader_close(rl_reader *r)
{
	if (!r)
		return;
	if (r->own_fd)
		close(r->fd);
	msgpack_unpacked_destroy(&r->msg);
	msgpack_unpacked_destroy(&r->header);
	free(r->header_bytes);
	free(r->ids);
	free(r->buf);
	free(r);
}

const char *rl_reader_name(const rl_reader *r) { return r->name; }
const msgpack_object *rl_reader_header(const rl_reader *r) { return r->have_header ? &r->header.data : NULL; }
const char *rl_reader_kind(const rl_reader *r) { return r->kind; }
const rl_samples_info *rl_reader_samples(const rl_reader *r) { return &r->samples; }

void rl_reader_content(rl_reader *r, char hex[65])
{
	rl_sha256 copy = r->content;
	unsigned char d[32];
	rl_sha256_final(&copy, d);
	rl_sha256_hex(d, hex);
}

/* Makes at least n bytes of the current message available: 1, or 0 at end of input, -1 on error.
 * The buffer grows only as bytes arrive, so a hostile length prefix costs nothing until the
 * bytes it promises are really there; consumed messages are dropped only when room is needed. */
static int ensure(rl_reader *r, size_t n)
{
	while (r->len - r->start < n) {
		if (r->eof)
			return 0;
		if (r->len == r->cap && r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->len - r->start);
			r->len -= r->start;
			r->start = 0;
		}
		if (r->len == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : (1 << 20);
			unsigned char *nb = realloc(r->buf, cap);
			if (!nb) {
				rl_seterr("%s: out of memory buffering a message of %zu bytes", r->name, n);
				return -1;
			}
			r->buf = nb;
			r->cap = cap;
		}
		ssize_t got;
		if (r->read_fn) {
			if ((got = r->read_fn(r->read_arg, r->buf + r->len, r->cap - r->len)) < 0)
				return -1; /* the callback has said why */
		} else if ((got = read(r->fd, r->buf + r->len, r->cap - r->len)) < 0) {
			if (errno == EINTR)
				continue;
			rl_seterr("%s: %s", r->name, strerror(errno));
			return -1;
		}
		if (got == 0)
			r->eof = 1;
		r->len += (size_t)got;
	}
	return 1;
}

static uint64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Finds the extent of the next MessagePack object without allocating for it:
 * every declared length and count is bounded before it is trusted.
 * Returns 1 with r->msg_len set, 0 at a clean end of input, -1 on error. */
static int frame(rl_reader *r)
{
	size_t pos = 0, elements = 0;
	uint64_t pending = 1;
	int got = ensure(r, 1);
	if (got <= 0)
		return got;
	while (pending > 0) {
		if ((got = ensure(r, pos + 1)) <= 0)
			goto cut;
		unsigned b = r->buf[r->start + pos];
		size_t head = 1, lenbytes = 0, skip = 0;
		uint64_t count = 0;  /* child objects */
		if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		} else if (b >= 0x80 && b <= 0x8f) {
			count = 2 * (uint64_t)(b & 0x0f);
		} else if (b >= 0x90 && b <= 0x9f) {
			count = b & 0x0f;
		} else if (b >= 0xa0 && b <= 0xbf) {
			skip = b & 0x1f;
		} else {
			switch (b) {
			case 0xc4: case 0xd9: lenbytes = 1; break;
			case 0xc5: case 0xda: lenbytes = 2; break;
			case 0xc6: case 0xdb: lenbytes = 4; break;
			case 0xc7: lenbytes = 1; skip = 1; break;
			case 0xc8: lenbytes = 2; skip = 1; break;
			case 0xc9: lenbytes = 4; skip = 1; break;
			case 0xca: skip = 4; break;
			case 0xcb: skip = 8; break;
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xce: case 0xd2: skip = 4; break;
			case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: case 0xde: lenbytes = 2; break;
			case 0xdd: case 0xdf: lenbytes = 4; break;
			default:
				rl_seterr("%s: message %llu: byte 0x%02x at offset %zu is not MessagePack",
					  r->name, (unsigned long long)r->total + 1, b, pos);
				return -1;
			}
			if (lenbytes) {
				if ((got = ensure(r, pos + 1 + lenbytes)) <= 0)
					goto cut;
				uint64_t n = be(r->buf + r->start + pos + 1, (int)lenbytes);
				head += lenbytes;
				if (b == 0xdc || b == 0xdd)
					count = n;
				else if (b == 0xde || b == 0xdf)
					count = 2 * n;
				else
					skip += n;
			}
		}
		pending--;
		if (count > RL_MAX_ELEMENTS || elements + count > RL_MAX_ELEMENTS) {
			rl_seterr("%s: message %llu: more than %zu array or map elements",
				  r->name, (unsigned long long)r->total + 1, (size_t)RL_MAX_ELEMENTS);
			return -1;
		}
		elements += count;
		pending += count;
		if (skip > RL_MAX_MESSAGE || pos + head + skip > RL_MAX_MESSAGE) {
			rl_seterr("%s: message %llu: declares more than %zu bytes",
				  r->name, (unsigned long long)r->total + 1, (size_t)RL_MAX_MESSAGE);
			return -1;
		}
		pos += head + skip;
		if ((got = ensure(r, pos)) <= 0)
			goto cut;
	}
	r->msg_len = pos;
	return 1;
cut:
	if (got == 0)
		rl_seterr("%s: stream cut inside message %llu (after %zu bytes of it)",
			  r->name, (unsigned long long)r->total + 1, r->len - r->start);
	return -1;
}

const msgpack_object *rl_mp_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t klen = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    memcmp(k->via.str.ptr, key, klen) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

int rl_mp_str(const msgpack_object *map, const char *key, const char **s, size_t *len)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_STR) {
		rl_seterr("field %s: %s", key, o ? "not a string" : "missing");
		return -1;
	}
	*s = o->via.str.ptr;
	*len = o->via.str.size;
	return 0;
}

int rl_mp_strcpy(const msgpack_object *map, const char *key, char *buf, size_t size)
{
	const char *s;
	size_t len;
	if (rl_mp_str(map, key, &s, &len))
		return -1;
	if (len >= size || memchr(s, 0, len)) {
		rl_seterr("field %s: %s", key, len >= size ? "too long" : "contains a NUL byte");
		return -1;
	}
	memcpy(buf, s, len);
	buf[len] = 0;
	return 0;
}

int rl_mp_int(const msgpack_object *map, const char *key, int64_t *v)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 0;
	}
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
		*v = (int64_t)o->via.u64;
		return 0;
	}
	rl_seterr("field %s: %s", key, o ? "not an integer" : "missing");
	return -1;
}

int rl_mp_uint(const msgpack_object *map, const char *key, uint64_t *v)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*v = o->via.u64;
		return 0;
	}
	rl_seterr("field %s: %s", key, o ? "not a non-negative integer" : "missing");
	return -1;
}

int rl_mp_double(const msgpack_object *map, const char *key, double *v)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (o && (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)) {
		*v = o->via.f64;
		return 0;
	}
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*v = (double)o->via.u64;
		return 0;
	}
	if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = (double)o->via.i64;
		return 0;
	}
	rl_seterr("field %s: %s", key, o ? "not a number" : "missing");
	return -1;
}

int rl_mp_bool(const msgpack_object *map, const char *key, int *v)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_BOOLEAN) {
		rl_seterr("field %s: %s", key, o ? "not a boolean" : "missing");
		return -1;
	}
	*v = o->via.boolean;
	return 0;
}

int rl_mp_bin(const msgpack_object *map, const char *key, const void **p, size_t *len)
{
	const msgpack_object *o = rl_mp_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_BIN) {
		rl_seterr("field %s: %s", key, o ? "not binary" : "missing");
		return -1;
	}
	*p = o->via.bin.ptr;
	*len = o->via.bin.size;
	return 0;
}

/* Fields whose values must agree between consecutive segments of one stream. */
static const char *identity_keys[] = { "kind", "arch", "source", "teacher", "vocab_size", "topk",
				       "logit_dtype", "kd_temp", "base", "rank", "alpha", NULL };

static int check_header(rl_reader *r, const msgpack_object *h)
{
	const char *s;
	size_t len;
	uint64_t version;
	if (rl_mp_str(h, "format", &s, &len) || len != 7 || memcmp(s, "tstream", 7)) {
		rl_seterr("not a tstream: the header's format field is not \"tstream\"");
		return -1;
	}
	if (rl_mp_uint(h, "version", &version))
		return -1;
	if (version != RL_TSTREAM_VERSION) {
		rl_seterr("tstream version %llu; this tool reads version %d (rebuild the stream with this version's tools)",
			  (unsigned long long)version, RL_TSTREAM_VERSION);
		return -1;
	}
	char kind[16];
	if (rl_mp_strcpy(h, "kind", kind, sizeof kind))
		return -1;
	if (strcmp(kind, "model") && strcmp(kind, "samples") && strcmp(kind, "adapter") && strcmp(kind, "results")) {
		rl_seterr("unknown stream kind \"%s\"", kind);
		return -1;
	}
	if (r->state == AFTER_END) {
		for (int i = 0; identity_keys[i]; i++) {
			const msgpack_object *a = rl_mp_get(&r->header.data, identity_keys[i]);
			const msgpack_object *b = rl_mp_get(h, identity_keys[i]);
			if ((a == NULL) != (b == NULL) || (a && !msgpack_object_equal(*a, *b))) {
				rl_seterr("a second segment whose %s differs from the first's: streams of different %s cannot be joined",
					  identity_keys[i],
					  strcmp(identity_keys[i], "kind") ? "identity" : "kinds");
				return -1;
			}
		}
		if (strcmp(kind, "model") == 0 || strcmp(kind, "adapter") == 0) {
			rl_seterr("a second %s segment: only samples and results streams may be concatenated", kind);
			return -1;
		}
	}
	memset(&r->samples, 0, sizeof r->samples);
	if (strcmp(kind, "samples") == 0) {
		uint64_t vocab, topk;
		char dt[8];
		if (rl_mp_uint(h, "vocab_size", &vocab) || rl_mp_uint(h, "topk", &topk) ||
		    rl_mp_strcpy(h, "logit_dtype", dt, sizeof dt))
			goto field;
		if (vocab == 0 || vocab > (1u << 24) || topk > vocab) {
			rl_seterr("samples header: vocab_size %llu, topk %llu out of range",
				  (unsigned long long)vocab, (unsigned long long)topk);
			return -1;
		}
		int t = rl_dtype_from_name(dt, strlen(dt));
		if (t != RL_F32 && t != RL_F16) {
			rl_seterr("samples header: logit_dtype \"%s\" is not f16 or f32", dt);
			return -1;
		}
		r->samples.vocab_size = (uint32_t)vocab;
		r->samples.topk = topk ? (uint32_t)topk : (uint32_t)vocab;
		r->samples.logit_dtype = (rl_dtype)t;
		r->samples.has_tau = rl_mp_get(h, "kd_temp") != NULL;
	}
	snprintf(r->kind, sizeof r->kind, "%s", kind);
	return 0;
field:
	return -1;
}

/* Keeps a copy of the header message so that it outlives the read buffer. */
static int keep_header(rl_reader *r)
{
	unsigned char *copy = malloc(r->msg_len);
	if (!copy) {
		rl_seterr("out of memory");
		return -1;
	}
	memcpy(copy, r->buf + r->start, r->msg_len);
	size_t off = 0;
	msgpack_unpacked_destroy(&r->header);
	msgpack_unpacked_init(&r->header);
	if (msgpack_unpack_next(&r->header, (const char *)copy, r->msg_len, &off) != MSGPACK_UNPACK_SUCCESS) {
		free(copy);
		rl_seterr("header does not unpack");
		return -1;
	}
	free(r->header_bytes);
	r->header_bytes = copy;
	r->have_header = 1;
	return 0;
}

static int finish_tensor(rl_reader *r)
{
	if (r->in_tensor && r->cur_rows_done != r->cur_shape[0]) {
		rl_seterr("tensor %s ends after %llu of its %llu rows", r->cur_name,
			  (unsigned long long)r->cur_rows_done, (unsigned long long)r->cur_shape[0]);
		return -1;
	}
	r->in_tensor = 0;
	return 0;
}

static int parse_tensor(rl_reader *r, rl_tensor_msg *t)
{
	const msgpack_object *m = &r->msg.data;
	char dt[16];
	const msgpack_object *shape, *stats;
	size_t len;
	memset(t, 0, sizeof *t);
	if (rl_mp_strcpy(m, "name", t->name, sizeof t->name) || rl_mp_strcpy(m, "dtype", dt, sizeof dt) ||
	    rl_mp_uint(m, "row0", &t->row0) || rl_mp_uint(m, "nrows", &t->nrows) ||
	    rl_mp_bin(m, "data", &t->data, &len))
		return -1;
	int dtype = rl_dtype_from_name(dt, strlen(dt));
	if (dtype < 0) {
		rl_seterr("tensor %s: unknown dtype \"%s\"", t->name, dt);
		return -1;
	}
	t->dtype = (rl_dtype)dtype;
	shape = rl_mp_get(m, "shape");
	if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size < 1 ||
	    shape->via.array.size > RL_MAX_DIMS) {
		rl_seterr("tensor %s: field shape: not an array of 1 to %d sizes", t->name, RL_MAX_DIMS);
		return -1;
	}
	t->ndim = (int)shape->via.array.size;
	uint64_t row_elems = 1;
	for (int i = 0; i < t->ndim; i++) {
		const msgpack_object *d = &shape->via.array.ptr[i];
		if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 == 0 || d->via.u64 > ((uint64_t)1 << 40)) {
			rl_seterr("tensor %s: shape[%d] is not a size between 1 and 2^40", t->name, i);
			return -1;
		}
		t->shape[i] = d->via.u64;
		if (i > 0 && __builtin_mul_overflow(row_elems, t->shape[i], &row_elems)) {
			rl_seterr("tensor %s: shape overflows", t->name);
			return -1;
		}
	}
	t->row_bytes = rl_row_bytes(t->dtype, row_elems);
	if (t->row_bytes == 0) {
		rl_seterr("tensor %s: a row of %llu elements does not fit dtype %s", t->name,
			  (unsigned long long)row_elems, dt);
		return -1;
	}
	size_t want;
	if (t->nrows == 0 || t->row0 >= t->shape[0] || t->nrows > t->shape[0] - t->row0) {
		rl_seterr("tensor %s: rows %llu..%llu outside its %llu rows", t->name,
			  (unsigned long long)t->row0, (unsigned long long)(t->row0 + t->nrows),
			  (unsigned long long)t->shape[0]);
		return -1;
	}
	if (rl_mul_size(t->nrows, t->row_bytes, &want) || want != len) {
		rl_seterr("tensor %s: data holds %zu bytes; %llu rows of %s shape [%llu...] need %zu",
			  t->name, len, (unsigned long long)t->nrows, dt, (unsigned long long)t->shape[0],
			  rl_mul_size(t->nrows, t->row_bytes, &want) ? (size_t)-1 : want);
		return -1;
	}
	stats = rl_mp_get(m, "stats");
	t->stats = stats && stats->type == MSGPACK_OBJECT_MAP ? stats : NULL;
	/* chunk order: a tensor starts at row 0 and continues where it left off */
	if (t->row0 == 0) {
		if (finish_tensor(r))
			return -1;
		snprintf(r->cur_name, sizeof r->cur_name, "%s", t->name);
		r->cur_dtype = t->dtype;
		r->cur_ndim = t->ndim;
		memcpy(r->cur_shape, t->shape, sizeof t->shape);
		r->cur_rows_done = 0;
		r->in_tensor = 1;
		rl_hash_tensor_begin(&r->content, t->name, t->dtype, t->ndim, t->shape);
	} else if (!r->in_tensor || strcmp(r->cur_name, t->name) || r->cur_dtype != t->dtype ||
		   r->cur_ndim != t->ndim || memcmp(r->cur_shape, t->shape, sizeof t->shape) ||
		   r->cur_rows_done != t->row0) {
		rl_seterr("tensor %s: chunk at row %llu does not continue the tensor before it", t->name,
			  (unsigned long long)t->row0);
		return -1;
	}
	r->cur_rows_done += t->nrows;
	rl_sha256_update(&r->content, t->data, len);
	return 0;
}

static int check_ids(const void *p, size_t n, uint32_t limit, const char *field)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		int32_t v;
		memcpy(&v, b + 4 * i, 4);
		if (v < 0 || (uint32_t)v >= limit) {
			rl_seterr("field %s: id %d at %zu outside the vocabulary of %u", field, v, i, limit);
			return -1;
		}
	}
	return 0;
}

static int parse_sample(rl_reader *r, rl_sample_msg *s)
{
	const msgpack_object *m = &r->msg.data;
	const rl_samples_info *info = &r->samples;
	uint64_t p;
	size_t len, n_lse, want, esz = rl_dtypes[info->logit_dtype].block_bytes;
	memset(s, 0, sizeof *s);
	if (rl_mp_uint(m, "id", &s->id) || rl_mp_bin(m, "tokens", (const void **)&s->tokens, &len) ||
	    rl_mp_uint(m, "prompt_len", &p))
		return -1;
	if (len % 4 || len == 0 || len / 4 > (1u << 24)) {
		rl_seterr("field tokens: %zu bytes is not 1 to 2^24 int32 tokens", len);
		return -1;
	}
	s->ntokens = (uint32_t)(len / 4);
	if (p < 1 || p > s->ntokens) {
		rl_seterr("field prompt_len: %llu is not between 1 and the %u tokens", (unsigned long long)p, s->ntokens);
		return -1;
	}
	s->prompt_len = (uint32_t)p;
	if (check_ids(s->tokens, s->ntokens, info->vocab_size, "tokens"))
		return -1;
	n_lse = s->ntokens - s->prompt_len;
	if (rl_mp_bin(m, "topk_ids", &s->topk_ids, &len))
		return -1;
	if (rl_mul_size(n_lse, (size_t)info->topk * 4, &want) || len != want) {
		rl_seterr("field topk_ids: %zu bytes; %zu positions of top-%u need %zu", len, n_lse, info->topk, want);
		return -1;
	}
	if (check_ids(s->topk_ids, n_lse * info->topk, info->vocab_size, "topk_ids"))
		return -1;
	if (rl_mp_bin(m, "topk_logits", &s->topk_logits, &len))
		return -1;
	if (rl_mul_size(n_lse, (size_t)info->topk * esz, &want) || len != want) {
		rl_seterr("field topk_logits: %zu bytes; %zu positions of top-%u %s need %zu", len, n_lse,
			  info->topk, rl_dtypes[info->logit_dtype].name, want);
		return -1;
	}
	if (rl_mp_bin(m, "logsumexp", &s->logsumexp, &len))
		return -1;
	if (len != n_lse * 4) {
		rl_seterr("field logsumexp: %zu bytes; %zu positions need %zu", len, n_lse, n_lse * 4);
		return -1;
	}
	if (info->has_tau) {
		if (rl_mp_bin(m, "logsumexp_tau", &s->logsumexp_tau, &len))
			return -1;
		if (len != n_lse * 4) {
			rl_seterr("field logsumexp_tau: %zu bytes; %zu positions need %zu", len, n_lse, n_lse * 4);
			return -1;
		}
	}
	return 0;
}

static int parse_result(rl_reader *r)
{
	const msgpack_object *m = &r->msg.data;
	const char *s;
	size_t len;
	double v;
	uint64_t n;
	if (rl_mp_str(m, "model", &s, &len) || rl_mp_str(m, "task", &s, &len) ||
	    rl_mp_str(m, "metric", &s, &len) || rl_mp_double(m, "value", &v) || rl_mp_uint(m, "n", &n))
		return -1;
	if (rl_mp_get(m, "stderr") && rl_mp_double(m, "stderr", &v))
		return -1;
	return 0;
}

static int need_kind(rl_reader *r, const char *type, const char *k1, const char *k2)
{
	if (strcmp(r->kind, k1) == 0 || (k2 && strcmp(r->kind, k2) == 0))
		return 0;
	rl_seterr("a %s message in a %s stream", type, r->kind);
	return -1;
}

static int check_message(rl_reader *r, rl_msg *m)
{
	const msgpack_object *o = &r->msg.data;
	const char *t;
	size_t tlen;
	if (o->type != MSGPACK_OBJECT_MAP) {
		rl_seterr("not a map");
		return -1;
	}
	if (rl_mp_str(o, "t", &t, &tlen))
		return -1;
	static const struct { const char *name; rl_msg_type type; } types[] = {
		{ "header", RL_MSG_HEADER }, { "tokenizer", RL_MSG_TOKENIZER }, { "tensor", RL_MSG_TENSOR },
		{ "sample", RL_MSG_SAMPLE }, { "result", RL_MSG_RESULT }, { "summary", RL_MSG_SUMMARY },
		{ "end", RL_MSG_END },
	};
	m->type = RL_MSG_UNKNOWN;
	size_t n = 0;
	for (; n < tlen && n < sizeof r->type_buf - 1; n++)
		r->type_buf[n] = (t[n] >= 0x20 && t[n] < 0x7f) ? t[n] : '?';
	r->type_buf[n] = 0;
	m->type_name = r->type_buf;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strlen(types[i].name) == tlen && memcmp(types[i].name, t, tlen) == 0) {
			m->type = types[i].type;
			m->type_name = types[i].name;
		}
	m->map = o;
	if (r->state != IN_SEGMENT && m->type != RL_MSG_HEADER) {
		rl_seterr("a \"%s\" message where a header must come first", m->type_name);
		return -1;
	}
	switch (m->type) {
	case RL_MSG_HEADER:
		if (r->state == IN_SEGMENT) {
			rl_seterr("a header inside a segment (the segment before it has no end)");
			return -1;
		}
		if (check_header(r, o) || keep_header(r))
			return -1;
		r->state = IN_SEGMENT;
		r->count = 0;
		rl_sha256_init(&r->content);
		r->in_tensor = 0;
		return 0;
	case RL_MSG_TOKENIZER:
		return need_kind(r, "tokenizer", "model", NULL);
	case RL_MSG_TENSOR:
		return need_kind(r, "tensor", "model", "adapter") || parse_tensor(r, &m->tensor);
	case RL_MSG_SAMPLE: {
		if (need_kind(r, "sample", "samples", NULL) || parse_sample(r, &m->sample))
			return -1;
		int dup = m->sample.id == UINT64_MAX ? 0 : seen_id(r, m->sample.id);
		if (dup < 0) {
			rl_seterr("out of memory recording sample ids");
			return -1;
		}
		if (dup) {
			rl_seterr("sample id %llu appears twice (the same shard joined twice?)",
				  (unsigned long long)m->sample.id);
			return -1;
		}
		return 0;
	}
	case RL_MSG_RESULT:
		return need_kind(r, "result", "results", NULL) || parse_result(r);
	case RL_MSG_END: {
		uint64_t count;
		const char *content;
		size_t clen;
		if (finish_tensor(r) || rl_mp_uint(o, "count", &count))
			return -1;
		if (count != r->count + 1) {
			rl_seterr("end says %llu messages but the segment has %llu: messages were lost or added",
				  (unsigned long long)count, (unsigned long long)r->count + 1);
			return -1;
		}
		if (rl_mp_get(o, "content")) {
			char hex[65];
			if (rl_mp_str(o, "content", &content, &clen))
				return -1;
			rl_reader_content(r, hex);
			if (clen != 64 || memcmp(hex, content, 64)) {
				rl_seterr("field content: the tensor payloads' sha256 is %s, not what end records: the data was altered", hex);
				return -1;
			}
		}
		r->state = AFTER_END;
		return 0;
	}
	default:
		return 0; /* summaries and unknown types are skipped by those who don't need them */
	}
}

int rl_read(rl_reader *r, rl_msg *m)
{
	/* drop the previous message's bytes */
	r->start += r->msg_len;
	r->msg_len = 0;
	int got = frame(r);
	if (got < 0)
		return -1;
	if (got == 0) {
		if (r->state == AFTER_END)
			return 0;
		if (r->total == 0)
			rl_seterr("%s: empty stream: no header", r->name);
		else
			rl_seterr("%s: stream cut off: no end message after %llu messages (the producer died or the file is incomplete)",
				  r->name, (unsigned long long)r->total);
		return -1;
	}
	size_t off = 0;
	msgpack_unpacked_destroy(&r->msg);
	msgpack_unpacked_init(&r->msg);
	if (msgpack_unpack_next(&r->msg, (const char *)r->buf + r->start, r->msg_len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    off != r->msg_len) {
		rl_seterr("%s: message %llu: malformed MessagePack", r->name, (unsigned long long)r->total + 1);
		return -1;
	}
	r->total++;
	memset(m, 0, sizeof *m);
	if (check_message(r, m)) {
		rl_seterr("%s: message %llu (%s): %s", r->name, (unsigned long long)r->total,
			  m->type_name ? m->type_name : "?", rl_err());
		return -1;
	}
	if (m->type != RL_MSG_HEADER)
		r->count++;
	return 1;
}

/* ---- writer ---- */

struct rl_writer {
	FILE *f;
	char *path;            /* NULL for stdout */
	rl_afile out;          /* the temporary behind f when path is set */
	int failed, error;
	msgpack_packer pk;
	uint64_t count;
	uint64_t bytes;        /* written so far */
	rl_sha256 content;
};

static int write_cb(void *data, const char *buf, size_t len)
{
	rl_writer *w = data;
	if (w->failed)
		return -1;
	if (fwrite(buf, 1, len, w->f) != len) {
		w->failed = 1;
		w->error = errno;
		return -1;
	}
	w->bytes += len;
	return 0;
}

uint64_t rl_writer_bytes(const rl_writer *w) { return w->bytes; }

rl_writer *rl_writer_open(const char *path)
{
	rl_writer *w = calloc(1, sizeof *w);
	if (!w) {
		rl_seterr("%s: out of memory", path ? path : "<stdout>");
		return NULL;
	}
	if (!path || strcmp(path, "-") == 0) {
		w->f = stdout;
	} else {
		if (rl_afile_open(&w->out, path)) {
			free(w);
			return NULL;
		}
		w->f = w->out.f;
		w->path = w->out.path;
	}
	msgpack_packer_init(&w->pk, w, write_cb);
	rl_sha256_init(&w->content);
	return w;
}

msgpack_packer *rl_writer_packer(rl_writer *w) { return &w->pk; }

void rl_writer_message_done(rl_writer *w)
{
	w->count++;
}

void rl_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void rl_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	rl_pack_str(pk, key);
	rl_pack_str(pk, val);
}

void rl_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
	rl_pack_str(pk, key);
	msgpack_pack_int64(pk, val);
}

void rl_pack_kv_double(msgpack_packer *pk, const char *key, double val)
{
	rl_pack_str(pk, key);
	msgpack_pack_double(pk, val);
}

void rl_pack_kv_bool(msgpack_packer *pk, const char *key, int val)
{
	rl_pack_str(pk, key);
	if (val)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

void rl_pack_kv_bin(msgpack_packer *pk, const char *key, const void *data, size_t len)
{
	rl_pack_str(pk, key);
	msgpack_pack_bin(pk, len);
	msgpack_pack_bin_body(pk, data, len);
}

void rl_hash_tensor_begin(rl_sha256 *s, const char *name, rl_dtype dtype, int ndim, const uint64_t *shape)
{
	rl_sha256_update(s, name, strlen(name) + 1);
	rl_sha256_update(s, rl_dtypes[dtype].name, strlen(rl_dtypes[dtype].name) + 1);
	for (int i = 0; i < ndim; i++) {
		unsigned char le[8];
		for (int b = 0; b < 8; b++)
			le[b] = (unsigned char)(shape[i] >> (8 * b));
		rl_sha256_update(s, le, 8);
	}
}

static int writer_error(rl_writer *w)
{
	if (w->failed) {
		rl_seterr("%s: %s", w->path ? w->path : "<stdout>", strerror(w->error ? w->error : EIO));
		return -1;
	}
	return 0;
}

int rl_write_tensor(rl_writer *w, const char *name, rl_dtype dtype, rl_dtype src_dtype, int ndim,
		    const uint64_t *shape, const void *data, void (*stats_pack)(msgpack_packer *, void *), void *arg)
{
	msgpack_packer *pk = &w->pk;
	if (ndim < 1 || ndim > RL_MAX_DIMS) {
		rl_seterr("tensor %s: %d dimensions; a tensor has 1 to %d", name, ndim, RL_MAX_DIMS);
		return -1;
	}
	uint64_t row_elems = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] == 0 || shape[i] > ((uint64_t)1 << 40)) {
			rl_seterr("tensor %s: shape[%d] is %llu, not a size between 1 and 2^40", name, i,
				  (unsigned long long)shape[i]);
			return -1;
		}
		if (i > 0 && __builtin_mul_overflow(row_elems, shape[i], &row_elems)) {
			rl_seterr("tensor %s: shape overflows", name);
			return -1;
		}
	}
	size_t row_bytes = rl_row_bytes(dtype, row_elems);
	size_t src_row_bytes = rl_row_bytes(src_dtype, row_elems);
	if (row_bytes == 0 || src_row_bytes == 0 || row_bytes > RL_MAX_MESSAGE / 2) {
		rl_seterr("tensor %s: a row of %llu elements cannot be written as %s", name,
			  (unsigned long long)row_elems, rl_dtypes[dtype].name);
		return -1;
	}
	uint64_t rows_per_chunk = RL_CHUNK_BYTES / row_bytes;
	if (rows_per_chunk == 0)
		rows_per_chunk = 1;
	if (rows_per_chunk > shape[0])
		rows_per_chunk = shape[0];
	/* conversion goes through one chunk of output and one row of f32 */
	unsigned char *chunk = NULL;
	float *row = NULL;
	if (dtype != src_dtype) {
		chunk = malloc(rows_per_chunk * row_bytes);
		row = malloc(row_elems * sizeof(float));
		if (!chunk || !row) {
			free(chunk);
			free(row);
			rl_seterr("tensor %s: out of memory converting to %s", name, rl_dtypes[dtype].name);
			return -1;
		}
	}
	rl_hash_tensor_begin(&w->content, name, dtype, ndim, shape);
	int rc = 0;
	for (uint64_t row0 = 0; row0 < shape[0] && rc == 0; row0 += rows_per_chunk) {
		uint64_t nrows = shape[0] - row0 < rows_per_chunk ? shape[0] - row0 : rows_per_chunk;
		const unsigned char *p = (const unsigned char *)data + row0 * src_row_bytes;
		size_t bytes = nrows * row_bytes;
		if (chunk) {
			for (uint64_t r = 0; r < nrows; r++) {
				rl_dtypes[src_dtype].to_float(p + r * src_row_bytes, row, row_elems);
				rl_dtypes[dtype].from_float(row, chunk + r * row_bytes, row_elems);
			}
			p = chunk;
		}
		int with_stats = stats_pack && row0 == 0;
		msgpack_pack_map(pk, 7 + with_stats);
		rl_pack_kv_str(pk, "t", "tensor");
		rl_pack_kv_str(pk, "name", name);
		rl_pack_kv_str(pk, "dtype", rl_dtypes[dtype].name);
		rl_pack_str(pk, "shape");
		msgpack_pack_array(pk, (size_t)ndim);
		for (int i = 0; i < ndim; i++)
			msgpack_pack_uint64(pk, shape[i]);
		rl_pack_kv_int(pk, "row0", (int64_t)row0);
		rl_pack_kv_int(pk, "nrows", (int64_t)nrows);
		if (with_stats) {
			rl_pack_str(pk, "stats");
			stats_pack(pk, arg);
		}
		rl_pack_kv_bin(pk, "data", p, bytes);
		rl_sha256_update(&w->content, p, bytes);
		w->count++;
		rc = writer_error(w);
	}
	free(chunk);
	free(row);
	return rc;
}

void rl_pack_header(msgpack_packer *pk, const char *kind, const char *producer, int nextra)
{
	msgpack_pack_map(pk, (size_t)(5 + nextra));
	rl_pack_kv_str(pk, "t", "header");
	rl_pack_kv_str(pk, "format", "tstream");
	rl_pack_kv_int(pk, "version", RL_TSTREAM_VERSION);
	rl_pack_kv_str(pk, "kind", kind);
	rl_pack_kv_str(pk, "producer", producer);
}

int rl_write_end(rl_writer *w)
{
	char hex[65];
	unsigned char d[32];
	rl_sha256_final(&w->content, d);
	rl_sha256_hex(d, hex);
	msgpack_pack_map(&w->pk, 3);
	rl_pack_kv_str(&w->pk, "t", "end");
	rl_pack_kv_int(&w->pk, "count", (int64_t)w->count);
	rl_pack_kv_str(&w->pk, "content", hex);
	w->count = 0;
	rl_sha256_init(&w->content);
	return writer_error(w);
}

int rl_writer_flush(rl_writer *w)
{
	if (writer_error(w))
		return -1;
	if (fflush(w->f) != 0 || ferror(w->f)) {
		w->failed = 1;
		w->error = errno;
		rl_seterr("%s: %s", w->path ? w->path : "<stdout>", strerror(errno));
		return -1;
	}
	return 0;
}

int rl_writer_commit(rl_writer *w)
{
	int rc = writer_error(w);
	if (w->path) {
		if (rc == 0)
			rc = rl_afile_commit(&w->out);
		else
			rl_afile_abort(&w->out);
	} else if (rc == 0 && (fflush(w->f) != 0 || ferror(w->f))) {
		rl_seterr("<stdout>: %s", strerror(errno));
		rc = -1;
	}
	free(w);
	return rc;
}

void rl_writer_abort(rl_writer *w)
{
	if (!w)
		return;
	if (w->path)
		rl_afile_abort(&w->out);
	else
		fflush(w->f);
	free(w);
}
