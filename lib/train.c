/* train.c: the training forward and backward passes (see train.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#include "err.h"
#include "parallel.h"
#include "train.h"

/* Frozen weights stored otherwise than f32 are dequantized, by their dtype's
 * to_float as the runtime does, TILE_ROWS rows at a time for each product:
 * the work is O(OC.IC) against the product's O(N.OC.IC), and no f32 copy of
 * the model is kept. */
enum { TILE_ROWS = 256 };

/* Causal attention goes in blocks of queries, each block's products stopping
 * at the last key it can see: about half the work of full T x T squares. */
enum { QBLOCK = 64 };

/* A lane is a run of whole sequences of the batch, rows n0..n0+n of every
 * (N, ...) array, that one thread takes through the whole forward and backward
 * with single-threaded sgemm: at these sizes that beats OpenBLAS's threads
 * inside each small product. Each lane has its own scratch and its own
 * gradient, summed in lane order after the backward (the same result for the
 * same thread count). */
typedef struct {
	int s0, s1;          /* sequences */
	int n0, n;           /* token rows */
	float *tile;         /* (TILE_ROWS, max IC) weight rows dequantized for one product */
	float *scores, *dscores; /* (QBLOCK, ctx) attention scratch */
	float *grad;         /* (nparams) this lane's share of the gradient */
} lane;

struct rl_train {
	const rl_model *m;
	const rl_adapter *a;
	int max_tokens, ctx, N, nseq;
	int nlanes, lanes_cap;
	lane *lanes;         /* (lanes_cap) */
	float *lane_block;   /* every lane's tile, scores, dscores and grad */
	size_t lane_floats;  /* floats of one lane's part */
	/* saved activations, one block (act), L = n_layers */
	float *act;
	size_t nact;
	float *res;          /* (L+1, N, C) input of each block; res[L] enters the final norm */
	float *mid;          /* (L, N, C) residual after attention */
	float *rstd1, *rstd2;/* (L, N) */
	float *xb1, *xb2;    /* (L, N, C) normed inputs of attention and ffn */
	float *qraw, *kraw;  /* (L, N, H*D) (L, N, KH*D) before qk-norm (qk_norm only) */
	float *qrstd, *krstd;/* (L, N, H) (L, N, KH) (qk_norm only) */
	float *q, *k, *v;    /* (L, N, H*D) (L, N, KH*D) (L, N, KH*D) after RoPE */
	float *lse;          /* (L, H, N) log-sum-exp of each attention row */
	float *atty;         /* (L, N, H*D) attention output */
	float *gate, *up, *hb; /* (L, N, F) */
	float *rstdf;        /* (N) */
	float *xbf;          /* (N, C) */
	float *logits;       /* (N, V) */
	float *lora_t;       /* (ntargets, N, r) A.x of each target */
	/* scratch and gradients, another block */
	float *scr;
	size_t nscr;
	float *dres, *dxb, *tmpc; /* (N, C) */
	float *dq, *dk, *dv, *dqr, *dkr, *datty; /* (N, H*D) (N, KH*D) x2, (N, H*D) (N, KH*D), (N, H*D) */
	float *dgate, *dup, *dhb; /* (N, F) */
	float *dlt;          /* (N, r) */
	float *grad;         /* (nparams) */
	float *rope_cos, *rope_sin; /* (ctx, D/2) */
	int *pos;            /* (max_tokens) */
	int *seq_off, *seq_len; /* (max_tokens) */
};

typedef struct {
	float **p;
	size_t n;
} carve;

/* Sums the sizes, allocates one block, points each at its part (64-byte aligned). */
static float *alloc_block(carve *c, int nc, size_t *total)
{
	size_t sum = 0;
	for (int i = 0; i < nc; i++)
		sum += (c[i].n + 15) & ~(size_t)15;
	void *p = NULL;
	if (posix_memalign(&p, 64, (sum ? sum : 16) * sizeof(float)))
		return NULL;
	float *f = p;
	for (int i = 0; i < nc; i++) {
		*c[i].p = c[i].n ? f : NULL;
		f += (c[i].n + 15) & ~(size_t)15;
	}
	*total = sum;
	return p;
}

void rl_train_free(rl_train *t)
{
	if (!t)
		return;
	free(t->lanes);
	free(t->lane_block);
	free(t->act);
	free(t->scr);
	free(t->pos);
	free(t->seq_off);
	free(t->seq_len);
	free(t);
}

size_t rl_train_activation_bytes(const rl_train *t)
{
	return t->nact * sizeof(float);
}

size_t rl_train_scratch_bytes(const rl_train *t)
{
	return (t->nscr + (size_t)t->lanes_cap * t->lane_floats) * sizeof(float) +
	       3 * (size_t)t->max_tokens * sizeof(int);
}

rl_train *rl_train_new(const rl_model *m, const rl_adapter *a, int max_tokens, int ctx)
{
	const rl_config *c = &m->cfg;
	if (max_tokens <= 0 || ctx <= 0 || a->ntensors != m->ntensors) {
		rl_seterr("training workspace: %d tokens, context %d, or an adapter made for another model", max_tokens,
			  ctx);
		return NULL;
	}
	rl_train *t = calloc(1, sizeof *t);
	if (!t)
		goto oom;
	t->m = m;
	t->a = a;
	t->max_tokens = max_tokens;
	t->ctx = ctx;
	size_t N = (size_t)max_tokens, L = (size_t)c->n_layers, C = (size_t)c->dim, F = (size_t)c->hidden_dim;
	size_t D = (size_t)c->head_dim, H = (size_t)c->n_heads, KH = (size_t)c->n_kv_heads, V = (size_t)c->vocab_size;
	size_t QD = H * D, KD = KH * D, r = (size_t)a->rank;
	size_t maxin = C > F ? C : F;
	maxin = QD > maxin ? QD : maxin;
	/* one lane per thread; each lane's part rounded to whole cache lines */
	t->lanes_cap = rl_parallel_threads();
	size_t tile = (TILE_ROWS * maxin + 15) & ~(size_t)15, sq = ((size_t)QBLOCK * ctx + 15) & ~(size_t)15;
	t->lane_floats = tile + 2 * sq + ((a->nparams + 15) & ~(size_t)15);
	void *tp = NULL;
	t->lanes = calloc((size_t)t->lanes_cap, sizeof *t->lanes);
	if (!t->lanes || posix_memalign(&tp, 64, (size_t)t->lanes_cap * t->lane_floats * sizeof(float)))
		goto oom;
	t->lane_block = tp;
	for (int i = 0; i < t->lanes_cap; i++) {
		lane *ln = &t->lanes[i];
		ln->tile = t->lane_block + (size_t)i * t->lane_floats;
		ln->scores = ln->tile + tile;
		ln->dscores = ln->scores + sq;
		ln->grad = ln->dscores + sq;
	}
	size_t qk = c->qk_norm ? 1 : 0;
	carve acts[] = {
		{ &t->res, (L + 1) * N * C }, { &t->mid, L * N * C }, { &t->rstd1, L * N }, { &t->rstd2, L * N },
		{ &t->xb1, L * N * C }, { &t->xb2, L * N * C }, { &t->qraw, qk * L * N * QD },
		{ &t->kraw, qk * L * N * KD }, { &t->qrstd, qk * L * N * H }, { &t->krstd, qk * L * N * KH },
		{ &t->q, L * N * QD }, { &t->k, L * N * KD }, { &t->v, L * N * KD }, { &t->lse, L * H * N },
		{ &t->atty, L * N * QD }, { &t->gate, L * N * F }, { &t->up, L * N * F }, { &t->hb, L * N * F },
		{ &t->rstdf, N }, { &t->xbf, N * C }, { &t->logits, N * V },
		{ &t->lora_t, (size_t)a->ntargets * N * r },
	};
	t->act = alloc_block(acts, (int)(sizeof acts / sizeof *acts), &t->nact);
	size_t half = D / 2;
	carve scr[] = {
		{ &t->dres, N * C }, { &t->dxb, N * C }, { &t->tmpc, N * C }, { &t->dq, N * QD }, { &t->dk, N * KD },
		{ &t->dv, N * KD }, { &t->dqr, N * QD }, { &t->dkr, N * KD }, { &t->datty, N * QD },
		{ &t->dgate, N * F }, { &t->dup, N * F }, { &t->dhb, N * F }, { &t->dlt, N * r },
		{ &t->grad, a->nparams },
		{ &t->rope_cos, (size_t)ctx * half }, { &t->rope_sin, (size_t)ctx * half },
	};
	t->scr = alloc_block(scr, (int)(sizeof scr / sizeof *scr), &t->nscr);
	t->pos = malloc(N * sizeof(int));
	t->seq_off = malloc(N * sizeof(int));
	t->seq_len = malloc(N * sizeof(int));
	if (!t->act || !t->scr || !t->pos || !t->seq_off || !t->seq_len)
		goto oom;
	memset(t->grad, 0, a->nparams * sizeof(float));
	for (int p = 0; p < ctx; p++)
		for (size_t j = 0; j < half; j++) {
			double freq = pow(c->rope_theta, -2.0 * (double)j / (double)D);
			t->rope_cos[(size_t)p * half + j] = (float)cos(p * freq);
			t->rope_sin[(size_t)p * half + j] = (float)sin(p * freq);
		}
	return t;
oom:
	rl_train_free(t);
	rl_seterr("training workspace for %d tokens: out of memory", max_tokens);
	return NULL;
}

float *rl_train_logits(rl_train *t) { return t->logits; }
float *rl_train_grad(rl_train *t) { return t->grad; }
const float *rl_train_dinput(const rl_train *t) { return t->dres; }

void rl_train_zero_grad(rl_train *t)
{
	memset(t->grad, 0, t->a->nparams * sizeof(float));
}

/* ---- layers ---- */

void rl_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int n, float eps)
{
	for (int i = 0; i < N; i++) {
		const float *xi = x + (size_t)i * n;
		float *o = out + (size_t)i * n;
		float ss = 0.0f;
		for (int j = 0; j < n; j++)
			ss += xi[j] * xi[j];
		float s = 1.0f / sqrtf(ss / (float)n + eps);
		for (int j = 0; j < n; j++)
			o[j] = w[j] * (s * xi[j]);
		rstd[i] = s;
	}
}

/* y = w . x . s with s = (mean(x^2) + eps)^(-1/2):
 * dx = s . (w . dy) - x . s^3 / n . sum_j (w_j dy_j x_j) */
void rl_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *rstd, int N, int n)
{
	for (int i = 0; i < N; i++) {
		const float *xi = x + (size_t)i * n, *dy = dout + (size_t)i * n;
		float *d = dx + (size_t)i * n, s = rstd[i];
		float dot = 0.0f;
		for (int j = 0; j < n; j++)
			dot += w[j] * dy[j] * xi[j];
		float c = dot * s * s * s / (float)n;
		for (int j = 0; j < n; j++)
			d[j] += s * w[j] * dy[j] - c * xi[j];
	}
}

static void rope_rotate(float *x, int N, int ld, int nheads, int D, const int *pos, const float *cos_t,
			const float *sin_t, int half_style, float sign)
{
	int half = D / 2;
	for (int n = 0; n < N; n++) {
		const float *cs = cos_t + (size_t)pos[n] * half, *sn = sin_t + (size_t)pos[n] * half;
		for (int h = 0; h < nheads; h++) {
			float *v = x + (size_t)n * ld + (size_t)h * D;
			for (int j = 0; j < half; j++) {
				int a = half_style ? j : 2 * j, b = half_style ? j + half : 2 * j + 1;
				float x0 = v[a], x1 = v[b], s = sign * sn[j];
				v[a] = x0 * cs[j] - x1 * s;
				v[b] = x0 * s + x1 * cs[j];
			}
		}
	}
}

void rl_rope_forward(float *x, int N, int ld, int nheads, int D, const int *pos, const float *cos_t,
		     const float *sin_t, int half)
{
	rope_rotate(x, N, ld, nheads, D, pos, cos_t, sin_t, half, 1.0f);
}

/* a rotation's transpose is the rotation by the opposite angle; in place */
void rl_rope_backward(float *dx, int N, int ld, int nheads, int D, const int *pos, const float *cos_t,
		      const float *sin_t, int half)
{
	rope_rotate(dx, N, ld, nheads, D, pos, cos_t, sin_t, half, -1.0f);
}

/* exp of 4 floats: 2^n . e^r with n = floor(x log2 e + 1/2), |r| <= ln2/2 and
 * Cephes' polynomial for e^r (relative error about 2e-7, within a couple of
 * ulps of expf); inputs below -87.2 give 0. SSE2 vectors, which every x86-64
 * has; other targets get GCC's generic lowering. */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static inline v4f exp4(v4f x)
{
	const v4f hi = { 88.3762626647949f, 88.3762626647949f, 88.3762626647949f, 88.3762626647949f };
	const v4f lo = { -87.2f, -87.2f, -87.2f, -87.2f };
	v4i under = x < lo, over = x > hi;
	x = (v4f)(((v4i)x & ~under) | ((v4i)lo & under));
	x = (v4f)(((v4i)x & ~over) | ((v4i)hi & over));
	v4f t = x * 1.44269504088896341f + 0.5f;
	v4i n = __builtin_convertvector(t, v4i);
	n += (v4i)(__builtin_convertvector(n, v4f) > t); /* floor: -1 where truncation rounded up */
	v4f fn = __builtin_convertvector(n, v4f);
	v4f r = x - fn * 0.693359375f - fn * -2.12194440e-4f;
	v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r + 1.0f;
	v4f y = p * (v4f)((n + 127) << 23);
	return (v4f)((v4i)y & ~under);
}

/* The same 8 at a time with AVX2 and FMA, chosen at run time. */
typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32), aligned(4)));
#define AVX2 __attribute__((target("avx2,fma")))

/* one body for every width, so that a lane's arithmetic is the same whatever
 * the vector it sits in (the AVX-512 path gives bit for bit the AVX2 one's numbers) */
#define EXP_LANES(VF, VI, px)                                                              \
	do {                                                                               \
		VF x = *(px), lo = x - x - 87.2f, hi = x - x + 88.3762626647949f;          \
		VI under = x < lo, over = x > hi;                                          \
		x = (VF)(((VI)x & ~under) | ((VI)lo & under));                             \
		x = (VF)(((VI)x & ~over) | ((VI)hi & over));                               \
		VF t = x * 1.44269504088896341f + 0.5f;                                    \
		VI n = __builtin_convertvector(t, VI);                                     \
		n += (VI)(__builtin_convertvector(n, VF) > t);                             \
		VF fn = __builtin_convertvector(n, VF);                                    \
		VF r = x - fn * 0.693359375f - fn * -2.12194440e-4f;                       \
		VF p = r * 1.9875691500e-4f + 1.3981999507e-3f;                            \
		p = p * r + 8.3334519073e-3f;                                              \
		p = p * r + 4.1665795894e-2f;                                              \
		p = p * r + 1.6666665459e-1f;                                              \
		p = p * r + 5.0000001201e-1f;                                              \
		p = p * (r * r) + r + 1.0f;                                                \
		VF y = p * (VF)((n + 127) << 23);                                          \
		*(px) = (VF)((VI)y & ~under);                                              \
	} while (0)

AVX2 static inline void exp8(v8f *px) { EXP_LANES(v8f, v8i, px); }

/* s[j] = exp(s[j] - sub) from j on, added in order to the 8 lanes at acc0
 * (NULL: zeros; a pointer, as callers without AVX pass vectors differently) */
AVX2 static float exp_shift_avx2_from(float *s, int n, float sub, int j, const float *acc0)
{
	v8f acc = { 0 };
	if (acc0)
		memcpy(&acc, acc0, sizeof acc);
	for (; j + 8 <= n; j += 8) {
		v8f x = *(v8f *)(s + j) - sub;
		exp8(&x);
		*(v8f *)(s + j) = x;
		acc += x;
	}
	float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
	if (j < n) {
		v8f x = { 0 };
		memcpy(&x, s + j, (size_t)(n - j) * sizeof(float));
		x -= sub;
		exp8(&x);
		for (int i = 0; i < n - j; i++) {
			s[j + i] = x[i];
			sum += x[i];
		}
	}
	return sum;
}

/* Sixteen at a time where the CPU has AVX-512: the same lanes' arithmetic and
 * the same order of the sum (each half added as the 8-wide loop adds it), so
 * the numbers do not depend on which path ran. The exps of the softmaxes are
 * a fifth of distill's time on a small model. */
typedef float v16f __attribute__((vector_size(64), aligned(4)));
typedef int v16i __attribute__((vector_size(64), aligned(4)));
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

AVX512 static inline void exp16(v16f *px) { EXP_LANES(v16f, v16i, px); }

AVX512 static float exp_shift_avx512(float *s, int n, float sub)
{
	v8f acc = { 0 };
	int j = 0;
	for (; j + 16 <= n; j += 16) {
		v16f x = *(v16f *)(s + j) - sub;
		exp16(&x);
		*(v16f *)(s + j) = x;
		v8f lo, hi;
		memcpy(&lo, &x, sizeof lo);
		memcpy(&hi, (char *)&x + sizeof lo, sizeof hi);
		acc += lo;
		acc += hi;
	}
	return exp_shift_avx2_from(s, n, sub, j, (const float *)&acc);
}

static int use_avx512 = -1;

void rl_train_select_exp(int widest)
{
	use_avx512 = widest ? rl_cpu_avx512() : 0;
}

/* the widest exp_shift this CPU runs, for CPUs with AVX2 */
static float exp_shift_wide(float *s, int n, float sub)
{
	if (use_avx512 < 0)
		rl_train_select_exp(1);
	return use_avx512 ? exp_shift_avx512(s, n, sub) : exp_shift_avx2_from(s, n, sub, 0, NULL);
}

static int use_avx2 = -1;

/* s[j] = exp(s[j] - sub) for j < n; returns their sum */
static float exp_shift(float *s, int n, float sub)
{
	if (use_avx2 < 0)
		use_avx2 = rl_cpu_avx2();
	if (use_avx2)
		return exp_shift_wide(s, n, sub);
	v4f acc = { 0 };
	int j = 0;
	for (; j + 4 <= n; j += 4) {
		v4f x;
		memcpy(&x, s + j, sizeof x);
		x = exp4(x - sub);
		memcpy(s + j, &x, sizeof x);
		acc += x;
	}
	float sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
	if (j < n) {
		v4f x = { 0 };
		memcpy(&x, s + j, (size_t)(n - j) * sizeof(float));
		x = exp4(x - sub);
		for (int i = 0; i < n - j; i++) {
			s[j + i] = x[i];
			sum += x[i];
		}
	}
	return sum;
}

/* Row operations of the attention softmax and of SwiGLU, in AVX2 where the
 * CPU has it: at small head sizes they, not the products, take the time. */
AVX2 static float softmax_row_avx2(float *s, int n)
{
	v8f m8 = s[0] - (v8f){ 0 };
	int j = 0;
	for (; j + 8 <= n; j += 8) {
		v8f x = *(v8f *)(s + j);
		m8 = (v8f)(((v8i)m8 & (v8i)(m8 >= x)) | ((v8i)x & ~(v8i)(m8 >= x)));
	}
	float mx = m8[0];
	for (int i = 1; i < 8; i++)
		mx = m8[i] > mx ? m8[i] : mx;
	for (; j < n; j++)
		mx = s[j] > mx ? s[j] : mx;
	float sum = exp_shift_wide(s, n, mx), inv = 1.0f / sum;
	for (j = 0; j + 8 <= n; j += 8)
		*(v8f *)(s + j) *= inv;
	for (; j < n; j++)
		s[j] *= inv;
	return mx + logf(sum);
}

static float softmax_row_generic(float *s, int n)
{
	float mx = s[0];
	for (int j = 1; j < n; j++)
		mx = s[j] > mx ? s[j] : mx;
	float sum = exp_shift(s, n, mx), inv = 1.0f / sum;
	for (int j = 0; j < n; j++)
		s[j] *= inv;
	return mx + logf(sum);
}

/* s = softmax(s) over n entries; returns their log-sum-exp */
static float softmax_row(float *s, int n)
{
	if (use_avx2 < 0)
		use_avx2 = rl_cpu_avx2();
	return use_avx2 ? softmax_row_avx2(s, n) : softmax_row_generic(s, n);
}

AVX2 static void dsoftmax_row_avx2(float *dp, const float *p, int n)
{
	v8f d8 = { 0 };
	int j = 0;
	for (; j + 8 <= n; j += 8)
		d8 += *(const v8f *)(p + j) * *(const v8f *)(dp + j);
	float dot = ((d8[0] + d8[4]) + (d8[1] + d8[5])) + ((d8[2] + d8[6]) + (d8[3] + d8[7]));
	for (int i = j; i < n; i++)
		dot += p[i] * dp[i];
	for (j = 0; j + 8 <= n; j += 8)
		*(v8f *)(dp + j) = *(const v8f *)(p + j) * (*(v8f *)(dp + j) - dot);
	for (; j < n; j++)
		dp[j] = p[j] * (dp[j] - dot);
}

/* dp = p . (dp - sum(p . dp)) over n entries: the softmax's backward */
static void dsoftmax_row(float *dp, const float *p, int n)
{
	if (use_avx2 < 0)
		use_avx2 = rl_cpu_avx2();
	if (use_avx2) {
		dsoftmax_row_avx2(dp, p, n);
		return;
	}
	float dot = 0.0f;
	for (int j = 0; j < n; j++)
		dot += p[j] * dp[j];
	for (int j = 0; j < n; j++)
		dp[j] = p[j] * (dp[j] - dot);
}

/* sig (n) = 1 / (1 + exp(-g)) */
AVX2 static void sigmoid_avx2(float *sig, const float *g, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		v8f x = -*(const v8f *)(g + i);
		exp8(&x);
		*(v8f *)(sig + i) = 1.0f / (1.0f + x);
	}
	for (; i < n; i++)
		sig[i] = 1.0f / (1.0f + expf(-g[i]));
}

static void sigmoid(float *sig, const float *g, size_t n)
{
	if (use_avx2 < 0)
		use_avx2 = rl_cpu_avx2();
	if (use_avx2) {
		sigmoid_avx2(sig, g, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		sig[i] = 1.0f / (1.0f + expf(-g[i]));
}

enum { SWIGLU_CHUNK = 256 };

void rl_swiglu_forward(float *h, const float *gate, const float *up, size_t n)
{
	float sg[SWIGLU_CHUNK];
	for (size_t i0 = 0; i0 < n; i0 += SWIGLU_CHUNK) {
		size_t m = n - i0 < SWIGLU_CHUNK ? n - i0 : SWIGLU_CHUNK;
		sigmoid(sg, gate + i0, m);
		for (size_t i = 0; i < m; i++)
			h[i0 + i] = gate[i0 + i] * sg[i] * up[i0 + i];
	}
}

/* silu(g) = g sig(g), silu'(g) = sig(g) (1 + g (1 - sig(g))) */
void rl_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n)
{
	float sg[SWIGLU_CHUNK];
	for (size_t i0 = 0; i0 < n; i0 += SWIGLU_CHUNK) {
		size_t m = n - i0 < SWIGLU_CHUNK ? n - i0 : SWIGLU_CHUNK;
		sigmoid(sg, gate + i0, m);
		for (size_t i = 0; i < m; i++) {
			float g = gate[i0 + i], d = dh[i0 + i], sgi = sg[i];
			dgate[i0 + i] += d * up[i0 + i] * sgi * (1.0f + g * (1.0f - sgi));
			dup[i0 + i] += d * g * sgi;
		}
	}
}


/* P (nb, nk) of head h for queries i0..i0+nb: softmax over keys j <= i of
 * scale . q_i . k_j, zero past the diagonal; save: computes and stores the
 * rows' log-sum-exp, else reads it */
static void attention_probs(float *P, float *lse, int ldl, const float *q, const float *k, int i0, int nb, int nk,
			    int QD, int KD, int D, int h, int g, float scale, int save)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, D, scale, q + (size_t)i0 * QD + (size_t)h * D, QD,
		    k + (size_t)g * D, KD, 0.0f, P, nk);
	for (int i = 0; i < nb; i++) {
		float *s = P + (size_t)i * nk;
		int last = i0 + i;
		if (save) {
			lse[(size_t)h * ldl + i0 + i] = softmax_row(s, last + 1);
		} else {
			exp_shift(s, last + 1, lse[(size_t)h * ldl + i0 + i]);
		}
		memset(s + last + 1, 0, (size_t)(nk - last - 1) * sizeof(float));
	}
}

void rl_attention_forward(float *out, float *lse, int ldl, const float *q, const float *k, const float *v, int T,
			  int H, int KH, int D, float *scratch)
{
	int QD = H * D, KD = KH * D, group = H / KH;
	float scale = 1.0f / sqrtf((float)D);
	for (int h = 0; h < H; h++) {
		int g = h / group;
		for (int i0 = 0; i0 < T; i0 += QBLOCK) {
			int nb = T - i0 < QBLOCK ? T - i0 : QBLOCK, nk = i0 + nb;
			attention_probs(scratch, lse, ldl, q, k, i0, nb, nk, QD, KD, D, h, g, scale, 1);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, nk, 1.0f, scratch, nk,
				    v + (size_t)g * D, KD, 0.0f, out + (size_t)i0 * QD + (size_t)h * D, QD);
		}
	}
}

/* O = P V: dP = dO V^T, dV += P^T dO; dS = P . (dP - rowsum(P . dP));
 * dQ += scale dS K, dK += scale dS^T Q; block by block as the forward */
void rl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *lse, int ldl,
			   const float *q, const float *k, const float *v, int T, int H, int KH, int D,
			   float *scratch, float *dscratch)
{
	int QD = H * D, KD = KH * D, group = H / KH;
	float scale = 1.0f / sqrtf((float)D);
	for (int h = 0; h < H; h++) {
		int g = h / group;
		for (int i0 = 0; i0 < T; i0 += QBLOCK) {
			int nb = T - i0 < QBLOCK ? T - i0 : QBLOCK, nk = i0 + nb;
			float *P = scratch, *dP = dscratch;
			const float *dO = dout + (size_t)i0 * QD + (size_t)h * D;
			attention_probs(P, (float *)lse, ldl, q, k, i0, nb, nk, QD, KD, D, h, g, scale, 0);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, D, 1.0f, dO, QD, v + (size_t)g * D, KD,
				    0.0f, dP, nk);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nb, 1.0f, P, nk, dO, QD, 1.0f,
				    dv + (size_t)g * D, KD);
			for (int i = 0; i < nb; i++) {
				float *p = P + (size_t)i * nk, *dp = dP + (size_t)i * nk;
				int last = i0 + i;
				dsoftmax_row(dp, p, last + 1);
				memset(dp + last + 1, 0, (size_t)(nk - last - 1) * sizeof(float));
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, nk, scale, dP, nk, k + (size_t)g * D,
				    KD, 1.0f, dq + (size_t)i0 * QD + (size_t)h * D, QD);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nb, scale, dP, nk,
				    q + (size_t)i0 * QD + (size_t)h * D, QD, 1.0f, dk + (size_t)g * D, KD);
		}
	}
}

/* ---- linear layers with their adapters ---- */

static int target_of(const rl_train *t, const rl_tensor *w)
{
	ptrdiff_t i = w - t->m->tensors;
	return i >= 0 && i < t->a->ntensors ? t->a->target_of[i] : -1;
}

/* out (N, OC) = inp (N, IC) . W^T + bias + (alpha/r) . (inp . A^T) . B^T for
 * the N rows of lane ln (inp and out point at its first row) */
static void linear_forward(rl_train *t, const lane *ln, float *out, const float *inp, const rl_tensor *w,
			   const rl_tensor *bias)
{
	int N = ln->n, OC = (int)w->shape[0], IC = (int)w->shape[1];
	if (w->dtype == RL_F32) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w->data, IC, 0.0f, out, OC);
	} else {
		size_t rb = rl_row_bytes(w->dtype, (uint64_t)IC);
		for (int r0 = 0; r0 < OC; r0 += TILE_ROWS) {
			int nr = OC - r0 < TILE_ROWS ? OC - r0 : TILE_ROWS;
			for (int r = 0; r < nr; r++)
				rl_dtypes[w->dtype].to_float((const char *)w->data + (size_t)(r0 + r) * rb,
							    ln->tile + (size_t)r * IC, (size_t)IC);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, nr, IC, 1.0f, inp, IC, ln->tile, IC, 0.0f,
				    out + r0, OC);
		}
	}
	if (bias) {
		const float *b = bias->data;
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++)
				out[(size_t)n * OC + o] += b[o];
	}
	int k = target_of(t, w);
	if (k < 0)
		return;
	const rl_adapter *a = t->a;
	const rl_lora_target *g = &a->targets[k];
	int r = a->rank;
	float *lt = t->lora_t + ((size_t)k * t->max_tokens + (size_t)ln->n0) * r; /* (N, r) */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IC, 1.0f, inp, IC, g->a, IC, 0.0f, lt, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, (float)(a->alpha / r), lt, r, g->b, r, 1.0f, out,
		    OC);
}

/* dinp += dout . W (+ the adapter's part); the lane's dA, dB += their gradients */
static void linear_backward(rl_train *t, const lane *ln, float *dinp, const float *dout, const float *inp,
			    const rl_tensor *w)
{
	int N = ln->n, OC = (int)w->shape[0], IC = (int)w->shape[1];
	if (w->dtype == RL_F32) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w->data, IC, 1.0f, dinp,
			    IC);
	} else {
		size_t rb = rl_row_bytes(w->dtype, (uint64_t)IC);
		for (int r0 = 0; r0 < OC; r0 += TILE_ROWS) {
			int nr = OC - r0 < TILE_ROWS ? OC - r0 : TILE_ROWS;
			for (int r = 0; r < nr; r++)
				rl_dtypes[w->dtype].to_float((const char *)w->data + (size_t)(r0 + r) * rb,
							    ln->tile + (size_t)r * IC, (size_t)IC);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, nr, 1.0f, dout + r0, OC, ln->tile, IC,
				    1.0f, dinp, IC);
		}
	}
	int k = target_of(t, w);
	if (k < 0)
		return;
	const rl_adapter *a = t->a;
	const rl_lora_target *g = &a->targets[k];
	int r = a->rank;
	float s = (float)(a->alpha / r);
	const float *lt = t->lora_t + ((size_t)k * t->max_tokens + (size_t)ln->n0) * r;
	float *dlt = t->dlt + (size_t)ln->n0 * r;
	float *ga = ln->grad + (g->a - a->params), *gb = ln->grad + (g->b - a->params);
	/* dB (OC, r) += s . dout^T . lt;  dlt (N, r) = s . dout . B */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, N, s, dout, OC, lt, r, 1.0f, gb, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, OC, s, dout, OC, g->b, r, 0.0f, dlt, r);
	/* dA (r, IC) += dlt^T . inp;  dinp += dlt . A */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IC, N, 1.0f, dlt, r, inp, IC, 1.0f, ga, IC);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, r, 1.0f, dlt, r, g->a, IC, 1.0f, dinp, IC);
}

/* ---- the model, one lane at a time ---- */

/* The saved activations of layer l for lane ln: each (L, N, X) array's rows
 * from the lane's first token. */
typedef struct {
	float *x, *xn, *mid, *xb1, *xb2, *rstd1, *rstd2, *q, *k, *v, *qraw, *kraw, *qrstd, *krstd;
	float *atty, *lse, *gate, *up, *hb;
} layer_acts;

static layer_acts acts_of(const rl_train *t, int l, size_t n0)
{
	const rl_config *c = &t->m->cfg;
	size_t C = (size_t)c->dim, F = (size_t)c->hidden_dim, H = (size_t)c->n_heads, KH = (size_t)c->n_kv_heads;
	size_t QD = H * (size_t)c->head_dim, KD = KH * (size_t)c->head_dim, MN = (size_t)t->max_tokens;
	size_t row = (size_t)l * MN + n0;
	layer_acts s = {
		.x = t->res + row * C, .xn = t->res + (row + MN) * C, .mid = t->mid + row * C, .xb1 = t->xb1 + row * C,
		.xb2 = t->xb2 + row * C, .rstd1 = t->rstd1 + row, .rstd2 = t->rstd2 + row, .q = t->q + row * QD,
		.k = t->k + row * KD, .v = t->v + row * KD, .atty = t->atty + row * QD,
		.lse = t->lse + (size_t)l * H * MN, /* (H, N): indexed by the sequence's first token */
		.gate = t->gate + row * F, .up = t->up + row * F, .hb = t->hb + row * F,
	};
	if (c->qk_norm) {
		s.qraw = t->qraw + row * QD;
		s.kraw = t->kraw + row * KD;
		s.qrstd = t->qrstd + row * H;
		s.krstd = t->krstd + row * KH;
	}
	return s;
}

static void forward_lane(rl_train *t, const lane *ln)
{
	const rl_model *m = t->m;
	const rl_config *c = &m->cfg;
	int C = c->dim, F = c->hidden_dim, D = c->head_dim, H = c->n_heads, KH = c->n_kv_heads;
	int QD = H * D, KD = KH * D, V = c->vocab_size, L = c->n_layers, N = ln->n;
	size_t n0 = (size_t)ln->n0, NC = (size_t)N * C, MN = (size_t)t->max_tokens;
	float eps = (float)c->norm_eps, *tmpc = t->tmpc + n0 * C;
	const int *pos = t->pos + n0;
	int half = c->rope_style == RL_ROPE_HALF;
	for (int l = 0; l < L; l++) {
		const rl_layer *ly = &m->layers[l];
		layer_acts s = acts_of(t, l, n0);
		rl_rmsnorm_forward(s.xb1, s.rstd1, s.x, ly->attn_norm->data, N, C, eps);
		if (c->qk_norm) {
			linear_forward(t, ln, s.qraw, s.xb1, ly->attn_q, ly->attn_q_bias);
			linear_forward(t, ln, s.kraw, s.xb1, ly->attn_k, ly->attn_k_bias);
			rl_rmsnorm_forward(s.q, s.qrstd, s.qraw, ly->attn_q_norm->data, N * H, D, eps);
			rl_rmsnorm_forward(s.k, s.krstd, s.kraw, ly->attn_k_norm->data, N * KH, D, eps);
		} else {
			linear_forward(t, ln, s.q, s.xb1, ly->attn_q, ly->attn_q_bias);
			linear_forward(t, ln, s.k, s.xb1, ly->attn_k, ly->attn_k_bias);
		}
		linear_forward(t, ln, s.v, s.xb1, ly->attn_v, ly->attn_v_bias);
		rl_rope_forward(s.q, N, QD, H, D, pos, t->rope_cos, t->rope_sin, half);
		rl_rope_forward(s.k, N, KD, KH, D, pos, t->rope_cos, t->rope_sin, half);
		for (int q = ln->s0; q < ln->s1; q++) {
			size_t o = (size_t)t->seq_off[q], r = o - n0;
			rl_attention_forward(s.atty + r * QD, s.lse + o, (int)MN, s.q + r * QD, s.k + r * KD, s.v + r * KD,
					     t->seq_len[q], H, KH, D, ln->scores);
		}
		linear_forward(t, ln, tmpc, s.atty, ly->attn_output, NULL);
		for (size_t i = 0; i < NC; i++)
			s.mid[i] = s.x[i] + tmpc[i];
		rl_rmsnorm_forward(s.xb2, s.rstd2, s.mid, ly->ffn_norm->data, N, C, eps);
		linear_forward(t, ln, s.gate, s.xb2, ly->ffn_gate, NULL);
		linear_forward(t, ln, s.up, s.xb2, ly->ffn_up, NULL);
		rl_swiglu_forward(s.hb, s.gate, s.up, (size_t)N * F);
		linear_forward(t, ln, tmpc, s.hb, ly->ffn_down, NULL);
		for (size_t i = 0; i < NC; i++)
			s.xn[i] = s.mid[i] + tmpc[i];
	}
	float *xbf = t->xbf + n0 * C;
	rl_rmsnorm_forward(xbf, t->rstdf + n0, t->res + ((size_t)L * MN + n0) * C, m->output_norm->data, N, C, eps);
	linear_forward(t, ln, t->logits + n0 * V, xbf, m->output, NULL);
}

static void backward_lane(rl_train *t, const lane *ln)
{
	const rl_model *m = t->m;
	const rl_config *c = &m->cfg;
	int C = c->dim, F = c->hidden_dim, D = c->head_dim, H = c->n_heads, KH = c->n_kv_heads;
	int QD = H * D, KD = KH * D, V = c->vocab_size, L = c->n_layers, N = ln->n;
	size_t n0 = (size_t)ln->n0, NC = (size_t)N * C, NF = (size_t)N * F, MN = (size_t)t->max_tokens;
	int half = c->rope_style == RL_ROPE_HALF;
	const int *pos = t->pos + n0;
	float *dres = t->dres + n0 * C, *dxb = t->dxb + n0 * C, *dhb = t->dhb + n0 * F, *dgate = t->dgate + n0 * F;
	float *dup = t->dup + n0 * F, *datty = t->datty + n0 * QD, *dqa = t->dq + n0 * QD, *dka = t->dk + n0 * KD;
	float *dv = t->dv + n0 * KD, *dqr = t->dqr + n0 * QD, *dkr = t->dkr + n0 * KD;
	memset(ln->grad, 0, t->a->nparams * sizeof(float));
	memset(dres, 0, NC * sizeof(float));
	memset(dxb, 0, NC * sizeof(float));
	linear_backward(t, ln, dxb, t->logits + n0 * V, t->xbf + n0 * C, m->output); /* holding d logits */
	rl_rmsnorm_backward(dres, dxb, t->res + ((size_t)L * MN + n0) * C, m->output_norm->data, t->rstdf + n0, N, C);
	for (int l = L - 1; l >= 0; l--) {
		const rl_layer *ly = &m->layers[l];
		layer_acts s = acts_of(t, l, n0);
		/* ffn: x_next = mid + down(swiglu(gate(xb2), up(xb2))); dres holds d x_next */
		memset(dhb, 0, NF * sizeof(float));
		memset(dgate, 0, NF * sizeof(float));
		memset(dup, 0, NF * sizeof(float));
		linear_backward(t, ln, dhb, dres, s.hb, ly->ffn_down);
		rl_swiglu_backward(dgate, dup, dhb, s.gate, s.up, NF);
		memset(dxb, 0, NC * sizeof(float));
		linear_backward(t, ln, dxb, dgate, s.xb2, ly->ffn_gate);
		linear_backward(t, ln, dxb, dup, s.xb2, ly->ffn_up);
		rl_rmsnorm_backward(dres, dxb, s.mid, ly->ffn_norm->data, s.rstd2, N, C);
		/* attention: mid = x + Wo(attention(q, k, v)); dres holds d mid */
		memset(datty, 0, (size_t)N * QD * sizeof(float));
		memset(dqa, 0, (size_t)N * QD * sizeof(float));
		memset(dka, 0, (size_t)N * KD * sizeof(float));
		memset(dv, 0, (size_t)N * KD * sizeof(float));
		linear_backward(t, ln, datty, dres, s.atty, ly->attn_output);
		for (int q = ln->s0; q < ln->s1; q++) {
			size_t o = (size_t)t->seq_off[q], r = o - n0;
			rl_attention_backward(dqa + r * QD, dka + r * KD, dv + r * KD, datty + r * QD, s.lse + o, (int)MN,
					      s.q + r * QD, s.k + r * KD, s.v + r * KD, t->seq_len[q], H, KH, D, ln->scores,
					      ln->dscores);
		}
		rl_rope_backward(dqa, N, QD, H, D, pos, t->rope_cos, t->rope_sin, half);
		rl_rope_backward(dka, N, KD, KH, D, pos, t->rope_cos, t->rope_sin, half);
		float *dq = dqa, *dk = dka;
		if (c->qk_norm) {
			memset(dqr, 0, (size_t)N * QD * sizeof(float));
			memset(dkr, 0, (size_t)N * KD * sizeof(float));
			rl_rmsnorm_backward(dqr, dqa, s.qraw, ly->attn_q_norm->data, s.qrstd, N * H, D);
			rl_rmsnorm_backward(dkr, dka, s.kraw, ly->attn_k_norm->data, s.krstd, N * KH, D);
			dq = dqr;
			dk = dkr;
		}
		memset(dxb, 0, NC * sizeof(float));
		linear_backward(t, ln, dxb, dq, s.xb1, ly->attn_q);
		linear_backward(t, ln, dxb, dk, s.xb1, ly->attn_k);
		linear_backward(t, ln, dxb, dv, s.xb1, ly->attn_v);
		rl_rmsnorm_backward(dres, dxb, s.x, ly->attn_norm->data, s.rstd1, N, C);
	}
}

/* Splits the batch's sequences into at most one lane per thread, contiguous
 * runs of about equal token counts. */
static void split_lanes(rl_train *t)
{
	int nl = rl_parallel_threads();
	nl = nl < t->lanes_cap ? nl : t->lanes_cap;
	nl = nl < t->nseq ? nl : t->nseq;
	int s = 0;
	for (int i = 0; i < nl; i++) {
		lane *ln = &t->lanes[i];
		ln->s0 = s;
		/* at least one sequence, one left for each lane after; the rest up to the share's end */
		size_t goal = (size_t)t->N * (size_t)(i + 1) / (size_t)nl;
		s++;
		while (s < t->nseq - (nl - 1 - i) &&
		       (i == nl - 1 || (size_t)t->seq_off[s] + (size_t)t->seq_len[s] / 2 <= goal))
			s++;
		ln->s1 = s;
		ln->n0 = t->seq_off[ln->s0];
		ln->n = t->seq_off[s - 1] + t->seq_len[s - 1] - ln->n0;
	}
	t->nlanes = nl;
}

typedef struct {
	rl_train *t;
	int backward;
} lanes_job;

static void lanes_part(void *arg, int64_t b, int64_t e)
{
	lanes_job *j = arg;
	for (int64_t i = b; i < e; i++)
		(j->backward ? backward_lane : forward_lane)(j->t, &j->t->lanes[i]);
}

/* Runs every lane, each on its own thread with single-threaded sgemm (one
 * owner for threads); a lone lane keeps OpenBLAS's threads. */
static void run_lanes(rl_train *t, int backward)
{
	lanes_job j = { t, backward };
	if (t->nlanes == 1) {
		lanes_part(&j, 0, 1);
		return;
	}
	int blas = openblas_get_num_threads();
	openblas_set_num_threads(1);
	rl_parallel_for(t->nlanes, 1, lanes_part, &j);
	openblas_set_num_threads(blas);
}

int rl_train_forward(rl_train *t, int nseq, const rl_seq *seqs)
{
	const rl_model *m = t->m;
	int C = m->cfg.dim, V = m->cfg.vocab_size;
	int N = 0;
	t->N = 0;
	if (nseq <= 0) {
		rl_seterr("training batch: no sequences");
		return -1;
	}
	size_t erb = rl_row_bytes(m->token_embd->dtype, (uint64_t)C);
	for (int s = 0; s < nseq; s++) {
		if (seqs[s].ntok <= 0 || seqs[s].ntok > t->ctx || N + seqs[s].ntok > t->max_tokens) {
			rl_seterr("training batch: sequence %d of %d tokens does not fit the context of %d or the batch of %d tokens",
				  s, seqs[s].ntok, t->ctx, t->max_tokens);
			return -1;
		}
		t->seq_off[s] = N;
		t->seq_len[s] = seqs[s].ntok;
		for (int i = 0; i < seqs[s].ntok; i++) {
			int tok = seqs[s].tokens[i];
			if (tok < 0 || tok >= V) {
				rl_seterr("training batch: token %d outside the vocabulary of %d", tok, V);
				return -1;
			}
			t->pos[N + i] = i;
			rl_dtypes[m->token_embd->dtype].to_float((const char *)m->token_embd->data + (size_t)tok * erb,
								 t->res + (size_t)(N + i) * C, (size_t)C);
		}
		N += seqs[s].ntok;
	}
	t->N = N;
	t->nseq = nseq;
	split_lanes(t);
	run_lanes(t, 0);
	return 0;
}

int rl_train_backward(rl_train *t)
{
	if (t->N == 0) {
		rl_seterr("training: backward without a forward");
		return -1;
	}
	run_lanes(t, 1);
	size_t n = t->a->nparams;
	for (int i = 0; i < t->nlanes; i++) {
		const float *g = t->lanes[i].grad;
		for (size_t j = 0; j < n; j++)
			t->grad[j] += g[j];
	}
	return 0;
}

/* ---- the loss ---- */

double rl_kl_topk_tail(const float *z, int V, int k, const int32_t *ids, const float *teacher_logits,
		       float lse_tau, float tau, float scale, float *dz, float *scratch)
{
	/* the student's softmax at tau: e_v = exp(z_v/tau - max) in scratch, summed in double */
	float *e = scratch, inv_tau = 1.0f / tau, mx = -INFINITY;
	for (int v = 0; v < V; v++) {
		e[v] = z[v] * inv_tau;
		mx = e[v] > mx ? e[v] : mx;
	}
	exp_shift(e, V, mx);
	double sum = 0;
	for (int v = 0; v < V; v++)
		sum += e[v];
	double lse_s = mx + log(sum), p_top = 0, kl = 0;
	for (int i = 0; i < k; i++) {
		double lp = teacher_logits[i] * (double)inv_tau - (double)lse_tau;
		double lq = z[ids[i]] * (double)inv_tau - lse_s, p = exp(lp);
		p_top += p;
		if (p > 0)
			kl += p * (lp - lq);
		e[ids[i]] = 0.0f; /* what is left in e is the tail */
	}
	/* the tail summed directly: 1 - q_top loses it to rounding when small */
	double q_tail = 0, p_tail = k < V && 1.0 - p_top > 0 ? 1.0 - p_top : 0.0;
	for (int v = 0; v < V; v++)
		q_tail += e[v];
	q_tail /= sum;
	if (q_tail < 1e-300)
		q_tail = 1e-300;
	if (p_tail > 0)
		kl += p_tail * (log(p_tail) - log(q_tail));
	if (dz) {
		double g = (double)scale * tau;
		float tail = (float)(g * (1.0 - p_tail / q_tail) / sum);
		for (int v = 0; v < V; v++)
			dz[v] += tail * e[v];
		for (int i = 0; i < k; i++) {
			double q = exp(z[ids[i]] * (double)inv_tau - lse_s);
			double p = exp(teacher_logits[i] * (double)inv_tau - (double)lse_tau);
			dz[ids[i]] += (float)(g * (q - p));
		}
	}
	return kl;
}

double rl_cross_entropy(const float *z, int V, int target, float scale, float *dz)
{
	double mx = -INFINITY;
	for (int v = 0; v < V; v++)
		mx = z[v] > mx ? z[v] : mx;
	double sum = 0;
	for (int v = 0; v < V; v++)
		sum += exp(z[v] - mx);
	double lse = mx + log(sum);
	if (dz) {
		for (int v = 0; v < V; v++)
			dz[v] += (float)(scale * exp(z[v] - lse));
		dz[target] -= scale;
	}
	return lse - z[target];
}
