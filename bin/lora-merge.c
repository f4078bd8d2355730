/* lora-merge: the deployment end of a recovery. Folds an adapter into its
 * model (W' = deq(W) + (alpha/r).B.A in f32, optionally re-quantized), packs
 * a quantized model and its adapter into a reproducible recovery pack, and
 * verifies packs. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "eval.h"
#include "gguf.h"
#include "hf.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "pack.h"
#include "peft.h"
#include "requant.h"
#include "sample.h"
#include "stream.h"
#include "tool.h"

#define PRODUCER "lora-merge " RL_VERSION
#define CHECK_SEQS 8    /* the built-in check: sequences sampled from the merged model */
#define CHECK_LEN 128   /* tokens each, at most */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lora-merge [-o FILE] [-p POLICY [-q rtn|mse] [--check TEXT]] [--force] [-t N] MODEL [ADAPTER]\n"
		"       lora-merge --pack OUT.tar [--results FILE] [--force] MODEL [ADAPTER]\n"
		"       lora-merge --hf DIR [--hf-dtype f32|f16|bf16] [-p POLICY] [--force] MODEL [ADAPTER]\n"
		"       lora-merge --peft DIR [--force] MODEL [ADAPTER]\n"
		"       lora-merge --verify PACK\n"
		"       lora-merge [--gguf OUT.gguf [--gguf-float f32|f16]] [--gguf-lora OUT.gguf] MODEL [ADAPTER]\n"
		"MODEL is any model argument (a stream, pack, llama2.c .bin, HF directory, GGUF\n"
		"file; MODEL+ADAPTER). Without --pack, --hf, --peft or --gguf*, writes the merged\n"
		"model stream to FILE (atomically) or stdout; -p re-quantizes it, and says what\n"
		"that costs. --hf writes the merged model as a Hugging Face directory, --peft the\n"
		"adapter, unmerged, as a PEFT directory; --gguf writes the model as stored\n"
		"(unmerged) and --gguf-lora the adapter as GGUF files for llama.cpp.\n");
}

static void fail(const char *what)
{
	errx(1, "%s%s%s", what ? what : "", what ? ": " : "", rl_err());
}

/* 1 when path is a regular file holding a tstream (its first message a map keyed "t") */
static int is_stream_file(const char *path)
{
	struct stat st;
	unsigned char b[3];
	if (strcmp(path, "-") == 0 || stat(path, &st) || !S_ISREG(st.st_mode))
		return 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	size_t n = fread(b, 1, 3, f);
	fclose(f);
	return n == 3 && (b[0] & 0xf0) == 0x80 && b[1] == 0xa1 && b[2] == 't';
}

/* ---- the check that -p reports: NLL of three versions of the model on some text ---- */

typedef struct {
	char *text;        /* the documents' text (owned) */
	size_t len;
	rl_span *docs;
	size_t ndocs;
	char what[600];    /* for messages */
} check_text;

/* Samples CHECK_SEQS sequences from m (temperature 1, seed 1) and keeps them
 * as text, one document each: data-free, like the rest of the recovery. */
static int sample_check_text(const rl_model *m, check_text *c)
{
	int V = m->cfg.vocab_size, B = CHECK_SEQS;
	int T = m->cfg.seq_len < CHECK_LEN ? m->cfg.seq_len : CHECK_LEN;
	int start = m->tok.bos_id >= 0 ? m->tok.bos_id : m->tok.eos_id >= 0 ? m->tok.eos_id : 0;
	rl_forward *f = rl_forward_new(m, B, T);
	rl_kvcache kv;
	float *logits = malloc((size_t)B * V * sizeof(float)), *fs = malloc((size_t)V * sizeof(float));
	int *tok = malloc((size_t)B * T * sizeof(int)), *is = malloc((size_t)V * sizeof(int)), len[CHECK_SEQS];
	rl_rng rng[CHECK_SEQS];
	rl_seq seqs[CHECK_SEQS];
	if (!f || !logits || !fs || !tok || !is || rl_kvcache_init(&kv, m, B, T)) {
		rl_forward_free(f);
		free(logits), free(fs), free(tok), free(is);
		return -1;
	}
	rl_sampler sp = { .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .ban = -1 };
	int active = B;
	for (int b = 0; b < B; b++) {
		tok[(size_t)b * T] = start;
		len[b] = 1;
		rl_rng_seed(&rng[b], 1, (uint64_t)b);
	}
	int rc = 0;
	while (active > 0 && rc == 0) {
		int n = 0, who[CHECK_SEQS];
		for (int b = 0; b < B; b++)
			if (len[b] > 0 && len[b] < T) {
				seqs[n] = (rl_seq){ .slot = b, .pos0 = len[b] - 1, .ntok = 1,
						    .tokens = &tok[(size_t)b * T + len[b] - 1] };
				who[n++] = b;
			}
		if (n == 0)
			break;
		if (rl_forward_run(f, &kv, n, seqs, logits)) {
			rc = -1;
			break;
		}
		for (int i = 0; i < n; i++) {
			int b = who[i], t = rl_sample(logits + (size_t)i * V, V, &sp, &rng[b], is, fs);
			if (t == m->tok.eos_id || t == m->tok.bos_id) {
				len[b] = -len[b]; /* done */
				active--;
				continue;
			}
			tok[(size_t)b * T + len[b]++] = t;
			if (len[b] == T) {
				len[b] = -len[b];
				active--;
			}
		}
	}
	/* the text: documents separated by blank lines */
	FILE *out = open_memstream(&c->text, &c->len);
	for (int b = 0; out && rc == 0 && b < B; b++) {
		int L = len[b] < 0 ? -len[b] : len[b];
		for (int j = 1; j < L; j++) {
			size_t pl;
			const char *p = rl_decode_piece(&m->tok, tok[(size_t)b * T + j - 1], tok[(size_t)b * T + j], &pl);
			for (size_t k = 0; k < pl; k++) /* a blank line inside would split the document */
				fputc(p[k] == '\n' ? ' ' : p[k], out);
		}
		fputs("\n\n", out);
	}
	if (out)
		fclose(out);
	rl_kvcache_free(&kv);
	rl_forward_free(f);
	free(logits), free(fs), free(tok), free(is);
	if (rc || !c->text)
		return -1;
	snprintf(c->what, sizeof c->what, "built-in: %d sequences sampled from the model with its adapter", B);
	return rl_split_documents(c->text, c->len, &c->docs, &c->ndocs);
}

static int load_check_text(const char *path, check_text *c)
{
	if (!(c->text = rl_read_file(path, &c->len)))
		return -1;
	snprintf(c->what, sizeof c->what, "%s", path);
	if (rl_split_documents(c->text, c->len, &c->docs, &c->ndocs))
		return -1;
	if (c->ndocs == 0) {
		rl_seterr("%s: no text to score", path);
		return -1;
	}
	return 0;
}

static double nll(const rl_model *m, const check_text *c, size_t *ntok)
{
	rl_ppl p;
	int ctx = m->cfg.seq_len < 2048 ? m->cfg.seq_len : 2048;
	if (rl_eval_ppl(m, NULL, c->docs, c->ndocs, ctx, &p, NULL, NULL, NULL))
		fail("--check");
	*ntok = p.ntokens;
	return p.ntokens ? p.nll_sum / (double)p.ntokens : NAN;
}

/* ---- writing ---- */

/* A new empty file of a unique name beside near (allocated), for a member to pack. */
static char *temp_beside(const char *near, const char *what)
{
	char *path;
	if (asprintf(&path, "%s.%s.XXXXXX", near, what) < 0)
		errx(1, "out of memory");
	int fd = mkstemp(path);
	if (fd < 0)
		err(1, "%s", path);
	close(fd);
	return path;
}

/* Writes m's base (as stored) to a temporary stream file beside near; its path (allocated). */
static char *temp_model_stream(const rl_model *m, const char *near)
{
	char *path = temp_beside(near, "model");
	rl_writer *w = rl_writer_open(path);
	if (!w || rl_model_write(m, w, PRODUCER, NULL, NULL) || rl_writer_commit(w)) {
		unlink(path);
		fail(path);
	}
	return path;
}

static char *temp_adapter_stream(const rl_adapter *a, const char *near)
{
	char *path = temp_beside(near, "adapter");
	rl_writer *w = rl_writer_open(path);
	if (!w || rl_adapter_write(a, w, PRODUCER) || rl_write_end(w) || rl_writer_commit(w)) {
		unlink(path);
		fail(path);
	}
	return path;
}

static void write_pack(const char *out, const char *model_arg, const char *adapter_arg, const rl_model *m,
		       const char *results)
{
	/* the members are the streams as given, byte for byte, when they are stream files */
	char *tmp_model = NULL, *tmp_adapter = NULL;
	const char *model = model_arg, *adapter = adapter_arg;
	if (adapter_arg == NULL || !is_stream_file(model_arg) || m->content[0] == 0)
		model = tmp_model = temp_model_stream(m, out);
	if (!adapter_arg || !is_stream_file(adapter_arg) || m->adapter->forced)
		adapter = tmp_adapter = temp_adapter_stream(m->adapter, out);
	rl_pack_spec s = { .model = model, .adapter = adapter, .results = results, .producer = PRODUCER };
	int rc = rl_pack_write(out, &s);
	if (tmp_model)
		unlink(tmp_model);
	if (tmp_adapter)
		unlink(tmp_adapter);
	free(tmp_model);
	free(tmp_adapter);
	if (rc)
		fail("--pack");
	fprintf(stderr, "lora-merge: %s: recovery pack of %s and its adapter (rank %d, %d targets)%s\n", out,
		m->origin, m->adapter->rank, m->adapter->ntargets, results ? " with results" : "");
}

static int verify(const char *path)
{
	rl_pack_info info;
	if (rl_pack_verify(path, &info))
		fail(NULL);
	rl_model m;
	if (rl_model_load(path, NULL, &m))
		fail(NULL);
	printf("%s: a recovery pack, every member as its manifest says\n", path);
	for (int i = 0; i < info.nmembers; i++)
		printf("  %-16s %12llu bytes  sha256 %s\n", info.names[i], (unsigned long long)info.bytes[i],
		       info.sha256[i]);
	printf("  model: %s, %d layers, dim %d, vocab %d, content %.12s, source %.12s\n", m.arch, m.cfg.n_layers,
	       m.cfg.dim, m.cfg.vocab_size, info.model_content, info.model_source);
	printf("  adapter: rank %d, alpha %g, %d targets; loads onto the model\n", info.rank, info.alpha,
	       info.ntargets);
	if (info.nresults)
		printf("  results: %d\n", info.nresults);
	rl_model_free(&m);
	return 0;
}

static void report(const rl_tensor *t, rl_dtype dt, const char *quantizer, const rl_quant_stats *st, void *arg)
{
	(void)arg;
	fprintf(stderr, "lora-merge: %-28s %-6s %-4s %5.2f bpw  rmse %.3g  sqnr %.1f dB\n", t->name,
		rl_dtypes[dt].name, rl_dtype_quantized(dt) ? quantizer : "", st->bpw, st->rmse, st->sqnr_db);
}

typedef struct {
	const rl_model *m;
	const rl_quant_stats *st;   /* (ntensors) from rl_requant_model, or NULL */
	rl_quant_method method;
} write_arg;

/* writes a tensor as stored, with the stats of its re-quantization */
typedef struct {
	const rl_quant_stats *st;
	const char *quantizer;
} stats_arg;

static void pack_stats(msgpack_packer *pk, void *arg)
{
	const stats_arg *a = arg;
	rl_requant_pack_stats(pk, a->st, a->quantizer, 1);
}

static int write_stored(rl_writer *w, const rl_tensor *t, void *arg)
{
	const write_arg *a = arg;
	int i = (int)(t - a->m->tensors);
	if (a->st && i >= 0 && i < a->m->ntensors && a->st[i].n && rl_dtype_quantized(t->dtype)) {
		stats_arg sa = { &a->st[i], rl_requant_quantizer(t->dtype, a->method, NULL) };
		return rl_write_tensor(w, t->name, t->dtype, t->dtype, t->ndim, t->shape, t->data, pack_stats, &sa);
	}
	return rl_write_tensor(w, t->name, t->dtype, t->dtype, t->ndim, t->shape, t->data, NULL, NULL);
}

int main(int argc, char **argv)
{
	rl_tool_init();
	const char *out = NULL, *policy = NULL, *method = "mse", *check = NULL, *pack = NULL, *results = NULL;
	const char *verify_path = NULL, *gguf = NULL, *gguf_lora = NULL, *hf = NULL, *hf_dtype = NULL, *peft = NULL;
	int force = 0, threads = 0;
	rl_gguf_write_opts gopts = { RL_F32, NULL };
	enum { O_CHECK = 256, O_PACK, O_RESULTS, O_VERIFY, O_FORCE, O_GGUF, O_GGUF_FLOAT, O_GGUF_LORA,
	       O_HF, O_HF_DTYPE, O_PEFT };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' }, { "policy", required_argument, NULL, 'p' },
		{ "quantizer", required_argument, NULL, 'q' }, { "check", required_argument, NULL, O_CHECK },
		{ "pack", required_argument, NULL, O_PACK }, { "results", required_argument, NULL, O_RESULTS },
		{ "verify", required_argument, NULL, O_VERIFY }, { "force", no_argument, NULL, O_FORCE },
		{ "gguf", required_argument, NULL, O_GGUF }, { "gguf-float", required_argument, NULL, O_GGUF_FLOAT },
		{ "gguf-lora", required_argument, NULL, O_GGUF_LORA },
		{ "hf", required_argument, NULL, O_HF }, { "hf-dtype", required_argument, NULL, O_HF_DTYPE },
		{ "peft", required_argument, NULL, O_PEFT }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "o:p:q:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'p': policy = optarg; break;
		case 'q': method = optarg; break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case O_CHECK: check = optarg; break;
		case O_PACK: pack = optarg; break;
		case O_RESULTS: results = optarg; break;
		case O_VERIFY: verify_path = optarg; break;
		case O_FORCE: force = 1; break;
		case O_GGUF: gguf = optarg; break;
		case O_GGUF_LORA: gguf_lora = optarg; break;
		case O_GGUF_FLOAT:
			if (strcmp(optarg, "f32") && strcmp(optarg, "f16"))
				errx(2, "--gguf-float %s: f32 or f16", optarg);
			gopts.other = strcmp(optarg, "f16") ? RL_F32 : RL_F16;
			break;
		case O_HF: hf = optarg; break;
		case O_HF_DTYPE: hf_dtype = optarg; break;
		case O_PEFT: peft = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	int nargs = argc - optind;
	rl_set_threads(threads);
	if (verify_path) {
		if (nargs || out || pack || policy || gguf || gguf_lora || hf || peft)
			errx(2, "--verify takes a pack and nothing else");
		return verify(verify_path);
	}
	if (nargs < 1 || nargs > 2) {
		usage(stderr);
		return 2;
	}
	if ((check || strcmp(method, "mse")) && !policy)
		errx(2, "--check and -q go with -p (re-quantizing the merged model)");
	if (results && !pack)
		errx(2, "--results goes with --pack");
	if (gopts.other != RL_F32 && !gguf)
		errx(2, "--gguf-float goes with --gguf");
	/* the merged model as HF writes it: f32 keeps exactly what the adapter recovered */
	rl_dtype hf_dt = RL_F32;
	if (hf_dtype) {
		int dt = rl_dtype_from_name(hf_dtype, strlen(hf_dtype));
		if (!hf)
			errx(2, "--hf-dtype goes with --hf");
		if (dt != RL_F32 && dt != RL_F16 && dt != RL_BF16)
			errx(2, "--hf-dtype %s: f32, f16 or bf16", hf_dtype);
		hf_dt = (rl_dtype)dt;
	}
	int merged_out = out || !(pack || hf || peft || gguf || gguf_lora);
	if (merged_out && !out && isatty(1))
		errx(2, "refusing to write a binary stream to a terminal: use -o FILE or a pipe");
	rl_requant rq = { 0 };
	if (policy) {
		int qm = rl_quant_method_from_name(method);
		if (qm < 0)
			errx(1, "-q %s: unknown quantizer (rtn or mse)", method);
		rq.method = (rl_quant_method)qm;
		if (!(rq.policy = rl_policy_parse(policy)))
			errx(1, "-p: %s", rl_err());
	}
	check_text ct = { 0 };
	if (check && load_check_text(check, &ct))
		fail("--check");

	const char *model_arg = argv[optind], *adapter_arg = nargs == 2 ? argv[optind + 1] : NULL;
	rl_model m;
	if (rl_model_load(model_arg, NULL, &m))
		fail(NULL);
	if (adapter_arg) {
		if (m.adapter)
			errx(1, "%s: already carries an adapter; give the base model with %s", model_arg, adapter_arg);
		rl_adapter a;
		if (rl_adapter_read(adapter_arg, &m, force ? RL_ADAPTER_ANY_BASE : 0, &a))
			errx(1, "%s%s", rl_err(), force ? "" : " (--force applies it anyway, if you are sure)");
		if (a.forced)
			warnx("warning: %s was trained on another model; --force applies it to %s, and what is written records it as made for %s",
			      adapter_arg, model_arg, model_arg);
		if (rl_model_attach_adapter(&m, &a))
			fail(NULL);
	}
	/* GGUF for llama.cpp: the model as stored (before any merge) and the adapter */
	if (gguf) {
		if (rl_gguf_write_model(&m, gguf, &gopts))
			fail("--gguf");
		fprintf(stderr, "lora-merge: %s: %s as GGUF (weights without a ggml type as %s)\n", gguf, m.origin,
			rl_dtypes[gopts.other].name);
	}
	if (gguf_lora && !m.adapter)
		errx(1, "%s: no adapter for --gguf-lora: give one (MODEL ADAPTER, MODEL+ADAPTER or a recovery pack)",
		     model_arg);
	if (gguf_lora) {
		if (rl_gguf_write_adapter(m.adapter, &m, gguf_lora))
			fail("--gguf-lora");
		fprintf(stderr, "lora-merge: %s: the adapter as a llama.cpp LoRA GGUF (rank %d, %d targets)\n", gguf_lora,
			m.adapter->rank, m.adapter->ntargets);
	}
	if (!m.adapter && (pack || merged_out || hf || peft))
		errx(1, "%s: no adapter to merge: give one (MODEL ADAPTER, MODEL+ADAPTER or a recovery pack)", model_arg);
	if (pack)
		write_pack(pack, rl_model_arg_split(model_arg) < 0 && !rl_pack_sniff(model_arg) ? model_arg : "-",
			   adapter_arg, &m, results);
	if (peft) { /* the adapter as it is, before the merge */
		if (rl_adapter_write_peft(m.adapter, &m, peft))
			fail("--peft");
		fprintf(stderr, "lora-merge: %s: PEFT adapter (rank %d, alpha %g, %d targets) for %s\n", peft,
			m.adapter->rank, m.adapter->alpha, m.adapter->ntargets, model_arg);
	}
	if (!merged_out && !hf) {
		rl_model_free(&m);
		return 0;
	}

	/* the merged model */
	double nll_student = NAN;
	size_t ntok = 0;
	if (policy) {
		if (rl_requant_check(&rq, &m))
			errx(1, "-p %s: %s", policy, rl_err());
		for (int i = 0; rl_policy_unmatched(rq.policy, i); i++)
			warnx("-p %s: warning: \"%s\" matches no tensor of this model", policy,
			      rl_policy_unmatched(rq.policy, i));
		/* the check text: given, or sampled from the student with its adapter
		 * (the merged model, up to rounding) */
		if (!ct.text && sample_check_text(&m, &ct))
			fail("the built-in check");
		rl_adapter *ad = m.adapter; /* the student alone */
		m.adapter = NULL;
		nll_student = nll(&m, &ct, &ntok);
		m.adapter = ad;
	}
	int nadapted = m.adapter->ntargets;
	if (rl_model_merge_adapter(&m))
		fail(NULL);
	rl_quant_stats *st = NULL;
	if (policy) {
		warnx("warning: re-quantizing the merged weights (-p %s) loses part of what the adapter recovered", policy);
		double nll_merged = nll(&m, &ct, &ntok);
		st = calloc((size_t)m.ntensors, sizeof *st);
		rq.m = &m;
		rq.report = report;
		if (!st || rl_requant_model(&rq, &m, st))
			fail("-p");
		double nll_requant = nll(&m, &ct, &ntok);
		double gain = nll_student - nll_merged;
		fprintf(stderr,
			"lora-merge: check (%s, %zu tokens): NLL student %.4f, merged %.4f, re-quantized %.4f",
			ct.what, ntok, nll_student, nll_merged, nll_requant);
		if (gain > 0)
			fprintf(stderr, ": keeps %.1f%% of the adapter's gain\n", 100.0 * (nll_student - nll_requant) / gain);
		else
			fprintf(stderr, "\n");
	}
	if (hf) {
		if (rl_model_write_hf(&m, hf, hf_dt))
			fail("--hf");
		fprintf(stderr, "lora-merge: %s: Hugging Face model (%s, %s), %d adapted weights merged%s%s\n", hf,
			m.arch, rl_dtypes[hf_dt].name, nadapted, policy ? " and re-quantized " : "", policy ? policy : "");
	}
	if (merged_out) {
		rl_writer *w = rl_writer_open(out);
		if (!w)
			fail(NULL);
		write_arg wa = { &m, st, rq.method };
		if (rl_model_write(&m, w, PRODUCER, write_stored, &wa)) {
			char msg[1024];
			snprintf(msg, sizeof msg, "%s", rl_err());
			rl_writer_abort(w);
			errx(1, "%s: %s", out ? out : "<stdout>", msg);
		}
		if (rl_writer_commit(w))
			fail(NULL);
		fprintf(stderr, "lora-merge: %s: %d adapted weights merged%s%s -> %s\n", model_arg, nadapted,
			policy ? " and re-quantized " : " (f32)", policy ? policy : "", out ? out : "stdout");
	}
	free(st);
	free(ct.text);
	free(ct.docs);
	rl_policy_free(rq.policy);
	rl_model_free(&m);
	return 0;
}
