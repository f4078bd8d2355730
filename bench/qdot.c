/* qdot: single-thread rate of the fused dequantize-dot kernels, in weights per
 * second over 16 MiB (or M) of packed rows of 4096 (or IC) weights, for each 2- and 4-bit
 * group format, ggml's block formats (q2_K, q4_0, q4_K) and q8g32 (the default
 * classifier), with f32 activations (the exact default) and with 8-bit ones;
 * f32 rows (our gemv) for scale. Where the CPU runs AVX-512, the f32 rate of the
 * AVX2 kernels too (weights_per_s_avx2; 0 elsewhere).
 * usage: qdot [--reps R] [--mib M] [--ic IC] [--wall] [FORMAT...]. Prints one JSON line per format.
 * (--ic 1024: the rows of Qwen3-0.6B's attention and ffn_gate/ffn_up, where each
 * row's fixed costs weigh more than in rows of 4096.)
 * Times are the thread's CPU time (a shared machine's other work then costs
 * little but cache), or with --wall the elapsed time; medians of R passes. */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "measure.h"
#include "parallel.h"
#include "quant.h"

static int wall;

static double now(void)
{
	struct timespec ts;
	clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int reps = 7, a = 1, IC = 4096;
	double mib = 16;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc)
			reps = atoi(argv[++a]);
		else if (strcmp(argv[a], "--mib") == 0 && a + 1 < argc)
			mib = atof(argv[++a]);
		else if (strcmp(argv[a], "--ic") == 0 && a + 1 < argc)
			IC = atoi(argv[++a]);
		else if (strcmp(argv[a], "--wall") == 0)
			wall = 1;
		else
			errx(2, "usage: qdot [--reps R] [--mib M] [--ic IC] [--wall] [FORMAT...]");
	}
	if (reps < 1 || reps > 100 || !(mib >= 0.01 && mib <= 4096) || IC < 256 || IC > (1 << 20) || IC % 256)
		errx(2, "usage: qdot [--reps R] [--mib M] [--ic IC (a multiple of 256)] [--wall] [FORMAT...]");
	rl_parallel_set_threads(1);
	rl_dtype fmts[RL_NDTYPES] = { RL_F32, RL_Q2G32, RL_Q2G64, RL_Q2G128, RL_Q2G256, RL_Q2_K,
				      RL_Q4G32, RL_Q4G64, RL_Q4G128, RL_Q4G256, RL_Q4_0, RL_Q4_K, RL_Q8G32 };
	int nf = 13;
	if (a < argc) {
		nf = 0;
		for (; a < argc && nf < RL_NDTYPES; a++) {
			int t = rl_dtype_from_name(argv[a], strlen(argv[a]));
			if (t < 0 || (t != RL_F32 && !rl_dtype_fused((rl_dtype)t)))
				errx(2, "%s: not a format with a fused kernel", argv[a]);
			fmts[nf++] = (rl_dtype)t;
		}
	}
	/* x and the scratch 64-byte aligned, as the tools allocate them (forward.c):
	 * with malloc's 16, loads of x split cache lines, which cost the 2-bit f32
	 * kernel some 8% here */
	float *x = NULL, *row = malloc(IC * sizeof(float)), *scratch = NULL;
	if (posix_memalign((void **)&x, 64, IC * sizeof(float)) ||
	    posix_memalign((void **)&scratch, 64, rl_qgemv_scratch(IC, 1) * sizeof(float)))
		errx(1, "out of memory");
	for (int i = 0; i < IC; i++) {
		x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
		row[i] = (float)((i * 53) % 97 - 48) / 480.0f;
	}
	for (int f = 0; f < nf; f++) {
		rl_dtype dt = fmts[f];
		size_t rb = rl_row_bytes(dt, IC);
		int OC = (int)(mib * (1 << 20) / rb);
		unsigned char *W = malloc((size_t)OC * rb);
		float *y = malloc((size_t)OC * sizeof(float));
		for (int r = 0; r < OC; r++) {
			row[r % IC] += 0.001f;
			rl_dtypes[dt].from_float(row, W + (size_t)r * rb, IC);
		}
		/* f32 activations with the widest kernels, the same with AVX2's where
		 * the widest are AVX-512's, and 8-bit activations: each pass runs all
		 * three in turn, so that their ratios are taken side by side */
		int modes = dt == RL_F32 ? 1 : 3;
		double rate[3][100], med[3] = { 0, 0, 0 };
		for (int k = 0; k <= reps; k++)
			for (int m = 0; m < modes; m++) {
				if (m == 1 && !rl_cpu_avx512())
					continue;
				rl_qgemv_select(m == 1 ? 1 : -1);
				double t0 = now();
				if (dt == RL_F32)
					rl_gemv_f32(OC, IC, (const float *)W, x, y);
				else
					rl_qgemm_rows_act(dt, OC, IC, W, 1, x, IC, y, (size_t)OC, scratch,
							  m == 2 ? RL_ACT_INT8 : RL_ACT_F32);
				double dt_s = now() - t0;
				if (k > 0)
					rate[m][k - 1] = (double)OC * IC / (dt_s > 0 ? dt_s : 1e-9);
			}
		for (int m = 0; m < modes; m++)
			if (m != 1 || rl_cpu_avx512())
				med[m] = rl_median(rate[m], reps);
		printf("{\"format\":\"%s\",\"weights_per_s\":%.4g,\"weights_per_s_int8\":%.4g,\"bytes_per_s\":%.4g,"
		       "\"weights_per_s_avx2\":%.4g}\n",
		       rl_dtypes[dt].name, med[0], med[2], med[0] * rb / IC, med[1]);
		fflush(stdout);
		free(W);
		free(y);
	}
	free(x);
	free(row);
	free(scratch);
	return 0;
}
