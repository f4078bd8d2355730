/* bpe.c: Hugging Face byte-level BPE (tokenizer.json), the second kind of
 * rl_tokenizer (see tokenizer.h).
 *
 * Encoding follows the tokenizers library: the text is cut at added tokens
 * (leftmost, then longest); each piece between them is NFC-normalized when
 * the normalizer asks, split by the pre-tokenizer's regexes (each match and
 * each gap between matches is a piece, "Isolated"), and each piece's bytes
 * are merged by rank: the adjacent pair with the lowest rank merges first,
 * the leftmost on ties. Pieces are kept as raw bytes rather than as
 * byte-level characters (the GPT-2 map from bytes to printable code points),
 * so that a piece's bytes are its decoded text, and merging starts from one
 * token per byte.
 *
 * Regexes run in PCRE2 with UTF and UCP (Unicode properties for \p{L}, \w,
 * \s), and MATCH_INVALID_UTF so that text that is not UTF-8 never fails: no
 * match covers an invalid sequence, which becomes a piece of its own bytes.
 * tokenizer.json's patterns are written for Oniguruma, whose \s also holds
 * U+0085 (NEL); we add it. NFC comes from utf8proc; a piece that is not
 * valid UTF-8 is left as it is.
 *
 * Simplifications, none of which the Qwen2/Qwen3/Llama-3 tokenizers meet:
 * added tokens marked "normalized" are matched in the text before
 * normalization, like the others; lstrip and rstrip take ASCII whitespace
 * only; single_word counts ASCII letters, digits, '_' and every non-ASCII
 * byte as word characters. Pre-tokenizers other than Split (a regex,
 * Isolated) and ByteLevel, and normalizers other than NFC, are refused. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include "bpe.h"
#include "err.h"
#include "json.h"
#include "tokenizer.h"

/* Larger than any real vocabulary (262,144 for Gemma); bounds what a forged
 * id can make us allocate. */
#define MAX_VOCAB (1 << 21)
/* Pieces up to this many bytes merge by rescanning a short array; longer
 * ones (a long run of one letter, of spaces) use a heap, O(n log n). */
#define SHORT_PIECE 32
#define ADDED_FLAGS (RL_ADDED_SPECIAL | RL_ADDED_LSTRIP | RL_ADDED_RSTRIP | \
		     RL_ADDED_SINGLE_WORD | RL_ADDED_NORMALIZED)

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* GPT-2's ByteLevel pre-tokenizer regex, used when use_regex is true. */
static const char GPT2_PATTERN[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
	int rank, merged;
} merge_value;

/* What tk->bpe points to. */
typedef struct {
	char *bytes;                /* all pieces, each followed by a NUL */
	int *vocab_slots;           /* (vocab_mask + 1) id or -1: the pieces merges may give */
	size_t vocab_mask;
	uint64_t *pair_keys;        /* (pair_mask + 1) left << 32 | right, UINT64_MAX when empty */
	merge_value *pair_values;   /* (pair_mask + 1) */
	size_t pair_mask;
	int nmerges;
	int *merges;                /* (nmerges, 2) left, right */
	int nadded;
	int *added;                 /* (nadded, 2) id, flags */
	int *added_by_byte;         /* (nadded) indices into added, by first byte, longest first */
	int added_start[257];       /* added_by_byte[added_start[b] .. added_start[b + 1]) start with b */
	int nsplits;
	char **splits;              /* (nsplits) the patterns as given */
	pcre2_code **codes;         /* (nsplits) compiled */
	int nfc, add_prefix_space, ignore_merges;
} bpe_state;

/* ---- hash tables ---- */

static uint64_t hash_bytes(const char *a, size_t la, const char *b, size_t lb)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < la; i++)
		h = (h ^ (unsigned char)a[i]) * 0x100000001b3ull;
	for (size_t i = 0; i < lb; i++)
		h = (h ^ (unsigned char)b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_pair(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	key *= 0xc4ceb9fe1a85ec53ull;
	return key ^ key >> 33;
}

/* The vocabulary token whose bytes are a then b, or -1. */
static int vocab_find2(const rl_tokenizer *tk, const char *a, size_t la, const char *b, size_t lb)
{
	const bpe_state *st = tk->bpe;
	if (la + lb > (size_t)tk->max_piece_len || la + lb == 0)
		return -1;
	for (size_t s = hash_bytes(a, la, b, lb) & st->vocab_mask;; s = (s + 1) & st->vocab_mask) {
		int id = st->vocab_slots[s];
		if (id < 0)
			return -1;
		const char *p = tk->pieces[id];
		if ((size_t)tk->piece_len[id] == la + lb && memcmp(p, a, la) == 0 && memcmp(p + la, b, lb) == 0)
			return id;
	}
}

static int vocab_find(const rl_tokenizer *tk, const char *s, size_t n)
{
	return vocab_find2(tk, s, n, "", 0);
}

static const merge_value *pair_find(const bpe_state *st, int left, int right)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	for (size_t s = hash_pair(key) & st->pair_mask;; s = (s + 1) & st->pair_mask) {
		if (st->pair_keys[s] == key)
			return &st->pair_values[s];
		if (st->pair_keys[s] == UINT64_MAX)
			return NULL;
	}
}

/* ---- building ---- */

void rl_bpe_free(void *p)
{
	bpe_state *st = p;
	if (!st)
		return;
	free(st->bytes);
	free(st->vocab_slots);
	free(st->pair_keys);
	free(st->pair_values);
	free(st->merges);
	free(st->added);
	free(st->added_by_byte);
	for (int i = 0; i < st->nsplits; i++) {
		free(st->splits ? st->splits[i] : NULL);
		if (st->codes)
			pcre2_code_free(st->codes[i]);
	}
	free(st->splits);
	free(st->codes);
	free(st);
}

/* The pattern for PCRE2: Oniguruma's \s (and so \S) also holds U+0085. */
static char *translate_pattern(const char *pat)
{
	size_t n = strlen(pat);
	char *out = malloc(n * 12 + 1), *o = out;
	if (!out)
		return NULL;
	int in_class = 0;
	for (size_t i = 0; i < n; i++) {
		char c = pat[i];
		if (c == '\\' && i + 1 < n) {
			char e = pat[++i];
			if (e == 's')
				o += sprintf(o, in_class ? "\\s\\x{85}" : "[\\s\\x{85}]");
			else if (e == 'S' && !in_class)
				o += sprintf(o, "[^\\s\\x{85}]");
			else {
				*o++ = c;
				*o++ = e;
			}
		} else if (c == '[' && !in_class) {
			in_class = 1;
			*o++ = c;
			if (i + 1 < n && pat[i + 1] == '^')
				*o++ = pat[++i];
			if (i + 1 < n && pat[i + 1] == ']') /* a leading ']' is literal */
				*o++ = pat[++i];
		} else if (c == '[' && in_class && i + 1 < n && pat[i + 1] == ':') {
			const char *end = strstr(pat + i + 2, ":]"); /* [:alpha:] */
			size_t k = end ? (size_t)(end - pat) + 2 : n;
			memcpy(o, pat + i, k - i);
			o += k - i;
			i = k - 1;
		} else {
			if (c == ']' && in_class)
				in_class = 0;
			*o++ = c;
		}
	}
	*o = 0;
	return out;
}

static int compile_splits(bpe_state *st, const rl_bpe_spec *spec)
{
	if (spec->nsplits < 0 || (spec->nsplits > 0 && !spec->splits)) {
		rl_seterr("%d pre-tokenizer regexes", spec->nsplits);
		return -1;
	}
	st->splits = calloc((size_t)spec->nsplits + 1, sizeof *st->splits);
	st->codes = calloc((size_t)spec->nsplits + 1, sizeof *st->codes);
	if (!st->splits || !st->codes) {
		rl_seterr("out of memory");
		return -1;
	}
	for (int i = 0; i < spec->nsplits; i++) {
		st->nsplits = i + 1;
		st->splits[i] = strdup(spec->splits[i]);
		char *pat = translate_pattern(spec->splits[i]);
		if (!st->splits[i] || !pat) {
			free(pat);
			rl_seterr("out of memory");
			return -1;
		}
		int code;
		PCRE2_SIZE at;
		st->codes[i] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
					     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
		free(pat);
		if (!st->codes[i]) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(code, msg, sizeof msg);
			rl_seterr("pre-tokenizer regex \"%.80s\": %s near offset %zu", spec->splits[i],
				  (const char *)msg, (size_t)at);
			return -1;
		}
		pcre2_jit_compile(st->codes[i], PCRE2_JIT_COMPLETE); /* without JIT it still matches */
	}
	return 0;
}

static int build_added(rl_tokenizer *tk, bpe_state *st, const rl_bpe_spec *spec)
{
	if (spec->nadded < 0 || spec->nadded > tk->vocab_size || (spec->nadded > 0 && !spec->added)) {
		rl_seterr("%d added tokens for a vocabulary of %d", spec->nadded, tk->vocab_size);
		return -1;
	}
	size_t A = (size_t)spec->nadded;
	st->added = malloc((2 * A + 1) * sizeof *st->added);
	st->added_by_byte = malloc((A + 1) * sizeof *st->added_by_byte);
	if (!st->added || !st->added_by_byte) {
		rl_seterr("out of memory");
		return -1;
	}
	st->nadded = spec->nadded;
	if (A)
		memcpy(st->added, spec->added, 2 * A * sizeof *st->added);
	for (size_t i = 0; i < A; i++) {
		int id = st->added[2 * i], flags = st->added[2 * i + 1];
		if (id < 0 || id >= tk->vocab_size || tk->piece_len[id] == 0 || (flags & ~ADDED_FLAGS)) {
			rl_seterr("added token %zu: id %d (of %d) with flags %d is not an added token", i, id,
				  tk->vocab_size, flags);
			return -1;
		}
	}
	/* counting sort by first byte, then longest first within a byte */
	int count[257] = { 0 };
	for (size_t i = 0; i < A; i++)
		count[(unsigned char)tk->pieces[st->added[2 * i]][0] + 1]++;
	for (int b = 0; b < 256; b++)
		count[b + 1] += count[b];
	memcpy(st->added_start, count, sizeof count);
	for (size_t i = 0; i < A; i++) {
		unsigned char b = (unsigned char)tk->pieces[st->added[2 * i]][0];
		int k = count[b]++;
		while (k > st->added_start[b] &&
		       tk->piece_len[st->added[2 * st->added_by_byte[k - 1]]] < tk->piece_len[st->added[2 * i]]) {
			st->added_by_byte[k] = st->added_by_byte[k - 1];
			k--;
		}
		st->added_by_byte[k] = (int)i;
	}
	return 0;
}

/* Indexes the vocabulary: every non-empty piece that is not an added token. */
static int build_vocab(rl_tokenizer *tk, bpe_state *st)
{
	unsigned char *is_added = calloc((size_t)tk->vocab_size, 1);
	size_t nslots = 16;
	while (nslots < 2 * (size_t)tk->vocab_size)
		nslots *= 2;
	st->vocab_slots = malloc(nslots * sizeof *st->vocab_slots);
	if (!is_added || !st->vocab_slots) {
		free(is_added);
		rl_seterr("out of memory for a vocabulary of %d", tk->vocab_size);
		return -1;
	}
	memset(st->vocab_slots, 0xff, nslots * sizeof *st->vocab_slots);
	st->vocab_mask = nslots - 1;
	for (int i = 0; i < st->nadded; i++)
		is_added[st->added[2 * i]] = 1;
	for (int i = 0; i < tk->vocab_size; i++) {
		size_t n = (size_t)tk->piece_len[i];
		if (n == 0 || is_added[i])
			continue;
		size_t s = hash_bytes(tk->pieces[i], n, "", 0) & st->vocab_mask;
		for (; st->vocab_slots[s] >= 0; s = (s + 1) & st->vocab_mask) {
			int j = st->vocab_slots[s];
			if ((size_t)tk->piece_len[j] == n && memcmp(tk->pieces[j], tk->pieces[i], n) == 0) {
				rl_seterr("tokens %d and %d are both \"%.*s\"", j, i, (int)(n > 40 ? 40 : n),
					  tk->pieces[i]);
				free(is_added);
				return -1;
			}
		}
		st->vocab_slots[s] = i;
	}
	free(is_added);
	for (int b = 0; b < 256; b++) {
		char c = (char)b;
		tk->byte_id[b] = vocab_find(tk, &c, 1);
		if (tk->byte_id[b] < 0) {
			rl_seterr("no token for byte 0x%02X: not a byte-level vocabulary", b);
			return -1;
		}
	}
	return 0;
}

/* Sets the merges (rank = row), checking that each names two tokens whose
 * concatenation is a token. A pair given twice keeps its later rank, as the
 * tokenizers library's map does. Reports the bad merge by its row. */
static int set_merges(rl_tokenizer *tk, const int *merges, int nmerges)
{
	bpe_state *st = tk->bpe;
	if (nmerges < 0 || (nmerges > 0 && !merges)) {
		rl_seterr("%d merges", nmerges);
		return -1;
	}
	size_t M = (size_t)nmerges, nslots = 16;
	while (nslots < 2 * M)
		nslots *= 2;
	free(st->merges);
	free(st->pair_keys);
	free(st->pair_values);
	st->merges = malloc((2 * M + 1) * sizeof *st->merges);
	st->pair_keys = malloc(nslots * sizeof *st->pair_keys);
	st->pair_values = malloc(nslots * sizeof *st->pair_values);
	st->nmerges = 0;
	if (!st->merges || !st->pair_keys || !st->pair_values) {
		rl_seterr("out of memory for %d merges", nmerges);
		return -1;
	}
	memset(st->pair_keys, 0xff, nslots * sizeof *st->pair_keys);
	st->pair_mask = nslots - 1;
	if (M)
		memcpy(st->merges, merges, 2 * M * sizeof *st->merges);
	st->nmerges = nmerges;
	for (int r = 0; r < nmerges; r++) {
		int a = merges[2 * r], b = merges[2 * r + 1];
		if (a < 0 || a >= tk->vocab_size || b < 0 || b >= tk->vocab_size) {
			rl_seterr("merge %d: ids %d %d outside the vocabulary of %d", r, a, b, tk->vocab_size);
			return -1;
		}
		int merged = vocab_find2(tk, tk->pieces[a], (size_t)tk->piece_len[a], tk->pieces[b],
					 (size_t)tk->piece_len[b]);
		if (merged < 0) {
			rl_seterr("merge %d: tokens %d and %d together (\"%.*s%.*s\") are not a token", r, a, b,
				  tk->piece_len[a] > 30 ? 30 : tk->piece_len[a], tk->pieces[a],
				  tk->piece_len[b] > 30 ? 30 : tk->piece_len[b], tk->pieces[b]);
			return -1;
		}
		uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
		size_t s = hash_pair(key) & st->pair_mask;
		while (st->pair_keys[s] != UINT64_MAX && st->pair_keys[s] != key)
			s = (s + 1) & st->pair_mask;
		st->pair_keys[s] = key;
		st->pair_values[s] = (merge_value){ r, merged };
	}
	return 0;
}

int rl_tokenizer_init_bpe(rl_tokenizer *tk, int vocab_size, const char *const *pieces,
			  const int *piece_len, const rl_bpe_spec *spec, int bos_id, int eos_id)
{
	memset(tk, 0, sizeof *tk);
	tk->kind = RL_TOKENIZER_BPE;
	if (vocab_size < 256 || vocab_size > MAX_VOCAB) {
		rl_seterr("byte-level vocabulary of %d tokens: not within 256..%d", vocab_size, MAX_VOCAB);
		return -1;
	}
	if (bos_id < -1 || bos_id >= vocab_size || eos_id < -1 || eos_id >= vocab_size) {
		rl_seterr("bos id %d or eos id %d outside the vocabulary of %d", bos_id, eos_id, vocab_size);
		return -1;
	}
	size_t V = (size_t)vocab_size, total = 0;
	bpe_state *st = calloc(1, sizeof *st);
	tk->bpe = st;
	tk->vocab_size = vocab_size;
	tk->pieces = calloc(V, sizeof *tk->pieces);
	tk->piece_len = calloc(V, sizeof *tk->piece_len);
	tk->scores = calloc(V, sizeof *tk->scores);
	if (!st || !tk->pieces || !tk->piece_len || !tk->scores) {
		rl_seterr("out of memory for a vocabulary of %d tokens", vocab_size);
		goto fail;
	}
	for (size_t i = 0; i < V; i++) {
		if (piece_len[i] < 0 || (piece_len[i] > 0 && !pieces[i])) {
			rl_seterr("token %zu has length %d", i, piece_len[i]);
			goto fail;
		}
		total += (size_t)piece_len[i] + 1; /* V and lengths are below 2^31: no overflow */
	}
	st->bytes = malloc(total);
	if (!st->bytes) {
		rl_seterr("out of memory for %zu bytes of tokens", total);
		goto fail;
	}
	char *p = st->bytes;
	for (size_t i = 0; i < V; i++) {
		int n = piece_len[i];
		if (n)
			memcpy(p, pieces[i], (size_t)n);
		p[n] = 0;
		tk->pieces[i] = p;
		tk->piece_len[i] = n;
		if (n > tk->max_piece_len)
			tk->max_piece_len = n;
		p += n + 1;
	}
	tk->bos_id = bos_id;
	tk->eos_id = eos_id;
	st->nfc = spec->nfc != 0;
	st->add_prefix_space = spec->add_prefix_space != 0;
	st->ignore_merges = spec->ignore_merges != 0;
	if (build_added(tk, st, spec) || build_vocab(tk, st) || set_merges(tk, spec->merges, spec->nmerges) ||
	    compile_splits(st, spec))
		goto fail;
	return 0;
fail:
	rl_tokenizer_free(tk);
	return -1;
}

int rl_tokenizer_bpe_spec(const rl_tokenizer *tk, rl_bpe_spec *spec)
{
	memset(spec, 0, sizeof *spec);
	if (tk->kind != RL_TOKENIZER_BPE || !tk->bpe) {
		rl_seterr("not a byte-level BPE tokenizer");
		return -1;
	}
	const bpe_state *st = tk->bpe;
	spec->nmerges = st->nmerges;
	spec->merges = st->merges;
	spec->nadded = st->nadded;
	spec->added = st->added;
	spec->nsplits = st->nsplits;
	spec->splits = (const char *const *)st->splits;
	spec->nfc = st->nfc;
	spec->add_prefix_space = st->add_prefix_space;
	spec->ignore_merges = st->ignore_merges;
	return 0;
}

/* ---- encoding ---- */

typedef struct {
	int rank, left, left_id, right_id, merged;
} candidate;

typedef struct {
	const rl_tokenizer *tk;
	const bpe_state *st;
	int *ids;
	size_t n, cap;
	pcre2_match_data *match;
	/* for pieces longer than SHORT_PIECE */
	int *sym_id, *sym_prev, *sym_next;
	size_t sym_cap;
	candidate *heap;
	size_t heap_n, heap_cap;
} encoder;

static int emit(encoder *e, int id)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? 2 * e->cap : 256;
		int *ids = realloc(e->ids, cap * sizeof *ids);
		if (!ids) {
			rl_seterr("out of memory for %zu tokens", cap);
			return -1;
		}
		e->ids = ids;
		e->cap = cap;
	}
	e->ids[e->n++] = id;
	return 0;
}

static int merges_before(const candidate *a, const candidate *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(encoder *e, candidate c)
{
	if (e->heap_n == e->heap_cap) {
		size_t cap = e->heap_cap ? 2 * e->heap_cap : 256;
		candidate *h = realloc(e->heap, cap * sizeof *h);
		if (!h) {
			rl_seterr("out of memory for %zu merge candidates", cap);
			return -1;
		}
		e->heap = h;
		e->heap_cap = cap;
	}
	size_t i = e->heap_n++;
	while (i > 0 && merges_before(&c, &e->heap[(i - 1) / 2])) {
		e->heap[i] = e->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	e->heap[i] = c;
	return 0;
}

static candidate heap_pop(encoder *e)
{
	candidate top = e->heap[0], last = e->heap[--e->heap_n];
	size_t i = 0, n = e->heap_n;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= n)
			break;
		if (child + 1 < n && merges_before(&e->heap[child + 1], &e->heap[child]))
			child++;
		if (!merges_before(&e->heap[child], &last))
			break;
		e->heap[i] = e->heap[child];
		i = child;
	}
	if (n)
		e->heap[i] = last;
	return top;
}

static int push_pair(encoder *e, int left)
{
	if (left < 0 || e->sym_next[left] < 0)
		return 0;
	int a = e->sym_id[left], b = e->sym_id[e->sym_next[left]];
	const merge_value *v = pair_find(e->st, a, b);
	if (!v)
		return 0;
	return heap_push(e, (candidate){ v->rank, left, a, b, v->merged });
}

/* Merges a long piece with a linked list of symbols and a heap of pairs;
 * a popped pair is stale, and skipped, if either symbol changed since. */
static int merge_long(encoder *e, const unsigned char *s, size_t n)
{
	if (n > e->sym_cap) {
		int *a = realloc(e->sym_id, n * sizeof *a);
		if (a)
			e->sym_id = a;
		int *b = realloc(e->sym_prev, n * sizeof *b);
		if (b)
			e->sym_prev = b;
		int *c = realloc(e->sym_next, n * sizeof *c);
		if (c)
			e->sym_next = c;
		if (!a || !b || !c) {
			rl_seterr("out of memory for a piece of %zu bytes", n);
			return -1;
		}
		e->sym_cap = n;
	}
	int m = (int)n;
	for (int i = 0; i < m; i++) {
		e->sym_id[i] = e->tk->byte_id[s[i]];
		e->sym_prev[i] = i - 1;
		e->sym_next[i] = i + 1 < m ? i + 1 : -1;
	}
	e->heap_n = 0;
	for (int i = 0; i + 1 < m; i++)
		if (push_pair(e, i))
			return -1;
	while (e->heap_n) {
		candidate c = heap_pop(e);
		int right = e->sym_next[c.left];
		if (e->sym_id[c.left] != c.left_id || right < 0 || e->sym_id[right] != c.right_id)
			continue;
		e->sym_id[c.left] = c.merged;
		e->sym_id[right] = -1;
		e->sym_next[c.left] = e->sym_next[right];
		if (e->sym_next[right] >= 0)
			e->sym_prev[e->sym_next[right]] = c.left;
		if (push_pair(e, e->sym_prev[c.left]) || push_pair(e, c.left))
			return -1;
	}
	for (int i = 0; i >= 0; i = e->sym_next[i])
		if (emit(e, e->sym_id[i]))
			return -1;
	return 0;
}

/* One pre-tokenized piece: its bytes merged by rank. */
static int encode_word(encoder *e, const unsigned char *s, size_t n)
{
	const rl_tokenizer *tk = e->tk;
	if (n == 0)
		return 0;
	if (n == 1)
		return emit(e, tk->byte_id[s[0]]);
	if (e->st->ignore_merges) {
		int id = vocab_find(tk, (const char *)s, n);
		if (id >= 0)
			return emit(e, id);
	}
	if (n > SHORT_PIECE)
		return merge_long(e, s, n);
	/* rank[i]: the rank of merging w[i] and w[i + 1], INT_MAX if none */
	int w[SHORT_PIECE], merged[SHORT_PIECE], rank[SHORT_PIECE];
	int m = (int)n;
	for (int i = 0; i < m; i++)
		w[i] = tk->byte_id[s[i]];
	for (int i = 0; i + 1 < m; i++) {
		const merge_value *v = pair_find(e->st, w[i], w[i + 1]);
		rank[i] = v ? v->rank : INT_MAX;
		merged[i] = v ? v->merged : -1;
	}
	for (;;) {
		int at = -1, best = INT_MAX;
		for (int i = 0; i + 1 < m; i++)
			if (rank[i] < best) {
				best = rank[i];
				at = i;
			}
		if (at < 0)
			break;
		w[at] = merged[at];
		for (int i = at + 1; i + 1 < m; i++) {
			w[i] = w[i + 1];
			rank[i] = rank[i + 1];
			merged[i] = merged[i + 1];
		}
		m--;
		for (int i = at - 1; i <= at; i++) {
			if (i < 0 || i + 1 >= m)
				continue;
			const merge_value *v = pair_find(e->st, w[i], w[i + 1]);
			rank[i] = v ? v->rank : INT_MAX;
			merged[i] = v ? v->merged : -1;
		}
	}
	for (int i = 0; i < m; i++)
		if (emit(e, w[i]))
			return -1;
	return 0;
}

/* Splits s by regex level (each match and each gap a piece), then each
 * piece by the next level, and merges the pieces of the last. */
static int split_pieces(encoder *e, int level, const unsigned char *s, size_t n)
{
	if (level == e->st->nsplits)
		return encode_word(e, s, n);
	const pcre2_code *code = e->st->codes[level];
	size_t at = 0, from = 0;
	while (at <= n) {
		int rc = pcre2_match(code, s, n, at, 0, e->match, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof msg);
			rl_seterr("pre-tokenizer regex \"%.80s\": %s", e->st->splits[level], (const char *)msg);
			return -1;
		}
		const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->match);
		size_t ms = ov[0], me = ov[1];
		if (me <= ms) { /* an empty match cuts nothing: look on from the next character */
			at = ms + 1;
			while (at < n && (s[at] & 0xC0) == 0x80)
				at++;
			continue;
		}
		if (ms > from && split_pieces(e, level + 1, s + from, ms - from))
			return -1;
		if (split_pieces(e, level + 1, s + ms, me - ms))
			return -1;
		from = at = me;
	}
	if (from < n)
		return split_pieces(e, level + 1, s + from, n - from);
	return 0;
}

/* Text between added tokens: normalized, prefixed, split and merged. */
static int encode_segment(encoder *e, const unsigned char *s, size_t n)
{
	if (n == 0)
		return 0;
	unsigned char *nfc = NULL, *prefixed = NULL;
	if (e->st->nfc) {
		size_t i = 0;
		while (i < n && s[i] < 0x80)
			i++;
		utf8proc_uint8_t *out = NULL;
		utf8proc_ssize_t k = 0;
		if (i < n)
			k = utf8proc_map(s, (utf8proc_ssize_t)n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		if (i < n && k >= 0) {
			nfc = out;
			s = nfc;
			n = (size_t)k;
			if (n == 0) {
				free(nfc);
				return 0;
			}
		} else
			free(out);
	}
	if (e->st->add_prefix_space && s[0] != ' ') {
		prefixed = malloc(n + 1);
		if (!prefixed) {
			free(nfc);
			rl_seterr("out of memory for %zu bytes", n + 1);
			return -1;
		}
		prefixed[0] = ' ';
		memcpy(prefixed + 1, s, n);
		s = prefixed;
		n++;
	}
	int rc = split_pieces(e, 0, s, n);
	free(prefixed);
	free(nfc);
	return rc;
}

static int is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static int is_word_byte(unsigned char c)
{
	return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* The added token starting at text[i] (the longest), as an index into
 * st->added, or -1. */
static int added_at(const rl_tokenizer *tk, const bpe_state *st, const unsigned char *text, size_t len,
		    size_t i)
{
	unsigned char b = text[i];
	for (int k = st->added_start[b]; k < st->added_start[b + 1]; k++) {
		int a = st->added_by_byte[k], id = st->added[2 * a];
		size_t plen = (size_t)tk->piece_len[id];
		if (plen > len - i || memcmp(text + i, tk->pieces[id], plen) != 0)
			continue;
		if ((st->added[2 * a + 1] & RL_ADDED_SINGLE_WORD) &&
		    ((i > 0 && is_word_byte(text[i - 1])) || (i + plen < len && is_word_byte(text[i + plen]))))
			continue;
		return a;
	}
	return -1;
}

int rl_bpe_encode(const rl_tokenizer *tk, const char *text, size_t len, int bos, int eos,
		  int **ids, size_t *n)
{
	const bpe_state *st = tk->bpe;
	const unsigned char *t = (const unsigned char *)text;
	encoder e = { .tk = tk, .st = st };
	*ids = NULL;
	*n = 0;
	if (len > (size_t)INT_MAX - 3) {
		rl_seterr("text of %zu bytes is too long to encode at once", len);
		return -1;
	}
	e.match = pcre2_match_data_create(1, NULL);
	if (!e.match) {
		rl_seterr("out of memory");
		return -1;
	}
	int rc = -1;
	if (bos && tk->bos_id >= 0 && emit(&e, tk->bos_id))
		goto done;
	size_t seg = 0;
	for (size_t i = 0; i < len;) {
		int a = st->nadded ? added_at(tk, st, t, len, i) : -1;
		if (a < 0) {
			i++;
			continue;
		}
		int id = st->added[2 * a], flags = st->added[2 * a + 1];
		size_t end = i, next = i + (size_t)tk->piece_len[id];
		if (flags & RL_ADDED_LSTRIP)
			while (end > seg && is_space(t[end - 1]))
				end--;
		if (flags & RL_ADDED_RSTRIP)
			while (next < len && is_space(t[next]))
				next++;
		if (encode_segment(&e, t + seg, end - seg) || emit(&e, id))
			goto done;
		seg = i = next;
	}
	if (encode_segment(&e, t + seg, len - seg))
		goto done;
	if (eos && tk->eos_id >= 0 && emit(&e, tk->eos_id))
		goto done;
	rc = 0;
done:
	pcre2_match_data_free(e.match);
	free(e.sym_id);
	free(e.sym_prev);
	free(e.sym_next);
	free(e.heap);
	if (rc) {
		free(e.ids);
		return -1;
	}
	if (!e.ids) /* an empty text: still an allocation the caller frees */
		e.ids = malloc(sizeof *e.ids);
	if (!e.ids) {
		rl_seterr("out of memory");
		return -1;
	}
	*ids = e.ids;
	*n = e.n;
	return 0;
}

/* ---- tokenizer.json ---- */

/* GPT-2's map from bytes to printable code points: bytes that are printable
 * Latin-1 (except the soft hyphen) stand for themselves, the other 68 for
 * U+0100 on, in byte order. byte_of[cp] inverts it (-1: not byte-level). */
void rl_bpe_byte_level_table(int byte_of[324])
{
	for (int cp = 0; cp < 324; cp++)
		byte_of[cp] = -1;
	int extra = 0;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
		byte_of[printable ? b : 256 + extra++] = b;
	}
}

/* Decodes one UTF-8 code point of s[0..n), or -1 if invalid; *used its bytes. */
static long utf8_decode(const unsigned char *s, size_t n, size_t *used)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)n, &cp);
	if (k <= 0)
		return -1;
	*used = (size_t)k;
	return cp;
}

/* Writes the bytes a byte-level string stands for to out (room for n);
 * returns their count, or -1 if some character is not byte-level. */
static long from_byte_level(const int byte_of[324], const char *s, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		size_t used;
		long cp = utf8_decode((const unsigned char *)s + i, n - i, &used);
		if (cp < 0 || cp >= 324 || byte_of[cp] < 0)
			return -1;
		out[k++] = (char)byte_of[cp];
		i += used;
	}
	return (long)k;
}

typedef struct {
	const char *path;          /* for messages */
	int byte_of[324];
	rl_json *root;
	int V;
	char **pieces;             /* (V) */
	int *piece_len;            /* (V) */
	char *vocab_bytes;
	int *added;                /* (nadded, 2) */
	int nadded;
	const char **splits;
	int nsplits;
	int add_prefix_space;
	int nfc;
	int sp_prepend, sp_replace;  /* SentencePiece form: U+2581 dummy prefix, spaces as U+2581 */
	int *merges;
} hf_load;

/* Member key of obj (at where, for messages) of the given type into *out:
 * NULL when absent or null and not required; -1 with an error otherwise. */
static int get(const hf_load *h, const rl_json *obj, const char *where, const char *key, rl_json_type type,
	       int required, const rl_json **out)
{
	static const char *const names[] = { "null", "a boolean", "a number", "a string", "an array",
					     "an object" };
	const rl_json *v = obj ? rl_json_get(obj, key) : NULL;
	*out = NULL;
	if (!v || v->type == RL_JSON_NULL) {
		if (!required)
			return 0;
		rl_seterr("%s: %s%s%s: missing", h->path, where, *where ? "." : "", key);
		return -1;
	}
	if (v->type != type) {
		rl_seterr("%s: %s%s%s: %s, not %s", h->path, where, *where ? "." : "", key, names[v->type],
			  names[type]);
		return -1;
	}
	*out = v;
	return 0;
}

static int get_bool(const hf_load *h, const rl_json *obj, const char *where, const char *key, int *out)
{
	const rl_json *v;
	if (get(h, obj, where, key, RL_JSON_BOOL, 0, &v))
		return -1;
	if (v)
		*out = v->boolean;
	return 0;
}

/* Checks model.vocab's ids and added_tokens' entries; *top is the largest
 * id (-1 for none), *total the bytes of the vocabulary's keys with a NUL
 * each, *added_total the same for the added tokens' contents. */
static int scan_vocab(const hf_load *h, const rl_json *vocab, const rl_json *added, long long *top, size_t *total,
		      size_t *added_total)
{
	*total = *added_total = 0;
	*top = -1;
	for (size_t i = 0; i < vocab->len; i++) {
		const rl_json *v = vocab->items[i];
		if (v->type != RL_JSON_NUMBER || !v->is_integer || v->integer < 0 || v->integer >= MAX_VOCAB) {
			rl_seterr("%s: model.vocab: \"%.40s\": not an id in 0..%d", h->path, vocab->keys[i],
				  MAX_VOCAB - 1);
			return -1;
		}
		if (v->integer > *top)
			*top = v->integer;
		*total += strlen(vocab->keys[i]) + 1;
	}
	for (size_t i = 0; added && i < added->len; i++) {
		const rl_json *a = added->items[i], *id, *content;
		char where[48];
		snprintf(where, sizeof where, "added_tokens[%zu]", i);
		if (a->type != RL_JSON_OBJECT) {
			rl_seterr("%s: %s: not an object", h->path, where);
			return -1;
		}
		if (get(h, a, where, "id", RL_JSON_NUMBER, 1, &id) ||
		    get(h, a, where, "content", RL_JSON_STRING, 1, &content))
			return -1;
		if (!id->is_integer || id->integer < 0 || id->integer >= MAX_VOCAB || content->len == 0 ||
		    content->len > 4096) {
			rl_seterr("%s: %s: id %g or content of %zu bytes out of range", h->path, where, id->number,
				  content->len);
			return -1;
		}
		if (id->integer > *top)
			*top = id->integer;
		*added_total += content->len + 1;
	}
	return 0;
}

static int read_vocab(hf_load *h, const rl_json *vocab, const rl_json *added)
{
	size_t total, added_total;
	long long top;
	if (scan_vocab(h, vocab, added, &top, &total, &added_total))
		return -1;
	if (top < 255) {
		rl_seterr("%s: model.vocab: %lld tokens, too few for a byte-level vocabulary", h->path, top + 1);
		return -1;
	}
	h->V = (int)top + 1;
	h->pieces = calloc((size_t)h->V, sizeof *h->pieces);
	h->piece_len = calloc((size_t)h->V, sizeof *h->piece_len);
	h->vocab_bytes = malloc(total + 1);
	h->added = malloc((2 * (added ? added->len : 0) + 1) * sizeof *h->added);
	if (!h->pieces || !h->piece_len || !h->vocab_bytes || !h->added) {
		rl_seterr("%s: out of memory for %d tokens", h->path, h->V);
		return -1;
	}
	char *p = h->vocab_bytes;
	for (size_t i = 0; i < vocab->len; i++) {
		const char *key = vocab->keys[i];
		int id = (int)vocab->items[i]->integer;
		long n = from_byte_level(h->byte_of, key, strlen(key), p);
		if (n <= 0) {
			rl_seterr("%s: model.vocab: \"%.40s\": %s", h->path, key,
				  n == 0 ? "an empty token" : "not a byte-level token (or not UTF-8)");
			return -1;
		}
		if (h->pieces[id]) {
			rl_seterr("%s: model.vocab: \"%.40s\": id %d is taken twice", h->path, key, id);
			return -1;
		}
		h->pieces[id] = p;
		h->piece_len[id] = (int)n;
		p += n;
	}
	for (size_t i = 0; added && i < added->len; i++) {
		const rl_json *a = added->items[i], *content = rl_json_get(a, "content");
		int id = (int)rl_json_get(a, "id")->integer, flags = 0;
		static const struct { const char *key; int flag; } keys[] = {
			{ "special", RL_ADDED_SPECIAL }, { "lstrip", RL_ADDED_LSTRIP }, { "rstrip", RL_ADDED_RSTRIP },
			{ "single_word", RL_ADDED_SINGLE_WORD }, { "normalized", RL_ADDED_NORMALIZED },
		};
		char where[48];
		snprintf(where, sizeof where, "added_tokens[%zu]", i);
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
			int on = 0;
			if (get_bool(h, a, where, keys[k].key, &on))
				return -1;
			flags |= on ? keys[k].flag : 0;
		}
		for (int j = 0; j < h->nadded; j++)
			if (h->added[2 * j] == id) {
				rl_seterr("%s: %s: id %d is added twice", h->path, where, id);
				return -1;
			}
		/* the added token's text wins over the vocabulary's for its id */
		h->pieces[id] = content->string;
		h->piece_len[id] = (int)content->len;
		h->added[2 * h->nadded] = id;
		h->added[2 * h->nadded + 1] = flags;
		h->nadded++;
	}
	return 0;
}

static int read_normalizer(hf_load *h, const rl_json *n, const char *where)
{
	const rl_json *type, *list;
	if (!n || n->type == RL_JSON_NULL)
		return 0;
	if (n->type != RL_JSON_OBJECT) {
		rl_seterr("%s: %s: not an object", h->path, where);
		return -1;
	}
	if (get(h, n, where, "type", RL_JSON_STRING, 1, &type))
		return -1;
	if (strcmp(type->string, "NFC") == 0) {
		h->nfc = 1;
		return 0;
	}
	/* the SentencePiece form: Prepend "\u2581" (the dummy prefix), Replace " " by "\u2581" */
	if (strcmp(type->string, "Prepend") == 0) {
		const rl_json *pre;
		if (get(h, n, where, "prepend", RL_JSON_STRING, 1, &pre))
			return -1;
		if (strcmp(pre->string, SPACE_MARK) || h->sp_prepend) {
			rl_seterr("%s: %s: only one Prepend of \"\u2581\" is supported", h->path, where);
			return -1;
		}
		h->sp_prepend = 1;
		return 0;
	}
	if (strcmp(type->string, "Replace") == 0) {
		const rl_json *pattern, *from, *content;
		char sub[80];
		snprintf(sub, sizeof sub, "%s.pattern", where);
		if (get(h, n, where, "pattern", RL_JSON_OBJECT, 1, &pattern) ||
		    get(h, pattern, sub, "String", RL_JSON_STRING, 1, &from) ||
		    get(h, n, where, "content", RL_JSON_STRING, 1, &content))
			return -1;
		if (strcmp(from->string, " ") || strcmp(content->string, SPACE_MARK) || h->sp_replace) {
			rl_seterr("%s: %s: only one Replace of \" \" by \"\u2581\" is supported", h->path, where);
			return -1;
		}
		h->sp_replace = 1;
		return 0;
	}
	if (strcmp(type->string, "Sequence") == 0) {
		if (get(h, n, where, "normalizers", RL_JSON_ARRAY, 1, &list))
			return -1;
		for (size_t i = 0; i < list->len; i++) {
			char sub[64];
			snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
			if (read_normalizer(h, list->items[i], sub))
				return -1;
		}
		return 0;
	}
	rl_seterr("%s: %s: normalizer \"%.40s\" is not supported (NFC; Prepend and Replace of \"\u2581\")", h->path,
		  where, type->string);
	return -1;
}

/* Pre-tokenizers: Split (a regex, Isolated), ByteLevel (after the splits;
 * its own regex when use_regex), and Sequences of them. *byte_level is set
 * once a ByteLevel is seen. */
static int read_pre_tokenizer(hf_load *h, const rl_json *p, const char *where, int *byte_level)
{
	const rl_json *type, *list, *pattern, *regex, *behavior;
	if (!p || p->type == RL_JSON_NULL)
		return 0;
	if (p->type != RL_JSON_OBJECT) {
		rl_seterr("%s: %s: not an object", h->path, where);
		return -1;
	}
	if (get(h, p, where, "type", RL_JSON_STRING, 1, &type))
		return -1;
	if (strcmp(type->string, "Sequence") == 0) {
		if (get(h, p, where, "pretokenizers", RL_JSON_ARRAY, 1, &list))
			return -1;
		for (size_t i = 0; i < list->len; i++) {
			char sub[64];
			snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
			if (read_pre_tokenizer(h, list->items[i], sub, byte_level))
				return -1;
		}
		return 0;
	}
	if (strcmp(type->string, "ByteLevel") == 0) {
		int prefix = 1, use_regex = 1; /* the defaults of the tokenizers library */
		if (get_bool(h, p, where, "add_prefix_space", &prefix) || get_bool(h, p, where, "use_regex", &use_regex))
			return -1;
		if (*byte_level) {
			rl_seterr("%s: %s: a second ByteLevel pre-tokenizer is not supported", h->path, where);
			return -1;
		}
		if (prefix && h->nsplits) {
			rl_seterr("%s: %s: add_prefix_space after a Split is not supported", h->path, where);
			return -1;
		}
		*byte_level = 1;
		h->add_prefix_space = prefix;
		if (use_regex)
			h->splits[h->nsplits++] = GPT2_PATTERN;
		return 0;
	}
	if (strcmp(type->string, "Metaspace") == 0) { /* the SentencePiece form, as newer HF files write it */
		const rl_json *rep, *scheme;
		int split = 1, prefix = 1;
		if (get(h, p, where, "replacement", RL_JSON_STRING, 1, &rep) ||
		    get(h, p, where, "prepend_scheme", RL_JSON_STRING, 0, &scheme) || get_bool(h, p, where, "split", &split) ||
		    get_bool(h, p, where, "add_prefix_space", &prefix))
			return -1;
		if (strcmp(rep->string, SPACE_MARK) || split || h->sp_replace || h->sp_prepend) {
			rl_seterr("%s: %s: only one Metaspace with replacement \"\u2581\" and split false is supported", h->path,
				  where);
			return -1;
		}
		h->sp_replace = 1;
		h->sp_prepend = scheme ? strcmp(scheme->string, "never") != 0 : prefix;
		return 0;
	}
	if (strcmp(type->string, "Split") == 0) {
		int invert = 0;
		if (get(h, p, where, "pattern", RL_JSON_OBJECT, 1, &pattern) ||
		    get(h, p, where, "behavior", RL_JSON_STRING, 1, &behavior) || get_bool(h, p, where, "invert", &invert))
			return -1;
		char sub[64];
		snprintf(sub, sizeof sub, "%s.pattern", where);
		if (get(h, pattern, sub, "Regex", RL_JSON_STRING, 1, &regex))
			return -1; /* a String pattern (a literal) is not supported either */
		if (strcmp(behavior->string, "Isolated") != 0 || invert) {
			rl_seterr("%s: %s: Split with behavior \"%.20s\"%s is not supported (only Isolated)", h->path,
				  where, behavior->string, invert ? " inverted" : "");
			return -1;
		}
		if (*byte_level) {
			rl_seterr("%s: %s: a Split after the ByteLevel pre-tokenizer is not supported", h->path, where);
			return -1;
		}
		if (memchr(regex->string, 0, regex->len)) {
			rl_seterr("%s: %s: the regex holds a NUL", h->path, sub);
			return -1;
		}
		if (h->nsplits == 16) {
			rl_seterr("%s: %s: more than 16 Splits", h->path, where);
			return -1;
		}
		h->splits[h->nsplits++] = regex->string;
		return 0;
	}
	rl_seterr("%s: %s: pre-tokenizer \"%.40s\" is not supported", h->path, where, type->string);
	return -1;
}

/* The id of a token named by its text: an added token, else the vocabulary. */
static int token_id(const rl_tokenizer *tk, const char *s, size_t n)
{
	if (tk->kind != RL_TOKENIZER_BPE)
		return rl_tokenizer_piece_id(tk, s, n);
	const bpe_state *st = tk->bpe;
	for (int i = 0; i < st->nadded; i++) {
		int id = st->added[2 * i];
		if ((size_t)tk->piece_len[id] == n && memcmp(tk->pieces[id], s, n) == 0)
			return id;
	}
	return vocab_find(tk, s, n);
}

/* tokenizer_config.json's bos_token / eos_token: a string, an AddedToken
 * object with "content", or null. Sets *id (-1 for none); -1 on error. */
static int config_token(const rl_tokenizer *tk, const char *path, const rl_json *cfg, const char *key, int *id)
{
	const rl_json *v = cfg ? rl_json_get(cfg, key) : NULL;
	*id = -1;
	if (!v || v->type == RL_JSON_NULL)
		return 0;
	if (v->type == RL_JSON_OBJECT)
		v = rl_json_get(v, "content");
	if (!v || v->type != RL_JSON_STRING) {
		rl_seterr("%s: %s: not a string nor an object with a string \"content\"", path, key);
		return -1;
	}
	*id = token_id(tk, v->string, v->len);
	if (*id < 0) {
		rl_seterr("%s: %s: \"%.40s\" is not a token", path, key, v->string);
		return -1;
	}
	return 0;
}

/* The token the post-processor's template puts first, or -1. */
static int template_bos(const rl_tokenizer *tk, const rl_json *post)
{
	if (!post || post->type != RL_JSON_OBJECT)
		return -1;
	const rl_json *type = rl_json_get(post, "type");
	if (!type || type->type != RL_JSON_STRING)
		return -1;
	if (strcmp(type->string, "Sequence") == 0) {
		const rl_json *list = rl_json_get(post, "processors");
		for (size_t i = 0; list && list->type == RL_JSON_ARRAY && i < list->len; i++) {
			int id = template_bos(tk, list->items[i]);
			if (id >= 0)
				return id;
		}
		return -1;
	}
	if (strcmp(type->string, "TemplateProcessing") != 0)
		return -1;
	const rl_json *single = rl_json_get(post, "single"), *first, *special, *name;
	if (!single || single->type != RL_JSON_ARRAY || single->len == 0 ||
	    !(first = single->items[0]) || first->type != RL_JSON_OBJECT ||
	    !(special = rl_json_get(first, "SpecialToken")) || special->type != RL_JSON_OBJECT ||
	    !(name = rl_json_get(special, "id")) || name->type != RL_JSON_STRING)
		return -1;
	return token_id(tk, name->string, name->len);
}

/* A merge as tokenizer.json writes it, "a b" or ["a", "b"]: its two sides
 * (pointing into m). 0, or -1 when it is neither. */
static int merge_sides(const rl_json *m, const char *side[2], size_t len[2])
{
	if (m->type == RL_JSON_STRING) {
		const char *space = memchr(m->string, ' ', m->len);
		if (!space || memchr(space + 1, ' ', m->len - (size_t)(space - m->string) - 1))
			return -1;
		side[0] = m->string;
		len[0] = (size_t)(space - m->string);
		side[1] = space + 1;
		len[1] = m->len - len[0] - 1;
		return 0;
	}
	if (m->type != RL_JSON_ARRAY || m->len != 2 || m->items[0]->type != RL_JSON_STRING ||
	    m->items[1]->type != RL_JSON_STRING)
		return -1;
	for (int k = 0; k < 2; k++) {
		side[k] = m->items[k]->string;
		len[k] = m->items[k]->len;
	}
	return 0;
}

static int read_merges(hf_load *h, rl_tokenizer *tk, const rl_json *merges)
{
	size_t M = merges->len;
	char *buf = malloc(2 * (size_t)tk->max_piece_len * 4 + 16);
	if (M > (size_t)INT_MAX / 2 || !buf || !(h->merges = malloc((2 * M + 1) * sizeof *h->merges))) {
		free(buf);
		rl_seterr("%s: model.merges: out of memory for %zu merges", h->path, M);
		return -1;
	}
	for (size_t r = 0; r < M; r++) {
		const rl_json *m = merges->items[r];
		const char *side[2];
		size_t len[2];
		if (merge_sides(m, side, len)) {
			rl_seterr("%s: model.merges[%zu]: neither \"a b\" (two tokens, one space) nor [\"a\", \"b\"]", h->path, r);
			free(buf);
			return -1;
		}
		for (int k = 0; k < 2; k++) {
			long n = len[k] <= (size_t)tk->max_piece_len * 4 ? from_byte_level(h->byte_of, side[k], len[k], buf)
									  : -1;
			int id = n > 0 ? vocab_find(tk, buf, (size_t)n) : -1;
			if (id < 0) {
				rl_seterr("%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", h->path, r,
					  (int)(len[k] > 60 ? 60 : len[k]), side[k]);
				free(buf);
				return -1;
			}
			h->merges[2 * r + k] = id;
		}
	}
	free(buf);
	if (set_merges(tk, h->merges, (int)M)) {
		rl_seterr("%s: model.merges: %s", h->path, rl_err());
		return -1;
	}
	return 0;
}

/* s (n bytes) with each U+2581 turned back into a space when h says so, into
 * out (room for n); returns the length. */
static size_t unmark_spaces(const hf_load *h, const char *s, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (h->sp_replace && i + 2 < n && memcmp(s + i, SPACE_MARK, 3) == 0) {
			out[k++] = ' ';
			i += 2;
		} else {
			out[k++] = s[i];
		}
	return k;
}

/* The id of a vocabulary token named as tokenizer.json writes it, or -1. */
static int sp_token(const hf_load *h, const rl_tokenizer *tk, const char *s, size_t n, char *buf)
{
	return n <= 4 * (size_t)tk->max_piece_len ? rl_tokenizer_piece_id(tk, buf, unmark_spaces(h, s, n, buf)) : -1;
}

/* The SentencePiece form (Llama 2's tokenizer.json): model BPE over the
 * pieces as text with U+2581 for a space, byte fallback through "<0xNN>".
 * Read into the SentencePiece kind: every id 0..V-1 must be a token; a
 * piece's score is minus the rank of the first merge that makes it, so that
 * llama2.c's rule (the adjacent pair whose concatenation scores highest
 * merges first) merges in the order of the ranks; pieces no merge makes
 * never merge. Added tokens are pieces like the others (not matched in the
 * text first, as HF does for special tokens). */
static int load_sentencepiece(hf_load *h, rl_tokenizer *tk, const rl_json *vocab, const rl_json *added,
			      const rl_json *merges, int ignore_merges)
{
	long long top;
	size_t total, nadded = added ? added->len : 0;
	int rc = -1;
	char **pieces = NULL, *bytes = NULL, *buf = NULL;
	int *len = NULL;
	float *scores = NULL;
	if (h->nfc || ignore_merges) {
		rl_seterr("%s: %s with the SentencePiece form is not supported", h->path,
			  h->nfc ? "normalizer NFC" : "model.ignore_merges");
		return -1;
	}
	size_t added_total;
	if (scan_vocab(h, vocab, added, &top, &total, &added_total))
		return -1;
	total += added_total;
	if (top < 0) {
		rl_seterr("%s: model.vocab: empty", h->path);
		return -1;
	}
	int V = (int)top + 1;
	pieces = calloc((size_t)V, sizeof *pieces);
	len = calloc((size_t)V, sizeof *len);
	scores = malloc((size_t)V * sizeof *scores);
	bytes = malloc(total + 1);
	if (!pieces || !len || !scores || !bytes) {
		rl_seterr("%s: out of memory for %d tokens", h->path, V);
		goto done;
	}
	char *p = bytes;
	for (size_t i = 0; i < vocab->len; i++) {
		int id = (int)vocab->items[i]->integer;
		if (pieces[id] || !vocab->keys[i][0] || strlen(vocab->keys[i]) > 1 << 16) {
			rl_seterr("%s: model.vocab: \"%.40s\": %s", h->path, vocab->keys[i],
				  pieces[id] ? "its id is taken twice" : "empty or too long");
			goto done;
		}
		pieces[id] = p;
		len[id] = (int)unmark_spaces(h, vocab->keys[i], strlen(vocab->keys[i]), p);
		p += len[id] + 1;
	}
	for (size_t i = 0; i < nadded; i++) { /* as written, over the vocabulary's text for its id */
		const rl_json *content = rl_json_get(added->items[i], "content");
		int id = (int)rl_json_get(added->items[i], "id")->integer;
		if (memchr(content->string, 0, content->len)) {
			rl_seterr("%s: added_tokens[%zu]: content holds a NUL", h->path, i);
			goto done;
		}
		memcpy(p, content->string, content->len);
		pieces[id] = p;
		len[id] = (int)content->len;
		p += content->len + 1;
	}
	for (int i = 0; i < V; i++) {
		if (!pieces[i]) {
			rl_seterr("%s: model.vocab: id %d is neither a token nor an added token", h->path, i);
			goto done;
		}
		scores[i] = -1e30f; /* made by no merge: never merges */
	}
	if (rl_tokenizer_init(tk, V, (const char *const *)pieces, len, scores, -1, -1, h->sp_prepend)) {
		rl_seterr("%s: %s", h->path, rl_err());
		goto done;
	}
	if (merges->len >= 1 << 24) { /* ranks are exact in a float below 2^24 */
		rl_seterr("%s: model.merges: %zu merges, more than %d", h->path, merges->len, 1 << 24);
		goto done;
	}
	buf = malloc(8 * (size_t)tk->max_piece_len + 16);
	if (!buf) {
		rl_seterr("%s: out of memory", h->path);
		goto done;
	}
	for (size_t r = 0; r < merges->len; r++) {
		const rl_json *m = merges->items[r];
		const char *side[2];
		size_t slen[2];
		int ids[2];
		if (merge_sides(m, side, slen)) {
			rl_seterr("%s: model.merges[%zu]: neither \"a b\" (two tokens, one space) nor [\"a\", \"b\"]", h->path, r);
			goto done;
		}
		for (int k = 0; k < 2; k++)
			if ((ids[k] = sp_token(h, tk, side[k], slen[k], buf)) < 0) {
				rl_seterr("%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", h->path, r,
					  (int)(slen[k] > 60 ? 60 : slen[k]), side[k]);
				goto done;
			}
		size_t la = (size_t)tk->piece_len[ids[0]], lb = (size_t)tk->piece_len[ids[1]];
		memcpy(buf, tk->pieces[ids[0]], la);
		memcpy(buf + la, tk->pieces[ids[1]], lb);
		int merged = la + lb <= (size_t)tk->max_piece_len ? rl_tokenizer_piece_id(tk, buf, la + lb) : -1;
		if (merged < 0) {
			rl_seterr("%s: model.merges[%zu]: the two together are not in model.vocab", h->path, r);
			goto done;
		}
		if (tk->scores[merged] == -1e30f)
			tk->scores[merged] = -(float)r;
	}
	rc = 0;
done:
	free(pieces);
	free(len);
	free(scores);
	free(bytes);
	free(buf);
	return rc;
}

int rl_tokenizer_load_hf(rl_tokenizer *tk, const char *dir)
{
	memset(tk, 0, sizeof *tk);
	size_t dlen = strlen(dir);
	char *path = malloc(dlen + 32), *cpath = malloc(dlen + 32);
	const char *splits[17];
	hf_load h = { .path = path, .splits = splits };
	rl_json *cfg = NULL;
	int rc = -1;
	if (!path || !cpath) {
		rl_seterr("%s: out of memory", dir);
		goto done;
	}
	snprintf(path, dlen + 32, "%s/tokenizer.json", dir);
	snprintf(cpath, dlen + 32, "%s/tokenizer_config.json", dir);
	rl_bpe_byte_level_table(h.byte_of);
	if (!(h.root = rl_json_read(path)))
		goto done;
	const rl_json *model, *type, *vocab, *merges, *added, *prefix, *suffix, *dropout;
	if (h.root->type != RL_JSON_OBJECT) {
		rl_seterr("%s: not a JSON object", path);
		goto done;
	}
	if (get(&h, h.root, "", "model", RL_JSON_OBJECT, 1, &model) ||
	    get(&h, model, "model", "type", RL_JSON_STRING, 0, &type) ||
	    get(&h, model, "model", "vocab", RL_JSON_OBJECT, 1, &vocab) ||
	    get(&h, model, "model", "merges", RL_JSON_ARRAY, 1, &merges) ||
	    get(&h, h.root, "", "added_tokens", RL_JSON_ARRAY, 0, &added) ||
	    get(&h, model, "model", "continuing_subword_prefix", RL_JSON_STRING, 0, &prefix) ||
	    get(&h, model, "model", "end_of_word_suffix", RL_JSON_STRING, 0, &suffix) ||
	    get(&h, model, "model", "dropout", RL_JSON_NUMBER, 0, &dropout))
		goto done;
	if (type && strcmp(type->string, "BPE") != 0) {
		rl_seterr("%s: model.type: \"%.40s\", not \"BPE\"", path, type->string);
		goto done;
	}
	if ((prefix && prefix->len) || (suffix && suffix->len) || (dropout && dropout->number != 0)) {
		rl_seterr("%s: model: continuing_subword_prefix, end_of_word_suffix and dropout are not supported",
			  path);
		goto done;
	}
	int ignore_merges = 0, byte_level = 0, byte_fallback = 0;
	if (get_bool(&h, model, "model", "ignore_merges", &ignore_merges) ||
	    get_bool(&h, model, "model", "byte_fallback", &byte_fallback) ||
	    read_normalizer(&h, rl_json_get(h.root, "normalizer"), "normalizer") ||
	    read_pre_tokenizer(&h, rl_json_get(h.root, "pre_tokenizer"), "pre_tokenizer", &byte_level))
		goto done;
	if (byte_level && (h.sp_prepend || h.sp_replace)) {
		rl_seterr("%s: the \u2581 of SentencePiece together with ByteLevel is not supported", path);
		goto done;
	}
	if (!byte_level && !(h.sp_prepend || h.sp_replace || byte_fallback)) {
		if (read_vocab(&h, vocab, added)) /* its errors first, as for a byte-level vocabulary */
			goto done;
		rl_seterr("%s: pre_tokenizer: no ByteLevel, and no SentencePiece-style byte_fallback or \u2581: neither form of BPE read here",
			  path);
		goto done;
	}
	if (!byte_level) {
		if (load_sentencepiece(&h, tk, vocab, added, merges, ignore_merges))
			goto done;
	} else {
		if (read_vocab(&h, vocab, added))
			goto done;
		rl_bpe_spec spec = { .nadded = h.nadded, .added = h.added, .nsplits = h.nsplits, .splits = splits,
				     .nfc = h.nfc, .add_prefix_space = h.add_prefix_space, .ignore_merges = ignore_merges };
		if (rl_tokenizer_init_bpe(tk, h.V, (const char *const *)h.pieces, h.piece_len, &spec, -1, -1)) {
			rl_seterr("%s: %s", path, rl_err());
			goto done;
		}
		if (read_merges(&h, tk, merges))
			goto done;
	}
	/* BOS and EOS: tokenizer_config.json, which may be absent */
	int bos, eos, add_bos = -1;
	struct stat sb;
	if (stat(cpath, &sb) == 0 || errno != ENOENT) {
		if (!(cfg = rl_json_read(cpath)))
			goto done;
		if (cfg->type != RL_JSON_OBJECT) {
			rl_seterr("%s: not a JSON object", cpath);
			goto done;
		}
		const rl_json *v = rl_json_get(cfg, "add_bos_token");
		if (v && v->type != RL_JSON_NULL) {
			if (v->type != RL_JSON_BOOL) {
				rl_seterr("%s: add_bos_token: not a boolean", cpath);
				goto done;
			}
			add_bos = v->boolean;
		}
	}
	if (config_token(tk, cpath, cfg, "bos_token", &bos) || config_token(tk, cpath, cfg, "eos_token", &eos))
		goto done;
	if (add_bos == 1 && bos < 0) {
		rl_seterr("%s: add_bos_token is true but bos_token names no token", cpath);
		goto done;
	}
	if (add_bos < 0) /* not said: as the post-processor's template does */
		bos = template_bos(tk, rl_json_get(h.root, "post_processor"));
	else if (add_bos == 0)
		bos = -1;
	tk->bos_id = bos;
	tk->eos_id = eos;
	rc = 0;
done:
	if (rc)
		rl_tokenizer_free(tk);
	rl_json_free(cfg);
	rl_json_free(h.root);
	free(h.pieces);
	free(h.piece_len);
	free(h.vocab_bytes);
	free(h.added);
	free(h.merges);
	free(path);
	free(cpath);
	return rc;
}

/* ---- tokens as byte-level strings (GGUF) ---- */

static const struct {
	const char *name, *regex;
} PRE_REGEX[] = {
	{ "qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
		   "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
	{ "llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
		       "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
	{ "gpt-2", GPT2_PATTERN },
};

const char *rl_bpe_pretokenizer_regex(const char *name)
{
	for (size_t i = 0; i < sizeof PRE_REGEX / sizeof PRE_REGEX[0]; i++)
		if (strcmp(name, PRE_REGEX[i].name) == 0)
			return PRE_REGEX[i].regex;
	return NULL;
}

int rl_tokenizer_init_byte_level_bpe(rl_tokenizer *tk, int vocab_size, const char *const *tokens,
				     const char *const *merges, int nmerges, const rl_bpe_spec *spec,
				     int bos_id, int eos_id)
{
	memset(tk, 0, sizeof *tk);
	if (vocab_size < 256 || vocab_size > MAX_VOCAB || nmerges < 0 || spec->nadded < 0 ||
	    spec->nadded > vocab_size) {
		rl_seterr("%d tokens, %d merges, %d added tokens: out of range", vocab_size, nmerges, spec->nadded);
		return -1;
	}
	int byte_of[324];
	rl_bpe_byte_level_table(byte_of);
	size_t V = (size_t)vocab_size, total = 0;
	unsigned char *is_added = calloc(V, 1);
	const char **pieces = calloc(V, sizeof *pieces);
	int *len = calloc(V, sizeof *len), *ids = malloc((2 * (size_t)nmerges + 1) * sizeof *ids), rc = -1;
	char *bytes = NULL, *buf = NULL;
	if (!is_added || !pieces || !len || !ids)
		goto oom;
	for (int i = 0; i < spec->nadded; i++) {
		int id = spec->added[2 * i];
		if (id < 0 || id >= vocab_size) {
			rl_seterr("added token %d: id %d outside the vocabulary of %d", i, id, vocab_size);
			goto done;
		}
		is_added[id] = 1;
	}
	for (size_t i = 0; i < V; i++)
		total += tokens[i] ? strlen(tokens[i]) : 0;
	bytes = malloc(total + 1);
	if (!bytes)
		goto oom;
	char *p = bytes;
	for (size_t i = 0; i < V; i++) {
		size_t n = tokens[i] ? strlen(tokens[i]) : 0;
		long k = (long)n;
		if (is_added[i] && n)
			memcpy(p, tokens[i], n);
		else if (n && (k = from_byte_level(byte_of, tokens[i], n, p)) < 0) {
			rl_seterr("token %zu \"%.40s\": not a byte-level token (or not UTF-8)", i, tokens[i]);
			goto done;
		}
		if (k > INT_MAX / 2) {
			rl_seterr("token %zu: %ld bytes", i, k);
			goto done;
		}
		pieces[i] = p;
		len[i] = (int)k;
		p += k;
	}
	rl_bpe_spec base = *spec;
	base.nmerges = 0;
	base.merges = NULL;
	if (rl_tokenizer_init_bpe(tk, vocab_size, pieces, len, &base, bos_id, eos_id))
		goto done;
	buf = malloc((size_t)tk->max_piece_len * 4 + 16);
	if (!buf)
		goto oom;
	for (int r = 0; r < nmerges; r++) {
		const char *m = merges[r], *space = m ? strchr(m, ' ') : NULL;
		if (!space || strchr(space + 1, ' ')) {
			rl_seterr("merge %d \"%.60s\": not two tokens with a space between", r, m ? m : "");
			goto done;
		}
		const char *side[2] = { m, space + 1 };
		size_t slen[2] = { (size_t)(space - m), strlen(space + 1) };
		for (int s = 0; s < 2; s++) {
			long n = slen[s] <= (size_t)tk->max_piece_len * 4 ? from_byte_level(byte_of, side[s], slen[s], buf)
									  : -1;
			ids[2 * r + s] = n > 0 ? vocab_find(tk, buf, (size_t)n) : -1;
			if (ids[2 * r + s] < 0) {
				rl_seterr("merge %d \"%.60s\": \"%.*s\" is not a token", r, m, (int)slen[s], side[s]);
				goto done;
			}
		}
	}
	rc = set_merges(tk, ids, nmerges);
	goto done;
oom:
	rl_seterr("out of memory for %d tokens", vocab_size);
done:
	if (rc && tk->kind)
		rl_tokenizer_free(tk);
	free(is_added);
	free(pieces);
	free(len);
	free(ids);
	free(bytes);
	free(buf);
	return rc;
}
