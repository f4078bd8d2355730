/* fuzz_pack.c: recovery packs (tar entries, the manifest, members and their
 * checks) into models. */
#include "fuzz.h"
#include "model.h"
#include "pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	rl_pack_info info;
	rl_pack_verify(path, &info);
	rl_model m;
	if (rl_model_load_pack(path, &m) == 0)
		rl_model_free(&m);
	close(fd);
	return 0;
}
