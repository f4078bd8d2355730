/* fuzz_model.c: the one model entry point (rl_model_load) on hostile bytes:
 * model streams and llama2.c checkpoints (the tokenizer of stories260K is
 * given, so a checkpoint claiming a vocabulary of 512 reaches the weights). */
#include <stdlib.h>

#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	const char *tok = getenv("FUZZ_TOKENIZER");
	rl_load_opts opts = { .tokenizer = tok ? tok : "../shared/models/stories260K/tok512.bin" };
	rl_model m;
	if (rl_model_load(path, &opts, &m) == 0)
		rl_model_free(&m);
	close(fd);
	return 0;
}
