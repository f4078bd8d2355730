/* test_model: the forward pass against references we did not derive from
 * our own code: llama2.c's greedy sample of stories260K and logits from an
 * independent PyTorch implementation (tests/ref/stories260k.py). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "eval.h"
#include "model.h"
#include "policy.h"
#include "quant.h"
#include "t.h"


static void test_greedy(const rl_model *m)
{
	const char *want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";
	int V = m->cfg.vocab_size, steps = 60, tokens[61];
	float *logits = malloc((size_t)V * sizeof(float));
	rl_kvcache c;
	rl_forward *f = rl_forward_new(m, 1, steps + 1);
	char text[4096] = "";
	size_t tl = 0;
	int n = 0;
	tokens[n++] = m->tok.bos_id;
	if (!f || rl_kvcache_init(&c, m, 1, steps + 1)) {
		CHECK(0, "greedy_llama2c_sample", "setup: %s", rl_err());
		return;
	}
	for (int pos = 0; pos < steps; pos++) {
		rl_seq s = { .slot = 0, .pos0 = pos, .ntok = 1, .tokens = &tokens[pos] };
		if (rl_forward_run(f, &c, 1, &s, logits)) {
			CHECK(0, "greedy_llama2c_sample", "forward: %s", rl_err());
			return;
		}
		int next = (int)rl_argmax(logits, (size_t)V);
		if (next == m->tok.bos_id)
			break;
		size_t plen;
		const char *p = rl_decode_piece(&m->tok, tokens[pos], next, &plen);
		if (tl + plen < sizeof text) {
			memcpy(text + tl, p, plen);
			text[tl += plen] = 0;
		}
		tokens[n++] = next;
	}
	CHECK(strncmp(text, want, strlen(want)) == 0, "greedy_llama2c_sample", "got \"%.200s\"", text);
	/* the same ids as PyTorch's greedy decode */
	FILE *g = fopen("tests/fixtures/stories260k_greedy.txt", "r");
	int ok = g != NULL, i = 1, id;
	while (g && ok && fscanf(g, "%d", &id) == 1 && i < n)
		ok = tokens[i++] == id;
	if (g)
		fclose(g);
	CHECK(ok && i > 40, "greedy_ids_match_pytorch", "differs at step %d (or fixture missing)", i);
	rl_kvcache_free(&c);
	rl_forward_free(f);
	free(logits);
}

static void test_reference_logits(const rl_model *m)
{
	FILE *f = fopen("tests/fixtures/stories260k_ref.bin", "rb");
	char magic[4];
	int32_t hdr[3];
	if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "RLRF", 4) || fread(hdr, 4, 3, f) != 3 ||
	    hdr[0] != 1 || hdr[1] <= 0 || hdr[1] > 4096 || hdr[2] != m->cfg.vocab_size) {
		CHECK(0, "pytorch_logits", "tests/fixtures/stories260k_ref.bin missing or malformed");
		if (f)
			fclose(f);
		return;
	}
	int T = hdr[1], V = hdr[2];
	int *tokens = malloc((size_t)T * sizeof(int));
	float *ref = malloc((size_t)T * V * sizeof(float)), *a = malloc((size_t)T * V * sizeof(float)),
	      *b = malloc((size_t)T * V * sizeof(float));
	if (fread(tokens, 4, (size_t)T, f) != (size_t)T || fread(ref, 4, (size_t)T * V, f) != (size_t)T * V) {
		CHECK(0, "pytorch_logits", "fixture truncated");
		fclose(f);
		return;
	}
	fclose(f);
	int rc = t_batch_logits(m, tokens, T, a);
	double e = rc ? INFINITY : t_rel_err(a, ref, (size_t)T * V);
	CHECK(e <= 1e-4, "pytorch_logits_batched", "max rel error %.3g > 1e-4 (%s)", e, rc ? rl_err() : "");
	rc = t_decode_logits(m, tokens, T, b);
	e = rc ? INFINITY : t_rel_err(b, ref, (size_t)T * V);
	CHECK(e <= 1e-4, "pytorch_logits_decode", "max rel error %.3g > 1e-4", e);
	e = t_rel_err(b, a, (size_t)T * V);
	CHECK(e <= 1e-5, "batched_equals_decode", "max rel error %.3g > 1e-5", e);
	/* two sequences packed in one batch give what each gives alone */
	int T2 = T / 2;
	rl_forward *fw = rl_forward_new(m, T + T2, T);
	rl_seq seqs[2] = { { .ntok = T2, .tokens = tokens + 3 }, { .ntok = T, .tokens = tokens } };
	float *c = malloc((size_t)(T + T2) * V * sizeof(float)), *alone = malloc((size_t)T2 * V * sizeof(float));
	rc = !fw || rl_forward_run(fw, NULL, 2, seqs, c) || t_batch_logits(m, tokens + 3, T2, alone);
	double e1 = rc ? INFINITY : t_rel_err(c, alone, (size_t)T2 * V);
	double e2 = rc ? INFINITY : t_rel_err(c + (size_t)T2 * V, a, (size_t)T * V);
	CHECK(e1 <= 1e-5 && e2 <= 1e-5, "packed_sequences_independent", "rel errors %.3g %.3g", e1, e2);
	rl_forward_free(fw);
	free(c);
	free(alone);
	free(tokens);
	free(ref);
	free(a);
	free(b);
}

static int to_f16(rl_writer *w, const rl_tensor *t, void *arg)
{
	(void)arg;
	return rl_write_tensor(w, t->name, t->ndim == 2 ? RL_F16 : RL_F32, t->dtype, t->ndim, t->shape, t->data,
			       NULL, NULL);
}

static void test_stream_round_trip(const rl_model *m)
{
	char path[] = "/tmp/rltest_modelXXXXXX";
	int fd = mkstemp(path);
	close(fd);
	int tokens[16];
	for (int i = 0; i < 16; i++)
		tokens[i] = (i * 37 + 1) % m->cfg.vocab_size;
	int V = m->cfg.vocab_size;
	float *a = malloc(16 * (size_t)V * sizeof(float)), *b = malloc(16 * (size_t)V * sizeof(float));
	for (int half = 0; half < 2; half++) {
		rl_writer *w = rl_writer_open(path);
		rl_model back;
		int rc = !w || rl_model_write(m, w, "test", half ? to_f16 : NULL, NULL) || rl_writer_commit(w) ||
			 rl_model_load(path, NULL, &back);
		if (rc) {
			CHECK(0, half ? "stream_round_trip_f16" : "stream_round_trip_f32", "%s", rl_err());
			continue;
		}
		t_batch_logits(m, tokens, 16, a);
		t_batch_logits(&back, tokens, 16, b);
		double e = t_rel_err(b, a, 16 * (size_t)V);
		int same_tok = back.tok.vocab_size == m->tok.vocab_size && back.tok.bos_id == m->tok.bos_id;
		for (int i = 0; same_tok && i < V; i++)
			same_tok = back.tok.piece_len[i] == m->tok.piece_len[i] &&
				   memcmp(back.tok.pieces[i], m->tok.pieces[i], (size_t)m->tok.piece_len[i]) == 0 &&
				   back.tok.scores[i] == m->tok.scores[i];
		if (!half)
			CHECK(e == 0 && same_tok && strcmp(back.source, m->source) == 0, "stream_round_trip_f32",
			      "rel error %g, tokenizer %s, source %s vs %s", e, same_tok ? "same" : "differs", back.source, m->source);
		else
			CHECK(e < 2e-2 && e > 0 && same_tok && strcmp(back.source, m->source) == 0, "stream_round_trip_f16",
			      "rel error %g (want (0, 2e-2)), source kept: %d", e, strcmp(back.source, m->source) == 0);
		rl_model_free(&back);
	}
	unlink(path);
	free(a);
	free(b);
}

/* Architectures without an external reference here yet: the two paths must agree. */
/* The decode kernel (keys from the cache) against the batched sgemm path. With
 * heads: head_dim D, H query and KH kv heads over T tokens, to reach the
 * kernel's edges: head groups of 1 to 6 (4 + 2), positions past whole blocks,
 * and D not a multiple of 8 (the portable kernel). */
static void test_random_shape(const char *arch, const char *what, int qk_norm, int qkv_bias, rl_rope_style style, int D,
			      int H, int KH, int T)
{
	rl_config c = { .dim = 48, .hidden_dim = 80, .n_layers = 2, .n_heads = H, .n_kv_heads = KH, .head_dim = D,
			.vocab_size = 300, .seq_len = 64, .rope_theta = 1e6, .norm_eps = 1e-6, .rope_style = style,
			.qk_norm = qk_norm, .qkv_bias = qkv_bias, .tied_embeddings = 0 };
	rl_model m;
	char name[80];
	snprintf(name, sizeof name, "random_%s%s_batched_equals_decode", arch, what);
	if (rl_model_random(&c, arch, 7, &m)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	int tokens[64];
	for (int i = 0; i < T; i++)
		tokens[i] = (i * 101 + 5) % c.vocab_size;
	float *a = malloc((size_t)T * c.vocab_size * sizeof(float)), *b = malloc((size_t)T * c.vocab_size * sizeof(float));
	int rc = t_batch_logits(&m, tokens, T, a) || t_decode_logits(&m, tokens, T, b);
	double e = rc ? INFINITY : t_rel_err(b, a, (size_t)T * c.vocab_size);
	CHECK(e <= 1e-5, name, "max rel error %.3g", e);
	free(a);
	free(b);
	rl_model_free(&m);
}

typedef struct {
	rl_policy *policy;
} quant_arg;

static int to_policy(rl_writer *w, const rl_tensor *t, void *arg)
{
	quant_arg *a = arg;
	rl_dtype dt;
	void *q;
	size_t bytes;
	rl_quant_stats st;
	if (rl_policy_dtype(a->policy, t, &dt))
		return -1;
	if (dt == t->dtype)
		return rl_write_tensor(w, t->name, dt, dt, t->ndim, t->shape, t->data, NULL, NULL);
	if (rl_quantize_tensor(t, dt, RL_QUANT_MSE, NULL, &q, &bytes, &st))
		return -1;
	int rc = rl_write_tensor(w, t->name, dt, dt, t->ndim, t->shape, q, NULL, NULL);
	free(q);
	return rc;
}

/* A quantized model: decode reads the packed weights through the fused kernels,
 * batched work dequantizes tiles; both must give the same logits. */
static void test_batch_invariance(const rl_model *m, const char *what);

static void test_quantized(const rl_model *m, const char *spec)
{
	char path[] = "/tmp/rltest_quantXXXXXX", name[96];
	int fd = mkstemp(path);
	close(fd);
	snprintf(name, sizeof name, "quantized_%s_batched_equals_decode", spec);
	quant_arg a = { rl_policy_parse(spec) };
	rl_writer *w = rl_writer_open(path);
	rl_model q;
	if (!a.policy || !w || rl_model_write(m, w, "test", to_policy, &a) || rl_writer_commit(w) ||
	    rl_model_load(path, NULL, &q)) {
		CHECK(0, name, "%s", rl_err());
		rl_policy_free(a.policy);
		unlink(path);
		return;
	}
	int T = 24, tokens[24], V = m->cfg.vocab_size;
	for (int i = 0; i < T; i++)
		tokens[i] = (i * 53 + 1) % V;
	float *x = malloc((size_t)T * V * sizeof(float)), *y = malloc((size_t)T * V * sizeof(float));
	int rc = t_batch_logits(&q, tokens, T, x) || t_decode_logits(&q, tokens, T, y);
	double e = rc ? INFINITY : t_rel_err(y, x, (size_t)T * V);
	CHECK(e <= 1e-5, name, "max rel error %.3g", e);
	test_batch_invariance(&q, spec);
	free(x);
	free(y);
	rl_model_free(&q);
	rl_policy_free(a.policy);
	unlink(path);
}

/* Batch invariance: three sequences of different lengths decoded together give
 * bit for bit the logits each gives decoded alone, in any slot. */
static int invariant_logits(const rl_model *m, int nseq, const int *lens, const int *slots, const int (*toks)[12],
			    float *out)
{
	int V = m->cfg.vocab_size, maxlen = 0;
	for (int s = 0; s < nseq; s++)
		maxlen = lens[s] > maxlen ? lens[s] : maxlen;
	rl_kvcache kv;
	rl_forward *f = rl_forward_new(m, nseq, 16);
	if (!f || rl_kvcache_init(&kv, m, 3, 16) || rl_forward_set_batch_invariant(f, 1))
		return -1;
	float *lg = malloc((size_t)nseq * V * sizeof(float));
	int rc = 0;
	/* step t feeds token t of every sequence still that long; the last step's logits are kept */
	for (int t = 0; t < maxlen && rc == 0; t++) {
		rl_seq seqs[3];
		int n = 0, idx[3];
		for (int s = 0; s < nseq; s++)
			if (t < lens[s]) {
				seqs[n] = (rl_seq){ .slot = slots[s], .pos0 = t, .ntok = 1, .tokens = &toks[s][t] };
				idx[n++] = s;
			}
		rc = rl_forward_run(f, &kv, n, seqs, lg);
		for (int k = 0; k < n && rc == 0; k++)
			if (t == lens[idx[k]] - 1)
				memcpy(out + (size_t)idx[k] * V, lg + (size_t)k * V, (size_t)V * sizeof(float));
	}
	free(lg);
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	return rc;
}

static void test_batch_invariance(const rl_model *m, const char *what)
{
	static const int toks[3][12] = { { 1, 403, 407, 261, 378, 432, 317, 394, 5, 9, 11, 13 },
					 { 1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120 },
					 { 1, 7, 77, 177, 277, 377, 477, 3, 33, 333, 13, 31 } };
	int lens[3] = { 12, 5, 9 }, together[3] = { 0, 1, 2 }, V = m->cfg.vocab_size;
	float *a = malloc(3 * (size_t)V * sizeof(float)), *b = malloc(3 * (size_t)V * sizeof(float));
	int rc = invariant_logits(m, 3, lens, together, toks, a);
	for (int s = 0; s < 3 && rc == 0; s++) {
		int slot = 2 - s; /* alone, and in another slot */
		rc = invariant_logits(m, 1, &lens[s], &slot, &toks[s], b + (size_t)s * V);
	}
	char name[80];
	snprintf(name, sizeof name, "batch_invariant_%s", what);
	CHECK(rc == 0 && memcmp(a, b, 3 * (size_t)V * sizeof(float)) == 0, name, "%s",
	      rc ? rl_err() : "logits differ between a batch of three and each alone");
	free(a);
	free(b);
}

int main(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", t_shared());
	rl_model m;
	if (rl_model_load(path, NULL, &m)) {
		CHECK(0, "load_stories260K", "%s", rl_err());
		return t_done();
	}
	CHECK(m.cfg.dim == 64 && m.cfg.n_layers == 5 && m.cfg.n_heads == 8 && m.cfg.n_kv_heads == 4 &&
	      m.cfg.hidden_dim == 172 && m.cfg.vocab_size == 512 && m.cfg.tied_embeddings,
	      "load_stories260K", "config dim %d layers %d heads %d/%d hidden %d vocab %d", m.cfg.dim,
	      m.cfg.n_layers, m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.hidden_dim, m.cfg.vocab_size);
	test_greedy(&m);
	test_reference_logits(&m);
	test_stream_round_trip(&m);
	test_batch_invariance(&m, "f32");
	test_quantized(&m, "w4w2");
	test_quantized(&m, "f16");
	test_quantized(&m, "q8g64;ffn_*=q3g32;attn_*=q4g128");
	rl_model_free(&m);
	test_random_shape("qwen3", "", 1, 0, RL_ROPE_HALF, 16, 4, 2, 20);
	test_random_shape("qwen2", "", 0, 1, RL_ROPE_HALF, 16, 4, 2, 20);
	test_random_shape("llama", "", 0, 0, RL_ROPE_INTERLEAVED, 16, 4, 2, 20);
	test_random_shape("llama", "_d8_g1", 0, 0, RL_ROPE_INTERLEAVED, 8, 6, 6, 45);
	test_random_shape("llama", "_d40_g3", 0, 0, RL_ROPE_INTERLEAVED, 40, 6, 2, 61);
	test_random_shape("qwen3", "_d8_g6", 1, 0, RL_ROPE_HALF, 8, 12, 2, 37);
	test_random_shape("llama", "_d6_portable", 0, 0, RL_ROPE_INTERLEAVED, 6, 4, 2, 33);
	return t_done();
}
