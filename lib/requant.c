/* requant.c: storing a model's tensors as a policy says (requant.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "requant.h"

const char *rl_requant_quantizer(rl_dtype dt, rl_quant_method m, const float *imp)
{
	if (rl_dtypes[dt].group)
		return rl_quant_method_name(m);
	return imp && m == RL_QUANT_MSE && (dt == RL_Q4_K || dt == RL_Q2_K) ? "ggml-imatrix" : "ggml";
}

int rl_requant_check(rl_requant *c, const rl_model *m)
{
	for (int i = 0; i < m->ntensors; i++) {
		rl_dtype dt;
		if (rl_policy_dtype(c->policy, &m->tensors[i], &dt))
			return -1;
	}
	return 0;
}

void rl_requant_pack_stats(msgpack_packer *pk, const rl_quant_stats *st, const char *quantizer, int quantized)
{
	int finite = isfinite(st->sqnr_db);
	msgpack_pack_map(pk, 3 + finite + (quantized != 0));
	rl_pack_kv_double(pk, "bpw", st->bpw);
	rl_pack_kv_double(pk, "rmse", st->rmse);
	rl_pack_kv_int(pk, "n", (int64_t)st->n);
	if (finite)
		rl_pack_kv_double(pk, "sqnr_db", st->sqnr_db);
	if (quantized)
		rl_pack_kv_str(pk, "quantizer", quantizer);
}

typedef struct {
	const rl_quant_stats *st;
	const char *quantizer;
	int quantized;
} stats_arg;

static void pack_stats(msgpack_packer *pk, void *arg)
{
	const stats_arg *a = arg;
	rl_requant_pack_stats(pk, a->st, a->quantizer, a->quantized);
}

static const float *importance_of(const rl_requant *c, const rl_tensor *t)
{
	if (c->imp && c->m && t >= c->m->tensors && t < c->m->tensors + c->m->ntensors)
		return c->imp->imp[t - c->m->tensors];
	return NULL;
}

static void count(rl_requant *c, const rl_tensor *t, rl_dtype dt, size_t bytes)
{
	if (t->ndim != 2)
		return;
	double n = (double)t->shape[0] * (double)t->shape[1];
	c->bytes += (double)bytes;
	c->weights += n;
	if (rl_dtype_quantized(dt) && strncmp(t->name, "blk.", 4) == 0) {
		c->qbytes += (double)bytes;
		c->qweights += n;
	}
}

int rl_requant_write_tensor(rl_writer *w, const rl_tensor *t, void *arg)
{
	rl_requant *c = arg;
	rl_dtype dt;
	if (rl_policy_dtype(c->policy, t, &dt))
		return -1;
	if (dt == t->dtype) {
		count(c, t, dt, t->bytes);
		return rl_write_tensor(w, t->name, dt, dt, t->ndim, t->shape, t->data, NULL, NULL);
	}
	void *q;
	size_t bytes;
	rl_quant_stats st;
	const float *imp = importance_of(c, t);
	if (rl_quantize_tensor(t, dt, c->method, imp, &q, &bytes, &st))
		return -1;
	stats_arg sa = { &st, rl_requant_quantizer(dt, c->method, imp), rl_dtype_quantized(dt) };
	int rc = rl_write_tensor(w, t->name, dt, dt, t->ndim, t->shape, q, pack_stats, &sa);
	free(q);
	count(c, t, dt, bytes);
	if (rc == 0 && c->report)
		c->report(t, dt, sa.quantizer, &st, c->report_arg);
	return rc;
}

int rl_requant_model(rl_requant *c, rl_model *m, rl_quant_stats *st)
{
	for (int i = 0; i < m->ntensors; i++) {
		rl_tensor *t = &m->tensors[i];
		rl_dtype dt;
		memset(&st[i], 0, sizeof st[i]);
		if (rl_policy_dtype(c->policy, t, &dt))
			return -1;
		if (dt == t->dtype) {
			count(c, t, dt, t->bytes);
			continue;
		}
		void *q;
		size_t bytes;
		const float *imp = importance_of(c, t);
		if (rl_quantize_tensor(t, dt, c->method, imp, &q, &bytes, &st[i]))
			return -1;
		count(c, t, dt, bytes);
		if (c->report)
			c->report(t, dt, rl_requant_quantizer(dt, c->method, imp), &st[i], c->report_arg);
		rl_model_replace_tensor(m, t, dt, q, bytes);
	}
	return 0;
}
