/* tokenizer.h: two kinds of tokenizer behind one encode/decode API.
 * - SentencePiece-style BPE as llama2.c uses it (tokenizer.bin): merges
 *   chosen by score, byte fallback through "<0xNN>" pieces, BOS/EOS and the
 *   dummy-prefix space. Encoding gives exactly llama2.c's ids, but runs in
 *   O(n log n) instead of llama2.c's quadratic merge loop.
 * - Hugging Face byte-level BPE (tokenizer.json, GPT-2 / Llama-3 / Qwen2 /
 *   Qwen3): added tokens matched first, NFC where the normalizer asks, the
 *   pre-tokenizer's split regexes (PCRE2, Unicode properties), then merges by
 *   rank over the bytes of each piece. Pieces hold the raw bytes a token
 *   stands for (the byte-level characters mapped back). */
#ifndef RL_TOKENIZER_H
#define RL_TOKENIZER_H
#include <stddef.h>
#include <stdio.h>

enum { RL_TOKENIZER_SENTENCEPIECE = 0, RL_TOKENIZER_BPE = 1 };

typedef struct rl_tokenizer {
	int kind;                /* RL_TOKENIZER_SENTENCEPIECE or RL_TOKENIZER_BPE */
	int vocab_size;          /* V */
	char **pieces;           /* (V) piece bytes, each NUL-terminated too */
	int *piece_len;          /* (V) length in bytes (a piece may hold a NUL) */
	float *scores;           /* (V) merge scores: higher merges first */
	int bos_id, eos_id;      /* -1 when the vocabulary has none */
	int add_dummy_prefix;    /* encode prepends " " to non-empty text */
	int byte_id[256];        /* id of piece "<0xNN>", -1 when absent */
	int max_piece_len;
	void *index;             /* private: piece -> id lookup */
	void *bpe;               /* private: merges, added tokens, regexes (BPE only) */
} rl_tokenizer;

/* Added-token flags, as tokenizer.json's added_tokens give them. */
enum { RL_ADDED_SPECIAL = 1, RL_ADDED_LSTRIP = 2, RL_ADDED_RSTRIP = 4,
       RL_ADDED_SINGLE_WORD = 8, RL_ADDED_NORMALIZED = 16 };

/* All a byte-level BPE tokenizer is, beside its pieces: what the model
 * stream's tokenizer message carries, and what rl_tokenizer_init_bpe takes. */
typedef struct {
	int nmerges;
	const int *merges;       /* (nmerges, 2) left id, right id; rank = row */
	int nadded;
	const int *added;        /* (nadded, 2) id, RL_ADDED_* flags */
	int nsplits;
	const char *const *splits; /* pre-tokenizer regexes (PCRE2 syntax), applied in order */
	int nfc;                 /* NFC-normalize text outside added tokens */
	int add_prefix_space;    /* prepend " " to each text segment not starting with one */
	int ignore_merges;       /* a piece that is a whole token is not merged */
} rl_bpe_spec;

/* Builds a byte-level BPE tokenizer, copying everything. pieces[i] are raw
 * bytes; an id that is neither a vocabulary token nor an added token has an
 * empty piece. Checks merges (ids in range, the concatenation a piece),
 * added ids, that every byte has a one-byte piece, and compiles the regexes.
 * Returns 0 or -1 with rl_err set. */
int rl_tokenizer_init_bpe(rl_tokenizer *tk, int vocab_size, const char *const *pieces,
			  const int *piece_len, const rl_bpe_spec *spec, int bos_id, int eos_id);

/* Describes a BPE tokenizer (pointers into tk, valid while tk lives), for
 * writers. Returns -1 if tk is not RL_TOKENIZER_BPE. */
int rl_tokenizer_bpe_spec(const rl_tokenizer *tk, rl_bpe_spec *spec);

/* The same from tokens written as GPT-2's byte-level strings, as GGUF's
 * tokenizer.ggml.tokens and .merges hold them: tokens[i] NUL-terminated (NULL
 * or "" for an id that is no token; an added token, listed in spec->added, is
 * taken as written), merges[r] "left right" in byte-level form, rank r.
 * spec->merges is not used. Errors name the token or merge by index. */
int rl_tokenizer_init_byte_level_bpe(rl_tokenizer *tk, int vocab_size, const char *const *tokens,
				     const char *const *merges, int nmerges, const rl_bpe_spec *spec,
				     int bos_id, int eos_id);

/* The pre-tokenizer regex for a name of llama.cpp's tokenizer.ggml.pre:
 * "qwen2", "llama-bpe" (Llama 3), "gpt-2" (GPT-2's ByteLevel regex); NULL
 * for a name not known here. */
const char *rl_bpe_pretokenizer_regex(const char *name);

/* Loads dir/tokenizer.json (model type BPE with a ByteLevel pre-tokenizer or
 * decoder) and dir/tokenizer_config.json (bos_token, eos_token,
 * add_bos_token; the file may be absent). BOS is added by rl_encode only when
 * tokenizer_config.json's add_bos_token is true, or, without that key, when
 * the post-processor's template starts with it; otherwise bos_id is -1.
 * Errors name the file and the field. */
int rl_tokenizer_load_hf(rl_tokenizer *tk, const char *dir);

/* Builds a tokenizer from arrays, copying them. Checks: V >= 1, every piece
 * length >= 0, bos/eos in range or -1, pieces unique. Returns 0 or -1. */
int rl_tokenizer_init(rl_tokenizer *tk, int vocab_size, const char *const *pieces,
		      const int *piece_len, const float *scores, int bos_id, int eos_id,
		      int add_dummy_prefix);

/* Reads llama2.c's tokenizer.bin (int32 max_token_length, then per piece:
 * f32 score, int32 length, bytes) for a vocabulary of vocab_size pieces.
 * BOS = 1, EOS = 2, dummy prefix on, as llama2.c does. A truncated or
 * malformed file is an error naming the path and the piece. */
int rl_tokenizer_load_llama2c(rl_tokenizer *tk, const char *path, int vocab_size);

/* A byte-level tokenizer for random-weight models: 0 "<unk>", 1 "<s>" (BOS),
 * 2 "</s>" (EOS), 3..258 "<0x00>".."<0xFF>", then "<unused%d>" up to
 * vocab_size (>= 259). No dummy prefix, no merges reachable: every byte is
 * its own token. */
int rl_tokenizer_byte_level(rl_tokenizer *tk, int vocab_size);

/* Encodes len bytes of text (need not be NUL-terminated, may be invalid
 * UTF-8) as llama2.c's encode() would, or for a BPE tokenizer as Hugging
 * Face's tokenizers library would (bytes that are not UTF-8 are tokens of
 * their own bytes), with BOS first when bos != 0 and the tokenizer has one,
 * EOS last when eos != 0 and it has one. *ids is allocated (caller frees),
 * *n its length. Safe to call from several threads on one tokenizer. */
int rl_encode(const rl_tokenizer *tk, const char *text, size_t len, int bos, int eos,
	      int **ids, size_t *n);

/* The bytes a token stands for when it follows token prev, as llama2.c's
 * decode(): a leading space is dropped after BOS, "<0xNN>" is the raw byte.
 * A BPE token is its piece whatever prev is (an added token as written), so
 * decoding every token of rl_encode's output gives the text back, after NFC
 * where the tokenizer normalizes.
 * Returns a pointer into the tokenizer (or a static byte), length in *len. */
const char *rl_decode_piece(const rl_tokenizer *tk, int prev, int token, size_t *len);

void rl_tokenizer_free(rl_tokenizer *tk);

/* SentencePiece kind: the id of the piece of these n bytes, or -1 (also for
 * a BPE tokenizer). */
int rl_tokenizer_piece_id(const rl_tokenizer *tk, const char *s, size_t n);

/* Writes tk as Hugging Face tokenizer files (tokenizer_hf.c): tokenizer.json
 * to json, tokenizer_config.json to config (model_max_length as given).
 * A byte-level BPE tokenizer is written as it was read: model BPE with the
 * vocabulary and merges in GPT-2's byte-level characters, added tokens,
 * NFC when set, the Split regexes then ByteLevel, decoder ByteLevel. A
 * SentencePiece-style one (llama2.c) in the form HF gives Llama's
 * tokenizers: model BPE with byte_fallback, spaces written as U+2581, merges
 * derived from the scores as HF's SentencePiece converter derives them
 * (every split of a piece into two pieces, by the piece's score, best
 * first), normalizer Prepend U+2581 (the dummy prefix) and Replace " ";
 * decoder Replace, ByteFallback, Fuse, Strip. BOS and EOS (a llama2.c
 * "\n<s>\n" is written "<s>") are special added tokens; add_bos_token is
 * true when the tokenizer has a BOS. rl_tokenizer_load_hf reads both forms
 * back to the same ids. Errors (a piece that is not UTF-8, or a tokenizer
 * the format cannot express) name the token; 0 or -1. */
int rl_tokenizer_write_hf(const rl_tokenizer *tk, FILE *json, FILE *config, int model_max_length);

#endif
