/* test_eval.c: item scoring and KL against an independent PyTorch reference
 * (tests/ref/eval_items.py -> tests/fixtures/eval_items.json), and the jsonl
 * task reader on good and bad lines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "eval.h"
#include "json.h"
#include "model.h"
#include "t.h"
#include "task.h"

static double num(const rl_json *o, const char *key)
{
	const rl_json *v = rl_json_get(o, key);
	return v && v->type == RL_JSON_NUMBER ? v->number : NAN;
}

static int close_rel(double a, double b, double tol)
{
	return fabs(a - b) <= tol * (fabs(b) > 1 ? fabs(b) : 1);
}

static const rl_task_item *find_line(const rl_task_item *items, size_t n, int line)
{
	for (size_t i = 0; i < n; i++)
		if (items[i].line == line)
			return &items[i];
	return NULL;
}

/* Scores the fixture's items of one kind; the options of each item in order. */
static void check_items(const rl_model *m, const rl_json *list, rl_task_kind kind, const char *name)
{
	char why[5000] = "";
	size_t nchecked = 0;
	for (size_t e = 0; e < list->len && !*why; e++) {
		const rl_json *ent = list->items[e];
		const rl_json *file = rl_json_get(ent, "file");
		char path[4096];
		snprintf(path, sizeof path, "%s/data/%s", t_shared(),
			 kind == RL_TASK_MC ? file->string : "tinystories/lastword.jsonl");
		rl_task_item *items;
		size_t n;
		if (rl_task_load(path, kind, 0, &items, &n, NULL, NULL)) {
			snprintf(why, sizeof why, "%s", rl_err());
			break;
		}
		int line = (int)num(ent, "line");
		const rl_task_item *it = find_line(items, n, line);
		if (!it) {
			snprintf(why, sizeof why, "%s:%d: no item", path, line);
			rl_task_free(items, n);
			break;
		}
		rl_cont_req req[16];
		rl_cont_res res[16];
		for (int o = 0; o < it->nopt && o < 16; o++)
			req[o] = (rl_cont_req){ it->ctx[o], strlen(it->ctx[o]), it->cont[o], strlen(it->cont[o]) };
		if (rl_eval_continuations(m, req, (size_t)it->nopt, 512, res, NULL, NULL)) {
			snprintf(why, sizeof why, "%s:%d: %s", path, line, rl_err());
		} else if (kind == RL_TASK_MC) {
			const rl_json *ll = rl_json_get(ent, "ll"), *nt = rl_json_get(ent, "ntok");
			if (!ll || (int)ll->len != it->nopt)
				snprintf(why, sizeof why, "%s:%d: %d options, fixture %zu", path, line, it->nopt,
					 ll ? ll->len : 0);
			for (int o = 0; o < it->nopt && !*why; o++)
				if (!close_rel(res[o].ll, ll->items[o]->number, 1e-4) ||
				    res[o].ntok != (int)nt->items[o]->number)
					snprintf(why, sizeof why, "%s:%d option %d: ll %.6f over %d tokens, PyTorch %.6f over %d",
						 path, line, o, res[o].ll, res[o].ntok, ll->items[o]->number,
						 (int)nt->items[o]->number);
		} else {
			if (!close_rel(res[0].ll, num(ent, "ll"), 1e-4) || res[0].ntok != (int)num(ent, "ntok") ||
			    res[0].greedy != (int)num(ent, "greedy"))
				snprintf(why, sizeof why, "%s:%d: ll %.6f over %d tokens greedy %d, PyTorch %.6f over %d greedy %d",
					 path, line, res[0].ll, res[0].ntok, res[0].greedy, num(ent, "ll"),
					 (int)num(ent, "ntok"), (int)num(ent, "greedy"));
		}
		nchecked += (size_t)it->nopt;
		rl_task_free(items, n);
	}
	CHECK(!*why && nchecked >= 20, name, "%s", *why ? why : "too few items in the fixture");
}

static void check_kl(const rl_model *m, const rl_json *kl)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", t_shared());
	rl_model half;
	if (rl_model_load(path, NULL, &half)) {
		CHECK(0, "kl_vs_pytorch", "%s", rl_err());
		return;
	}
	/* the weights may be a read-only mapping: a halved copy replaces them */
	float *g = malloc((size_t)half.cfg.dim * sizeof *g);
	for (int i = 0; i < half.cfg.dim; i++)
		g[i] = 0.5f * ((const float *)half.output_norm->data)[i];
	half.output_norm->data = g;
	snprintf(path, sizeof path, "%s/data/tinystories/dev.txt", t_shared());
	size_t len, ndocs;
	char *text = rl_read_file(path, &len);
	rl_span *docs = NULL;
	rl_ppl p;
	int ndoc = (int)num(kl, "docs");
	int rc = !text || rl_split_documents(text, len, &docs, &ndocs) ||
		 rl_eval_ppl(&half, m, docs, (size_t)ndoc, 512, &p, NULL, NULL, NULL);
	CHECK(!rc && p.ntokens == (size_t)num(kl, "ntokens") && close_rel(p.kl_sum, num(kl, "kl_sum"), 1e-4) &&
	      fabs((double)p.top1 - num(kl, "top1")) <= 1,
	      "kl_vs_pytorch", "%s: KL sum %.6f top1 %zu over %zu tokens; PyTorch %.6f, %.0f over %.0f",
	      rc ? rl_err() : "", rc ? 0 : p.kl_sum, rc ? 0 : p.top1, rc ? 0 : p.ntokens, num(kl, "kl_sum"),
	      num(kl, "top1"), num(kl, "ntokens"));
	/* against itself: exactly zero, full agreement */
	rc = rl_eval_ppl(m, m, docs, 3, 512, &p, NULL, NULL, NULL);
	CHECK(!rc && p.kl_sum == 0.0 && p.top1 == p.ntokens, "kl_self_zero", "KL %g top1 %zu of %zu",
	      p.kl_sum, p.top1, p.ntokens);
	free(docs);
	free(text);
	rl_model_free(&half);
}

/* A window cut on the left still scores the continuation after its context. */
static void check_truncation(const rl_model *m)
{
	const char *ctx = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
	rl_cont_req r = { ctx, strlen(ctx), "She", 3 };
	rl_cont_res full, cut;
	int rc = rl_eval_continuations(m, &r, 1, 512, &full, NULL, NULL) ||
		 rl_eval_continuations(m, &r, 1, 8, &cut, NULL, NULL);
	CHECK(!rc && full.ntok == cut.ntok && full.ll != cut.ll && isfinite(cut.ll), "continuation_left_cut",
	      "%s", rc ? rl_err() : "same ll with 7 tokens of context as with all");
	rl_cont_req longer = { ctx, strlen(ctx), "She had a big red ball and a cat.", 33 };
	rc = rl_eval_continuations(m, &longer, 1, 4, &cut, NULL, NULL);
	CHECK(rc && strstr(rl_err(), "do not fit"), "continuation_too_long", "a context of 4 accepted");
}

static int write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fputs(s, f);
	return fclose(f);
}

static void bad_task(const char *name, rl_task_kind kind, const char *content, const char *want)
{
	char path[] = "/tmp/rltask.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || write_file(path, content)) {
		CHECK(0, name, "cannot write %s", path);
		return;
	}
	rl_task_item *items;
	size_t n;
	int rc = rl_task_load(path, kind, 0, &items, &n, NULL, NULL);
	CHECK(rc && strstr(rl_err(), path) && strstr(rl_err(), want), name, "%s", rc ? rl_err() : "accepted");
	if (!rc)
		rl_task_free(items, n);
	remove(path);
}

static int warnings;
static void count_warn(const char *msg, void *arg)
{
	(void)msg, (void)arg;
	warnings++;
}

static void check_task_reader(void)
{
	bad_task("task_missing_field", RL_TASK_MC, "{\"query\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":0}\n"
		 "{\"query\":\"q\",\"gold\":0}\n", ":2: missing field \"choices\"");
	bad_task("task_gold_range", RL_TASK_MC, "{\"query\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":2}\n",
		 ":1: gold 2 is out of range");
	bad_task("task_gold_type", RL_TASK_MC, "{\"query\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":0.5}\n",
		 ":1: field \"gold\" is not an integer");
	bad_task("task_invalid_json", RL_TASK_LASTWORD, "\n{\"context\":\"a\",\"target\":\"b\"\n", ":2: invalid JSON");
	bad_task("task_not_utf8", RL_TASK_LASTWORD, "{\"context\":\"a\xff\",\"target\":\"b\"}\n", ":1: invalid JSON");
	bad_task("task_empty", RL_TASK_LASTWORD, "\n\n", "no items");
	bad_task("task_one_choice", RL_TASK_MC, "{\"query\":\"q\",\"choices\":[\"a\"],\"gold\":0}\n",
		 "not an array of 2 to 1000 strings");
	bad_task("task_empty_target", RL_TASK_LASTWORD, "{\"context\":\"a\",\"target\":\"\"}\n",
		 "field \"target\" is empty");
	bad_task("task_not_object", RL_TASK_MC, "[1,2]\n", ":1: not a JSON object");
	bad_task("task_wino_no_continuation", RL_TASK_MC, "{\"context_options\":[\"a\",\"b\"],\"gold\":0}\n",
		 "missing field \"continuation\"");

	char path[] = "/tmp/rltask.XXXXXX";
	int fd = mkstemp(path);
	write_file(path, "{\"query\":\"q\",\"choices\":[\"a\",\"bb\"],\"gold\":1}\nnot json\n"
			 "{\"context_options\":[\"x\",\"y\",\"z\"],\"continuation\":\" c\",\"gold\":2}\n");
	rl_task_item *items = NULL;
	size_t n = 0;
	int rc = fd < 0 || rl_task_load(path, RL_TASK_MC, 1, &items, &n, count_warn, NULL);
	CHECK(!rc && n == 2 && warnings == 1 && items[0].line == 1 && items[0].nopt == 2 && items[0].gold == 1 &&
	      !strcmp(items[0].ctx[1], "q") && !strcmp(items[0].cont[1], "bb") && !items[0].winogrande &&
	      items[1].line == 3 && items[1].nopt == 3 && items[1].winogrande && !strcmp(items[1].ctx[2], "z") &&
	      !strcmp(items[1].cont[0], " c"),
	      "task_skip_bad", "%s", rc ? rl_err() : "items not as written");
	if (!rc)
		rl_task_free(items, n);
	remove(path);
	CHECK(rl_utf8_chars("a\xc3\xa9\xe4\xb8\xad") == 3, "utf8_chars", "wrong count");
}

int main(void)
{
	check_task_reader();
	char path[4096];
	snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", t_shared());
	rl_model m;
	if (rl_model_load(path, NULL, &m)) {
		CHECK(0, "load_stories260K", "%s", rl_err());
		return t_done();
	}
	size_t len;
	char *fx = rl_read_file("tests/fixtures/eval_items.json", &len);
	rl_json *j = fx ? rl_json_parse(fx, len) : NULL;
	if (!j || !rl_json_get(j, "mc") || !rl_json_get(j, "lastword") || !rl_json_get(j, "kl")) {
		CHECK(0, "fixture", "tests/fixtures/eval_items.json missing or malformed");
	} else {
		check_items(&m, rl_json_get(j, "mc"), RL_TASK_MC, "mc_ll_vs_pytorch");
		check_items(&m, rl_json_get(j, "lastword"), RL_TASK_LASTWORD, "lastword_vs_pytorch");
		check_kl(&m, rl_json_get(j, "kl"));
	}
	check_truncation(&m);
	rl_json_free(j);
	free(fx);
	rl_model_free(&m);
	return t_done();
}
