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
	/* expf of differences <= 0 is accurate to an ulp; the sum is kept in double */
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += expf(row[i] - mx);
	return mx + log(sum);
}

typedef struct {
	size_t doc;     /* which document */
	int start, len; /* tokens [start, start+len) of it */
	int scored0;    /* first position in the window whose next token is scored */
} window;

/* Tokens per batch: enough for sgemm to be efficient, logits within ~256 MiB. */
static size_t batch_budget(int V, int ctx)
{
	size_t budget = ((size_t)64 << 20) / (size_t)V;
	if (budget < (size_t)ctx)
		budget = (size_t)ctx;
	if (budget > 4096 && budget > (size_t)ctx)
		budget = 4096 > (size_t)ctx ? 4096 : (size_t)ctx;
	return budget;
}

size_t rl_argmax(const float *row, size_t n)
{
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (row[i] > row[best])
			best = i;
	return best;
}

/* KL(p || q) for logits zp, zq of n entries, with their logsumexps. */
static double kl_logits(const float *zp, double lsep, const float *zq, double lseq, size_t n)
{
	double kl = 0.0;
	float d = (float)(lseq - lsep);
	for (size_t i = 0; i < n; i++) {
		float lp = (float)((double)zp[i] - lsep);
		kl += (double)(expf(lp) * (zp[i] - zq[i] + d));
	}
	return kl > 0.0 ? kl : 0.0; /* rounding can leave -1e-17 */
}

int rl_eval_same_vocab(const rl_model *a, const rl_model *b)
{
	const rl_tokenizer *x = &a->tok, *y = &b->tok;
	if (a->cfg.vocab_size != b->cfg.vocab_size || x->vocab_size != y->vocab_size) {
		rl_seterr("vocabularies differ: %d tokens in %s, %d in %s", a->cfg.vocab_size, a->origin,
			  b->cfg.vocab_size, b->origin);
		return -1;
	}
	for (int i = 0; i < x->vocab_size; i++)
		if (x->piece_len[i] != y->piece_len[i] ||
		    memcmp(x->pieces[i], y->pieces[i], (size_t)x->piece_len[i])) {
			rl_seterr("vocabularies differ at token %d between %s and %s", i, a->origin, b->origin);
			return -1;
		}
	return 0;
}

int rl_eval_ppl(const rl_model *m, const rl_model *ref, const rl_span *docs, size_t ndocs, int ctx,
		rl_ppl *out, rl_ppl_doc *per_doc, rl_progress_fn progress, void *arg)
{
	const rl_tokenizer *tk = &m->tok;
	int V = m->cfg.vocab_size;
	memset(out, 0, sizeof *out);
	if (per_doc)
		memset(per_doc, 0, ndocs * sizeof *per_doc);
	if (ctx < 2) {
		rl_seterr("context %d is too short to score text", ctx);
		return -1;
	}
	if (ref && rl_eval_same_vocab(m, ref))
		return -1;
	size_t budget = batch_budget(V, ctx);
	rl_forward *f = rl_forward_new(m, (int)budget, ctx);
	rl_forward *fr = ref ? rl_forward_new(ref, (int)budget, ctx) : NULL;
	float *logits = malloc(budget * (size_t)V * sizeof(float));
	float *rlogits = ref ? malloc(budget * (size_t)V * sizeof(float)) : NULL;
	double *doc_kl = calloc(ndocs, sizeof *doc_kl);
	int **ids = calloc(ndocs, sizeof *ids);
	size_t *nids = calloc(ndocs, sizeof *nids);
	double *doc_nll = calloc(ndocs, sizeof *doc_nll);
	size_t *doc_n = calloc(ndocs, sizeof *doc_n);
	rl_seq *seqs = malloc(budget * sizeof *seqs);
	window *wins = malloc(budget * sizeof *wins);
	int rc = -1;
	if (!f || !logits || !ids || !nids || !doc_nll || !doc_n || !seqs || !wins || !doc_kl ||
	    (ref && (!fr || !rlogits))) {
		if (f && (!ref || fr))
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
		if (ref && rl_forward_run(fr, NULL, nseq, seqs, rlogits))
			goto done;
		size_t row = 0;
		for (int s = 0; s < nseq; s++) {
			const window *w = &wins[s];
			const int *t = ids[w->doc] + w->start;
			for (int i = 0; i < w->len; i++, row++) {
				if (i < w->scored0 || i + 1 >= w->len)
					continue;
				const float *lr = logits + row * (size_t)V;
				double lse = rl_logsumexp(lr, (size_t)V);
				doc_nll[w->doc] += lse - lr[t[i + 1]];
				doc_n[w->doc]++;
				if (ref) {
					const float *rr = rlogits + row * (size_t)V;
					doc_kl[w->doc] += kl_logits(rr, rl_logsumexp(rr, (size_t)V), lr, lse, (size_t)V);
					int agree = rl_argmax(rr, (size_t)V) == rl_argmax(lr, (size_t)V);
					out->top1 += (size_t)agree;
					if (per_doc)
						per_doc[w->doc].top1 += (size_t)agree;
				}
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
		if (per_doc) {
			per_doc[i].nll = doc_nll[i];
			per_doc[i].kl = doc_kl[i];
			per_doc[i].tokens = doc_n[i];
		}
		if (!doc_n[i])
			continue;
		double mean = doc_nll[i] / (double)doc_n[i];
		out->nll_sum += doc_nll[i];
		out->ntokens += doc_n[i];
		out->ndocs++;
		out->doc_nll_sum += mean;
		out->doc_nll_sumsq += mean * mean;
		double kmean = doc_kl[i] / (double)doc_n[i];
		out->kl_sum += doc_kl[i];
		out->doc_kl_sum += kmean;
		out->doc_kl_sumsq += kmean * kmean;
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
	free(doc_kl);
	free(logits);
	free(rlogits);
	rl_forward_free(f);
	rl_forward_free(fr);
	return rc;
}

typedef struct {
	int *ids;   /* encode(ctx + sep + cont) */
	int n;      /* its length */
	int lcp;    /* first continuation token */
	int start;  /* first token of the window fed to the model */
} cont_tokens;

static int cont_encode(const rl_tokenizer *tk, const rl_cont_req *r, size_t k, int ctx, cont_tokens *t)
{
	int bos = tk->bos_id >= 0, rc = -1;
	int *a = NULL;
	size_t na, nb;
	int sep = r->cont_len > 0 && !isspace((unsigned char)r->cont[0]);
	char *both = malloc(r->ctx_len + (size_t)sep + r->cont_len + 1);
	if (!both) {
		rl_seterr("item %zu: out of memory", k + 1);
		return -1;
	}
	memcpy(both, r->ctx, r->ctx_len);
	if (sep)
		both[r->ctx_len] = ' ';
	memcpy(both + r->ctx_len + sep, r->cont, r->cont_len);
	t->ids = NULL;
	if (rl_encode(tk, r->ctx, r->ctx_len, bos, 0, &a, &na) ||
	    rl_encode(tk, both, r->ctx_len + (size_t)sep + r->cont_len, bos, 0, &t->ids, &nb))
		goto out;
	size_t lcp = 0;
	while (lcp < na && lcp < nb && a[lcp] == t->ids[lcp])
		lcp++;
	if (lcp == nb) {
		rl_seterr("item %zu: the continuation adds no token to the context", k + 1);
		goto out;
	}
	if (lcp == 0) {
		rl_seterr("item %zu: no token of context precedes the continuation", k + 1);
		goto out;
	}
	if (nb - lcp > (size_t)ctx - 1) {
		rl_seterr("item %zu: the continuation's %zu tokens do not fit a context of %d", k + 1,
			  nb - lcp, ctx);
		goto out;
	}
	t->n = (int)nb;
	t->lcp = (int)lcp;
	t->start = nb > (size_t)ctx ? (int)(nb - (size_t)ctx) : 0;
	rc = 0;
out:
	if (rc) {
		free(t->ids);
		t->ids = NULL;
	}
	free(a);
	free(both);
	return rc;
}

/* Tokens b[0..] that a and b share. */
static int common_prefix(const cont_tokens *a, const cont_tokens *b)
{
	int c = 0;
	while (c < a->n && c < b->n && a->ids[c] == b->ids[c])
		c++;
	return c;
}

/* Requests that share a prefix of tokens (the choices of one question, the
 * options of a winogrande item) run it once: it goes into the KV-cache slot of
 * the group's first request and is copied to the others' slots, then every
 * request runs only its own tokens after the prefix. */
typedef struct {
	int slot0, nreq;  /* slots slot0..slot0+nreq-1 */
	int prefix;       /* shared tokens, 0 when none */
} cont_group;

int rl_eval_continuations(const rl_model *m, const rl_cont_req *req, size_t n, int ctx,
			  rl_cont_res *res, rl_progress_fn progress, void *arg)
{
	int V = m->cfg.vocab_size;
	if (ctx < 2) {
		rl_seterr("context %d is too short to score text", ctx);
		return -1;
	}
	cont_tokens *toks = calloc(n ? n : 1, sizeof *toks);
	if (!toks) {
		rl_seterr("out of memory for %zu requests", n);
		return -1;
	}
	int rc = -1, maxlen = 1;
	size_t budget = batch_budget(V, ctx);
	rl_forward *f = NULL;
	float *logits = NULL;
	rl_seq *seqs = NULL, *pre = NULL;
	cont_group *groups = NULL;
	int *first = NULL;
	rl_kvcache kv = { 0 };
	for (size_t k = 0; k < n; k++) {
		if (cont_encode(&m->tok, &req[k], k, ctx, &toks[k]))
			goto done;
		if (toks[k].n - toks[k].start > maxlen)
			maxlen = toks[k].n - toks[k].start;
	}
	/* slots for a cache of the longest request, within 1 GiB; too few and
	 * batches would be too small: then no sharing and no cache */
	size_t per_slot = (size_t)m->cfg.n_layers * (size_t)maxlen *
			  (size_t)(m->cfg.n_kv_heads * m->cfg.head_dim) * 2 * sizeof(float);
	size_t S = ((size_t)1 << 30) / (per_slot ? per_slot : 1);
	if (S > 64)
		S = 64;
	int use_cache = S >= 8;
	if (!use_cache)
		S = budget;
	f = rl_forward_new(m, (int)budget, ctx);
	logits = malloc(budget * (size_t)V * sizeof(float));
	seqs = malloc(S * sizeof *seqs);
	pre = malloc(S * sizeof *pre);
	groups = malloc(S * sizeof *groups);
	first = malloc(S * sizeof *first);
	if (!f || !logits || !seqs || !pre || !groups || !first) {
		if (f)
			rl_seterr("out of memory for a batch of %zu tokens", budget);
		goto done;
	}
	if (use_cache && rl_kvcache_init(&kv, m, (int)S, maxlen))
		goto done;
	size_t i = 0; /* first request not yet scored */
	while (i < n) {
		size_t k = i, tokA = 0, tokB = 0;
		int nreq = 0, ngrp = 0, npre = 0;
		while (k < n) {
			/* the group starting at k */
			size_t j = k + 1;
			int cp = toks[k].n, minlcp = toks[k].lcp;
			size_t gB = (size_t)(toks[k].n - toks[k].start);
			if (use_cache && toks[k].start == 0) {
				while (j < n && j - k < S && toks[j].start == 0) {
					int c = common_prefix(&toks[k], &toks[j]);
					if ((c < cp ? c : cp) < 2 || gB + (size_t)toks[j].n > budget)
						break;
					cp = c < cp ? c : cp;
					minlcp = toks[j].lcp < minlcp ? toks[j].lcp : minlcp;
					gB += (size_t)toks[j].n;
					j++;
				}
			}
			int P = j - k > 1 ? (cp < minlcp - 1 ? cp : minlcp - 1) : 0;
			if (P > 0)
				gB -= (j - k) * (size_t)P;
			if ((size_t)nreq + (j - k) > S || tokB + gB > budget || tokA + (size_t)P > budget)
				break;
			groups[ngrp++] = (cont_group){ nreq, (int)(j - k), P };
			if (P > 0)
				pre[npre++] = (rl_seq){ .slot = nreq, .pos0 = 0, .ntok = P, .tokens = toks[k].ids };
			for (size_t r = k; r < j; r++) {
				int fr = P > 0 ? P : toks[r].start;
				first[nreq] = fr;
				seqs[nreq] = (rl_seq){ .slot = nreq, .pos0 = P, .ntok = toks[r].n - fr,
						       .tokens = toks[r].ids + fr };
				nreq++;
			}
			tokA += (size_t)P;
			tokB += gB;
			k = j;
		}
		if (npre) {
			if (rl_forward_run(f, &kv, npre, pre, logits))
				goto done;
			for (int g = 0; g < ngrp; g++) {
				const cont_group *gr = &groups[g];
				for (int o = 1; gr->prefix && o < gr->nreq; o++)
					rl_kvcache_copy_prefix(&kv, gr->slot0, gr->slot0 + o, gr->prefix);
			}
		}
		if (rl_forward_run(f, use_cache ? &kv : NULL, nreq, seqs, logits))
			goto done;
		size_t row = 0;
		for (int s = 0; s < nreq; s++) {
			cont_tokens *t = &toks[i + (size_t)s];
			rl_cont_res *r = &res[i + (size_t)s];
			r->ll = 0.0;
			r->ntok = t->n - t->lcp;
			r->greedy = 1;
			for (int j = t->lcp; j < t->n; j++) {
				const float *lr = logits + (row + (size_t)(j - 1 - first[s])) * (size_t)V;
				r->ll += (double)lr[t->ids[j]] - rl_logsumexp(lr, (size_t)V);
				r->greedy &= rl_argmax(lr, (size_t)V) == (size_t)t->ids[j];
			}
			row += (size_t)seqs[s].ntok;
			free(t->ids);
			t->ids = NULL;
		}
		i += (size_t)nreq;
		if (progress)
			progress(i, n, arg);
	}
	rc = 0;
done:
	for (size_t k = 0; k < n; k++)
		free(toks[k].ids);
	free(toks);
	free(seqs);
	free(pre);
	free(groups);
	free(first);
	free(logits);
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	return rc;
}
