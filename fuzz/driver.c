/* driver.c: replays saved inputs through a harness without libFuzzer, so
 * `make check` keeps every seed and every crash once found as a regression
 * test. usage: fuzz_NAME FILE... ; prints PASS per file (a crash ends it). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			printf("FAIL %s: cannot open\n", argv[i]);
			return 1;
		}
		fseek(f, 0, SEEK_END);
		long n = ftell(f);
		fseek(f, 0, SEEK_SET);
		uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
		if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
			printf("FAIL %s: cannot read\n", argv[i]);
			return 1;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, (size_t)n);
		free(buf);
	}
	return 0;
}
