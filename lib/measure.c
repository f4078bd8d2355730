/* measure.c: sgemm GFLOP/s and memory read bandwidth of this machine. */
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "measure.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double rl_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double rl_measure_sgemm_gflops(int n, int reps)
{
	if (n < 1 || reps < 1) {
		rl_seterr("sgemm measurement: bad size n=%d reps=%d", n, reps);
		return -1;
	}
	size_t nn = (size_t)n * (size_t)n;
	if (nn > SIZE_MAX / 3 / sizeof(float)) {
		rl_seterr("sgemm measurement: %d×%d matrices are too large", n, n);
		return -1;
	}
	float *a = malloc(3 * nn * sizeof(float)); /* A, B, C: (n, n) each */
	double *rate = malloc((size_t)reps * sizeof *rate);
	if (!a || !rate) {
		free(a);
		free(rate);
		rl_seterr("sgemm measurement: out of memory for three %d×%d matrices", n, n);
		return -1;
	}
	float *b = a + nn, *c = b + nn;
	for (size_t i = 0; i < nn; i++) {
		a[i] = (float)((int)(i % 17) - 8) * 0.0625f;
		b[i] = (float)((int)(i % 13) - 6) * 0.125f;
		c[i] = 0;
	}
	double flops = 2.0 * n * n * (double)n;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
		double dt = now() - t0;
		rate[r] = flops / (dt > 0 ? dt : 1e-9) / 1e9;
	}
	double med = rl_median(rate, reps);
	free(a);
	free(rate);
	return med;
}

/* The read loop. GCC's vector extension makes the vectorization explicit (it
 * does not depend on -O3 or -ffast-math): four 8-float accumulators, p aligned
 * to 32 bytes. Compiled twice, for AVX2 and for the baseline ISA (where each
 * 8-float operation becomes two SSE ones); which one runs is chosen at run time. */
typedef float v8f __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) float sum_floats_body(const float *p, size_t n)
{
	const v8f *v = (const v8f *)p;
	size_t nv = n / 32;
	v8f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	for (size_t i = 0; i < nv; i++) {
		s0 += v[4 * i];
		s1 += v[4 * i + 1];
		s2 += v[4 * i + 2];
		s3 += v[4 * i + 3];
	}
	s0 = (s0 + s1) + (s2 + s3);
	float s = 0;
	for (int k = 0; k < 8; k++)
		s += s0[k];
	for (size_t i = nv * 32; i < n; i++)
		s += p[i];
	return s;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) static float sum_floats_avx2(const float *p, size_t n)
{
	return sum_floats_body(p, n);
}
#endif

static float sum_floats_generic(const float *p, size_t n)
{
	return sum_floats_body(p, n);
}

typedef struct {
	float *p;                              /* this thread's share: 32-byte aligned */
	size_t n;                              /* floats in it */
	float (*sum)(const float *, size_t);
	int fill;                              /* 1: write the share (first touch), 0: sum it */
	float result;
} read_job;

static void *read_worker(void *arg)
{
	read_job *j = arg;
	if (j->fill) {
		for (size_t i = 0; i < j->n; i++)
			j->p[i] = (float)(i & 7) * 0.125f;
		j->result = 0;
	} else {
		j->result = j->sum(j->p, j->n);
	}
	return NULL;
}

/* Runs every job on its own thread and waits for all. -1 if a thread cannot
 * be started (the ones that were are joined first). */
static int run_jobs(read_job *jobs, pthread_t *tid, int threads)
{
	int started = 0, rc = 0;
	for (; started < threads; started++) {
		if (pthread_create(&tid[started], NULL, read_worker, &jobs[started])) {
			rc = -1;
			break;
		}
	}
	for (int t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	if (rc)
		rl_seterr("read bandwidth measurement: cannot start thread %d of %d", started + 1, threads);
	return rc;
}

/* Keeps the sums, so the reads that make them cannot be optimized away. */
static volatile float read_sink;

double rl_measure_read_bandwidth(size_t bytes, int reps, int threads)
{
	size_t n = bytes / sizeof(float);
	if (n < 1 || reps < 1 || threads < 1 || threads > 1024) {
		rl_seterr("read bandwidth measurement: bad arguments bytes=%zu reps=%d threads=%d", bytes, reps,
			  threads);
		return -1;
	}
	size_t alloc = (n * sizeof(float) + 63) / 64 * 64;
	float *buf = aligned_alloc(64, alloc);
	read_job *jobs = calloc((size_t)threads, sizeof *jobs);
	pthread_t *tid = calloc((size_t)threads, sizeof *tid);
	double *rate = malloc((size_t)reps * sizeof *rate);
	double result = -1;
	if (!buf || !jobs || !tid || !rate) {
		rl_seterr("read bandwidth measurement: out of memory for a %zu-byte buffer", bytes);
		goto done;
	}
	float (*sum)(const float *, size_t) = sum_floats_generic;
#if defined(__x86_64__) || defined(__i386__)
	if (__builtin_cpu_supports("avx2"))
		sum = sum_floats_avx2;
#endif
	/* Shares are whole multiples of 32 floats (128 bytes), so each starts aligned; the last takes the rest. */
	size_t share = n / (size_t)threads / 32 * 32;
	for (int t = 0; t < threads; t++) {
		jobs[t].p = buf + (size_t)t * share;
		jobs[t].n = t == threads - 1 ? n - (size_t)t * share : share;
		jobs[t].sum = sum;
		jobs[t].fill = 1;
	}
	/* Each thread writes its own share first, so its pages are local to it. */
	if (run_jobs(jobs, tid, threads))
		goto done;
	for (int t = 0; t < threads; t++)
		jobs[t].fill = 0;
	if (run_jobs(jobs, tid, threads)) /* warm-up */
		goto done;
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		if (run_jobs(jobs, tid, threads))
			goto done;
		double dt = now() - t0;
		float s = 0;
		for (int t = 0; t < threads; t++)
			s += jobs[t].result;
		read_sink = s;
		rate[r] = (double)(n * sizeof(float)) / (dt > 0 ? dt : 1e-9) / 1e9;
	}
	result = rl_median(rate, reps);
done:
	free(buf);
	free(jobs);
	free(tid);
	free(rate);
	return result;
}
