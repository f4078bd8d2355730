#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "tool.h"

void rl_tool_init(void)
{
	signal(SIGPIPE, SIG_IGN);
}

int rl_parse_threads(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*s == 0 || *end || n < 1 || n > 1024)
		return -1;
	return (int)n;
}

int rl_parse_long(const char *s, long lo, long hi, long *v)
{
	char *end;
	errno = 0;
	*v = strtol(s, &end, 10);
	return *s == 0 || *end || errno || *v < lo || *v > hi ? -1 : 0;
}

int rl_parse_double(const char *s, double lo, double hi, double *v)
{
	char *end;
	*v = strtod(s, &end);
	return *s == 0 || *end || !(*v >= lo && *v <= hi) ? -1 : 0;
}

long rl_opt_long(const char *opt, const char *s, long lo, long hi)
{
	long v;
	if (rl_parse_long(s, lo, hi, &v))
		errx(2, "%s %s: not an integer from %ld to %ld", opt, s, lo, hi);
	return v;
}

double rl_opt_double(const char *opt, const char *s, double lo, double hi)
{
	double v;
	if (rl_parse_double(s, lo, hi, &v))
		errx(2, "%s %s: not a number from %g to %g", opt, s, lo, hi);
	return v;
}

int rl_stderr_tty(void)
{
	return isatty(2);
}

int rl_parse_seed(const char *s, unsigned long long *seed)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*seed = strtoull(s, &end, 10);
	return *end || errno ? -1 : 0;
}
