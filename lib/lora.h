/* lora.h: low-rank adapters (LoRA) on a model's linear layers, in memory and
 * as adapter streams (tstream(5), kind "adapter").
 *
 * A target is a weight W (OC, IC) of the model; the adapter adds
 *   y = W.x + (alpha/r) . B.(A.x),   A (r, IC), B (OC, r), both f32,
 * without merging it into W (the forward pass applies it, see model.h).
 *
 * Targets are chosen by a pattern in the policy grammar (policy.h), e.g.
 * "ffn_gate,ffn_up" or "blk.0-3.attn_*"; NULL means the default: the blocks'
 * weights stored in fewer than 4 bits per weight (qbits < 4), which under the
 * default W4/W2-GateUp policy are ffn_gate and ffn_up. They are where the
 * quantization error is largest, and the adapters stay small.
 *
 * Dimension letters as in model.h; r = rank. */
#ifndef RL_LORA_H
#define RL_LORA_H
#include <stdint.h>

#include "model.h"
#include "stream.h"

typedef struct {
	char name[64];    /* the adapted tensor, e.g. blk.3.ffn_gate.weight */
	int tensor;       /* its index in the model's tensors */
	int OC, IC;
	float *a;         /* (r, IC), points into the adapter's params */
	float *b;         /* (OC, r), points into the adapter's params */
} rl_lora_target;

typedef struct rl_adapter {
	int rank;
	double alpha;             /* the update is scaled by alpha/rank */
	int ntargets;
	rl_lora_target *targets;  /* (ntargets) in the model's tensor order */
	float *params;            /* (nparams) one block: A then B of each target in order */
	size_t nparams;
	int ntensors;             /* of the model it was built for */
	int *target_of;           /* (ntensors) target index of each model tensor, or -1 */
	char base_content[65];    /* the base model's content and source (tstream(5) IDENTITY) */
	char base_source[65];
	int forced;               /* read with RL_ADAPTER_ANY_BASE although made for another base */
} rl_adapter;

/* The tensors that pattern selects in m (see above), as model tensor indices in
 * canonical order: *idx allocated (caller frees), *n > 0. -1 when a target of
 * the pattern matches no tensor, or nothing matches at all. */
int rl_lora_select(const rl_model *m, const char *pattern, int **idx, int *n);

/* A zero adapter of the given rank and alpha on the targets pattern selects in
 * m, its base identity m's. Allocates; rl_adapter_free frees. */
int rl_adapter_new(rl_adapter *a, const rl_model *m, const char *pattern, int rank, double alpha);
void rl_adapter_free(rl_adapter *a);
/* An adapter of rank and alpha on the n model tensors idx (canonical order),
 * parameters zeroed, its base identity m's: what rl_adapter_new and the
 * readers build on. */
int rl_adapter_alloc(rl_adapter *a, const rl_model *m, const int *idx, int n, int rank, double alpha);
/* 0 if every parameter is finite, else -1 after rl_seterr naming path: the
 * readers' last check. */
int rl_adapter_check_finite(const rl_adapter *a, const char *path);

/* The standard initialisation: A uniform in +-1/sqrt(IC) (Kaiming-uniform with
 * a = sqrt(5), as PEFT does), drawn from a stream seeded by (seed, target name);
 * B zero, so the adapted model starts as the base. */
void rl_adapter_init_standard(rl_adapter *a, uint64_t seed);

/* The SVD initialisation (as PiSSA/LoftQ-style recovery inits do): for each
 * target, the residual R = W_teacher - deq(W_student) (OC, IC), both as f32,
 * and its truncated SVD R ~ U_r S_r V_r^T; then B = U_r (S_r/s)^(1/2) and
 * A = (S_r/s)^(1/2) V_r^T with s = alpha/rank, so that s.B.A is the best
 * rank-r approximation of R (Eckart-Young) and the adapted student starts as
 * close to the teacher's weights as rank r allows. The singular values are
 * split evenly between A and B, so neither starts much larger than the other.
 * Components beyond min(OC, IC), or with a singular value below 1e-6 of the
 * largest (a residual of lower rank), keep the standard initialisation of
 * rl_adapter_init_standard(a, seed): A random, B zero, so they still learn.
 * teacher must be student's own source (the same source identity) and have
 * every target with the same shape; refused otherwise. *captured (may be
 * NULL) receives the share of the residuals' squared Frobenius norm, over all
 * targets, that the initialisation reproduces. Uses LAPACK's sgesdd (in
 * OpenBLAS); allocates and frees its workspace. */
int rl_adapter_init_svd(rl_adapter *a, const rl_model *student, const rl_model *teacher, uint64_t seed,
			double *captured);

/* The content identity of m: m->content when it was loaded from a stream,
 * else the sha256 its tensors would have written as they are stored. */
int rl_model_content(const rl_model *m, char hex[65]);

/* Reads an adapter stream (or a PEFT directory, peft.h) for model m: header fields, targets and tensor
 * shapes checked against m, and its base identity against m's content and
 * source (unless flags has RL_ADAPTER_ANY_BASE: then a mismatch is accepted,
 * the shapes still have to fit). Errors name the stream, message and field. */
enum { RL_ADAPTER_ANY_BASE = 1 };
int rl_adapter_read(const char *path, const rl_model *m, int flags, rl_adapter *a);
/* (A GGUF file, by its magic, goes to rl_adapter_read_gguf in gguf.h.) */
/* The same from an open reader, which stays open. */
int rl_adapter_read_reader(rl_reader *r, const rl_model *m, int flags, rl_adapter *a);

/* Writes the header and the tensors (f32); the caller may add a "summary"
 * message (e.g. distill's training summary), then calls rl_write_end and
 * rl_writer_commit. */
int rl_adapter_write(const rl_adapter *a, rl_writer *w, const char *producer);

/* Moves a into m (m->adapter, freed by rl_model_free; *a is left empty) so
 * that forward workspaces created after this apply it. a must be for m. */
int rl_model_attach_adapter(rl_model *m, rl_adapter *a);

/* Folds m's attached adapter into its weights: each target becomes f32,
 * W' = deq(W) + (alpha/r) . B.A, dequantized exactly as the runtime does; the
 * adapter is then dropped (m->adapter NULL) and m->content cleared, while
 * m->source (the import's identity) stays. -1 without an adapter. */
int rl_model_merge_adapter(rl_model *m);

/* PATH+ADAPTER: the position of the '+' that splits arg into a model and an
 * adapter, or -1 when arg names an existing file as a whole or has no '+'. */
int rl_model_arg_split(const char *arg);

#endif
