/* fuzz_gguf.c: GGUF files into models (header, metadata, tensors, tokenizer). */
#include "fuzz.h"
#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	rl_model m;
	if (rl_model_load_gguf(path, &m) == 0)
		rl_model_free(&m);
	close(fd);
	return 0;
}
