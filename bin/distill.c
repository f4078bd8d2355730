/* distill: trains LoRA adapters on a (quantized) student by logit
 * distillation from the teacher's top-k logits in a samples stream
 * (teacher-gen), so the student's output distribution comes back to the
 * teacher's. The samples are held in memory; the teacher is never needed. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "lora.h"
#include "model.h"
#include "optim.h"
#include "parallel.h"
#include "sample.h"
#include "stream.h"
#include "tool.h"
#include "train.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: distill [-r RANK] [--alpha A] [--targets PATTERN] [--lr LR] [--epochs E]\n"
		"               [--batch-tokens N] [--accum K] [--warmup STEPS] [--min-lr-ratio R] [--clip C]\n"
		"               [--weight-decay W] [--tau T] [--ce MIX] [--heldout FRAC] [--eval-every N]\n"
		"               [--seed S] [--init standard|svd|ADAPTER] [--teacher MODEL]\n"
		"               [--checkpoint FILE] [--checkpoint-every N] [--resume FILE]\n"
		"               [--samples FILE] [-t N] [-o ADAPTER] STUDENT\n"
		"Reads a samples stream (--samples FILE, else stdin) and writes an adapter stream\n"
		"to ADAPTER (atomically) or stdout.\n");
}

/* A sample's numbers live in the spool file (below); memory holds its place. */
typedef struct {
	uint64_t id;
	int T, P;             /* tokens, prompt tokens */
	off_t off;            /* of its data in the spool: tokens, top-k ids, logits, logsumexp */
	int heldout;
} sample;

/* A sample's data, read back for a batch: pointers into the batch's buffer. */
typedef struct {
	int32_t *tok;         /* (T) */
	int32_t *ids;         /* ((T-P) k) */
	unsigned char *lg;    /* ((T-P) k) f16 or f32 */
	float *lse;           /* (T-P) at the distillation temperature */
} sample_data;

/* The samples are spooled to an unlinked temporary file ($TMPDIR, else /tmp)
 * as they are read and read back batch by batch, so that memory holds only
 * what one batch needs, however many samples and epochs (10k samples of 256
 * tokens with top-64 logits are about 1 GB; the page cache, not this
 * process, keeps them). */
typedef struct {
	sample *s;
	size_t n;
	int V, k, f32;
	char teacher[65];
	double kd_temp;       /* of the stream's logsumexp_tau, 0 when none */
	int fd;               /* the spool */
	FILE *w;              /* writing it */
	off_t end;
	unsigned char *buf;   /* one batch's data */
	size_t cap;
} sample_set;

static size_t sample_bytes(const sample_set *ss, const sample *s)
{
	size_t R = (size_t)(s->T - s->P), k = (size_t)ss->k;
	return (size_t)s->T * 4 + R * k * 4 + R * k * (ss->f32 ? 4 : 2) + R * 4;
}

static void spool_open(sample_set *ss)
{
	const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[4096];
	snprintf(path, sizeof path, "%s/distill-samples.XXXXXX", dir);
	if ((ss->fd = mkstemp(path)) < 0)
		err(1, "a temporary file for the samples in %s", dir);
	unlink(path);
	if (!(ss->w = fdopen(dup(ss->fd), "w")))
		err(1, "a temporary file for the samples");
}

static void spool_write(sample_set *ss, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, ss->w) != n)
		err(1, "writing the samples' temporary file");
	ss->end += (off_t)n;
}

/* Reads the data of samples idx[0..n) into ss->buf; d[i] points into it. */
static void load_batch(sample_set *ss, const size_t *idx, int n, sample_data *d)
{
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += (sample_bytes(ss, &ss->s[idx[i]]) + 63) & ~(size_t)63;
	if (total > ss->cap) {
		free(ss->buf);
		if (!(ss->buf = malloc(total)))
			errx(1, "out of memory for a batch of samples (%zu bytes)", total);
		ss->cap = total;
	}
	unsigned char *p = ss->buf;
	for (int i = 0; i < n; i++) {
		const sample *s = &ss->s[idx[i]];
		size_t bytes = sample_bytes(ss, s), R = (size_t)(s->T - s->P), k = (size_t)ss->k;
		for (size_t got = 0; got < bytes;) {
			ssize_t r = pread(ss->fd, p + got, bytes - got, s->off + (off_t)got);
			if (r <= 0)
				err(1, "reading the samples' temporary file");
			got += (size_t)r;
		}
		d[i].tok = (int32_t *)p;
		d[i].ids = d[i].tok + s->T;
		d[i].lg = (unsigned char *)(d[i].ids + R * k);
		d[i].lse = (float *)(d[i].lg + R * k * (ss->f32 ? 4 : 2));
		p += (bytes + 63) & ~(size_t)63;
	}
}

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix64(uint64_t x) { return rl_splitmix64(&x); }

/* Element i of an unaligned array of little-endian int32 (a message's bin) */
static int32_t get_i32(const void *p, size_t i)
{
	int32_t v;
	memcpy(&v, (const unsigned char *)p + 4 * i, 4);
	return v;
}

/* Reads every sample of the stream into the spool, checking it belongs to m. */
static void read_samples(const char *path, const rl_model *m, double tau, sample_set *ss)
{
	rl_reader *r = rl_reader_open(path);
	if (!r)
		errx(1, "%s", rl_err());
	rl_msg msg;
	int got;
	size_t cap = 0;
	uint32_t *seen = NULL, mark = 0;
	memset(ss, 0, sizeof *ss);
	spool_open(ss);
	while ((got = rl_read(r, &msg)) > 0) {
		if (msg.type == RL_MSG_HEADER) {
			if (strcmp(rl_reader_kind(r), "samples"))
				errx(1, "%s: a %s stream, not samples", rl_reader_name(r), rl_reader_kind(r));
			const rl_samples_info *info = rl_reader_samples(r);
			if ((int)info->vocab_size != m->cfg.vocab_size)
				errx(1, "%s: samples over a vocabulary of %u tokens; the student %s has %d",
				     rl_reader_name(r), info->vocab_size, m->origin, m->cfg.vocab_size);
			rl_mp_strcpy(rl_reader_header(r), "teacher", ss->teacher, sizeof ss->teacher);
			if (strcmp(ss->teacher, m->source))
				errx(1, "%s: samples of teacher %.12s, but the student %s comes from %.12s",
				     rl_reader_name(r), ss->teacher, m->origin, m->source);
			ss->V = (int)info->vocab_size;
			ss->k = (int)info->topk;
			ss->f32 = info->logit_dtype == RL_F32;
			ss->kd_temp = 0;
			if (info->has_tau)
				rl_mp_double(rl_reader_header(r), "kd_temp", &ss->kd_temp);
			if (tau != 1 && ss->k < ss->V && !(info->has_tau && fabs(ss->kd_temp - tau) < 1e-9))
				errx(1, "%s: --tau %g needs the teacher's logsumexp at that temperature (teacher-gen "
					"--kd-temp %g) when only the top-%d logits are recorded", rl_reader_name(r), tau, tau,
				     ss->k);
		} else if (msg.type == RL_MSG_SAMPLE) {
			const rl_sample_msg *s = &msg.sample;
			if (s->ntokens > (uint32_t)m->cfg.seq_len)
				errx(1, "%s: sample %llu has %u tokens, more than the student's context %d",
				     rl_reader_name(r), (unsigned long long)s->id, s->ntokens, m->cfg.seq_len);
			if (ss->n == cap) {
				cap = cap ? 2 * cap : 1024;
				if (!(ss->s = realloc(ss->s, cap * sizeof *ss->s)))
					errx(1, "out of memory holding the samples");
			}
			sample *d = &ss->s[ss->n++];
			size_t R = s->ntokens - s->prompt_len, k = (size_t)ss->k, esz = ss->f32 ? 4 : 2;
			d->id = s->id;
			d->T = (int)s->ntokens;
			d->P = (int)s->prompt_len;
			d->off = ss->end;
			for (size_t i = 0; i < (size_t)d->T; i++) {
				int32_t tok = get_i32(s->tokens, i);
				if (tok < 0 || tok >= ss->V)
					errx(1, "%s: sample %llu: token %d is outside the vocabulary", rl_reader_name(r),
					     (unsigned long long)d->id, tok);
			}
			/* each row's top-k ids distinct and in the vocabulary (the loss relies on it) */
			if (!seen && !(seen = calloc((size_t)ss->V, sizeof *seen)))
				errx(1, "out of memory");
			for (size_t j = 0; j < R; j++) {
				mark++;
				for (size_t i = 0; i < k; i++) {
					int32_t id = get_i32(s->topk_ids, j * k + i);
					if (id < 0 || id >= ss->V || seen[id] == mark)
						errx(1, "%s: sample %llu row %zu: top-k id %d is %s", rl_reader_name(r),
						     (unsigned long long)d->id, j, id, id < 0 || id >= ss->V ? "outside the vocabulary" : "repeated");
					seen[id] = mark;
				}
			}
			spool_write(ss, s->tokens, (size_t)d->T * 4);
			spool_write(ss, s->topk_ids, R * k * 4);
			spool_write(ss, s->topk_logits, R * k * esz);
			spool_write(ss, tau != 1 && ss->k < ss->V ? s->logsumexp_tau : s->logsumexp, R * 4);
		}
	}
	if (got < 0)
		errx(1, "%s: %s", rl_reader_name(r), rl_err());
	if (fclose(ss->w))
		err(1, "writing the samples' temporary file");
	ss->w = NULL;
	free(seen);
	rl_reader_close(r);
	if (ss->n == 0)
		errx(1, "%s: no samples", path);
}

/* The teacher's logits of one row as f32. */
static void row_logits(const sample_set *ss, const sample_data *d, int j, float *out)
{
	size_t k = (size_t)ss->k;
	if (ss->f32) {
		memcpy(out, d->lg + (size_t)j * k * 4, k * 4);
		return;
	}
	for (size_t i = 0; i < k; i++) {
		uint16_t h;
		memcpy(&h, d->lg + ((size_t)j * k + i) * 2, 2);
		out[i] = rl_f16_to_f32(h);
	}
}

typedef struct {
	double kl, ce;
	size_t rows;
} loss_sum;

/* What a batch needs besides the samples, for up to n samples (allocated once). */
typedef struct {
	rl_seq *seqs;         /* (n) */
	sample_data *d;       /* (n) */
	size_t *row0;         /* (n) each sample's first row in the logits */
	double *kl, *ce;      /* (n) each sample's summed loss */
} batch_ws;

static void batch_ws_init(batch_ws *w, size_t n)
{
	w->seqs = malloc(n * sizeof *w->seqs);
	w->d = malloc(n * sizeof *w->d);
	w->row0 = malloc(n * sizeof *w->row0);
	w->kl = malloc(n * sizeof *w->kl);
	w->ce = malloc(n * sizeof *w->ce);
	if (!w->seqs || !w->d || !w->row0 || !w->kl || !w->ce)
		errx(1, "out of memory");
}

static void batch_ws_free(batch_ws *w)
{
	free(w->seqs);
	free(w->d);
	free(w->row0);
	free(w->kl);
	free(w->ce);
}

typedef struct {
	const sample_set *ss;
	const size_t *idx;
	const batch_ws *w;
	float *logits;        /* (N, V) replaced by their gradient when train */
	int train;
	double tau;
	int with_ce;
	float wkl, wce;
	int fail;
} loss_job;

/* The loss (and gradient) of samples [b, e) of the batch: the rows are
 * independent, so the threads split them by sample; each sample's sums are
 * kept apart and added in order after, the same for any thread count. */
static void loss_part(void *arg, int64_t b, int64_t e)
{
	loss_job *j = arg;
	const sample_set *ss = j->ss;
	size_t V = (size_t)ss->V, k = (size_t)ss->k;
	float *tl = malloc(k * sizeof *tl), *scratch = malloc(2 * V * sizeof *scratch), *z = scratch + V;
	if (!tl || !scratch) {
		j->fail = 1;
		b = e;
	}
	for (int64_t i = b; i < e; i++) {
		const sample *s = &ss->s[j->idx[i]];
		const sample_data *d = &j->w->d[i];
		double kl = 0, ce = 0;
		if (j->train) /* the prompt's rows are not in the loss: a zero gradient */
			memset(j->logits + j->w->row0[i] * V, 0, (size_t)(s->P - 1) * V * sizeof(float));
		for (int r = 0; r < s->T - s->P; r++) {
			/* the row's logits copied out; its gradient takes their place */
			size_t at = j->w->row0[i] + (size_t)(s->P - 1 + r);
			float *dz = j->train ? j->logits + at * V : NULL;
			memcpy(z, j->logits + at * V, V * sizeof *z);
			if (dz)
				memset(dz, 0, V * sizeof *dz);
			row_logits(ss, d, r, tl);
			float lse = d->lse[r];
			if (j->tau != 1 && ss->k == ss->V) /* every logit is here: the logsumexp at tau exactly */
				lse = rl_logsumexp_scaled(tl, ss->k, (float)(1.0 / j->tau));
			kl += rl_kl_topk_tail(z, ss->V, ss->k, d->ids + (size_t)r * k, tl, lse, (float)j->tau, j->wkl, dz,
					      scratch);
			if (j->with_ce)
				ce += rl_cross_entropy(z, ss->V, d->tok[s->P + r], j->wce, j->wce > 0 ? dz : NULL);
		}
		j->w->kl[i] = kl;
		j->w->ce[i] = ce;
	}
	free(tl);
	free(scratch);
}

/* Runs the samples idx[0..n) through the student as one batch; adds the loss
 * (and, when train, its gradient at weight 1/step_rows per row) to *ls. The
 * full-vocabulary logsumexp at tau comes from the stream, or is computed when
 * the stream holds every logit. */
static int run_batch(rl_train *t, sample_set *ss, const size_t *idx, int n, double tau, double ce_mix,
		     double step_rows, int train, batch_ws *w, loss_sum *ls)
{
	load_batch(ss, idx, n, w->d);
	size_t row = 0;
	for (int i = 0; i < n; i++) {
		const sample *s = &ss->s[idx[i]];
		w->seqs[i] = (rl_seq){ .slot = 0, .pos0 = 0, .ntok = s->T - 1, .tokens = w->d[i].tok };
		w->row0[i] = row;
		row += (size_t)(s->T - 1);
	}
	if (rl_train_forward(t, n, w->seqs))
		return -1;
	loss_job j = { ss, idx, w, rl_train_logits(t), train, tau, ce_mix > 0 || !train,
		       (float)((1 - ce_mix) / step_rows), train ? (float)(ce_mix / step_rows) : 0.0f, 0 };
	rl_parallel_for(n, 1, loss_part, &j);
	if (j.fail) {
		rl_seterr("out of memory");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const sample *s = &ss->s[idx[i]];
		ls->kl += w->kl[i];
		ls->ce += w->ce[i];
		ls->rows += (size_t)(s->T - s->P);
	}
	return train ? rl_train_backward(t) : 0;
}

/* The order of an epoch: training samples sorted by a seeded hash of (epoch, id). */
typedef struct {
	uint64_t key;
	size_t i;
} keyed;

static int by_key(const void *a, const void *b)
{
	const keyed *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

static size_t epoch_order(const sample_set *ss, uint64_t seed, int epoch, size_t *out)
{
	keyed *k = malloc(ss->n * sizeof *k);
	if (!k)
		errx(1, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < ss->n; i++)
		if (!ss->s[i].heldout)
			k[n++] = (keyed){ mix64(mix64(seed ^ mix64((uint64_t)epoch + 1)) ^ ss->s[i].id), i };
	qsort(k, n, sizeof *k, by_key);
	for (size_t i = 0; i < n; i++)
		out[i] = k[i].i;
	free(k);
	return n;
}

/* Micro-batches of at most batch_tokens tokens each, in order: starts (nb+1). */
static size_t pack(const sample_set *ss, const size_t *order, size_t n, long batch_tokens, size_t *starts)
{
	size_t nb = 0, tok = 0;
	starts[0] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t T = (size_t)ss->s[order[i]].T - 1;
		if (i > starts[nb] && tok + T > (size_t)batch_tokens) {
			starts[++nb] = i;
			tok = 0;
		}
		tok += T;
	}
	starts[++nb] = n;
	return nb;
}

/* The held-out samples' mean KL and cross-entropy, in batches of up to max_tokens. */
static loss_sum heldout_loss(rl_train *t, sample_set *ss, const size_t *held, size_t nh, size_t max_tokens,
			     double tau, batch_ws *w)
{
	loss_sum h = { 0 };
	for (size_t i = 0; i < nh;) {
		size_t j = i, tok = 0;
		while (j < nh && (j == i || tok + (size_t)ss->s[held[j]].T - 1 <= max_tokens))
			tok += (size_t)ss->s[held[j++]].T - 1;
		if (run_batch(t, ss, held + i, (int)(j - i), tau, 0, 1, 0, w, &h))
			errx(1, "held-out evaluation: %s", rl_err());
		i = j;
	}
	return h;
}

/* ---- checkpoints: an adapter stream whose summary holds the optimizer ---- */

typedef struct {
	uint64_t step;
	const rl_adamw *opt;
	double kl;
} ckpt_info;

static int write_adapter(const char *path, const rl_adapter *a, const ckpt_info *ck, const char *what)
{
	rl_writer *w = rl_writer_open(path);
	if (!w)
		return -1;
	char producer[64];
	snprintf(producer, sizeof producer, "distill %s", RL_VERSION);
	if (rl_adapter_write(a, w, producer)) {
		rl_writer_abort(w);
		return -1;
	}
	msgpack_packer *pk = rl_writer_packer(w);
	msgpack_pack_map(pk, ck->opt ? 6 : 4);
	rl_pack_kv_str(pk, "t", "summary");
	rl_pack_kv_str(pk, "what", what);
	rl_pack_kv_int(pk, "step", (int64_t)ck->step);
	rl_pack_kv_double(pk, "train_kl", ck->kl);
	if (ck->opt) {
		rl_pack_kv_bin(pk, "adam_m", ck->opt->m, ck->opt->n * sizeof(float));
		rl_pack_kv_bin(pk, "adam_v", ck->opt->v, ck->opt->n * sizeof(float));
	}
	rl_writer_message_done(w);
	if (rl_write_end(w) || rl_writer_commit(w)) {
		rl_writer_abort(w);
		return -1;
	}
	return 0;
}

/* Restores the optimizer and step of a checkpoint written above. */
static void read_checkpoint_state(const char *path, rl_adamw *opt, uint64_t *step, double *kl)
{
	rl_reader *r = rl_reader_open(path);
	if (!r)
		errx(1, "--resume: %s", rl_err());
	rl_msg msg;
	int got, found = 0;
	while ((got = rl_read(r, &msg)) > 0) {
		if (msg.type != RL_MSG_SUMMARY)
			continue;
		const void *m, *v;
		size_t lm, lv;
		int64_t st;
		if (rl_mp_int(msg.map, "step", &st) || rl_mp_bin(msg.map, "adam_m", &m, &lm) ||
		    rl_mp_bin(msg.map, "adam_v", &v, &lv))
			errx(1, "--resume %s: not a distill checkpoint (its summary lacks the optimizer): %s", path, rl_err());
		if (lm != opt->n * sizeof(float) || lv != lm || st < 0)
			errx(1, "--resume %s: optimizer state for %zu parameters; this adapter has %zu", path,
			     lm / sizeof(float), opt->n);
		if (rl_mp_double(msg.map, "train_kl", kl))
			*kl = NAN;
		memcpy(opt->m, m, lm);
		memcpy(opt->v, v, lv);
		*step = (uint64_t)st;
		opt->t = (uint64_t)st;
		found = 1;
	}
	if (got < 0)
		errx(1, "--resume %s: %s", path, rl_err());
	rl_reader_close(r);
	if (!found)
		errx(1, "--resume %s: not a distill checkpoint (no summary)", path);
}

static double model_params(const rl_model *m)
{
	double n = 0;
	for (int i = 0; i < m->ntensors; i++)
		n += (double)m->tensors[i].shape[0] * (double)(m->tensors[i].ndim > 1 ? m->tensors[i].shape[1] : 1);
	return n;
}

int main(int argc, char **argv)
{
	rl_tool_init();
	long rank = 8, epochs = 2, batch_tokens = 4096, accum = 1, warmup = -1, eval_every = 50, ckpt_every = 0;
	double alpha = -1, lr = 2e-3, min_ratio = 0.1, clip = 1.0, wd = 0.0, tau = 1.0, ce_mix = 0.0, heldout = 0.05;
	unsigned long long seed = 1;
	int threads = 0;
	const char *targets = NULL, *out = NULL, *samples = "-", *ckpt = NULL, *resume = NULL;
	const char *init = "standard", *teacher = NULL;
	int rank_set = 0;
	enum { O_ALPHA = 256, O_TARGETS, O_LR, O_EPOCHS, O_BT, O_ACCUM, O_WARMUP, O_MINLR, O_CLIP, O_WD, O_TAU,
	       O_CE, O_HELD, O_EVAL, O_SEED, O_CKPT, O_CKEVERY, O_RESUME, O_SAMPLES, O_INIT, O_TEACHER };
	static const struct option longopts[] = {
		{ "alpha", required_argument, NULL, O_ALPHA }, { "targets", required_argument, NULL, O_TARGETS },
		{ "lr", required_argument, NULL, O_LR }, { "epochs", required_argument, NULL, O_EPOCHS },
		{ "batch-tokens", required_argument, NULL, O_BT }, { "accum", required_argument, NULL, O_ACCUM },
		{ "warmup", required_argument, NULL, O_WARMUP }, { "min-lr-ratio", required_argument, NULL, O_MINLR },
		{ "clip", required_argument, NULL, O_CLIP }, { "weight-decay", required_argument, NULL, O_WD },
		{ "tau", required_argument, NULL, O_TAU }, { "ce", required_argument, NULL, O_CE },
		{ "heldout", required_argument, NULL, O_HELD }, { "eval-every", required_argument, NULL, O_EVAL },
		{ "seed", required_argument, NULL, O_SEED }, { "checkpoint", required_argument, NULL, O_CKPT },
		{ "checkpoint-every", required_argument, NULL, O_CKEVERY }, { "resume", required_argument, NULL, O_RESUME },
		{ "samples", required_argument, NULL, O_SAMPLES }, { "rank", required_argument, NULL, 'r' },
		{ "init", required_argument, NULL, O_INIT }, { "teacher", required_argument, NULL, O_TEACHER },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "r:t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': rank = rl_opt_long("-r", optarg, 1, 4096); rank_set = 1; break;
		case O_ALPHA: alpha = rl_opt_double("--alpha", optarg, 1e-6, 1e6); break;
		case O_TARGETS: targets = optarg; break;
		case O_LR: lr = rl_opt_double("--lr", optarg, 1e-9, 10); break;
		case O_EPOCHS: epochs = rl_opt_long("--epochs", optarg, 0, 100000); break;
		case O_BT: batch_tokens = rl_opt_long("--batch-tokens", optarg, 1, 1 << 24); break;
		case O_ACCUM: accum = rl_opt_long("--accum", optarg, 1, 1 << 20); break;
		case O_WARMUP: warmup = rl_opt_long("--warmup", optarg, 0, 1L << 40); break;
		case O_MINLR: min_ratio = rl_opt_double("--min-lr-ratio", optarg, 0, 1); break;
		case O_CLIP: clip = rl_opt_double("--clip", optarg, 0, 1e9); break;
		case O_WD: wd = rl_opt_double("--weight-decay", optarg, 0, 10); break;
		case O_TAU: tau = rl_opt_double("--tau", optarg, 0.05, 100); break;
		case O_CE: ce_mix = rl_opt_double("--ce", optarg, 0, 1); break;
		case O_HELD: heldout = rl_opt_double("--heldout", optarg, 0, 0.9); break;
		case O_EVAL: eval_every = rl_opt_long("--eval-every", optarg, 0, 1L << 40); break;
		case O_SEED:
			if (rl_parse_seed(optarg, &seed))
				errx(2, "--seed %s: not a non-negative integer", optarg);
			break;
		case O_CKPT: ckpt = optarg; break;
		case O_CKEVERY: ckpt_every = rl_opt_long("--checkpoint-every", optarg, 1, 1L << 40); break;
		case O_RESUME: resume = optarg; break;
		case O_SAMPLES: samples = optarg; break;
		case O_INIT: init = optarg; break;
		case O_TEACHER: teacher = optarg; break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'o': out = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (ckpt_every && !ckpt)
		errx(2, "--checkpoint-every needs --checkpoint FILE");
	if (!out && isatty(1))
		errx(2, "refusing to write a binary stream to a terminal: use -o FILE or a pipe");
	int init_svd = strcmp(init, "svd") == 0, init_file = !init_svd && strcmp(init, "standard") != 0;
	if (init_svd && !teacher)
		errx(2, "--init svd needs the teacher's weights: --teacher MODEL");
	if (teacher && !init_svd)
		errx(2, "--teacher is read only by --init svd");
	double alpha_opt = alpha;
	if (alpha < 0)
		alpha = (double)rank; /* alpha/r = 1: the update's scale does not change with the rank */
	/* a signal while loading stops before training; during it, at the next step */
	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rl_set_threads(threads);

	rl_model m;
	if (rl_model_load(argv[optind], NULL, &m))
		errx(1, "%s", rl_err());
	if (m.adapter)
		errx(1, "%s: the student already carries an adapter; merge it first (lora-merge) or give the base", argv[optind]);
	sample_set ss;
	read_samples(samples, &m, tau, &ss);
	size_t nheld = 0, longest = 0;
	for (size_t i = 0; i < ss.n; i++) {
		sample *s = &ss.s[i];
		s->heldout = heldout > 0 && (double)(mix64(seed ^ 0x5eedull ^ mix64(s->id)) >> 11) * 0x1.0p-53 < heldout;
		nheld += (size_t)s->heldout;
		longest = (size_t)s->T > longest ? (size_t)s->T : longest;
	}
	if (nheld == ss.n)
		errx(1, "--heldout %g leaves no training sample of %zu", heldout, ss.n);

	rl_adapter a;
	if (init_file) {
		/* the adapter to start from sets the rank, alpha and targets */
		if (rl_adapter_read(init, &m, 0, &a))
			errx(1, "--init: %s", rl_err());
		if ((rank_set && a.rank != rank) || (alpha_opt >= 0 && a.alpha != alpha_opt))
			errx(1, "--init %s: rank %d, alpha %g; not the -r %ld / --alpha %g asked for", init, a.rank, a.alpha,
			     rank, alpha_opt >= 0 ? alpha_opt : (double)rank);
		if (targets) {
			rl_adapter want;
			if (rl_adapter_new(&want, &m, targets, a.rank, a.alpha))
				errx(1, "--targets %s: %s", targets, rl_err());
			int same = want.ntargets == a.ntargets;
			for (int k = 0; same && k < a.ntargets; k++)
				same = want.targets[k].tensor == a.targets[k].tensor;
			if (!same)
				errx(1, "--init %s: its %d targets are not those --targets %s selects (%d)", init, a.ntargets,
				     targets, want.ntargets);
			rl_adapter_free(&want);
		}
		rank = a.rank;
		alpha = a.alpha;
	} else if (rl_adapter_new(&a, &m, targets, (int)rank, alpha)) {
		errx(1, "--targets %s: %s", targets ? targets : "(default)", rl_err());
	}
	if (resume) {
		rl_adapter r;
		if (rl_adapter_read(resume, &m, 0, &r))
			errx(1, "--resume: %s", rl_err());
		if (r.nparams != a.nparams || r.rank != a.rank || r.alpha != a.alpha)
			errx(1, "--resume %s: rank %d alpha %g over %zu parameters, not this run's rank %ld alpha %g (%zu)",
			     resume, r.rank, r.alpha, r.nparams, rank, alpha, a.nparams);
		memcpy(a.params, r.params, a.nparams * sizeof(float));
		rl_adapter_free(&r);
	} else if (init_svd) {
		rl_model tm;
		double kept;
		if (rl_model_load(teacher, NULL, &tm))
			errx(1, "--teacher: %s", rl_err());
		if (rl_adapter_init_svd(&a, &m, &tm, seed, &kept))
			errx(1, "--init svd: %s", rl_err());
		rl_model_free(&tm);
		fprintf(stderr, "distill: SVD initialisation from %s: rank %ld reproduces %.2f%% of the quantization residuals' squared norm\n",
			teacher, rank, 100 * kept);
	} else if (!init_file) {
		rl_adapter_init_standard(&a, seed);
	}
	size_t max_tokens = (size_t)batch_tokens > longest ? (size_t)batch_tokens : longest;
	rl_train *t = rl_train_new(&m, &a, (int)max_tokens, (int)longest);
	if (!t)
		errx(1, "%s", rl_err());
	rl_adamw opt;
	if (rl_adamw_init(&opt, a.nparams))
		errx(1, "%s", rl_err());
	uint64_t step = 0;
	double last_kl = NAN;
	if (resume)
		read_checkpoint_state(resume, &opt, &step, &last_kl);

	/* the schedule: every epoch's micro-batches, accum to a step */
	size_t *order = malloc(ss.n * sizeof *order), *starts = malloc((ss.n + 1) * sizeof *starts);
	size_t *held = malloc((nheld + 1) * sizeof *held), nh = 0;
	batch_ws bw;
	batch_ws_init(&bw, ss.n);
	if (!order || !starts || !held)
		errx(1, "out of memory");
	for (size_t i = 0; i < ss.n; i++)
		if (ss.s[i].heldout)
			held[nh++] = i;
	uint64_t total = 0;
	for (int e = 0; e < epochs; e++) {
		size_t n = epoch_order(&ss, seed, e, order), nb = pack(&ss, order, n, batch_tokens, starts);
		total += (nb + (size_t)accum - 1) / (size_t)accum;
	}
	if (warmup < 0)
		warmup = (long)(total / 20); /* 5% of the steps */
	if (step > total)
		errx(1, "--resume: the checkpoint is at step %llu of a run of %llu steps", (unsigned long long)step,
		     (unsigned long long)total);
	fprintf(stderr, "distill: %s: %d targets, rank %ld, alpha %g, %zu parameters (%.2f%% of the model's); %zu samples "
		"(%zu held out), top-%d, tau %g; %llu steps over %ld epochs\n", m.origin, a.ntargets, rank, alpha,
		a.nparams, 100.0 * (double)a.nparams / model_params(&m), ss.n, nheld, ss.k, tau,
		(unsigned long long)total, epochs);
	size_t wbytes = 0;
	for (int i = 0; i < m.ntensors; i++)
		wbytes += m.tensors[i].bytes;
	fprintf(stderr, "distill: memory: student weights %.1f MB, saved activations %.1f MB, adapter with its gradient and "
		"AdamW state %.1f MB, other workspace %.1f MB\n", wbytes / 1e6, rl_train_activation_bytes(t) / 1e6,
		4.0 * sizeof(float) * (double)a.nparams / 1e6, rl_train_scratch_bytes(t) / 1e6);

	if (eval_every && nheld && step == 0) {
		loss_sum h = heldout_loss(t, &ss, held, nh, max_tokens, tau, &bw);
		fprintf(stderr, "distill: step 0/%llu: held-out KL %.4f, CE %.4f over %zu positions\n",
			(unsigned long long)total, h.kl / (double)h.rows, h.ce / (double)h.rows, h.rows);
	}
	rl_adamw_cfg ocfg = { 0.9, 0.999, 1e-8, wd };
	double t0 = now(), last = t0, t1 = 0;
	uint64_t s_global = 0, tokens = 0, tokens1 = 0, steps1 = step;
	int tty = rl_stderr_tty();
	for (int e = 0; e < epochs && !stop_signal; e++) {
		size_t n = epoch_order(&ss, seed, e, order), nb = pack(&ss, order, n, batch_tokens, starts);
		for (size_t b0 = 0; b0 < nb && !stop_signal; b0 += (size_t)accum, s_global++) {
			if (s_global < step)
				continue; /* done before the checkpoint this run resumed */
			size_t b1 = b0 + (size_t)accum < nb ? b0 + (size_t)accum : nb;
			double rows = 0;
			for (size_t i = starts[b0]; i < starts[b1]; i++)
				rows += ss.s[order[i]].T - ss.s[order[i]].P;
			loss_sum ls = { 0 };
			rl_train_zero_grad(t);
			for (size_t b = b0; b < b1; b++)
				if (run_batch(t, &ss, order + starts[b], (int)(starts[b + 1] - starts[b]), tau, ce_mix, rows, 1,
					      &bw, &ls))
					errx(1, "step %llu: %s", (unsigned long long)step + 1, rl_err());
			double norm = rl_clip_grad_norm(rl_train_grad(t), a.nparams, clip);
			if (!isfinite(ls.kl) || !isfinite(norm))
				errx(1, "step %llu: the loss or its gradient is not finite (KL %g, gradient norm %g); "
					"the last good checkpoint is %s", (unsigned long long)step + 1, ls.kl, norm,
				     ckpt ? ckpt : "(none: use --checkpoint)");
			double rate = rl_lr_at(step, (uint64_t)warmup, total, lr, min_ratio);
			rl_adamw_step(&opt, &ocfg, rate, a.params, rl_train_grad(t));
			step++;
			for (size_t i = starts[b0]; i < starts[b1]; i++)
				tokens += (uint64_t)ss.s[order[i]].T - 1;
			if (step == steps1 + 1) { /* the first step's page faults and cold caches, timed apart */
				t1 = now();
				tokens1 = tokens;
			}
			last_kl = ls.kl / (double)ls.rows;
			if (eval_every && nheld && (step % (uint64_t)eval_every == 0 || step == total)) {
				loss_sum h = heldout_loss(t, &ss, held, nh, max_tokens, tau, &bw);
				fprintf(stderr, "%sdistill: step %llu/%llu: held-out KL %.4f, CE %.4f over %zu positions\n",
					tty ? "\r" : "", (unsigned long long)step, (unsigned long long)total,
					h.kl / (double)h.rows, h.ce / (double)h.rows, h.rows);
			}
			if (ckpt && ckpt_every && step % (uint64_t)ckpt_every == 0) {
				ckpt_info ci = { step, &opt, last_kl };
				if (write_adapter(ckpt, &a, &ci, "checkpoint"))
					errx(1, "%s: %s", ckpt, rl_err());
			}
			double tn = now();
			if (tn - last >= (tty ? 0.5 : 10.0) || step == total) {
				last = tn;
				double el = tn - t0, eta = el / (double)(step - steps1) * (double)(total - step);
				fprintf(stderr, "%sdistill: step %llu/%llu, epoch %d, train KL %.4f, lr %.2e, |g| %.3g, %.0f tokens/s, ETA %.0f s%s",
					tty ? "\r" : "", (unsigned long long)step, (unsigned long long)total, e + 1, last_kl, rate,
					norm, (double)tokens / (el + 1e-9), eta, tty ? "  " : "\n");
			}
		}
	}
	if (tty)
		fputc('\n', stderr);
	if (stop_signal) {
		if (ckpt) {
			ckpt_info ci = { step, &opt, last_kl };
			if (write_adapter(ckpt, &a, &ci, "checkpoint"))
				errx(1, "%s: %s", ckpt, rl_err());
			errx(1, "stopped by signal %d at step %llu of %llu; checkpoint %s (--resume %s)", (int)stop_signal,
			     (unsigned long long)step, (unsigned long long)total, ckpt, ckpt);
		}
		errx(1, "stopped by signal %d at step %llu of %llu; no --checkpoint, nothing kept", (int)stop_signal,
		     (unsigned long long)step, (unsigned long long)total);
	}
	/* the last step's KL, so a resumed run's summary is the uninterrupted one's */
	ckpt_info fin = { step, NULL, last_kl };
	if (write_adapter(out, &a, &fin, "distill"))
		errx(1, "%s: %s", out ? out : "<stdout>", rl_err());
	double tend = now(), el = tend - t0;
	char later[64] = "";
	if (step > steps1 + 1)
		snprintf(later, sizeof later, "; %.0f after the first step", (double)(tokens - tokens1) / (tend - t1 + 1e-9));
	fprintf(stderr, "distill: %llu steps, %llu tokens in %.1f s (%.0f tokens/s%s); last train KL %.4f -> %s\n",
		(unsigned long long)step, (unsigned long long)tokens, el, (double)tokens / (el + 1e-9), later, last_kl,
		out ? out : "stdout");
	free(ss.s);
	free(ss.buf);
	close(ss.fd);
	free(order);
	free(starts);
	free(held);
	batch_ws_free(&bw);
	rl_adamw_free(&opt);
	rl_train_free(t);
	rl_adapter_free(&a);
	rl_model_free(&m);
	return 0;
}
