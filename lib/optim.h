/* optim.h: AdamW with decoupled weight decay, the learning-rate schedule
 * (linear warmup, then cosine decay) and global-norm gradient clipping, over
 * one flat array of parameters (distill keeps every LoRA matrix in one). */
#ifndef RL_OPTIM_H
#define RL_OPTIM_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
	double beta1, beta2, eps, weight_decay;  /* 0.9, 0.999, 1e-8 and 0.0 are the usual values */
} rl_adamw_cfg;

typedef struct {
	size_t n;
	float *m, *v;   /* first and second moments (n), zero at the start */
	uint64_t t;     /* steps taken */
} rl_adamw;

int rl_adamw_init(rl_adamw *o, size_t n);
void rl_adamw_free(rl_adamw *o);
/* One step at learning rate lr: as torch.optim.AdamW (bias-corrected moments;
 * p -= lr * wd * p before the Adam update). */
void rl_adamw_step(rl_adamw *o, const rl_adamw_cfg *c, double lr, float *params, const float *grads);

/* Linear warmup from lr/warmup to lr over warmup steps, then cosine decay to
 * lr * min_ratio at step total (and there after). step counts from 0. */
double rl_lr_at(uint64_t step, uint64_t warmup, uint64_t total, double lr, double min_ratio);

/* Scales g so its L2 norm is at most max_norm (max_norm <= 0: never);
 * returns the norm before scaling (NaN or inf when a gradient is). */
double rl_clip_grad_norm(float *g, size_t n, double max_norm);

#endif
