/* test_tokenizer: the fast encoder against a slow reference written the
 * obvious way (llama2.c's encode(): rescan every pair after each merge), on
 * stories260K's tok512.bin over TinyStories, WikiText, random bytes and
 * emoji/CJK, and on random small vocabularies full of tied scores; llama2.c
 * facts (BOS 1, EOS 2, byte b is b+3, a token count over dev.txt); decoding;
 * malformed tokenizer files; and the encoder's speed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "tokenizer.h"
#include "t.h"

static char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
		n += got;
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1); /* a test: out of memory may crash */
	}
	fclose(f);
	if (buf)
		buf[n] = 0;
	*len = n;
	return buf;
}

static int write_whole(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the reference: llama2.c's encode(), quadratic, with its own lookup ---- */

typedef struct {
	const rl_tokenizer *tk;
	int *sorted;             /* (V) ids sorted by piece bytes, for bsearch */
	int max_len;             /* the longest piece */
} ref_vocab;

static const rl_tokenizer *sort_tk;

/* memcmp order, then shorter first; a loop because pieces are short */
static int compare_bytes(const char *a, int la, const char *b, int lb)
{
	for (int i = 0; i < la && i < lb; i++)
		if (a[i] != b[i])
			return (unsigned char)a[i] - (unsigned char)b[i];
	return (la > lb) - (la < lb);
}

static int compare_ids(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	return compare_bytes(sort_tk->pieces[i], sort_tk->piece_len[i], sort_tk->pieces[j],
			     sort_tk->piece_len[j]);
}

static void ref_vocab_init(ref_vocab *rv, const rl_tokenizer *tk)
{
	rv->tk = tk;
	rv->sorted = malloc((size_t)tk->vocab_size * sizeof *rv->sorted);
	rv->max_len = 0;
	for (int i = 0; i < tk->vocab_size; i++) {
		rv->sorted[i] = i;
		if (tk->piece_len[i] > rv->max_len)
			rv->max_len = tk->piece_len[i];
	}
	sort_tk = tk;
	qsort(rv->sorted, (size_t)tk->vocab_size, sizeof *rv->sorted, compare_ids);
}

/* Binary search of the sorted pieces, as llama2.c's str_lookup(). */
static int ref_lookup(const ref_vocab *rv, const char *s, int n)
{
	int lo = 0, hi = rv->tk->vocab_size - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2, id = rv->sorted[mid];
		int c = compare_bytes(s, n, rv->tk->pieces[id], rv->tk->piece_len[id]);
		if (c == 0)
			return id;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

static int ref_byte_fallback(const ref_vocab *rv, unsigned char b)
{
	char name[8];
	snprintf(name, sizeof name, "<0x%02X>", b);
	int id = ref_lookup(rv, name, 6);
	return id >= 0 ? id : 0;
}

/* ids (allocated) of text, the slow obvious way. */
static int *ref_encode(const ref_vocab *rv, const char *text, size_t len, int bos, int eos, size_t *count)
{
	const rl_tokenizer *tk = rv->tk;
	int *tokens = malloc((len + 3) * sizeof *tokens);
	char *buf = malloc(2 * (size_t)rv->max_len + 8);
	size_t n = 0;
	if (bos && tk->bos_id >= 0)
		tokens[n++] = tk->bos_id;
	if (tk->add_dummy_prefix && len > 0) {
		int id = ref_lookup(rv, " ", 1);
		tokens[n++] = id >= 0 ? id : ref_byte_fallback(rv, ' ');
	}
	int str_len = 0;
	for (size_t i = 0; i < len; i++) {
		if ((text[i] & 0xC0) != 0x80)
			str_len = 0;
		buf[str_len++] = text[i];
		if (i + 1 < len && (text[i + 1] & 0xC0) == 0x80 && str_len < 4)
			continue;
		int id = ref_lookup(rv, buf, str_len);
		if (id != -1)
			tokens[n++] = id;
		else
			for (int k = 0; k < str_len; k++)
				tokens[n++] = ref_byte_fallback(rv, (unsigned char)buf[k]);
		str_len = 0;
	}
	for (;;) {
		float best_score = -1e10f;
		int best_id = -1;
		size_t best_idx = 0;
		for (size_t i = 0; i + 1 < n; i++) {
			int a = tokens[i], b = tokens[i + 1];
			int la = tk->piece_len[a], lb = tk->piece_len[b];
			if (la + lb > rv->max_len)
				continue; /* no piece is that long */
			memcpy(buf, tk->pieces[a], (size_t)la);
			memcpy(buf + la, tk->pieces[b], (size_t)lb);
			int id = ref_lookup(rv, buf, la + lb);
			if (id != -1 && tk->scores[id] > best_score) {
				best_score = tk->scores[id];
				best_id = id;
				best_idx = i;
			}
		}
		if (best_id == -1)
			break;
		tokens[best_idx] = best_id;
		memmove(tokens + best_idx + 1, tokens + best_idx + 2, (n - best_idx - 2) * sizeof *tokens);
		n--;
	}
	if (eos && tk->eos_id >= 0)
		tokens[n++] = tk->eos_id;
	free(buf);
	*count = n;
	return tokens;
}

/* Whether the fast and reference encoders agree on text; says where not. */
static int same_as_reference(const ref_vocab *rv, const char *text, size_t len, int bos, int eos,
			     char *why, size_t whysize)
{
	int *fast;
	size_t nfast, nref;
	if (rl_encode(rv->tk, text, len, bos, eos, &fast, &nfast)) {
		snprintf(why, whysize, "rl_encode: %s", rl_err());
		return 0;
	}
	int *ref = ref_encode(rv, text, len, bos, eos, &nref);
	size_t i = 0;
	while (i < nfast && i < nref && fast[i] == ref[i])
		i++;
	int same = nfast == nref && i == nref;
	if (!same)
		snprintf(why, whysize, "%zu vs %zu ids, first difference at %zu: %d vs %d (text \"%.60s\")",
			 nfast, nref, i, i < nfast ? fast[i] : -1, i < nref ? ref[i] : -1, text);
	free(fast);
	free(ref);
	return same;
}

/* ---- helpers over the real tokenizer ---- */

/* The text of ids (n >= 1), each decoded after its predecessor. Allocated. */
static char *decode_all(const rl_tokenizer *tk, const int *ids, size_t n, size_t *len)
{
	size_t cap = 64, used = 0;
	char *out = malloc(cap);
	for (size_t i = ids[0] == tk->bos_id; i < n; i++) { /* BOS is no text */
		size_t plen;
		const char *p = rl_decode_piece(tk, i ? ids[i - 1] : -1, ids[i], &plen);
		if (!p)
			continue;
		while (used + plen + 1 > cap)
			out = realloc(out, cap *= 2);
		memcpy(out + used, p, plen);
		used += plen;
	}
	out[used] = 0;
	*len = used;
	return out;
}

static int round_trips(const rl_tokenizer *tk, const char *text, size_t len)
{
	int *ids;
	size_t n, dlen;
	if (rl_encode(tk, text, len, 1, 0, &ids, &n))
		return 0;
	char *back = decode_all(tk, ids, n, &dlen);
	int same = dlen == len && memcmp(back, text, len) == 0;
	free(back);
	free(ids);
	return same;
}

typedef struct {
	const char *text;
	size_t len;
} span;

/* Documents of text: separated by blank lines, stripped of surrounding
 * whitespace, empty ones dropped. Returns how many; *docs allocated. The
 * text is modified (NULs after each document). */
static size_t split_documents(char *text, size_t len, span **docs)
{
	size_t n = 0, cap = 256;
	*docs = malloc(cap * sizeof **docs);
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		int at_break = i == len || (text[i] == '\n' && i + 1 < len && text[i + 1] == '\n');
		if (!at_break)
			continue;
		size_t a = start, b = i;
		while (a < b && strchr(" \t\r\n", text[a]))
			a++;
		while (b > a && strchr(" \t\r\n", text[b - 1]))
			b--;
		if (b > a) {
			if (n == cap)
				*docs = realloc(*docs, (cap *= 2) * sizeof **docs);
			(*docs)[n++] = (span){ text + a, b - a };
		}
		start = i + 1;
	}
	return n;
}

/* ---- tests over tok512.bin ---- */

static void test_llama2c_facts(const rl_tokenizer *tk)
{
	int *ids;
	size_t n;
	int ok = rl_encode(tk, "", 0, 1, 0, &ids, &n) == 0 && n == 1 && ids[0] == 1;
	CHECK(ok, "encode(\"\", bos) == [1]", "got %zu ids", n);
	free(ids);
	ok = rl_encode(tk, "", 0, 0, 0, &ids, &n) == 0 && n == 0;
	CHECK(ok, "encode(\"\") == []", "got %zu ids", n);
	free(ids);
	ok = rl_encode(tk, "", 0, 1, 1, &ids, &n) == 0 && n == 2 && ids[0] == 1 && ids[1] == 2;
	CHECK(ok, "encode(\"\", bos, eos) == [1, 2]", "got %zu ids", n);
	free(ids);
	CHECK(tk->bos_id == 1 && tk->eos_id == 2 && tk->add_dummy_prefix, "llama2c bos 1 eos 2 dummy prefix",
	      "bos %d eos %d dummy %d", tk->bos_id, tk->eos_id, tk->add_dummy_prefix);
	int bad = -1;
	for (int b = 0; b < 256 && bad < 0; b++)
		if (tk->byte_id[b] != b + 3)
			bad = b;
	CHECK(bad < 0, "byte b is token b+3", "byte %d is token %d", bad, bad >= 0 ? tk->byte_id[bad] : 0);
	/* "\xF0\x9F\x98\x80" (U+1F600) is no piece of tok512: its four bytes fall back */
	ok = rl_encode(tk, "\xF0\x9F\x98\x80", 4, 0, 0, &ids, &n) == 0 && n == 5 &&
	     ids[1] == 0xF0 + 3 && ids[2] == 0x9F + 3 && ids[3] == 0x98 + 3 && ids[4] == 0x80 + 3;
	CHECK(ok, "emoji falls back to bytes", "got %zu ids", n);
	free(ids);
	size_t plen;
	const char *p = rl_decode_piece(tk, 5, 0x41 + 3, &plen);
	CHECK(p && plen == 1 && p[0] == 'A', "decode <0x41> is A", "got %zu bytes", plen);
	int the = -1;
	for (int i = 0; i < tk->vocab_size; i++)
		if (tk->piece_len[i] == 4 && memcmp(tk->pieces[i], " the", 4) == 0)
			the = i;
	p = the >= 0 ? rl_decode_piece(tk, 1, the, &plen) : NULL;
	ok = p && plen == 3 && memcmp(p, "the", 3) == 0;
	p = the >= 0 ? rl_decode_piece(tk, 7, the, &plen) : NULL;
	ok = ok && p && plen == 4 && memcmp(p, " the", 4) == 0;
	CHECK(ok, "decode drops the space after BOS only", "piece \" the\" is %d", the);
	CHECK(rl_decode_piece(tk, 1, 512, &plen) == NULL && rl_decode_piece(tk, 1, -1, &plen) == NULL,
	      "decode refuses ids outside the vocabulary", "returned a piece");
}

static void test_tinystories(const rl_tokenizer *tk, const ref_vocab *rv)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/data/tinystories/dev.txt", t_shared());
	size_t len;
	char *text = read_whole(path, &len);
	if (!text) {
		t_skip("tinystories", "no dev.txt");
		return;
	}
	char *whole = malloc(len + 1);
	memcpy(whole, text, len + 1);

	span *docs;
	size_t ndocs = split_documents(text, len, &docs), total = 0, mismatched = 0, first_bad = 0;
	size_t not_round = 0;
	char why[512] = "";
	for (size_t d = 0; d < ndocs; d++) {
		int *ids;
		size_t n;
		if (rl_encode(tk, docs[d].text, docs[d].len, 1, 0, &ids, &n) == 0)
			total += n - 1;
		free(ids);
		if (!same_as_reference(rv, docs[d].text, docs[d].len, 1, d % 2, why, sizeof why) &&
		    mismatched++ == 0)
			first_bad = d;
		if (!round_trips(tk, docs[d].text, docs[d].len))
			not_round++;
	}
	CHECK(mismatched == 0, "dev.txt paragraphs same as reference", "%zu of %zu differ, first %zu: %s",
	      mismatched, ndocs, first_bad, why);
	CHECK(not_round == 0, "dev.txt paragraphs round-trip", "%zu of %zu do not", not_round, ndocs);
	printf("# dev.txt: %zu documents, %zu tokens without BOS\n", ndocs, total);
	CHECK(total == 190544, "dev.txt token count 190544", "got %zu over %zu documents", total, ndocs);

	/* one ~20 KB stretch through both, so merges meet across paragraphs */
	size_t cut = len < 20000 ? len : 20000;
	double t0 = now_seconds();
	CHECK(same_as_reference(rv, whole, cut, 1, 1, why, sizeof why), "20 KB of dev.txt same as reference",
	      "%s", why);
	printf("# 20 KB through both encoders: %.3f s\n", now_seconds() - t0);

	/* speed over the whole file as one text */
	int *ids;
	size_t n;
	t0 = now_seconds();
	int rc = rl_encode(tk, whole, len, 1, 0, &ids, &n);
	double seconds = now_seconds() - t0;
	printf("# dev.txt whole: %zu bytes -> %zu tokens in %.3f s, %.1f MB/s\n", len, n, seconds,
	       len / 1e6 / seconds);
	CHECK(rc == 0 && seconds < 2.0, "dev.txt encodes in under 2 s", "rc %d, %.3f s", rc, seconds);
	if (rc == 0) {
		size_t dlen;
		char *back = decode_all(tk, ids, n, &dlen);
		CHECK(dlen == len && memcmp(back, whole, len) == 0, "dev.txt whole round-trips",
		      "%zu bytes back of %zu", dlen, len);
		free(back);
		free(ids);
	}

	/* a long text: dev.txt 40 times over, about 16 MB */
	if (getenv("LONG")) {
		size_t copies = 40, big_len = copies * len;
		char *big = malloc(big_len);
		for (size_t c = 0; c < copies; c++)
			memcpy(big + c * len, whole, len);
		t0 = now_seconds();
		rc = rl_encode(tk, big, big_len, 1, 0, &ids, &n);
		seconds = now_seconds() - t0;
		printf("# %zu bytes -> %zu tokens in %.3f s, %.1f MB/s\n", big_len, n, seconds,
		       big_len / 1e6 / seconds);
		CHECK(rc == 0 && seconds < big_len / 1e6 * 0.5, "16 MB encodes in under 0.5 s per MB",
		      "rc %d, %.3f s", rc, seconds);
		if (rc == 0)
			free(ids);
		free(big);
	}
	free(docs);
	free(whole);
	free(text);
}

static void test_wikitext(const ref_vocab *rv)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/data/wikitext-2-raw/test.txt", t_shared());
	size_t len;
	char *text = read_whole(path, &len);
	if (!text) {
		t_skip("wikitext", "no test.txt");
		return;
	}
	/* lines of the first 64 KB one by one, then 8 KB whole */
	size_t end = len < 65536 ? len : 65536, bad = 0, lines = 0;
	char why[512] = "";
	for (size_t a = 0; a < end;) {
		size_t b = a;
		while (b < end && text[b] != '\n')
			b++;
		if (!same_as_reference(rv, text + a, b - a, 1, 0, why, sizeof why))
			bad++;
		lines++;
		a = b + 1;
	}
	CHECK(bad == 0, "wikitext lines same as reference", "%zu of %zu differ: %s", bad, lines, why);
	CHECK(same_as_reference(rv, text + 1000, len > 9192 ? 8192 : len - 1000, 1, 0, why, sizeof why),
	      "8 KB of wikitext same as reference", "%s", why);
	free(text);
}

static void test_odd_text(const rl_tokenizer *tk, const ref_vocab *rv)
{
	static const char *const texts[] = {
		"", " ", "  ", "    ", "                                ", "\n", "\n\n\t \n",
		"Hello, world!", "héllo wörld", "日本語のテキスト、中文文本。", "한국어 텍스트",
		"emoji 😀🎉👍🏽 and flags 🇫🇷 and zwj 👩‍👩‍👧", "Ω≈ç√∫˜µ≤≥÷", "<0x41><0xZZ><0x4",
		"a\xCC\x81\xCC\x81\xCC\x81\xCC\x81\xCC\x81", "the the the the the the the the",
	};
	char why[512] = "";
	size_t bad = 0, not_round = 0;
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		size_t len = strlen(texts[i]);
		for (int flags = 0; flags < 4; flags++)
			if (!same_as_reference(rv, texts[i], len, flags & 1, flags >> 1, why, sizeof why))
				bad++;
		if (!round_trips(tk, texts[i], len))
			not_round++;
	}
	CHECK(bad == 0, "odd texts same as reference", "%zu differ: %s", bad, why);
	CHECK(not_round == 0, "odd texts round-trip", "%zu do not", not_round);

	/* random bytes, mostly invalid UTF-8, NULs included */
	uint64_t seed = 42;
	char text[600];
	bad = 0;
	not_round = 0;
	for (int trial = 0; trial < 300; trial++) {
		size_t len = splitmix64(&seed) % sizeof text;
		int mode = trial % 3; /* any byte; high bytes; printable ASCII and continuation bytes */
		for (size_t i = 0; i < len; i++) {
			unsigned r = (unsigned)splitmix64(&seed);
			text[i] = (char)(mode == 0 ? r : mode == 1 ? 0x80 | r : (r & 1) ? 0x80 | (r >> 1 & 0x3f)
											: ' ' + (r >> 1) % 95);
		}
		if (!same_as_reference(rv, text, len, trial & 1, trial & 2, why, sizeof why))
			bad++;
		if (!round_trips(tk, text, len))
			not_round++;
	}
	CHECK(bad == 0, "random bytes same as reference", "%zu of 300 differ: %s", bad, why);
	/* true of tok512: every group is a piece or its bytes, no merge makes "<0xNN>" */
	CHECK(not_round == 0, "random bytes round-trip", "%zu of 300 do not", not_round);
}

/* ---- small synthetic vocabularies: ties, unmergeable scores, byte fallback ---- */

/* Encodes text with vocabulary pieces (NULL-terminated) and scores; returns
 * the ids as "a b c" in out. */
static void encode_with(const char *const *pieces, const float *scores, int dummy, const char *text,
			char *out, size_t size)
{
	rl_tokenizer tk;
	int V = 0, len[64];
	while (pieces[V]) {
		len[V] = (int)strlen(pieces[V]);
		V++;
	}
	out[0] = 0;
	if (rl_tokenizer_init(&tk, V, pieces, len, scores, -1, -1, dummy)) {
		snprintf(out, size, "init: %s", rl_err());
		return;
	}
	int *ids;
	size_t n, used = 0;
	if (rl_encode(&tk, text, strlen(text), 0, 0, &ids, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			used += (size_t)snprintf(out + used, size - used, i ? " %d" : "%d", ids[i]);
		free(ids);
	}
	rl_tokenizer_free(&tk);
}

static void test_small_vocabularies(void)
{
	char got[256];
	/* equal scores: the leftmost pair merges first */
	static const char *const tie[] = { "<unk>", "a", "aa", NULL };
	encode_with(tie, (const float[]){ 0, 0, -1 }, 0, "aaa", got, sizeof got);
	CHECK(strcmp(got, "2 1") == 0, "ties merge leftmost", "got %s, want 2 1", got);
	/* a higher score wins over position */
	static const char *const order[] = { "<unk>", "a", "b", "ab", "bb", NULL };
	encode_with(order, (const float[]){ 0, 0, 0, -2, -1 }, 0, "abb", got, sizeof got);
	CHECK(strcmp(got, "1 4") == 0, "higher score merges first", "got %s, want 1 4", got);
	/* llama2.c never merges a piece scoring -1e10 or less, nor a NaN */
	static const char *const low[] = { "<unk>", "a", "b", "ab", "ba", NULL };
	encode_with(low, (const float[]){ 0, 0, 0, -1e10f, NAN }, 0, "abab", got, sizeof got);
	CHECK(strcmp(got, "1 2 1 2") == 0, "scores at -1e10 or NaN never merge", "got %s", got);
	/* no "<0xNN>" pieces: unknown bytes become <unk> (id 0); no " " piece: the
	 * dummy prefix is a byte too */
	static const char *const nobytes[] = { "<unk>", "x", NULL };
	encode_with(nobytes, (const float[]){ 0, 0 }, 1, "xé", got, sizeof got);
	CHECK(strcmp(got, "0 1 0 0") == 0, "missing byte pieces fall back to unk", "got %s", got);

	/* random vocabularies over {a, b, c, " "}, scores drawn from few values */
	uint64_t seed = 7;
	size_t bad = 0;
	char why[512] = "";
	for (int trial = 0; trial < 200; trial++) {
		const char alphabet[] = "abc ";
		char names[64][8];
		const char *pieces[64];
		int len[64], V = 0;
		float scores[64];
		for (int b = 0; b < 4; b++) {
			names[V][0] = alphabet[b];
			names[V][1] = 0;
			V++;
		}
		while (V < 40) {
			int n = 2 + (int)(splitmix64(&seed) % 5);
			for (int i = 0; i < n; i++)
				names[V][i] = alphabet[splitmix64(&seed) % 4];
			names[V][n] = 0;
			int dup = 0;
			for (int j = 0; j < V; j++)
				dup |= strcmp(names[j], names[V]) == 0;
			V += !dup;
		}
		for (int i = 0; i < V; i++) {
			pieces[i] = names[i];
			len[i] = (int)strlen(names[i]);
			scores[i] = -(float)(splitmix64(&seed) % 4);
		}
		rl_tokenizer tk;
		if (rl_tokenizer_init(&tk, V, pieces, len, scores, -1, -1, trial & 1)) {
			bad++;
			snprintf(why, sizeof why, "init: %s", rl_err());
			continue;
		}
		ref_vocab rv;
		ref_vocab_init(&rv, &tk);
		char text[300];
		size_t tlen = splitmix64(&seed) % sizeof text;
		for (size_t i = 0; i < tlen; i++)
			text[i] = "abc d"[splitmix64(&seed) % 5]; /* d is no piece */
		if (!same_as_reference(&rv, text, tlen, 0, 0, why, sizeof why))
			bad++;
		free(rv.sorted);
		rl_tokenizer_free(&tk);
	}
	CHECK(bad == 0, "random vocabularies same as reference", "%zu of 200 differ: %s", bad, why);
}

static void test_init_checks(void)
{
	rl_tokenizer tk;
	const char *pieces[] = { "a", "b", "a" };
	int len[] = { 1, 1, 1 };
	float scores[] = { 0, 0, 0 };
	CHECK(rl_tokenizer_init(&tk, 3, pieces, len, scores, -1, -1, 0) == -1 && strstr(rl_err(), "piece 2"),
	      "init refuses repeated pieces", "%s", rl_err());
	CHECK(rl_tokenizer_init(&tk, 2, pieces, len, scores, 2, -1, 0) == -1, "init refuses bos outside",
	      "accepted");
	CHECK(rl_tokenizer_init(&tk, 0, pieces, len, scores, -1, -1, 0) == -1, "init refuses no pieces",
	      "accepted");
	int bad_len[] = { 1, -1 };
	CHECK(rl_tokenizer_init(&tk, 2, pieces, bad_len, scores, -1, -1, 0) == -1,
	      "init refuses negative lengths", "accepted");

	int ok = rl_tokenizer_byte_level(&tk, 300) == 0;
	int *ids = NULL;
	size_t n = 0;
	ok = ok && rl_encode(&tk, "h\xC3\xA9", 3, 1, 1, &ids, &n) == 0 && n == 5 && ids[0] == 1 &&
	     ids[1] == 'h' + 3 && ids[2] == 0xC3 + 3 && ids[3] == 0xA9 + 3 && ids[4] == 2;
	size_t plen;
	const char *p = ok ? rl_decode_piece(&tk, 1, 0xA9 + 3, &plen) : NULL;
	ok = ok && p && plen == 1 && (unsigned char)p[0] == 0xA9;
	ok = ok && tk.piece_len[259] == 9 && memcmp(tk.pieces[259], "<unused0>", 9) == 0;
	CHECK(ok, "byte-level tokenizer", "%zu ids: %s", n, rl_err());
	free(ids);
	rl_tokenizer_free(&tk);
	CHECK(rl_tokenizer_byte_level(&tk, 258) == -1, "byte-level needs 259 pieces", "accepted 258");
}

/* ---- malformed tokenizer.bin ---- */

static int load_fails_naming(const char *path, int vocab, const char *also)
{
	rl_tokenizer tk;
	if (rl_tokenizer_load_llama2c(&tk, path, vocab) == 0) {
		rl_tokenizer_free(&tk);
		return 0;
	}
	return strstr(rl_err(), path) && (!also || strstr(rl_err(), also));
}

static void test_bad_files(const char *good, const unsigned char *bytes, size_t size)
{
	char path[] = "/tmp/test_tokenizer_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0) {
		t_skip("bad tokenizer files", "no temporary file");
		return;
	}
	close(fd);
	unsigned char *copy = malloc(size);

	CHECK(load_fails_naming("/nonexistent/tok512.bin", 512, NULL), "load: missing file", "%s", rl_err());
	CHECK(load_fails_naming(good, 0, NULL), "load: vocabulary 0", "%s", rl_err());
	CHECK(load_fails_naming(good, 513, "piece 512"), "load: vocabulary too large", "%s", rl_err());
	CHECK(load_fails_naming(good, 511, NULL), "load: bytes left over", "%s", rl_err());
	CHECK(load_fails_naming(good, 0x7fffffff, NULL), "load: absurd vocabulary", "%s", rl_err());

	write_whole(path, bytes, size - 3);
	CHECK(load_fails_naming(path, 512, "piece 511"), "load: truncated in the last piece", "%s", rl_err());
	write_whole(path, bytes, 2);
	CHECK(load_fails_naming(path, 512, NULL), "load: truncated in the header", "%s", rl_err());
	write_whole(path, bytes, 0);
	CHECK(load_fails_naming(path, 512, NULL), "load: empty file", "%s", rl_err());

	static const int32_t lengths[] = { -5, 0x7fffffff, 8 };
	static const char *const names[] = { "load: piece length -5", "load: piece length 2^31-1",
					     "load: piece longer than max_token_length" };
	for (int k = 0; k < 3; k++) {
		memcpy(copy, bytes, size);
		uint32_t v = (uint32_t)lengths[k]; /* piece 0's length, little-endian */
		for (int i = 0; i < 4; i++)
			copy[8 + i] = (unsigned char)(v >> 8 * i);
		write_whole(path, copy, size);
		CHECK(load_fails_naming(path, 512, "piece 0"), names[k], "%s", rl_err());
	}
	static const int32_t max_lengths[] = { -1, 0, 0x7fffffff };
	for (int k = 0; k < 3; k++) {
		memcpy(copy, bytes, size);
		uint32_t v = (uint32_t)max_lengths[k];
		for (int i = 0; i < 4; i++)
			copy[i] = (unsigned char)(v >> 8 * i);
		write_whole(path, copy, size);
		char name[64];
		snprintf(name, sizeof name, "load: max_token_length %d", (int)max_lengths[k]);
		CHECK(load_fails_naming(path, 512, "max_token_length"), name, "%s", rl_err());
	}

	/* hostile bytes: random corruptions load or fail, never crash */
	uint64_t seed = 1;
	int loaded = 0, failed_clearly = 0;
	for (int trial = 0; trial < 500; trial++) {
		memcpy(copy, bytes, size);
		int flips = 1 + (int)(splitmix64(&seed) % 8);
		for (int f = 0; f < flips; f++)
			copy[splitmix64(&seed) % size] = (unsigned char)splitmix64(&seed);
		size_t cut = trial % 5 ? size : splitmix64(&seed) % size;
		write_whole(path, copy, cut);
		rl_tokenizer tk;
		if (rl_tokenizer_load_llama2c(&tk, path, 512) == 0) {
			int *ids;
			size_t n;
			if (rl_encode(&tk, "Once upon a time", 16, 1, 1, &ids, &n) == 0)
				free(ids);
			rl_tokenizer_free(&tk);
			loaded++;
		} else if (strstr(rl_err(), path)) {
			failed_clearly++;
		}
	}
	CHECK(loaded + failed_clearly == 500, "load: corrupted files never crash", "%d of 500 failed unclearly",
	      500 - loaded - failed_clearly);
	unlink(path);
	free(copy);
}

int main(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", t_shared());
	test_init_checks();
	test_small_vocabularies();
	size_t size;
	unsigned char *bytes = (unsigned char *)read_whole(path, &size);
	rl_tokenizer tk;
	if (!bytes || rl_tokenizer_load_llama2c(&tk, path, 512)) {
		CHECK(!bytes, "load tok512.bin", "%s", rl_err());
		t_skip("tok512.bin", "stories260K's tokenizer is not there");
		free(bytes);
		return t_done();
	}
	CHECK(tk.vocab_size == 512 && tk.max_piece_len <= 7, "load tok512.bin", "vocab %d max piece %d",
	      tk.vocab_size, tk.max_piece_len);
	ref_vocab rv;
	ref_vocab_init(&rv, &tk);
	test_llama2c_facts(&tk);
	test_odd_text(&tk, &rv);
	test_tinystories(&tk, &rv);
	test_wikitext(&rv);
	test_bad_files(path, bytes, size);
	free(rv.sorted);
	rl_tokenizer_free(&tk);
	free(bytes);
	return t_done();
}
