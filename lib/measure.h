/* measure.h: this machine's limits, measured on the spot, for the ratios that
 * benchmarks and the roofline tool quote (absolute times on shared machines
 * are noise; ratios to limits measured in the same run are not). */
#ifndef RL_MEASURE_H
#define RL_MEASURE_H
#include <stddef.h>

/* Median GFLOP/s (2n^3 flops per call) of cblas_sgemm on n×n row-major f32
 * matrices, over reps calls after one warm-up. OpenBLAS uses whatever thread
 * count the caller set. Returns a negative value after rl_seterr on failure. */
double rl_measure_sgemm_gflops(int n, int reps);

/* Median read bandwidth in GB/s (1e9 bytes/s): a buffer of `bytes` (make it
 * far larger than the caches, e.g. 1 GiB) summed by `threads` pthreads, each
 * reading one contiguous share, over reps passes after one warm-up. Returns a
 * negative value after rl_seterr on failure. */
double rl_measure_read_bandwidth(size_t bytes, int reps, int threads);

/* The median of v[0..n-1], n >= 1; sorts v in place. */
double rl_median(double *v, int n);

#endif
