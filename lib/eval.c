/* eval.c: perplexity by the text-scoring rule. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "eval.h"

static int blank_line(const char *p, const char *end)
{
	for (; p < end && *p != '\n'; p++)
		if (!isspace((unsigned char)*p))
			return 0;
	return 1;
}

static void push_doc(rl_span *docs, size_t *n, const char *a, const char *b)
{
	while (a < b && isspace((unsigned char)*a))
		a++;
	while (b > a && isspace((unsigned char)b[-1]))
		b--;
	if (b > a) {
		docs[*n].text = a;
		docs[*n].len = (size_t)(b - a);
		(*n)++;
	}
}

int rl_split_documents(const char *text, size_t len, rl_span **docs, size_t *ndocs)
{
	const char *end = text + len;
	size_t cap = 1;
	for (const char *p = text; p < end; p++)
		cap += *p == '\n';
	*docs = malloc(cap * sizeof **docs);
	*ndocs = 0;
	if (!*docs) {
		rl_seterr("out of memory splitting %zu bytes of text", len);
		return -1;
	}
	const char *start = text, *line = text;
	while (line < end) {
		const char *next = memchr(line, '\n', (size_t)(end - line));
		next = next ? next + 1 : end;
		if (blank_line(line, end)) {
			push_doc(*docs, ndocs, start, line);
			start = next;
		}
		line = next;
	}
	push_doc(*docs, ndocs, start, end);
	return 0;
}

double rl_logsumexp(const float *row, size_t n)
{
	float mx = row[0];
	for (size_t i = 1; i < n; i++)
		if (row[i] > mx)
			mx = row[i];
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += exp((double)(row[i] - mx));
	return mx + log(sum);
}

typedef struct {
	size_t doc;     /* which document */
	int start, len; /* tokens [start, start+len) of it */
	int scored0;    /* first position in the window whose next token is scored */
} window;

int rl_eval_ppl(const rl_model *m, const rl_span *docs, size_t ndocs, int ctx, rl_ppl *out,
		rl_progress_fn progress, void *arg)
{
	const rl_tokenizer *tk = &m->tok;
	int V = m->cfg.vocab_size;
	memset(out, 0, sizeof *out);
	if (ctx < 2) {
		rl_seterr("context %d is too short to score text", ctx);
		return -1;
	}
	/* tokens per batch: enough for sgemm to be efficient, logits within ~256 MiB */
	size_t budget = ((size_t)64 << 20) / (size_t)V;
	if (budget < (size_t)ctx)
		budget = (size_t)ctx;
	if (budget > 4096 && budget > (size_t)ctx)
		budget = 4096 > (size_t)ctx ? 4096 : (size_t)ctx;
	rl_forward *f = rl_forward_new(m, (int)budget, ctx);
	float *logits = malloc(budget * (size_t)V * sizeof(float));
	int **ids = calloc(ndocs, sizeof *ids);
	size_t *nids = calloc(ndocs, sizeof *nids);
	double *doc_nll = calloc(ndocs, sizeof *doc_nll);
	size_t *doc_n = calloc(ndocs, sizeof *doc_n);
	rl_seq *seqs = malloc(budget * sizeof *seqs);
	window *wins = malloc(budget * sizeof *wins);
	int rc = -1;
	if (!f || !logits || !ids || !nids || !doc_nll || !doc_n || !seqs || !wins) {
		if (f)
			rl_seterr("out of memory for a batch of %zu tokens", budget);
		goto done;
	}
	size_t d = 0;      /* next document to start */
	int next_start = 0; /* next window's start within document d */
	while (d < ndocs) {
		int nseq = 0;
		size_t ntok = 0;
		while (d < ndocs) {
			if (!ids[d]) {
				if (rl_encode(tk, docs[d].text, docs[d].len, tk->bos_id >= 0, 0, &ids[d], &nids[d]))
					goto done;
				if (nids[d] > INT32_MAX) {
					rl_seterr("document %zu is too long", d + 1);
					goto done;
				}
			}
			int n = (int)nids[d];
			if (n < 2) { /* nothing to predict */
				d++;
				next_start = 0;
				continue;
			}
			int len = n - next_start < ctx ? n - next_start : ctx;
			if (ntok + (size_t)len > budget)
				break;
			window *w = &wins[nseq];
			w->doc = d;
			w->start = next_start;
			w->len = len;
			w->scored0 = next_start == 0 ? 0 : ctx / 2 - 1;
			seqs[nseq] = (rl_seq){ .slot = 0, .pos0 = 0, .ntok = len, .tokens = ids[d] + next_start };
			nseq++;
			ntok += (size_t)len;
			if (next_start + len >= n) {
				d++;
				next_start = 0;
			} else {
				next_start += ctx - ctx / 2;
			}
		}
		if (nseq == 0)
			break;
		if (rl_forward_run(f, NULL, nseq, seqs, logits))
			goto done;
		size_t row = 0;
		for (int s = 0; s < nseq; s++) {
			const window *w = &wins[s];
			const int *t = ids[w->doc] + w->start;
			for (int i = 0; i < w->len; i++, row++) {
				if (i < w->scored0 || i + 1 >= w->len)
					continue;
				const float *lr = logits + row * (size_t)V;
				doc_nll[w->doc] += rl_logsumexp(lr, (size_t)V) - lr[t[i + 1]];
				doc_n[w->doc]++;
			}
		}
		for (int s = 0; s < nseq; s++)
			if (wins[s].doc < d || d >= ndocs) {
				free(ids[wins[s].doc]);
				ids[wins[s].doc] = NULL;
			}
		if (progress)
			progress(d, ndocs, arg);
	}
	for (size_t i = 0; i < ndocs; i++) {
		if (!doc_n[i])
			continue;
		double mean = doc_nll[i] / (double)doc_n[i];
		out->nll_sum += doc_nll[i];
		out->ntokens += doc_n[i];
		out->ndocs++;
		out->doc_nll_sum += mean;
		out->doc_nll_sumsq += mean * mean;
	}
	rc = 0;
done:
	if (ids)
		for (size_t i = 0; i < ndocs; i++)
			free(ids[i]);
	free(ids);
	free(nids);
	free(doc_nll);
	free(doc_n);
	free(seqs);
	free(wins);
	free(logits);
	rl_forward_free(f);
	return rc;
}
