/* gguf_write.c: models and LoRA adapters as GGUF files that llama.cpp loads
 * (gguf.h). The layout is the GGUF specification's (see gguf.c); the key
 * names, tensor names, RoPE layouts and tokenizer conventions are those of
 * llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py)
 * and loaders (llama-model.cpp, llama-vocab.cpp, llama-adapter.cpp).
 *
 * The header (metadata and tensor descriptions) is built in memory; the
 * tensor data then streams from the model a row at a time, so no second copy
 * of the model is ever held. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "afile.h"
#include "err.h"
#include "gguf.h"

#define ALIGNMENT 32

/* llama.cpp's token types (tokenizer.ggml.token_type) */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5,
       TOKEN_BYTE = 6 };

/* ---- the header, in memory ---- */

typedef struct {
	unsigned char *p;
	size_t n, cap;
	int failed;   /* out of memory: every later put is dropped */
	uint64_t nkv; /* metadata entries written */
} buffer;

static void put(buffer *b, const void *p, size_t n)
{
	if (b->failed)
		return;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		unsigned char *q = realloc(b->p, cap);
		if (!q) {
			b->failed = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_u32(buffer *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buffer *b, uint64_t v) { put(b, &v, 8); }

static void put_str(buffer *b, const char *s, size_t n)
{
	put_u64(b, n);
	put(b, s, n);
}

static void key(buffer *b, const char *k, uint32_t type)
{
	put_str(b, k, strlen(k));
	put_u32(b, type);
	b->nkv++;
}

static void kv_u32(buffer *b, const char *k, uint32_t v)
{
	key(b, k, RL_GGUF_U32);
	put_u32(b, v);
}

static void kv_f32(buffer *b, const char *k, double v)
{
	float f = (float)v;
	key(b, k, RL_GGUF_F32);
	put(b, &f, 4);
}

static void kv_bool(buffer *b, const char *k, int v)
{
	unsigned char c = v != 0;
	key(b, k, RL_GGUF_BOOL);
	put(b, &c, 1);
}

static void kv_str(buffer *b, const char *k, const char *v)
{
	key(b, k, RL_GGUF_STRING);
	put_str(b, v, strlen(v));
}

/* An array's key and element header; the caller puts the n elements. */
static void kv_array(buffer *b, const char *k, uint32_t atype, uint64_t n)
{
	key(b, k, RL_GGUF_ARRAY);
	put_u32(b, atype);
	put_u64(b, n);
}

/* "ARCH.suffix" */
static const char *akey(const rl_model *m, const char *suffix)
{
	static __thread char k[128];
	snprintf(k, sizeof k, "%s.%s", m->arch, suffix);
	return k;
}

/* ---- RoPE layouts ---- */

int rl_gguf_rope_permutation(const rl_model *m, const char *name, uint64_t *heads, uint64_t *D)
{
	rl_rope_style want = strcmp(m->arch, "llama") == 0 ? RL_ROPE_INTERLEAVED : RL_ROPE_HALF;
	if (m->cfg.rope_style == want)
		return 0;
	const char *dot = strchr(name, '.');
	if (strncmp(name, "blk.", 4) || !dot || !(dot = strchr(dot + 1, '.')))
		return 0;
	const char *kind = dot + 1;
	*D = (uint64_t)m->cfg.head_dim;
	if (!strcmp(kind, "attn_q.weight") || !strcmp(kind, "attn_q.bias"))
		*heads = (uint64_t)m->cfg.n_heads;
	else if (!strcmp(kind, "attn_k.weight") || !strcmp(kind, "attn_k.bias"))
		*heads = (uint64_t)m->cfg.n_kv_heads;
	else if (!strcmp(kind, "attn_q_norm.weight") || !strcmp(kind, "attn_k_norm.weight"))
		*heads = 1; /* one head's worth, applied to every head */
	else
		return 0;
	return want == RL_ROPE_INTERLEAVED ? 1 : -1;
}

/* Within a head of D rows, rotate-half pairs row j with row j + D/2;
 * interleaved pairs 2j with 2j+1. */
uint64_t rl_gguf_source_row(uint64_t r, uint64_t D, int dir)
{
	if (dir == 0 || D < 2)
		return r;
	uint64_t head = r / D * D, w = r % D, half = D / 2;
	if (dir > 0) /* output row 2j+s (interleaved) is input row s*half + j (rotate-half) */
		return head + (w % 2) * half + w / 2;
	/* output row s*half + j is input row 2j+s */
	return head + 2 * (w % half) + w / half;
}

/* ---- the tokenizer ---- */

/* GPT-2's byte-level alphabet: printable bytes stand for themselves, the
 * others for code points 256, 257, ... in byte order. Writes b's UTF-8 form. */
static size_t byte_level_char(unsigned char b, char out[2])
{
	static int cp_of[256];
	static int ready;
	if (!ready) {
		int extra = 0;
		for (int c = 0; c < 256; c++) {
			int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
			cp_of[c] = printable ? c : 256 + extra++;
		}
		ready = 1;
	}
	int cp = cp_of[b];
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	out[0] = (char)(0xC0 | (cp >> 6));
	out[1] = (char)(0x80 | (cp & 0x3F));
	return 2;
}

/* A piece's bytes in byte-level form, appended to s (at most 2n bytes). */
static size_t byte_level(const char *p, int n, char *s)
{
	size_t k = 0;
	for (int i = 0; i < n; i++)
		k += byte_level_char((unsigned char)p[i], s + k);
	return k;
}

static void put_pad_token(buffer *b, int i)
{
	char s[32];
	int n = snprintf(s, sizeof s, "[PAD%d]", i);
	put_str(b, s, (size_t)n);
}

/* llama.cpp's name for the pre-tokenizer of spec, or NULL. */
static const char *pre_name(const rl_bpe_spec *spec)
{
	static const char *const names[] = { "qwen2", "llama-bpe", "gpt-2" };
	if (spec->nsplits != 1 || spec->add_prefix_space)
		return NULL;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *re = rl_bpe_pretokenizer_regex(names[i]);
		int nfc, ignore_merges;
		rl_gguf_pre_flags(names[i], &nfc, &ignore_merges);
		if (re && !strcmp(re, spec->splits[0]) && nfc == !!spec->nfc && ignore_merges == !!spec->ignore_merges)
			return names[i];
	}
	return NULL;
}

static int put_tokenizer(buffer *b, const rl_model *m)
{
	const rl_tokenizer *tk = &m->tok;
	int V = m->cfg.vocab_size, VT = tk->vocab_size;
	if (VT < 1 || VT > V) {
		rl_seterr("the tokenizer has %d tokens for a classifier of %d rows", VT, V);
		return -1;
	}
	int32_t *types = malloc((size_t)V * sizeof *types);
	if (!types) {
		rl_seterr("out of memory");
		return -1;
	}
	int unk = -1;
	if (tk->kind == RL_TOKENIZER_SENTENCEPIECE) {
		kv_str(b, "tokenizer.ggml.model", "llama");
		/* SentencePiece writes a space as U+2581 */
		kv_array(b, "tokenizer.ggml.tokens", RL_GGUF_STRING, (uint64_t)V);
		for (int i = 0; i < V; i++) {
			if (i >= VT) {
				put_pad_token(b, i);
				types[i] = TOKEN_UNUSED;
				continue;
			}
			const char *p = tk->pieces[i];
			int n = tk->piece_len[i], spaces = 0;
			for (int j = 0; j < n; j++)
				spaces += p[j] == ' ';
			put_u64(b, (uint64_t)n + 2 * (uint64_t)spaces);
			for (int j = 0; j < n; j++)
				put(b, p[j] == ' ' ? "\xE2\x96\x81" : &p[j], p[j] == ' ' ? 3 : 1);
			int is_byte = n == 6 && !memcmp(p, "<0x", 3) && p[5] == '>';
			if (i == tk->bos_id || i == tk->eos_id)
				types[i] = TOKEN_CONTROL;
			else if (n == 5 && !memcmp(p, "<unk>", 5))
				types[i] = TOKEN_UNKNOWN, unk = unk < 0 ? i : unk;
			else if (is_byte)
				types[i] = TOKEN_BYTE;
			else
				types[i] = TOKEN_NORMAL;
		}
		kv_array(b, "tokenizer.ggml.scores", RL_GGUF_F32, (uint64_t)V);
		for (int i = 0; i < V; i++) {
			float s = i < VT ? tk->scores[i] : 0.0f;
			put(b, &s, 4);
		}
	} else {
		rl_bpe_spec spec;
		if (rl_tokenizer_bpe_spec(tk, &spec)) {
			free(types);
			return -1;
		}
		const char *pre = pre_name(&spec);
		if (!pre) {
			rl_seterr("the tokenizer's pre-tokenizer (its split regex, NFC and ignore_merges) is none of those "
				  "llama.cpp names (qwen2, llama-bpe, gpt-2), so llama.cpp would tokenize differently");
			free(types);
			return -1;
		}
		size_t longest = 0;
		for (int i = 0; i < VT; i++)
			longest = (size_t)tk->piece_len[i] > longest ? (size_t)tk->piece_len[i] : longest;
		int *flags = malloc((size_t)V * sizeof *flags);
		char *s = malloc(4 * longest + 8); /* two pieces of up to 2 bytes per byte, and a space */
		if (!flags || !s) {
			free(flags);
			free(s);
			free(types);
			rl_seterr("out of memory");
			return -1;
		}
		for (int i = 0; i < V; i++)
			flags[i] = -1;
		for (int k = 0; k < spec.nadded; k++)
			if (spec.added[2 * k] >= 0 && spec.added[2 * k] < V)
				flags[spec.added[2 * k]] = spec.added[2 * k + 1];
		kv_str(b, "tokenizer.ggml.model", "gpt2");
		kv_str(b, "tokenizer.ggml.pre", pre);
		kv_array(b, "tokenizer.ggml.tokens", RL_GGUF_STRING, (uint64_t)V);
		for (int i = 0; i < V; i++) {
			int n = i < VT ? tk->piece_len[i] : 0;
			if (i < VT && flags[i] >= 0) { /* an added token, as written */
				put_str(b, tk->pieces[i], (size_t)n);
				types[i] = flags[i] & RL_ADDED_SPECIAL ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
			} else if (n == 0) { /* no token has this id */
				put_pad_token(b, i);
				types[i] = TOKEN_UNUSED;
			} else {
				put_str(b, s, byte_level(tk->pieces[i], n, s));
				types[i] = TOKEN_NORMAL;
			}
		}
		kv_array(b, "tokenizer.ggml.merges", RL_GGUF_STRING, (uint64_t)spec.nmerges);
		for (int r = 0; r < spec.nmerges; r++) {
			int l = spec.merges[2 * r], rt = spec.merges[2 * r + 1];
			size_t k = byte_level(tk->pieces[l], tk->piece_len[l], s);
			s[k++] = ' ';
			k += byte_level(tk->pieces[rt], tk->piece_len[rt], s + k);
			put_str(b, s, k);
		}
		free(flags);
		free(s);
	}
	kv_array(b, "tokenizer.ggml.token_type", RL_GGUF_I32, (uint64_t)V);
	put(b, types, (size_t)V * sizeof *types);
	free(types);
	if (tk->bos_id >= 0)
		kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)tk->bos_id);
	if (tk->eos_id >= 0)
		kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)tk->eos_id);
	if (unk >= 0)
		kv_u32(b, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
	kv_bool(b, "tokenizer.ggml.add_bos_token", tk->bos_id >= 0);
	kv_bool(b, "tokenizer.ggml.add_eos_token", 0);
	if (tk->kind == RL_TOKENIZER_SENTENCEPIECE)
		kv_bool(b, "tokenizer.ggml.add_space_prefix", tk->add_dummy_prefix);
	return 0;
}

/* ---- tensors ---- */

typedef struct {
	char name[80];
	const rl_tensor *t;   /* the model's, or NULL with data set */
	const float *data;    /* f32 rows not in the model (adapters, rope_freqs) */
	rl_dtype src, out;    /* stored and written */
	int ndim;
	uint64_t rows, cols;  /* ours: outermost first (rows = 1 for vectors) */
	int dir;              /* RoPE row permutation (rl_gguf_source_row), 0 none */
	uint64_t D;
	size_t bytes;
	uint64_t offset;
} plan;

static size_t padding(size_t n) { return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT; }

static void put_tensor_info(buffer *b, const plan *p)
{
	put_str(b, p->name, strlen(p->name));
	put_u32(b, (uint32_t)p->ndim);
	put_u64(b, p->cols); /* innermost first */
	if (p->ndim == 2)
		put_u64(b, p->rows);
	put_u32(b, (uint32_t)rl_gguf_ggml_type(p->out));
	put_u64(b, p->offset);
}

static int put_bytes(FILE *f, const void *p, size_t n, const char *path)
{
	if (n && fwrite(p, 1, n, f) != n) {
		rl_seterr("%s: %s", path, strerror(errno ? errno : EIO));
		return -1;
	}
	return 0;
}

/* Writes one tensor's data: rows in output order, converted where the
 * written dtype differs from the stored one. A vector (rows = 1) whose
 * elements are permuted is handled as cols rows of one element. */
static int write_tensor_data(FILE *f, const plan *p, const char *path)
{
	const void *base = p->t ? p->t->data : (const void *)p->data;
	uint64_t rows = p->rows, cols = p->cols;
	if (p->ndim == 1 && p->dir)
		rows = cols, cols = 1;
	size_t src_row = rl_row_bytes(p->src, cols), out_row = rl_row_bytes(p->out, cols);
	if (p->src == p->out && !p->dir)
		return put_bytes(f, base, src_row * rows, path);
	float *x = malloc((size_t)cols * sizeof *x);
	void *y = malloc(out_row ? out_row : 1);
	int rc = -1;
	if (!x || !y) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	for (uint64_t r = 0; r < rows; r++) {
		const char *row = (const char *)base + src_row * rl_gguf_source_row(r, p->D, p->dir);
		const void *out = row;
		if (p->src != p->out) {
			rl_dtypes[p->src].to_float(row, x, cols);
			if (p->out == RL_F16) {
				for (uint64_t i = 0; i < cols; i++)
					((uint16_t *)y)[i] = rl_f32_to_f16(x[i]);
				out = y;
			} else {
				out = x;
			}
		}
		if (put_bytes(f, out, out_row, path))
			goto done;
	}
	rc = 0;
done:
	free(x);
	free(y);
	return rc;
}

/* Lays out the tensors (offsets), writes the header and the data, atomically. */
static int write_file(const char *path, buffer *kv, plan *ps, int n)
{
	buffer h = { 0 };
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		ps[i].bytes = rl_row_bytes(ps[i].out, ps[i].cols) * ps[i].rows;
		ps[i].offset = off;
		off += ps[i].bytes + padding(ps[i].bytes);
	}
	put(&h, "GGUF", 4);
	put_u32(&h, 3);
	put_u64(&h, (uint64_t)n);
	put_u64(&h, kv->nkv);
	put(&h, kv->p, kv->n);
	for (int i = 0; i < n; i++)
		put_tensor_info(&h, &ps[i]);
	static const unsigned char zeros[ALIGNMENT];
	put(&h, zeros, padding(h.n));
	if (h.failed || kv->failed) {
		free(h.p);
		rl_seterr("%s: out of memory for the header", path);
		return -1;
	}
	rl_afile af;
	if (rl_afile_open(&af, path)) {
		free(h.p);
		return -1;
	}
	int rc = put_bytes(af.f, h.p, h.n, path);
	free(h.p);
	for (int i = 0; rc == 0 && i < n; i++)
		if (write_tensor_data(af.f, &ps[i], path) || put_bytes(af.f, zeros, padding(ps[i].bytes), path))
			rc = -1;
	if (rc) {
		rl_afile_abort(&af);
		return -1;
	}
	return rl_afile_commit(&af);
}

/* llama.cpp's general.file_type for the dtype that holds most weights */
static uint32_t file_type(rl_dtype dt)
{
	switch (dt) {
	case RL_F16: return 1;
	case RL_Q4_0: return 2;
	case RL_Q8_0: return 7;
	case RL_Q2_K: return 10;
	case RL_Q4_K: return 15; /* Q4_K_M */
	case RL_BF16: return 32;
	default: return 0;       /* all f32 */
	}
}

/* The architecture as llama.cpp defines it must match the config. */
static int check_arch(const rl_model *m)
{
	const rl_config *c = &m->cfg;
	const char *a = m->arch;
	if (strcmp(a, "llama") && strcmp(a, "qwen2") && strcmp(a, "qwen3")) {
		rl_seterr("%s: architecture \"%s\" (llama, qwen2 and qwen3 are written)", m->origin, a);
		return -1;
	}
	int want_norm = !strcmp(a, "qwen3"), want_bias = !strcmp(a, "qwen2");
	if (c->qk_norm != want_norm || (c->qkv_bias && !want_bias && strcmp(a, "llama")) ||
	    (want_bias && !c->qkv_bias)) {
		rl_seterr("%s: a %s model %s q/k norms and %s q/k/v biases, which llama.cpp's %s does not take",
			  m->origin, a, c->qk_norm ? "with" : "without", c->qkv_bias ? "with" : "without", a);
		return -1;
	}
	if (c->rope_scaling == RL_ROPE_SCALING_LLAMA3 && strcmp(a, "llama")) {
		rl_seterr("%s: llama3 RoPE scaling on a %s model has no GGUF form", m->origin, a);
		return -1;
	}
	if (c->head_dim % 2) {
		rl_seterr("%s: head_dim %d is odd", m->origin, c->head_dim);
		return -1;
	}
	return 0;
}

/* Sets dir and D of a plan for its model tensor name. */
static void plan_rope(plan *p, const rl_model *m)
{
	uint64_t heads;
	p->dir = rl_gguf_rope_permutation(m, p->name, &heads, &p->D);
}

int rl_gguf_write_model(const rl_model *m, const char *path, const rl_gguf_write_opts *o)
{
	rl_gguf_write_opts defaults = { RL_F32, NULL };
	if (!o)
		o = &defaults;
	if (o->other != RL_F32 && o->other != RL_F16) {
		rl_seterr("%s: tensors without a ggml type are written as f32 or f16, not %s", path,
			  rl_dtypes[o->other].name);
		return -1;
	}
	if (check_arch(m))
		return -1;
	const rl_config *c = &m->cfg;
	int n = m->ntensors + (c->rope_scaling == RL_ROPE_SCALING_LLAMA3);
	plan *ps = calloc((size_t)n, sizeof *ps);
	float *freqs = NULL;
	buffer kv = { 0 };
	int rc = -1, exact = 1;
	if (!ps) {
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	/* the dtype holding most weights names the file type */
	double count[RL_NDTYPES] = { 0 };
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		plan *p = &ps[i];
		snprintf(p->name, sizeof p->name, "%s", t->name);
		p->t = t;
		p->src = t->dtype;
		p->ndim = t->ndim;
		p->rows = t->ndim == 2 ? t->shape[0] : 1;
		p->cols = t->shape[t->ndim - 1];
		if (t->ndim == 1)
			p->out = RL_F32;
		else if (rl_gguf_ggml_type(t->dtype) >= 0)
			p->out = t->dtype;
		else
			p->out = o->other;
		exact &= p->out == p->src || p->out == RL_F32;
		if (t->ndim == 2)
			count[p->out] += (double)p->rows * (double)p->cols;
		plan_rope(p, m);
	}
	if (c->rope_scaling == RL_ROPE_SCALING_LLAMA3) {
		/* llama.cpp divides each pair's frequency by its factor */
		int half = c->head_dim / 2;
		plan *p = &ps[n - 1];
		if (!(freqs = malloc((size_t)half * sizeof *freqs))) {
			rl_seterr("%s: out of memory", path);
			goto done;
		}
		for (int j = 0; j < half; j++)
			freqs[j] = (float)(pow(c->rope_theta, -2.0 * j / c->head_dim) / rl_rope_freq(c, j));
		snprintf(p->name, sizeof p->name, "rope_freqs.weight");
		p->data = freqs;
		p->src = p->out = RL_F32;
		p->ndim = 1;
		p->rows = 1;
		p->cols = (uint64_t)half;
	}
	rl_dtype most = RL_F32;
	for (int d = 0; d < RL_NDTYPES; d++)
		if (count[d] > count[most])
			most = (rl_dtype)d;
	const char *name = o->name;
	if (!name) {
		name = strrchr(m->origin, '/');
		name = name && name[1] ? name + 1 : m->origin;
	}
	kv_str(&kv, "general.architecture", m->arch);
	kv_str(&kv, "general.type", "model");
	kv_str(&kv, "general.name", name);
	kv_u32(&kv, "general.file_type", file_type(most));
	kv_u32(&kv, "general.quantization_version", 2);
	kv_u32(&kv, akey(m, "vocab_size"), (uint32_t)c->vocab_size);
	kv_u32(&kv, akey(m, "context_length"), (uint32_t)c->seq_len);
	kv_u32(&kv, akey(m, "embedding_length"), (uint32_t)c->dim);
	kv_u32(&kv, akey(m, "block_count"), (uint32_t)c->n_layers);
	kv_u32(&kv, akey(m, "feed_forward_length"), (uint32_t)c->hidden_dim);
	kv_u32(&kv, akey(m, "attention.head_count"), (uint32_t)c->n_heads);
	kv_u32(&kv, akey(m, "attention.head_count_kv"), (uint32_t)c->n_kv_heads);
	kv_u32(&kv, akey(m, "rope.dimension_count"), (uint32_t)c->head_dim);
	if (c->head_dim * c->n_heads != c->dim) {
		kv_u32(&kv, akey(m, "attention.key_length"), (uint32_t)c->head_dim);
		kv_u32(&kv, akey(m, "attention.value_length"), (uint32_t)c->head_dim);
	}
	kv_f32(&kv, akey(m, "rope.freq_base"), c->rope_theta);
	kv_f32(&kv, akey(m, "attention.layer_norm_rms_epsilon"), c->norm_eps);
	if (c->rope_scaling == RL_ROPE_SCALING_LINEAR) {
		kv_str(&kv, akey(m, "rope.scaling.type"), "linear");
		kv_f32(&kv, akey(m, "rope.scaling.factor"), c->rope_factor);
	}
	if (put_tokenizer(&kv, m)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}
	/* where the weights came from, for adapters made for them (tstream(5) IDENTITY) */
	char content[65];
	if (m->source[0])
		kv_str(&kv, "recover.source", m->source);
	if (exact) {
		if (rl_model_content(m, content))
			goto done;
		kv_str(&kv, "recover.content", content);
	}
	rc = write_file(path, &kv, ps, n);
done:
	free(kv.p);
	free(ps);
	free(freqs);
	return rc;
}

int rl_gguf_write_adapter(const rl_adapter *a, const rl_model *m, const char *path)
{
	if (check_arch(m))
		return -1;
	if (a->ntensors != m->ntensors || a->ntargets < 1 || a->rank < 1) {
		rl_seterr("%s: the adapter was made for another model than %s", path, m->origin);
		return -1;
	}
	if (!(a->alpha != 0 && isfinite(a->alpha))) {
		rl_seterr("%s: alpha %g: llama.cpp takes adapter.lora.alpha 0 as no scaling at all", path, a->alpha);
		return -1;
	}
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		const rl_tensor *t = g->tensor >= 0 && g->tensor < m->ntensors ? &m->tensors[g->tensor] : NULL;
		if (!t || strcmp(t->name, g->name) || t->ndim != 2 || t->shape[0] != (uint64_t)g->OC ||
		    t->shape[1] != (uint64_t)g->IC) {
			rl_seterr("%s: adapter target %s (%d x %d) is not a weight of %s", path, g->name, g->OC, g->IC,
				  m->origin);
			return -1;
		}
	}
	int n = 2 * a->ntargets, rc = -1;
	plan *ps = calloc((size_t)n, sizeof *ps);
	buffer kv = { 0 };
	if (!ps) {
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		plan *pa = &ps[2 * k], *pb = &ps[2 * k + 1];
		snprintf(pa->name, sizeof pa->name, "%s.lora_a", g->name);
		snprintf(pb->name, sizeof pb->name, "%s.lora_b", g->name);
		pa->data = g->a, pa->rows = (uint64_t)a->rank, pa->cols = (uint64_t)g->IC;
		pb->data = g->b, pb->rows = (uint64_t)g->OC, pb->cols = (uint64_t)a->rank;
		pa->src = pa->out = pb->src = pb->out = RL_F32;
		pa->ndim = pb->ndim = 2;
		/* B's rows are the weight's output rows: they move as the weight's do */
		uint64_t heads;
		pb->dir = rl_gguf_rope_permutation(m, g->name, &heads, &pb->D);
	}
	kv_str(&kv, "general.architecture", m->arch);
	kv_str(&kv, "general.type", "adapter");
	kv_str(&kv, "adapter.type", "lora");
	kv_f32(&kv, "adapter.lora.alpha", a->alpha);
	kv_str(&kv, "recover.base.content", a->base_content);
	kv_str(&kv, "recover.base.source", a->base_source);
	rc = write_file(path, &kv, ps, n);
	free(kv.p);
	free(ps);
	return rc;
}
