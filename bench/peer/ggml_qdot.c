/* ggml_qdot: ggml's CPU vec_dot over 16 MiB of packed rows of 4096 weights, the
 * protocol of bench/qdot (same activations and rows, thread CPU time, median of
 * R passes after one warm-up; each pass quantizes the activation vector once to
 * the format's vec_dot_type, as ggml's matrix-vector product does, then one
 * vec_dot per row). A peer for `make bench`, built only when GGML_DIR names a
 * ggml source tree with a CPU build (bench/run.sh):
 *   cc -O2 -I$GGML_DIR/include ggml_qdot.c -L$GGML_DIR/build/src -lggml-base -lggml-cpu
 * usage: ggml_qdot [--reps R] [--mib M] TYPE...   (TYPE: q2_K q4_K q4_0 ...)
 * Prints one JSON line per type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int reps = 7, a = 1;
	double mib = 16;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "--reps") && a + 1 < argc)
			reps = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--mib") && a + 1 < argc)
			mib = atof(argv[++a]);
		else
			return fprintf(stderr, "usage: ggml_qdot [--reps R] [--mib M] TYPE...\n"), 2;
	}
	if (reps < 1 || reps > 100 || !(mib > 0 && mib <= 4096))
		return fprintf(stderr, "usage: ggml_qdot [--reps R] [--mib M] TYPE...\n"), 2;
	ggml_cpu_init();
	enum { IC = 4096 };
	float *x = malloc(IC * sizeof(float)), *row = malloc(IC * sizeof(float));
	for (int i = 0; i < IC; i++) {
		x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
		row[i] = (float)((i * 53) % 97 - 48) / 480.0f;
	}
	for (; a < argc; a++) {
		int type = -1;
		for (int t = 0; t < GGML_TYPE_COUNT; t++) {
			const char *name = ggml_type_name((enum ggml_type)t);
			if (name && !strcmp(name, argv[a]))
				type = t;
		}
		const struct ggml_type_traits_cpu *tr = type < 0 ? NULL : ggml_get_type_traits_cpu((enum ggml_type)type);
		const struct ggml_type_traits_cpu *act = tr ? ggml_get_type_traits_cpu(tr->vec_dot_type) : NULL;
		if (!tr || !tr->vec_dot || !act || !act->from_float) {
			fprintf(stderr, "ggml_qdot: %s: not a ggml type with a CPU vec_dot\n", argv[a]);
			return 1;
		}
		size_t rb = ggml_row_size((enum ggml_type)type, IC), xb = ggml_row_size(tr->vec_dot_type, IC);
		int OC = (int)(mib * (1 << 20) / rb);
		unsigned char *W = malloc((size_t)OC * rb), *xq = malloc(xb);
		float *y = malloc((size_t)OC * sizeof(float));
		for (int r = 0; r < OC; r++) {
			row[r % IC] += 0.001f;
			ggml_quantize_chunk((enum ggml_type)type, row, W + (size_t)r * rb, 0, 1, IC, NULL);
		}
		double rate[100];
		for (int k = 0; k <= reps; k++) {
			double t0 = now();
			act->from_float(x, xq, IC);
			for (int r = 0; r < OC; r++)
				tr->vec_dot(IC, &y[r], 0, W + (size_t)r * rb, 0, xq, 0, 1);
			double dt = now() - t0;
			if (k > 0)
				rate[k - 1] = (double)OC * IC / (dt > 0 ? dt : 1e-9);
		}
		qsort(rate, (size_t)reps, sizeof *rate, cmp);
		double med = reps % 2 ? rate[reps / 2] : (rate[reps / 2 - 1] + rate[reps / 2]) / 2;
		printf("{\"format\":\"%s\",\"weights_per_s\":%.4g,\"bytes_per_s\":%.4g}\n", argv[a], med, med * rb / IC);
		fflush(stdout);
		free(W);
		free(xq);
		free(y);
	}
	free(x);
	free(row);
	return 0;
}
