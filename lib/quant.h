/* quant.h: quantizers for the group formats, and whole-tensor quantization
 * with the error statistics qpack reports.
 *
 * Dequantization is the format's own (dtype.h: rl_dtypes[t].to_float); a
 * quantizer only chooses each group's f16 scale and min and its q, so any
 * quantizer's output dequantizes exactly as the runtime and distill will see it. */
#ifndef RL_QUANT_H
#define RL_QUANT_H
#include <stdint.h>

#include "dtype.h"
#include "model.h"

typedef enum {
	RL_QUANT_RTN,  /* min-max, round to nearest: the format's reference */
	RL_QUANT_MSE,  /* searches each group's scale and min for the least (weighted) squared error */
} rl_quant_method;

typedef struct {
	uint64_t n;        /* weights */
	size_t bytes;      /* stored size */
	double bpw;        /* bits per weight, scales and mins included */
	double rmse;       /* sqrt(mean (w - dequantized w)^2) */
	double sqnr_db;    /* 10 log10(sum w^2 / sum (w - dequantized w)^2); inf when exact */
} rl_quant_stats;

/* The method named name ("rtn", "mse"), or -1. */
int rl_quant_method_from_name(const char *name);
const char *rl_quant_method_name(rl_quant_method m);

/* One group of n <= 256 weights with per-weight importance imp (NULL: all 1). */
void rl_group_quantize(const float *w, const float *imp, size_t n, int bits, rl_quant_method m,
		       uint16_t *scale16, uint16_t *min16, uint8_t *q);

/* Stores tensor t (any dtype) as dt: *out is allocated (posix_memalign 64, caller
 * frees), *bytes its size. imp (t's columns) weights the error of each input
 * channel, NULL for none. ggml's formats always round as ggml does: its
 * reference quantizers, or for q4_K and q2_K with imp and RL_QUANT_MSE its
 * importance-matrix ones (imp as llama.cpp's imatrix); m does not apply otherwise.
 * Rows run on the worker pool. Fails, naming the tensor and row, on a non-finite
 * weight or, for the group formats, one beyond f16's range (for ggml's, weights
 * whose block scale overflows f16). */
int rl_quantize_tensor(const rl_tensor *t, rl_dtype dt, rl_quant_method m, const float *imp, void **out,
		       size_t *bytes, rl_quant_stats *st);

/* The activations the fused kernels multiply: f32, exact (the default: what
 * distill trains against), or rounded to 8 bits, an option for faster decode:
 * each block of 32 elements of x (counted from the row's start; the last may be
 * shorter) becomes dx * xi with xi = x / dx rounded to nearest even, and the
 * weights' q multiply xi in integers. For the group formats, q4_0 and q8_0,
 * dx = max|x| / 127 over the block. For q4_K and q2_K, dx = D * m so that
 * their kernels can sum integers over a whole 256-block: per 256 elements,
 * with amax its max|x|, D = amax / 4064 (127 * 32) and s = 32 / amax; per
 * block of 32, with a its max|x|, m = min(32, max(1, ceil(a * s))) and
 * xi = rint(x * (s * (127 / m))), all in floats. So |xi| <= 127 and each
 * block's step is at least a / 127 (its own max's) and less than a / 127 + D.
 * The offset of a format with mins (a group's min; q4_K's and q2_K's mins)
 * still multiplies the exact sum of x; q4_0 is d * sum (q - 8) * dx * xi as in
 * ggml. A block (q4_K, q2_K: a 256) holding a non-finite value makes the
 * outputs it meets NaN. */
typedef enum { RL_ACT_F32, RL_ACT_INT8 } rl_act;

/* y (OC) = W (OC rows of IC in group format dt, or a ggml block format whose
 * blocks IC fills) . x, straight from the packed weights: AVX2+FMA when the CPU
 * has it, else portable code; rows on the worker pool. scratch holds
 * rl_qgemv_scratch(IC, 1) floats. -1 when dt has no fused kernel (rl_dtype_fused). */
int rl_qgemv(rl_dtype dt, int OC, int IC, const void *W, const float *x, float *y, float *scratch);
/* N vectors at once (rows of X and Y, strides ldx and ldy), each output bit for
 * bit what rl_qgemv gives for that vector alone. scratch holds
 * rl_qgemv_scratch(IC, N) floats. */
int rl_qgemm_rows(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y,
		  size_t ldy, float *scratch);
size_t rl_qgemv_scratch(int IC, int N);
/* rl_qgemm_rows with the activations act (RL_ACT_INT8: every format with a
 * fused kernel, each vector rounded on its own, so outputs stay independent of
 * N). */
int rl_qgemm_rows_act(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y,
		      size_t ldy, float *scratch, rl_act act);
/* The same product for any stored dtype, each row dequantized once (by the
 * format's to_float) and dotted with every vector by rl_dot_rows_f32: outputs
 * do not depend on N, and batches reuse the dequantized row. */
int rl_dqgemm_rows(rl_dtype dt, int OC, int IC, const void *W, int N, const float *X, size_t ldx, float *Y, size_t ldy);
/* The reference: each row dequantized by the format's to_float, then a
 * double-precision dot. row holds IC floats. */
void rl_qgemv_ref(rl_dtype dt, int OC, int IC, const void *W, const float *x, float *y, float *row);
/* Tests and benchmarks: 0 forces the portable kernels, 1 the AVX2 ones, 2 the
 * AVX-512 ones where there are any (f32 activations on the group formats;
 * AVX2 elsewhere), -1 picks the widest this CPU runs. Returns -1 (and changes
 * nothing) when the CPU lacks what was asked for. */
int rl_qgemv_select(int kernels);

#endif
