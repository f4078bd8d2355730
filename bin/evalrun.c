/* evalrun: measures models on tasks (perplexity, KL and top-1 against a
 * reference, multiple choice, last word) and tabulates the recovery of a
 * recovered model between its full-precision and quantized versions. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "eval.h"
#include "json.h"
#include "model.h"
#include "stream.h"
#include "task.h"
#include "tool.h"

enum { ROLE_NONE, ROLE_FP, ROLE_QUANT, ROLE_RECOVERED };
static const char *role_name[] = { "", "fp", "quant", "recovered" };

typedef struct {
	const char *arg;
	int role;
} model_arg;

typedef struct {
	const char *spec;      /* as given: "ppl:FILE" */
	const char *path;
	enum { TASK_PPL, TASK_MC, TASK_LASTWORD } kind;
	char *text;            /* ppl */
	rl_span *docs;
	size_t ndocs;
	rl_task_item *items;   /* mc, lastword */
	size_t nitems;
	int has_norm;          /* mc: some item's options differ in continuation */
} task;

/* A metric of a model on a task. Its value is the sum of unit[] over n (the
 * units are the task's documents, each the sum over its scored tokens, or its
 * items): what pairs two models' results unit by unit in the recovery table. */
typedef struct {
	char model[512], task[512], metric[32];
	int role;
	double value, stderr_;
	size_t n;
	double *unit;
	size_t nunit;
} result;

static result *results;
static size_t nresults;
static FILE *items_out;      /* --items, under items_tmp until renamed */
static char items_tmp[4200];

static void remove_items_tmp(void)
{
	if (items_tmp[0])
		unlink(items_tmp);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: evalrun --task ppl:FILE|mc:FILE.jsonl|lastword:FILE.jsonl [--task ...]\n"
		   "               [--reference MODEL] [--fp MODEL --quant MODEL --recovered MODEL ...]\n"
		   "               [--json] [-o RESULTS] [--items FILE] [--skip-bad] [--ctx N] [-t N]\n"
		   "               [--tokenizer FILE] [--int8-act] [MODEL...]\n"
		   "Scores each model on each task; a table on stdout (--json: a JSON array), with a\n"
		   "recovery table when --fp, --quant and --recovered are given.\n");
}

/* Adds a result; unit (nunit values, or NULL) becomes the result's */
static void add_result_units(const char *model, int role, const char *task, const char *metric, double v,
			     double se, size_t n, double *unit, size_t nunit)
{
	result *r = realloc(results, (nresults + 1) * sizeof *r);
	if (!r)
		errx(1, "out of memory");
	results = r;
	r = &results[nresults++];
	snprintf(r->model, sizeof r->model, "%s", model);
	snprintf(r->task, sizeof r->task, "%s", task);
	snprintf(r->metric, sizeof r->metric, "%s", metric);
	r->role = role;
	r->value = v;
	r->stderr_ = se;
	r->n = n;
	r->unit = unit;
	r->nunit = unit ? nunit : 0;
}

static void add_result(const char *model, int role, const char *task, const char *metric, double v,
		       double se, size_t n)
{
	add_result_units(model, role, task, metric, v, se, n, NULL, 0);
}

static double *units(size_t n)
{
	double *u = malloc((n ? n : 1) * sizeof *u);
	if (!u)
		errx(1, "out of memory");
	return u;
}

static const result *find_result(int role, const char *model, const char *task, const char *metric)
{
	for (size_t i = 0; i < nresults; i++)
		if (results[i].role == role && (!model || !strcmp(results[i].model, model)) &&
		    !strcmp(results[i].task, task) && !strcmp(results[i].metric, metric))
			return &results[i];
	return NULL;
}

static void progress(size_t done, size_t total, void *arg)
{
	const char *what = arg;
	/* drawn in place on a terminal; logs stay quiet, the results say it all */
	if (!rl_stderr_tty())
		return;
	fprintf(stderr, "\revalrun: %s: %zu/%zu", what, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void warn_line(const char *msg, void *arg)
{
	(void)arg;
	warnx("%s (skipped)", msg);
}

/* Standard error of the mean of n values from their sum and sum of squares. */
static double mean_stderr(double sum, double sumsq, size_t n)
{
	if (n < 2)
		return NAN;
	double m = sum / (double)n;
	double var = (sumsq - (double)n * m * m) / (double)(n - 1);
	return sqrt(var > 0 ? var : 0) / sqrt((double)n);
}

static double binomial_stderr(double p, size_t n)
{
	return n ? sqrt(p * (1 - p) / (double)n) : NAN;
}

/* Adds the result whose units are an item task's n items, u (which it takes):
 * its value their mean, its standard error binomial for 0/1 accuracies, else
 * across the items. */
static void add_item_result(const model_arg *ma, const task *t, const char *metric, double *u, int binary)
{
	size_t n = t->nitems;
	double sum = 0, sumsq = 0;
	for (size_t i = 0; i < n; i++) {
		sum += u[i];
		sumsq += u[i] * u[i];
	}
	double v = sum / (double)n;
	add_result_units(ma->arg, ma->role, t->spec, metric, v,
			 binary ? binomial_stderr(v, n) : mean_stderr(sum, sumsq, n), n, u, n);
}

static void load_task(task *t, int skip_bad)
{
	const char *colon = strchr(t->spec, ':');
	t->path = colon + 1;
	if (t->kind == TASK_PPL) {
		size_t len;
		if (!(t->text = rl_read_file(t->path, &len)))
			errx(1, "task %s: %s", t->spec, rl_err());
		if (rl_split_documents(t->text, len, &t->docs, &t->ndocs))
			errx(1, "task %s: %s", t->spec, rl_err());
		if (t->ndocs == 0)
			errx(1, "task %s: %s holds no documents", t->spec, t->path);
		return;
	}
	rl_task_kind k = t->kind == TASK_MC ? RL_TASK_MC : RL_TASK_LASTWORD;
	if (rl_task_load(t->path, k, skip_bad, &t->items, &t->nitems, warn_line, NULL))
		errx(1, "task %s: %s", t->spec, rl_err());
	for (size_t i = 0; i < t->nitems; i++)
		t->has_norm |= !t->items[i].winogrande;
}

static void run_ppl(const rl_model *m, const rl_model *ref, int is_ref, const model_arg *ma, task *t, int ctx)
{
	rl_ppl p;
	size_t nd = t->ndocs;
	rl_ppl_doc *doc = malloc(nd * sizeof *doc);
	if (!doc)
		errx(1, "out of memory");
	char what[1100];
	snprintf(what, sizeof what, "%s %s", ma->arg, t->spec);
	if (rl_eval_ppl(m, is_ref ? NULL : ref, t->docs, nd, ctx, &p, doc, progress, what))
		errx(1, "%s: task %s: %s", ma->arg, t->spec, rl_err());
	if (p.ntokens == 0)
		errx(1, "task %s: %s has no token to predict", t->spec, t->path);
	/* each document's sums, for the recovery's paired standard error */
	double *u_nll = units(nd), *u_kl = ref ? units(nd) : NULL, *u_top1 = ref ? units(nd) : NULL;
	for (size_t d = 0; d < nd; d++) {
		u_nll[d] = doc[d].nll;
		if (ref) { /* the reference itself: KL 0 and agreement 1, exactly */
			u_kl[d] = is_ref ? 0.0 : doc[d].kl;
			u_top1[d] = (double)(is_ref ? doc[d].tokens : doc[d].top1);
		}
	}
	free(doc);
	double mean = p.nll_sum / (double)p.ntokens;
	/* standard error across documents of their mean NLL */
	double se = mean_stderr(p.doc_nll_sum, p.doc_nll_sumsq, p.ndocs);
	add_result_units(ma->arg, ma->role, t->spec, "nll", mean, se, p.ntokens, u_nll, nd);
	add_result(ma->arg, ma->role, t->spec, "ppl", exp(mean), isnan(se) ? NAN : exp(mean) * se, p.ntokens);
	if (!ref)
		return;
	if (is_ref) {
		add_result_units(ma->arg, ma->role, t->spec, "kld", 0.0, 0.0, p.ntokens, u_kl, nd);
		add_result_units(ma->arg, ma->role, t->spec, "top1", 1.0, 0.0, p.ntokens, u_top1, nd);
		return;
	}
	add_result_units(ma->arg, ma->role, t->spec, "kld", p.kl_sum / (double)p.ntokens,
			 mean_stderr(p.doc_kl_sum, p.doc_kl_sumsq, p.ndocs), p.ntokens, u_kl, nd);
	double top1 = (double)p.top1 / (double)p.ntokens;
	add_result_units(ma->arg, ma->role, t->spec, "top1", top1, binomial_stderr(top1, p.ntokens), p.ntokens, u_top1,
			 nd);
}

static void item_json_head(const model_arg *ma, const task *t, const rl_task_item *it)
{
	fputs("{\"model\":", items_out);
	rl_json_write_string(items_out, ma->arg, strlen(ma->arg));
	fputs(",\"task\":", items_out);
	rl_json_write_string(items_out, t->spec, strlen(t->spec));
	fprintf(items_out, ",\"line\":%d", it->line);
}

static void run_items(const rl_model *m, const model_arg *ma, task *t, int ctx)
{
	size_t nreq = 0;
	for (size_t i = 0; i < t->nitems; i++)
		nreq += (size_t)t->items[i].nopt;
	rl_cont_req *req = malloc(nreq * sizeof *req);
	rl_cont_res *res = malloc(nreq * sizeof *res);
	if (!req || !res)
		errx(1, "out of memory");
	size_t k = 0;
	for (size_t i = 0; i < t->nitems; i++)
		for (int o = 0; o < t->items[i].nopt; o++, k++)
			req[k] = (rl_cont_req){ t->items[i].ctx[o], strlen(t->items[i].ctx[o]),
						t->items[i].cont[o], strlen(t->items[i].cont[o]) };
	char what[1100];
	snprintf(what, sizeof what, "%s %s", ma->arg, t->spec);
	if (rl_eval_continuations(m, req, nreq, ctx, res, progress, what)) {
		/* name the line of the item the request belongs to */
		const char *e = rl_err();
		size_t item = 0;
		if (sscanf(e, "item %zu:", &item) == 1 && item >= 1 && item <= nreq) {
			size_t r = item - 1, i = 0;
			while (r >= (size_t)t->items[i].nopt)
				r -= (size_t)t->items[i++].nopt;
			errx(1, "%s: %s:%d: option %zu%s", ma->arg, t->path, t->items[i].line, r,
			     strchr(e, ':'));
		}
		errx(1, "%s: task %s: %s", ma->arg, t->spec, e);
	}
	size_t ni = t->nitems;
	if (t->kind == TASK_LASTWORD) {
		double *u_acc = units(ni), *u_nll = units(ni);
		for (size_t i = 0; i < ni; i++) {
			u_acc[i] = res[i].greedy;
			u_nll[i] = -res[i].ll;
			if (items_out) {
				item_json_head(ma, t, &t->items[i]);
				fprintf(items_out, ",\"ll\":%.9g,\"ntok\":%d,\"greedy\":%d}\n", res[i].ll, res[i].ntok,
					res[i].greedy);
			}
		}
		add_item_result(ma, t, "acc", u_acc, 1);
		add_item_result(ma, t, "nll", u_nll, 0);
	} else {
		double *u_acc = units(ni), *u_norm = units(ni);
		k = 0;
		for (size_t i = 0; i < t->nitems; i++) {
			const rl_task_item *it = &t->items[i];
			int best = 0, best_norm = 0;
			double bn = -INFINITY;
			for (int o = 0; o < it->nopt; o++) {
				/* ties go to the lower index */
				if (res[k + o].ll > res[k + best].ll)
					best = o;
				double norm = res[k + o].ll / (double)rl_utf8_chars(it->cont[o]);
				if (norm > bn)
					bn = norm, best_norm = o;
			}
			u_acc[i] = best == it->gold;
			u_norm[i] = best_norm == it->gold;
			if (items_out) {
				item_json_head(ma, t, it);
				fputs(",\"ll\":[", items_out);
				for (int o = 0; o < it->nopt; o++)
					fprintf(items_out, "%s%.9g", o ? "," : "", res[k + o].ll);
				fputs("],\"ntok\":[", items_out);
				for (int o = 0; o < it->nopt; o++)
					fprintf(items_out, "%s%d", o ? "," : "", res[k + o].ntok);
				fprintf(items_out, "],\"pred\":%d,\"pred_norm\":%d,\"gold\":%d}\n", best, best_norm,
					it->gold);
			}
			k += (size_t)it->nopt;
		}
		add_item_result(ma, t, "acc", u_acc, 1);
		if (t->has_norm)
			add_item_result(ma, t, "acc_norm", u_norm, 1);
		else
			free(u_norm);
	}
	free(req);
	free(res);
}

/* ---- recovery ---- */

typedef struct {
	const result *fp, *quant, *rec;
	double pct;   /* NAN: n/a */
	double se;    /* its standard error in points, NAN where the units do not pair */
} recovery;

/* The standard error of recovery R = sum(a) / sum(b) over units paired across
 * the three models, a = rec - quant and b = fp - quant: the ratio estimator's,
 * sqrt(n / (n - 1) sum (a - R b)^2) / |sum b| (to first order in the noise).
 * Pairing removes what the models share: an item all three get right, or a
 * hard document, counts in none of a - R b. NAN unless the three results have
 * units over the same count. */
static double recovery_se(const result *fp, const result *q, const result *rec)
{
	size_t n = rec->nunit;
	if (n < 2 || fp->nunit != n || q->nunit != n || fp->n != rec->n || q->n != rec->n)
		return NAN;
	double sa = 0, sb = 0;
	for (size_t i = 0; i < n; i++) {
		sa += rec->unit[i] - q->unit[i];
		sb += fp->unit[i] - q->unit[i];
	}
	if (sb == 0)
		return NAN;
	double R = sa / sb, ss = 0;
	for (size_t i = 0; i < n; i++) {
		double e = (rec->unit[i] - q->unit[i]) - R * (fp->unit[i] - q->unit[i]);
		ss += e * e;
	}
	return 100.0 * sqrt((double)n / (double)(n - 1) * ss) / fabs(sb);
}

/* Recovery of every metric but ppl (a function of nll) for each recovered model. */
static recovery *recoveries(size_t *n)
{
	recovery *out = NULL;
	*n = 0;
	for (size_t i = 0; i < nresults; i++) {
		const result *rec = &results[i];
		if (rec->role != ROLE_RECOVERED || !strcmp(rec->metric, "ppl"))
			continue;
		const result *fp = find_result(ROLE_FP, NULL, rec->task, rec->metric);
		const result *q = find_result(ROLE_QUANT, NULL, rec->task, rec->metric);
		if (!fp || !q)
			continue;
		recovery *r = realloc(out, (*n + 1) * sizeof *r);
		if (!r)
			errx(1, "out of memory");
		out = r;
		r = &out[(*n)++];
		r->fp = fp, r->quant = q, r->rec = rec;
		/* the gap must stand out of the noise: three standard errors of the
		 * difference, the two measurements taken as independent */
		double gap = fp->value - q->value;
		double sf = isfinite(fp->stderr_) ? fp->stderr_ : 0, sq = isfinite(q->stderr_) ? q->stderr_ : 0;
		double se = sqrt(sf * sf + sq * sq);
		int known = isfinite(fp->stderr_) && isfinite(q->stderr_);
		r->pct = known && fabs(gap) >= 3 * se && gap != 0 ? 100.0 * (rec->value - q->value) / gap + 0.0 : NAN; /* + 0.0: no "-0%" */
		r->se = isfinite(r->pct) ? recovery_se(fp, q, rec) : NAN;
	}
	return out;
}

static void print_json(const recovery *rv, size_t nrv)
{
	printf("[");
	for (size_t i = 0; i < nresults + nrv; i++) {
		const result *r = i < nresults ? &results[i] : rv[i - nresults].rec;
		char metric[64];
		double value = r->value, se = r->stderr_;
		snprintf(metric, sizeof metric, "%s", r->metric);
		if (i >= nresults) {
			snprintf(metric, sizeof metric, "recovery_%s", r->metric);
			value = rv[i - nresults].pct;
			se = rv[i - nresults].se;
		}
		printf(i ? ",\n {" : "{");
		printf("\"model\":");
		rl_json_write_string(stdout, r->model, strlen(r->model));
		printf(",\"role\":");
		if (r->role)
			printf("\"%s\"", role_name[r->role]);
		else
			printf("null");
		printf(",\"task\":");
		rl_json_write_string(stdout, r->task, strlen(r->task));
		printf(",\"metric\":\"%s\",\"value\":", metric);
		if (isfinite(value))
			printf("%.9g", value);
		else
			printf("null");
		printf(",\"stderr\":");
		if (isfinite(se))
			printf("%.9g", se);
		else
			printf("null");
		printf(",\"n\":%zu}", r->n);
	}
	printf("]\n");
}

static void print_table(const recovery *rv, size_t nrv)
{
	int wm = 5, wt = 4, roles = 0;
	for (size_t i = 0; i < nresults; i++) {
		int a = (int)strlen(results[i].model), b = (int)strlen(results[i].task);
		wm = a > wm ? a : wm;
		wt = b > wt ? b : wt;
		roles |= results[i].role != ROLE_NONE;
	}
	printf("%-*s  ", wm, "model");
	if (roles)
		printf("%-9s  ", "role");
	printf("%-*s  %-8s  %12s  %10s  %9s\n", wt, "task", "metric", "value", "stderr", "n");
	for (size_t i = 0; i < nresults; i++) {
		const result *r = &results[i];
		printf("%-*s  ", wm, r->model);
		if (roles)
			printf("%-9s  ", role_name[r->role]);
		printf("%-*s  %-8s  %12.4f  ", wt, r->task, r->metric, r->value);
		if (isfinite(r->stderr_))
			printf("%10.4f", r->stderr_);
		else
			printf("%10s", "-");
		printf("  %9zu\n", r->n);
	}
	if (!nrv)
		return;
	printf("\nrecovery = (recovered - quant) / (fp - quant); n/a where |fp - quant| < 3 stderr;\n"
	       "its stderr pairs the three models' documents or items\n");
	printf("%-*s  %-*s  %-8s  %10s  %10s  %10s  %9s  %7s\n", wm, "recovered", wt, "task", "metric", "fp", "quant",
	       "recovered", "recovery", "stderr");
	for (size_t i = 0; i < nrv; i++) {
		const recovery *r = &rv[i];
		printf("%-*s  %-*s  %-8s  %10.4f  %10.4f  %10.4f  ", wm, r->rec->model, wt, r->rec->task,
		       r->rec->metric, r->fp->value, r->quant->value, r->rec->value);
		if (isfinite(r->pct))
			printf("%8.1f%%", r->pct);
		else
			printf("%9s", "n/a");
		if (isfinite(r->se))
			printf("  %7.1f\n", r->se);
		else
			printf("  %7s\n", "-");
	}
}

static void pack_result(msgpack_packer *pk, const result *r, const char *metric, double value, double se)
{
	msgpack_pack_map(pk, 6 + (r->role != ROLE_NONE) + isfinite(se));
	rl_pack_kv_str(pk, "t", "result");
	rl_pack_kv_str(pk, "model", r->model);
	if (r->role != ROLE_NONE)
		rl_pack_kv_str(pk, "role", role_name[r->role]);
	rl_pack_kv_str(pk, "task", r->task);
	rl_pack_kv_str(pk, "metric", metric);
	rl_pack_kv_double(pk, "value", value);
	rl_pack_kv_int(pk, "n", (int64_t)r->n);
	if (isfinite(se))
		rl_pack_kv_double(pk, "stderr", se);
}

/* The results as a results stream (tstream(5)); recoveries that are n/a are left out. */
static void write_results(const char *path, const recovery *rv, size_t nrv)
{
	rl_writer *w = rl_writer_open(path);
	if (!w)
		errx(1, "%s", rl_err());
	msgpack_packer *pk = rl_writer_packer(w);
	rl_pack_header(pk, "results", "evalrun " RL_VERSION, 0);
	rl_writer_message_done(w);
	for (size_t i = 0; i < nresults; i++) {
		if (!isfinite(results[i].value))
			continue;
		pack_result(pk, &results[i], results[i].metric, results[i].value, results[i].stderr_);
		rl_writer_message_done(w);
	}
	for (size_t i = 0; i < nrv; i++) {
		if (!isfinite(rv[i].pct))
			continue;
		char metric[64];
		snprintf(metric, sizeof metric, "recovery_%s", rv[i].rec->metric);
		pack_result(pk, rv[i].rec, metric, rv[i].pct, rv[i].se);
		rl_writer_message_done(w);
	}
	if (rl_write_end(w) || rl_writer_commit(w)) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", rl_err());
		rl_writer_abort(w);
		errx(1, "%s: %s", path, msg);
	}
}

int main(int argc, char **argv)
{
	rl_tool_init();
	task *tasks = calloc((size_t)argc, sizeof *tasks);
	model_arg *models = calloc((size_t)argc, sizeof *models);
	if (!tasks || !models)
		errx(1, "out of memory");
	int ntasks = 0, nmodels = 0, json = 0, ctx = 0, threads = 0, skip_bad = 0, int8_act = 0;
	const char *fp = NULL, *quant = NULL, *refarg = NULL, *out = NULL, *items_path = NULL;
	const char **recovered = calloc((size_t)argc, sizeof *recovered);
	int nrec = 0;
	rl_load_opts opts = { 0 };
	enum { O_TASK = 256, O_JSON, O_CTX, O_TOK, O_REF, O_FP, O_QUANT, O_REC, O_ITEMS, O_SKIP, O_INT8 };
	static const struct option longopts[] = {
		{ "task", required_argument, NULL, O_TASK }, { "json", no_argument, NULL, O_JSON },
		{ "ctx", required_argument, NULL, O_CTX }, { "tokenizer", required_argument, NULL, O_TOK },
		{ "reference", required_argument, NULL, O_REF }, { "fp", required_argument, NULL, O_FP },
		{ "quant", required_argument, NULL, O_QUANT }, { "recovered", required_argument, NULL, O_REC },
		{ "items", required_argument, NULL, O_ITEMS }, { "skip-bad", no_argument, NULL, O_SKIP },
		{ "int8-act", no_argument, NULL, O_INT8 },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "t:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case O_TASK: {
			task *t = &tasks[ntasks++];
			t->spec = optarg;
			if (!strncmp(optarg, "ppl:", 4) && optarg[4])
				t->kind = TASK_PPL;
			else if (!strncmp(optarg, "mc:", 3) && optarg[3])
				t->kind = TASK_MC;
			else if (!strncmp(optarg, "lastword:", 9) && optarg[9])
				t->kind = TASK_LASTWORD;
			else
				errx(2, "--task %s: unknown task (ppl:FILE, mc:FILE.jsonl, lastword:FILE.jsonl)", optarg);
			break;
		}
		case O_JSON: json = 1; break;
		case O_CTX: {
			long v;
			if (rl_parse_long(optarg, 2, 1 << 24, &v))
				errx(2, "--ctx %s: not a context length from 2 to 2^24", optarg);
			ctx = (int)v;
			break;
		}
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'o': out = optarg; break;
		case O_TOK: opts.tokenizer = optarg; break;
		case O_REF: refarg = optarg; break;
		case O_FP: fp = optarg; break;
		case O_QUANT: quant = optarg; break;
		case O_REC: recovered[nrec++] = optarg; break;
		case O_ITEMS: items_path = optarg; break;
		case O_SKIP: skip_bad = 1; break;
		case O_INT8: int8_act = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	/* roles first, in a fixed order, then the other models as given */
	if (fp)
		models[nmodels++] = (model_arg){ fp, ROLE_FP };
	if (quant)
		models[nmodels++] = (model_arg){ quant, ROLE_QUANT };
	for (int i = 0; i < nrec; i++)
		models[nmodels++] = (model_arg){ recovered[i], ROLE_RECOVERED };
	for (int i = optind; i < argc; i++)
		models[nmodels++] = (model_arg){ argv[i], ROLE_NONE };
	if (ntasks == 0 || nmodels == 0) {
		usage(stderr);
		return 2;
	}
	if (nrec && (!fp || !quant))
		errx(2, "--recovered needs --fp and --quant, the two ends of the gap it closes");
	if (!refarg)
		refarg = fp; /* KL is measured against the full-precision model */
	for (int t = 0; t < ntasks; t++)
		load_task(&tasks[t], skip_bad);
	rl_set_threads(threads);
	if (items_path) {
		/* written through a temporary name, removed at exit unless renamed */
		snprintf(items_tmp, sizeof items_tmp, "%s.tmp.%ld", items_path, (long)getpid());
		if (!(items_out = fopen(items_tmp, "w")))
			err(1, "%s", items_tmp);
		atexit(remove_items_tmp);
	}
	rl_model ref;
	int have_ref = 0, has_ppl = 0;
	for (int t = 0; t < ntasks; t++)
		has_ppl |= tasks[t].kind == TASK_PPL;
	if (refarg && has_ppl) {
		if (rl_model_load(refarg, &opts, &ref))
			errx(1, "reference: %s", rl_err());
		have_ref = 1;
	}
	for (int i = 0; i < nmodels; i++) {
		const model_arg *ma = &models[i];
		/* with --int8-act a model is never the reference, which keeps f32 activations */
		int is_ref = have_ref && !int8_act && !strcmp(ma->arg, refarg);
		rl_model own, *m = &ref;
		if (!is_ref) {
			if (rl_model_load(ma->arg, &opts, &own))
				errx(1, "%s", rl_err());
			own.int8_act = int8_act;
			m = &own;
		}
		int mctx = ctx ? ctx : (m->cfg.seq_len < 2048 ? m->cfg.seq_len : 2048);
		if (mctx > m->cfg.seq_len)
			warnx("%s: --ctx %d is longer than the model's seq_len %d", ma->arg, mctx, m->cfg.seq_len);
		for (int t = 0; t < ntasks; t++) {
			if (tasks[t].kind == TASK_PPL)
				run_ppl(m, have_ref ? &ref : NULL, is_ref, ma, &tasks[t], mctx);
			else
				run_items(m, ma, &tasks[t], mctx);
		}
		if (!is_ref)
			rl_model_free(&own);
	}
	if (have_ref)
		rl_model_free(&ref);
	size_t nrv;
	recovery *rv = recoveries(&nrv);
	if (json)
		print_json(rv, nrv);
	else
		print_table(rv, nrv);
	if (fflush(stdout) != 0 || ferror(stdout))
		err(1, "stdout");
	if (out)
		write_results(out, rv, nrv);
	if (items_out) {
		if (fclose(items_out) != 0)
			err(1, "%s", items_path);
		items_out = NULL;
		if (rename(items_tmp, items_path) != 0)
			err(1, "%s", items_path);
		items_tmp[0] = 0;
	}
	free(rv);
	free(tasks);
	free(models);
	free(recovered);
	for (size_t i = 0; i < nresults; i++)
		free(results[i].unit);
	free(results);
	return 0;
}
