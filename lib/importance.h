/* importance.h: how much each input channel of each linear layer matters,
 * measured on data: E[x_c^2] over the tokens of a sample stream, the
 * statistic activation-aware quantizers weight their squared error by
 * (qpack --importance). Data-free as a whole: the samples come from the
 * teacher itself (teacher-gen). */
#ifndef RL_IMPORTANCE_H
#define RL_IMPORTANCE_H
#include <stdint.h>

#include "eval.h"
#include "model.h"

typedef struct {
	int ntensors;
	float **imp;        /* (ntensors) per model tensor: its input channels' E[x^2], NULL if no linear input */
	uint64_t ntokens;   /* tokens run */
	uint64_t nsamples;
} rl_importance;

/* Runs m over the samples of the stream at path (at most max_tokens tokens in
 * all; 0 = no limit) and gathers the statistics. The stream must come from m's
 * teacher (its "teacher" is m's source) and share its vocabulary. */
int rl_importance_collect(const rl_model *m, const char *path, uint64_t max_tokens, rl_importance *out,
			  rl_progress_fn progress, void *arg);
void rl_importance_free(rl_importance *imp);

#endif
