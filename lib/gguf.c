/* gguf.c: reading GGUF files into models (gguf.h). The layout follows the
 * GGUF specification in ggml's documentation: little-endian; magic "GGUF",
 * u32 version, u64 tensor count, u64 metadata count; each key a string (u64
 * length, bytes) with a u32 type and its value; each tensor a name, u32 n_dims,
 * u64 dims (innermost first), u32 ggml type, u64 offset; then the data,
 * aligned to general.alignment (default 32). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "gguf.h"

#define MAX_KV (1 << 20)
#define MAX_TENSORS (1 << 20)

/* ggml's type ids and our dtypes for the ones we store */
static const struct {
	uint32_t ggml;
	const char *name;
	rl_dtype dt;
	int ok;
} ggml_types[] = {
	{ 0, "F32", RL_F32, 1 }, { 1, "F16", RL_F16, 1 }, { 30, "BF16", RL_BF16, 1 },
	{ 2, "Q4_0", RL_Q4_0, 1 }, { 8, "Q8_0", RL_Q8_0, 1 }, { 10, "Q2_K", RL_Q2_K, 1 }, { 12, "Q4_K", RL_Q4_K, 1 },
};

static int ggml_dtype(uint32_t t, rl_dtype *dt)
{
	for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
		if (ggml_types[i].ggml == t && ggml_types[i].ok) {
			*dt = ggml_types[i].dt;
			return 0;
		}
	return -1;
}

int rl_gguf_ggml_type(rl_dtype dt)
{
	for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
		if (ggml_types[i].dt == dt && ggml_types[i].ok)
			return (int)ggml_types[i].ggml;
	return -1;
}

/* Hugging Face's Qwen2 tokenizer normalizes to NFC; Llama 3's keeps a word
 * that is a whole token as it is (ignore_merges). */
void rl_gguf_pre_flags(const char *pre, int *nfc, int *ignore_merges)
{
	*nfc = !strcmp(pre, "qwen2");
	*ignore_merges = !strcmp(pre, "llama-bpe");
}

typedef struct {
	const unsigned char *p, *end;
	const char *path;
	const unsigned char *base; /* the file's first byte, for positions in messages */
} cursor;

static int need(cursor *c, uint64_t n, const char *what)
{
	if ((uint64_t)(c->end - c->p) < n) {
		rl_seterr("%s: cut short in %s (at byte %zu)", c->path, what, (size_t)(c->p - c->base));
		return -1;
	}
	return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
	if (need(c, 4, what))
		return -1;
	memcpy(v, c->p, 4);
	c->p += 4;
	return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
	if (need(c, 8, what))
		return -1;
	memcpy(v, c->p, 8);
	c->p += 8;
	return 0;
}

/* A string: its bytes (not NUL-terminated) and length, bounded by the file. */
static int rd_str(cursor *c, const unsigned char **s, uint64_t *n, const char *what)
{
	if (rd_u64(c, n, what) || need(c, *n, what))
		return -1;
	*s = c->p;
	c->p += *n;
	return 0;
}

static size_t scalar_size(uint32_t t)
{
	switch (t) {
	case RL_GGUF_U8: case RL_GGUF_I8: case RL_GGUF_BOOL: return 1;
	case RL_GGUF_U16: case RL_GGUF_I16: return 2;
	case RL_GGUF_U32: case RL_GGUF_I32: case RL_GGUF_F32: return 4;
	case RL_GGUF_U64: case RL_GGUF_I64: case RL_GGUF_F64: return 8;
	default: return 0;
	}
}

/* Skips a value of type t, checking it lies within the file. */
static int skip_value(cursor *c, uint32_t t, rl_gguf_kv *kv, const char *key)
{
	size_t sz = scalar_size(t);
	if (sz) {
		if (need(c, sz, key))
			return -1;
		if (kv)
			kv->p = c->p;
		c->p += sz;
		return 0;
	}
	if (t == RL_GGUF_STRING) {
		const unsigned char *s;
		uint64_t n;
		if (rd_str(c, &s, &n, key))
			return -1;
		if (kv)
			kv->p = s, kv->n = n;
		return 0;
	}
	if (t == RL_GGUF_ARRAY && kv) {
		uint32_t at;
		uint64_t n;
		if (rd_u32(c, &at, key) || rd_u64(c, &n, key))
			return -1;
		if (at == RL_GGUF_ARRAY) {
			rl_seterr("%s: key %s: arrays of arrays are not supported", c->path, key);
			return -1;
		}
		kv->atype = at;
		kv->n = n;
		kv->p = c->p;
		size_t esz = scalar_size(at);
		if (esz) {
			if (n > (uint64_t)(c->end - c->p) / esz) {
				rl_seterr("%s: key %s: an array of %llu elements is longer than the file", c->path, key,
					  (unsigned long long)n);
				return -1;
			}
			c->p += n * esz;
			return 0;
		}
		if (at != RL_GGUF_STRING) {
			rl_seterr("%s: key %s: unknown array element type %u", c->path, key, at);
			return -1;
		}
		for (uint64_t i = 0; i < n; i++) {
			const unsigned char *s;
			uint64_t len;
			if (rd_str(c, &s, &len, key))
				return -1;
		}
		return 0;
	}
	rl_seterr("%s: key %s: unknown value type %u", c->path, key, t);
	return -1;
}

void rl_gguf_close(rl_gguf *g)
{
	if (g->map)
		munmap(g->map, g->size);
	free(g->kv);
	free(g->tensors);
	free(g->names);
	memset(g, 0, sizeof *g);
}

const rl_gguf_kv *rl_gguf_find(const rl_gguf *g, const char *key)
{
	for (int i = 0; i < g->nkv; i++)
		if (strcmp(g->kv[i].key, key) == 0)
			return &g->kv[i];
	return NULL;
}

/* Bytes of n elements of ggml type t, or 0 when not known or not whole blocks. */
static size_t tensor_bytes(uint32_t t, uint64_t ne0, uint64_t n)
{
	rl_dtype dt;
	if (ggml_dtype(t, &dt))
		return 0;
	size_t row = rl_row_bytes(dt, ne0);
	if (!row || ne0 == 0 || n % ne0 || n / ne0 > SIZE_MAX / row)
		return 0;
	return row * (size_t)(n / ne0);
}

int rl_gguf_open(rl_gguf *g, const char *path)
{
	memset(g, 0, sizeof *g);
	g->path = path;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		rl_seterr("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	g->size = (size_t)st.st_size;
	g->map = g->size ? mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	close(fd);
	if (g->map == MAP_FAILED) {
		g->map = NULL;
		rl_seterr("%s: %s", path, g->size ? strerror(errno) : "empty file");
		return -1;
	}
	cursor c = { g->map, g->map + g->size, path, g->map };
	uint32_t magic;
	uint64_t nt, nkv;
	if (rd_u32(&c, &magic, "the magic") || memcmp(&magic, "GGUF", 4)) {
		rl_seterr("%s: not a GGUF file (no \"GGUF\" magic)", path);
		goto fail;
	}
	if (rd_u32(&c, &g->version, "the version"))
		goto fail;
	if (g->version != 2 && g->version != 3) {
		rl_seterr("%s: GGUF version %u (versions 2 and 3 are read)", path, g->version);
		goto fail;
	}
	if (rd_u64(&c, &nt, "the tensor count") || rd_u64(&c, &nkv, "the metadata count"))
		goto fail;
	if (nt > MAX_TENSORS || nkv > MAX_KV) {
		rl_seterr("%s: %llu tensors and %llu keys: more than this reader takes", path, (unsigned long long)nt,
			  (unsigned long long)nkv);
		goto fail;
	}
	/* names are copied NUL-terminated into one block; its size is bounded by the file */
	size_t cap = g->size + 2 * (size_t)(nt + nkv) + 1, used = 0;
	g->names = malloc(cap);
	g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
	g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
	if (!g->names || !g->kv || !g->tensors) {
		rl_seterr("%s: out of memory for the header", path);
		goto fail;
	}
	g->alignment = 32;
	for (uint64_t i = 0; i < nkv; i++) {
		const unsigned char *k;
		uint64_t klen;
		rl_gguf_kv *kv = &g->kv[i];
		if (rd_str(&c, &k, &klen, "a metadata key"))
			goto fail;
		if (klen > 65535 || used + klen + 1 > cap) {
			rl_seterr("%s: metadata key %llu is %llu bytes long", path, (unsigned long long)i,
				  (unsigned long long)klen);
			goto fail;
		}
		memcpy(g->names + used, k, klen);
		g->names[used + klen] = 0;
		kv->key = g->names + used;
		used += klen + 1;
		if (strlen(kv->key) != klen) {
			rl_seterr("%s: metadata key %llu holds a NUL byte", path, (unsigned long long)i);
			goto fail;
		}
		if (rd_u32(&c, &kv->type, kv->key) || skip_value(&c, kv->type, kv, kv->key))
			goto fail;
		g->nkv++;
		if (!strcmp(kv->key, "general.alignment")) {
			uint32_t a;
			if (kv->type != RL_GGUF_U32 || (memcpy(&a, kv->p, 4), a == 0 || (a & (a - 1)) || a > 65536)) {
				rl_seterr("%s: general.alignment must be a u32 power of two up to 65536", path);
				goto fail;
			}
			g->alignment = a;
		}
	}
	for (uint64_t i = 0; i < nt; i++) {
		rl_gguf_tensor *t = &g->tensors[i];
		const unsigned char *nm;
		uint64_t nlen;
		uint32_t nd;
		if (rd_str(&c, &nm, &nlen, "a tensor name"))
			goto fail;
		if (nlen == 0 || nlen > 63 || used + nlen + 1 > cap) {
			rl_seterr("%s: tensor %llu: a name of %llu bytes (1 to 63)", path, (unsigned long long)i,
				  (unsigned long long)nlen);
			goto fail;
		}
		memcpy(g->names + used, nm, nlen);
		g->names[used + nlen] = 0;
		t->name = g->names + used;
		used += nlen + 1;
		if (rd_u32(&c, &nd, t->name))
			goto fail;
		if (nd < 1 || nd > 4) {
			rl_seterr("%s: tensor %s: %u dimensions (1 to 4)", path, t->name, nd);
			goto fail;
		}
		t->ndim = (int)nd;
		uint64_t n = 1;
		for (uint32_t d = 0; d < nd; d++) {
			if (rd_u64(&c, &t->ne[d], t->name))
				goto fail;
			if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40) || n > ((uint64_t)1 << 42) / t->ne[d]) {
				rl_seterr("%s: tensor %s: dimension %u of %llu is out of range", path, t->name, d,
					  (unsigned long long)t->ne[d]);
				goto fail;
			}
			n *= t->ne[d];
		}
		if (rd_u32(&c, &t->ggml_type, t->name) || rd_u64(&c, &t->offset, t->name))
			goto fail;
		t->bytes = tensor_bytes(t->ggml_type, t->ne[0], n);
		rl_dtype dt;
		if (!t->bytes && !ggml_dtype(t->ggml_type, &dt)) {
			/* a type we read whose rows are not whole blocks: ggml refuses them too */
			rl_seterr("%s: tensor %s: rows of %llu elements are not whole blocks of %zu (%s)", path,
				  t->name, (unsigned long long)t->ne[0], rl_dtypes[dt].block, rl_dtypes[dt].name);
			goto fail;
		}
		g->ntensors++;
	}
	size_t hdr = (size_t)(c.p - g->map), data = (hdr + g->alignment - 1) / g->alignment * g->alignment;
	if (g->ntensors && data > g->size) {
		rl_seterr("%s: the data section starts past the end of the file", path);
		goto fail;
	}
	for (int i = 0; i < g->ntensors; i++) {
		rl_gguf_tensor *t = &g->tensors[i];
		if (t->offset % g->alignment || t->offset > g->size - data ||
		    (t->bytes && t->bytes > g->size - data - t->offset)) {
			rl_seterr("%s: tensor %s: offset %llu and %zu bytes lie outside the file", path, t->name,
				  (unsigned long long)t->offset, t->bytes);
			goto fail;
		}
		t->data = g->map + data + t->offset;
	}
	return 0;
fail:
	rl_gguf_close(g);
	return -1;
}

/* ---- metadata ---- */

static int kv_uint(const rl_gguf *g, const char *key, uint64_t *v, int required)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv) {
		if (required)
			rl_seterr("%s: metadata %s is missing", g->path, key);
		return required ? -1 : 1;
	}
	uint32_t u32;
	int32_t i32;
	int64_t i64;
	switch (kv->type) {
	case RL_GGUF_U32: memcpy(&u32, kv->p, 4); *v = u32; return 0;
	case RL_GGUF_I32: memcpy(&i32, kv->p, 4); if (i32 < 0) break; *v = (uint64_t)i32; return 0;
	case RL_GGUF_U64: memcpy(v, kv->p, 8); return 0;
	case RL_GGUF_I64: memcpy(&i64, kv->p, 8); if (i64 < 0) break; *v = (uint64_t)i64; return 0;
	default: break;
	}
	rl_seterr("%s: metadata %s is not a non-negative integer", g->path, key);
	return -1;
}

static int kv_float(const rl_gguf *g, const char *key, double *v, int required)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv) {
		if (required)
			rl_seterr("%s: metadata %s is missing", g->path, key);
		return required ? -1 : 1;
	}
	if (kv->type == RL_GGUF_F32) {
		float f;
		memcpy(&f, kv->p, 4);
		*v = f;
	} else if (kv->type == RL_GGUF_F64) {
		memcpy(v, kv->p, 8);
	} else {
		rl_seterr("%s: metadata %s is not a float", g->path, key);
		return -1;
	}
	if (!isfinite(*v)) {
		rl_seterr("%s: metadata %s is not finite", g->path, key);
		return -1;
	}
	return 0;
}

/* A boolean: 0 or 1, dflt when absent, -1 with an error when not a bool. */
static int kv_bool(const rl_gguf *g, const char *key, int dflt)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv)
		return dflt;
	if (kv->type != RL_GGUF_BOOL) {
		rl_seterr("%s: metadata %s is not a bool", g->path, key);
		return -1;
	}
	return kv->p[0] != 0;
}

/* A string value copied into buf, or an error naming the key. */
static int kv_string(const rl_gguf *g, const char *key, char *buf, size_t size, int required)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv) {
		if (required)
			rl_seterr("%s: metadata %s is missing", g->path, key);
		return required ? -1 : 1;
	}
	if (kv->type != RL_GGUF_STRING || kv->n >= size) {
		rl_seterr("%s: metadata %s is not a string of under %zu bytes", g->path, key, size);
		return -1;
	}
	memcpy(buf, kv->p, kv->n);
	buf[kv->n] = 0;
	return 0;
}

/* The strings of an array value: pointers into the mapping and lengths (allocated). */
static int kv_strings(const rl_gguf *g, const char *key, const unsigned char ***s, uint64_t **len, uint64_t *n)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv || kv->type != RL_GGUF_ARRAY || kv->atype != RL_GGUF_STRING) {
		rl_seterr("%s: metadata %s %s", g->path, key, kv ? "is not an array of strings" : "is missing");
		return -1;
	}
	*n = kv->n;
	*s = malloc((kv->n ? kv->n : 1) * sizeof **s);
	*len = malloc((kv->n ? kv->n : 1) * sizeof **len);
	if (!*s || !*len) {
		free(*s);
		free(*len);
		rl_seterr("%s: %s: out of memory", g->path, key);
		return -1;
	}
	cursor c = { kv->p, g->map + g->size, g->path, g->map };
	for (uint64_t i = 0; i < kv->n; i++)
		rd_str(&c, &(*s)[i], &(*len)[i], key); /* bounds checked when the header was read */
	return 0;
}

/* A numeric array of element type t and n elements, or an error. */
static const unsigned char *kv_array(const rl_gguf *g, const char *key, uint32_t t, uint64_t n)
{
	const rl_gguf_kv *kv = rl_gguf_find(g, key);
	if (!kv || kv->type != RL_GGUF_ARRAY || kv->atype != t || kv->n != n) {
		rl_seterr("%s: metadata %s %s", g->path, key,
			  kv ? "is not an array of the vocabulary's length and the expected type" : "is missing");
		return NULL;
	}
	return kv->p;
}

static int load_config(const rl_gguf *g, rl_model *m)
{
	char key[128];
	const char *a = m->arch;
	uint64_t v;
	rl_config *c = &m->cfg;
	memset(c, 0, sizeof *c);
#define U(field, name)                                                   \
	do {                                                             \
		snprintf(key, sizeof key, "%s." name, a);                \
		if (kv_uint(g, key, &v, 1))                              \
			return -1;                                       \
		if (v > (1u << 30)) {                                    \
			rl_seterr("%s: metadata %s is too large", g->path, key); \
			return -1;                                       \
		}                                                        \
		c->field = (int)v;                                       \
	} while (0)
	U(dim, "embedding_length");
	U(hidden_dim, "feed_forward_length");
	U(n_layers, "block_count");
	U(n_heads, "attention.head_count");
	U(seq_len, "context_length");
#undef U
	snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
	int r = kv_uint(g, key, &v, 0);
	if (r < 0)
		return -1;
	c->n_kv_heads = r ? c->n_heads : (int)(v > (1u << 30) ? 0 : v);
	snprintf(key, sizeof key, "%s.attention.key_length", a);
	if ((r = kv_uint(g, key, &v, 0)) < 0)
		return -1;
	c->head_dim = r ? (c->n_heads ? c->dim / c->n_heads : 0) : (int)(v > (1u << 20) ? 0 : v);
	snprintf(key, sizeof key, "%s.rope.freq_base", a);
	if ((r = kv_float(g, key, &c->rope_theta, 0)) < 0)
		return -1;
	if (r)
		c->rope_theta = 10000.0;
	snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
	if (kv_float(g, key, &c->norm_eps, 1))
		return -1;
	snprintf(key, sizeof key, "%s.rope.scaling.type", a);
	char scaling[32];
	if ((r = kv_string(g, key, scaling, sizeof scaling, 0)) < 0)
		return -1;
	if (r == 0 && !strcmp(scaling, "linear")) {
		c->rope_scaling = RL_ROPE_SCALING_LINEAR;
		snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
		if (kv_float(g, key, &c->rope_factor, 1))
			return -1;
	} else if (r == 0 && strcmp(scaling, "none")) {
		rl_seterr("%s: %s is \"%s\" (none and linear are implemented)", g->path, key, scaling);
		return -1;
	}
	c->rope_style = strcmp(a, "llama") ? RL_ROPE_HALF : RL_ROPE_INTERLEAVED;
	c->qk_norm = !strcmp(a, "qwen3");
	c->qkv_bias = !strcmp(a, "qwen2");
	return 0;
}

/* ---- tokenizer ---- */

/* SentencePiece pieces write a space as U+2581; llama2.c's, and ours, a space. */
static char *spm_piece(const unsigned char *s, uint64_t n, int *len)
{
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	int k = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (i + 2 < n + 0 && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
			out[k++] = ' ';
			i += 2;
		} else {
			out[k++] = (char)s[i];
		}
	}
	out[k] = 0;
	*len = k;
	return out;
}

static int load_tokenizer(const rl_gguf *g, rl_model *m)
{
	char model[32], pre[64] = "";
	if (kv_string(g, "tokenizer.ggml.model", model, sizeof model, 1))
		return -1;
	const unsigned char **tok = NULL;
	uint64_t *tlen = NULL, n;
	if (kv_strings(g, "tokenizer.ggml.tokens", &tok, &tlen, &n))
		return -1;
	int rc = -1;
	uint64_t bos = (uint64_t)-1, eos = (uint64_t)-1;
	if (kv_uint(g, "tokenizer.ggml.bos_token_id", &bos, 0) < 0 ||
	    kv_uint(g, "tokenizer.ggml.eos_token_id", &eos, 0) < 0)
		goto done;
	if (n == 0 || n > (uint64_t)m->cfg.vocab_size) {
		rl_seterr("%s: %llu tokens for a classifier of %d rows", g->path, (unsigned long long)n,
			  m->cfg.vocab_size);
		goto done;
	}
	int V = (int)n, ibos = bos < n ? (int)bos : -1, ieos = eos < n ? (int)eos : -1;
	int add_bos = kv_bool(g, "tokenizer.ggml.add_bos_token", 1), space_prefix = kv_bool(g, "tokenizer.ggml.add_space_prefix", 1);
	if (add_bos < 0 || space_prefix < 0)
		goto done;
	if (!add_bos) /* the model was not trained with BOS first: our BOS is the one encode adds */
		ibos = -1;
	const unsigned char *types = kv_array(g, "tokenizer.ggml.token_type", RL_GGUF_I32, n);
	if (!strcmp(model, "llama")) {
		const unsigned char *sc = kv_array(g, "tokenizer.ggml.scores", RL_GGUF_F32, n);
		char **pieces = calloc((size_t)V, sizeof *pieces);
		int *plen = calloc((size_t)V, sizeof *plen);
		float *scores = malloc((size_t)V * sizeof *scores);
		int ok = sc && pieces && plen && scores;
		for (int i = 0; ok && i < V; i++) {
			ok = (pieces[i] = spm_piece(tok[i], tlen[i], &plen[i])) != NULL;
			memcpy(&scores[i], sc + 4 * (size_t)i, 4);
		}
		if (!sc)
			; /* rl_err says which */
		else if (!ok)
			rl_seterr("%s: tokenizer: out of memory", g->path);
		else
			rc = rl_tokenizer_init(&m->tok, V, (const char *const *)pieces, plen, scores, ibos, ieos, space_prefix);
		for (int i = 0; pieces && i < V; i++)
			free(pieces[i]);
		free(pieces);
		free(plen);
		free(scores);
	} else if (!strcmp(model, "gpt2")) {
		const unsigned char **mg = NULL;
		uint64_t *mlen = NULL, nm = 0;
		char **tokens = calloc((size_t)V, sizeof *tokens), **merges = NULL;
		int *added = malloc(2 * (size_t)V * sizeof *added), nadded = 0;
		const char *splits[1];
		int ok = types && tokens && added && !kv_strings(g, "tokenizer.ggml.merges", &mg, &mlen, &nm);
		if (ok && kv_string(g, "tokenizer.ggml.pre", pre, sizeof pre, 0) < 0)
			ok = 0;
		if (ok && !(splits[0] = rl_bpe_pretokenizer_regex(*pre ? pre : "gpt-2"))) {
			rl_seterr("%s: tokenizer.ggml.pre \"%s\" is not a pre-tokenizer known here", g->path, pre);
			ok = 0;
		}
		if (ok && !(merges = calloc(nm ? nm : 1, sizeof *merges)))
			ok = 0;
		for (int i = 0; ok && i < V; i++) {
			int32_t ty;
			memcpy(&ty, types + 4 * (size_t)i, 4);
			if (ty == 5) /* unused: an id that is no token */
				continue;
			ok = (tokens[i] = strndup((const char *)tok[i], tlen[i])) != NULL;
			if (ty == 3 || ty == 4) { /* control, user-defined: matched whole before splitting */
				added[2 * nadded] = i;
				added[2 * nadded++ + 1] = ty == 3 ? RL_ADDED_SPECIAL : 0;
			}
		}
		for (uint64_t r = 0; ok && r < nm; r++)
			ok = (merges[r] = strndup((const char *)mg[r], mlen[r])) != NULL;
		if (ok) {
			rl_bpe_spec spec = { 0 };
			spec.nadded = nadded;
			spec.added = added;
			spec.nsplits = 1;
			spec.splits = splits;
			rl_gguf_pre_flags(*pre ? pre : "gpt-2", &spec.nfc, &spec.ignore_merges);
			rc = rl_tokenizer_init_byte_level_bpe(&m->tok, V, (const char *const *)tokens,
							      (const char *const *)merges, (int)nm, &spec, ibos, ieos);
			if (rc)
				rl_seterr("%s: tokenizer: %s", g->path, rl_err());
		}
		for (int i = 0; tokens && i < V; i++)
			free(tokens[i]);
		for (uint64_t r = 0; merges && r < nm; r++)
			free(merges[r]);
		free(tokens);
		free(merges);
		free(added);
		free(mg);
		free(mlen);
	} else {
		rl_seterr("%s: tokenizer.ggml.model \"%s\" (llama and gpt2 are read)", g->path, model);
	}
done:
	free(tok);
	free(tlen);
	return rc;
}

/* ---- the model ---- */

int rl_model_load_gguf(const char *path, rl_model *m)
{
	rl_gguf g;
	memset(m, 0, sizeof *m);
	snprintf(m->origin, sizeof m->origin, "%s", path);
	if (rl_gguf_open(&g, path))
		return -1;
	/* tensors may point into the mapping: the model owns it from here on */
	m->mapping = g.map;
	m->mapping_size = g.size;
	g.map = NULL;
	int rc = -1;
	if (kv_string(&g, "general.architecture", m->arch, sizeof m->arch, 1))
		goto done;
	if (strcmp(m->arch, "llama") && strcmp(m->arch, "qwen2") && strcmp(m->arch, "qwen3")) {
		rl_seterr("%s: architecture \"%s\" (llama, qwen2 and qwen3 are read)", path, m->arch);
		goto done;
	}
	if (load_config(&g, m))
		goto done;
	/* the vocabulary is the embedding's row count; tied when there is no output.weight */
	const rl_gguf_tensor *emb = NULL;
	int has_output = 0;
	for (int i = 0; i < g.ntensors; i++) {
		if (!strcmp(g.tensors[i].name, "token_embd.weight"))
			emb = &g.tensors[i];
		has_output |= !strcmp(g.tensors[i].name, "output.weight");
	}
	if (!emb || emb->ndim != 2 || emb->ne[1] > (1u << 30)) {
		rl_seterr("%s: no 2-D token_embd.weight", path);
		goto done;
	}
	m->cfg.vocab_size = (int)emb->ne[1];
	m->cfg.tied_embeddings = !has_output;
	if (rl_config_check(&m->cfg)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}
	if (rl_model_layout(m)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}
	for (int i = 0; i < g.ntensors; i++) {
		const rl_gguf_tensor *s = &g.tensors[i];
		int k = rl_model_tensor_index(m, s->name);
		if (k < 0) {
			if (!strcmp(s->name, "rope_freqs.weight")) {
				rl_seterr("%s: tensor rope_freqs.weight: per-pair RoPE frequency factors (llama3 scaling "
					  "in GGUF) are not read by this version; load the HF directory instead", path);
				goto done;
			}
			rl_seterr("%s: tensor %s is not one of a %s model's", path, s->name, m->arch);
			goto done;
		}
		rl_tensor *t = &m->tensors[k];
		if (t->data) {
			rl_seterr("%s: tensor %s appears twice", path, s->name);
			goto done;
		}
		rl_dtype dt;
		if (ggml_dtype(s->ggml_type, &dt)) {
			rl_seterr("%s: tensor %s: ggml type %u is not one this version reads", path, s->name,
				  s->ggml_type);
			goto done;
		}
		/* GGUF lists dimensions innermost first; ours are outermost first */
		int ok = s->ndim == t->ndim && (t->ndim == 1 ? s->ne[0] == t->shape[0]
							       : s->ne[0] == t->shape[1] && s->ne[1] == t->shape[0]);
		if (!ok) {
			rl_seterr("%s: tensor %s: dimensions (innermost first) %llu x %llu disagree with the metadata's "
				  "model, which makes them %llu x %llu", path, s->name, (unsigned long long)s->ne[0],
				  (unsigned long long)(s->ndim > 1 ? s->ne[1] : 1),
				  (unsigned long long)(t->ndim == 2 ? t->shape[1] : t->shape[0]),
				  (unsigned long long)(t->ndim == 2 ? t->shape[0] : 1));
			goto done;
		}
		size_t n = (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1);
		if (t->ndim == 1 || dt != RL_F32 || (uintptr_t)s->data % 4) {
			/* vectors are f32 in memory of their own (what the forward pass reads); so is a misaligned matrix */
			rl_dtype keep = t->ndim == 1 ? RL_F32 : dt;
			size_t bytes = rl_row_bytes(keep, t->ndim == 1 ? n : t->shape[1]) * (t->ndim == 1 ? 1 : t->shape[0]);
			void *p;
			if (posix_memalign(&p, 64, bytes ? bytes : 64)) {
				rl_seterr("%s: tensor %s: out of memory", path, s->name);
				goto done;
			}
			if (keep == dt)
				memcpy(p, s->data, bytes);
			else
				rl_dtypes[dt].to_float(s->data, p, n);
			t->data = p;
			t->dtype = keep;
			t->bytes = bytes;
		} else {
			t->data = (void *)s->data;
			t->dtype = dt;
			t->bytes = s->bytes;
		}
	}
	for (int i = 0; i < m->ntensors; i++)
		if (!m->tensors[i].data) {
			rl_seterr("%s: tensor %s is missing", path, m->tensors[i].name);
			goto done;
		}
	if (load_tokenizer(&g, m))
		goto done;
	/* the identity of the model it was exported from (gguf_write.c), when
	 * it carries one: the source always, the content when written exactly */
	int r1 = kv_string(&g, "recover.source", m->source, sizeof m->source, 0);
	int r2 = kv_string(&g, "recover.content", m->content, sizeof m->content, 0);
	if (r1 < 0 || r2 < 0 || (r1 && rl_model_hash_f32(m, m->source)))
		goto done;
	if ((!r1 && strlen(m->source) != 64) || (!r2 && strlen(m->content) != 64)) {
		rl_seterr("%s: metadata recover.source or recover.content is not a sha256", path);
		goto done;
	}
	rc = 0;
done:
	rl_gguf_close(&g);
	if (rc)
		rl_model_free(m);
	return rc;
}

/* ---- LoRA adapters ---- */

/* The model tensor an adapter tensor NAME.lora_a / NAME.lora_b adapts, with
 * *is_b set; -1 when the name is neither. */
static int adapter_target(const rl_model *m, const char *name, int *is_b)
{
	size_t len = strlen(name);
	if (len <= 7 || (strcmp(name + len - 7, ".lora_a") && strcmp(name + len - 7, ".lora_b")))
		return -1;
	*is_b = name[len - 1] == 'b';
	char base[64];
	if (len - 7 >= sizeof base)
		return -1;
	memcpy(base, name, len - 7);
	base[len - 7] = 0;
	return rl_model_tensor_index(m, base);
}

int rl_adapter_read_gguf(const char *path, const rl_model *m, int flags, rl_adapter *a)
{
	memset(a, 0, sizeof *a);
	rl_gguf g;
	if (rl_gguf_open(&g, path))
		return -1;
	int rc = -1, n = 0, rank = 0;
	int *idx = malloc((size_t)m->ntensors * sizeof *idx), *ta = NULL, *tb = NULL;
	char type[32], atype[32], arch[16], content[65] = "", source[65] = "";
	if (!idx) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	int r0 = kv_string(&g, "general.type", type, sizeof type, 0), r1 = kv_string(&g, "adapter.type", atype, sizeof atype, 0);
	if (r0 < 0 || r1 < 0 || kv_string(&g, "general.architecture", arch, sizeof arch, 1))
		goto done;
	if (r0)
		strcpy(type, "(none)");
	if (r1)
		strcpy(atype, "(none)");
	if (strcmp(type, "adapter") || strcmp(atype, "lora")) {
		rl_seterr("%s: general.type \"%s\" and adapter.type \"%s\": not a LoRA adapter (adapter, lora)", path, type,
			  atype);
		goto done;
	}
	if (strcmp(arch, m->arch)) {
		rl_seterr("%s: an adapter for the %s architecture, but %s is %s", path, arch, m->origin, m->arch);
		goto done;
	}
	double alpha = 0;
	if (kv_float(&g, "adapter.lora.alpha", &alpha, 0) < 0)
		goto done;
	int rc1 = kv_string(&g, "recover.base.content", content, sizeof content, 0);
	int rc2 = kv_string(&g, "recover.base.source", source, sizeof source, 0);
	if (rc1 < 0 || rc2 < 0)
		goto done;
	/* every tensor is NAME.lora_a or NAME.lora_b of a linear weight of m; pairs complete; one rank */
	ta = malloc((size_t)m->ntensors * sizeof *ta);
	tb = malloc((size_t)m->ntensors * sizeof *tb);
	if (!ta || !tb) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	for (int i = 0; i < m->ntensors; i++)
		ta[i] = tb[i] = -1;
	for (int i = 0; i < g.ntensors; i++) {
		const rl_gguf_tensor *s = &g.tensors[i];
		int is_b = 0, k = adapter_target(m, s->name, &is_b);
		const rl_tensor *t = k >= 0 ? &m->tensors[k] : NULL;
		if (!t || t->ndim != 2 || t == m->token_embd) {
			rl_seterr("%s: tensor %s is not NAME.lora_a or NAME.lora_b of a linear weight of %s", path, s->name,
				  m->origin);
			goto done;
		}
		int *slot = is_b ? &tb[k] : &ta[k];
		if (*slot >= 0) {
			rl_seterr("%s: tensor %s appears twice", path, s->name);
			goto done;
		}
		*slot = i;
		rl_dtype dt;
		if (ggml_dtype(s->ggml_type, &dt) || (dt != RL_F32 && dt != RL_F16 && dt != RL_BF16)) {
			rl_seterr("%s: tensor %s: ggml type %u; adapters are read in F32, F16 or BF16", path, s->name,
				  s->ggml_type);
			goto done;
		}
		/* dims innermost first: lora_a (IC, r), lora_b (r, OC) */
		uint64_t r = is_b ? s->ne[0] : s->ne[1];
		uint64_t other = is_b ? s->ne[1] : s->ne[0], want = is_b ? t->shape[0] : t->shape[1];
		if (s->ndim != 2 || other != want || r < 1 || r > 4096 || (rank && r != (uint64_t)rank)) {
			rl_seterr("%s: tensor %s: dims %llu x %llu (innermost first) do not fit %s (%llu x %llu)%s", path,
				  s->name, (unsigned long long)s->ne[0], (unsigned long long)(s->ndim > 1 ? s->ne[1] : 1),
				  t->name, (unsigned long long)t->shape[0], (unsigned long long)t->shape[1],
				  rank && r != (uint64_t)rank ? " at the rank of the other tensors" : "");
			goto done;
		}
		rank = (int)r;
	}
	for (int k = 0; k < m->ntensors; k++) {
		if ((ta[k] < 0) != (tb[k] < 0)) {
			rl_seterr("%s: tensor %s.lora_%c is missing", path, m->tensors[k].name, ta[k] < 0 ? 'a' : 'b');
			goto done;
		}
		if (ta[k] >= 0)
			idx[n++] = k;
	}
	if (n == 0) {
		rl_seterr("%s: an adapter without tensors", path);
		goto done;
	}
	/* llama.cpp scales by alpha / r, and by 1 when alpha is 0 (or absent) */
	if (alpha == 0)
		alpha = rank;
	if (rl_adapter_alloc(a, m, idx, n, rank, alpha))
		goto done;
	a->forced = (!rc1 && strcmp(content, a->base_content)) || (!rc2 && strcmp(source, a->base_source));
	if (a->forced && !(flags & RL_ADAPTER_ANY_BASE)) {
		rl_seterr("%s: trained on the model of content %.12s (source %.12s), but %s has content %.12s (source %.12s)",
			  path, rc1 ? "?" : content, rc2 ? "?" : source, m->origin, a->base_content, a->base_source);
		goto done;
	}
	for (int k = 0; k < a->ntargets; k++) {
		rl_lora_target *t = &a->targets[k];
		for (int is_b = 0; is_b < 2; is_b++) {
			const rl_gguf_tensor *s = &g.tensors[is_b ? tb[t->tensor] : ta[t->tensor]];
			rl_dtype dt = RL_F32;
			ggml_dtype(s->ggml_type, &dt);
			uint64_t rows = is_b ? (uint64_t)t->OC : (uint64_t)rank, cols = is_b ? (uint64_t)rank : (uint64_t)t->IC;
			size_t row_bytes = rl_row_bytes(dt, cols);
			/* B's rows come in llama.cpp's RoPE layout: back to m's */
			uint64_t heads, D = 1;
			int dir = is_b ? rl_gguf_rope_permutation(m, t->name, &heads, &D) : 0;
			float *dst = is_b ? t->b : t->a;
			for (uint64_t r = 0; r < rows; r++)
				rl_dtypes[dt].to_float((const char *)s->data + row_bytes * rl_gguf_source_row(r, D, -dir),
						       dst + r * cols, cols);
		}
	}
	if (rl_adapter_check_finite(a, path))
		goto done;
	rc = 0;
done:
	if (rc)
		rl_adapter_free(a);
	free(idx);
	free(ta);
	free(tb);
	rl_gguf_close(&g);
	return rc;
}
