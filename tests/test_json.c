/* test_json: the JSON reader and string writer (json.h).
 *
 * A real Hugging Face config.json reads back with the values transformers
 * would see; escapes and surrogate pairs decode to the right UTF-8; numbers
 * follow RFC 8259's grammar; every malformed input (truncations, deep
 * nesting, random and mutated bytes) is refused with "line L, column C:
 * expected ...", never a crash. Hostile inputs are parsed from a copy that
 * ends right at an unreadable page, so a read past the end is a crash even
 * without a sanitizer, and they run in a child process so that a crash is a
 * FAIL line rather than the end of the test. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "t.h"

/* Qwen/Qwen3-0.6B's config.json as published on the Hugging Face hub. */
static const char qwen3_config[] =
	"{\n"
	"  \"architectures\": [\n"
	"    \"Qwen3ForCausalLM\"\n"
	"  ],\n"
	"  \"attention_bias\": false,\n"
	"  \"attention_dropout\": 0.0,\n"
	"  \"bos_token_id\": 151643,\n"
	"  \"eos_token_id\": 151645,\n"
	"  \"head_dim\": 128,\n"
	"  \"hidden_act\": \"silu\",\n"
	"  \"hidden_size\": 1024,\n"
	"  \"initializer_range\": 0.02,\n"
	"  \"intermediate_size\": 3072,\n"
	"  \"max_position_embeddings\": 40960,\n"
	"  \"max_window_layers\": 28,\n"
	"  \"model_type\": \"qwen3\",\n"
	"  \"num_attention_heads\": 16,\n"
	"  \"num_hidden_layers\": 28,\n"
	"  \"num_key_value_heads\": 8,\n"
	"  \"rms_norm_eps\": 1e-06,\n"
	"  \"rope_scaling\": null,\n"
	"  \"rope_theta\": 1000000,\n"
	"  \"sliding_window\": null,\n"
	"  \"tie_word_embeddings\": true,\n"
	"  \"torch_dtype\": \"bfloat16\",\n"
	"  \"transformers_version\": \"4.51.0\",\n"
	"  \"use_cache\": true,\n"
	"  \"use_sliding_window\": false,\n"
	"  \"vocab_size\": 151936\n"
	"}\n";

/* Every kind of value, escape and nesting in one document, for the truncation test. */
static const char everything[] =
	"\xEF\xBB\xBF {\"rope_scaling\": {\"factor\": 32.0, \"rope_type\": \"llama3\", "
	"\"original_max_position_embeddings\": 8192},\r\n\t\"eos_token_id\": [128001, 128008, -7],"
	"\"e\": [1e-06, -0.5E+3, 0, -0, 12.25e2], \"s\": \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
	"\"utf8\": \"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\", \"t\": true, \"f\": false, \"n\": null, "
	"\"empty\": [{}, [], \"\"], \"deep\": [[[{\"x\": [null]}]]]}  ";

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- hostile-input harness ---- */

static unsigned char *guard_region; /* readable pages, then one PROT_NONE page at guard_end */
static unsigned char *guard_end;
static size_t guard_room;

/* Maps room readable bytes followed by an unreadable page (once). */
static int guard_init(size_t room)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	room = (room + page - 1) / page * page;
	void *p = mmap(NULL, room + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	guard_region = p;
	guard_end = guard_region + room;
	guard_room = room;
	return mprotect(guard_end, page, PROT_NONE);
}

/* A copy of the n bytes at p that ends right before the unreadable page. */
static const char *guarded(const void *p, size_t n)
{
	if (n > guard_room)
		abort();
	memcpy(guard_end - n, p, n);
	return (const char *)(guard_end - n);
}

/* Parses n bytes from a guarded copy. Returns 1 for a tree (freed), 0 for
 * an error in the documented form, -1 for an error without one. */
static int parse_guarded(const void *p, size_t n)
{
	rl_json *v = rl_json_parse(guarded(p, n), n);
	if (v) {
		rl_json_free(v);
		return 1;
	}
	unsigned line, column;
	char word[16];
	const char *e = rl_err();
	if (sscanf(e, "line %u, column %u: %15s", &line, &column, word) == 3 && line >= 1 &&
	    column >= 1 && strcmp(word, "expected") == 0)
		return 0;
	return -1;
}

/* Runs fn in a child process: a crash there is reported as a FAIL line here. */
static void in_child(const char *name, void (*fn)(void))
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		CHECK(0, name, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		fn();
		fflush(stdout);
		_exit(t_done());
	}
	int status;
	if (waitpid(pid, &status, 0) < 0) {
		CHECK(0, name, "waitpid: %s", strerror(errno));
		return;
	}
	if (WIFSIGNALED(status))
		CHECK(0, name, "crashed with signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) != 0)
		t_failures++;  /* the child printed its FAIL lines */
}

/* ---- helpers ---- */

static rl_json *parse_str(const char *s)
{
	return rl_json_parse(s, strlen(s));
}

/* Whether s is refused. */
static int number_fails(const char *s)
{
	rl_json *v = parse_str(s);
	rl_json_free(v);
	return v == NULL;
}

/* rl_json_write_string's output for len bytes at s, allocated (caller frees). */
static char *write_to_string(const char *s, size_t len, size_t *out_len)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	if (!f)
		return NULL;
	rl_json_write_string(f, s, len);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	if (out_len)
		*out_len = n;
	return out;
}

/* ---- tests ---- */

static void test_config(void)
{
	const char *name = "json qwen3 config.json";
	rl_json *c = rl_json_parse(qwen3_config, strlen(qwen3_config));
	CHECK(c != NULL && c->type == RL_JSON_OBJECT && c->len == 26, name, "%s (%zu members, want 26)",
	      c ? "wrong shape" : rl_err(), c ? c->len : 0);
	if (!c || c->type != RL_JSON_OBJECT)
		return;

	const rl_json *arch = rl_json_get(c, "architectures");
	CHECK(arch && arch->type == RL_JSON_ARRAY && arch->len == 1 && arch->items[0]->type == RL_JSON_STRING &&
	      strcmp(arch->items[0]->string, "Qwen3ForCausalLM") == 0 && arch->items[0]->len == 16,
	      "json config architectures", "not [\"Qwen3ForCausalLM\"]");

	static const struct { const char *key; long long value; } ints[] = {
		{ "bos_token_id", 151643 }, { "eos_token_id", 151645 }, { "head_dim", 128 },
		{ "hidden_size", 1024 }, { "intermediate_size", 3072 }, { "max_position_embeddings", 40960 },
		{ "num_attention_heads", 16 }, { "num_hidden_layers", 28 }, { "num_key_value_heads", 8 },
		{ "rope_theta", 1000000 }, { "vocab_size", 151936 },
	};
	int bad = -1;
	for (size_t i = 0; i < sizeof ints / sizeof ints[0] && bad < 0; i++) {
		const rl_json *v = rl_json_get(c, ints[i].key);
		if (!v || v->type != RL_JSON_NUMBER || !v->is_integer || v->integer != ints[i].value ||
		    v->number != (double)ints[i].value)
			bad = (int)i;
	}
	CHECK(bad < 0, "json config integers", "%s is wrong", bad >= 0 ? ints[bad].key : "");

	const rl_json *eps = rl_json_get(c, "rms_norm_eps");
	CHECK(eps && eps->type == RL_JSON_NUMBER && !eps->is_integer && eps->number == 1e-6,
	      "json config 1e-06", "rms_norm_eps is %g", eps ? eps->number : NAN);
	const rl_json *init = rl_json_get(c, "initializer_range");
	const rl_json *drop = rl_json_get(c, "attention_dropout");
	CHECK(init && init->number == 0.02 && !init->is_integer && drop && drop->number == 0.0 &&
	      !drop->is_integer, "json config floats", "initializer_range or attention_dropout is wrong");

	const rl_json *rope = rl_json_get(c, "rope_scaling"), *window = rl_json_get(c, "sliding_window");
	CHECK(rope && rope->type == RL_JSON_NULL && window && window->type == RL_JSON_NULL,
	      "json config nulls", "rope_scaling or sliding_window is not null");

	const rl_json *tie = rl_json_get(c, "tie_word_embeddings"), *bias = rl_json_get(c, "attention_bias");
	CHECK(tie && tie->type == RL_JSON_BOOL && tie->boolean == 1 && bias && bias->type == RL_JSON_BOOL &&
	      bias->boolean == 0, "json config bools", "tie_word_embeddings or attention_bias is wrong");

	const rl_json *type = rl_json_get(c, "model_type"), *dtype = rl_json_get(c, "torch_dtype");
	CHECK(type && type->type == RL_JSON_STRING && strcmp(type->string, "qwen3") == 0 && dtype &&
	      dtype->type == RL_JSON_STRING && strcmp(dtype->string, "bfloat16") == 0,
	      "json config strings", "model_type or torch_dtype is wrong");

	CHECK(rl_json_get(c, "no_such_key") == NULL && rl_json_get(c, "") == NULL &&
	      rl_json_get(arch, "x") == NULL && rl_json_get(NULL, "x") == NULL,
	      "json get missing", "found a key that is not there");
	rl_json_free(c);

	/* A Llama 3 config's rope_scaling is an object and eos_token_id an array. */
	c = parse_str("{\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
		      " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
		      " \"eos_token_id\": [128001, 128008, 128009]}");
	const rl_json *rs = c ? rl_json_get(c, "rope_scaling") : NULL;
	const rl_json *factor = rl_json_get(rs, "factor"), *orig = rl_json_get(rs, "original_max_position_embeddings");
	const rl_json *eos = c ? rl_json_get(c, "eos_token_id") : NULL;
	CHECK(rs && rs->type == RL_JSON_OBJECT && rs->len == 5 && factor && factor->number == 32.0 &&
	      !factor->is_integer && orig && orig->is_integer && orig->integer == 8192 && eos &&
	      eos->type == RL_JSON_ARRAY && eos->len == 3 && eos->items[2]->integer == 128009,
	      "json nested rope_scaling", "%s", c ? "values are wrong" : rl_err());
	rl_json_free(c);

	c = rl_json_parse(everything, sizeof everything - 1);
	CHECK(c != NULL, "json every feature", "%s", rl_err());
	rl_json_free(c);
}

static void test_read_file(void)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/test_json.%ld.json", (long)getpid());
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(qwen3_config, 1, strlen(qwen3_config), f) == strlen(qwen3_config);
	if (f && fclose(f) != 0)
		ok = 0;
	size_t len = 0;
	char *text = ok ? rl_read_file(path, &len) : NULL;
	CHECK(text && len == strlen(qwen3_config) && memcmp(text, qwen3_config, len) == 0 && text[len] == '\0',
	      "json read_file", "%s", text ? "content differs" : rl_err());
	free(text);
	remove(path);

	f = fopen(path, "wb");
	if (f)
		fclose(f);
	text = rl_read_file(path, &len);
	CHECK(text && len == 0 && text[0] == '\0', "json read_file empty", "%s", text ? "not empty" : rl_err());
	free(text);
	remove(path);

	/* The message names the path and the reason. */
	text = rl_read_file(path, &len);
	char want[128];
	snprintf(want, sizeof want, "%s: %s", path, strerror(ENOENT));
	CHECK(!text && strcmp(rl_err(), want) == 0, "json read_file missing", "got \"%s\", want \"%s\"",
	      text ? "success" : rl_err(), want);
	free(text);
	text = rl_read_file("/tmp", &len);
	snprintf(want, sizeof want, "/tmp: %s", strerror(EISDIR));
	CHECK(!text && strcmp(rl_err(), want) == 0, "json read_file directory", "got \"%s\", want \"%s\"",
	      text ? "success" : rl_err(), want);
	free(text);
}

static void test_strings(void)
{
	static const char input[] = "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t A\\u0041 e\\u00e9 E\\u20AC "
				    "G\\ud83d\\ude00 Z\\u0000z raw\xC3\xA9\xF0\x9F\x98\x80\"";
	static const char want[] = "q\" b\\ s/ \b\f\n\r\t AA e\xC3\xA9 E\xE2\x82\xAC "
				   "G\xF0\x9F\x98\x80 Z\0z raw\xC3\xA9\xF0\x9F\x98\x80";
	rl_json *v = rl_json_parse(input, sizeof input - 1);
	CHECK(v && v->type == RL_JSON_STRING && v->len == sizeof want - 1 && memcmp(v->string, want, v->len) == 0 &&
	      v->string[v->len] == '\0', "json string escapes", "%s", v ? "decoded wrong" : rl_err());
	rl_json_free(v);

	/* The largest code point, U+10FFFF, as a pair. */
	v = parse_str("\"\\uDBFF\\uDFFF\"");
	CHECK(v && v->len == 4 && memcmp(v->string, "\xF4\x8F\xBF\xBF", 4) == 0, "json surrogate pair U+10FFFF",
	      "%s", v ? "decoded wrong" : rl_err());
	rl_json_free(v);

	static const char *bad[] = {
		"\"\\ud83d\"",         /* lone high surrogate */
		"\"\\ude00\"",         /* lone low surrogate */
		"\"\\ud83d\\u0041\"",  /* high surrogate, then not a low one */
		"\"\\ud83dx\"",        /* high surrogate, then a character */
		"\"\\ud83d\\ud83d\"",  /* two high surrogates */
		"\"\\ud83d\\",         /* truncated inside the pair */
		"\"\\u12\"",           /* too few hex digits */
		"\"\\u12G4\"",
		"\"\\x41\"",           /* not an escape */
		"\"\\'\"",
		"\"a\nb\"",            /* raw control characters */
		"\"a\tb\"",
		"\"\x01\"",
		"\"\xFF\"",            /* not UTF-8 */
		"\"\xC3\"",            /* truncated sequence */
		"\"\xC0\xAF\"",        /* overlong */
		"\"\xED\xA0\x80\"",    /* a surrogate in UTF-8 */
		"\"\xF4\x90\x80\x80\"", /* past U+10FFFF */
		"\"abc",               /* unterminated */
		"\"abc\\\"",
		"'abc'",
	};
	int failed = -1;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0] && failed < 0; i++)
		if (parse_guarded(bad[i], strlen(bad[i])) != 0)
			failed = (int)i;
	CHECK(failed < 0, "json bad strings are errors", "bad string %d was accepted or misreported", failed);

	v = parse_str("\"\\ud83d\"");
	CHECK(!v && strstr(rl_err(), "line 1, column 8: expected a low surrogate") == rl_err(),
	      "json lone surrogate message", "got \"%s\"", rl_err());
	rl_json_free(v);
}

static void test_numbers(void)
{
	rl_json *v = parse_str("-0");
	CHECK(v && v->type == RL_JSON_NUMBER && v->number == 0 && signbit(v->number) && v->is_integer &&
	      v->integer == 0, "json number -0", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("1e308");
	CHECK(v && v->number == 1e308 && !v->is_integer, "json number 1e308", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("123456789012345678");
	CHECK(v && v->is_integer && v->integer == 123456789012345678LL, "json number 123456789012345678 is integer",
	      "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("1.5");
	CHECK(v && !v->is_integer && v->number == 1.5, "json number 1.5 is not integer", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("1.0");
	CHECK(v && !v->is_integer && v->number == 1.0, "json number 1.0 is not integer", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("01");
	CHECK(!v && strstr(rl_err(), "line 1, column 2: expected") == rl_err(), "json number 01 is an error",
	      "got \"%s\"", v ? "success" : rl_err());
	rl_json_free(v);

	/* The ends of int64, and one past: a number but not an integer. */
	v = parse_str("[9223372036854775807, -9223372036854775808, 9223372036854775808, -9223372036854775809]");
	CHECK(v && v->len == 4 && v->items[0]->is_integer && v->items[0]->integer == INT64_MAX &&
	      v->items[1]->is_integer && v->items[1]->integer == INT64_MIN && !v->items[2]->is_integer &&
	      v->items[2]->number == 9223372036854775808.0 && !v->items[3]->is_integer &&
	      v->items[3]->number == -9223372036854775808.0, "json number int64 limits", "%s",
	      v ? "wrong" : rl_err());
	rl_json_free(v);

	v = parse_str("[1E2, 1e+2, 1e-2, -12.5e-1, 0.000001, 4.9e-324, 1e-400, 2.2250738585072014e-308]");
	CHECK(v && v->len == 8 && v->items[0]->number == 100 && !v->items[0]->is_integer &&
	      v->items[1]->number == 100 && v->items[2]->number == 0.01 && v->items[3]->number == -1.25 &&
	      v->items[4]->number == 1e-6 && v->items[5]->number == 4.9e-324 && v->items[6]->number == 0 &&
	      v->items[7]->number == 2.2250738585072014e-308, "json number exponents", "%s",
	      v ? "wrong" : rl_err());
	rl_json_free(v);

	static const char *bad[] = {
		"-", "+1", ".5", "1.", "1.e5", "1e", "1e+", "-01", "00", "0x10", "1e400", "-1e400",
		"Infinity", "-Infinity", "NaN", "1,5", "- 1", "1_000", "0.5.5", "1ee5",
	};
	int failed = -1;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0] && failed < 0; i++)
		if (!number_fails(bad[i]))
			failed = (int)i;
	CHECK(failed < 0, "json bad numbers are errors", "\"%s\" was accepted", failed >= 0 ? bad[failed] : "");
}

static void test_structure(void)
{
	rl_json *v = parse_str("{\"a\": 1, \"b\": 2, \"a\": 3}");
	const rl_json *a = rl_json_get(v, "a");
	CHECK(v && v->len == 3 && a && a->integer == 3 && rl_json_get(v, "b")->integer == 2,
	      "json duplicate keys: the last wins", "%s", v ? "wrong member" : rl_err());
	rl_json_free(v);

	v = parse_str(" \t\r\n[ true , false,null ,\"\" ,{ } , [ ] ] \n");
	CHECK(v && v->type == RL_JSON_ARRAY && v->len == 6 && v->items[0]->type == RL_JSON_BOOL &&
	      v->items[0]->boolean && v->items[1]->type == RL_JSON_BOOL && !v->items[1]->boolean &&
	      v->items[2]->type == RL_JSON_NULL && v->items[3]->type == RL_JSON_STRING && v->items[3]->len == 0 &&
	      v->items[4]->type == RL_JSON_OBJECT && v->items[4]->len == 0 && v->items[5]->type == RL_JSON_ARRAY &&
	      v->items[5]->len == 0, "json literals and empty containers", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	/* A key holding \u0000 reads as the key up to the NUL. */
	v = parse_str("{\"a\\u0000b\": 1, \"\": 2}");
	CHECK(v && rl_json_get(v, "a") && rl_json_get(v, "")->integer == 2, "json odd keys", "%s",
	      v ? "wrong" : rl_err());
	rl_json_free(v);

	/* Top-level scalars are JSON texts too (RFC 8259, section 2). */
	v = parse_str(" 42 ");
	CHECK(v && v->is_integer && v->integer == 42, "json top-level scalar", "%s", v ? "wrong" : rl_err());
	rl_json_free(v);

	static const char *bad[] = {
		"", " ", "\n", "[", "]", "{", "}", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\" 1}",
		"{\"a\":1,}", "{,}", "{1:2}", "{a:1}", "{'a':1}", "[1]]", "{}}", "1 2", "tru", "nul", "fals",
		"truex", "True", "NULL", "[true false]", "/* c */ 1", "1 // c", "\xEF\xBB",
		"{\"a\":1 \"b\":2}", "[\"a\":1]",
	};
	int failed = -1;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0] && failed < 0; i++)
		if (parse_guarded(bad[i], strlen(bad[i])) != 0)
			failed = (int)i;
	CHECK(failed < 0, "json bad documents are errors", "\"%s\" was accepted or misreported",
	      failed >= 0 ? bad[failed] : "");

	/* A NUL inside the length is a byte like any other, not the end. */
	CHECK(parse_guarded("[1]\0", 4) == 0 && parse_guarded("\0", 1) == 0, "json NUL bytes are errors",
	      "accepted");

	v = parse_str("{\n  \"a\": 1,\n  \"b\" 2\n}");
	CHECK(!v && strcmp(rl_err(), "line 3, column 7: expected ':' after the key, found '2'") == 0,
	      "json error line and column", "got \"%s\"", v ? "success" : rl_err());
	rl_json_free(v);

	v = parse_str("[1, 2");
	CHECK(!v && strcmp(rl_err(), "line 1, column 6: expected ',' or ']', found end of input") == 0,
	      "json error at end of input", "got \"%s\"", v ? "success" : rl_err());
	rl_json_free(v);
}

static void test_nesting_limit(void)
{
	/* 512 levels are allowed, 513 are not. */
	char doc[2 * 513 + 1];
	for (int depth = 512; depth <= 513; depth++) {
		memset(doc, '[', (size_t)depth);
		memset(doc + depth, ']', (size_t)depth);
		rl_json *v = rl_json_parse(doc, 2 * (size_t)depth);
		if (depth == 512)
			CHECK(v != NULL, "json nesting 512", "%s", rl_err());
		else
			CHECK(v == NULL && strstr(rl_err(), "line 1, column 513: expected at most 512") == rl_err(),
			      "json nesting 513 is an error", "got \"%s\"", v ? "success" : rl_err());
		rl_json_free(v);
	}
}

static void deep_nesting(void)
{
	size_t n = 100000;
	char *doc = malloc(6 * n);
	if (!doc) {
		CHECK(0, "json 100000 '['", "out of memory");
		return;
	}
	memset(doc, '[', n);
	CHECK(parse_guarded(doc, n) == 0, "json 100000 '[' is an error", "got \"%s\"", rl_err());
	for (size_t i = 0; i < n; i++)
		memcpy(doc + 6 * i, "{\"a\":[", 6);
	CHECK(parse_guarded(doc, 6 * n) == 0, "json 100000 nested objects are an error", "got \"%s\"", rl_err());
	free(doc);
}

static void truncations(void)
{
	static const struct { const char *name, *text; size_t len; } docs[] = {
		{ "json every truncation of config.json is an error", qwen3_config, sizeof qwen3_config - 1 },
		{ "json every truncation of a rich document is an error", everything, sizeof everything - 1 },
	};
	for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
		/* Whitespace at the end may go without making the document invalid. */
		size_t valid_from = docs[d].len;
		while (valid_from > 0 && strchr(" \t\r\n", docs[d].text[valid_from - 1]))
			valid_from--;
		int bad = -1, rc = 0;
		for (size_t n = 0; n < docs[d].len && bad < 0; n++) {
			rc = parse_guarded(docs[d].text, n);
			if (rc != (n >= valid_from ? 1 : 0))
				bad = (int)n;
		}
		CHECK(bad < 0 && parse_guarded(docs[d].text, docs[d].len) == 1, docs[d].name,
		      "prefix of %d bytes gave %d (%s)", bad, rc, rl_err());
	}
}

/* Bytes that are likely to make JSON, so random documents get past the first byte. */
static const char json_alphabet[] = "{}[]\":,\\ \n0123456789-+.eEtrufalsn\"\"ux\xC3\xA9\xF0\x9F";

static void garbage(void)
{
	uint64_t seed = 42;
	unsigned char buf[512];
	int bad = -1;
	/* 2000 uniformly random buffers and 2000 from a JSON-ish alphabet. */
	for (int i = 0; i < 4000 && bad < 0; i++) {
		size_t n = splitmix64(&seed) % sizeof buf;
		for (size_t j = 0; j < n; j++) {
			uint64_t r = splitmix64(&seed);
			buf[j] = i < 2000 ? (unsigned char)r
					  : (unsigned char)json_alphabet[r % (sizeof json_alphabet - 1)];
		}
		if (parse_guarded(buf, n) < 0)
			bad = i;
	}
	CHECK(bad < 0, "json random bytes never crash", "buffer %d: error without line and column: %s", bad,
	      rl_err());

	/* Mutations of a valid document reach deeper: 1 to 4 bytes changed,
	 * inserted or removed in the config and the rich document. */
	bad = -1;
	for (int i = 0; i < 4000 && bad < 0; i++) {
		const char *src = i % 2 ? everything : qwen3_config;
		size_t n = strlen(src);
		unsigned char doc[2048];
		memcpy(doc, src, n);
		int edits = 1 + (int)(splitmix64(&seed) % 4);
		for (int k = 0; k < edits && n > 1; k++) {
			size_t at = splitmix64(&seed) % n;
			uint64_t r = splitmix64(&seed);
			unsigned char byte = r & 8 ? (unsigned char)(r >> 8)
						   : (unsigned char)json_alphabet[(r >> 8) % (sizeof json_alphabet - 1)];
			switch (r % 3) {
			case 0:
				doc[at] = byte;
				break;
			case 1:
				memmove(doc + at + 1, doc + at, n - at);
				doc[at] = byte;
				n++;
				break;
			default:
				memmove(doc + at, doc + at + 1, n - at - 1);
				n--;
				break;
			}
		}
		if (parse_guarded(doc, n) < 0)
			bad = i;
	}
	CHECK(bad < 0, "json mutated documents never crash", "mutation %d: error without line and column: %s",
	      bad, rl_err());
}

/* A random valid UTF-8 string of n code points, mostly the awkward ones. */
static size_t random_utf8(uint64_t *seed, char *out, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t r = splitmix64(seed);
		uint32_t cp;
		switch (r % 5) {
		case 0: cp = (uint32_t)(r >> 8) % 0x20; break;        /* control characters, NUL */
		case 1: cp = "\"\\/ aZ\x7f"[(r >> 8) % 8]; break;
		case 2: cp = 0x80 + (uint32_t)(r >> 8) % 0x780; break;  /* two bytes */
		case 3: cp = 0x800 + (uint32_t)(r >> 8) % 0xF800; break;
		default: cp = 0x10000 + (uint32_t)(r >> 8) % 0x100000; break;
		}
		if (cp >= 0xD800 && cp <= 0xDFFF)
			cp = 0xFFFD;
		if (cp < 0x80) {
			out[len++] = (char)cp;
		} else if (cp < 0x800) {
			out[len++] = (char)(0xC0 | cp >> 6);
			out[len++] = (char)(0x80 | (cp & 0x3F));
		} else if (cp < 0x10000) {
			out[len++] = (char)(0xE0 | cp >> 12);
			out[len++] = (char)(0x80 | (cp >> 6 & 0x3F));
			out[len++] = (char)(0x80 | (cp & 0x3F));
		} else {
			out[len++] = (char)(0xF0 | cp >> 18);
			out[len++] = (char)(0x80 | (cp >> 12 & 0x3F));
			out[len++] = (char)(0x80 | (cp >> 6 & 0x3F));
			out[len++] = (char)(0x80 | (cp & 0x3F));
		}
	}
	return len;
}

static void test_write_string(void)
{
	static const struct { const char *in; size_t len; const char *want; } cases[] = {
		{ "plain", 5, "\"plain\"" },
		{ "a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"" },
		{ "\n\t\r\b\f\x01\x1f\x7f", 8, "\"\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\"" },
		{ "nul\0x", 5, "\"nul\\u0000x\"" },
		{ "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF", 13,
		  "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"" },
		/* Not UTF-8: each bad byte escaped, good sequences around it kept. */
		{ "\xFF", 1, "\"\\u00ff\"" },
		{ "a\xC3", 2, "\"a\\u00c3\"" },
		{ "\xC0\xAF", 2, "\"\\u00c0\\u00af\"" },
		{ "\xED\xA0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"" },
		{ "\xF4\x90\x80\x80", 4, "\"\\u00f4\\u0090\\u0080\\u0080\"" },
		{ "\x80\xC3\xA9\xE2\x82", 5, "\"\\u0080\xC3\xA9\\u00e2\\u0082\"" },
	};
	int bad = -1;
	char *got = NULL;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0] && bad < 0; i++) {
		free(got);
		size_t n;
		got = write_to_string(cases[i].in, cases[i].len, &n);
		if (!got || n != strlen(cases[i].want) || memcmp(got, cases[i].want, n) != 0)
			bad = (int)i;
		/* Whatever went in, what comes out is valid JSON. */
		rl_json *v = got ? rl_json_parse(got, n) : NULL;
		if (!v || v->type != RL_JSON_STRING)
			bad = (int)i;
		rl_json_free(v);
	}
	CHECK(bad < 0, "json write_string escapes", "case %d wrote %s", bad, got ? got : "nothing");
	free(got);

	/* Valid UTF-8 comes back byte for byte. */
	uint64_t seed = 7;
	bad = -1;
	for (int i = 0; i < 2000 && bad < 0; i++) {
		char s[4 * 64];
		size_t len = random_utf8(&seed, s, (size_t)i % 64), n;
		char *out = write_to_string(s, len, &n);
		rl_json *v = out ? rl_json_parse(out, n) : NULL;
		if (!v || v->type != RL_JSON_STRING || v->len != len || memcmp(v->string, s, len) != 0)
			bad = i;
		rl_json_free(v);
		free(out);
	}
	CHECK(bad < 0, "json write_string re-parses to the same bytes", "string %d differs", bad);
}

int main(void)
{
	if (guard_init(1 << 20)) {
		CHECK(0, "json guard page", "mmap: %s", strerror(errno));
		return t_done();
	}
	test_config();
	test_read_file();
	test_strings();
	test_numbers();
	test_structure();
	test_nesting_limit();
	test_write_string();
	in_child("json deep nesting", deep_nesting);
	in_child("json truncations", truncations);
	in_child("json garbage", garbage);
	return t_done();
}
