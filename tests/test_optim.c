/* test_optim.c: AdamW, the schedule and clipping against torch.optim.AdamW
 * and clip_grad_norm_ (tests/ref/adamw.py -> tests/fixtures/adamw.json). */
#include <math.h>
#include <stdlib.h>

#include "err.h"
#include "json.h"
#include "optim.h"
#include "t.h"

static double num(const rl_json *o, const char *k)
{
	const rl_json *v = rl_json_get(o, k);
	return v && v->type == RL_JSON_NUMBER ? v->number : NAN;
}

static void floats(const rl_json *a, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a && a->type == RL_JSON_ARRAY && i < a->len ? (float)a->items[i]->number : NAN;
}

int main(void)
{
	size_t len;
	char *text = rl_read_file("tests/fixtures/adamw.json", &len);
	rl_json *j = text ? rl_json_parse(text, len) : NULL;
	if (!j) {
		CHECK(0, "adamw_fixture", "tests/fixtures/adamw.json: %s", rl_err());
		return t_done();
	}
	size_t n = (size_t)num(j, "n");
	uint64_t total = (uint64_t)num(j, "total"), warmup = (uint64_t)num(j, "warmup");
	float p[64], g[64], want[64];
	floats(rl_json_get(j, "p0"), p, n);
	rl_adamw o;
	rl_adamw_cfg cfg = { 0.9, 0.999, 1e-8, num(j, "weight_decay") };
	int ok_lr = 1, ok_norm = 1;
	double worst = 0;
	rl_adamw_init(&o, n);
	for (uint64_t s = 0; s < total; s++) {
		double lr = rl_lr_at(s, warmup, total, num(j, "lr"), num(j, "min_ratio"));
		ok_lr &= fabs(lr - rl_json_get(j, "lrs")->items[s]->number) < 1e-12;
		floats(rl_json_get(j, "grads")->items[s], g, n);
		double norm = rl_clip_grad_norm(g, n, num(j, "clip"));
		ok_norm &= fabs(norm - rl_json_get(j, "norms")->items[s]->number) < 1e-5 * norm;
		rl_adamw_step(&o, &cfg, lr, p, g);
		floats(rl_json_get(j, "after")->items[s], want, n);
		for (size_t i = 0; i < n; i++)
			worst = fmax(worst, fabs(p[i] - want[i]) / fmax(1.0, fabs(want[i])));
	}
	CHECK(ok_lr, "lr_schedule_vs_formula", "warmup/cosine learning rates differ");
	CHECK(ok_norm, "clip_norm_vs_torch", "gradient norms differ from clip_grad_norm_");
	CHECK(worst < 1e-6, "adamw_vs_torch", "parameters differ by %g (relative) after %llu steps", worst,
	      (unsigned long long)total);
	CHECK(rl_lr_at(100, 2, 6, 0.01, 0.1) == 0.001 && rl_lr_at(0, 0, 0, 0.01, 0.1) == 0.01, "lr_after_total",
	      "past the end the rate is lr * min_ratio");
	float big[2] = { 3, 4 };
	double nb = rl_clip_grad_norm(big, 2, 0);
	CHECK(nb == 5 && big[0] == 3, "clip_off", "max_norm 0 must not clip");
	float bad[2] = { NAN, 1 };
	CHECK(isnan(rl_clip_grad_norm(bad, 2, 1.0)), "clip_nan_reported", "a NaN gradient's norm must be NaN");
	rl_adamw_free(&o);
	rl_json_free(j);
	free(text);
	return t_done();
}
