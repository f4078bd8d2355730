/* roofline.h: what a model stored under a policy moves and computes per
 * generated token, and the decode and prefill speed a machine's limits allow.
 *
 * A step's time is the sum over layer classes of each class's roofline time,
 * max(bytes / bandwidth, FLOPs / peak FLOP/s), and, when the kernels were
 * measured (rl_roofline_measure), the time our decode kernels take for the
 * class's products, whichever is longest. When every
 * class sits on the same side of the ridge (any decode at batch 1) the sum is
 * the plain 1 / max(bytes / bandwidth, FLOPs / peak) of the whole model.
 *
 * Units: bytes, FLOPs (2 per multiply-add), seconds, bytes/s, FLOP/s. */
#ifndef RL_ROOFLINE_H
#define RL_ROOFLINE_H
#include "dtype.h"
#include "model.h"
#include "policy.h"

/* Layer classes: each is a point on the roofline chart. */
typedef enum {
	RL_RC_EMBD,      /* token_embd: one row read per token */
	RL_RC_QKV,       /* attn_q, attn_k, attn_v (and their biases) */
	RL_RC_ATTN_OUT,  /* attn_output */
	RL_RC_GATE_UP,   /* ffn_gate, ffn_up */
	RL_RC_DOWN,      /* ffn_down */
	RL_RC_OUTPUT,    /* the classifier (token_embd when tied) */
	RL_RC_ATTENTION, /* scores and weighted sum over the KV cache */
	RL_RC_LORA,      /* unmerged LoRA adapters, f32 */
	RL_RC_N
} rl_roofline_class;

extern const char *const rl_roofline_class_names[RL_RC_N];

/* One matrix product of decode: format, rows (OC) and row length (IC). */
typedef struct {
	int dt, oc, ic;
} rl_roofline_shape;

/* The seconds one product of that shape takes as decode calls it: one
 * vector, the pool's threads and their hand-off, the weights read from
 * memory (a different copy each call, as each layer has its own). The shape
 * matters: a small product spends more of its time handing off and waiting
 * for the slower thread, and a long row's share of the vector leaves the L1
 * cache. */
typedef struct {
	rl_roofline_shape s;
	double seconds;
} rl_kernel_time;

enum { RL_HW_KERNELS = 64 };

/* A machine. kernels[] (nkernels of them, measured only) our kernels' times
 * for the products of the models measured for; bw1 the read bandwidth of one
 * thread (the attention of a single sequence runs on one), 0: bw. */
typedef struct {
	char name[64];
	const char *about;     /* the device, and where its figures come from */
	double bw, flops;      /* peak read bandwidth (bytes/s), peak FLOP/s */
	double bw1;
	int measured;
	rl_kernel_time kernels[RL_HW_KERNELS];
	int nkernels;
} rl_hw;

/* The built-in devices, n of them. */
extern const rl_hw rl_hw_table[];
extern const int rl_hw_count;

/* NAME from the table, or custom:bw=GB/s,flops=TFLOP/s. Figures must be
 * finite and positive, bw from 0.001 to 1e6 GB/s (1 MB/s to 1 PB/s), flops
 * from 1e-6 to 1e6 TFLOP/s. -1 after rl_seterr. */
int rl_hw_parse(const char *spec, rl_hw *hw);

typedef struct rl_roofline_weights rl_roofline_weights;

/* Measures this machine with the threads rl_set_threads gave: read bandwidth
 * over bytes (all threads, and one), sgemm FLOP/s, and the time of every
 * product shape the nw tallies hold as decode runs it (rl_kernel_time; two
 * or more copies of a shape span bytes, of a part of its rows when one is
 * larger than bytes / 2). -1 after rl_seterr. */
int rl_roofline_measure(rl_hw *hw, int threads, size_t bytes, const rl_roofline_weights *const *w, int nw);
/* The measured seconds of one product of shape s; 0 when it was not measured. */
double rl_hw_product_time(const rl_hw *hw, rl_roofline_shape s);

enum { RL_CLASS_SHAPES = 24 };

/* What a model moves: per layer class and format, the weights and their
 * stored bytes, and the shapes attention and the KV cache need. */
struct rl_roofline_weights {
	double weights[RL_RC_N][RL_NDTYPES];
	double bytes[RL_RC_N][RL_NDTYPES];
	rl_roofline_shape shapes[RL_RC_N][RL_CLASS_SHAPES]; /* the class's distinct products ... */
	double products[RL_RC_N][RL_CLASS_SHAPES];          /* ... and how many of each a token runs */
	int nshapes[RL_RC_N];
	double stored_bytes;        /* every tensor as stored (the file's payload) */
	int n_layers, n_heads, head_dim, kv_dim, lora_rank;
	int kv_bytes;               /* bytes of one cached K or V element */
};

/* Tallies m's tensors (shapes only; data is not read) stored as policy says,
 * or as they are stored when policy is NULL. lora_rank > 0 adds f32 adapters
 * A (r, IC) and B (OC, r) to each block matrix stored below 4 bits. kv_bytes
 * is the size of a cached element (4: f32, as our runtime keeps them).
 * -1 after rl_seterr (a format that cannot hold a tensor's rows). */
int rl_roofline_tally(const rl_model *m, rl_policy *policy, int lora_rank, int kv_bytes, rl_roofline_weights *w);

typedef enum { RL_BOUND_MEMORY, RL_BOUND_COMPUTE, RL_BOUND_KERNEL } rl_roofline_bound;

typedef struct {
	double bytes, flops, time;  /* per token */
	rl_roofline_bound bound;    /* which limit set the time */
} rl_roofline_cost;

typedef struct {
	rl_roofline_cost cls[RL_RC_N];
	double bytes, flops, time;  /* per token, all classes */
	double tokens_per_s;
} rl_roofline_step;

/* Decoding one token in each of `batch` sequences that hold ctx tokens of
 * context in their caches: the weights are read once per step for the batch,
 * the KV cache of each sequence for its own token. Per-token figures. */
int rl_roofline_decode(const rl_roofline_weights *w, const rl_hw *hw, int ctx, int batch, rl_roofline_step *s);
/* A prefill of ntok tokens in one batch (causal attention, cache written).
 * Per-token figures; tokens_per_s is ntok / the batch's time. */
int rl_roofline_prefill(const rl_roofline_weights *w, const rl_hw *hw, int ntok, rl_roofline_step *s);

#endif
