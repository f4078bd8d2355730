/* err.h: how the library reports failure.
 *
 * The library never prints and never exits. A function that fails returns -1
 * (or NULL) after leaving a message with rl_seterr(); the tool decides what to
 * tell the user, typically errx(1, "%s: %s", what, rl_err()). */
#ifndef RL_ERR_H
#define RL_ERR_H

void rl_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last message set on this thread ("" if none). */
const char *rl_err(void);

#endif
