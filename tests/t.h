/* t.h: the smallest test harness. Each check prints one line that
 * tests/run.sh counts: "PASS name", "FAIL name: why" or "SKIP name: why".
 * A test program returns t_done(), non-zero when any check failed. */
#ifndef T_H
#define T_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int t_failures;

static inline void t_result(int ok, const char *name, const char *fmt, ...)
{
	if (ok) {
		printf("PASS %s\n", name);
	} else {
		va_list ap;
		printf("FAIL %s: ", name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		t_failures++;
	}
	fflush(stdout);
}

static inline void t_skip(const char *name, const char *why)
{
	printf("SKIP %s: %s\n", name, why);
	fflush(stdout);
}

/* CHECK(cond, name, fmt, ...): the message explains a failure. */
#define CHECK(cond, name, ...) t_result((cond) ? 1 : 0, (name), __VA_ARGS__)

/* ../shared, or $SHARED when set: the data every test may read */
static inline const char *t_shared(void)
{
	const char *s = getenv("SHARED");
	return s && *s ? s : "../shared";
}

/* max|a-b| / max|b|, the project's "relative" (DESIGN.md, Conventions) */
static inline double t_rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		num = d > num ? d : num;
		den = fabs(b[i]) > den ? fabs(b[i]) : den;
	}
	return den > 0 ? num / den : num;
}

#ifdef RL_MODEL_H
/* out (T, vocab): the logits of one sequence run as a single batch */
static inline int t_batch_logits(const rl_model *m, const int *tokens, int T, float *out)
{
	rl_forward *f = rl_forward_new(m, T, T);
	rl_seq s = { .ntok = T, .tokens = tokens };
	int rc = !f || rl_forward_run(f, NULL, 1, &s, out) ? -1 : 0;
	rl_forward_free(f);
	return rc;
}

/* the same, token by token through the KV cache */
static inline int t_decode_logits(const rl_model *m, const int *tokens, int T, float *out)
{
	rl_kvcache c;
	rl_forward *f = rl_forward_new(m, 1, T);
	if (!f || rl_kvcache_init(&c, m, 1, T)) {
		rl_forward_free(f);
		return -1;
	}
	int rc = 0;
	for (int t = 0; t < T && !rc; t++) {
		rl_seq s = { .slot = 0, .pos0 = t, .ntok = 1, .tokens = &tokens[t] };
		rc = rl_forward_run(f, &c, 1, &s, out + (size_t)t * m->cfg.vocab_size);
	}
	rl_kvcache_free(&c);
	rl_forward_free(f);
	return rc;
}
#endif

static inline int t_done(void)
{
	return t_failures ? 1 : 0;
}
#endif
