#include <math.h>
#include <string.h>

#include "dtype.h"
#include "parallel.h"

uint16_t rl_f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t exp = (x >> 23) & 0xff;
	uint32_t man = x & 0x7fffff;
	if (exp == 0xff) /* inf or NaN (keep a quiet NaN) */
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
	int e = (int)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) {
		/* subnormal half (or zero): shift the full mantissa, round to nearest even */
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		int shift = 14 - e;
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
		half++; /* may carry into the exponent, which is right */
	return (uint16_t)half;
}

float rl_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;
	uint32_t x;
	if (exp == 0) {
		if (man == 0) {
			x = sign;
		} else { /* subnormal: normalise */
			int e = -1;
			do {
				man <<= 1;
				e++;
			} while (!(man & 0x400));
			x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
		}
	} else if (exp == 31) {
		x = sign | 0x7f800000 | (man << 13);
	} else {
		x = sign | ((exp - 15 + 127) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &x, 4);
	return f;
}

uint16_t rl_f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

float rl_bf16_to_f32(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}

static void f32_copy(const void *restrict src, float *restrict dst, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
}

static void f32_from(const float *restrict src, void *restrict dst, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
}

/* src may be unaligned (a tensor in a stream message or a file mapping) */
static void f16_to_float(const void *restrict src, float *restrict dst, size_t n)
{
	const unsigned char *s = src;
	for (size_t i = 0; i < n; i++)
		dst[i] = rl_f16_to_f32(rl_load_u16(s + 2 * i));
}

static void f16_from_float(const float *restrict src, void *restrict dst, size_t n)
{
	unsigned char *d = dst;
	for (size_t i = 0; i < n; i++) {
		uint16_t h = rl_f32_to_f16(src[i]);
		memcpy(d + 2 * i, &h, 2);
	}
}

static void bf16_to_float(const void *restrict src, float *restrict dst, size_t n)
{
	const unsigned char *s = src;
	for (size_t i = 0; i < n; i++)
		dst[i] = rl_bf16_to_f32(rl_load_u16(s + 2 * i));
}

static void bf16_from_float(const float *restrict src, void *restrict dst, size_t n)
{
	unsigned char *d = dst;
	for (size_t i = 0; i < n; i++) {
		uint16_t h = rl_f32_to_bf16(src[i]);
		memcpy(d + 2 * i, &h, 2);
	}
}

/* ---- group formats ---- */

size_t rl_group_bytes(int bits, size_t n)
{
	return 4 + (n * (size_t)bits + 7) / 8;
}

void rl_group_pack(void *p, int bits, size_t n, uint16_t scale16, uint16_t min16, const uint8_t *q)
{
	unsigned char *b = p;
	b[0] = (unsigned char)(scale16 & 0xff);
	b[1] = (unsigned char)(scale16 >> 8);
	b[2] = (unsigned char)(min16 & 0xff);
	b[3] = (unsigned char)(min16 >> 8);
	unsigned char *d = b + 4;
	memset(d, 0, (n * (size_t)bits + 7) / 8);
	size_t bit = 0;
	for (size_t i = 0; i < n; i++, bit += (size_t)bits) {
		unsigned v = q[i];
		/* LSB-first: element i holds bits [i*b, i*b+b) of the byte string */
		d[bit / 8] |= (unsigned char)(v << (bit % 8));
		if (bit % 8 + (size_t)bits > 8)
			d[bit / 8 + 1] |= (unsigned char)(v >> (8 - bit % 8));
	}
}

void rl_group_unpack(const void *p, int bits, size_t n, float *w)
{
	const unsigned char *b = p;
	float scale = rl_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
	float min = rl_f16_to_f32((uint16_t)(b[2] | b[3] << 8));
	const unsigned char *d = b + 4;
	unsigned mask = (1u << bits) - 1;
	size_t bit = 0;
	for (size_t i = 0; i < n; i++, bit += (size_t)bits) {
		unsigned v = d[bit / 8] >> (bit % 8);
		if (bit % 8 + (size_t)bits > 8)
			v |= (unsigned)d[bit / 8 + 1] << (8 - bit % 8);
		float sq = scale * (float)(v & mask); /* a separate statement: no contraction into an fma */
		w[i] = sq + min;
	}
}

void rl_group_rtn(const float *w, size_t n, int bits, uint16_t *scale16, uint16_t *min16, uint8_t *q)
{
	float lo = w[0], hi = w[0];
	for (size_t i = 1; i < n; i++) {
		lo = w[i] < lo ? w[i] : lo;
		hi = w[i] > hi ? w[i] : hi;
	}
	int nmax = (1 << bits) - 1;
	*min16 = rl_f32_to_f16(lo);
	*scale16 = rl_f32_to_f16((hi - lo) / (float)nmax);
	float mn = rl_f16_to_f32(*min16), sc = rl_f16_to_f32(*scale16);
	for (size_t i = 0; i < n; i++) {
		float v = sc > 0 ? rintf((w[i] - mn) / sc) : 0.0f;
		q[i] = (uint8_t)(v < 0 ? 0 : v > (float)nmax ? nmax : v);
	}
	if (!(sc > 0))
		*scale16 = 0;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Whole groups of 2, 4 or 8 bits, G a multiple of 32, with AVX2: the same
 * scale*q + min, a multiply then an add (no fma), so the floats are identical
 * to rl_group_unpack's. Returns the elements done. */
__attribute__((target("avx2,f16c"))) static size_t groups_avx2(int bits, int g, const unsigned char *p, float *dst,
								size_t n)
{
	const __m256i sh4 = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
	const __m256i sh2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i sh2h = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);
	const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3);
	size_t gb = 4 + (size_t)g * (size_t)bits / 8, done = 0;
	for (; done + (size_t)g <= n; done += (size_t)g, p += gb) {
		__m256 sc = _mm256_set1_ps(_cvtsh_ss((uint16_t)(p[0] | p[1] << 8)));
		__m256 mn = _mm256_set1_ps(_cvtsh_ss((uint16_t)(p[2] | p[3] << 8)));
		const unsigned char *q = p + 4;
		float *d = dst + done;
		for (int c = 0; c < g; c += 8, d += 8) {
			__m256i v;
			if (bits == 4) {
				v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(rl_load_i32(q)), sh4), m4);
				q += 4;
			} else if (bits == 2) {
				__m256i w = _mm256_set1_epi32(rl_load_i32(q));
				v = _mm256_and_si256(_mm256_srlv_epi32(w, (c & 8) ? sh2h : sh2), m2);
				if (c & 8)
					q += 4;
			} else {
				v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q));
				q += 8;
			}
			__m256 prod = _mm256_mul_ps(sc, _mm256_cvtepi32_ps(v));
			_mm256_storeu_ps(d, _mm256_add_ps(prod, mn));
		}
	}
	return done;
}
#endif

static void group_to_float(int bits, int g, const void *restrict src, float *restrict dst, size_t n)
{
	const unsigned char *p = src;
	size_t start = 0;
#if defined(__x86_64__)
	static int avx2 = -1;
	if (avx2 < 0)
		avx2 = rl_cpu_avx2();
	if (avx2 && bits != 3 && g % 32 == 0) {
		start = groups_avx2(bits, g, p, dst, n);
		p += start / (size_t)g * (4 + (size_t)g * (size_t)bits / 8);
	}
#endif
	for (size_t i = start; i < n; i += (size_t)g) {
		size_t m = n - i < (size_t)g ? n - i : (size_t)g;
		rl_group_unpack(p, bits, m, dst + i);
		p += rl_group_bytes(bits, m);
	}
}

static void group_from_float(int bits, int g, const float *restrict src, void *restrict dst, size_t n)
{
	unsigned char *p = dst;
	uint8_t q[256];
	for (size_t i = 0; i < n; i += (size_t)g) {
		size_t m = n - i < (size_t)g ? n - i : (size_t)g;
		uint16_t s16, m16;
		rl_group_rtn(src + i, m, bits, &s16, &m16, q);
		rl_group_pack(p, bits, m, s16, m16, q);
		p += rl_group_bytes(bits, m);
	}
}

#define GROUP_FUNCS(b, g)                                                                          \
	static void q##b##g##g##_to_float(const void *restrict s, float *restrict d, size_t n)     \
	{                                                                                          \
		group_to_float(b, g, s, d, n);                                                     \
	}                                                                                          \
	static void q##b##g##g##_from_float(const float *restrict s, void *restrict d, size_t n)   \
	{                                                                                          \
		group_from_float(b, g, s, d, n);                                                   \
	}
RL_GROUP_FORMATS(GROUP_FUNCS)

#define GROUP_TRAITS(b, g)                                                                         \
	[RL_Q##b##G##g] = { "q" #b "g" #g, (32.0 + g * b) / g, g, 4 + g * b / 8,                   \
			    q##b##g##g##_to_float, q##b##g##g##_from_float, b, g, NULL, NULL },

/* ggml's block formats: bits per weight as ggml-common.h states them */
#if defined(__x86_64__)
#define GGUF_TRAITS(E, name, bpw, block, bytes, bits, act8)                                        \
	[RL_##E] = { #name, bpw, block, bytes, rl_dequantize_row_##name, rl_quantize_row_##name, bits, 0, \
		     rl_dot_##name, rl_dot_##name##_avx2, rl_dot8_##name, rl_dot8_##name##_avx2, act8 },
#else
#define GGUF_TRAITS(E, name, bpw, block, bytes, bits, act8)                                        \
	[RL_##E] = { #name, bpw, block, bytes, rl_dequantize_row_##name, rl_quantize_row_##name, bits, 0, \
		     rl_dot_##name, NULL, rl_dot8_##name, NULL, act8 },
#endif

const rl_dtype_traits rl_dtypes[RL_NDTYPES] = {
	[RL_F32] = { "f32", 32, 1, 4, f32_copy, f32_from, 0, 0, NULL, NULL },
	[RL_F16] = { "f16", 16, 1, 2, f16_to_float, f16_from_float, 0, 0, NULL, NULL },
	[RL_BF16] = { "bf16", 16, 1, 2, bf16_to_float, bf16_from_float, 0, 0, NULL, NULL },
	RL_GROUP_FORMATS(GROUP_TRAITS)
	GGUF_TRAITS(Q4_0, q4_0, 4.5, 32, 18, 4, 32)
	GGUF_TRAITS(Q8_0, q8_0, 8.5, 32, 34, 8, 32)
	GGUF_TRAITS(Q4_K, q4_K, 4.5, 256, 144, 4, 256)
	GGUF_TRAITS(Q2_K, q2_K, 2.625, 256, 84, 2, 256)
};

int rl_dtype_from_name(const char *name, size_t len)
{
	for (int t = 0; t < RL_NDTYPES; t++)
		if (strlen(rl_dtypes[t].name) == len && memcmp(rl_dtypes[t].name, name, len) == 0)
			return t;
	return -1;
}

size_t rl_row_bytes(rl_dtype t, uint64_t ncols)
{
	const rl_dtype_traits *tr = &rl_dtypes[t];
	if (tr->group) {
		uint64_t full = ncols / (uint64_t)tr->group, tail = ncols % (uint64_t)tr->group;
		if (ncols == 0 || ncols > ((uint64_t)1 << 40))
			return 0;
		return (size_t)full * tr->block_bytes + (tail ? rl_group_bytes(tr->qbits, (size_t)tail) : 0);
	}
	if (ncols == 0 || ncols % tr->block)
		return 0;
	size_t bytes;
	if (rl_mul_size((size_t)(ncols / tr->block), tr->block_bytes, &bytes))
		return 0;
	return bytes;
}
