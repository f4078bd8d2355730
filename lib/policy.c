/* policy.c: parsing and applying storage policies (see policy.h). */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "policy.h"

enum { MAX_RULES = 64, MAX_TARGETS = 256 };

typedef struct {
	char text[96];       /* as written, for warnings */
	char glob[64];
	int has_layers, lo, hi;
	int matched;
	int rule;
} target;

struct rl_policy {
	char spec[512];
	rl_dtype rule_dtype[MAX_RULES];
	int rule_bare[MAX_RULES];
	int nrules;
	target t[MAX_TARGETS];
	int ntargets;
};

static int parse_format(const char *s, size_t len, rl_dtype *dt)
{
	static const struct { const char *alias; rl_dtype dt; } aliases[] = {
		{ "q2", RL_Q2G32 }, { "q3", RL_Q3G32 }, { "q4", RL_Q4G32 }, { "q8", RL_Q8G32 },
	};
	for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
		if (strlen(aliases[i].alias) == len && memcmp(aliases[i].alias, s, len) == 0) {
			*dt = aliases[i].dt;
			return 0;
		}
	int d = rl_dtype_from_name(s, len);
	if (d < 0)
		return -1;
	*dt = (rl_dtype)d;
	return 0;
}

static int bad(const rl_policy *p, const char *at, size_t len, const char *why)
{
	rl_seterr("policy \"%s\": %s \"%.*s\" at character %d (qpack -p help shows the grammar)", p->spec, why,
		  (int)len, at, (int)(at - p->spec) + 1);
	return -1;
}

static int parse_target(rl_policy *p, const char *s, size_t len, int rule)
{
	if (p->ntargets == MAX_TARGETS || len == 0 || len >= sizeof p->t[0].text)
		return bad(p, s, len, len ? "too many or too long targets:" : "an empty target");
	target *t = &p->t[p->ntargets];
	memset(t, 0, sizeof *t);
	memcpy(t->text, s, len);
	t->rule = rule;
	const char *g = s;
	size_t glen = len;
	if (len > 4 && memcmp(s, "blk.", 4) == 0) {
		const char *dot = memchr(s + 4, '.', len - 4);
		if (!dot)
			return bad(p, s, len, "a target needs blk.LAYERS.KIND, not");
		char layers[32];
		size_t ll = (size_t)(dot - (s + 4));
		if (ll == 0 || ll >= sizeof layers)
			return bad(p, s, len, "bad layer range in");
		memcpy(layers, s + 4, ll);
		layers[ll] = 0;
		t->has_layers = 1;
		int lo, hi, used = 0;
		if (strcmp(layers, "*") == 0) {
			t->lo = 0;
			t->hi = 1 << 30;
		} else if (sscanf(layers, "%d-%d%n", &lo, &hi, &used) == 2 && used == (int)ll && lo >= 0 && hi >= lo) {
			t->lo = lo;
			t->hi = hi;
		} else if (sscanf(layers, "%d%n", &lo, &used) == 1 && used == (int)ll && lo >= 0) {
			t->lo = t->hi = lo;
		} else {
			return bad(p, s, len, "bad layer range (N, N-M or *) in");
		}
		g = dot + 1;
		glen = len - (size_t)(g - s);
	}
	if (glen == 0 || glen >= sizeof t->glob)
		return bad(p, s, len, "no tensor kind in");
	memcpy(t->glob, g, glen);
	for (size_t i = 0; i < glen; i++) {
		char c = t->glob[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '*' || c == '?' || c == '[' ||
		      c == ']' || c == '-'))
			return bad(p, s, len, "a tensor kind has letters, digits, _ and globs:");
	}
	p->ntargets++;
	return 0;
}

rl_policy *rl_policy_parse(const char *spec)
{
	rl_policy *p = calloc(1, sizeof *p);
	if (!p) {
		rl_seterr("out of memory");
		return NULL;
	}
	if (strcmp(spec, "w4w2") == 0)
		spec = "q4;ffn_gate,ffn_up=q2";
	if (strlen(spec) >= sizeof p->spec) {
		rl_seterr("policy \"%.40s...\": longer than %zu characters", spec, sizeof p->spec - 1);
		free(p);
		return NULL;
	}
	strcpy(p->spec, spec);
	const char *s = p->spec;
	for (;;) {
		const char *end = strchr(s, ';');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		if (len == 0) {
			bad(p, s, 0, "an empty rule");
			goto fail;
		}
		if (p->nrules == MAX_RULES) {
			bad(p, s, len, "more than 64 rules at");
			goto fail;
		}
		const char *eq = memchr(s, '=', len);
		const char *fmt = eq ? eq + 1 : s;
		size_t flen = len - (size_t)(fmt - s);
		rl_dtype dt;
		if (parse_format(fmt, flen, &dt)) {
			bad(p, fmt, flen, "unknown format");
			goto fail;
		}
		p->rule_dtype[p->nrules] = dt;
		p->rule_bare[p->nrules] = eq == NULL;
		if (eq) {
			const char *a = s;
			while (a < eq) {
				const char *comma = memchr(a, ',', (size_t)(eq - a));
				const char *b = comma ? comma : eq;
				if (parse_target(p, a, (size_t)(b - a), p->nrules))
					goto fail;
				a = comma ? comma + 1 : eq;
				if (comma && a == eq) {
					bad(p, a, 0, "an empty target");
					goto fail;
				}
			}
		}
		p->nrules++;
		if (!end)
			break;
		s = end + 1;
	}
	return p;
fail:
	free(p);
	return NULL;
}

void rl_policy_free(rl_policy *p) { free(p); }

/* blk.N.KIND.weight -> layer N, kind KIND; NAME.weight -> layer -1, kind NAME */
static void split_name(const char *name, int *layer, char *kind, size_t size)
{
	*layer = -1;
	const char *k = name;
	int n, used = 0;
	if (sscanf(name, "blk.%d.%n", &n, &used) == 1 && used > 0) {
		*layer = n;
		k = name + used;
	}
	snprintf(kind, size, "%s", k);
	char *dot = strrchr(kind, '.');
	if (dot && strcmp(dot, ".weight") == 0)
		*dot = 0;
}

int rl_policy_dtype(rl_policy *p, const rl_tensor *t, rl_dtype *dt)
{
	int layer;
	char kind[64];
	split_name(t->name, &layer, kind, sizeof kind);
	rl_dtype d = RL_F32;
	if (t->ndim == 2) {
		int embed = layer < 0; /* token_embd, output */
		for (int r = 0; r < p->nrules; r++) {
			if (!p->rule_bare[r])
				continue;
			rl_dtype b = p->rule_dtype[r];
			d = embed && rl_dtype_quantized(b) ? RL_Q8G32 : b;
		}
	}
	for (int i = 0; i < p->ntargets; i++) {
		target *tg = &p->t[i];
		if (tg->has_layers && (layer < tg->lo || layer > tg->hi))
			continue;
		if (fnmatch(tg->glob, kind, 0) != 0)
			continue;
		tg->matched = 1;
		if (t->ndim == 2)
			d = p->rule_dtype[tg->rule];
	}
	if (rl_row_bytes(d, t->shape[t->ndim - 1]) == 0) {
		/* ggml's blocks: the hint is our group format of the same bits, which takes any row */
		rl_seterr("tensor %s: row length %llu is not a multiple of %zu (%s); use q%dg32", t->name,
			  (unsigned long long)t->shape[t->ndim - 1], rl_dtypes[d].block, rl_dtypes[d].name,
			  rl_dtypes[d].qbits ? rl_dtypes[d].qbits : 4);
		return -1;
	}
	*dt = d;
	return 0;
}

const char *rl_policy_unmatched(const rl_policy *p, int i)
{
	for (int k = 0; k < p->ntargets; k++)
		if (!p->t[k].matched && i-- == 0)
			return p->t[k].text;
	return NULL;
}

const char *rl_policy_help(void)
{
	return "policy := rule { \";\" rule }\n"
	       "rule   := FORMAT | TARGET { \",\" TARGET } \"=\" FORMAT\n"
	       "TARGET := [ \"blk.\" LAYERS \".\" ] KIND-GLOB     LAYERS := N | N-M | *\n"
	       "\n"
	       "A bare FORMAT is the default for the blocks' weight matrices; token_embd and\n"
	       "output take it when it is a float format, else q8g32; norms and biases stay\n"
	       "f32. Later rules win. KIND is the name between blk.N. and .weight (attn_q,\n"
	       "attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down) or token_embd, output.\n"
	       "\n"
	       "named policies:\n"
	       "  w4w2   q4;ffn_gate,ffn_up=q2   (W4/W2-GateUp, the default)\n"
	       "\n"
	       "formats:\n"
	       "  f32 f16 bf16                 floats (f16/bf16 round to nearest even)\n"
	       "  qBgG, B in 2 3 4 8, G in 16 32 64 128 256\n"
	       "                               groups of G weights along a row, w = scale*q + min,\n"
	       "                               f16 scale and min per group; B + 32/G bits per weight\n"
	       "  q2 q3 q4 q8                  q2g32 q3g32 q4g32 q8g32\n"
	       "  q4_0 q8_0 q4_K q2_K          ggml's GGUF blocks, byte for byte as llama.cpp's quantize\n"
	       "                               writes them (4.5, 8.5, 4.5, 2.625 bits per weight); rows\n"
	       "                               must be multiples of 32 (q4_0, q8_0) or 256 (q4_K, q2_K)\n"
	       "\n"
	       "examples:\n"
	       "  -p w4w2\n"
	       "  -p 'q4;ffn_gate,ffn_up=q2;blk.0-3.ffn_*=q4g32'\n"
	       "  -p 'q4g64;output=f16'\n"
	       "  -p 'q4_K;ffn_gate,ffn_up=q2_K'   (rows of multiples of 256)\n";
}
