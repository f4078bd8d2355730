/* test_peft: LoRA adapters as PEFT directories (lib/peft.h). An adapter on
 * stories260K (interleaved RoPE: B's rows on q and k move) and on the Qwen3
 * fixture is written and read back to the same numbers and logits as its
 * adapter stream; a directory without our identity (as peft writes it, here
 * in bf16) is accepted on its shapes; a mismatched base, rank or shape, and
 * damaged or unsupported directories are refused with an error naming the
 * file and the field or tensor. Run from the repository root. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "peft.h"
#include "safetensors.h"
#include "sample.h"
#include "t.h"

static char tmpdir[256];

static int make_adapter(const rl_model *m, rl_adapter *a, uint64_t seed)
{
	if (rl_adapter_new(a, m, "attn_q,attn_k,attn_output,ffn_gate,ffn_up", 4, 8.0))
		return -1;
	rl_adapter_init_standard(a, seed);
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int k = 0; k < a->ntargets; k++)
		for (size_t i = 0; i < (size_t)a->targets[k].OC * a->rank; i++)
			a->targets[k].b[i] = 0.05f * ((float)(rl_splitmix64(&s) >> 40) / 8388608.0f - 1.0f);
	return 0;
}

static float *logits_of(const rl_model *m, int T)
{
	int tokens[16] = { 1, 403, 407, 261, 378, 432, 322, 261, 370, 272, 414, 276, 5, 17, 200, 33 };
	for (int t = 0; t < T; t++)
		tokens[t] %= m->cfg.vocab_size < m->tok.vocab_size ? m->cfg.vocab_size : m->tok.vocab_size;
	float *out = malloc((size_t)T * m->cfg.vocab_size * sizeof(float));
	rl_forward *f = rl_forward_new(m, T, T);
	rl_seq s = { .ntok = T, .tokens = tokens };
	if (!out || !f || rl_forward_run(f, NULL, 1, &s, out)) {
		free(out);
		out = NULL;
	}
	rl_forward_free(f);
	return out;
}

static char *path_in(const char *dir, const char *name)
{
	static char p[4][600];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* a copy of directory src (files only) as dst */
static void copy_dir(const char *src, const char *dst)
{
	char cmd[2200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
	if (system(cmd) != 0)
		fprintf(stderr, "%s failed\n", cmd);
}

/* dir's adapter_config.json with the first "from" replaced by "to" */
static int edit_config(const char *dir, const char *from, const char *to)
{
	size_t len;
	char *text = rl_read_file(path_in(dir, "adapter_config.json"), &len), *at = text ? strstr(text, from) : NULL;
	if (!at) {
		free(text);
		return -1;
	}
	char *out = malloc(len + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	int rc = write_text(path_in(dir, "adapter_config.json"), out);
	free(out);
	free(text);
	return rc;
}

/* rewrites dir's safetensors file: in dtype, without our metadata when bare,
 * and without tensors whose name contains drop */
typedef struct {
	const rl_safetensors *st;
	const rl_st_entry *e;
} copier;

static int copy_tensor(void *arg, const rl_st_entry *e, FILE *f)
{
	const copier *c = arg;
	const rl_st_tensor *t = rl_safetensors_find(c->st, e->name);
	if (!t) /* the extra tensor: the first one's data */
		t = &c->st->tensors[0];
	size_t n = t->bytes / 4;
	float *x = malloc(t->bytes + 1);
	memcpy(x, t->data, t->bytes);
	uint16_t *h = malloc(2 * n + 1);
	if (e->dtype == RL_F32)
		fwrite(x, 4, n, f);
	else {
		rl_dtypes[e->dtype].from_float(x, h, n);
		fwrite(h, 2, n, f);
	}
	free(x);
	free(h);
	return 0;
}

static int rewrite_tensors(const char *dir, rl_dtype dtype, int bare, const char *drop, const char *extra)
{
	const char *path = path_in(dir, "adapter_model.safetensors");
	rl_safetensors st;
	if (rl_safetensors_open(&st, path))
		return -1;
	rl_st_entry e[64];
	int n = 0;
	for (int i = 0; i < st.ntensors && n < 63; i++) {
		if (drop && strstr(st.tensors[i].name, drop))
			continue;
		e[n] = (rl_st_entry){ .name = st.tensors[i].name, .dtype = dtype, .ndim = st.tensors[i].ndim };
		e[n].shape[0] = st.tensors[i].shape[0];
		e[n].shape[1] = st.tensors[i].shape[1];
		n++;
	}
	if (extra) { /* a copy of the first tensor under another name */
		e[n] = e[0];
		e[n].name = extra;
		n++;
	}
	const char *meta[4] = { "recover.base_content", rl_safetensors_meta(&st, "recover.base_content"),
				"recover.base_source", rl_safetensors_meta(&st, "recover.base_source") };
	char tmp[700];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "wb");
	copier c = { &st, e };
	int rc = -1;
	if (f) {
		rc = rl_safetensors_write(f, tmp, e, n, bare ? NULL : meta, bare ? 0 : 2, copy_tensor, &c);
		rc |= fclose(f);
	}
	rl_safetensors_close(&st);
	return rc || rename(tmp, path) ? -1 : 0;
}

/* the adapter read back from dir equals a (exactly, or to bf16 rounding) */
static int same_adapter(const rl_adapter *a, const rl_adapter *b, int bf16)
{
	if (a->rank != b->rank || a->alpha != b->alpha || a->ntargets != b->ntargets || a->nparams != b->nparams)
		return 0;
	for (int k = 0; k < a->ntargets; k++)
		if (strcmp(a->targets[k].name, b->targets[k].name))
			return 0;
	for (size_t i = 0; i < a->nparams; i++) {
		float want = bf16 ? rl_bf16_to_f32(rl_f32_to_bf16(a->params[i])) : a->params[i];
		if (b->params[i] != want)
			return 0;
	}
	return 1;
}

static void round_trip(const char *model, const char *name)
{
	rl_model m, with_dir, with_stream;
	rl_adapter a, b;
	char dir[512], stream[512], arg[1100], test[160];
	snprintf(dir, sizeof dir, "%s/%s_peft", tmpdir, name);
	snprintf(stream, sizeof stream, "%s/%s.msgpack", tmpdir, name);
	snprintf(test, sizeof test, "%s_peft_written", name);
	if (rl_model_load(model, NULL, &m) || make_adapter(&m, &a, 9) || rl_adapter_write_peft(&a, &m, dir)) {
		CHECK(0, test, "%s", rl_err());
		return;
	}
	CHECK(1, test, "");
	rl_writer *w = rl_writer_open(stream);
	int ok = w && rl_adapter_write(&a, w, "test_peft") == 0 && rl_write_end(w) == 0 && rl_writer_commit(w) == 0;
	snprintf(test, sizeof test, "%s_peft_read_same_numbers", name);
	ok = ok && rl_adapter_read(dir, &m, 0, &b) == 0;
	CHECK(ok && same_adapter(&a, &b, 0) && !strcmp(b.base_content, a.base_content), test, "%s",
	      ok ? "the numbers differ" : rl_err());
	if (ok)
		rl_adapter_free(&b);
	snprintf(arg, sizeof arg, "%s+%s", model, dir);
	snprintf(test, sizeof test, "%s_model_plus_peft_same_logits", name);
	ok = rl_model_load(arg, NULL, &with_dir) == 0;
	if (!ok) {
		CHECK(0, test, "%s", rl_err());
	} else {
		snprintf(arg, sizeof arg, "%s+%s", model, stream);
		ok = rl_model_load(arg, NULL, &with_stream) == 0;
		float *x = ok ? logits_of(&with_stream, 12) : NULL, *y = ok ? logits_of(&with_dir, 12) : NULL,
		      *z = logits_of(&m, 12);
		size_t n = 12 * (size_t)m.cfg.vocab_size;
		CHECK(x && y && z && memcmp(x, y, n * sizeof *x) == 0 && t_rel_err(z, x, n) > 1e-3, test,
		      "%s", ok ? "logits differ, or the adapter changes nothing" : rl_err());
		free(x);
		free(y);
		free(z);
		if (ok)
			rl_model_free(&with_stream);
		rl_model_free(&with_dir);
	}
	rl_adapter_free(&a);
	rl_model_free(&m);
}

/* reading dir for model must fail with an error holding want (and want2) */
static void refused(const char *test, const char *dir, const rl_model *m, int flags, const char *want,
		    const char *want2)
{
	rl_adapter a;
	int rc = rl_adapter_read(dir, m, flags, &a);
	const char *e = rl_err();
	CHECK(rc == -1 && strstr(e, want) && (!want2 || strstr(e, want2)) && a.params == NULL, test, "rc %d: %s", rc,
	      rc ? e : "accepted");
	if (rc == 0)
		rl_adapter_free(&a);
}

static void bad_input(const char *s260)
{
	rl_model m, q;
	rl_adapter a;
	char good[512], d[512];
	snprintf(good, sizeof good, "%s/s260_peft", tmpdir);
	snprintf(d, sizeof d, "%s/bad", tmpdir);
	if (rl_model_load(s260, NULL, &m) || rl_model_load("tests/fixtures/hf/qwen3", NULL, &q)) {
		CHECK(0, "bad_input_models", "%s", rl_err());
		return;
	}
	/* another base: the identity says so, unless RL_ADAPTER_ANY_BASE */
	copy_dir(good, d);
	size_t len;
	char *bytes = rl_read_file(path_in(d, "adapter_model.safetensors"), &len), *at = NULL;
	rl_adapter b;
	const char *key = "recover.base_content\":\"";
	if (bytes && (at = memmem(bytes, len, key, strlen(key)))) {
		at += strlen("recover.base_content\":\"");
		*at = *at == '0' ? '1' : '0';
		FILE *f = fopen(path_in(d, "adapter_model.safetensors"), "wb");
		fwrite(bytes, 1, len, f);
		fclose(f);
	}
	free(bytes);
	CHECK(at != NULL, "peft_identity_in_metadata", "no recover.base_content in the header");
	refused("peft_other_base_refused", d, &m, 0, "adapter_model.safetensors: metadata recover.base_content",
		"trained on the model of content");
	int rc = rl_adapter_read(d, &m, RL_ADAPTER_ANY_BASE, &b);
	CHECK(rc == 0 && b.forced, "peft_other_base_any_base_accepted", "rc %d, forced %d: %s", rc, rc ? -1 : b.forced,
	      rl_err());
	if (rc == 0)
		rl_adapter_free(&b);

	/* as peft writes it: no identity (accepted on its shapes), here in bf16 */
	copy_dir(good, d);
	rc = rewrite_tensors(d, RL_BF16, 1, NULL, NULL) || rl_adapter_read(d, &m, 0, &b);
	rl_adapter orig;
	int same = rc == 0 && !b.forced && make_adapter(&m, &orig, 9) == 0 && same_adapter(&orig, &b, 1);
	CHECK(same, "peft_without_identity_bf16_accepted", "%s", rc ? rl_err() : "numbers differ from bf16 rounding");
	if (rc == 0) {
		rl_adapter_free(&b);
		rl_adapter_free(&orig);
	}
	/* use_rslora: peft scales by alpha/sqrt(r) */
	rc = edit_config(d, "\"use_rslora\": false", "\"use_rslora\": true") || rl_adapter_read(d, &m, 0, &b);
	CHECK(rc == 0 && fabs(b.alpha - 16.0) < 1e-12, "peft_rslora_alpha", "rc %d alpha %g: %s", rc, rc ? 0 : b.alpha,
	      rl_err());
	if (rc == 0)
		rl_adapter_free(&b);

	/* rank and shapes */
	copy_dir(good, d);
	edit_config(d, "\"r\": 4", "\"r\": 8");
	refused("peft_rank_mismatch", d, &m, 0, "lora_A.weight: shape [4, 64], but r 8", "adapter_config.json");
	refused("peft_other_model_shapes", good, &q, 0, "adapter_model.safetensors: tensor base_model.model.model.layers.",
		NULL);
	/* adapter_config.json */
	copy_dir(good, d);
	unlink(path_in(d, "adapter_config.json"));
	refused("peft_config_missing", d, &m, 0, "bad/adapter_config.json: No such file", NULL);
	write_text(path_in(d, "adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 4,");
	refused("peft_config_garbled", d, &m, 0, "bad/adapter_config.json: line 1, column", NULL);
	static const struct {
		const char *test, *from, *to, *want;
	} edits[] = {
		{ "peft_type_not_lora", "\"LORA\"", "\"IA3\"", "adapter_config.json: peft_type: \"IA3\", not \"LORA\"" },
		{ "peft_r_missing", "\"r\": 4,", "", "adapter_config.json: r: missing" },
		{ "peft_alpha_not_number", "\"lora_alpha\": 8", "\"lora_alpha\": \"8\"", "adapter_config.json: lora_alpha" },
		{ "peft_bias_all", "\"bias\": \"none\"", "\"bias\": \"all\"", "adapter_config.json: bias" },
		{ "peft_dora", "\"use_dora\": false", "\"use_dora\": true", "adapter_config.json: use_dora" },
		{ "peft_fan_in_fan_out", "\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true",
		  "adapter_config.json: fan_in_fan_out" },
		{ "peft_rank_pattern", "\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 8}",
		  "adapter_config.json: rank_pattern" },
		{ "peft_modules_to_save", "\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]",
		  "adapter_config.json: modules_to_save" },
		{ "peft_target_not_listed", "\"gate_proj\", ", "", "module model.layers.0.mlp.gate_proj is not among" },
	};
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		copy_dir(good, d);
		if (edit_config(d, edits[i].from, edits[i].to)) {
			CHECK(0, edits[i].test, "adapter_config.json holds no %s", edits[i].from);
			continue;
		}
		refused(edits[i].test, d, &m, 0, edits[i].want, NULL);
	}
	/* adapter_model.safetensors */
	copy_dir(good, d);
	unlink(path_in(d, "adapter_model.safetensors"));
	write_text(path_in(d, "adapter_model.bin"), "pickle");
	refused("peft_pickle_refused", d, &m, 0, "adapter_model.bin: a pickle", NULL);
	unlink(path_in(d, "adapter_model.bin"));
	refused("peft_tensors_missing", d, &m, 0, "bad/adapter_model.safetensors: No such file", NULL);
	copy_dir(good, d);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "truncate -s 3000 '%s'", path_in(d, "adapter_model.safetensors"));
	if (system(cmd) == 0)
		refused("peft_tensors_truncated", d, &m, 0, "bad/adapter_model.safetensors: ", NULL);
	copy_dir(good, d);
	rewrite_tensors(d, RL_F32, 0, "layers.2.mlp.up_proj.lora_B", NULL);
	refused("peft_lora_b_missing", d, &m, 0, "layers.2.mlp.up_proj.lora_A.weight is there without its lora_B", NULL);
	copy_dir(good, d);
	rewrite_tensors(d, RL_F32, 0, NULL, "base_model.model.model.layers.0.mlp.gate_proj.lora_embedding_A");
	refused("peft_unknown_tensor", d, &m, 0, "tensor base_model.model.model.layers.0.mlp.gate_proj.lora_embedding_A: not",
		NULL);
	copy_dir(good, d);
	rewrite_tensors(d, RL_F32, 0, NULL, "base_model.model.model.embed_tokens.lora_A.weight");
	refused("peft_embedding_target_refused", d, &m, 0, "embed_tokens.lora_A.weight: not", NULL);

	/* output paths */
	make_adapter(&m, &a, 9);
	const char *file = path_in(tmpdir, "afile");
	write_text(file, "keep\n");
	rc = rl_adapter_write_peft(&a, &m, file);
	char *kept = rl_read_file(file, &len);
	CHECK(rc == -1 && strstr(rl_err(), "afile: exists and is not a directory") && kept && len == 5,
	      "peft_write_refuses_a_file", "rc %d: %s", rc, rl_err());
	free(kept);
	rc = rl_adapter_write_peft(&a, &m, path_in(tmpdir, "nowhere/peft"));
	CHECK(rc == -1 && strstr(rl_err(), "nowhere/peft: No such file"), "peft_write_parent_missing", "rc %d: %s", rc,
	      rl_err());
	rc = rl_adapter_write_peft(&a, &q, path_in(tmpdir, "mismatch"));
	CHECK(rc == -1 && strstr(rl_err(), "made for another model"), "peft_write_other_model", "rc %d: %s", rc, rl_err());
	rl_adapter_free(&a);
	DIR *dp = opendir(tmpdir);
	struct dirent *e;
	int clean = 1;
	while (dp && (e = readdir(dp)))
		clean &= !strstr(e->d_name, ".tmp.") && strcmp(e->d_name, "mismatch");
	if (dp)
		closedir(dp);
	CHECK(clean, "peft_write_no_temporaries_left", "a temporary or a half directory is left in %s", tmpdir);
	rl_model_free(&m);
	rl_model_free(&q);
}

int main(void)
{
	char s260[512];
	snprintf(s260, sizeof s260, "%s/models/stories260K/stories260K.bin", t_shared());
	snprintf(tmpdir, sizeof tmpdir, "%s/rl_peft.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	round_trip("tests/fixtures/hf/qwen3", "qwen3");
	if (access(s260, R_OK) == 0) {
		round_trip(s260, "s260");
		bad_input(s260);
	} else {
		t_skip("peft_stories260k", "no stories260K in ../shared (set SHARED)");
	}
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return t_done();
}
