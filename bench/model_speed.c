/* model_speed: prefill and decode speed of a model, as ratios to this machine's
 * limits measured in the same run (sgemm FLOP/s, memory read bandwidth).
 * usage: model_speed [-t N] [--tokens N] [--decode N] [--reps R] [--int8-act] MODEL
 * (--int8-act: the quantized layers take 8-bit activations, quant.h)
 * Prints one line of JSON. */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "measure.h"
#include "model.h"
#include "tool.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int threads = 2, ntok = 512, ndecode = 32, reps = 3, int8_act = 0;
	static const struct option longopts[] = {
		{ "tokens", required_argument, NULL, 'n' }, { "decode", required_argument, NULL, 'd' },
		{ "reps", required_argument, NULL, 'r' }, { "int8-act", no_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "t:", longopts, NULL)) != -1) {
		switch (c) {
		case 't': threads = atoi(optarg); break;
		case 'n': ntok = atoi(optarg); break;
		case 'd': ndecode = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		case 'i': int8_act = 1; break;
		default: return 2;
		}
	}
	if (optind != argc - 1 || threads < 1 || ntok < 1 || ndecode < 1 || reps < 1 || reps > 100)
		errx(2, "usage: model_speed [-t N] [--tokens N] [--decode N] [--reps R] [--int8-act] MODEL");
	rl_set_threads(threads);
	rl_model m;
	if (rl_model_load(argv[optind], NULL, &m))
		errx(1, "%s", rl_err());
	m.int8_act = int8_act;
	const rl_config *cf = &m.cfg;
	int V = cf->vocab_size, ctx = ntok > ndecode + 1 ? ntok : ndecode + 1;
	/* FLOPs of a prefill of ntok tokens: 2 per weight of every matrix per token, plus causal attention */
	double linear = 0, weight_bytes = 0;
	for (int i = 0; i < m.ntensors; i++)
		if (m.tensors[i].ndim == 2 && &m.tensors[i] != m.token_embd)
			linear += (double)m.tensors[i].shape[0] * m.tensors[i].shape[1];
	if (cf->tied_embeddings)
		linear += (double)m.output->shape[0] * m.output->shape[1];
	for (int i = 0; i < m.ntensors; i++)
		if (m.tensors[i].ndim == 2 && &m.tensors[i] != m.token_embd)
			weight_bytes += (double)m.tensors[i].bytes;
	if (cf->tied_embeddings)
		weight_bytes += (double)m.output->bytes;
	double qd = (double)cf->n_heads * cf->head_dim;
	double flops = 2.0 * linear * ntok + 4.0 * cf->n_layers * qd * ntok * (ntok + 1) / 2.0;

	int *tokens = malloc((size_t)ctx * sizeof(int));
	for (int i = 0; i < ctx; i++)
		tokens[i] = (int)((i * 7919u + 13u) % (unsigned)V);
	float *logits = malloc((size_t)ntok * V * sizeof(float));
	rl_forward *f = rl_forward_new(&m, ntok, ctx);
	if (!f || !logits)
		errx(1, "out of memory");
	/* Each repetition of prefill is followed by an sgemm measurement, and each of
	 * decode by a bandwidth one: a shared machine's speed drifts, so the ratios are
	 * taken pairwise, then their median. */
	double t_prefill[100], t_decode[100], r_prefill[100], r_decode[100], sg[100], bw[100];
	rl_seq s = { .ntok = ntok, .tokens = tokens };
	rl_forward_run(f, NULL, 1, &s, logits); /* warm-up */
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		if (rl_forward_run(f, NULL, 1, &s, logits))
			errx(1, "%s", rl_err());
		t_prefill[r] = now() - t0;
		sg[r] = rl_measure_sgemm_gflops(2048, 3);
		r_prefill[r] = flops / t_prefill[r] / 1e9 / sg[r];
	}
	rl_forward_free(f);
	/* decode: one token at a time through the KV cache, the first ndecode positions */
	rl_kvcache kv;
	f = rl_forward_new(&m, 1, ctx);
	if (!f || rl_kvcache_init(&kv, &m, 1, ctx))
		errx(1, "%s", rl_err());
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		for (int p = 0; p < ndecode; p++) {
			rl_seq d = { .slot = 0, .pos0 = p, .ntok = 1, .tokens = &tokens[p] };
			if (rl_forward_run(f, &kv, 1, &d, logits))
				errx(1, "%s", rl_err());
		}
		t_decode[r] = (now() - t0) / ndecode;
		bw[r] = rl_measure_read_bandwidth((size_t)1 << 30, 1, threads);
		r_decode[r] = weight_bytes / t_decode[r] / 1e9 / bw[r];
	}
	double tp = rl_median(t_prefill, reps), td = rl_median(t_decode, reps);
	printf("{\"threads\":%d,\"prefill_tokens\":%d,\"prefill_s\":%.4f,\"prefill_tokens_per_s\":%.2f,"
	       "\"prefill_gflops\":%.2f,\"sgemm_gflops\":%.2f,\"prefill_over_sgemm\":%.3f,"
	       "\"decode_tokens_per_s\":%.3f,\"weight_bytes\":%.0f,\"decode_weight_gb_s\":%.2f,\"read_gb_s\":%.2f,\"decode_over_bandwidth\":%.3f}\n",
	       threads, ntok, tp, ntok / tp, flops / tp / 1e9, rl_median(sg, reps), rl_median(r_prefill, reps), 1.0 / td, weight_bytes,
	       weight_bytes / td / 1e9, rl_median(bw, reps), rl_median(r_decode, reps));
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	free(tokens);
	free(logits);
	rl_model_free(&m);
	return 0;
}
