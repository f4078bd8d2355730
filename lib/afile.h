/* afile.h: outputs that appear whole or not at all.
 *
 * A file is written under a temporary name in its own directory
 * (PATH.tmp.XXXXXX) and renamed over PATH on commit, after fflush and fsync;
 * a failure or abort removes the temporary. A directory (an HF model or a
 * PEFT adapter) is built as DIR.tmp.XXXXXX and put in place on commit: an
 * existing DIR is first moved aside and removed only after the new one is in
 * place, so a killed run leaves either the old directory or the new one
 * (plus, at worst, a DIR.tmp.* or DIR.old.* that names itself). */
#ifndef RL_AFILE_H
#define RL_AFILE_H
#include <stdio.h>

typedef struct rl_afile {
	FILE *f;          /* write here */
	char *path, *tmp; /* owned */
} rl_afile;

/* Opens a temporary beside path for writing (mode 0666 less the umask).
 * Returns 0, or -1 with rl_err naming path. */
int rl_afile_open(rl_afile *a, const char *path);
/* Flushes, syncs, closes and renames into place: 0, or -1 with rl_err naming
 * the path (the temporary is then removed). Frees a's names either way. */
int rl_afile_commit(rl_afile *a);
/* Closes and removes the temporary; frees a's names. Safe on a zeroed a. */
void rl_afile_abort(rl_afile *a);

typedef struct rl_adir {
	char *path, *tmp; /* owned; tmp is the directory to fill */
} rl_adir;

/* Creates the temporary directory beside path. Files written inside it
 * (e.g. with rl_afile_open on rl_adir_file's names) appear at path on commit. */
int rl_adir_open(rl_adir *d, const char *path);
/* tmp/name, allocated (caller frees), or NULL with rl_err set. */
char *rl_adir_file(const rl_adir *d, const char *name);
/* Writes the file name in the directory being built: fn(f, shown, arg)
 * writes to f, shown being path/name for its messages; then the file is
 * committed (or removed when fn fails). 0, or -1 with rl_err set. */
int rl_adir_write(const rl_adir *d, const char *name, int (*fn)(FILE *f, const char *shown, void *arg), void *arg);
/* Syncs the directory and puts it in place of path (replacing a directory
 * there; a non-directory at path is an error). 0, or -1 with rl_err set and
 * the temporary removed. */
int rl_adir_commit(rl_adir *d);
/* Removes the temporary directory and what is in it (one level: files only). */
void rl_adir_abort(rl_adir *d);

#endif
