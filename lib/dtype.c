#include <string.h>

#include "dtype.h"

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

static void f16_to_float(const void *restrict src, float *restrict dst, size_t n)
{
	const uint16_t *s = src;
	for (size_t i = 0; i < n; i++)
		dst[i] = rl_f16_to_f32(s[i]);
}

static void f16_from_float(const float *restrict src, void *restrict dst, size_t n)
{
	uint16_t *d = dst;
	for (size_t i = 0; i < n; i++)
		d[i] = rl_f32_to_f16(src[i]);
}

static void bf16_to_float(const void *restrict src, float *restrict dst, size_t n)
{
	const uint16_t *s = src;
	for (size_t i = 0; i < n; i++)
		dst[i] = rl_bf16_to_f32(s[i]);
}

static void bf16_from_float(const float *restrict src, void *restrict dst, size_t n)
{
	uint16_t *d = dst;
	for (size_t i = 0; i < n; i++)
		d[i] = rl_f32_to_bf16(src[i]);
}

const rl_dtype_traits rl_dtypes[RL_NDTYPES] = {
	[RL_F32] = { "f32", 32, 1, 4, f32_copy, f32_from },
	[RL_F16] = { "f16", 16, 1, 2, f16_to_float, f16_from_float },
	[RL_BF16] = { "bf16", 16, 1, 2, bf16_to_float, bf16_from_float },
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
	if (ncols == 0 || ncols % tr->block)
		return 0;
	size_t bytes;
	if (rl_mul_size((size_t)(ncols / tr->block), tr->block_bytes, &bytes))
		return 0;
	return bytes;
}
