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

/* One document's share of the sums below (for paired comparisons of models on
 * the same text, evalrun's recovery standard errors) */
typedef struct {
	double nll, kl;        /* nats summed over its scored tokens */
	size_t tokens, top1;   /* scored tokens; those whose argmax agrees with the reference's */
} rl_ppl_doc;

typedef struct {
	double nll_sum;        /* nats over all scored tokens */
	size_t ntokens;        /* tokens scored */
	size_t ndocs;
	double doc_nll_sumsq;  /* sum over documents of (doc nll sum / doc tokens)^2, for the stderr */
	double doc_nll_sum;    /* sum over documents of their mean nll */
	/* against a reference model (zero without one) */
	double kl_sum;         /* sum over scored tokens of KL(reference || model), nats */
	size_t top1;           /* scored tokens whose argmax agrees with the reference's */
	double doc_kl_sum, doc_kl_sumsq; /* over documents of their mean KL, for the stderr */
} rl_ppl;

/* Progress: called after each batch with documents done and in all. */
typedef void (*rl_progress_fn)(size_t done, size_t total, void *arg);

/* Scores every document: encoded with BOS when the tokenizer has one (and its
 * dummy prefix), in windows of ctx tokens, each window after the first
 * starting with ctx/2 tokens of unscored context. With ref (else NULL), each
 * scored position also gets KL(ref || m) over the whole vocabulary and whether
 * the two argmaxes agree, ref running on the same tokens (m's tokenizer; the
 * two must have the same vocabulary, see rl_eval_same_vocab). per_doc, when
 * not NULL, has room for ndocs entries and gets each document's sums. */
int rl_eval_ppl(const rl_model *m, const rl_model *ref, const rl_span *docs, size_t ndocs, int ctx,
		rl_ppl *out, rl_ppl_doc *per_doc, rl_progress_fn progress, void *arg);

/* 0 when a and b have the same vocabulary (size and every piece), else -1
 * with rl_err saying where they differ. */
int rl_eval_same_vocab(const rl_model *a, const rl_model *b);

/* A continuation to score after its context (DESIGN.md, "Text scoring"): the
 * tokens of encode(ctx + sep + cont) after the longest common prefix with
 * encode(ctx), both with BOS when the tokenizer has one; sep is " " unless
 * cont starts with whitespace. When the whole exceeds the context length, it
 * is cut on the left. */
typedef struct {
	const char *ctx;
	size_t ctx_len;
	const char *cont;
	size_t cont_len;
} rl_cont_req;

typedef struct {
	double ll;       /* sum of the continuation tokens' log-probabilities */
	int ntok;        /* continuation tokens */
	int greedy;      /* 1 when every continuation token is the argmax */
} rl_cont_res;

/* Scores n continuations in batches; progress counts requests. */
int rl_eval_continuations(const rl_model *m, const rl_cont_req *req, size_t n, int ctx,
			  rl_cont_res *res, rl_progress_fn progress, void *arg);

/* The index of the largest of n values, the first on ties. */
size_t rl_argmax(const float *row, size_t n);

/* log(sum(exp(row))) over n logits, stable */
double rl_logsumexp(const float *row, size_t n);

#endif
