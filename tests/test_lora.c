/* test_lora: an unmerged adapter (lora.h) applied by the forward pass gives
 * the logits of the same weights merged by hand, W + (alpha/r).B.A as an f32
 * model, batched, decoding and batch-invariant; PATH+ADAPTER loads it; bad
 * adapter streams are refused with an error naming what is wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "lora.h"
#include "model.h"
#include "requant.h"
#include "t.h"

static char tmpdir[64];

/* a path in tmpdir, valid for the test's lifetime */
static const char *tmp(const char *name)
{
	static char path[64][128];
	static int k;
	if (k == 64)
		abort();
	snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
	return path[k++];
}

static int batch_logits(const rl_model *m, const int *tokens, int T, int exact, float *out)
{
	rl_forward *f = rl_forward_new(m, T, T);
	rl_seq s = { .ntok = T, .tokens = tokens };
	int rc = !f || rl_forward_set_batch_invariant(f, exact) || rl_forward_run(f, NULL, 1, &s, out);
	rl_forward_free(f);
	return rc ? -1 : 0;
}

static int write_model(const rl_model *m, const char *path)
{
	rl_writer *w = rl_writer_open(path);
	if (!w || rl_model_write(m, w, "test_lora", NULL, NULL) || rl_writer_commit(w))
		return -1;
	return 0;
}

/* How a hand-made adapter stream departs from a good one. */
typedef struct {
	int header_rank;         /* 0: the adapter's */
	const char *extra_target; /* listed in targets */
	int skip_tensor;         /* 1 + index of a tensor message left out */
	const char *content;     /* base content written */
	int b_rows;              /* 0: right */
	int no_end;
} tweak;

static int write_adapter(const rl_adapter *a, const char *path, const tweak *tw)
{
	static const tweak none;
	if (!tw)
		tw = &none;
	rl_writer *w = rl_writer_open(path);
	if (!w)
		return -1;
	msgpack_packer *pk = rl_writer_packer(w);
	rl_pack_header(pk, "adapter", "test_lora", 4);
	rl_pack_kv_int(pk, "rank", tw->header_rank ? tw->header_rank : a->rank);
	rl_pack_kv_double(pk, "alpha", a->alpha);
	rl_pack_str(pk, "targets");
	msgpack_pack_array(pk, (size_t)a->ntargets + (tw->extra_target != NULL));
	for (int k = 0; k < a->ntargets; k++)
		rl_pack_str(pk, a->targets[k].name);
	if (tw->extra_target)
		rl_pack_str(pk, tw->extra_target);
	rl_pack_str(pk, "base");
	msgpack_pack_map(pk, 2);
	rl_pack_kv_str(pk, "content", tw->content ? tw->content : a->base_content);
	rl_pack_kv_str(pk, "source", a->base_source);
	rl_writer_message_done(w);
	int msg = 0;
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		char name[96];
		uint64_t sa[2] = { (uint64_t)a->rank, (uint64_t)g->IC };
		uint64_t sb[2] = { (uint64_t)(tw->b_rows ? tw->b_rows : g->OC), (uint64_t)a->rank };
		snprintf(name, sizeof name, "%s.lora_a", g->name);
		if (++msg != tw->skip_tensor && rl_write_tensor(w, name, RL_F32, RL_F32, 2, sa, g->a, NULL, NULL))
			return -1;
		snprintf(name, sizeof name, "%s.lora_b", g->name);
		if (++msg != tw->skip_tensor && rl_write_tensor(w, name, RL_F32, RL_F32, 2, sb, g->b, NULL, NULL))
			return -1;
	}
	if (!tw->no_end && rl_write_end(w))
		return -1;
	return rl_writer_commit(w);
}

/* whether p lies in the file m maps (not ours to free) */
static int owned(const rl_model *m, const void *p)
{
	return m->mapping && (const char *)p >= (const char *)m->mapping &&
	       (const char *)p < (const char *)m->mapping + m->mapping_size;
}

/* m with each target's W replaced by deq(W) + (alpha/r).B.A in f32, accumulated in double */
static int merge_by_hand(rl_model *m, const rl_adapter *a)
{
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		rl_tensor *t = &m->tensors[g->tensor];
		size_t rb = rl_row_bytes(t->dtype, (uint64_t)g->IC);
		float *f = malloc((size_t)g->OC * g->IC * sizeof(float));
		if (!f)
			return -1;
		for (int o = 0; o < g->OC; o++) {
			rl_dtypes[t->dtype].to_float((const char *)t->data + (size_t)o * rb, f + (size_t)o * g->IC,
						     (size_t)g->IC);
			for (int i = 0; i < g->IC; i++) {
				double d = 0;
				for (int j = 0; j < a->rank; j++)
					d += (double)g->b[(size_t)o * a->rank + j] * g->a[(size_t)j * g->IC + i];
				f[(size_t)o * g->IC + i] = (float)(f[(size_t)o * g->IC + i] + a->alpha / a->rank * d);
			}
		}
		if (!owned(m, t->data))
			free(t->data);
		t->data = f;
		t->dtype = RL_F32;
		t->bytes = (size_t)g->OC * g->IC * sizeof(float);
	}
	return 0;
}

/* q2g32 in place for ffn_gate and ffn_up, as W4/W2-GateUp stores them */
static int quantize_gate_up(rl_model *m)
{
	for (int i = 0; i < m->ntensors; i++) {
		rl_tensor *t = &m->tensors[i];
		if (!strstr(t->name, "ffn_gate") && !strstr(t->name, "ffn_up"))
			continue;
		size_t rb = rl_row_bytes(RL_Q2G32, t->shape[1]);
		void *q = malloc(rb * t->shape[0]);
		if (!q)
			return -1;
		for (uint64_t r = 0; r < t->shape[0]; r++)
			rl_dtypes[RL_Q2G32].from_float((const float *)t->data + r * t->shape[1], (char *)q + r * rb,
						       t->shape[1]);
		if (!owned(m, t->data))
			free(t->data);
		t->data = q;
		t->dtype = RL_Q2G32;
		t->bytes = rb * t->shape[0];
	}
	return 0;
}

static void expect_refused(const rl_model *m, const rl_adapter *a, const char *name, const tweak *tw,
			   const char *needle)
{
	const char *path = tmp("bad.msgpack");
	rl_adapter b;
	if (write_adapter(a, path, tw)) {
		CHECK(0, name, "writing the stream: %s", rl_err());
		return;
	}
	int rc = rl_adapter_read(path, m, 0, &b);
	CHECK(rc == -1 && strstr(rl_err(), needle) != NULL, name, "rc %d, error \"%s\" lacks \"%s\"", rc, rl_err(),
	      needle);
	if (rc == 0)
		rl_adapter_free(&b);
}

int main(void)
{
	const char *sh = getenv("SHARED") ? getenv("SHARED") : "../shared";
	char bin[512];
	snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", sh);
	if (access(bin, R_OK) != 0) {
		t_skip("lora", "no stories260K model");
		return t_done();
	}
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_lora.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	rl_set_threads(1);
	rl_model m;
	if (rl_model_load(bin, NULL, &m) || quantize_gate_up(&m)) {
		CHECK(0, "load", "%s", rl_err());
		return t_done();
	}
	int L = m.cfg.n_layers, V = m.cfg.vocab_size;

	/* targets: the default picks the tensors below 4 bits; patterns use the policy grammar */
	int *idx, n;
	int ok = rl_lora_select(&m, NULL, &idx, &n) == 0 && n == 2 * L &&
		 strcmp(m.tensors[idx[0]].name, "blk.0.ffn_gate.weight") == 0 &&
		 strcmp(m.tensors[idx[1]].name, "blk.0.ffn_up.weight") == 0;
	CHECK(ok, "default_targets", "n %d (want %d): %s", n, 2 * L, rl_err());
	free(idx);
	ok = rl_lora_select(&m, "blk.1-2.attn_q,blk.0.ffn_down", &idx, &n) == 0 && n == 3 &&
	     strcmp(m.tensors[idx[0]].name, "blk.0.ffn_down.weight") == 0;
	CHECK(ok, "pattern_targets", "n %d: %s", n, rl_err());
	free(idx);
	ok = rl_lora_select(&m, "ffn_gate,attn_nothing", &idx, &n) == -1 && strstr(rl_err(), "attn_nothing");
	CHECK(ok, "pattern_unmatched", "error \"%s\"", rl_err());
	ok = rl_lora_select(&m, "token_embd", &idx, &n) == -1 && strstr(rl_err(), "not a linear");
	CHECK(ok, "pattern_not_linear", "error \"%s\"", rl_err());

	/* a rank-4 adapter on the defaults, with B not zero */
	rl_adapter a;
	if (rl_adapter_new(&a, &m, NULL, 4, 8.0)) {
		CHECK(0, "adapter_new", "%s", rl_err());
		return t_done();
	}
	rl_adapter_init_standard(&a, 7);
	for (int k = 0; k < a.ntargets; k++)
		for (int i = 0; i < a.targets[k].OC * a.rank; i++)
			a.targets[k].b[i] = 0.05f * sinf(0.7f * (float)i + (float)k);

	/* the quantized model as a stream; its content is what the adapter records */
	const char *mpath = tmp("q.msgpack"), *apath = tmp("a.msgpack");
	rl_writer *w = rl_writer_open(apath);
	ok = write_model(&m, mpath) == 0 && w && rl_adapter_write(&a, w, "test_lora") == 0 && rl_write_end(w) == 0 &&
	     rl_writer_commit(w) == 0;
	CHECK(ok, "write", "%s", rl_err());

	char arg[600];
	snprintf(arg, sizeof arg, "%s+%s", mpath, apath);
	rl_model ma, mm;
	ok = rl_model_load(arg, NULL, &ma) == 0 && ma.adapter && ma.adapter->ntargets == 2 * L &&
	     memcmp(ma.adapter->params, a.params, a.nparams * sizeof(float)) == 0;
	CHECK(ok, "load_plus_adapter", "%s", rl_err());
	if (!ok)
		return t_done();
	ok = rl_model_load(mpath, NULL, &mm) == 0 && merge_by_hand(&mm, &a) == 0;
	CHECK(ok, "merged", "%s", rl_err());

	enum { T = 24 };
	int tokens[T];
	for (int i = 0; i < T; i++)
		tokens[i] = (i * 37 + 1) % V;
	float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
	float *base = malloc((size_t)T * V * sizeof(float));
	rl_model plain;
	ok = batch_logits(&mm, tokens, T, 0, ref) == 0 && rl_model_load(mpath, NULL, &plain) == 0 &&
	     batch_logits(&plain, tokens, T, 0, base) == 0;
	CHECK(ok, "reference_logits", "%s", rl_err());
	double moved = t_rel_err(base, ref, (size_t)T * V);
	CHECK(moved > 1e-3, "adapter_changes_logits", "the adapter moves the logits by only %.2g", moved);
	double e;
	ok = batch_logits(&ma, tokens, T, 0, got) == 0;
	e = ok ? t_rel_err(got, ref, (size_t)T * V) : 1;
	CHECK(e <= 1e-5, "batched_vs_merged", "relative error %.3g (%s)", e, rl_err());
	ok = t_decode_logits(&ma, tokens, T, got) == 0;
	e = ok ? t_rel_err(got, ref, (size_t)T * V) : 1;
	CHECK(e <= 1e-5, "decode_vs_merged", "relative error %.3g (%s)", e, rl_err());
	/* batch-invariant: a sequence's logits are the same, bit for bit, with another beside it */
	float *two = malloc((size_t)2 * T * V * sizeof(float));
	ok = batch_logits(&ma, tokens, T, 1, got) == 0;
	e = ok ? t_rel_err(got, ref, (size_t)T * V) : 1;
	CHECK(e <= 1e-5, "batch_invariant_vs_merged", "relative error %.3g (%s)", e, rl_err());
	rl_forward *f = rl_forward_new(&ma, 2 * T, T);
	rl_seq pair[2] = { { .ntok = T / 2, .tokens = tokens + 3 }, { .ntok = T, .tokens = tokens } };
	ok = f && rl_forward_set_batch_invariant(f, 1) == 0 && rl_forward_run(f, NULL, 2, pair, two) == 0 &&
	     memcmp(two + (size_t)(T / 2) * V, got, (size_t)T * V * sizeof(float)) == 0;
	CHECK(ok, "batch_invariant_exact", "a sequence's logits change with another in its batch");
	rl_forward_free(f);
	free(two);

	/* lora-merge's merge (merge.c) against the merge by hand */
	rl_model mg;
	ok = rl_model_load(arg, NULL, &mg) == 0 && rl_model_merge_adapter(&mg) == 0 && !mg.adapter &&
	     mg.tensors[rl_model_tensor_index(&mg, "blk.0.ffn_gate.weight")].dtype == RL_F32 &&
	     strcmp(mg.source, ma.source) == 0 && batch_logits(&mg, tokens, T, 0, got) == 0;
	e = ok ? t_rel_err(got, ref, (size_t)T * V) : 1;
	CHECK(ok && e <= 1e-5, "merge_adapter", "relative error %.3g (%s)", e, rl_err());
	/* re-quantizing in memory stores exactly what the stream writer stores */
	rl_requant rq = { .policy = rl_policy_parse("q8"), .method = RL_QUANT_MSE, .m = &mg };
	rl_quant_stats *st = calloc((size_t)mg.ntensors, sizeof *st);
	const char *qpath = tmp("requant.msgpack");
	w = rl_writer_open(qpath);
	ok = rq.policy && st && w && rl_model_write(&mg, w, "test_lora", rl_requant_write_tensor, &rq) == 0 &&
	     rl_writer_commit(w) == 0 && rl_requant_model(&rq, &mg, st) == 0;
	rl_model back;
	int same = ok && rl_model_load(qpath, NULL, &back) == 0;
	for (int i = 0; same && i < mg.ntensors; i++)
		same = back.tensors[i].dtype == mg.tensors[i].dtype && back.tensors[i].bytes == mg.tensors[i].bytes &&
		       memcmp(back.tensors[i].data, mg.tensors[i].data, mg.tensors[i].bytes) == 0;
	int gate = rl_model_tensor_index(&mg, "blk.0.ffn_gate.weight");
	CHECK(same && mg.tensors[gate].dtype == RL_Q8G32 && st[gate].n > 0 && st[gate].sqnr_db > 20, "requant_model",
	      "in-memory re-quantization differs from the written one (%s)", rl_err());
	if (same)
		rl_model_free(&back);
	free(st);
	rl_policy_free(rq.policy);
	rl_model_free(&mg);

	/* PATH+ADAPTER is not split when the whole argument is a file */
	FILE *fp = fopen(tmp("x+y"), "w");
	if (fp)
		fclose(fp);
	ok = rl_model_arg_split(tmp("x+y")) == -1 && rl_model_arg_split(tmp("nothere+y")) == (int)strlen(tmpdir) + 8;
	CHECK(ok, "arg_split", "a file with + in its name or a missing one split wrongly");

	/* bad adapter streams */
	expect_refused(&m, &a, "bad_rank", &(tweak){ .header_rank = 3 }, "rank 3");
	expect_refused(&m, &a, "bad_target", &(tweak){ .extra_target = "blk.0.ffn_nope.weight" }, "blk.0.ffn_nope.weight");
	expect_refused(&m, &a, "missing_tensor", &(tweak){ .skip_tensor = 4 }, "blk.0.ffn_up.weight.lora_b is missing");
	expect_refused(&m, &a, "bad_shape", &(tweak){ .b_rows = 7 }, "shape [7, 4]");
	expect_refused(&m, &a, "cut_stream", &(tweak){ .no_end = 1 }, "bad.msgpack");
	expect_refused(&m, &a, "other_base",
		       &(tweak){ .content = "0000000000000000000000000000000000000000000000000000000000000000" },
		       "field base: trained on the model of content 000000000000");
	/* an adapter for the f32 model refused by the quantized one, through PATH+ADAPTER */
	rl_model f32;
	rl_adapter af;
	const char *fpath = tmp("f.msgpack");
	ok = rl_model_load(bin, NULL, &f32) == 0 && rl_adapter_new(&af, &f32, "ffn_gate", 2, 2.0) == 0 &&
	     write_adapter(&af, fpath, NULL) == 0;
	snprintf(arg, sizeof arg, "%s+%s", mpath, fpath);
	rl_model bad;
	ok = ok && rl_model_load(arg, NULL, &bad) == -1 && strstr(rl_err(), "field base") && strstr(rl_err(), "q.msgpack");
	CHECK(ok, "mismatched_base", "error \"%s\"", rl_err());
	rl_adapter_free(&af);
	rl_model_free(&f32);
	/* a model stream is not an adapter */
	snprintf(arg, sizeof arg, "%s+%s", mpath, mpath);
	ok = rl_model_load(arg, NULL, &bad) == -1 && strstr(rl_err(), "not an adapter stream");
	CHECK(ok, "not_adapter", "error \"%s\"", rl_err());

	free(ref);
	free(got);
	free(base);
	rl_adapter_free(&a);
	rl_model_free(&m);
	rl_model_free(&ma);
	rl_model_free(&mm);
	rl_model_free(&plain);
	const char *names[] = { "q.msgpack", "a.msgpack", "bad.msgpack", "f.msgpack", "requant.msgpack", "x+y" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlink(tmp(names[i]));
	rmdir(tmpdir);
	return t_done();
}
