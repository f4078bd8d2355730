/* pack.c: recovery packs (pack.h): a pax tar of the base model stream, its
 * adapter stream, a manifest and optional results, written and read with
 * libarchive. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "afile.h"
#include "err.h"
#include "json.h"
#include "lora.h"
#include "pack.h"
#include "policy.h"
#include "sha256.h"
#include "stream.h"
#include "tool.h"

#define MAX_MANIFEST ((size_t)16 << 20)
#define MAX_TENSORS 65536

/* ---- JSON output, deterministic ---- */

static void json_str(FILE *f, const char *s) { rl_json_write_string(f, s, strlen(s)); }

static void json_double(FILE *f, double v)
{
	if (!isfinite(v))
		fputs("null", f);
	else if (v == (double)(long long)v && fabs(v) < 1e15)
		fprintf(f, "%lld", (long long)v);
	else
		fprintf(f, "%.17g", v);
}

/* Any msgpack value as JSON: binary data as null (configs hold none). */
static void json_from_msgpack(FILE *f, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: fputs("null", f); break;
	case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%llu", (unsigned long long)o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%lld", (long long)o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: json_double(f, o->via.f64); break;
	case MSGPACK_OBJECT_STR: rl_json_write_string(f, o->via.str.ptr, o->via.str.size); break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', f);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputs(", ", f);
			json_from_msgpack(f, &o->via.array.ptr[i]);
		}
		fputc(']', f);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', f);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				fputs(", ", f);
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type == MSGPACK_OBJECT_STR)
				rl_json_write_string(f, k->via.str.ptr, k->via.str.size);
			else
				fputs("\"?\"", f);
			fputs(": ", f);
			json_from_msgpack(f, &o->via.map.ptr[i].val);
		}
		fputc('}', f);
		break;
	default: fputs("null", f); break;
	}
}

/* ---- reading a member file once: validating, hashing, describing ---- */

typedef struct {
	int fd;
	rl_sha256 sha;
	uint64_t bytes;
	const char *path;
} file_src;

static long file_read(void *arg, void *buf, size_t n)
{
	file_src *s = arg;
	for (;;) {
		ssize_t got = read(s->fd, buf, n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rl_seterr("%s: %s", s->path, strerror(errno));
			return -1;
		}
		rl_sha256_update(&s->sha, buf, (size_t)got);
		s->bytes += (uint64_t)got;
		return got;
	}
}

typedef struct {
	char name[128];
	rl_dtype dtype;
	int ndim;
	uint64_t shape[2];
} tensor_desc;

typedef struct {
	char sha256[65];
	uint64_t bytes;
	char producer[128];
	char *header_json;     /* the kind's fields of the header, as JSON (allocated) */
	char content[65], source[65], arch[16];
	/* model */
	tensor_desc *tensors;  /* (ntensors) */
	int ntensors;
	/* adapter */
	int rank, ntargets;
	double alpha;
	char base_content[65], base_source[65];
	/* results */
	char *results_json;    /* a JSON array (allocated) */
	int nresults;
} member_desc;

static void member_free(member_desc *d)
{
	free(d->header_json);
	free(d->tensors);
	free(d->results_json);
	memset(d, 0, sizeof *d);
}

static char *msgpack_json(const msgpack_object *o)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	if (o)
		json_from_msgpack(f, o);
	else
		fputs("null", f);
	fclose(f);
	return buf;
}

/* Reads the stream file at path as a stream of the given kind, keeping what
 * the manifest says of it, and its size and sha256. */
static int describe(const char *path, const char *kind, member_desc *d)
{
	memset(d, 0, sizeof *d);
	file_src src = { .fd = open(path, O_RDONLY | O_CLOEXEC), .path = path };
	if (src.fd < 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		return -1;
	}
	rl_sha256_init(&src.sha);
	rl_reader *r = rl_reader_open_fn(path, file_read, &src);
	if (!r) {
		close(src.fd);
		return -1;
	}
	int rc = -1, got, cap = 0;
	rl_msg msg;
	FILE *results = NULL;
	size_t results_len = 0;
	if (strcmp(kind, "results") == 0 && !(results = open_memstream(&d->results_json, &results_len))) {
		rl_seterr("out of memory");
		goto done;
	}
	if (results)
		fputc('[', results);
	while ((got = rl_read(r, &msg)) > 0) {
		if (msg.type == RL_MSG_HEADER) {
			if (strcmp(rl_reader_kind(r), kind)) {
				rl_seterr("%s: a %s stream, not a%s %s stream", path, rl_reader_kind(r),
					  kind[0] == 'a' ? "n" : "", kind);
				goto done;
			}
			if (d->producer[0])
				continue; /* a later segment (results) */
			rl_mp_strcpy(msg.map, "producer", d->producer, sizeof d->producer);
			if (strcmp(kind, "model") == 0) {
				if (rl_mp_strcpy(msg.map, "arch", d->arch, sizeof d->arch) ||
				    rl_mp_strcpy(msg.map, "source", d->source, sizeof d->source)) {
					rl_seterr("%s: header: %s", path, rl_err());
					goto done;
				}
				d->header_json = msgpack_json(rl_mp_get(msg.map, "config"));
			} else if (strcmp(kind, "adapter") == 0) {
				int64_t rank;
				const msgpack_object *base = rl_mp_get(msg.map, "base"), *tg = rl_mp_get(msg.map, "targets");
				if (rl_mp_int(msg.map, "rank", &rank) || rl_mp_double(msg.map, "alpha", &d->alpha) ||
				    !base || base->type != MSGPACK_OBJECT_MAP ||
				    rl_mp_strcpy(base, "content", d->base_content, sizeof d->base_content) ||
				    rl_mp_strcpy(base, "source", d->base_source, sizeof d->base_source) || !tg ||
				    tg->type != MSGPACK_OBJECT_ARRAY) {
					rl_seterr("%s: header: not an adapter header (rank, alpha, targets, base)", path);
					goto done;
				}
				d->rank = (int)rank;
				d->ntargets = (int)tg->via.array.size;
				d->header_json = msgpack_json(tg);
			}
		} else if (msg.type == RL_MSG_TENSOR && msg.tensor.row0 == 0 && strcmp(kind, "model") == 0) {
			if (d->ntensors == cap) {
				if (cap >= MAX_TENSORS) {
					rl_seterr("%s: more than %d tensors", path, MAX_TENSORS);
					goto done;
				}
				cap = cap ? 2 * cap : 64;
				tensor_desc *t = realloc(d->tensors, (size_t)cap * sizeof *t);
				if (!t) {
					rl_seterr("out of memory");
					goto done;
				}
				d->tensors = t;
			}
			tensor_desc *t = &d->tensors[d->ntensors++];
			snprintf(t->name, sizeof t->name, "%s", msg.tensor.name);
			t->dtype = msg.tensor.dtype;
			t->ndim = msg.tensor.ndim > 2 ? 2 : msg.tensor.ndim;
			t->shape[0] = msg.tensor.shape[0];
			t->shape[1] = msg.tensor.ndim > 1 ? msg.tensor.shape[1] : 0;
		} else if (msg.type == RL_MSG_RESULT && results) {
			if (d->nresults++)
				fputs(", ", results);
			json_from_msgpack(results, msg.map);
		}
	}
	if (got < 0)
		goto done;
	if (results) {
		fputc(']', results);
		fclose(results);
		results = NULL;
	}
	rl_reader_content(r, d->content);
	unsigned char dg[32];
	rl_sha256_final(&src.sha, dg);
	rl_sha256_hex(dg, d->sha256);
	d->bytes = src.bytes;
	rc = 0;
done:
	if (results)
		fclose(results);
	rl_reader_close(r);
	close(src.fd);
	if (rc)
		member_free(d);
	return rc;
}

/* ---- the policy a model's dtypes say, in qpack's grammar ---- */

/* "blk.N.KIND.weight" -> layer N and KIND; others -> -1 and the name less ".weight" */
static int split_tensor_name(const char *name, char *kind, size_t size)
{
	int layer = -1, n = 0;
	if (sscanf(name, "blk.%d.%n", &layer, &n) == 1 && n > 0)
		name += n;
	else
		layer = -1;
	snprintf(kind, size, "%s", name);
	size_t len = strlen(kind);
	if (len > 7 && strcmp(kind + len - 7, ".weight") == 0)
		kind[len - 7] = 0;
	return layer;
}

/* A policy string that stores every 2-D tensor of d in its dtype: the blocks'
 * most common format bare, then rules for the kinds (and layer runs) that
 * differ. Checked by parsing it and asking it each tensor's dtype; NULL when
 * it does not reproduce them (then the manifest lists dtypes only). */
static char *policy_of(const member_desc *d)
{
	int counts[RL_NDTYPES] = { 0 };
	for (int i = 0; i < d->ntensors; i++) {
		char kind[128];
		if (d->tensors[i].ndim == 2 && split_tensor_name(d->tensors[i].name, kind, sizeof kind) >= 0)
			counts[d->tensors[i].dtype]++;
	}
	int def = RL_F32;
	for (int t = 0; t < RL_NDTYPES; t++)
		if (counts[t] > counts[def])
			def = t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fputs(rl_dtypes[def].name, f);
	/* kinds stored alike in every layer get one rule per format ("a,b=X");
	 * the rest one rule per tensor */
	char *done = calloc((size_t)d->ntensors + 1, 1);
	char (*kinds)[128] = calloc((size_t)d->ntensors + 1, sizeof *kinds);
	rl_dtype *kind_dt = calloc((size_t)d->ntensors + 1, sizeof *kind_dt);
	int nkinds = 0;
	for (int i = 0; done && kinds && kind_dt && i < d->ntensors; i++) {
		const tensor_desc *t = &d->tensors[i];
		if (t->ndim != 2 || done[i])
			continue;
		char kind[128];
		int layer = split_tensor_name(t->name, kind, sizeof kind);
		rl_dtype implied = layer >= 0 ? (rl_dtype)def
					      : rl_dtype_quantized((rl_dtype)def) ? RL_Q8G32 : (rl_dtype)def;
		int uniform = 1;
		for (int j = 0; j < d->ntensors; j++) {
			char k2[128];
			int l2 = split_tensor_name(d->tensors[j].name, k2, sizeof k2);
			if (d->tensors[j].ndim == 2 && strcmp(k2, kind) == 0 && (l2 >= 0) == (layer >= 0))
				uniform &= d->tensors[j].dtype == t->dtype;
		}
		for (int j = 0; uniform && j < d->ntensors; j++) {
			char k2[128];
			int l2 = split_tensor_name(d->tensors[j].name, k2, sizeof k2);
			if (d->tensors[j].ndim == 2 && strcmp(k2, kind) == 0 && (l2 >= 0) == (layer >= 0))
				done[j] = 1;
		}
		if (!uniform) {
			done[i] = 1;
			if (t->dtype != implied)
				fprintf(f, ";blk.%d.%s=%s", layer, kind, rl_dtypes[t->dtype].name);
		} else if (t->dtype != implied) {
			snprintf(kinds[nkinds], sizeof kinds[nkinds], "%s", kind);
			kind_dt[nkinds++] = t->dtype;
		}
	}
	for (int k = 0; k < nkinds; k++) {
		if (!kinds[k][0])
			continue;
		fprintf(f, ";%s", kinds[k]);
		for (int j = k + 1; j < nkinds; j++)
			if (kind_dt[j] == kind_dt[k]) {
				fprintf(f, ",%s", kinds[j]);
				kinds[j][0] = 0;
			}
		fprintf(f, "=%s", rl_dtypes[kind_dt[k]].name);
	}
	free(done);
	free(kinds);
	free(kind_dt);
	fclose(f);
	/* the check below is what makes it trustworthy */
	rl_policy *p = buf ? rl_policy_parse(buf) : NULL;
	int ok = p != NULL;
	for (int i = 0; ok && i < d->ntensors; i++) {
		rl_tensor t = { .dtype = d->tensors[i].dtype, .ndim = d->tensors[i].ndim };
		snprintf(t.name, sizeof t.name, "%.63s", d->tensors[i].name);
		t.shape[0] = d->tensors[i].shape[0];
		t.shape[1] = d->tensors[i].shape[1];
		rl_dtype dt;
		if (t.ndim == 2 && (rl_policy_dtype(p, &t, &dt) || dt != t.dtype))
			ok = 0;
	}
	rl_policy_free(p);
	if (!ok) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- writing ---- */

static const char *const member_names[] = { "adapter.msgpack", "manifest.json", "model.msgpack", "results.msgpack" };

static char *manifest_json(const rl_pack_spec *s, const member_desc *model, const member_desc *adapter,
			   const member_desc *results)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fprintf(f, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n", RL_PACK_FORMAT, RL_PACK_VERSION);
	fputs("  \"tools\": {\"pack\": ", f);
	json_str(f, s->producer);
	fputs(", \"model\": ", f);
	json_str(f, model->producer);
	fputs(", \"adapter\": ", f);
	json_str(f, adapter->producer);
	if (results) {
		fputs(", \"results\": ", f);
		json_str(f, results->producer);
	}
	fputs("},\n  \"members\": {", f);
	const member_desc *m[] = { adapter, model, results };
	const char *names[] = { member_names[0], member_names[2], member_names[3] };
	for (int i = 0; i < 3; i++) {
		if (!m[i])
			continue;
		fprintf(f, "%s\n    ", i ? "," : "");
		json_str(f, names[i]);
		fprintf(f, ": {\"bytes\": %llu, \"sha256\": \"%s\"}", (unsigned long long)m[i]->bytes, m[i]->sha256);
	}
	fputs("\n  },\n  \"model\": {\"arch\": ", f);
	json_str(f, model->arch);
	fprintf(f, ", \"content\": \"%s\", \"source\": \"%s\", \"policy\": ", model->content, model->source);
	char *policy = policy_of(model);
	if (policy)
		json_str(f, policy);
	else
		fputs("null", f);
	free(policy);
	fputs(",\n    \"dtypes\": {", f);
	for (int i = 0; i < model->ntensors; i++) {
		fprintf(f, "%s", i ? ", " : "");
		json_str(f, model->tensors[i].name);
		fputs(": ", f);
		json_str(f, rl_dtypes[model->tensors[i].dtype].name);
	}
	fprintf(f, "}},\n  \"config\": %s,\n", model->header_json ? model->header_json : "null");
	fprintf(f, "  \"adapter\": {\"rank\": %d, \"alpha\": ", adapter->rank);
	json_double(f, adapter->alpha);
	fprintf(f, ", \"targets\": %s,\n    \"base\": {\"content\": \"%s\", \"source\": \"%s\"}}",
		adapter->header_json ? adapter->header_json : "[]", adapter->base_content, adapter->base_source);
	if (results)
		fprintf(f, ",\n  \"results\": %s", results->results_json ? results->results_json : "[]");
	fputs("\n}\n", f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void entry_header(struct archive_entry *e, const char *name, uint64_t size)
{
	archive_entry_clear(e);
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_mtime(e, 0, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
}

/* Copies the file at path into the archive as name, checking that its bytes
 * are still those described (size and sha256). */
static int add_file(struct archive *a, struct archive_entry *e, const char *name, const char *path,
		    const member_desc *d)
{
	entry_header(e, name, d->bytes);
	if (archive_write_header(a, e) != ARCHIVE_OK) {
		rl_seterr("%s: %s", name, archive_error_string(a));
		return -1;
	}
	file_src src = { .fd = open(path, O_RDONLY | O_CLOEXEC), .path = path };
	if (src.fd < 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		return -1;
	}
	rl_sha256_init(&src.sha);
	size_t cap = 1 << 20;
	char *buf = malloc(cap);
	int rc = buf ? 0 : -1;
	long got;
	while (rc == 0 && (got = file_read(&src, buf, cap)) > 0)
		if (archive_write_data(a, buf, (size_t)got) != got) {
			rl_seterr("%s: %s", name, archive_error_string(a));
			rc = -1;
		}
	if (rc == 0 && got < 0)
		rc = -1;
	free(buf);
	close(src.fd);
	char hex[65];
	unsigned char dg[32];
	rl_sha256_final(&src.sha, dg);
	rl_sha256_hex(dg, hex);
	if (rc == 0 && (src.bytes != d->bytes || strcmp(hex, d->sha256))) {
		rl_seterr("%s: changed while it was being packed", path);
		rc = -1;
	}
	return rc;
}

int rl_pack_write(const char *path, const rl_pack_spec *s)
{
	member_desc model, adapter, results;
	memset(&results, 0, sizeof results);
	if (describe(s->model, "model", &model))
		return -1;
	if (describe(s->adapter, "adapter", &adapter)) {
		member_free(&model);
		return -1;
	}
	if (s->results && describe(s->results, "results", &results)) {
		member_free(&model);
		member_free(&adapter);
		return -1;
	}
	int rc = -1;
	char *manifest = NULL;
	struct archive *a = NULL;
	struct archive_entry *e = NULL;
	rl_afile out = { 0 };
	if (strcmp(adapter.base_content, model.content) || strcmp(adapter.base_source, model.source)) {
		rl_seterr("%s: trained on the model of content %.12s (source %.12s), but %s has content %.12s (source %.12s)",
			  s->adapter, adapter.base_content, adapter.base_source, s->model, model.content, model.source);
		goto done;
	}
	if (!(manifest = manifest_json(s, &model, &adapter, s->results ? &results : NULL))) {
		rl_seterr("%s: out of memory writing the manifest", path);
		goto done;
	}
	if (rl_afile_open(&out, path))
		goto done;
	a = archive_write_new();
	e = archive_entry_new();
	if (!a || !e || archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fileno(out.f)) != ARCHIVE_OK) {
		rl_seterr("%s: %s", path, a ? archive_error_string(a) : "out of memory");
		goto done;
	}
	if (add_file(a, e, member_names[0], s->adapter, &adapter))
		goto done;
	size_t mlen = strlen(manifest);
	entry_header(e, member_names[1], mlen);
	if (archive_write_header(a, e) != ARCHIVE_OK || archive_write_data(a, manifest, mlen) != (la_ssize_t)mlen) {
		rl_seterr("%s: %s", path, archive_error_string(a));
		goto done;
	}
	if (add_file(a, e, member_names[2], s->model, &model))
		goto done;
	if (s->results && add_file(a, e, member_names[3], s->results, &results))
		goto done;
	if (archive_write_close(a) != ARCHIVE_OK) {
		rl_seterr("%s: %s", path, archive_error_string(a));
		goto done;
	}
	rc = rl_afile_commit(&out);
done:
	if (rc && out.f)
		rl_afile_abort(&out);
	if (a)
		archive_write_free(a);
	if (e)
		archive_entry_free(e);
	free(manifest);
	member_free(&model);
	member_free(&adapter);
	member_free(&results);
	return rc;
}

/* ---- reading ---- */

int rl_pack_sniff(const char *path)
{
	unsigned char b[263];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof b);
	close(fd);
	return n == (ssize_t)sizeof b && memcmp(b + 257, "ustar", 5) == 0;
}

typedef struct {
	char name[32];
	uint64_t bytes;
	char sha256[65];
} manifest_member;

typedef struct {
	rl_json *json;
	int nmembers;
	manifest_member members[4];
} manifest;

static int manifest_parse(const char *path, const char *text, size_t len, manifest *mf)
{
	memset(mf, 0, sizeof *mf);
	rl_json *j = rl_json_parse(text, len);
	if (!j) {
		rl_seterr("%s: manifest.json: %s", path, rl_err());
		return -1;
	}
	mf->json = j;
	const rl_json *fmt = rl_json_get(j, "format"), *ver = rl_json_get(j, "version"),
		      *mem = rl_json_get(j, "members");
	if (!fmt || fmt->type != RL_JSON_STRING || strcmp(fmt->string, RL_PACK_FORMAT)) {
		rl_seterr("%s: manifest.json: field format: not \"%s\"", path, RL_PACK_FORMAT);
		return -1;
	}
	if (!ver || ver->type != RL_JSON_NUMBER || ver->number != RL_PACK_VERSION) {
		rl_seterr("%s: manifest.json: field version: not %d (a pack from a newer lora-merge? use that one)",
			  path, RL_PACK_VERSION);
		return -1;
	}
	if (!mem || mem->type != RL_JSON_OBJECT) {
		rl_seterr("%s: manifest.json: field members: missing or not an object", path);
		return -1;
	}
	for (size_t i = 0; i < mem->len; i++) {
		const char *name = mem->keys[i];
		int known = -1;
		for (int k = 0; k < 4; k++)
			if (k != 1 && strcmp(name, member_names[k]) == 0)
				known = k;
		const rl_json *v = mem->items[i], *b = rl_json_get(v, "bytes"), *h = rl_json_get(v, "sha256");
		if (known < 0) {
			rl_seterr("%s: manifest.json: members: \"%.40s\" is not a member a pack has", path, name);
			return -1;
		}
		for (int k = 0; k < mf->nmembers; k++)
			if (strcmp(mf->members[k].name, name) == 0) {
				rl_seterr("%s: manifest.json: members: %s twice", path, name);
				return -1;
			}
		if (!b || b->type != RL_JSON_NUMBER || !b->is_integer || b->integer < 0 || !h ||
		    h->type != RL_JSON_STRING || h->len != 64 || strspn(h->string, "0123456789abcdef") != 64) {
			rl_seterr("%s: manifest.json: members: %s: needs bytes (an integer) and sha256 (64 hex digits)",
				  path, name);
			return -1;
		}
		manifest_member *m = &mf->members[mf->nmembers++];
		snprintf(m->name, sizeof m->name, "%s", name);
		m->bytes = (uint64_t)b->integer;
		memcpy(m->sha256, h->string, 65);
	}
	for (int k = 0; k < 3; k += 2) { /* adapter and model are required */
		int found = 0;
		for (int i = 0; i < mf->nmembers; i++)
			found |= strcmp(mf->members[i].name, member_names[k]) == 0;
		if (!found) {
			rl_seterr("%s: manifest.json: members: %s is missing", path, member_names[k]);
			return -1;
		}
	}
	return 0;
}

static const manifest_member *manifest_find(const manifest *mf, const char *name)
{
	for (int i = 0; i < mf->nmembers; i++)
		if (strcmp(mf->members[i].name, name) == 0)
			return &mf->members[i];
	return NULL;
}

/* An archive entry we may read: a regular file with a plain name. */
static int entry_ok(const char *path, struct archive_entry *e)
{
	const char *name = archive_entry_pathname(e);
	if (!name || !*name) {
		rl_seterr("%s: an entry without a name", path);
		return -1;
	}
	if (name[0] == '/' || strcmp(name, "..") == 0 || strncmp(name, "../", 3) == 0 || strstr(name, "/../") ||
	    (strlen(name) >= 3 && strcmp(name + strlen(name) - 3, "/..") == 0)) {
		rl_seterr("%s: entry \"%.80s\": an absolute path or one with \"..\"; refused", path, name);
		return -1;
	}
	if (strchr(name, '/')) {
		rl_seterr("%s: entry \"%.80s\": a pack's members have plain names, not paths", path, name);
		return -1;
	}
	if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || archive_entry_symlink(e)) {
		rl_seterr("%s: entry \"%.80s\": not a regular file", path, name);
		return -1;
	}
	if (archive_entry_size_is_set(e) && archive_entry_size(e) < 0) {
		rl_seterr("%s: entry \"%.80s\": a negative size", path, name);
		return -1;
	}
	return 0;
}

static struct archive *open_archive(const char *path)
{
	struct archive *a = archive_read_new();
	if (!a) {
		rl_seterr("%s: out of memory", path);
		return NULL;
	}
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		rl_seterr("%s: %s", path, archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* the bytes of the current entry, hashed as they go by */
typedef struct {
	struct archive *a;
	const char *path, *name;
	rl_sha256 sha;
	uint64_t bytes;
} member_src;

static long member_read(void *arg, void *buf, size_t n)
{
	member_src *s = arg;
	la_ssize_t got = archive_read_data(s->a, buf, n);
	if (got < 0) {
		rl_seterr("%s: %s: %s", s->path, s->name, archive_error_string(s->a));
		return -1;
	}
	rl_sha256_update(&s->sha, buf, (size_t)got);
	s->bytes += (uint64_t)got;
	return got;
}

/* Reads the rest of the entry (hashing it) and compares with the manifest. */
static int member_finish(member_src *s, const manifest_member *mm)
{
	char buf[1 << 14];
	long got;
	while ((got = member_read(s, buf, sizeof buf)) > 0)
		;
	if (got < 0)
		return -1;
	char hex[65];
	unsigned char dg[32];
	rl_sha256_final(&s->sha, dg);
	rl_sha256_hex(dg, hex);
	if (!mm) {
		rl_seterr("%s: entry %s is not listed in the manifest", s->path, s->name);
		return -1;
	}
	if (s->bytes != mm->bytes || strcmp(hex, mm->sha256)) {
		rl_seterr("%s: member %s fails its check: %llu bytes with sha256 %.12s, the manifest says %llu bytes with %.12s",
			  s->path, s->name, (unsigned long long)s->bytes, hex, (unsigned long long)mm->bytes,
			  mm->sha256);
		return -1;
	}
	return 0;
}

/* Reads the manifest entry (current) into mf. */
static int read_manifest(struct archive *a, const char *path, struct archive_entry *e, manifest *mf)
{
	la_int64_t size = archive_entry_size(e);
	if (size <= 0 || (uint64_t)size > MAX_MANIFEST) {
		rl_seterr("%s: manifest.json: %lld bytes; a manifest has 1 to %zu", path, (long long)size, MAX_MANIFEST);
		return -1;
	}
	char *text = malloc((size_t)size);
	if (!text) {
		rl_seterr("%s: out of memory", path);
		return -1;
	}
	la_ssize_t got = 0, n;
	while (got < size && (n = archive_read_data(a, text + got, (size_t)(size - got))) > 0)
		got += n;
	if (got != size) {
		rl_seterr("%s: manifest.json: cut short", path);
		free(text);
		return -1;
	}
	int rc = manifest_parse(path, text, (size_t)size, mf);
	free(text);
	return rc;
}

/* One pass over the archive: every entry checked; the manifest read; each
 * member hashed and, once the manifest is known, compared. want names a
 * member to hand to fn (a stream reader over its bytes) instead of only
 * hashing it. Members before the manifest are hashed and compared after it. */
typedef int (*member_fn)(rl_reader *r, void *arg);

static int pass(const char *path, const char *want, member_fn fn, void *arg, manifest *mf, rl_pack_info *info)
{
	struct archive *a = open_archive(path);
	if (!a)
		return -1;
	struct archive_entry *e;
	int rc = -1, have_manifest = 0, seen[4] = { 0 }, got_want = 0, r;
	struct { char name[32]; uint64_t bytes; char hex[65]; } early[4];
	int nearly = 0;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		if (entry_ok(path, e))
			goto done;
		const char *name = archive_entry_pathname(e);
		int k = -1;
		for (int i = 0; i < 4; i++)
			if (strcmp(name, member_names[i]) == 0)
				k = i;
		if (k < 0) {
			rl_seterr("%s: entry \"%.80s\" is not a member a pack has", path, name);
			goto done;
		}
		if (seen[k]++) {
			rl_seterr("%s: entry %s appears twice", path, name);
			goto done;
		}
		if (k == 1) {
			if (read_manifest(a, path, e, mf))
				goto done;
			have_manifest = 1;
			for (int i = 0; i < nearly; i++) {
				const manifest_member *mm = manifest_find(mf, early[i].name);
				if (!mm || mm->bytes != early[i].bytes || strcmp(mm->sha256, early[i].hex)) {
					rl_seterr("%s: member %s fails its check against the manifest", path, early[i].name);
					goto done;
				}
			}
			continue;
		}
		member_src src = { .a = a, .path = path, .name = member_names[k] };
		rl_sha256_init(&src.sha);
		if (want && strcmp(name, want) == 0) {
			char label[600];
			snprintf(label, sizeof label, "%s:%s", path, name);
			rl_reader *rd = rl_reader_open_fn(label, member_read, &src);
			if (!rd)
				goto done;
			int frc = fn(rd, arg);
			rl_reader_close(rd);
			if (frc)
				goto done;
			got_want = 1;
		}
		if (have_manifest) {
			if (member_finish(&src, manifest_find(mf, member_names[k])))
				goto done;
		} else {
			if (nearly >= 4)
				goto done;
			char buf[1 << 14];
			long n;
			while ((n = member_read(&src, buf, sizeof buf)) > 0)
				;
			if (n < 0)
				goto done;
			unsigned char dg[32];
			rl_sha256_final(&src.sha, dg);
			snprintf(early[nearly].name, sizeof early[nearly].name, "%s", name);
			early[nearly].bytes = src.bytes;
			rl_sha256_hex(dg, early[nearly].hex);
			nearly++;
		}
		if (info && info->nmembers < 4) {
			int i = info->nmembers++;
			snprintf(info->names[i], sizeof info->names[i], "%s", name);
			info->bytes[i] = src.bytes;
			const manifest_member *mm = have_manifest ? manifest_find(mf, name) : NULL;
			snprintf(info->sha256[i], sizeof info->sha256[i], "%s", mm ? mm->sha256 : early[nearly - 1].hex);
		}
	}
	if (r != ARCHIVE_EOF) {
		rl_seterr("%s: %s", path, archive_error_string(a));
		goto done;
	}
	if (!have_manifest) {
		rl_seterr("%s: not a recovery pack: no manifest.json", path);
		goto done;
	}
	for (int i = 0; i < mf->nmembers; i++) {
		int k = 0;
		while (k < 4 && strcmp(member_names[k], mf->members[i].name))
			k++;
		if (k == 4 || !seen[k]) {
			rl_seterr("%s: member %s, listed in the manifest, is missing", path, mf->members[i].name);
			goto done;
		}
	}
	for (int k = 0; k < 4; k++)
		if (k != 1 && seen[k] && !manifest_find(mf, member_names[k])) {
			rl_seterr("%s: entry %s is not listed in the manifest", path, member_names[k]);
			goto done;
		}
	if (want && !got_want) {
		rl_seterr("%s: no %s in the pack", path, want);
		goto done;
	}
	rc = 0;
done:
	archive_read_free(a);
	return rc;
}

int rl_pack_verify(const char *path, rl_pack_info *info)
{
	manifest mf = { 0 };
	if (info)
		memset(info, 0, sizeof *info);
	int rc = pass(path, NULL, NULL, NULL, &mf, info);
	if (rc == 0 && info) {
		const rl_json *m = rl_json_get(mf.json, "model"), *ad = rl_json_get(mf.json, "adapter"),
			      *res = rl_json_get(mf.json, "results");
		const rl_json *v;
		if (m && (v = rl_json_get(m, "content")) && v->type == RL_JSON_STRING)
			snprintf(info->model_content, sizeof info->model_content, "%s", v->string);
		if (m && (v = rl_json_get(m, "source")) && v->type == RL_JSON_STRING)
			snprintf(info->model_source, sizeof info->model_source, "%s", v->string);
		if (m && (v = rl_json_get(m, "arch")) && v->type == RL_JSON_STRING)
			snprintf(info->arch, sizeof info->arch, "%s", v->string);
		if (ad && (v = rl_json_get(ad, "rank")) && v->type == RL_JSON_NUMBER)
			info->rank = (int)v->number;
		if (ad && (v = rl_json_get(ad, "alpha")) && v->type == RL_JSON_NUMBER)
			info->alpha = v->number;
		if (ad && (v = rl_json_get(ad, "targets")) && v->type == RL_JSON_ARRAY)
			info->ntargets = (int)v->len;
		if (res && res->type == RL_JSON_ARRAY)
			info->nresults = (int)res->len;
	}
	rl_json_free(mf.json);
	return rc;
}

static int load_model_member(rl_reader *r, void *arg) { return rl_model_load_reader(r, arg); }

typedef struct {
	const rl_model *m;
	rl_adapter *a;
} adapter_arg;

static int load_adapter_member(rl_reader *r, void *arg)
{
	adapter_arg *x = arg;
	return rl_adapter_read_reader(r, x->m, 0, x->a);
}

int rl_model_load_pack(const char *path, rl_model *m)
{
	manifest mf = { 0 };
	memset(m, 0, sizeof *m);
	int rc = pass(path, member_names[2], load_model_member, m, &mf, NULL);
	rl_json_free(mf.json);
	if (rc) {
		rl_model_free(m); /* loaded, but a later check failed */
		return -1;
	}
	rl_adapter a;
	memset(&a, 0, sizeof a);
	adapter_arg x = { m, &a };
	memset(&mf, 0, sizeof mf);
	rc = pass(path, member_names[0], load_adapter_member, &x, &mf, NULL);
	rl_json_free(mf.json);
	if (rc || rl_model_attach_adapter(m, &a)) {
		rl_adapter_free(&a);
		rl_model_free(m);
		return -1;
	}
	snprintf(m->origin, sizeof m->origin, "%s", path);
	return 0;
}
