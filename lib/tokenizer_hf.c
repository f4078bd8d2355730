/* tokenizer_hf.c: a tokenizer written as Hugging Face's tokenizer.json and
 * tokenizer_config.json (see rl_tokenizer_write_hf in tokenizer.h).
 *
 * The SentencePiece form follows what HF's converter writes for Llama 2's
 * tokenizer: merges are every split of a piece into two pieces, ordered by
 * the merged piece's score (highest first), then by the piece's id, then by
 * the ids of the two halves; HF's BPE then merges the pair of lowest rank,
 * which for distinct scores is the pair llama2.c's encode() picks (the one
 * whose concatenation scores highest). */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "bpe.h"
#include "err.h"
#include "json.h"
#include "tokenizer.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* llama2.c's encode() never merges into a piece scoring at or below this */
static const float NO_MERGE_SCORE = -1e10f;

static int valid_utf8(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (k <= 0 || cp == 0)
			return 0;
		i += (size_t)k;
	}
	return 1;
}

/* Bytes in UTF-8 of the code point starting at s[0] (s is valid UTF-8). */
static size_t char_bytes(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Copies s (n bytes) to out (room for 3n), each space as U+2581 when mark
 * is set; returns the bytes written. */
static size_t mark_spaces(const char *s, size_t n, int mark, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (mark && s[i] == ' ') {
			memcpy(out + k, SPACE_MARK, 3);
			k += 3;
		} else {
			out[k++] = s[i];
		}
	return k;
}

/* Raw bytes as GPT-2's byte-level characters, inside a JSON string (no quotes). */
static void write_byte_level(FILE *f, const int char_of[256], const char *s, size_t n)
{
	char buf[2 * 256 + 4];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int cp = char_of[(unsigned char)s[i]];
		if (cp == '"' || cp == '\\') {
			buf[k++] = '\\';
			buf[k++] = (char)cp;
		} else if (cp < 0x80) {
			buf[k++] = (char)cp;
		} else { /* below U+0800: two bytes */
			buf[k++] = (char)(0xc0 | cp >> 6);
			buf[k++] = (char)(0x80 | (cp & 0x3f));
		}
		if (k > sizeof buf - 4) {
			fwrite(buf, 1, k, f);
			k = 0;
		}
	}
	fwrite(buf, 1, k, f);
}

/* The text a special token is written as: llama2.c's tokenizer.bin holds
 * BOS and EOS as "\n<s>\n" and "\n</s>\n"; SentencePiece's pieces, and HF's,
 * are "<s>" and "</s>". */
static void special_text(const rl_tokenizer *tk, int id, const char **s, size_t *n)
{
	*s = tk->pieces[id];
	*n = (size_t)tk->piece_len[id];
	if (*n > 4 && (*s)[0] == '\n' && (*s)[1] == '<' && (*s)[*n - 2] == '>' && (*s)[*n - 1] == '\n') {
		(*s)++;
		*n -= 2;
	}
}

static void write_added(FILE *f, const char *s, size_t n, int id, int flags, int first)
{
	fprintf(f, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", id);
	rl_json_write_string(f, s, n);
	fprintf(f, ", \"single_word\": %s, \"lstrip\": %s, \"rstrip\": %s, \"normalized\": %s, \"special\": %s}",
		flags & RL_ADDED_SINGLE_WORD ? "true" : "false", flags & RL_ADDED_LSTRIP ? "true" : "false",
		flags & RL_ADDED_RSTRIP ? "true" : "false", flags & RL_ADDED_NORMALIZED ? "true" : "false",
		flags & RL_ADDED_SPECIAL ? "true" : "false");
}

/* The post-processor: BOS before the text when the tokenizer adds one. */
static void write_post_processor(FILE *f, const char *bos, size_t n, int bos_id, int byte_level)
{
	fputs("  \"post_processor\": ", f);
	if (bos_id < 0) {
		fputs(byte_level ? "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
				   "\"use_regex\": false},\n"
				 : "null,\n",
		      f);
		return;
	}
	fputs("{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": ", f);
	rl_json_write_string(f, bos, n);
	fputs(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": {\"id\": ", f);
	rl_json_write_string(f, bos, n);
	fputs(", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ", f);
	rl_json_write_string(f, bos, n);
	fputs(", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {", f);
	rl_json_write_string(f, bos, n);
	fputs(": {\"id\": ", f);
	rl_json_write_string(f, bos, n);
	fprintf(f, ", \"ids\": [%d], \"tokens\": [", bos_id);
	rl_json_write_string(f, bos, n);
	fputs("]}}},\n", f);
}

static void write_config(FILE *cfg, const char *bos, size_t nbos, const char *eos, size_t neos, const char *unk,
			 int model_max_length)
{
	fprintf(cfg, "{\n  \"add_bos_token\": %s,\n  \"add_eos_token\": false,\n  \"bos_token\": ", bos ? "true" : "false");
	if (bos)
		rl_json_write_string(cfg, bos, nbos);
	else
		fputs("null", cfg);
	fputs(",\n  \"eos_token\": ", cfg);
	if (eos)
		rl_json_write_string(cfg, eos, neos);
	else
		fputs("null", cfg);
	if (unk)
		fprintf(cfg, ",\n  \"unk_token\": \"%s\"", unk);
	fprintf(cfg, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": %d,\n"
		     "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n",
		model_max_length);
}

/* ---- SentencePiece-style (llama2.c) ---- */

typedef struct {
	float score;
	int piece, left, right;
} sp_merge;

static int sp_merge_order(const void *a, const void *b)
{
	const sp_merge *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->piece != y->piece)
		return x->piece < y->piece ? -1 : 1;
	if (x->left != y->left)
		return x->left < y->left ? -1 : 1;
	return (x->right > y->right) - (x->right < y->right);
}

/* Every split of a piece into two non-special pieces at a character
 * boundary, for every piece a merge may give; *out allocated. */
static int sp_merges(const rl_tokenizer *tk, const unsigned char *special, sp_merge **out, size_t *n)
{
	size_t cap = 1024, k = 0;
	sp_merge *m = malloc(cap * sizeof *m);
	if (!m)
		goto oom;
	for (int x = 0; x < tk->vocab_size; x++) {
		const char *p = tk->pieces[x];
		size_t len = (size_t)tk->piece_len[x];
		if (special[x] || !(tk->scores[x] > NO_MERGE_SCORE))
			continue;
		for (size_t at = char_bytes((unsigned char)p[0]); at < len; at += char_bytes((unsigned char)p[at])) {
			int l = rl_tokenizer_piece_id(tk, p, at), r = rl_tokenizer_piece_id(tk, p + at, len - at);
			if (l < 0 || r < 0 || special[l] || special[r])
				continue;
			if (k == cap) {
				sp_merge *bigger = realloc(m, 2 * cap * sizeof *m);
				if (!bigger)
					goto oom;
				m = bigger;
				cap *= 2;
			}
			m[k++] = (sp_merge){ tk->scores[x], x, l, r };
		}
	}
	qsort(m, k, sizeof *m, sp_merge_order);
	*out = m;
	*n = k;
	return 0;
oom:
	free(m);
	rl_seterr("out of memory for the merges of %d pieces", tk->vocab_size);
	return -1;
}

static int write_sentencepiece(const rl_tokenizer *tk, FILE *f, FILE *cfg, int model_max_length)
{
	int V = tk->vocab_size, unk = -1, rc = -1, mark = tk->add_dummy_prefix;
	unsigned char *special = calloc((size_t)V, 1);
	sp_merge *merges = NULL;
	size_t nmerges = 0;
	char *scratch = malloc(6 * (size_t)tk->max_piece_len + 8); /* two pieces, marked, and a space */
	if (!special || !scratch) {
		free(scratch);
		rl_seterr("out of memory");
		return -1;
	}
	if (V > 0 && tk->piece_len[0] == 5 && memcmp(tk->pieces[0], "<unk>", 5) == 0)
		unk = 0;
	int ids[3] = { unk, tk->bos_id, tk->eos_id };
	for (int i = 0; i < 3; i++)
		if (ids[i] >= 0)
			special[ids[i]] = 1;
	for (int i = 0; i < V; i++) {
		const char *p = tk->pieces[i];
		size_t n = (size_t)tk->piece_len[i];
		if (n == 0 || !valid_utf8(p, n)) {
			rl_seterr("token %d \"%.*s\": %s", i, (int)(n > 40 ? 40 : n), p,
				  n ? "not UTF-8 (or holds a NUL): tokenizer.json cannot hold it" : "an empty piece");
			goto done;
		}
		if (memmem(p, n, SPACE_MARK, 3)) {
			rl_seterr("token %d \"%.*s\" holds U+2581, which tokenizer.json uses for a space", i,
				  (int)(n > 40 ? 40 : n), p);
			goto done;
		}
		if (!special[i] && memchr(p, ' ', n))
			mark = 1;
	}
	if (mark && rl_tokenizer_piece_id(tk, " ", 1) < 0) {
		rl_seterr("the tokenizer has spaces in its pieces or a dummy prefix, but no piece \" \": HF's form cannot express it");
		goto done;
	}
	for (int i = 0; i < 3; i++) {
		const char *s;
		size_t n;
		if (ids[i] < 0)
			continue;
		special_text(tk, ids[i], &s, &n);
		int other = rl_tokenizer_piece_id(tk, s, n);
		if (other >= 0 && other != ids[i]) {
			rl_seterr("special token %d is written \"%.*s\", which is token %d too", ids[i], (int)n, s, other);
			goto done;
		}
	}
	if (sp_merges(tk, special, &merges, &nmerges))
		goto done;

	fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
	int first = 1;
	for (int i = 0; i < V; i++)
		if (special[i]) {
			const char *s;
			size_t n;
			special_text(tk, i, &s, &n);
			write_added(f, s, n, i, RL_ADDED_SPECIAL, first);
			first = 0;
		}
	fputs("\n  ],\n  \"normalizer\": ", f);
	if (mark)
		fprintf(f, "{\"type\": \"Sequence\", \"normalizers\": [%s{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
			   "\"content\": \"" SPACE_MARK "\"}]},\n",
			tk->add_dummy_prefix ? "{\"type\": \"Prepend\", \"prepend\": \"" SPACE_MARK "\"}, " : "");
	else
		fputs("null,\n", f);
	fputs("  \"pre_tokenizer\": null,\n", f);
	const char *bos = NULL, *eos = NULL;
	size_t nbos = 0, neos = 0;
	if (tk->bos_id >= 0)
		special_text(tk, tk->bos_id, &bos, &nbos);
	if (tk->eos_id >= 0)
		special_text(tk, tk->eos_id, &eos, &neos);
	write_post_processor(f, bos, nbos, tk->bos_id, 0);
	fputs("  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [", f);
	if (mark)
		fputs("{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SPACE_MARK "\"}, \"content\": \" \"}, ", f);
	fputs("{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}", f);
	if (tk->add_dummy_prefix)
		fputs(", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}", f);
	fprintf(f, "]},\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": %s,\n"
		   "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
		   "    \"fuse_unk\": false,\n    \"byte_fallback\": true,\n    \"ignore_merges\": false,\n"
		   "    \"vocab\": {",
		unk >= 0 ? "\"<unk>\"" : "null");
	for (int i = 0; i < V; i++) {
		const char *s = tk->pieces[i];
		size_t n = (size_t)tk->piece_len[i];
		if (special[i])
			special_text(tk, i, &s, &n);
		fputs(i ? ",\n      " : "\n      ", f);
		rl_json_write_string(f, scratch, mark_spaces(s, n, mark && !special[i], scratch));
		fprintf(f, ": %d", i);
	}
	fputs("\n    },\n    \"merges\": [", f);
	for (size_t r = 0; r < nmerges; r++) {
		/* "left right": the one space not marked separates them */
		const sp_merge *g = &merges[r];
		size_t k = mark_spaces(tk->pieces[g->left], (size_t)tk->piece_len[g->left], mark, scratch);
		scratch[k++] = ' ';
		k += mark_spaces(tk->pieces[g->right], (size_t)tk->piece_len[g->right], mark, scratch + k);
		fputs(r ? ",\n      " : "\n      ", f);
		rl_json_write_string(f, scratch, k);
	}
	fputs("\n    ]\n  }\n}\n", f);
	write_config(cfg, bos, nbos, eos, neos, unk >= 0 ? "<unk>" : NULL, model_max_length);
	rc = 0;
done:
	free(special);
	free(merges);
	free(scratch);
	return rc;
}

/* ---- byte-level BPE ---- */

static int write_byte_level_bpe(const rl_tokenizer *tk, FILE *f, FILE *cfg, int model_max_length)
{
	rl_bpe_spec sp;
	if (rl_tokenizer_bpe_spec(tk, &sp))
		return -1;
	int V = tk->vocab_size, byte_of[324], char_of[256];
	rl_bpe_byte_level_table(byte_of);
	for (int cp = 0; cp < 324; cp++)
		if (byte_of[cp] >= 0)
			char_of[byte_of[cp]] = cp;
	const char *gpt2 = rl_bpe_pretokenizer_regex("gpt-2");
	int gpt2_regex = sp.add_prefix_space && sp.nsplits == 1 && strcmp(sp.splits[0], gpt2) == 0;
	if (sp.add_prefix_space && sp.nsplits > 0 && !gpt2_regex) {
		rl_seterr("add_prefix_space with pre-tokenizer regexes other than GPT-2's cannot be written");
		return -1;
	}
	unsigned char *added = calloc((size_t)V, 1);
	if (!added) {
		rl_seterr("out of memory");
		return -1;
	}
	for (int i = 0; i < sp.nadded; i++) {
		int id = sp.added[2 * i];
		added[id] = 1;
		if (!valid_utf8(tk->pieces[id], (size_t)tk->piece_len[id])) {
			rl_seterr("added token %d: not UTF-8 (or holds a NUL): tokenizer.json cannot hold it", id);
			free(added);
			return -1;
		}
	}
	fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
	for (int i = 0; i < sp.nadded; i++) {
		int id = sp.added[2 * i];
		write_added(f, tk->pieces[id], (size_t)tk->piece_len[id], id, sp.added[2 * i + 1], i == 0);
	}
	fprintf(f, "\n  ],\n  \"normalizer\": %s,\n  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [",
		sp.nfc ? "{\"type\": \"NFC\"}" : "null");
	for (int i = 0; i < sp.nsplits && !gpt2_regex; i++) {
		fputs("{\"type\": \"Split\", \"pattern\": {\"Regex\": ", f);
		rl_json_write_string(f, sp.splits[i], strlen(sp.splits[i]));
		fputs("}, \"behavior\": \"Isolated\", \"invert\": false}, ", f);
	}
	fprintf(f, "{\"type\": \"ByteLevel\", \"add_prefix_space\": %s, \"trim_offsets\": false, \"use_regex\": %s}]},\n",
		sp.add_prefix_space ? "true" : "false", gpt2_regex ? "true" : "false");
	const char *bos = NULL, *eos = NULL;
	size_t nbos = 0, neos = 0;
	if (tk->bos_id >= 0) {
		bos = tk->pieces[tk->bos_id];
		nbos = (size_t)tk->piece_len[tk->bos_id];
	}
	if (tk->eos_id >= 0) {
		eos = tk->pieces[tk->eos_id];
		neos = (size_t)tk->piece_len[tk->eos_id];
	}
	write_post_processor(f, bos, nbos, tk->bos_id, 1);
	fprintf(f, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n"
		   "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
		   "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n"
		   "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
		   "    \"vocab\": {",
		sp.ignore_merges ? "true" : "false");
	int first = 1;
	for (int i = 0; i < V; i++)
		if (!added[i] && tk->piece_len[i] > 0) {
			fputs(first ? "\n      \"" : ",\n      \"", f);
			write_byte_level(f, char_of, tk->pieces[i], (size_t)tk->piece_len[i]);
			fprintf(f, "\": %d", i);
			first = 0;
		}
	fputs("\n    },\n    \"merges\": [", f);
	for (int r = 0; r < sp.nmerges; r++) {
		int a = sp.merges[2 * r], b = sp.merges[2 * r + 1];
		/* "left right": byte-level characters are never a space */
		fputs(r ? ",\n      \"" : "\n      \"", f);
		write_byte_level(f, char_of, tk->pieces[a], (size_t)tk->piece_len[a]);
		fputc(' ', f);
		write_byte_level(f, char_of, tk->pieces[b], (size_t)tk->piece_len[b]);
		fputc('"', f);
	}
	fputs("\n    ]\n  }\n}\n", f);
	write_config(cfg, bos, nbos, eos, neos, NULL, model_max_length);
	free(added);
	return 0;
}

int rl_tokenizer_write_hf(const rl_tokenizer *tk, FILE *json, FILE *config, int model_max_length)
{
	return tk->kind == RL_TOKENIZER_BPE ? write_byte_level_bpe(tk, json, config, model_max_length)
					    : write_sentencepiece(tk, json, config, model_max_length);
}
