/* tool.h: what every tool shares: its version, and the start-up that makes a
 * closed pipe an error the tool reports (exit 1) instead of a silent SIGPIPE. */
#ifndef RL_TOOL_H
#define RL_TOOL_H

#define RL_VERSION "0.1.0"

void rl_tool_init(void);
/* Parses a -t argument: 1..1024 threads. Returns -1 on a bad value. */
int rl_parse_threads(const char *s);
/* Parses a --seed argument: a non-negative integer. Returns -1 on a bad value. */
int rl_parse_seed(const char *s, unsigned long long *seed);
/* Option values: the whole of s a number in [lo, hi] (NaN never is).
 * Return 0 and set *v, or -1 on a bad value. */
int rl_parse_long(const char *s, long lo, long hi, long *v);
int rl_parse_double(const char *s, double lo, double hi, double *v);
/* The same for a tool's option opt: its value, or a usage error naming the
 * option and the range (exit status 2). */
long rl_opt_long(const char *opt, const char *s, long lo, long hi);
double rl_opt_double(const char *opt, const char *s, double lo, double hi);
/* 1 when stderr is a terminal (progress is drawn in place there). */
int rl_stderr_tty(void);

#endif
