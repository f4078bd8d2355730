/* maxrss: runs a command and prints its peak resident set size in bytes on stderr's last line. */
#include <err.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		errx(2, "usage: maxrss COMMAND [ARG...]");
	pid_t pid = fork();
	if (pid < 0)
		err(1, "fork");
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		err(127, "%s", argv[1]);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0)
		err(1, "wait4");
	printf("%ld\n", ru.ru_maxrss * 1024L);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
