/* forward.c: the forward pass, batched through sgemm, with or without a KV cache. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#include "err.h"
#include "lora.h"
#include "model.h"
#include "parallel.h"
#include "quant.h"

/* Weight rows dequantized at once for non-f32 storage in batched products:
 * each tile's sgemm packs the whole input again, so taller tiles pay that
 * less often. 1024 against 256: prefill of 256 tokens of a 0.6B-shape q4 or
 * w4w2 model, 2 threads, faster by a median of 1.05x (q4 six rounds, w4w2
 * three), at 0.78 of the machine's sgemm rate (f32: 0.81), for a tile of
 * 1024 x the longest row (12 MB there). Dequantizing the tile on
 * the pool instead of one thread was slower: its threads and OpenBLAS's then
 * take turns on the cores. */
#define TILE_ROWS 1024

struct rl_forward {
	const rl_model *m;
	int max_tokens, ctx;
	float *x, *xb;       /* (N, C) residual stream, normed input */
	float *q, *k, *v;    /* (N, H*D) (N, KH*D) (N, KH*D) */
	float *att;          /* (N, H*D) attention output */
	float *hb, *hb2;     /* (N, F) gate, up */
	float *scores;       /* (min(N, ctx), ctx) one head's scores, prefill */
	float *dscratch;     /* (parts, dscratch_part) decode scores, a part each */
	size_t dscratch_part;
	int dscratch_parts;
	int *drows, *doff;   /* (N) decode sequences, each sequence's first row */
	float *tile;         /* (TILE_ROWS, max in) dequantized weight rows */
	float *qscratch;     /* rl_qgemv_scratch(max in, 1), or (max in, max_tokens) when exact or int8 */
	int maxin;
	int exact;           /* batch-invariant linear layers (rl_forward_set_batch_invariant) */
	float *rope_cos, *rope_sin; /* (ctx, D/2) */
	int *pos;            /* (N) position of each token */
	rl_linear_observer observe; /* sees each linear layer's input, or NULL */
	float *lora_tmp;     /* (N, r) A.x of an adapted linear, when the model has an adapter */
	int lora_rank;       /* r that lora_tmp holds */
	void *observe_arg;
};

void rl_forward_set_observer(rl_forward *f, rl_linear_observer fn, void *arg)
{
	f->observe = fn;
	f->observe_arg = arg;
}

int rl_kvcache_init(rl_kvcache *c, const rl_model *m, int nslots, int ctx)
{
	memset(c, 0, sizeof *c);
	c->nslots = nslots;
	c->ctx = ctx;
	c->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
	c->head_dim = m->cfg.head_dim;
	c->n_layers = m->cfg.n_layers;
	c->stride = ctx > 0 && ctx < INT32_MAX - 8 ? (ctx + 7) / 8 * 8 : 0;
	size_t nk, nv;
	if (nslots <= 0 || ctx <= 0 || c->stride == 0 ||
	    rl_mul_size((size_t)c->n_layers * (size_t)nslots, (size_t)c->stride * (size_t)c->kv_dim, &nk) ||
	    rl_mul_size((size_t)c->n_layers * (size_t)nslots, (size_t)ctx * (size_t)c->kv_dim, &nv) ||
	    !(c->k = calloc(nk, sizeof(float))) || !(c->v = calloc(nv, sizeof(float)))) {
		free(c->k);
		rl_seterr("KV cache of %d slots x %d positions: out of memory", nslots, ctx);
		return -1;
	}
	return 0;
}

void rl_kvcache_free(rl_kvcache *c)
{
	free(c->k);
	free(c->v);
	memset(c, 0, sizeof *c);
}

/* one slot's keys (KH, D, stride) and values (KH, ctx, D) in layer l */
static float *cache_keys(const rl_kvcache *c, int l, int slot)
{
	return c->k + ((size_t)l * c->nslots + (size_t)slot) * (size_t)c->stride * c->kv_dim;
}

static float *cache_values(const rl_kvcache *c, int l, int slot)
{
	return c->v + ((size_t)l * c->nslots + (size_t)slot) * (size_t)c->ctx * c->kv_dim;
}

/* keys and values (ntok, KH*D) of positions pos0.. into a slot */
static void cache_store(const rl_kvcache *c, int l, int slot, int pos0, int ntok, const float *keys,
			const float *values)
{
	int D = c->head_dim, KH = c->kv_dim / D, KD = c->kv_dim;
	float *K = cache_keys(c, l, slot), *V = cache_values(c, l, slot);
	for (int h = 0; h < KH; h++) {
		float *Kh = K + (size_t)h * D * c->stride, *Vh = V + (size_t)h * c->ctx * D;
		for (int i = 0; i < ntok; i++) {
			const float *k = keys + (size_t)i * KD + (size_t)h * D;
			for (int e = 0; e < D; e++)
				Kh[(size_t)e * c->stride + pos0 + i] = k[e];
			memcpy(Vh + (size_t)(pos0 + i) * D, values + (size_t)i * KD + (size_t)h * D, (size_t)D * sizeof(float));
		}
	}
}

void rl_kvcache_copy_prefix(rl_kvcache *c, int from, int to, int npos)
{
	int D = c->head_dim, KH = c->kv_dim / D;
	for (int l = 0; l < c->n_layers; l++)
		for (int h = 0; h < KH; h++) {
			const float *K0 = cache_keys(c, l, from) + (size_t)h * D * c->stride;
			float *K1 = cache_keys(c, l, to) + (size_t)h * D * c->stride;
			for (int e = 0; e < D; e++)
				memcpy(K1 + (size_t)e * c->stride, K0 + (size_t)e * c->stride, (size_t)npos * sizeof(float));
			memcpy(cache_values(c, l, to) + (size_t)h * c->ctx * D, cache_values(c, l, from) + (size_t)h * c->ctx * D,
			       (size_t)npos * D * sizeof(float));
		}
}

static float *alloc_floats(size_t a, size_t b, int *failed)
{
	size_t n;
	void *p = NULL;
	if (rl_mul_size(a, b, &n) || rl_mul_size(n, sizeof(float), &n) || posix_memalign(&p, 64, n ? n : 64)) {
		*failed = 1;
		return NULL;
	}
	return p;
}

rl_forward *rl_forward_new(const rl_model *m, int max_tokens, int ctx)
{
	const rl_config *c = &m->cfg;
	rl_forward *f = calloc(1, sizeof *f);
	if (!f || max_tokens <= 0 || ctx <= 0) {
		free(f);
		rl_seterr("forward workspace: bad sizes or out of memory");
		return NULL;
	}
	f->m = m;
	f->max_tokens = max_tokens;
	f->ctx = ctx;
	size_t N = (size_t)max_tokens, QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
	size_t maxin = (size_t)c->dim;
	if ((size_t)c->hidden_dim > maxin)
		maxin = (size_t)c->hidden_dim;
	if (QD > maxin)
		maxin = QD;
	int failed = 0;
	f->x = alloc_floats(N, (size_t)c->dim, &failed);
	f->xb = alloc_floats(N, (size_t)c->dim, &failed);
	f->q = alloc_floats(N, QD, &failed);
	f->k = alloc_floats(N, KD, &failed);
	f->v = alloc_floats(N, KD, &failed);
	f->att = alloc_floats(N, QD, &failed);
	f->hb = alloc_floats(N, (size_t)c->hidden_dim, &failed);
	f->hb2 = alloc_floats(N, (size_t)c->hidden_dim, &failed);
	f->scores = alloc_floats(N < (size_t)ctx ? N : (size_t)ctx, (size_t)ctx, &failed);
	f->tile = alloc_floats(TILE_ROWS, maxin, &failed);
	/* 8-bit activations run every batch through the fused kernels, a vector each */
	f->qscratch = alloc_floats(m->int8_act ? N : 1, rl_qgemv_scratch((int)maxin, 1), &failed);
	f->maxin = (int)maxin;
	f->rope_cos = alloc_floats((size_t)ctx, (size_t)c->head_dim / 2, &failed);
	f->rope_sin = alloc_floats((size_t)ctx, (size_t)c->head_dim / 2, &failed);
	f->pos = malloc(N * sizeof(int));
	f->drows = malloc(N * sizeof(int));
	f->doff = malloc(N * sizeof(int));
	/* up to 4 query heads (GMAX) at a time, over the context rounded up to 8 */
	int G = c->n_heads / c->n_kv_heads;
	f->dscratch_part = (size_t)(G < 4 ? G : 4) * (((size_t)ctx + 7) / 8 * 8);
	if (failed || !f->pos || !f->drows || !f->doff) {
		rl_forward_free(f);
		rl_seterr("forward workspace for %d tokens: out of memory", max_tokens);
		return NULL;
	}
	/* angle = pos * theta^(-2j/D) for pair j, computed in double once */
	int half = c->head_dim / 2;
	for (int p = 0; p < ctx; p++)
		for (int j = 0; j < half; j++) {
			double freq = rl_rope_freq(c, j);
			f->rope_cos[(size_t)p * half + j] = (float)cos(p * freq);
			f->rope_sin[(size_t)p * half + j] = (float)sin(p * freq);
		}
	return f;
}

int rl_forward_set_batch_invariant(rl_forward *f, int on)
{
	if (on && !f->exact && !f->m->int8_act) {
		int failed = 0;
		float *s = alloc_floats((size_t)f->max_tokens, rl_qgemv_scratch(f->maxin, 1), &failed);
		if (failed) {
			rl_seterr("forward workspace: out of memory for batch-invariant products");
			return -1;
		}
		free(f->qscratch);
		f->qscratch = s;
	}
	f->exact = on;
	return 0;
}

void rl_forward_free(rl_forward *f)
{
	if (!f)
		return;
	free(f->x);
	free(f->xb);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->att);
	free(f->hb);
	free(f->hb2);
	free(f->scores);
	free(f->dscratch);
	free(f->drows);
	free(f->doff);
	free(f->tile);
	free(f->qscratch);
	free(f->rope_cos);
	free(f->rope_sin);
	free(f->pos);
	free(f->lora_tmp);
	free(f);
}

/* out (N, OC) += (alpha/r) . (inp (N, IC) . A^T) . B^T for an adapted linear:
 * sgemm for batches, and row by row (each token alone) for decode and the
 * batch-invariant mode, whose outputs must not depend on the batch. */
static void lora_forward(rl_forward *f, float *out, const float *inp, const rl_adapter *ad,
			 const rl_lora_target *g, int N)
{
	int r = ad->rank, OC = g->OC, IC = g->IC;
	float scale = (float)(ad->alpha / r), *tmp = f->lora_tmp; /* (N, r) */
	if (N == 1 || f->exact) {
		rl_gemm_rows_f32(r, IC, g->a, N, inp, (size_t)IC, tmp, (size_t)r);
		for (int n = 0; n < N; n++) {
			const float *t = tmp + (size_t)n * r;
			float *o = out + (size_t)n * OC;
			for (int i = 0; i < OC; i++) {
				const float *b = g->b + (size_t)i * r;
				float d = 0.0f;
				for (int j = 0; j < r; j++)
					d += b[j] * t[j];
				o[i] += scale * d;
			}
		}
	} else {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IC, 1.0f, inp, IC, g->a, IC, 0.0f, tmp, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r, scale, tmp, r, g->b, r, 1.0f, out, OC);
	}
}

/* Batch-invariant products with stored weights of any dtype: each part of the
 * rows is dequantized DQ_ROWS at a time into its own piece of f->tile and
 * multiplied by every vector there: outputs bit for bit rl_dqgemm_rows's. */
enum { DQ_ROWS = 24 };

typedef struct {
	const rl_forward *f;
	const rl_tensor *w;
	const float *X;
	float *Y;
	int OC, IC, N, parts;
	int64_t per; /* rows a part */
} dq_job;

static void dq_part(void *arg, int64_t p0, int64_t p1)
{
	const dq_job *j = arg;
	size_t rb = rl_row_bytes(j->w->dtype, (uint64_t)j->IC);
	for (int64_t p = p0; p < p1; p++) {
		float *tile = j->f->tile + (size_t)p * DQ_ROWS * j->f->maxin;
		int64_t end = (p + 1) * j->per < j->OC ? (p + 1) * j->per : j->OC;
		for (int64_t r = p * j->per; r < end; r += DQ_ROWS) {
			int nr = end - r < DQ_ROWS ? (int)(end - r) : DQ_ROWS;
			for (int i = 0; i < nr; i++)
				rl_dtypes[j->w->dtype].to_float((const char *)j->w->data + (size_t)(r + i) * rb,
								tile + (size_t)i * j->IC, (size_t)j->IC);
			rl_gemm_rows_block_f32(tile, (size_t)j->IC, 0, nr, j->N, j->X, (size_t)j->IC, j->Y + r, (size_t)j->OC,
					       j->IC);
		}
	}
}

static void dequant_gemm_rows(const rl_forward *f, float *out, const float *inp, const rl_tensor *w, int N)
{
	int OC = (int)w->shape[0], IC = (int)w->shape[1];
	/* four parts a thread, each claimed alone, so that a descheduled thread holds up little */
	int parts = 4 * rl_parallel_threads();
	if (parts > TILE_ROWS / DQ_ROWS)
		parts = TILE_ROWS / DQ_ROWS;
	int64_t per = ((int64_t)OC + parts - 1) / parts;
	per = (per + 15) / 16 * 16;
	parts = (int)((OC + per - 1) / per);
	dq_job j = { f, w, inp, out, OC, IC, N, parts, per };
	rl_parallel_each(parts, dq_part, &j);
}

/* out (N, OC) = inp (N, IC) . W^T, W (OC, IC) in any storage; bias (OC) or NULL */
static void linear_forward(rl_forward *f, float *out, const float *inp, const rl_tensor *w,
			   const rl_tensor *bias, int N)
{
	int OC = (int)w->shape[0], IC = (int)w->shape[1];
	if (f->observe)
		f->observe(f->observe_arg, w, inp, N, IC);
	if (w->dtype == RL_F32) {
		if (N == 1 || f->exact)
			rl_gemm_rows_f32(OC, IC, w->data, N, inp, (size_t)IC, out, (size_t)OC);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC,
				    w->data, IC, 0.0f, out, OC);
	} else if (f->m->int8_act && rl_dtype_fused(w->dtype)) {
		/* the 8-bit-activation option: every token through the fused kernels (batch-invariant too) */
		rl_qgemm_rows_act(w->dtype, OC, IC, w->data, N, inp, (size_t)IC, out, (size_t)OC, f->qscratch, RL_ACT_INT8);
	} else if (f->exact) {
		/* batch-invariant: each row dequantized once per batch, the same for every N */
		dequant_gemm_rows(f, out, inp, w, N);
	} else if (N == 1 && rl_dtype_fused(w->dtype)) {
		/* decode reads the packed weights once */
		rl_qgemm_rows(w->dtype, OC, IC, w->data, N, inp, (size_t)IC, out, (size_t)OC, f->qscratch);
	} else {
		size_t rb = rl_row_bytes(w->dtype, (uint64_t)IC);
		for (int r0 = 0; r0 < OC; r0 += TILE_ROWS) {
			int nr = OC - r0 < TILE_ROWS ? OC - r0 : TILE_ROWS;
			for (int r = 0; r < nr; r++)
				rl_dtypes[w->dtype].to_float((const char *)w->data + (size_t)(r0 + r) * rb,
							    f->tile + (size_t)r * IC, (size_t)IC);
			if (f->exact)
				rl_gemm_rows_f32(nr, IC, f->tile, N, inp, (size_t)IC, out + r0, (size_t)OC);
			else
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, nr, IC, 1.0f, inp, IC,
					    f->tile, IC, 0.0f, out + r0, OC);
		}
	}
	if (bias) {
		const float *b = bias->data;
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++)
				out[(size_t)n * OC + o] += b[o];
	}
	const rl_adapter *ad = f->m->adapter;
	if (ad) {
		ptrdiff_t ti = w - f->m->tensors;
		if (ti >= 0 && ti < ad->ntensors && ad->target_of[ti] >= 0)
			lora_forward(f, out, inp, ad, &ad->targets[ad->target_of[ti]], N);
	}
}

/* out = x / rms(x) * w over n elements */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	float ss = 0.0f;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float s = 1.0f / sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = w[i] * (s * x[i]);
}

/* rotates each head's pairs of vec (nheads, D) by the angles of position pos */
static void rope(const rl_forward *f, float *vec, int nheads, int pos)
{
	const rl_config *c = &f->m->cfg;
	int D = c->head_dim, half = D / 2;
	const float *cs = f->rope_cos + (size_t)pos * half, *sn = f->rope_sin + (size_t)pos * half;
	for (int h = 0; h < nheads; h++) {
		float *v = vec + (size_t)h * D;
		for (int j = 0; j < half; j++) {
			int a = c->rope_style == RL_ROPE_HALF ? j : 2 * j;
			int b = c->rope_style == RL_ROPE_HALF ? j + half : 2 * j + 1;
			float x0 = v[a], x1 = v[b];
			v[a] = x0 * cs[j] - x1 * sn[j];
			v[b] = x0 * sn[j] + x1 * cs[j];
		}
	}
}

/* causal attention of one sequence: att rows (ntok, H*D). Row i attends to
 * positions 0..pos0+i. Keys are read as K (npos, D) rows ldk apart, or, from
 * the cache, as K^T (D, npos) with rows ldk apart (trans); values as rows ldv
 * apart; kv head h's keys and values start k_head and v_head floats on.
 * Queries go in blocks so that each block's products stop at the last key it
 * can see: about half the work of full squares. */
enum { QBLOCK = 128 };

typedef struct {
	const float *k, *v;
	size_t ldk, ldv, k_head, v_head;
	int trans;
} kv_view;

static void attention_forward(const rl_forward *f, float *scores, float *att, const float *q, const kv_view *kv,
			      int ntok, int pos0, int npos)
{
	const rl_config *c = &f->m->cfg;
	int D = c->head_dim, H = c->n_heads, QD = H * D;
	int group = H / c->n_kv_heads;
	float scale = 1.0f / sqrtf((float)D);
	for (int h = 0; h < H; h++) {
		const float *K = kv->k + (size_t)(h / group) * kv->k_head, *Vv = kv->v + (size_t)(h / group) * kv->v_head;
		for (int i0 = 0; i0 < ntok; i0 += QBLOCK) {
			int nb = ntok - i0 < QBLOCK ? ntok - i0 : QBLOCK;
			int nk = pos0 + i0 + nb < npos ? pos0 + i0 + nb : npos;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, kv->trans ? CblasNoTrans : CblasTrans, nb, nk, D, scale,
				    q + (size_t)i0 * QD + (size_t)h * D, QD, K, (int)kv->ldk, 0.0f, scores, nk);
			for (int i = 0; i < nb; i++) {
				float *s = scores + (size_t)i * nk;
				int last = pos0 + i0 + i < nk - 1 ? pos0 + i0 + i : nk - 1;
				float mx = s[0];
				for (int j = 1; j <= last; j++)
					if (s[j] > mx)
						mx = s[j];
				float sum = 0.0f;
				for (int j = 0; j <= last; j++) {
					s[j] = expf(s[j] - mx);
					sum += s[j];
				}
				float inv = 1.0f / sum;
				for (int j = 0; j <= last; j++)
					s[j] *= inv;
				for (int j = last + 1; j < nk; j++)
					s[j] = 0.0f;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, nk, 1.0f, scores, nk, Vv, (int)kv->ldv,
				    0.0f, att + (size_t)i0 * QD + (size_t)h * D, QD);
		}
	}
}

/* ---- decode: one new token's query heads against a slot's cache ----
 *
 * For each kv head, its G query heads: scores over the P cached positions,
 * eight positions at a time from the dimension-major keys, softmax, and the
 * weighted sum of the values. A sequence's numbers depend only on its own
 * cache, so they do not change with the batch. */

/* portable kernel: s holds P scores */
static void decode_head_generic(float *out, const float *q, int G, const float *Kt, size_t ldk, const float *Vh,
				int P, int D, float scale, float *s)
{
	for (int g = 0; g < G; g++) {
		const float *qg = q + (size_t)g * D;
		float *sg = s, mx = -INFINITY, sum = 0;
		for (int j = 0; j < P; j++)
			sg[j] = 0;
		for (int e = 0; e < D; e++)
			for (int j = 0; j < P; j++)
				sg[j] += qg[e] * Kt[(size_t)e * ldk + j];
		for (int j = 0; j < P; j++) {
			sg[j] *= scale;
			mx = sg[j] > mx ? sg[j] : mx;
		}
		for (int j = 0; j < P; j++) {
			sg[j] = expf(sg[j] - mx);
			sum += sg[j];
		}
		float inv = 1.0f / sum, *o = out + (size_t)g * D;
		for (int e = 0; e < D; e++)
			o[e] = 0;
		for (int j = 0; j < P; j++)
			for (int e = 0; e < D; e++)
				o[e] += sg[j] * Vh[(size_t)j * D + e];
		for (int e = 0; e < D; e++)
			o[e] *= inv;
	}
}

#if defined(__x86_64__)
#include "vmath.h"
#define AVX2 __attribute__((target("avx2,fma")))

enum { GMAX = 4 }; /* query heads of a kv head taken together */

/* NG query heads (q, out: NG rows of D) over P positions. D a multiple of 8;
 * Kt's rows hold at least P rounded up to 8 positions (those past P are
 * ignored); s: scratch of NG x P8 floats. */
static inline __attribute__((always_inline)) AVX2 void decode_heads_avx2(int NG, float *out, const float *q,
									 const float *Kt, size_t ldk,
									 const float *Vh, int P, int D, float scale,
									 float *s)
{
	int P8 = (P + 7) / 8 * 8;
	__m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
	__m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	__m256 mx[GMAX];
#pragma GCC unroll 4
	for (int g = 0; g < NG; g++)
		mx[g] = ninf;
	/* blocks of 8 positions, JB at a time for independent chains; each score
	 * sums its D products in order whatever the blocking */
	const int JB = NG <= 2 ? 4 : 2;
	int j = 0;
	for (; j + 8 * JB <= P8; j += 8 * JB) {
		__m256 acc[GMAX][4];
#pragma GCC unroll 4
		for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
			for (int b = 0; b < JB; b++)
				acc[g][b] = _mm256_setzero_ps();
		const float *k = Kt + j;
		for (int e = 0; e < D; e++, k += ldk) {
			__m256 kv[4];
#pragma GCC unroll 4
			for (int b = 0; b < JB; b++)
				kv[b] = _mm256_loadu_ps(k + 8 * b);
#pragma GCC unroll 4
			for (int g = 0; g < NG; g++) {
				__m256 qe = _mm256_broadcast_ss(q + (size_t)g * D + e);
#pragma GCC unroll 4
				for (int b = 0; b < JB; b++)
					acc[g][b] = _mm256_fmadd_ps(qe, kv[b], acc[g][b]);
			}
		}
#pragma GCC unroll 4
		for (int b = 0; b < JB; b++) {
			__m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(P - j - 8 * b), lane));
#pragma GCC unroll 4
			for (int g = 0; g < NG; g++) {
				__m256 v = _mm256_blendv_ps(ninf, _mm256_mul_ps(acc[g][b], vscale), valid);
				_mm256_storeu_ps(s + (size_t)g * P8 + j + 8 * b, v);
				mx[g] = _mm256_max_ps(mx[g], v);
			}
		}
	}
	for (; j < P8; j += 8) {
		__m256 acc[GMAX];
#pragma GCC unroll 4
		for (int g = 0; g < NG; g++)
			acc[g] = _mm256_setzero_ps();
		const float *k = Kt + j;
		for (int e = 0; e < D; e++, k += ldk) {
			__m256 kv = _mm256_loadu_ps(k);
#pragma GCC unroll 4
			for (int g = 0; g < NG; g++)
				acc[g] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + (size_t)g * D + e), kv, acc[g]);
		}
		__m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(P - j), lane));
#pragma GCC unroll 4
		for (int g = 0; g < NG; g++) {
			__m256 v = _mm256_blendv_ps(ninf, _mm256_mul_ps(acc[g], vscale), valid);
			_mm256_storeu_ps(s + (size_t)g * P8 + j, v);
			mx[g] = _mm256_max_ps(mx[g], v);
		}
	}
	float inv[GMAX];
#pragma GCC unroll 4
	for (int g = 0; g < NG; g++) {
		__m256 m = _mm256_set1_ps(rl_lanes_max_avx2(mx[g]));
		float *sg = s + (size_t)g * P8;
		__m256 sum = _mm256_setzero_ps();
		for (int j = 0; j < P8; j += 8) {
			__m256 x = _mm256_loadu_ps(sg + j);
			__m256 valid = _mm256_cmp_ps(x, ninf, _CMP_NEQ_OQ);
			__m256 p = _mm256_and_ps(rl_exp_avx2(_mm256_sub_ps(x, m)), valid);
			_mm256_storeu_ps(sg + j, p);
			sum = _mm256_add_ps(sum, p);
		}
		inv[g] = 1.0f / rl_lanes_sum_avx2(sum);
	}
	/* the values' weighted sum: JV accumulators, position j in number j % JV,
	 * added in pairs at the end */
	const int JV = NG <= 2 ? 4 : 2;
	for (int d = 0; d < D; d += 8) {
		__m256 acc[GMAX][4];
#pragma GCC unroll 4
		for (int g = 0; g < NG; g++)
#pragma GCC unroll 4
			for (int b = 0; b < JV; b++)
				acc[g][b] = _mm256_setzero_ps();
		const float *v = Vh + d;
		int j = 0;
		for (; j + JV <= P; j += JV, v += (size_t)JV * D) {
#pragma GCC unroll 4
			for (int b = 0; b < JV; b++) {
				__m256 vb = _mm256_loadu_ps(v + (size_t)b * D);
#pragma GCC unroll 4
				for (int g = 0; g < NG; g++)
					acc[g][b] = _mm256_fmadd_ps(_mm256_broadcast_ss(s + (size_t)g * P8 + j + b), vb, acc[g][b]);
			}
		}
		/* the last P % JV positions; b a constant once unrolled, so acc stays in registers */
#pragma GCC unroll 4
		for (int b = 0; b < JV; b++) {
			if (j + b >= P)
				break;
			__m256 vb = _mm256_loadu_ps(v + (size_t)b * D);
#pragma GCC unroll 4
			for (int g = 0; g < NG; g++)
				acc[g][b] = _mm256_fmadd_ps(_mm256_broadcast_ss(s + (size_t)g * P8 + j + b), vb, acc[g][b]);
		}
#pragma GCC unroll 4
		for (int g = 0; g < NG; g++) {
			__m256 t = JV == 4 ? _mm256_add_ps(_mm256_add_ps(acc[g][0], acc[g][1]), _mm256_add_ps(acc[g][2], acc[g][3]))
					   : _mm256_add_ps(acc[g][0], acc[g][1]);
			_mm256_storeu_ps(out + (size_t)g * D + d, _mm256_mul_ps(t, _mm256_set1_ps(inv[g])));
		}
	}
}

/* G query heads, in groups of GMAX */
static AVX2 void decode_head_avx2(float *out, const float *q, int G, const float *Kt, size_t ldk, const float *Vh,
				  int P, int D, float scale, float *s)
{
	for (int g = 0; g < G; g += GMAX) {
		float *o = out + (size_t)g * D;
		const float *qg = q + (size_t)g * D;
		switch (G - g < GMAX ? G - g : GMAX) {
		case 1: decode_heads_avx2(1, o, qg, Kt, ldk, Vh, P, D, scale, s); break;
		case 2: decode_heads_avx2(2, o, qg, Kt, ldk, Vh, P, D, scale, s); break;
		case 3: decode_heads_avx2(3, o, qg, Kt, ldk, Vh, P, D, scale, s); break;
		default: decode_heads_avx2(4, o, qg, Kt, ldk, Vh, P, D, scale, s); break;
		}
	}
}
#endif

typedef struct {
	const rl_forward *f;
	const rl_kvcache *cache;
	const rl_seq *seqs;
	const int *rows;   /* (n) decode sequences: their index in seqs */
	const int *off;    /* (nseq) each sequence's first row in the batch */
	int n, layer, parts;
} decode_job;

/* parts [p0, p1) of the (sequence, kv head) pairs, each with its own scratch */
static void decode_attention(void *arg, int64_t p0, int64_t p1)
{
	const decode_job *j = arg;
	const rl_forward *f = j->f;
	const rl_config *c = &f->m->cfg;
	int D = c->head_dim, KH = c->n_kv_heads, G = c->n_heads / KH, QD = c->n_heads * D;
	float scale = 1.0f / sqrtf((float)D);
	int64_t items = (int64_t)j->n * KH;
	for (int64_t p = p0; p < p1; p++) {
		float *scratch = f->dscratch + (size_t)p * f->dscratch_part;
		for (int64_t it = items * p / j->parts; it < items * (p + 1) / j->parts; it++) {
			int si = j->rows[it / KH], h = (int)(it % KH);
			const rl_seq *sq = &j->seqs[si];
			int row = j->off[si], P = sq->pos0 + 1;
			const float *Kt = cache_keys(j->cache, j->layer, sq->slot) + (size_t)h * D * j->cache->stride;
			const float *Vh = cache_values(j->cache, j->layer, sq->slot) + (size_t)h * j->cache->ctx * D;
			float *out = f->att + (size_t)row * QD + (size_t)h * G * D;
			const float *q = f->q + (size_t)row * QD + (size_t)h * G * D;
#if defined(__x86_64__)
			if (D % 8 == 0 && rl_cpu_avx2()) {
				decode_head_avx2(out, q, G, Kt, (size_t)j->cache->stride, Vh, P, D, scale, scratch);
				continue;
			}
#endif
			decode_head_generic(out, q, G, Kt, (size_t)j->cache->stride, Vh, P, D, scale, scratch);
		}
	}
}

static inline float silu(float x)
{
	return x / (1.0f + expf(-x));
}

/* h (N, F) = silu(h) * u row by row: whole 8-lane chunks of each row with the
 * vector exp, its last F % 8 scalar, so a token's numbers never depend on N */
#if defined(__x86_64__)
static AVX2 void swiglu_avx2(float *h, const float *u, int N, int F)
{
	__m256 one = _mm256_set1_ps(1.0f);
	for (int n = 0; n < N; n++) {
		float *hn = h + (size_t)n * F;
		const float *un = u + (size_t)n * F;
		int i = 0;
		for (; i + 8 <= F; i += 8) {
			__m256 x = _mm256_loadu_ps(hn + i);
			__m256 e = rl_exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
			_mm256_storeu_ps(hn + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(un + i)));
		}
		for (; i < F; i++)
			hn[i] = silu(hn[i]) * un[i];
	}
}
#endif

static void swiglu(float *h, const float *u, int N, int F)
{
#if defined(__x86_64__)
	if (rl_cpu_avx2()) {
		swiglu_avx2(h, u, N, F);
		return;
	}
#endif
	for (size_t i = 0; i < (size_t)N * F; i++)
		h[i] = silu(h[i]) * u[i];
}

/* decode scores: a scratch for each of parts ranges */
static int grow_decode_scratch(rl_forward *f, int parts)
{
	int failed = 0;
	float *d = alloc_floats((size_t)parts, f->dscratch_part, &failed);
	if (failed) {
		rl_seterr("forward workspace: out of memory for attention scores");
		return -1;
	}
	free(f->dscratch);
	f->dscratch = d;
	f->dscratch_parts = parts;
	return 0;
}

int rl_forward_run(rl_forward *f, rl_kvcache *cache, int nseq, const rl_seq *seqs, float *logits)
{
	const rl_model *m = f->m;
	const rl_config *c = &m->cfg;
	int C = c->dim, F = c->hidden_dim, D = c->head_dim, QD = c->n_heads * D, KD = c->n_kv_heads * D;
	int N = 0;
	if (m->adapter && m->adapter->rank > f->lora_rank) {
		/* made at the first run with an adapter, attached before or after the workspace */
		int failed = 0;
		float *t = alloc_floats((size_t)f->max_tokens, (size_t)m->adapter->rank, &failed);
		if (failed) {
			rl_seterr("forward workspace: out of memory for the adapter");
			return -1;
		}
		free(f->lora_tmp);
		f->lora_tmp = t;
		f->lora_rank = m->adapter->rank;
	}
	for (int s = 0; s < nseq; s++) {
		const rl_seq *sq = &seqs[s];
		int limit = cache ? (cache->ctx < f->ctx ? cache->ctx : f->ctx) : f->ctx;
		if (sq->ntok <= 0 || sq->pos0 < 0 || (!cache && sq->pos0 != 0) || sq->pos0 + sq->ntok > limit ||
		    (cache && (sq->slot < 0 || sq->slot >= cache->nslots)) || N + sq->ntok > f->max_tokens) {
			rl_seterr("forward: sequence %d (slot %d, positions %d..%d) does not fit the context of %d or the batch of %d tokens",
				  s, sq->slot, sq->pos0, sq->pos0 + sq->ntok, limit, f->max_tokens);
			return -1;
		}
		for (int i = 0; i < sq->ntok; i++) {
			if (sq->tokens[i] < 0 || sq->tokens[i] >= c->vocab_size) {
				rl_seterr("forward: token %d outside the vocabulary of %d", sq->tokens[i], c->vocab_size);
				return -1;
			}
			f->pos[N + i] = sq->pos0 + i;
		}
		N += sq->ntok;
	}
	/* embedding */
	size_t erb = rl_row_bytes(m->token_embd->dtype, (uint64_t)C);
	for (int s = 0, n = 0; s < nseq; s++)
		for (int i = 0; i < seqs[s].ntok; i++, n++)
			rl_dtypes[m->token_embd->dtype].to_float((const char *)m->token_embd->data + (size_t)seqs[s].tokens[i] * erb,
								 f->x + (size_t)n * C, (size_t)C);
	float eps = (float)c->norm_eps;
	for (int l = 0; l < c->n_layers; l++) {
		const rl_layer *L = &m->layers[l];
		for (int n = 0; n < N; n++)
			rmsnorm(f->xb + (size_t)n * C, f->x + (size_t)n * C, L->attn_norm->data, C, eps);
		linear_forward(f, f->q, f->xb, L->attn_q, L->attn_q_bias, N);
		linear_forward(f, f->k, f->xb, L->attn_k, L->attn_k_bias, N);
		linear_forward(f, f->v, f->xb, L->attn_v, L->attn_v_bias, N);
		for (int n = 0; n < N; n++) {
			float *qn = f->q + (size_t)n * QD, *kn = f->k + (size_t)n * KD;
			if (c->qk_norm) {
				for (int h = 0; h < c->n_heads; h++)
					rmsnorm(qn + (size_t)h * D, qn + (size_t)h * D, L->attn_q_norm->data, D, eps);
				for (int h = 0; h < c->n_kv_heads; h++)
					rmsnorm(kn + (size_t)h * D, kn + (size_t)h * D, L->attn_k_norm->data, D, eps);
			}
			rope(f, qn, c->n_heads, f->pos[n]);
			rope(f, kn, c->n_kv_heads, f->pos[n]);
		}
		/* one new token with a cache: the decode kernel, its (sequence, kv
		 * head) pairs on the pool; anything else: the sgemm path */
		int nd = 0;
		for (int s = 0, off = 0; s < nseq; off += seqs[s].ntok, s++) {
			const rl_seq *sq = &seqs[s];
			f->doff[s] = off;
			if (cache) {
				cache_store(cache, l, sq->slot, sq->pos0, sq->ntok, f->k + (size_t)off * KD, f->v + (size_t)off * KD);
				if (sq->ntok == 1) {
					f->drows[nd++] = s;
					continue;
				}
			}
			kv_view kv = { f->k + (size_t)off * KD, f->v + (size_t)off * KD, (size_t)KD, (size_t)KD, (size_t)D, (size_t)D, 0 };
			int npos = sq->ntok;
			if (cache) {
				kv = (kv_view){ cache_keys(cache, l, sq->slot), cache_values(cache, l, sq->slot), (size_t)cache->stride,
						(size_t)D, (size_t)D * cache->stride, (size_t)cache->ctx * D, 1 };
				npos = sq->pos0 + sq->ntok;
			}
			attention_forward(f, f->scores, f->att + (size_t)off * QD, f->q + (size_t)off * QD, &kv, sq->ntok,
					  sq->pos0, npos);
		}
		if (nd) {
			int64_t items = (int64_t)nd * c->n_kv_heads;
			int parts = rl_parallel_threads() < items ? rl_parallel_threads() : (int)items;
			if (parts > f->dscratch_parts && grow_decode_scratch(f, parts))
				return -1;
			decode_job dj = { f, cache, seqs, f->drows, f->doff, nd, l, parts };
			rl_parallel_for(parts, 1, decode_attention, &dj);
		}
		/* x += att . Wo^T, through xb */
		linear_forward(f, f->xb, f->att, L->attn_output, NULL, N);
		for (size_t i = 0; i < (size_t)N * C; i++)
			f->x[i] += f->xb[i];
		for (int n = 0; n < N; n++)
			rmsnorm(f->xb + (size_t)n * C, f->x + (size_t)n * C, L->ffn_norm->data, C, eps);
		linear_forward(f, f->hb, f->xb, L->ffn_gate, NULL, N);
		linear_forward(f, f->hb2, f->xb, L->ffn_up, NULL, N);
		swiglu(f->hb, f->hb2, N, F);
		linear_forward(f, f->xb, f->hb, L->ffn_down, NULL, N);
		for (size_t i = 0; i < (size_t)N * C; i++)
			f->x[i] += f->xb[i];
	}
	for (int n = 0; n < N; n++)
		rmsnorm(f->xb + (size_t)n * C, f->x + (size_t)n * C, m->output_norm->data, C, eps);
	linear_forward(f, logits, f->xb, m->output, NULL, N);
	return 0;
}
