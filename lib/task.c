/* task.c: jsonl evaluation items (task.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "task.h"

size_t rl_utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void item_free(rl_task_item *it)
{
	for (int i = 0; i < it->nopt; i++) {
		if (it->ctx)
			free(it->ctx[i]);
		if (it->cont)
			free(it->cont[i]);
	}
	free(it->ctx);
	free(it->cont);
	memset(it, 0, sizeof *it);
}

void rl_task_free(rl_task_item *items, size_t nitems)
{
	for (size_t i = 0; i < nitems; i++)
		item_free(&items[i]);
	free(items);
}

/* A non-empty string member, copied; NULL with why set otherwise. */
static char *string_field(const rl_json *o, const char *key, char *why, size_t whysz)
{
	const rl_json *v = rl_json_get(o, key);
	if (!v) {
		snprintf(why, whysz, "missing field \"%s\"", key);
		return NULL;
	}
	if (v->type != RL_JSON_STRING) {
		snprintf(why, whysz, "field \"%s\" is not a string", key);
		return NULL;
	}
	if (v->len == 0 || strlen(v->string) != v->len) {
		snprintf(why, whysz, "field \"%s\" is %s", key, v->len ? "a string holding NUL" : "empty");
		return NULL;
	}
	char *s = strdup(v->string);
	if (!s)
		snprintf(why, whysz, "out of memory");
	return s;
}

static int options_alloc(rl_task_item *it, int n, char *why, size_t whysz)
{
	it->ctx = calloc((size_t)n, sizeof *it->ctx);
	it->cont = calloc((size_t)n, sizeof *it->cont);
	if (!it->ctx || !it->cont) {
		snprintf(why, whysz, "out of memory");
		return -1;
	}
	it->nopt = n;
	return 0;
}

/* Checks that key is an array of 2 to 1000 non-empty strings and makes room for that many options. */
static int string_array(const rl_json *o, const char *key, rl_task_item *it, char *why, size_t whysz)
{
	const rl_json *a = rl_json_get(o, key);
	if (!a) {
		snprintf(why, whysz, "missing field \"%s\"", key);
		return -1;
	}
	if (a->type != RL_JSON_ARRAY || a->len < 2 || a->len > 1000) {
		snprintf(why, whysz, "field \"%s\" is not an array of 2 to 1000 strings", key);
		return -1;
	}
	if (options_alloc(it, (int)a->len, why, whysz))
		return -1;
	for (size_t i = 0; i < a->len; i++) {
		const rl_json *v = a->items[i];
		if (v->type != RL_JSON_STRING || v->len == 0 || strlen(v->string) != v->len) {
			snprintf(why, whysz, "field \"%s\" item %zu is not a non-empty string", key, i);
			return -1;
		}
	}
	return 0;
}

static int gold_field(const rl_json *o, rl_task_item *it, char *why, size_t whysz)
{
	const rl_json *g = rl_json_get(o, "gold");
	if (!g) {
		snprintf(why, whysz, "missing field \"gold\"");
		return -1;
	}
	if (g->type != RL_JSON_NUMBER || !g->is_integer) {
		snprintf(why, whysz, "field \"gold\" is not an integer");
		return -1;
	}
	if (g->integer < 0 || g->integer >= it->nopt) {
		snprintf(why, whysz, "gold %lld is out of range for %d options", g->integer, it->nopt);
		return -1;
	}
	it->gold = (int)g->integer;
	return 0;
}

static int parse_item(const rl_json *o, rl_task_kind kind, rl_task_item *it, char *why, size_t whysz)
{
	if (o->type != RL_JSON_OBJECT) {
		snprintf(why, whysz, "not a JSON object");
		return -1;
	}
	if (kind == RL_TASK_LASTWORD) {
		if (options_alloc(it, 1, why, whysz) ||
		    !(it->ctx[0] = string_field(o, "context", why, whysz)) ||
		    !(it->cont[0] = string_field(o, "target", why, whysz)))
			return -1;
		return 0;
	}
	if (rl_json_get(o, "context_options")) {
		it->winogrande = 1;
		if (string_array(o, "context_options", it, why, whysz))
			return -1;
		const rl_json *a = rl_json_get(o, "context_options");
		for (int i = 0; i < it->nopt; i++) {
			if (!(it->ctx[i] = strdup(a->items[i]->string)) ||
			    !(it->cont[i] = string_field(o, "continuation", why, whysz))) {
				if (!it->ctx[i])
					snprintf(why, whysz, "out of memory");
				return -1;
			}
		}
	} else {
		char *q = string_field(o, "query", why, whysz);
		if (!q)
			return -1;
		free(q);
		if (string_array(o, "choices", it, why, whysz))
			return -1;
		const rl_json *a = rl_json_get(o, "choices");
		for (int i = 0; i < it->nopt; i++)
			if (!(it->ctx[i] = string_field(o, "query", why, whysz)) ||
			    !(it->cont[i] = strdup(a->items[i]->string))) {
				snprintf(why, whysz, "out of memory");
				return -1;
			}
	}
	return gold_field(o, it, why, whysz);
}

int rl_task_load(const char *path, rl_task_kind kind, int skip_bad, rl_task_item **items,
		 size_t *nitems, rl_task_warn_fn warn, void *arg)
{
	size_t len;
	*items = NULL;
	*nitems = 0;
	char *text = rl_read_file(path, &len);
	if (!text)
		return -1;
	size_t cap = 1;
	for (size_t i = 0; i < len; i++)
		cap += text[i] == '\n';
	rl_task_item *out = calloc(cap, sizeof *out);
	if (!out) {
		free(text);
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	size_t n = 0;
	int line = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		line++;
		const char *q = p;
		while (q < e && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q < e) {
			char why[512] = "";
			rl_json *o = rl_json_parse(p, (size_t)(e - p));
			rl_task_item *it = &out[n];
			if (!o)
				snprintf(why, sizeof why, "invalid JSON: %s", rl_err());
			else if (parse_item(o, kind, it, why, sizeof why) == 0)
				it->line = line, n++;
			else
				item_free(it);
			rl_json_free(o);
			if (*why) {
				char msg[1200];
				snprintf(msg, sizeof msg, "%s:%d: %s", path, line, why);
				if (!skip_bad) {
					rl_task_free(out, n);
					free(text);
					rl_seterr("%s", msg);
					return -1;
				}
				if (warn)
					warn(msg, arg);
			}
		}
		p = e + (nl != NULL);
	}
	free(text);
	if (n == 0) {
		free(out);
		rl_seterr("%s: no items", path);
		return -1;
	}
	*items = out;
	*nitems = n;
	return 0;
}
