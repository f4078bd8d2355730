/* teacher-gen: samples sequences from a teacher model and records, for every
 * generated position, the teacher's top-k logits and logsumexp (a samples
 * stream, tstream(5)), so distillation never needs the teacher itself. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "eval.h"
#include "json.h"
#include "model.h"
#include "parallel.h"
#include "sample.h"
#include "stream.h"
#include "tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: teacher-gen [-n N] [--seed S] [-k K] [--logits f16|f32] [--temp T] [--top-p P]\n"
		"                   [--top-k K] [--min-len N] [--max-len N] [--start bos|qat] [--qat-greedy N]\n"
		"                   [--start-token TOKEN] [--int8-act]\n"
		"                   [--prompts FILE | --score FILE] [--kd-temp T] [--shard I/N] [-b BATCH]\n"
		"                   [-t N] [-o FILE] MODEL\n"
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
	int plen;          /* prompt tokens (BOS counts) */
	int fed;           /* tokens already in the KV cache */
	int forced;        /* --score: tokens[0..forced) are given, not sampled */
	int32_t *tk_ids;
	unsigned char *tk_logits;
	float *lse, *lse_tau;
	int finished;      /* set by the batch's step; written out in slot order */
} slot;

/* What one thread needs to record and sample positions: the top-k, and the
 * selection's and the sampler's scratch. */
typedef struct {
	int *tk, *is;      /* (k) (V) */
	float *tv, *fs;    /* (k) (V) */
	uint64_t *keys;    /* (V) */
} scratch;

/* One forward pass's sequences, recorded and sampled on the pool. */
typedef struct {
	slot *slots;
	const int *which;      /* (na) slot of each sequence */
	const rl_seq *seqs;    /* (na) */
	const size_t *row0;    /* (na) first logits row of each */
	const float *logits;
	scratch *sc;           /* (parts) */
	int na, parts, V, eos, bos, qat, f32_logits;
	long k, sample_top_k, min_len, max_len;
	double temp, top_p, kd_temp;
} step_job;

/* records the rows of sequence a of the pass and draws its next token */
static void step_sequence(const step_job *j, int a, scratch *sc)
{
	slot *s = &j->slots[j->which[a]];
	int nt = j->seqs[a].ntok, V = j->V;
	long k = j->k;
	/* row r of the logits: the distribution over tokens[fed + r + 1] */
	int r_first = s->forced ? 0 : nt - 1, r_end = s->forced ? nt - 1 : nt;
	for (int r = r_first; r < r_end; r++) {
		const float *z = j->logits + (j->row0[a] + (size_t)r) * V;
		rl_topk(z, V, (int)k, sc->tk, sc->tv, sc->keys);
		memcpy(s->tk_ids + (size_t)s->rows * k, sc->tk, (size_t)k * sizeof(int32_t));
		if (j->f32_logits) {
			memcpy(s->tk_logits + (size_t)s->rows * k * 4, sc->tv, (size_t)k * 4);
		} else {
			for (long i = 0; i < k; i++) {
				uint16_t h = rl_f32_to_f16(sc->tv[i]);
				memcpy(s->tk_logits + ((size_t)s->rows * k + i) * 2, &h, 2);
			}
		}
		s->lse[s->rows] = rl_logsumexp_scaled(z, V, 1.0f);
		if (j->kd_temp > 0)
			s->lse_tau[s->rows] = rl_logsumexp_scaled(z, V, (float)(1.0 / j->kd_temp));
		s->rows++;
	}
	s->fed += nt;
	s->finished = s->forced != 0;
	if (s->forced)
		return;
	const float *z = j->logits + (j->row0[a] + (size_t)nt - 1) * V;
	int tok;
	if (j->qat && s->len == 1) {
		tok = (int)(rl_rng_next(&s->rng) % (uint64_t)V); /* LLM-QAT: a random first token */
	} else if (s->greedy_left > 0) {
		tok = sc->tk[0];
		s->greedy_left--;
	} else {
		rl_sampler sp = { (float)j->temp, (int)j->sample_top_k, (float)j->top_p, s->len + 1 < j->min_len ? j->eos : -1 };
		tok = rl_sample(z, V, &sp, &s->rng, sc->is, sc->fs);
	}
	s->tokens[s->len++] = tok;
	/* EOS ends a sample; so does BOS, which llama2.c models emit between stories */
	s->finished = tok == j->eos || tok == j->bos || s->len >= j->max_len;
}

/* parts [p0, p1): each a contiguous run of the sequences, with its own scratch */
static void step_part(void *arg, int64_t p0, int64_t p1)
{
	const step_job *j = arg;
	for (int64_t p = p0; p < p1; p++)
		for (int64_t a = j->na * p / j->parts; a < j->na * (p + 1) / j->parts; a++)
			step_sequence(j, (int)a, &j->sc[p]);
}

/* A small model's whole step on each thread: part p runs the forward pass of
 * its own run of the sequences in its own workspace, then records and samples
 * them. One hand-off a step instead of one a matrix product, which matters on
 * a busy machine; the numbers are the same, as a sequence's never depend on
 * the batch it shares. */
enum { SPLIT_MAX_BYTES = 64 << 20 };

typedef struct {
	const step_job *sj;
	rl_forward **fw;       /* (parts) */
	rl_kvcache *kv;
	atomic_int failed;
	char err[512];
} split_job;

static void split_part(void *arg, int64_t p0, int64_t p1)
{
	split_job *j = arg;
	const step_job *sj = j->sj;
	for (int64_t p = p0; p < p1; p++) {
		int a0 = (int)(sj->na * p / sj->parts), a1 = (int)(sj->na * (p + 1) / sj->parts);
		if (a0 == a1)
			continue;
		if (rl_forward_run(j->fw[p], j->kv, a1 - a0, sj->seqs + a0, (float *)sj->logits + sj->row0[a0] * sj->V)) {
			if (!atomic_exchange(&j->failed, 1))
				snprintf(j->err, sizeof j->err, "%s", rl_err());
			continue;
		}
		for (int a = a0; a < a1; a++)
			step_sequence(sj, a, &sj->sc[p]);
	}
}

/* Token sequences samples start from: prompts, or pieces of documents to score. */
typedef struct {
	int **ids;
	int *len;
	size_t n;
} starts;

static void starts_add(starts *st, int *ids, int len)
{
	int **a = realloc(st->ids, (st->n + 1) * sizeof *a);
	int *l = a ? realloc(st->len, (st->n + 1) * sizeof *l) : NULL;
	if (!a || !l)
		errx(1, "out of memory");
	st->ids = a;
	st->len = l;
	st->ids[st->n] = ids;
	st->len[st->n++] = len;
}

static void starts_free(starts *st)
{
	for (size_t i = 0; i < st->n; i++)
		free(st->ids[i]);
	free(st->ids);
	free(st->len);
}

/* One prompt a line (blank lines skipped), each encoded with BOS and leaving
 * room for at least one token under max_len. */
static void load_prompts(starts *st, const rl_model *m, const char *path, int max_len)
{
	size_t len;
	char *text = rl_read_file(path, &len);
	if (!text)
		errx(1, "--prompts: %s", rl_err());
	int line = 0;
	for (char *p = text, *end = text + len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *e = nl ? nl : end;
		line++;
		char *a = p, *b = e;
		while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
			b--;
		if (b > a) {
			int *ids;
			size_t n;
			if (rl_encode(&m->tok, a, (size_t)(b - a), 1, 0, &ids, &n))
				errx(1, "%s:%d: %s", path, line, rl_err());
			if (n >= (size_t)max_len)
				errx(1, "%s:%d: a prompt of %zu tokens leaves no room under --max-len %d", path, line, n,
				     max_len);
			starts_add(st, ids, (int)n);
		}
		p = e + (nl != NULL);
	}
	free(text);
	if (st->n == 0)
		errx(1, "%s: no prompts", path);
}

/* Documents by the text rule, encoded with BOS, in pieces of max_len tokens
 * overlapping by one: piece j starts with the last token of piece j-1, its
 * prompt, so every token after BOS has exactly one row. */
static void load_documents(starts *st, const rl_model *m, const char *path, int max_len)
{
	size_t len, ndocs;
	rl_span *docs;
	char *text = rl_read_file(path, &len);
	if (!text)
		errx(1, "--score: %s", rl_err());
	if (rl_split_documents(text, len, &docs, &ndocs))
		errx(1, "--score: %s: %s", path, rl_err());
	for (size_t d = 0; d < ndocs; d++) {
		int *ids;
		size_t n;
		if (rl_encode(&m->tok, docs[d].text, docs[d].len, 1, 0, &ids, &n))
			errx(1, "%s: document %zu: %s", path, d + 1, rl_err());
		for (size_t at = 0; at + 1 < n; at += (size_t)max_len - 1) {
			size_t piece = n - at < (size_t)max_len ? n - at : (size_t)max_len;
			int *p = malloc(piece * sizeof *p);
			if (!p)
				errx(1, "out of memory");
			memcpy(p, ids + at, piece * sizeof *p);
			starts_add(st, p, (int)piece);
		}
		free(ids);
	}
	free(docs);
	free(text);
	if (st->n == 0)
		errx(1, "%s: no document with a token to predict", path);
}

int main(int argc, char **argv)
{
	rl_tool_init();
	long n = 100, k = 64, min_len = 0, max_len = 256, qat_greedy = 3, batch = 32, shard_i = 0, shard_n = 1;
	unsigned long long seed = 1;
	double temp = 1.0, top_p = 1.0, kd_temp = 0;
	long sample_top_k = 0;
	int threads = 0, qat = 0, f32_logits = 0, n_given = 0, int8_act = 0;
	const char *out = NULL, *prompts_path = NULL, *score_path = NULL, *start_token = NULL;
	static const struct option longopts[] = {
		{ "seed", required_argument, NULL, 'S' }, { "logits", required_argument, NULL, 'L' },
		{ "temp", required_argument, NULL, 'T' }, { "top-p", required_argument, NULL, 'P' },
		{ "top-k", required_argument, NULL, 'K' }, { "min-len", required_argument, NULL, 'm' },
		{ "max-len", required_argument, NULL, 'M' }, { "start", required_argument, NULL, 's' },
		{ "qat-greedy", required_argument, NULL, 'g' }, { "kd-temp", required_argument, NULL, 'D' },
		{ "shard", required_argument, NULL, 'H' }, { "help", no_argument, NULL, 'h' },
		{ "prompts", required_argument, NULL, 'R' }, { "score", required_argument, NULL, 'C' },
		{ "start-token", required_argument, NULL, 'B' }, { "int8-act", no_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "n:k:b:t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': n = rl_opt_long("-n", optarg, 1, 1L << 40), n_given = 1; break;
		case 'R': prompts_path = optarg; break;
		case 'B': start_token = optarg; break;
		case 'I': int8_act = 1; break;
		case 'C': score_path = optarg; break;
		case 'k': k = rl_opt_long("-k", optarg, 0, 1 << 24); break;
		case 'b': batch = rl_opt_long("-b", optarg, 1, 4096); break;
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
		case 'T': temp = rl_opt_double("--temp", optarg, 0, 100); break;
		case 'P': top_p = rl_opt_double("--top-p", optarg, 1e-6, 1); break;
		case 'K': sample_top_k = rl_opt_long("--top-k", optarg, 0, 1 << 24); break;
		case 'm': min_len = rl_opt_long("--min-len", optarg, 0, 1 << 20); break;
		case 'M': max_len = rl_opt_long("--max-len", optarg, 2, 1 << 20); break;
		case 's':
			if (strcmp(optarg, "bos") && strcmp(optarg, "qat"))
				errx(2, "--start %s: bos or qat", optarg);
			qat = strcmp(optarg, "qat") == 0;
			break;
		case 'g': qat_greedy = rl_opt_long("--qat-greedy", optarg, 0, 1 << 20); break;
		case 'D': kd_temp = rl_opt_double("--kd-temp", optarg, 0.01, 100); break;
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
	if (prompts_path && score_path)
		errx(2, "--prompts and --score: one or the other");
	if (qat && (prompts_path || score_path))
		errx(2, "--start qat starts from a random token, not from --prompts or --score");
	if (!out && isatty(1))
		errx(2, "refusing to write a binary stream to a terminal: use -o FILE or a pipe");
	rl_set_threads(threads);
	rl_model m;
	if (rl_model_load(argv[optind], NULL, &m))
		errx(1, "%s", rl_err());
	m.int8_act = int8_act;
	int V = m.cfg.vocab_size, bos = m.tok.bos_id, eos = m.tok.eos_id;
	if (k > V)
		errx(1, "-k %ld: larger than the model's vocabulary of %d (-k 0 records it all)", k, V);
	if (k == 0)
		k = V;
	/* what samples start from: BOS, else a token named by --start-token, else a
	 * document separator the vocabulary has (Qwen's "<|endoftext|>") */
	const char *want = start_token ? start_token : bos < 0 ? "<|endoftext|>" : NULL;
	if (want) {
		int id = -1;
		for (int i = 0; i < m.tok.vocab_size && id < 0; i++)
			if (m.tok.piece_len[i] == (int)strlen(want) && !memcmp(m.tok.pieces[i], want, strlen(want)))
				id = i;
		if (id < 0 && start_token)
			errx(1, "--start-token %s: no such token in %s's vocabulary", start_token, argv[optind]);
		if (id >= 0)
			bos = id;
	}
	if (bos < 0 && !prompts_path && !score_path)
		errx(1, "%s: the tokenizer has no BOS token to start from: name one with --start-token, or give --prompts",
		     argv[optind]);
	if (max_len > m.cfg.seq_len) {
		warnx("--max-len %ld: longer than the model's context; using %d", max_len, m.cfg.seq_len);
		max_len = m.cfg.seq_len;
	}
	if (min_len > max_len)
		errx(2, "--min-len %ld is longer than --max-len %ld", min_len, max_len);
	size_t esz = f32_logits ? 4 : 2;

	/* --prompts: one prompt a line; --score: documents by the text rule, cut
	 * into pieces of --max-len tokens that overlap by one, so every token
	 * after BOS is predicted once. Both encoded with BOS. */
	starts st = { 0 };
	if (prompts_path)
		load_prompts(&st, &m, prompts_path, (int)max_len);
	if (score_path)
		load_documents(&st, &m, score_path, (int)max_len);
	if (st.n) {
		if (score_path)
			n = n_given && (uint64_t)n < st.n ? n : (long)st.n; /* -n: the first n pieces */
		else if (!n_given)
			n = (long)st.n; /* one sample a prompt */
	}
	/* a batch holds a whole prompt or piece, or one token of each slot */
	long max_tokens = batch > max_len ? batch : max_len;

	rl_forward *f = rl_forward_new(&m, (int)max_tokens, (int)max_len);
	rl_kvcache kv;
	if (!f || rl_forward_set_batch_invariant(f, 1) || rl_kvcache_init(&kv, &m, (int)batch, (int)max_len))
		errx(1, "%s", rl_err());
	slot *slots = calloc((size_t)batch, sizeof *slots);
	float *logits = malloc((size_t)max_tokens * V * sizeof(float));
	rl_seq *seqs = malloc((size_t)batch * sizeof *seqs);
	int *which = malloc((size_t)batch * sizeof(int));
	size_t *row0 = malloc((size_t)batch * sizeof(size_t));
	int32_t *t32 = malloc((size_t)max_len * sizeof(int32_t));
	/* the weights read a step (the embedding is looked up) decide how threads share it */
	size_t wbytes = 0;
	for (int i = 0; i < m.ntensors; i++)
		if (&m.tensors[i] != m.token_embd)
			wbytes += m.tensors[i].bytes;
	int split = rl_parallel_threads() > 1 && wbytes <= SPLIT_MAX_BYTES;
	/* split: two runs of sequences a thread, so a late thread's are taken by the others */
	int nparts = rl_parallel_threads() * (split ? 2 : 1);
	if (nparts > batch)
		nparts = (int)batch;
	rl_forward **fw = split ? calloc((size_t)nparts, sizeof *fw) : NULL;
	if (split && !fw)
		errx(1, "out of memory");
	for (int p = 0; split && p < nparts; p++)
		if (!(fw[p] = rl_forward_new(&m, (int)max_tokens, (int)max_len)) || rl_forward_set_batch_invariant(fw[p], 1))
			errx(1, "%s", rl_err());
	scratch *sc = calloc((size_t)nparts, sizeof *sc);
	if (!slots || !logits || !seqs || !which || !row0 || !t32 || !sc)
		errx(1, "out of memory");
	for (int p = 0; p < nparts; p++) {
		sc[p].tk = malloc((size_t)k * sizeof(int));
		sc[p].tv = malloc((size_t)k * sizeof(float));
		sc[p].is = malloc((size_t)V * sizeof(int));
		sc[p].fs = malloc((size_t)V * sizeof(float));
		sc[p].keys = malloc((size_t)V * sizeof(uint64_t));
		if (!sc[p].tk || !sc[p].tv || !sc[p].is || !sc[p].fs || !sc[p].keys)
			errx(1, "out of memory");
	}
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
	rl_pack_header(pk, "samples", producer, 12 + (kd_temp > 0));
	rl_pack_kv_str(pk, "teacher", m.source);
	rl_pack_kv_int(pk, "vocab_size", V);
	rl_pack_kv_int(pk, "topk", k == V ? 0 : k);
	rl_pack_kv_str(pk, "logit_dtype", f32_logits ? "f32" : "f16");
	rl_pack_kv_int(pk, "seed", (int64_t)seed);
	rl_pack_kv_str(pk, "start", qat ? "qat" : prompts_path ? "prompts" : score_path ? "score" : "bos");
	rl_pack_kv_int(pk, "start_token", bos);
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
	uint64_t done = 0, tokens_out = 0;
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
				s->rows = 0;
				s->fed = 0;
				s->forced = 0;
				s->greedy_left = qat ? (int)qat_greedy : 0;
				if (st.n) {
					size_t i = score_path ? (size_t)s->id : (size_t)(s->id % st.n);
					memcpy(s->tokens, st.ids[i], (size_t)st.len[i] * sizeof(int));
					s->len = st.len[i];
					s->plen = score_path ? 1 : s->len;
					s->forced = score_path ? s->len : 0;
				} else {
					s->tokens[0] = bos;
					s->len = s->plen = 1;
				}
			}
		/* two forward passes: slots with several tokens to feed (a prompt or a
		 * piece to score), then those with one (the decode step) */
		int any = 0;
		for (int phase = 0; phase < 2 && !failed; phase++) {
			int na = 0;
			long ntok = 0;
			for (long b = 0; b < batch; b++) {
				slot *s = &slots[b];
				int nt = s->len - s->fed;
				if (!s->active || (phase == 0) != (nt > 1) || ntok + nt > max_tokens)
					continue;
				seqs[na] = (rl_seq){ .slot = (int)b, .pos0 = s->fed, .ntok = nt, .tokens = &s->tokens[s->fed] };
				which[na++] = (int)b;
				ntok += nt;
			}
			if (na == 0)
				continue;
			any = 1;
			for (int a = 0, r = 0; a < na; r += seqs[a].ntok, a++)
				row0[a] = (size_t)r;
			step_job sj = { slots, which, seqs, row0, logits, sc, na, na < nparts ? na : nparts, V, eos, bos, qat,
					f32_logits, k, sample_top_k, min_len, max_len, temp, top_p, kd_temp };
			if (split) {
				split_job xj = { .sj = &sj, .fw = fw, .kv = &kv };
				rl_parallel_each(sj.parts, split_part, &xj);
				if (atomic_load(&xj.failed))
					errx(1, "%s", xj.err);
			} else {
				if (rl_forward_run(f, &kv, na, seqs, logits))
					errx(1, "%s", rl_err());
				rl_parallel_for(sj.parts, 1, step_part, &sj);
			}
			/* finished samples go out in slot order, whatever thread made them */
			for (int a = 0; a < na && !failed; a++) {
				slot *s = &slots[which[a]];
				if (!s->finished)
					continue;
				size_t R = (size_t)s->rows;
				msgpack_pack_map(pk, 7 + (kd_temp > 0));
				rl_pack_kv_str(pk, "t", "sample");
				rl_pack_kv_int(pk, "id", (int64_t)s->id);
				for (int i = 0; i < s->len; i++)
					t32[i] = s->tokens[i];
				rl_pack_kv_bin(pk, "tokens", t32, (size_t)s->len * 4);
				rl_pack_kv_int(pk, "prompt_len", s->plen);
				rl_pack_kv_bin(pk, "topk_ids", s->tk_ids, R * k * 4);
				rl_pack_kv_bin(pk, "topk_logits", s->tk_logits, R * k * esz);
				rl_pack_kv_bin(pk, "logsumexp", s->lse, R * 4);
				if (kd_temp > 0)
					rl_pack_kv_bin(pk, "logsumexp_tau", s->lse_tau, R * 4);
				rl_writer_message_done(w);
				if (rl_writer_flush(w))
					failed = 1;
				s->active = 0;
				done++;
				tokens_out += (uint64_t)s->rows; /* recorded positions */
			}
		}
		if (!any)
			break;
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
	for (int p = 0; p < nparts; p++) {
		free(sc[p].tk);
		free(sc[p].tv);
		free(sc[p].is);
		free(sc[p].fs);
		free(sc[p].keys);
	}
	free(sc);
	free(row0);
	free(seqs);
	free(which);
	free(t32);
	starts_free(&st);
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	for (int p = 0; split && p < nparts; p++)
		rl_forward_free(fw[p]);
	free(fw);
	rl_model_free(&m);
	return 0;
}
