/* test_gguf.c: GGUF import. The files in tests/fixtures/gguf/ were written by
 * tests/ref/gguf_models.py from the GGUF specification, as llama.cpp's
 * converter lays out the tiny HF models of tests/fixtures/hf/ (llama's q/k
 * rows permuted to interleaved RoPE); each must give the logits of the HF
 * directory it came from (itself checked against PyTorch in test_hf.c), and
 * every damaged copy must be refused cleanly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "gguf.h"
#include "json.h"
#include "model.h"
#include "quant.h"
#include "t.h"

static void check_arch(const char *arch)
{
	char hf[256], gg[256], name[64];
	snprintf(hf, sizeof hf, "tests/fixtures/hf/%s", arch);
	snprintf(gg, sizeof gg, "tests/fixtures/gguf/%s.gguf", arch);
	snprintf(name, sizeof name, "gguf_%s_logits", arch);
	rl_model a, b;
	if (rl_model_load(hf, NULL, &a)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	if (rl_model_load(gg, NULL, &b)) {
		CHECK(0, name, "%s", rl_err());
		rl_model_free(&a);
		return;
	}
	int T = 12, V = a.cfg.vocab_size, tokens[12] = { 1, 5, 200, 7, 33, 99, 250, 3, 17, 64, 128, 2 };
	float *la = malloc((size_t)T * V * sizeof(float)), *lb = malloc((size_t)T * V * sizeof(float));
	int rc = t_batch_logits(&a, tokens, T, la) || t_batch_logits(&b, tokens, T, lb);
	double e = rc ? 1 : t_rel_err(lb, la, (size_t)T * V);
	CHECK(!rc && b.cfg.vocab_size == V && strcmp(a.arch, b.arch) == 0 && b.cfg.qk_norm == a.cfg.qk_norm &&
	      b.cfg.qkv_bias == a.cfg.qkv_bias && b.cfg.tied_embeddings == a.cfg.tied_embeddings && e < 1e-5,
	      name, "%s: relative error %g (arch %s/%s)", rc ? rl_err() : "", e, a.arch, b.arch);
	if (!strcmp(arch, "llama"))
		CHECK(b.cfg.rope_style == RL_ROPE_INTERLEAVED && a.cfg.rope_style == RL_ROPE_HALF, "gguf_llama_rope_layout",
		      "llama GGUF must run interleaved, the HF directory rotate-half");
	if (!strcmp(arch, "qwen3")) {
		/* the byte-level BPE tokenizer comes through: the same ids as tokenizer.json's */
		const char *text = "the cat <|im_end|> sat on the mat, 42 times!";
		int *ia, *ib;
		size_t na, nb;
		int r = rl_encode(&a.tok, text, strlen(text), 0, 0, &ia, &na) ||
			rl_encode(&b.tok, text, strlen(text), 0, 0, &ib, &nb);
		CHECK(!r && na == nb && !memcmp(ia, ib, na * sizeof(int)) && b.tok.eos_id == a.tok.eos_id,
		      "gguf_qwen3_tokenizer", "%s", r ? rl_err() : "ids differ from tokenizer.json's");
		if (!r) {
			free(ia);
			free(ib);
		}
	}
	free(la);
	free(lb);
	rl_model_free(&a);
	rl_model_free(&b);
}

static unsigned char *slurp(const char *path, size_t *n)
{
	return (unsigned char *)rl_read_file(path, n);
}

static int write_bytes(const char *path, const unsigned char *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(p, 1, n, f);
	return fclose(f);
}

/* Every truncation and a run of byte flips: refused with the path named, or
 * loaded; never a crash (the process would die here). */
static void check_damage(void)
{
	size_t n;
	unsigned char *orig = slurp("tests/fixtures/gguf/qwen3.gguf", &n);
	char path[] = "/tmp/rlgguf.XXXXXX";
	int fd = mkstemp(path);
	if (!orig || fd < 0) {
		CHECK(0, "gguf_truncations", "cannot read the fixture or make a temporary file");
		return;
	}
	close(fd);
	int bad = 0, refused = 0;
	char why[600] = "";
	for (size_t cut = 0; cut < n; cut += cut < 4096 ? 1 : 512) {
		rl_model m;
		write_bytes(path, orig, cut);
		if (rl_model_load_gguf(path, &m) == 0) {
			rl_model_free(&m);
			bad++;
			snprintf(why, sizeof why, "a file cut at %zu of %zu bytes loaded", cut, n);
		} else if (!strstr(rl_err(), path)) {
			bad++;
			snprintf(why, sizeof why, "error without the path: %s", rl_err());
		} else {
			refused++;
		}
	}
	CHECK(bad == 0 && refused > 100, "gguf_truncations", "%s", why);
	unsigned char *copy = malloc(n);
	unsigned x = 12345;
	int loaded = 0, failed = 0;
	for (int i = 0; i < 400; i++) {
		memcpy(copy, orig, n);
		for (int k = 0; k < 4; k++) {
			x = x * 1103515245u + 12345u;
			size_t at = (x >> 8) % (n < 4096 ? n : 4096); /* the header, mostly */
			x = x * 1103515245u + 12345u;
			copy[at] ^= (unsigned char)(1u << (x >> 29));
		}
		write_bytes(path, copy, n);
		rl_model m;
		if (rl_model_load_gguf(path, &m) == 0) {
			loaded++;
			rl_model_free(&m);
		} else {
			failed += strstr(rl_err(), path) == NULL;
		}
	}
	CHECK(failed == 0, "gguf_flipped_bytes", "%d errors did not name the file (%d of 400 loaded)", failed, loaded);
	free(copy);
	free(orig);
	unlink(path);
}

static void expect_error(const char *name, const char *content, size_t len, const char *want)
{
	char path[] = "/tmp/rlgguf.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	write_bytes(path, (const unsigned char *)content, len);
	rl_model m;
	int rc = rl_model_load(path, NULL, &m);
	CHECK(rc && strstr(rl_err(), want), name, "%s", rc ? rl_err() : "loaded");
	if (!rc)
		rl_model_free(&m);
	unlink(path);
}

/* ---- a GGUF with ggml's quantized types, written here by the specification ---- */

typedef struct {
	unsigned char *p;
	size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = 2 * (b->n + n) + 4096;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_u32(buf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, 4); put_u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { put_str(b, k); put_u32(b, 6); put(b, &v, 4); }
static void kv_str(buf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, 8); put_str(b, v); }

/* A random llama model with rows of 256, its matrices in ggml's four types;
 * the same model written as GGUF (ggml type ids 2 Q4_0, 8 Q8_0, 10 Q2_K, 12
 * Q4_K) must load to bit-identical logits. */
static void check_quantized(void)
{
	rl_config c = { .dim = 256, .hidden_dim = 256, .n_layers = 1, .n_heads = 4, .n_kv_heads = 1, .head_dim = 64,
			.vocab_size = 272, .seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-5,
			.rope_style = RL_ROPE_INTERLEAVED, .tied_embeddings = 1 };
	rl_model a, b;
	if (rl_model_random(&c, "llama", 9, &a)) {
		CHECK(0, "gguf_quantized_types", "%s", rl_err());
		return;
	}
	static const struct { const char *suffix; rl_dtype dt; uint32_t ggml; } plan[] = {
		{ "token_embd.weight", RL_Q8_0, 8 }, { "attn_q.weight", RL_Q4_K, 12 }, { "attn_k.weight", RL_Q2_K, 10 },
		{ "attn_v.weight", RL_Q4_0, 2 }, { "attn_output.weight", RL_Q8_0, 8 }, { "ffn_gate.weight", RL_Q2_K, 10 },
		{ "ffn_up.weight", RL_Q2_K, 10 }, { "ffn_down.weight", RL_Q4_K, 12 },
	};
	uint32_t *types = calloc((size_t)a.ntensors, sizeof *types);
	int rc = 0;
	for (int i = 0; i < a.ntensors && !rc; i++) {
		rl_tensor *t = &a.tensors[i];
		for (size_t p = 0; p < sizeof plan / sizeof plan[0]; p++) {
			size_t ls = strlen(t->name), lp = strlen(plan[p].suffix);
			if (ls < lp || strcmp(t->name + ls - lp, plan[p].suffix))
				continue;
			void *q;
			size_t bytes;
			rl_quant_stats st;
			rc = rl_quantize_tensor(t, plan[p].dt, RL_QUANT_RTN, NULL, &q, &bytes, &st);
			if (!rc) {
				free(t->data);
				t->data = q, t->dtype = plan[p].dt, t->bytes = bytes;
				types[i] = plan[p].ggml;
			}
		}
	}
	buf g = { 0 };
	put(&g, "GGUF", 4);
	put_u32(&g, 3);
	put_u64(&g, (uint64_t)a.ntensors);
	put_u64(&g, 16);
	kv_str(&g, "general.architecture", "llama");
	kv_u32(&g, "general.alignment", 32);
	kv_u32(&g, "llama.context_length", 64);
	kv_u32(&g, "llama.embedding_length", 256);
	kv_u32(&g, "llama.feed_forward_length", 256);
	kv_u32(&g, "llama.block_count", 1);
	kv_u32(&g, "llama.attention.head_count", 4);
	kv_u32(&g, "llama.attention.head_count_kv", 1);
	kv_f32(&g, "llama.rope.freq_base", 10000);
	kv_f32(&g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	kv_str(&g, "tokenizer.ggml.model", "llama");
	kv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
	kv_u32(&g, "tokenizer.ggml.eos_token_id", 2);
	/* the byte-level vocabulary of random models, as SentencePiece pieces */
	put_str(&g, "tokenizer.ggml.tokens");
	put_u32(&g, 9);
	put_u32(&g, 8);
	put_u64(&g, 272);
	for (int i = 0; i < 272; i++) {
		char piece[32];
		if (i < 3)
			snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
		else if (i < 259)
			snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
		else
			snprintf(piece, sizeof piece, "<unused%d>", i - 259);
		put_str(&g, piece);
	}
	put_str(&g, "tokenizer.ggml.scores");
	put_u32(&g, 9);
	put_u32(&g, 6);
	put_u64(&g, 272);
	for (int i = 0; i < 272; i++)
		put(&g, &(float){ 0 }, 4);
	put_str(&g, "tokenizer.ggml.token_type");
	put_u32(&g, 9);
	put_u32(&g, 5);
	put_u64(&g, 272);
	for (int i = 0; i < 272; i++)
		put_u32(&g, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 5);
	uint64_t off = 0;
	for (int i = 0; i < a.ntensors; i++) {
		const rl_tensor *t = &a.tensors[i];
		put_str(&g, t->name);
		put_u32(&g, (uint32_t)t->ndim);
		put_u64(&g, t->ndim == 2 ? t->shape[1] : t->shape[0]);
		if (t->ndim == 2)
			put_u64(&g, t->shape[0]);
		put_u32(&g, t->ndim == 2 && types[i] ? types[i] : 0);
		put_u64(&g, off);
		off += (t->bytes + 31) / 32 * 32;
	}
	while (g.n % 32)
		put(&g, "", 1);
	for (int i = 0; i < a.ntensors; i++) {
		put(&g, a.tensors[i].data, a.tensors[i].bytes);
		while (g.n % 32)
			put(&g, "", 1);
	}
	char path[] = "/tmp/rlggufq.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	write_bytes(path, g.p, g.n);
	if (!rc)
		rc = rl_model_load(path, NULL, &b);
	if (rc) {
		CHECK(0, "gguf_quantized_types", "%s", rl_err());
	} else {
		int T = 9, V = 272, tokens[9] = { 1, 40, 200, 7, 99, 3, 250, 12, 2 };
		float *la = malloc((size_t)T * V * sizeof(float)), *lb = malloc((size_t)T * V * sizeof(float));
		int r = t_batch_logits(&a, tokens, T, la) || t_batch_logits(&b, tokens, T, lb);
		int same_types = 1;
		for (int i = 0; i < b.ntensors; i++)
			same_types &= b.tensors[i].dtype == a.tensors[i].dtype;
		CHECK(!r && same_types && !memcmp(la, lb, (size_t)T * V * sizeof(float)), "gguf_quantized_types",
		      "%s", r ? rl_err() : same_types ? "logits differ" : "dtypes differ");
		free(la);
		free(lb);
		rl_model_free(&b);
	}
	/* the same file claiming a type this version does not read (6, Q5_0) for one tensor */
	size_t at = 0;
	for (size_t i = 0; i + 22 < g.n; i++)
		if (!memcmp(g.p + i, "blk.0.ffn_down.weight", 21)) {
			at = i + 21 + 4 + 16; /* name, n_dims, two dims: then the type */
			break;
		}
	uint32_t six = 6;
	if (at) {
		memcpy(g.p + at, &six, 4);
		write_bytes(path, g.p, g.n);
	}
	rl_model bad;
	int r = at ? rl_model_load(path, NULL, &bad) : 0;
	CHECK(at && r && strstr(rl_err(), "blk.0.ffn_down.weight") && strstr(rl_err(), "ggml type 6"), "gguf_unknown_type",
	      "%s", r ? rl_err() : "loaded");
	if (!r && at)
		rl_model_free(&bad);
	unlink(path);
	free(g.p);
	free(types);
	rl_model_free(&a);
}

int main(void)
{
	check_arch("llama");
	check_arch("qwen2");
	check_arch("qwen3");
	check_damage();
	check_quantized();
	expect_error("gguf_bad_version", "GGUF\x07\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24, "GGUF version 7");
	expect_error("gguf_absurd_counts", "GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f\0\0\0\0\0\0\0\0", 24,
		     "more than this reader takes");
	/* one key, general.architecture = "gpt9" */
	static const char arch[] = "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0"
				   "\x14\0\0\0\0\0\0\0general.architecture\x08\0\0\0\x04\0\0\0\0\0\0\0gpt9";
	expect_error("gguf_unknown_arch", arch, sizeof arch - 1, "architecture \"gpt9\"");
	expect_error("gguf_no_arch", "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24,
		     "general.architecture is missing");
	return t_done();
}
