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

#define TILE_ROWS 256 /* weight rows dequantized at once for non-f32 storage */

struct rl_forward {
	const rl_model *m;
	int max_tokens, ctx;
	float *x, *xb;       /* (N, C) residual stream, normed input */
	float *q, *k, *v;    /* (N, H*D) (N, KH*D) (N, KH*D) */
	float *att;          /* (N, H*D) attention output */
	float *hb, *hb2;     /* (N, F) gate, up */
	float *scores;       /* (N, ctx) one head's scores */
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
	c->n_layers = m->cfg.n_layers;
	size_t n;
	if (nslots <= 0 || ctx <= 0 ||
	    rl_mul_size((size_t)c->n_layers * (size_t)nslots, (size_t)ctx * (size_t)c->kv_dim, &n) ||
	    !(c->k = calloc(n, sizeof(float))) || !(c->v = calloc(n, sizeof(float)))) {
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
	if (failed || !f->pos) {
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
		rl_dqgemm_rows(w->dtype, OC, IC, w->data, N, inp, (size_t)IC, out, (size_t)OC);
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

/* causal attention of one sequence over its keys: att rows (ntok, H*D).
 * Row i attends to positions 0..pos0+i. Queries go in blocks so that each block's
 * products stop at the last key it can see: about half the work of full squares. */
enum { QBLOCK = 128 };

typedef float v8f __attribute__((vector_size(32), aligned(4)));

static void attention_forward(const rl_forward *f, float *scores, float *att, const float *q, const float *keys,
			      const float *values, int ntok, int pos0, int npos)
{
	const rl_config *c = &f->m->cfg;
	int D = c->head_dim, H = c->n_heads, QD = H * D, KD = c->n_kv_heads * D;
	int group = H / c->n_kv_heads;
	float scale = 1.0f / sqrtf((float)D);
	if (ntok == 1) {
		/* one query (decode): plain loops, no sgemm call per head */
		for (int h = 0; h < H; h++) {
			const float *K = keys + (size_t)(h / group) * D, *Vv = values + (size_t)(h / group) * D;
			const float *qh = q + (size_t)h * D;
			float *s = scores, mx = -INFINITY, sum = 0;
			int last = pos0 < npos - 1 ? pos0 : npos - 1;
			for (int j = 0; j <= last; j++) {
				const float *kj = K + (size_t)j * KD;
				float d = 0;
				if (D % 8 == 0) {
					v8f acc = { 0 };
					for (int e = 0; e < D; e += 8)
						acc += *(const v8f *)(qh + e) * *(const v8f *)(kj + e);
					d = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
				} else {
					for (int e = 0; e < D; e++)
						d += qh[e] * kj[e];
				}
				s[j] = d * scale;
				mx = s[j] > mx ? s[j] : mx;
			}
			for (int j = 0; j <= last; j++) {
				s[j] = expf(s[j] - mx);
				sum += s[j];
			}
			float inv = 1.0f / sum, *o = att + (size_t)h * D;
			for (int e = 0; e < D; e++)
				o[e] = 0;
			for (int j = 0; j <= last; j++) {
				const float *vj = Vv + (size_t)j * KD;
				float pj = s[j] * inv;
				if (D % 8 == 0) {
					for (int e = 0; e < D; e += 8)
						*(v8f *)(o + e) += pj * *(const v8f *)(vj + e);
				} else {
					for (int e = 0; e < D; e++)
						o[e] += pj * vj[e];
				}
			}
		}
		return;
	}
	for (int h = 0; h < H; h++) {
		const float *K = keys + (size_t)(h / group) * D, *Vv = values + (size_t)(h / group) * D;
		for (int i0 = 0; i0 < ntok; i0 += QBLOCK) {
			int nb = ntok - i0 < QBLOCK ? ntok - i0 : QBLOCK;
			int nk = pos0 + i0 + nb < npos ? pos0 + i0 + nb : npos;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, D, scale,
				    q + (size_t)i0 * QD + (size_t)h * D, QD, K, KD, 0.0f, scores, nk);
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
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, nk, 1.0f, scores, nk, Vv, KD,
				    0.0f, att + (size_t)i0 * QD + (size_t)h * D, QD);
		}
	}
}

typedef struct {
	const rl_forward *f;
	const rl_kvcache *cache;
	const rl_seq *seqs;
	int layer;
} decode_job;

/* sequences [s0, s1) of a decode batch, each with its own row of scores */
static void decode_attention(void *arg, int64_t s0, int64_t s1)
{
	const decode_job *j = arg;
	const rl_config *c = &j->f->m->cfg;
	int QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
	for (int64_t s = s0; s < s1; s++) {
		const rl_seq *sq = &j->seqs[s];
		size_t base = ((size_t)j->layer * j->cache->nslots + sq->slot) * j->cache->ctx * KD;
		attention_forward(j->f, j->f->scores + (size_t)s * j->f->ctx, j->f->att + (size_t)s * QD,
				  j->f->q + (size_t)s * QD, j->cache->k + base, j->cache->v + base, 1, sq->pos0,
				  sq->pos0 + 1);
	}
}

static inline float silu(float x)
{
	return x / (1.0f + expf(-x));
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
		if (cache && N == nseq && nseq > 1 && nseq <= f->max_tokens && nseq <= f->ctx) {
			/* a decode batch: one token per sequence; their attention runs on the pool */
			for (int s = 0; s < nseq; s++) {
				size_t base = ((size_t)l * cache->nslots + seqs[s].slot) * cache->ctx * KD;
				memcpy(cache->k + base + (size_t)seqs[s].pos0 * KD, f->k + (size_t)s * KD, KD * sizeof(float));
				memcpy(cache->v + base + (size_t)seqs[s].pos0 * KD, f->v + (size_t)s * KD, KD * sizeof(float));
			}
			decode_job dj = { f, cache, seqs, l };
			rl_parallel_for(nseq, 1, decode_attention, &dj);
		} else {
			for (int s = 0, off = 0; s < nseq; off += seqs[s].ntok, s++) {
				const rl_seq *sq = &seqs[s];
				const float *keys = f->k + (size_t)off * KD, *values = f->v + (size_t)off * KD;
				int npos = sq->ntok;
				if (cache) {
					size_t base = ((size_t)l * cache->nslots + sq->slot) * cache->ctx * KD;
					memcpy(cache->k + base + (size_t)sq->pos0 * KD, keys, (size_t)sq->ntok * KD * sizeof(float));
					memcpy(cache->v + base + (size_t)sq->pos0 * KD, values, (size_t)sq->ntok * KD * sizeof(float));
					keys = cache->k + base;
					values = cache->v + base;
					npos = sq->pos0 + sq->ntok;
				}
				attention_forward(f, f->scores, f->att + (size_t)off * QD, f->q + (size_t)off * QD, keys,
						  values, sq->ntok, sq->pos0, npos);
			}
		}
		/* x += att . Wo^T, through xb */
		linear_forward(f, f->xb, f->att, L->attn_output, NULL, N);
		for (size_t i = 0; i < (size_t)N * C; i++)
			f->x[i] += f->xb[i];
		for (int n = 0; n < N; n++)
			rmsnorm(f->xb + (size_t)n * C, f->x + (size_t)n * C, L->ffn_norm->data, C, eps);
		linear_forward(f, f->hb, f->xb, L->ffn_gate, NULL, N);
		linear_forward(f, f->hb2, f->xb, L->ffn_up, NULL, N);
		for (size_t i = 0; i < (size_t)N * F; i++)
			f->hb[i] = silu(f->hb[i]) * f->hb2[i];
		linear_forward(f, f->xb, f->hb, L->ffn_down, NULL, N);
		for (size_t i = 0; i < (size_t)N * C; i++)
			f->x[i] += f->xb[i];
	}
	for (int n = 0; n < N; n++)
		rmsnorm(f->xb + (size_t)n * C, f->x + (size_t)n * C, m->output_norm->data, C, eps);
	linear_forward(f, logits, f->xb, m->output, NULL, N);
	return 0;
}
