/* qgemv.c: decode's matrix-vector product straight from packed weights.
 *
 * Group formats. A row's dot product with x is, group by group,
 * scale * sum(q x) + min * sum(x). What depends on x alone is made once per
 * vector and shared by every row (the vector's "preparation", in scratch):
 * sum(x) per group, and for the portable kernel a copy of x reordered to match
 * how q is packed (element i of a byte-aligned chunk of 32 sits in lane
 * i mod (8/bits) of byte i / (8/bits)). The AVX2 kernels take whole groups of
 * 32k weights at 2, 4 and 8 bits, and so, with f32 activations, do AVX-512
 * ones where the CPU has it (16 lanes: 1.4-1.7 times the AVX2 kernels' rate
 * on qdot); other groups (16-groups, a row's shorter last group, 3 bits) go
 * through the format's own unpack.
 *
 * ggml's block formats use their traits' row dots (dtype_gguf.c), given the
 * sums of x over each 16.
 *
 * 8-bit activations (RL_ACT_INT8, an option; f32 is the default and exact):
 * each block of 32 elements of x (from the row's start; the last may be
 * shorter) becomes dx * xi, xi = x / dx rounded to nearest even. For the group
 * formats, q4_0 and q8_0, dx = max|x| / 127 over the block, and the kernels
 * make one scaled sum per block. For q4_K and q2_K (act8_block 256 in their
 * traits) dx = D * m, one float D per block of 256 and an integer m in 1..32
 * per block of 32 (quantize_x8_256), so that their kernels sum integers over a
 * whole 256 (the sub-block scale times m is one int16 multiplier) and convert
 * to float once, as ggml's do with its q8_K: they had converted and scaled per
 * 32, and ran at 0.46-0.68 of ggml's speed. The m keep each 32's rounding
 * nearly as fine as its own max would: one scale per 256, as q8_K has, doubled
 * the KL that 8-bit activations cost a random q4_K/q2_K model (0.00039 to
 * 0.00085 nats per token); with the m it is 0.00041. The weights' q multiply
 * xi in integers; the offsets (a group's min, q4_K's and q2_K's mins) still
 * multiply the exact sums of x. The x86 kernels do this with maddubs and madd
 * as ggml's do. Whole 32-groups go four at a time (8-bit activations, and 2
 * bits with f32 ones), so that one header conversion and, for 8 bits, one
 * int-to-float conversion serve four groups. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "parallel.h"
#include "quant.h"

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef unsigned char v8u __attribute__((vector_size(8), aligned(1)));
typedef int v8i __attribute__((vector_size(32)));

enum { XB = 32 };   /* activations per 8-bit block */
enum { XM = 32 };   /* act8_block 256: m in 1..XM */

/* How the f32 preparation orders x for the kernel (see prepare) */
enum { XORDER_NATURAL, XORDER_PORTABLE, XORDER_AVX2_4, XORDER_AVX512_4 };

typedef struct qjob {
	const unsigned char *W;
	const float *X;      /* N vectors of IC, stride ldx */
	float *S;            /* each vector's preparation, stride sstride floats */
	float *Y;            /* N outputs of OC, stride ldy */
	int IC, bits, group, N, int8, xorder, act8_block;
	size_t ldx, ldy, sstride, row_bytes;
	rl_row_dot_fn dot;   /* ggml's formats */
	rl_row_dot8_fn dot8;
	void (*rows)(const struct qjob *, int64_t, int64_t);
} qjob;

/* One vector's preparation (pointers into its scratch). */
typedef struct {
	const float *x;      /* (IC) as given */
	const float *xp;     /* f32, group formats: (IC) x reordered per chunk, for the portable kernel */
	const float *xsum;   /* sums of x per group (group formats) or per 16 (ggml's) */
	const float *gx;     /* group formats: per group the pair {m, sum x}: m is dx (int8, 32-groups) or 1 */
	const float *dx;     /* int8: per block of 32, dx (group formats) or the pair {dx, dx * sum xi} (ggml's);
			      * act8_block 256: per block of 256, D */
	const int16_t *xm;   /* int8, act8_block 256: per block of 32, m (dx = D m) */
	const int8_t *xi;    /* int8: (IC) x / dx rounded, whole blocks in the order the kernel reads q */
	const int16_t *x16;  /* int8, 8-bit group formats: (IC) xi widened, natural order */
	int per, IC;         /* xi: element k*per+l of a whole block sits at l*(32/per)+k */
} qvec;

/* Offsets (in floats) of a preparation's parts, and its size. */
typedef struct {
	size_t xsum, gx, dx, xm, data, size;
} qlayout;

static qlayout layout(int IC)
{
	size_t n16 = (size_t)IC / 16 + 2, nb = (size_t)IC / XB + 2;
	qlayout l;
	l.xsum = 0;
	l.gx = l.xsum + n16;
	l.dx = l.gx + 2 * n16;
	l.xm = l.dx + 2 * nb; /* nb int16 */
	l.data = (l.xm + (nb + 1) / 2 + 15) / 16 * 16;
	/* f32: xp (IC floats); int8: xi (IC bytes), then x16 (IC int16) at a 64-byte boundary */
	l.size = (l.data + (size_t)IC + 16 + 15) / 16 * 16;
	return l;
}

size_t rl_qgemv_scratch(int IC, int N)
{
	return (size_t)N * layout(IC).size;
}

static inline qvec vec_of(const qjob *j, int n)
{
	const float *s = j->S + (size_t)n * j->sstride;
	qlayout l = layout(j->IC);
	const float *data = s + l.data;
	qvec v = { j->X + (size_t)n * j->ldx, data, s + l.xsum, s + l.gx, s + l.dx, (const int16_t *)(s + l.xm),
		   (const int8_t *)data, (const int16_t *)(data + ((size_t)j->IC / 4 + 16) / 16 * 16), 1, j->IC };
	if (j->int8 && j->group)
		v.per = j->bits == 2 ? 4 : j->bits == 4 ? 2 : 1;
	return v;
}

/* xi of element i, wherever the preparation put it */
static inline int xi_at(const qvec *v, int i)
{
	int b0 = i & ~(XB - 1);
	if (v->per > 1 && b0 + XB <= v->IC) {
		int e = i - b0;
		return v->xi[b0 + (e % v->per) * (XB / v->per) + e / v->per];
	}
	return v->xi[i];
}

/* Sums of x over each whole 16 (n16 of them), in a fixed order of operations
 * both builds below follow: the two 8-halves added elementwise, then halves
 * again down to one. */
static inline __attribute__((always_inline)) void sums16_body(const float *x, int n16, float *s16)
{
	for (int g = 0; g < n16; g++, x += 16) {
		float h[8], q[4];
		for (int k = 0; k < 8; k++)
			h[k] = x[k] + x[k + 8];
		for (int k = 0; k < 4; k++)
			q[k] = h[k] + h[k + 4];
		s16[g] = (q[0] + q[2]) + (q[1] + q[3]);
	}
}

static void sums16(const float *x, int n16, float *s16)
{
	sums16_body(x, n16, s16);
}

/* Rounds x to 8 bits per block of 32: xi in the kernel's order (per), dx per
 * block, or with pairs the pair {dx, dx * sum xi}; x16 (or NULL) xi widened in
 * natural order. In floats: id = 127 / max|x|, xi = rint(x * id) (|x * id| <=
 * 127 (1 + 2^-23)^2, so no clamp), dx = max|x| / 127. A block holding a
 * non-finite value gets dx NaN and xi 0, so the rows it meets come out NaN as
 * they would with f32 activations. */
static inline float block_scale(float amax, int bad, float *id)
{
	*id = amax > 0 ? 127.0f / amax : 0.0f;
	if (bad || !(*id <= 3.4028235e38f))
		*id = 0; /* non-finite, or a block so small (< 4e-37) it counts as zero */
	return bad ? NAN : amax / 127.0f;
}

/* max|x| over m elements; *bad set when one is not finite */
static inline float block_amax(const float *x, int m, int *bad)
{
	float amax = 0;
	for (int e = 0; e < m; e++) {
		float a = fabsf(x[e]);
		*bad |= !(a <= 3.4028235e38f);
		amax = a > amax ? a : amax;
	}
	return amax;
}

/* q = x * id rounded to nearest even (adding 1.5 * 2^23 leaves the integer in
 * the low bits); returns the sum of q */
static inline int block_round(const float *x, int m, float id, int8_t *q)
{
	int sum = 0;
	for (int e = 0; e < m; e++) {
		float r = (x[e] * id + 12582912.0f) - 12582912.0f;
		q[e] = (int8_t)(int)r;
		sum += q[e];
	}
	return sum;
}

static void quantize_block(const float *x, int m, int per, int8_t *xi, int16_t *x16, float *dx, int pairs)
{
	int bad = 0;
	float amax = block_amax(x, m, &bad), id, d = block_scale(amax, bad, &id);
	int8_t q[XB];
	int sum = block_round(x, m, id, q);
	if (m == XB && per > 1) {
		for (int e = 0; e < XB; e++)
			xi[(e % per) * (XB / per) + e / per] = q[e];
	} else {
		memcpy(xi, q, (size_t)m);
	}
	if (x16)
		for (int e = 0; e < m; e++)
			x16[e] = q[e];
	dx[0] = d;
	if (pairs)
		dx[1] = d * (float)sum;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static void sums16_avx2(const float *x, int n16, float *s16)
{
	sums16_body(x, n16, s16);
}

/* block_amax of a whole block, its 32 values loaded into v */
AVX2 static inline float block_amax_avx2(const float *x, __m256 v[4], int *bad)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), fmax = _mm256_set1_ps(3.4028235e38f);
	__m256 a[4];
	for (int k = 0; k < 4; k++) {
		v[k] = _mm256_loadu_ps(x + 8 * k);
		a[k] = _mm256_and_ps(v[k], absmask);
		*bad |= _mm256_movemask_ps(_mm256_cmp_ps(a[k], fmax, _CMP_LE_OQ)) != 0xff;
	}
	__m256 m8 = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
	__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
	m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
	return _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
}

/* block_round of a whole block (the same floats): q as 32-bit lanes, and the
 * bytes in natural order */
AVX2 static inline __m256i block_round_avx2(const __m256 v[4], float id, __m256i q[4])
{
	const __m256 vid = _mm256_set1_ps(id), magic = _mm256_set1_ps(12582912.0f);
	for (int k = 0; k < 4; k++)
		q[k] = _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(v[k], vid), magic), magic));
	/* the packs interleave 4-element pieces by lane */
	__m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
	return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* quantize_block for whole blocks, the same floats with AVX2 */
AVX2 static void quantize_block_avx2(const float *x, int per, int8_t *xi, int16_t *x16, float *dx, int pairs)
{
	__m256 v[4];
	int bad = 0;
	float amax = block_amax_avx2(x, v, &bad), id, d = block_scale(amax, bad, &id);
	__m256i q[4], b = block_round_avx2(v, id, q);
	if (x16) {
		_mm256_storeu_si256((__m256i *)x16, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b)));
		_mm256_storeu_si256((__m256i *)(x16 + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1)));
	}
	if (per == 2) { /* each lane's even bytes, then odd; then lanes' evens before odds */
		b = _mm256_shuffle_epi8(b, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6,
							    8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
		b = _mm256_permute4x64_epi64(b, 0xd8);
	} else if (per == 4) { /* each lane's bytes by e mod 4, then the four classes across lanes */
		b = _mm256_shuffle_epi8(b, _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12,
							    1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
		b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	}
	_mm256_storeu_si256((__m256i *)xi, b);
	dx[0] = d;
	if (pairs) {
		__m256i t = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
		__m128i h = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
		dx[1] = d * (float)_mm_cvtsi128_si32(h);
	}
}
#endif

/* The kernels in use (rl_qgemv_select): portable; AVX2; AVX2 and, for f32
 * activations on the group formats, AVX-512. Chosen by CPU when -1. */
enum { ISA_PORTABLE, ISA_AVX2, ISA_AVX512 };
static int isa = -1;

/* x rounded to 8 bits, block by block (see quantize_block) */
static void quantize_x8(const float *x, int IC, int per, int8_t *xi, int16_t *x16, float *dx, int pairs)
{
	for (int b0 = 0, b = 0; b0 < IC; b0 += XB, b++) {
		int m = IC - b0 < XB ? IC - b0 : XB;
		float *d = dx + (pairs ? 2 * b : b);
#if defined(__x86_64__)
		if (isa && m == XB) {
			quantize_block_avx2(x + b0, per, xi + b0, x16 ? x16 + b0 : NULL, d, pairs);
			continue;
		}
#endif
		quantize_block(x + b0, m, per, xi + b0, x16 ? x16 + b0 : NULL, d, pairs);
	}
}

/* x rounded to 8 bits for act8_block 256 (IC a multiple of 256), natural
 * order: per 256 one D, per block of 32 an integer m, x ~ D m xi. In floats,
 * with amax the 256's max|x| and a its block's: s = 32 / amax,
 * m = min(32, max(1, ceil(a * s))), xi = rint(x * (s * (127 / m))),
 * D = amax / 4064 (127 * 32). As m >= 32 a / amax (up to a relative 2^-24),
 * |xi| <= 127, and the block's step D m is under a / 127 + D: never finer than
 * its own max would give, and coarser by less than D. A 256 holding a
 * non-finite value gets D NaN and xi 0 (the rows it meets come out NaN); one
 * so small that s overflows (amax < 1e-37) counts as zero, xi 0.
 * This part: from the eight blocks' a, D and each block's m and 1 / step. */
static inline void scales_256(const float a[8], int bad, float *D, int16_t *xm, float id[8])
{
	float amax = 0;
	for (int b = 0; b < 8; b++)
		amax = a[b] > amax ? a[b] : amax;
	float s = amax > 0 ? (float)XM / amax : 0.0f;
	if (bad || !(s <= 3.4028235e38f))
		s = 0;
	*D = bad ? NAN : amax / (127.0f * XM);
	for (int b = 0; b < 8; b++) {
		float c = ceilf(a[b] * s);
		int m = c < 1 ? 1 : c > XM ? XM : (int)c;
		xm[b] = (int16_t)m;
		id[b] = s * (127.0f / (float)m);
	}
}

#if defined(__x86_64__)
/* quantize_x8_256, the same floats with AVX2 */
AVX2 static void quantize_x8_256_avx2(const float *x, int IC, int8_t *xi, float *D, int16_t *xm)
{
	for (int s0 = 0; s0 < IC; s0 += 256, x += 256, xi += 256, xm += 8) {
		__m256 v[8][4];
		float a[8], id[8];
		int bad = 0;
		for (int b = 0; b < 8; b++)
			a[b] = block_amax_avx2(x + XB * b, v[b], &bad);
		scales_256(a, bad, D + s0 / 256, xm, id);
		for (int b = 0; b < 8; b++) {
			__m256i q[4];
			_mm256_storeu_si256((__m256i *)(xi + XB * b), block_round_avx2(v[b], id[b], q));
		}
	}
}
#endif

static void quantize_x8_256(const float *x, int IC, int8_t *xi, float *D, int16_t *xm)
{
#if defined(__x86_64__)
	if (isa) {
		quantize_x8_256_avx2(x, IC, xi, D, xm);
		return;
	}
#endif
	for (int s0 = 0; s0 < IC; s0 += 256, x += 256, xi += 256, xm += 8) {
		float a[8], id[8];
		int bad = 0;
		for (int b = 0; b < 8; b++)
			a[b] = block_amax(x + XB * b, XB, &bad);
		scales_256(a, bad, D + s0 / 256, xm, id);
		for (int b = 0; b < 8; b++)
			block_round(x + XB * b, XB, id[b], xi + XB * b);
	}
}

/* The preparation of vector n for the job's format and activations. */
static void prepare(const qjob *j, int n)
{
	const float *x = j->X + (size_t)n * j->ldx;
	float *s = j->S + (size_t)n * j->sstride;
	qlayout l = layout(j->IC);
	int IC = j->IC, G = j->group;
	float *xsum = s + l.xsum, *gx = s + l.gx, *dx = s + l.dx, *data = s + l.data;
	/* sums of 16 into gx's room for a moment (it holds 2 (IC/16 + 2) floats) */
	float *s16 = G ? gx : xsum;
	int n16 = IC / 16;
#if defined(__x86_64__)
	if (isa)
		sums16_avx2(x, n16, s16);
	else
#endif
		sums16(x, n16, s16);
	if (!G) { /* ggml's formats: the sums of 16 */
		if (j->int8 && j->act8_block == 256)
			quantize_x8_256(x, IC, (int8_t *)data, dx, (int16_t *)(s + l.xm));
		else if (j->int8)
			quantize_x8(x, IC, 1, (int8_t *)data, NULL, dx, 1);
		return;
	}
	/* a group's sum: its sums of 16 in order, then any elements left */
	int ngroups = (IC + G - 1) / G, bits = j->bits;
	for (int g = 0; g < ngroups; g++) {
		int i0 = g * G, i1 = i0 + G < IC ? i0 + G : IC, k = i0 / 16;
		float t = 0;
		for (; 16 * k + 16 <= i1; k++)
			t += s16[k];
		for (int i = 16 * k; i < i1; i++)
			t += x[i];
		xsum[g] = t;
	}
	if (j->int8) {
		qvec v = vec_of(j, n);
		quantize_x8(x, IC, v.per, (int8_t *)data, bits == 8 ? (int16_t *)v.x16 : NULL, dx, 0);
	}
	for (int g = 0; g < ngroups; g++) {
		gx[2 * g] = j->int8 && G == XB ? dx[g] : 1.0f;
		gx[2 * g + 1] = xsum[g];
	}
	if (j->int8 || j->xorder == XORDER_NATURAL)
		return;
	/* x reordered per 32-element chunk for the kernel: the portable one reads
	 * lane l of byte k as element k*per + l; the AVX2 4-bit one reads vector v
	 * (of 4) lane i as element 8 (i mod 4) + 2v + i / 4, whose q it sees times
	 * 16^(nibble mod 4), so x comes scaled down by that (see CHUNK); the
	 * AVX-512 one reads vector v (of 2) lane i as element 8 (i mod 4) + 4v + i / 4,
	 * times 16^(i / 4) (see Q512) */
	int per = bits == 3 ? 1 : 8 / bits;
	for (int c0 = 0; c0 < IC; c0 += 32) {
		int m = IC - c0 < 32 ? IC - c0 : 32;
		if (m < 32 || per == 1) {
			memcpy(data + c0, x + c0, (size_t)m * sizeof(float));
			continue;
		}
		static const float down[4] = { 1.0f, 0x1p-4f, 0x1p-8f, 0x1p-12f };
		if (j->xorder == XORDER_AVX2_4) {
			for (int v = 0; v < 4; v++)
				for (int i = 0; i < 8; i++) {
					int nib = 2 * v + i / 4; /* the element's nibble in its 32-bit word */
					data[c0 + 8 * v + i] = x[c0 + 8 * (i % 4) + nib] * down[nib % 4];
				}
			continue;
		}
		if (j->xorder == XORDER_AVX512_4) { /* vector v (of 2) lane i: nibble 4v + i / 4 of word i mod 4 */
			for (int v = 0; v < 2; v++)
				for (int i = 0; i < 16; i++)
					data[c0 + 16 * v + i] = x[c0 + 8 * (i % 4) + 4 * v + i / 4] * down[i / 4];
			continue;
		}
		int bytes = 32 / per;
		for (int lane = 0; lane < per; lane++)
			for (int k = 0; k < bytes; k++)
				data[c0 + lane * bytes + k] = x[c0 + k * per + lane];
	}
}

/* ---- portable kernels ---- */

/* eight bytes to eight floats */
#define widen(b) __builtin_convertvector(__builtin_convertvector((b), v8i), v8f)

/* A group the chunk loops do not take: unpacked by the format, then a plain dot.
 * The unpacked weights include the min, whose share the caller adds separately. */
static float other_group(const qjob *j, const qvec *v, const unsigned char *p, int g0, int gi, int n, float mn)
{
	float w[256], s = 0;
	rl_group_unpack(p, j->bits, (size_t)n, w);
	for (int i = 0; i < n; i++)
		s += w[i] * v->x[g0 + i];
	return s - mn * v->xsum[gi];
}

static inline __attribute__((always_inline)) float row_dot(const qjob *j, const qvec *v, const unsigned char *p)
{
	int IC = j->IC, G = j->group, bits = j->bits;
	v8f acc = { 0 };
	float tail = 0, mins = 0;
	int fused = bits != 3 && G % 32 == 0;
	for (int g0 = 0, gi = 0; g0 < IC; g0 += G, gi++) {
		int n = IC - g0 < G ? IC - g0 : G;
		uint16_t s16 = (uint16_t)(p[0] | p[1] << 8), m16 = (uint16_t)(p[2] | p[3] << 8);
		float sc = rl_f16_to_f32(s16), mn = rl_f16_to_f32(m16);
		const unsigned char *q = p + 4;
		mins += mn * v->xsum[gi];
		if (fused && n == G) {
			const float *xp = v->xp + g0;
			v8f t = { 0 };
			for (int c = 0; c < n; c += 32, xp += 32) {
				if (bits == 4) {
					v8u b0, b1;
					memcpy(&b0, q, 8);
					memcpy(&b1, q + 8, 8);
					q += 16;
					t += widen(b0 & 15) * *(const v8f *)xp + widen(b1 & 15) * *(const v8f *)(xp + 8) +
					     widen(b0 >> 4) * *(const v8f *)(xp + 16) + widen(b1 >> 4) * *(const v8f *)(xp + 24);
				} else if (bits == 2) {
					v8u b;
					memcpy(&b, q, 8);
					q += 8;
					t += widen(b & 3) * *(const v8f *)xp + widen((b >> 2) & 3) * *(const v8f *)(xp + 8) +
					     widen((b >> 4) & 3) * *(const v8f *)(xp + 16) + widen(b >> 6) * *(const v8f *)(xp + 24);
				} else {
					v8u b0, b1, b2, b3;
					memcpy(&b0, q, 8);
					memcpy(&b1, q + 8, 8);
					memcpy(&b2, q + 16, 8);
					memcpy(&b3, q + 24, 8);
					q += 32;
					t += widen(b0) * *(const v8f *)xp + widen(b1) * *(const v8f *)(xp + 8) +
					     widen(b2) * *(const v8f *)(xp + 16) + widen(b3) * *(const v8f *)(xp + 24);
				}
			}
			acc += t * sc;
		} else {
			tail += other_group(j, v, p, g0, gi, n, mn);
		}
		p += rl_group_bytes(bits, (size_t)n);
	}
	float s = 0;
	for (int k = 0; k < 8; k++)
		s += acc[k];
	return s + mins + tail;
}

/* element i of a group's packed q (LSB-first, any width) */
static inline int q_at(const unsigned char *q, int i, int bits)
{
	int bit = i * bits;
	unsigned v = q[bit >> 3] >> (bit & 7);
	if ((bit & 7) + bits > 8)
		v |= (unsigned)q[(bit >> 3) + 1] << (8 - (bit & 7));
	return (int)(v & ((1u << bits) - 1));
}

/* One group with 8-bit activations: per block it meets, sum q xi in integers
 * times the block's dx; then scale and min. Returns the group's share. */
static float group_dot8(const qvec *v, const unsigned char *p, int bits, int g0, int gi, int n)
{
	float sc = rl_f16_to_f32(rl_load_u16(p)), mn = rl_f16_to_f32(rl_load_u16(p + 2)), s = 0;
	const unsigned char *q = p + 4;
	for (int i0 = g0; i0 < g0 + n;) {
		int i1 = (i0 / XB + 1) * XB;
		i1 = i1 < g0 + n ? i1 : g0 + n;
		int32_t t = 0;
		for (int i = i0; i < i1; i++)
			t += q_at(q, i - g0, bits) * xi_at(v, i);
		s += v->dx[i0 / XB] * (float)t;
		i0 = i1;
	}
	return sc * s + mn * v->xsum[gi];
}

static void rows_generic(const qjob *j, int64_t r0, int64_t r1)
{
	for (int64_t r = r0; r < r1; r++)
		for (int n = 0; n < j->N; n++) {
			qvec v = vec_of(j, n);
			const unsigned char *p = j->W + (size_t)r * j->row_bytes;
			float y = 0;
			if (!j->int8) {
				y = row_dot(j, &v, p);
			} else {
				for (int g0 = 0, gi = 0; g0 < j->IC; g0 += j->group, gi++) {
					int m = j->IC - g0 < j->group ? j->IC - g0 : j->group;
					y += group_dot8(&v, p, j->bits, g0, gi, m);
					p += rl_group_bytes(j->bits, (size_t)m);
				}
			}
			j->Y[(size_t)n * j->ldy + r] = y;
		}
}

/* ggml's formats, through the traits' row dots: rows in tiles of 8, each
 * meeting the vectors 16 at a time, whose preparations are looked up once
 * per tile (a row's dot is short: 4096 weights take about 100 ns). */
static void rows_block(const qjob *j, int64_t r0, int64_t r1)
{
	enum { RT = 8, NB = 16 };
	for (int64_t t0 = r0; t0 < r1; t0 += RT) {
		int64_t t1 = t0 + RT < r1 ? t0 + RT : r1;
		for (int n0 = 0; n0 < j->N; n0 += NB) {
			int nb = j->N - n0 < NB ? j->N - n0 : NB;
			rl_act8 a[NB];
			const float *x[NB];
			for (int k = 0; k < nb; k++) {
				qvec v = vec_of(j, n0 + k);
				a[k] = (rl_act8){ v.xi, v.dx, v.xm, v.xsum };
				x[k] = v.x;
			}
			for (int64_t r = t0; r < t1; r++) {
				const unsigned char *row = j->W + (size_t)r * j->row_bytes;
				float *y = j->Y + (size_t)n0 * j->ldy + r;
				for (int k = 0; k < nb; k++, y += j->ldy)
					*y = j->int8 ? j->dot8(row, &a[k], (size_t)j->IC)
						     : j->dot(row, x[k], a[k].xsum16, (size_t)j->IC);
			}
		}
	}
}

#if defined(__x86_64__)
AVX2 static inline float hsum(__m256 a)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* A group's {scale, min} (f16 at p) times its pair {m, sum x}: {m scale, min sum x} */
AVX2 static inline __m128 group_factors(const unsigned char *p, const float *pair)
{
	return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(rl_load_i32(p))),
			  _mm_castpd_ps(_mm_load_sd((const double *)pair)));
}

/* ---- f32 activations: 32 weights of a chunk times x (natural order) into
 * four sums. 4 bits: the chunk's 16 bytes (four 32-bit words of 8 nibbles,
 * element i at bits 4i) in both lanes, and the same words shifted right by 16;
 * vector v masks nibble 2v + i / 4 of lane i's word where it lies (vectors 0 and
 * 1 from the words, 2 and 3 from the shifted ones), so lane i holds element
 * 8 (i mod 4) + 2v + i / 4 times 1, 16, 256 or 4096, converted as it is, without
 * a shift of its own; the preparation orders x to match and scales it down by
 * that power of two, which leaves every product as it was (bar an x below
 * 2^-114, which the scaling makes subnormal). 2 bits: 16 elements at bits 2i,
 * and vpermilps reads a lane's low 2 bits as an index into {0, 1, 2, 3}: the
 * float q without a mask or a conversion. ---- */
#define CHUNK(BITS, Q, XC, T0, T1, T2, T3)                                                             \
	do {                                                                                           \
		__m256 f0, f1, f2, f3;                                                                 \
		if (BITS == 4) {                                                                       \
			__m256i w = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(Q)));  \
			__m256i wh = _mm256_srli_epi32(w, 16);                                         \
			f0 = _mm256_cvtepi32_ps(_mm256_and_si256(w, m4a));                             \
			f1 = _mm256_cvtepi32_ps(_mm256_and_si256(w, m4b));                             \
			f2 = _mm256_cvtepi32_ps(_mm256_and_si256(wh, m4a));                            \
			f3 = _mm256_cvtepi32_ps(_mm256_and_si256(wh, m4b));                            \
		} else if (BITS == 2) {                                                                \
			__m256i w0 = _mm256_set1_epi32(rl_load_i32(Q));                                \
			__m256i w1 = _mm256_set1_epi32(rl_load_i32(Q + 4));                            \
			f0 = _mm256_permutevar_ps(ramp, _mm256_srlv_epi32(w0, sh2));                   \
			f1 = _mm256_permutevar_ps(ramp, _mm256_srlv_epi32(w0, sh2h));                  \
			f2 = _mm256_permutevar_ps(ramp, _mm256_srlv_epi32(w1, sh2));                   \
			f3 = _mm256_permutevar_ps(ramp, _mm256_srlv_epi32(w1, sh2h));                  \
		} else {                                                                               \
			f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(Q)))); \
			f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(Q + 8)))); \
			f2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(Q + 16)))); \
			f3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(Q + 24)))); \
		}                                                                                      \
		T0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(XC), T0);                                     \
		T1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(XC + 8), T1);                                 \
		T2 = _mm256_fmadd_ps(f2, _mm256_loadu_ps(XC + 16), T2);                                \
		T3 = _mm256_fmadd_ps(f3, _mm256_loadu_ps(XC + 24), T3);                                \
	} while (0)

#define CONSTS                                                                                         \
	const __m256i m4a = _mm256_setr_epi32(0xf, 0xf, 0xf, 0xf, 0xf0, 0xf0, 0xf0, 0xf0);              \
	const __m256i m4b = _mm256_setr_epi32(0xf00, 0xf00, 0xf00, 0xf00, 0xf000, 0xf000, 0xf000, 0xf000); \
	const __m256i sh2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);                              \
	const __m256i sh2h = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);                        \
	const __m256 ramp = _mm256_setr_ps(0, 1, 2, 3, 0, 1, 2, 3);                                    \
	(void)m4a, (void)m4b, (void)sh2, (void)sh2h, (void)ramp

/* One whole group of G weights (f32): its sums, scaled, into ACC; its min's
 * share into M (lane 1). A 32-group keeps two sums (the kernel runs two groups
 * side by side), longer groups four, so no sum waits on the one before. */
#define GROUP_F32(BITS, P, GI, ACC, M)                                                                 \
	do {                                                                                           \
		const unsigned char *q_ = (P) + 4;                                                     \
		const float *xc_ = (BITS == 4 ? v.xp : v.x) + (size_t)(GI) * G;                        \
		__m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps(), t;                          \
		if (G == 32) {                                                                         \
			CHUNK(BITS, q_, xc_, t0, t1, t0, t1);                                          \
			__m128 f_ = group_factors(P, v.gx + 2 * (size_t)(GI));                         \
			__m256 s_ = _mm256_broadcastss_ps(f_);                                         \
			ACC = _mm256_fmadd_ps(t0, s_, ACC);                                            \
			ACC##b = _mm256_fmadd_ps(t1, s_, ACC##b);                                      \
			M = _mm_add_ps(M, f_);                                                         \
			break;                                                                         \
		} else {                                                                               \
			__m256 t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();                     \
			for (int c = 0; c < G; c += 32, q_ += 32 * BITS / 8, xc_ += 32)                 \
				CHUNK(BITS, q_, xc_, t0, t1, t2, t3);                                  \
			t = _mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3));               \
		}                                                                                      \
		__m128 f_ = group_factors(P, v.gx + 2 * (size_t)(GI));                                 \
		ACC = _mm256_fmadd_ps(t, _mm256_broadcastss_ps(f_), ACC);                              \
		M = _mm_add_ps(M, f_);                                                                 \
	} while (0)

/* Four groups' {scale, min} (f16 headers at p, p + gb, p + 2gb, p + 3gb) times
 * their four pairs (side by side at pairs): {m0 scale0, min0 sum x0, m1 scale1, ...}.
 * For 2- and 4-bit 32-groups (gb a constant 12 or 20) the headers come from two
 * wide loads and one or three shuffles instead of a load and three inserts (two
 * operations each). qdot, medians of alternating rounds: q2g32 3-5% faster
 * with f32 activations and 3-4% with 8-bit ones, q4g32 with 8-bit ones 1.5%
 * (rows of 4096) to 15% (rows of 1024, noisy) */
AVX2 static inline __m256 group_factors4(const unsigned char *p, size_t gb, const float *pairs)
{
	__m128i h;
	if (gb == 12) { /* 2-bit 32-groups: headers at 0, 12, 24, 36, dwords 0 and 3 of two 16-byte loads */
		h = _mm_castps_si128(_mm_shuffle_ps(_mm_loadu_ps((const float *)p), _mm_loadu_ps((const float *)(p + 24)),
						    _MM_SHUFFLE(3, 0, 3, 0)));
	} else if (gb == 20) { /* 4-bit: at 0, 20, 40, 60, dwords 0 and 5 of two 32-byte loads */
		__m256i a = _mm256_loadu_si256((const __m256i *)p), b = _mm256_loadu_si256((const __m256i *)(p + 40));
		const __m256i ia = _mm256_setr_epi32(0, 5, 0, 0, 0, 0, 0, 0), ib = _mm256_setr_epi32(0, 0, 0, 5, 0, 0, 0, 0);
		h = _mm256_castsi256_si128(_mm256_blend_epi32(_mm256_permutevar8x32_epi32(a, ia),
							      _mm256_permutevar8x32_epi32(b, ib), 0x0c));
	} else {
		h = _mm_setr_epi32(rl_load_i32(p), rl_load_i32(p + gb), rl_load_i32(p + 2 * gb), rl_load_i32(p + 3 * gb));
	}
	return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(pairs));
}

/* The sum of a's odd lanes, in lane 1 of the result (where ROW_END reads the
 * mins' share) */
AVX2 static inline __m128 odd_sum(__m256 a)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	return _mm_add_ps(h, _mm_movehl_ps(h, h));
}

/* Four 32-groups of 2 bits (f32): each group's two sums added, the four headers
 * converted by one vcvtph2ps against their pairs {1, sum x} (the pairs lie
 * side by side), each group's scale taken from that vector by a permute; the
 * mins' shares (odd lanes) add into MACC. */
#define GROUPS4_F32(BITS, P, GI, ACC, MACC)                                                            \
	do {                                                                                           \
		const float *xc_ = (BITS == 4 ? v.xp : v.x) + (size_t)(GI) * 32;                       \
		__m256 u_[4];                                                                          \
		for (int g_ = 0; g_ < 4; g_++) {                                                       \
			__m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();                     \
			CHUNK(BITS, (P) + g_ * gb + 4, xc_ + 32 * g_, t0, t1, t0, t1);                  \
			u_[g_] = _mm256_add_ps(t0, t1);                                                \
		}                                                                                      \
		__m256 f_ = group_factors4(P, 4 + 4 * BITS, v.gx + 2 * (size_t)(GI));                 \
		MACC = _mm256_add_ps(MACC, f_);                                                        \
		ACC = _mm256_fmadd_ps(u_[0], _mm256_permutevar8x32_ps(f_, _mm256_set1_epi32(0)), ACC); \
		ACC##b = _mm256_fmadd_ps(u_[1], _mm256_permutevar8x32_ps(f_, _mm256_set1_epi32(2)), ACC##b); \
		ACC = _mm256_fmadd_ps(u_[2], _mm256_permutevar8x32_ps(f_, _mm256_set1_epi32(4)), ACC); \
		ACC##b = _mm256_fmadd_ps(u_[3], _mm256_permutevar8x32_ps(f_, _mm256_set1_epi32(6)), ACC##b); \
	} while (0)

/* The tail of a row after its whole groups (the kernels take whole groups of
 * 32k weights only) through the portable code, and the row's sum. */
#define ROW_END(ACC0, ACC1, M0, M1, TAIL)                                                              \
	do {                                                                                           \
		__m128 m_ = _mm_add_ps(M0, M1);                                                        \
		j->Y[(size_t)vn * j->ldy + r] = hsum(_mm256_add_ps(ACC0, ACC1)) +                      \
						_mm_cvtss_f32(_mm_movehdup_ps(m_)) + (TAIL);           \
	} while (0)

/* Runs ROW (a statement on r, v and vn) over rows r0..r1 and every vector;
 * in decode (one vector) its preparation is looked up once for every row. */
#define FOR_ROWS(ROW)                                                                                  \
	do {                                                                                           \
		if (j->N == 1) {                                                                       \
			const qvec v = vec_of(j, 0);                                                   \
			const int vn = 0;                                                              \
			for (int64_t r = r0; r < r1; r++)                                              \
				ROW;                                                                   \
			break;                                                                         \
		}                                                                                      \
		for (int64_t r = r0; r < r1; r++)                                                      \
			for (int vn = 0; vn < j->N; vn++) {                                            \
				const qvec v = vec_of(j, vn);                                          \
				ROW;                                                                   \
			}                                                                              \
	} while (0)

/* The whole groups from gi on, two at a time (sums into acc0/m0 and acc1/m1)
 * and a last one, through GROUP; p follows */
#define REST_OF_GROUPS(GROUP, BITS)                                                                    \
	do {                                                                                           \
		for (; gi + 2 <= full; gi += 2, p += 2 * gb) {                                         \
			GROUP(BITS, p, gi, acc0, m0);                                                  \
			GROUP(BITS, p + gb, gi + 1, acc1, m1);                                         \
		}                                                                                      \
		if (gi < full) {                                                                       \
			GROUP(BITS, p, gi, acc0, m0);                                                  \
			p += gb;                                                                       \
		}                                                                                      \
	} while (0)

/* A row's shorter last group, if it has one (p at its header), f32
 * activations: through the portable code */
static inline float last_group_f32(const qjob *j, const qvec *v, const unsigned char *p, int full)
{
	int G = j->group, IC = j->IC;
	if (full * G >= IC)
		return 0;
	float mn = rl_f16_to_f32(rl_load_u16(p + 2));
	return mn * v->xsum[full] + other_group(j, v, p, full * G, full, IC - full * G, mn);
}

/* One row r of the product with vector v (vn its index), f32 activations */
#define ROW_F32(BITS)                                                                                  \
	do {                                                                                           \
		const unsigned char *p = j->W + (size_t)r * j->row_bytes;                              \
		__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                         \
		__m256 acc0b = _mm256_setzero_ps(), acc1b = _mm256_setzero_ps();                       \
		__m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();                                   \
		int gi = 0;                                                                            \
		if (BITS == 2 && G == 32) { /* (4 bits gained nothing measurable) */                    \
			__m256 macc = _mm256_setzero_ps();                                             \
			for (; gi + 4 <= full; gi += 4, p += 4 * gb)                                   \
				GROUPS4_F32(BITS, p, gi, acc1, macc);                                  \
			m1 = _mm_add_ps(m1, odd_sum(macc));                                            \
		}                                                                                      \
		REST_OF_GROUPS(GROUP_F32, BITS);                                                       \
		float tail = last_group_f32(j, &v, p, full);                                           \
		ROW_END(_mm256_add_ps(acc0, acc0b), _mm256_add_ps(acc1, acc1b), m0, m1, tail);         \
	} while (0)

#define KERNEL_F32(BITS)                                                                               \
	AVX2 static void rows_avx2_##BITS(const qjob *j, int64_t r0, int64_t r1)                       \
	{                                                                                              \
		const int IC = j->IC, G = j->group, full = IC / G;                                     \
		const size_t gb = 4 + (size_t)G * BITS / 8;                                            \
		CONSTS;                                                                                \
		FOR_ROWS(ROW_F32(BITS));                                                               \
	}
KERNEL_F32(2)
KERNEL_F32(4)
KERNEL_F32(8)

/* ---- f32 activations with AVX-512 (where the CPU has it): the same
 * arithmetic on 16 lanes, a chunk of 32 weights as two vectors of floats q.
 * 2 bits: one 32-bit word (16 elements) in every lane, shifted right by 2i in
 * lane i, vpermilps reading its low 2 bits as above: natural order. 8 bits: 16
 * bytes widened: natural order. 4 bits: the chunk's 16 bytes in all four
 * 128-bit lanes, and the same shifted right by 16; lane i masks nibble i / 4
 * of word i mod 4 where it lies, so vector v (0 unshifted, 1 shifted) holds
 * element 8 (i mod 4) + 4v + i / 4 times 16^(i / 4), and the preparation
 * orders x and scales it down to match (XORDER_AVX512_4). Per 32 weights of
 * 4 bits that is 7 operations before the header's share, against 13 with
 * AVX2. ---- */
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

#define Q512(BITS, Q, F0, F1)                                                                          \
	do {                                                                                           \
		if (BITS == 4) {                                                                       \
			__m512i w_ = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(Q)));    \
			F0 = _mm512_cvtepi32_ps(_mm512_and_si512(w_, m4));                             \
			F1 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(w_, 16), m4));      \
		} else if (BITS == 2) {                                                                \
			F0 = _mm512_permutevar_ps(ramp, _mm512_srlv_epi32(_mm512_set1_epi32(rl_load_i32(Q)), sh2)); \
			F1 = _mm512_permutevar_ps(ramp,                                                \
						  _mm512_srlv_epi32(_mm512_set1_epi32(rl_load_i32((Q) + 4)), sh2)); \
		} else {                                                                               \
			F0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(Q)))); \
			F1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((Q) + 16)))); \
		}                                                                                      \
	} while (0)

/* A chunk's 32 products q x added into T0 and T1 */
#define CHUNK512(BITS, Q, XC, T0, T1)                                                                  \
	do {                                                                                           \
		__m512 f0_, f1_;                                                                       \
		Q512(BITS, Q, f0_, f1_);                                                               \
		T0 = _mm512_fmadd_ps(f0_, _mm512_loadu_ps(XC), T0);                                    \
		T1 = _mm512_fmadd_ps(f1_, _mm512_loadu_ps((XC) + 16), T1);                             \
	} while (0)

/* A 32-group's 32 products q x summed into one vector */
#define SUM32_512(BITS, Q, XC)                                                                         \
	({                                                                                             \
		__m512 f0_, f1_;                                                                       \
		Q512(BITS, Q, f0_, f1_);                                                               \
		_mm512_fmadd_ps(f1_, _mm512_loadu_ps((XC) + 16), _mm512_mul_ps(f0_, _mm512_loadu_ps(XC))); \
	})

/* One whole group (f32), as GROUP_F32: longer groups (G a multiple of 64)
 * keep four sums, two chunks a step */
#define GROUP512(BITS, P, GI, ACC, M)                                                                  \
	do {                                                                                           \
		const unsigned char *q_ = (P) + 4;                                                     \
		const float *xc_ = (BITS == 4 ? v.xp : v.x) + (size_t)(GI) * G;                        \
		__m512 t_;                                                                             \
		if (G == 32) {                                                                         \
			t_ = SUM32_512(BITS, q_, xc_);                                                 \
		} else {                                                                               \
			__m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;                    \
			for (int c = 0; c < G; c += 64, q_ += 64 * BITS / 8, xc_ += 64) {               \
				CHUNK512(BITS, q_, xc_, t0, t1);                                       \
				CHUNK512(BITS, q_ + 4 * BITS, xc_ + 32, t2, t3);                       \
			}                                                                              \
			t_ = _mm512_add_ps(_mm512_add_ps(t0, t1), _mm512_add_ps(t2, t3));              \
		}                                                                                      \
		__m128 f_ = group_factors(P, v.gx + 2 * (size_t)(GI));                                 \
		ACC = _mm512_fmadd_ps(t_, _mm512_broadcastss_ps(f_), ACC);                             \
		M = _mm_add_ps(M, f_);                                                                 \
	} while (0)

/* Four 32-groups, as GROUPS4_F32: the four headers by one conversion, each
 * group's scale taken from it by a permute */
#define GROUPS4_512(BITS, P, GI, ACC, MACC)                                                            \
	do {                                                                                           \
		const float *xc_ = (BITS == 4 ? v.xp : v.x) + (size_t)(GI) * 32;                       \
		__m512 u0_ = SUM32_512(BITS, (P) + 4, xc_);                                            \
		__m512 u1_ = SUM32_512(BITS, (P) + gb + 4, xc_ + 32);                                  \
		__m512 u2_ = SUM32_512(BITS, (P) + 2 * gb + 4, xc_ + 64);                              \
		__m512 u3_ = SUM32_512(BITS, (P) + 3 * gb + 4, xc_ + 96);                              \
		__m256 f_ = group_factors4(P, 4 + 4 * BITS, v.gx + 2 * (size_t)(GI));                 \
		__m512 fz_ = _mm512_castps256_ps512(f_);                                               \
		MACC = _mm256_add_ps(MACC, f_);                                                        \
		ACC = _mm512_fmadd_ps(u0_, _mm512_permutexvar_ps(_mm512_set1_epi32(0), fz_), ACC);     \
		ACC##b = _mm512_fmadd_ps(u1_, _mm512_permutexvar_ps(_mm512_set1_epi32(2), fz_), ACC##b); \
		ACC = _mm512_fmadd_ps(u2_, _mm512_permutexvar_ps(_mm512_set1_epi32(4), fz_), ACC);     \
		ACC##b = _mm512_fmadd_ps(u3_, _mm512_permutexvar_ps(_mm512_set1_epi32(6), fz_), ACC##b); \
	} while (0)

/* a's two halves added */
AVX512 static inline __m256 halves(__m512 a)
{
	return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* One row r of the product with vector v (vn its index), f32 activations:
 * 32-groups four at a time, then the rest as ROW_F32 */
#define ROW512(BITS)                                                                                   \
	do {                                                                                           \
		const unsigned char *p = j->W + (size_t)r * j->row_bytes;                              \
		__m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc1b = acc0;                          \
		__m128 m0 = _mm_setzero_ps(), m1 = m0;                                                 \
		int gi = 0;                                                                            \
		if (G == 32) {                                                                         \
			__m256 macc = _mm256_setzero_ps();                                             \
			for (; gi + 4 <= full; gi += 4, p += 4 * gb)                                   \
				GROUPS4_512(BITS, p, gi, acc1, macc);                                  \
			m1 = _mm_add_ps(m1, odd_sum(macc));                                            \
		}                                                                                      \
		REST_OF_GROUPS(GROUP512, BITS);                                                        \
		float tail = last_group_f32(j, &v, p, full);                                           \
		ROW_END(halves(acc0), halves(_mm512_add_ps(acc1, acc1b)), m0, m1, tail);               \
	} while (0)

#define KERNEL_512(BITS)                                                                               \
	AVX512 static void rows_avx512_##BITS(const qjob *j, int64_t r0, int64_t r1)                   \
	{                                                                                              \
		const int IC = j->IC, G = j->group, full = IC / G;                                     \
		const size_t gb = 4 + (size_t)G * BITS / 8;                                            \
		const __m512i m4 = _mm512_setr_epi32(0xf, 0xf, 0xf, 0xf, 0xf0, 0xf0, 0xf0, 0xf0, 0xf00, 0xf00, \
						     0xf00, 0xf00, 0xf000, 0xf000, 0xf000, 0xf000);       \
		const __m512i sh2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); \
		const __m512 ramp = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);     \
		(void)m4, (void)sh2, (void)ramp;                                                       \
		FOR_ROWS(ROW512(BITS));                                                                \
	}
KERNEL_512(2)
KERNEL_512(4)
KERNEL_512(8)

/* ---- 8-bit activations: one x block's 32 weights times its xi, as eight
 * 32-bit sums. 4 bits: the chunk's 16 bytes in both lanes, low nibbles in the
 * low lane (elements 2k), high in the high lane (2k+1); 2 bits: its 8 bytes in
 * each 64-bit lane l shifted by 2l (elements 4k+l); the preparation ordered xi
 * to match. 8 bits: bytes widened to 16 bits against x16. ---- */
/* A 2- or 4-bit chunk's 16 sums of two byte products (int16, at most
 * 2 x 15 x 127 = 3810 in size, so the two rounds of hadd, four of them, stay
 * within 15240; test_quant's qgemv_int8_extreme_sums reaches that) */
#define PAIRS8(BITS, Q, XI)                                                                            \
	_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srlv_epi64(BITS == 4 ? _mm256_broadcastsi128_si256(  \
									  _mm_loadu_si128((const __m128i *)(Q))) \
								  : _mm256_set1_epi64x((long long)rl_load_u64(Q)), \
							  sh8),                                        \
					      mask8),                                                  \
			     _mm256_loadu_si256((const __m256i *)(XI)))

#define CHUNK8(BITS, Q, XI, X16, OUT)                                                                  \
	do {                                                                                           \
		if (BITS == 8) {                                                                       \
			__m256i a_ = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(Q)));     \
			__m256i b_ = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)((Q) + 16))); \
			OUT = _mm256_add_epi32(                                                        \
				_mm256_madd_epi16(a_, _mm256_loadu_si256((const __m256i *)(X16))),      \
				_mm256_madd_epi16(b_, _mm256_loadu_si256((const __m256i *)((X16) + 16)))); \
		} else {                                                                               \
			OUT = _mm256_madd_epi16(PAIRS8(BITS, Q, XI), ones);                            \
		}                                                                                      \
	} while (0)

/* A 32-group: dx folds into its scale ({dx scale, min sum x}) */
#define GROUP32_8(BITS, P, GI, ACC, M)                                                                 \
	do {                                                                                           \
		__m256i s_;                                                                            \
		CHUNK8(BITS, (P) + 4, v.xi + 32 * (size_t)(GI), v.x16 + 32 * (size_t)(GI), s_);       \
		__m128 f_ = group_factors(P, v.gx + 2 * (size_t)(GI));                                 \
		ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s_), _mm256_broadcastss_ps(f_), ACC);         \
		M = _mm_add_ps(M, f_);                                                                 \
	} while (0)

/* Four 32-groups at once: their sums each reduced to two by two rounds of
 * hadd (h = {A, B, C, D} per 128-bit lane, A the first group's half-sums):
 * for 2 and 4 bits, of vpmaddubsw's 16-bit pair sums, then one vpmaddwd for
 * the four groups (three fewer than one a group: 4-5% faster on qdot); for
 * 8 bits, of the 32-bit sums. Then one conversion and one fma against
 * {dx scale} of the four, the four headers converted by one vcvtph2ps against
 * their four pairs {dx, sum x} (the pairs lie side by side), whose odd lanes,
 * min sum x, add into MACC. Per 32 weights that leaves the integer work and a
 * quarter of the rest. */
#define GROUPS4_8(BITS, P, GI, ACC, MACC)                                                              \
	do {                                                                                           \
		__m256i s0_, s1_, s2_, s3_, h_;                                                        \
		const size_t e_ = 32 * (size_t)(GI);                                                   \
		if (BITS == 8) {                                                                       \
			CHUNK8(BITS, (P) + 4, v.xi + e_, v.x16 + e_, s0_);                             \
			CHUNK8(BITS, (P) + gb + 4, v.xi + e_ + 32, v.x16 + e_ + 32, s1_);              \
			CHUNK8(BITS, (P) + 2 * gb + 4, v.xi + e_ + 64, v.x16 + e_ + 64, s2_);          \
			CHUNK8(BITS, (P) + 3 * gb + 4, v.xi + e_ + 96, v.x16 + e_ + 96, s3_);          \
			h_ = _mm256_hadd_epi32(_mm256_hadd_epi32(s0_, s1_), _mm256_hadd_epi32(s2_, s3_)); \
		} else {                                                                               \
			s0_ = PAIRS8(BITS, (P) + 4, v.xi + e_);                                        \
			s1_ = PAIRS8(BITS, (P) + gb + 4, v.xi + e_ + 32);                              \
			s2_ = PAIRS8(BITS, (P) + 2 * gb + 4, v.xi + e_ + 64);                          \
			s3_ = PAIRS8(BITS, (P) + 3 * gb + 4, v.xi + e_ + 96);                          \
			h_ = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(s0_, s1_),          \
								 _mm256_hadd_epi16(s2_, s3_)), ones);  \
		}                                                                                      \
		__m256 f_ = group_factors4(P, 4 + 4 * BITS, v.gx + 2 * (size_t)(GI));                 \
		MACC = _mm256_add_ps(MACC, f_);                                                        \
		ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h_), _mm256_permutevar8x32_ps(f_, even4), ACC); \
	} while (0)

/* A group of 32k, k >= 2: each block's sum times its dx, then the scale */
#define GROUP_8(BITS, P, GI, ACC, M)                                                                   \
	do {                                                                                           \
		const unsigned char *q_ = (P) + 4;                                                     \
		size_t e_ = (size_t)(GI) * G;                                                          \
		__m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();                             \
		for (int c = 0; c < G; c += 64, q_ += 64 * BITS / 8, e_ += 64) {                       \
			__m256i s0_, s1_;                                                              \
			CHUNK8(BITS, q_, v.xi + e_, v.x16 + e_, s0_);                                  \
			CHUNK8(BITS, q_ + 32 * BITS / 8, v.xi + e_ + 32, v.x16 + e_ + 32, s1_);        \
			t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0_), _mm256_broadcast_ss(v.dx + e_ / 32), t0); \
			t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1_), _mm256_broadcast_ss(v.dx + e_ / 32 + 1), t1); \
		}                                                                                      \
		__m128 f_ = group_factors(P, v.gx + 2 * (size_t)(GI));                                 \
		ACC = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), _mm256_broadcastss_ps(f_), ACC);          \
		M = _mm_add_ps(M, f_);                                                                 \
	} while (0)

/* One row r of the product with vector v (vn its index) */
#define ROW8(BITS)                                                                                     \
	do {                                                                                           \
		const unsigned char *p = j->W + (size_t)r * j->row_bytes;                              \
		__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                         \
		__m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();                                   \
		int gi = 0;                                                                            \
		if (G == 32) {                                                                         \
			__m256 acc4 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();                 \
			for (; gi + 4 <= full; gi += 4, p += 4 * gb)                                   \
				GROUPS4_8(BITS, p, gi, acc4, macc);                                    \
			acc1 = _mm256_add_ps(acc1, acc4);                                              \
			m1 = _mm_add_ps(m1, odd_sum(macc));                                            \
			REST_OF_GROUPS(GROUP32_8, BITS);                                               \
		} else {                                                                               \
			REST_OF_GROUPS(GROUP_8, BITS);                                                 \
		}                                                                                      \
		float tail = full * G < IC ? group_dot8(&v, p, BITS, full * G, full, IC - full * G) : 0; \
		ROW_END(acc0, acc1, m0, m1, tail);                                                     \
	} while (0)

#define KERNEL_INT8(BITS)                                                                              \
	AVX2 static void rows8_avx2_##BITS(const qjob *j, int64_t r0, int64_t r1)                      \
	{                                                                                              \
		const int IC = j->IC, G = j->group, full = IC / G;                                     \
		const size_t gb = 4 + (size_t)G * BITS / 8;                                            \
		const __m256i ones = _mm256_set1_epi16(1);                                             \
		const __m256i sh8 = BITS == 4 ? _mm256_setr_epi64x(0, 0, 4, 4) : _mm256_setr_epi64x(0, 2, 4, 6); \
		const __m256i mask8 = _mm256_set1_epi8(BITS == 4 ? 15 : 3);                            \
		const __m256i even4 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);                       \
		(void)ones, (void)sh8, (void)mask8, (void)even4;                                       \
		FOR_ROWS(ROW8(BITS));                                                                  \
	}
KERNEL_INT8(2)
KERNEL_INT8(4)
KERNEL_INT8(8)
#endif

static void part(void *arg, int64_t r0, int64_t r1)
{
	const qjob *j = arg;
	j->rows(j, r0, r1);
}

int rl_qgemv_select(int kernels)
{
	if (kernels < 0)
		kernels = rl_cpu_avx512() ? ISA_AVX512 : rl_cpu_avx2() ? ISA_AVX2 : ISA_PORTABLE;
	else if ((kernels >= ISA_AVX2 && !rl_cpu_avx2()) || (kernels >= ISA_AVX512 && !rl_cpu_avx512()))
		return -1;
	isa = kernels;
	return 0;
}

int rl_qgemm_rows_act(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y,
		      size_t ldy, float *scratch, rl_act act)
{
	const rl_dtype_traits *tr = &rl_dtypes[dt];
	if (isa < 0) /* stored once (portable off x86): see pick_rows in parallel.c */
		rl_qgemv_select(-1);
	if (!rl_dtype_fused(dt)) {
		rl_seterr("rl_qgemv: %s has no fused kernel", tr->name);
		return -1;
	}
	size_t rb = rl_row_bytes(dt, (uint64_t)IC);
	if (rb == 0) {
		rl_seterr("rl_qgemv: a row of %d does not fit %s's blocks of %zu", IC, tr->name, tr->block);
		return -1;
	}
	qjob j = { W, X, scratch, Y, IC, tr->qbits, tr->group, N, act == RL_ACT_INT8, XORDER_PORTABLE, tr->act8_block,
		   ldx, ldy, layout(IC).size, rb, tr->dot, tr->dot8, rows_generic };
	if (!tr->group) {
		j.rows = rows_block;
#if defined(__x86_64__)
		if (isa && tr->dot_avx2) {
			j.dot = tr->dot_avx2;
			j.dot8 = tr->dot8_avx2;
		}
#endif
	}
#if defined(__x86_64__)
	/* the AVX2 kernels take whole 32k-groups of 2, 4 and 8 bits; 3 bits and 16-groups stay portable */
	else if (isa && tr->group % 32 == 0 && tr->qbits != 3) {
		int b = tr->qbits;
		j.xorder = XORDER_NATURAL;
		if (j.int8) {
			j.rows = b == 2 ? rows8_avx2_2 : b == 4 ? rows8_avx2_4 : rows8_avx2_8;
		} else if (isa == ISA_AVX512) {
			j.rows = b == 2 ? rows_avx512_2 : b == 4 ? rows_avx512_4 : rows_avx512_8;
			if (b == 4)
				j.xorder = XORDER_AVX512_4;
		} else {
			j.rows = b == 2 ? rows_avx2_2 : b == 4 ? rows_avx2_4 : rows_avx2_8;
			if (b == 4)
				j.xorder = XORDER_AVX2_4;
		}
	}
#endif
	for (int n = 0; n < N; n++)
		prepare(&j, n);
	/* parts of at least 64 KiB of rows, up to eight a thread: a thread that
	 * finishes its share early takes the rest of a slower one's */
	int64_t grain = 16;
	while (grain * (int64_t)rb < (64 << 10) && grain < OC)
		grain *= 2;
	rl_parallel_for_pieces(OC, grain, 8, part, &j);
	return 0;
}

int rl_qgemm_rows(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y,
		  size_t ldy, float *scratch)
{
	return rl_qgemm_rows_act(dt, OC, IC, W, N, X, ldx, Y, ldy, scratch, RL_ACT_F32);
}

int rl_qgemv(rl_dtype dt, int OC, int IC, const void *W, const float *x, float *y, float *scratch)
{
	return rl_qgemm_rows(dt, OC, IC, W, 1, x, (size_t)IC, y, (size_t)OC, scratch);
}

void rl_qgemv_ref(rl_dtype dt, int OC, int IC, const void *W, const float *x, float *y, float *row)
{
	size_t rb = rl_row_bytes(dt, (uint64_t)IC);
	for (int r = 0; r < OC; r++) {
		rl_dtypes[dt].to_float((const char *)W + (size_t)r * rb, row, (size_t)IC);
		double s = 0;
		for (int i = 0; i < IC; i++)
			s += (double)row[i] * x[i];
		y[r] = (float)s;
	}
}

/* ---- batch-invariant products: each row dequantized once, then dotted with every vector ---- */

typedef struct {
	rl_dtype dt;
	const unsigned char *W;
	const float *X;
	float *Y;
	int IC, N;
	size_t ldx, ldy, rb;
	int failed;
} dqjob;

static void dq_part(void *arg, int64_t r0, int64_t r1)
{
	dqjob *j = arg;
	float *row = malloc((size_t)j->IC * sizeof(float));
	if (!row) {
		__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	for (int64_t r = r0; r < r1; r++) {
		rl_dtypes[j->dt].to_float(j->W + (size_t)r * j->rb, row, (size_t)j->IC);
		for (int n = 0; n < j->N; n++)
			rl_dot_rows_f32(row, j->X + (size_t)n * j->ldx, j->Y + (size_t)n * j->ldy + r, 0, 1, j->IC);
	}
	free(row);
}

int rl_dqgemm_rows(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y, size_t ldy)
{
	dqjob j = { dt, W, X, Y, IC, N, ldx, ldy, rl_row_bytes(dt, (uint64_t)IC), 0 };
	int64_t grain = 16;
	while (grain * (int64_t)j.rb < (64 << 10) && grain < OC)
		grain *= 2;
	rl_parallel_for(OC, grain, dq_part, &j);
	if (j.failed) {
		rl_seterr("out of memory for a row of %d weights", IC);
		return -1;
	}
	return 0;
}
