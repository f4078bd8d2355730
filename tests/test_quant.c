/* test_quant: the group formats against an independent reference (numpy, from
 * DESIGN.md's text: tests/ref/quant_ref.py), the packing of every bit width and
 * length, the mse quantizer against rtn, whole-tensor quantization and its
 * statistics and errors, and storage policies. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "policy.h"
#include "quant.h"
#include "t.h"
#include "int8_check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static int group_dtype(int bits, int group)
{
	char name[16];
	snprintf(name, sizeof name, "q%dg%d", bits, group);
	return rl_dtype_from_name(name, strlen(name));
}

static void test_reference(void)
{
	FILE *f = fopen("tests/fixtures/quant_ref.bin", "rb");
	if (!f) {
		CHECK(0, "reference_fixture", "tests/fixtures/quant_ref.bin: cannot open");
		return;
	}
	char magic[4];
	uint32_t hdr[2];
	int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "RLQR", 4) == 0 && fread(hdr, 4, 2, f) == 2 && hdr[0] == 1;
	CHECK(ok, "reference_fixture", "bad header");
	for (uint32_t c = 0; ok && c < hdr[1]; c++) {
		uint32_t h[4], nbytes;
		if (fread(h, 4, 4, f) != 4)
			break;
		uint32_t bits = h[0], group = h[1], rows = h[2], cols = h[3];
		size_t n = (size_t)rows * cols;
		float *w = malloc(n * 4), *deq = malloc(n * 4), *got = malloc(n * 4);
		int rd = fread(w, 4, n, f) == n && fread(&nbytes, 4, 1, f) == 1;
		unsigned char *want = malloc(nbytes), *mine = calloc(1, nbytes + 64);
		rd = rd && fread(want, 1, nbytes, f) == nbytes && fread(deq, 4, n, f) == n;
		char name[64];
		snprintf(name, sizeof name, "reference_q%ug%u_%ux%u", bits, group, rows, cols);
		int dt = group_dtype((int)bits, (int)group);
		size_t rb = dt >= 0 ? rl_row_bytes((rl_dtype)dt, cols) : 0;
		if (!rd || dt < 0 || rb * rows != nbytes) {
			CHECK(0, name, "fixture unreadable or row bytes %zu x %u != %u", rb, rows, nbytes);
		} else {
			for (uint32_t r = 0; r < rows; r++) {
				rl_dtypes[dt].from_float(w + (size_t)r * cols, mine + r * rb, cols);
				rl_dtypes[dt].to_float(mine + r * rb, got + (size_t)r * cols, cols);
			}
			size_t first = nbytes;
			for (size_t i = 0; i < nbytes && first == nbytes; i++)
				if (mine[i] != want[i])
					first = i;
			size_t vbad = n;
			for (size_t i = 0; i < n && vbad == n; i++)
				if (memcmp(&got[i], &deq[i], 4))
					vbad = i;
			CHECK(first == nbytes && vbad == n, name, "first differing byte %zu (%02x vs %02x), value %zu",
			      first, first < nbytes ? mine[first] : 0, first < nbytes ? want[first] : 0, vbad);
		}
		free(w);
		free(deq);
		free(got);
		free(want);
		free(mine);
	}
	fclose(f);
}

static void test_packing(void)
{
	int bad = 0;
	char why[200] = "";
	static const int bits[] = { 2, 3, 4, 8 };
	for (int b = 0; b < 4; b++)
		for (size_t n = 1; n <= 256; n++) {
			uint8_t q[256], back[256];
			for (size_t i = 0; i < n; i++)
				q[i] = (uint8_t)(urand() * (1 << bits[b]));
			unsigned char buf[300];
			memset(buf, 0xa5, sizeof buf);
			/* scale 1, min 0: the dequantized weights are the q */
			rl_group_pack(buf, bits[b], n, 0x3c00, 0, q);
			float w[256];
			rl_group_unpack(buf, bits[b], n, w);
			for (size_t i = 0; i < n; i++)
				back[i] = (uint8_t)w[i];
			size_t used = rl_group_bytes(bits[b], n);
			if (memcmp(q, back, n) || buf[used] != 0xa5) {
				if (!bad++)
					snprintf(why, sizeof why, "%d bits, %zu values", bits[b], n);
			}
		}
	CHECK(!bad, "pack_unpack_every_width_and_length", "%s", why);
	/* the shorter last group: 172 = 5 x 32 + 12 */
	CHECK(rl_row_bytes(RL_Q4G32, 172) == 5 * (4 + 16) + (4 + 6), "row_bytes_shorter_last_group", "%zu",
	      rl_row_bytes(RL_Q4G32, 172));
	CHECK(rl_row_bytes(RL_Q3G16, 16) == 4 + 6 && rl_row_bytes(RL_Q2G256, 1) == 5, "row_bytes_small",
	      "%zu %zu", rl_row_bytes(RL_Q3G16, 16), rl_row_bytes(RL_Q2G256, 1));
	CHECK(rl_dtype_from_name("q4g32", 5) == RL_Q4G32 && rl_dtype_from_name("q5g32", 5) < 0 &&
	      rl_dtype_from_name("q4g48", 5) < 0, "format_names", "lookup");
}

static double group_err(const float *w, const float *imp, size_t n, int bits, rl_quant_method m)
{
	uint16_t s, mn;
	uint8_t q[256];
	unsigned char buf[300];
	float back[256];
	rl_group_quantize(w, imp, n, bits, m, &s, &mn, q);
	rl_group_pack(buf, bits, n, s, mn, q);
	rl_group_unpack(buf, bits, n, back);
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e += (imp ? imp[i] : 1.0) * (double)(w[i] - back[i]) * (w[i] - back[i]);
	return e;
}

static void test_mse(void)
{
	static const int bits[] = { 2, 3, 4, 8 };
	for (int b = 0; b < 4; b++) {
		double sum_rtn = 0, sum_mse = 0;
		int worse = 0;
		for (int g = 0; g < 400; g++) {
			float w[64], imp[64];
			size_t n = g % 2 ? 64 : 17;
			for (size_t i = 0; i < n; i++) {
				w[i] = nrand() * 0.03f + (g % 7 == 0 && i == 3 ? 0.3f : 0.0f);
				imp[i] = (float)(0.1 + 2 * urand());
			}
			const float *im = g % 3 == 0 ? imp : NULL;
			double er = group_err(w, im, n, bits[b], RL_QUANT_RTN), em = group_err(w, im, n, bits[b], RL_QUANT_MSE);
			worse += em > er * (1 + 1e-12);
			sum_rtn += er;
			sum_mse += em;
		}
		char name[64];
		snprintf(name, sizeof name, "mse_never_worse_than_rtn_%dbit", bits[b]);
		CHECK(worse == 0, name, "%d groups of 400 worse", worse);
		snprintf(name, sizeof name, "mse_better_than_rtn_%dbit", bits[b]);
		/* on gaussian groups the search should cut the error clearly */
		CHECK(sum_mse < 0.9 * sum_rtn, name, "total squared error %.4g vs rtn %.4g", sum_mse, sum_rtn);
	}
}

static void test_tensor(void)
{
	enum { R = 37, C = 100 };
	float *w = malloc(R * C * sizeof(float));
	for (int i = 0; i < R * C; i++)
		w[i] = nrand() * 0.05f;
	rl_tensor t = { .name = "blk.0.ffn_up.weight", .dtype = RL_F32, .ndim = 2, .shape = { R, C }, .data = w,
			.bytes = R * C * 4 };
	void *q;
	size_t bytes;
	rl_quant_stats st;
	int rc = rl_quantize_tensor(&t, RL_Q4G32, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	CHECK(rc == 0 && bytes == R * rl_row_bytes(RL_Q4G32, C), "quantize_tensor", "%s", rl_err());
	if (rc == 0) {
		/* same bytes as the format's own from_float, row by row */
		unsigned char *ref = malloc(bytes);
		size_t rb = rl_row_bytes(RL_Q4G32, C);
		for (int r = 0; r < R; r++)
			rl_dtypes[RL_Q4G32].from_float(w + r * C, ref + r * rb, C);
		CHECK(memcmp(ref, q, bytes) == 0, "quantize_tensor_rtn_is_the_format", "bytes differ");
		float *back = malloc(R * C * sizeof(float));
		double e2 = 0, w2 = 0;
		for (int r = 0; r < R; r++)
			rl_dtypes[RL_Q4G32].to_float((char *)q + r * rb, back + r * C, C);
		for (int i = 0; i < R * C; i++) {
			e2 += (double)(w[i] - back[i]) * (w[i] - back[i]);
			w2 += (double)w[i] * w[i];
		}
		CHECK(fabs(st.rmse - sqrt(e2 / (R * C))) < 1e-9 && fabs(st.sqnr_db - 10 * log10(w2 / e2)) < 1e-9 &&
		      fabs(st.bpw - 8.0 * bytes / (R * C)) < 1e-12 && st.n == R * C,
		      "stats", "rmse %g sqnr %g bpw %g", st.rmse, st.sqnr_db, st.bpw);
		free(ref);
		free(back);
		free(q);
	}
	w[5 * C + 7] = NAN;
	rc = rl_quantize_tensor(&t, RL_Q2G32, RL_QUANT_MSE, NULL, &q, &bytes, &st);
	CHECK(rc < 0 && strstr(rl_err(), "blk.0.ffn_up.weight") && strstr(rl_err(), "row 5"), "nonfinite_names_row",
	      "rc %d: %s", rc, rl_err());
	w[5 * C + 7] = 70000.0f;
	rc = rl_quantize_tensor(&t, RL_Q4G32, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	CHECK(rc < 0 && strstr(rl_err(), "row 5") && strstr(rl_err(), "65504"), "beyond_f16_names_row", "rc %d: %s",
	      rc, rl_err());
	free(w);
}

static rl_dtype dtype_of(rl_policy *p, const char *name, int ndim, uint64_t cols)
{
	rl_tensor t = { .ndim = ndim, .shape = { ndim == 2 ? 8 : cols, cols } };
	snprintf(t.name, sizeof t.name, "%s", name);
	rl_dtype d = RL_NDTYPES;
	if (rl_policy_dtype(p, &t, &d))
		return RL_NDTYPES;
	return d;
}

static void test_policy(void)
{
	rl_policy *p = rl_policy_parse("w4w2");
	CHECK(p && dtype_of(p, "blk.3.ffn_gate.weight", 2, 64) == RL_Q2G32 &&
	      dtype_of(p, "blk.3.ffn_up.weight", 2, 64) == RL_Q2G32 &&
	      dtype_of(p, "blk.3.ffn_down.weight", 2, 172) == RL_Q4G32 &&
	      dtype_of(p, "blk.0.attn_q.weight", 2, 64) == RL_Q4G32 &&
	      dtype_of(p, "token_embd.weight", 2, 64) == RL_Q8G32 && dtype_of(p, "output.weight", 2, 64) == RL_Q8G32 &&
	      dtype_of(p, "blk.0.attn_norm.weight", 1, 64) == RL_F32 && dtype_of(p, "blk.0.attn_q.bias", 1, 64) == RL_F32,
	      "policy_w4w2", "%s", p ? "a tensor got the wrong format" : rl_err());
	rl_policy_free(p);

	p = rl_policy_parse("q4;ffn_gate,ffn_up=q2;blk.0-3.ffn_*=q4g64;output=f16");
	CHECK(p && dtype_of(p, "blk.2.ffn_gate.weight", 2, 64) == RL_Q4G64 &&
	      dtype_of(p, "blk.4.ffn_gate.weight", 2, 64) == RL_Q2G32 &&
	      dtype_of(p, "blk.4.ffn_up.weight", 2, 64) == RL_Q2G32 &&
	      dtype_of(p, "blk.3.ffn_down.weight", 2, 64) == RL_Q4G64 && dtype_of(p, "output.weight", 2, 64) == RL_F16 &&
	      dtype_of(p, "blk.1.ffn_norm.weight", 1, 64) == RL_F32,
	      "policy_layers_and_later_rules_win", "%s", p ? "a tensor got the wrong format" : rl_err());
	CHECK(p && rl_policy_unmatched(p, 0) == NULL, "policy_all_targets_matched", "%s",
	      p && rl_policy_unmatched(p, 0) ? rl_policy_unmatched(p, 0) : "");
	rl_policy_free(p);

	p = rl_policy_parse("f16");
	CHECK(p && dtype_of(p, "token_embd.weight", 2, 64) == RL_F16 && dtype_of(p, "blk.0.attn_k.weight", 2, 64) == RL_F16 &&
	      dtype_of(p, "output_norm.weight", 1, 64) == RL_F32, "policy_float_default_covers_embeddings", "%s",
	      p ? "wrong" : rl_err());
	rl_policy_free(p);

	p = rl_policy_parse("q4;blk.9.attn_zz=q2");
	dtype_of(p, "blk.0.attn_q.weight", 2, 64);
	CHECK(p && rl_policy_unmatched(p, 0) && strcmp(rl_policy_unmatched(p, 0), "blk.9.attn_zz") == 0,
	      "policy_unmatched_target_reported", "%s", p ? "not reported" : rl_err());
	rl_policy_free(p);

	static const struct { const char *spec, *want; } bad[] = {
		{ "q4;ffn_gate=q9", "unknown format \"q9\" at character 13" },
		{ "q4;;q2", "an empty rule" },
		{ "q4;blk.x.ffn_up=q2", "bad layer range" },
		{ "q4;blk.3-1.ffn_up=q2", "bad layer range" },
		{ "q4;ffn_gate,=q2", "an empty target" },
		{ "q4;ffn gate=q2", "letters, digits" },
		{ "", "an empty rule" },
		{ "w4", "unknown format \"w4\" at character 1" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char name[64];
		snprintf(name, sizeof name, "policy_error_%zu", i);
		p = rl_policy_parse(bad[i].spec);
		CHECK(!p && strstr(rl_err(), bad[i].want), name, "\"%s\": %s", bad[i].spec, p ? "accepted" : rl_err());
		rl_policy_free(p);
	}
}

/* the fused kernels (portable, AVX2 and AVX-512) against dequantize-then-dot,
 * every group format, rows that are whole chunks, ragged, and shorter than a
 * group */
static void test_qgemv(void)
{
	/* 224: 7 groups of 32, the four-group loops leave 3 */
	static const int ics[] = { 64, 172, 224, 256, 300, 1024 };
	static const char *names[] = { "qgemv_portable_matches_ref", "qgemv_avx2_matches_ref", "qgemv_avx512_matches_ref" };
	enum { OC = 37, NV = 3 };
	for (int impl = 0; impl < 3; impl++) {
		if (rl_qgemv_select(impl) < 0) {
			t_skip(names[impl], "this CPU does not run these kernels");
			continue;
		}
		double worst = 0;
		char where[160] = "";
		for (int dt = RL_Q2G16; dt < RL_Q4_0; dt++) /* the group formats; ggml's: test_gguf_quant */
			for (size_t k = 0; k < sizeof ics / sizeof *ics; k++) {
				int IC = ics[k];
				size_t rb = rl_row_bytes((rl_dtype)dt, IC);
				float *w = malloc((size_t)OC * IC * 4), *x = malloc(NV * IC * 4), *y = malloc(NV * OC * 4),
				      *yr = malloc(OC * 4), *scratch = malloc(rl_qgemv_scratch(IC, NV) * 4), *row = malloc(IC * 4);
				unsigned char *W = malloc(OC * rb);
				for (int i = 0; i < OC * IC; i++)
					w[i] = nrand() * 0.05f + 0.01f;
				for (int i = 0; i < NV * IC; i++)
					x[i] = nrand();
				for (int r = 0; r < OC; r++)
					rl_dtypes[dt].from_float(w + (size_t)r * IC, W + r * rb, IC);
				/* decode's one vector, then a batch of NV (the kernels' other loop) */
				for (int pass = 0; pass < 2; pass++) {
					if (pass)
						rl_qgemm_rows((rl_dtype)dt, OC, IC, W, NV, x, IC, y, OC, scratch);
					else
						rl_qgemv((rl_dtype)dt, OC, IC, W, x, y, scratch);
					for (int n = 0; n < (pass ? NV : 1); n++) {
						const float *xn = x + (size_t)n * IC;
						const float *yn = y + (size_t)n * OC;
						rl_qgemv_ref((rl_dtype)dt, OC, IC, W, xn, yr, row);
						for (int r = 0; r < OC; r++) {
							rl_dtypes[dt].to_float(W + r * rb, row, IC);
							double mag = 0;
							for (int i = 0; i < IC; i++)
								mag += fabs((double)row[i] * xn[i]);
							double e = fabs(yn[r] - yr[r]) / (mag * 1e-6 + 1e-30);
							if (e > worst) {
								worst = e;
								snprintf(where, sizeof where, "%s, IC %d, %s %d, row %d: %g vs %g",
									 rl_dtypes[dt].name, IC, pass ? "batch, vector" : "decode",
									 n, r, yn[r], yr[r]);
							}
						}
					}
				}
				free(w);
				free(x);
				free(y);
				free(yr);
				free(scratch);
				free(row);
				free(W);
			}
		CHECK(worst < 1, names[impl], "error %.3g of 1e-6 x sum|terms| at %s", worst, where);
	}
	rl_qgemv_select(-1);
}

static void fill_group_row(rl_dtype dt, int IC, int r, float *w)
{
	(void)dt;
	for (int i = 0; i < IC; i++)
		w[i] = nrand() * 0.05f + 0.01f * ((r * IC + i) % 3);
}

/* 8-bit activations through every group format (int8_check.h), rows that are
 * whole groups, ragged, and shorter than a group; 7 groups of 32 (224) leave
 * the AVX2 kernel's four-group loop 3 groups to take two and one at a time */
static void test_qgemv_int8(void)
{
	static const int ics[] = { 64, 172, 224, 256, 300, 1024 };
	rl_dtype dts[RL_Q4_0 - RL_Q2G16];
	for (int dt = RL_Q2G16; dt < RL_Q4_0; dt++)
		dts[dt - RL_Q2G16] = (rl_dtype)dt;
	int8_check("qgemv_int8", dts, RL_Q4_0 - RL_Q2G16, ics, 6, 37, fill_group_row, nrand);
}

/* The largest sums the 8-bit kernels add in 16 bits: every q at its top (15 or
 * 3) and every xi at +-127 (x constant), where a sum that overflowed would be
 * off by 65536 steps; both kernels give the exact dot within float rounding. */
static void test_qgemv_int8_extremes(void)
{
	enum { IC = 1024, OC = 4 };
	static const rl_dtype dts[] = { RL_Q2G32, RL_Q4G32, RL_Q2G64, RL_Q4G128 };
	float *w = malloc(IC * 4), x[IC], y[OC], *scratch = malloc(rl_qgemv_scratch(IC, 1) * 4);
	double worst = 0;
	char where[128] = "";
	for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
		rl_dtype dt = dts[d];
		size_t rb = rl_row_bytes(dt, IC);
		unsigned char *W = malloc(OC * rb);
		/* each group {0, 1, 1, ...}: min 0, scale 1 / top, every q but the first at top */
		for (int i = 0; i < IC; i++)
			w[i] = i % rl_dtypes[dt].group ? 1.0f : 0.0f;
		for (int r = 0; r < OC; r++)
			rl_dtypes[dt].from_float(w, W + r * rb, IC);
		rl_dtypes[dt].to_float(W, w, IC);
		for (int sign = -1; sign <= 1; sign += 2)
			for (int impl = 0; impl < 2; impl++) {
				rl_qgemv_select(impl);
				for (int i = 0; i < IC; i++)
					x[i] = 0.75f * sign;
				rl_qgemm_rows_act(dt, OC, IC, W, 1, x, IC, y, OC, scratch, RL_ACT_INT8);
				double exact = 0;
				for (int i = 0; i < IC; i++)
					exact += (double)w[i] * x[i];
				for (int r = 0; r < OC; r++) {
					double e = fabs(y[r] - exact) / fabs(exact);
					if (e > worst) {
						worst = e;
						snprintf(where, sizeof where, "%s, x %+g, %s: %g vs %g", rl_dtypes[dt].name,
							 x[0], impl ? "avx2" : "portable", y[r], exact);
					}
				}
			}
		free(W);
	}
	rl_qgemv_select(-1);
	CHECK(worst < 1e-5, "qgemv_int8_extreme_sums", "relative error %.3g at %s", worst, where);
	free(w);
	free(scratch);
}

/* to_float of a row (vectorized where the CPU allows) equals the format's own
 * group-by-group unpack, bit for bit, for every group format */
static void test_dequant_row(void)
{
	static const int lens[] = { 32, 64, 96, 172, 256, 300, 1024, 4099 };
	int bad = 0;
	char why[128] = "";
	for (int dt = RL_Q2G16; dt < RL_Q4_0; dt++) /* the group formats; ggml's: test_gguf_quant */
		for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
			int n = lens[k], G = rl_dtypes[dt].group, bits = rl_dtypes[dt].qbits;
			float *w = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4);
			unsigned char *buf = malloc(rl_row_bytes((rl_dtype)dt, n));
			for (int i = 0; i < n; i++)
				w[i] = nrand() * 0.1f;
			rl_dtypes[dt].from_float(w, buf, n);
			rl_dtypes[dt].to_float(buf, a, n);
			const unsigned char *p = buf;
			for (int i = 0; i < n; i += G) {
				int m = n - i < G ? n - i : G;
				rl_group_unpack(p, bits, m, b + i);
				p += rl_group_bytes(bits, m);
			}
			if (memcmp(a, b, n * 4) && !bad++)
				snprintf(why, sizeof why, "%s, row of %d", rl_dtypes[dt].name, n);
			free(w);
			free(a);
			free(b);
			free(buf);
		}
	CHECK(!bad, "dequant_row_equals_group_unpack", "%s", why);
}

/* mean over positions of KL(softmax(p) || softmax(q)), rows of V */
static double mean_kl(const float *p, const float *q, int T, int V)
{
	double kl = 0;
	for (int t = 0; t < T; t++) {
		const float *a = p + (size_t)t * V, *b = q + (size_t)t * V;
		double ma = a[0], mb = b[0], za = 0, zb = 0;
		for (int i = 1; i < V; i++) {
			ma = a[i] > ma ? a[i] : ma;
			mb = b[i] > mb ? b[i] : mb;
		}
		for (int i = 0; i < V; i++) {
			za += exp(a[i] - ma);
			zb += exp(b[i] - mb);
		}
		for (int i = 0; i < V; i++) {
			double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
			kl += exp(la) * (la - lb);
		}
	}
	return kl / T;
}

/* The forward pass's 8-bit-activation option (rl_model.int8_act): a W4/W2
 * random model (rows of 96 and a ragged 172) moves a little from exact f32
 * activations (0 < KL < 0.05 nats), and a model stored as floats does not move. */
static void test_forward_int8(void)
{
	rl_config c = { .dim = 96, .hidden_dim = 172, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 24,
			.vocab_size = 272, .seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-5,
			.rope_style = RL_ROPE_HALF, .qk_norm = 1, .tied_embeddings = 1 };
	rl_model m;
	if (rl_model_random(&c, "qwen3", 5, &m)) {
		CHECK(0, "forward_int8", "%s", rl_err());
		return;
	}
	enum { T = 40 };
	int tokens[T];
	for (int t = 0; t < T; t++)
		tokens[t] = (t * 37 + 11) % c.vocab_size;
	size_t n = (size_t)T * c.vocab_size;
	float *a = malloc(n * 4), *b = malloc(n * 4);
	int rc = t_batch_logits(&m, tokens, T, a);
	m.int8_act = 1;
	rc = rc || t_batch_logits(&m, tokens, T, b);
	CHECK(!rc && memcmp(a, b, n * 4) == 0, "forward_int8_leaves_f32_weights", "%s",
	      rc ? rl_err() : "logits of an f32 model changed");
	for (int i = 0; i < m.ntensors && !rc; i++) {
		rl_tensor *t = &m.tensors[i];
		if (t->ndim != 2 || t == m.token_embd)
			continue;
		rl_dtype dt = strstr(t->name, "ffn_gate") || strstr(t->name, "ffn_up") ? RL_Q2G32 : RL_Q4G32;
		void *q;
		size_t bytes;
		rl_quant_stats st;
		rc = rl_quantize_tensor(t, dt, RL_QUANT_MSE, NULL, &q, &bytes, &st);
		if (!rc) {
			free(t->data);
			t->data = q, t->dtype = dt, t->bytes = bytes;
		}
	}
	m.int8_act = 0;
	rc = rc || t_batch_logits(&m, tokens, T, a);
	m.int8_act = 1;
	rc = rc || t_batch_logits(&m, tokens, T, b);
	double kl = rc ? NAN : mean_kl(a, b, T, c.vocab_size);
	CHECK(!rc && kl > 0 && kl < 0.05, "forward_int8_small_cost", "%s KL %.3g", rc ? rl_err() : "", kl);
	free(a);
	free(b);
	rl_model_free(&m);
}

int main(void)
{
	test_reference();
	test_packing();
	test_dequant_row();
	test_mse();
	test_tensor();
	test_policy();
	test_qgemv();
	test_qgemv_int8();
	test_qgemv_int8_extremes();
	test_forward_int8();
	return t_done();
}
