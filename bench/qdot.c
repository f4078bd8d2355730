/* qdot: single-thread rate of the fused dequantize-dot kernels, in weights per
 * second over 16 MiB of packed rows of 4096 weights, for each 2- and 4-bit
 * group format and ggml block format (q2_K, q4_0, q4_K; f32 activations), with
 * the same rate for f32 rows (our gemv) for scale.
 * usage: qdot [--reps R]. Prints one JSON line per format. */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "measure.h"
#include "parallel.h"
#include "quant.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int reps = 7;
	if (argc == 3 && strcmp(argv[1], "--reps") == 0)
		reps = atoi(argv[2]);
	if (reps < 1 || reps > 100)
		errx(2, "usage: qdot [--reps R]");
	rl_parallel_set_threads(1);
	enum { IC = 4096 };
	static const rl_dtype fmts[] = { RL_F32, RL_Q2G32, RL_Q2G64, RL_Q2G128, RL_Q2G256, RL_Q2_K,
					 RL_Q4G32, RL_Q4G64, RL_Q4G128, RL_Q4G256, RL_Q4_0, RL_Q4_K };
	float *x = malloc(IC * sizeof(float)), *row = malloc(IC * sizeof(float)), *scratch = malloc(2 * IC * sizeof(float));
	for (int i = 0; i < IC; i++) {
		x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
		row[i] = (float)((i * 53) % 97 - 48) / 480.0f;
	}
	for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
		rl_dtype dt = fmts[f];
		size_t rb = rl_row_bytes(dt, IC);
		int OC = (int)((16u << 20) / rb);
		unsigned char *W = malloc((size_t)OC * rb);
		float *y = malloc((size_t)OC * sizeof(float));
		for (int r = 0; r < OC; r++) {
			row[r % IC] += 0.001f;
			rl_dtypes[dt].from_float(row, W + (size_t)r * rb, IC);
		}
		double rate[100];
		for (int k = 0; k <= reps; k++) {
			double t0 = now();
			if (dt == RL_F32)
				rl_gemv_f32(OC, IC, (const float *)W, x, y);
			else
				rl_qgemv(dt, OC, IC, W, x, y, scratch);
			double dt_s = now() - t0;
			if (k > 0)
				rate[k - 1] = (double)OC * IC / dt_s;
		}
		printf("{\"format\":\"%s\",\"weights_per_s\":%.4g,\"bytes_per_s\":%.4g}\n", rl_dtypes[dt].name,
		       rl_median(rate, reps), rl_median(rate, reps) * rb / IC);
		free(W);
		free(y);
	}
	return 0;
}
