/* hf_write.c: a model written as a Hugging Face directory (see hf.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "afile.h"
#include "err.h"
#include "hf.h"
#include "json.h"
#include "safetensors.h"

/* A number as JSON, in the fewest digits that read back to the same double. */
static void write_number(FILE *f, double v)
{
	char buf[40];
	for (int digits = 6; digits <= 17; digits++) {
		snprintf(buf, sizeof buf, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	/* a float written as one: 10000.0, not 10000 (as HF's configs have it) */
	fprintf(f, "%s%s", buf, strpbrk(buf, ".eEn") ? "" : ".0");
}

static const char *torch_dtype(rl_dtype dt)
{
	return dt == RL_F32 ? "float32" : dt == RL_F16 ? "float16" : "bfloat16";
}

/* What HF's classes for m->arch compute, checked against the config. */
static int check_arch(const rl_model *m)
{
	const rl_config *c = &m->cfg;
	const char *a = m->arch;
	if (strcmp(a, "llama") && strcmp(a, "qwen2") && strcmp(a, "qwen3")) {
		rl_seterr("architecture \"%s\": only llama, qwen2 and qwen3 are written", a);
		return -1;
	}
	int want_norm = strcmp(a, "qwen3") == 0, want_bias = strcmp(a, "qwen2") == 0;
	if (c->qk_norm != want_norm || c->qkv_bias != want_bias) {
		rl_seterr("a %s model %s q/k norms and %s q/k/v biases, which HF's %s class does not compute", a,
			  c->qk_norm ? "with" : "without", c->qkv_bias ? "with" : "without", a);
		return -1;
	}
	return 0;
}

static int write_config(FILE *f, const rl_model *m, rl_dtype dtype)
{
	const rl_config *c = &m->cfg;
	const char *cls = !strcmp(m->arch, "qwen2") ? "Qwen2ForCausalLM"
			  : !strcmp(m->arch, "qwen3") ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
	fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", cls, m->arch);
	fprintf(f, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
		   "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
		   "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n",
		c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->seq_len);
	fputs("  \"rope_theta\": ", f);
	write_number(f, c->rope_theta);
	fputs(",\n  \"rms_norm_eps\": ", f);
	write_number(f, c->norm_eps);
	fputs(",\n  \"rope_scaling\": ", f);
	if (c->rope_scaling == RL_ROPE_SCALING_NONE) {
		fputs("null", f);
	} else {
		fputs("{\"rope_type\": ", f);
		fputs(c->rope_scaling == RL_ROPE_SCALING_LINEAR ? "\"linear\"" : "\"llama3\"", f);
		fputs(", \"factor\": ", f);
		write_number(f, c->rope_factor);
		if (c->rope_scaling == RL_ROPE_SCALING_LLAMA3) {
			fputs(", \"low_freq_factor\": ", f);
			write_number(f, c->rope_low_freq_factor);
			fputs(", \"high_freq_factor\": ", f);
			write_number(f, c->rope_high_freq_factor);
			fprintf(f, ", \"original_max_position_embeddings\": %d", c->rope_original_ctx);
		}
		fputc('}', f);
	}
	fprintf(f, ",\n  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n  \"attention_bias\": %s,\n"
		   "  \"attention_dropout\": 0.0,\n",
		c->tied_embeddings ? "true" : "false", c->qkv_bias ? "true" : "false");
	if (!strcmp(m->arch, "llama"))
		fputs("  \"mlp_bias\": false,\n", f);
	else
		fputs("  \"use_sliding_window\": false,\n", f);
	fputs("  \"bos_token_id\": ", f);
	fprintf(f, m->tok.bos_id >= 0 ? "%d" : "null", m->tok.bos_id);
	fputs(",\n  \"eos_token_id\": ", f);
	fprintf(f, m->tok.eos_id >= 0 ? "%d" : "null", m->tok.eos_id);
	fprintf(f, ",\n  \"use_cache\": true,\n  \"torch_dtype\": \"%s\"\n}\n", torch_dtype(dtype));
	return 0;
}

/* ---- the weights ---- */

typedef struct {
	const rl_model *m;
	const rl_st_entry *entries; /* (m->ntensors) entry k is tensor k */
	rl_dtype dtype;
	float *row;                 /* scratch, the longest row in f32 */
	void *out;                  /* scratch, the longest row converted */
	const char *path;
} weight_writer;

int rl_hf_rope_permuted(const rl_model *m, const char *name)
{
	if (m->cfg.rope_style != RL_ROPE_INTERLEAVED)
		return 0;
	const char *dot = strncmp(name, "blk.", 4) == 0 ? strchr(name + 4, '.') : NULL;
	static const char *const names[] = { ".attn_q.weight", ".attn_k.weight", ".attn_q.bias",
					     ".attn_k.bias", ".attn_q_norm.weight", ".attn_k_norm.weight" };
	for (size_t i = 0; dot && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(dot, names[i]) == 0)
			return 1;
	return 0;
}

static int write_weights(void *arg, const rl_st_entry *e, FILE *f)
{
	weight_writer *w = arg;
	const rl_tensor *t = &w->m->tensors[e - w->entries];
	int D = w->m->cfg.head_dim, perm = rl_hf_rope_permuted(w->m, t->name);
	uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
	size_t row_bytes = rl_row_bytes(t->dtype, cols), out_bytes = rl_row_bytes(w->dtype, cols);
	for (uint64_t o = 0; o < rows; o++) {
		uint64_t r = perm && t->ndim == 2 ? rl_hf_pair_row(o, D) : o;
		rl_dtypes[t->dtype].to_float((const char *)t->data + r * row_bytes, w->row, cols);
		if (perm && t->ndim == 1) { /* a bias or norm: its elements move */
			float *moved = w->out; /* free until the conversion below */
			for (uint64_t k = 0; k < cols; k++)
				moved[k] = w->row[rl_hf_pair_row(k, D)];
			memcpy(w->row, moved, cols * sizeof(float));
		}
		for (uint64_t k = 0; k < cols; k++)
			if (!isfinite(w->row[k]) || (w->dtype == RL_F16 && fabsf(w->row[k]) > 65504.0f)) {
				rl_seterr("%s: tensor %s: value %g at [%llu, %llu] %s", w->path, e->name, w->row[k],
					  (unsigned long long)r, (unsigned long long)k,
					  isfinite(w->row[k]) ? "overflows f16 (write bf16 or f32)" : "is not finite");
				return -1;
			}
		const void *src = w->row;
		if (w->dtype != RL_F32) {
			rl_dtypes[w->dtype].from_float(w->row, w->out, cols);
			src = w->out;
		}
		if (fwrite(src, 1, out_bytes, f) != out_bytes) {
			rl_seterr("%s: %s", w->path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int write_safetensors(FILE *f, const char *path, const rl_model *m, rl_dtype dtype)
{
	int n = m->ntensors, rc = -1;
	rl_st_entry *e = calloc((size_t)n, sizeof *e);
	char (*names)[160] = calloc((size_t)n, sizeof *names);
	uint64_t longest = 1;
	for (int i = 0; i < n; i++)
		if (m->tensors[i].shape[m->tensors[i].ndim - 1] > longest)
			longest = m->tensors[i].shape[m->tensors[i].ndim - 1];
	weight_writer w = { m, e, dtype, malloc(longest * sizeof(float)), malloc(longest * sizeof(float)), path };
	if (!e || !names || !w.row || !w.out) {
		rl_seterr("%s: out of memory", path);
		goto done;
	}
	for (int i = 0; i < n; i++) {
		const rl_tensor *t = &m->tensors[i];
		rl_hf_tensor_name(t->name, names[i], sizeof names[i]);
		e[i].name = names[i];
		e[i].dtype = dtype;
		e[i].ndim = t->ndim;
		e[i].shape[0] = t->shape[0];
		e[i].shape[1] = t->shape[1];
	}
	rc = rl_safetensors_write(f, path, e, n, NULL, 0, write_weights, &w);
done:
	free(e);
	free(names);
	free(w.row);
	free(w.out);
	return rc;
}

/* ---- the directory ---- */

typedef struct {
	const rl_model *m;
	rl_dtype dtype;
	const char *text;          /* a file already made in memory */
	size_t len;
} hf_file;

static int config_file(FILE *f, const char *path, void *arg)
{
	(void)path;
	const hf_file *h = arg;
	return write_config(f, h->m, h->dtype);
}

static int weights_file(FILE *f, const char *path, void *arg)
{
	const hf_file *h = arg;
	return write_safetensors(f, path, h->m, h->dtype);
}

static int text_file(FILE *f, const char *path, void *arg)
{
	const hf_file *h = arg;
	if (fwrite(h->text, 1, h->len, f) != h->len) {
		rl_seterr("%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int rl_model_write_hf(const rl_model *m, const char *dir, rl_dtype dtype)
{
	struct stat st;
	if (dtype != RL_F32 && dtype != RL_F16 && dtype != RL_BF16) {
		rl_seterr("%s: dtype %s: a Hugging Face export is f32, f16 or bf16", dir, rl_dtypes[dtype].name);
		return -1;
	}
	if (lstat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
		rl_seterr("%s: exists and is not a directory; not replacing it", dir);
		return -1;
	}
	if (m->adapter) {
		rl_seterr("%s: %s has an unmerged adapter: merge it (lora-merge), or write it as a PEFT directory", dir,
			  m->origin);
		return -1;
	}
	if (check_arch(m)) {
		rl_seterr("%s: %s", dir, rl_err());
		return -1;
	}
	/* the tokenizer first: a tokenizer the format cannot hold fails before the weights are written */
	char *json = NULL, *config = NULL;
	size_t njson = 0, nconfig = 0;
	FILE *fj = open_memstream(&json, &njson), *fc = open_memstream(&config, &nconfig);
	int rc = !fj || !fc ? -1 : rl_tokenizer_write_hf(&m->tok, fj, fc, m->cfg.seq_len);
	if (!fj || !fc)
		rl_seterr("out of memory");
	if (fj)
		fclose(fj);
	if (fc)
		fclose(fc);
	if (rc) {
		rl_seterr("%s: tokenizer: %s", dir, rl_err());
		free(json);
		free(config);
		return -1;
	}
	rl_adir d;
	if (rl_adir_open(&d, dir)) {
		free(json);
		free(config);
		return -1;
	}
	hf_file h = { m, dtype, NULL, 0 }, tj = { m, dtype, json, njson }, tc = { m, dtype, config, nconfig };
	rc = rl_adir_write(&d, "config.json", config_file, &h) || rl_adir_write(&d, "model.safetensors", weights_file, &h) ||
	     rl_adir_write(&d, "tokenizer.json", text_file, &tj) ||
	     rl_adir_write(&d, "tokenizer_config.json", text_file, &tc);
	free(json);
	free(config);
	if (rc) {
		rl_adir_abort(&d);
		return -1;
	}
	return rl_adir_commit(&d);
}
