/* machine: this machine's limits, the denominators of the benchmark ratios.
 * usage: machine [-t N] [-n SIZE] [-r REPS]
 * Prints one line of JSON: cblas_sgemm GFLOP/s on SIZE×SIZE f32 matrices
 * (default 2048) with N OpenBLAS threads, and the read bandwidth in GB/s
 * (1e9 bytes/s) of N threads summing a 1 GiB buffer; medians of REPS (5). */
#include <cblas.h>
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "err.h"
#include "measure.h"

static void usage(FILE *f, int status)
{
	fprintf(f, "usage: machine [-t N] [-n SIZE] [-r REPS]\n");
	exit(status);
}

static int parse_int(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < lo || v > hi)
		return -1;
	return (int)v;
}

int main(int argc, char **argv)
{
	int threads = 2, n = 2048, reps = 5, c;
	while ((c = getopt(argc, argv, "ht:n:r:")) != -1) {
		switch (c) {
		case 'h': usage(stdout, 0); break;
		case 't': threads = parse_int(optarg, 1, 1024); break;
		case 'n': n = parse_int(optarg, 1, 65536); break;
		case 'r': reps = parse_int(optarg, 1, 1000); break;
		default: usage(stderr, 2);
		}
		if (threads < 0 || n < 0 || reps < 0) {
			warnx("-%c %s: not a number in range", c, optarg);
			usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	/* One owner for threads at a time: OpenBLAS for sgemm, then ours for the read. */
	openblas_set_num_threads(threads);
	double gflops = rl_measure_sgemm_gflops(n, reps);
	if (gflops < 0)
		errx(1, "sgemm: %s", rl_err());
	openblas_set_num_threads(1);
	double gbs = rl_measure_read_bandwidth((size_t)1 << 30, reps, threads);
	if (gbs < 0)
		errx(1, "read bandwidth: %s", rl_err());
	printf("{\"threads\":%d,\"sgemm_n\":%d,\"sgemm_gflops\":%.2f,\"read_bytes\":%zu,\"read_gb_s\":%.2f}\n", threads, n,
	       gflops, (size_t)1 << 30, gbs);
	return 0;
}
