/* roofline.c: bytes and FLOPs per token of a model under a policy, and the
 * speed a machine's limits (published, given, or measured here) allow. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "measure.h"
#include "parallel.h"
#include "quant.h"
#include "roofline.h"

const char *const rl_roofline_class_names[RL_RC_N] = {
	"token_embd", "attn_qkv", "attn_output", "ffn_gate_up", "ffn_down", "output", "attention", "lora",
};

/* Peak figures as published (man/man1/roofline.1 cites each source). FLOP/s
 * are FP32 without tensor cores (our runtime computes in f32), except
 * h100-bf16, for runtimes whose prefill and batched decode use tensor cores. */
const rl_hw rl_hw_table[] = {
	{ .name = "h100-sxm", .about = "NVIDIA H100 SXM5 80GB: 3.35 TB/s HBM3, 67 TFLOP/s FP32",
	  .bw = 3350e9, .flops = 67e12 },
	{ .name = "h100-bf16", .about = "NVIDIA H100 SXM5 80GB with tensor cores: 3.35 TB/s, 989.5 TFLOP/s dense BF16",
	  .bw = 3350e9, .flops = 989.5e12 },
	{ .name = "a100-80gb", .about = "NVIDIA A100 80GB SXM: 2039 GB/s HBM2e, 19.5 TFLOP/s FP32",
	  .bw = 2039e9, .flops = 19.5e12 },
	{ .name = "rtx4090", .about = "NVIDIA GeForce RTX 4090: 1008 GB/s GDDR6X, 82.6 TFLOP/s FP32",
	  .bw = 1008e9, .flops = 82.6e12 },
	{ .name = "m2", .about = "Apple M2 (laptop SoC): 100 GB/s unified memory, 3.6 TFLOP/s FP32 (10-core GPU)",
	  .bw = 100e9, .flops = 3.6e12 },
	{ .name = "7950x", .about = "AMD Ryzen 9 7950X (desktop CPU): 83.2 GB/s (2 x DDR5-5200), "
						       "2.3 TFLOP/s FP32 (16 cores x 32 x 4.5 GHz)",
	  .bw = 83.2e9, .flops = 2.304e12 },
};
const int rl_hw_count = (int)(sizeof rl_hw_table / sizeof rl_hw_table[0]);

/* one figure of custom:..., "key=value": positive, finite, within [min, max] */
static int parse_figure(const char *spec, const char *key, const char *text, size_t len, double min, double max,
			double *v)
{
	char buf[64];
	if (len == 0 || len >= sizeof buf) {
		rl_seterr("--hw %s: %s needs a number", spec, key);
		return -1;
	}
	memcpy(buf, text, len);
	buf[len] = 0;
	char *end;
	double x = strtod(buf, &end);
	if (*end || end == buf || !isfinite(x) || x <= 0) {
		rl_seterr("--hw %s: %s=%s is not a positive number", spec, key, buf);
		return -1;
	}
	if (x > max || x < min) {
		rl_seterr("--hw %s: %s=%s is absurd (not between %g and %g)", spec, key, buf, min, max);
		return -1;
	}
	*v = x;
	return 0;
}

int rl_hw_parse(const char *spec, rl_hw *hw)
{
	memset(hw, 0, sizeof *hw);
	if (strncmp(spec, "custom:", 7) != 0) {
		for (int i = 0; i < rl_hw_count; i++)
			if (strcmp(spec, rl_hw_table[i].name) == 0) {
				*hw = rl_hw_table[i];
				return 0;
			}
		char names[256] = "";
		for (int i = 0; i < rl_hw_count; i++) {
			size_t used = strlen(names), len = strlen(rl_hw_table[i].name);
			if (used + len + 3 > sizeof names)
				break;
			if (i)
				memcpy(names + used, ", ", 2), used += 2;
			memcpy(names + used, rl_hw_table[i].name, len + 1);
		}
		rl_seterr("--hw %s: unknown device (known: %s, or custom:bw=GB/s,flops=TFLOP/s)", spec, names);
		return -1;
	}
	double bw = 0, tf = 0;
	for (const char *p = spec + 7; *p;) {
		const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (!eq) {
			rl_seterr("--hw %s: \"%.*s\" is not key=value", spec, (int)(end - p), p);
			return -1;
		}
		size_t klen = (size_t)(eq - p);
		if (klen == 2 && strncmp(p, "bw", 2) == 0) {
			if (parse_figure(spec, "bw", eq + 1, (size_t)(end - eq - 1), 1e-3, 1e6, &bw))
				return -1;
		} else if (klen == 5 && strncmp(p, "flops", 5) == 0) {
			if (parse_figure(spec, "flops", eq + 1, (size_t)(end - eq - 1), 1e-6, 1e6, &tf))
				return -1;
		} else {
			rl_seterr("--hw %s: unknown key \"%.*s\" (bw in GB/s, flops in TFLOP/s)", spec, (int)klen, p);
			return -1;
		}
		p = comma ? comma + 1 : end;
	}
	if (bw == 0 || tf == 0) {
		rl_seterr("--hw %s: needs both bw=GB/s and flops=TFLOP/s", spec);
		return -1;
	}
	snprintf(hw->name, sizeof hw->name, "custom");
	hw->about = "given on the command line";
	hw->bw = bw * 1e9;
	hw->flops = tf * 1e12;
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds of one product of shape sh as decode runs it: one vector, rows on
 * the pool, each call on the next of two or more copies of the matrix, which
 * together span about `bytes` (far beyond the caches), so that the weights
 * come from memory as each layer's own do. A matrix larger than half of that
 * is timed on a part of its rows and scaled: read again after less than
 * some 500 MB, a matrix ran faster than in decode (Qwen3-1.7B's classifier,
 * 311 MB of q8g32, by about a fifth), as if the last level cache kept part of
 * it. The rows repeat 64 distinct ones (their values do not change the
 * speed). Median of 5 passes after one warm-up. */
static double product_time(rl_roofline_shape sh, size_t bytes)
{
	enum { DISTINCT = 64 };
	rl_dtype dt = (rl_dtype)sh.dt;
	int IC = sh.ic, OC = sh.oc;
	size_t rb = rl_row_bytes(dt, IC);
	if (rb * (size_t)OC > bytes / 2 && bytes / 2 / rb >= DISTINCT)
		OC = (int)(bytes / 2 / rb);
	size_t mb = rb * (size_t)OC;
	int copies = mb < bytes / 2 ? (int)(bytes / mb) : 2;
	float *row = malloc(IC * sizeof(float)), *y = malloc((size_t)OC * sizeof(float));
	/* x and the scratch 64-byte aligned, as forward.c allocates them: the f32
	 * kernels run slower on loads of x that split cache lines (2 bits: ~8%) */
	void *W = NULL, *x = NULL, *scratch = NULL;
	double seconds = -1, v[5];
	if (!row || !y || posix_memalign(&x, 64, IC * sizeof(float)) ||
	    posix_memalign(&scratch, 64, rl_qgemv_scratch(IC, 1) * sizeof(float)) ||
	    posix_memalign(&W, 64, mb * (size_t)copies)) {
		W = NULL;
		rl_seterr("kernel time of %s: out of memory for %zu bytes", rl_dtypes[dt].name, mb * (size_t)copies);
		goto done;
	}
	for (int i = 0; i < IC; i++) {
		((float *)x)[i] = (float)((i * 37) % 101 - 50) / 50.0f;
		row[i] = (float)((i * 53) % 97 - 48) / 480.0f;
	}
	for (int r = 0; r < DISTINCT && r < OC; r++) {
		row[r % IC] += 0.001f;
		rl_dtypes[dt].from_float(row, (char *)W + (size_t)r * rb, IC);
	}
	for (int r = DISTINCT; r < OC; r++)
		memcpy((char *)W + (size_t)r * rb, (char *)W + (size_t)(r % DISTINCT) * rb, rb);
	for (int c = 1; c < copies; c++)
		memcpy((char *)W + (size_t)c * mb, W, mb);
	for (int k = -1; k < 5; k++) {
		double t0 = now();
		for (int c = 0; c < copies; c++) {
			const void *Wc = (const char *)W + (size_t)c * mb;
			if (dt == RL_F32)
				rl_gemm_rows_f32(OC, IC, Wc, 1, x, IC, y, (size_t)OC);
			else if (rl_dtype_fused(dt))
				rl_qgemm_rows(dt, OC, IC, Wc, 1, x, IC, y, (size_t)OC, scratch);
			else
				rl_dqgemm_rows(dt, OC, IC, Wc, 1, x, IC, y, (size_t)OC);
		}
		double t = (now() - t0) / copies;
		if (k >= 0)
			v[k] = (t > 0 ? t : 1e-9) * sh.oc / OC;
	}
	seconds = rl_median(v, 5);
done:
	free(x);
	free(row);
	free(y);
	free(scratch);
	free(W);
	return seconds;
}

static int same_shape(rl_roofline_shape a, rl_roofline_shape b)
{
	return a.dt == b.dt && a.oc == b.oc && a.ic == b.ic;
}

double rl_hw_product_time(const rl_hw *hw, rl_roofline_shape s)
{
	for (int i = 0; i < hw->nkernels; i++)
		if (same_shape(hw->kernels[i].s, s))
			return hw->kernels[i].seconds;
	return 0;
}

/* Measures shape s unless hw has it already. */
static int add_kernel(rl_hw *hw, rl_roofline_shape s, size_t bytes)
{
	if (rl_hw_product_time(hw, s) > 0)
		return 0;
	if (hw->nkernels == RL_HW_KERNELS) {
		rl_seterr("kernel times: more than %d product shapes", RL_HW_KERNELS);
		return -1;
	}
	rl_kernel_time *kt = &hw->kernels[hw->nkernels];
	if ((kt->seconds = product_time(s, bytes)) <= 0)
		return -1;
	kt->s = s;
	hw->nkernels++;
	return 0;
}

int rl_roofline_measure(rl_hw *hw, int threads, size_t bytes, const rl_roofline_weights *const *w, int nw)
{
	memset(hw, 0, sizeof *hw);
	snprintf(hw->name, sizeof hw->name, "this host (%d thread%s)", threads, threads == 1 ? "" : "s");
	hw->about = "measured here: read bandwidth, sgemm, our decode kernels";
	hw->measured = 1;
	double bw = rl_measure_read_bandwidth(bytes, 5, threads);
	double bw1 = threads == 1 ? bw : rl_measure_read_bandwidth(bytes, 5, 1);
	double gf = rl_measure_sgemm_gflops(1024, 5);
	if (bw <= 0 || bw1 <= 0 || gf <= 0)
		return -1;
	hw->bw = bw * 1e9;
	hw->bw1 = bw1 * 1e9;
	hw->flops = gf * 1e9;
	/* the embedding's rows are read, not multiplied */
	for (int i = 0; i < nw; i++)
		for (int k = 0; k < RL_RC_N; k++)
			for (int j = 0; k != RL_RC_EMBD && j < w[i]->nshapes[k]; j++)
				if (add_kernel(hw, w[i]->shapes[k][j], bytes))
					return -1;
	return 0;
}

/* The class of a tensor by its name; -1 for those no token's time depends on (norms). */
static int class_of(const char *name)
{
	if (strcmp(name, "token_embd.weight") == 0)
		return RL_RC_EMBD;
	if (strcmp(name, "output.weight") == 0)
		return RL_RC_OUTPUT;
	const char *k = name;
	if (strncmp(k, "blk.", 4) == 0 && (k = strchr(k + 4, '.')))
		k++;
	else
		return -1;
	if (!strncmp(k, "attn_q.", 7) || !strncmp(k, "attn_k.", 7) || !strncmp(k, "attn_v.", 7))
		return RL_RC_QKV;
	if (!strncmp(k, "attn_output.", 12))
		return RL_RC_ATTN_OUT;
	if (!strncmp(k, "ffn_gate.", 9) || !strncmp(k, "ffn_up.", 7))
		return RL_RC_GATE_UP;
	if (!strncmp(k, "ffn_down.", 9))
		return RL_RC_DOWN;
	return -1;
}

/* one more product of OC rows of IC in class k, format dt */
static int add_product(rl_roofline_weights *w, int k, rl_dtype dt, uint64_t OC, uint64_t IC)
{
	rl_roofline_shape s = { (int)dt, (int)OC, (int)IC };
	int j = 0;
	while (j < w->nshapes[k] && !same_shape(w->shapes[k][j], s))
		j++;
	if (j == w->nshapes[k]) {
		if (j == RL_CLASS_SHAPES) {
			rl_seterr("roofline: more than %d formats and shapes of %s matrices", RL_CLASS_SHAPES,
				  rl_roofline_class_names[k]);
			return -1;
		}
		w->shapes[k][j] = s;
		w->nshapes[k]++;
	}
	w->products[k][j]++;
	return 0;
}

int rl_roofline_tally(const rl_model *m, rl_policy *policy, int lora_rank, int kv_bytes, rl_roofline_weights *w)
{
	memset(w, 0, sizeof *w);
	const rl_config *c = &m->cfg;
	if (lora_rank < 0 || lora_rank > 65536 || kv_bytes < 1 || kv_bytes > 8) {
		rl_seterr("roofline: LoRA rank %d or KV element of %d bytes out of range", lora_rank, kv_bytes);
		return -1;
	}
	w->n_layers = c->n_layers;
	w->n_heads = c->n_heads;
	w->head_dim = c->head_dim;
	w->kv_dim = c->n_kv_heads * c->head_dim;
	w->lora_rank = lora_rank;
	w->kv_bytes = kv_bytes;
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		rl_dtype dt = t->dtype;
		if (policy && rl_policy_dtype(policy, t, &dt))
			return -1;
		uint64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
		if (t->ndim == 1)
			rows = 1;
		size_t rb = rl_row_bytes(dt, cols);
		if (rb == 0) {
			rl_seterr("tensor %s: row length %llu does not fit %s", t->name, (unsigned long long)cols,
				  rl_dtypes[dt].name);
			return -1;
		}
		double bytes = (double)rb * (double)rows, n = (double)rows * (double)cols;
		w->stored_bytes += bytes;
		int k = class_of(t->name);
		if (k < 0)
			continue;
		if (k == RL_RC_EMBD) {
			/* a token reads its own row; the classifier, when tied, the whole matrix */
			w->weights[k][dt] += (double)cols;
			w->bytes[k][dt] += (double)rb;
			if (t == m->output) {
				w->weights[RL_RC_OUTPUT][dt] += n;
				w->bytes[RL_RC_OUTPUT][dt] += bytes;
				if (add_product(w, RL_RC_OUTPUT, dt, rows, cols))
					return -1;
			}
			continue;
		}
		w->weights[k][dt] += n;
		w->bytes[k][dt] += bytes;
		if (t->ndim == 2 && add_product(w, k, dt, rows, cols))
			return -1;
		int qbits = rl_dtypes[dt].qbits;
		if (lora_rank > 0 && t->ndim == 2 && k != RL_RC_OUTPUT && qbits > 0 && qbits < 4) {
			double a = (double)lora_rank * ((double)rows + (double)cols);
			w->weights[RL_RC_LORA][RL_F32] += a;
			w->bytes[RL_RC_LORA][RL_F32] += 4 * a;
			/* A (r, IC), then B (OC, r) */
			if (add_product(w, RL_RC_LORA, RL_F32, (uint64_t)lora_rank, cols) ||
			    add_product(w, RL_RC_LORA, RL_F32, rows, (uint64_t)lora_rank))
				return -1;
		}
	}
	return 0;
}

/* the longest of the memory, compute and kernel times, and which it was */
static double max3(double a, double b, double c, rl_roofline_bound *bound)
{
	*bound = RL_BOUND_MEMORY;
	double m = a;
	if (b > m) {
		m = b;
		*bound = RL_BOUND_COMPUTE;
	}
	if (c > m) {
		m = c;
		*bound = RL_BOUND_KERNEL;
	}
	return m;
}

int rl_roofline_decode(const rl_roofline_weights *w, const rl_hw *hw, int ctx, int batch, rl_roofline_step *s)
{
	memset(s, 0, sizeof *s);
	if (ctx < 0 || batch < 1 || !(hw->bw > 0) || !(hw->flops > 0)) {
		rl_seterr("roofline: context %d, batch %d or hardware figures out of range", ctx, batch);
		return -1;
	}
	double B = batch;
	for (int k = 0; k < RL_RC_N; k++) {
		rl_roofline_cost *cc = &s->cls[k];
		if (k == RL_RC_ATTENTION) {
			/* K and V of ctx + 1 positions read, the new one's written, each layer */
			double kv = 2.0 * w->n_layers * w->kv_dim * (double)w->kv_bytes;
			cc->bytes = kv * ((double)ctx + 2);
			cc->flops = 4.0 * w->n_layers * w->n_heads * w->head_dim * ((double)ctx + 1);
			double bw = hw->measured && batch == 1 && hw->bw1 > 0 ? hw->bw1 : hw->bw;
			cc->time = max3(cc->bytes / bw, cc->flops / hw->flops, 0, &cc->bound);
			continue;
		}
		double bytes = 0, n = 0, kernel = 0;
		for (int dt = 0; dt < RL_NDTYPES; dt++) {
			bytes += w->bytes[k][dt];
			n += w->weights[k][dt];
		}
		/* a batch's vectors taken one by one, as the measured kernels take one */
		for (int j = 0; j < w->nshapes[k]; j++)
			kernel += B * w->products[k][j] * rl_hw_product_time(hw, w->shapes[k][j]);
		if (k == RL_RC_EMBD) {
			/* each token its own row, dequantized: no multiply-adds */
			cc->bytes = bytes;
			cc->time = bytes / hw->bw;
			continue;
		}
		/* one step reads the weights once for the batch */
		cc->bytes = bytes / B;
		cc->flops = 2.0 * n;
		cc->time = max3(bytes / hw->bw, 2.0 * n * B / hw->flops, kernel, &cc->bound) / B;
	}
	for (int k = 0; k < RL_RC_N; k++) {
		s->bytes += s->cls[k].bytes;
		s->flops += s->cls[k].flops;
		s->time += s->cls[k].time;
	}
	s->tokens_per_s = 1.0 / s->time;
	return 0;
}

int rl_roofline_prefill(const rl_roofline_weights *w, const rl_hw *hw, int ntok, rl_roofline_step *s)
{
	memset(s, 0, sizeof *s);
	if (ntok < 1 || !(hw->bw > 0) || !(hw->flops > 0)) {
		rl_seterr("roofline: prefill of %d tokens or hardware figures out of range", ntok);
		return -1;
	}
	double T = ntok;
	for (int k = 0; k < RL_RC_N; k++) {
		rl_roofline_cost *cc = &s->cls[k];
		double bytes = 0, n = 0, time;
		for (int dt = 0; dt < RL_NDTYPES; dt++) {
			bytes += w->bytes[k][dt];
			n += w->weights[k][dt];
		}
		if (k == RL_RC_ATTENTION) {
			/* K and V of every token written once and read back once; causal scores */
			double kv = 2.0 * w->n_layers * w->kv_dim * (double)w->kv_bytes;
			bytes = 2.0 * kv * T;
			double flops = 4.0 * w->n_layers * w->n_heads * w->head_dim * T * (T + 1) / 2;
			time = max3(bytes / hw->bw, flops / hw->flops, 0, &cc->bound);
			cc->bytes = bytes / T;
			cc->flops = flops / T;
		} else if (k == RL_RC_EMBD) {
			time = T * bytes / hw->bw;
			cc->bytes = bytes;
		} else {
			time = max3(bytes / hw->bw, 2.0 * n * T / hw->flops, 0, &cc->bound);
			cc->bytes = bytes / T;
			cc->flops = 2.0 * n;
		}
		cc->time = time / T;
		s->bytes += cc->bytes;
		s->flops += cc->flops;
		s->time += cc->time;
	}
	s->tokens_per_s = 1.0 / s->time;
	return 0;
}
