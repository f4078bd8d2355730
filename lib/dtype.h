/* dtype.h: element types of tensors and the one table of their traits.
 * Storage is row-major; a row is the innermost dimension (the input
 * dimension of a weight matrix, which is the one quantized formats group). */
#ifndef RL_DTYPE_H
#define RL_DTYPE_H
#include <stddef.h>
#include <stdint.h>

typedef enum { RL_F32, RL_F16, RL_BF16, RL_NDTYPES } rl_dtype;

typedef struct {
	const char *name;     /* as written in streams: "f32" */
	double bits;          /* bits per weight, for reports */
	size_t block;         /* elements per block */
	size_t block_bytes;   /* bytes per block */
	/* n elements of one row: to f32, and from f32 (rounding as the format defines) */
	void (*to_float)(const void *restrict src, float *restrict dst, size_t n);
	void (*from_float)(const float *restrict src, void *restrict dst, size_t n);
} rl_dtype_traits;

extern const rl_dtype_traits rl_dtypes[RL_NDTYPES];

/* The dtype named name, or -1. */
int rl_dtype_from_name(const char *name, size_t len);
/* Bytes of a row of ncols elements; 0 when ncols does not fit the format's
 * blocks or the size overflows. */
size_t rl_row_bytes(rl_dtype t, uint64_t ncols);

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

#endif
