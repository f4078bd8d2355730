/* quant.c: group quantizers and whole-tensor quantization (see quant.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "parallel.h"
#include "quant.h"

int rl_quant_method_from_name(const char *name)
{
	if (strcmp(name, "rtn") == 0)
		return RL_QUANT_RTN;
	if (strcmp(name, "mse") == 0)
		return RL_QUANT_MSE;
	return -1;
}

const char *rl_quant_method_name(rl_quant_method m) { return m == RL_QUANT_RTN ? "rtn" : "mse"; }

/* Weighted squared error of the group stored as (scale16, min16) with the nearest q
 * for each weight, which is the best q for that scale and min. */
static double round_group(const float *w, const float *imp, size_t n, int nmax, uint16_t s16, uint16_t m16,
			  uint8_t *q)
{
	float sc = rl_f16_to_f32(s16), mn = rl_f16_to_f32(m16);
	double err = 0;
	for (size_t i = 0; i < n; i++) {
		float v = sc > 0 ? rintf((w[i] - mn) / sc) : 0.0f;
		v = v < 0 ? 0 : v > (float)nmax ? (float)nmax : v;
		q[i] = (uint8_t)v;
		float sq = sc * v;
		float d = w[i] - (sq + mn);
		err += (imp ? imp[i] : 1.0) * (double)d * d;
	}
	return err;
}

/* Least squares scale and min for fixed q: minimises sum imp (w - (s q + m))^2. 0 when solvable with s > 0. */
static int fit_scale_min(const float *w, const float *imp, size_t n, const uint8_t *q, float *s, float *m)
{
	double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
	for (size_t i = 0; i < n; i++) {
		double a = imp ? imp[i] : 1.0;
		sw += a;
		sq += a * q[i];
		sqq += a * q[i] * q[i];
		sx += a * w[i];
		sqx += a * q[i] * w[i];
	}
	double det = sw * sqq - sq * sq;
	if (!(det > 0))
		return -1;
	double scale = (sw * sqx - sq * sx) / det;
	if (!(scale > 0))
		return -1;
	*s = (float)scale;
	*m = (float)((sqq * sx - sq * sqx) / det);
	return 0;
}

void rl_group_quantize(const float *w, const float *imp, size_t n, int bits, rl_quant_method m,
		       uint16_t *scale16, uint16_t *min16, uint8_t *q)
{
	rl_group_rtn(w, n, bits, scale16, min16, q);
	if (m == RL_QUANT_RTN || *scale16 == 0)
		return;
	int nmax = (1 << bits) - 1;
	float lo = w[0], hi = w[0];
	for (size_t i = 1; i < n; i++) {
		lo = w[i] < lo ? w[i] : lo;
		hi = w[i] > hi ? w[i] : hi;
	}
	uint8_t tq[256];
	double best = round_group(w, imp, n, nmax, *scale16, *min16, tq);
	/* candidate grids: scales from 0.5x to 1.5x of min-max's steps per range unit, each
	 * followed by a least-squares fit of scale and min to the q it gives, twice */
	for (int k = -10; k <= 10; k++) {
		float iscale = ((float)nmax + 0.1f * (float)k * (float)nmax / 2.0f) / (hi - lo);
		if (!(iscale > 0))
			continue;
		for (size_t i = 0; i < n; i++) {
			float v = rintf(iscale * (w[i] - lo));
			tq[i] = (uint8_t)(v < 0 ? 0 : v > (float)nmax ? nmax : v);
		}
		for (int iter = 0; iter < 2; iter++) {
			float s, mn;
			if (fit_scale_min(w, imp, n, tq, &s, &mn))
				break;
			uint16_t s16 = rl_f32_to_f16(s), m16 = rl_f32_to_f16(mn);
			if (s16 == 0 || (s16 & 0x7c00) == 0x7c00 || (m16 & 0x7c00) == 0x7c00)
				break;
			double e = round_group(w, imp, n, nmax, s16, m16, tq);
			if (e < best) {
				best = e;
				*scale16 = s16;
				*min16 = m16;
				memcpy(q, tq, n);
			}
		}
	}
}

typedef struct {
	const rl_tensor *t;
	rl_dtype dt;
	rl_quant_method m;
	const float *imp;
	unsigned char *out;
	size_t in_row, out_row;
	uint64_t ncols;
	double *sum_w2, *sum_e2; /* per row; sum_e2 NaN marks a row that could not be stored */
	int failed;
} qjob;

static void quantize_rows(void *arg, int64_t r0, int64_t r1)
{
	qjob *j = arg;
	size_t n = (size_t)j->ncols;
	float *row = malloc(2 * n * sizeof(float));
	if (!row) {
		__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	float *back = row + n;
	const rl_dtype_traits *tr = &rl_dtypes[j->dt];
	for (int64_t r = r0; r < r1; r++) {
		rl_dtypes[j->t->dtype].to_float((const char *)j->t->data + (size_t)r * j->in_row, row, n);
		double w2 = 0;
		int bad = 0;
		for (size_t i = 0; i < n; i++) {
			if (!isfinite(row[i]) || (tr->group && fabsf(row[i]) > 65504.0f))
				bad = 1;
			w2 += (double)row[i] * row[i];
		}
		j->sum_w2[r] = w2;
		if (bad) {
			j->sum_e2[r] = NAN;
			continue;
		}
		unsigned char *dst = j->out + (size_t)r * j->out_row;
		if (tr->group) {
			uint8_t q[256];
			for (size_t i = 0; i < n; i += (size_t)tr->group) {
				size_t g = n - i < (size_t)tr->group ? n - i : (size_t)tr->group;
				uint16_t s16, m16;
				rl_group_quantize(row + i, j->imp ? j->imp + i : NULL, g, tr->qbits, j->m, &s16, &m16, q);
				rl_group_pack(dst, tr->qbits, g, s16, m16, q);
				dst += rl_group_bytes(tr->qbits, g);
			}
		} else if (j->imp && j->m == RL_QUANT_MSE && (j->dt == RL_Q4_K || j->dt == RL_Q2_K)) {
			/* ggml's k-quants given an importance matrix, as llama.cpp's quantize --imatrix */
			(j->dt == RL_Q4_K ? rl_quantize_row_q4_K_imp : rl_quantize_row_q2_K_imp)(row, dst, n, j->imp);
		} else {
			tr->from_float(row, dst, n);
		}
		tr->to_float(j->out + (size_t)r * j->out_row, back, n);
		double e2 = 0;
		for (size_t i = 0; i < n; i++)
			e2 += (double)(row[i] - back[i]) * (row[i] - back[i]);
		/* NaN when a block's f16 scale overflowed (ggml's formats store it unchecked) */
		j->sum_e2[r] = isfinite(e2) ? e2 : NAN;
	}
	free(row);
}

int rl_quantize_tensor(const rl_tensor *t, rl_dtype dt, rl_quant_method m, const float *imp, void **out,
		       size_t *bytes, rl_quant_stats *st)
{
	uint64_t nrows = t->ndim == 2 ? t->shape[0] : 1, ncols = t->shape[t->ndim - 1];
	size_t out_row = rl_row_bytes(dt, ncols), total;
	if (out_row == 0) {
		rl_seterr("tensor %s: a row of %llu cannot be stored as %s", t->name, (unsigned long long)ncols,
			  rl_dtypes[dt].name);
		return -1;
	}
	if (rl_mul_size(out_row, (size_t)nrows, &total)) {
		rl_seterr("tensor %s: too large", t->name);
		return -1;
	}
	qjob j = { t, dt, m, imp, NULL, rl_row_bytes(t->dtype, ncols), out_row, ncols, NULL, NULL, 0 };
	void *buf = NULL;
	j.sum_w2 = malloc((size_t)nrows * 2 * sizeof(double));
	if (!j.sum_w2 || posix_memalign(&buf, 64, total ? total : 1)) {
		free(j.sum_w2);
		rl_seterr("tensor %s: out of memory quantizing to %s", t->name, rl_dtypes[dt].name);
		return -1;
	}
	j.sum_e2 = j.sum_w2 + nrows;
	j.out = buf;
	/* rows of about 256 KiB of work per grain keep the pool's parts balanced */
	int64_t grain = 1 + (int64_t)((256 << 10) / (ncols * 4 + 1));
	rl_parallel_for((int64_t)nrows, grain, quantize_rows, &j);
	double w2 = 0, e2 = 0;
	int rc = 0;
	if (j.failed) {
		rl_seterr("tensor %s: out of memory quantizing to %s", t->name, rl_dtypes[dt].name);
		rc = -1;
	}
	for (uint64_t r = 0; r < nrows && rc == 0; r++) {
		if (isnan(j.sum_e2[r])) {
			rl_seterr("tensor %s: row %llu holds a non-finite weight%s", t->name, (unsigned long long)r,
				  rl_dtypes[dt].group ? " or one beyond f16's range (65504)"
				  : rl_dtype_quantized(dt) ? " or weights too large for the f16 scales of its blocks" : "");
			rc = -1;
		}
		w2 += j.sum_w2[r];
		e2 += j.sum_e2[r];
	}
	free(j.sum_w2);
	if (rc) {
		free(buf);
		return -1;
	}
	uint64_t n = nrows * ncols;
	st->n = n;
	st->bytes = total;
	st->bpw = 8.0 * (double)total / (double)n;
	st->rmse = sqrt(e2 / (double)n);
	st->sqnr_db = e2 > 0 ? 10 * log10(w2 / e2) : INFINITY;
	*out = buf;
	*bytes = total;
	return 0;
}
