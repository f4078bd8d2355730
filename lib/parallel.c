/* parallel.c: a small pool of worker threads and the f32 matrix products. */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* SPIN pauses before a waiting thread yields its core, YIELDS yields before an
 * idle worker sleeps */
enum { MAX_THREADS = 256, SPIN = 4000, YIELDS = 200 };

/* A loop is cut into P.parts fixed ranges, dealt out in order as shares:
 * thread t (the caller is 0) owns parts [t parts / T, (t + 1) parts / T) and
 * runs its own from the first, so each thread streams one contiguous stretch
 * of the data; a thread whose share is done takes the next unclaimed part of
 * another share. A thread that is late (descheduled on a busy machine) or
 * slower (its core shared with other work, a laptop's efficiency core) holds up
 * nobody: the others take what is left of its share. Who runs a part never
 * changes what it computes. */
enum { PARTS_MAX = 0xffff };  /* parts of a loop at most (part indices take 16 bits) */

/* A share's state, one word: the loop's generation << 32 | its next part << 16 |
 * its end. Claiming a part is a compare-and-swap that also checks the generation,
 * so a thread still looking at a finished loop claims nothing of the next. */
typedef struct {
	_Alignas(64) _Atomic uint64_t w; /* a cache line each: the threads claim apart */
} share;

static struct {
	int nthreads;            /* including the caller */
	int started;             /* workers running: threads 1..started */
	pthread_t tid[MAX_THREADS];
	pthread_mutex_t lock;
	pthread_cond_t wake;
	_Atomic uint32_t gen;    /* the current loop's generation: a new value wakes the workers */
	atomic_int done;         /* ranges finished in the current loop */
	atomic_int sleepers;     /* workers waiting on P.wake */
	atomic_int quit;         /* atomic: a worker that ran no part of the last loop reads it unsynchronized */
	uint32_t gen_at_start;   /* generation when the workers were created */
	/* the current loop, written before its generation is published */
	void (*fn)(void *, int64_t, int64_t);
	void *arg;
	int64_t n, grain;
	atomic_int parts;        /* atomic: a thread done with the loop may still read it */
	share share[MAX_THREADS];
} P = { .nthreads = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static _Thread_local int in_loop;

/* a share word's loop generation */
static inline uint32_t generation(uint64_t w) { return (uint32_t)(w >> 32); }

/* part i of parts: the grain-sized chunks dealt as evenly as they go */
static void run_part(int i, int parts)
{
	int64_t chunks = (P.n + P.grain - 1) / P.grain;
	int64_t per = chunks / parts, extra = chunks % parts;
	int64_t c0 = i * per + (i < extra ? i : extra);
	int64_t c1 = c0 + per + (i < extra);
	int64_t b = c0 * P.grain, e = c1 * P.grain;
	if (e > P.n)
		e = P.n;
	if (b < e)
		P.fn(P.arg, b, e);
}

/* A part of loop g for thread t: the next of its own share, else of the
 * others' in turn; -1 when none is left */
static int claim(uint32_t g, int t)
{
	int T = P.nthreads; /* one share each; it changes only while no worker runs */
	for (int k = 0; k < T; k++) {
		share *s = &P.share[(t + k) % T];
		uint64_t w = atomic_load_explicit(&s->w, memory_order_acquire);
		while (generation(w) == g && ((w >> 16) & PARTS_MAX) < (w & PARTS_MAX))
			if (atomic_compare_exchange_weak_explicit(&s->w, &w, w + (1u << 16), memory_order_acq_rel,
								  memory_order_acquire))
				return (int)((w >> 16) & PARTS_MAX);
		if (generation(w) != g)
			return -1; /* loop g is over: a later one has been dealt */
	}
	return -1;
}

/* runs parts of loop g until none is left to claim */
static void claim_parts(uint32_t g, int t)
{
	for (int i; (i = claim(g, t)) >= 0;) {
		run_part(i, atomic_load_explicit(&P.parts, memory_order_relaxed));
		atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
	}
}

static void *worker(void *p)
{
	int t = (int)(intptr_t)p;
	uint32_t seen = P.gen_at_start; /* not the current one: the first loop may have begun already */
	in_loop = 1;
	for (;;) {
		int spins = 0;
		uint32_t g;
		while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) {
			if (++spins < SPIN) {
				cpu_relax();
			} else if (spins < SPIN + YIELDS) {
				sched_yield();
			} else {
				pthread_mutex_lock(&P.lock);
				atomic_fetch_add(&P.sleepers, 1);
				while (atomic_load(&P.gen) == seen)
					pthread_cond_wait(&P.wake, &P.lock);
				atomic_fetch_sub(&P.sleepers, 1);
				pthread_mutex_unlock(&P.lock);
				spins = 0;
			}
		}
		seen = g;
		if (atomic_load_explicit(&P.quit, memory_order_relaxed))
			return NULL;
		claim_parts(seen, t);
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

/* [0, n) in grain-sized chunks, cut into at most max_parts ranges to claim */
static void parallel_run(int64_t n, int64_t grain, int64_t max_parts, void (*fn)(void *, int64_t, int64_t), void *arg)
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
	int T = P.nthreads;
	if (max_parts > PARTS_MAX)
		max_parts = PARTS_MAX;
	int parts = (int)(chunks < max_parts ? chunks : max_parts);
	P.fn = fn;
	P.arg = arg;
	P.n = n;
	P.grain = grain;
	atomic_store_explicit(&P.parts, parts, memory_order_relaxed);
	atomic_store_explicit(&P.done, 0, memory_order_relaxed);
	uint32_t g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
	for (int t = 0; t < T; t++) {
		uint64_t b = (uint64_t)((int64_t)parts * t / T), e = (uint64_t)((int64_t)parts * (t + 1) / T);
		atomic_store_explicit(&P.share[t].w, (uint64_t)g << 32 | b << 16 | e, memory_order_relaxed);
	}
	atomic_store(&P.gen, g); /* publishes the fields above */
	if (atomic_load(&P.sleepers) > 0) {
		pthread_mutex_lock(&P.lock);
		pthread_cond_broadcast(&P.wake);
		pthread_mutex_unlock(&P.lock);
	}
	in_loop = 1;
	claim_parts(g, 0);
	in_loop = 0;
	for (int spins = 0; atomic_load_explicit(&P.done, memory_order_acquire) < parts;)
		if (++spins < SPIN)
			cpu_relax();
		else
			sched_yield();
}

void rl_parallel_for(int64_t n, int64_t grain, void (*fn)(void *, int64_t, int64_t), void *arg)
{
	parallel_run(n, grain, P.nthreads, fn, arg);
}

void rl_parallel_for_pieces(int64_t n, int64_t grain, int pieces, void (*fn)(void *, int64_t, int64_t), void *arg)
{
	parallel_run(n, grain, (pieces > 1 ? (int64_t)pieces : 1) * P.nthreads, fn, arg);
}

void rl_parallel_each(int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg)
{
	parallel_run(n, 1, n, fn, arg);
}

/* ---- f32 products whose outputs do not depend on the batch ----
 *
 * Every output y = w . x (IC terms) is computed the same way wherever it lies in
 * a tile: one 8-lane accumulator over the 8-float chunks in order (a fused
 * multiply-add each on AVX2), its lanes summed as ((a0+a4)+(a1+a5)) +
 * ((a2+a6)+(a3+a7)), then the IC % 8 leftover terms in order. Tiles of R rows
 * by NV vectors share their loads (R + NV per R*NV products), and the tiling
 * never changes the arithmetic, so a batch of vectors gives bit for bit the
 * outputs each gives alone. */

enum { TILE_R = 3, TILE_NV = 4, SOLO_R = 4 };

typedef float v8f __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) float lanes_sum(v8f a)
{
	float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
	return (t0 + t1) + (t2 + t3);
}

/* portable: the same order of operations, without fused multiply-adds */
static inline __attribute__((always_inline)) void tile_generic(int R, int NV, const float *W, size_t ldw,
								const float *X, size_t ldx, float *Y, size_t ldy, int IC)
{
	v8f acc[SOLO_R][TILE_NV] = { { { 0 } } };
	int c = 0;
	for (; c + 8 <= IC; c += 8)
		for (int i = 0; i < R; i++)
			for (int j = 0; j < NV; j++)
				acc[i][j] += *(const v8f *)(W + i * ldw + c) * *(const v8f *)(X + j * ldx + c);
	for (int i = 0; i < R; i++)
		for (int j = 0; j < NV; j++) {
			float s = lanes_sum(acc[i][j]);
			for (int e = c; e < IC; e++)
				s += W[i * ldw + e] * X[j * ldx + e];
			Y[j * ldy + i] = s;
		}
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/* the lanes of four accumulators summed at once, in lanes_sum's order */
static inline __attribute__((always_inline)) AVX2 __m128 lanes_sum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
	__m128 ta = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	__m128 tb = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
	__m128 tc = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
	__m128 td = _mm_add_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1));
	return _mm_hadd_ps(_mm_hadd_ps(ta, tb), _mm_hadd_ps(tc, td));
}

static inline __attribute__((always_inline)) AVX2 void tile_avx2(int R, int NV, const float *W, size_t ldw,
								  const float *X, size_t ldx, float *Y, size_t ldy, int IC)
{
	__m256 acc[SOLO_R][TILE_NV];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NV; j++)
			acc[i][j] = _mm256_setzero_ps();
	int c = 0;
	for (; c + 8 <= IC; c += 8) {
		__m256 w[SOLO_R];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			w[i] = _mm256_loadu_ps(W + i * ldw + c);
#pragma GCC unroll 4
		for (int j = 0; j < NV; j++) {
			__m256 x = _mm256_loadu_ps(X + j * ldx + c);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][j] = _mm256_fmadd_ps(w[i], x, acc[i][j]);
		}
	}
	float s[SOLO_R][TILE_NV] __attribute__((aligned(16)));
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		__m256 z = _mm256_setzero_ps();
		_mm_store_ps(s[i], lanes_sum4(acc[i][0], NV > 1 ? acc[i][1] : z, NV > 2 ? acc[i][2] : z,
					      NV > 3 ? acc[i][3] : z));
	}
	for (int i = 0; i < R; i++)
		for (int j = 0; j < NV; j++) {
			float t = s[i][j];
			for (int e = c; e < IC; e++)
				t = __builtin_fmaf(W[i * ldw + e], X[j * ldx + e], t);
			Y[j * ldy + i] = t;
		}
}
#endif

/* Y[n][r] = W row r . X row n for rows [r0, r1) and vectors [n0, n1): blocks of
 * rows that stay in cache while every vector passes over them. */
#define ROWS_KERNEL(NAME, TILE, ATTR)                                                                              \
	static ATTR void NAME(const float *W, size_t ldw, int64_t r0, int64_t r1, const float *X, size_t ldx,     \
			      int64_t n0, int64_t n1, float *Y, size_t ldy, int IC)                              \
	{                                                                                                          \
		if (n1 - n0 == 1) {                                                                                \
			const float *x = X + n0 * ldx;                                                              \
			float *y = Y + n0 * ldy;                                                                    \
			int64_t r = r0;                                                                             \
			for (; r + SOLO_R <= r1; r += SOLO_R)                                                       \
				TILE(SOLO_R, 1, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);                        \
			for (; r < r1; r++)                                                                         \
				TILE(1, 1, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);                             \
			return;                                                                                     \
		}                                                                                                  \
		int64_t block = (96 << 10) / ((int64_t)IC * 4 * TILE_R) * TILE_R; /* ~96 KiB of rows */          \
		if (block < TILE_R)                                                                                \
			block = TILE_R;                                                                            \
		for (int64_t b = r0; b < r1; b += block) {                                                         \
			int64_t e = b + block < r1 ? b + block : r1;                                                 \
			for (int64_t n = n0; n < n1; n += TILE_NV) {                                                 \
				const float *x = X + n * ldx;                                                       \
				float *y = Y + n * ldy;                                                             \
				int64_t r = b;                                                                      \
				if (n + TILE_NV <= n1) {                                                            \
					for (; r + TILE_R <= e; r += TILE_R)                                        \
						TILE(TILE_R, TILE_NV, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);   \
					for (; r < e; r++)                                                          \
						TILE(1, TILE_NV, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);       \
				} else {                                                                            \
					int nv = (int)(n1 - n);                                                     \
					for (; r < e; r++) {                                                        \
						if (nv == 3)                                                        \
							TILE(1, 3, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);     \
						else if (nv == 2)                                                   \
							TILE(1, 2, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);     \
						else                                                                \
							TILE(1, 1, W + r * ldw, ldw, x, ldx, y + r, ldy, IC);     \
					}                                                                           \
				}                                                                                   \
			}                                                                                           \
		}                                                                                                  \
	}

ROWS_KERNEL(rows_generic, tile_generic, )
#if defined(__x86_64__)
ROWS_KERNEL(rows_avx2, tile_avx2, AVX2)
#endif

typedef void rows_fn(const float *W, size_t ldw, int64_t r0, int64_t r1, const float *X, size_t ldx, int64_t n0,
		     int64_t n1, float *Y, size_t ldy, int IC);

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

int rl_cpu_avx512(void)
{
#if defined(__x86_64__)
	/* GCC's and clang's tests of avx512f also check that the OS enabled the state */
	static int has = -1;
	if (has < 0)
		has = rl_cpu_avx2() && __builtin_cpu_supports("avx512f");
	return has;
#else
	return 0;
#endif
}

static rows_fn *pick_rows(void)
{
	/* chosen in a local and stored once: threads making their first product
	 * together must never see a half-made choice (a thread that took the
	 * portable kernel for one product gave numbers that differ in the last bits) */
	static rows_fn *rows;
	if (!rows) {
		rows_fn *pick = rows_generic;
#if defined(__x86_64__)
		if (rl_cpu_avx2())
			pick = rows_avx2;
#endif
		rows = pick;
	}
	return rows;
}

void rl_dot_rows_f32(const float *W, const float *x, float *y, int64_t r0, int64_t r1, int IC)
{
	pick_rows()(W, (size_t)IC, r0, r1, x, (size_t)IC, 0, 1, y, 1, IC);
}

void rl_gemm_rows_block_f32(const float *W, size_t ldw, int64_t r0, int64_t r1, int N, const float *X, size_t ldx,
			    float *Y, size_t ldy, int IC)
{
	pick_rows()(W, ldw, r0, r1, X, ldx, 0, N, Y, ldy, IC);
}

void rl_gemv_f32(int OC, int IC, const float *W, const float *x, float *y)
{
	rl_gemm_rows_f32(OC, IC, W, 1, x, (size_t)IC, y, (size_t)OC);
}

typedef struct {
	const float *W, *X;
	float *Y;
	int OC, IC, N, by_vectors;
	size_t ldx, ldy;
	rows_fn *rows;
} gemm_job;

static void gemm_part(void *arg, int64_t b, int64_t e)
{
	gemm_job *j = arg;
	if (j->by_vectors)
		j->rows(j->W, (size_t)j->IC, 0, j->OC, j->X, j->ldx, b, e, j->Y, j->ldy, j->IC);
	else
		j->rows(j->W, (size_t)j->IC, b, e, j->X, j->ldx, 0, j->N, j->Y, j->ldy, j->IC);
}

void rl_gemm_rows_f32(int OC, int IC, const float *W, int N, const float *X, size_t ldx, float *Y, size_t ldy)
{
	gemm_job j = { W, X, Y, OC, IC, N, 0, ldx, ldy, pick_rows() };
	/* a small matrix (in every core's cache) is shared by splitting the vectors;
	 * a large one by its rows, in multiples of 16 and ~64 KiB of weights a part */
	if (N >= 2 * TILE_NV && (size_t)OC * (size_t)IC * sizeof(float) <= (256 << 10)) {
		j.by_vectors = 1;
		rl_parallel_for(N, TILE_NV, gemm_part, &j);
		return;
	}
	int64_t grain = 16;
	while (grain * IC * 4 < (64 << 10) && grain < OC)
		grain *= 2;
	/* four ranges a thread: one descheduled on a busy machine holds up a quarter of its share */
	parallel_run(OC, grain, 4 * (int64_t)P.nthreads, gemm_part, &j);
}
