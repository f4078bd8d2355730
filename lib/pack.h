/* pack.h: recovery packs: a quantized base model and the adapter that
 * recovers it, in one pax tar (libarchive), with a manifest.
 *
 * Members, in this order (sorted by name, so the same inputs give the same
 * bytes: mode 0644, mtime 0, uid and gid 0, no user or group names):
 *   adapter.msgpack   the adapter stream (tstream(5), kind adapter)
 *   manifest.json     what the pack holds (below)
 *   model.msgpack     the base model stream, quantized as it was trained against
 *   results.msgpack   evaluation results (kind results), when given
 * manifest.json: {"format": "recover-pack", "version": 1, "tools": {...},
 * "members": {NAME: {"bytes", "sha256"}}, "model": {arch, producer, content,
 * source, policy, dtypes}, "config": {...}, "adapter": {producer, rank,
 * alpha, targets, base: {content, source}}, "results": [...]}.
 *
 * Reading checks every entry before use: a regular file, a plain name (no
 * '/', not "." or ".."), listed in the manifest once, its size and sha256 as
 * the manifest says. A pack is a model argument like any other
 * (rl_model_load): the base with the adapter attached. */
#ifndef RL_PACK_H
#define RL_PACK_H
#include <stdint.h>

#include "model.h"

#define RL_PACK_FORMAT "recover-pack"
#define RL_PACK_VERSION 1

typedef struct {
	const char *model;      /* a model stream file, packed byte for byte */
	const char *adapter;    /* an adapter stream file for that model, byte for byte */
	const char *results;    /* a results stream file, or NULL */
	const char *producer;   /* the packing tool and version, for the manifest */
} rl_pack_spec;

/* Writes the pack atomically to path. The model must parse as a model stream
 * and the adapter as an adapter stream made for it (its base identity the
 * model's content and source), so that the pack loads. */
int rl_pack_write(const char *path, const rl_pack_spec *s);

/* 1 when the file at path starts like a tar archive (the ustar magic). */
int rl_pack_sniff(const char *path);

typedef struct {
	int nmembers;
	char names[4][32];
	uint64_t bytes[4];
	char sha256[4][65];
	char model_content[65], model_source[65], arch[16];
	int rank;
	double alpha;
	int ntargets;
	int nresults;
} rl_pack_info;

/* Checks the pack's structure, the manifest and every member's size and
 * sha256 (info, when not NULL, says what it holds). It does not load the
 * model: rl_model_load does that, and checks the adapter against it. */
int rl_pack_verify(const char *path, rl_pack_info *info);

/* The model of a pack with its adapter attached (what rl_model_load does for
 * a pack); each member's sha256 is checked as it is read. */
int rl_model_load_pack(const char *path, rl_model *m);

#endif
