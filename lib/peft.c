/* peft.c: LoRA adapters as PEFT directories (see peft.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "afile.h"
#include "err.h"
#include "hf.h"
#include "json.h"
#include "peft.h"
#include "safetensors.h"

#define PREFIX "base_model.model."
#define META_CONTENT "recover.base_content"
#define META_SOURCE "recover.base_source"

/* HF's module path of one of our weights: "model.layers.3.mlp.gate_proj". */
static void module_path(const char *ours, char *out, size_t size)
{
	rl_hf_tensor_name(ours, out, size);
	size_t n = strlen(out);
	if (n > 7 && strcmp(out + n - 7, ".weight") == 0)
		out[n - 7] = 0;
}

/* ---- writing ---- */

typedef struct {
	const rl_adapter *a;
	const rl_model *m;
	const rl_st_entry *entries; /* (2 * ntargets) A then B of each target */
	const char *path;
} peft_writer;

static int write_lora(void *arg, const rl_st_entry *e, FILE *f)
{
	peft_writer *w = arg;
	int k = (int)(e - w->entries) / 2, is_b = (int)(e - w->entries) % 2;
	const rl_lora_target *g = &w->a->targets[k];
	int r = w->a->rank, D = w->m->cfg.head_dim;
	if (!is_b) {
		size_t n = (size_t)r * g->IC;
		if (fwrite(g->a, sizeof(float), n, f) != n)
			goto fail;
		return 0;
	}
	int perm = rl_hf_rope_permuted(w->m, g->name);
	for (int o = 0; o < g->OC; o++) {
		uint64_t row = perm ? rl_hf_pair_row((uint64_t)o, D) : (uint64_t)o;
		if (fwrite(g->b + row * (uint64_t)r, sizeof(float), (size_t)r, f) != (size_t)r)
			goto fail;
	}
	return 0;
fail:
	rl_seterr("%s: %s", w->path, strerror(errno));
	return -1;
}

/* The last component of a module path: "gate_proj", "lm_head". */
static const char *module_kind(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot ? dot + 1 : path;
}

/* target_modules: the kinds when every layer's module of each kind is a
 * target (what peft's short names select), else the full module paths. */
static void write_target_modules(FILE *f, const rl_adapter *a, const rl_model *m)
{
	char (*paths)[160] = malloc((size_t)a->ntargets * sizeof *paths);
	int uniform = paths != NULL;
	for (int k = 0; paths && k < a->ntargets; k++)
		module_path(a->targets[k].name, paths[k], sizeof paths[k]);
	for (int k = 0; uniform && k < a->ntargets; k++) {
		const char *kind = module_kind(paths[k]);
		int count = 0;
		for (int j = 0; j < a->ntargets; j++)
			count += strcmp(module_kind(paths[j]), kind) == 0;
		uniform = strncmp(paths[k], "model.layers.", 13) ? count == 1 : count == m->cfg.n_layers;
	}
	fputc('[', f);
	int first = 1;
	for (int k = 0; paths && k < a->ntargets; k++) {
		const char *name = uniform ? module_kind(paths[k]) : paths[k];
		int seen = 0;
		for (int j = 0; uniform && j < k; j++)
			seen |= strcmp(module_kind(paths[j]), name) == 0;
		if (seen)
			continue;
		fputs(first ? "" : ", ", f);
		rl_json_write_string(f, name, strlen(name));
		first = 0;
	}
	fputc(']', f);
	free(paths);
}

static int write_config(FILE *f, const rl_adapter *a, const rl_model *m)
{
	char alpha[40];
	snprintf(alpha, sizeof alpha, "%.17g", a->alpha);
	fputs("{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": ", f);
	rl_json_write_string(f, m->origin, strlen(m->origin));
	fprintf(f, ",\n  \"r\": %d,\n  \"lora_alpha\": %s,\n  \"lora_dropout\": 0.0,\n  \"target_modules\": ", a->rank,
		alpha);
	write_target_modules(f, a, m);
	fputs(",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"init_lora_weights\": true,\n"
	      "  \"use_rslora\": false,\n  \"use_dora\": false,\n  \"modules_to_save\": null,\n"
	      "  \"layers_to_transform\": null,\n  \"rank_pattern\": {},\n  \"alpha_pattern\": {},\n"
	      "  \"inference_mode\": true\n}\n",
	      f);
	return 0;
}

typedef struct {
	const rl_adapter *a;
	const rl_model *m;
} peft_args;

static int config_member(FILE *f, const char *path, void *arg)
{
	(void)path;
	const peft_args *p = arg;
	return write_config(f, p->a, p->m);
}

static int tensors_member(FILE *f, const char *path, void *arg)
{
	const peft_args *p = arg;
	const rl_adapter *a = p->a;
	int n = 2 * a->ntargets, rc = -1;
	rl_st_entry *e = calloc((size_t)n, sizeof *e);
	char (*names)[200] = calloc((size_t)n, sizeof *names);
	if (!e || !names) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		char mod[160];
		module_path(g->name, mod, sizeof mod);
		for (int b = 0; b < 2; b++) {
			rl_st_entry *x = &e[2 * k + b];
			snprintf(names[2 * k + b], sizeof names[0], PREFIX "%s.lora_%c.weight", mod, b ? 'B' : 'A');
			x->name = names[2 * k + b];
			x->dtype = RL_F32;
			x->ndim = 2;
			x->shape[0] = b ? (uint64_t)g->OC : (uint64_t)a->rank;
			x->shape[1] = b ? (uint64_t)a->rank : (uint64_t)g->IC;
		}
	}
	const char *meta[4] = { META_CONTENT, a->base_content, META_SOURCE, a->base_source };
	peft_writer w = { a, p->m, e, path };
	rc = rl_safetensors_write(f, path, e, n, meta, 2, write_lora, &w);
done:
	free(e);
	free(names);
	return rc;
}

int rl_adapter_write_peft(const rl_adapter *a, const rl_model *m, const char *dir)
{
	struct stat st;
	if (a->ntensors != m->ntensors) {
		rl_seterr("%s: the adapter was made for another model than %s", dir, m->origin);
		return -1;
	}
	if (lstat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
		rl_seterr("%s: exists and is not a directory; not replacing it", dir);
		return -1;
	}
	rl_adir d;
	if (rl_adir_open(&d, dir))
		return -1;
	peft_args args = { a, m };
	if (rl_adir_write(&d, "adapter_config.json", config_member, &args) ||
	    rl_adir_write(&d, "adapter_model.safetensors", tensors_member, &args)) {
		rl_adir_abort(&d);
		return -1;
	}
	return rl_adir_commit(&d);
}

/* ---- reading ---- */

typedef struct {
	double alpha;
	int rank;
	const rl_json *targets; /* target_modules: an array of strings, or NULL (a regex, or absent) */
} peft_config;

static int read_config(const char *path, rl_json **root, peft_config *c)
{
	rl_json *j = rl_json_read(path);
	if (!j)
		return -1;
	if (j->type != RL_JSON_OBJECT) {
		rl_seterr("%s: not a JSON object", path);
		rl_json_free(j);
		return -1;
	}
	*root = j;
	const rl_json *v = rl_json_get(j, "peft_type");
	if (!v || v->type != RL_JSON_STRING || strcmp(v->string, "LORA")) {
		rl_seterr("%s: peft_type: %s%.40s%s, not \"LORA\"", path, v && v->type == RL_JSON_STRING ? "\"" : "",
			  !v ? "missing" : v->type == RL_JSON_STRING ? v->string : "not a string",
			  v && v->type == RL_JSON_STRING ? "\"" : "");
		return -1;
	}
	v = rl_json_get(j, "r");
	if (!v || v->type != RL_JSON_NUMBER || !v->is_integer || v->integer < 1 || v->integer > 4096) {
		rl_seterr("%s: r: missing or not an integer from 1 to 4096", path);
		return -1;
	}
	c->rank = (int)v->integer;
	v = rl_json_get(j, "lora_alpha");
	if (!v || v->type != RL_JSON_NUMBER || !isfinite(v->number)) {
		rl_seterr("%s: lora_alpha: missing or not a finite number", path);
		return -1;
	}
	c->alpha = v->number;
	int rslora = 0;
	v = rl_json_get(j, "use_rslora");
	if (v && v->type == RL_JSON_BOOL)
		rslora = v->boolean;
	if (rslora) /* peft scales by alpha/sqrt(r); we by alpha/r */
		c->alpha *= sqrt((double)c->rank);
	static const char *const off[] = { "fan_in_fan_out", "use_dora" };
	for (int i = 0; i < 2; i++) {
		v = rl_json_get(j, off[i]);
		if (v && v->type != RL_JSON_NULL && (v->type != RL_JSON_BOOL || v->boolean)) {
			rl_seterr("%s: %s: only false is supported", path, off[i]);
			return -1;
		}
	}
	v = rl_json_get(j, "bias");
	if (v && v->type != RL_JSON_NULL && (v->type != RL_JSON_STRING || strcmp(v->string, "none"))) {
		rl_seterr("%s: bias: only \"none\" is supported (LoRA without bias terms)", path);
		return -1;
	}
	static const char *const empty[] = { "rank_pattern", "alpha_pattern", "modules_to_save" };
	for (int i = 0; i < 3; i++) {
		v = rl_json_get(j, empty[i]);
		if (v && v->type != RL_JSON_NULL && !((v->type == RL_JSON_OBJECT || v->type == RL_JSON_ARRAY) && v->len == 0)) {
			rl_seterr("%s: %s: not supported (%s)", path, empty[i],
				  i < 2 ? "one rank and alpha for every target" : "only LoRA weights are read");
			return -1;
		}
	}
	v = rl_json_get(j, "target_modules");
	c->targets = NULL;
	if (v && v->type == RL_JSON_ARRAY) {
		for (size_t i = 0; i < v->len; i++)
			if (v->items[i]->type != RL_JSON_STRING) {
				rl_seterr("%s: target_modules[%zu]: not a string", path, i);
				return -1;
			}
		c->targets = v;
	} else if (v && v->type != RL_JSON_STRING && v->type != RL_JSON_NULL) {
		rl_seterr("%s: target_modules: neither a list of module names nor a regex", path);
		return -1;
	}
	return 0;
}

/* 1 when module path mod is one target_modules names (a name matches the
 * whole path or its end after a '.', as peft matches). */
static int listed(const rl_json *targets, const char *mod)
{
	size_t n = strlen(mod);
	for (size_t i = 0; i < targets->len; i++) {
		const char *t = targets->items[i]->string;
		size_t k = strlen(t);
		if (strcmp(mod, t) == 0 || (k < n && mod[n - k - 1] == '.' && strcmp(mod + n - k, t) == 0))
			return 1;
	}
	return 0;
}

/* For a tensor named PREFIX MODULE ".lora_A.weight" (or _B): the model
 * tensor it adapts and which of A (0) and B (1), or -1. */
static int lora_tensor(const rl_model *m, const char *name, int *is_b, char *mod, size_t size)
{
	size_t n = strlen(name), p = strlen(PREFIX), s = strlen(".lora_A.weight");
	if (n <= p + s || strncmp(name, PREFIX, p) || (strcmp(name + n - s, ".lora_A.weight") &&
						       strcmp(name + n - s, ".lora_B.weight")))
		return -1;
	*is_b = name[n - s + 6] == 'B';
	if (n - p - s + 8 > size)
		return -1;
	char hf[256], ours[64];
	snprintf(mod, size, "%.*s", (int)(n - p - s), name + p);
	snprintf(hf, sizeof hf, "%s.weight", mod);
	if (!rl_hf_our_name(hf, ours))
		return -1;
	int k = rl_model_tensor_index(m, ours);
	if (k < 0 || m->tensors[k].ndim != 2 || &m->tensors[k] == m->token_embd)
		return -1;
	return k;
}

int rl_adapter_read_peft(const char *dir, const rl_model *m, int flags, rl_adapter *a)
{
	memset(a, 0, sizeof *a);
	size_t dlen = strlen(dir);
	char *cpath = malloc(dlen + 32), *spath = malloc(dlen + 40), *pattern = NULL;
	rl_json *root = NULL;
	rl_safetensors st = { 0 };
	int *a_of = calloc((size_t)m->ntensors, sizeof *a_of), *b_of = calloc((size_t)m->ntensors, sizeof *b_of);
	int rc = -1, opened = 0;
	if (!cpath || !spath || !a_of || !b_of) {
		rl_seterr("%s: out of memory", dir);
		goto done;
	}
	snprintf(cpath, dlen + 32, "%s/adapter_config.json", dir);
	snprintf(spath, dlen + 40, "%s/adapter_model.safetensors", dir);
	peft_config c;
	if (read_config(cpath, &root, &c))
		goto done;
	if (access(spath, F_OK) != 0) {
		char bin[4200];
		snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir);
		if (access(bin, F_OK) == 0) {
			rl_seterr("%s: a pickle; only adapter_model.safetensors is read (save with safe_serialization=True)", bin);
			goto done;
		}
	}
	if (rl_safetensors_open(&st, spath))
		goto done;
	opened = 1;

	/* which model tensors the file adapts; index + 1 in a_of / b_of */
	size_t plen = 1;
	int ntargets = 0;
	for (int i = 0; i < st.ntensors; i++) {
		const rl_st_tensor *t = &st.tensors[i];
		char mod[200];
		int is_b, k = lora_tensor(m, t->name, &is_b, mod, sizeof mod);
		if (k < 0) {
			rl_seterr("%s: tensor %.200s: not " PREFIX "MODULE.lora_A.weight or .lora_B.weight of a linear layer of %s",
				  spath, t->name, m->origin);
			goto done;
		}
		if (c.targets && !listed(c.targets, mod)) {
			rl_seterr("%s: tensor %.200s: module %s is not among %s's target_modules", spath, t->name, mod, cpath);
			goto done;
		}
		(is_b ? b_of : a_of)[k] = i + 1;
	}
	for (int k = 0; k < m->ntensors; k++) {
		if (!a_of[k] != !b_of[k]) {
			rl_seterr("%s: tensor %s is there without its lora_%c", spath,
				  st.tensors[(a_of[k] ? a_of[k] : b_of[k]) - 1].name, a_of[k] ? 'B' : 'A');
			goto done;
		}
		if (a_of[k]) {
			ntargets++;
			plen += strlen(m->tensors[k].name) + 1;
		}
	}
	if (ntargets == 0) {
		rl_seterr("%s: no LoRA tensors", spath);
		goto done;
	}
	/* the targets by name, as a pattern: "blk.0.ffn_gate,blk.0.ffn_up,..." */
	if (!(pattern = malloc(plen))) {
		rl_seterr("out of memory");
		goto done;
	}
	pattern[0] = 0;
	for (int k = 0; k < m->ntensors; k++)
		if (a_of[k]) {
			size_t n = strlen(m->tensors[k].name), at = strlen(pattern);
			if (n > 7 && strcmp(m->tensors[k].name + n - 7, ".weight") == 0)
				n -= 7;
			snprintf(pattern + at, plen - at, "%s%.*s", at ? "," : "", (int)n, m->tensors[k].name);
		}
	if (rl_adapter_new(a, m, pattern, c.rank, c.alpha)) {
		rl_seterr("%s: %s", dir, rl_err());
		goto done;
	}
	int D = m->cfg.head_dim;
	for (int g = 0; g < a->ntargets; g++) {
		rl_lora_target *x = &a->targets[g];
		for (int b = 0; b < 2; b++) {
			const rl_st_tensor *t = &st.tensors[(b ? b_of : a_of)[x->tensor] - 1];
			uint64_t rows = b ? (uint64_t)x->OC : (uint64_t)a->rank, cols = b ? (uint64_t)a->rank : (uint64_t)x->IC;
			if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
				rl_seterr("%s: tensor %s: shape [%llu, %llu], but r %d (%s) and %s (%d, %d) need [%llu, %llu]",
					  spath, t->name, (unsigned long long)t->shape[0],
					  (unsigned long long)(t->ndim > 1 ? t->shape[1] : 0), a->rank, cpath, x->name, x->OC,
					  x->IC, (unsigned long long)rows, (unsigned long long)cols);
				goto done;
			}
			if (t->dtype < 0) {
				rl_seterr("%s: tensor %s: dtype %s; LoRA weights are read as F32, F16 or BF16", spath, t->name,
					  t->st_dtype);
				goto done;
			}
			int perm = b && rl_hf_rope_permuted(m, x->name);
			size_t row_bytes = rl_row_bytes((rl_dtype)t->dtype, cols);
			for (uint64_t r = 0; r < rows; r++) { /* our row r is HF's rl_hf_half_row(r) */
				uint64_t from = perm ? rl_hf_half_row(r, D) : r;
				rl_dtypes[t->dtype].to_float((const char *)t->data + from * row_bytes,
							    (b ? x->b : x->a) + r * cols, cols);
			}
		}
	}
	if (rl_adapter_check_finite(a, spath))
		goto done;
	const char *content = rl_safetensors_meta(&st, META_CONTENT), *source = rl_safetensors_meta(&st, META_SOURCE);
	if (!content != !source) {
		rl_seterr("%s: metadata %s without %s", spath, content ? META_CONTENT : META_SOURCE,
			  content ? META_SOURCE : META_CONTENT);
		goto done;
	}
	a->forced = content && (strcmp(content, a->base_content) || strcmp(source, a->base_source));
	if (a->forced && !(flags & RL_ADAPTER_ANY_BASE)) {
		rl_seterr("%s: metadata %s: trained on the model of content %.12s (source %.12s), but %s has content %.12s (source %.12s)",
			  spath, META_CONTENT, content, source, m->origin, a->base_content, a->base_source);
		goto done;
	}
	rc = 0;
done:
	if (rc)
		rl_adapter_free(a);
	if (opened)
		rl_safetensors_close(&st);
	rl_json_free(root);
	free(cpath);
	free(spath);
	free(pattern);
	free(a_of);
	free(b_of);
	return rc;
}
