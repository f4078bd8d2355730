/* fuzz_task.c: the jsonl task reader (both kinds, strict and --skip-bad). */
#include "fuzz.h"
#include "task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	for (int kind = 0; kind < 2; kind++)
		for (int skip = 0; skip < 2; skip++) {
			rl_task_item *items;
			size_t n;
			if (rl_task_load(path, kind ? RL_TASK_LASTWORD : RL_TASK_MC, skip, &items, &n, NULL, NULL) == 0)
				rl_task_free(items, n);
		}
	close(fd);
	return 0;
}
