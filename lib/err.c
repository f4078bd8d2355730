#include <stdarg.h>
#include <stdio.h>

#include "err.h"

static _Thread_local char message[1024];

void rl_seterr(const char *fmt, ...)
{
	/* The format may use the previous message as an argument: format into a copy. */
	char buf[sizeof message];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	snprintf(message, sizeof message, "%s", buf);
}

const char *rl_err(void)
{
	return message;
}
