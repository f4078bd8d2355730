/* test_afile: atomic files and directories (afile.h): nothing appears under
 * the final name before commit, an abort leaves nothing behind, a commit
 * replaces what was there whole, and a file in the way of a directory is
 * refused, not replaced. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "afile.h"
#include "err.h"
#include "t.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	static char buf[256];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* entries of dir other than . and .. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void write_in(const rl_adir *d, const char *name, const char *text)
{
	char *p = rl_adir_file(d, name);
	rl_afile f;
	if (p && rl_afile_open(&f, p) == 0) {
		fputs(text, f.f);
		rl_afile_commit(&f);
	}
	free(p);
}

int main(void)
{
	char root[] = "/tmp/test_afile.XXXXXX";
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	char path[512], dir[512];
	snprintf(path, sizeof path, "%s/out.bin", root);
	snprintf(dir, sizeof dir, "%s/model", root);

	rl_afile a;
	int rc = rl_afile_open(&a, path);
	fputs("first", a.f);
	CHECK(rc == 0 && access(path, F_OK) != 0, "file_absent_before_commit", "rc %d", rc);
	rc = rl_afile_commit(&a);
	char *s = slurp(path);
	CHECK(rc == 0 && s && strcmp(s, "first") == 0, "file_commit", "rc %d, %s", rc, s ? s : "(none)");

	rc = rl_afile_open(&a, path);
	fputs("second, never committed", a.f);
	rl_afile_abort(&a);
	s = slurp(path);
	CHECK(rc == 0 && s && strcmp(s, "first") == 0 && count_entries(root) == 1, "file_abort_keeps_old",
	      "%s, %d entries", s ? s : "(none)", count_entries(root));

	rl_adir d;
	rc = rl_adir_open(&d, dir);
	write_in(&d, "config.json", "{}");
	CHECK(rc == 0 && access(dir, F_OK) != 0, "dir_absent_before_commit", "rc %d", rc);
	rc = rl_adir_commit(&d);
	char p[600];
	snprintf(p, sizeof p, "%s/config.json", dir);
	s = slurp(p);
	CHECK(rc == 0 && s && strcmp(s, "{}") == 0, "dir_commit", "rc %d: %s", rc, rl_err());

	/* replacing: the old files go with the old directory */
	char slash[600];
	snprintf(slash, sizeof slash, "%s/", dir);
	rc = rl_adir_open(&d, slash);
	write_in(&d, "model.safetensors", "new");
	rc |= rl_adir_commit(&d);
	snprintf(p, sizeof p, "%s/model.safetensors", dir);
	s = slurp(p);
	CHECK(rc == 0 && s && strcmp(s, "new") == 0 && count_entries(dir) == 1 && count_entries(root) == 2,
	      "dir_replace", "rc %d, %d files in it, %d beside it: %s", rc, count_entries(dir), count_entries(root),
	      rl_err());

	rc = rl_adir_open(&d, dir);
	write_in(&d, "x", "never");
	rl_adir_abort(&d);
	CHECK(rc == 0 && count_entries(dir) == 1 && count_entries(root) == 2, "dir_abort_keeps_old",
	      "%d entries beside it", count_entries(root));

	/* a file where the directory should go is not replaced */
	rc = rl_adir_open(&d, path);
	write_in(&d, "x", "y");
	rc = rl_adir_commit(&d);
	s = slurp(path);
	CHECK(rc == -1 && strstr(rl_err(), "not a directory") && s && strcmp(s, "first") == 0 &&
		      count_entries(root) == 2,
	      "dir_refuses_file", "rc %d: %s", rc, rl_err());

	snprintf(p, sizeof p, "rm -rf %s", root);
	if (system(p) != 0)
		return 1;
	return t_done();
}
