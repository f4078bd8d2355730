/* dtype_gguf.c: ggml's block formats q4_0, q8_0, q4_K and q2_K, byte for byte
 * as ggml lays them out (ggml-common.h) and rounding as its reference
 * quantizers do (quantize_row_*_ref in ggml-quants.c, which llama.cpp's
 * quantize uses when no importance matrix is given), so that a model stored
 * in them exports to GGUF unchanged and runs in llama.cpp with exactly the
 * weights our tools trained against. Dequantization is ggml's dequantize_row_*,
 * float for float.
 *
 * Byte-exactness depends on doing the float arithmetic in ggml's order, one
 * rounding per operation: this file must be compiled without contraction into
 * fused multiply-adds (the Makefile's -std=c11 implies -ffp-contract=off; ggml
 * builds these functions for plain x86-64, which has no FMA).
 *
 * Layouts (little-endian, f16 = IEEE half), weights along a row:
 *   q4_0  18 bytes / 32 weights (4.5 bits each): f16 d, 16 bytes of nibbles;
 *         byte j holds weight j (low nibble) and j+16 (high); w = d*(q-8).
 *   q8_0  34 bytes / 32 (8.5 bits): f16 d, 32 int8 q; w = d*q.
 *   q4_K  144 bytes / 256 (4.5 bits): f16 d, f16 dmin, 12 bytes of eight 6-bit
 *         scales and mins, 128 bytes of nibbles; weights in 8 sub-blocks of 32,
 *         w = (d*sc)*q - (dmin*m); each 64 weights use 32 bytes, weight l in
 *         the low nibble of byte l, weight 32+l in the high one.
 *   q2_K  84 bytes / 256 (2.625 bits): 16 bytes of 4-bit scale | 4-bit min
 *         << 4, 64 bytes of 2-bit q, f16 d, f16 dmin; 16 sub-blocks of 16,
 *         w = (d*sc)*q - (dmin*m); each 128 weights use 32 bytes, weight
 *         32*s + l at bits 2s of byte l. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"

_Static_assert(sizeof(float) == 4 && sizeof(int32_t) == 4, "32-bit floats and ints");

enum { QK = 32, QKK = 256, Q4_0_BYTES = 18, Q8_0_BYTES = 34, Q4_K_BYTES = 144, Q2_K_BYTES = 84 };

static inline void store_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)(v >> 8);
}

static inline float load_f16(const unsigned char *p) { return rl_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* float to int8 the way x86's cvttss2si then a narrowing store does it: toward
 * zero, and the "integer indefinite" 0x80000000 (low byte 0) out of range */
static inline int to_int8_trunc(float v)
{
	int32_t i = (v > -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
	return (int8_t)(uint8_t)((uint32_t)i & 0xff);
}

/* Round to nearest, ties to even, by adding 1.5 * 2^23: the integer lands in the
 * low mantissa bits. Exact for |v| < 2^22; beyond that it wraps as ggml's does. */
static inline int nearest_int(float v)
{
	float t = v + 12582912.0f;
	int32_t i;
	memcpy(&i, &t, 4);
	return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- q4_0 ---- */

void rl_quantize_row_q4_0(const float *restrict x, void *restrict dst, size_t n)
{
	unsigned char *b = dst;
	for (size_t i = 0; i < n; i += QK, x += QK, b += Q4_0_BYTES) {
		float amax = 0.0f, max = 0.0f; /* the weight of largest magnitude, signed */
		for (int j = 0; j < QK; j++)
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		float d = max / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
		store_u16(b, rl_f32_to_f16(d));
		for (int j = 0; j < QK / 2; j++) {
			int lo = to_int8_trunc(x[j] * id + 8.5f), hi = to_int8_trunc(x[j + QK / 2] * id + 8.5f);
			lo = lo < 15 ? lo : 15;
			hi = hi < 15 ? hi : 15;
			b[2 + j] = (unsigned char)((uint8_t)lo | (uint8_t)((uint8_t)hi << 4));
		}
	}
}

void rl_dequantize_row_q4_0(const void *restrict src, float *restrict y, size_t n)
{
	const unsigned char *b = src;
	for (size_t i = 0; i < n; i += QK, b += Q4_0_BYTES, y += QK) {
		float d = load_f16(b);
		for (int j = 0; j < QK / 2; j++) {
			y[j] = (float)((b[2 + j] & 15) - 8) * d;
			y[j + QK / 2] = (float)((b[2 + j] >> 4) - 8) * d;
		}
	}
}

/* ---- q8_0 ---- */

void rl_quantize_row_q8_0(const float *restrict x, void *restrict dst, size_t n)
{
	unsigned char *b = dst;
	for (size_t i = 0; i < n; i += QK, x += QK, b += Q8_0_BYTES) {
		float amax = 0.0f;
		for (int j = 0; j < QK; j++)
			amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
		float d = amax / 127, id = d != 0.0f ? 1.0f / d : 0.0f;
		store_u16(b, rl_f32_to_f16(d));
		for (int j = 0; j < QK; j++)
			b[2 + j] = (unsigned char)(int8_t)to_int8_trunc(roundf(x[j] * id));
	}
}

void rl_dequantize_row_q8_0(const void *restrict src, float *restrict y, size_t n)
{
	const unsigned char *b = src;
	for (size_t i = 0; i < n; i += QK, b += Q8_0_BYTES, y += QK) {
		float d = load_f16(b);
		for (int j = 0; j < QK; j++)
			y[j] = (float)(int8_t)b[2 + j] * d;
	}
}

/* ---- the k-quants' search for a sub-block's scale and min ----
 *
 * For n weights x with importance w, q in 0..nmax: start from min-max round to
 * nearest (the min never above 0), then try the grids iscale = (nmax + rmin +
 * rdelta*k) / (max - min) for k = 0..nstep, each followed by the weighted least
 * squares scale and min for the q it gives, and keep whichever has the least
 * weighted error (absolute when use_abs, else squared). Returns the scale;
 * *neg_min = -min (so w = scale*q - *neg_min). L gets q, aux is scratch. */
static float search_scale_min(int n, int nmax, const float *restrict x, const float *restrict w,
			      uint8_t *restrict L, float *restrict neg_min, uint8_t *restrict aux, float rmin,
			      float rdelta, int nstep, int use_abs, int empty_if_negative)
{
	float min = x[0], max = x[0];
	float sum_w = w[0], sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		min = x[i] < min ? x[i] : min;
		max = x[i] > max ? x[i] : max;
		sum_w += w[i];
		sum_x += w[i] * x[i];
	}
	if (min > 0)
		min = 0;
	/* the importance-weighted variant (make_qkx3_quants) gives up on a
	 * sub-block with no positive weight; the reference one (make_qkx2_quants)
	 * goes on with a negative range */
	if (max == min || (empty_if_negative && max < min)) {
		memset(L, 0, (size_t)n);
		*neg_min = -min;
		return 0.0f;
	}
	float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
	for (int i = 0; i < n; i++) {
		L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
		float sl = scale * (float)L[i], diff = sl + min - x[i];
		diff = use_abs ? fabsf(diff) : diff * diff;
		best += w[i] * diff;
	}
	for (int k = 0; k <= nstep; k++) {
		float step = rdelta * (float)k;
		iscale = (rmin + step + (float)nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
			aux[i] = (uint8_t)l;
			float wl = w[i] * (float)l;
			sum_l += wl;
			sum_l2 += wl * (float)l;
			sum_xl += wl * x[i];
		}
		float det = sum_w * sum_l2 - sum_l * sum_l;
		if (!(det > 0))
			continue;
		float s = (sum_w * sum_xl - sum_x * sum_l) / det, m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
		if (m > 0) {
			m = 0;
			s = sum_xl / sum_l2;
		}
		float err = 0;
		for (int i = 0; i < n; i++) {
			float sl = s * (float)aux[i], diff = sl + m - x[i];
			diff = use_abs ? fabsf(diff) : diff * diff;
			err += w[i] * diff;
		}
		if (err < best) {
			memcpy(L, aux, (size_t)n);
			best = err;
			scale = s;
			min = m;
		}
	}
	*neg_min = -min;
	return scale;
}

/* ---- q4_K ---- */

/* sub-block j's 6-bit scale and min from the 12 packed bytes: 0-3 hold the
 * scales of sub-blocks 0-3 in their low 6 bits, 4-7 their mins; 8-11 hold the
 * low 4 bits of sub-blocks 4-7's scale (low nibble) and min (high nibble),
 * whose top 2 bits sit in the top bits of bytes 0-3 (scale) and 4-7 (min). */
static inline void q4_K_scale_min(int j, const unsigned char *s, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
		*m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
	}
}

void rl_quantize_row_q4_K(const float *restrict x, void *restrict dst, size_t n)
{
	unsigned char *b = dst;
	uint8_t L[QKK], aux[32];
	float w[32], scales[8], mins[8];
	for (size_t i = 0; i < n; i += QKK, x += QKK, b += Q4_K_BYTES) {
		float max_scale = 0, max_min = 0;
		for (int j = 0; j < 8; j++) {
			const float *xs = x + 32 * j;
			/* importance: the weight's magnitude plus the sub-block's rms */
			float sum_x2 = 0;
			for (int l = 0; l < 32; l++)
				sum_x2 += xs[l] * xs[l];
			float rms = sqrtf(sum_x2 / 32);
			for (int l = 0; l < 32; l++)
				w[l] = rms + fabsf(xs[l]);
			scales[j] = search_scale_min(32, 15, xs, w, L + 32 * j, &mins[j], aux, -1.0f, 0.1f, 20, 0, 0);
			max_scale = scales[j] > max_scale ? scales[j] : max_scale;
			max_min = mins[j] > max_min ? mins[j] : max_min;
		}
		float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
		float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
		unsigned char *sb = b + 4;
		for (int j = 0; j < 8; j++) {
			/* through uint8_t as ggml stores them: a negative scale wraps, then clamps to 63 */
			uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
			uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
			ls = ls < 63 ? ls : 63;
			lm = lm < 63 ? lm : 63;
			if (j < 4) {
				sb[j] = ls;
				sb[j + 4] = lm;
			} else {
				sb[j + 4] = (unsigned char)((ls & 15) | (lm & 15) << 4);
				sb[j - 4] |= (unsigned char)((ls >> 4) << 6);
				sb[j] |= (unsigned char)((lm >> 4) << 6);
			}
		}
		store_u16(b, rl_f32_to_f16(max_scale / 63.0f));
		store_u16(b + 2, rl_f32_to_f16(max_min / 63.0f));
		float d = load_f16(b), dmin = load_f16(b + 2);
		/* q again for the stored scales and mins; a sub-block whose scale is 0
		 * keeps the search's q (it dequantizes to -min whatever q is) */
		for (int j = 0; j < 8; j++) {
			int sc, m;
			q4_K_scale_min(j, sb, &sc, &m);
			float ds = d * (float)sc;
			if (ds == 0.0f)
				continue;
			float dm = dmin * (float)m;
			for (int l = 0; l < 32; l++)
				L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / ds), 0, 15);
		}
		unsigned char *q = b + 16;
		for (int j = 0; j < QKK; j += 64, q += 32)
			for (int l = 0; l < 32; l++)
				q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
	}
}

void rl_dequantize_row_q4_K(const void *restrict src, float *restrict y, size_t n)
{
	const unsigned char *b = src;
	for (size_t i = 0; i < n; i += QKK, b += Q4_K_BYTES) {
		float d = load_f16(b), dmin = load_f16(b + 2);
		const unsigned char *q = b + 16;
		for (int j = 0; j < 8; j += 2, q += 32) {
			int sc, m;
			q4_K_scale_min(j, b + 4, &sc, &m);
			float d1 = d * (float)sc, m1 = dmin * (float)m;
			q4_K_scale_min(j + 1, b + 4, &sc, &m);
			float d2 = d * (float)sc, m2 = dmin * (float)m;
			for (int l = 0; l < 32; l++) {
				float v = d1 * (float)(q[l] & 15);
				*y++ = v - m1;
			}
			for (int l = 0; l < 32; l++) {
				float v = d2 * (float)(q[l] >> 4);
				*y++ = v - m2;
			}
		}
	}
}

/* ---- q2_K ---- */

void rl_quantize_row_q2_K(const float *restrict x, void *restrict dst, size_t n)
{
	unsigned char *b = dst;
	uint8_t L[QKK], aux[16];
	float w[16], scales[16], mins[16];
	for (size_t i = 0; i < n; i += QKK, x += QKK, b += Q2_K_BYTES) {
		float max_scale = 0, max_min = 0;
		for (int j = 0; j < 16; j++) {
			for (int l = 0; l < 16; l++)
				w[l] = fabsf(x[16 * j + l]);
			scales[j] = search_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], aux, -0.5f, 0.1f, 15, 1, 0);
			max_scale = scales[j] > max_scale ? scales[j] : max_scale;
			max_min = mins[j] > max_min ? mins[j] : max_min;
		}
		unsigned char *sb = b;
		if (max_scale > 0) {
			float iscale = 15.0f / max_scale;
			for (int j = 0; j < 16; j++)
				sb[j] = (uint8_t)nearest_int(iscale * scales[j]);
			store_u16(b + 80, rl_f32_to_f16(max_scale / 15.0f));
		} else {
			memset(sb, 0, 16);
			store_u16(b + 80, rl_f32_to_f16(0.0f));
		}
		if (max_min > 0) {
			float iscale = 15.0f / max_min;
			for (int j = 0; j < 16; j++)
				sb[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
			store_u16(b + 82, rl_f32_to_f16(max_min / 15.0f));
		} else {
			store_u16(b + 82, rl_f32_to_f16(0.0f));
		}
		float d = load_f16(b + 80), dmin = load_f16(b + 82);
		for (int j = 0; j < 16; j++) {
			float ds = d * (float)(sb[j] & 15);
			if (ds == 0.0f)
				continue;
			float dm = dmin * (float)(sb[j] >> 4);
			for (int l = 0; l < 16; l++)
				L[16 * j + l] = (uint8_t)clampi(nearest_int((x[16 * j + l] + dm) / ds), 0, 3);
		}
		unsigned char *q = b + 16;
		for (int j = 0; j < QKK; j += 128, q += 32)
			for (int l = 0; l < 32; l++)
				q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
	}
}

void rl_dequantize_row_q2_K(const void *restrict src, float *restrict y, size_t n)
{
	const unsigned char *b = src;
	for (size_t i = 0; i < n; i += QKK, b += Q2_K_BYTES) {
		float d = load_f16(b + 80), dmin = load_f16(b + 82);
		const unsigned char *q = b + 16;
		int is = 0;
		for (int c = 0; c < QKK; c += 128, q += 32)
			for (int s = 0; s < 8; s += 2)
				for (int h = 0; h < 32; h += 16) {
					unsigned sc = b[is++];
					float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
					for (int l = h; l < h + 16; l++) {
						float v = dl * (float)((q[l] >> s) & 3);
						*y++ = v - ml;
					}
				}
	}
}

/* ---- importance-weighted k-quants (ggml's quantize_q4_K / quantize_q2_K with
 * an importance matrix: quantize_row_*_impl), imp the per-column mean squared
 * activation, as llama.cpp's imatrix holds it ---- */

/* The k-quants' 6- or 4-bit sub-block scales (or mins) x, all >= 0, as q in
 * 0..nmax times a common scale, which it returns: 9 grids around max/nmax,
 * then up to 5 rounds of moving single q to the value that most improves the
 * weighted fit (make_qp_quants). */
static float fit_common_scale(int n, int nmax, const float *restrict x, uint8_t *restrict L, const float *restrict w)
{
	float max = 0;
	for (int i = 0; i < n; i++)
		max = max > x[i] ? max : x[i];
	if (max < 1e-15f) {
		memset(L, 0, (size_t)n);
		return 0.0f;
	}
	float iscale = (float)nmax / max;
	for (int i = 0; i < n; i++)
		L[i] = (uint8_t)nearest_int(iscale * x[i]);
	float scale = 1 / iscale, best = 0;
	for (int i = 0; i < n; i++) {
		float sl = scale * (float)L[i], diff = x[i] - sl, wd = w[i] * diff;
		best += wd * diff;
	}
	for (int k = -4; k <= 4; k++) {
		if (k == 0)
			continue;
		float step = 0.1f * (float)k, is = (step + (float)nmax) / max, sc = 1 / is, err = 0;
		for (int i = 0; i < n; i++) {
			int l = nearest_int(is * x[i]);
			l = l < nmax ? l : nmax;
			float sl = sc * (float)l, diff = x[i] - sl, wd = w[i] * diff;
			err += wd * diff;
		}
		if (err < best) {
			best = err;
			iscale = is;
		}
	}
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = nearest_int(iscale * x[i]);
		l = l < nmax ? l : nmax;
		L[i] = (uint8_t)l;
		float wx = w[i] * x[i], wl = w[i] * (float)l;
		sumlx += wx * (float)l;
		suml2 += wl * (float)l;
	}
	for (int round = 0; round < 5; round++) {
		int changed = 0;
		for (int i = 0; i < n; i++) {
			float wx = w[i] * x[i], wL = w[i] * (float)L[i];
			float slx = sumlx - wx * (float)L[i], sl2 = suml2 - wL * (float)L[i];
			if (slx > 0 && sl2 > 0) {
				float t = x[i] * sl2;
				int l = nearest_int(t / slx);
				l = l < nmax ? l : nmax;
				if (l != L[i]) {
					float wl = w[i] * (float)l;
					slx += wx * (float)l;
					sl2 += wl * (float)l;
					float a = slx * slx, c = sumlx * sumlx;
					if (a * suml2 > c * sl2) {
						L[i] = (uint8_t)l;
						sumlx = slx;
						suml2 = sl2;
						changed++;
					}
				}
			}
		}
		if (!changed)
			break;
	}
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

void rl_quantize_row_q4_K_imp(const float *restrict x, void *restrict dst, size_t n, const float *restrict imp)
{
	unsigned char *b = dst;
	uint8_t L[QKK], aux[32], Ls[8], Lm[8];
	float w[32], sw[8], scales[8], mins[8];
	for (size_t i = 0; i < n; i += QKK, x += QKK, b += Q4_K_BYTES, imp += QKK) {
		float sum_x2 = 0;
		for (int l = 0; l < QKK; l++)
			sum_x2 += x[l] * x[l];
		float sigma2 = 2 * sum_x2 / QKK;
		for (int j = 0; j < 8; j++) {
			for (int l = 0; l < 32; l++) {
				float x2 = x[32 * j + l] * x[32 * j + l];
				w[l] = imp[32 * j + l] * sqrtf(sigma2 + x2);
			}
			float sumw = 0;
			for (int l = 0; l < 32; l++)
				sumw += w[l];
			sw[j] = sumw;
			scales[j] = search_scale_min(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], aux, -0.9f, 0.05f, 36, 0, 1);
		}
		float d = fit_common_scale(8, 63, scales, Ls, sw), dmin = fit_common_scale(8, 63, mins, Lm, sw);
		unsigned char *sb = b + 4;
		for (int j = 0; j < 8; j++) {
			if (j < 4) {
				sb[j] = Ls[j];
				sb[j + 4] = Lm[j];
			} else {
				sb[j + 4] = (unsigned char)((Ls[j] & 15) | (Lm[j] & 15) << 4);
				sb[j - 4] |= (unsigned char)((Ls[j] >> 4) << 6);
				sb[j] |= (unsigned char)((Lm[j] >> 4) << 6);
			}
		}
		store_u16(b, rl_f32_to_f16(d));
		store_u16(b + 2, rl_f32_to_f16(dmin));
		d = load_f16(b);
		dmin = load_f16(b + 2);
		for (int j = 0; j < 8; j++) {
			int sc, m;
			q4_K_scale_min(j, sb, &sc, &m);
			float ds = d * (float)sc;
			if (ds == 0.0f)
				continue;
			float dm = dmin * (float)m;
			for (int l = 0; l < 32; l++)
				L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / ds), 0, 15);
		}
		unsigned char *q = b + 16;
		for (int j = 0; j < QKK; j += 64, q += 32)
			for (int l = 0; l < 32; l++)
				q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
	}
}

void rl_quantize_row_q2_K_imp(const float *restrict x, void *restrict dst, size_t n, const float *restrict imp)
{
	unsigned char *b = dst;
	uint8_t L[QKK], aux[16], Ls[16], Lm[16];
	float w[16], sw[16], scales[16], mins[16];
	for (size_t i = 0; i < n; i += QKK, x += QKK, b += Q2_K_BYTES, imp += QKK) {
		float sum_x2 = 0;
		for (int l = 0; l < QKK; l++)
			sum_x2 += x[l] * x[l];
		float sigma2 = sum_x2 / QKK;
		for (int j = 0; j < 16; j++) {
			for (int l = 0; l < 16; l++) {
				float x2 = x[16 * j + l] * x[16 * j + l];
				w[l] = imp[16 * j + l] * sqrtf(sigma2 + x2);
			}
			float sumw = 0;
			for (int l = 0; l < 16; l++)
				sumw += w[l];
			sw[j] = sumw;
			scales[j] = search_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], aux, -0.9f, 0.05f, 36, 0, 1);
		}
		float d = fit_common_scale(16, 15, scales, Ls, sw), dmin = fit_common_scale(16, 15, mins, Lm, sw);
		store_u16(b + 80, rl_f32_to_f16(d));
		store_u16(b + 82, rl_f32_to_f16(dmin));
		d = load_f16(b + 80);
		dmin = load_f16(b + 82);
		for (int j = 0; j < 16; j++)
			b[j] = (unsigned char)(Ls[j] | Lm[j] << 4);
		for (int j = 0; j < 16; j++) {
			float ds = d * (float)(b[j] & 15);
			if (ds == 0.0f)
				continue;
			float dm = dmin * (float)(b[j] >> 4);
			for (int l = 0; l < 16; l++)
				L[16 * j + l] = (uint8_t)clampi(nearest_int((x[16 * j + l] + dm) / ds), 0, 3);
		}
		unsigned char *q = b + 16;
		for (int j = 0; j < QKK; j += 128, q += 32)
			for (int l = 0; l < 32; l++)
				q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
	}
}

/* ---- fused dequantize-dot, portable: sum_i w_i x_i with each block's terms
 * grouped as the format factors them: d * sum q x, minus min * sum x (xsum16
 * holds the sums of x over each 16 weights) ---- */

float rl_dot_q4_0(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n)
{
	(void)xsum16;
	const unsigned char *b = row;
	float acc = 0;
	for (size_t i = 0; i < n; i += QK, b += Q4_0_BYTES, x += QK) {
		float s = 0;
		for (int j = 0; j < QK / 2; j++)
			s += (float)((b[2 + j] & 15) - 8) * x[j] + (float)((b[2 + j] >> 4) - 8) * x[j + QK / 2];
		acc += load_f16(b) * s;
	}
	return acc;
}

float rl_dot_q8_0(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n)
{
	(void)xsum16;
	const unsigned char *b = row;
	float acc = 0;
	for (size_t i = 0; i < n; i += QK, b += Q8_0_BYTES, x += QK) {
		float s = 0;
		for (int j = 0; j < QK; j++)
			s += (float)(int8_t)b[2 + j] * x[j];
		acc += load_f16(b) * s;
	}
	return acc;
}

float rl_dot_q4_K(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n)
{
	const unsigned char *b = row;
	float acc = 0;
	for (size_t i = 0; i < n; i += QKK, b += Q4_K_BYTES, x += QKK, xsum16 += 16) {
		float d = load_f16(b), dmin = load_f16(b + 2), mins = 0;
		const unsigned char *q = b + 16;
		for (int j = 0; j < 8; j += 2, q += 32) {
			int sc1, m1, sc2, m2;
			q4_K_scale_min(j, b + 4, &sc1, &m1);
			q4_K_scale_min(j + 1, b + 4, &sc2, &m2);
			float s1 = 0, s2 = 0;
			const float *xs = x + 32 * j;
			for (int l = 0; l < 32; l++) {
				s1 += (float)(q[l] & 15) * xs[l];
				s2 += (float)(q[l] >> 4) * xs[l + 32];
			}
			acc += d * (float)sc1 * s1 + d * (float)sc2 * s2;
			mins += dmin * (float)m1 * (xsum16[2 * j] + xsum16[2 * j + 1]) +
				dmin * (float)m2 * (xsum16[2 * j + 2] + xsum16[2 * j + 3]);
		}
		acc -= mins;
	}
	return acc;
}

float rl_dot_q2_K(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n)
{
	const unsigned char *b = row;
	float acc = 0;
	for (size_t i = 0; i < n; i += QKK, b += Q2_K_BYTES, x += QKK, xsum16 += 16) {
		float d = load_f16(b + 80), dmin = load_f16(b + 82), mins = 0;
		const unsigned char *q = b + 16;
		const float *xs = x;
		int is = 0;
		for (int c = 0; c < QKK; c += 128, q += 32)
			for (int s = 0; s < 8; s += 2)
				for (int h = 0; h < 32; h += 16, xs += 16, is++) {
					float t = 0;
					for (int l = 0; l < 16; l++)
						t += (float)((q[h + l] >> s) & 3) * xs[l];
					acc += d * (float)(b[is] & 15) * t;
					mins += dmin * (float)(b[is] >> 4) * xsum16[is];
				}
		acc -= mins;
	}
	return acc;
}

/* ---- the same with 8-bit activations (rl_act8), portable: the weights' q
 * times xi summed in integers, then scaled; the formats' mins (q4_K, q2_K)
 * still multiply the exact sums of x. q4_0 and q8_0 take blocks of 32, each
 * dx * xi; q4_0 is d * sum (q - 8) xi, as ggml's q4_0 x q8_0 dot. q4_K and q2_K
 * take blocks of 256, D * m * xi with m per 32: each sub-block's sum of q xi
 * times its scale times m, summed over the 256 in int32 (at most
 * 256 * 15 * 127 * 63 * 32 < 2^30 for q4_K, 256 * 3 * 127 * 15 * 32 for q2_K),
 * then times d D. ---- */

float rl_dot8_q4_0(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const float *bx = a->bx;
	float acc = 0;
	for (size_t i = 0; i < n; i += QK, b += Q4_0_BYTES, xi += QK, bx += 2) {
		int32_t s = 0;
		for (int j = 0; j < QK / 2; j++)
			s += (b[2 + j] & 15) * xi[j] + (b[2 + j] >> 4) * xi[j + QK / 2];
		float d = load_f16(b);
		acc += d * bx[0] * (float)s - 8.0f * (d * bx[1]);
	}
	return acc;
}

float rl_dot8_q8_0(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const float *bx = a->bx;
	float acc = 0;
	for (size_t i = 0; i < n; i += QK, b += Q8_0_BYTES, xi += QK, bx += 2) {
		int32_t s = 0;
		for (int j = 0; j < QK; j++)
			s += (int8_t)b[2 + j] * xi[j];
		acc += load_f16(b) * bx[0] * (float)s;
	}
	return acc;
}

float rl_dot8_q4_K(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const int16_t *xm = a->xm;
	const float *xsum16 = a->xsum16;
	float acc = 0;
	for (size_t i = 0; i < n; i += QKK, b += Q4_K_BYTES, xi += QKK, xm += 8, xsum16 += 16) {
		float d = load_f16(b), dmin = load_f16(b + 2), mins = 0;
		const unsigned char *q = b + 16;
		int32_t t = 0;
		for (int j = 0; j < 8; j += 2, q += 32) {
			int sc1, m1, sc2, m2;
			q4_K_scale_min(j, b + 4, &sc1, &m1);
			q4_K_scale_min(j + 1, b + 4, &sc2, &m2);
			int32_t s1 = 0, s2 = 0;
			for (int l = 0; l < 32; l++) {
				s1 += (q[l] & 15) * xi[32 * j + l];
				s2 += (q[l] >> 4) * xi[32 * j + 32 + l];
			}
			t += sc1 * xm[j] * s1 + sc2 * xm[j + 1] * s2;
			mins += (float)m1 * (xsum16[2 * j] + xsum16[2 * j + 1]) +
				(float)m2 * (xsum16[2 * j + 2] + xsum16[2 * j + 3]);
		}
		acc += d * a->bx[i / QKK] * (float)t - dmin * mins;
	}
	return acc;
}

float rl_dot8_q2_K(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const int16_t *xm = a->xm;
	const float *xsum16 = a->xsum16;
	float acc = 0;
	for (size_t i = 0; i < n; i += QKK, b += Q2_K_BYTES, xsum16 += 16) {
		float d = load_f16(b + 80), dmin = load_f16(b + 82), mins = 0;
		const unsigned char *q = b + 16;
		int32_t t = 0;
		for (int c = 0; c < QKK; c += 128, q += 32)
			for (int s = 0; s < 8; s += 2, xi += 32, xm++) {
				/* x block: weights 32*(s/2)..+31 of this 128, sub-blocks is and is + 1 */
				int is = c / 16 + s, s1 = 0, s2 = 0;
				for (int l = 0; l < 16; l++) {
					s1 += ((q[l] >> s) & 3) * xi[l];
					s2 += ((q[l + 16] >> s) & 3) * xi[l + 16];
				}
				t += ((b[is] & 15) * s1 + (b[is + 1] & 15) * s2) * xm[0];
			}
		for (int k = 0; k < 16; k++)
			mins += (float)(b[k] >> 4) * xsum16[k];
		acc += d * a->bx[i / QKK] * (float)t - dmin * mins;
	}
	return acc;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum(__m256 a)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* eight bytes at p, zero-extended to eight 32-bit lanes */
AVX2 static inline __m256i u8x8(const unsigned char *p)
{
	return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

AVX2 float rl_dot_q4_0_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16,
			    size_t n)
{
	(void)xsum16;
	const unsigned char *b = row;
	const __m256i m4 = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
	__m256 acc = _mm256_setzero_ps();
	for (size_t i = 0; i < n; i += QK, b += Q4_0_BYTES, x += QK) {
		__m256i v0 = u8x8(b + 2), v1 = u8x8(b + 10);
		__m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v0, m4), eight)),
					 _mm256_loadu_ps(x));
		t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v1, m4), eight)),
				    _mm256_loadu_ps(x + 8), t);
		t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v0, 4), eight)),
				    _mm256_loadu_ps(x + 16), t);
		t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v1, 4), eight)),
				    _mm256_loadu_ps(x + 24), t);
		acc = _mm256_fmadd_ps(t, _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b))), acc);
	}
	return hsum(acc);
}

AVX2 float rl_dot_q8_0_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16,
			    size_t n)
{
	(void)xsum16;
	const unsigned char *b = row;
	__m256 acc = _mm256_setzero_ps();
	for (size_t i = 0; i < n; i += QK, b += Q8_0_BYTES, x += QK) {
		__m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2)))),
					 _mm256_loadu_ps(x));
		for (int k = 8; k < QK; k += 8)
			t = _mm256_fmadd_ps(
				_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + k)))),
				_mm256_loadu_ps(x + k), t);
		acc = _mm256_fmadd_ps(t, _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b))), acc);
	}
	return hsum(acc);
}

/* q4_K: the block's eight scales and mins unpacked together; each 8 bytes of
 * a 64-weight chunk widen to 8 lanes whose low nibbles are weights l..l+7 (the
 * chunk's first sub-block) and high nibbles 32+l..32+l+7 (its second). */
AVX2 float rl_dot_q4_K_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16,
			    size_t n)
{
	const unsigned char *b = row;
	const __m256i m4 = _mm256_set1_epi32(15);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
	for (size_t i = 0; i < n; i += QKK, b += Q4_K_BYTES, x += QKK, xsum16 += 16) {
		__m256 d = _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b))), dmin = _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b + 2)));
		/* the 6-bit fields of q4_K_scale_min, four at a time: bytes of u0 (scales 0-3),
		 * u1 (mins 0-3), u2 (low bits of 4-7), top bits of 4-7 in u0 and u1 */
		uint32_t u0 = (uint32_t)rl_load_i32(b + 4), u1 = (uint32_t)rl_load_i32(b + 8), u2 = (uint32_t)rl_load_i32(b + 12);
		uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3f) | (uint64_t)((u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4) << 32;
		uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3f) | (uint64_t)(((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4)
								   << 32;
		__m256 scales = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))));
		__m256 mins = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))));
		/* sums of x per 32: pairs of the sums of 16, hadd's lane order put back */
		__m256 xs = _mm256_hadd_ps(_mm256_loadu_ps(xsum16), _mm256_loadu_ps(xsum16 + 8));
		xs = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(xs), 0xd8));
		macc = _mm256_fmadd_ps(mins, xs, macc);
		const unsigned char *q = b + 16;
		const float *xp = x;
		for (int j = 0; j < 8; j += 2, q += 32, xp += 64) {
			__m256i v0 = u8x8(q), v1 = u8x8(q + 8), v2 = u8x8(q + 16), v3 = u8x8(q + 24);
			__m256 lo0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, m4)), _mm256_loadu_ps(xp));
			__m256 lo1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, m4)), _mm256_loadu_ps(xp + 8));
			__m256 hi0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), _mm256_loadu_ps(xp + 32));
			__m256 hi1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), _mm256_loadu_ps(xp + 40));
			lo0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v2, m4)), _mm256_loadu_ps(xp + 16), lo0);
			lo1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v3, m4)), _mm256_loadu_ps(xp + 24), lo1);
			hi0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v2, 4)), _mm256_loadu_ps(xp + 48), hi0);
			hi1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v3, 4)), _mm256_loadu_ps(xp + 56), hi1);
			acc0 = _mm256_fmadd_ps(_mm256_add_ps(lo0, lo1), _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(j)),
					       acc0);
			acc1 = _mm256_fmadd_ps(_mm256_add_ps(hi0, hi1), _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(j + 1)),
					       acc1);
		}
	}
	return hsum(_mm256_add_ps(acc0, acc1)) - hsum(macc);
}

/* q2_K: each 8 bytes of a 128-weight chunk widen to 8 lanes holding, at bits 2s,
 * weights 32s+l..32s+l+7, so one load feeds four sub-blocks. vpermilps turns
 * each lane's low 2 bits into the float q straight from a table [0, 1, 2, 3]:
 * no masking and no conversion. */
AVX2 float rl_dot_q2_K_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16,
			    size_t n)
{
	const unsigned char *b = row;
	const __m256 ramp = _mm256_setr_ps(0, 1, 2, 3, 0, 1, 2, 3);
	const __m256i m4 = _mm256_set1_epi32(15);
	__m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
	__m256 macc = _mm256_setzero_ps();
	float dl[16] __attribute__((aligned(32)));
	for (size_t i = 0; i < n; i += QKK, b += Q2_K_BYTES, x += QKK, xsum16 += 16) {
		__m256 d = _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b + 80))), dmin = _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b + 82)));
		__m256i s0 = u8x8(b), s1 = u8x8(b + 8);
		/* d*sc of the 16 sub-blocks, and the mins' share */
		_mm256_store_ps(dl, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(s0, m4))));
		_mm256_store_ps(dl + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(s1, m4))));
		macc = _mm256_fmadd_ps(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_srli_epi32(s0, 4))),
				       _mm256_loadu_ps(xsum16), macc);
		macc = _mm256_fmadd_ps(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_srli_epi32(s1, 4))),
				       _mm256_loadu_ps(xsum16 + 8), macc);
		const unsigned char *q = b + 16;
		for (int c = 0; c < 2; c++, q += 32)
			for (int h = 0; h < 2; h++) {
				/* sub-block 8c + 2s + h: bytes 16h..16h+15 of chunk c at bits 2s */
				__m256i v0 = u8x8(q + 16 * h), v1 = u8x8(q + 16 * h + 8);
				const float *xp = x + 128 * c + 16 * h;
				for (int s = 0; s < 4; s++, xp += 32) {
					__m256 t = _mm256_mul_ps(_mm256_permutevar_ps(ramp, v0), _mm256_loadu_ps(xp));
					t = _mm256_fmadd_ps(_mm256_permutevar_ps(ramp, v1), _mm256_loadu_ps(xp + 8), t);
					acc[s] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(&dl[8 * c + 2 * s + h]), acc[s]);
					v0 = _mm256_srli_epi32(v0, 2);
					v1 = _mm256_srli_epi32(v1, 2);
				}
			}
	}
	return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) - hsum(macc);
}
/* ---- 8-bit activations with AVX2: maddubs multiplies unsigned weight bytes
 * by signed activation bytes into 16-bit pair sums (no overflow: at most
 * 2 * 15 * 127), madd widens them to 32 bits, times a 16-bit multiplier: ones,
 * or for q4_K and q2_K the sub-block's scale times the x block's m (at most
 * 63 * 32). ---- */

AVX2 static inline __m256i nibbles32(const unsigned char *q)
{
	/* 16 bytes to 32: low nibbles in the low lane, high nibbles in the high lane */
	__m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
	return _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

AVX2 float rl_dot8_q4_0_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const float *bx = a->bx;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	__m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
	size_t i = 0;
#define Q4_0_BLOCK(ACC, M)                                                                                   \
	do {                                                                                                 \
		__m256i s = _mm256_madd_epi16(                                                               \
			_mm256_maddubs_epi16(nibbles32(b + 2), _mm256_loadu_si256((const __m256i *)xi)), ones); \
		/* {d dx, d dx sum xi} */                                                                    \
		__m128 f = _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(rl_load_u16(b))), _mm_castpd_ps(_mm_load_sd((const double *)bx))); \
		ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_broadcastss_ps(f), ACC);                 \
		M = _mm_add_ps(M, f);                                                                        \
		b += Q4_0_BYTES, xi += QK, bx += 2, i += QK;                                                 \
	} while (0)
	while (i + 2 * QK <= n) {
		Q4_0_BLOCK(acc0, m0);
		Q4_0_BLOCK(acc1, m1);
	}
	if (i < n)
		Q4_0_BLOCK(acc0, m0);
#undef Q4_0_BLOCK
	__m128 m = _mm_add_ps(m0, m1);
	return hsum(_mm256_add_ps(acc0, acc1)) - 8.0f * _mm_cvtss_f32(_mm_movehdup_ps(m));
}

AVX2 float rl_dot8_q8_0_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const float *bx = a->bx;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	size_t i = 0;
	/* signed times signed: |q| unsigned, the sign moved onto xi (|q| <= 128, so no overflow) */
#define Q8_0_BLOCK(ACC)                                                                                      \
	do {                                                                                                 \
		__m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));                                    \
		__m256i s = _mm256_madd_epi16(                                                               \
			_mm256_maddubs_epi16(_mm256_abs_epi8(q),                                             \
					     _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xi), q)),  \
			ones);                                                                               \
		ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(_cvtsh_ss(rl_load_u16(b)) * bx[0]), ACC); \
		b += Q8_0_BYTES, xi += QK, bx += 2, i += QK;                                                 \
	} while (0)
	while (i + 2 * QK <= n) {
		Q8_0_BLOCK(acc0);
		Q8_0_BLOCK(acc1);
	}
	if (i < n)
		Q8_0_BLOCK(acc0);
#undef Q8_0_BLOCK
	return hsum(_mm256_add_ps(acc0, acc1));
}

/* q4_K: each 32 bytes of nibbles are two sub-blocks of 32, low nibbles then
 * high; madd with the sub-block's 6-bit scale times the x block's m (an int16
 * broadcast by a byte shuffle of the block's eight) applies both in integers,
 * and the 256's sums stay int32 until one conversion. */
AVX2 static inline __m256i q4_K_64(const unsigned char *q, const int8_t *xi, __m256i scs, __m256i pick_lo,
				   __m256i pick_hi)
{
	const __m256i m4 = _mm256_set1_epi8(15);
	__m256i raw = _mm256_loadu_si256((const __m256i *)q);
	__m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
	return _mm256_add_epi32(
		_mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xi)),
				  _mm256_shuffle_epi8(scs, pick_lo)),
		_mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xi + 32))),
				  _mm256_shuffle_epi8(scs, pick_hi)));
}

/* a byte shuffle broadcasting int16 k of each lane */
#define PICK16(k) _mm256_set1_epi16((short)(0x0100 + 0x0202 * (k)))

AVX2 float rl_dot8_q4_K_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const int16_t *xm = a->xm;
	const float *bx = a->bx, *xsum16 = a->xsum16;
	__m256 acc = _mm256_setzero_ps();
	for (size_t i = 0; i < n; i += QKK, b += Q4_K_BYTES, xi += QKK, xm += 8, bx++, xsum16 += 16) {
		uint32_t u0 = (uint32_t)rl_load_i32(b + 4), u1 = (uint32_t)rl_load_i32(b + 8), u2 = (uint32_t)rl_load_i32(b + 12);
		uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3f) | (uint64_t)((u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4) << 32;
		uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3f) | (uint64_t)(((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4)
								   << 32;
		__m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(rl_load_i32(b))); /* d, dmin */
		/* the mins' share, dmin * sum over the eight of min * (sum of x over its 32) */
		__m256 xs = _mm256_hadd_ps(_mm256_loadu_ps(xsum16), _mm256_loadu_ps(xsum16 + 8));
		xs = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(xs), 0xd8));
		__m256 mx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))), xs);
		acc = _mm256_fnmadd_ps(mx, _mm256_broadcastss_ps(_mm_movehdup_ps(dm)), acc);
		/* the eight scales times the eight m (at most 63 * 32), as int16 in both lanes */
		__m256i scs = _mm256_broadcastsi128_si256(_mm_mullo_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)),
									  _mm_loadu_si128((const __m128i *)xm)));
		const unsigned char *q = b + 16;
		__m256i t0 = q4_K_64(q, xi, scs, PICK16(0), PICK16(1));
		__m256i t1 = q4_K_64(q + 32, xi + 64, scs, PICK16(2), PICK16(3));
		t0 = _mm256_add_epi32(t0, q4_K_64(q + 64, xi + 128, scs, PICK16(4), PICK16(5)));
		t1 = _mm256_add_epi32(t1, q4_K_64(q + 96, xi + 192, scs, PICK16(6), PICK16(7)));
		acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(t0, t1)),
				      _mm256_broadcastss_ps(_mm_mul_ss(dm, _mm_load_ss(bx))), acc);
	}
	return hsum(acc);
}

/* q2_K: each 32 bytes hold 128 weights, 32s..32s+31 at bits 2s; a shift and a
 * mask give one x block's 32 weights, whose two sub-blocks of 16 fall in the
 * two lanes. The scales are laid out to match without crossing lanes: int16 k
 * of the low lane is sub-block 2k's 4-bit scale, of the high lane 2k + 1's,
 * both times m of x block k, so one byte shuffle per x block broadcasts what
 * madd applies; the 256's sums stay int32 until one conversion. */
AVX2 float rl_dot8_q2_K_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n)
{
	const unsigned char *b = row;
	const int8_t *xi = a->xi;
	const int16_t *xm = a->xm;
	const float *bx = a->bx, *xsum16 = a->xsum16;
	const __m256i m2 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi16(15);
	const __m256i odd = _mm256_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8);
	__m256 acc = _mm256_setzero_ps();
	for (size_t i = 0; i < n; i += QKK, b += Q2_K_BYTES, xi += QKK, xm += 8, bx++, xsum16 += 16) {
		__m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(rl_load_i32(b + 80))); /* d, dmin */
		/* the mins' share, dmin * sum over the sixteen of min * (sum of x over its 16) */
		__m256 mx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(u8x8(b), 4)), _mm256_loadu_ps(xsum16));
		mx = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(u8x8(b + 8), 4)), _mm256_loadu_ps(xsum16 + 8), mx);
		acc = _mm256_fnmadd_ps(mx, _mm256_broadcastss_ps(_mm_movehdup_ps(dm)), acc);
		/* the 16 bytes in both lanes as 32-bit words; the high lane's shifted by 8,
		 * each int16 then holds sub-block 2k's byte (low lane) or 2k + 1's (high) */
		__m256i scs = _mm256_and_si256(
			_mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b)), odd), m15);
		scs = _mm256_mullo_epi16(scs, _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xm)));
		const __m256i raw0 = _mm256_loadu_si256((const __m256i *)(b + 16));
		const __m256i raw1 = _mm256_loadu_si256((const __m256i *)(b + 48));
		/* x block 4C + S: weights 128 C + 32 S.. (chunk C at bits 2S) times their xi */
#define Q2_K_32(C, S)                                                                                        \
	_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw##C, 2 * S), m2),           \
					       _mm256_loadu_si256((const __m256i *)(xi + 128 * C + 32 * S))),     \
			  _mm256_shuffle_epi8(scs, PICK16(4 * C + S)))
		__m256i t0 = _mm256_add_epi32(Q2_K_32(0, 0), Q2_K_32(0, 1));
		__m256i t1 = _mm256_add_epi32(Q2_K_32(0, 2), Q2_K_32(0, 3));
		t0 = _mm256_add_epi32(t0, _mm256_add_epi32(Q2_K_32(1, 0), Q2_K_32(1, 1)));
		t1 = _mm256_add_epi32(t1, _mm256_add_epi32(Q2_K_32(1, 2), Q2_K_32(1, 3)));
#undef Q2_K_32
		acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(t0, t1)),
				      _mm256_broadcastss_ps(_mm_mul_ss(dm, _mm_load_ss(bx))), acc);
	}
	return hsum(acc);
}
#undef PICK16
#endif
