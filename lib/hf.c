/* hf.c: Hugging Face model directories (config.json + safetensors + tokenizer.json). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "hf.h"
#include "json.h"
#include "safetensors.h"

/* HF's parameter names and ours (GGUF's), per layer and whole-model. */
static const char *const layer_names[][2] = {
	{ "input_layernorm.weight", "attn_norm.weight" },
	{ "self_attn.q_proj.weight", "attn_q.weight" },
	{ "self_attn.k_proj.weight", "attn_k.weight" },
	{ "self_attn.v_proj.weight", "attn_v.weight" },
	{ "self_attn.q_proj.bias", "attn_q.bias" },
	{ "self_attn.k_proj.bias", "attn_k.bias" },
	{ "self_attn.v_proj.bias", "attn_v.bias" },
	{ "self_attn.q_norm.weight", "attn_q_norm.weight" },
	{ "self_attn.k_norm.weight", "attn_k_norm.weight" },
	{ "self_attn.o_proj.weight", "attn_output.weight" },
	{ "post_attention_layernorm.weight", "ffn_norm.weight" },
	{ "mlp.gate_proj.weight", "ffn_gate.weight" },
	{ "mlp.up_proj.weight", "ffn_up.weight" },
	{ "mlp.down_proj.weight", "ffn_down.weight" },
};
static const char *const model_names[][2] = {
	{ "model.embed_tokens.weight", "token_embd.weight" },
	{ "model.norm.weight", "output_norm.weight" },
	{ "lm_head.weight", "output.weight" },
};

/* Our name for an HF tensor name into out: 1, or 0 when the name is none we know. */
int rl_hf_our_name(const char *hf, char out[64])
{
	for (size_t i = 0; i < sizeof model_names / sizeof model_names[0]; i++)
		if (strcmp(hf, model_names[i][0]) == 0) {
			snprintf(out, 64, "%s", model_names[i][1]);
			return 1;
		}
	unsigned layer;
	int n = 0;
	if (sscanf(hf, "model.layers.%u.%n", &layer, &n) != 1 || n == 0 || layer > 100000 ||
	    !(hf[13] >= '0' && hf[13] <= '9'))
		return 0;
	for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
		if (strcmp(hf + n, layer_names[i][0]) == 0) {
			snprintf(out, 64, "blk.%u.%s", layer, layer_names[i][1]);
			return 1;
		}
	return 0;
}

/* The HF name of one of our tensors, for messages. */
void rl_hf_tensor_name(const char *ours, char *out, size_t size)
{
	for (size_t i = 0; i < sizeof model_names / sizeof model_names[0]; i++)
		if (strcmp(ours, model_names[i][1]) == 0) {
			snprintf(out, size, "%s", model_names[i][0]);
			return;
		}
	unsigned layer;
	int n = 0;
	if (sscanf(ours, "blk.%u.%n", &layer, &n) == 1 && n > 0)
		for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
			if (strcmp(ours + n, layer_names[i][1]) == 0) {
				snprintf(out, size, "model.layers.%u.%s", layer, layer_names[i][0]);
				return;
			}
	snprintf(out, size, "%s", ours);
}

/* Tensors a checkpoint may hold that the model does not use: RoPE's inverse
 * frequencies (older Llama checkpoints), and the classifier of a model whose
 * config ties it to the embedding (HF then ignores it too). */
static int ignorable(const char *hf, const rl_config *c)
{
	const char *suffix = ".rotary_emb.inv_freq";
	size_t n = strlen(hf), k = strlen(suffix);
	return (n > k && strcmp(hf + n - k, suffix) == 0) || (c->tied_embeddings && strcmp(hf, "lm_head.weight") == 0);
}

/* 1 when n values of dtype at p are all finite; *bad the first that is not. */
static int all_finite(rl_dtype dt, const void *p, size_t n, size_t *bad)
{
	for (size_t i = 0; i < n; i++) {
		int finite;
		if (dt == RL_F32) {
			float f;
			memcpy(&f, (const char *)p + 4 * i, 4);
			finite = isfinite(f);
		} else {
			uint16_t h;
			memcpy(&h, (const char *)p + 2 * i, 2);
			finite = dt == RL_F16 ? (h & 0x7c00) != 0x7c00 : (h & 0x7f80) != 0x7f80;
		}
		if (!finite) {
			*bad = i;
			return 0;
		}
	}
	return 1;
}

/* Points t at st's tensor s after checking it: dtype, shape, finite values.
 * Vectors are widened to f32 in memory of their own; matrices stay in the
 * mapping unless misaligned for their dtype, then they are copied. */
static int take_tensor(rl_tensor *t, const rl_st_tensor *s, const char *file)
{
	if (s->dtype < 0) {
		rl_seterr("%s: tensor %s: dtype %s is not supported (F32, F16 or BF16)", file, s->name, s->st_dtype);
		return -1;
	}
	if (s->ndim != t->ndim || s->shape[0] != t->shape[0] || (t->ndim == 2 && s->shape[1] != t->shape[1])) {
		char have[96] = "", want[64];
		for (int i = 0; i < s->ndim; i++)
			snprintf(have + strlen(have), sizeof have - strlen(have), "%s%llu", i ? ", " : "",
				 (unsigned long long)s->shape[i]);
		if (t->ndim == 2)
			snprintf(want, sizeof want, "%llu, %llu", (unsigned long long)t->shape[0],
				 (unsigned long long)t->shape[1]);
		else
			snprintf(want, sizeof want, "%llu", (unsigned long long)t->shape[0]);
		rl_seterr("%s: tensor %s: shape [%s] disagrees with config.json, which makes it [%s]", file, s->name,
			  have, want);
		return -1;
	}
	rl_dtype dt = (rl_dtype)s->dtype;
	size_t n = (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1), bad;
	if (!all_finite(dt, s->data, n, &bad)) {
		rl_seterr("%s: tensor %s holds a non-finite value at element %zu", file, s->name, bad);
		return -1;
	}
	size_t elsize = dt == RL_F32 ? 4 : 2;
	if (t->ndim == 1) {
		float *f;
		if (posix_memalign((void **)&f, 64, n * sizeof(float))) {
			rl_seterr("%s: tensor %s: out of memory", file, s->name);
			return -1;
		}
		if (dt == RL_F32)
			memcpy(f, s->data, n * sizeof(float));
		else
			for (size_t i = 0; i < n; i++) {
				uint16_t h;
				memcpy(&h, (const char *)s->data + 2 * i, 2);
				f[i] = dt == RL_F16 ? rl_f16_to_f32(h) : rl_bf16_to_f32(h);
			}
		t->data = f;
		t->dtype = RL_F32;
		t->bytes = n * sizeof(float);
		return 0;
	}
	t->dtype = dt;
	t->bytes = s->bytes;
	if ((uintptr_t)s->data % elsize == 0) {
		t->data = (void *)s->data;
		return 0;
	}
	if (posix_memalign(&t->data, 64, s->bytes)) {
		t->data = NULL;
		rl_seterr("%s: tensor %s: out of memory", file, s->name);
		return -1;
	}
	memcpy(t->data, s->data, s->bytes);
	return 0;
}

/* The shard files dir/model.safetensors.index.json names, each once, into
 * *files (allocated strings; caller frees), and the index into *index. */
static int read_index(const char *path, rl_json **index, char ***files, int *nfiles)
{
	rl_json *j = rl_json_read(path);
	if (!j)
		return -1;
	const rl_json *wm = rl_json_get(j, "weight_map");
	if (j->type != RL_JSON_OBJECT || !wm || wm->type != RL_JSON_OBJECT || wm->len == 0) {
		rl_seterr("%s: weight_map: missing, empty or not an object", path);
		rl_json_free(j);
		return -1;
	}
	char **f = calloc(wm->len, sizeof *f);
	int n = 0;
	if (!f) {
		rl_seterr("%s: out of memory", path);
		rl_json_free(j);
		return -1;
	}
	for (size_t i = 0; i < wm->len; i++) {
		const rl_json *v = wm->items[i];
		if (v->type != RL_JSON_STRING || v->len == 0 || memchr(v->string, '/', v->len) ||
		    memchr(v->string, 0, v->len) || strcmp(v->string, "..") == 0 || strcmp(v->string, ".") == 0) {
			rl_seterr("%s: weight_map: %.200s: not the name of a file in the same directory", path, wm->keys[i]);
			goto fail;
		}
		int k = 0;
		while (k < n && strcmp(f[k], v->string))
			k++;
		if (k == n && !(f[n++] = strdup(v->string))) {
			rl_seterr("%s: out of memory", path);
			goto fail;
		}
	}
	*index = j;
	*files = f;
	*nfiles = n;
	return 0;
fail:
	for (int k = 0; k < n; k++)
		free(f[k]);
	free(f);
	rl_json_free(j);
	return -1;
}

int rl_model_load_hf(const char *dir, rl_model *m)
{
	char path[4096];
	int rc = -1, nfiles = 0;
	rl_safetensors *st = NULL;
	rl_json *index = NULL;
	char **files = NULL;
	snprintf(path, sizeof path, "%s/config.json", dir);
	if (rl_config_from_json(path, &m->cfg, m->arch))
		goto done;
	if (rl_model_layout(m)) {
		rl_seterr("%s: %s", path, rl_err());
		goto done;
	}

	/* the weights: one file, or the shards of an index */
	char single[4096];
	snprintf(single, sizeof single, "%s/model.safetensors", dir);
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	if (access(single, F_OK) == 0 || access(path, F_OK) != 0) {
		if (access(single, F_OK) != 0) {
			rl_seterr("%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
			goto done;
		}
		if (!(files = calloc(1, sizeof *files)) || !(files[0] = strdup("model.safetensors"))) {
			rl_seterr("out of memory");
			goto done;
		}
		nfiles = 1;
	} else if (read_index(path, &index, &files, &nfiles)) {
		goto done;
	}
	if (!(st = calloc((size_t)nfiles, sizeof *st)) || !(m->mappings = calloc((size_t)nfiles, sizeof *m->mappings))) {
		rl_seterr("out of memory");
		goto done;
	}
	for (int f = 0; f < nfiles; f++) {
		char fpath[4400];
		snprintf(fpath, sizeof fpath, "%s/%s", dir, files[f]);
		if (rl_safetensors_open(&st[f], fpath))
			goto done;
		/* the model keeps the mapping; the tensors may point into it */
		m->mappings[m->nmappings].addr = st[f].map;
		m->mappings[m->nmappings++].size = st[f].size;
		st[f].map = NULL;
	}
	if (index) {
		/* every tensor the index names is where it says */
		const rl_json *wm = rl_json_get(index, "weight_map");
		for (size_t i = 0; i < wm->len; i++) {
			int f = 0;
			while (strcmp(files[f], wm->items[i]->string))
				f++;
			if (!rl_safetensors_find(&st[f], wm->keys[i])) {
				rl_seterr("%s: weight_map puts %.200s in %s, which does not hold it", path, wm->keys[i],
					  files[f]);
				goto done;
			}
		}
	}
	/* every tensor of every file is one of the model's, once */
	for (int f = 0; f < nfiles; f++)
		for (int i = 0; i < st[f].ntensors; i++) {
			const rl_st_tensor *s = &st[f].tensors[i];
			char name[64];
			int k = rl_hf_our_name(s->name, name) ? rl_model_tensor_index(m, name) : -1;
			if (k < 0 && ignorable(s->name, &m->cfg))
				continue;
			if (k < 0) {
				rl_seterr("%s: tensor %.200s: not a tensor of a %s model as config.json describes it",
					  st[f].path, s->name, m->arch);
				goto done;
			}
			if (m->tensors[k].data) {
				rl_seterr("%s: tensor %.200s appears in more than one file", st[f].path, s->name);
				goto done;
			}
			if (take_tensor(&m->tensors[k], s, st[f].path))
				goto done;
		}
	for (int i = 0; i < m->ntensors; i++)
		if (!m->tensors[i].data) {
			char name[160];
			rl_hf_tensor_name(m->tensors[i].name, name, sizeof name);
			rl_seterr("%s: tensor %s is missing from %s", dir, name,
				  index ? "the files model.safetensors.index.json names" : "model.safetensors");
			goto done;
		}

	/* the tokenizer: tokenizer.json, else (said in the origin) byte-level */
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	struct stat sb;
	if (stat(path, &sb) == 0 || errno != ENOENT) {
		if (rl_tokenizer_load_hf(&m->tok, dir))
			goto done;
	} else {
		if (m->cfg.vocab_size < 259) {
			rl_seterr("%s: no tokenizer.json, and vocab_size %d is too small for the byte-level tokenizer (259)",
				  dir, m->cfg.vocab_size);
			goto done;
		}
		if (rl_tokenizer_byte_level(&m->tok, m->cfg.vocab_size))
			goto done;
		snprintf(m->origin, sizeof m->origin, "%s (no tokenizer.json: byte-level tokenizer)", dir);
	}
	if (m->tok.vocab_size > m->cfg.vocab_size) {
		rl_seterr("%s: the tokenizer has %d tokens, more than config.json's vocab_size %d", path,
			  m->tok.vocab_size, m->cfg.vocab_size);
		goto done;
	}
	if (rl_model_hash_f32(m, m->source))
		goto done;
	rc = 0;
done:
	for (int f = 0; st && f < nfiles; f++)
		rl_safetensors_close(&st[f]);
	free(st);
	for (int f = 0; f < nfiles; f++)
		free(files[f]);
	free(files);
	rl_json_free(index);
	if (rc)
		rl_model_free(m);
	return rc;
}
