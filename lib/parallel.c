/* parallel.c: a small pool of worker threads and the f32 matrix-vector product. */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

enum { MAX_THREADS = 256, SPIN = 20000 };

static struct {
	int nthreads;            /* including the caller */
	int started;             /* workers running: threads 1..started */
	pthread_t tid[MAX_THREADS];
	pthread_mutex_t lock;
	pthread_cond_t wake;
	atomic_uint gen;         /* bumped to start a loop */
	atomic_int pending;      /* workers not yet done with the current loop */
	int quit;
	unsigned gen_at_start;   /* P.gen when the workers were created */
	/* the current loop */
	void (*fn)(void *, int64_t, int64_t);
	void *arg;
	int64_t n, grain;
	int parts;
} P = { .nthreads = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static _Thread_local int in_loop;

static void run_part(int t)
{
	int64_t chunks = (P.n + P.grain - 1) / P.grain;
	int64_t per = chunks / P.parts, extra = chunks % P.parts;
	int64_t c0 = t * per + (t < extra ? t : extra);
	int64_t c1 = c0 + per + (t < extra);
	int64_t b = c0 * P.grain, e = c1 * P.grain;
	if (e > P.n)
		e = P.n;
	if (b < e)
		P.fn(P.arg, b, e);
}

static void *worker(void *p)
{
	int t = (int)(intptr_t)p;
	unsigned seen = P.gen_at_start; /* not P.gen: the first loop may have begun already */
	in_loop = 1;
	for (;;) {
		int spins = 0;
		while (atomic_load_explicit(&P.gen, memory_order_acquire) == seen) {
			if (++spins < SPIN) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&P.lock);
			while (atomic_load(&P.gen) == seen)
				pthread_cond_wait(&P.wake, &P.lock);
			pthread_mutex_unlock(&P.lock);
		}
		seen = atomic_load_explicit(&P.gen, memory_order_acquire);
		if (P.quit)
			return NULL;
		if (t < P.parts)
			run_part(t);
		atomic_fetch_sub_explicit(&P.pending, 1, memory_order_release);
	}
}

static void stop_workers(void)
{
	pthread_mutex_lock(&P.lock);
	P.quit = 1;
	atomic_fetch_add(&P.gen, 1);
	pthread_cond_broadcast(&P.wake);
	pthread_mutex_unlock(&P.lock);
	for (int t = 1; t <= P.started; t++)
		pthread_join(P.tid[t], NULL);
	P.started = 0;
	P.quit = 0;
}

void rl_parallel_set_threads(int n)
{
	if (n < 1)
		n = 1;
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	if (P.started)
		stop_workers();
	P.nthreads = n;
}

int rl_parallel_threads(void) { return P.nthreads; }

/* Workers start on the first loop that needs them; if one cannot start, fewer run. */
static void start_workers(void)
{
	P.gen_at_start = atomic_load(&P.gen);
	while (P.started + 1 < P.nthreads) {
		if (pthread_create(&P.tid[P.started + 1], NULL, worker, (void *)(intptr_t)(P.started + 1)))
			break;
		P.started++;
	}
}

void rl_parallel_for(int64_t n, int64_t grain, void (*fn)(void *, int64_t, int64_t), void *arg)
{
	if (n <= 0)
		return;
	if (grain < 1)
		grain = 1;
	int64_t chunks = (n + grain - 1) / grain;
	if (P.nthreads == 1 || chunks == 1 || in_loop) {
		fn(arg, 0, n);
		return;
	}
	if (P.started + 1 < P.nthreads)
		start_workers();
	int workers = P.started;
	P.fn = fn;
	P.arg = arg;
	P.n = n;
	P.grain = grain;
	P.parts = chunks < workers + 1 ? (int)chunks : workers + 1;
	atomic_store(&P.pending, workers);
	pthread_mutex_lock(&P.lock);
	atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
	pthread_cond_broadcast(&P.wake);
	pthread_mutex_unlock(&P.lock);
	in_loop = 1;
	run_part(0);
	in_loop = 0;
	while (atomic_load_explicit(&P.pending, memory_order_acquire) > 0)
		cpu_relax();
}

/* ---- f32 matrix-vector product ---- */

typedef float v8f __attribute__((vector_size(32), aligned(4)));

/* One row at a time, four accumulators: four independent sums keep the loads in
 * flight. Several rows at once were slower here: rows of 4 KiB stride land in the
 * same cache sets, and one stream per thread is what the prefetcher likes best. */
static inline __attribute__((always_inline)) void gemv_rows_body(const float *W, const float *x, float *y,
								  int64_t r0, int64_t r1, int IC)
{
	for (int64_t r = r0; r < r1; r++) {
		const float *w = W + (size_t)r * IC;
		v8f a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
		int c = 0;
		for (; c + 32 <= IC; c += 32) {
			a0 += *(const v8f *)(w + c) * *(const v8f *)(x + c);
			a1 += *(const v8f *)(w + c + 8) * *(const v8f *)(x + c + 8);
			a2 += *(const v8f *)(w + c + 16) * *(const v8f *)(x + c + 16);
			a3 += *(const v8f *)(w + c + 24) * *(const v8f *)(x + c + 24);
		}
		a0 = (a0 + a1) + (a2 + a3);
		float s = 0;
		for (int k = 0; k < 8; k++)
			s += a0[k];
		for (; c < IC; c++)
			s += w[c] * x[c];
		y[r] = s;
	}
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void gemv_rows_avx2(const float *W, const float *x, float *y,
								 int64_t r0, int64_t r1, int IC)
{
	gemv_rows_body(W, x, y, r0, r1, IC);
}
#endif

static void gemv_rows_generic(const float *W, const float *x, float *y, int64_t r0, int64_t r1, int IC)
{
	gemv_rows_body(W, x, y, r0, r1, IC);
}

typedef struct {
	const float *W, *x;
	float *y;
	int IC, N;
	size_t ldx, ldy;
	void (*rows)(const float *, const float *, float *, int64_t, int64_t, int);
} gemv_job;

/* Each vector in turn over the same rows, which stay in cache: every output is
 * computed exactly as a lone rl_gemv_f32 computes it. */
static void gemv_part(void *arg, int64_t r0, int64_t r1)
{
	gemv_job *j = arg;
	enum { RB = 16 };
	if (j->N == 1) {
		j->rows(j->W, j->x, j->y, r0, r1, j->IC);
		return;
	}
	for (int64_t b = r0; b < r1; b += RB) {
		int64_t e = b + RB < r1 ? b + RB : r1;
		for (int n = 0; n < j->N; n++)
			j->rows(j->W, j->x + (size_t)n * j->ldx, j->y + (size_t)n * j->ldy, b, e, j->IC);
	}
}

int rl_cpu_avx2(void)
{
#if defined(__x86_64__)
	static int has = -1;
	if (has < 0) {
		/* F16C is CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports knows no "f16c") */
		unsigned a, b, c = 0, d;
		int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
		has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
	}
	return has;
#else
	return 0;
#endif
}

static void (*pick_rows(void))(const float *, const float *, float *, int64_t, int64_t, int)
{
	static void (*rows)(const float *, const float *, float *, int64_t, int64_t, int);
	if (!rows) {
		rows = gemv_rows_generic;
#if defined(__x86_64__)
		if (rl_cpu_avx2())
			rows = gemv_rows_avx2;
#endif
	}
	return rows;
}

void rl_dot_rows_f32(const float *W, const float *x, float *y, int64_t r0, int64_t r1, int IC)
{
	pick_rows()(W, x, y, r0, r1, IC);
}

void rl_gemv_f32(int OC, int IC, const float *W, const float *x, float *y)
{
	rl_gemm_rows_f32(OC, IC, W, 1, x, (size_t)IC, y, (size_t)OC);
}

void rl_gemm_rows_f32(int OC, int IC, const float *W, int N, const float *X, size_t ldx, float *Y, size_t ldy)
{
	gemv_job j = { W, X, Y, IC, N, ldx, ldy, pick_rows() };
	/* rows in multiples of 16 (64 bytes of output per cache line), at least ~64 KiB of weights per part */
	int64_t grain = 16;
	while (grain * IC * 4 < (64 << 10) && grain < OC)
		grain *= 2;
	rl_parallel_for(OC, grain, gemv_part, &j);
}
