/* test_hf: Hugging Face model directories. Tiny random Llama, Qwen2 and Qwen3
 * directories (tests/ref/hf_models.py) must give the logits of that script's
 * independent PyTorch forward pass to 1e-4 relative, in batch and through the
 * KV cache; `qpack -p f32 DIR` must write a stream that loads back to the same
 * model; and bad directories and safetensors files must be clear errors
 * naming the file. Run from the repository root. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "hf.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "t.h"

#define FIX "tests/fixtures/hf"

static char tmpdir[256];

/* The reference file NAME.ref: "RLHF", version, nseq, V, then per sequence T, tokens, logits. */
typedef struct {
	int nseq, V, T[4];
	int *tokens[4];
	float *logits[4];
} reference;

static int read_reference(const char *path, reference *r)
{
	memset(r, 0, sizeof *r);
	FILE *f = fopen(path, "rb");
	char magic[4];
	int32_t h[3];
	if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "RLHF", 4) || fread(h, 4, 3, f) != 3 || h[0] != 1 ||
	    h[1] < 1 || h[1] > 4 || h[2] < 1 || h[2] > 100000) {
		if (f)
			fclose(f);
		return -1;
	}
	r->nseq = h[1];
	r->V = h[2];
	for (int s = 0; s < r->nseq; s++) {
		int32_t T;
		if (fread(&T, 4, 1, f) != 1 || T < 1 || T > 64)
			goto bad;
		r->T[s] = T;
		r->tokens[s] = malloc((size_t)T * sizeof(int));
		r->logits[s] = malloc((size_t)T * r->V * sizeof(float));
		if (!r->tokens[s] || !r->logits[s] || fread(r->tokens[s], 4, (size_t)T, f) != (size_t)T ||
		    fread(r->logits[s], 4, (size_t)T * r->V, f) != (size_t)T * r->V)
			goto bad;
	}
	fclose(f);
	return 0;
bad:
	fclose(f);
	return -1;
}

static void free_reference(reference *r)
{
	for (int s = 0; s < 4; s++) {
		free(r->tokens[s]);
		free(r->logits[s]);
	}
}

/* the model's logits against the reference; name_* for the checks */
static void check_logits(const rl_model *m, const reference *r, const char *what)
{
	char name[128];
	double worst = 0, worst_decode = 0;
	int ok = m->cfg.vocab_size == r->V;
	for (int s = 0; ok && s < r->nseq; s++) {
		size_t n = (size_t)r->T[s] * r->V;
		float *out = malloc(n * sizeof(float));
		ok = out && t_batch_logits(m, r->tokens[s], r->T[s], out) == 0;
		if (ok) {
			double e = t_rel_err(out, r->logits[s], n);
			worst = e > worst ? e : worst;
			ok = t_decode_logits(m, r->tokens[s], r->T[s], out) == 0;
		}
		if (ok) {
			double e = t_rel_err(out, r->logits[s], n);
			worst_decode = e > worst_decode ? e : worst_decode;
		}
		free(out);
	}
	snprintf(name, sizeof name, "%s_logits_match_pytorch", what);
	CHECK(ok && worst <= 1e-4, name, "relative error %.3g (limit 1e-4)%s%s", worst, ok ? "" : ": ", ok ? "" : rl_err());
	snprintf(name, sizeof name, "%s_decode_logits_match_pytorch", what);
	CHECK(ok && worst_decode <= 1e-4, name, "relative error %.3g (limit 1e-4)", worst_decode);
}

static void test_model(const char *which)
{
	char dir[256], ref[256], name[128];
	snprintf(dir, sizeof dir, FIX "/%s", which);
	snprintf(ref, sizeof ref, FIX "/%s.ref", which);
	reference r;
	rl_model m;
	snprintf(name, sizeof name, "%s_loads", which);
	if (read_reference(ref, &r)) {
		CHECK(0, name, "%s missing or malformed", ref);
		free_reference(&r);
		return;
	}
	if (rl_model_load(dir, NULL, &m)) {
		CHECK(0, name, "%s", rl_err());
		free_reference(&r);
		return;
	}
	CHECK(1, name, "");
	const rl_config *c = &m.cfg;
	snprintf(name, sizeof name, "%s_config", which);
	if (strcmp(which, "llama") == 0)
		CHECK(strcmp(m.arch, "llama") == 0 && c->rope_style == RL_ROPE_HALF && !c->tied_embeddings &&
			      c->n_kv_heads == 2 && c->n_heads == 4 && c->head_dim == 4 && c->seq_len == 64 &&
			      c->norm_eps == 1e-5 && m.layers[0].attn_q->dtype == RL_F32 &&
			      strstr(m.origin, "no tokenizer.json: byte-level tokenizer") &&
			      m.tok.kind == RL_TOKENIZER_SENTENCEPIECE && m.tok.vocab_size == 272,
		      name, "arch %s, origin %s", m.arch, m.origin);
	else if (strcmp(which, "qwen2") == 0)
		CHECK(strcmp(m.arch, "qwen2") == 0 && c->qkv_bias && !c->qk_norm && c->tied_embeddings &&
			      m.output == m.token_embd && c->rope_theta == 1e6 && m.layers[1].ffn_up->dtype == RL_F16 &&
			      m.layers[1].attn_v_bias->dtype == RL_F32,
		      name, "arch %s", m.arch);
	else if (strcmp(which, "llama3rope") == 0)
		CHECK(c->rope_scaling == RL_ROPE_SCALING_LLAMA3 && c->rope_factor == 8 && c->rope_original_ctx == 16 &&
			      c->rope_low_freq_factor == 1 && c->rope_high_freq_factor == 4,
		      name, "rope scaling %d factor %g", c->rope_scaling, c->rope_factor);
	else if (strcmp(which, "linearrope") == 0)
		CHECK(c->rope_scaling == RL_ROPE_SCALING_LINEAR && c->rope_factor == 4, name, "rope scaling %d factor %g",
		      c->rope_scaling, c->rope_factor);
	else
		CHECK(strcmp(m.arch, "qwen3") == 0 && c->qk_norm && !c->qkv_bias && c->head_dim == 8 && c->dim == 16 &&
			      m.token_embd->dtype == RL_BF16 && m.layers[0].attn_q_norm->dtype == RL_F32 &&
			      m.tok.kind == RL_TOKENIZER_BPE && m.tok.vocab_size == 267 && m.tok.eos_id == 266 &&
			      c->vocab_size == 300 && m.nmappings == 2,
		      name, "arch %s, tokenizer kind %d of %d tokens", m.arch, m.tok.kind, m.tok.vocab_size);
	check_logits(&m, &r, which);
	/* the reference tells the RoPE layouts apart: interleaved pairs must miss it */
	rl_rope_style style = m.cfg.rope_style;
	m.cfg.rope_style = RL_ROPE_INTERLEAVED;
	size_t n = (size_t)r.T[1] * r.V;
	float *wrong = malloc(n * sizeof(float));
	double e = wrong && t_batch_logits(&m, r.tokens[1], r.T[1], wrong) == 0 ? t_rel_err(wrong, r.logits[1], n) : 0;
	snprintf(name, sizeof name, "%s_interleaved_rope_differs", which);
	CHECK(e > 1e-3, name, "relative error %.3g with the wrong RoPE layout", e);
	free(wrong);
	m.cfg.rope_style = style;

	/* qpack -p f32 DIR writes a stream that loads back to the same model */
	char out[512], cmd[1024];
	snprintf(out, sizeof out, "%s/%s.msgpack", tmpdir, which);
	snprintf(cmd, sizeof cmd, "bin/qpack -p f32 -o %s %s 2>/dev/null", out, dir);
	rl_model s;
	snprintf(name, sizeof name, "%s_qpack_f32_round_trip", which);
	if (system(cmd) != 0 || rl_model_load(out, NULL, &s)) {
		CHECK(0, name, "%s failed: %s", cmd, rl_err());
	} else {
		int same = strcmp(s.source, m.source) == 0 && s.cfg.head_dim == c->head_dim &&
			   s.cfg.rope_style == c->rope_style && s.cfg.qk_norm == c->qk_norm &&
			   s.cfg.qkv_bias == c->qkv_bias && s.cfg.tied_embeddings == c->tied_embeddings &&
			   s.tok.kind == m.tok.kind && s.tok.vocab_size == m.tok.vocab_size;
		CHECK(same, name, "source %s vs %s, or the config or tokenizer changed", s.source, m.source);
		snprintf(name, sizeof name, "%s_stream", which);
		check_logits(&s, &r, name);
		rl_model_free(&s);
	}
	rl_model_free(&m);
	free_reference(&r);
}

/* ---- bad input ---- */

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int copy_file(const char *from, const char *to, long cut)
{
	size_t len;
	char *d = rl_read_file(from, &len);
	if (!d)
		return -1;
	if (cut > 0 && (size_t)cut < len)
		len -= (size_t)cut;
	int rc = write_file(to, d, len);
	free(d);
	return rc;
}

/* a fresh directory tmpdir/name holding a copy of fixture from's files;
 * config.json with the first occurrence of find replaced by repl */
static const char *bad_dir(const char *name, const char *from, const char *find, const char *repl)
{
	static char dir[512];
	char a[512], b[600];
	snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
	mkdir(dir, 0755);
	const char *files[] = { "config.json", "model.safetensors", "model.safetensors.index.json",
				"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
				"tokenizer.json", "tokenizer_config.json" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(a, sizeof a, FIX "/%s/%s", from, files[i]);
		snprintf(b, sizeof b, "%s/%s", dir, files[i]);
		if (access(a, F_OK) == 0)
			copy_file(a, b, 0);
	}
	if (find) {
		snprintf(b, sizeof b, "%s/config.json", dir);
		size_t len;
		char *text = rl_read_file(b, &len), *at = text ? strstr(text, find) : NULL;
		if (at) {
			FILE *f = fopen(b, "w");
			fprintf(f, "%.*s%s%s", (int)(at - text), text, repl, at + strlen(find));
			fclose(f);
		}
		free(text);
	}
	return dir;
}

/* loading dir must fail with both substrings in the message */
static void expect_load_error(const char *name, const char *dir, const char *want1, const char *want2)
{
	rl_model m;
	if (rl_model_load(dir, NULL, &m) == 0) {
		rl_model_free(&m);
		CHECK(0, name, "loaded");
		return;
	}
	const char *e = rl_err();
	CHECK(strstr(e, want1) && (!want2 || strstr(e, want2)), name, "message \"%s\" lacks \"%s\"%s%s", e, want1,
	      want2 ? " or " : "", want2 ? want2 : "");
}

/* a safetensors file of a header and data_len zero bytes; open must fail naming the file and want */
static void expect_st_error(const char *name, const char *header, size_t data_len, const char *want)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
	size_t hl = strlen(header);
	unsigned char *buf = calloc(1, 8 + hl + data_len);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, header, hl);
	write_file(path, buf, 8 + hl + data_len);
	free(buf);
	rl_safetensors st;
	if (rl_safetensors_open(&st, path) == 0) {
		rl_safetensors_close(&st);
		CHECK(0, name, "opened");
		return;
	}
	CHECK(strstr(rl_err(), path) && strstr(rl_err(), want), name, "message \"%s\" lacks the path or \"%s\"",
	      rl_err(), want);
}

static void test_safetensors_bad(void)
{
	expect_st_error("st_offsets_out_of_range",
			"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
			"\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
			24, "out of range");
	expect_st_error("st_overlap",
			"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
			"\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]}}",
			16, "overlap");
	expect_st_error("st_unknown_dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
			"dtype \"F33\" is not a safetensors dtype");
	expect_st_error("st_size_disagrees", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 16,
			"needs 16");
	expect_st_error("st_shape_overflow",
			"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,16]}}", 16,
			"overflows");
	expect_st_error("st_negative_dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
			"shape[0]");
	expect_st_error("st_not_json", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],", 16, "header");
	expect_st_error("st_twice",
			"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
			8, "appears twice");
	expect_st_error("st_bad_metadata", "{\"__metadata__\":{\"format\":3}}", 0, "__metadata__");
	/* a header length beyond the file */
	char path[512];
	snprintf(path, sizeof path, "%s/st_long_header.safetensors", tmpdir);
	unsigned char b[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}' };
	write_file(path, b, sizeof b);
	rl_safetensors st;
	int rc = rl_safetensors_open(&st, path);
	CHECK(rc == -1 && strstr(rl_err(), path) && strstr(rl_err(), "runs past the end"), "st_header_past_end",
	      "%s", rc ? rl_err() : "opened");
	/* a well-formed file with metadata and a zero-sized tensor opens */
	snprintf(path, sizeof path, "%s/st_good.safetensors", tmpdir);
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
			"\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}  ";
	size_t hl = strlen(h);
	unsigned char buf[512] = { 0 };
	buf[0] = (unsigned char)hl;
	memcpy(buf + 8, h, hl);
	write_file(path, buf, 8 + hl + 8);
	rc = rl_safetensors_open(&st, path);
	const rl_st_tensor *w = rc ? NULL : rl_safetensors_find(&st, "w");
	CHECK(rc == 0 && st.ntensors == 2 && w && w->dtype == RL_F16 && w->ndim == 2 && w->bytes == 8 &&
		      rl_safetensors_find(&st, "e") && !rl_safetensors_find(&st, "x"),
	      "st_good_file_opens", "%s", rc ? rl_err() : "wrong tensors");
	if (rc == 0)
		rl_safetensors_close(&st);
}

static void test_dirs_bad(void)
{
	expect_load_error("missing_field", bad_dir("nohidden", "llama", "\"hidden_size\"", "\"hidden_sizes\""),
			  "config.json", "hidden_size is missing");
	expect_load_error("unknown_architecture",
			  bad_dir("arch", "llama", "LlamaForCausalLM", "GPT2LMHeadModel"), "config.json",
			  "\"GPT2LMHeadModel\" is not supported");
	expect_load_error("unknown_model_type", bad_dir("mtype", "llama", "\"llama\"", "\"mistral\""), "config.json",
			  "model_type \"mistral\"");
	expect_load_error("rope_scaling_yarn",
			  bad_dir("rope", "llama", "\"rope_scaling\": null",
				  "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8.0}"),
			  "config.json", "rope_scaling type \"yarn\" is not supported");
	expect_load_error("rope_scaling_llama3_incomplete",
			  bad_dir("ropel3", "llama", "\"rope_scaling\": null",
				  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"),
			  "config.json", "llama3 rope scaling needs");
	expect_load_error("rope_scaling_no_factor",
			  bad_dir("ropelin", "qwen3", "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}"),
			  "config.json", "factor is missing");
	expect_load_error("attention_bias", bad_dir("abias", "llama", "\"attention_bias\": false", "\"attention_bias\": true"),
			  "config.json", "attention_bias true is not supported");
	expect_load_error("hidden_act", bad_dir("gelu", "qwen2", "\"silu\"", "\"gelu\""), "config.json",
			  "hidden_act \"gelu\"");
	expect_load_error("shape_disagrees_with_config",
			  bad_dir("shape", "llama", "\"intermediate_size\": 40", "\"intermediate_size\": 48"),
			  "model.safetensors: tensor model.layers.0.mlp.down_proj.weight: shape [16, 40] disagrees",
			  "[16, 48]");
	expect_load_error("vocab_disagrees_with_config",
			  bad_dir("vocab", "qwen3", "\"vocab_size\": 300", "\"vocab_size\": 301"),
			  "model-00001-of-00002.safetensors: tensor model.embed_tokens.weight: shape [300, 16]", NULL);
	expect_load_error("untied_without_lm_head",
			  bad_dir("untied", "qwen3", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"),
			  "lm_head.weight is missing", NULL);
	expect_load_error("rope_theta_not_number", bad_dir("theta", "llama", "\"rope_theta\": 10000.0", "\"rope_theta\": \"1e4\""),
			  "config.json", "rope_theta is not a number");
	{
		rl_model m;
		int rc = rl_model_load(bad_dir("ropedefault", "qwen3", "\"rope_scaling\": null",
					       "\"rope_scaling\": {\"rope_type\": \"default\"}"), NULL, &m);
		CHECK(rc == 0, "rope_scaling_default_is_plain_rope", "%s", rl_err());
		if (rc == 0)
			rl_model_free(&m);
		rc = rl_model_load(bad_dir("notype", "qwen3", "\"model_type\": \"qwen3\",", ""), NULL, &m);
		CHECK(rc == 0 && strcmp(m.arch, "qwen3") == 0 && m.cfg.qk_norm, "model_type_from_architectures", "%s",
		      rc ? rl_err() : m.arch);
		if (rc == 0)
			rl_model_free(&m);
	}
	/* the safetensors file cut short: the header's offsets run past the data */
	const char *d = bad_dir("trunc", "llama", NULL, NULL);
	char a[600];
	snprintf(a, sizeof a, "%s/model.safetensors", d);
	copy_file(FIX "/llama/model.safetensors", a, 100);
	expect_load_error("truncated_safetensors", d, "trunc/model.safetensors: tensor", "out of range");
	/* one shard gone */
	d = bad_dir("noshard", "qwen3", NULL, NULL);
	snprintf(a, sizeof a, "%s/model-00002-of-00002.safetensors", d);
	unlink(a);
	expect_load_error("missing_shard", d, "noshard/model-00002-of-00002.safetensors", "No such file");
	/* no weights at all */
	d = bad_dir("noweights", "llama", NULL, NULL);
	snprintf(a, sizeof a, "%s/model.safetensors", d);
	unlink(a);
	expect_load_error("no_weights", d, "neither model.safetensors nor model.safetensors.index.json", NULL);
	d = bad_dir("noconfig", "llama", NULL, NULL);
	snprintf(a, sizeof a, "%s/config.json", d);
	unlink(a);
	expect_load_error("no_config", d, "noconfig/config.json: No such file", NULL);
	/* a tensor the config has no place for (Llama's o_proj bias) */
	d = bad_dir("extra", "llama", NULL, NULL);
	snprintf(a, sizeof a, "%s/model.safetensors", d);
	{
		size_t len;
		unsigned char *f = (unsigned char *)rl_read_file(FIX "/llama/model.safetensors", &len);
		char *hit = f ? memmem(f, len, "model.layers.1.mlp.up_proj.weight", 33) : NULL;
		if (hit) {
			memcpy(hit, "model.layers.1.self_attn.o_proj.b", 33);
			write_file(a, f, len);
		}
		free(f);
	}
	expect_load_error("unknown_tensor", d, "model.layers.1.self_attn.o_proj.b", "not a tensor of a llama model");
	/* a NaN in a weight */
	d = bad_dir("nan", "llama", NULL, NULL);
	snprintf(a, sizeof a, "%s/model.safetensors", d);
	{
		size_t len;
		unsigned char *f = (unsigned char *)rl_read_file(FIX "/llama/model.safetensors", &len);
		if (f) {
			uint32_t nan = 0x7fc00000;
			memcpy(f + len - 4, &nan, 4);
			write_file(a, f, len);
		}
		free(f);
	}
	expect_load_error("non_finite_weight", d, "nan/model.safetensors: tensor", "non-finite value");
	/* the index naming a file outside the directory */
	d = bad_dir("escape", "qwen3", NULL, NULL);
	snprintf(a, sizeof a, "%s/model.safetensors.index.json", d);
	const char *escape = "{\"weight_map\":{\"model.norm.weight\":\"../x.safetensors\"}}";
	write_file(a, escape, strlen(escape));
	expect_load_error("index_outside_dir", d, "model.safetensors.index.json: weight_map: model.norm.weight",
			  "not the name of a file");
	/* the index putting a tensor in the wrong shard */
	d = bad_dir("wrongshard", "qwen3", NULL, NULL);
	snprintf(a, sizeof a, "%s/model.safetensors.index.json", d);
	{
		size_t len;
		char *text = rl_read_file(a, &len), *at = text ? strstr(text, "00001-of") : NULL;
		if (at) {
			at[4] = '2'; /* model.embed_tokens.weight, the first entry, now said to be in the second shard */
			write_file(a, text, len);
		}
		free(text);
	}
	expect_load_error("index_wrong_shard", d, "weight_map puts model.embed_tokens.weight in model-00002-of-00002",
			  NULL);
}

/* A header one byte longer (a space more) leaves every f16 tensor at an odd
 * address in the mapping: the loader copies them and the logits still match. */
static void test_misaligned(void)
{
	size_t len;
	unsigned char *good = (unsigned char *)rl_read_file(FIX "/qwen2/model.safetensors", &len);
	unsigned char *buf = good ? malloc(len + 1) : NULL;
	reference r;
	if (!buf || read_reference(FIX "/qwen2.ref", &r)) {
		CHECK(0, "misaligned_tensors", "fixtures missing");
		free(good);
		free(buf);
		return;
	}
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | good[i];
	uint64_t h1 = hlen + 1;
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(h1 >> (8 * i));
	memcpy(buf + 8, good + 8, hlen);
	buf[8 + hlen] = ' ';
	memcpy(buf + 9 + hlen, good + 8 + hlen, len - 8 - hlen);
	const char *dir = bad_dir("misaligned", "qwen2", NULL, NULL);
	char path[600];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	write_file(path, buf, len + 1);
	rl_model m;
	if (rl_model_load(dir, NULL, &m)) {
		CHECK(0, "misaligned_tensors", "%s", rl_err());
	} else {
		CHECK(((uintptr_t)m.layers[0].ffn_up->data & 1) == 0, "misaligned_tensors_copied", "f16 data at an odd address");
		check_logits(&m, &r, "misaligned");
		rl_model_free(&m);
	}
	free_reference(&r);
	free(good);
	free(buf);
}

/* Mutated and truncated copies of a good directory's safetensors file (bytes
 * of the header changed, the file cut anywhere) must each load or fail with a
 * message, never crash; whatever opens keeps every tensor inside its file. */
static void test_fuzz(void)
{
	size_t len;
	unsigned char *good = (unsigned char *)rl_read_file(FIX "/qwen2/model.safetensors", &len);
	if (!good || len < 16) {
		CHECK(0, "fuzz_safetensors", "no fixture");
		free(good);
		return;
	}
	size_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | good[i];
	const char *dir = bad_dir("fuzz", "qwen2", NULL, NULL);
	char path[600];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	unsigned char *buf = malloc(len);
	uint64_t s = 0x853c49e6748fea9bull;
	int opened = 0, loaded = 0, escaped = 0, runs = 600;
	for (int it = 0; it < runs; it++) {
		memcpy(buf, good, len);
		size_t n = len;
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		if (it % 4 == 3) {
			n = (size_t)(s >> 33) % len; /* cut short */
		} else {
			static const char alphabet[] = "0123456789[]{},:\" -eE.FBI";
			int k = 1 + (int)((s >> 40) % 4);
			for (int j = 0; j < k; j++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				size_t at = (size_t)(s >> 33) % (8 + hlen);
				buf[at] = at < 8 ? (unsigned char)(s >> 20) : (unsigned char)alphabet[(s >> 13) % (sizeof alphabet - 1)];
			}
		}
		write_file(path, buf, n);
		rl_safetensors st;
		if (rl_safetensors_open(&st, path) == 0) {
			opened++;
			for (int i = 0; i < st.ntensors; i++) {
				const char *p = st.tensors[i].data;
				if (p < (const char *)st.map + 8 || p + st.tensors[i].bytes > (const char *)st.map + st.size)
					escaped++;
			}
			rl_safetensors_close(&st);
		} else if (!strstr(rl_err(), path)) {
			escaped++;
		}
		rl_model m;
		if (rl_model_load(dir, NULL, &m) == 0) {
			loaded++;
			rl_model_free(&m);
		}
	}
	free(buf);
	free(good);
	printf("# fuzz: %d opened, %d loaded\n", opened, loaded);
	CHECK(escaped == 0 && opened < runs, "fuzz_safetensors",
	      "%d of %d mutations left a tensor outside its file or an error without the path (%d opened, %d loaded)",
	      escaped, runs, opened, loaded);
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/test_hf.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_model("llama");
	test_model("qwen2");
	test_model("qwen3");
	test_model("llama3rope");
	test_model("linearrope");
	test_safetensors_bad();
	test_dirs_bad();
	test_misaligned();
	test_fuzz();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_hf: could not remove %s\n", tmpdir);
	return t_done();
}
