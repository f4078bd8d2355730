/* teacher-gen: samples sequences from a teacher model and records, for every
 * generated position, the teacher's top-k logits and logsumexp (a samples
 * stream, tstream(5)), so distillation never needs the teacher itself. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "model.h"
#include "sample.h"
#include "stream.h"
#include "tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: teacher-gen [-n N] [--seed S] [-k K] [--logits f16|f32] [--temp T] [--top-p P]\n"
		"                   [--top-k K] [--min-len N] [--max-len N] [--start bos|qat] [--qat-greedy N]\n"
		"                   [--kd-temp T] [--shard I/N] [-b BATCH] [-t N] [-o FILE] MODEL\n"
		"Writes a samples stream to FILE (atomically) or stdout.\n");
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
	int active;
	uint64_t id;
	rl_rng rng;
	int *tokens, len, rows, greedy_left;
	int32_t *tk_ids;
	unsigned char *tk_logits;
	float *lse, *lse_tau;
} slot;

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end || v < lo || v > hi)
		errx(2, "%s %s: not an integer from %ld to %ld", opt, s, lo, hi);
	return v;
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == 0 || *end || !(v >= lo && v <= hi))
		errx(2, "%s %s: not a number from %g to %g", opt, s, lo, hi);
	return v;
}

int main(int argc, char **argv)
{
	rl_tool_init();
	long n = 100, k = 64, min_len = 0, max_len = 256, qat_greedy = 3, batch = 32, shard_i = 0, shard_n = 1;
	unsigned long long seed = 1;
	double temp = 1.0, top_p = 1.0, kd_temp = 0;
	long sample_top_k = 0;
	int threads = 0, qat = 0, f32_logits = 0;
	const char *out = NULL;
	static const struct option longopts[] = {
		{ "seed", required_argument, NULL, 'S' }, { "logits", required_argument, NULL, 'L' },
		{ "temp", required_argument, NULL, 'T' }, { "top-p", required_argument, NULL, 'P' },
		{ "top-k", required_argument, NULL, 'K' }, { "min-len", required_argument, NULL, 'm' },
		{ "max-len", required_argument, NULL, 'M' }, { "start", required_argument, NULL, 's' },
		{ "qat-greedy", required_argument, NULL, 'g' }, { "kd-temp", required_argument, NULL, 'D' },
		{ "shard", required_argument, NULL, 'H' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "n:k:b:t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': n = parse_long("-n", optarg, 1, 1L << 40); break;
		case 'k': k = parse_long("-k", optarg, 0, 1 << 24); break;
		case 'b': batch = parse_long("-b", optarg, 1, 4096); break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'o': out = optarg; break;
		case 'S':
			if (rl_parse_seed(optarg, &seed))
				errx(2, "--seed %s: not a non-negative integer", optarg);
			break;
		case 'L':
			if (strcmp(optarg, "f16") && strcmp(optarg, "f32"))
				errx(2, "--logits %s: f16 or f32", optarg);
			f32_logits = strcmp(optarg, "f32") == 0;
			break;
		case 'T': temp = parse_double("--temp", optarg, 0, 100); break;
		case 'P': top_p = parse_double("--top-p", optarg, 1e-6, 1); break;
		case 'K': sample_top_k = parse_long("--top-k", optarg, 0, 1 << 24); break;
		case 'm': min_len = parse_long("--min-len", optarg, 0, 1 << 20); break;
		case 'M': max_len = parse_long("--max-len", optarg, 2, 1 << 20); break;
		case 's':
			if (strcmp(optarg, "bos") && strcmp(optarg, "qat"))
				errx(2, "--start %s: bos or qat", optarg);
			qat = strcmp(optarg, "qat") == 0;
			break;
		case 'g': qat_greedy = parse_long("--qat-greedy", optarg, 0, 1 << 20); break;
		case 'D': kd_temp = parse_double("--kd-temp", optarg, 0.01, 100); break;
		case 'H': {
			int used = 0;
			if (sscanf(optarg, "%ld/%ld%n", &shard_i, &shard_n, &used) != 2 || optarg[used] || shard_n < 1 ||
			    shard_i < 0 || shard_i >= shard_n)
				errx(2, "--shard %s: I/N with 0 <= I < N", optarg);
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (!out && isatty(1))
		errx(2, "refusing to write a binary stream to a terminal: use -o FILE or a pipe");
	rl_set_threads(threads);
	rl_model m;
	if (rl_model_load(argv[optind], NULL, &m))
		errx(1, "%s", rl_err());
	int V = m.cfg.vocab_size, bos = m.tok.bos_id, eos = m.tok.eos_id;
	if (k > V)
		errx(1, "-k %ld: larger than the model's vocabulary of %d (-k 0 records it all)", k, V);
	if (k == 0)
		k = V;
	if (bos < 0)
		errx(1, "%s: the tokenizer has no BOS token to start from", argv[optind]);
	if (max_len > m.cfg.seq_len) {
		warnx("--max-len %ld: longer than the model's context; using %d", max_len, m.cfg.seq_len);
		max_len = m.cfg.seq_len;
	}
	if (min_len > max_len)
		errx(2, "--min-len %ld is longer than --max-len %ld", min_len, max_len);
	size_t esz = f32_logits ? 4 : 2;

	rl_forward *f = rl_forward_new(&m, (int)batch, (int)max_len);
	rl_kvcache kv;
	if (!f || rl_forward_set_batch_invariant(f, 1) || rl_kvcache_init(&kv, &m, (int)batch, (int)max_len))
		errx(1, "%s", rl_err());
	slot *slots = calloc((size_t)batch, sizeof *slots);
	float *logits = malloc((size_t)batch * V * sizeof(float)), *fs = malloc((size_t)V * sizeof(float));
	int *is = malloc((size_t)V * sizeof(int)), *tk = malloc((size_t)k * sizeof(int));
	float *tv = malloc((size_t)k * sizeof(float));
	rl_seq *seqs = malloc((size_t)batch * sizeof *seqs);
	int *which = malloc((size_t)batch * sizeof(int));
	if (!slots || !logits || !fs || !is || !tk || !tv || !seqs || !which)
		errx(1, "out of memory");
	for (long b = 0; b < batch; b++) {
		slot *s = &slots[b];
		s->tokens = malloc((size_t)max_len * sizeof(int));
		s->tk_ids = malloc((size_t)max_len * k * sizeof(int32_t));
		s->tk_logits = malloc((size_t)max_len * k * esz);
		s->lse = malloc((size_t)max_len * sizeof(float));
		s->lse_tau = malloc((size_t)max_len * sizeof(float));
		if (!s->tokens || !s->tk_ids || !s->tk_logits || !s->lse || !s->lse_tau)
			errx(1, "out of memory for %ld slots of %ld tokens x top-%ld", batch, max_len, k);
	}

	rl_writer *w = rl_writer_open(out);
	if (!w)
		errx(1, "%s", rl_err());
	msgpack_packer *pk = rl_writer_packer(w);
	char producer[64];
	snprintf(producer, sizeof producer, "teacher-gen %s", RL_VERSION);
	rl_pack_header(pk, "samples", producer, 11 + (kd_temp > 0));
	rl_pack_kv_str(pk, "teacher", m.source);
	rl_pack_kv_int(pk, "vocab_size", V);
	rl_pack_kv_int(pk, "topk", k == V ? 0 : k);
	rl_pack_kv_str(pk, "logit_dtype", f32_logits ? "f32" : "f16");
	rl_pack_kv_int(pk, "seed", (int64_t)seed);
	rl_pack_kv_str(pk, "start", qat ? "qat" : "bos");
	rl_pack_kv_double(pk, "temperature", temp);
	rl_pack_kv_double(pk, "top_p", top_p);
	rl_pack_kv_int(pk, "top_k_sampling", sample_top_k);
	rl_pack_kv_int(pk, "min_len", min_len);
	rl_pack_kv_int(pk, "max_len", max_len);
	if (kd_temp > 0)
		rl_pack_kv_double(pk, "kd_temp", kd_temp);
	rl_writer_message_done(w);

	/* global ids i, i+n, i+2n, ... below N belong to shard i/n */
	uint64_t next = (uint64_t)shard_i, total = n > shard_i ? (uint64_t)((n - shard_i + shard_n - 1) / shard_n) : 0;
	uint64_t done = 0, tokens_out = 0, bytes_before = 0;
	double t0 = now(), last = t0;
	int tty = rl_stderr_tty(), failed = 0;
	while (!failed) {
		for (long b = 0; b < batch; b++)
			if (!slots[b].active && next < (uint64_t)n) {
				slot *s = &slots[b];
				s->active = 1;
				s->id = next;
				next += (uint64_t)shard_n;
				rl_rng_seed(&s->rng, seed, s->id);
				s->tokens[0] = bos;
				s->len = 1;
				s->rows = 0;
				s->greedy_left = qat ? (int)qat_greedy : 0;
			}
		int na = 0;
		for (long b = 0; b < batch; b++)
			if (slots[b].active) {
				slot *s = &slots[b];
				seqs[na] = (rl_seq){ .slot = (int)b, .pos0 = s->len - 1, .ntok = 1, .tokens = &s->tokens[s->len - 1] };
				which[na++] = (int)b;
			}
		if (na == 0)
			break;
		if (rl_forward_run(f, &kv, na, seqs, logits))
			errx(1, "%s", rl_err());
		for (int a = 0; a < na; a++) {
			slot *s = &slots[which[a]];
			const float *z = logits + (size_t)a * V;
			/* the row: the teacher's distribution over tokens[len], given tokens[0..len-1] */
			rl_topk(z, V, (int)k, tk, tv);
			for (long i = 0; i < k; i++) {
				s->tk_ids[(size_t)s->rows * k + i] = tk[i];
				if (f32_logits)
					memcpy(s->tk_logits + ((size_t)s->rows * k + i) * 4, &tv[i], 4);
				else {
					uint16_t h = rl_f32_to_f16(tv[i]);
					memcpy(s->tk_logits + ((size_t)s->rows * k + i) * 2, &h, 2);
				}
			}
			s->lse[s->rows] = rl_logsumexp_scaled(z, V, 1.0f);
			if (kd_temp > 0)
				s->lse_tau[s->rows] = rl_logsumexp_scaled(z, V, (float)(1.0 / kd_temp));
			s->rows++;
			int tok;
			if (qat && s->len == 1) {
				tok = (int)(rl_rng_next(&s->rng) % (uint64_t)V); /* LLM-QAT: a random first token */
			} else if (s->greedy_left > 0) {
				tok = tk[0];
				s->greedy_left--;
			} else {
				rl_sampler sp = { (float)temp, (int)sample_top_k, (float)top_p,
						  s->len + 1 < min_len ? eos : -1 };
				tok = rl_sample(z, V, &sp, &s->rng, is, fs);
			}
			s->tokens[s->len++] = tok;
			/* EOS ends a sample; so does BOS, which llama2.c models emit between stories */
			if (tok == eos || tok == bos || s->len >= max_len) {
				size_t R = (size_t)s->rows;
				msgpack_pack_map(pk, 7 + (kd_temp > 0));
				rl_pack_kv_str(pk, "t", "sample");
				rl_pack_kv_int(pk, "id", (int64_t)s->id);
				int32_t *t32 = (int32_t *)is;
				for (int i = 0; i < s->len; i++)
					t32[i] = s->tokens[i];
				rl_pack_kv_bin(pk, "tokens", t32, (size_t)s->len * 4);
				rl_pack_kv_int(pk, "prompt_len", 1);
				rl_pack_kv_bin(pk, "topk_ids", s->tk_ids, R * k * 4);
				rl_pack_kv_bin(pk, "topk_logits", s->tk_logits, R * k * esz);
				rl_pack_kv_bin(pk, "logsumexp", s->lse, R * 4);
				if (kd_temp > 0)
					rl_pack_kv_bin(pk, "logsumexp_tau", s->lse_tau, R * 4);
				rl_writer_message_done(w);
				if (rl_writer_flush(w)) {
					failed = 1;
					break;
				}
				s->active = 0;
				done++;
				tokens_out += (uint64_t)s->rows; /* generated (and recorded) tokens, BOS not counted */
			}
		}
		double t = now();
		if (t - last >= (tty ? 0.5 : 10.0) || (done == total && tty)) {
			last = t;
			double rate = (double)tokens_out / (t - t0 + 1e-9);
			double eta = done ? (t - t0) / (double)done * (double)(total - done) : 0;
			fprintf(stderr, "%steacher-gen: %llu/%llu samples, %.0f tokens/s, ETA %.0f s%s", tty ? "\r" : "",
				(unsigned long long)done, (unsigned long long)total, rate, eta, tty ? "  " : "\n");
		}
	}
	if (tty)
		fputc('\n', stderr);
	(void)bytes_before;
	uint64_t written = 0;
	if (failed || rl_write_end(w) || (written = rl_writer_bytes(w), rl_writer_commit(w))) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", rl_err());
		rl_writer_abort(w);
		errx(1, "%s: %s", out ? out : "<stdout>", msg);
	}
	double t = now() - t0;
	uint64_t bytes = written;
	fprintf(stderr, "teacher-gen: %llu samples, %llu generated tokens in %.1f s (%.0f tokens/s), %.0f bytes per sample -> %s\n",
		(unsigned long long)done, (unsigned long long)tokens_out, t, (double)tokens_out / (t + 1e-9),
		done ? (double)bytes / (double)done : 0.0, out ? out : "stdout");
	for (long b = 0; b < batch; b++) {
		free(slots[b].tokens);
		free(slots[b].tk_ids);
		free(slots[b].tk_logits);
		free(slots[b].lse);
		free(slots[b].lse_tau);
	}
	free(slots);
	free(logits);
	free(fs);
	free(is);
	free(tk);
	free(tv);
	free(seqs);
	free(which);
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	rl_model_free(&m);
	return 0;
}
