/* fuzz_tokenizer_json.c: a Hugging Face tokenizer.json (byte-level BPE) and,
 * when it loads, encoding and decoding a fixed text with it. The loader reads
 * a directory, so each input is written to one of our own. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tokenizer.h"

static char dir[64], path[128];

/* the directory goes when the process ends normally */
static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/fuzztok.XXXXXX");
		if (!mkdtemp(dir))
			return 0;
		snprintf(path, sizeof path, "%s/tokenizer.json", dir);
		atexit(cleanup);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	rl_tokenizer tk;
	if (rl_tokenizer_load_hf(&tk, dir) == 0) {
		static const char text[] = "Hello world, 1234 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 <|im_end|>\n\n  x";
		int *ids;
		size_t n;
		if (rl_encode(&tk, text, sizeof text - 1, 1, 1, &ids, &n) == 0) {
			int prev = -1;
			for (size_t i = 0; i < n; i++) {
				size_t len;
				rl_decode_piece(&tk, prev, ids[i], &len);
				prev = ids[i];
			}
			free(ids);
		}
		rl_tokenizer_free(&tk);
	}
	return 0;
}
