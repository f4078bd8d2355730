/* fuzz.h: what every harness shares. A harness defines
 * LLVMFuzzerTestOneInput; libFuzzer drives it under `make fuzz`, and
 * driver.c replays saved inputs (seeds and past crashes) under `make check`.
 * Parsers that take a path get the bytes through a memfd, so nothing touches
 * the disk. */
#ifndef FUZZ_H
#define FUZZ_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes the input to an anonymous file; *path names it ("/proc/self/fd/N").
 * Returns the descriptor to close, or -1. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t pathsz)
{
	int fd = memfd_create("fuzz", 0);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	snprintf(path, pathsz, "/proc/self/fd/%d", fd);
	return fd;
}
#endif
