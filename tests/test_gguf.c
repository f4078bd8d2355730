/* test_gguf.c: GGUF import. The files in tests/fixtures/gguf/ were written by
 * tests/ref/gguf_models.py from the GGUF specification, as llama.cpp's
 * converter lays out the tiny HF models of tests/fixtures/hf/ (llama's q/k
 * rows permuted to interleaved RoPE); each must give the logits of the HF
 * directory it came from (itself checked against PyTorch in test_hf.c), and
 * every damaged copy must be refused cleanly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "gguf.h"
#include "json.h"
#include "model.h"
#include "t.h"

static double rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		num = d > num ? d : num;
		den = fabs(b[i]) > den ? fabs(b[i]) : den;
	}
	return den > 0 ? num / den : num;
}

static int logits(const rl_model *m, const int *tokens, int T, float *out)
{
	rl_forward *f = rl_forward_new(m, T, T);
	rl_seq s = { .ntok = T, .tokens = tokens };
	int rc = !f || rl_forward_run(f, NULL, 1, &s, out) ? -1 : 0;
	rl_forward_free(f);
	return rc;
}

static void check_arch(const char *arch)
{
	char hf[256], gg[256], name[64];
	snprintf(hf, sizeof hf, "tests/fixtures/hf/%s", arch);
	snprintf(gg, sizeof gg, "tests/fixtures/gguf/%s.gguf", arch);
	snprintf(name, sizeof name, "gguf_%s_logits", arch);
	rl_model a, b;
	if (rl_model_load(hf, NULL, &a)) {
		CHECK(0, name, "%s", rl_err());
		return;
	}
	if (rl_model_load(gg, NULL, &b)) {
		CHECK(0, name, "%s", rl_err());
		rl_model_free(&a);
		return;
	}
	int T = 12, V = a.cfg.vocab_size, tokens[12] = { 1, 5, 200, 7, 33, 99, 250, 3, 17, 64, 128, 2 };
	float *la = malloc((size_t)T * V * sizeof(float)), *lb = malloc((size_t)T * V * sizeof(float));
	int rc = logits(&a, tokens, T, la) || logits(&b, tokens, T, lb);
	double e = rc ? 1 : rel_err(lb, la, (size_t)T * V);
	CHECK(!rc && b.cfg.vocab_size == V && strcmp(a.arch, b.arch) == 0 && b.cfg.qk_norm == a.cfg.qk_norm &&
	      b.cfg.qkv_bias == a.cfg.qkv_bias && b.cfg.tied_embeddings == a.cfg.tied_embeddings && e < 1e-5,
	      name, "%s: relative error %g (arch %s/%s)", rc ? rl_err() : "", e, a.arch, b.arch);
	if (!strcmp(arch, "llama"))
		CHECK(b.cfg.rope_style == RL_ROPE_INTERLEAVED && a.cfg.rope_style == RL_ROPE_HALF, "gguf_llama_rope_layout",
		      "llama GGUF must run interleaved, the HF directory rotate-half");
	if (!strcmp(arch, "qwen3")) {
		/* the byte-level BPE tokenizer comes through: the same ids as tokenizer.json's */
		const char *text = "the cat <|im_end|> sat on the mat, 42 times!";
		int *ia, *ib;
		size_t na, nb;
		int r = rl_encode(&a.tok, text, strlen(text), 0, 0, &ia, &na) ||
			rl_encode(&b.tok, text, strlen(text), 0, 0, &ib, &nb);
		CHECK(!r && na == nb && !memcmp(ia, ib, na * sizeof(int)) && b.tok.eos_id == a.tok.eos_id,
		      "gguf_qwen3_tokenizer", "%s", r ? rl_err() : "ids differ from tokenizer.json's");
		if (!r) {
			free(ia);
			free(ib);
		}
	}
	free(la);
	free(lb);
	rl_model_free(&a);
	rl_model_free(&b);
}

static unsigned char *slurp(const char *path, size_t *n)
{
	return (unsigned char *)rl_read_file(path, n);
}

static int write_bytes(const char *path, const unsigned char *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(p, 1, n, f);
	return fclose(f);
}

/* Every truncation and a run of byte flips: refused with the path named, or
 * loaded; never a crash (the process would die here). */
static void check_damage(void)
{
	size_t n;
	unsigned char *orig = slurp("tests/fixtures/gguf/qwen3.gguf", &n);
	char path[] = "/tmp/rlgguf.XXXXXX";
	int fd = mkstemp(path);
	if (!orig || fd < 0) {
		CHECK(0, "gguf_truncations", "cannot read the fixture or make a temporary file");
		return;
	}
	close(fd);
	int bad = 0, refused = 0;
	char why[600] = "";
	for (size_t cut = 0; cut < n; cut += cut < 4096 ? 1 : 512) {
		rl_model m;
		write_bytes(path, orig, cut);
		if (rl_model_load_gguf(path, &m) == 0) {
			rl_model_free(&m);
			bad++;
			snprintf(why, sizeof why, "a file cut at %zu of %zu bytes loaded", cut, n);
		} else if (!strstr(rl_err(), path)) {
			bad++;
			snprintf(why, sizeof why, "error without the path: %s", rl_err());
		} else {
			refused++;
		}
	}
	CHECK(bad == 0 && refused > 100, "gguf_truncations", "%s", why);
	unsigned char *copy = malloc(n);
	unsigned x = 12345;
	int loaded = 0, failed = 0;
	for (int i = 0; i < 400; i++) {
		memcpy(copy, orig, n);
		for (int k = 0; k < 4; k++) {
			x = x * 1103515245u + 12345u;
			size_t at = (x >> 8) % (n < 4096 ? n : 4096); /* the header, mostly */
			x = x * 1103515245u + 12345u;
			copy[at] ^= (unsigned char)(1u << (x >> 29));
		}
		write_bytes(path, copy, n);
		rl_model m;
		if (rl_model_load_gguf(path, &m) == 0) {
			loaded++;
			rl_model_free(&m);
		} else {
			failed += strstr(rl_err(), path) == NULL;
		}
	}
	CHECK(failed == 0, "gguf_flipped_bytes", "%d errors did not name the file (%d of 400 loaded)", failed, loaded);
	free(copy);
	free(orig);
	unlink(path);
}

static void expect_error(const char *name, const char *content, size_t len, const char *want)
{
	char path[] = "/tmp/rlgguf.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	write_bytes(path, (const unsigned char *)content, len);
	rl_model m;
	int rc = rl_model_load(path, NULL, &m);
	CHECK(rc && strstr(rl_err(), want), name, "%s", rc ? rl_err() : "loaded");
	if (!rc)
		rl_model_free(&m);
	unlink(path);
}

int main(void)
{
	check_arch("llama");
	check_arch("qwen2");
	check_arch("qwen3");
	check_damage();
	expect_error("gguf_bad_version", "GGUF\x07\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24, "GGUF version 7");
	expect_error("gguf_absurd_counts", "GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f\0\0\0\0\0\0\0\0", 24,
		     "more than this reader takes");
	/* one key, general.architecture = "gpt9" */
	static const char arch[] = "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0"
				   "\x14\0\0\0\0\0\0\0general.architecture\x08\0\0\0\x04\0\0\0\0\0\0\0gpt9";
	expect_error("gguf_unknown_arch", arch, sizeof arch - 1, "architecture \"gpt9\"");
	expect_error("gguf_no_arch", "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24,
		     "general.architecture is missing");
	return t_done();
}
