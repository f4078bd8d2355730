/* test_gguf_write.c: GGUF export (gguf_write.c) read back by our GGUF reader.
 *
 * - ggml-typed tensors (f32, f16, bf16, q4_0, q8_0, q4_K, q2_K) come back
 *   byte for byte, and the model gives bit-identical logits;
 * - our group formats come back as f32 exactly their dequantized values (the
 *   logits bit-identical to those of the dequantized model), or as f16 within
 *   f16's rounding;
 * - a rotate-half llama (HF's layout) is written with its q/k rows permuted
 *   to llama.cpp's interleaved pairs, and a LoRA adapter's lora_b rows with
 *   them: the reloaded model, with and without the reloaded adapter, gives
 *   the logits of the original (within 1e-5, the RoPE arithmetic differs);
 * - the tokenizers (SentencePiece and byte-level BPE) encode as before;
 * - bad input: unwritable paths, adapters for another model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "gguf.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "quant.h"
#include "sample.h"
#include "t.h"

/* GGUF_WRITE_KEEP=DIR keeps the files there for tests/test_gguf_export.sh */
static char dir[512] = "/tmp/rlggufw.XXXXXX";

static const char *tmp(const char *name)
{
	static char path[4][800];
	static int k;
	k = (k + 1) % 4;
	snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
	return path[k];
}

static int logits(const rl_model *m, const int *tokens, int T, float *out)
{
	rl_forward *f = rl_forward_new(m, T, T);
	rl_seq s = { .ntok = T, .tokens = tokens };
	int rc = !f || rl_forward_run(f, NULL, 1, &s, out) ? -1 : 0;
	rl_forward_free(f);
	return rc;
}

/* Logits of a and b on the same tokens: *identical set when every bit
 * agrees; returns the relative error (1 on failure). */
static double compare_logits(const rl_model *a, const rl_model *b, int *identical)
{
	int T = 10, V = a->cfg.vocab_size;
	int tokens[10] = { 1, 5, 200, 7, 33, 99, 250, 3, 17, 64 };
	for (int i = 0; i < T; i++)
		tokens[i] %= V;
	float *la = malloc((size_t)T * V * sizeof(float)), *lb = malloc((size_t)T * V * sizeof(float));
	double e = 1;
	*identical = 0;
	if (la && lb && b->cfg.vocab_size == V && !logits(a, tokens, T, la) && !logits(b, tokens, T, lb)) {
		e = t_rel_err(lb, la, (size_t)T * V);
		*identical = !memcmp(la, lb, (size_t)T * V * sizeof(float));
	}
	free(la);
	free(lb);
	return e;
}

/* With GGUF_WRITE_KEEP: the logits of m (with its adapter, if any) on the
 * tokens compare_logits uses, as JSON beside the GGUF file, for
 * tests/ref/llamacpp_logits.mjs to hold llama.cpp's against. */
static int keep;

static void keep_logits(const rl_model *m, const char *gguf)
{
	if (!keep)
		return;
	int T = 10, V = m->cfg.vocab_size;
	int tokens[10] = { 1, 5, 200, 7, 33, 99, 250, 3, 17, 64 };
	for (int i = 0; i < T; i++)
		tokens[i] %= V;
	float *l = malloc((size_t)T * V * sizeof(float));
	char path[900];
	snprintf(path, sizeof path, "%s.logits.json", gguf);
	FILE *f = fopen(path, "w");
	if (!l || !f || logits(m, tokens, T, l))
		goto done;
	fprintf(f, "{\"tokens\": [");
	for (int i = 0; i < T; i++)
		fprintf(f, "%s%d", i ? ", " : "", tokens[i]);
	fprintf(f, "], \"vocab\": %d, \"logits\": [", V);
	for (size_t i = 0; i < (size_t)T * V; i++)
		fprintf(f, "%s%.9g", i ? ", " : "", l[i]);
	/* with an adapter, the base model's too: llama.cpp must be nearer ours with it than without */
	struct rl_adapter *a = m->adapter;
	((rl_model *)m)->adapter = NULL;
	if (a && !logits(m, tokens, T, l)) {
		fprintf(f, "], \"base_logits\": [");
		for (size_t i = 0; i < (size_t)T * V; i++)
			fprintf(f, "%s%.9g", i ? ", " : "", l[i]);
	}
	((rl_model *)m)->adapter = a;
	fprintf(f, "]}\n");
done:
	if (f)
		fclose(f);
	free(l);
}

/* ---- models quantized in memory ---- */

/* Replaces the 2-D tensors' data by their quantization to pick(t)
 * (RL_NDTYPES: left alone); *saved keeps the originals for restore(). */
static int quantize(rl_model *m, rl_dtype (*pick)(const rl_tensor *t), void ***saved)
{
	*saved = calloc((size_t)m->ntensors, sizeof **saved);
	for (int i = 0; i < m->ntensors; i++) {
		rl_tensor *t = &m->tensors[i];
		rl_dtype dt = t->ndim == 2 ? pick(t) : RL_NDTYPES;
		if (dt == RL_NDTYPES || dt == t->dtype)
			continue;
		void *out;
		size_t bytes;
		rl_quant_stats st;
		if (rl_quantize_tensor(t, dt, RL_QUANT_RTN, NULL, &out, &bytes, &st))
			return -1;
		(*saved)[i] = t->data;
		t->data = out;
		t->dtype = dt;
		t->bytes = bytes;
	}
	m->content[0] = 0; /* the content is what is stored now */
	return 0;
}

static void restore(rl_model *m, void **saved)
{
	for (int i = 0; i < m->ntensors; i++)
		if (saved[i]) {
			free(m->tensors[i].data);
			m->tensors[i].data = saved[i];
			m->tensors[i].dtype = RL_F32;
		}
	free(saved);
}

/* A copy of m whose 2-D tensors are f32: what the quantized weights dequantize to. */
static int dequantized(const rl_model *m, rl_model *d)
{
	*d = *m;
	d->tensors = NULL;
	d->layers = NULL;
	d->mapping = NULL;
	d->mappings = NULL;
	d->nmappings = 0;
	d->adapter = NULL;
	memset(&d->tok, 0, sizeof d->tok);
	if (rl_model_layout(d))
		return -1;
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *s = &m->tensors[i];
		rl_tensor *t = &d->tensors[i];
		size_t n = (size_t)s->shape[0] * (s->ndim == 2 ? s->shape[1] : 1), cols = s->shape[s->ndim - 1];
		float *p = malloc(n * sizeof *p);
		for (size_t r = 0; r < n / cols; r++)
			rl_dtypes[s->dtype].to_float((const char *)s->data + r * rl_row_bytes(s->dtype, cols), p + r * cols, cols);
		t->data = p;
		t->dtype = RL_F32;
		t->bytes = n * sizeof *p;
	}
	return rl_tokenizer_byte_level(&d->tok, d->cfg.vocab_size) ? -1 : 0;
}

/* ---- checks ---- */

/* Every tensor of b (reloaded from GGUF) holds what a's does: the same bytes
 * for ggml types, the same f32 values, or f16 of them with other == RL_F16;
 * rows permuted as the writer says. Returns a description of the first
 * difference, or NULL. */
static const char *same_tensors(const rl_model *a, const rl_model *b, rl_dtype other)
{
	static char why[300];
	if (a->ntensors != b->ntensors)
		return "a different number of tensors";
	for (int i = 0; i < a->ntensors; i++) {
		const rl_tensor *s = &a->tensors[i], *t = &b->tensors[i];
		uint64_t rows = s->ndim == 2 ? s->shape[0] : s->shape[0], cols = s->ndim == 2 ? s->shape[1] : 1;
		int ggml = rl_gguf_ggml_type(s->dtype) >= 0 || s->ndim == 1;
		rl_dtype want = s->ndim == 1 ? RL_F32 : ggml ? s->dtype : other;
		if (strcmp(s->name, t->name) || t->dtype != want || s->ndim != t->ndim || s->shape[0] != t->shape[0] ||
		    (s->ndim == 2 && s->shape[1] != t->shape[1])) {
			snprintf(why, sizeof why, "%s: came back as %s %s, wanted %s", s->name, t->name,
				 rl_dtypes[t->dtype].name, rl_dtypes[want].name);
			return why;
		}
		uint64_t heads, D = 1;
		int dir = rl_gguf_rope_permutation(a, s->name, &heads, &D);
		size_t sb = rl_row_bytes(s->dtype, cols), tb = rl_row_bytes(t->dtype, cols);
		float *x = malloc(cols * sizeof *x);
		uint16_t *h = malloc(cols * sizeof *h);
		for (uint64_t r = 0; r < rows; r++) {
			const char *src = (const char *)s->data + sb * rl_gguf_source_row(r, D, dir);
			const char *got = (const char *)t->data + tb * r;
			int bad;
			if (s->dtype == t->dtype) {
				bad = memcmp(src, got, sb) != 0;
			} else {
				rl_dtypes[s->dtype].to_float(src, x, cols);
				if (t->dtype == RL_F16) {
					for (uint64_t j = 0; j < cols; j++)
						h[j] = rl_f32_to_f16(x[j]);
					bad = memcmp(h, got, tb) != 0;
				} else {
					bad = memcmp(x, got, tb) != 0;
				}
			}
			if (bad) {
				snprintf(why, sizeof why, "%s: row %llu differs", s->name, (unsigned long long)r);
				free(x);
				free(h);
				return why;
			}
		}
		free(x);
		free(h);
	}
	return NULL;
}

static int same_config(const rl_config *a, const rl_config *b)
{
	return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
	       a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim &&
	       a->vocab_size == b->vocab_size && a->seq_len == b->seq_len && (float)a->rope_theta == (float)b->rope_theta &&
	       (float)a->norm_eps == (float)b->norm_eps && a->rope_scaling == b->rope_scaling &&
	       (float)a->rope_factor == (float)b->rope_factor && a->qk_norm == b->qk_norm && a->qkv_bias == b->qkv_bias &&
	       a->tied_embeddings == b->tied_embeddings;
}

/* The two tokenizers encode some texts to the same ids and decode them alike. */
static int same_tokenizer(const rl_tokenizer *a, const rl_tokenizer *b)
{
	static const char *texts[] = { "Once upon a time, there was a little girl named Lily.",
				       "  two  spaces\tand a tab\nnew line ", "caf\xc3\xa9 na\xc3\xafve \xe4\xbd\xa0\xe5\xa5\xbd 42!",
				       "" };
	if (a->kind != b->kind || a->bos_id != b->bos_id || a->eos_id != b->eos_id)
		return 0;
	for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
		int *ia, *ib;
		size_t na, nb;
		if (rl_encode(a, texts[k], strlen(texts[k]), 1, 1, &ia, &na))
			return 0;
		if (rl_encode(b, texts[k], strlen(texts[k]), 1, 1, &ib, &nb)) {
			free(ia);
			return 0;
		}
		int ok = na == nb && !memcmp(ia, ib, na * sizeof *ia);
		for (size_t i = 0; ok && i < na; i++) {
			size_t la, lb;
			const char *pa = rl_decode_piece(a, i ? ia[i - 1] : -1, ia[i], &la);
			const char *pb = rl_decode_piece(b, i ? ib[i - 1] : -1, ib[i], &lb);
			ok = la == lb && !memcmp(pa, pb, la);
		}
		free(ia);
		free(ib);
		if (!ok)
			return 0;
	}
	return 1;
}

/* Writes m as GGUF, loads it back (rl_model_load, as every tool does) into *b. */
static int export_load(const rl_model *m, const char *file, rl_dtype other, rl_model *b)
{
	rl_gguf_write_opts o = { other, NULL };
	if (rl_gguf_write_model(m, tmp(file), &o))
		return -1;
	return rl_model_load(tmp(file), NULL, b);
}

/* stories260K (rows of 64 and 172): our group formats to f32 (exact) and f16 */
static rl_dtype pick_groups(const rl_tensor *t)
{
	return strstr(t->name, "ffn_gate") || strstr(t->name, "ffn_up") ? RL_Q2G32 : RL_Q4G32;
}

static void check_stories(void)
{
	char path[512];
	snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", t_shared());
	if (access(path, R_OK)) {
		t_skip("gguf_write_stories", "no stories260K in ../shared");
		return;
	}
	rl_model m, b, d;
	void **saved;
	if (rl_model_load(path, NULL, &m) || quantize(&m, pick_groups, &saved)) {
		CHECK(0, "gguf_write_stories", "%s", rl_err());
		return;
	}
	int identical;
	keep_logits(&m, tmp("s32.gguf"));
	if (export_load(&m, "s32.gguf", RL_F32, &b)) {
		CHECK(0, "gguf_write_stories_f32", "%s", rl_err());
	} else {
		const char *why = same_tensors(&m, &b, RL_F32);
		CHECK(!why && same_config(&m.cfg, &b.cfg) && !strcmp(b.arch, "llama") &&
		      b.cfg.rope_style == RL_ROPE_INTERLEAVED, "gguf_write_stories_f32_tensors", "%s",
		      why ? why : "config or architecture differ");
		CHECK(same_tokenizer(&m.tok, &b.tok) && b.tok.add_dummy_prefix == m.tok.add_dummy_prefix,
		      "gguf_write_stories_tokenizer", "the SentencePiece tokenizer encodes differently after the round trip");
		/* the group formats' exact values: the logits of the dequantized model, bit for bit */
		if (dequantized(&m, &d) == 0) {
			double e = compare_logits(&d, &b, &identical);
			CHECK(identical, "gguf_write_stories_f32_logits", "not bit-identical to the dequantized model (rel %g)", e);
			rl_model_free(&d);
		} else {
			CHECK(0, "gguf_write_stories_f32_logits", "%s", rl_err());
		}
		double e = compare_logits(&m, &b, &identical);
		CHECK(e < 1e-5, "gguf_write_stories_f32_vs_quantized", "relative error %g against the quantized model", e);
		/* the identity goes along when the export is exact */
		char c[65];
		rl_model_content(&m, c);
		CHECK(!strcmp(b.content, c) && !strcmp(b.source, m.source), "gguf_write_stories_identity",
		      "content %.12s source %.12s, wanted %.12s %.12s", b.content, b.source, c, m.source);
		rl_model_free(&b);
	}
	if (export_load(&m, "s16.gguf", RL_F16, &b)) {
		CHECK(0, "gguf_write_stories_f16", "%s", rl_err());
	} else {
		const char *why = same_tensors(&m, &b, RL_F16);
		CHECK(!why, "gguf_write_stories_f16_tensors", "%s", why);
		/* f16 keeps 11 significant bits of each dequantized weight */
		double e = compare_logits(&m, &b, &identical);
		CHECK(e < 2e-3, "gguf_write_stories_f16_logits", "relative error %g (tolerance 2e-3)", e);
		CHECK(b.content[0] == 0 && !strcmp(b.source, m.source), "gguf_write_stories_f16_identity",
		      "an inexact export must carry the source (%.12s) but no content (%.12s)", b.source, b.content);
		rl_model_free(&b);
	}
	restore(&m, saved);
	rl_model_free(&m);
}

/* a random model whose rows are multiples of 256, in every ggml type */
static rl_dtype pick_ggml(const rl_tensor *t)
{
	if (strstr(t->name, "ffn_gate") || strstr(t->name, "ffn_up"))
		return RL_Q2_K;
	if (strstr(t->name, "attn_v"))
		return RL_Q8_0;
	if (strstr(t->name, "attn_output"))
		return RL_Q4_0;
	if (strstr(t->name, "token_embd"))
		return RL_F16;
	if (strstr(t->name, "output.weight"))
		return RL_BF16;
	return RL_Q4_K;
}

static void random_config(rl_config *c, rl_rope_style style)
{
	memset(c, 0, sizeof *c);
	c->dim = 256, c->hidden_dim = 512, c->n_layers = 2, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 64;
	c->vocab_size = 512, c->seq_len = 128, c->rope_theta = 10000, c->norm_eps = 1e-5;
	c->rope_style = style;
}

/* an adapter on q, k, gate and up with random A and B */
static int random_adapter(const rl_model *m, rl_adapter *a)
{
	if (rl_adapter_new(a, m, "attn_q,attn_k,ffn_gate,ffn_up", 4, 8.0))
		return -1;
	uint64_t s = 99;
	for (size_t i = 0; i < a->nparams; i++)
		a->params[i] = 0.5f * ((float)(rl_splitmix64(&s) >> 40) / 16777216.0f - 0.5f);
	return 0;
}

static int same_params(const rl_adapter *a, const rl_adapter *b)
{
	return a->rank == b->rank && a->alpha == b->alpha && a->ntargets == b->ntargets && a->nparams == b->nparams &&
	       !memcmp(a->params, b->params, a->nparams * sizeof(float));
}

/* The adapter through GGUF onto the original model and onto the exported one. */
static void check_adapter(rl_model *m, const char *gguf_model, const char *label)
{
	char name[128], arg[600];
	rl_adapter a, b;
	if (random_adapter(m, &a)) {
		CHECK(0, label, "%s", rl_err());
		return;
	}
	snprintf(name, sizeof name, "%s_adapter_roundtrip", label);
	char file[160];
	snprintf(file, sizeof file, "%s.lora.gguf", label);
	const char *path = tmp(file);
	if (rl_gguf_write_adapter(&a, m, path) || rl_adapter_read(path, m, 0, &b)) {
		CHECK(0, name, "%s", rl_err());
		rl_adapter_free(&a);
		return;
	}
	CHECK(same_params(&a, &b) && !strcmp(a.base_content, b.base_content), name,
	      "the adapter read back differs (rank %d/%d, %zu/%zu parameters)", a.rank, b.rank, a.nparams, b.nparams);
	rl_adapter_free(&b);
	/* MODEL.gguf+ADAPTER.gguf gives the logits of the original model with the adapter */
	rl_model g;
	snprintf(arg, sizeof arg, "%s+%s", gguf_model, path);
	snprintf(name, sizeof name, "%s_adapter_logits", label);
	if (rl_model_load(arg, NULL, &g)) {
		CHECK(0, name, "%s", rl_err());
	} else {
		rl_adapter copy;
		rl_adapter_read(path, m, 0, &copy);
		rl_model_attach_adapter(m, &copy);
		keep_logits(m, path);
		int identical;
		double e = compare_logits(m, &g, &identical);
		CHECK(g.adapter && e < 1e-5, name, "relative error %g (1e-5)", e);
		/* and the adapter does change them */
		rl_adapter_free(m->adapter);
		free(m->adapter);
		m->adapter = NULL;
		double e0 = compare_logits(m, &g, &identical);
		snprintf(name, sizeof name, "%s_adapter_matters", label);
		CHECK(e0 > 1e-2, name, "the logits moved by only %g with the adapter", e0);
		rl_model_free(&g);
	}
	rl_adapter_free(&a);
}

static void check_random(rl_rope_style style, const char *label)
{
	rl_config c;
	rl_model m, b;
	void **saved;
	char name[128], file[64];
	random_config(&c, style);
	if (rl_model_random(&c, "llama", 7, &m) || quantize(&m, pick_ggml, &saved)) {
		CHECK(0, label, "%s", rl_err());
		return;
	}
	snprintf(file, sizeof file, "%s.gguf", label);
	snprintf(name, sizeof name, "%s_load", label);
	keep_logits(&m, tmp(file));
	if (export_load(&m, file, RL_F32, &b)) {
		CHECK(0, name, "%s", rl_err());
	} else {
		const char *why = same_tensors(&m, &b, RL_F32);
		snprintf(name, sizeof name, "%s_tensors", label);
		CHECK(!why && same_config(&m.cfg, &b.cfg) && b.cfg.rope_style == RL_ROPE_INTERLEAVED, name, "%s",
		      why ? why : "config differs or not interleaved");
		int identical;
		double e = compare_logits(&m, &b, &identical);
		snprintf(name, sizeof name, "%s_logits", label);
		if (style == RL_ROPE_INTERLEAVED)
			CHECK(identical, name, "not bit-identical (rel %g)", e);
		else /* the rows were permuted and RoPE runs on pairs the other way: same values, other rounding */
			CHECK(e < 1e-5, name, "relative error %g (1e-5)", e);
		snprintf(name, sizeof name, "%s_tokenizer", label);
		CHECK(same_tokenizer(&m.tok, &b.tok) && b.tok.add_dummy_prefix == m.tok.add_dummy_prefix, name,
		      "the byte-level tokenizer encodes differently");
		rl_model_free(&b);
		check_adapter(&m, tmp(file), label);
	}
	restore(&m, saved);
	rl_model_free(&m);
}

/* the tiny HF fixtures: llama (rotate-half: permuted), qwen2 (biases), linear
 * RoPE scaling, qwen3 (q/k norms, bf16, byte-level BPE) */
static void check_hf(const char *arch, int expect_identical)
{
	char path[256], name[128], file[64];
	rl_model m, b;
	snprintf(path, sizeof path, "tests/fixtures/hf/%s", arch);
	snprintf(name, sizeof name, "gguf_write_hf_%s", arch);
	snprintf(file, sizeof file, "hf_%s.gguf", arch);
	if (rl_model_load(path, NULL, &m)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	keep_logits(&m, tmp(file));
	if (export_load(&m, file, RL_F32, &b)) {
		CHECK(0, name, "%s", rl_err());
		rl_model_free(&m);
		return;
	}
	const char *why = same_tensors(&m, &b, RL_F32);
	int identical;
	double e = compare_logits(&m, &b, &identical);
	CHECK(!why && same_config(&m.cfg, &b.cfg) && !strcmp(m.arch, b.arch) &&
	      (expect_identical ? identical : e < 1e-5), name, "%s; logits rel %g%s", why ? why : "tensors alike", e,
	      expect_identical && !identical ? ", not bit-identical" : "");
	snprintf(name, sizeof name, "gguf_write_hf_%s_tokenizer", arch);
	CHECK(same_tokenizer(&m.tok, &b.tok), name, "encodes differently after the round trip");
	rl_model_free(&b);
	if (!strcmp(arch, "llama") || !strcmp(arch, "qwen3")) {
		snprintf(name, sizeof name, "gguf_write_hf_%s", arch);
		check_adapter(&m, tmp(file), name);
	}
	rl_model_free(&m);
}

/* llama3 RoPE scaling becomes llama.cpp's rope_freqs.weight: each pair's
 * frequency divisor */
static void check_llama3_freqs(void)
{
	rl_model m;
	rl_gguf g;
	if (rl_model_load("tests/fixtures/hf/llama3rope", NULL, &m)) {
		CHECK(0, "gguf_write_llama3_rope_freqs", "%s", rl_err());
		return;
	}
	int ok = 0;
	double worst = 0;
	if (rl_gguf_write_model(&m, tmp("l3.gguf"), NULL) == 0 && rl_gguf_open(&g, tmp("l3.gguf")) == 0) {
		for (int i = 0; i < g.ntensors; i++) {
			const rl_gguf_tensor *t = &g.tensors[i];
			if (strcmp(t->name, "rope_freqs.weight"))
				continue;
			ok = t->ndim == 1 && t->ne[0] == (uint64_t)m.cfg.head_dim / 2 && t->ggml_type == 0;
			for (int j = 0; ok && j < m.cfg.head_dim / 2; j++) {
				float f;
				memcpy(&f, (const char *)t->data + 4 * j, 4);
				double want = pow(m.cfg.rope_theta, -2.0 * j / m.cfg.head_dim) / f;
				double e = fabs(want - rl_rope_freq(&m.cfg, j)) / rl_rope_freq(&m.cfg, j);
				worst = e > worst ? e : worst;
			}
		}
		rl_gguf_close(&g);
	}
	CHECK(ok && worst < 1e-6, "gguf_write_llama3_rope_freqs", "%s (worst relative error %g)",
	      ok ? "factors off" : rl_err(), worst);
	rl_model_free(&m);
}

/* ---- bad input ---- */

static void check_bad(void)
{
	rl_config c;
	rl_model m, other;
	random_config(&c, RL_ROPE_INTERLEAVED);
	if (rl_model_random(&c, "llama", 7, &m)) {
		CHECK(0, "gguf_write_bad", "%s", rl_err());
		return;
	}
	const char *bad = "/nonexistent-dir/x.gguf";
	int rc = rl_gguf_write_model(&m, bad, NULL);
	CHECK(rc == -1 && strstr(rl_err(), bad), "gguf_write_unwritable", "rc %d, error \"%s\"", rc, rl_err());
	/* a file that exists is replaced whole, and nothing else is left in the directory */
	FILE *f = fopen(tmp("old.gguf"), "w");
	fputs("old", f);
	fclose(f);
	rl_model b;
	rc = rl_gguf_write_model(&m, tmp("old.gguf"), NULL) || rl_model_load(tmp("old.gguf"), NULL, &b);
	CHECK(!rc, "gguf_write_replaces", "%s", rl_err());
	if (!rc)
		rl_model_free(&b);
	/* an output that fails half-way (a directory in the way of the rename) leaves no temporary */
	mkdir(tmp("isdir.gguf"), 0755);
	rc = rl_gguf_write_model(&m, tmp("isdir.gguf"), NULL);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
	CHECK(rc == -1 && system(cmd) != 0, "gguf_write_no_temporary", "rc %d; a temporary was left in %s", rc, dir);
	rl_gguf_write_opts o = { RL_Q4G32, NULL };
	rc = rl_gguf_write_model(&m, tmp("q.gguf"), &o);
	CHECK(rc == -1 && strstr(rl_err(), "f32 or f16"), "gguf_write_bad_float", "rc %d: %s", rc, rl_err());
	/* adapters: made for another model, refused by the writer and the reader */
	rl_adapter a, r;
	c.hidden_dim = 768;
	if (rl_model_random(&c, "llama", 8, &other) || random_adapter(&m, &a)) {
		CHECK(0, "gguf_write_adapter_other_model", "%s", rl_err());
		rl_model_free(&m);
		return;
	}
	rc = rl_gguf_write_adapter(&a, &other, tmp("x.gguf"));
	CHECK(rc == -1 && access(tmp("x.gguf"), F_OK) != 0, "gguf_write_adapter_other_model", "rc %d: %s", rc, rl_err());
	rl_gguf_write_adapter(&a, &m, tmp("ok.gguf"));
	rc = rl_adapter_read(tmp("ok.gguf"), &other, 0, &r);
	CHECK(rc == -1 && strstr(rl_err(), "ffn_gate") && strstr(rl_err(), tmp("ok.gguf")), "gguf_read_adapter_shapes",
	      "rc %d: %s", rc, rl_err());
	/* the same shapes but other weights: the identity refuses, unless told to accept any base */
	rl_model same;
	c.hidden_dim = 512;
	rl_model_random(&c, "llama", 9, &same);
	rc = rl_adapter_read(tmp("ok.gguf"), &same, 0, &r);
	CHECK(rc == -1 && strstr(rl_err(), "trained on"), "gguf_read_adapter_identity", "rc %d: %s", rc, rl_err());
	rc = rl_adapter_read(tmp("ok.gguf"), &same, RL_ADAPTER_ANY_BASE, &r);
	CHECK(rc == 0 && r.forced, "gguf_read_adapter_any_base", "%s", rc ? rl_err() : "not marked forced");
	if (rc == 0)
		rl_adapter_free(&r);
	/* another architecture */
	rl_model q;
	c.head_dim = 64;
	rl_config cq = c;
	cq.qk_norm = 1;
	cq.rope_style = RL_ROPE_HALF;
	if (rl_model_random(&cq, "qwen3", 7, &q) == 0) {
		rc = rl_adapter_read(tmp("ok.gguf"), &q, RL_ADAPTER_ANY_BASE, &r);
		CHECK(rc == -1 && strstr(rl_err(), "architecture"), "gguf_read_adapter_arch", "rc %d: %s", rc, rl_err());
		rl_model_free(&q);
	}
	/* a model file is not an adapter; every truncation of an adapter is refused */
	rl_gguf_write_model(&m, tmp("model.gguf"), NULL);
	rc = rl_adapter_read(tmp("model.gguf"), &m, 0, &r);
	CHECK(rc == -1 && strstr(rl_err(), "not a LoRA adapter"), "gguf_read_adapter_not_adapter", "rc %d: %s", rc,
	      rl_err());
	size_t n;
	char *bytes = rl_read_file(tmp("ok.gguf"), &n);
	int loaded = 0, tries = 0;
	for (size_t cut = 0; bytes && cut < n; cut += cut < 2048 ? 7 : 4099) {
		f = fopen(tmp("cut.gguf"), "wb");
		fwrite(bytes, 1, cut, f);
		fclose(f);
		tries++;
		if (rl_adapter_read(tmp("cut.gguf"), &m, 0, &r) == 0) {
			loaded++;
			rl_adapter_free(&r);
		}
	}
	CHECK(tries > 100 && loaded == 0, "gguf_read_adapter_truncated", "%d of %d truncations loaded", loaded, tries);
	/* byte flips anywhere: loaded or refused with the path named, never a crash */
	unsigned x = 2024;
	int named = 1;
	for (int k = 0; bytes && k < 400; k++) {
		char *copy = malloc(n);
		memcpy(copy, bytes, n);
		for (int j = 0; j < 4; j++) {
			x = x * 1103515245u + 12345u;
			size_t at = (x >> 8) % (k % 2 ? n : (n < 600 ? n : 600)); /* half of them in the header */
			copy[at] ^= (char)(1u << (x % 8));
		}
		f = fopen(tmp("flip.gguf"), "wb");
		fwrite(copy, 1, n, f);
		fclose(f);
		free(copy);
		if (rl_adapter_read(tmp("flip.gguf"), &m, RL_ADAPTER_ANY_BASE, &r) == 0)
			rl_adapter_free(&r);
		else
			named &= strstr(rl_err(), "flip.gguf") != NULL;
	}
	free(bytes);
	CHECK(named, "gguf_read_adapter_flips", "an error without the path: %s", rl_err());
	/* alpha 0 means "no scaling" to llama.cpp: refused rather than changed */
	a.alpha = 0;
	rc = rl_gguf_write_adapter(&a, &m, tmp("z.gguf"));
	CHECK(rc == -1 && strstr(rl_err(), "alpha"), "gguf_write_adapter_alpha0", "rc %d: %s", rc, rl_err());
	rl_adapter_free(&a);
	rl_model_free(&same);
	rl_model_free(&other);
	rl_model_free(&m);
}

int main(void)
{
	const char *k = getenv("GGUF_WRITE_KEEP");
	keep = k && *k;
	if (keep)
		snprintf(dir, sizeof dir, "%s", k);
	else if (!mkdtemp(dir)) {
		CHECK(0, "gguf_write_tmpdir", "cannot make a temporary directory");
		return t_done();
	}
	check_stories();
	check_random(RL_ROPE_INTERLEAVED, "gguf_write_kquants");
	check_random(RL_ROPE_HALF, "gguf_write_kquants_half");
	check_hf("llama", 0);
	check_hf("qwen2", 1);
	check_hf("qwen3", 1);
	check_hf("linearrope", 1);
	check_llama3_freqs();
	check_bad();
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (!keep && system(cmd))
		return 1;
	return t_done();
}
