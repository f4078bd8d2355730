/* task.h: evaluation items read from jsonl files (one JSON object a line).
 *
 * Every item becomes a list of options, each a (context, continuation) pair
 * whose continuation is scored after its context:
 *   mc, lm-evaluation-harness style: {"query", "choices", "gold"}: the query is
 *     every option's context, each choice a continuation;
 *   mc, winogrande style: {"context_options", "continuation", "gold"}: each
 *     context option is a context, the continuation the same for all;
 *   lastword, LAMBADA style: {"context", "target"}: one option. */
#ifndef RL_TASK_H
#define RL_TASK_H
#include <stddef.h>

typedef enum { RL_TASK_MC, RL_TASK_LASTWORD } rl_task_kind;

typedef struct {
	int line;          /* 1-based line of the file */
	int nopt;          /* options: choices, context options, or 1 */
	char **ctx;        /* (nopt) NUL-terminated UTF-8 */
	char **cont;       /* (nopt) NUL-terminated UTF-8, never empty */
	int gold;          /* 0..nopt-1 (0 for lastword) */
	int winogrande;    /* the options differ in context, not continuation */
} rl_task_item;

/* Called for each line skipped under skip_bad, with "FILE:LINE: why". */
typedef void (*rl_task_warn_fn)(const char *msg, void *arg);

/* Reads the items of path. A line that is not a JSON object of the kind's
 * fields (string fields valid UTF-8 and non-empty, at least two choices, gold
 * an integer in range) is an error "FILE:LINE: why", or with skip_bad a
 * warning and the line skipped. Blank lines are ignored; a file with no item
 * is an error. Returns 0 or -1 (rl_err). */
int rl_task_load(const char *path, rl_task_kind kind, int skip_bad, rl_task_item **items,
		 size_t *nitems, rl_task_warn_fn warn, void *arg);
void rl_task_free(rl_task_item *items, size_t nitems);

/* Characters (UTF-8 code points) of s, the length acc_norm divides by. */
size_t rl_utf8_chars(const char *s);

#endif
