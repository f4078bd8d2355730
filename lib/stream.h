/* stream.h: tstream version 1, a sequence of MessagePack maps (man tstream(5)).
 *
 * The reader frames each message itself before msgpack-c sees it, so a forged
 * length or element count is refused before anything is allocated; then it
 * checks the message's fields and the segment structure (header first, end
 * last with the right count, segments of one kind and identity).
 * The writer writes to a temporary file renamed on commit, so a failed or
 * killed run never leaves a half file under the final name. */
#ifndef RL_STREAM_H
#define RL_STREAM_H
#include <stdint.h>
#include <stdio.h>
#include <msgpack.h>
#include <msgpack/fbuffer.h>

#include "dtype.h"
#include "sha256.h"

#define RL_TSTREAM_VERSION 1
#define RL_CHUNK_BYTES ((size_t)64 << 20)     /* tensor payload per message, at most */
#define RL_MAX_MESSAGE ((size_t)1 << 30)      /* bytes of one message, at most */
#define RL_MAX_ELEMENTS ((size_t)1 << 23)     /* array/map elements in one message, at most */
#define RL_MAX_DIMS 4

typedef enum { RL_MSG_HEADER, RL_MSG_TOKENIZER, RL_MSG_TENSOR, RL_MSG_SAMPLE,
	       RL_MSG_RESULT, RL_MSG_SUMMARY, RL_MSG_END, RL_MSG_UNKNOWN } rl_msg_type;

typedef struct {
	char name[128];
	rl_dtype dtype;
	int ndim;
	uint64_t shape[RL_MAX_DIMS]; /* outermost first */
	uint64_t row0, nrows;        /* this chunk: rows [row0, row0+nrows) of shape[0] */
	size_t row_bytes;            /* bytes of one row (shape[1:] elements) */
	const void *data;            /* nrows*row_bytes bytes, valid until the next read */
	const msgpack_object *stats; /* map or NULL */
} rl_tensor_msg;

typedef struct {
	uint64_t id;
	uint32_t ntokens, prompt_len;   /* T, P */
	const int32_t *tokens;          /* (T) unaligned: read with memcpy */
	const void *topk_ids;           /* i32 ((T-P)*k) */
	const void *topk_logits;        /* f16 or f32 ((T-P)*k), per the header's logit_dtype */
	const void *logsumexp;          /* f32 (T-P) */
	const void *logsumexp_tau;      /* f32 (T-P) or NULL */
} rl_sample_msg;

typedef struct {
	rl_msg_type type;
	const char *type_name;       /* the "t" field */
	const msgpack_object *map;   /* the whole message, for fields not parsed here */
	rl_tensor_msg tensor;
	rl_sample_msg sample;
} rl_msg;

/* What a samples header declares, needed to check each sample. */
typedef struct {
	uint32_t vocab_size, topk; /* topk = vocab_size when the header says 0 */
	rl_dtype logit_dtype;
	int has_tau;
} rl_samples_info;

typedef struct rl_reader rl_reader;

/* Opens path ("-" = stdin). NULL on error. */
rl_reader *rl_reader_open(const char *path);
/* A reader of bytes from fn (e.g. a member of an archive): fn fills up to n
 * bytes of buf and returns how many, 0 at the end, or -1 after rl_seterr.
 * name is what messages call the stream. */
typedef long (*rl_read_fn)(void *arg, void *buf, size_t n);
rl_reader *rl_reader_open_fn(const char *name, rl_read_fn fn, void *arg);
void rl_reader_close(rl_reader *r);
const char *rl_reader_name(const rl_reader *r);

/* Next message: 1 and *m filled (valid until the next call), 0 at the end of
 * a well-formed stream, -1 on error (rl_err names the stream, message and field). */
int rl_read(rl_reader *r, rl_msg *m);
/* The header of the current segment (valid until the next header), or NULL. */
const msgpack_object *rl_reader_header(const rl_reader *r);
const char *rl_reader_kind(const rl_reader *r);
const rl_samples_info *rl_reader_samples(const rl_reader *r);
/* sha256 hex of the tensor payloads read so far (see tstream(5), "content"). */
void rl_reader_content(rl_reader *r, char hex[65]);

/* Field access on a message map, errors naming the field: 0 ok, -1 missing or wrong type. */
const msgpack_object *rl_mp_get(const msgpack_object *map, const char *key);
int rl_mp_str(const msgpack_object *map, const char *key, const char **s, size_t *len);
int rl_mp_strcpy(const msgpack_object *map, const char *key, char *buf, size_t size);
int rl_mp_int(const msgpack_object *map, const char *key, int64_t *v);
int rl_mp_uint(const msgpack_object *map, const char *key, uint64_t *v);
int rl_mp_double(const msgpack_object *map, const char *key, double *v);
int rl_mp_bool(const msgpack_object *map, const char *key, int *v);
int rl_mp_bin(const msgpack_object *map, const char *key, const void **p, size_t *len);

typedef struct rl_writer rl_writer;

/* Opens path for writing through a temporary name in the same directory
 * (path "-" or NULL = stdout, written directly). NULL on error. */
rl_writer *rl_writer_open(const char *path);
msgpack_packer *rl_writer_packer(rl_writer *w);
/* Call after packing each whole message (counts it for "end"). */
void rl_writer_message_done(rl_writer *w);
/* Writes a tensor in row chunks of at most RL_CHUNK_BYTES, converting rows
 * from src_dtype to dtype chunk by chunk. data holds shape[0]
 * rows of src_dtype. stats_pack, when not NULL,
 * packs a map value for the "stats" key of the first chunk. */
int rl_write_tensor(rl_writer *w, const char *name, rl_dtype dtype, rl_dtype src_dtype, int ndim,
		    const uint64_t *shape, const void *data,
		    void (*stats_pack)(msgpack_packer *pk, void *arg), void *arg);
/* Starts a header message: packs a map of 5 + nextra entries and its first
 * five ("t", "format", "version", "kind", "producer"); the caller packs the
 * nextra kind-specific ones, then calls rl_writer_message_done. */
void rl_pack_header(msgpack_packer *pk, const char *kind, const char *producer, int nextra);
/* Writes "end" with the message count and the content hash of the segment. */
int rl_write_end(rl_writer *w);
/* Flushes, closes and renames into place. On failure the temporary is removed. */
/* Pushes what is buffered to the file or pipe, so a reader downstream can
 * consume complete messages as they come; -1 after rl_seterr on a write error. */
int rl_writer_flush(rl_writer *w);
/* Bytes written so far. */
uint64_t rl_writer_bytes(const rl_writer *w);
int rl_writer_commit(rl_writer *w);
/* Removes the temporary file and frees the writer. */
void rl_writer_abort(rl_writer *w);

/* msgpack packing helpers; the packer records write errors in the writer. */
void rl_pack_str(msgpack_packer *pk, const char *s);
void rl_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
void rl_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void rl_pack_kv_double(msgpack_packer *pk, const char *key, double val);
void rl_pack_kv_bool(msgpack_packer *pk, const char *key, int val);
void rl_pack_kv_bin(msgpack_packer *pk, const char *key, const void *data, size_t len);

/* Hashing of tensors for the "source" and "content" identities: the name,
 * dtype and shape once, then the payload bytes. */
void rl_hash_tensor_begin(rl_sha256 *s, const char *name, rl_dtype dtype, int ndim, const uint64_t *shape);

#endif
