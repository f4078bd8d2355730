/* optim.c: AdamW, schedule and clipping (optim.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "optim.h"

int rl_adamw_init(rl_adamw *o, size_t n)
{
	memset(o, 0, sizeof *o);
	o->m = calloc(n ? n : 1, sizeof(float));
	o->v = calloc(n ? n : 1, sizeof(float));
	if (!o->m || !o->v) {
		rl_adamw_free(o);
		rl_seterr("optimizer state for %zu parameters: out of memory", n);
		return -1;
	}
	o->n = n;
	return 0;
}

void rl_adamw_free(rl_adamw *o)
{
	free(o->m);
	free(o->v);
	memset(o, 0, sizeof *o);
}

void rl_adamw_step(rl_adamw *o, const rl_adamw_cfg *c, double lr, float *params, const float *grads)
{
	o->t++;
	double bc1 = 1.0 - pow(c->beta1, (double)o->t), bc2 = 1.0 - pow(c->beta2, (double)o->t);
	float b1 = (float)c->beta1, b2 = (float)c->beta2;
	float decay = (float)(1.0 - lr * c->weight_decay), step = (float)(lr / bc1);
	float sbc2 = (float)sqrt(bc2), eps = (float)c->eps;
	for (size_t i = 0; i < o->n; i++) {
		float g = grads[i];
		o->m[i] = b1 * o->m[i] + (1 - b1) * g;
		o->v[i] = b2 * o->v[i] + (1 - b2) * g * g;
		params[i] = params[i] * decay - step * o->m[i] / (sqrtf(o->v[i]) / sbc2 + eps);
	}
}

double rl_lr_at(uint64_t step, uint64_t warmup, uint64_t total, double lr, double min_ratio)
{
	if (step < warmup)
		return lr * (double)(step + 1) / (double)warmup;
	if (total <= warmup || step >= total)
		return total <= warmup ? lr : lr * min_ratio;
	double p = (double)(step - warmup) / (double)(total - warmup);
	return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(M_PI * p)));
}

double rl_clip_grad_norm(float *g, size_t n, double max_norm)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)g[i] * (double)g[i];
	double norm = sqrt(s);
	if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
		float k = (float)(max_norm / (norm + 1e-6));
		for (size_t i = 0; i < n; i++)
			g[i] *= k;
	}
	return norm;
}
