/* fuzz_config.c: an HF-style config.json read into a model config. */
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	rl_config c;
	char arch[16];
	rl_config_from_json(path, &c, arch);
	close(fd);
	return 0;
}
