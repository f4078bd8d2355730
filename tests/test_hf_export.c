/* test_hf_export: Hugging Face export (rl_model_write_hf) read back by our own
 * loader. stories260K with a LoRA adapter merged into it (interleaved RoPE,
 * so q and k move to HF's rotate-half layout), the Qwen3 fixture and random
 * Llama/Qwen2/Qwen3 models must give the same logits after an f32 export
 * (1e-5 relative) and a bf16 one (stated tolerance), and their tokenizers the
 * same ids on all of TinyStories' dev text (and the real Qwen3 tokenizer's
 * too); bad output paths fail cleanly, leaving nothing behind.
 *
 * With --make DIR it instead writes the exports and our logits for
 * tests/ref/check_hf_export.py and tests/ref/hf_tokenizer_ids.js, which check
 * them against PyTorch and Hugging Face's tokenizers (tests/test_hf_export.sh).
 * Run from the repository root. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "eval.h"
#include "hf.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "peft.h"
#include "sample.h"
#include "t.h"

#define QWEN3 "tests/fixtures/hf/qwen3"
#define NSEQ 2
#define SEQ_LEN 12

static char tmpdir[256];
static char s260[512], dev[512], qwen3tok[512];

/* Sequences of ids below V, BOS (or 1) first. */
static void sequences(const rl_model *m, int seqs[NSEQ][SEQ_LEN])
{
	static const int base[NSEQ][SEQ_LEN] = { { 1, 403, 407, 261, 378, 432, 322, 261, 370, 272, 414, 276 },
						 { 1, 5, 17, 200, 33, 33, 7, 250, 100, 150, 9, 299 } };
	int V = m->tok.vocab_size < m->cfg.vocab_size ? m->tok.vocab_size : m->cfg.vocab_size;
	for (int s = 0; s < NSEQ; s++)
		for (int t = 0; t < SEQ_LEN; t++)
			seqs[s][t] = base[s][t] % V;
}

/* logits (NSEQ, SEQ_LEN, V), allocated; NULL on error */
static float *all_logits(const rl_model *m, const int seqs[NSEQ][SEQ_LEN])
{
	size_t V = (size_t)m->cfg.vocab_size;
	float *out = malloc(NSEQ * SEQ_LEN * V * sizeof(float));
	rl_forward *f = rl_forward_new(m, SEQ_LEN, SEQ_LEN);
	for (int s = 0; out && f && s < NSEQ; s++) {
		rl_seq q = { .ntok = SEQ_LEN, .tokens = seqs[s] };
		if (rl_forward_run(f, NULL, 1, &q, out + s * SEQ_LEN * V)) {
			free(out);
			out = NULL;
		}
	}
	if (!f) {
		free(out);
		out = NULL;
	}
	rl_forward_free(f);
	return out;
}

/* max relative error of b's logits against a's, or -1 when either fails */
static double logits_error(const rl_model *a, const rl_model *b)
{
	int seqs[NSEQ][SEQ_LEN];
	sequences(a, seqs);
	float *x = all_logits(a, seqs), *y = all_logits(b, seqs);
	double e = x && y && a->cfg.vocab_size == b->cfg.vocab_size
			   ? t_rel_err(y, x, (size_t)NSEQ * SEQ_LEN * a->cfg.vocab_size) : -1;
	free(x);
	free(y);
	return e;
}

/* The reference file our Python checker reads (tests/ref/hf_models.py's
 * format): "RLHF", 1, nseq, V, then per sequence T, tokens, logits. */
static int write_reference(const char *path, const rl_model *m)
{
	int seqs[NSEQ][SEQ_LEN];
	sequences(m, seqs);
	float *x = all_logits(m, seqs);
	FILE *f = fopen(path, "wb");
	int32_t h[3] = { 1, NSEQ, m->cfg.vocab_size }, T = SEQ_LEN;
	int ok = x && f && fwrite("RLHF", 1, 4, f) == 4 && fwrite(h, 4, 3, f) == 3;
	for (int s = 0; ok && s < NSEQ; s++)
		ok = fwrite(&T, 4, 1, f) == 1 && fwrite(seqs[s], 4, SEQ_LEN, f) == SEQ_LEN &&
		     fwrite(x + (size_t)s * SEQ_LEN * m->cfg.vocab_size, 4, (size_t)SEQ_LEN * m->cfg.vocab_size, f) ==
			     (size_t)SEQ_LEN * m->cfg.vocab_size;
	if (f && fclose(f))
		ok = 0;
	free(x);
	return ok ? 0 : -1;
}

/* A deterministic adapter on q, k, o, gate and up with B non-zero, so that it
 * changes the model and any misplaced row of B shows. */
static int make_adapter(const rl_model *m, rl_adapter *a, uint64_t seed)
{
	if (rl_adapter_new(a, m, "attn_q,attn_k,attn_output,ffn_gate,ffn_up", 4, 8.0))
		return -1;
	rl_adapter_init_standard(a, seed);
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int k = 0; k < a->ntargets; k++) {
		rl_lora_target *g = &a->targets[k];
		for (size_t i = 0; i < (size_t)g->OC * a->rank; i++)
			g->b[i] = 0.05f * ((float)(rl_splitmix64(&s) >> 40) / 8388608.0f - 1.0f);
	}
	return 0;
}

/* A reference merge for the tests, in double: each target becomes the f32
 * matrix deq(W) + (alpha/r) B.A, in memory the model owns. */
static int merge_adapter(rl_model *m, const rl_adapter *a)
{
	double scale = a->alpha / a->rank;
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		rl_tensor *t = &m->tensors[g->tensor];
		size_t row_bytes = rl_row_bytes(t->dtype, (uint64_t)g->IC);
		float *w = malloc((size_t)g->OC * g->IC * sizeof(float));
		if (!w)
			return -1;
		for (int o = 0; o < g->OC; o++) {
			rl_dtypes[t->dtype].to_float((const char *)t->data + (size_t)o * row_bytes, w + (size_t)o * g->IC,
						     (size_t)g->IC);
			for (int i = 0; i < g->IC; i++) {
				double d = 0;
				for (int r = 0; r < a->rank; r++)
					d += (double)g->b[(size_t)o * a->rank + r] * g->a[(size_t)r * g->IC + i];
				w[(size_t)o * g->IC + i] = (float)(w[(size_t)o * g->IC + i] + scale * d);
			}
		}
		t->data = w; /* not in the mapping: rl_model_free frees it */
		t->dtype = RL_F32;
		t->bytes = (size_t)g->OC * g->IC * sizeof(float);
	}
	m->content[0] = 0;
	return 0;
}

/* stories260K, and the same with the adapter merged into it */
static int load_s260(rl_model *base, rl_model *merged, rl_adapter *a)
{
	if (rl_model_load(s260, NULL, base))
		return -1;
	if (make_adapter(base, a, 42) || rl_model_load(s260, NULL, merged)) {
		rl_model_free(base);
		return -1;
	}
	if (merge_adapter(merged, a)) {
		rl_model_free(base);
		rl_model_free(merged);
		return -1;
	}
	return 0;
}

/* every document of path encoded by both tokenizers: the same ids */
static void check_same_ids(const rl_tokenizer *x, const rl_tokenizer *y, const char *path, const char *name)
{
	size_t len, ndocs = 0, ntokens = 0, bad = (size_t)-1;
	char *text = rl_read_file(path, &len);
	rl_span *docs = NULL;
	if (!text || rl_split_documents(text, len, &docs, &ndocs)) {
		CHECK(0, name, "%s: %s", path, rl_err());
		free(text);
		return;
	}
	int ok = x->bos_id == y->bos_id && x->eos_id == y->eos_id;
	for (size_t d = 0; ok && d < ndocs; d++) {
		int *a = NULL, *b = NULL;
		size_t na, nb;
		ok = rl_encode(x, docs[d].text, docs[d].len, 1, 0, &a, &na) == 0 &&
		     rl_encode(y, docs[d].text, docs[d].len, 1, 0, &b, &nb) == 0 && na == nb &&
		     memcmp(a, b, na * sizeof *a) == 0;
		if (!ok)
			bad = d;
		ntokens += na;
		free(a);
		free(b);
	}
	CHECK(ok && ndocs > 0, name, "document %zu of %zu differs (bos %d/%d, eos %d/%d)", bad, ndocs, x->bos_id,
	      y->bos_id, x->eos_id, y->eos_id);
	if (ok)
		printf("# %s: %zu documents, %zu tokens, the same ids\n", name, ndocs, ntokens);
	free(docs);
	free(text);
}

/* the pieces of every id agree, except where tokenizer.json writes a
 * special token differently ("\n<s>\n" as "<s>") */
static int same_pieces(const rl_tokenizer *x, const rl_tokenizer *y)
{
	if (x->vocab_size != y->vocab_size || x->kind != y->kind)
		return 0;
	for (int i = 0; i < x->vocab_size; i++)
		if (i != x->bos_id && i != x->eos_id &&
		    (x->piece_len[i] != y->piece_len[i] || memcmp(x->pieces[i], y->pieces[i], (size_t)x->piece_len[i])))
			return 0;
	rl_bpe_spec a, b;
	if (x->kind != RL_TOKENIZER_BPE)
		return 1;
	/* and the rest of a byte-level BPE: merges, added tokens with their flags, regexes, NFC */
	if (rl_tokenizer_bpe_spec(x, &a) || rl_tokenizer_bpe_spec(y, &b) || a.nmerges != b.nmerges ||
	    a.nadded != b.nadded || a.nsplits != b.nsplits || a.nfc != b.nfc ||
	    a.add_prefix_space != b.add_prefix_space || a.ignore_merges != b.ignore_merges ||
	    memcmp(a.merges, b.merges, 2 * (size_t)a.nmerges * sizeof(int)) ||
	    memcmp(a.added, b.added, 2 * (size_t)a.nadded * sizeof(int)))
		return 0;
	for (int i = 0; i < a.nsplits; i++)
		if (strcmp(a.splits[i], b.splits[i]))
			return 0;
	return 1;
}

/* exports m as dtype to tmpdir/name, reloads it into *back */
static int round_trip(const rl_model *m, const char *name, rl_dtype dtype, rl_model *back, char *dir, size_t size)
{
	snprintf(dir, size, "%s/%s", tmpdir, name);
	if (rl_model_write_hf(m, dir, dtype))
		return -1;
	return rl_model_load(dir, NULL, back);
}

static void test_stories260k(void)
{
	rl_model base, merged, back;
	rl_adapter a;
	char dir[512];
	if (access(s260, R_OK) != 0) {
		t_skip("s260_export", "no stories260K in ../shared (set SHARED)");
		return;
	}
	if (load_s260(&base, &merged, &a)) {
		CHECK(0, "s260_load", "%s", rl_err());
		return;
	}
	rl_model withad;
	rl_adapter a2;
	int ok = rl_model_load(s260, NULL, &withad) == 0 && make_adapter(&withad, &a2, 42) == 0 &&
		 rl_model_attach_adapter(&withad, &a2) == 0;
	double e = ok ? logits_error(&withad, &merged) : -1;
	CHECK(e >= 0 && e <= 1e-5, "s260_reference_merge_equals_adapter", "relative error %.3g (limit 1e-5)", e);
	snprintf(dir, sizeof dir, "%s/unmerged", tmpdir);
	int rc = rl_model_write_hf(&withad, dir, RL_F32);
	CHECK(rc == -1 && strstr(rl_err(), "unmerged adapter") && access(dir, F_OK) != 0,
	      "hf_export_refuses_unmerged_adapter", "rc %d: %s", rc, rl_err());
	e = logits_error(&base, &merged);
	CHECK(e > 1e-2, "s260_adapter_changes_the_model", "relative change %.3g", e);
	if (round_trip(&merged, "s260", RL_F32, &back, dir, sizeof dir)) {
		CHECK(0, "s260_f32_export", "%s", rl_err());
	} else {
		CHECK(back.cfg.rope_style == RL_ROPE_HALF && strcmp(back.arch, "llama") == 0 && back.cfg.tied_embeddings &&
			      back.cfg.n_kv_heads == 4 && back.cfg.norm_eps == 1e-5 && back.tok.bos_id == 1 &&
			      back.tok.eos_id == 2 && back.tok.add_dummy_prefix && back.tok.kind == RL_TOKENIZER_SENTENCEPIECE,
		      "s260_f32_export_config", "arch %s, rope %d, bos %d", back.arch, back.cfg.rope_style, back.tok.bos_id);
		e = logits_error(&merged, &back);
		CHECK(e >= 0 && e <= 1e-5, "s260_f32_export_same_logits", "relative error %.3g (limit 1e-5)", e);
		/* the permutation matters: without it (interleaved layout on HF's rows) the logits differ */
		back.cfg.rope_style = RL_ROPE_INTERLEAVED;
		e = logits_error(&merged, &back);
		CHECK(e > 1e-3, "s260_f32_export_rows_moved", "relative error %.3g with the rows read as interleaved", e);
		CHECK(same_pieces(&merged.tok, &back.tok) && strcmp(back.tok.pieces[1], "<s>") == 0,
		      "s260_tokenizer_same_pieces", "pieces differ");
		check_same_ids(&merged.tok, &back.tok, dev, "s260_tokenizer_same_ids_dev_txt");
		rl_model_free(&back);
	}
	/* bf16: every weight rounds to 8 bits of mantissa (relative 2^-9), the
	 * logits move by about that much times the depth */
	if (round_trip(&merged, "s260_bf16", RL_BF16, &back, dir, sizeof dir)) {
		CHECK(0, "s260_bf16_export", "%s", rl_err());
	} else {
		e = logits_error(&merged, &back);
		CHECK(back.token_embd->dtype == RL_BF16 && e >= 0 && e <= 2e-2, "s260_bf16_export_logits_within_2e-2",
		      "relative error %.3g (limit 2e-2), dtype %s", e, rl_dtypes[back.token_embd->dtype].name);
		printf("# s260 bf16 export: logits within %.3g relative of the f32 model\n", e);
		rl_model_free(&back);
	}
	if (round_trip(&merged, "s260_f16", RL_F16, &back, dir, sizeof dir)) {
		CHECK(0, "s260_f16_export", "%s", rl_err());
	} else {
		e = logits_error(&merged, &back);
		CHECK(back.token_embd->dtype == RL_F16 && e >= 0 && e <= 5e-3, "s260_f16_export_logits_within_5e-3",
		      "relative error %.3g (limit 5e-3)", e);
		rl_model_free(&back);
	}
	rl_adapter_free(&a);
	rl_model_free(&withad);
	rl_model_free(&base);
	rl_model_free(&merged);
}

static void test_qwen3(void)
{
	rl_model m, back;
	char dir[512];
	if (rl_model_load(QWEN3, NULL, &m)) {
		CHECK(0, "qwen3_load", "%s", rl_err());
		return;
	}
	if (round_trip(&m, "qwen3", RL_F32, &back, dir, sizeof dir)) {
		CHECK(0, "qwen3_f32_export", "%s", rl_err());
	} else {
		double e = logits_error(&m, &back);
		CHECK(e >= 0 && e <= 1e-5, "qwen3_f32_export_same_logits", "relative error %.3g (limit 1e-5)", e);
		CHECK(strcmp(back.arch, "qwen3") == 0 && back.cfg.qk_norm && back.cfg.head_dim == 8 &&
			      back.cfg.vocab_size == 300 && back.tok.vocab_size == 267 && back.tok.eos_id == 266 &&
			      back.tok.bos_id == -1 && strcmp(back.source, m.source) == 0,
		      "qwen3_f32_export_config", "arch %s, source %.12s vs %.12s", back.arch, back.source, m.source);
		CHECK(same_pieces(&m.tok, &back.tok), "qwen3_tokenizer_same_pieces", "pieces differ");
		check_same_ids(&m.tok, &back.tok, dev, "qwen3_tokenizer_same_ids_dev_txt");
		rl_model_free(&back);
	}
	/* bf16 weights written as bf16: the same bytes, the same logits */
	if (round_trip(&m, "qwen3_bf16", RL_BF16, &back, dir, sizeof dir)) {
		CHECK(0, "qwen3_bf16_export", "%s", rl_err());
	} else {
		double e = logits_error(&m, &back);
		CHECK(e == 0 && strcmp(back.source, m.source) == 0, "qwen3_bf16_export_identical",
		      "relative error %.3g, source %.12s vs %.12s", e, back.source, m.source);
		rl_model_free(&back);
	}
	rl_model_free(&m);
}

/* the real Qwen3 tokenizer (151,669 tokens) written and read back */
static void test_qwen3_tokenizer(void)
{
	rl_tokenizer x, y;
	char dir[512], path[600];
	if (access(qwen3tok, R_OK) != 0) {
		t_skip("qwen3_real_tokenizer", "no ../shared/data/tokenizers/qwen3 (set SHARED)");
		return;
	}
	if (rl_tokenizer_load_hf(&x, qwen3tok)) {
		CHECK(0, "qwen3_real_tokenizer_load", "%s", rl_err());
		return;
	}
	snprintf(dir, sizeof dir, "%s/qwen3tok", tmpdir);
	mkdir(dir, 0777);
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	FILE *j = fopen(path, "w");
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	FILE *c = fopen(path, "w");
	int rc = !j || !c || rl_tokenizer_write_hf(&x, j, c, 40960);
	if (j && fclose(j))
		rc = -1;
	if (c && fclose(c))
		rc = -1;
	if (rc || rl_tokenizer_load_hf(&y, dir)) {
		CHECK(0, "qwen3_real_tokenizer_round_trip", "%s", rl_err());
	} else {
		CHECK(same_pieces(&x, &y), "qwen3_real_tokenizer_same_pieces", "pieces differ");
		check_same_ids(&x, &y, dev, "qwen3_real_tokenizer_same_ids_dev_txt");
		rl_tokenizer_free(&y);
	}
	rl_tokenizer_free(&x);
}

/* random models of each architecture, made interleaved so that q and k (and
 * their biases and norms) must move on export */
static void test_random(const char *arch, int interleaved, rl_rope_scaling scaling)
{
	rl_config c = { .dim = 32, .hidden_dim = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
			.vocab_size = 300, .seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-6 };
	c.qk_norm = strcmp(arch, "qwen3") == 0;
	c.qkv_bias = strcmp(arch, "qwen2") == 0;
	c.tied_embeddings = strcmp(arch, "llama") != 0;
	c.rope_scaling = scaling;
	c.rope_factor = 4;
	c.rope_low_freq_factor = 1;
	c.rope_high_freq_factor = 4;
	c.rope_original_ctx = 16;
	rl_model m, back;
	char name[96], dir[512];
	snprintf(name, sizeof name, "random_%s%s%s", arch, interleaved ? "_interleaved" : "",
		 scaling == RL_ROPE_SCALING_LLAMA3 ? "_llama3rope" : scaling == RL_ROPE_SCALING_LINEAR ? "_linearrope" : "");
	if (rl_model_random(&c, arch, 7, &m)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	if (interleaved)
		m.cfg.rope_style = RL_ROPE_INTERLEAVED;
	if (round_trip(&m, name, RL_F32, &back, dir, sizeof dir)) {
		CHECK(0, name, "%s", rl_err());
		rl_model_free(&m);
		return;
	}
	double e = logits_error(&m, &back);
	const rl_config *b = &back.cfg;
	CHECK(e >= 0 && e <= 1e-5 && b->rope_scaling == c.rope_scaling && b->qkv_bias == c.qkv_bias &&
		      b->qk_norm == c.qk_norm && b->tied_embeddings == c.tied_embeddings && b->norm_eps == c.norm_eps &&
		      (scaling == RL_ROPE_SCALING_NONE || b->rope_factor == 4) &&
		      (scaling != RL_ROPE_SCALING_LLAMA3 || (b->rope_original_ctx == 16 && b->rope_high_freq_factor == 4)),
	      name, "relative error %.3g (limit 1e-5), or the config changed", e);
	char tname[128];
	snprintf(tname, sizeof tname, "%s_tokenizer", name);
	const char *text = "Hello, world: caf\xc3\xa9 \xe2\x82\xac 12\n\tend";
	int *x = NULL, *y = NULL;
	size_t nx = 0, ny = 0;
	int ok = rl_encode(&m.tok, text, strlen(text), 1, 1, &x, &nx) == 0 &&
		 rl_encode(&back.tok, text, strlen(text), 1, 1, &y, &ny) == 0 && nx == ny && !memcmp(x, y, nx * sizeof *x);
	CHECK(ok && same_pieces(&m.tok, &back.tok), tname, "ids or pieces differ");
	free(x);
	free(y);
	rl_model_free(&back);
	rl_model_free(&m);
}

/* no DIR.tmp.* left in tmpdir */
static int no_temporaries(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int clean = 1;
	while (d && (e = readdir(d)))
		if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".old."))
			clean = 0;
	if (d)
		closedir(d);
	return clean;
}

static void test_bad_output(void)
{
	rl_model m;
	char path[512];
	if (rl_model_load(QWEN3, NULL, &m)) {
		CHECK(0, "bad_output_load", "%s", rl_err());
		return;
	}
	snprintf(path, sizeof path, "%s/afile", tmpdir);
	FILE *f = fopen(path, "w");
	fputs("keep me\n", f);
	fclose(f);
	int rc = rl_model_write_hf(&m, path, RL_F32);
	size_t len = 0;
	char *kept = rl_read_file(path, &len);
	CHECK(rc == -1 && strstr(rl_err(), "afile: exists and is not a directory") && kept && len == 8,
	      "hf_export_refuses_a_file", "rc %d: %s", rc, rl_err());
	free(kept);
	snprintf(path, sizeof path, "%s/afile/sub", tmpdir);
	rc = rl_model_write_hf(&m, path, RL_F32);
	CHECK(rc == -1 && strstr(rl_err(), "afile/sub") && strstr(rl_err(), "Not a directory"),
	      "hf_export_parent_not_a_directory", "rc %d: %s", rc, rl_err());
	snprintf(path, sizeof path, "%s/missing/sub", tmpdir);
	rc = rl_model_write_hf(&m, path, RL_F32);
	CHECK(rc == -1 && strstr(rl_err(), "missing/sub") && strstr(rl_err(), "No such file"),
	      "hf_export_parent_missing", "rc %d: %s", rc, rl_err());
	snprintf(path, sizeof path, "%s/q4", tmpdir);
	rc = rl_model_write_hf(&m, path, RL_Q4G32);
	CHECK(rc == -1 && strstr(rl_err(), "f32, f16 or bf16"), "hf_export_refuses_quantized_dtype", "rc %d: %s", rc,
	      rl_err());
	/* an existing export is replaced whole */
	snprintf(path, sizeof path, "%s/replaced", tmpdir);
	mkdir(path, 0777);
	char old[600];
	snprintf(old, sizeof old, "%s/stale.txt", path);
	f = fopen(old, "w");
	fclose(f);
	rc = rl_model_write_hf(&m, path, RL_BF16);
	CHECK(rc == 0 && access(old, F_OK) != 0, "hf_export_replaces_a_directory", "rc %d: %s", rc, rl_err());
	rl_model_free(&m);

	/* a value f16 cannot hold: refused, named, nothing written */
	rl_config c = { .dim = 16, .hidden_dim = 24, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 8,
			.vocab_size = 272, .seq_len = 32, .rope_theta = 10000, .norm_eps = 1e-6 };
	if (rl_model_random(&c, "llama", 3, &m) == 0) {
		((float *)m.layers[0].ffn_up->data)[5] = 1e6f;
		snprintf(path, sizeof path, "%s/overflow", tmpdir);
		rc = rl_model_write_hf(&m, path, RL_F16);
		CHECK(rc == -1 && strstr(rl_err(), "model.layers.0.mlp.up_proj.weight") && strstr(rl_err(), "overflows f16") &&
			      access(path, F_OK) != 0,
		      "hf_export_f16_overflow_refused", "rc %d: %s", rc, rl_err());
		rl_model_free(&m);
	}
	CHECK(no_temporaries(), "hf_export_no_temporaries_left", "a .tmp. or .old. directory is left in %s", tmpdir);
}

/* ---- --make DIR: the exports and our logits for the Python and Node checks ---- */

/* after the dev text's documents: spaces, tabs and newlines inside, accents,
 * characters outside the small vocabularies (byte fallback), emoji */
static const char *const extra_docs[] = {
	"Two  spaces,   three,\tand a tab.\nA new line\n\n\nand blank ones.",
	"Caf\xc3\xa9, na\xc3\xafve, \xc3\x85ngstr\xc3\xb6m, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xf0\x9f\x98\x80\xf0\x9f\x8d\x95!",
	"   leading and trailing spaces   ",
	"x",
};
#define NEXTRA (sizeof extra_docs / sizeof extra_docs[0])

/* the dev text's documents and the extra ones: *docs allocated, *text too */
static int all_docs(rl_span **docs, size_t *ndocs, char **text)
{
	size_t len;
	if (!(*text = rl_read_file(dev, &len)) || rl_split_documents(*text, len, docs, ndocs))
		return -1;
	rl_span *more = realloc(*docs, (*ndocs + NEXTRA) * sizeof *more);
	if (!more)
		return -1;
	for (size_t i = 0; i < NEXTRA; i++)
		more[(*ndocs)++] = (rl_span){ extra_docs[i], strlen(extra_docs[i]) };
	*docs = more;
	return 0;
}

static int write_docs_json(const char *path)
{
	size_t ndocs;
	char *text = NULL;
	rl_span *docs = NULL;
	FILE *f = fopen(path, "w");
	int rc = !f || all_docs(&docs, &ndocs, &text) ? -1 : 0;
	if (f)
		fputc('[', f);
	for (size_t d = 0; rc == 0 && d < ndocs; d++) {
		fputs(d ? ",\n" : "", f);
		rl_json_write_string(f, docs[d].text, docs[d].len);
	}
	if (f)
		fputs("]\n", f);
	free(docs);
	free(text);
	if (f && fclose(f))
		rc = -1;
	return rc;
}

/* our ids of every document (with BOS), one line each, for hf_tokenizer_ids.js */
static int write_ids(const char *path, const rl_tokenizer *tk)
{
	size_t ndocs;
	char *text = NULL;
	rl_span *docs = NULL;
	FILE *f = fopen(path, "w");
	int rc = !f || all_docs(&docs, &ndocs, &text) ? -1 : 0;
	for (size_t d = 0; rc == 0 && d < ndocs; d++) {
		int *ids;
		size_t n;
		if ((rc = rl_encode(tk, docs[d].text, docs[d].len, 1, 0, &ids, &n)))
			break;
		for (size_t i = 0; i < n; i++)
			fprintf(f, i ? " %d" : "%d", ids[i]);
		fputc('\n', f);
		free(ids);
	}
	free(docs);
	free(text);
	if (f && fclose(f))
		rc = -1;
	return rc;
}

static int make(const char *out)
{
	rl_model base, merged, back, q;
	rl_adapter a, qa;
	char p[600], r[600];
#define PATH(buf, name) (snprintf(buf, sizeof buf, "%s/%s", out, name), buf)
	if (load_s260(&base, &merged, &a) || rl_model_load(QWEN3, NULL, &q) || make_adapter(&q, &qa, 5))
		goto fail;
	/* the merged model; its logits come from the unmerged one */
	if (rl_model_write_hf(&merged, PATH(p, "s260"), RL_F32) || write_reference(PATH(r, "s260.ref"), &merged))
		goto fail;
	if (rl_model_write_hf(&merged, PATH(p, "s260_bf16"), RL_BF16) || rl_model_load(p, NULL, &back) ||
	    write_reference(PATH(r, "s260_bf16.ref"), &back))
		goto fail;
	rl_model_free(&back);
	if (write_ids(PATH(r, "s260.ids"), &merged.tok) || write_docs_json(PATH(r, "docs.json")))
		goto fail;
	/* the base and the adapter as PEFT; logits of base + adapter */
	rl_writer *w = rl_writer_open(PATH(p, "s260_adapter.msgpack"));
	if (!w || rl_adapter_write(&a, w, "test_hf_export") || rl_write_end(w) || rl_writer_commit(w))
		goto fail;
	if (rl_model_write_hf(&base, PATH(p, "s260_base"), RL_F32) ||
	    rl_adapter_write_peft(&a, &base, PATH(p, "s260_peft")) || rl_model_attach_adapter(&base, &a) ||
	    write_reference(PATH(r, "s260_peft.ref"), &base))
		goto fail;
	if (rl_model_write_hf(&q, PATH(p, "qwen3"), RL_F32) || write_reference(PATH(r, "qwen3.ref"), &q) ||
	    rl_model_write_hf(&q, PATH(p, "qwen3_bf16"), RL_BF16) || write_reference(PATH(r, "qwen3_bf16.ref"), &q) ||
	    rl_adapter_write_peft(&qa, &q, PATH(p, "qwen3_peft")) || rl_model_attach_adapter(&q, &qa) ||
	    write_reference(PATH(r, "qwen3_peft.ref"), &q))
		goto fail;
	rl_tokenizer tk;
	if (access(qwen3tok, R_OK) == 0) {
		if (rl_tokenizer_load_hf(&tk, qwen3tok))
			goto fail;
		mkdir(PATH(p, "qwen3tok"), 0777);
		FILE *j = fopen(PATH(p, "qwen3tok/tokenizer.json"), "w"), *c = fopen(PATH(r, "qwen3tok/tokenizer_config.json"), "w");
		int rc = !j || !c || rl_tokenizer_write_hf(&tk, j, c, 40960);
		rc |= (j && fclose(j)) | (c && fclose(c));
		rc = rc || write_ids(PATH(p, "qwen3tok.ids"), &tk);
		rl_tokenizer_free(&tk);
		if (rc)
			goto fail;
	}
	rl_model_free(&base);
	rl_model_free(&merged);
	rl_model_free(&q);
	return 0;
fail:
	fprintf(stderr, "test_hf_export --make: %s\n", rl_err());
	return 1;
#undef PATH
}

int main(int argc, char **argv)
{
	snprintf(s260, sizeof s260, "%s/models/stories260K/stories260K.bin", t_shared());
	snprintf(dev, sizeof dev, "%s/data/tinystories/dev.txt", t_shared());
	snprintf(qwen3tok, sizeof qwen3tok, "%s/data/tokenizers/qwen3", t_shared());
	if (argc == 3 && strcmp(argv[1], "--make") == 0)
		return make(argv[2]);
	snprintf(tmpdir, sizeof tmpdir, "%s/rl_hfx.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_stories260k();
	test_qwen3();
	test_qwen3_tokenizer();
	test_random("llama", 0, RL_ROPE_SCALING_LLAMA3);
	test_random("llama", 1, RL_ROPE_SCALING_NONE);
	test_random("qwen2", 1, RL_ROPE_SCALING_LINEAR);
	test_random("qwen3", 1, RL_ROPE_SCALING_NONE);
	test_random("qwen3", 0, RL_ROPE_SCALING_NONE);
	test_bad_output();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return t_done();
}
