/* model_speed: prefill and decode speed of a model, as ratios to this machine's
 * limits measured in the same run (sgemm FLOP/s, memory read bandwidth).
 * usage: model_speed [-t N] [--tokens N] [--decode N] [--reps R] [--int8-act] MODEL [MODEL2]
 * (--int8-act: the quantized layers take 8-bit activations, quant.h)
 * With MODEL2, decode only, of the two models in turn in each repetition (the
 * order alternating), so that both see the same machine: the speed ratio
 * MODEL2 / MODEL is the median of each repetition's, against the ratio of the
 * weight bytes each reads per token.
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

/* A model loaded for decode, and the weight bytes it reads per token */
typedef struct {
	rl_model m;
	rl_forward *f;
	rl_kvcache kv;
	double weight_bytes;
} decoder;

static void load(decoder *d, const char *path, int int8_act)
{
	if (rl_model_load(path, NULL, &d->m))
		errx(1, "%s", rl_err());
	d->m.int8_act = int8_act;
	d->weight_bytes = 0;
	for (int i = 0; i < d->m.ntensors; i++)
		if (d->m.tensors[i].ndim == 2 && &d->m.tensors[i] != d->m.token_embd)
			d->weight_bytes += (double)d->m.tensors[i].bytes;
	if (d->m.cfg.tied_embeddings)
		d->weight_bytes += (double)d->m.output->bytes;
}

static void decode_start(decoder *d, int ctx)
{
	d->f = rl_forward_new(&d->m, 1, ctx);
	if (!d->f || rl_kvcache_init(&d->kv, &d->m, 1, ctx))
		errx(1, "%s", rl_err());
}

static void decode_end(decoder *d)
{
	rl_kvcache_free(&d->kv);
	rl_forward_free(d->f);
	rl_model_free(&d->m);
}

/* seconds per token of decoding tokens[0..n) from position 0 */
static double decode(decoder *d, const int *tokens, int n, float *logits)
{
	double t0 = now();
	for (int p = 0; p < n; p++) {
		rl_seq s = { .slot = 0, .pos0 = p, .ntok = 1, .tokens = &tokens[p] };
		if (rl_forward_run(d->f, &d->kv, 1, &s, logits))
			errx(1, "%s", rl_err());
	}
	return (now() - t0) / n;
}

static int *token_ids(int n, int V)
{
	int *tokens = malloc((size_t)n * sizeof(int));
	if (!tokens)
		errx(1, "out of memory");
	for (int i = 0; i < n; i++)
		tokens[i] = (int)((i * 7919u + 13u) % (unsigned)V);
	return tokens;
}

/* Decode of two models in turn; each repetition is followed by a bandwidth
 * measurement, and every ratio is taken within a repetition, then its median. */
static void compare(const char *pa, const char *pb, int ndecode, int reps, int int8_act, int threads)
{
	decoder d[2];
	load(&d[0], pa, int8_act);
	load(&d[1], pb, int8_act);
	int va = d[0].m.cfg.vocab_size, vb = d[1].m.cfg.vocab_size;
	int *tokens = token_ids(ndecode, va < vb ? va : vb);
	float *logits = malloc((size_t)(va > vb ? va : vb) * sizeof(float));
	if (!logits)
		errx(1, "out of memory");
	double t[2][100], over[2][100], ratio[100], bw[100];
	for (int i = 0; i < 2; i++) {
		decode_start(&d[i], ndecode + 1);
		decode(&d[i], tokens, 1, logits); /* warm-up */
	}
	for (int r = 0; r < reps; r++) {
		for (int k = 0; k < 2; k++) {
			int i = r % 2 ? 1 - k : k;
			t[i][r] = decode(&d[i], tokens, ndecode, logits);
		}
		bw[r] = rl_measure_read_bandwidth((size_t)1 << 30, 1, threads);
		ratio[r] = t[0][r] / t[1][r];
		for (int i = 0; i < 2; i++)
			over[i][r] = d[i].weight_bytes / t[i][r] / 1e9 / bw[r];
	}
	printf("{\"threads\":%d,\"a_decode_tokens_per_s\":%.3f,\"b_decode_tokens_per_s\":%.3f,"
	       "\"a_weight_bytes\":%.0f,\"b_weight_bytes\":%.0f,\"speed_ratio\":%.3f,\"bytes_ratio\":%.3f,"
	       "\"read_gb_s\":%.2f,\"a_decode_over_bandwidth\":%.3f,\"b_decode_over_bandwidth\":%.3f}\n",
	       threads, 1.0 / rl_median(t[0], reps), 1.0 / rl_median(t[1], reps), d[0].weight_bytes, d[1].weight_bytes,
	       rl_median(ratio, reps), d[0].weight_bytes / d[1].weight_bytes, rl_median(bw, reps),
	       rl_median(over[0], reps), rl_median(over[1], reps));
	for (int i = 0; i < 2; i++)
		decode_end(&d[i]);
	free(tokens);
	free(logits);
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
	int nmodels = argc - optind;
	if (nmodels < 1 || nmodels > 2 || threads < 1 || ntok < 1 || ndecode < 1 || reps < 1 || reps > 100)
		errx(2, "usage: model_speed [-t N] [--tokens N] [--decode N] [--reps R] [--int8-act] MODEL [MODEL2]");
	rl_set_threads(threads);
	if (nmodels == 2) {
		compare(argv[optind], argv[optind + 1], ndecode, reps, int8_act, threads);
		return 0;
	}
	decoder d;
	load(&d, argv[optind], int8_act);
	rl_model *m = &d.m;
	const rl_config *cf = &m->cfg;
	int V = cf->vocab_size, ctx = ntok > ndecode + 1 ? ntok : ndecode + 1;
	/* FLOPs of a prefill of ntok tokens: 2 per weight of every matrix per token, plus causal attention */
	double linear = 0;
	for (int i = 0; i < m->ntensors; i++)
		if (m->tensors[i].ndim == 2 && &m->tensors[i] != m->token_embd)
			linear += (double)m->tensors[i].shape[0] * m->tensors[i].shape[1];
	if (cf->tied_embeddings)
		linear += (double)m->output->shape[0] * m->output->shape[1];
	double qd = (double)cf->n_heads * cf->head_dim;
	double flops = 2.0 * linear * ntok + 4.0 * cf->n_layers * qd * ntok * (ntok + 1) / 2.0;

	int *tokens = token_ids(ctx, V);
	float *logits = malloc((size_t)ntok * V * sizeof(float));
	rl_forward *f = rl_forward_new(m, ntok, ctx);
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
	decode_start(&d, ctx);
	for (int r = 0; r < reps; r++) {
		t_decode[r] = decode(&d, tokens, ndecode, logits);
		bw[r] = rl_measure_read_bandwidth((size_t)1 << 30, 1, threads);
		r_decode[r] = d.weight_bytes / t_decode[r] / 1e9 / bw[r];
	}
	double tp = rl_median(t_prefill, reps), td = rl_median(t_decode, reps);
	printf("{\"threads\":%d,\"prefill_tokens\":%d,\"prefill_s\":%.4f,\"prefill_tokens_per_s\":%.2f,"
	       "\"prefill_gflops\":%.2f,\"sgemm_gflops\":%.2f,\"prefill_over_sgemm\":%.3f,"
	       "\"decode_tokens_per_s\":%.3f,\"weight_bytes\":%.0f,\"decode_weight_gb_s\":%.2f,\"read_gb_s\":%.2f,\"decode_over_bandwidth\":%.3f}\n",
	       threads, ntok, tp, ntok / tp, flops / tp / 1e9, rl_median(sg, reps), rl_median(r_prefill, reps), 1.0 / td,
	       d.weight_bytes, d.weight_bytes / td / 1e9, rl_median(bw, reps), rl_median(r_decode, reps));
	decode_end(&d);
	free(tokens);
	free(logits);
	return 0;
}
