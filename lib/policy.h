/* policy.h: which dtype each tensor of a model is stored in.
 *
 *   policy := rule { ";" rule }
 *   rule   := format | target { "," target } "=" format
 *   target := [ "blk." layers "." ] glob        layers := N | N-M | "*"
 *
 * A glob (fnmatch) names a tensor's kind: ffn_gate, attn_*, token_embd, output.
 * A bare format is the default for the weight matrices of the blocks; the
 * embeddings and the classifier take it when it is a float format and q8g32
 * otherwise; 1-D tensors (norms, biases) stay f32. Later rules win. Formats are
 * dtype names (qpack -p help lists them); q2, q3, q4, q8 mean q2g32 ... q8g32.
 * Named policies: w4w2 (the default) = "q4;ffn_gate,ffn_up=q2". */
#ifndef RL_POLICY_H
#define RL_POLICY_H
#include "dtype.h"
#include "model.h"

typedef struct rl_policy rl_policy;

#define RL_POLICY_DEFAULT "w4w2"

/* NULL after rl_seterr, whose message quotes the offending text. */
rl_policy *rl_policy_parse(const char *spec);
void rl_policy_free(rl_policy *p);
/* The dtype of t; -1 when the format cannot hold t's rows (the error has a hint). */
int rl_policy_dtype(rl_policy *p, const rl_tensor *t, rl_dtype *dt);
/* The text of the i-th target that matched no tensor so far, or NULL past the last. */
const char *rl_policy_unmatched(const rl_policy *p, int i);
/* The grammar and the formats, for qpack -p help. */
const char *rl_policy_help(void);

#endif
