/* test_parallel: the worker pool covers every index once, whatever the thread
 * count, grain and pieces; a thread done with its own share takes the rest of a
 * slow one's, after its own in order; the f32 matrix-vector product matches a
 * double-precision sum. */
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "t.h"

typedef struct {
	int64_t grain;
	int *hits;
	int misaligned;
} cover_job;

static void cover(void *arg, int64_t b, int64_t e)
{
	cover_job *j = arg;
	if (b % j->grain)
		__atomic_add_fetch(&j->misaligned, 1, __ATOMIC_RELAXED);
	for (int64_t i = b; i < e; i++)
		__atomic_add_fetch(&j->hits[i], 1, __ATOMIC_RELAXED);
}

/* Items 0-15 on two threads, eight pieces each: the caller (share 0-7) stops in
 * its first item until the worker has run nine, which it can only by taking
 * items of the caller's share once its own 8-15 are done. */
typedef struct {
	pthread_t caller;
	int order[16], worker_ran, caller_ran, timed_out;
} steal_job;

static void steal_item(void *arg, int64_t b, int64_t e)
{
	steal_job *j = arg;
	for (int64_t i = b; i < e; i++) {
		if (pthread_equal(pthread_self(), j->caller)) {
			__atomic_add_fetch(&j->caller_ran, 1, __ATOMIC_RELAXED);
			struct timespec t0, t;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			while (!j->timed_out && __atomic_load_n(&j->worker_ran, __ATOMIC_ACQUIRE) < 9) {
				clock_gettime(CLOCK_MONOTONIC, &t);
				if (t.tv_sec - t0.tv_sec > 20) {
					j->timed_out = 1;
					break;
				}
			}
		} else {
			int k = __atomic_fetch_add(&j->worker_ran, 1, __ATOMIC_ACQ_REL);
			if (k < 16)
				j->order[k] = (int)i;
		}
	}
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 40) / (double)(1 << 24)) * 2 - 1;
}

int main(void)
{
	static const int threads[] = { 1, 2, 3, 8, 2 };
	static const int64_t sizes[] = { 1, 2, 15, 16, 17, 100, 1000, 4099 };
	static const int64_t grains[] = { 1, 4, 16, 64, 5000 };
	int cover_bad = 0;
	char why[256] = "";
	for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
		rl_parallel_set_threads(threads[t]);
		for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
			for (size_t g = 0; g < sizeof grains / sizeof *grains; g++)
				for (int rep = 0; rep < 3; rep++) {
					int64_t n = sizes[s];
					cover_job j = { grains[g], calloc((size_t)n, sizeof(int)), 0 };
					if (rep == 0)
						rl_parallel_for(n, grains[g], cover, &j);
					else
						rl_parallel_for_pieces(n, grains[g], rep == 1 ? 3 : 8, cover, &j);
					for (int64_t i = 0; i < n; i++)
						if (j.hits[i] != 1 && !cover_bad++)
							snprintf(why, sizeof why, "threads %d n %lld grain %lld pieces %d: index %lld run %d times",
								 threads[t], (long long)n, (long long)grains[g], rep ? 5 * rep - 2 : 1,
								 (long long)i, j.hits[i]);
					if (j.misaligned && !cover_bad++)
						snprintf(why, sizeof why, "threads %d n %lld grain %lld: a range starts off the grain",
							 threads[t], (long long)n, (long long)grains[g]);
					free(j.hits);
				}
	}
	CHECK(cover_bad == 0, "parallel_for_covers_each_index_once", "%s", why);

	/* more items than a loop has parts (65,535): each still runs once */
	rl_parallel_set_threads(3);
	{
		int64_t n = 70001;
		cover_job j = { 1, calloc((size_t)n, sizeof(int)), 0 };
		rl_parallel_each(n, cover, &j);
		int64_t bad = 0;
		for (int64_t i = 0; i < n; i++)
			bad += j.hits[i] != 1;
		CHECK(bad == 0, "parallel_each_beyond_parts_covers_each_once", "%lld of %lld items not run exactly once",
		      (long long)bad, (long long)n);
		free(j.hits);
	}

	/* a slow thread's share: the other runs its own share first, in order, then takes the rest */
	rl_parallel_set_threads(2);
	{
		steal_job j = { .caller = pthread_self() };
		rl_parallel_for_pieces(16, 1, 8, steal_item, &j);
		int own_in_order = j.worker_ran >= 8;
		for (int k = 0; k < 8 && own_in_order; k++)
			own_in_order = j.order[k] == 8 + k;
		CHECK(!j.timed_out && j.worker_ran + j.caller_ran == 16 && own_in_order,
		      "parallel_pieces_taken_from_a_slow_thread",
		      "worker ran %d items (first %d %d %d), caller %d%s", j.worker_ran, j.order[0], j.order[1], j.order[2],
		      j.caller_ran, j.timed_out ? "; the worker never took the caller's items" : "");
	}

	/* shapes with ragged edges: rows not a multiple of 4, columns not of 16 */
	static const int shapes[][2] = { { 1, 1 }, { 3, 7 }, { 4, 16 }, { 5, 17 }, { 37, 100 }, { 1000, 64 }, { 2051, 1027 } };
	double worst = 0;
	char where[128] = "";
	for (size_t t = 0; t < 3; t++) {
		rl_parallel_set_threads(threads[t]);
		for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
			int OC = shapes[s][0], IC = shapes[s][1];
			float *W = malloc((size_t)OC * IC * sizeof(float)), *x = malloc((size_t)IC * sizeof(float));
			float *y = malloc((size_t)OC * sizeof(float));
			for (size_t i = 0; i < (size_t)OC * IC; i++)
				W[i] = frand();
			for (int i = 0; i < IC; i++)
				x[i] = frand();
			rl_gemv_f32(OC, IC, W, x, y);
			for (int o = 0; o < OC; o++) {
				double ref = 0, mag = 0;
				for (int i = 0; i < IC; i++) {
					ref += (double)W[(size_t)o * IC + i] * x[i];
					mag += fabs((double)W[(size_t)o * IC + i] * x[i]);
				}
				/* float summation error is bounded by ~IC * eps * sum |terms| */
				double err = fabs(y[o] - ref) / (mag * 1e-6 + 1e-30);
				if (err > worst) {
					worst = err;
					snprintf(where, sizeof where, "threads %d, %dx%d, row %d: %g vs %g", threads[t], OC, IC, o,
						 y[o], ref);
				}
			}
			free(W);
			free(x);
			free(y);
		}
	}
	CHECK(worst < 1, "gemv_f32_matches_double_sum", "error %.3g of 1e-6 x sum|terms| at %s", worst, where);

	/* batches: every tile shape, the split by vectors (small matrices) and by
	 * rows (large ones), and strided rows give each vector's lone product, bit
	 * for bit */
	static const int bshapes[][3] = { { 1, 1, 5 }, { 7, 9, 13 }, { 5, 64, 32 }, { 64, 172, 33 }, { 37, 23, 4 },
					  { 300, 333, 11 }, { 600, 1030, 9 } };
	int batch_bad = 0;
	char bwhy[160] = "";
	for (size_t t = 0; t < 3; t++) {
		rl_parallel_set_threads(threads[t]);
		for (size_t s = 0; s < sizeof bshapes / sizeof *bshapes; s++) {
			int OC = bshapes[s][0], IC = bshapes[s][1], N = bshapes[s][2];
			size_t ldx = (size_t)IC + 3, ldy = (size_t)OC + 1;
			float *W = malloc((size_t)OC * IC * sizeof(float)), *X = malloc(N * ldx * sizeof(float));
			float *Y = malloc(N * ldy * sizeof(float)), *y = malloc((size_t)OC * sizeof(float));
			for (size_t i = 0; i < (size_t)OC * IC; i++)
				W[i] = frand();
			for (size_t i = 0; i < N * ldx; i++)
				X[i] = frand();
			for (int n = 1; n <= N; n += N > 4 ? N / 3 : 1) {
				rl_gemm_rows_f32(OC, IC, W, n, X, ldx, Y, ldy);
				for (int v = 0; v < n; v++) {
					rl_gemv_f32(OC, IC, W, X + v * ldx, y);
					if (memcmp(y, Y + v * ldy, (size_t)OC * sizeof(float)) && !batch_bad++)
						snprintf(bwhy, sizeof bwhy, "threads %d, %dx%d, vector %d of %d", threads[t], OC,
							 IC, v, n);
				}
			}
			free(W);
			free(X);
			free(Y);
			free(y);
		}
	}
	CHECK(batch_bad == 0, "gemm_rows_f32_batch_invariant", "a batched output differs from the lone one: %s", bwhy);
	rl_parallel_set_threads(1);
	return t_done();
}
