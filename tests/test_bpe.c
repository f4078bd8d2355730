/* test_bpe: the Hugging Face byte-level BPE tokenizer. The Qwen3 tokenizer
 * (../shared/data/tokenizers/qwen3) against ids from an independent
 * implementation (tests/fixtures/qwen3_tokens.json, written by
 * tests/ref/qwen3_vectors.mjs with transformers.js); decode(encode(s)) == s
 * on text, code and random bytes; small hand-made tokenizers for the
 * features Qwen3 does not use (GPT-2's regex, add_prefix_space,
 * ignore_merges, lstrip/rstrip, BOS from the template or the config); the
 * model stream's tokenizer message; and malformed tokenizer.json files. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "model.h"
#include "stream.h"
#include "tokenizer.h"
#include "t.h"

/* decode(ids) into a buffer (allocated, caller frees). */
static char *decode_all(const rl_tokenizer *tk, const int *ids, size_t n, size_t *len)
{
	size_t cap = 16, k = 0;
	char *out = malloc(cap);
	for (size_t i = 0; i < n && out; i++) {
		size_t plen;
		const char *p = rl_decode_piece(tk, i ? ids[i - 1] : -1, ids[i], &plen);
		if (!p) {
			free(out);
			return NULL;
		}
		while (k + plen + 1 > cap)
			out = realloc(out, cap *= 2);
		memcpy(out + k, p, plen);
		k += plen;
	}
	*len = k;
	return out;
}

static int round_trips(const rl_tokenizer *tk, const char *s, size_t n, size_t *ntokens)
{
	int *ids;
	size_t count, len;
	if (rl_encode(tk, s, n, 0, 0, &ids, &count))
		return 0;
	char *back = decode_all(tk, ids, count, &len);
	int ok = back && len == n && memcmp(back, s, n) == 0;
	if (ntokens)
		*ntokens = count;
	free(back);
	free(ids);
	return ok;
}

static void test_qwen3_fixture(const rl_tokenizer *tk)
{
	size_t len;
	char *text = rl_read_file("tests/fixtures/qwen3_tokens.json", &len);
	rl_json *root = text ? rl_json_parse(text, len) : NULL;
	free(text);
	const rl_json *items = root ? rl_json_get(root, "items") : NULL;
	if (!items || items->type != RL_JSON_ARRAY || items->len < 10) {
		CHECK(0, "qwen3 fixture", "tests/fixtures/qwen3_tokens.json: %s", rl_err());
		rl_json_free(root);
		return;
	}
	size_t same = 0, round = 0, nround = 0, total = 0;
	for (size_t i = 0; i < items->len; i++) {
		const rl_json *it = items->items[i], *s = rl_json_get(it, "text"), *want = rl_json_get(it, "ids"),
			      *dec = rl_json_get(it, "decoded");
		int *ids;
		size_t n;
		if (rl_encode(tk, s->string, s->len, 1, 0, &ids, &n)) {
			CHECK(0, "qwen3 ids", "item %zu: %s", i, rl_err());
			continue;
		}
		size_t k = 0;
		while (k < n && k < want->len && ids[k] == (int)want->items[k]->integer)
			k++;
		if (k == n && n == want->len)
			same++;
		else
			printf("# item %zu \"%.30s\": %zu ids, want %zu; first difference at %zu: %d, want %lld\n", i,
			       s->string, n, want->len, k, k < n ? ids[k] : -1,
			       k < want->len ? want->items[k]->integer : -1LL);
		total += n;
		/* decode(encode(s)) is s, or NFC(s) as the reference decodes it */
		size_t blen;
		char *back = decode_all(tk, ids, n, &blen);
		if (back && blen == dec->len && memcmp(back, dec->string, blen) == 0)
			round++;
		else
			printf("# item %zu: decoded \"%.*s\"\n", i, back ? (int)blen : 0, back ? back : "");
		if (s->len == dec->len && memcmp(s->string, dec->string, s->len) == 0)
			nround++;
		free(back);
		free(ids);
	}
	CHECK(same == items->len, "qwen3 ids equal the reference's",
	      "%zu of %zu texts give the reference's ids", same, items->len);
	CHECK(round == items->len && nround + 1 >= items->len, "qwen3 decode(encode(s))",
	      "%zu of %zu decode to the reference's text (%zu are their own NFC)", round, items->len, nround);
	CHECK(total > 300, "qwen3 fixture size", "%zu tokens", total);
	rl_json_free(root);
}

static void test_qwen3_text(const rl_tokenizer *tk)
{
	char path[4096];
	const char *names[] = { "data/wikitext-2-raw/test.txt", "data/tinystories/dev.txt" };
	for (int f = 0; f < 2; f++) {
		snprintf(path, sizeof path, "%s/%s", t_shared(), names[f]);
		size_t len, n;
		char *text = rl_read_file(path, &len);
		if (!text) {
			t_skip("qwen3 round trip on text", rl_err());
			continue;
		}
		if (len > 200000)
			len = 200000;
		while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
			len--; /* cut at a character */
		CHECK(round_trips(tk, text, len, &n) && n > len / 8 && n < len / 2, "qwen3 round trip on text",
		      "%s: %zu bytes, %zu tokens: %s", names[f], len, n, rl_err());
		free(text);
	}
	/* bytes that are not UTF-8 still round-trip, one token per odd byte */
	uint64_t x = 88172645463325252ull;
	char bytes[4096];
	for (size_t i = 0; i < sizeof bytes; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		bytes[i] = (char)(x >> 24);
	}
	CHECK(round_trips(tk, bytes, sizeof bytes, NULL), "qwen3 round trip on random bytes", "%s", rl_err());
	/* a long run (the heap path) merges as the short path does on its prefix */
	char run[4000];
	memset(run, 'a', sizeof run);
	int *ids;
	size_t n;
	int ok = rl_encode(tk, run, sizeof run, 0, 0, &ids, &n) == 0;
	size_t eights = 0;
	for (size_t i = 0; ok && i < n; i++)
		eights += tk->piece_len[ids[i]] == 8;
	CHECK(ok && round_trips(tk, run, sizeof run, NULL) && eights == 500 && n == 500, "qwen3 long run",
	      "%zu tokens, %zu of 8 bytes", n, eights);
	if (ok)
		free(ids);
}

/* ---- small hand-made tokenizers ---- */

static char tmpdir[64];

static int write_text(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* The 256 byte-level characters as vocabulary entries "c": id, JSON-escaped. */
static void byte_vocab(char *out, size_t size)
{
	size_t k = 0;
	int extra = 0;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
		unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
		if (cp == '"' || cp == '\\')
			k += (size_t)snprintf(out + k, size - k, "\"\\%c\": %d, ", (char)cp, b);
		else
			k += (size_t)snprintf(out + k, size - k, "\"\\u%04x\": %d, ", cp, b);
	}
}

/* Writes tokenizer.json: the byte vocabulary plus extra (vocabulary entries
 * from id 256, ending without a comma), merges, and the rest of the object. */
static int write_tokenizer(const char *extra_vocab, const char *merges, const char *rest)
{
	static char vocab[8192];
	char *json = malloc(1 << 16);
	byte_vocab(vocab, sizeof vocab);
	snprintf(json, 1 << 16, "{\"model\": {\"type\": \"BPE\", \"vocab\": {%s%s}, \"merges\": [%s]}%s}", vocab,
		 extra_vocab, merges, rest);
	int rc = write_text("tokenizer.json", json);
	free(json);
	return rc;
}

static const char GPT2_REST[] =
	", \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}"
	", \"added_tokens\": [{\"id\": 260, \"content\": \"<|end|>\", \"special\": true},"
	" {\"id\": 261, \"content\": \"<L>\", \"lstrip\": true, \"rstrip\": true}]"
	", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
	"{\"id\": \"<|end|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}";

static int encode_str(const rl_tokenizer *tk, const char *s, int bos, int *out, int max)
{
	int *ids;
	size_t n;
	if (rl_encode(tk, s, strlen(s), bos, 0, &ids, &n))
		return -1;
	int k = (int)n < max ? (int)n : max;
	memcpy(out, ids, (size_t)k * sizeof *out);
	free(ids);
	return (int)n;
}

static void test_small(void)
{
	rl_tokenizer tk;
	int ids[32], n;
	/* "Ġ" is U+0120, byte-level for ' '; 256 "he", 257 "ll", 258 "hell", 259 "Ġhe" */
	const char *vocab = "\"he\": 256, \"ll\": 257, \"hell\": 258, \"\\u0120he\": 259";
	const char *merges = "\"h e\", \"l l\", \"he ll\", \"\\u0120 he\"";
	int ok = write_tokenizer(vocab, merges, GPT2_REST) == 0 && rl_tokenizer_load_hf(&tk, tmpdir) == 0;
	CHECK(ok, "small: load", "%s", rl_err());
	if (!ok)
		return;
	/* BOS from the template (no tokenizer_config.json); GPT-2's regex keeps ' he' together */
	n = encode_str(&tk, "hello he", 1, ids, 32);
	CHECK(tk.vocab_size == 262 && tk.bos_id == 260 && n == 4 && ids[0] == 260 && ids[1] == 258 &&
		      ids[2] == 'o' && ids[3] == 259,
	      "small: merges by rank, GPT-2 regex, BOS from template", "%d tokens: %d %d %d %d", n, ids[0], ids[1],
	      ids[2], ids[3]);
	/* "<L>" takes the spaces on both sides; "<|end|>" is matched inside words */
	n = encode_str(&tk, "a  <L>  b<|end|>c", 0, ids, 32);
	CHECK(n == 5 && ids[0] == 'a' && ids[1] == 261 && ids[2] == 'b' && ids[3] == 260 && ids[4] == 'c',
	      "small: added tokens, lstrip and rstrip", "%d tokens: %d %d %d %d", n, ids[0], ids[1], ids[2], ids[3]);
	rl_tokenizer_free(&tk);

	/* tokenizer_config.json decides BOS over the template; add_prefix_space; ignore_merges */
	const char *rest2 =
		", \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}"
		", \"added_tokens\": [{\"id\": 260, \"content\": \"<s>\", \"special\": true}]"
		", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
		"{\"id\": \"<s>\", \"type_id\": 0}}]}";
	ok = write_tokenizer("\"he\": 256, \"ll\": 257, \"hell\": 258, \"\\u0120he\": 259, \"hl\": 261",
			     "\"h e\", \"l l\", \"he ll\", \"\\u0120 he\"", rest2) == 0 &&
	     write_text("tokenizer_config.json", "{\"add_bos_token\": false, \"bos_token\": \"<s>\", "
						 "\"eos_token\": {\"content\": \"<s>\", \"__type\": \"AddedToken\"}}") == 0 &&
	     rl_tokenizer_load_hf(&tk, tmpdir) == 0;
	CHECK(ok, "small: load with config", "%s", rl_err());
	if (ok) {
		n = encode_str(&tk, "he", 1, ids, 32);
		CHECK(tk.bos_id == -1 && tk.eos_id == 260 && n == 1 && ids[0] == 259,
		      "small: add_bos_token false, eos object, add_prefix_space", "bos %d eos %d, %d tokens: %d",
		      tk.bos_id, tk.eos_id, n, ids[0]);
		/* without ignore_merges "hl" stays two bytes: no merge makes it */
		n = encode_str(&tk, " hl", 0, ids, 32);
		CHECK(n == 3, "small: no ignore_merges", "%d tokens", n);
		rl_tokenizer_free(&tk);
	}
	ok = write_tokenizer("\"he\": 256, \"ll\": 257, \"hell\": 258, \"\\u0120he\": 259, \"\\u0120hl\": 261",
			     "\"h e\", \"l l\", \"he ll\", \"\\u0120 he\"",
			     ", \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"added_tokens\": "
			     "[{\"id\": 260, \"content\": \"<s>\"}]") == 0;
	/* ignore_merges goes in the model object: rewrite the file by hand */
	if (ok) {
		char path[128];
		snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
		size_t len;
		char *t = rl_read_file(path, &len), *at = t ? strstr(t, "\"type\": \"BPE\"") : NULL;
		if (at) {
			char *fixed = malloc(len + 64);
			size_t head = (size_t)(at - t);
			memcpy(fixed, t, head);
			sprintf(fixed + head, "\"ignore_merges\": true, %s", at);
			ok = write_text("tokenizer.json", fixed) == 0;
			free(fixed);
		}
		free(t);
		ok = ok && at && write_text("tokenizer_config.json", "{\"add_bos_token\": true, \"bos_token\": \"<s>\"}") == 0 &&
		     rl_tokenizer_load_hf(&tk, tmpdir) == 0;
		CHECK(ok, "small: load with ignore_merges", "%s", rl_err());
		if (ok) {
			n = encode_str(&tk, " hl", 1, ids, 32);
			CHECK(tk.bos_id == 260 && n == 2 && ids[0] == 260 && ids[1] == 261,
			      "small: ignore_merges, add_bos_token true", "bos %d, %d tokens: %d %d", tk.bos_id, n,
			      ids[0], ids[1]);
			rl_tokenizer_free(&tk);
		}
	}
	char path[128];
	snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir);
	unlink(path);
}

/* Each malformed tokenizer.json is refused with an error naming the file
 * and the field, never a crash. */
static void test_bad(void)
{
	static const struct {
		const char *name, *vocab, *merges, *rest, *want;
	} cases[] = {
		{ "merge of an unknown token", "\"he\": 256", "\"h e\", \"q zz\"", "", "merges[1]: \"zz\" is not in model.vocab" },
		{ "merge that makes no token", "\"he\": 256", "\"h e\", \"e h\"", "", "not a token" },
		{ "merge without a space", "\"he\": 256", "\"he\"", "", "merges[0]" },
		{ "merge of a number", "\"he\": 256", "3", "", "merges[0]" },
		{ "vocab id not a number", "\"he\": \"x\"", "", "", "model.vocab: \"he\"" },
		{ "vocab id negative", "\"he\": -1", "", "", "model.vocab: \"he\"" },
		{ "vocab id twice", "\"he\": 104", "", "", "id 104 is taken twice" },
		{ "vocab not byte-level", "\"h\\u4e00\": 256", "", "", "not a byte-level token" },
		{ "no ByteLevel", "\"he\": 256", "\"h e\"", ", \"pre_tokenizer\": null", "no ByteLevel" },
		{ "unknown normalizer", "\"he\": 256", "", ", \"normalizer\": {\"type\": \"Lowercase\"}", "normalizer" },
		{ "bad regex", "\"he\": 256", "",
		  ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
		  "\"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", "
		  "\"add_prefix_space\": false, \"use_regex\": false}]}",
		  "regex" },
		{ "added token without content", "\"he\": 256", "", ", \"added_tokens\": [{\"id\": 300}]",
		  "added_tokens[0].content: missing" },
		{ "added token id not a number", "\"he\": 256", "",
		  ", \"added_tokens\": [{\"id\": \"x\", \"content\": \"<x>\"}]", "added_tokens[0].id: a string" },
		{ "added_tokens not an array", "\"he\": 256", "", ", \"added_tokens\": {}", "added_tokens: an object" },
	};
	char path[128];
	snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *rest = cases[i].rest;
		char full[1024];
		if (!strstr(rest, "pre_tokenizer")) {
			snprintf(full, sizeof full, ", \"pre_tokenizer\": {\"type\": \"ByteLevel\"}%s", rest);
			rest = full;
		}
		rl_tokenizer tk;
		int rc = write_tokenizer(cases[i].vocab, cases[i].merges, rest) == 0 ? rl_tokenizer_load_hf(&tk, tmpdir) : 0;
		const char *e = rl_err();
		CHECK(rc == -1 && strstr(e, path) && strstr(e, cases[i].want), cases[i].name, "rc %d: %s", rc, e);
	}
	/* whole files that are wrong */
	static const struct {
		const char *name, *text, *want;
	} files[] = {
		{ "not JSON", "{\"model\": ", "tokenizer.json" },
		{ "not an object", "[1, 2]", "not a JSON object" },
		{ "no model", "{}", "model: missing" },
		{ "model.vocab missing", "{\"model\": {\"merges\": []}}", "model.vocab: missing" },
		{ "model.vocab an array", "{\"model\": {\"vocab\": [], \"merges\": []}}", "model.vocab: an array" },
		{ "model.merges missing", "{\"model\": {\"vocab\": {}}}", "model.merges: missing" },
		{ "model.type WordPiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}",
		  "model.type" },
		{ "invalid UTF-8", "{\"model\": {\"vocab\": {\"\xff\": 1}, \"merges\": []}}", "tokenizer.json" },
		{ "too few tokens", "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}", "too few" },
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		rl_tokenizer tk;
		int rc = write_text("tokenizer.json", files[i].text) == 0 ? rl_tokenizer_load_hf(&tk, tmpdir) : 0;
		const char *e = rl_err();
		CHECK(rc == -1 && strstr(e, path) && strstr(e, files[i].want), files[i].name, "rc %d: %s", rc, e);
	}
	/* tokenizer_config.json naming an unknown token, or of the wrong type */
	rl_tokenizer tk;
	int rc = write_tokenizer("\"he\": 256", "\"h e\"", ", \"pre_tokenizer\": {\"type\": \"ByteLevel\"}") == 0 &&
			 write_text("tokenizer_config.json", "{\"bos_token\": \"<nope>\"}") == 0
		 ? rl_tokenizer_load_hf(&tk, tmpdir)
		 : 0;
	CHECK(rc == -1 && strstr(rl_err(), "tokenizer_config.json: bos_token"), "config names no token", "rc %d: %s",
	      rc, rl_err());
	rc = write_text("tokenizer_config.json", "{\"add_bos_token\": 1}") == 0 ? rl_tokenizer_load_hf(&tk, tmpdir) : 0;
	CHECK(rc == -1 && strstr(rl_err(), "add_bos_token"), "config add_bos_token not a boolean", "rc %d: %s", rc,
	      rl_err());
	snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir);
	unlink(path);
	rc = rl_tokenizer_load_hf(&tk, "/nonexistent-dir");
	CHECK(rc == -1 && strstr(rl_err(), "/nonexistent-dir/tokenizer.json"), "missing directory", "%s", rl_err());
}

/* The spec round-trips through rl_tokenizer_init_bpe: what a model stream does. */
static void test_spec(const rl_tokenizer *tk)
{
	rl_bpe_spec spec;
	rl_tokenizer copy;
	int ok = rl_tokenizer_bpe_spec(tk, &spec) == 0 &&
		 rl_tokenizer_init_bpe(&copy, tk->vocab_size, (const char *const *)tk->pieces, tk->piece_len, &spec,
				       tk->bos_id, tk->eos_id) == 0;
	CHECK(ok && spec.nfc && spec.nsplits == 1 && spec.nadded == 26 && spec.nmerges == 151387, "qwen3 spec",
	      "%s", rl_err());
	if (!ok)
		return;
	const char *s = "<|im_start|>user\nCafe\xcc\x81 costs $3.50 \xf0\x9f\x98\x80  ok\n\n";
	int a[64], b[64];
	int na = encode_str(tk, s, 1, a, 64), nb = encode_str(&copy, s, 1, b, 64);
	CHECK(na > 5 && na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0, "qwen3 rebuilt from its spec",
	      "%d and %d tokens", na, nb);
	rl_tokenizer_free(&copy);
	rl_tokenizer sp;
	CHECK(rl_tokenizer_byte_level(&sp, 300) == 0 && rl_tokenizer_bpe_spec(&sp, &spec) == -1,
	      "spec of a sentencepiece tokenizer is refused", "%s", rl_err());
	rl_tokenizer_free(&sp);
}

static const char *tk_split0(const rl_tokenizer *tk)
{
	rl_bpe_spec spec;
	return rl_tokenizer_bpe_spec(tk, &spec) == 0 && spec.nsplits ? spec.splits[0] : "";
}

/* The tokenizer rebuilt from byte-level strings, as GGUF stores it, is the
 * same tokenizer. */
static void test_byte_level_strings(const rl_tokenizer *tk, const char *dir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	size_t len;
	char *text = rl_read_file(path, &len);
	rl_json *root = text ? rl_json_parse(text, len) : NULL;
	free(text);
	const rl_json *model = root ? rl_json_get(root, "model") : NULL;
	const rl_json *vocab = model ? rl_json_get(model, "vocab") : NULL, *merges = model ? rl_json_get(model, "merges") : NULL;
	rl_bpe_spec spec;
	if (!vocab || !merges || rl_tokenizer_bpe_spec(tk, &spec)) {
		CHECK(0, "qwen3 from byte-level strings", "%s", rl_err());
		rl_json_free(root);
		return;
	}
	const char **tokens = calloc((size_t)tk->vocab_size, sizeof *tokens);
	const char **ms = calloc(merges->len, sizeof *ms);
	size_t mtotal = 0;
	for (size_t r = 0; r < merges->len; r++)
		mtotal += merges->items[r]->items[0]->len + merges->items[r]->items[1]->len + 2;
	char *mbuf = malloc(mtotal), *mp = mbuf;
	for (size_t i = 0; i < vocab->len; i++)
		tokens[vocab->items[i]->integer] = vocab->keys[i];
	for (int i = 0; i < spec.nadded; i++)
		tokens[spec.added[2 * i]] = tk->pieces[spec.added[2 * i]];
	for (size_t r = 0; r < merges->len; r++) {
		ms[r] = mp;
		mp += sprintf(mp, "%s %s", merges->items[r]->items[0]->string, merges->items[r]->items[1]->string) + 1;
	}
	rl_tokenizer copy;
	spec.splits = (const char *const[]){ rl_bpe_pretokenizer_regex("qwen2") };
	int ok = rl_tokenizer_init_byte_level_bpe(&copy, tk->vocab_size, tokens, ms, (int)merges->len, &spec,
						  tk->bos_id, tk->eos_id) == 0;
	CHECK(ok, "qwen3 from byte-level strings", "%s", rl_err());
	if (ok) {
		int same = copy.vocab_size == tk->vocab_size;
		for (int i = 0; same && i < tk->vocab_size; i++)
			same = copy.piece_len[i] == tk->piece_len[i] &&
			       memcmp(copy.pieces[i], tk->pieces[i], (size_t)tk->piece_len[i]) == 0;
		const char *s = "<|im_start|>user\nCafe\xcc\x81 costs $3.50 \xf0\x9f\x98\x80  ok\n\n<think>it's";
		int a[64], b[64];
		int na = encode_str(tk, s, 1, a, 64), nb = encode_str(&copy, s, 1, b, 64);
		CHECK(same && na > 5 && na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0,
		      "qwen3 from byte-level strings encodes the same", "same pieces %d; %d and %d tokens", same, na, nb);
		rl_tokenizer_free(&copy);
	}
	CHECK(strcmp(rl_bpe_pretokenizer_regex("qwen2"), spec.nsplits ? tk_split0(tk) : "") == 0 &&
		      rl_bpe_pretokenizer_regex("llama-bpe") && rl_bpe_pretokenizer_regex("gpt-2") &&
		      !rl_bpe_pretokenizer_regex("nope"),
	      "pre-tokenizer regexes by llama.cpp name", "qwen2's is not tokenizer.json's");
	ms[1] = "\u0120 zzzz";
	ok = rl_tokenizer_init_byte_level_bpe(&copy, tk->vocab_size, tokens, ms, (int)merges->len, &spec, -1, -1);
	CHECK(ok == -1 && strstr(rl_err(), "merge 1"), "byte-level strings: a bad merge", "%s", rl_err());
	free(tokens);
	free(ms);
	free(mbuf);
	rl_json_free(root);
}

/* A model stream carries the BPE tokenizer: written and read back, it
 * encodes and decodes as the tokenizer it was written with. */
static void test_model_stream(const rl_tokenizer *tk)
{
	rl_config c = { .dim = 16, .hidden_dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 8,
			.vocab_size = 151936, .seq_len = 32, .rope_theta = 1e6, .norm_eps = 1e-6, .qk_norm = 1,
			.tied_embeddings = 1 };
	rl_model m, back;
	rl_bpe_spec spec;
	char path[128];
	snprintf(path, sizeof path, "%s/m.msgpack", tmpdir);
	if (rl_model_random(&c, "qwen3", 1, &m)) {
		CHECK(0, "model stream with a bpe tokenizer", "%s", rl_err());
		return;
	}
	rl_tokenizer_free(&m.tok);
	int ok = rl_tokenizer_bpe_spec(tk, &spec) == 0 &&
		 rl_tokenizer_init_bpe(&m.tok, tk->vocab_size, (const char *const *)tk->pieces, tk->piece_len, &spec,
				       tk->bos_id, tk->eos_id) == 0;
	rl_writer *w = ok ? rl_writer_open(path) : NULL;
	ok = w && rl_model_write(&m, w, "test", NULL, NULL) == 0 && rl_writer_commit(w) == 0 &&
	     rl_model_load(path, NULL, &back) == 0;
	rl_model_free(&m);
	if (!ok) {
		CHECK(0, "model stream with a bpe tokenizer", "%s", rl_err());
		unlink(path);
		return;
	}
	const char *s = "<|im_start|>user\nCafe\xcc\x81 costs $3.50 \xf0\x9f\x98\x80  ok\n\n<think>";
	int a[64], b[64];
	int na = encode_str(tk, s, 1, a, 64), nb = encode_str(&back.tok, s, 1, b, 64);
	int same = back.tok.kind == RL_TOKENIZER_BPE && back.tok.vocab_size == tk->vocab_size &&
		   back.tok.eos_id == tk->eos_id && back.tok.bos_id == tk->bos_id;
	for (int i = 0; same && i < tk->vocab_size; i++)
		same = back.tok.piece_len[i] == tk->piece_len[i] &&
		       memcmp(back.tok.pieces[i], tk->pieces[i], (size_t)tk->piece_len[i]) == 0;
	CHECK(same && na > 5 && na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0,
	      "model stream with a bpe tokenizer", "same pieces %d; %d and %d tokens", same, na, nb);
	rl_model_free(&back);
	unlink(path);
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_bpe.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		CHECK(0, "temporary directory", "%s", strerror(errno));
		return t_done();
	}
	test_small();
	test_bad();
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/data/tokenizers/qwen3", t_shared());
	rl_tokenizer tk;
	if (rl_tokenizer_load_hf(&tk, dir) == 0) {
		CHECK(tk.kind == RL_TOKENIZER_BPE && tk.vocab_size == 151669 && tk.bos_id == -1 && tk.eos_id == 151645,
		      "qwen3 load", "kind %d, %d tokens, bos %d, eos %d", tk.kind, tk.vocab_size, tk.bos_id, tk.eos_id);
		test_qwen3_fixture(&tk);
		test_qwen3_text(&tk);
		test_spec(&tk);
		test_model_stream(&tk);
		test_byte_level_strings(&tk, dir);
		rl_tokenizer_free(&tk);
	} else if (access(dir, F_OK) == 0)
		CHECK(0, "qwen3 load", "%s", rl_err());
	else
		t_skip("qwen3", "../shared/data/tokenizers/qwen3 is not there");
	char path[128];
	snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return t_done();
}
