/* sample.c: random streams, top-k and the sampler (see sample.h). */
#include <math.h>
#include <stdlib.h>

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

void rl_topk(const float *z, int V, int k, int *ids, float *vals)
{
	if (k > V)
		k = V;
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

float rl_logsumexp_scaled(const float *z, int V, float scale)
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

int rl_sample(const float *z, int V, const rl_sampler *p, rl_rng *rng, int *ids, float *vals)
{
	int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
	if (p->temperature > 0 && k == V && p->top_p >= 1) {
		/* plain sampling needs no order: the cumulative sum in id order */
		double mx = -INFINITY, total = 0;
		for (int i = 0; i < V; i++)
			if (i != p->ban && z[i] > mx)
				mx = z[i];
		for (int i = 0; i < V; i++) {
			vals[i] = i == p->ban ? 0.0f : (float)exp(((double)z[i] - mx) / p->temperature);
			total += vals[i];
		}
		double u = rl_rng_uniform(rng) * total, cum = 0;
		int last = 0;
		for (int i = 0; i < V; i++) {
			if (vals[i] == 0)
				continue;
			cum += vals[i];
			last = i;
			if (u < cum)
				return i;
		}
		return last;
	}
	if (p->temperature <= 0)
		k = p->ban >= 0 ? 2 : 1;
	rl_topk(z, V, k, ids, vals);
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
