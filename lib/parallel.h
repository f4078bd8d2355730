/* parallel.h: the toolkit's own worker threads, for the loops OpenBLAS does not run
 * (matrix-vector products of decode, later the quantized kernels).
 *
 * rl_set_threads (model.h) is the one place that sets the thread count: it sets
 * OpenBLAS's and this pool's together. Workers spin briefly after a loop, so the
 * next one starts without a system call, then sleep.
 * rl_parallel_for is called from one thread at a time; a call from inside a loop
 * body runs serially. */
#ifndef RL_PARALLEL_H
#define RL_PARALLEL_H

#include <stdint.h>

/* Runs fn(arg, begin, end) over [0, n) split into at most rl_parallel_threads()
 * contiguous ranges whose bounds are multiples of grain (except the last end). */
void rl_parallel_for(int64_t n, int64_t grain, void (*fn)(void *arg, int64_t begin, int64_t end), void *arg);
/* As rl_parallel_for, with each thread's contiguous share of [0, n) cut into up
 * to pieces ranges (bounds multiples of grain), which the thread runs in order
 * unless another, done with its own share, takes one first: for decode's
 * products, whose threads can run at unequal speeds (a core shared with other
 * work, a laptop's efficiency cores), while each thread still streams one
 * stretch of the matrix. */
void rl_parallel_for_pieces(int64_t n, int64_t grain, int pieces, void (*fn)(void *arg, int64_t begin, int64_t end),
			    void *arg);
/* Runs fn(arg, i, i + 1) for every i in [0, n), each claimed on its own by
 * whichever thread is free (beyond 65,535 items, in runs of consecutive ones):
 * for a few heavy items, where a thread that is descheduled on a busy machine
 * should hold up no more than the one it runs. */
void rl_parallel_each(int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end), void *arg);

/* n >= 1; starts or stops workers as needed. */
void rl_parallel_set_threads(int n);
/* 1 when the CPU (and OS) run AVX2 with FMA and F16C, what our x86 kernels use. */
int rl_cpu_avx2(void);
/* 1 when it also runs AVX-512F (the OS saving the wide registers), what the
 * widest kernels use. */
int rl_cpu_avx512(void);
int rl_parallel_threads(void);

/* y (OC) = W (OC, IC) . x (IC), all f32, W row-major; threads split the rows. */
void rl_gemv_f32(int OC, int IC, const float *W, const float *x, float *y);
/* Y[n] (OC) = W . X[n] (IC) for N vectors (rows of X and Y, strides ldx, ldy):
 * each output bit for bit what rl_gemv_f32 gives for that vector alone, so a
 * result does not depend on the batch it was computed in. */
void rl_gemm_rows_f32(int OC, int IC, const float *W, int N, const float *X, size_t ldx, float *Y, size_t ldy);

/* y[r] = W row r . x for rows [r0, r1), on the calling thread: the per-row
 * arithmetic of rl_gemv_f32. */
void rl_dot_rows_f32(const float *W, const float *x, float *y, int64_t r0, int64_t r1, int IC);
/* Y[n][r] = W row r . X row n for rows [r0, r1) of W (row stride ldw) and the
 * N vectors, on the calling thread, each output as rl_gemv_f32 computes it. */
void rl_gemm_rows_block_f32(const float *W, size_t ldw, int64_t r0, int64_t r1, int N, const float *X, size_t ldx,
			    float *Y, size_t ldy, int IC);

#endif
