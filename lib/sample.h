/* sample.h: what teacher-gen needs to draw tokens and record the teacher:
 * a counter-free random stream per sample, top-k selection, and the sampler. */
#ifndef RL_SAMPLE_H
#define RL_SAMPLE_H
#include <stdint.h>

/* xoshiro256** seeded from (seed, id) through splitmix64: a sample's numbers
 * depend on nothing else. */
typedef struct {
	uint64_t s[4];
} rl_rng;

void rl_rng_seed(rl_rng *r, uint64_t seed, uint64_t id);
/* splitmix64: advances *x and returns its next well-mixed value (the seeder
 * of every seeded stream: rl_rng, random weights, LoRA init, distill's order). */
uint64_t rl_splitmix64(uint64_t *x);
uint64_t rl_rng_next(rl_rng *r);
/* uniform in [0, 1) with 53 bits */
double rl_rng_uniform(rl_rng *r);

/* The k largest of z[0..V-1], sorted descending, ties to the lower id.
 * scratch: V values, or NULL for a slower way that needs none. */
void rl_topk(const float *z, int V, int k, int *ids, float *vals, uint64_t *scratch);
/* log sum exp(z[i] * scale): the exponentials in float (within about 1 ulp)
 * summed in double where AVX2 runs, else all in double */
float rl_logsumexp_scaled(const float *z, int V, float scale);

typedef struct {
	float temperature;  /* 0: greedy */
	int top_k;          /* 0: no limit */
	float top_p;        /* 1: no limit */
	int ban;            /* a token that may not be drawn (EOS before min length), or -1 */
} rl_sampler;

/* Draws a token from softmax(z / temperature) restricted to the top_k most
 * likely and then to the smallest prefix whose probability reaches top_p.
 * scratch: V ints and V floats. Deterministic given the rng state. */
int rl_sample(const float *z, int V, const rl_sampler *p, rl_rng *rng, int *iscratch, float *fscratch);

#endif
