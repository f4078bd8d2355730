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
