/* merge.c: folding an attached LoRA adapter into its model's weights (lora.h). */
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#include "err.h"
#include "lora.h"

int rl_model_merge_adapter(rl_model *m)
{
	rl_adapter *a = m->adapter;
	if (!a) {
		rl_seterr("%s: no adapter to merge", m->origin);
		return -1;
	}
	float scale = (float)(a->alpha / a->rank);
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		rl_tensor *t = &m->tensors[g->tensor];
		size_t n = (size_t)g->OC * (size_t)g->IC, bytes = n * sizeof(float);
		float *w; /* (OC, IC) */
		if (posix_memalign((void **)&w, 64, bytes)) {
			rl_seterr("%s: out of memory", t->name);
			return -1;
		}
		/* deq(W) exactly as the runtime dequantizes it, row by row */
		size_t row_bytes = rl_row_bytes(t->dtype, (uint64_t)g->IC);
		for (int r = 0; r < g->OC; r++)
			rl_dtypes[t->dtype].to_float((const char *)t->data + (size_t)r * row_bytes, w + (size_t)r * g->IC,
						     (size_t)g->IC);
		/* W' (OC, IC) += scale . B (OC, r) . A (r, IC) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, g->IC, a->rank, scale, g->b, a->rank,
			    g->a, g->IC, 1.0f, w, g->IC);
		rl_model_replace_tensor(m, t, RL_F32, w, bytes);
	}
	rl_adapter_free(a);
	free(a);
	m->adapter = NULL;
	return 0;
}
