/* eval.h: scoring text with a model (the rule of DESIGN.md, "Text scoring"). */
#ifndef RL_EVAL_H
#define RL_EVAL_H
#include <stddef.h>

#include "model.h"

typedef struct {
	const char *text;
	size_t len;
} rl_span;

/* Splits text into documents: runs separated by blank lines (lines of only
 * whitespace), each stripped of surrounding whitespace; empty ones dropped.
 * *docs is allocated (caller frees) and points into text. */
int rl_split_documents(const char *text, size_t len, rl_span **docs, size_t *ndocs);

typedef struct {
	double nll_sum;        /* nats over all scored tokens */
	size_t ntokens;        /* tokens scored */
	size_t ndocs;
	double doc_nll_sumsq;  /* sum over documents of (doc nll sum / doc tokens)^2, for the stderr */
	double doc_nll_sum;    /* sum over documents of their mean nll */
} rl_ppl;

/* Progress: called after each batch with documents done and in all. */
typedef void (*rl_progress_fn)(size_t done, size_t total, void *arg);

/* Scores every document: encoded with BOS when the tokenizer has one (and its
 * dummy prefix), in windows of ctx tokens, each window after the first
 * starting with ctx/2 tokens of unscored context. */
int rl_eval_ppl(const rl_model *m, const rl_span *docs, size_t ndocs, int ctx, rl_ppl *out,
		rl_progress_fn progress, void *arg);

/* log(sum(exp(row))) over n logits, stable */
double rl_logsumexp(const float *row, size_t n);

#endif
