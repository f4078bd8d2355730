/* test_stream: the tstream reader and writer (tstream(5)).
 *
 * Valid streams read back byte for byte with the content hash their end
 * records; every kind of damage is refused with rl_read's -1 and a message that
 * names the stream and the problem; random and mutated bytes end in 0 or -1,
 * never in a crash, a hang or a large allocation. Streams the writer would
 * never make are packed by hand (struct forge). Tests that could crash run in
 * a child process, so a crash is a FAIL line and not the end of the test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "stream.h"
#include "t.h"
#include "tokenizer.h"

static char tmpdir[256];

/* A path in the temporary directory (one of 8 static buffers, reused in turn). */
static const char *tmp(const char *name)
{
	static char buf[8][512];
	static int i;
	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
	return buf[i];
}

static int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* Allocates the file's bytes (caller frees); NULL on error. */
static unsigned char *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0, got;
	unsigned char *p = malloc(cap);
	while (p && (got = fread(p + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			unsigned char *q = realloc(p, cap *= 2);
			if (!q)
				free(p);
			p = q;
		}
	}
	fclose(f);
	*n = len;
	return p;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- reading ---- */

/* Reads a stream to its end: rl_read's last answer (0 or -1; -1 also when the
 * stream can't be opened), the messages read before it in *n. */
static int read_all(const char *path, int *n)
{
	rl_reader *r = rl_reader_open(path);
	*n = 0;
	if (!r)
		return -1;
	rl_msg m;
	int got;
	while ((got = rl_read(r, &m)) == 1 && *n < 1000000)
		(*n)++;
	rl_reader_close(r);
	return got;
}

/* The stream must fail with a message naming it and containing what (and what2). */
static void expect_fail(const char *name, const char *path, const char *what, const char *what2)
{
	int n;
	int rc = read_all(path, &n);
	const char *e = rl_err();
	if (getenv("VERBOSE"))
		printf("# %s: %s\n", name, e);
	CHECK(rc == -1 && strstr(e, path) && strstr(e, what) && (!what2 || strstr(e, what2)), name,
	      "rl_read gave %d after %d messages, error \"%s\"; wanted -1 and an error naming the file with \"%s\"%s%s%s",
	      rc, n, e, what, what2 ? " and \"" : "", what2 ? what2 : "", what2 ? "\"" : "");
}

static void expect_ok(const char *name, const char *path, int want_messages)
{
	int n;
	int rc = read_all(path, &n);
	CHECK(rc == 0 && (want_messages < 0 || n == want_messages), name,
	      "rl_read gave %d after %d messages (wanted 0 after %d): %s", rc, n, want_messages, rc ? rl_err() : "");
}

/* ---- streams packed by hand ---- */

typedef struct {
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint64_t count;      /* messages of the current segment so far: what its end records */
	rl_sha256 content;   /* the current segment's tensor payloads, as tstream(5) hashes them */
	size_t ends[64];     /* offset just past each message */
	int nmsg;
} forge;

static void forge_init(forge *f)
{
	memset(f, 0, sizeof *f);
	msgpack_sbuffer_init(&f->sb);
	msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
	rl_sha256_init(&f->content);
}

static void forge_free(forge *f)
{
	msgpack_sbuffer_destroy(&f->sb);
}

/* Call after each whole message. */
static void forge_done(forge *f)
{
	f->count++;
	if (f->nmsg < 64)
		f->ends[f->nmsg++] = f->sb.size;
}

static const char *forge_save(forge *f, const char *name)
{
	const char *path = tmp(name);
	if (write_file(path, f->sb.data, f->sb.size)) {
		fprintf(stderr, "test_stream: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	return path;
}

static void pack_config(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 14);
	rl_pack_kv_int(pk, "dim", 3);
	rl_pack_kv_int(pk, "hidden_dim", 8);
	rl_pack_kv_int(pk, "n_layers", 1);
	rl_pack_kv_int(pk, "n_heads", 1);
	rl_pack_kv_int(pk, "n_kv_heads", 1);
	rl_pack_kv_int(pk, "head_dim", 2);
	rl_pack_kv_int(pk, "vocab_size", 4);
	rl_pack_kv_int(pk, "seq_len", 16);
	rl_pack_kv_double(pk, "rope_theta", 10000);
	rl_pack_kv_str(pk, "rope_style", "interleaved");
	rl_pack_kv_double(pk, "norm_eps", 1e-5);
	rl_pack_kv_bool(pk, "qk_norm", 0);
	rl_pack_kv_bool(pk, "qkv_bias", 0);
	rl_pack_kv_bool(pk, "tied_embeddings", 1);
}

static const char *SOURCE_A = "5f70d5cf0b2c0d1b6f0f8dbd1b8a1f41c4bd2c4d9d6a0e5e7c1d8b1a2b3c4d5e";
static const char *SOURCE_B = "0000000000000000000000000000000000000000000000000000000000000000";

/* A model header; extra_key, when not NULL, adds a key a future version might. */
static void forge_model_header(forge *f, const char *format, int64_t version, const char *kind,
			       const char *source, const char *extra_key)
{
	msgpack_packer *pk = &f->pk;
	f->count = 0;
	rl_sha256_init(&f->content);
	msgpack_pack_map(pk, 8 + (extra_key != NULL));
	rl_pack_kv_str(pk, "t", "header");
	rl_pack_kv_str(pk, "format", format);
	rl_pack_kv_int(pk, "version", version);
	rl_pack_kv_str(pk, "kind", kind);
	rl_pack_kv_str(pk, "producer", "test_stream 1.0");
	rl_pack_kv_str(pk, "arch", "llama");
	rl_pack_str(pk, "config");
	pack_config(pk);
	rl_pack_kv_str(pk, "source", source);
	if (extra_key) {
		rl_pack_str(pk, extra_key);
		msgpack_pack_array(pk, 2);
		msgpack_pack_map(pk, 1);
		rl_pack_kv_double(pk, "x", 1.5);
		msgpack_pack_nil(pk);
	}
	forge_done(f);
}

static void forge_tokenizer(forge *f)
{
	static const char *pieces[] = { "<unk>", "<s>", "</s>", "a" };
	float scores[4] = { 0, 0, 0, -1 };
	msgpack_packer *pk = &f->pk;
	msgpack_pack_map(pk, 7);
	rl_pack_kv_str(pk, "t", "tokenizer");
	rl_pack_kv_str(pk, "type", "sentencepiece");
	rl_pack_str(pk, "pieces");
	msgpack_pack_array(pk, 4);
	for (int i = 0; i < 4; i++) {
		msgpack_pack_bin(pk, strlen(pieces[i]));
		msgpack_pack_bin_body(pk, pieces[i], strlen(pieces[i]));
	}
	rl_pack_kv_bin(pk, "scores", scores, sizeof scores);
	rl_pack_kv_int(pk, "bos_id", 1);
	rl_pack_kv_int(pk, "eos_id", 2);
	rl_pack_kv_bool(pk, "add_dummy_prefix", 1);
	forge_done(f);
}

/* One tensor chunk; its payload joins the content hash as a reader would take it. */
static void forge_chunk(forge *f, const char *name, const char *dtype, int ndim, const uint64_t *shape,
			uint64_t row0, uint64_t nrows, const void *data, size_t len, const char *extra_key)
{
	msgpack_packer *pk = &f->pk;
	msgpack_pack_map(pk, 7 + (extra_key != NULL));
	rl_pack_kv_str(pk, "t", "tensor");
	rl_pack_kv_str(pk, "name", name);
	rl_pack_kv_str(pk, "dtype", dtype);
	rl_pack_str(pk, "shape");
	msgpack_pack_array(pk, (size_t)ndim);
	for (int i = 0; i < ndim; i++)
		msgpack_pack_uint64(pk, shape[i]);
	rl_pack_str(pk, "row0");
	msgpack_pack_uint64(pk, row0);
	rl_pack_str(pk, "nrows");
	msgpack_pack_uint64(pk, nrows);
	if (extra_key)
		rl_pack_kv_str(pk, extra_key, "ignored");
	rl_pack_kv_bin(pk, "data", data, len);
	int dt = rl_dtype_from_name(dtype, strlen(dtype));
	if (row0 == 0 && dt >= 0 && ndim >= 1 && ndim <= RL_MAX_DIMS)
		rl_hash_tensor_begin(&f->content, name, (rl_dtype)dt, ndim, shape);
	rl_sha256_update(&f->content, data, len);
	forge_done(f);
}

/* A whole 2-D f32 tensor in one chunk. */
static void forge_tensor(forge *f, const char *name, uint64_t rows, uint64_t cols, const float *data)
{
	uint64_t shape[2] = { rows, cols };
	forge_chunk(f, name, "f32", 2, shape, 0, rows, data, rows * cols * sizeof(float), NULL);
}

static void content_hex(forge *f, char hex[65])
{
	rl_sha256 copy = f->content;
	unsigned char d[32];
	rl_sha256_final(&copy, d);
	rl_sha256_hex(d, hex);
}

/* end with count messages (the segment's so far when count < 0) and the content hash (content NULL). */
static void forge_end(forge *f, int64_t count, const char *content)
{
	char hex[65];
	content_hex(f, hex);
	msgpack_pack_map(&f->pk, 3);
	rl_pack_kv_str(&f->pk, "t", "end");
	rl_pack_kv_int(&f->pk, "count", count < 0 ? (int64_t)f->count : count);
	rl_pack_kv_str(&f->pk, "content", content ? content : hex);
	forge_done(f);
}

static const float small_a[6] = { 1, 2, 3, 4, 5, 6 };      /* (2, 3) */
static const float small_b[15] = { 1, -1, 0.5f, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 }; /* (5, 3) */

/* header, tokenizer, a tensor in one chunk, a tensor in three chunks, end */
static void forge_small_model(forge *f)
{
	uint64_t shape[2] = { 5, 3 };
	forge_model_header(f, "tstream", 1, "model", SOURCE_A, NULL);
	forge_tokenizer(f);
	forge_tensor(f, "output_norm.weight", 2, 3, small_a);
	forge_chunk(f, "token_embd.weight", "f32", 2, shape, 0, 2, small_b, 24, NULL);
	forge_chunk(f, "token_embd.weight", "f32", 2, shape, 2, 2, small_b + 6, 24, NULL);
	forge_chunk(f, "token_embd.weight", "f32", 2, shape, 4, 1, small_b + 12, 12, NULL);
	forge_end(f, -1, NULL);
}

/* ---- samples ---- */

typedef struct {
	int32_t tokens[64];
	size_t tokens_bytes;
	uint64_t prompt_len;
	int32_t ids[1024];
	size_t ids_bytes;
	unsigned char logits[4096];
	size_t logits_bytes;
	float lse[64];
	size_t lse_bytes;
	float tau[64];
	size_t tau_bytes;
} sample;

/* A consistent sample of T tokens after a prompt of P, top-k of a vocabulary of V,
 * logits of esz bytes (2: f16, 4: f32). */
static void make_sample(sample *s, uint64_t seed, int T, int P, int k, int V, int esz)
{
	memset(s, 0, sizeof *s);
	for (int i = 0; i < T; i++)
		s->tokens[i] = (int32_t)(splitmix64(&seed) % (uint64_t)V);
	s->tokens[0] = 1;
	s->tokens_bytes = (size_t)T * 4;
	s->prompt_len = (uint64_t)P;
	for (int j = 0; j < T - P; j++) {
		int start = (int)(splitmix64(&seed) % (uint64_t)(V - k + 1));
		for (int i = 0; i < k; i++) {
			s->ids[j * k + i] = start + i;
			float logit = 10.0f - (float)i;   /* descending */
			if (esz == 2) {
				uint16_t h = rl_f32_to_f16(logit);
				memcpy(s->logits + (size_t)(j * k + i) * 2, &h, 2);
			} else {
				memcpy(s->logits + (size_t)(j * k + i) * 4, &logit, 4);
			}
		}
		s->lse[j] = 10.5f + (float)j;
		s->tau[j] = 5.25f + (float)j;
	}
	s->ids_bytes = (size_t)(T - P) * (size_t)k * 4;
	s->logits_bytes = (size_t)(T - P) * (size_t)k * (size_t)esz;
	s->lse_bytes = s->tau_bytes = (size_t)(T - P) * 4;
}

static void forge_samples_header(forge *f, uint64_t vocab, uint64_t topk, const char *logit_dtype,
				 const char *teacher, uint64_t seed, double kd_temp)
{
	msgpack_packer *pk = &f->pk;
	f->count = 0;
	rl_sha256_init(&f->content);
	msgpack_pack_map(pk, 10 + (kd_temp > 0));
	rl_pack_kv_str(pk, "t", "header");
	rl_pack_kv_str(pk, "format", "tstream");
	rl_pack_kv_int(pk, "version", 1);
	rl_pack_kv_str(pk, "kind", "samples");
	rl_pack_kv_str(pk, "producer", "test_stream 1.0");
	rl_pack_kv_int(pk, "vocab_size", (int64_t)vocab);
	rl_pack_kv_int(pk, "topk", (int64_t)topk);
	rl_pack_kv_str(pk, "logit_dtype", logit_dtype);
	rl_pack_kv_int(pk, "seed", (int64_t)seed);
	rl_pack_kv_str(pk, "teacher", teacher);
	if (kd_temp > 0)
		rl_pack_kv_double(pk, "kd_temp", kd_temp);
	forge_done(f);
}

static void forge_sample(forge *f, uint64_t id, const sample *s, int with_tau, const char *extra_key)
{
	msgpack_packer *pk = &f->pk;
	msgpack_pack_map(pk, 7 + with_tau + (extra_key != NULL));
	rl_pack_kv_str(pk, "t", "sample");
	rl_pack_kv_int(pk, "id", (int64_t)id);
	rl_pack_kv_bin(pk, "tokens", s->tokens, s->tokens_bytes);
	rl_pack_str(pk, "prompt_len");
	msgpack_pack_uint64(pk, s->prompt_len);
	rl_pack_kv_bin(pk, "topk_ids", s->ids, s->ids_bytes);
	rl_pack_kv_bin(pk, "topk_logits", s->logits, s->logits_bytes);
	rl_pack_kv_bin(pk, "logsumexp", s->lse, s->lse_bytes);
	if (with_tau)
		rl_pack_kv_bin(pk, "logsumexp_tau", s->tau, s->tau_bytes);
	if (extra_key)
		rl_pack_kv_int(pk, extra_key, 7);
	forge_done(f);
}

static void forge_result(forge *f, const char *task, int with_n)
{
	msgpack_packer *pk = &f->pk;
	msgpack_pack_map(pk, 6 + with_n);
	rl_pack_kv_str(pk, "t", "result");
	rl_pack_kv_str(pk, "model", "stories260K");
	rl_pack_kv_str(pk, "task", task);
	rl_pack_kv_str(pk, "metric", "ppl");
	rl_pack_kv_double(pk, "value", 3.25);
	if (with_n)
		rl_pack_kv_int(pk, "n", 1000);
	rl_pack_kv_double(pk, "stderr", 0.01);
	forge_done(f);
}

static void forge_results_header(forge *f)
{
	f->count = 0;
	rl_sha256_init(&f->content);
	msgpack_pack_map(&f->pk, 5);
	rl_pack_kv_str(&f->pk, "t", "header");
	rl_pack_kv_str(&f->pk, "format", "tstream");
	rl_pack_kv_int(&f->pk, "version", 1);
	rl_pack_kv_str(&f->pk, "kind", "results");
	rl_pack_kv_str(&f->pk, "producer", "test_stream 1.0");
	forge_done(f);
}

/* a valid samples segment of n samples (V 100, top-4, f16) */
static void forge_samples_segment(forge *f, int n, uint64_t vocab, const char *teacher, uint64_t seed)
{
	forge_samples_header(f, vocab, 4, "f16", teacher, seed, 0);
	for (int i = 0; i < n; i++) {
		sample s;
		make_sample(&s, seed * 100 + (uint64_t)i, 8 + i, 3, 4, 100, 2);
		forge_sample(f, seed * 100 + (uint64_t)i, &s, 0, NULL);
	}
	forge_end(f, -1, NULL);
}

/* ---- child processes ---- */

static char *shared_why; /* 1024 bytes shared with children: why a child failed, or what it was doing */

/* Runs fn in a child process under a time limit. 0 when it returned 0;
 * otherwise -1 with the reason in shared_why. */
static int isolated(int (*fn)(void), int seconds)
{
	shared_why[0] = 0;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(shared_why, 1024, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		alarm((unsigned)seconds);
		_exit(fn() ? 1 : 0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status)) {
		char doing[900];
		snprintf(doing, sizeof doing, "%s", shared_why);
		snprintf(shared_why, 1024, "child killed by signal %d (%s) while: %s", WTERMSIG(status),
			 WTERMSIG(status) == SIGALRM ? "time limit" : strsignal(WTERMSIG(status)), doing);
	}
	return -1;
}

/* Limits the address space to what is mapped now plus extra bytes, so that a
 * huge allocation fails instead of succeeding lazily. */
#if defined(__SANITIZE_ADDRESS__)
static const int sanitized = 1; /* AddressSanitizer: terabytes mapped, its own RSS */
#else
static const int sanitized = 0;
#endif

static void limit_memory(size_t extra)
{
	if (sanitized)
		return;
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;
	if (!f)
		return;
	if (fscanf(f, "%lu", &pages) == 1) {
		struct rlimit rl;
		rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + extra;
		setrlimit(RLIMIT_AS, &rl);
	}
	fclose(f);
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* ---- (2) damage the reader must refuse ---- */

static const char *forged_path;
static const char *forged_what;

/* In a child: a forged declared size fails fast, names itself, allocates nothing much. */
static int child_forged_size(void)
{
	long rss0 = maxrss_kb();
	limit_memory((size_t)1536 << 20);
	double t0 = now();
	int n;
	int rc = read_all(forged_path, &n);
	double dt = now() - t0;
	long grown = maxrss_kb() - rss0;
	const char *e = rl_err();
	if (rc != -1 || !strstr(e, forged_path) || (forged_what && !strstr(e, forged_what))) {
		snprintf(shared_why, 1024, "rl_read gave %d, error \"%s\"; wanted -1 saying \"%s\"", rc, e,
			 forged_what ? forged_what : "");
		return 1;
	}
	if (dt > 1.0 || (grown > 100 * 1024 && !sanitized)) {
		snprintf(shared_why, 1024, "took %.2f s and %ld kB more memory (%s)", dt, grown, e);
		return 1;
	}
	return 0;
}

static void test_forged_sizes(void)
{
	static const struct {
		const char *name, *what;
		unsigned char bytes[16];
		size_t n;
	} cases[] = {
		/* "data": bin32 of 0xfffffff0 bytes */
		{ "bin32_4GB", "more than 1073741824 bytes", { 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3 }, 13 },
		/* "shape": array32 of 2^31 elements */
		{ "array32_2e31", "more than 8388608 array or map elements", { 0xa5, 's', 'h', 'a', 'p', 'e', 0xdd, 0x80, 0, 0, 0, 1, 2 }, 13 },
		/* a str32 key of 4 GiB */
		{ "str32_4GB", "more than 1073741824 bytes", { 0xdb, 0xff, 0xff, 0xff, 0xff, 'x' }, 6 },
		/* an ext32 of 4 GiB */
		{ "ext32_4GB", "more than 1073741824 bytes", { 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 1 }, 8 },
		/* just under the 1 GiB message limit, but the file ends: cut, not a 1 GiB buffer in memory */
		{ "bin32_1GB_cut", "cut inside message 2", { 0xa4, 'd', 'a', 't', 'a', 0xc6, 0x3f, 0xff, 0xff, 0x00, 1, 2 }, 12 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		forge f;
		forge_init(&f);
		forge_model_header(&f, "tstream", 1, "model", SOURCE_A, NULL);
		msgpack_pack_map(&f.pk, 2);
		rl_pack_kv_str(&f.pk, "t", "tensor");
		msgpack_sbuffer_write(&f.sb, (const char *)cases[i].bytes, cases[i].n);
		char name[64];
		snprintf(name, sizeof name, "forged_%s", cases[i].name);
		forged_path = forge_save(&f, name);
		forged_what = cases[i].what;
		CHECK(isolated(child_forged_size, 10) == 0, name, "%s", shared_why);
		forge_free(&f);
	}
	/* a map32 of 2^31 pairs as the whole message */
	static const unsigned char map32[] = { 0xdf, 0x80, 0, 0, 0, 0xa1, 't' };
	forged_path = tmp("forged_map32");
	write_file(forged_path, map32, sizeof map32);
	forged_what = "more than 8388608 array or map elements";
	CHECK(isolated(child_forged_size, 10) == 0, "forged_map32_2e31", "%s", shared_why);
	/* nesting 100000 deep: refused without recursion */
	forge f;
	forge_init(&f);
	forge_model_header(&f, "tstream", 1, "model", SOURCE_A, NULL);
	msgpack_pack_map(&f.pk, 2);
	rl_pack_kv_str(&f.pk, "t", "future");
	rl_pack_str(&f.pk, "deep");
	for (int i = 0; i < 100000; i++)
		msgpack_pack_array(&f.pk, 1);
	msgpack_pack_nil(&f.pk);
	forged_path = forge_save(&f, "forged_deep");
	forged_what = "message 2";
	CHECK(isolated(child_forged_size, 10) == 0, "forged_nesting_100000", "%s", shared_why);
	forge_free(&f);
}

/* In a child: every prefix of a valid stream fails at or before the cut. */
static forge *cut_forge;
static int child_cuts(void)
{
	const char *path = tmp("cut");
	for (size_t cut = 0; cut < cut_forge->sb.size; cut++) {
		snprintf(shared_why, 1024, "reading the first %zu bytes", cut);
		if (write_file(path, cut_forge->sb.data, cut))
			return 1;
		int whole = 0; /* messages wholly before the cut */
		while (whole < cut_forge->nmsg && cut_forge->ends[whole] <= cut)
			whole++;
		int n;
		int rc = read_all(path, &n);
		const char *e = rl_err();
		const char *want = cut == 0 ? "empty stream" : whole > 0 && cut_forge->ends[whole - 1] == cut ?
			"no end message" : "cut inside message";
		if (rc != -1 || n != whole || !strstr(e, path) || !strstr(e, want)) {
			snprintf(shared_why, 1024, "cut at byte %zu of %zu: rl_read gave %d after %d messages "
				 "(wanted -1 after %d), error \"%s\" (wanted \"%s\")",
				 cut, cut_forge->sb.size, rc, n, whole, e, want);
			return 1;
		}
	}
	return 0;
}

static void test_damage(void)
{
	forge f;
	uint64_t shape[4];
	float data[64] = { 0 };

	forge_init(&f);
	forge_small_model(&f);
	expect_ok("small_model_reads", forge_save(&f, "small"), f.nmsg);
	cut_forge = &f;
	CHECK(isolated(child_cuts, 30) == 0, "cut_at_every_byte", "%s", shared_why);
	/* a byte past end that is not a header */
	msgpack_pack_int(&f.pk, 0);
	expect_fail("trailing_byte_after_end", forge_save(&f, "trailing"), "message 8", "not a map");
	forge_free(&f);

	write_file(tmp("empty"), "", 0);
	expect_fail("empty_file", tmp("empty"), "empty", NULL);
	CHECK(rl_reader_open(tmp("does_not_exist")) == NULL && strstr(rl_err(), "does_not_exist"),
	      "open_missing_file", "error \"%s\"", rl_err());

#define DAMAGED(name, what, what2, ...) do {                  \
		forge_init(&f);                                \
		__VA_ARGS__;                                   \
		expect_fail(name, forge_save(&f, name), what, what2); \
		forge_free(&f);                                \
	} while (0)
#define HEADER forge_model_header(&f, "tstream", 1, "model", SOURCE_A, NULL)

	DAMAGED("no_end", "no end message after 2 messages", NULL,
		HEADER; forge_tensor(&f, "a", 2, 3, small_a));
	DAMAGED("version_2", "version 2", "message 1",
		forge_model_header(&f, "tstream", 2, "model", SOURCE_A, NULL); forge_end(&f, -1, NULL));
	DAMAGED("format_not_tstream", "not a tstream", NULL,
		forge_model_header(&f, "tstreak", 1, "model", SOURCE_A, NULL); forge_end(&f, -1, NULL));
	DAMAGED("unknown_kind", "unknown stream kind \"weights\"", NULL,
		forge_model_header(&f, "tstream", 1, "weights", SOURCE_A, NULL); forge_end(&f, -1, NULL));
	DAMAGED("version_missing", "field version: missing", NULL,
		msgpack_pack_map(&f.pk, 3); rl_pack_kv_str(&f.pk, "t", "header");
		rl_pack_kv_str(&f.pk, "format", "tstream"); rl_pack_kv_str(&f.pk, "kind", "model"));
	shape[0] = 2, shape[1] = 3;
	DAMAGED("unknown_dtype", "unknown dtype \"q9\"", "message 2 (tensor)",
		HEADER; forge_chunk(&f, "a", "q9", 2, shape, 0, 2, data, 24, NULL); forge_end(&f, -1, NULL));
	DAMAGED("payload_short", "data holds 20 bytes", "message 2 (tensor)",
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 2, data, 20, NULL); forge_end(&f, -1, NULL));
	DAMAGED("payload_vs_nrows", "data holds 24 bytes", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 1, data, 24, NULL); forge_end(&f, -1, NULL));
	DAMAGED("payload_vs_dtype", "data holds 24 bytes", NULL,
		HEADER; forge_chunk(&f, "a", "f16", 2, shape, 0, 2, data, 24, NULL); forge_end(&f, -1, NULL));
	DAMAGED("nrows_zero", "outside its 2 rows", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 0, data, 0, NULL); forge_end(&f, -1, NULL));
	DAMAGED("nrows_beyond_shape", "outside its 2 rows", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 3, data, 36, NULL); forge_end(&f, -1, NULL));
	DAMAGED("row0_beyond_shape", "outside its 2 rows", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 2, 1, data, 12, NULL); forge_end(&f, -1, NULL));
	shape[0] = 2, shape[1] = 0;
	DAMAGED("shape_zero", "shape[1] is not a size between 1 and 2^40", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 2, data, 0, NULL); forge_end(&f, -1, NULL));
	shape[0] = 0, shape[1] = 3;
	DAMAGED("shape_zero_rows", "shape[0] is not a size between 1 and 2^40", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 0, data, 0, NULL); forge_end(&f, -1, NULL));
	shape[0] = (uint64_t)1 << 41, shape[1] = 3;
	DAMAGED("shape_dim_2e41", "shape[0] is not a size between 1 and 2^40", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 1, data, 12, NULL); forge_end(&f, -1, NULL));
	shape[0] = shape[1] = (uint64_t)1 << 40;
	DAMAGED("shape_2e40_2e40", "data holds 24 bytes", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 2, shape, 0, 1, data, 24, NULL); forge_end(&f, -1, NULL));
	shape[0] = 2, shape[1] = shape[2] = (uint64_t)1 << 40;
	DAMAGED("shape_overflow", "shape overflows", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 3, shape, 0, 1, data, 24, NULL); forge_end(&f, -1, NULL));
	/* a row of 2^62 bytes fits size_t; 4 of them don't */
	shape[0] = 8, shape[1] = (uint64_t)1 << 40, shape[2] = (uint64_t)1 << 20;
	DAMAGED("rows_bytes_overflow", "data holds 24 bytes", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 3, shape, 0, 4, data, 24, NULL); forge_end(&f, -1, NULL));
	shape[0] = shape[1] = shape[2] = shape[3] = 1;
	uint64_t shape5[5] = { 1, 1, 1, 1, 1 };
	DAMAGED("shape_5_dims", "not an array of 1 to 4 sizes", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 5, shape5, 0, 1, data, 4, NULL); forge_end(&f, -1, NULL));
	DAMAGED("shape_0_dims", "not an array of 1 to 4 sizes", NULL,
		HEADER; forge_chunk(&f, "a", "f32", 0, shape, 0, 1, data, 4, NULL); forge_end(&f, -1, NULL));

	/* chunks */
	shape[0] = 5, shape[1] = 3;
	DAMAGED("chunk_row0_jump", "chunk at row 3 does not continue", NULL,
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL);
		forge_chunk(&f, "b", "f32", 2, shape, 3, 2, data, 24, NULL); forge_end(&f, -1, NULL));
	DAMAGED("chunk_first_not_row0", "chunk at row 2 does not continue", "message 2",
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 2, 3, data, 36, NULL); forge_end(&f, -1, NULL));
	DAMAGED("chunk_other_name", "chunk at row 2 does not continue", NULL,
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL);
		forge_chunk(&f, "c", "f32", 2, shape, 2, 3, data, 36, NULL); forge_end(&f, -1, NULL));
	DAMAGED("chunk_other_dtype", "chunk at row 2 does not continue", NULL,
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL);
		forge_chunk(&f, "b", "f16", 2, shape, 2, 3, data, 18, NULL); forge_end(&f, -1, NULL));
	uint64_t shape_wide[2] = { 5, 4 };
	DAMAGED("chunk_other_shape", "chunk at row 2 does not continue", NULL,
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL);
		forge_chunk(&f, "b", "f32", 2, shape_wide, 2, 3, data, 48, NULL); forge_end(&f, -1, NULL));
	DAMAGED("tensor_ends_early_next_tensor", "tensor b ends after 2 of its 5 rows", "message 3",
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL);
		forge_tensor(&f, "a", 2, 3, small_a); forge_end(&f, -1, NULL));
	DAMAGED("tensor_ends_early_end", "tensor b ends after 2 of its 5 rows", "message 3 (end)",
		HEADER; forge_chunk(&f, "b", "f32", 2, shape, 0, 2, data, 24, NULL); forge_end(&f, -1, NULL));

	/* end */
	DAMAGED("end_count_plus_one", "end says 4 messages but the segment has 3", NULL,
		HEADER; forge_tokenizer(&f); forge_tensor(&f, "a", 2, 3, small_a); forge_end(&f, 4, NULL));
	DAMAGED("end_count_minus_one", "end says 2 messages", NULL,
		HEADER; forge_tokenizer(&f); forge_tensor(&f, "a", 2, 3, small_a); forge_end(&f, 2, NULL));
	DAMAGED("end_count_missing", "field count: missing", NULL,
		HEADER; msgpack_pack_map(&f.pk, 1); rl_pack_kv_str(&f.pk, "t", "end"));
	DAMAGED("end_content_altered", "the data was altered", "message 3 (end)",
		HEADER; forge_tensor(&f, "a", 2, 3, small_a);
		forge_end(&f, -1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	/* one payload byte flipped after the hash was taken */
	DAMAGED("payload_byte_altered", "the data was altered", NULL,
		HEADER; forge_tensor(&f, "a", 2, 3, small_a); f.sb.data[f.sb.size - 1] ^= 1;
		forge_end(&f, -1, NULL));
	DAMAGED("end_content_short", "the data was altered", NULL,
		HEADER; forge_tensor(&f, "a", 2, 3, small_a); forge_end(&f, -1, "e3b0"));

	/* message structure */
	DAMAGED("not_a_map", "message 2 (?): not a map", NULL,
		HEADER; msgpack_pack_array(&f.pk, 2); msgpack_pack_int(&f.pk, 1); msgpack_pack_int(&f.pk, 2));
	DAMAGED("no_t_key", "field t: missing", NULL,
		HEADER; msgpack_pack_map(&f.pk, 1); rl_pack_kv_int(&f.pk, "x", 1));
	DAMAGED("t_not_string", "field t: not a string", NULL,
		HEADER; msgpack_pack_map(&f.pk, 1); rl_pack_kv_int(&f.pk, "t", 1));
	DAMAGED("first_not_header", "message 1 (tensor)", "a header must come first",
		forge_tensor(&f, "a", 2, 3, small_a); HEADER; forge_end(&f, -1, NULL));
	DAMAGED("first_unknown_type", "message 1 (future)", "a header must come first",
		msgpack_pack_map(&f.pk, 1); rl_pack_kv_str(&f.pk, "t", "future"); HEADER; forge_end(&f, -1, NULL));
	DAMAGED("header_inside_segment", "message 2 (header)", "a header inside a segment",
		HEADER; HEADER; forge_end(&f, -1, NULL));
	DAMAGED("message_after_end", "message 3 (tensor)", "a header must come first",
		HEADER; forge_end(&f, -1, NULL); forge_tensor(&f, "a", 2, 3, small_a));
	sample s;
	make_sample(&s, 1, 8, 3, 4, 100, 2);
	DAMAGED("sample_in_model", "message 2 (sample)", "a sample message in a model stream",
		HEADER; forge_sample(&f, 1, &s, 0, NULL); forge_end(&f, -1, NULL));
	DAMAGED("result_in_model", "a result message in a model stream", NULL,
		HEADER; forge_result(&f, "wikitext", 1); forge_end(&f, -1, NULL));
	DAMAGED("not_msgpack", "byte 0xc1", "not MessagePack",
		HEADER; msgpack_sbuffer_write(&f.sb, "\xc1", 1));
	DAMAGED("name_too_long", "field name: too long", NULL,
		HEADER;
		char longname[200]; memset(longname, 'x', 199); longname[199] = 0;
		forge_tensor(&f, longname, 2, 3, small_a); forge_end(&f, -1, NULL));
	DAMAGED("data_not_bin", "field data: not binary", NULL,
		HEADER; msgpack_pack_map(&f.pk, 7); rl_pack_kv_str(&f.pk, "t", "tensor");
		rl_pack_kv_str(&f.pk, "name", "a"); rl_pack_kv_str(&f.pk, "dtype", "f32");
		rl_pack_str(&f.pk, "shape"); msgpack_pack_array(&f.pk, 1); msgpack_pack_int(&f.pk, 1);
		rl_pack_kv_int(&f.pk, "row0", 0); rl_pack_kv_int(&f.pk, "nrows", 1);
		rl_pack_kv_str(&f.pk, "data", "abcd"); forge_end(&f, -1, NULL));
	DAMAGED("row0_negative", "field row0: not a non-negative integer", NULL,
		HEADER; msgpack_pack_map(&f.pk, 7); rl_pack_kv_str(&f.pk, "t", "tensor");
		rl_pack_kv_str(&f.pk, "name", "a"); rl_pack_kv_str(&f.pk, "dtype", "f32");
		rl_pack_str(&f.pk, "shape"); msgpack_pack_array(&f.pk, 1); msgpack_pack_int(&f.pk, 1);
		rl_pack_kv_int(&f.pk, "row0", -1); rl_pack_kv_int(&f.pk, "nrows", 1);
		rl_pack_kv_bin(&f.pk, "data", data, 4); forge_end(&f, -1, NULL));

	/* two model segments */
	forge_init(&f);
	forge_small_model(&f);
	forge_small_model(&f);
	expect_fail("two_model_segments", forge_save(&f, "model_model"), "message 8 (header)",
		    "only samples and results streams may be concatenated");
	forge_free(&f);
	DAMAGED("two_model_segments_other_source", "whose source differs", NULL,
		HEADER; forge_end(&f, -1, NULL);
		forge_model_header(&f, "tstream", 1, "model", SOURCE_B, NULL); forge_end(&f, -1, NULL));
#undef HEADER
}

/* ---- (3) samples and results ---- */

static void test_samples(void)
{
	forge f;
	sample s[3], bad;

	/* valid samples read back as written */
	forge_init(&f);
	forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 7, 0);
	for (int i = 0; i < 3; i++) {
		make_sample(&s[i], 10 + (uint64_t)i, 6 + 3 * i, 1 + i, 4, 100, 2);
		forge_sample(&f, 40 + (uint64_t)i, &s[i], 0, i == 1 ? "future_key" : NULL);
	}
	forge_end(&f, -1, NULL);
	const char *path = forge_save(&f, "samples");
	rl_reader *r = rl_reader_open(path);
	rl_msg m;
	int got = -1, n = 0, ok = 1;
	char why[256] = "";
	while (r && (got = rl_read(r, &m)) == 1) {
		if (n == 0) {
			const rl_samples_info *info = rl_reader_samples(r);
			if (m.type != RL_MSG_HEADER || strcmp(rl_reader_kind(r), "samples") || info->vocab_size != 100 ||
			    info->topk != 4 || info->logit_dtype != RL_F16 || info->has_tau) {
				ok = 0;
				snprintf(why, sizeof why, "header: kind %s, vocab %u, topk %u", rl_reader_kind(r),
					 info->vocab_size, info->topk);
			}
		} else if (n <= 3) {
			const rl_sample_msg *g = &m.sample;
			const sample *w = &s[n - 1];
			size_t P = w->prompt_len, T = w->tokens_bytes / 4;
			if (m.type != RL_MSG_SAMPLE || g->id != 40 + (uint64_t)(n - 1) || g->ntokens != T ||
			    g->prompt_len != P || memcmp(g->tokens, w->tokens, w->tokens_bytes) ||
			    memcmp(g->topk_ids, w->ids, w->ids_bytes) || memcmp(g->topk_logits, w->logits, w->logits_bytes) ||
			    memcmp(g->logsumexp, w->lse, w->lse_bytes) || g->logsumexp_tau) {
				ok = 0;
				snprintf(why, sizeof why, "sample %d differs from what was written", n - 1);
			}
		} else if (m.type != RL_MSG_END) {
			ok = 0;
			snprintf(why, sizeof why, "message %d is %s, not end", n + 1, m.type_name);
		}
		n++;
	}
	CHECK(r && got == 0 && n == 5 && ok, "samples_read_back", "rl_read gave %d after %d messages: %s %s",
	      got, n, rl_err(), why);
	rl_reader_close(r);
	forge_free(&f);

	/* logsumexp_tau when the header has kd_temp */
	forge_init(&f);
	forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 7, 2.0);
	forge_sample(&f, 1, &s[1], 1, NULL);
	forge_end(&f, -1, NULL);
	path = forge_save(&f, "samples_tau");
	r = rl_reader_open(path);
	int has_tau = 0, tau_ok = 0;
	while (r && (got = rl_read(r, &m)) == 1) {
		if (m.type == RL_MSG_HEADER)
			has_tau = rl_reader_samples(r)->has_tau;
		if (m.type == RL_MSG_SAMPLE)
			tau_ok = m.sample.logsumexp_tau && memcmp(m.sample.logsumexp_tau, s[1].tau, s[1].tau_bytes) == 0;
	}
	CHECK(r && got == 0 && has_tau && tau_ok, "samples_kd_temp_tau", "rl_read gave %d: %s", got, rl_err());
	rl_reader_close(r);
	forge_free(&f);

	forge_init(&f);
	forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 7, 2.0);
	forge_sample(&f, 1, &s[1], 0, NULL);
	forge_end(&f, -1, NULL);
	expect_fail("samples_kd_temp_without_tau", forge_save(&f, "samples_no_tau"), "field logsumexp_tau: missing", NULL);
	forge_free(&f);

	/* topk 0: the whole vocabulary, f32 logits */
	forge_init(&f);
	forge_samples_header(&f, 10, 0, "f32", SOURCE_A, 7, 0);
	make_sample(&bad, 3, 6, 2, 10, 10, 4);
	forge_sample(&f, 1, &bad, 0, NULL);
	forge_end(&f, -1, NULL);
	expect_ok("samples_topk0_whole_vocab_f32", forge_save(&f, "samples_topk0"), 3);
	forge_free(&f);
	forge_init(&f);
	forge_samples_header(&f, 10, 0, "f32", SOURCE_A, 7, 0);
	make_sample(&bad, 3, 6, 2, 4, 10, 4);
	forge_sample(&f, 1, &bad, 0, NULL);
	forge_end(&f, -1, NULL);
	expect_fail("samples_topk0_short_ids", forge_save(&f, "samples_topk0_bad"), "field topk_ids", "top-10");
	forge_free(&f);

	/* bad samples */
	struct { const char *name, *what; void (*damage)(sample *); } cases[] = {
		{ "sample_token_out_of_vocab", "field tokens: id 100 at 5 outside the vocabulary of 100", NULL },
		{ "sample_token_negative", "field tokens: id -1", NULL },
		{ "sample_topk_id_out_of_vocab", "field topk_ids: id 100", NULL },
		{ "sample_prompt_len_0", "field prompt_len: 0 is not between 1 and the 8 tokens", NULL },
		{ "sample_prompt_len_over_T", "field prompt_len: 9", NULL },
		{ "sample_topk_ids_short", "field topk_ids: 76 bytes", NULL },
		{ "sample_topk_logits_long", "field topk_logits: 42 bytes", NULL },
		{ "sample_logsumexp_short", "field logsumexp: 16 bytes", NULL },
		{ "sample_logsumexp_long", "field logsumexp: 24 bytes", NULL },
		{ "sample_tokens_empty", "field tokens: 0 bytes", NULL },
		{ "sample_tokens_ragged", "field tokens: 30 bytes", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		make_sample(&bad, 5, 8, 3, 4, 100, 2); /* 5 positions of top-4 */
		switch (i) {
		case 0: bad.tokens[5] = 100; break;
		case 1: bad.tokens[2] = -1; break;
		case 2: bad.ids[7] = 100; break;
		case 3: bad.prompt_len = 0; break;
		case 4: bad.prompt_len = 9; break;
		case 5: bad.ids_bytes -= 4; break;
		case 6: bad.logits_bytes += 2; break;
		case 7: bad.lse_bytes -= 4; break;
		case 8: bad.lse_bytes += 4; break;
		case 9: bad.tokens_bytes = 0; break;
		case 10: bad.tokens_bytes = 30; break;
		}
		forge_init(&f);
		forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 7, 0);
		forge_sample(&f, 1, &s[0], 0, NULL);
		forge_sample(&f, 2, &bad, 0, NULL);
		forge_end(&f, -1, NULL);
		expect_fail(cases[i].name, forge_save(&f, cases[i].name), cases[i].what, "message 3 (sample)");
		forge_free(&f);
	}

	/* bad samples headers */
	struct { const char *name, *what; uint64_t vocab, topk; const char *dtype; } headers[] = {
		{ "samples_header_vocab_0", "vocab_size 0, topk 4 out of range", 0, 4, "f16" },
		{ "samples_header_topk_over_vocab", "vocab_size 100, topk 101 out of range", 100, 101, "f16" },
		{ "samples_header_vocab_2e25", "out of range", (uint64_t)1 << 25, 4, "f16" },
		{ "samples_header_bf16", "logit_dtype \"bf16\" is not f16 or f32", 100, 4, "bf16" },
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		forge_init(&f);
		forge_samples_header(&f, headers[i].vocab, headers[i].topk, headers[i].dtype, SOURCE_A, 7, 0);
		forge_end(&f, -1, NULL);
		expect_fail(headers[i].name, forge_save(&f, headers[i].name), headers[i].what, "message 1 (header)");
		forge_free(&f);
	}
	forge_init(&f);
	msgpack_pack_map(&f.pk, 4);
	rl_pack_kv_str(&f.pk, "t", "header");
	rl_pack_kv_str(&f.pk, "format", "tstream");
	rl_pack_kv_int(&f.pk, "version", 1);
	rl_pack_kv_str(&f.pk, "kind", "samples");
	expect_fail("samples_header_no_vocab", forge_save(&f, "samples_header_no_vocab"), "field vocab_size: missing", NULL);
	forge_free(&f);
	forge_init(&f);
	forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 7, 0);
	forge_tokenizer(&f);
	forge_end(&f, -1, NULL);
	expect_fail("tokenizer_in_samples", forge_save(&f, "tokenizer_in_samples"),
		    "a tokenizer message in a samples stream", NULL);
	forge_free(&f);

	/* segments, as cat makes them */
	forge_init(&f);
	forge_samples_segment(&f, 2, 100, SOURCE_A, 1);
	forge_samples_segment(&f, 3, 100, SOURCE_A, 2); /* another seed: another shard */
	path = forge_save(&f, "samples_cat");
	r = rl_reader_open(path);
	int nsamples = 0, nheaders = 0;
	n = 0;
	while (r && (got = rl_read(r, &m)) == 1) {
		n++;
		nsamples += m.type == RL_MSG_SAMPLE;
		nheaders += m.type == RL_MSG_HEADER;
	}
	CHECK(r && got == 0 && n == 9 && nsamples == 5 && nheaders == 2, "samples_two_segments",
	      "rl_read gave %d after %d messages, %d samples: %s", got, n, nsamples, rl_err());
	rl_reader_close(r);
	forge_free(&f);

	struct { const char *name, *what; uint64_t vocab; const char *teacher; } joins[] = {
		{ "samples_segments_vocab_differs", "a second segment whose vocab_size differs", 50, SOURCE_A },
		{ "samples_segments_teacher_differs", "whose teacher differs", 100, SOURCE_B },
	};
	for (size_t i = 0; i < sizeof joins / sizeof joins[0]; i++) {
		forge_init(&f);
		forge_samples_segment(&f, 1, 100, SOURCE_A, 1);
		forge_samples_segment(&f, 1, joins[i].vocab, joins[i].teacher, 2);
		expect_fail(joins[i].name, forge_save(&f, joins[i].name), joins[i].what, "message 4");
		forge_free(&f);
	}
	forge_init(&f);
	forge_samples_segment(&f, 1, 100, SOURCE_A, 1);
	forge_samples_header(&f, 100, 8, "f16", SOURCE_A, 2, 0);
	forge_end(&f, -1, NULL);
	expect_fail("samples_segments_topk_differs", forge_save(&f, "samples_topk_differs"), "whose topk differs", NULL);
	forge_free(&f);
	forge_init(&f);
	forge_samples_segment(&f, 1, 100, SOURCE_A, 1);
	forge_results_header(&f);
	forge_end(&f, -1, NULL);
	expect_fail("samples_then_results", forge_save(&f, "samples_results"), "whose kind differs", NULL);
	forge_free(&f);
	forge_init(&f);
	forge_samples_segment(&f, 1, 100, SOURCE_A, 1);
	forge_samples_header(&f, 100, 4, "f16", SOURCE_A, 2, 0);
	forge_sample(&f, 9, &s[0], 0, NULL);
	expect_fail("samples_second_segment_cut", forge_save(&f, "samples_second_cut"), "no end message after 5 messages", NULL);
	forge_free(&f);

	/* results */
	forge_init(&f);
	for (int seg = 0; seg < 2; seg++) {
		forge_results_header(&f);
		forge_result(&f, "wikitext", 1);
		forge_result(&f, "hellaswag", 1);
		forge_end(&f, -1, NULL);
	}
	expect_ok("results_two_segments", forge_save(&f, "results"), 8);
	forge_free(&f);
	forge_init(&f);
	forge_results_header(&f);
	forge_result(&f, "wikitext", 0);
	forge_end(&f, -1, NULL);
	expect_fail("result_without_n", forge_save(&f, "results_no_n"), "field n: missing", "message 2 (result)");
	forge_free(&f);
}

/* ---- forward compatibility ---- */

static void test_forward_compatible(void)
{
	forge f;
	uint64_t shape[2] = { 5, 3 };
	forge_init(&f);
	forge_model_header(&f, "tstream", 1, "model", SOURCE_A, "added_in_1_1");
	forge_tokenizer(&f);
	/* an unknown message type, with nested values */
	msgpack_pack_map(&f.pk, 3);
	rl_pack_kv_str(&f.pk, "t", "future");
	rl_pack_str(&f.pk, "nested");
	msgpack_pack_map(&f.pk, 1);
	rl_pack_str(&f.pk, "a");
	msgpack_pack_array(&f.pk, 3);
	msgpack_pack_int(&f.pk, -5);
	msgpack_pack_float(&f.pk, 2.5f);
	msgpack_pack_ext(&f.pk, 3, 7);
	msgpack_pack_ext_body(&f.pk, "abc", 3);
	rl_pack_kv_bin(&f.pk, "blob", small_b, sizeof small_b);
	forge_done(&f);
	forge_chunk(&f, "token_embd.weight", "f32", 2, shape, 0, 3, small_b, 36, "quant_hint");
	/* unknown messages between chunks count but do not break the tensor */
	msgpack_pack_map(&f.pk, 1);
	rl_pack_kv_str(&f.pk, "t", "future2");
	forge_done(&f);
	forge_chunk(&f, "token_embd.weight", "f32", 2, shape, 3, 2, small_b + 9, 24, NULL);
	msgpack_pack_map(&f.pk, 3);
	rl_pack_kv_str(&f.pk, "t", "summary");
	rl_pack_kv_double(&f.pk, "bits_per_weight", 32);
	rl_pack_kv_int(&f.pk, "tensors", 1);
	forge_done(&f);
	/* end with an extra key */
	char hex[65];
	content_hex(&f, hex);
	msgpack_pack_map(&f.pk, 4);
	rl_pack_kv_str(&f.pk, "t", "end");
	rl_pack_kv_int(&f.pk, "count", (int64_t)f.count);
	rl_pack_kv_str(&f.pk, "signature", "none");
	rl_pack_kv_str(&f.pk, "content", hex);
	forge_done(&f);
	const char *path = forge_save(&f, "future");
	rl_reader *r = rl_reader_open(path);
	rl_msg m;
	int got = -1, n = 0, unknown = 0, summary = 0, data_ok = 1;
	while (r && (got = rl_read(r, &m)) == 1) {
		n++;
		unknown += m.type == RL_MSG_UNKNOWN;
		summary += m.type == RL_MSG_SUMMARY;
		if (m.type == RL_MSG_TENSOR)
			data_ok &= memcmp(m.tensor.data, small_b + m.tensor.row0 * 3, m.tensor.nrows * 12) == 0;
	}
	CHECK(r && got == 0 && n == f.nmsg && unknown == 2 && summary == 1 && data_ok, "forward_compatible_unknown_types_and_keys",
	      "rl_read gave %d after %d of %d messages, %d unknown: %s", got, n, f.nmsg, unknown, rl_err());
	rl_reader_close(r);
	forge_free(&f);
}

/* ---- (4) hostile bytes ---- */

static forge *fuzz_model, *fuzz_samples;

static int fuzz_one(const char *path, const void *p, size_t n, const char *what)
{
	snprintf(shared_why, 1024, "%s", what);
	if (write_file(path, p, n))
		return 1;
	int msgs;
	int rc = read_all(path, &msgs);
	if (rc != 0 && rc != -1) {
		snprintf(shared_why, 1024, "%s: rl_read gave %d", what, rc);
		return 1;
	}
	if (rc == -1 && !strstr(rl_err(), path)) {
		snprintf(shared_why, 1024, "%s: the error does not name the stream: %s", what, rl_err());
		return 1;
	}
	return 0;
}

static int child_fuzz_random(void)
{
	limit_memory((size_t)1536 << 20);
	long rss0 = maxrss_kb();
	uint64_t seed = 20260101;
	unsigned char buf[2048];
	const char *path = tmp("fuzz");
	size_t header_len = fuzz_model->ends[0];
	for (int i = 0; i < 2000; i++) {
		size_t n = splitmix64(&seed) % 600, start = 0;
		/* half start with a valid header, so that later checks get exercised */
		if (i % 2) {
			memcpy(buf, fuzz_model->sb.data, header_len);
			start = header_len;
		}
		for (size_t j = start; j < start + n; j++) {
			uint64_t v = splitmix64(&seed);
			/* a map of few keys, "t" or a short string, now and then */
			buf[j] = (v >> 8) % 8 == 0 ? (unsigned char)(0x80 + (v >> 16) % 8) : (v >> 8) % 8 == 1 ? 0xa1 : (unsigned char)v;
		}
		char what[64];
		snprintf(what, sizeof what, "random buffer %d", i);
		if (fuzz_one(path, buf, start + n, what))
			return 1;
	}
	if (maxrss_kb() - rss0 > 100 * 1024 && !sanitized) {
		snprintf(shared_why, 1024, "grew by %ld kB", maxrss_kb() - rss0);
		return 1;
	}
	return 0;
}

static int child_fuzz_mutate(void)
{
	limit_memory((size_t)1536 << 20);
	long rss0 = maxrss_kb();
	uint64_t seed = 42;
	const char *path = tmp("fuzz");
	for (int i = 0; i < 2000; i++) {
		forge *f = i % 2 ? fuzz_samples : fuzz_model;
		unsigned char *p = (unsigned char *)f->sb.data;
		size_t at = splitmix64(&seed) % f->sb.size;
		unsigned char old = p[at], v = (unsigned char)splitmix64(&seed);
		p[at] = v == old ? v ^ 0xff : v;
		char what[96];
		snprintf(what, sizeof what, "%s stream, byte %zu set to 0x%02x", i % 2 ? "samples" : "model", at, p[at]);
		int bad = fuzz_one(path, p, f->sb.size, what);
		p[at] = old;
		if (bad)
			return 1;
	}
	if (maxrss_kb() - rss0 > 100 * 1024 && !sanitized) {
		snprintf(shared_why, 1024, "grew by %ld kB", maxrss_kb() - rss0);
		return 1;
	}
	return 0;
}

static void test_hostile(void)
{
	forge model, samples;
	forge_init(&model);
	forge_small_model(&model);
	forge_init(&samples);
	forge_samples_segment(&samples, 3, 100, SOURCE_A, 1);
	fuzz_model = &model;
	fuzz_samples = &samples;
	CHECK(isolated(child_fuzz_random, 60) == 0, "fuzz_2000_random_buffers", "%s", shared_why);
	CHECK(isolated(child_fuzz_mutate, 60) == 0, "fuzz_2000_byte_mutations", "%s", shared_why);
	forge_free(&model);
	forge_free(&samples);
}

/* ---- (1) the writer ---- */

#define BIG_ROWS 5000
#define BIG_COLS 4000

static float big_value(size_t i)
{
	return (float)(uint32_t)(i * 2654435761u) * 0x1p-32f - 0.5f;
}

static void pack_stats(msgpack_packer *pk, void *arg)
{
	msgpack_pack_map(pk, 1);
	rl_pack_kv_double(pk, "rmse", *(const double *)arg);
}

static void pack_model_header(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 8);
	rl_pack_kv_str(pk, "t", "header");
	rl_pack_kv_str(pk, "format", "tstream");
	rl_pack_kv_int(pk, "version", RL_TSTREAM_VERSION);
	rl_pack_kv_str(pk, "kind", "model");
	rl_pack_kv_str(pk, "producer", "test_stream 1.0");
	rl_pack_kv_str(pk, "arch", "llama");
	rl_pack_str(pk, "config");
	pack_config(pk);
	rl_pack_kv_str(pk, "source", SOURCE_A);
}

/* f32 values and the halves rl_write_tensor must make of them (round to nearest even) */
static const struct { uint32_t f32; uint16_t f16; } halves[16] = {
	{ 0x3f800000, 0x3c00 },  /* 1 */
	{ 0xc0000000, 0xc000 },  /* -2 */
	{ 0x3f000000, 0x3800 },  /* 0.5 */
	{ 0x477fe000, 0x7bff },  /* 65504, the largest half */
	{ 0x477ff000, 0x7c00 },  /* 65520: halfway to 65536, rounds to even: inf */
	{ 0x49742400, 0x7c00 },  /* 1e6: inf */
	{ 0xff800000, 0xfc00 },  /* -inf */
	{ 0x33800000, 0x0001 },  /* 2^-24, the smallest subnormal half */
	{ 0x33000000, 0x0000 },  /* 2^-25: halfway to zero, rounds to even: 0 */
	{ 0x322bcc77, 0x0000 },  /* 1e-8 */
	{ 0x45001000, 0x6800 },  /* 2049: halfway, to even 2048 */
	{ 0x45003000, 0x6802 },  /* 2051: halfway, to even 2052 */
	{ 0x80000000, 0x8000 },  /* -0 */
	{ 0x3dcccccd, 0x2e66 },  /* 0.1 */
	{ 0x3eaaaaab, 0x3555 },  /* 1/3 */
	{ 0x7fc00000, 0x7e00 },  /* NaN stays NaN */
};

static const struct { uint32_t f32; uint16_t bf16; } bhalves[5] = {
	{ 0x3f800000, 0x3f80 },  /* 1 */
	{ 0xc0000000, 0xc000 },  /* -2 */
	{ 0x3eaaaaab, 0x3eab },  /* 1/3 rounds up */
	{ 0x3f808000, 0x3f80 },  /* halfway: to even */
	{ 0x3f818000, 0x3f82 },  /* halfway: to even */
};

/* A small model through rl_writer: header, f32 (2, 3), f16 (4, 4) from f32, bf16 (5) from f32. */
static int write_small(const char *path)
{
	float f16_src[16], bf16_src[5];
	for (int i = 0; i < 16; i++)
		memcpy(&f16_src[i], &halves[i].f32, 4);
	for (int i = 0; i < 5; i++)
		memcpy(&bf16_src[i], &bhalves[i].f32, 4);
	uint64_t shape_a[2] = { 2, 3 }, shape_h[2] = { 4, 4 }, shape_b[1] = { 5 };
	rl_writer *w = rl_writer_open(path);
	if (!w)
		return -1;
	pack_model_header(rl_writer_packer(w));
	rl_writer_message_done(w);
	if (rl_write_tensor(w, "output_norm.weight", RL_F32, RL_F32, 2, shape_a, small_a, NULL, NULL) ||
	    rl_write_tensor(w, "blk.0.attn_q.weight", RL_F16, RL_F32, 2, shape_h, f16_src, NULL, NULL) ||
	    rl_write_tensor(w, "blk.0.attn_norm.weight", RL_BF16, RL_F32, 1, shape_b, bf16_src, NULL, NULL) ||
	    rl_write_end(w)) {
		rl_writer_abort(w);
		return -1;
	}
	return rl_writer_commit(w);
}

static int leftover_temporaries(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		n += strstr(e->d_name, ".tmp.") != NULL;
	if (d)
		closedir(d);
	return n;
}

static void test_writer_small(void)
{
	const char *a = tmp("small_a.ts"), *b = tmp("small_b.ts");
	CHECK(write_small(a) == 0 && write_small(b) == 0, "writer_small", "%s", rl_err());
	size_t na = 0, nb = 0;
	unsigned char *pa = read_file(a, &na), *pb = read_file(b, &nb);
	CHECK(pa && pb && na == nb && memcmp(pa, pb, na) == 0, "writer_deterministic", "%zu and %zu bytes", na, nb);
	/* a stream's first bytes: a map whose first key is "t" */
	CHECK(pa && na > 3 && (pa[0] & 0xf0) == 0x80 && pa[1] == 0xa1 && pa[2] == 't', "writer_first_key_t",
	      "starts %02x %02x %02x", pa ? pa[0] : 0, pa ? pa[1] : 0, pa ? pa[2] : 0);
	free(pa);
	free(pb);

	rl_reader *r = rl_reader_open(a);
	rl_msg m;
	int got = -1, f16_ok = 0, bf16_ok = 0, f32_ok = 0, n = 0;
	char why[256] = "no f16 tensor";
	while (r && (got = rl_read(r, &m)) == 1) {
		n++;
		if (m.type != RL_MSG_TENSOR)
			continue;
		const rl_tensor_msg *t = &m.tensor;
		if (strcmp(t->name, "output_norm.weight") == 0)
			f32_ok = t->dtype == RL_F32 && memcmp(t->data, small_a, sizeof small_a) == 0;
		if (strcmp(t->name, "blk.0.attn_q.weight") == 0) {
			f16_ok = t->dtype == RL_F16 && t->ndim == 2 && t->row_bytes == 8 && t->nrows == 4;
			why[0] = 0;
			for (int i = 0; i < 16; i++) {
				const unsigned char *p = (const unsigned char *)t->data + 2 * i;
				uint16_t h = (uint16_t)(p[0] | p[1] << 8); /* little-endian */
				int nan_ok = halves[i].f16 == 0x7e00 && (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
				if (h != halves[i].f16 && !nan_ok) {
					f16_ok = 0;
					snprintf(why, sizeof why, "f32 0x%08x became half 0x%04x, not 0x%04x",
						 halves[i].f32, h, halves[i].f16);
				}
			}
		}
		if (strcmp(t->name, "blk.0.attn_norm.weight") == 0) {
			bf16_ok = t->dtype == RL_BF16 && t->ndim == 1 && t->shape[0] == 5;
			for (int i = 0; i < 5; i++) {
				const unsigned char *p = (const unsigned char *)t->data + 2 * i;
				if ((uint16_t)(p[0] | p[1] << 8) != bhalves[i].bf16)
					bf16_ok = 0;
			}
		}
	}
	CHECK(r && got == 0 && n == 5 && f32_ok, "writer_small_reads_back", "rl_read gave %d after %d: %s", got, n, rl_err());
	CHECK(f16_ok, "writer_f32_to_f16", "%s", why);
	CHECK(bf16_ok, "writer_f32_to_bf16", "bf16 values differ");
	rl_reader_close(r);

	/* stdin */
	int fd = open(a, O_RDONLY), saved = dup(0);
	if (fd >= 0 && saved >= 0 && dup2(fd, 0) == 0) {
		int rc = read_all("-", &n);
		CHECK(rc == 0 && n == 5, "read_stdin", "rl_read gave %d after %d: %s", rc, n, rl_err());
		dup2(saved, 0);
	}
	if (fd >= 0)
		close(fd);
	if (saved >= 0)
		close(saved);
	write_file(b, "\x81\xa1t", 3);
	fd = open(b, O_RDONLY);
	saved = dup(0);
	if (fd >= 0 && saved >= 0 && dup2(fd, 0) == 0) {
		int rc = read_all("-", &n);
		CHECK(rc == -1 && strstr(rl_err(), "<stdin>"), "read_stdin_error_names_stdin", "error \"%s\"", rl_err());
		dup2(saved, 0);
	}
	if (fd >= 0)
		close(fd);
	if (saved >= 0)
		close(saved);

	/* abort and failure leave nothing */
	const char *c = tmp("aborted.ts");
	rl_writer *w = rl_writer_open(c);
	if (w) {
		pack_model_header(rl_writer_packer(w));
		rl_writer_message_done(w);
		rl_writer_abort(w);
	}
	CHECK(w && access(c, F_OK) != 0 && leftover_temporaries() == 0, "writer_abort_leaves_nothing",
	      "%s exists or temporaries are left", c);
	w = rl_writer_open(tmp("no/such/dir.ts"));
	CHECK(!w && strstr(rl_err(), "no/such/dir.ts"), "writer_open_bad_dir", "error \"%s\"", rl_err());
	if (w)
		rl_writer_abort(w);

	/* the writer refuses what the reader would refuse, instead of writing it */
	float z[8] = { 0 };
	static const struct { const char *name; int ndim; uint64_t shape[5]; } refuse[] = {
		{ "writer_refuses_zero_rows", 2, { 0, 3 } },
		{ "writer_refuses_zero_cols", 2, { 3, 0 } },
		{ "writer_refuses_0_dims", 0, { 1 } },
		{ "writer_refuses_5_dims", 5, { 1, 1, 1, 1, 1 } },
	};
	for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++) {
		const char *p = tmp("refused.ts");
		w = rl_writer_open(p);
		if (!w)
			continue;
		pack_model_header(rl_writer_packer(w));
		rl_writer_message_done(w);
		int rc = rl_write_tensor(w, "x", RL_F32, RL_F32, refuse[i].ndim, refuse[i].shape, z, NULL, NULL);
		if (rc == 0 && rl_write_end(w) == 0 && rl_writer_commit(w) == 0) {
			int got_n;
			int rr = read_all(p, &got_n);
			CHECK(0, refuse[i].name, "rl_write_tensor accepted it and wrote a stream its reader %s (%s)",
			      rr ? "refuses" : "accepts", rr ? rl_err() : "");
		} else {
			CHECK(1, refuse[i].name, "");
			if (rc)
				rl_writer_abort(w);
		}
	}
}

/* 80 MB of f32 through rl_writer: several chunks, read back byte for byte. */
static void test_writer_big(void)
{
	const char *path = tmp("big.ts");
	uint64_t shape[2] = { BIG_ROWS, BIG_COLS };
	size_t n = (size_t)BIG_ROWS * BIG_COLS;
	float *big = malloc(n * sizeof(float));
	if (!big) {
		t_skip("writer_big", "out of memory for 80 MB");
		return;
	}
	for (size_t i = 0; i < n; i++)
		big[i] = big_value(i);
	/* the content hash, as tstream(5) defines it */
	rl_sha256 want;
	rl_sha256_init(&want);
	rl_hash_tensor_begin(&want, "token_embd.weight", RL_F32, 2, shape);
	rl_sha256_update(&want, big, n * sizeof(float));
	unsigned char d[32];
	char want_hex[65];
	rl_sha256_final(&want, d);
	rl_sha256_hex(d, want_hex);

	double rmse = 0.125;
	rl_writer *w = rl_writer_open(path);
	int rc = -1;
	if (w) {
		pack_model_header(rl_writer_packer(w));
		rl_writer_message_done(w);
		rc = rl_write_tensor(w, "token_embd.weight", RL_F32, RL_F32, 2, shape, big, pack_stats, &rmse);
		if (rc == 0)
			rc = rl_write_end(w);
		CHECK(access(path, F_OK) != 0, "writer_no_final_name_before_commit", "%s exists before commit", path);
		rc = rc ? (rl_writer_abort(w), -1) : rl_writer_commit(w);
	}
	free(big);
	CHECK(rc == 0 && access(path, F_OK) == 0 && leftover_temporaries() == 0, "writer_big_commit",
	      "%s", rc ? rl_err() : "file missing or temporaries left");

	rl_reader *r = rl_reader_open(path);
	rl_msg m;
	int got = -1, chunks = 0, n_msg = 0, ok = 1, stats_ok = 1, content_ok = 0;
	uint64_t next_row = 0;
	float *row = malloc(BIG_COLS * sizeof(float));
	char why[300] = "";
	while (r && row && (got = rl_read(r, &m)) == 1) {
		n_msg++;
		if (m.type == RL_MSG_TENSOR) {
			const rl_tensor_msg *t = &m.tensor;
			size_t bytes = t->nrows * t->row_bytes;
			if (t->row0 != next_row || bytes > RL_CHUNK_BYTES || t->row_bytes != BIG_COLS * 4) {
				ok = 0;
				snprintf(why, sizeof why, "chunk %d: rows %llu+%llu, %zu bytes", chunks,
					 (unsigned long long)t->row0, (unsigned long long)t->nrows, bytes);
			}
			for (uint64_t i = 0; i < t->nrows && ok; i++) {
				for (size_t j = 0; j < BIG_COLS; j++)
					row[j] = big_value((size_t)(t->row0 + i) * BIG_COLS + j);
				if (memcmp((const char *)t->data + i * t->row_bytes, row, t->row_bytes)) {
					ok = 0;
					snprintf(why, sizeof why, "row %llu differs", (unsigned long long)(t->row0 + i));
				}
			}
			const msgpack_object *rm = t->stats ? rl_mp_get(t->stats, "rmse") : NULL;
			if ((t->row0 == 0) != (t->stats != NULL) ||
			    (rm && !(rm->type == MSGPACK_OBJECT_FLOAT64 && rm->via.f64 == rmse)))
				stats_ok = 0;
			next_row = t->row0 + t->nrows;
			chunks++;
		} else if (m.type == RL_MSG_END) {
			const char *content;
			size_t len;
			char hex[65];
			rl_reader_content(r, hex);
			content_ok = rl_mp_str(m.map, "content", &content, &len) == 0 && len == 64 &&
				     memcmp(content, hex, 64) == 0 && strcmp(hex, want_hex) == 0;
			if (!content_ok)
				snprintf(why, sizeof why, "content: reader %s, wanted %s", hex, want_hex);
		}
	}
	CHECK(r && got == 0 && n_msg == 2 + chunks && next_row == BIG_ROWS && ok, "writer_big_reads_back",
	      "rl_read gave %d after %d messages, %llu rows: %s %s", got, n_msg, (unsigned long long)next_row,
	      rl_err(), why);
	CHECK(chunks >= 2, "writer_big_in_chunks", "%d chunks", chunks);
	CHECK(stats_ok, "writer_stats_on_first_chunk", "stats missing, misplaced or altered");
	CHECK(content_ok, "writer_big_content", "%s", why);
	rl_reader_close(r);
	free(row);
	unlink(path);
}

static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char p[1024];
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

/* tsdump --text decodes a samples stream's tokens with the tokenizer of --model,
 * and refuses a samples stream it cannot decode. Runs bin/tsdump when it is built. */
static void test_tsdump_text(void)
{
	const char *sh = getenv("SHARED") ? getenv("SHARED") : "../shared";
	char model[4096], tokfile[4096];
	snprintf(model, sizeof model, "%s/models/stories260K/stories260K.bin", sh);
	snprintf(tokfile, sizeof tokfile, "%s/models/stories260K/tok512.bin", sh);
	if (access("bin/tsdump", X_OK) || access(model, R_OK)) {
		t_skip("tsdump_text_samples", "bin/tsdump or ../shared's stories260K is missing");
		return;
	}
	rl_tokenizer tok;
	int *ids = NULL;
	size_t n = 0;
	const char *text = "Once upon a time, Lily saw a big dog.";
	if (rl_tokenizer_load_llama2c(&tok, tokfile, 512) || rl_encode(&tok, text, strlen(text), 1, 0, &ids, &n) ||
	    n > 20) {
		CHECK(0, "tsdump_text_samples", "cannot encode the test text: %s", rl_err());
		return;
	}
	sample s;
	make_sample(&s, 5, (int)n, 3, 4, 512, 2);
	for (size_t i = 0; i < n; i++)
		s.tokens[i] = ids[i];
	forge f;
	forge_init(&f);
	forge_samples_header(&f, 512, 4, "f16", SOURCE_A, 7, 0);
	forge_sample(&f, 1, &s, 0, NULL);
	forge_end(&f, -1, NULL);
	const char *path = forge_save(&f, "text_samples");
	char cmd[8400], out[4096] = "";
	snprintf(cmd, sizeof cmd, "bin/tsdump --text --model %s %s 2>&1", model, path);
	FILE *p = popen(cmd, "r");
	size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
	out[got] = 0;
	int rc = p ? pclose(p) : -1;
	char want[128];
	snprintf(want, sizeof want, "\"text\":\"%s\"", text);
	CHECK(rc == 0 && strstr(out, want), "tsdump_text_samples", "status %d, output lacks %s: %.200s", rc, want,
	      strstr(out, "\"text\"") ? strstr(out, "\"text\"") : out);

	snprintf(cmd, sizeof cmd, "bin/tsdump --text %s 2>&1 >/dev/null", path);
	p = popen(cmd, "r");
	got = p ? fread(out, 1, sizeof out - 1, p) : 0;
	out[got] = 0;
	rc = p ? pclose(p) : -1;
	CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 && strstr(out, "needs --model"), "tsdump_text_samples_needs_model",
	      "status %d: %.300s", rc, out);
	free(ids);
	rl_tokenizer_free(&tok);
	forge_free(&f);
}

int main(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/test_stream.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "test_stream: %s: %s\n", tmpdir, strerror(errno));
		return 2;
	}
	shared_why = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared_why == MAP_FAILED) {
		fprintf(stderr, "test_stream: mmap: %s\n", strerror(errno));
		return 2;
	}
	/* the memory checks first, while this process is still small */
	test_forged_sizes();
	test_damage();
	test_samples();
	test_tsdump_text();
	test_forward_compatible();
	test_hostile();
	test_writer_small();
	test_writer_big();
	remove_tmpdir();
	return t_done();
}
