/* test_train: the training backward pass (train.h). Each layer's backward
 * against central differences of its forward; the whole model's LoRA and
 * input gradients against central differences on tiny random models (both
 * RoPE layouts, GQA, qk-norm, qkv bias); LoRA gradients on stories260K
 * against PyTorch autograd in float64 (tests/ref/lora_grad.py, committed
 * fixture tests/fixtures/lora_grad.bin) within 1e-3 relative; and the loss
 * falling under a few plain gradient steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "lora.h"
#include "model.h"
#include "train.h"
#include "t.h"

static uint64_t rng_state = 0x1234567;

static float urand(void) /* uniform in [-1, 1) */
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng_state >> 40) * (2.0 / 16777216.0) - 1.0);
}

static void fill(float *p, size_t n, float a)
{
	for (size_t i = 0; i < n; i++)
		p[i] = a * urand();
}

/* max |fd - g| / max |g| over the checked entries; loss(ctx) reads x */
typedef double (*loss_fn)(void *ctx);

static double fd_check(loss_fn f, void *ctx, float *x, const float *g, size_t n, float h, size_t nmax)
{
	double num = 0, den = 1e-6;
	size_t step = n > nmax ? n / nmax : 1;
	for (size_t i = 0; i < n; i += step) {
		float x0 = x[i];
		x[i] = x0 + h;
		double lp = f(ctx);
		x[i] = x0 - h;
		double lm = f(ctx);
		x[i] = x0;
		double fd = (lp - lm) / ((double)(x0 + h) - (double)(x0 - h));
		num = fabs(fd - g[i]) > num ? fabs(fd - g[i]) : num;
	}
	for (size_t i = 0; i < n; i++)
		den = fabs(g[i]) > den ? fabs(g[i]) : den;
	return num / den;
}

static double dot(const float *c, const float *y, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)c[i] * y[i];
	return s;
}

/* ---- layers ---- */

enum { RN = 3, RC = 8 };
static struct {
	float x[RN * RC], w[RC], c[RN * RC], y[RN * RC], rstd[RN], dx[RN * RC];
} rn;

static double rms_loss(void *ctx)
{
	(void)ctx;
	rl_rmsnorm_forward(rn.y, rn.rstd, rn.x, rn.w, RN, RC, 1e-5f);
	return dot(rn.c, rn.y, RN * RC);
}

enum { SN = 10 };
static struct {
	float g[SN], u[SN], c[SN], h[SN], dg[SN], du[SN];
} sw;

static double swiglu_loss(void *ctx)
{
	(void)ctx;
	rl_swiglu_forward(sw.h, sw.g, sw.u, SN);
	return dot(sw.c, sw.h, SN);
}

enum { PN = 3, PH = 2, PD = 8, PCTX = 10 };
static struct {
	float x[PN * PH * PD], c[PN * PH * PD], y[PN * PH * PD], cs[PCTX * PD / 2], sn[PCTX * PD / 2];
	int pos[PN], half;
} rp;

static double rope_loss(void *ctx)
{
	(void)ctx;
	memcpy(rp.y, rp.x, sizeof rp.x);
	rl_rope_forward(rp.y, PN, PH * PD, PH, PD, rp.pos, rp.cs, rp.sn, rp.half);
	return dot(rp.c, rp.y, PN * PH * PD);
}

enum { AT = 5, AH = 4, AKH = 2, AD = 4 };
static struct {
	float q[AT * AH * AD], k[AT * AKH * AD], v[AT * AKH * AD], c[AT * AH * AD], o[AT * AH * AD];
	float lse[AH * AT], s1[AT * AT], s2[AT * AT];
	float dq[AT * AH * AD], dk[AT * AKH * AD], dv[AT * AKH * AD];
} at;

static double attention_loss(void *ctx)
{
	(void)ctx;
	rl_attention_forward(at.o, at.lse, AT, at.q, at.k, at.v, AT, AH, AKH, AD, at.s1);
	return dot(at.c, at.o, AT * AH * AD);
}

enum { KV = 12 };
static struct {
	float z[KV], tl[KV], dz[KV], lse, scratch[KV];
	int32_t ids[KV];
	int k;
	float tau;
} kl;

static double kl_loss(void *ctx)
{
	(void)ctx;
	return kl.tau * kl.tau * rl_kl_topk_tail(kl.z, KV, kl.k, kl.ids, kl.tl, kl.lse, kl.tau, 1.0f, NULL, kl.scratch);
}

static double ce_loss(void *ctx)
{
	(void)ctx;
	return rl_cross_entropy(kl.z, KV, 3, 1.0f, NULL);
}

static void test_layers(void)
{
	double e;
	fill(rn.x, RN * RC, 2.0f);
	fill(rn.w, RC, 1.5f);
	fill(rn.c, RN * RC, 1.0f);
	rms_loss(NULL);
	rl_rmsnorm_backward(rn.dx, rn.c, rn.x, rn.w, rn.rstd, RN, RC);
	e = fd_check(rms_loss, NULL, rn.x, rn.dx, RN * RC, 1e-2f, 1000);
	CHECK(e < 2e-4, "rmsnorm_backward", "relative error %.3g", e);

	fill(sw.g, SN, 3.0f);
	fill(sw.u, SN, 2.0f);
	fill(sw.c, SN, 1.0f);
	rl_swiglu_backward(sw.dg, sw.du, sw.c, sw.g, sw.u, SN);
	e = fd_check(swiglu_loss, NULL, sw.g, sw.dg, SN, 1e-2f, 1000);
	double e2 = fd_check(swiglu_loss, NULL, sw.u, sw.du, SN, 1e-2f, 1000);
	CHECK(e < 2e-4 && e2 < 2e-4, "swiglu_backward", "relative errors %.3g (gate) %.3g (up)", e, e2);

	for (int half = 0; half < 2; half++) {
		for (int p = 0; p < PCTX; p++)
			for (int j = 0; j < PD / 2; j++) {
				double a = p * pow(10000.0, -2.0 * j / PD);
				rp.cs[p * PD / 2 + j] = (float)cos(a);
				rp.sn[p * PD / 2 + j] = (float)sin(a);
			}
		rp.pos[0] = 0, rp.pos[1] = 5, rp.pos[2] = 9;
		rp.half = half;
		fill(rp.x, sizeof rp.x / sizeof(float), 1.0f);
		fill(rp.c, sizeof rp.c / sizeof(float), 1.0f);
		float dx[PN * PH * PD];
		memcpy(dx, rp.c, sizeof dx);
		rl_rope_backward(dx, PN, PH * PD, PH, PD, rp.pos, rp.cs, rp.sn, half);
		e = fd_check(rope_loss, NULL, rp.x, dx, PN * PH * PD, 1e-2f, 1000);
		CHECK(e < 2e-4, half ? "rope_backward_half" : "rope_backward_interleaved", "relative error %.3g", e);
	}

	fill(at.q, sizeof at.q / sizeof(float), 1.5f);
	fill(at.k, sizeof at.k / sizeof(float), 1.5f);
	fill(at.v, sizeof at.v / sizeof(float), 1.0f);
	fill(at.c, sizeof at.c / sizeof(float), 1.0f);
	attention_loss(NULL);
	rl_attention_backward(at.dq, at.dk, at.dv, at.c, at.lse, AT, at.q, at.k, at.v, AT, AH, AKH, AD, at.s1, at.s2);
	e = fd_check(attention_loss, NULL, at.q, at.dq, sizeof at.q / sizeof(float), 1e-2f, 1000);
	double ek = fd_check(attention_loss, NULL, at.k, at.dk, sizeof at.k / sizeof(float), 1e-2f, 1000);
	double ev = fd_check(attention_loss, NULL, at.v, at.dv, sizeof at.v / sizeof(float), 1e-2f, 1000);
	CHECK(e < 2e-4 && ek < 2e-4 && ev < 2e-4, "attention_backward_gqa", "relative errors q %.3g k %.3g v %.3g", e,
	      ek, ev);

	/* the loss: a teacher over KV ids, its top-k in descending order */
	float full[KV];
	fill(full, KV, 3.0f);
	int order[KV];
	for (int i = 0; i < KV; i++)
		order[i] = i;
	for (int i = 0; i < KV; i++)
		for (int j = i + 1; j < KV; j++)
			if (full[order[j]] > full[order[i]]) {
				int t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
	fill(kl.z, KV, 2.0f);
	for (int tau2 = 1; tau2 <= 2; tau2++)
		for (int k = 4; k <= KV; k += KV - 4) {
			kl.tau = (float)tau2;
			kl.k = k;
			double s = 0;
			for (int i = 0; i < KV; i++)
				s += exp(full[i] / kl.tau);
			kl.lse = (float)log(s);
			for (int i = 0; i < k; i++) {
				kl.ids[i] = order[i];
				kl.tl[i] = full[order[i]];
			}
			memset(kl.dz, 0, sizeof kl.dz);
			double v = rl_kl_topk_tail(kl.z, KV, k, kl.ids, kl.tl, kl.lse, kl.tau, 1.0f, kl.dz, kl.scratch);
			e = fd_check(kl_loss, NULL, kl.z, kl.dz, KV, 1e-2f, 1000);
			char name[64];
			snprintf(name, sizeof name, "kl_topk_tail_k%d_tau%d", k, tau2);
			CHECK(e < 2e-4 && v >= 0, name, "relative error %.3g, KL %g", e, v);
			if (k == KV) {
				/* exact KL(p || q) computed here */
				double sz = 0, ex = 0;
				for (int i = 0; i < KV; i++)
					sz += exp(kl.z[i] / kl.tau);
				for (int i = 0; i < KV; i++) {
					double lp = full[i] / kl.tau - kl.lse, lq = kl.z[i] / kl.tau - log(sz);
					ex += exp(lp) * (lp - lq);
				}
				snprintf(name, sizeof name, "kl_full_exact_tau%d", tau2);
				CHECK(fabs(ex - v) < 1e-6 * (1 + ex), name, "KL %.9g, direct %.9g", v, ex);
			}
		}
	memset(kl.dz, 0, sizeof kl.dz);
	rl_cross_entropy(kl.z, KV, 3, 1.0f, kl.dz);
	e = fd_check(ce_loss, NULL, kl.z, kl.dz, KV, 1e-2f, 1000);
	CHECK(e < 2e-4, "cross_entropy_backward", "relative error %.3g", e);
}

/* ---- whole models ---- */

typedef struct {
	rl_train *t;
	rl_model *m;
	int nseq;
	rl_seq *seqs;
	int k;
	const int32_t *ids;      /* (N, k) */
	const float *tl, *lse;   /* (N, k) (N) */
	const int32_t *target;   /* (N) */
	float tau, w_ce;
	int N;
	float *scratch;          /* (2 V) */
} batch;

/* mean over positions of (1 - w_ce) tau^2 KL + w_ce CE; with_grad puts its
 * gradient in place of the logits (scratch holds a row's logits meanwhile) */
static double batch_loss(batch *b, int with_grad)
{
	if (rl_train_forward(b->t, b->nseq, b->seqs))
		return NAN;
	int V = b->m->cfg.vocab_size;
	float *logits = rl_train_logits(b->t), *z = b->scratch + V;
	double loss = 0;
	for (int n = 0; n < b->N; n++) {
		float s = 1.0f / (float)b->N, *dz = with_grad ? logits + (size_t)n * V : NULL;
		memcpy(z, logits + (size_t)n * V, (size_t)V * sizeof(float));
		if (dz)
			memset(dz, 0, (size_t)V * sizeof(float));
		loss += (1 - b->w_ce) * b->tau * b->tau *
			rl_kl_topk_tail(z, V, b->k, b->ids + (size_t)n * b->k, b->tl + (size_t)n * b->k, b->lse[n], b->tau,
					(1 - b->w_ce) * s, dz, b->scratch);
		if (b->w_ce > 0)
			loss += b->w_ce * rl_cross_entropy(z, V, b->target[n], b->w_ce * s, dz);
	}
	return loss / b->N;
}

static double batch_loss_cb(void *ctx)
{
	return batch_loss(ctx, 0);
}

/* a random teacher: top-k ids and logits of random full rows, lse at tau */
static void random_teacher(int N, int V, int k, float tau, int32_t *ids, float *tl, float *lse)
{
	float *row = malloc((size_t)V * sizeof(float));
	int *order = malloc((size_t)V * sizeof(int));
	for (int n = 0; n < N; n++) {
		fill(row, (size_t)V, 4.0f);
		double s = 0;
		for (int v = 0; v < V; v++) {
			order[v] = v;
			s += exp(row[v] / tau);
		}
		lse[n] = (float)log(s);
		for (int i = 0; i < k; i++)
			for (int j = i + 1; j < V; j++)
				if (row[order[j]] > row[order[i]]) {
					int t = order[i];
					order[i] = order[j];
					order[j] = t;
				}
		for (int i = 0; i < k; i++) {
			ids[(size_t)n * k + i] = order[i];
			tl[(size_t)n * k + i] = row[order[i]];
		}
	}
	free(row);
	free(order);
}

static void test_tiny(const char *arch, rl_rope_style rope, int qk_norm, int qkv_bias, const char *name)
{
	rl_config c = { .dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
			.vocab_size = 300, .seq_len = 16, .rope_theta = 10000, .norm_eps = 1e-5, .rope_style = rope,
			.qk_norm = qk_norm, .qkv_bias = qkv_bias, .tied_embeddings = 0 };
	rl_model m;
	rl_adapter a;
	if (rl_model_random(&c, arch, 5, &m) ||
	    rl_adapter_new(&a, &m, "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,output", 2, 4.0)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	rl_adapter_init_standard(&a, 3);
	for (int k = 0; k < a.ntargets; k++)
		fill(a.targets[k].b, (size_t)a.targets[k].OC * a.rank, 0.3f);
	enum { N = 12, K = 5 };
	int tokens[N];
	for (int i = 0; i < N; i++)
		tokens[i] = (i * 7 + 3) % c.vocab_size;
	tokens[9] = tokens[2]; /* a token twice, so its embedding gradient sums two positions */
	rl_seq seqs[2] = { { .ntok = 7, .tokens = tokens }, { .ntok = 5, .tokens = tokens + 7 } };
	int32_t ids[N * K], target[N];
	float tl[N * K], lse[N];
	random_teacher(N, c.vocab_size, K, 2.0f, ids, tl, lse);
	for (int i = 0; i < N; i++)
		target[i] = (i * 5 + 1) % c.vocab_size;
	rl_train *t = rl_train_new(&m, &a, N, 8);
	float scr[600];
	batch b = { t, &m, 2, seqs, K, ids, tl, lse, target, 2.0f, 0.3f, N, scr };
	if (!t || isnan(batch_loss(&b, 1)) || rl_train_backward(t)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	float *g = malloc(a.nparams * sizeof(float));
	memcpy(g, rl_train_grad(t), a.nparams * sizeof(float));
	double e = fd_check(batch_loss_cb, &b, a.params, g, a.nparams, 1e-2f, 120);
	char full[96];
	snprintf(full, sizeof full, "%s_lora_grad", name);
	CHECK(e < 5e-3, full, "relative error %.3g against central differences", e);
	/* the activation gradient reaches the first block: d loss / d token_embd[tok] */
	int C = c.dim, tok = tokens[2];
	float *dinp = malloc((size_t)C * sizeof(float));
	memset(dinp, 0, (size_t)C * sizeof(float));
	for (int n = 0; n < N; n++)
		if (tokens[n] == tok)
			for (int j = 0; j < C; j++)
				dinp[j] += rl_train_dinput(t)[(size_t)n * C + j];
	float *row = (float *)m.token_embd->data + (size_t)tok * C;
	e = fd_check(batch_loss_cb, &b, row, dinp, (size_t)C, 1e-2f, 100);
	snprintf(full, sizeof full, "%s_input_grad", name);
	CHECK(e < 5e-3, full, "relative error %.3g against central differences", e);
	/* two threads run the two sequences in two lanes: the same gradient, up to
	 * the order of the sums */
	rl_set_threads(2);
	rl_train *t2 = rl_train_new(&m, &a, N, 8);
	b.t = t2;
	e = 1;
	if (t2 && !isnan(batch_loss(&b, 1)) && rl_train_backward(t2) == 0) {
		double num = 0, den = 0;
		for (size_t i = 0; i < a.nparams; i++) {
			double d = fabs((double)g[i] - rl_train_grad(t2)[i]);
			num = d > num ? d : num;
			den = fabs(g[i]) > den ? fabs(g[i]) : den;
		}
		e = num / den;
	}
	snprintf(full, sizeof full, "%s_two_lanes", name);
	CHECK(e < 1e-5, full, "relative difference %.3g between one thread's gradient and two threads'", e);
	rl_train_free(t2);
	rl_set_threads(1);
	b.t = t;
	free(dinp);
	free(g);
	rl_train_free(t);
	/* weights stored quantized (q4g32, rows shorter than a group): the training
	 * forward dequantizes them as the runtime does, and gives its logits */
	for (int i = 0; i < m.ntensors; i++) {
		rl_tensor *w = &m.tensors[i];
		if (w->ndim != 2 || strncmp(w->name, "blk.", 4) != 0)
			continue;
		size_t rb = rl_row_bytes(RL_Q4G32, w->shape[1]);
		void *q = malloc(rb * w->shape[0]);
		for (uint64_t r = 0; q && r < w->shape[0]; r++)
			rl_dtypes[RL_Q4G32].from_float((const float *)w->data + r * w->shape[1], (char *)q + r * rb,
						       w->shape[1]);
		free(w->data);
		w->data = q;
		w->dtype = RL_Q4G32;
		w->bytes = rb * w->shape[0];
	}
	rl_adapter copy;
	float *z = malloc((size_t)7 * c.vocab_size * sizeof(float));
	rl_forward *f = NULL;
	t = rl_train_new(&m, &a, N, 8);
	int ok = t && rl_train_forward(t, 2, seqs) == 0 &&
		 rl_adapter_new(&copy, &m, "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,output", 2, 4.0) == 0;
	if (ok) {
		memcpy(copy.params, a.params, a.nparams * sizeof(float));
		ok = rl_model_attach_adapter(&m, &copy) == 0 && (f = rl_forward_new(&m, 7, 7)) &&
		     rl_forward_run(f, NULL, 1, &seqs[0], z) == 0;
	}
	e = 1;
	if (ok) {
		const float *zt = rl_train_logits(t);
		double num = 0, den = 0;
		for (size_t i = 0; i < (size_t)7 * c.vocab_size; i++) {
			num = fabs(z[i] - zt[i]) > num ? fabs(z[i] - zt[i]) : num;
			den = fabs(z[i]) > den ? fabs(z[i]) : den;
		}
		e = num / den;
	}
	snprintf(full, sizeof full, "%s_quantized_forward", name);
	CHECK(e <= 1e-5, full, "relative error %.3g against the runtime (%s)", e, rl_err());
	rl_forward_free(f);
	free(z);
	rl_train_free(t);
	rl_adapter_free(&a);
	rl_model_free(&m);
}

/* ---- stories260K against PyTorch ---- */

static int read_all(FILE *f, void *p, size_t n)
{
	return fread(p, 1, n, f) == n ? 0 : -1;
}

static void test_pytorch(const char *bin)
{
	FILE *f = fopen("tests/fixtures/lora_grad.bin", "rb");
	int32_t h[7];
	float hf[3];
	char magic[4];
	if (!f || read_all(f, magic, 4) || memcmp(magic, "RLLG", 4) || read_all(f, h, sizeof h) || h[0] != 1 ||
	    read_all(f, hf, sizeof hf)) {
		CHECK(0, "pytorch_fixture", "tests/fixtures/lora_grad.bin missing or not version 1");
		if (f)
			fclose(f);
		return;
	}
	int nseq = h[1], V = h[2], K = h[3], rank = h[4], ntargets = h[5], nparams = h[6];
	int32_t lens[8];
	if (nseq < 1 || nseq > 8 || read_all(f, lens, (size_t)nseq * 4)) {
		CHECK(0, "pytorch_fixture", "bad sequence count");
		fclose(f);
		return;
	}
	int N = 0;
	for (int s = 0; s < nseq; s++)
		N += lens[s];
	int32_t *tokens = malloc((size_t)N * 4), *ids = malloc((size_t)N * K * 4), *target = malloc((size_t)N * 4);
	float *tl = malloc((size_t)N * K * 4), *lse = malloc((size_t)N * 4), *params = malloc((size_t)nparams * 4);
	float *ref = malloc((size_t)nparams * 4);
	double ref_loss;
	int bad = read_all(f, tokens, (size_t)N * 4) || read_all(f, ids, (size_t)N * K * 4) ||
		  read_all(f, tl, (size_t)N * K * 4) || read_all(f, lse, (size_t)N * 4) ||
		  read_all(f, target, (size_t)N * 4) || read_all(f, params, (size_t)nparams * 4) ||
		  read_all(f, &ref_loss, 8) || read_all(f, ref, (size_t)nparams * 4);
	fclose(f);
	rl_model m;
	rl_adapter a;
	if (bad || rl_model_load(bin, NULL, &m)) {
		CHECK(0, "pytorch_fixture", "short fixture or %s", rl_err());
		return;
	}
	if (rl_adapter_new(&a, &m, "ffn_gate,ffn_up", rank, hf[0]) || a.ntargets != ntargets ||
	    a.nparams != (size_t)nparams || m.cfg.vocab_size != V) {
		CHECK(0, "pytorch_fixture", "the fixture's adapter does not fit the model: %s", rl_err());
		rl_model_free(&m);
		return;
	}
	memcpy(a.params, params, (size_t)nparams * 4);
	rl_seq seqs[8];
	for (int s = 0, off = 0; s < nseq; off += lens[s], s++)
		seqs[s] = (rl_seq){ .ntok = lens[s], .tokens = tokens + off };
	rl_train *t = rl_train_new(&m, &a, N, 32);
	float *scr = malloc((size_t)2 * V * sizeof(float));
	batch b = { t, &m, nseq, seqs, K, ids, tl, lse, target, hf[1], hf[2], N, scr };
	double loss = t ? batch_loss(&b, 1) : NAN;
	if (!t || isnan(loss) || rl_train_backward(t)) {
		CHECK(0, "pytorch_fixture", "%s", rl_err());
		return;
	}
	CHECK(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss), "pytorch_loss", "loss %.8f, PyTorch %.8f", loss,
	      ref_loss);
	/* the 8-lane exp gives the same gradient, bit for bit, as the widest one */
	{
		float *g1 = malloc((size_t)nparams * sizeof(float));
		memcpy(g1, rl_train_grad(t), (size_t)nparams * sizeof(float));
		rl_train_select_exp(0);
		rl_train_zero_grad(t);
		double loss8 = batch_loss(&b, 1);
		int ok = !isnan(loss8) && rl_train_backward(t) == 0;
		rl_train_select_exp(1);
		CHECK(ok && loss8 == loss && memcmp(g1, rl_train_grad(t), (size_t)nparams * sizeof(float)) == 0,
		      "exp_paths_same_gradient", "loss %.9g vs %.9g, or the gradients differ (avx512f: %d)", loss8, loss,
		      __builtin_cpu_supports("avx512f") != 0);
		free(g1);
	}
	/* the training forward gives the runtime's logits for the same unmerged adapter
	 * (a forward again: the backward's gradient took the logits' place) */
	rl_train_forward(t, nseq, seqs);
	rl_adapter a2;
	float *z = malloc((size_t)lens[0] * V * sizeof(float));
	rl_forward *fw = NULL;
	int ok = rl_adapter_new(&a2, &m, "ffn_gate,ffn_up", rank, hf[0]) == 0;
	if (ok) {
		memcpy(a2.params, params, (size_t)nparams * 4);
		ok = rl_model_attach_adapter(&m, &a2) == 0 && (fw = rl_forward_new(&m, lens[0], lens[0])) &&
		     rl_forward_run(fw, NULL, 1, &seqs[0], z) == 0;
	}
	double ez = 1;
	if (ok) {
		const float *zt = rl_train_logits(t);
		double num = 0, den = 0;
		for (size_t i = 0; i < (size_t)lens[0] * V; i++) {
			num = fabs(z[i] - zt[i]) > num ? fabs(z[i] - zt[i]) : num;
			den = fabs(z[i]) > den ? fabs(z[i]) : den;
		}
		ez = num / den;
	}
	CHECK(ez <= 1e-5, "train_forward_vs_runtime", "relative error %.3g (%s)", ez, rl_err());
	rl_forward_free(fw);
	free(z);
	/* tensor by tensor: max|g - ref| / max|ref| */
	const float *g = rl_train_grad(t);
	double worst = 0;
	const char *worst_name = "";
	for (int k = 0; k < a.ntargets; k++)
		for (int ab = 0; ab < 2; ab++) {
			const float *p = ab ? a.targets[k].b : a.targets[k].a;
			size_t off = (size_t)(p - a.params), n = (size_t)rank * (ab ? a.targets[k].OC : a.targets[k].IC);
			double num = 0, den = 0;
			for (size_t i = 0; i < n; i++) {
				num = fabs(g[off + i] - ref[off + i]) > num ? fabs(g[off + i] - ref[off + i]) : num;
				den = fabs(ref[off + i]) > den ? fabs(ref[off + i]) : den;
			}
			if (num / den > worst) {
				static char wn[96];
				worst = num / den;
				snprintf(wn, sizeof wn, "%s.lora_%s", a.targets[k].name, ab ? "b" : "a");
				worst_name = wn;
			}
		}
	CHECK(worst <= 1e-3, "pytorch_lora_grad", "%s: relative error %.3g", worst_name, worst);

	/* the loss falls on this batch under plain gradient steps */
	double first = loss, last = loss;
	for (int step = 0; step < 8; step++) {
		const float *gr = rl_train_grad(t);
		for (size_t i = 0; i < a.nparams; i++)
			a.params[i] -= 0.1f * gr[i];
		rl_train_zero_grad(t);
		last = batch_loss(&b, 1);
		if (isnan(last) || rl_train_backward(t))
			break;
	}
	CHECK(last < 0.9 * first, "loss_falls", "loss %.5f after 8 steps from %.5f", last, first);
	rl_train_free(t);
	rl_adapter_free(&a);
	rl_model_free(&m);
	free(tokens);
	free(ids);
	free(target);
	free(tl);
	free(lse);
	free(params);
	free(ref);
	free(scr);
}

/* ---- the SVD initialisation against numpy (tests/ref/svd_init.py) ---- */

static double svd_teacher(int o, int c) { return 0.5 * sin(0.37 * o + 0.23 * c + 0.1 * o * c / 7.0); }

static double svd_residual(int o, int c)
{
	double r = 0;
	for (int k = 1; k <= 6; k++)
		r += pow(0.6, k) * sin(0.31 * k * o + 0.5 * k) * cos(0.19 * k * c + 0.3 * k);
	return r + 0.03 * sin(0.77 * o * c + 0.3 * o * o + 0.11 * c);
}

static void test_svd_init(void)
{
	FILE *f = fopen("tests/fixtures/svd_init.txt", "r");
	int OC, IC, ranks[8], n = 0;
	double fro, want[8];
	if (!f || fscanf(f, "%*[^\n] %d %d fro %lf", &OC, &IC, &fro) != 3) {
		CHECK(0, "svd_init_fixture", "tests/fixtures/svd_init.txt missing or unreadable");
		if (f)
			fclose(f);
		return;
	}
	while (n < 8 && fscanf(f, "%d %lf", &ranks[n], &want[n]) == 2)
		n++;
	fclose(f);
	/* two models of one source: blk.0.ffn_gate (hidden, dim) = (OC, IC) set to the formulas */
	rl_config c = { .dim = IC, .hidden_dim = OC, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .head_dim = IC / 4,
			.vocab_size = 300, .seq_len = 16, .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = 1 };
	rl_model tm, sm;
	if (n < 4 || rl_model_random(&c, "llama", 9, &tm) || rl_model_random(&c, "llama", 9, &sm)) {
		CHECK(0, "svd_init_models", "%s", n < 4 ? "too few ranks in the fixture" : rl_err());
		return;
	}
	int w = rl_model_tensor_index(&tm, "blk.0.ffn_gate.weight");
	float *tw = tm.tensors[w].data, *sw = sm.tensors[w].data;
	double *res = malloc((size_t)OC * IC * sizeof(double));
	for (int o = 0; o < OC; o++)
		for (int i = 0; i < IC; i++) {
			tw[(size_t)o * IC + i] = (float)svd_teacher(o, i);
			sw[(size_t)o * IC + i] = (float)((double)tw[(size_t)o * IC + i] - svd_residual(o, i));
			res[(size_t)o * IC + i] = tw[(size_t)o * IC + i] - sw[(size_t)o * IC + i];
		}
	for (int j = 0; j < n; j++) {
		rl_adapter a;
		double kept = -1, err2 = 0, alpha = 3.0; /* alpha/r != 1: the scale is accounted for */
		if (rl_adapter_new(&a, &sm, "blk.0.ffn_gate", ranks[j], alpha) ||
		    rl_adapter_init_svd(&a, &sm, &tm, 1, &kept)) {
			CHECK(0, "svd_init", "rank %d: %s", ranks[j], rl_err());
			continue;
		}
		const rl_lora_target *g = &a.targets[0];
		int r = a.rank;
		for (int o = 0; o < OC; o++)
			for (int i = 0; i < IC; i++) {
				double ba = 0;
				for (int k = 0; k < r; k++)
					ba += (double)g->b[(size_t)o * r + k] * g->a[(size_t)k * IC + i];
				double d = res[(size_t)o * IC + i] - alpha / r * ba;
				err2 += d * d;
			}
		char name[64];
		snprintf(name, sizeof name, "svd_init_rank%d_optimal", r);
		CHECK(fabs(sqrt(err2) - want[j]) <= 1e-5 * fro, name,
		      "||R - s.B.A|| = %.7g, numpy's best rank-%d error %.7g (||R|| %.5g)", sqrt(err2), r, want[j], fro);
		snprintf(name, sizeof name, "svd_init_rank%d_captured", r);
		CHECK(fabs(kept - (1 - want[j] * want[j] / (fro * fro))) < 1e-5, name, "reported share %.7f, expected %.7f",
		      kept, 1 - want[j] * want[j] / (fro * fro));
		rl_adapter_free(&a);
	}
	/* a teacher of another source is refused, naming the problem */
	rl_adapter a;
	tm.source[0] ^= 1;
	int rc = rl_adapter_new(&a, &sm, "blk.0.ffn_gate", 2, 2.0) == 0 ? rl_adapter_init_svd(&a, &sm, &tm, 1, NULL) : 0;
	CHECK(rc == -1 && strstr(rl_err(), "own teacher"), "svd_init_other_source", "returned %d: %s", rc, rl_err());
	rl_adapter_free(&a);
	free(res);
	rl_model_free(&tm);
	rl_model_free(&sm);
}

int main(void)
{
	rl_set_threads(1);
	test_svd_init();
	test_layers();
	test_tiny("qwen3", RL_ROPE_HALF, 1, 1, "tiny_qwen3");
	test_tiny("llama", RL_ROPE_INTERLEAVED, 0, 0, "tiny_llama");
	const char *sh = getenv("SHARED") ? getenv("SHARED") : "../shared";
	char bin[512];
	snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", sh);
	if (access(bin, R_OK) != 0)
		t_skip("pytorch_lora_grad", "no stories260K model");
	else
		test_pytorch(bin);
	return t_done();
}
