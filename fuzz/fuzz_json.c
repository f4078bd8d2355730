/* fuzz_json.c: the JSON parser under config.json, tokenizer.json and jsonl. */
#include "fuzz.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rl_json *v = rl_json_parse((const char *)data, size);
	rl_json_free(v);
	return 0;
}
