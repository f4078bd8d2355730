/* tokenizer.h: SentencePiece-style BPE as llama2.c uses it (tokenizer.bin):
 * merges chosen by score, byte fallback through "<0xNN>" pieces, BOS/EOS and
 * the dummy-prefix space. Encoding gives exactly llama2.c's ids, but runs in
 * O(n log n) instead of llama2.c's quadratic merge loop. */
#ifndef RL_TOKENIZER_H
#define RL_TOKENIZER_H
#include <stddef.h>

typedef struct rl_tokenizer {
	int vocab_size;          /* V */
	char **pieces;           /* (V) piece bytes, each NUL-terminated too */
	int *piece_len;          /* (V) length in bytes (a piece may hold a NUL) */
	float *scores;           /* (V) merge scores: higher merges first */
	int bos_id, eos_id;      /* -1 when the vocabulary has none */
	int add_dummy_prefix;    /* encode prepends " " to non-empty text */
	int byte_id[256];        /* id of piece "<0xNN>", -1 when absent */
	int max_piece_len;
	void *index;             /* private: piece -> id lookup */
} rl_tokenizer;

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
 * UTF-8) as llama2.c's encode() would, with BOS first when bos != 0 and
 * EOS last when eos != 0. *ids is allocated (caller frees), *n its length. */
int rl_encode(const rl_tokenizer *tk, const char *text, size_t len, int bos, int eos,
	      int **ids, size_t *n);

/* The bytes a token stands for when it follows token prev, as llama2.c's
 * decode(): a leading space is dropped after BOS, "<0xNN>" is the raw byte.
 * Returns a pointer into the tokenizer (or a static byte), length in *len. */
const char *rl_decode_piece(const rl_tokenizer *tk, int prev, int token, size_t *len);

void rl_tokenizer_free(rl_tokenizer *tk);

#endif
