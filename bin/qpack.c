/* qpack: imports a model into a model stream, storing its tensors as a policy says. */
#include <err.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "model.h"
#include "tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qpack [-p POLICY] [-o FILE] [-t N] [--tokenizer FILE] MODEL\n"
		"       qpack --random CONFIG.json [--seed S] [-p POLICY] [-o FILE]\n"
		"       qpack -p help\n"
		"MODEL is a model stream (- for stdin) or a llama2.c checkpoint.\n"
		"Writes a model stream to FILE (atomically) or stdout.\n");
}

static void policy_help(void)
{
	printf("policies (this version stores weights unquantized):\n"
	       "  f32    every tensor in f32 (the default)\n"
	       "  f16    weight matrices in IEEE half; norms and biases stay f32\n"
	       "  bf16   weight matrices in bfloat16; norms and biases stay f32\n");
}

static rl_dtype policy_dtype(const rl_tensor *t, void *arg)
{
	rl_dtype d = *(rl_dtype *)arg;
	return t->ndim == 2 ? d : RL_F32;
}

int main(int argc, char **argv)
{
	rl_tool_init();
	const char *policy = "f32", *out = NULL, *random_config = NULL;
	rl_load_opts opts = { 0 };
	unsigned long long seed = 1;
	int threads = 0;
	static const struct option longopts[] = {
		{ "policy", required_argument, NULL, 'p' }, { "output", required_argument, NULL, 'o' },
		{ "tokenizer", required_argument, NULL, 'T' }, { "random", required_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 'S' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "p:o:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': policy = optarg; break;
		case 'o': out = optarg; break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'T': opts.tokenizer = optarg; break;
		case 'R': random_config = optarg; break;
		case 'S': {
			char *end;
			seed = strtoull(optarg, &end, 10);
			if (*optarg == 0 || *end)
				errx(2, "--seed %s: not a non-negative integer", optarg);
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (strcmp(policy, "help") == 0) {
		policy_help();
		return 0;
	}
	int dt = rl_dtype_from_name(policy, strlen(policy));
	if (dt < 0)
		errx(2, "-p %s: unknown policy (qpack -p help lists them)", policy);
	rl_dtype dtype = (rl_dtype)dt;
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
	rl_writer *w = rl_writer_open(out);
	if (!w)
		errx(1, "%s", rl_err());
	char producer[64];
	snprintf(producer, sizeof producer, "qpack %s", RL_VERSION);
	if (rl_model_write(&m, w, producer, policy_dtype, &dtype)) {
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
	rl_model_free(&m);
	return 0;
}
