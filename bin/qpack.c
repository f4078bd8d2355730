/* qpack: imports a model into a model stream, storing its tensors as a policy says. */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "importance.h"
#include "model.h"
#include "policy.h"
#include "quant.h"
#include "requant.h"
#include "tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qpack [-p POLICY] [-q rtn|mse] [--importance SAMPLES] [-o FILE] [-t N] [--tokenizer FILE] MODEL\n"
		"       qpack --random CONFIG.json [--seed S] [-p POLICY] [-o FILE]\n"
		"       qpack -p help\n"
		"MODEL is a model stream (- for stdin) or a llama2.c checkpoint.\n"
		"Writes a model stream to FILE (atomically) or stdout. The default policy is\n"
		"w4w2 (4-bit, ffn_gate and ffn_up 2-bit); -p f32 keeps full precision.\n");
}

static void report(const rl_tensor *t, rl_dtype dt, const char *quantizer, const rl_quant_stats *st, void *arg)
{
	(void)arg;
	fprintf(stderr, "qpack: %-28s %-6s %-4s %5.2f bpw  rmse %.3g  sqnr %.1f dB\n", t->name, rl_dtypes[dt].name,
		rl_dtype_quantized(dt) ? quantizer : "   ", st->bpw, st->rmse, st->sqnr_db);
}

int main(int argc, char **argv)
{
	rl_tool_init();
	const char *policy = RL_POLICY_DEFAULT, *out = NULL, *random_config = NULL, *method = "mse";
	const char *importance = NULL;
	rl_load_opts opts = { 0 };
	unsigned long long seed = 1;
	int threads = 0;
	static const struct option longopts[] = {
		{ "policy", required_argument, NULL, 'p' }, { "output", required_argument, NULL, 'o' },
		{ "tokenizer", required_argument, NULL, 'T' }, { "random", required_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 'S' }, { "help", no_argument, NULL, 'h' },
		{ "quantizer", required_argument, NULL, 'q' }, { "importance", required_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "p:q:o:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': policy = optarg; break;
		case 'q': method = optarg; break;
		case 'o': out = optarg; break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'T': opts.tokenizer = optarg; break;
		case 'R': random_config = optarg; break;
		case 'I': importance = optarg; break;
		case 'S':
			if (rl_parse_seed(optarg, &seed))
				errx(2, "--seed %s: not a non-negative integer", optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (strcmp(policy, "help") == 0) {
		fputs(rl_policy_help(), stdout);
		return 0;
	}
	rl_requant ctx = { 0 };
	ctx.report = report;
	int qm = rl_quant_method_from_name(method);
	if (qm < 0)
		errx(1, "-q %s: unknown quantizer (rtn or mse)", method);
	ctx.method = (rl_quant_method)qm;
	if (!(ctx.policy = rl_policy_parse(policy)))
		errx(1, "-p: %s", rl_err());
	if ((random_config != NULL) == (optind < argc) || argc - optind > 1) {
		usage(stderr);
		return 2;
	}
	if (!out && isatty(1))
		errx(2, "refusing to write a binary stream to a terminal: use -o FILE or a pipe");
	rl_set_threads(threads);
	rl_model m;
	if (random_config) {
		rl_config cfg;
		char arch[16];
		if (rl_config_from_json(random_config, &cfg, arch) || rl_model_random(&cfg, arch, seed, &m))
			errx(1, "%s", rl_err());
	} else if (rl_model_load(argv[optind], &opts, &m)) {
		errx(1, "%s", rl_err());
	}
	if (m.adapter) /* a stream holds no adapter: writing the base alone would drop it silently */
		errx(1, "%s: carries an adapter; merge it first (lora-merge) or give the model alone", argv[optind]);
	/* every tensor's format is checked before any work, and targets that name nothing are said */
	if (rl_requant_check(&ctx, &m))
		errx(1, "-p %s: %s", policy, rl_err());
	for (int i = 0; rl_policy_unmatched(ctx.policy, i); i++)
		warnx("-p %s: warning: \"%s\" matches no tensor of this model", policy, rl_policy_unmatched(ctx.policy, i));
	rl_importance imp;
	ctx.m = &m;
	if (importance) {
		if (ctx.method == RL_QUANT_RTN)
			warnx("--importance: warning: the rtn quantizer does not use it (-q mse does)");
		if (rl_importance_collect(&m, importance, 0, &imp, NULL, NULL))
			errx(1, "--importance: %s", rl_err());
		ctx.imp = &imp;
		fprintf(stderr, "qpack: importance from %llu samples, %llu tokens of %s\n",
			(unsigned long long)imp.nsamples, (unsigned long long)imp.ntokens, importance);
	}
	rl_writer *w = rl_writer_open(out);
	if (!w)
		errx(1, "%s", rl_err());
	char producer[64];
	snprintf(producer, sizeof producer, "qpack %s", RL_VERSION);
	if (rl_model_write(&m, w, producer, rl_requant_write_tensor, &ctx)) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", rl_err());
		rl_writer_abort(w);
		errx(1, "%s: %s", out ? out : "<stdout>", msg);
	}
	if (rl_writer_commit(w))
		errx(1, "%s", rl_err());
	size_t params = 0;
	for (int i = 0; i < m.ntensors; i++)
		params += m.tensors[i].shape[0] * (m.tensors[i].ndim > 1 ? m.tensors[i].shape[1] : 1);
	fprintf(stderr, "qpack: %s: %s, %d layers, dim %d, vocab %d, %.3g M parameters -> %s (%s)\n",
		m.origin, m.arch, m.cfg.n_layers, m.cfg.dim, m.cfg.vocab_size, params / 1e6,
		out ? out : "stdout", policy);
	if (ctx.weights > 0)
		fprintf(stderr, "qpack: weight matrices %.3f bpw%s", 8 * ctx.bytes / ctx.weights,
			ctx.qweights > 0 ? "" : "\n");
	if (ctx.qweights > 0)
		fprintf(stderr, "; the blocks' quantized ones %.3f bpw (%s)\n", 8 * ctx.qbytes / ctx.qweights,
			rl_quant_method_name(ctx.method));
	if (ctx.imp)
		rl_importance_free(&imp);
	rl_policy_free(ctx.policy);
	rl_model_free(&m);
	return 0;
}
