/* importance.c: per-channel activation statistics of linear layers (importance.h). */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "importance.h"
#include "stream.h"

typedef struct {
	const rl_model *m;
	double **sum;   /* (ntensors) sums of x^2 per input channel */
	int failed;
} observer;

static void observe(void *arg, const rl_tensor *w, const float *inp, int N, int IC)
{
	observer *o = arg;
	ptrdiff_t i = w - o->m->tensors;
	if (i < 0 || i >= o->m->ntensors)
		return;
	if (!o->sum[i] && !(o->sum[i] = calloc((size_t)IC, sizeof(double)))) {
		o->failed = 1;
		return;
	}
	double *s = o->sum[i];
	for (int n = 0; n < N; n++) {
		const float *x = inp + (size_t)n * (size_t)IC;
		for (int c = 0; c < IC; c++)
			s[c] += (double)x[c] * (double)x[c];
	}
}

int rl_importance_collect(const rl_model *m, const char *path, uint64_t max_tokens, rl_importance *out,
			  rl_progress_fn progress, void *arg)
{
	memset(out, 0, sizeof *out);
	int ctx = m->cfg.seq_len, budget = ctx > 2048 ? ctx : 2048, rc = -1;
	rl_reader *r = rl_reader_open(path);
	if (!r)
		return -1;
	observer o = { m, calloc((size_t)m->ntensors, sizeof(double *)), 0 };
	rl_forward *f = rl_forward_new(m, budget, ctx);
	float *logits = malloc((size_t)budget * (size_t)m->cfg.vocab_size * sizeof(float));
	int *tok = malloc((size_t)budget * sizeof(int));
	rl_seq *seqs = malloc((size_t)budget * sizeof *seqs);
	if (!o.sum || !f || !logits || !tok || !seqs) {
		if (f)
			rl_seterr("importance: out of memory");
		goto done;
	}
	rl_forward_set_observer(f, observe, &o);
	int nseq = 0, ntok = 0, checked = 0, more = 1;
	while (more) {
		rl_msg msg;
		int got = rl_read(r, &msg);
		if (got < 0) {
			rl_seterr("%s: %s", rl_reader_name(r), rl_err());
			goto done;
		}
		if (!checked && rl_reader_kind(r)) {
			const char *kind = rl_reader_kind(r);
			if (strcmp(kind, "samples")) {
				rl_seterr("%s: a %s stream, not samples", rl_reader_name(r), kind);
				goto done;
			}
			char teacher[65] = "";
			rl_mp_strcpy(rl_reader_header(r), "teacher", teacher, sizeof teacher);
			if (strcmp(teacher, m->source)) {
				rl_seterr("%s: samples of teacher %.12s, but this model's source is %.12s (%s)",
					  rl_reader_name(r), teacher, m->source, m->origin);
				goto done;
			}
			if (rl_reader_samples(r)->vocab_size != (uint32_t)m->cfg.vocab_size) {
				rl_seterr("%s: vocabulary of %u tokens, the model's is %d", rl_reader_name(r),
					  rl_reader_samples(r)->vocab_size, m->cfg.vocab_size);
				goto done;
			}
			checked = 1;
		}
		int T = 0;
		if (got == 1 && msg.type == RL_MSG_SAMPLE) {
			T = (int)(msg.sample.ntokens < (uint32_t)ctx ? msg.sample.ntokens : (uint32_t)ctx);
			if (max_tokens && out->ntokens + (uint64_t)T > max_tokens)
				T = (int)(max_tokens - out->ntokens);
		}
		more = got == 1 && !(max_tokens && out->ntokens >= max_tokens);
		/* run the batch when the next sample does not fit, or at the end */
		if (nseq && (!more || ntok + T > budget)) {
			if (rl_forward_run(f, NULL, nseq, seqs, logits))
				goto done;
			if (o.failed) {
				rl_seterr("importance: out of memory");
				goto done;
			}
			nseq = ntok = 0;
			if (progress)
				progress((size_t)out->nsamples, 0, arg);
		}
		if (T > 0) {
			for (int i = 0; i < T; i++) {
				int32_t t;
				memcpy(&t, msg.sample.tokens + i, 4);
				tok[ntok + i] = t;
			}
			seqs[nseq++] = (rl_seq){ .slot = 0, .pos0 = 0, .ntok = T, .tokens = tok + ntok };
			ntok += T;
			out->ntokens += (uint64_t)T;
			out->nsamples++;
		}
	}
	if (out->ntokens == 0) {
		rl_seterr("%s: no sample tokens to measure importance on", rl_reader_name(r));
		goto done;
	}
	out->ntensors = m->ntensors;
	if (!(out->imp = calloc((size_t)m->ntensors, sizeof(float *))))
		goto done;
	for (int i = 0; i < m->ntensors; i++) {
		if (!o.sum[i])
			continue;
		int IC = (int)m->tensors[i].shape[1];
		if (!(out->imp[i] = malloc((size_t)IC * sizeof(float))))
			goto done;
		for (int c = 0; c < IC; c++)
			out->imp[i][c] = (float)(o.sum[i][c] / (double)out->ntokens);
	}
	rc = 0;
done:
	if (rc)
		rl_importance_free(out);
	if (o.sum)
		for (int i = 0; i < m->ntensors; i++)
			free(o.sum[i]);
	free(o.sum);
	free(logits);
	free(tok);
	free(seqs);
	rl_forward_free(f);
	rl_reader_close(r);
	return rc;
}

void rl_importance_free(rl_importance *imp)
{
	if (imp->imp)
		for (int i = 0; i < imp->ntensors; i++)
			free(imp->imp[i]);
	free(imp->imp);
	memset(imp, 0, sizeof *imp);
}
