/* dtype.h: element types of tensors and the one table of their traits.
 * Storage is row-major; a row is the innermost dimension (the input
 * dimension of a weight matrix, which is the one quantized formats group). */
#ifndef RL_DTYPE_H
#define RL_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Our group formats, b bits in groups of g (see DESIGN.md, "Quantized formats"):
 * per group an f16 scale, an f16 min, then ceil(g*b/8) bytes of q packed LSB-first;
 * w = scale*q + min. A row whose length is not a multiple of g ends with one
 * shorter group. X(bits, group) for each. */
#define RL_GROUP_FORMATS(X)                                                     \
	X(2, 16) X(2, 32) X(2, 64) X(2, 128) X(2, 256)                          \
	X(3, 16) X(3, 32) X(3, 64) X(3, 128) X(3, 256)                          \
	X(4, 16) X(4, 32) X(4, 64) X(4, 128) X(4, 256)                          \
	X(8, 16) X(8, 32) X(8, 64) X(8, 128) X(8, 256)

#define RL_GROUP_ENUM(b, g) RL_Q##b##G##g,
/* then ggml's block formats (dtype_gguf.c), byte for byte as GGUF stores them */
typedef enum {
	RL_F32, RL_F16, RL_BF16, RL_GROUP_FORMATS(RL_GROUP_ENUM) RL_Q4_0, RL_Q8_0, RL_Q4_K, RL_Q2_K, RL_NDTYPES
} rl_dtype;
#undef RL_GROUP_ENUM

/* A fused dequantize-dot of one row of n weights with f32 x; xsum16 holds the
 * sums of x over each 16 elements (the formats with mins use them). */
typedef float (*rl_row_dot_fn)(const void *restrict row, const float *restrict x, const float *restrict xsum16,
			       size_t n);
/* One vector's 8-bit activations (quant.h, RL_ACT_INT8) as a row dot reads
 * them. x is rounded per block of 32 elements, x ~ dx * xi, dx found one of
 * two ways, as the format's traits say (act8_block):
 *   32:  (q4_0, q8_0) dx = max|x| / 127 over the block; bx holds per block the
 *        pair {dx, dx * sum of its xi}.
 *   256: (q4_K, q2_K) dx = D * m: one float D per block of 256 (bx) and an
 *        integer m in 1..32 per block of 32 (xm), so the row dot sums q xi,
 *        times the weights' sub-block scales times m, in integers over a whole
 *        256 and converts to float once (quant.h gives the rounding).
 * xsum16 holds the exact sums of x over each 16 (the formats' mins multiply
 * them). */
typedef struct {
	const int8_t *xi;     /* (n) x / dx rounded to nearest even, natural order */
	const float *bx;      /* act8_block 32: (n / 32) pairs {dx, dx sum xi}; 256: (n / 256) D */
	const int16_t *xm;    /* act8_block 256: (n / 32) m; else unused */
	const float *xsum16;  /* (n / 16) */
} rl_act8;
typedef float (*rl_row_dot8_fn)(const void *restrict row, const rl_act8 *restrict a, size_t n);

typedef struct {
	const char *name;     /* as written in streams: "f32" */
	double bits;          /* bits per weight, for reports */
	size_t block;         /* elements per block */
	size_t block_bytes;   /* bytes per block */
	/* n elements of one row: to f32, and from f32 (rounding as the format defines) */
	void (*to_float)(const void *restrict src, float *restrict dst, size_t n);
	void (*from_float)(const float *restrict src, void *restrict dst, size_t n);
	int qbits, group;     /* bits per q (0 for floats); group size for our group formats, else 0 */
	/* ggml's block formats: the fused dot, portable and AVX2+FMA; NULL for the
	 * others (the group formats' kernels are rl_qgemm_rows') */
	rl_row_dot_fn dot, dot_avx2;
	rl_row_dot8_fn dot8, dot8_avx2; /* the same with 8-bit activations */
	int act8_block;       /* ggml's formats: how dot8's activations are rounded (rl_act8) */
} rl_dtype_traits;

extern const rl_dtype_traits rl_dtypes[RL_NDTYPES];

/* The dtype named name, or -1. */
int rl_dtype_from_name(const char *name, size_t len);
/* Bytes of a row of ncols elements; 0 when ncols does not fit the format's
 * blocks or the size overflows. */
size_t rl_row_bytes(rl_dtype t, uint64_t ncols);
/* 1 for the quantized formats */
static inline int rl_dtype_quantized(rl_dtype t) { return t >= RL_Q2G16 && t < RL_NDTYPES; }
/* 1 when rl_qgemm_rows multiplies straight from the packed weights (decode's path) */
static inline int rl_dtype_fused(rl_dtype t) { return rl_dtypes[t].group || rl_dtypes[t].dot; }

/* ggml's block formats (dtype_gguf.c; layouts there): rows of n weights, n a
 * multiple of the block (32 for q4_0 and q8_0, 256 for q4_K and q2_K).
 * quantize_row rounds exactly as ggml's quantize_row_*_ref, dequantize_row is
 * ggml's dequantize_row_*; the dots are the traits' dot and dot_avx2. */
void rl_quantize_row_q4_0(const float *restrict x, void *restrict dst, size_t n);
void rl_quantize_row_q8_0(const float *restrict x, void *restrict dst, size_t n);
void rl_quantize_row_q4_K(const float *restrict x, void *restrict dst, size_t n);
void rl_quantize_row_q2_K(const float *restrict x, void *restrict dst, size_t n);
void rl_dequantize_row_q4_0(const void *restrict src, float *restrict y, size_t n);
void rl_dequantize_row_q8_0(const void *restrict src, float *restrict y, size_t n);
void rl_dequantize_row_q4_K(const void *restrict src, float *restrict y, size_t n);
void rl_dequantize_row_q2_K(const void *restrict src, float *restrict y, size_t n);
/* ggml's importance-matrix quantizers (quantize_q4_K / quantize_q2_K given
 * quant_weights): imp holds n per-column weights, the mean squared activation
 * of each input channel (llama.cpp's imatrix). */
void rl_quantize_row_q4_K_imp(const float *restrict x, void *restrict dst, size_t n, const float *restrict imp);
void rl_quantize_row_q2_K_imp(const float *restrict x, void *restrict dst, size_t n, const float *restrict imp);
float rl_dot_q4_0(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q8_0(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q4_K(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q2_K(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q4_0_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q8_0_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q4_K_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot_q2_K_avx2(const void *restrict row, const float *restrict x, const float *restrict xsum16, size_t n);
float rl_dot8_q4_0(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q8_0(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q4_K(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q2_K(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q4_0_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q8_0_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q4_K_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n);
float rl_dot8_q2_K_avx2(const void *restrict row, const rl_act8 *restrict a, size_t n);

/* Group formats, one group of n <= g elements at p (the bytes rl_group_bytes says):
 * pack stores scale, min and q[0..n-1]; unpack dequantizes to w (exactly
 * scale*q + min in f32, two roundings, no fused multiply-add). */
size_t rl_group_bytes(int bits, size_t n);
void rl_group_pack(void *p, int bits, size_t n, uint16_t scale16, uint16_t min16, const uint8_t *q);
void rl_group_unpack(const void *p, int bits, size_t n, float *w);
/* The reference quantizer of the format (round to nearest min-max): q for the
 * f16-rounded scale and min, as DESIGN.md defines. Returns the f16 scale and min. */
void rl_group_rtn(const float *w, size_t n, int bits, uint16_t *scale16, uint16_t *min16, uint8_t *q);

/* IEEE half and bfloat16, round to nearest even; NaN stays NaN. */
uint16_t rl_f32_to_f16(float f);
float rl_f16_to_f32(uint16_t h);
uint16_t rl_f32_to_bf16(float f);
float rl_bf16_to_f32(uint16_t h);

/* a*b without overflow: 0 on success, -1 on overflow */
static inline int rl_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

/* Unaligned little-endian loads from packed blocks, without the undefined
 * behaviour of casting a byte pointer (compilers make them one instruction). */
static inline int rl_load_i32(const void *p)
{
	int v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t rl_load_u64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint16_t rl_load_u16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

#endif
