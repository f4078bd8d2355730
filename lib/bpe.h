/* bpe.h: private to the tokenizer. The byte-level BPE kind of rl_tokenizer
 * lives in bpe.c; tokenizer.c's rl_encode, rl_decode_piece and
 * rl_tokenizer_free hand BPE tokenizers to these. */
#ifndef RL_BPE_H
#define RL_BPE_H
#include <stddef.h>

#include "tokenizer.h"

/* rl_encode for tk->kind == RL_TOKENIZER_BPE (same contract). */
int rl_bpe_encode(const rl_tokenizer *tk, const char *text, size_t len, int bos, int eos,
		  int **ids, size_t *n);

/* GPT-2's map from bytes to printable code points, inverted: byte_of[cp] is
 * the byte code point cp stands for, -1 when cp is not byte-level. */
void rl_bpe_byte_level_table(int byte_of[324]);

/* Frees what tk->bpe holds (not tk's own arrays). */
void rl_bpe_free(void *bpe);

#endif
