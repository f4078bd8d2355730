/* t.h: the smallest test harness. Each check prints one line that
 * tests/run.sh counts: "PASS name", "FAIL name: why" or "SKIP name: why".
 * A test program returns t_done(), non-zero when any check failed. */
#ifndef T_H
#define T_H
#include <stdio.h>
#include <stdarg.h>

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

static inline int t_done(void)
{
	return t_failures ? 1 : 0;
}
#endif
