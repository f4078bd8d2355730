/* lora.c: LoRA adapters in memory and as adapter streams (see lora.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "gguf.h"
#include "lora.h"
#include "peft.h"
#include "policy.h"
#include "sample.h"

enum { MAX_RANK = 4096 };

static int is_linear(const rl_model *m, const rl_tensor *t)
{
	/* token_embd is looked up, not multiplied; output.weight is a linear when untied */
	return t->ndim == 2 && strcmp(t->name, "token_embd.weight") != 0 && t != m->token_embd;
}

int rl_lora_select(const rl_model *m, const char *pattern, int **idx, int *n)
{
	*idx = NULL;
	*n = 0;
	int *out = malloc((size_t)m->ntensors * sizeof(int));
	if (!out) {
		rl_seterr("out of memory");
		return -1;
	}
	rl_policy *p = NULL;
	if (pattern) {
		/* the policy grammar marks what the pattern selects with f16 */
		size_t len = strlen(pattern);
		char *spec = malloc(len + 5);
		if (!spec) {
			free(out);
			rl_seterr("out of memory");
			return -1;
		}
		memcpy(spec, pattern, len);
		memcpy(spec + len, "=f16", 5);
		p = strchr(pattern, '=') || strchr(pattern, ';') ? NULL : rl_policy_parse(spec);
		free(spec);
		if (!p) {
			if (strchr(pattern, '=') || strchr(pattern, ';'))
				rl_seterr("targets \"%s\": a list of tensor kinds such as ffn_gate,blk.0-3.attn_*", pattern);
			else
				rl_seterr("targets \"%s\": %s", pattern, rl_err());
			free(out);
			return -1;
		}
	}
	int k = 0;
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		int take;
		if (p) {
			rl_dtype dt;
			if (rl_policy_dtype(p, t, &dt)) {
				rl_policy_free(p);
				free(out);
				return -1;
			}
			take = dt == RL_F16 && t->ndim == 2;
		} else {
			take = strncmp(t->name, "blk.", 4) == 0 && rl_dtypes[t->dtype].qbits > 0 &&
			       rl_dtypes[t->dtype].qbits < 4;
		}
		if (take && !is_linear(m, t)) {
			if (p) {
				rl_seterr("targets \"%s\": %s is not a linear layer", pattern, t->name);
				rl_policy_free(p);
				free(out);
				return -1;
			}
			take = 0;
		}
		if (take)
			out[k++] = i;
	}
	const char *unmatched = p ? rl_policy_unmatched(p, 0) : NULL;
	if (unmatched) {
		rl_seterr("targets \"%s\": %s matches no weight of %s", pattern, unmatched, m->origin);
		rl_policy_free(p);
		free(out);
		return -1;
	}
	rl_policy_free(p);
	if (k == 0) {
		if (pattern)
			rl_seterr("targets \"%s\" match no weight of %s", pattern, m->origin);
		else
			rl_seterr("%s has no weights stored in fewer than 4 bits, the default targets; name them with a pattern such as ffn_gate,ffn_up",
				  m->origin);
		free(out);
		return -1;
	}
	*idx = out;
	*n = k;
	return 0;
}

void rl_adapter_free(rl_adapter *a)
{
	free(a->targets);
	free(a->params);
	free(a->target_of);
	memset(a, 0, sizeof *a);
}

int rl_adapter_alloc(rl_adapter *a, const rl_model *m, const int *idx, int n, int rank, double alpha)
{
	memset(a, 0, sizeof *a);
	if (rank < 1 || rank > MAX_RANK || !isfinite(alpha)) {
		rl_seterr("rank %d (1 to %d) or alpha %g (finite) out of range", rank, MAX_RANK, alpha);
		return -1;
	}
	a->rank = rank;
	a->alpha = alpha;
	a->ntensors = m->ntensors;
	a->targets = calloc((size_t)n, sizeof *a->targets);
	a->target_of = malloc((size_t)m->ntensors * sizeof(int));
	if (!a->targets || !a->target_of)
		goto oom;
	for (int i = 0; i < m->ntensors; i++)
		a->target_of[i] = -1;
	size_t total = 0;
	for (int k = 0; k < n; k++) {
		const rl_tensor *t = &m->tensors[idx[k]];
		rl_lora_target *g = &a->targets[k];
		snprintf(g->name, sizeof g->name, "%s", t->name);
		g->tensor = idx[k];
		g->OC = (int)t->shape[0];
		g->IC = (int)t->shape[1];
		total += (size_t)rank * ((size_t)g->OC + (size_t)g->IC);
		a->target_of[idx[k]] = k;
	}
	a->ntargets = n;
	a->nparams = total;
	a->params = calloc(total ? total : 1, sizeof(float));
	if (!a->params)
		goto oom;
	float *p = a->params;
	for (int k = 0; k < n; k++) {
		rl_lora_target *g = &a->targets[k];
		g->a = p;
		p += (size_t)rank * g->IC;
		g->b = p;
		p += (size_t)g->OC * rank;
	}
	if (rl_model_content(m, a->base_content))
		goto fail;
	memcpy(a->base_source, m->source, sizeof a->base_source);
	return 0;
oom:
	rl_seterr("adapter of rank %d on %d targets: out of memory", rank, n);
fail:
	rl_adapter_free(a);
	return -1;
}

int rl_adapter_check_finite(const rl_adapter *a, const char *path)
{
	for (size_t i = 0; i < a->nparams; i++)
		if (!isfinite(a->params[i])) {
			rl_seterr("%s: the adapter holds a value that is not finite", path);
			return -1;
		}
	return 0;
}

int rl_adapter_new(rl_adapter *a, const rl_model *m, const char *pattern, int rank, double alpha)
{
	int *idx, n;
	memset(a, 0, sizeof *a);
	if (rl_lora_select(m, pattern, &idx, &n))
		return -1;
	int rc = rl_adapter_alloc(a, m, idx, n, rank, alpha);
	free(idx);
	return rc;
}

void rl_adapter_init_standard(rl_adapter *a, uint64_t seed)
{
	for (int k = 0; k < a->ntargets; k++) {
		rl_lora_target *g = &a->targets[k];
		uint64_t s = seed ^ 0x510e527fade682d1ull;
		for (const char *c = g->name; *c; c++)
			s = (s ^ (unsigned char)*c) * 0x100000001b3ull;
		float bound = 1.0f / sqrtf((float)g->IC);
		size_t n = (size_t)a->rank * g->IC;
		for (size_t i = 0; i < n; i++) {
			uint64_t r = rl_splitmix64(&s);
			g->a[i] = bound * ((float)(r >> 40) * (2.0f / 16777216.0f) - 1.0f);
		}
		memset(g->b, 0, (size_t)g->OC * a->rank * sizeof(float));
	}
}

/* LAPACK's SVD (Fortran calling convention; the trailing length of jobz is
 * what gfortran expects of a character argument) */
extern void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u,
		    const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info,
		    size_t jobz_len);

/* The thin SVD of a col-major (M, N) matrix x (destroyed): s (mn), u (M, mn), vt (mn, N), mn = min(M, N). */
static int svd_thin(float *x, int M, int N, float *s, float *u, float *vt)
{
	int mn = M < N ? M : N, info = 0, lwork = -1, *iwork = malloc(8 * (size_t)mn * sizeof(int));
	float q;
	if (!iwork) {
		rl_seterr("out of memory");
		return -1;
	}
	sgesdd_("S", &M, &N, x, &M, s, u, &M, vt, &mn, &q, &lwork, iwork, &info, 1);
	lwork = info == 0 ? (int)q + 1 : 0;
	float *work = info == 0 ? malloc((size_t)lwork * sizeof(float)) : NULL;
	if (work)
		sgesdd_("S", &M, &N, x, &M, s, u, &M, vt, &mn, work, &lwork, iwork, &info, 1);
	free(work);
	free(iwork);
	if (!work || info != 0) {
		rl_seterr(info ? "sgesdd: error %d" : "out of memory", info);
		return -1;
	}
	return 0;
}

/* One target's SVD initialisation (see lora.h); adds the residual's squared
 * norm to *total and what the init reproduces of it to *kept. */
static int init_svd_target(const rl_adapter *a, rl_lora_target *g, const rl_tensor *ws, const rl_tensor *wt,
			   double *total, double *kept)
{
	/* R (OC, IC) row-major is R^T (IC, OC) col-major: sgesdd gives
	 * R^T = U S VT, so R's left vectors are VT's rows, its right ones U's columns */
	int OC = g->OC, IC = g->IC, mn = OC < IC ? OC : IC, r = a->rank, rc = -1;
	float *res = malloc((size_t)OC * IC * sizeof(float)), *row = malloc((size_t)IC * sizeof(float));
	float *sv = malloc((size_t)mn * sizeof(float)), *u = malloc((size_t)IC * mn * sizeof(float));
	float *vt = malloc((size_t)mn * OC * sizeof(float));
	if (!res || !row || !sv || !u || !vt) {
		rl_seterr("SVD of %s (%d x %d): out of memory", g->name, OC, IC);
		goto done;
	}
	size_t rbt = rl_row_bytes(wt->dtype, (uint64_t)IC), rbs = rl_row_bytes(ws->dtype, (uint64_t)IC);
	double fro = 0;
	for (int o = 0; o < OC; o++) {
		float *x = res + (size_t)o * IC;
		rl_dtypes[wt->dtype].to_float((const char *)wt->data + (size_t)o * rbt, x, (size_t)IC);
		rl_dtypes[ws->dtype].to_float((const char *)ws->data + (size_t)o * rbs, row, (size_t)IC);
		for (int c = 0; c < IC; c++) {
			x[c] -= row[c];
			fro += (double)x[c] * x[c];
		}
	}
	if (!isfinite(fro)) {
		rl_seterr("%s: the residual between teacher and student is not finite", g->name);
		goto done;
	}
	if (svd_thin(res, IC, OC, sv, u, vt)) {
		rl_seterr("SVD of %s (%d x %d): %s", g->name, OC, IC, rl_err());
		goto done;
	}
	*total += fro;
	double s = a->alpha / r;
	for (int i = 0; i < r && i < mn && sv[i] > 1e-6f * sv[0]; i++) {
		float f = (float)sqrt(sv[i] / s);
		for (int c = 0; c < IC; c++)
			g->a[(size_t)i * IC + c] = f * u[(size_t)i * IC + c];
		for (int o = 0; o < OC; o++)
			g->b[(size_t)o * r + i] = f * vt[(size_t)o * mn + i];
		*kept += (double)sv[i] * sv[i];
	}
	rc = 0;
done:
	free(res);
	free(row);
	free(sv);
	free(u);
	free(vt);
	return rc;
}

int rl_adapter_init_svd(rl_adapter *a, const rl_model *student, const rl_model *teacher, uint64_t seed,
			double *captured)
{
	if (strcmp(teacher->source, student->source) || strcmp(student->source, a->base_source)) {
		rl_seterr("the teacher %s comes from %.12s, but the student %s from %.12s: the SVD initialisation needs the student's own teacher",
			  teacher->origin, teacher->source, student->origin, student->source);
		return -1;
	}
	rl_adapter_init_standard(a, seed);
	double total = 0, kept = 0;
	for (int k = 0; k < a->ntargets; k++) {
		rl_lora_target *g = &a->targets[k];
		const rl_tensor *ws = &student->tensors[g->tensor];
		int ti = rl_model_tensor_index(teacher, g->name);
		const rl_tensor *wt = ti < 0 ? NULL : &teacher->tensors[ti];
		if (!wt || wt->ndim != 2 || wt->shape[0] != ws->shape[0] || wt->shape[1] != ws->shape[1]) {
			rl_seterr("the teacher %s has no tensor %s of the student's shape", teacher->origin, g->name);
			return -1;
		}
		if (init_svd_target(a, g, ws, wt, &total, &kept))
			return -1;
	}
	if (captured)
		*captured = total > 0 ? kept / total : 1.0;
	return 0;
}

int rl_model_content(const rl_model *m, char hex[65])
{
	if (m->content[0]) {
		memcpy(hex, m->content, 65);
		return 0;
	}
	rl_sha256 s;
	rl_sha256_init(&s);
	for (int i = 0; i < m->ntensors; i++) {
		const rl_tensor *t = &m->tensors[i];
		rl_hash_tensor_begin(&s, t->name, t->dtype, t->ndim, t->shape);
		size_t bytes = rl_row_bytes(t->dtype, t->shape[t->ndim - 1]) * (t->ndim == 2 ? t->shape[0] : 1);
		rl_sha256_update(&s, t->data, bytes);
	}
	unsigned char d[32];
	rl_sha256_final(&s, d);
	rl_sha256_hex(d, hex);
	return 0;
}

static int find_target(const rl_adapter *a, const char *name, size_t len)
{
	for (int k = 0; k < a->ntargets; k++)
		if (strlen(a->targets[k].name) == len && memcmp(a->targets[k].name, name, len) == 0)
			return k;
	return -1;
}

/* The header of an adapter stream: rank, alpha, targets (tensors of m), base. */
static int parse_header(const msgpack_object *h, const rl_model *m, int flags, rl_adapter *a)
{
	int64_t rank;
	double alpha;
	if (rl_mp_int(h, "rank", &rank) || rl_mp_double(h, "alpha", &alpha))
		return -1;
	if (rank < 1 || rank > MAX_RANK) {
		rl_seterr("field rank: %lld, not between 1 and %d", (long long)rank, MAX_RANK);
		return -1;
	}
	if (!isfinite(alpha)) {
		rl_seterr("field alpha: not a finite number");
		return -1;
	}
	const msgpack_object *tg = rl_mp_get(h, "targets"), *base = rl_mp_get(h, "base");
	if (!tg || tg->type != MSGPACK_OBJECT_ARRAY || tg->via.array.size == 0) {
		rl_seterr("field targets: missing or not a non-empty array of tensor names");
		return -1;
	}
	if (!base || base->type != MSGPACK_OBJECT_MAP) {
		rl_seterr("field base: missing or not a map of content and source");
		return -1;
	}
	char content[65], source[65];
	if (rl_mp_strcpy(base, "content", content, sizeof content) ||
	    rl_mp_strcpy(base, "source", source, sizeof source)) {
		rl_seterr("field base: %s", rl_err());
		return -1;
	}
	uint32_t n = tg->via.array.size;
	if (n > (uint32_t)m->ntensors) {
		rl_seterr("field targets: %u names, but the model has %d tensors", n, m->ntensors);
		return -1;
	}
	int *idx = malloc((size_t)n * sizeof(int));
	if (!idx) {
		rl_seterr("out of memory");
		return -1;
	}
	for (uint32_t k = 0; k < n; k++) {
		const msgpack_object *o = &tg->via.array.ptr[k];
		int found = -1;
		if (o->type == MSGPACK_OBJECT_STR)
			for (int i = 0; i < m->ntensors; i++)
				if (strlen(m->tensors[i].name) == o->via.str.size &&
				    memcmp(m->tensors[i].name, o->via.str.ptr, o->via.str.size) == 0)
					found = i;
		if (found < 0 || !is_linear(m, &m->tensors[found])) {
			if (o->type == MSGPACK_OBJECT_STR)
				rl_seterr("field targets: \"%.*s\" is not a linear layer of the model",
					  (int)(o->via.str.size > 80 ? 80 : o->via.str.size), o->via.str.ptr);
			else
				rl_seterr("field targets: entry %u is not a string", k);
			free(idx);
			return -1;
		}
		for (uint32_t j = 0; j < k; j++)
			if (idx[j] == found) {
				rl_seterr("field targets: %s appears twice", m->tensors[found].name);
				free(idx);
				return -1;
			}
		idx[k] = found;
	}
	/* targets in the model's order, as rl_adapter_new makes them */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
			int t = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = t;
		}
	int rc = rl_adapter_alloc(a, m, idx, (int)n, (int)rank, alpha);
	free(idx);
	if (rc)
		return -1;
	a->forced = strcmp(content, a->base_content) || strcmp(source, a->base_source);
	if (a->forced && !(flags & RL_ADAPTER_ANY_BASE)) {
		rl_seterr("field base: trained on the model of content %.12s (source %.12s), but %s has content %.12s (source %.12s)",
			  content, source, m->origin, a->base_content, a->base_source);
		rl_adapter_free(a);
		return -1;
	}
	return 0;
}

int rl_adapter_read(const char *path, const rl_model *m, int flags, rl_adapter *a)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) /* a PEFT directory */
		return rl_adapter_read_peft(path, m, flags, a);
	memset(a, 0, sizeof *a);
	char magic[4] = { 0 };
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : NULL;
	int gguf = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
	if (f)
		fclose(f);
	if (gguf)
		return rl_adapter_read_gguf(path, m, flags, a);
	rl_reader *r = rl_reader_open(path);
	if (!r)
		return -1;
	int rc = rl_adapter_read_reader(r, m, flags, a);
	rl_reader_close(r);
	return rc;
}

int rl_adapter_read_reader(rl_reader *r, const rl_model *m, int flags, rl_adapter *a)
{
	const char *path = rl_reader_name(r);
	memset(a, 0, sizeof *a);
	rl_msg msg;
	int got, rc = -1, have_header = 0;
	float *cur = NULL;             /* the tensor being filled */
	unsigned char *seen = NULL;    /* (2 * ntargets) A and B of each target read */
	while ((got = rl_read(r, &msg)) > 0) {
		if (msg.type == RL_MSG_HEADER) {
			if (strcmp(rl_reader_kind(r), "adapter")) {
				rl_seterr("%s: a %s stream, not an adapter stream", path, rl_reader_kind(r));
				goto done;
			}
			if (have_header) {
				rl_seterr("%s: a second adapter segment", path);
				goto done;
			}
			if (parse_header(msg.map, m, flags, a)) {
				rl_seterr("%s: header: %s", path, rl_err());
				goto done;
			}
			have_header = 1;
			seen = calloc((size_t)a->ntargets * 2, 1);
			if (!seen) {
				rl_seterr("out of memory");
				goto done;
			}
		} else if (msg.type == RL_MSG_TENSOR) {
			const rl_tensor_msg *t = &msg.tensor;
			if (t->row0 == 0) {
				size_t len = strlen(t->name);
				int is_b = len > 7 && strcmp(t->name + len - 7, ".lora_b") == 0;
				int is_a = len > 7 && strcmp(t->name + len - 7, ".lora_a") == 0;
				int k = is_a || is_b ? find_target(a, t->name, len - 7) : -1;
				if (k < 0) {
					rl_seterr("%s: tensor %s: not NAME.lora_a or NAME.lora_b of a target the header lists",
						  path, t->name);
					goto done;
				}
				const rl_lora_target *g = &a->targets[k];
				uint64_t rows = is_a ? (uint64_t)a->rank : (uint64_t)g->OC;
				uint64_t cols = is_a ? (uint64_t)g->IC : (uint64_t)a->rank;
				if (seen[2 * k + is_b]) {
					rl_seterr("%s: tensor %s: appears twice", path, t->name);
					goto done;
				}
				if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
					rl_seterr("%s: tensor %s: shape [%llu, %llu], but rank %d and %s (%d, %d) need [%llu, %llu]",
						  path, t->name, (unsigned long long)t->shape[0],
						  (unsigned long long)(t->ndim > 1 ? t->shape[1] : 0), a->rank, g->name,
						  g->OC, g->IC, (unsigned long long)rows, (unsigned long long)cols);
					goto done;
				}
				if (t->dtype != RL_F32 && t->dtype != RL_F16 && t->dtype != RL_BF16) {
					rl_seterr("%s: tensor %s: dtype %s; adapters are f32, f16 or bf16", path, t->name,
						  rl_dtypes[t->dtype].name);
					goto done;
				}
				seen[2 * k + is_b] = 1;
				cur = is_a ? g->a : g->b;
			}
			for (uint64_t i = 0; i < t->nrows; i++)
				rl_dtypes[t->dtype].to_float((const char *)t->data + i * t->row_bytes,
							    cur + (t->row0 + i) * t->shape[1], t->shape[1]);
		}
	}
	if (got < 0)
		goto done;
	for (int k = 0; k < a->ntargets; k++)
		if (!seen[2 * k] || !seen[2 * k + 1]) {
			rl_seterr("%s: tensor %s.lora_%c is missing", path, a->targets[k].name, seen[2 * k] ? 'b' : 'a');
			goto done;
		}
	if (rl_adapter_check_finite(a, path))
		goto done;
	rc = 0;
done:
	free(seen);
	if (rc)
		rl_adapter_free(a);
	return rc;
}

int rl_adapter_write(const rl_adapter *a, rl_writer *w, const char *producer)
{
	msgpack_packer *pk = rl_writer_packer(w);
	rl_pack_header(pk, "adapter", producer, 4);
	rl_pack_kv_int(pk, "rank", a->rank);
	rl_pack_kv_double(pk, "alpha", a->alpha);
	rl_pack_str(pk, "targets");
	msgpack_pack_array(pk, (size_t)a->ntargets);
	for (int k = 0; k < a->ntargets; k++)
		rl_pack_str(pk, a->targets[k].name);
	rl_pack_str(pk, "base");
	msgpack_pack_map(pk, 2);
	rl_pack_kv_str(pk, "content", a->base_content);
	rl_pack_kv_str(pk, "source", a->base_source);
	rl_writer_message_done(w);
	for (int k = 0; k < a->ntargets; k++) {
		const rl_lora_target *g = &a->targets[k];
		char name[80];
		uint64_t sa[2] = { (uint64_t)a->rank, (uint64_t)g->IC }, sb[2] = { (uint64_t)g->OC, (uint64_t)a->rank };
		snprintf(name, sizeof name, "%s.lora_a", g->name);
		if (rl_write_tensor(w, name, RL_F32, RL_F32, 2, sa, g->a, NULL, NULL))
			return -1;
		snprintf(name, sizeof name, "%s.lora_b", g->name);
		if (rl_write_tensor(w, name, RL_F32, RL_F32, 2, sb, g->b, NULL, NULL))
			return -1;
	}
	return rl_writer_flush(w);
}

int rl_model_attach_adapter(rl_model *m, rl_adapter *a)
{
	if (a->ntensors != m->ntensors) {
		rl_seterr("%s: the adapter was made for another model", m->origin);
		return -1;
	}
	rl_adapter *h = malloc(sizeof *h);
	if (!h) {
		rl_seterr("out of memory");
		return -1;
	}
	*h = *a;
	memset(a, 0, sizeof *a);
	if (m->adapter) {
		rl_adapter_free(m->adapter);
		free(m->adapter);
	}
	m->adapter = h;
	return 0;
}

int rl_model_arg_split(const char *arg)
{
	struct stat st;
	if (strcmp(arg, "-") == 0 || stat(arg, &st) == 0)
		return -1;
	const char *plus = strrchr(arg, '+');
	if (!plus || plus == arg || plus[1] == 0)
		return -1;
	return (int)(plus - arg);
}
