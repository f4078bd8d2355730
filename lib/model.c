/* model.c: model layout, loading from any model argument, writing streams. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cblas.h>

#include "err.h"
#include "gguf.h"
#include "hf.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "pack.h"
#include "parallel.h"
#include "sample.h"

#define MAX_DIM (1 << 20)

double rl_rope_freq(const rl_config *c, int j)
{
	double f = pow(c->rope_theta, -2.0 * j / c->head_dim);
	if (c->rope_scaling == RL_ROPE_SCALING_LINEAR)
		return f / c->rope_factor;
	if (c->rope_scaling == RL_ROPE_SCALING_LLAMA3) {
		double wavelen = 2 * M_PI / f, old = c->rope_original_ctx;
		double lo = old / c->rope_low_freq_factor, hi = old / c->rope_high_freq_factor;
		if (wavelen < hi)
			return f;
		if (wavelen > lo)
			return f / c->rope_factor;
		double smooth = (old / wavelen - c->rope_low_freq_factor) /
				(c->rope_high_freq_factor - c->rope_low_freq_factor);
		return (1 - smooth) * f / c->rope_factor + smooth * f;
	}
	return f;
}

int rl_config_check(const rl_config *c)
{
	struct { const char *name; int v, max; } dims[] = {
		{ "dim", c->dim, MAX_DIM }, { "hidden_dim", c->hidden_dim, MAX_DIM },
		{ "n_layers", c->n_layers, 4096 }, { "n_heads", c->n_heads, 4096 },
		{ "n_kv_heads", c->n_kv_heads, 4096 }, { "head_dim", c->head_dim, 4096 },
		{ "vocab_size", c->vocab_size, 1 << 24 }, { "seq_len", c->seq_len, 1 << 24 },
	};
	for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
		if (dims[i].v <= 0 || dims[i].v > dims[i].max) {
			rl_seterr("config: %s = %d is not between 1 and %d", dims[i].name, dims[i].v, dims[i].max);
			return -1;
		}
	if (c->n_heads % c->n_kv_heads) {
		rl_seterr("config: n_heads %d is not a multiple of n_kv_heads %d", c->n_heads, c->n_kv_heads);
		return -1;
	}
	if (c->head_dim % 2) {
		rl_seterr("config: head_dim %d is odd; RoPE rotates pairs", c->head_dim);
		return -1;
	}
	if ((size_t)c->n_heads * c->head_dim > MAX_DIM) {
		rl_seterr("config: n_heads * head_dim = %zu is too large", (size_t)c->n_heads * c->head_dim);
		return -1;
	}
	if (!(c->rope_theta > 0 && isfinite(c->rope_theta)) || !(c->norm_eps > 0 && c->norm_eps < 1)) {
		rl_seterr("config: rope_theta %g or norm_eps %g out of range", c->rope_theta, c->norm_eps);
		return -1;
	}
	if (c->rope_scaling != RL_ROPE_SCALING_NONE && !(c->rope_factor > 0 && c->rope_factor <= 1e6)) {
		rl_seterr("config: rope scaling factor %g is not in (0, 1e6]", c->rope_factor);
		return -1;
	}
	if (c->rope_scaling == RL_ROPE_SCALING_LLAMA3 &&
	    !(c->rope_low_freq_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor &&
	      c->rope_high_freq_factor <= 1e6 && c->rope_original_ctx > 0)) {
		rl_seterr("config: llama3 rope scaling needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and "
			  "original_max_position_embeddings (%d) > 0",
			  c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_ctx);
		return -1;
	}
	return 0;
}

static rl_tensor *add_tensor(rl_model *m, const char *name, uint64_t rows, uint64_t cols)
{
	rl_tensor *t = &m->tensors[m->ntensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->dtype = RL_F32;
	t->ndim = cols ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	return t;
}

int rl_model_layout(rl_model *m)
{
	const rl_config *c = &m->cfg;
	if (rl_config_check(c))
		return -1;
	uint64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size, D = c->head_dim;
	uint64_t QD = (uint64_t)c->n_heads * D, KD = (uint64_t)c->n_kv_heads * D;
	int per_layer = 9 + 2 * c->qk_norm + 3 * c->qkv_bias;
	m->tensors = calloc((size_t)per_layer * c->n_layers + 3, sizeof(rl_tensor));
	m->layers = calloc((size_t)c->n_layers, sizeof(rl_layer));
	if (!m->tensors || !m->layers) {
		rl_seterr("out of memory");
		return -1;
	}
	m->ntensors = 0;
	m->token_embd = add_tensor(m, "token_embd.weight", V, C);
	for (int l = 0; l < c->n_layers; l++) {
		rl_layer *L = &m->layers[l];
		char n[64];
#define T(field, suffix, rows, cols) \
	(snprintf(n, sizeof n, "blk.%d.%s", l, suffix), L->field = add_tensor(m, n, rows, cols))
		T(attn_norm, "attn_norm.weight", C, 0);
		T(attn_q, "attn_q.weight", QD, C);
		if (c->qkv_bias)
			T(attn_q_bias, "attn_q.bias", QD, 0);
		T(attn_k, "attn_k.weight", KD, C);
		if (c->qkv_bias)
			T(attn_k_bias, "attn_k.bias", KD, 0);
		T(attn_v, "attn_v.weight", KD, C);
		if (c->qkv_bias)
			T(attn_v_bias, "attn_v.bias", KD, 0);
		if (c->qk_norm) {
			T(attn_q_norm, "attn_q_norm.weight", D, 0);
			T(attn_k_norm, "attn_k_norm.weight", D, 0);
		}
		T(attn_output, "attn_output.weight", C, QD);
		T(ffn_norm, "ffn_norm.weight", C, 0);
		T(ffn_gate, "ffn_gate.weight", F, C);
		T(ffn_up, "ffn_up.weight", F, C);
		T(ffn_down, "ffn_down.weight", C, F);
#undef T
	}
	m->output_norm = add_tensor(m, "output_norm.weight", C, 0);
	m->output = c->tied_embeddings ? m->token_embd : add_tensor(m, "output.weight", V, C);
	for (int i = 0; i < m->ntensors; i++) {
		rl_tensor *t = &m->tensors[i];
		size_t elems;
		if (rl_mul_size(t->shape[0], t->ndim == 2 ? t->shape[1] : 1, &elems) ||
		    rl_mul_size(elems, sizeof(float), &t->bytes)) {
			rl_seterr("config: tensor %s is too large", t->name);
			return -1;
		}
	}
	return 0;
}

static int in_mapping(const rl_model *m, const void *p)
{
	if (m->mapping && (const char *)p >= (const char *)m->mapping &&
	    (const char *)p < (const char *)m->mapping + m->mapping_size)
		return 1;
	for (int i = 0; i < m->nmappings; i++)
		if ((const char *)p >= (const char *)m->mappings[i].addr &&
		    (const char *)p < (const char *)m->mappings[i].addr + m->mappings[i].size)
			return 1;
	return 0;
}

void rl_model_replace_tensor(rl_model *m, rl_tensor *t, rl_dtype dt, void *data, size_t bytes)
{
	if (!in_mapping(m, t->data))
		free(t->data);
	t->data = data;
	t->dtype = dt;
	t->bytes = bytes;
	m->content[0] = 0;
}

void rl_model_free(rl_model *m)
{
	for (int i = 0; i < m->ntensors; i++)
		if (!in_mapping(m, m->tensors[i].data))
			free(m->tensors[i].data);
	if (m->mapping)
		munmap(m->mapping, m->mapping_size);
	for (int i = 0; i < m->nmappings; i++)
		munmap(m->mappings[i].addr, m->mappings[i].size);
	free(m->mappings);
	free(m->tensors);
	free(m->layers);
	rl_tokenizer_free(&m->tok);
	if (m->adapter) {
		rl_adapter_free(m->adapter);
		free(m->adapter);
	}
	memset(m, 0, sizeof *m);
}

void rl_set_threads(int n)
{
	if (n <= 0)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	openblas_set_num_threads(n);
	rl_parallel_set_threads(n);
}

/* Rows of a tensor as f32 (tmp holds a row when the tensor is stored otherwise). */
static const float *row_f32(const rl_tensor *t, uint64_t r, float *tmp)
{
	uint64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
	if (t->ndim == 1)
		r = 0;
	size_t rb = rl_row_bytes(t->dtype, cols);
	const char *p = (const char *)t->data + r * rb;
	if (t->dtype == RL_F32)
		return (const float *)p;
	rl_dtypes[t->dtype].to_float(p, tmp, cols);
	return tmp;
}

int rl_model_hash_f32(const rl_model *m, char hex[65])
{
	rl_sha256 s;
	rl_sha256_init(&s);
	size_t maxcols = 1;
	for (int i = 0; i < m->ntensors; i++)
		if (m->tensors[i].shape[m->tensors[i].ndim - 1] > maxcols)
			maxcols = m->tensors[i].shape[m->tensors[i].ndim - 1];
	float *tmp = malloc(maxcols * sizeof(float));
	if (!tmp) {
		rl_seterr("out of memory");
		return -1;
	}
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		rl_hash_tensor_begin(&s, t->name, RL_F32, t->ndim, t->shape);
		if (t->ndim == 1) {
			rl_sha256_update(&s, row_f32(t, 0, tmp), t->shape[0] * sizeof(float));
			continue;
		}
		for (uint64_t r = 0; r < t->shape[0]; r++)
			rl_sha256_update(&s, row_f32(t, r, tmp), t->shape[1] * sizeof(float));
	}
	free(tmp);
	unsigned char d[32];
	rl_sha256_final(&s, d);
	rl_sha256_hex(d, hex);
	return 0;
}

/* ---- llama2.c checkpoints ---- */

static int find_llama2c_tokenizer(const char *model_path, int vocab, char *out, size_t size)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", model_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	snprintf(out, size, "%s/tokenizer.bin", dir);
	if (access(out, R_OK) == 0)
		return 0;
	snprintf(out, size, "%s/tok%d.bin", dir, vocab);
	if (access(out, R_OK) == 0)
		return 0;
	char pattern[4200];
	snprintf(pattern, sizeof pattern, "%s/tok*.bin", dir);
	glob_t g;
	int found = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
	if (found == 1)
		snprintf(out, size, "%s", g.gl_pathv[0]);
	if (found)
		globfree(&g);
	if (found == 1)
		return 0;
	rl_seterr("%s: %s tokenizer beside the checkpoint in %s (tokenizer.bin or tok*.bin); name one with --tokenizer FILE",
		  model_path, found ? "more than one" : "no", dir);
	return -1;
}

static int load_llama2c(const char *path, const rl_load_opts *opts, rl_model *m)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int32_t h[7];
	if (st.st_size < (off_t)sizeof h || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
		rl_seterr("%s: %lld bytes is too short for a llama2.c checkpoint header (28 bytes)", path,
			  (long long)st.st_size);
		close(fd);
		return -1;
	}
	rl_config *c = &m->cfg;
	memset(c, 0, sizeof *c);
	c->dim = h[0];
	c->hidden_dim = h[1];
	c->n_layers = h[2];
	c->n_heads = h[3];
	c->n_kv_heads = h[4];
	c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
	c->seq_len = h[6];
	c->tied_embeddings = h[5] > 0;
	c->head_dim = c->n_heads > 0 && c->dim % c->n_heads == 0 ? c->dim / c->n_heads : -1;
	c->rope_theta = 10000;
	c->norm_eps = 1e-5;
	c->rope_style = RL_ROPE_INTERLEAVED;
	snprintf(m->arch, sizeof m->arch, "llama");
	if (rl_config_check(c) || rl_model_layout(m)) {
		rl_seterr("%s: not a llama2.c checkpoint, or a corrupt one: header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq_len %d): %s",
			  path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], rl_err());
		close(fd);
		rl_model_free(m);
		return -1;
	}
	/* The file holds, in order: token_embd, then per kind all layers'
	 * attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate (w1),
	 * ffn_down (w2), ffn_up (w3); output_norm; the RoPE tables (skipped);
	 * the classifier when untied. */
	size_t off = sizeof h, need;
	size_t rope_bytes = (size_t)c->seq_len * (size_t)c->head_dim * sizeof(float); /* real and imaginary halves */
	size_t offsets[16 + 1];
	int k = 0;
	offsets[k++] = off;
	off += m->token_embd->bytes;
	size_t kinds[9] = { m->layers[0].attn_norm->bytes, m->layers[0].attn_q->bytes, m->layers[0].attn_k->bytes,
			    m->layers[0].attn_v->bytes, m->layers[0].attn_output->bytes, m->layers[0].ffn_norm->bytes,
			    m->layers[0].ffn_gate->bytes, m->layers[0].ffn_down->bytes, m->layers[0].ffn_up->bytes };
	int overflow = 0;
	for (int i = 0; i < 9; i++) {
		offsets[k++] = off;
		overflow |= rl_mul_size(kinds[i], (size_t)c->n_layers, &need) || __builtin_add_overflow(off, need, &off);
	}
	offsets[k++] = off; /* output_norm */
	overflow |= __builtin_add_overflow(off, m->output_norm->bytes + rope_bytes, &off);
	offsets[k++] = off; /* classifier */
	if (!c->tied_embeddings)
		overflow |= __builtin_add_overflow(off, m->output->bytes, &off);
	if (overflow || (off_t)off != st.st_size) {
		rl_seterr("%s: %lld bytes, but a llama2.c checkpoint with this header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq_len %d) has %zu: %s",
			  path, (long long)st.st_size, h[0], h[1], h[2], h[3], h[4], h[5], h[6], off,
			  (off_t)off > st.st_size ? "the file is truncated" : "the header is wrong or this is another format");
		close(fd);
		rl_model_free(m);
		return -1;
	}
	m->mapping = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m->mapping == MAP_FAILED) {
		m->mapping = NULL;
		rl_seterr("%s: mmap: %s", path, strerror(errno));
		rl_model_free(m);
		return -1;
	}
	m->mapping_size = (size_t)st.st_size;
	char *base = m->mapping;
	m->token_embd->data = base + offsets[0];
	for (int l = 0; l < c->n_layers; l++) {
		rl_layer *L = &m->layers[l];
		rl_tensor *ts[9] = { L->attn_norm, L->attn_q, L->attn_k, L->attn_v, L->attn_output,
				     L->ffn_norm, L->ffn_gate, L->ffn_down, L->ffn_up };
		for (int i = 0; i < 9; i++)
			ts[i]->data = base + offsets[1 + i] + (size_t)l * kinds[i];
	}
	m->output_norm->data = base + offsets[10];
	if (!c->tied_embeddings)
		m->output->data = base + offsets[11];
	for (int i = 0; i < m->ntensors; i++) {
		const float *p = m->tensors[i].data;
		size_t n = m->tensors[i].bytes / sizeof(float);
		for (size_t j = 0; j < n; j++)
			if (!isfinite(p[j])) {
				rl_seterr("%s: tensor %s holds a non-finite value at element %zu", path, m->tensors[i].name, j);
				rl_model_free(m);
				return -1;
			}
	}
	char tokpath[4400];
	if (opts && opts->tokenizer)
		snprintf(tokpath, sizeof tokpath, "%s", opts->tokenizer);
	else if (find_llama2c_tokenizer(path, c->vocab_size, tokpath, sizeof tokpath)) {
		rl_model_free(m);
		return -1;
	}
	if (rl_tokenizer_load_llama2c(&m->tok, tokpath, c->vocab_size)) {
		rl_model_free(m);
		return -1;
	}
	if (rl_model_hash_f32(m, m->source)) {
		rl_model_free(m);
		return -1;
	}
	return 0;
}

/* ---- model streams ---- */

static int parse_config(const msgpack_object *h, rl_config *c, char arch[16])
{
	const msgpack_object *cfg = rl_mp_get(h, "config");
	if (!cfg || cfg->type != MSGPACK_OBJECT_MAP) {
		rl_seterr("header: field config: missing or not a map");
		return -1;
	}
	struct { const char *key; int *v; } ints[] = {
		{ "dim", &c->dim }, { "hidden_dim", &c->hidden_dim }, { "n_layers", &c->n_layers },
		{ "n_heads", &c->n_heads }, { "n_kv_heads", &c->n_kv_heads }, { "head_dim", &c->head_dim },
		{ "vocab_size", &c->vocab_size }, { "seq_len", &c->seq_len },
	};
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		int64_t v;
		if (rl_mp_int(cfg, ints[i].key, &v))
			goto bad;
		if (v <= 0 || v > INT32_MAX) {
			rl_seterr("config: %s = %lld out of range", ints[i].key, (long long)v);
			return -1;
		}
		*ints[i].v = (int)v;
	}
	char style[16];
	if (rl_mp_double(cfg, "rope_theta", &c->rope_theta) || rl_mp_double(cfg, "norm_eps", &c->norm_eps) ||
	    rl_mp_strcpy(cfg, "rope_style", style, sizeof style) || rl_mp_bool(cfg, "qk_norm", &c->qk_norm) ||
	    rl_mp_bool(cfg, "qkv_bias", &c->qkv_bias) || rl_mp_bool(cfg, "tied_embeddings", &c->tied_embeddings) ||
	    rl_mp_strcpy(h, "arch", arch, 16))
		goto bad;
	const msgpack_object *rs = rl_mp_get(cfg, "rope_scaling");
	if (rs) {
		char type[16];
		if (rs->type != MSGPACK_OBJECT_MAP || rl_mp_strcpy(rs, "type", type, sizeof type) ||
		    rl_mp_double(rs, "factor", &c->rope_factor))
			goto bad;
		if (!strcmp(type, "linear")) {
			c->rope_scaling = RL_ROPE_SCALING_LINEAR;
		} else if (!strcmp(type, "llama3")) {
			int64_t orig;
			c->rope_scaling = RL_ROPE_SCALING_LLAMA3;
			if (rl_mp_double(rs, "low_freq_factor", &c->rope_low_freq_factor) ||
			    rl_mp_double(rs, "high_freq_factor", &c->rope_high_freq_factor) ||
			    rl_mp_int(rs, "original_max_position_embeddings", &orig))
				goto bad;
			c->rope_original_ctx = orig > 0 && orig <= (1 << 24) ? (int)orig : 0;
		} else {
			rl_seterr("config: rope_scaling type \"%s\" is not linear or llama3", type);
			return -1;
		}
	}
	if (strcmp(style, "interleaved") == 0)
		c->rope_style = RL_ROPE_INTERLEAVED;
	else if (strcmp(style, "half") == 0)
		c->rope_style = RL_ROPE_HALF;
	else {
		rl_seterr("config: rope_style \"%s\" is not interleaved or half", style);
		return -1;
	}
	return rl_config_check(c);
bad:
	rl_seterr("config: %s", rl_err());
	return -1;
}

/* The "bpe" form: byte-level BPE (tokenizer.h's rl_bpe_spec) with pieces. */
static int parse_tokenizer_bpe(const msgpack_object *o, const rl_config *c, rl_tokenizer *tk)
{
	const msgpack_object *pieces = rl_mp_get(o, "pieces"), *splits = rl_mp_get(o, "splits");
	const void *merges, *added;
	size_t mlen, alen;
	int64_t bos, eos;
	rl_bpe_spec spec = { 0 };
	if (!pieces || pieces->type != MSGPACK_OBJECT_ARRAY || !splits || splits->type != MSGPACK_OBJECT_ARRAY) {
		rl_seterr("field %s: missing or not an array", pieces && pieces->type == MSGPACK_OBJECT_ARRAY ? "splits" : "pieces");
		return -1;
	}
	if (rl_mp_bin(o, "merges", &merges, &mlen) || rl_mp_bin(o, "added", &added, &alen) ||
	    rl_mp_int(o, "bos_id", &bos) || rl_mp_int(o, "eos_id", &eos) || rl_mp_bool(o, "nfc", &spec.nfc) ||
	    rl_mp_bool(o, "add_prefix_space", &spec.add_prefix_space) ||
	    rl_mp_bool(o, "ignore_merges", &spec.ignore_merges))
		return -1;
	uint32_t n = pieces->via.array.size, ns = splits->via.array.size;
	if (n == 0 || n > (uint32_t)c->vocab_size || mlen % 8 || alen % 8 || alen / 8 > n || ns > 16 ||
	    bos < -1 || bos >= n || eos < -1 || eos >= n) {
		rl_seterr("%u pieces, %zu bytes of merges, %zu of added tokens, %u splits, bos_id %lld, eos_id %lld "
			  "for a vocabulary of %d", n, mlen, alen, ns, (long long)bos, (long long)eos, c->vocab_size);
		return -1;
	}
	const char **p = malloc(n * sizeof *p);
	int *len = malloc(n * sizeof *len), *m = malloc(mlen + 8), *a = malloc(alen + 8);
	char *pat[16] = { 0 };
	int rc = -1;
	if (!p || !len || !m || !a) {
		rl_seterr("out of memory");
		goto done;
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *e = &pieces->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_BIN || e->via.bin.size > 4096) {
			rl_seterr("field pieces: piece %u is not bytes of at most 4096", i);
			goto done;
		}
		p[i] = e->via.bin.ptr;
		len[i] = (int)e->via.bin.size;
	}
	for (uint32_t i = 0; i < ns; i++) {
		const msgpack_object *e = &splits->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_STR || memchr(e->via.str.ptr, 0, e->via.str.size) ||
		    !(pat[i] = strndup(e->via.str.ptr, e->via.str.size))) {
			rl_seterr("field splits: split %u is not a regex", i);
			goto done;
		}
	}
	memcpy(m, merges, mlen); /* i32 little-endian, maybe unaligned in the message */
	memcpy(a, added, alen);
	spec.nmerges = (int)(mlen / 8);
	spec.merges = m;
	spec.nadded = (int)(alen / 8);
	spec.added = a;
	spec.nsplits = (int)ns;
	spec.splits = (const char *const *)pat;
	rc = rl_tokenizer_init_bpe(tk, (int)n, p, len, &spec, (int)bos, (int)eos);
done:
	for (int i = 0; i < 16; i++)
		free(pat[i]);
	free(p);
	free(len);
	free(m);
	free(a);
	return rc;
}

static int parse_tokenizer(const msgpack_object *o, const rl_config *c, rl_tokenizer *tk)
{
	char type[32];
	if (rl_mp_strcpy(o, "type", type, sizeof type))
		return -1;
	if (strcmp(type, "bpe") == 0)
		return parse_tokenizer_bpe(o, c, tk);
	if (strcmp(type, "sentencepiece")) {
		rl_seterr("tokenizer type \"%s\" is not supported by this version", type);
		return -1;
	}
	const msgpack_object *pieces = rl_mp_get(o, "pieces");
	const void *scores;
	size_t slen;
	int64_t bos, eos;
	int dummy;
	if (!pieces || pieces->type != MSGPACK_OBJECT_ARRAY) {
		rl_seterr("field pieces: missing or not an array");
		return -1;
	}
	if (rl_mp_bin(o, "scores", &scores, &slen) || rl_mp_int(o, "bos_id", &bos) ||
	    rl_mp_int(o, "eos_id", &eos) || rl_mp_bool(o, "add_dummy_prefix", &dummy))
		return -1;
	uint32_t n = pieces->via.array.size;
	if (n == 0 || n > (uint32_t)c->vocab_size || slen != (size_t)n * 4) {
		rl_seterr("%u pieces and %zu bytes of scores for a vocabulary of %d", n, slen, c->vocab_size);
		return -1;
	}
	const char **p = malloc(n * sizeof *p);
	int *len = malloc(n * sizeof *len);
	float *sc = malloc(n * sizeof *sc);
	int rc = -1;
	if (!p || !len || !sc) {
		rl_seterr("out of memory");
		goto done;
	}
	memcpy(sc, scores, slen);
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *e = &pieces->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_BIN || e->via.bin.size > 4096) {
			rl_seterr("field pieces: piece %u is not bytes of at most 4096", i);
			goto done;
		}
		p[i] = e->via.bin.ptr;
		len[i] = (int)e->via.bin.size;
	}
	if (bos < -1 || bos >= n || eos < -1 || eos >= n) {
		rl_seterr("bos_id %lld or eos_id %lld outside the %u pieces", (long long)bos, (long long)eos, n);
		goto done;
	}
	rc = rl_tokenizer_init(tk, (int)n, p, len, sc, (int)bos, (int)eos, dummy);
done:
	free(p);
	free(len);
	free(sc);
	return rc;
}

int rl_model_tensor_index(const rl_model *m, const char *name)
{
	for (int i = 0; i < m->ntensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return i;
	return -1;
}

static rl_tensor *find_tensor(rl_model *m, const char *name)
{
	int i = rl_model_tensor_index(m, name);
	return i < 0 ? NULL : &m->tensors[i];
}

/* Norms and biases are kept in f32 in memory, whatever their storage. */
static int widen_vector(rl_tensor *t)
{
	if (t->ndim != 1 || t->dtype == RL_F32)
		return 0;
	float *f = malloc(t->shape[0] * sizeof(float));
	if (!f) {
		rl_seterr("out of memory");
		return -1;
	}
	rl_dtypes[t->dtype].to_float(t->data, f, t->shape[0]);
	free(t->data);
	t->data = f;
	t->dtype = RL_F32;
	t->bytes = t->shape[0] * sizeof(float);
	return 0;
}

int rl_model_load_reader(rl_reader *r, rl_model *m)
{
	const char *path = rl_reader_name(r);
	rl_msg msg;
	int got, have_tok = 0, rc = -1;
	rl_tensor *cur = NULL;
	while ((got = rl_read(r, &msg)) > 0) {
		switch (msg.type) {
		case RL_MSG_HEADER:
			if (strcmp(rl_reader_kind(r), "model")) {
				rl_seterr("%s: a %s stream, not a model stream", path, rl_reader_kind(r));
				goto done;
			}
			if (parse_config(msg.map, &m->cfg, m->arch) || rl_model_layout(m) ||
			    rl_mp_strcpy(msg.map, "source", m->source, sizeof m->source)) {
				rl_seterr("%s: header: %s", path, rl_err());
				goto done;
			}
			break;
		case RL_MSG_TOKENIZER:
			if (have_tok || parse_tokenizer(msg.map, &m->cfg, &m->tok)) {
				rl_seterr("%s: tokenizer: %s", path, have_tok ? "a second tokenizer" : rl_err());
				goto done;
			}
			have_tok = 1;
			break;
		case RL_MSG_TENSOR: {
			const rl_tensor_msg *t = &msg.tensor;
			if (t->row0 == 0) {
				cur = find_tensor(m, t->name);
				if (!cur || cur->data) {
					rl_seterr("%s: tensor %s: %s", path, t->name,
						  cur ? "appears twice" : "not a tensor of this model's architecture and config");
					goto done;
				}
				if (cur->ndim != t->ndim || cur->shape[0] != t->shape[0] ||
				    (cur->ndim == 2 && cur->shape[1] != t->shape[1])) {
					rl_seterr("%s: tensor %s: shape [%llu, %llu] disagrees with the config's [%llu, %llu]",
						  path, t->name, (unsigned long long)t->shape[0],
						  (unsigned long long)(t->ndim > 1 ? t->shape[1] : 0),
						  (unsigned long long)cur->shape[0], (unsigned long long)cur->shape[1]);
					goto done;
				}
				cur->dtype = t->dtype;
				if (rl_mul_size(t->row_bytes, t->shape[0], &cur->bytes) ||
				    posix_memalign(&cur->data, 64, cur->bytes)) {
					cur->data = NULL;
					rl_seterr("%s: tensor %s: out of memory", path, t->name);
					goto done;
				}
			}
			memcpy((char *)cur->data + t->row0 * t->row_bytes, t->data, t->nrows * t->row_bytes);
			if (t->row0 + t->nrows == t->shape[0] && widen_vector(cur))
				goto done;
			break;
		}
		default:
			break;
		}
	}
	if (got < 0)
		goto done;
	if (!have_tok) {
		rl_seterr("%s: the model stream has no tokenizer", path);
		goto done;
	}
	for (int i = 0; i < m->ntensors; i++)
		if (!m->tensors[i].data) {
			rl_seterr("%s: tensor %s is missing", path, m->tensors[i].name);
			goto done;
		}
	rl_reader_content(r, m->content);
	rc = 0;
done:
	if (rc)
		rl_model_free(m);
	return rc;
}

static int load_stream(const char *path, rl_model *m)
{
	rl_reader *r = rl_reader_open(path);
	if (!r)
		return -1;
	int rc = rl_model_load_reader(r, m);
	rl_reader_close(r);
	return rc;
}

/* PATH+ADAPTER, split at plus: the model, then its adapter (lora.h). */
static int load_with_adapter(const char *arg, int plus, const rl_load_opts *opts, rl_model *m)
{
	char *path = strndup(arg, (size_t)plus);
	struct stat st;
	rl_adapter a;
	if (!path) {
		rl_seterr("out of memory");
		return -1;
	}
	if (strcmp(path, "-") && stat(path, &st) != 0) {
		rl_seterr("%s: %s (nor is %s a file)", path, strerror(errno), arg);
		free(path);
		return -1;
	}
	int rc = rl_model_load(path, opts, m);
	free(path);
	if (rc)
		return -1;
	if (rl_adapter_read(arg + plus + 1, m, 0, &a) || rl_model_attach_adapter(m, &a)) {
		rl_adapter_free(&a);
		rl_model_free(m);
		return -1;
	}
	snprintf(m->origin, sizeof m->origin, "%s", arg);
	return 0;
}

int rl_model_load(const char *arg, const rl_load_opts *opts, rl_model *m)
{
	int plus = rl_model_arg_split(arg);
	if (plus >= 0)
		return load_with_adapter(arg, plus, opts, m);
	memset(m, 0, sizeof *m);
	snprintf(m->origin, sizeof m->origin, "%s", arg);
	if (strcmp(arg, "-") == 0)
		return load_stream(arg, m);
	struct stat st;
	if (stat(arg, &st) != 0) {
		rl_seterr("%s: %s", arg, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) /* a Hugging Face model directory */
		return rl_model_load_hf(arg, m);
	unsigned char magic[4] = { 0 };
	int fd = open(arg, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rl_seterr("%s: %s", arg, strerror(errno));
		return -1;
	}
	ssize_t n = read(fd, magic, sizeof magic);
	close(fd);
	/* a stream's first message is a map whose first key is "t" */
	if (n >= 3 && ((magic[0] & 0xf0) == 0x80 || magic[0] == 0xde || magic[0] == 0xdf) &&
	    ((magic[0] & 0xf0) != 0x80 || (magic[1] == 0xa1 && magic[2] == 't')))
		return load_stream(arg, m);
	if (n == 4 && memcmp(magic, "GGUF", 4) == 0)
		return rl_model_load_gguf(arg, m);
	if (rl_pack_sniff(arg)) /* a recovery pack: its base with its adapter */
		return rl_model_load_pack(arg, m);
	return load_llama2c(arg, opts, m);
}

/* ---- writing ---- */

static void pack_config(msgpack_packer *pk, const rl_config *c)
{
	int scaled = c->rope_scaling != RL_ROPE_SCALING_NONE;
	msgpack_pack_map(pk, 14 + scaled);
	if (scaled) { /* absent without scaling, so older streams stay byte for byte */
		int l3 = c->rope_scaling == RL_ROPE_SCALING_LLAMA3;
		rl_pack_str(pk, "rope_scaling");
		msgpack_pack_map(pk, 2 + 3 * l3);
		rl_pack_kv_str(pk, "type", l3 ? "llama3" : "linear");
		rl_pack_kv_double(pk, "factor", c->rope_factor);
		if (l3) {
			rl_pack_kv_double(pk, "low_freq_factor", c->rope_low_freq_factor);
			rl_pack_kv_double(pk, "high_freq_factor", c->rope_high_freq_factor);
			rl_pack_kv_int(pk, "original_max_position_embeddings", c->rope_original_ctx);
		}
	}
	rl_pack_kv_int(pk, "dim", c->dim);
	rl_pack_kv_int(pk, "hidden_dim", c->hidden_dim);
	rl_pack_kv_int(pk, "n_layers", c->n_layers);
	rl_pack_kv_int(pk, "n_heads", c->n_heads);
	rl_pack_kv_int(pk, "n_kv_heads", c->n_kv_heads);
	rl_pack_kv_int(pk, "head_dim", c->head_dim);
	rl_pack_kv_int(pk, "vocab_size", c->vocab_size);
	rl_pack_kv_int(pk, "seq_len", c->seq_len);
	rl_pack_kv_double(pk, "rope_theta", c->rope_theta);
	rl_pack_kv_str(pk, "rope_style", c->rope_style == RL_ROPE_HALF ? "half" : "interleaved");
	rl_pack_kv_double(pk, "norm_eps", c->norm_eps);
	rl_pack_kv_bool(pk, "qk_norm", c->qk_norm);
	rl_pack_kv_bool(pk, "qkv_bias", c->qkv_bias);
	rl_pack_kv_bool(pk, "tied_embeddings", c->tied_embeddings);
}

static void pack_tokenizer_bpe(msgpack_packer *pk, const rl_tokenizer *tk)
{
	rl_bpe_spec spec;
	rl_tokenizer_bpe_spec(tk, &spec);
	msgpack_pack_map(pk, 11);
	rl_pack_kv_str(pk, "t", "tokenizer");
	rl_pack_kv_str(pk, "type", "bpe");
	rl_pack_str(pk, "pieces");
	msgpack_pack_array(pk, (size_t)tk->vocab_size);
	for (int i = 0; i < tk->vocab_size; i++) {
		msgpack_pack_bin(pk, (size_t)tk->piece_len[i]);
		msgpack_pack_bin_body(pk, tk->pieces[i], (size_t)tk->piece_len[i]);
	}
	rl_pack_kv_bin(pk, "merges", spec.merges, (size_t)spec.nmerges * 2 * sizeof(int));
	rl_pack_kv_bin(pk, "added", spec.added, (size_t)spec.nadded * 2 * sizeof(int));
	rl_pack_str(pk, "splits");
	msgpack_pack_array(pk, (size_t)spec.nsplits);
	for (int i = 0; i < spec.nsplits; i++)
		rl_pack_str(pk, spec.splits[i]);
	rl_pack_kv_bool(pk, "nfc", spec.nfc);
	rl_pack_kv_bool(pk, "add_prefix_space", spec.add_prefix_space);
	rl_pack_kv_bool(pk, "ignore_merges", spec.ignore_merges);
	rl_pack_kv_int(pk, "bos_id", tk->bos_id);
	rl_pack_kv_int(pk, "eos_id", tk->eos_id);
}

static void pack_tokenizer(msgpack_packer *pk, const rl_tokenizer *tk)
{
	if (tk->kind == RL_TOKENIZER_BPE) {
		pack_tokenizer_bpe(pk, tk);
		return;
	}
	msgpack_pack_map(pk, 7);
	rl_pack_kv_str(pk, "t", "tokenizer");
	rl_pack_kv_str(pk, "type", "sentencepiece");
	rl_pack_str(pk, "pieces");
	msgpack_pack_array(pk, (size_t)tk->vocab_size);
	for (int i = 0; i < tk->vocab_size; i++) {
		msgpack_pack_bin(pk, (size_t)tk->piece_len[i]);
		msgpack_pack_bin_body(pk, tk->pieces[i], (size_t)tk->piece_len[i]);
	}
	rl_pack_kv_bin(pk, "scores", tk->scores, (size_t)tk->vocab_size * sizeof(float));
	rl_pack_kv_int(pk, "bos_id", tk->bos_id);
	rl_pack_kv_int(pk, "eos_id", tk->eos_id);
	rl_pack_kv_bool(pk, "add_dummy_prefix", tk->add_dummy_prefix);
}

int rl_model_write(const rl_model *m, rl_writer *w, const char *producer,
		   int (*write_tensor)(rl_writer *w, const rl_tensor *t, void *arg), void *arg)
{
	msgpack_packer *pk = rl_writer_packer(w);
	rl_pack_header(pk, "model", producer, 3);
	rl_pack_kv_str(pk, "arch", m->arch);
	rl_pack_str(pk, "config");
	pack_config(pk, &m->cfg);
	rl_pack_kv_str(pk, "source", m->source);
	rl_writer_message_done(w);
	pack_tokenizer(pk, &m->tok);
	rl_writer_message_done(w);
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		if (write_tensor ? write_tensor(w, t, arg)
				 : rl_write_tensor(w, t->name, t->dtype, t->dtype, t->ndim, t->shape, t->data, NULL, NULL))
			return -1;
	}
	return rl_write_end(w);
}

/* ---- configs and random models ---- */

static int json_int(const rl_json *o, const char *key, int *v, int fallback)
{
	const rl_json *j = rl_json_get(o, key);
	if (!j || j->type == RL_JSON_NULL) {
		if (fallback < 0) {
			rl_seterr("%s is missing", key);
			return -1;
		}
		*v = fallback;
		return 0;
	}
	if (j->type != RL_JSON_NUMBER || !j->is_integer || j->integer <= 0 || j->integer > INT32_MAX) {
		rl_seterr("%s is not a positive integer", key);
		return -1;
	}
	*v = (int)j->integer;
	return 0;
}

static double json_num(const rl_json *o, const char *key, double fallback)
{
	const rl_json *j = rl_json_get(o, key);
	return j && j->type == RL_JSON_NUMBER ? j->number : fallback;
}

/* What config.json may say that the forward pass does not compute is an
 * error naming the key: another architecture, a rope_scaling other than
 * linear and llama3 (it changes every position's angles), an activation other
 * than SiLU, biases beyond Qwen2's q/k/v, sliding-window attention. */
static int hf_config_supported(const rl_json *j, const char *path, const char *model_type)
{
	static const char *const archs[][2] = { { "llama", "LlamaForCausalLM" }, { "qwen2", "Qwen2ForCausalLM" },
						{ "qwen3", "Qwen3ForCausalLM" } };
	const rl_json *a = rl_json_get(j, "architectures");
	if (a && a->type != RL_JSON_NULL) {
		if (a->type != RL_JSON_ARRAY || a->len != 1 || a->items[0]->type != RL_JSON_STRING) {
			rl_seterr("%s: architectures is not an array of one string", path);
			return -1;
		}
		const char *name = a->items[0]->string;
		size_t i = 0;
		while (i < 3 && strcmp(name, archs[i][1]))
			i++;
		if (i == 3) {
			rl_seterr("%s: architectures: \"%.60s\" is not supported (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
				  path, name);
			return -1;
		}
		if (strcmp(archs[i][0], model_type)) {
			rl_seterr("%s: architectures \"%s\" disagrees with model_type \"%s\"", path, name, model_type);
			return -1;
		}
	}
	const rl_json *rs = rl_json_get(j, "rope_scaling");
	if (rs && rs->type != RL_JSON_NULL) {
		const rl_json *type = rs->type == RL_JSON_OBJECT ? rl_json_get(rs, "rope_type") : NULL;
		if (!type && rs->type == RL_JSON_OBJECT)
			type = rl_json_get(rs, "type");
		/* "default" is plain RoPE, as without rope_scaling */
		if (!type || type->type != RL_JSON_STRING ||
		    (strcmp(type->string, "default") && strcmp(type->string, "linear") && strcmp(type->string, "llama3"))) {
			rl_seterr("%s: rope_scaling type \"%.40s\" is not supported (default, linear and llama3 are)",
				  path, type && type->type == RL_JSON_STRING ? type->string : "?");
			return -1;
		}
	}
	const rl_json *act = rl_json_get(j, "hidden_act");
	if (act && act->type != RL_JSON_NULL && (act->type != RL_JSON_STRING || strcmp(act->string, "silu"))) {
		rl_seterr("%s: hidden_act \"%.40s\" is not supported (only silu)", path,
			  act->type == RL_JSON_STRING ? act->string : "?");
		return -1;
	}
	static const char *const nums[] = { "rope_theta", "rms_norm_eps" };
	for (size_t i = 0; i < 2; i++) {
		const rl_json *v = rl_json_get(j, nums[i]);
		if (v && v->type != RL_JSON_NULL && v->type != RL_JSON_NUMBER) {
			rl_seterr("%s: %s is not a number", path, nums[i]);
			return -1;
		}
	}
	const rl_json *tie = rl_json_get(j, "tie_word_embeddings");
	if (tie && tie->type != RL_JSON_NULL && tie->type != RL_JSON_BOOL) {
		rl_seterr("%s: tie_word_embeddings is not true or false", path);
		return -1;
	}
	static const char *const off[] = { "attention_bias", "mlp_bias", "use_sliding_window" };
	for (size_t i = 0; i < 3; i++) {
		const rl_json *v = rl_json_get(j, off[i]);
		/* Qwen2's q/k/v biases are its architecture, whatever attention_bias says */
		if (v && v->type == RL_JSON_BOOL && v->boolean && !(i == 0 && strcmp(model_type, "qwen2") == 0)) {
			rl_seterr("%s: %s true is not supported", path, off[i]);
			return -1;
		}
	}
	return 0;
}

/* Without model_type: the one architectures names, else llama. */
static const char *hf_model_type(const rl_json *j)
{
	const rl_json *a = rl_json_get(j, "architectures");
	const char *name = a && a->type == RL_JSON_ARRAY && a->len == 1 && a->items[0]->type == RL_JSON_STRING
				   ? a->items[0]->string : "";
	return strcmp(name, "Qwen2ForCausalLM") == 0 ? "qwen2" : strcmp(name, "Qwen3ForCausalLM") == 0 ? "qwen3" : "llama";
}

int rl_config_from_json(const char *path, rl_config *c, char arch[16])
{
	rl_json *j = rl_json_read(path);
	if (!j)
		return -1;
	int rc = -1;
	memset(c, 0, sizeof *c);
	const rl_json *type = rl_json_get(j, "model_type");
	const char *t = type && type->type == RL_JSON_STRING ? type->string : hf_model_type(j);
	if (strcmp(t, "llama") && strcmp(t, "qwen2") && strcmp(t, "qwen3")) {
		rl_seterr("%s: model_type \"%s\" is not llama, qwen2 or qwen3", path, t);
		goto done;
	}
	snprintf(arch, 16, "%s", t);
	if (j->type != RL_JSON_OBJECT || json_int(j, "hidden_size", &c->dim, -1) ||
	    json_int(j, "intermediate_size", &c->hidden_dim, -1) ||
	    json_int(j, "num_hidden_layers", &c->n_layers, -1) ||
	    json_int(j, "num_attention_heads", &c->n_heads, -1) ||
	    json_int(j, "num_key_value_heads", &c->n_kv_heads, c->n_heads) ||
	    json_int(j, "head_dim", &c->head_dim, c->n_heads > 0 ? c->dim / c->n_heads : 1) ||
	    json_int(j, "vocab_size", &c->vocab_size, -1) ||
	    json_int(j, "max_position_embeddings", &c->seq_len, 2048)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}
	if (hf_config_supported(j, path, t))
		goto done;
	const rl_json *tie = rl_json_get(j, "tie_word_embeddings");
	c->tied_embeddings = tie && tie->type == RL_JSON_BOOL ? tie->boolean : 0;
	c->rope_theta = json_num(j, "rope_theta", 10000);
	c->norm_eps = json_num(j, "rms_norm_eps", 1e-6);
	c->rope_style = RL_ROPE_HALF;
	c->qk_norm = strcmp(t, "qwen3") == 0;
	c->qkv_bias = strcmp(t, "qwen2") == 0;
	const rl_json *rs = rl_json_get(j, "rope_scaling");
	if (rs && rs->type == RL_JSON_OBJECT) {
		const rl_json *type = rl_json_get(rs, "rope_type") ? rl_json_get(rs, "rope_type") : rl_json_get(rs, "type");
		c->rope_scaling = !strcmp(type->string, "linear") ? RL_ROPE_SCALING_LINEAR
				  : !strcmp(type->string, "llama3") ? RL_ROPE_SCALING_LLAMA3 : RL_ROPE_SCALING_NONE;
		c->rope_factor = json_num(rs, "factor", NAN);
		c->rope_low_freq_factor = json_num(rs, "low_freq_factor", NAN);
		c->rope_high_freq_factor = json_num(rs, "high_freq_factor", NAN);
		double orig = json_num(rs, "original_max_position_embeddings", NAN);
		c->rope_original_ctx = orig >= 1 && orig <= (1 << 24) ? (int)orig : 0;
		if (c->rope_scaling != RL_ROPE_SCALING_NONE && isnan(c->rope_factor)) {
			rl_seterr("%s: rope_scaling: factor is missing or not a number", path);
			goto done;
		}
	}
	if (rl_config_check(c)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}
	rc = 0;
done:
	rl_json_free(j);
	return rc;
}

/* Fills n floats uniformly in [center - a, center + a] from a stream seeded by (seed, name). */
static void fill_uniform(float *p, size_t n, uint64_t seed, const char *name, float center, float a)
{
	uint64_t s = seed ^ 0x6a09e667f3bcc909ull;
	for (const char *c = name; *c; c++)
		s = (s ^ (unsigned char)*c) * 0x100000001b3ull;
	for (size_t i = 0; i < n; i += 2) {
		uint64_t r = rl_splitmix64(&s);
		p[i] = center + a * ((float)(uint32_t)r * (2.0f / 4294967296.0f) - 1.0f);
		if (i + 1 < n)
			p[i + 1] = center + a * ((float)(uint32_t)(r >> 32) * (2.0f / 4294967296.0f) - 1.0f);
	}
}

int rl_model_random(const rl_config *c, const char *arch, uint64_t seed, rl_model *m)
{
	memset(m, 0, sizeof *m);
	m->cfg = *c;
	snprintf(m->arch, sizeof m->arch, "%s", arch);
	snprintf(m->origin, sizeof m->origin, "random %s seed %llu", arch, (unsigned long long)seed);
	if (rl_model_layout(m) || rl_tokenizer_byte_level(&m->tok, c->vocab_size))
		goto fail;
	for (int i = 0; i < m->ntensors; i++) {
		rl_tensor *t = &m->tensors[i];
		if (posix_memalign(&t->data, 64, t->bytes)) {
			t->data = NULL;
			rl_seterr("random model: out of memory for %s (%zu bytes)", t->name, t->bytes);
			goto fail;
		}
		size_t n = t->bytes / sizeof(float);
		int is_norm = t->ndim == 1 && strstr(t->name, "norm");
		if (is_norm)
			fill_uniform(t->data, n, seed, t->name, 1.0f, 0.1f);
		else if (t->ndim == 1)
			fill_uniform(t->data, n, seed, t->name, 0.0f, 0.1f);
		else if (t == m->token_embd)
			fill_uniform(t->data, n, seed, t->name, 0.0f, 1.0f);
		else
			fill_uniform(t->data, n, seed, t->name, 0.0f, sqrtf(3.0f / (float)t->shape[1]));
	}
	if (rl_model_hash_f32(m, m->source))
		goto fail;
	return 0;
fail:
	rl_model_free(m);
	return -1;
}
