/* qgemv.c: decode's matrix-vector product straight from packed group formats.
 *
 * A row's dot product with x is, group by group, scale * sum(q x) + min * sum(x).
 * sum(x) per group and a copy of x reordered to match how q is packed (element
 * i of a byte-aligned chunk sits in lane i mod (8/bits) of byte i / (8/bits))
 * are made once per vector and shared by every row, so the inner loop only
 * widens q to floats and multiplies. Chunks are 32 weights (16 bytes at 4 bits,
 * 8 at 2, 32 at 8); groups that are not whole chunks (16-groups, a row's shorter
 * last group, and 3 bits, which does not align to bytes) go through the
 * format's own unpack. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "parallel.h"
#include "quant.h"

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef unsigned char v8u __attribute__((vector_size(8), aligned(1)));
typedef int v8i __attribute__((vector_size(32)));

typedef struct {
	const unsigned char *W;
	const float *X;      /* N vectors of IC, stride ldx */
	const float *S;      /* per vector, stride sstride: x reordered per chunk (IC), then sum of x per group */
	float *Y;            /* N outputs of OC, stride ldy */
	int IC, bits, group, N;
	size_t ldx, ldy, sstride, row_bytes;
	void (*rows)(const void *, int64_t, int64_t);
} qjob;

typedef struct {
	const float *x, *xp, *xsum;
} qvec;

static inline qvec vec_of(const qjob *j, int n)
{
	const float *s = j->S + (size_t)n * j->sstride;
	return (qvec){ j->X + (size_t)n * j->ldx, s, s + j->IC };
}

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

static inline __attribute__((always_inline)) void rows_body(const qjob *j, int64_t r0, int64_t r1)
{
	for (int64_t r = r0; r < r1; r++)
		for (int n = 0; n < j->N; n++) {
			qvec v = vec_of(j, n);
			j->Y[(size_t)n * j->ldy + r] = row_dot(j, &v, j->W + (size_t)r * j->row_bytes);
		}
}

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* 8 bytes at p (already masked to q values) to 8 floats */
AVX2 static inline __m256 u8x8(__m128i v)
{
	return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}

/* 32 weights of a chunk times x (natural order), into t0/t1. BITS is a constant. */
#define CHUNK(BITS)                                                                                \
	do {                                                                                       \
		__m256 f0, f1, f2, f3;                                                             \
		if (BITS == 4) {                                                                   \
			/* each 32-bit word holds 8 nibbles: element i at bits 4i, LSB-first */     \
			__m256i w0 = _mm256_set1_epi32(rl_load_i32(q));                           \
			__m256i w1 = _mm256_set1_epi32(rl_load_i32(q + 4));                     \
			__m256i w2 = _mm256_set1_epi32(rl_load_i32(q + 8));                     \
			__m256i w3 = _mm256_set1_epi32(rl_load_i32(q + 12));                    \
			f0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w0, sh4), m4)); \
			f1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w1, sh4), m4)); \
			f2 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w2, sh4), m4)); \
			f3 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w3, sh4), m4)); \
			q += 16;                                                                   \
		} else if (BITS == 2) {                                                            \
			/* each 32-bit word holds 16 elements at bits 2i */                         \
			__m256i w0 = _mm256_set1_epi32(rl_load_i32(q));                           \
			__m256i w1 = _mm256_set1_epi32(rl_load_i32(q + 4));                     \
			f0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w0, sh2), m2)); \
			f1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w0, sh2h), m2)); \
			f2 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w1, sh2), m2)); \
			f3 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(w1, sh2h), m2)); \
			q += 8;                                                                    \
		} else {                                                                           \
			f0 = u8x8(_mm_loadl_epi64((const __m128i *)q));                            \
			f1 = u8x8(_mm_loadl_epi64((const __m128i *)(q + 8)));                      \
			f2 = u8x8(_mm_loadl_epi64((const __m128i *)(q + 16)));                     \
			f3 = u8x8(_mm_loadl_epi64((const __m128i *)(q + 24)));                     \
			q += 32;                                                                   \
		}                                                                                  \
		t0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xc), t0);                                 \
		t1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xc + 8), t1);                             \
		t0 = _mm256_fmadd_ps(f2, _mm256_loadu_ps(xc + 16), t0);                            \
		t1 = _mm256_fmadd_ps(f3, _mm256_loadu_ps(xc + 24), t1);                            \
		xc += 32;                                                                          \
	} while (0)

/* The explicit AVX2 kernels, one per bit width: the same arithmetic as row_dot,
 * whole groups in a loop of constant stride, the rest through other_group. */
#define KERNEL(BITS)                                                                               \
	AVX2 static void rows_avx2_##BITS(const void *arg, int64_t r0, int64_t r1)                 \
	{                                                                                          \
		const qjob *j = arg;                                                               \
		const int IC = j->IC, G = j->group, full = IC / G;                                 \
		const size_t gb = 4 + (size_t)G * BITS / 8;                                        \
		const __m256i sh4 = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);                \
		const __m256i sh2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);                  \
		const __m256i sh2h = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);            \
		(void)sh2h;                                                                        \
		const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3);               \
		(void)sh4;                                                                         \
		(void)sh2;                                                                         \
		(void)m4;                                                                          \
		(void)m2;                                                                          \
		for (int64_t r = r0; r < r1; r++)                                                  \
		for (int vn = 0; vn < j->N; vn++) {                                                \
			const qvec v = vec_of(j, vn);                                              \
			const unsigned char *p = j->W + (size_t)r * j->row_bytes;                  \
			__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();             \
			float rest = 0;                                                            \
			const float *xc = v.x;                                                     \
			for (int gi = 0; gi < full; gi++, p += gb) {                               \
				float sc = _cvtsh_ss(rl_load_u16(p));                        \
				rest += _cvtsh_ss(rl_load_u16(p + 2)) * v.xsum[gi];        \
				const unsigned char *q = p + 4;                                    \
				__m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();         \
				for (int c = 0; c < G; c += 32)                                    \
					CHUNK(BITS);                                               \
				__m256 s = _mm256_set1_ps(sc);                                     \
				acc0 = _mm256_fmadd_ps(t0, s, acc0);                               \
				acc1 = _mm256_fmadd_ps(t1, s, acc1);                               \
			}                                                                          \
			if (full * G < IC) {                                                       \
				float mn = _cvtsh_ss(rl_load_u16(p + 2));                  \
				rest += mn * v.xsum[full] + other_group(j, &v, p, full * G, full, IC - full * G, mn); \
			}                                                                          \
			__m256 a = _mm256_add_ps(acc0, acc1);                                      \
			__m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); \
			h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                    \
			h = _mm_add_ss(h, _mm_movehdup_ps(h));                                     \
			j->Y[(size_t)vn * j->ldy + r] = _mm_cvtss_f32(h) + rest;                   \
		}                                                                                  \
	}
KERNEL(2)
KERNEL(4)
KERNEL(8)
#endif

static void rows_generic(const void *arg, int64_t r0, int64_t r1)
{
	rows_body(arg, r0, r1);
}

static void part(void *arg, int64_t r0, int64_t r1)
{
	const qjob *j = arg;
	j->rows(arg, r0, r1);
}

static int use_avx2 = -1;

void rl_qgemv_select(int avx2)
{
	use_avx2 = avx2;
}

size_t rl_qgemv_scratch(int IC, int N)
{
	return (size_t)N * ((size_t)IC + (size_t)IC / 16 + 1);
}

/* ---- ggml's block formats: the traits' row dot, given each vector's sums of 16 ---- */

typedef struct {
	rl_row_dot_fn dot;
	const unsigned char *W;
	const float *X, *S; /* N vectors (stride ldx) and their sums of 16 (stride sstride) */
	float *Y;
	int IC, N;
	size_t ldx, ldy, sstride, row_bytes;
} bjob;

static void block_rows(void *arg, int64_t r0, int64_t r1)
{
	const bjob *j = arg;
	for (int64_t r = r0; r < r1; r++)
		for (int n = 0; n < j->N; n++)
			j->Y[(size_t)n * j->ldy + r] = j->dot(j->W + (size_t)r * j->row_bytes, j->X + (size_t)n * j->ldx,
							     j->S + (size_t)n * j->sstride, (size_t)j->IC);
}

static int block_gemm_rows(const rl_dtype_traits *tr, int OC, int IC, const void *W, int N, const float *X,
			   size_t ldx, float *Y, size_t ldy, float *scratch)
{
	bjob j = { tr->dot, W, X, scratch, Y, IC, N, ldx, ldy, (size_t)IC + (size_t)IC / 16 + 1,
		   rl_row_bytes((rl_dtype)(tr - rl_dtypes), (uint64_t)IC) };
#if defined(__x86_64__)
	if (use_avx2 && tr->dot_avx2)
		j.dot = tr->dot_avx2;
#endif
	for (int n = 0; n < N; n++) {
		const float *x = X + (size_t)n * ldx;
		float *xsum = scratch + (size_t)n * j.sstride;
		for (int g = 0; g < IC / 16; g++) {
			float s = 0;
			for (int i = 16 * g; i < 16 * g + 16; i++)
				s += x[i];
			xsum[g] = s;
		}
	}
	int64_t grain = 16;
	while (grain * (int64_t)j.row_bytes < (64 << 10) && grain < OC)
		grain *= 2;
	rl_parallel_for(OC, grain, block_rows, &j);
	return 0;
}

int rl_qgemm_rows(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y,
		  size_t ldy, float *scratch)
{
	const rl_dtype_traits *tr = &rl_dtypes[dt];
	if (use_avx2 < 0) {
		use_avx2 = 0;
#if defined(__x86_64__)
		use_avx2 = rl_cpu_avx2();
#endif
	}
	if (!tr->group && tr->dot) {
		if (rl_row_bytes(dt, (uint64_t)IC) == 0) {
			rl_seterr("rl_qgemv: a row of %d does not fit %s's blocks of %zu", IC, tr->name, tr->block);
			return -1;
		}
		return block_gemm_rows(tr, OC, IC, W, N, X, ldx, Y, ldy, scratch);
	}
	if (!tr->group) {
		rl_seterr("rl_qgemv: %s has no fused kernel", tr->name);
		return -1;
	}
	int G = tr->group, bits = tr->qbits, ngroups = (IC + G - 1) / G;
	size_t sstride = (size_t)IC + (size_t)IC / 16 + 1;
	/* x reordered per 32-element chunk: lane l of byte k holds element k*per + l */
	int per = bits == 3 ? 1 : 8 / bits;
	for (int n = 0; n < N; n++) {
		const float *x = X + (size_t)n * ldx;
		float *xp = scratch + (size_t)n * sstride, *xsum = xp + IC;
		for (int c0 = 0; c0 < IC; c0 += 32) {
			int m = IC - c0 < 32 ? IC - c0 : 32;
			if (m < 32 || per == 1) {
				memcpy(xp + c0, x + c0, (size_t)m * sizeof(float));
				continue;
			}
			int bytes = 32 / per;
			for (int l = 0; l < per; l++)
				for (int k = 0; k < bytes; k++)
					xp[c0 + l * bytes + k] = x[c0 + k * per + l];
		}
		for (int g = 0; g < ngroups; g++) {
			float s = 0;
			for (int i = g * G; i < IC && i < (g + 1) * G; i++)
				s += x[i];
			xsum[g] = s;
		}
	}
	qjob j = { W, X, scratch, Y, IC, bits, G, N, ldx, ldy, sstride, rl_row_bytes(dt, (uint64_t)IC), rows_generic };
#if defined(__x86_64__)
	/* the AVX2 kernels take whole 32-chunks of 2, 4 and 8 bits; 3 bits and 16-groups stay portable */
	if (use_avx2 && G % 32 == 0 && bits != 3)
		j.rows = bits == 2 ? rows_avx2_2 : bits == 4 ? rows_avx2_4 : rows_avx2_8;
#endif
	int64_t grain = 16;
	while (grain * (int64_t)j.row_bytes < (64 << 10) && grain < OC)
		grain *= 2;
	rl_parallel_for(OC, grain, part, &j);
	return 0;
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
