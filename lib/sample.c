/* sample.c: random streams, top-k and the sampler (see sample.h). */
#include <math.h>
#include <stdlib.h>

#include "parallel.h"
#include "sample.h"

uint64_t rl_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rl_rng_seed(rl_rng *r, uint64_t seed, uint64_t id)
{
	uint64_t x = seed;
	uint64_t h = rl_splitmix64(&x) ^ (id * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
	for (int i = 0; i < 4; i++)
		r->s[i] = rl_splitmix64(&h);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rl_rng_next(rl_rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double rl_rng_uniform(rl_rng *r) { return (double)(rl_rng_next(r) >> 11) * 0x1.0p-53; }

/* a before b in the order: larger value first, then lower id */
static inline int before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

/* min-heap on that order: the root is the weakest kept */
static void sift_down(int *ids, float *vals, int n, int i)
{
	for (;;) {
		int l = 2 * i + 1, r = l + 1, w = i;
		if (l < n && before(vals[w], ids[w], vals[l], ids[l]))
			w = l;
		if (r < n && before(vals[w], ids[w], vals[r], ids[r]))
			w = r;
		if (w == i)
			return;
		int ti = ids[i];
		float tv = vals[i];
		ids[i] = ids[w];
		vals[i] = vals[w];
		ids[w] = ti;
		vals[w] = tv;
		i = w;
	}
}

/* the old way, without scratch: a heap of the k best, then sorted */
static void topk_heap(const float *z, int V, int k, int *ids, float *vals)
{
	for (int i = 0; i < k; i++) {
		ids[i] = i;
		vals[i] = z[i];
	}
	for (int i = k / 2 - 1; i >= 0; i--)
		sift_down(ids, vals, k, i);
	for (int i = k; i < V; i++)
		if (before(z[i], i, vals[0], ids[0])) {
			ids[0] = i;
			vals[0] = z[i];
			sift_down(ids, vals, k, 0);
		}
	/* heap sort: repeatedly move the weakest to the end */
	for (int n = k - 1; n > 0; n--) {
		int ti = ids[0];
		float tv = vals[0];
		ids[0] = ids[n];
		vals[0] = vals[n];
		ids[n] = ti;
		vals[n] = tv;
		sift_down(ids, vals, n, 0);
	}
}

/* A key per (value, id) whose unsigned order is the top-k order: the value's
 * bits made monotone (-0 as +0), then the id reversed, so larger means first. */
static inline uint64_t topk_key(float v, int id)
{
	union {
		float f;
		uint32_t u;
	} b = { v + 0.0f };
	uint32_t u = b.u >> 31 ? ~b.u : b.u | 0x80000000u;
	return (uint64_t)u << 32 | (uint32_t)~(uint32_t)id;
}

static inline void swap_keys(uint64_t *a, uint64_t *b)
{
	uint64_t t = *a;
	*a = *b;
	*b = t;
}

/* moves the k largest of a[0..n) to a[0..k), in no order (Hoare's select, median-of-three pivots) */
static void select_largest(uint64_t *a, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (hi - lo > 8) {
		int mid = lo + (hi - lo) / 2;
		if (a[mid] > a[lo])
			swap_keys(&a[mid], &a[lo]);
		if (a[hi] > a[lo])
			swap_keys(&a[hi], &a[lo]);
		if (a[hi] > a[mid])
			swap_keys(&a[hi], &a[mid]);
		uint64_t pivot = a[mid]; /* a[lo] >= pivot >= a[hi] */
		int i = lo, j = hi;
		for (;;) {
			while (a[++i] > pivot)
				;
			while (a[--j] < pivot)
				;
			if (i >= j)
				break;
			swap_keys(&a[i], &a[j]);
		}
		/* a[lo..j] >= pivot >= a[j+1..hi] */
		if (k - 1 <= j)
			hi = j;
		else
			lo = j + 1;
	}
	/* what is left: a short range, by insertion */
	for (int i = lo + 1; i <= hi; i++)
		for (int j = i; j > lo && a[j] > a[j - 1]; j--)
			swap_keys(&a[j], &a[j - 1]);
}

static void sift_keys(uint64_t *a, int n, int i)
{
	for (;;) {
		int l = 2 * i + 1, r = l + 1, w = i;
		if (l < n && a[l] < a[w])
			w = l;
		if (r < n && a[r] < a[w])
			w = r;
		if (w == i)
			return;
		swap_keys(&a[i], &a[w]);
		i = w;
	}
}

/* a[0..n) in descending order: insertion for short runs, else a heap sort */
static void sort_descending(uint64_t *a, int n)
{
	if (n <= 64) {
		for (int i = 1; i < n; i++) {
			uint64_t x = a[i];
			int j = i;
			for (; j > 0 && a[j - 1] < x; j--)
				a[j] = a[j - 1];
			a[j] = x;
		}
		return;
	}
	for (int i = n / 2 - 1; i >= 0; i--)
		sift_keys(a, n, i);
	for (int m = n - 1; m > 0; m--) {
		swap_keys(&a[0], &a[m]);
		sift_keys(a, m, 0);
	}
}

/* the smallest of the maxima of the k blocks {i, i + k, i + 2k, ...}; m: k floats */
static float threshold_generic(const float *z, int V, int k, float *m)
{
	for (int i = 0; i < k; i++)
		m[i] = z[i];
	for (int b = k; b < V; b += k) {
		const float *p = z + b;
		int len = V - b < k ? V - b : k;
		for (int i = 0; i < len; i++)
			m[i] = p[i] > m[i] ? p[i] : m[i];
	}
	float t = INFINITY;
	for (int i = 0; i < k; i++)
		t = m[i] < t ? m[i] : t;
	return t;
}

/* the keys of the values >= t, in id order; returns their number */
static int gather_generic(const float *z, int V, float t, uint64_t *keys)
{
	int n = 0;
	for (int i = 0; i < V; i++) {
		keys[n] = topk_key(z[i], i); /* index n <= i: inside keys */
		n += z[i] >= t;
	}
	return n;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define TK_AVX2 __attribute__((target("avx2,fma")))

/* as threshold_generic; max(p, m) is p > m ? p : m lane for lane, NaNs included */
static TK_AVX2 float threshold_avx2(const float *z, int V, int k, float *m)
{
	for (int i = 0; i < k; i++)
		m[i] = z[i];
	for (int b = k; b < V; b += k) {
		const float *p = z + b;
		int len = V - b < k ? V - b : k, i = 0;
		for (; i + 8 <= len; i += 8)
			_mm256_storeu_ps(m + i, _mm256_max_ps(_mm256_loadu_ps(p + i), _mm256_loadu_ps(m + i)));
		for (; i < len; i++)
			m[i] = p[i] > m[i] ? p[i] : m[i];
	}
	float t = INFINITY;
	for (int i = 0; i < k; i++)
		t = m[i] < t ? m[i] : t;
	return t;
}

static TK_AVX2 int gather_avx2(const float *z, int V, float t, uint64_t *keys)
{
	__m256 vt = _mm256_set1_ps(t);
	int n = 0, i = 0;
	for (; i + 8 <= V; i += 8) {
		unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z + i), vt, _CMP_GE_OQ));
		while (bits) {
			int b = __builtin_ctz(bits);
			keys[n++] = topk_key(z[i + b], i + b);
			bits &= bits - 1;
		}
	}
	for (; i < V; i++)
		if (z[i] >= t)
			keys[n++] = topk_key(z[i], i);
	return n;
}
#endif

static float topk_threshold(const float *z, int V, int k, float *m)
{
#if defined(__x86_64__)
	if (rl_cpu_avx2())
		return threshold_avx2(z, V, k, m);
#endif
	return threshold_generic(z, V, k, m);
}

static int topk_gather(const float *z, int V, float t, uint64_t *keys)
{
#if defined(__x86_64__)
	if (rl_cpu_avx2())
		return gather_avx2(z, V, t, keys);
#endif
	return gather_generic(z, V, t, keys);
}

void rl_topk(const float *z, int V, int k, int *ids, float *vals, uint64_t *scratch)
{
	if (k > V)
		k = V;
	if (k <= 0)
		return;
	if (!scratch) {
		topk_heap(z, V, k, ids, vals);
		return;
	}
	/* every one of k disjoint blocks has its largest value >= the smallest
	 * of those maxima, t: so the top k are among the values >= t. Block i
	 * holds the ids = i (mod k): their maxima are elementwise maxima of
	 * consecutive runs of k values, which vectorise. */
	float t = topk_threshold(z, V, k, (float *)scratch);
	int n = topk_gather(z, V, t, scratch);
	if (n < k) { /* a NaN among the values: the order no longer holds */
		topk_heap(z, V, k, ids, vals);
		return;
	}
	if (n > k)
		select_largest(scratch, n, k);
	sort_descending(scratch, k);
	for (int i = 0; i < k; i++) {
		ids[i] = (int)~(uint32_t)scratch[i];
		vals[i] = z[ids[i]];
	}
}

static float logsumexp_ref(const float *z, int V, float scale)
{
	double mx = -INFINITY;
	for (int i = 0; i < V; i++)
		if ((double)z[i] * scale > mx)
			mx = (double)z[i] * scale;
	double s = 0;
	for (int i = 0; i < V; i++)
		s += exp((double)z[i] * scale - mx);
	return (float)(mx + log(s));
}

#if defined(__x86_64__)
#include "vmath.h"
#define AVX2 __attribute__((target("avx2,fma")))

static AVX2 float max_avx2(const float *z, int V)
{
	__m256 m = _mm256_set1_ps(-INFINITY);
	int i = 0;
	for (; i + 8 <= V; i += 8)
		m = _mm256_max_ps(m, _mm256_loadu_ps(z + i));
	float mx = rl_lanes_max_avx2(m);
	for (; i < V; i++)
		mx = z[i] > mx ? z[i] : mx;
	return mx;
}

/* sum of e^((z[i] - mx) . scale) in double, eight lanes of floats at a time;
 * out, if given, receives the terms (as floats), with out[ban] = 0 */
static AVX2 double sum_exp_avx2(const float *z, int V, float mx, float scale, float *out, int ban)
{
	__m256 vm = _mm256_set1_ps(mx), vs = _mm256_set1_ps(scale);
	__m256d lo = _mm256_setzero_pd(), hi = lo;
	int i = 0;
	for (; i + 8 <= V; i += 8) {
		__m256 e = rl_exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(z + i), vm), vs));
		if (out) {
			if (ban >= i && ban < i + 8) {
				_mm256_storeu_ps(out + i, e);
				out[ban] = 0;
				e = _mm256_loadu_ps(out + i);
			} else {
				_mm256_storeu_ps(out + i, e);
			}
		}
		lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
		hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
	}
	double l[4], h[4];
	_mm256_storeu_pd(l, lo);
	_mm256_storeu_pd(h, hi);
	double s = ((l[0] + h[0]) + (l[1] + h[1])) + ((l[2] + h[2]) + (l[3] + h[3]));
	for (; i < V; i++) {
		float e = i == ban ? 0.0f : expf((z[i] - mx) * scale);
		if (out)
			out[i] = e;
		s += e;
	}
	return s;
}
#endif

float rl_logsumexp_scaled(const float *z, int V, float scale)
{
#if defined(__x86_64__)
	if (scale > 0 && V >= 8 && rl_cpu_avx2()) {
		/* e^((z - max z) scale), with max (z scale) = (max z) scale exactly since rounding is monotone */
		float mx = max_avx2(z, V);
		if (!isfinite(mx))
			return logsumexp_ref(z, V, scale);
		return (float)((double)mx * scale + log(sum_exp_avx2(z, V, mx, scale, NULL, -1)));
	}
#endif
	return logsumexp_ref(z, V, scale);
}

int rl_sample(const float *z, int V, const rl_sampler *p, rl_rng *rng, int *ids, float *vals)
{
	int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
	if (p->temperature > 0 && k == V && p->top_p >= 1) {
		/* plain sampling needs no order: the cumulative sum in id order */
		double total;
		float mx = -INFINITY;
		for (int i = 0; i < V; i++)
			if (i != p->ban && z[i] > mx)
				mx = z[i];
#if defined(__x86_64__)
		if (V >= 8 && isfinite(mx) && rl_cpu_avx2()) {
			total = sum_exp_avx2(z, V, mx, 1.0f / p->temperature, vals, p->ban);
		} else
#endif
		{
			total = 0;
			for (int i = 0; i < V; i++) {
				vals[i] = i == p->ban ? 0.0f : (float)exp(((double)z[i] - mx) / p->temperature);
				total += vals[i];
			}
		}
		double u = rl_rng_uniform(rng) * total, cum = 0;
		int i = 0;
		/* whole blocks of eight first, then one by one inside the block where u falls */
		for (; i + 8 <= V; i += 8) {
			const float *v = vals + i;
			double b = (((double)v[0] + v[1]) + ((double)v[2] + v[3])) + (((double)v[4] + v[5]) + ((double)v[6] + v[7]));
			if (u < cum + b)
				break;
			cum += b;
		}
		for (; i < V; i++) {
			if (vals[i] == 0)
				continue;
			cum += vals[i];
			if (u < cum)
				return i;
		}
		for (i = V - 1; i > 0 && vals[i] == 0; i--)
			;
		return i;
	}
	if (p->temperature <= 0)
		k = p->ban >= 0 ? 2 : 1;
	rl_topk(z, V, k, ids, vals, NULL);
	/* drop the banned token */
	int n = 0;
	for (int i = 0; i < k; i++)
		if (ids[i] != p->ban) {
			ids[n] = ids[i];
			vals[n++] = vals[i];
		}
	if (n == 0)
		return ids[0];
	if (p->temperature <= 0)
		return ids[0];
	double mx = vals[0], total = 0;
	for (int i = 0; i < n; i++)
		total += exp(((double)vals[i] - mx) / p->temperature);
	/* nucleus: the smallest prefix (in descending order) whose mass reaches top_p */
	int m = n;
	if (p->top_p < 1) {
		double cum = 0;
		for (int i = 0; i < n; i++) {
			cum += exp(((double)vals[i] - mx) / p->temperature) / total;
			if (cum >= p->top_p) {
				m = i + 1;
				break;
			}
		}
		total = 0;
		for (int i = 0; i < m; i++)
			total += exp(((double)vals[i] - mx) / p->temperature);
	}
	double u = rl_rng_uniform(rng) * total, cum = 0;
	for (int i = 0; i < m; i++) {
		cum += exp(((double)vals[i] - mx) / p->temperature);
		if (u < cum)
			return ids[i];
	}
	return ids[m - 1];
}
