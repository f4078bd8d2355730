/* vmath.h: small AVX2 helpers shared by the kernels that need them (x86-64
 * only; callers check rl_cpu_avx2() first and keep a portable path). */
#ifndef RL_VMATH_H
#define RL_VMATH_H
#if defined(__x86_64__)
#include <immintrin.h>

/* e^x, 8 lanes: 2^n . p(r) with n = round(x / ln 2), r = x - n ln 2 in two
 * parts and p Cephes' degree-6 polynomial (about 1 ulp). x is first clamped to
 * [-87.3, 88]: lanes below give about 2^-126 rather than 0 (-inf too: mask
 * them), lanes above about 2^127 rather than inf. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256 rl_exp_avx2(__m256 x)
{
	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* the eight lanes of a, summed as ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7)) */
static inline __attribute__((always_inline, target("avx2,fma"))) float rl_lanes_sum_avx2(__m256 a)
{
	__m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	t = _mm_hadd_ps(t, t);
	return _mm_cvtss_f32(_mm_hadd_ps(t, t));
}

/* the largest of the eight lanes */
static inline __attribute__((always_inline, target("avx2,fma"))) float rl_lanes_max_avx2(__m256 a)
{
	__m128 t = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	t = _mm_max_ps(t, _mm_movehl_ps(t, t));
	return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
}
#endif
#endif
