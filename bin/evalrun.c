/* evalrun: measures models on tasks; this version scores text perplexity. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "eval.h"
#include "json.h"
#include "model.h"
#include "tool.h"

typedef struct {
	char model[512], task[512], metric[32];
	double value, stderr_;
	size_t n;
} result;

static result *results;
static size_t nresults;

static void usage(FILE *f)
{
	fprintf(f, "usage: evalrun --task ppl:FILE [--task ...] [--json] [--ctx N] [-t N] [--tokenizer FILE] MODEL...\n"
		   "Scores each MODEL on each task; a table on stdout (--json: a JSON array).\n");
}

static void add_result(const char *model, const char *task, const char *metric, double v, double se, size_t n)
{
	result *r = realloc(results, (nresults + 1) * sizeof *r);
	if (!r)
		errx(1, "out of memory");
	results = r;
	r = &results[nresults++];
	snprintf(r->model, sizeof r->model, "%s", model);
	snprintf(r->task, sizeof r->task, "%s", task);
	snprintf(r->metric, sizeof r->metric, "%s", metric);
	r->value = v;
	r->stderr_ = se;
	r->n = n;
}

static void progress(size_t done, size_t total, void *arg)
{
	const char *what = arg;
	/* drawn in place on a terminal; logs stay quiet, the results say it all */
	if (!rl_stderr_tty())
		return;
	fprintf(stderr, "\revalrun: %s: %zu/%zu documents", what, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void run_ppl(const rl_model *m, const char *model_name, const char *task, const char *path, int ctx)
{
	size_t len, ndocs;
	char *text = rl_read_file(path, &len);
	rl_span *docs;
	if (!text)
		errx(1, "task %s: %s", task, rl_err());
	if (rl_split_documents(text, len, &docs, &ndocs))
		errx(1, "task %s: %s", task, rl_err());
	if (ndocs == 0)
		errx(1, "task %s: %s holds no documents", task, path);
	rl_ppl p;
	char what[1100];
	snprintf(what, sizeof what, "%s %s", model_name, task);
	if (rl_eval_ppl(m, docs, ndocs, ctx, &p, progress, what))
		errx(1, "%s: task %s: %s", model_name, task, rl_err());
	if (p.ntokens == 0)
		errx(1, "task %s: %s has no token to predict", task, path);
	double mean = p.nll_sum / (double)p.ntokens;
	/* standard error across documents of their mean NLL */
	double se = NAN;
	if (p.ndocs > 1) {
		double dm = p.doc_nll_sum / (double)p.ndocs;
		double var = (p.doc_nll_sumsq - (double)p.ndocs * dm * dm) / (double)(p.ndocs - 1);
		se = sqrt(var > 0 ? var : 0) / sqrt((double)p.ndocs);
	}
	add_result(model_name, task, "nll", mean, se, p.ntokens);
	add_result(model_name, task, "ppl", exp(mean), isnan(se) ? NAN : exp(mean) * se, p.ntokens);
	free(docs);
	free(text);
}

static void print_json(void)
{
	printf("[");
	for (size_t i = 0; i < nresults; i++) {
		const result *r = &results[i];
		printf(i ? ",\n {" : "{");
		printf("\"model\":");
		rl_json_write_string(stdout, r->model, strlen(r->model));
		printf(",\"task\":");
		rl_json_write_string(stdout, r->task, strlen(r->task));
		printf(",\"metric\":\"%s\",\"value\":%.9g,\"stderr\":", r->metric, r->value);
		if (isfinite(r->stderr_))
			printf("%.9g", r->stderr_);
		else
			printf("null");
		printf(",\"n\":%zu}", r->n);
	}
	printf("]\n");
}

static void print_table(void)
{
	int wm = 5, wt = 4;
	for (size_t i = 0; i < nresults; i++) {
		int a = (int)strlen(results[i].model), b = (int)strlen(results[i].task);
		wm = a > wm ? a : wm;
		wt = b > wt ? b : wt;
	}
	printf("%-*s  %-*s  %-6s  %12s  %10s  %9s\n", wm, "model", wt, "task", "metric", "value", "stderr", "n");
	for (size_t i = 0; i < nresults; i++) {
		const result *r = &results[i];
		printf("%-*s  %-*s  %-6s  %12.4f  ", wm, r->model, wt, r->task, r->metric, r->value);
		if (isfinite(r->stderr_))
			printf("%10.4f", r->stderr_);
		else
			printf("%10s", "-");
		printf("  %9zu\n", r->n);
	}
}

int main(int argc, char **argv)
{
	rl_tool_init();
	const char **tasks = calloc((size_t)argc, sizeof *tasks);
	int ntasks = 0, json = 0, ctx = 0, threads = 0;
	rl_load_opts opts = { 0 };
	static const struct option longopts[] = {
		{ "task", required_argument, NULL, 'k' }, { "json", no_argument, NULL, 'j' },
		{ "ctx", required_argument, NULL, 'c' }, { "tokenizer", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': tasks[ntasks++] = optarg; break;
		case 'j': json = 1; break;
		case 'c': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == 0 || *end || v < 2 || v > (1 << 24))
				errx(2, "--ctx %s: not a context length from 2 to 2^24", optarg);
			ctx = (int)v;
			break;
		}
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'T': opts.tokenizer = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (ntasks == 0 || optind == argc) {
		usage(stderr);
		return 2;
	}
	for (int t = 0; t < ntasks; t++)
		if (strncmp(tasks[t], "ppl:", 4) != 0 || tasks[t][4] == 0)
			errx(2, "--task %s: unknown task (this version has ppl:FILE)", tasks[t]);
	rl_set_threads(threads);
	for (int i = optind; i < argc; i++) {
		rl_model m;
		if (rl_model_load(argv[i], &opts, &m))
			errx(1, "%s", rl_err());
		int mctx = ctx ? ctx : (m.cfg.seq_len < 2048 ? m.cfg.seq_len : 2048);
		if (mctx > m.cfg.seq_len)
			warnx("%s: --ctx %d is longer than the model's seq_len %d", argv[i], mctx, m.cfg.seq_len);
		for (int t = 0; t < ntasks; t++)
			run_ppl(&m, argv[i], tasks[t], tasks[t] + 4, mctx);
		rl_model_free(&m);
	}
	if (json)
		print_json();
	else
		print_table();
	if (fflush(stdout) != 0 || ferror(stdout))
		err(1, "stdout");
	free(tasks);
	free(results);
	return 0;
}
