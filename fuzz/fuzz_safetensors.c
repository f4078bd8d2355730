/* fuzz_safetensors.c: a safetensors file's header and layout checks. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	rl_safetensors st;
	if (rl_safetensors_open(&st, path) == 0)
		rl_safetensors_close(&st);
	close(fd);
	return 0;
}
