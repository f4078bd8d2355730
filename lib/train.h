/* train.h: the training forward and backward passes of a model with a LoRA
 * adapter (lora.h), llm.c style: one preallocated block of saved activations,
 * a _backward beside every _forward, gradients accumulated with +=, linear
 * layers batched through cblas_sgemm.
 *
 * The base weights are frozen: each linear's weight is dequantized once, by
 * its dtype's to_float (exactly the values the runtime multiplies by), into
 * f32 kept for the life of the rl_train. Only the adapter's A and B get
 * gradients, but the activation gradient flows through every layer down to the
 * first block's input.
 *
 * Dimension letters as in model.h; r = rank, k = teacher top-k. */
#ifndef RL_TRAIN_H
#define RL_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#include "lora.h"
#include "model.h"

typedef struct rl_train rl_train;

/* Workspace for batches of up to max_tokens tokens in sequences of up to ctx.
 * m and a must outlive it (a's params are read at each forward). Allocates;
 * rl_train_free frees. NULL after rl_seterr. */
rl_train *rl_train_new(const rl_model *m, const rl_adapter *a, int max_tokens, int ctx);
void rl_train_free(rl_train *t);
/* Bytes of the saved activations (logits included), and of everything else
 * the workspace holds: gradient scratch, the adapter's gradient, each
 * thread's lane (for reports). */
size_t rl_train_activation_bytes(const rl_train *t);
size_t rl_train_scratch_bytes(const rl_train *t);

/* Runs nseq sequences (each from position 0, attending within itself, as the
 * batched forward of model.h) and keeps what the backward needs. Returns 0 or
 * -1 after rl_seterr. The logits (N, V) are rl_train_logits's until the next
 * forward. */
int rl_train_forward(rl_train *t, int nseq, const rl_seq *seqs);
/* The logits (N, V), and the place of their gradient: after a forward, the
 * caller replaces each row by the gradient of the loss with respect to it
 * (reading the row first, e.g. into a copy; rl_kl_topk_tail then adds into
 * the zeroed row), then calls rl_train_backward. One (N, V) block instead of
 * two: with a large vocabulary it is most of the workspace. */
float *rl_train_logits(rl_train *t);
/* Adds the gradient of the loss with respect to A and B of every target to the
 * gradient block (laid out as the adapter's params), from the gradient with
 * respect to the logits left in rl_train_logits. */
int rl_train_backward(rl_train *t);
float *rl_train_grad(rl_train *t);     /* (a->nparams) */
/* Which exp the softmaxes use on x86 with AVX2: 1 (the default) the widest the
 * CPU runs (AVX-512 where it has it), 0 the 8-lane one; the numbers are the same
 * bit for bit, which the tests check through this switch. */
void rl_train_select_exp(int widest);
void rl_train_zero_grad(rl_train *t);
/* The gradient with respect to the first block's input (N, C), after a
 * backward: for tests that the activation gradient flows all the way. */
const float *rl_train_dinput(const rl_train *t);

/* ---- the loss ----
 *
 * Teacher row: ids (k) with raw logits t_i, and lse_tau = log sum_v exp(t_v/tau)
 * over the whole vocabulary (the sample's logsumexp at tau = 1, or its
 * logsumexp_tau). Teacher probabilities p_i = exp(t_i/tau - lse_tau) for the
 * top-k, and one tail bucket p_tail = max(0, 1 - sum_i p_i) for the rest.
 * Student: q = softmax(z/tau) over V, q_i for the same ids, and
 * q_tail = sum of q_v over the ids not in the top-k.
 *
 *   KL = sum_i p_i (log p_i - log q_i) + p_tail (log p_tail - log q_tail)
 *
 * (0 log 0 = 0; exact KL(p || q) when k = V, the tail being empty). With
 * s = z/tau, dKL/ds_v = q_v - p_v for v in the top-k, and
 * q_v (1 - p_tail/q_tail) for v outside it: the teacher's tail mass is spread
 * over the tail in the student's own proportions. The loss is tau^2 KL
 * (Hinton et al.: keeps the gradient's scale as tau changes), so
 * dz_v += scale * tau * dKL/ds_v (dz may be NULL). The ids must be distinct
 * (the caller checks its samples). scratch holds V floats (the caller's, so
 * that a batch loop allocates nothing per row). Returns KL (not scaled), in
 * nats. */
double rl_kl_topk_tail(const float *z, int V, int k, const int32_t *ids, const float *teacher_logits,
		       float lse_tau, float tau, float scale, float *dz, float *scratch);
/* Cross-entropy -log softmax(z)[target]; dz += scale * (softmax(z) - onehot). */
double rl_cross_entropy(const float *z, int V, int target, float scale, float *dz);

/* ---- the layers, exposed for the finite-difference tests ----
 * Forward: outputs first, then saved values, then inputs, then sizes.
 * Backward: d-prefixed gradients of the inputs, accumulated with +=. */

/* out (N, n) = x / rms(x) * w per row; rstd (N) saved */
void rl_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int n, float eps);
void rl_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *rstd, int N, int n);
/* h (n) = silu(gate) * up */
void rl_swiglu_forward(float *h, const float *gate, const float *up, size_t n);
void rl_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n);
/* rotates each of nheads heads (D) of each of N rows (stride ld) by the angles
 * of position pos[n]: cos/sin tables (ctx, D/2); half = rotate-half layout */
void rl_rope_forward(float *x, int N, int ld, int nheads, int D, const int *pos, const float *cos_t,
		     const float *sin_t, int half);
void rl_rope_backward(float *dx, int N, int ld, int nheads, int D, const int *pos, const float *cos_t,
		      const float *sin_t, int half);
/* causal attention of one sequence of T tokens: out (T, H*D); lse (H, T)
 * saved (row stride ldl); q (T, H*D), k and v (T, KH*D); scratch (min(T, 64), T) */
void rl_attention_forward(float *out, float *lse, int ldl, const float *q, const float *k, const float *v, int T,
			  int H, int KH, int D, float *scratch);
void rl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *lse, int ldl,
			   const float *q, const float *k, const float *v, int T, int H, int KH, int D,
			   float *scratch, float *dscratch);

#endif
