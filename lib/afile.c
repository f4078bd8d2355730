/* afile.c: outputs that appear whole or not at all (afile.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "afile.h"
#include "err.h"

int rl_afile_open(rl_afile *a, const char *path)
{
	memset(a, 0, sizeof *a);
	a->path = strdup(path);
	if (!a->path || asprintf(&a->tmp, "%s.tmp.XXXXXX", path) < 0) {
		free(a->path);
		memset(a, 0, sizeof *a);
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	int fd = mkstemp(a->tmp);
	if (fd < 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		goto fail;
	}
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	a->f = fdopen(fd, "wb");
	if (!a->f) {
		rl_seterr("%s: %s", path, strerror(errno));
		close(fd);
		unlink(a->tmp);
		goto fail;
	}
	return 0;
fail:
	free(a->path);
	free(a->tmp);
	memset(a, 0, sizeof *a);
	return -1;
}

int rl_afile_commit(rl_afile *a)
{
	int rc = 0;
	if (fflush(a->f) != 0 || ferror(a->f)) {
		rl_seterr("%s: %s", a->path, strerror(errno ? errno : EIO));
		rc = -1;
	}
	if (rc == 0 && fsync(fileno(a->f)) != 0 && errno != EINVAL) {
		rl_seterr("%s: %s", a->path, strerror(errno));
		rc = -1;
	}
	if (fclose(a->f) != 0 && rc == 0) {
		rl_seterr("%s: %s", a->path, strerror(errno));
		rc = -1;
	}
	if (rc == 0 && rename(a->tmp, a->path) != 0) {
		rl_seterr("%s: %s", a->path, strerror(errno));
		rc = -1;
	}
	if (rc)
		unlink(a->tmp);
	free(a->path);
	free(a->tmp);
	memset(a, 0, sizeof *a);
	return rc;
}

void rl_afile_abort(rl_afile *a)
{
	if (a->f) {
		fclose(a->f);
		unlink(a->tmp);
	}
	free(a->path);
	free(a->tmp);
	memset(a, 0, sizeof *a);
}

/* ---- directories ---- */

int rl_adir_open(rl_adir *d, const char *path)
{
	memset(d, 0, sizeof *d);
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/') /* "out/" names out */
		n--;
	d->path = strndup(path, n);
	if (!d->path || asprintf(&d->tmp, "%s.tmp.XXXXXX", d->path) < 0) {
		free(d->path);
		memset(d, 0, sizeof *d);
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	if (!mkdtemp(d->tmp)) {
		rl_seterr("%s: %s", path, strerror(errno));
		free(d->path);
		free(d->tmp);
		memset(d, 0, sizeof *d);
		return -1;
	}
	mode_t mask = umask(0);
	umask(mask);
	chmod(d->tmp, 0777 & ~mask);
	return 0;
}

char *rl_adir_file(const rl_adir *d, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", d->tmp, name) < 0) {
		rl_seterr("%s: out of memory", d->path);
		return NULL;
	}
	return p;
}

int rl_adir_write(const rl_adir *d, const char *name, int (*fn)(FILE *f, const char *shown, void *arg), void *arg)
{
	char *tmp = rl_adir_file(d, name), *shown = NULL;
	rl_afile a;
	if (!tmp || asprintf(&shown, "%s/%s", d->path, name) < 0) {
		free(tmp);
		rl_seterr("%s: out of memory", d->path);
		return -1;
	}
	int rc = rl_afile_open(&a, tmp);
	if (rc == 0 && (rc = fn(a.f, shown, arg)))
		rl_afile_abort(&a);
	else if (rc == 0 && (rc = rl_afile_commit(&a)))
		rl_seterr("%s: %s", shown, strerror(errno ? errno : EIO));
	free(tmp);
	free(shown);
	return rc ? -1 : 0;
}

/* Removes dir and the files in it. */
static void remove_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	if (dp) {
		struct dirent *e;
		while ((e = readdir(dp))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char *p;
			if (asprintf(&p, "%s/%s", dir, e->d_name) >= 0) {
				unlink(p);
				free(p);
			}
		}
		closedir(dp);
	}
	rmdir(dir);
}

int rl_adir_commit(rl_adir *d)
{
	int rc = -1;
	int fd = open(d->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) { /* the files' names are durable before the rename */
		fsync(fd);
		close(fd);
	}
	struct stat st;
	if (lstat(d->path, &st) != 0) {
		if (errno != ENOENT) {
			rl_seterr("%s: %s", d->path, strerror(errno));
		} else if (rename(d->tmp, d->path) != 0) {
			rl_seterr("%s: %s", d->path, strerror(errno));
		} else {
			rc = 0;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		rl_seterr("%s: exists and is not a directory; not replacing it", d->path);
	} else if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) == 0) {
		/* the old directory now has the temporary name */
		rc = 0;
	} else {
		/* no atomic exchange here (an older kernel or file system): move
		 * the old one aside, put the new one in place, then drop the old */
		char *old = NULL;
		if (asprintf(&old, "%s.old.XXXXXX", d->path) < 0 || !mkdtemp(old)) {
			rl_seterr("%s: %s", d->path, strerror(errno));
		} else if (rename(d->path, old) != 0) {
			rl_seterr("%s: %s", d->path, strerror(errno));
			rmdir(old);
		} else if (rename(d->tmp, d->path) != 0) {
			rl_seterr("%s: %s", d->path, strerror(errno));
			rename(old, d->path);
		} else {
			remove_dir(old);
			rc = 0;
		}
		free(old);
	}
	remove_dir(d->tmp); /* the old directory after an exchange, or the failed new one */
	free(d->path);
	free(d->tmp);
	memset(d, 0, sizeof *d);
	return rc;
}

void rl_adir_abort(rl_adir *d)
{
	if (d->tmp)
		remove_dir(d->tmp);
	free(d->path);
	free(d->tmp);
	memset(d, 0, sizeof *d);
}
