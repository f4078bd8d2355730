/* fuzz_stream.c: the tstream reader on hostile bytes, every message read
 * until the end or the first error. */
#include "fuzz.h"
#include "stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	rl_reader *r = rl_reader_open(path);
	if (r) {
		rl_msg m;
		while (rl_read(r, &m) == 1)
			;
		rl_reader_close(r);
	}
	close(fd);
	return 0;
}
