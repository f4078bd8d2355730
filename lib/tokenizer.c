/* tokenizer.c: llama2.c's SentencePiece-style BPE (see tokenizer.h).
 *
 * llama2.c's encode() merges by rescanning every adjacent pair after each
 * merge, which is quadratic in the text. We keep the same rule (the pair
 * whose concatenation is the highest-scoring piece merges first, the leftmost
 * on ties) but find it with a doubly linked list of symbols and a binary heap
 * of candidate pairs. A candidate is dropped lazily when popped if either
 * symbol has changed since it was pushed, so every merge costs O(log n).
 * The text is first cut into runs at junctions no merge can ever cross (two
 * bytes that are adjacent in no piece, such as "e " in a SentencePiece
 * vocabulary), so that in practice each heap holds one word and stays in
 * cache; merges in different runs never interact, so the ids are the same.
 *
 * Unlike llama2.c, pieces and text are compared as byte strings with
 * lengths rather than as C strings: a NUL byte in the text is one more byte
 * (llama2.c would stop there), and a piece may contain NUL. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "err.h"
#include "tokenizer.h"

/* What tk->index points to: the piece bytes and a hash table over them. */
typedef struct {
	char *bytes;             /* all pieces, each followed by a NUL */
	int *slots;              /* (mask + 1) piece id, or -1 for an empty slot */
	size_t mask;
	char raw_byte[256];      /* raw_byte[b] == b: what "<0xNN>" decodes to */
	unsigned char adjacent[256][32]; /* bit [a][b]: some piece holds byte a then byte b */
} piece_index;

/* llama2.c's encode() starts its search from this score and keeps a pair
 * only when it scores strictly higher: a piece at or below it never merges. */
static const float NO_MERGE_SCORE = -1e10f;

/* FNV-1a over a then b, so that a concatenation needs no buffer. */
static uint64_t hash_concat(const char *a, size_t la, const char *b, size_t lb)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < la; i++)
		h = (h ^ (unsigned char)a[i]) * 0x100000001b3ull;
	for (size_t i = 0; i < lb; i++)
		h = (h ^ (unsigned char)b[i]) * 0x100000001b3ull;
	return h;
}

/* The id of the piece whose bytes are a followed by b, or -1. */
static int find_concat(const rl_tokenizer *tk, const char *a, size_t la, const char *b, size_t lb)
{
	if (la + lb > (size_t)tk->max_piece_len)
		return -1;
	const piece_index *ix = tk->index;
	for (size_t s = hash_concat(a, la, b, lb) & ix->mask;; s = (s + 1) & ix->mask) {
		int id = ix->slots[s];
		if (id < 0)
			return -1;
		const char *p = tk->pieces[id];
		if ((size_t)tk->piece_len[id] == la + lb && memcmp(p, a, la) == 0 &&
		    memcmp(p + la, b, lb) == 0)
			return id;
	}
}

static int find_piece(const rl_tokenizer *tk, const char *s, size_t n)
{
	return find_concat(tk, s, n, "", 0);
}

int rl_tokenizer_piece_id(const rl_tokenizer *tk, const char *s, size_t n)
{
	return tk->kind == RL_TOKENIZER_SENTENCEPIECE ? find_piece(tk, s, n) : -1;
}

/* b for a piece that is exactly "<0xNN>" (uppercase hex), else -1. */
static int byte_piece_value(const char *p, int len)
{
	if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
		return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char c = p[i];
		if (c >= '0' && c <= '9')
			v = v * 16 + (c - '0');
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (c - 'A' + 10);
		else
			return -1;
	}
	return v;
}

/* Fills tk->index (allocating; rl_tokenizer_free frees) and fails on a
 * duplicate piece, which would make lookups ambiguous. */
static int build_index(rl_tokenizer *tk, piece_index *ix)
{
	size_t nslots = 16;
	while (nslots < 2 * (size_t)tk->vocab_size)
		nslots *= 2;
	ix->slots = malloc(nslots * sizeof *ix->slots);
	if (!ix->slots) {
		rl_seterr("out of memory for a vocabulary of %d pieces", tk->vocab_size);
		return -1;
	}
	memset(ix->slots, 0xff, nslots * sizeof *ix->slots);
	ix->mask = nslots - 1;
	for (int i = 0; i < tk->vocab_size; i++) {
		size_t n = (size_t)tk->piece_len[i];
		size_t s = hash_concat(tk->pieces[i], n, "", 0) & ix->mask;
		for (; ix->slots[s] >= 0; s = (s + 1) & ix->mask) {
			int j = ix->slots[s];
			if ((size_t)tk->piece_len[j] == n && memcmp(tk->pieces[j], tk->pieces[i], n) == 0) {
				rl_seterr("piece %d \"%.*s\" repeats piece %d", i, (int)(n > 40 ? 40 : n),
					  tk->pieces[i], j);
				return -1;
			}
		}
		ix->slots[s] = i;
	}
	return 0;
}

void rl_tokenizer_free(rl_tokenizer *tk)
{
	rl_bpe_free(tk->bpe);
	piece_index *ix = tk->index;
	if (ix) {
		free(ix->bytes);
		free(ix->slots);
		free(ix);
	}
	free(tk->pieces);
	free(tk->piece_len);
	free(tk->scores);
	memset(tk, 0, sizeof *tk);
}

/* Copies the pieces into one block that tk->pieces points into. */
static int copy_pieces(rl_tokenizer *tk, piece_index *ix, const char *const *pieces, const int *piece_len)
{
	size_t total = 0;
	for (int i = 0; i < tk->vocab_size; i++) {
		if (piece_len[i] < 0 || (piece_len[i] > 0 && !pieces[i])) {
			rl_seterr("piece %d has length %d", i, piece_len[i]);
			return -1;
		}
		if ((size_t)piece_len[i] + 1 > SIZE_MAX - total) {
			rl_seterr("pieces too large");
			return -1;
		}
		total += (size_t)piece_len[i] + 1;
	}
	ix->bytes = malloc(total);
	if (!ix->bytes) {
		rl_seterr("out of memory for %zu bytes of pieces", total);
		return -1;
	}
	char *p = ix->bytes;
	for (int i = 0; i < tk->vocab_size; i++) {
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
	return 0;
}

int rl_tokenizer_init(rl_tokenizer *tk, int vocab_size, const char *const *pieces,
		      const int *piece_len, const float *scores, int bos_id, int eos_id,
		      int add_dummy_prefix)
{
	memset(tk, 0, sizeof *tk);
	if (vocab_size < 1) {
		rl_seterr("vocabulary of %d pieces", vocab_size);
		return -1;
	}
	if (bos_id < -1 || bos_id >= vocab_size || eos_id < -1 || eos_id >= vocab_size) {
		rl_seterr("bos id %d or eos id %d outside the vocabulary of %d", bos_id, eos_id, vocab_size);
		return -1;
	}
	size_t V = (size_t)vocab_size;
	piece_index *ix = calloc(1, sizeof *ix);
	tk->index = ix;
	tk->pieces = malloc(V * sizeof *tk->pieces);
	tk->piece_len = malloc(V * sizeof *tk->piece_len);
	tk->scores = malloc(V * sizeof *tk->scores);
	tk->vocab_size = vocab_size;
	if (!ix || !tk->pieces || !tk->piece_len || !tk->scores) {
		rl_seterr("out of memory for a vocabulary of %d pieces", vocab_size);
		goto fail;
	}
	if (copy_pieces(tk, ix, pieces, piece_len) || build_index(tk, ix))
		goto fail;
	memcpy(tk->scores, scores, V * sizeof *tk->scores);
	tk->bos_id = bos_id;
	tk->eos_id = eos_id;
	tk->add_dummy_prefix = add_dummy_prefix != 0;
	for (int b = 0; b < 256; b++) {
		tk->byte_id[b] = -1;
		ix->raw_byte[b] = (char)b;
	}
	for (int i = 0; i < vocab_size; i++) {
		const unsigned char *p = (const unsigned char *)tk->pieces[i];
		int b = byte_piece_value(tk->pieces[i], tk->piece_len[i]);
		if (b >= 0)
			tk->byte_id[b] = i;
		for (int k = 0; k + 1 < tk->piece_len[i]; k++)
			ix->adjacent[p[k]][p[k + 1] / 8] |= (unsigned char)(1 << p[k + 1] % 8);
	}
	return 0;
fail:
	rl_tokenizer_free(tk);
	return -1;
}

/* ---- llama2.c's tokenizer.bin ---- */

/* Reads a whole file (allocating; caller frees) of at most max bytes. */
static unsigned char *read_file(const char *path, size_t max, size_t *size)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) != 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > max) {
		rl_seterr("%s: not a regular file of at most %zu bytes", path, max);
		fclose(f);
		return NULL;
	}
	size_t n = (size_t)st.st_size;
	unsigned char *buf = malloc(n ? n : 1);
	if (!buf) {
		rl_seterr("%s: out of memory for %zu bytes", path, n);
		fclose(f);
		return NULL;
	}
	size_t got = fread(buf, 1, n, f);
	int failed = ferror(f);
	fclose(f);
	if (failed || got != n) {
		rl_seterr("%s: read %zu of %zu bytes%s%s", path, got, n, failed ? ": " : "",
			  failed ? strerror(errno) : "");
		free(buf);
		return NULL;
	}
	*size = n;
	return buf;
}

static int32_t load_le_i32(const unsigned char *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	return (int32_t)u;
}

static float load_le_f32(const unsigned char *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Walks the pieces of a tokenizer.bin held in buf, checking each; when
 * pieces is not NULL, also records where each piece is (pointing into buf). */
static int parse_llama2c(const char *path, const unsigned char *buf, size_t size, int vocab_size,
			 const char **pieces, int *piece_len, float *scores)
{
	if (size < 4) {
		rl_seterr("%s: truncated: %zu bytes, too short for max_token_length", path, size);
		return -1;
	}
	int32_t max_token_length = load_le_i32(buf);
	if (max_token_length < 1 || (size_t)max_token_length > size) {
		rl_seterr("%s: max_token_length %d is not a length of a piece in a file of %zu bytes",
			  path, (int)max_token_length, size);
		return -1;
	}
	size_t at = 4;
	for (int i = 0; i < vocab_size; i++) {
		if (size - at < 8) {
			rl_seterr("%s: truncated at piece %d of %d (offset %zu of %zu bytes)", path, i,
				  vocab_size, at, size);
			return -1;
		}
		int32_t len = load_le_i32(buf + at + 4);
		if (len < 0 || len > max_token_length) {
			rl_seterr("%s: piece %d has length %d, outside 0..max_token_length %d", path, i,
				  (int)len, (int)max_token_length);
			return -1;
		}
		if ((size_t)len > size - at - 8) {
			rl_seterr("%s: truncated in piece %d of %d: %d bytes promised, %zu left", path, i,
				  vocab_size, (int)len, size - at - 8);
			return -1;
		}
		if (pieces) {
			scores[i] = load_le_f32(buf + at);
			piece_len[i] = len;
			pieces[i] = (const char *)buf + at + 8;
		}
		at += 8 + (size_t)len;
	}
	if (at != size) {
		rl_seterr("%s: %zu bytes follow the %d pieces: a larger vocabulary than %d?", path, size - at,
			  vocab_size, vocab_size);
		return -1;
	}
	return 0;
}

int rl_tokenizer_load_llama2c(rl_tokenizer *tk, const char *path, int vocab_size)
{
	memset(tk, 0, sizeof *tk);
	if (vocab_size <= 0) {
		rl_seterr("%s: vocabulary size %d", path, vocab_size);
		return -1;
	}
	size_t size;
	unsigned char *buf = read_file(path, (size_t)1 << 30, &size);
	if (!buf)
		return -1;
	/* Check the whole file before allocating for vocab_size pieces: a forged
	 * vocab_size then fails on the file's size, not on a huge allocation. */
	int rc = parse_llama2c(path, buf, size, vocab_size, NULL, NULL, NULL);
	const char **pieces = NULL;
	int *piece_len = NULL;
	float *scores = NULL;
	if (rc == 0) {
		pieces = malloc((size_t)vocab_size * sizeof *pieces);
		piece_len = malloc((size_t)vocab_size * sizeof *piece_len);
		scores = malloc((size_t)vocab_size * sizeof *scores);
		if (!pieces || !piece_len || !scores) {
			rl_seterr("%s: out of memory for %d pieces", path, vocab_size);
			rc = -1;
		}
	}
	if (rc == 0)
		rc = parse_llama2c(path, buf, size, vocab_size, pieces, piece_len, scores);
	if (rc == 0) {
		/* llama2.c's ids: 0 <unk>, 1 BOS, 2 EOS */
		int bos = vocab_size > 1 ? 1 : -1, eos = vocab_size > 2 ? 2 : -1;
		rc = rl_tokenizer_init(tk, vocab_size, pieces, piece_len, scores, bos, eos, 1);
		if (rc)
			rl_seterr("%s: %s", path, rl_err());
	}
	free(pieces);
	free(piece_len);
	free(scores);
	free(buf);
	return rc;
}

int rl_tokenizer_byte_level(rl_tokenizer *tk, int vocab_size)
{
	memset(tk, 0, sizeof *tk);
	if (vocab_size < 259) {
		rl_seterr("a byte-level vocabulary needs at least 259 pieces, not %d", vocab_size);
		return -1;
	}
	size_t V = (size_t)vocab_size;
	char (*names)[24] = malloc(V * sizeof *names);
	const char **pieces = malloc(V * sizeof *pieces);
	int *piece_len = malloc(V * sizeof *piece_len);
	float *scores = calloc(V, sizeof *scores);
	int rc = -1;
	if (!names || !pieces || !piece_len || !scores) {
		rl_seterr("out of memory for a vocabulary of %d pieces", vocab_size);
		goto done;
	}
	for (int i = 0; i < vocab_size; i++) {
		if (i < 3)
			snprintf(names[i], sizeof names[i], "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
		else if (i < 259)
			snprintf(names[i], sizeof names[i], "<0x%02X>", i - 3);
		else
			snprintf(names[i], sizeof names[i], "<unused%d>", i - 259);
		pieces[i] = names[i];
		piece_len[i] = (int)strlen(names[i]);
	}
	rc = rl_tokenizer_init(tk, vocab_size, pieces, piece_len, scores, 1, 2, 0);
done:
	free(names);
	free(pieces);
	free(piece_len);
	free(scores);
	return rc;
}

/* ---- encoding ---- */

/* One token of the text being merged, in a doubly linked list. */
typedef struct {
	int id;                  /* piece id; -1 once merged into its left neighbour */
	int prev, next;          /* neighbours' indices, -1 at the ends */
} symbol;

/* A pair of adjacent symbols that could merge. It is still current if the
 * left symbol and its right neighbour still hold left_id and right_id: the
 * same ids at the same place are the same pair, whatever happened between. */
typedef struct {
	float score;             /* scores[merged] */
	int left;                /* index of the left symbol: its position in the text */
	int left_id, right_id, merged;
} candidate;

typedef struct {
	candidate *items;
	size_t n, cap;
} candidate_heap;

/* The order of llama2.c's choice: higher score, then further left. */
static int merges_before(const candidate *a, const candidate *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(candidate_heap *h, candidate c)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 1024;
		candidate *items = realloc(h->items, cap * sizeof *items);
		if (!items) {
			rl_seterr("out of memory for %zu merge candidates", cap);
			return -1;
		}
		h->items = items;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0 && merges_before(&c, &h->items[(i - 1) / 2])) {
		h->items[i] = h->items[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->items[i] = c;
	return 0;
}

static candidate heap_pop(candidate_heap *h)
{
	candidate top = h->items[0], last = h->items[--h->n];
	size_t i = 0;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && merges_before(&h->items[child + 1], &h->items[child]))
			child++;
		if (!merges_before(&h->items[child], &last))
			break;
		h->items[i] = h->items[child];
		i = child;
	}
	if (h->n)
		h->items[i] = last;
	return top;
}

/* Pushes the pair (left, its right neighbour) if it merges into a piece. */
static int push_pair(const rl_tokenizer *tk, const symbol *sym, int left, candidate_heap *h)
{
	if (left < 0 || sym[left].next < 0)
		return 0;
	int a = sym[left].id, b = sym[sym[left].next].id;
	int merged = find_concat(tk, tk->pieces[a], (size_t)tk->piece_len[a], tk->pieces[b],
				 (size_t)tk->piece_len[b]);
	if (merged < 0 || !(tk->scores[merged] > NO_MERGE_SCORE))
		return 0;
	candidate c = { tk->scores[merged], left, a, b, merged };
	return heap_push(h, c);
}

static int byte_token(const rl_tokenizer *tk, unsigned char b)
{
	return tk->byte_id[b] >= 0 ? tk->byte_id[b] : 0;
}

static int is_utf8_continuation(unsigned char b)
{
	return (b & 0xC0) == 0x80;
}

/* The tokens before any merge, as llama2.c's encode() builds them: a lead
 * byte and the continuation bytes after it (at most 4 bytes together) make
 * one group; a group that is not a piece becomes its bytes' fallback tokens.
 * Returns how many ids were written to out (at most len + 2). */
static size_t initial_tokens(const rl_tokenizer *tk, const unsigned char *text, size_t len, int bos,
			     int *out)
{
	size_t n = 0;
	if (bos && tk->bos_id >= 0)
		out[n++] = tk->bos_id;
	if (tk->add_dummy_prefix && len > 0) {
		int space = find_piece(tk, " ", 1);
		out[n++] = space >= 0 ? space : byte_token(tk, ' ');
	}
	for (size_t i = 0; i < len;) {
		size_t group = 1;
		while (group < 4 && i + group < len && is_utf8_continuation(text[i + group]))
			group++;
		int id = find_piece(tk, (const char *)text + i, group);
		if (id >= 0)
			out[n++] = id;
		else
			for (size_t k = 0; k < group; k++)
				out[n++] = byte_token(tk, text[i + k]);
		i += group;
	}
	return n;
}

/* Whether a merge could ever join a token ending like piece a to one
 * starting like piece b: only if some piece holds their junction's bytes. */
static int may_join(const rl_tokenizer *tk, int a, int b)
{
	const piece_index *ix = tk->index;
	int la = tk->piece_len[a];
	if (la == 0 || tk->piece_len[b] == 0)
		return 1;
	unsigned char last = (unsigned char)tk->pieces[a][la - 1], first = (unsigned char)tk->pieces[b][0];
	return ix->adjacent[last][first / 8] >> first % 8 & 1;
}

/* Merges ids[0..n) in place as llama2.c does; returns the new length or -1. */
static long merge_tokens(const rl_tokenizer *tk, int *ids, int n)
{
	symbol *sym = malloc((size_t)(n ? n : 1) * sizeof *sym);
	candidate_heap heap = { 0 };
	long out = -1;
	if (!sym) {
		rl_seterr("out of memory for %d tokens", n);
		return -1;
	}
	for (int i = 0; i < n; i++)
		sym[i] = (symbol){ ids[i], i - 1, i + 1 < n ? i + 1 : -1 };
	for (int start = 0, end; start < n; start = end) {
		for (end = start + 1; end < n && may_join(tk, ids[end - 1], ids[end]); end++)
			;
		/* run [start, end): a pair pushed below never reaches across its ends */
		for (int i = start; i + 1 < end; i++)
			if (push_pair(tk, sym, i, &heap))
				goto done;
		while (heap.n) {
			candidate c = heap_pop(&heap);
			int right = sym[c.left].next;
			if (sym[c.left].id != c.left_id || right < 0 || sym[right].id != c.right_id)
				continue; /* stale: one of the pair has merged since */
			sym[c.left].id = c.merged;
			sym[right].id = -1;
			sym[c.left].next = sym[right].next;
			if (sym[right].next >= 0)
				sym[sym[right].next].prev = c.left;
			if (push_pair(tk, sym, sym[c.left].prev, &heap) || push_pair(tk, sym, c.left, &heap))
				goto done;
		}
	}
	/* symbol 0 never merges into a left neighbour, so the list starts there */
	out = 0;
	for (int i = n ? 0 : -1; i >= 0; i = sym[i].next)
		ids[out++] = sym[i].id;
done:
	free(sym);
	free(heap.items);
	return out;
}

int rl_encode(const rl_tokenizer *tk, const char *text, size_t len, int bos, int eos,
	      int **ids, size_t *n)
{
	if (tk->kind == RL_TOKENIZER_BPE)
		return rl_bpe_encode(tk, text, len, bos, eos, ids, n);
	*ids = NULL;
	*n = 0;
	if (len > (size_t)INT_MAX - 3) {
		rl_seterr("text of %zu bytes is too long to encode at once", len);
		return -1;
	}
	int *out = malloc((len + 3) * sizeof *out); /* BOS, dummy prefix, a token per byte, EOS */
	if (!out) {
		rl_seterr("out of memory to encode %zu bytes", len);
		return -1;
	}
	size_t count = initial_tokens(tk, (const unsigned char *)text, len, bos, out);
	long merged = merge_tokens(tk, out, (int)count);
	if (merged < 0) {
		free(out);
		return -1;
	}
	count = (size_t)merged;
	if (eos && tk->eos_id >= 0)
		out[count++] = tk->eos_id;
	*ids = out;
	*n = count;
	return 0;
}

const char *rl_decode_piece(const rl_tokenizer *tk, int prev, int token, size_t *len)
{
	*len = 0;
	if (token < 0 || token >= tk->vocab_size) {
		rl_seterr("token %d outside the vocabulary of %d", token, tk->vocab_size);
		return NULL;
	}
	const char *p = tk->pieces[token];
	int n = tk->piece_len[token];
	if (tk->kind == RL_TOKENIZER_BPE) { /* raw bytes, added tokens as written */
		*len = (size_t)n;
		return p;
	}
	if (tk->bos_id >= 0 && prev == tk->bos_id && n > 0 && p[0] == ' ') {
		p++;
		n--;
	}
	int b = byte_piece_value(p, n);
	if (b >= 0) {
		const piece_index *ix = tk->index;
		*len = 1;
		return &ix->raw_byte[b];
	}
	*len = (size_t)n;
	return p;
}

