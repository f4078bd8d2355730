/* tokenizer_speed: encoding speed of both tokenizer kinds on one text, for
 * `make bench`: Qwen3's byte-level BPE (tokenizer.json) and stories260K's
 * SentencePiece-style tok512.bin, each the best of 3 runs over the whole
 * file in one call. Prints one line per tokenizer, and the BPE load time.
 * Usage: tokenizer_speed TEXT QWEN3_DIR TOK512_BIN */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "err.h"
#include "json.h"
#include "tokenizer.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void measure(const char *name, const rl_tokenizer *tk, const char *text, size_t len)
{
	double best = 1e30;
	size_t n = 0;
	for (int r = 0; r < 3; r++) {
		int *ids;
		double t0 = now();
		if (rl_encode(tk, text, len, 1, 0, &ids, &n)) {
			fprintf(stderr, "tokenizer_speed: %s: %s\n", name, rl_err());
			exit(1);
		}
		double t = now() - t0;
		best = t < best ? t : best;
		free(ids);
	}
	printf("encode %s: %.2f M tokens/s, %.1f MB/s (%zu bytes, %zu tokens)\n", name, (double)n / best / 1e6,
	       (double)len / best / 1e6, len, n);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: tokenizer_speed TEXT QWEN3_DIR TOK512_BIN\n");
		return 2;
	}
	size_t len;
	char *text = rl_read_file(argv[1], &len);
	rl_tokenizer bpe, sp;
	double t0 = now();
	if (!text || rl_tokenizer_load_hf(&bpe, argv[2])) {
		fprintf(stderr, "tokenizer_speed: %s\n", rl_err());
		return 1;
	}
	double load = now() - t0;
	if (rl_tokenizer_load_llama2c(&sp, argv[3], 512)) {
		fprintf(stderr, "tokenizer_speed: %s\n", rl_err());
		return 1;
	}
	measure("qwen3 byte-level BPE", &bpe, text, len);
	measure("tok512 sentencepiece", &sp, text, len);
	printf("load qwen3 tokenizer.json: %.2f s\n", load);
	rl_tokenizer_free(&bpe);
	rl_tokenizer_free(&sp);
	free(text);
	return 0;
}
