/* requant.h: storing a model's tensors as a policy says, with the error
 * statistics of each: what qpack writes, and what lora-merge -p re-quantizes
 * a merged model with. One code path, so both tools quantize alike. */
#ifndef RL_REQUANT_H
#define RL_REQUANT_H
#include "importance.h"
#include "model.h"
#include "policy.h"
#include "quant.h"
#include "stream.h"

typedef struct rl_requant {
	rl_policy *policy;
	rl_quant_method method;
	const rl_model *m;          /* the model the tensors belong to (for importance) */
	const rl_importance *imp;   /* per tensor input-channel importance, or NULL */
	/* called for each tensor stored in another dtype than it had, or NULL */
	void (*report)(const rl_tensor *t, rl_dtype dt, const char *quantizer, const rl_quant_stats *st,
		       void *arg);
	void *report_arg;
	/* totals over the 2-D tensors written, for summaries */
	double bytes, weights;      /* all matrices */
	double qbytes, qweights;    /* the blocks' quantized matrices only */
} rl_requant;

/* What chose a tensor's weights when stored as dt: "rtn"/"mse" for our group
 * formats, "ggml" or "ggml-imatrix" for ggml's (see rl_quantize_tensor). */
const char *rl_requant_quantizer(rl_dtype dt, rl_quant_method m, const float *imp);

/* Checks that the policy can store every tensor of m (-1 naming the first it
 * cannot, with a hint); then the policy's targets that matched nothing can be
 * listed with rl_policy_unmatched. */
int rl_requant_check(rl_requant *c, const rl_model *m);

/* For rl_model_write (arg = the rl_requant): writes t as the policy says, its
 * stats map ({bpw, rmse, n, sqnr_db, quantizer}) on the first chunk when it
 * is converted. */
int rl_requant_write_tensor(rl_writer *w, const rl_tensor *t, void *arg);

/* The same in memory: every tensor of m (c->m must be m) is replaced by its
 * stored form; st (m->ntensors) receives each one's statistics (n = 0 for a
 * tensor left as it was). Peak memory is the model plus one tensor. */
int rl_requant_model(rl_requant *c, rl_model *m, rl_quant_stats *st);

/* Packs a tensor message's stats map from st (what qpack writes). */
void rl_requant_pack_stats(msgpack_packer *pk, const rl_quant_stats *st, const char *quantizer, int quantized);

#endif
