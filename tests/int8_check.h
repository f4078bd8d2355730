/* int8_check.h: the checks of the 8-bit-activation kernels (quant.h,
 * RL_ACT_INT8) that test_quant (group formats) and test_gguf_quant (ggml's)
 * share. The bound is derived here from the definition, not from the kernels:
 * each block of 32 activations is rounded to dx * xi, so |x - dx xi| <= dx / 2,
 * with dx = max|x| / 127 over the block, or for q4_K and q2_K (act8_block 256)
 * D m with D = max|x| over the 256 / (127 * 32) and m = ceil(32 max_b / max_256)
 * in 1..32 (max_b the block's); only the weights' q part (w minus the format's
 * offset, which multiplies the exact x) meets that error. */
#ifndef INT8_CHECK_H
#define INT8_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "t.h"

/* A copy of the packed rows with every offset zeroed, so that to_float gives
 * the part of each weight that multiplies q: a group's min, q4_K's and q2_K's
 * dmin. q4_0 (d (q - 8)) and q8_0 (d q) have no separate offset. */
static inline unsigned char *int8_q_part(rl_dtype dt, int OC, int IC, const unsigned char *W)
{
	size_t rb = rl_row_bytes(dt, (uint64_t)IC);
	unsigned char *c = malloc((size_t)OC * rb);
	memcpy(c, W, (size_t)OC * rb);
	const rl_dtype_traits *tr = &rl_dtypes[dt];
	for (int r = 0; r < OC; r++) {
		unsigned char *p = c + (size_t)r * rb;
		if (tr->group) {
			for (int i = 0; i < IC; i += tr->group) {
				int m = IC - i < tr->group ? IC - i : tr->group;
				p[2] = p[3] = 0;
				p += rl_group_bytes(tr->qbits, (size_t)m);
			}
		} else if (dt == RL_Q4_K || dt == RL_Q2_K) {
			size_t bb = tr->block_bytes, off = dt == RL_Q4_K ? 2 : 82;
			for (size_t b = 0; b < (size_t)IC / tr->block; b++)
				p[b * bb + off] = p[b * bb + off + 1] = 0;
		}
	}
	return c;
}

/* Each block of 32's step dx (an upper bound for act8_block 256, where m is
 * taken as floor(32 max_b / max_256) + 1: the definition's ceiling computed in
 * floats can only be smaller) */
static inline void int8_steps(rl_dtype dt, const float *x, int IC, double *dx)
{
	for (int b0 = 0; b0 < IC; b0 += 32) {
		double m = 0;
		for (int i = b0; i < IC && i < b0 + 32; i++)
			m = fabs(x[i]) > m ? fabs(x[i]) : m;
		dx[b0 / 32] = m / 127;
	}
	if (rl_dtypes[dt].act8_block != 256)
		return;
	for (int s0 = 0; s0 + 256 <= IC; s0 += 256) {
		double amax = 0;
		for (int b = s0 / 32; b < s0 / 32 + 8; b++)
			amax = dx[b] > amax ? dx[b] : amax; /* max_256 / 127 */
		for (int b = s0 / 32; b < s0 / 32 + 8 && amax > 0; b++)
			dx[b] = amax / 32 * fmin(32, floor(32 * dx[b] / amax) + 1);
	}
}

/* The worst over rows of |y8 - exact| / bound, where exact is the dot of the
 * dequantized weights with x in double and bound is
 *   sum_i |a_i| (0.5 + 1e-4) dx_b(i) + 2e-6 sum_i (|w_i| + |a_i|) |x_i|
 * (a: the q part; the 1e-4 covers rounding x * (127 / max) in floats, the
 * last term the kernels' float sums). > 1 is a failure; where says which row. */
static inline double int8_worst(rl_dtype dt, int OC, int IC, const unsigned char *W, const float *x, const float *y8,
				char *where, size_t wl)
{
	size_t rb = rl_row_bytes(dt, (uint64_t)IC);
	unsigned char *A = int8_q_part(dt, OC, IC, W);
	float *w = malloc((size_t)IC * 4), *a = malloc((size_t)IC * 4);
	double *dx = malloc(((size_t)IC / 32 + 1) * sizeof(double)), worst = 0;
	int8_steps(dt, x, IC, dx);
	for (int r = 0; r < OC; r++) {
		rl_dtypes[dt].to_float(W + (size_t)r * rb, w, (size_t)IC);
		rl_dtypes[dt].to_float(A + (size_t)r * rb, a, (size_t)IC);
		double exact = 0, bound = 0, mag = 0;
		for (int i = 0; i < IC; i++) {
			exact += (double)w[i] * x[i];
			bound += fabs(a[i]) * 0.5001 * dx[i / 32];
			mag += (fabs(w[i]) + fabs(a[i])) * fabs(x[i]);
		}
		bound += 2e-6 * mag + 1e-30;
		double e = fabs(y8[r] - exact) / bound;
		if (!(e <= worst)) {
			worst = isnan(e) ? INFINITY : e;
			snprintf(where, wl, "%s, IC %d, row %d: %.8g vs exact %.8g, bound %.3g", rl_dtypes[dt].name, IC, r,
				 y8[r], exact, bound);
		}
	}
	free(A);
	free(w);
	free(a);
	free(dx);
	return worst;
}

/* Activations with blocks of very different sizes (one 1000 times the others,
 * one all zero, one with a single nonzero), so per-block scales matter. */
static inline void int8_test_vector(float *x, int IC, float (*nrand)(void))
{
	for (int i = 0; i < IC; i++)
		x[i] = nrand();
	for (int i = 32; i < 64 && i < IC; i++)
		x[i] *= 1000;
	for (int i = 64; i < 96 && i < IC; i++)
		x[i] = 0;
	for (int i = 96; i < 128 && i < IC; i++)
		x[i] = i == 100 ? -3.5f : 0;
}

/* The 8-bit-activation kernels (both) for each format of dts and row length
 * of ics (OC rows from fill): within
 * the rounding bound of exact f32 (int8_check.h), the two kernels agree, N
 * vectors at once equal one at a time bit for bit, the path is really taken
 * (outputs differ from f32's), and a non-finite activation makes its vector's
 * outputs NaN without touching the others. */
static inline void int8_check(const char *prefix, const rl_dtype *dts, int ndt, const int *ics, int nic, int OC,
			      void (*fill)(rl_dtype dt, int IC, int r, float *w), float (*nrand)(void))
{
	enum { N = 3 };
	double worst[2] = { 0, 0 }, cross = 0;
	char where[2][200] = { "", "" }, cross_where[200] = "", differs_where[64] = "", nan_where[64] = "";
	int batch_same = 1, nan_ok = 1, all_differ = 1;
	for (int d = 0; d < ndt; d++)
		for (int k = 0; k < nic; k++) {
			rl_dtype dt = dts[d];
			int IC = ics[k];
			size_t rb = rl_row_bytes(dt, IC);
			float *w = malloc((size_t)OC * IC * 4), *x = malloc((size_t)N * IC * 4), *row = malloc((size_t)IC * 4);
			float *y[2], *y1 = malloc((size_t)OC * 4), *yf = malloc((size_t)OC * 4);
			float *scratch = malloc(rl_qgemv_scratch(IC, N) * 4);
			unsigned char *W = malloc((size_t)OC * rb);
			y[0] = malloc((size_t)N * OC * 4);
			y[1] = malloc((size_t)N * OC * 4);
			for (int r = 0; r < OC; r++) {
				fill(dt, IC, r, w + (size_t)r * IC);
				rl_dtypes[dt].from_float(w + (size_t)r * IC, W + (size_t)r * rb, IC);
			}
			for (int v = 0; v < N; v++)
				int8_test_vector(x + (size_t)v * IC, IC, nrand);
			for (int impl = 0; impl < 2; impl++) {
				rl_qgemv_select(impl);
				rl_qgemm_rows_act(dt, OC, IC, W, N, x, IC, y[impl], OC, scratch, RL_ACT_INT8);
				for (int v = 0; v < N; v++) {
					rl_qgemm_rows_act(dt, OC, IC, W, 1, x + (size_t)v * IC, IC, y1, OC, scratch,
							  RL_ACT_INT8);
					batch_same = batch_same && memcmp(y1, y[impl] + v * OC, (size_t)OC * 4) == 0;
					char wh[200];
					double e = int8_worst(dt, OC, IC, W, x + (size_t)v * IC, y1, wh, sizeof wh);
					if (!(e <= worst[impl])) {
						worst[impl] = e;
						snprintf(where[impl], sizeof where[impl], "%s", wh);
					}
				}
				rl_qgemv(dt, OC, IC, W, x, yf, scratch);
				int same = 0;
				for (int r = 0; r < OC; r++)
					same += yf[r] == y[impl][r];
				if (same == OC && all_differ) {
					all_differ = 0;
					snprintf(differs_where, sizeof differs_where, "%s, IC %d", rl_dtypes[dt].name, IC);
				}
			}
			/* the kernels against each other: float sums in another order only,
			 * of the q part and the offset part apart (their magnitudes count) */
			unsigned char *A = int8_q_part(dt, OC, IC, W);
			float *a = malloc((size_t)IC * 4);
			for (int v = 0; v < N; v++)
				for (int r = 0; r < OC; r++) {
					rl_dtypes[dt].to_float(W + (size_t)r * rb, row, IC);
					rl_dtypes[dt].to_float(A + (size_t)r * rb, a, IC);
					double mag = 0;
					for (int i = 0; i < IC; i++)
						mag += (fabs(a[i]) + fabs((double)row[i] - a[i])) * fabs(x[(size_t)v * IC + i]);
					double e = fabs(y[0][v * OC + r] - y[1][v * OC + r]) / (mag * 1e-6 + 1e-30);
					if (e > cross) {
						cross = e;
						snprintf(cross_where, sizeof cross_where, "%s, IC %d, row %d: %.8g vs %.8g",
							 rl_dtypes[dt].name, IC, r, y[0][v * OC + r], y[1][v * OC + r]);
					}
				}
			free(A);
			free(a);
			/* a NaN in the second vector's third block */
			x[IC + (IC > 70 ? 70 : IC - 1)] = NAN;
			for (int impl = 0; impl < 2; impl++) {
				rl_qgemv_select(impl);
				rl_qgemm_rows_act(dt, OC, IC, W, N, x, IC, y[impl], OC, scratch, RL_ACT_INT8);
				for (int r = 0; r < OC; r++)
					if (!isnan(y[impl][OC + r]) || isnan(y[impl][r]) || isnan(y[impl][2 * OC + r])) {
						if (nan_ok)
							snprintf(nan_where, sizeof nan_where, "%s, IC %d, %s", rl_dtypes[dt].name,
								 IC, impl ? "avx2" : "portable");
						nan_ok = 0;
					}
			}
			free(w);
			free(x);
			free(row);
			free(y[0]);
			free(y[1]);
			free(y1);
			free(yf);
			free(scratch);
			free(W);
		}
	rl_qgemv_select(-1);
	char name[96];
#define NAME(s) (snprintf(name, sizeof name, "%s_%s", prefix, s), name)
	CHECK(worst[0] <= 1, NAME("portable_within_bound"), "error %.3g of the bound at %s", worst[0], where[0]);
	CHECK(worst[1] <= 1, NAME("avx2_within_bound"), "error %.3g of the bound at %s", worst[1], where[1]);
	CHECK(cross < 1, NAME("avx2_matches_portable"), "error %.3g of 1e-6 x sum (|q part| + |offset|) |x| at %s", cross, cross_where);
	CHECK(batch_same, NAME("batch_invariant"), "a vector's outputs changed with the others in its batch");
	CHECK(all_differ, NAME("differs_from_f32"), "%s: every output equals f32 activations'", differs_where);
	CHECK(nan_ok, NAME("nan_stays_in_its_vector"), "%s", nan_where);
#undef NAME
}

#endif
