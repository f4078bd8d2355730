/* test_gguf_quant: ggml's block formats q4_0, q8_0, q4_K and q2_K against bytes
 * and floats that ggml itself produced (tests/fixtures/ggml_blocks.bin, made
 * once with ggml's quantize_row_*_ref and dequantize_row_*: see
 * tests/fixtures/ggml_blocks.md), the fused dot kernels (AVX2 and portable)
 * against dequantize-then-dot, whole-tensor quantization and its errors, and
 * the policy's answer to rows the blocks cannot hold. The fixture also holds
 * q4_K and q2_K made with an importance matrix (ggml's quantize_q4_K and
 * quantize_q2_K given quant_weights), which qpack --importance reproduces. */
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

static const rl_dtype gguf[] = { RL_Q4_0, RL_Q8_0, RL_Q4_K, RL_Q2_K };
enum { NGGUF = sizeof gguf / sizeof *gguf };

/* The fixture's weights, rebuilt from its seed: 16-weight segments of varied
 * character (symmetric, one-signed, zero, constant, a grid with rounding ties,
 * one spike, tiny), so every branch of the quantizers is taken. The generator
 * that wrote the fixture used these same lines. */
static uint64_t lcg_state;
static float lcg_uniform(void) /* [0, 1), 24 bits */
{
	lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
	return (float)(lcg_state >> 40) / 16777216.0f;
}

static void fixture_input(uint32_t seed, float *x, size_t n)
{
	lcg_state = seed;
	for (size_t s = 0; s < n; s += 16) {
		int mode = (int)(lcg_uniform() * 9), e = (int)(lcg_uniform() * 9) - 6;
		float scale = e < 0 ? 1.0f / (float)(1 << -e) : (float)(1 << e);
		int spike = (int)(lcg_uniform() * 16);
		for (size_t i = s; i < s + 16 && i < n; i++) {
			float u = lcg_uniform();
			switch (mode) {
			case 0: x[i] = (2 * u - 1) * scale; break;
			case 1: x[i] = (u + 0.125f) * scale; break;
			case 2: x[i] = -(u + 0.5f) * scale; break;
			case 3: x[i] = 0; break;
			case 4: x[i] = (u + lcg_uniform() + lcg_uniform() + lcg_uniform() - 2) * scale; break;
			case 5: x[i] = (float)((int)(u * 17) - 8) * 0.25f * scale; break;
			case 6: x[i] = (i - s == (size_t)spike ? 9 : 0.1f) * (2 * u - 1) * scale; break;
			case 7: x[i] = 0.3f * scale; break;
			default: x[i] = (2 * u - 1) * 1e-6f; break;
			}
		}
	}
}

/* per-column importance (an imatrix): positive, a few dead channels */
static void fixture_importance(uint32_t seed, float *imp, size_t n)
{
	lcg_state = seed;
	for (size_t i = 0; i < n; i++)
		imp[i] = i % 37 == 5 ? 0.0f : 0.05f + lcg_uniform() * lcg_uniform() * 4;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float nrand(void)
{
	double u[2];
	for (int k = 0; k < 2; k++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		u[k] = (double)(rng >> 11) / 9007199254740992.0;
	}
	return (float)(sqrt(-2 * log(u[0] + 1e-12)) * cos(6.283185307179586 * u[1]));
}

static void test_traits(void)
{
	static const struct { const char *name; size_t block, bytes; int bits; } want[] = {
		{ "q4_0", 32, 18, 4 }, { "q8_0", 32, 34, 8 }, { "q4_K", 256, 144, 4 }, { "q2_K", 256, 84, 2 },
	};
	int ok = 1;
	for (int k = 0; k < NGGUF; k++) {
		const rl_dtype_traits *tr = &rl_dtypes[gguf[k]];
		ok = ok && strcmp(tr->name, want[k].name) == 0 && tr->block == want[k].block &&
		     tr->block_bytes == want[k].bytes && tr->qbits == want[k].bits && tr->group == 0 && tr->dot &&
		     rl_dtype_from_name(want[k].name, strlen(want[k].name)) == (int)gguf[k] &&
		     fabs(tr->bits - 8.0 * (double)want[k].bytes / (double)want[k].block) < 1e-12 &&
		     rl_dtype_quantized(gguf[k]) && rl_dtype_fused(gguf[k]);
	}
	CHECK(ok, "gguf_traits", "a name, block size, size or bits per weight differs from ggml-common.h");
	CHECK(rl_row_bytes(RL_Q2_K, 172) == 0 && rl_row_bytes(RL_Q4_K, 64) == 0 && rl_row_bytes(RL_Q4_0, 48) == 0 &&
	      rl_row_bytes(RL_Q4_K, 1024) == 4 * 144 && rl_row_bytes(RL_Q8_0, 64) == 68 && rl_row_bytes(RL_Q2_K, 0) == 0,
	      "gguf_row_bytes", "q2_K 172: %zu, q4_K 1024: %zu", rl_row_bytes(RL_Q2_K, 172), rl_row_bytes(RL_Q4_K, 1024));
}

/* ggml's bytes and floats: ours must be identical, bit for bit */
static void test_fixture(void)
{
	FILE *f = fopen("tests/fixtures/ggml_blocks.bin", "rb");
	if (!f) {
		CHECK(0, "ggml_fixture", "tests/fixtures/ggml_blocks.bin: cannot open");
		return;
	}
	char magic[4];
	uint32_t hdr[2];
	int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "RLGB", 4) == 0 && fread(hdr, 4, 2, f) == 2 && hdr[0] == 1 &&
		 hdr[1] == 6;
	CHECK(ok, "ggml_fixture", "bad header");
	for (uint32_t c = 0; ok && c < hdr[1]; c++) {
		char name[9] = { 0 };
		uint32_t h[5];
		if (fread(name, 1, 8, f) != 8 || fread(h, 4, 5, f) != 5) {
			CHECK(0, "ggml_fixture", "cut short at case %u", c);
			break;
		}
		/* imp_seed 0: the reference quantizer; else the importance-matrix one */
		uint32_t rows = h[0], cols = h[1], seed = h[2], nbytes = h[3], imp_seed = h[4];
		int dt = rl_dtype_from_name(name, strlen(name));
		size_t n = (size_t)rows * cols, rb = dt < 0 ? 0 : rl_row_bytes((rl_dtype)dt, cols);
		if (dt < 0 || rb == 0 || n > 4096 || nbytes != rows * rb) {
			CHECK(0, "ggml_fixture", "case %u: %s %ux%u with %u bytes", c, name, rows, cols, nbytes);
			break;
		}
		float *x = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4), *imp = malloc(cols * 4);
		const char *kind = imp_seed ? "_imatrix" : "";
		unsigned char *ggml = malloc(nbytes), *ours = malloc(nbytes);
		if (fread(ggml, 1, nbytes, f) != nbytes || fread(want, 4, n, f) != n) {
			CHECK(0, "ggml_fixture", "case %u cut short", c);
			ok = 0;
		} else {
			fixture_input(seed, x, n);
			fixture_importance(imp_seed, imp, cols);
			for (uint32_t r = 0; r < rows; r++)
				if (!imp_seed)
					rl_dtypes[dt].from_float(x + (size_t)r * cols, ours + r * rb, cols);
				else if (dt == RL_Q4_K)
					rl_quantize_row_q4_K_imp(x + (size_t)r * cols, ours + r * rb, cols, imp);
				else
					rl_quantize_row_q2_K_imp(x + (size_t)r * cols, ours + r * rb, cols, imp);
			size_t at = 0;
			while (at < nbytes && ours[at] == ggml[at])
				at++;
			char tn[64];
			snprintf(tn, sizeof tn, "ggml_bytes_%s%s", name, kind);
			CHECK(at == nbytes, tn, "first difference at byte %zu (block %zu, byte %zu of it): ggml %02x, ours %02x",
			      at, at / rl_dtypes[dt].block_bytes, at % rl_dtypes[dt].block_bytes, at < nbytes ? ggml[at] : 0,
			      at < nbytes ? ours[at] : 0);
			for (uint32_t r = 0; r < rows; r++)
				rl_dtypes[dt].to_float(ggml + r * rb, got + (size_t)r * cols, cols);
			size_t i = 0;
			while (i < n && memcmp(&got[i], &want[i], 4) == 0)
				i++;
			snprintf(tn, sizeof tn, "ggml_dequantize_%s%s", name, kind);
			CHECK(i == n, tn, "weight %zu: ggml %.9g, ours %.9g", i, i < n ? want[i] : 0, i < n ? got[i] : 0);
			/* the whole-tensor path qpack takes stores the same bytes */
			rl_tensor t = { .name = "blk.0.ffn_up.weight", .dtype = RL_F32, .ndim = 2, .shape = { rows, cols },
					.data = x, .bytes = n * 4 };
			void *q = NULL;
			size_t bytes;
			rl_quant_stats st;
			int rc = rl_quantize_tensor(&t, (rl_dtype)dt, RL_QUANT_MSE, imp_seed ? imp : NULL, &q, &bytes, &st);
			snprintf(tn, sizeof tn, "ggml_tensor_%s%s", name, kind);
			CHECK(rc == 0 && bytes == nbytes && memcmp(q, ggml, nbytes) == 0 &&
			      fabs(st.bpw - rl_dtypes[dt].bits) < 1e-12, tn, "%s", rc ? rl_err() : "bytes or bits differ");
			free(q);
		}
		free(x);
		free(imp);
		free(want);
		free(got);
		free(ggml);
		free(ours);
	}
	fclose(f);
}

/* rl_qgemv (both kernels) against the double-precision dot of to_float's
 * weights; N vectors at once equal one at a time, bit for bit */
static void test_dot(void)
{
	static const int ics[] = { 256, 512, 1280 };
	enum { OC = 29, N = 3 };
	for (int impl = 0; impl < 2; impl++) {
		rl_qgemv_select(impl);
		double worst = 0;
		char where[160] = "";
		int batch_same = 1;
		for (int k = 0; k < NGGUF; k++)
			for (size_t c = 0; c < sizeof ics / sizeof *ics; c++) {
				rl_dtype dt = gguf[k];
				int IC = ics[c];
				size_t rb = rl_row_bytes(dt, (uint64_t)IC);
				float *w = malloc((size_t)IC * 4), *x = malloc((size_t)N * IC * 4), *row = malloc((size_t)IC * 4);
				float *y = malloc(N * OC * 4), *yr = malloc(OC * 4), *yn = malloc(N * OC * 4);
				float *scratch = malloc(rl_qgemv_scratch(IC, N) * 4);
				unsigned char *W = malloc((size_t)OC * rb);
				for (int r = 0; r < OC; r++) {
					/* rows with an offset so the mins matter, and one of the fixture's kind */
					if (r == 0)
						fixture_input(7u + (uint32_t)c, w, (size_t)IC);
					else
						for (int i = 0; i < IC; i++)
							w[i] = nrand() * 0.05f + (r % 3) * 0.02f;
					rl_dtypes[dt].from_float(w, W + (size_t)r * rb, (size_t)IC);
				}
				for (int i = 0; i < N * IC; i++)
					x[i] = nrand();
				rl_qgemm_rows(dt, OC, IC, W, N, x, (size_t)IC, yn, OC, scratch);
				for (int v = 0; v < N; v++) {
					rl_qgemv(dt, OC, IC, W, x + (size_t)v * IC, y + v * OC, scratch);
					batch_same = batch_same && memcmp(y + v * OC, yn + v * OC, OC * 4) == 0;
					rl_qgemv_ref(dt, OC, IC, W, x + (size_t)v * IC, yr, row);
					for (int r = 0; r < OC; r++) {
						rl_dtypes[dt].to_float(W + (size_t)r * rb, row, (size_t)IC);
						double mag = 0;
						for (int i = 0; i < IC; i++)
							mag += fabs((double)row[i] * x[(size_t)v * IC + i]);
						double e = fabs(y[v * OC + r] - yr[r]) / (mag * 1e-6 + 1e-30);
						if (e > worst) {
							worst = e;
							snprintf(where, sizeof where, "%s, IC %d, row %d: %.8g vs %.8g",
								 rl_dtypes[dt].name, IC, r, y[v * OC + r], yr[r]);
						}
					}
				}
				free(w);
				free(x);
				free(row);
				free(y);
				free(yr);
				free(yn);
				free(scratch);
				free(W);
			}
		CHECK(worst < 1, impl ? "gguf_dot_avx2_matches_dequantize" : "gguf_dot_portable_matches_dequantize",
		      "error %.3g of 1e-6 x sum|terms| at %s", worst, where);
		CHECK(batch_same, impl ? "gguf_dot_avx2_batch_invariant" : "gguf_dot_portable_batch_invariant",
		      "a vector's outputs changed with the others in its batch");
	}
	rl_qgemv_select(-1);
	float x[256] = { 0 }, y[4], scratch[256 + 17];
	unsigned char W[144] = { 0 };
	CHECK(rl_qgemv(RL_Q4_K, 1, 172, W, x, y, scratch) < 0 && strstr(rl_err(), "q4_K"), "gguf_dot_bad_row_refused",
	      "%s", rl_err());
}

static void fill_gguf_row(rl_dtype dt, int IC, int r, float *w)
{
	(void)dt;
	/* rows with an offset so the mins matter, and one of the fixture's kind */
	if (r == 0)
		fixture_input(11u + (uint32_t)IC, w, (size_t)IC);
	else
		for (int i = 0; i < IC; i++)
			w[i] = nrand() * 0.05f + (r % 3) * 0.02f;
}

/* 8-bit activations through ggml's formats (int8_check.h) */
static void test_dot8(void)
{
	static const int ics[] = { 256, 512, 1280 };
	int8_check("gguf_dot8", gguf, NGGUF, ics, 3, 29, fill_gguf_row, nrand);
}

/* q4_K's and q2_K's 8-bit activations against a scalar product written from
 * the definition (quant.h): per 256, amax = max|x|, s = 32 / amax; per 32,
 * m = min(32, max(1, ceil(max_b * s))), xi = rint(x * (s * (127 / m))), and x
 * stands for (amax / 4064) m xi where it meets the weights' q part (the
 * offsets multiply the exact x). Rows of three 256s whose scales differ (one
 * 32 a thousand times the rest, one all zero, one a single value, one 256 a
 * thousandth of the others), both kernels, to 2e-6 of the terms' magnitudes:
 * one xi off by one is about 1e-4 of them. Then a NaN in the last 256 makes
 * every output NaN. */
static void test_dot8_definition(void)
{
	enum { IC = 768, OC = 29 };
	static const rl_dtype kq[] = { RL_Q4_K, RL_Q2_K };
	double worst[2] = { 0, 0 };
	char where[2][160] = { "", "" };
	int nan_ok = 1, in_range = 1;
	float *w = malloc(IC * 4), *a = malloc(IC * 4), *x = malloc(IC * 4), *y = malloc(OC * 4);
	double *xh = malloc(IC * sizeof(double));
	float *scratch = malloc(rl_qgemv_scratch(IC, 1) * 4);
	for (int d = 0; d < 2; d++) {
		rl_dtype dt = kq[d];
		size_t rb = rl_row_bytes(dt, IC);
		unsigned char *W = malloc(OC * rb);
		for (int r = 0; r < OC; r++) {
			fill_gguf_row(dt, IC, r, w);
			rl_dtypes[dt].from_float(w, W + r * rb, IC);
		}
		unsigned char *A = int8_q_part(dt, OC, IC, W);
		int8_test_vector(x, IC, nrand);
		for (int i = 512; i < IC; i++)
			x[i] *= 1e-3f;
		for (int s0 = 0; s0 < IC; s0 += 256) {
			float amax = 0, bmax[8] = { 0 };
			for (int i = s0; i < s0 + 256; i++) {
				bmax[(i - s0) / 32] = fmaxf(bmax[(i - s0) / 32], fabsf(x[i]));
				amax = fmaxf(amax, fabsf(x[i]));
			}
			float s = 32.0f / amax, D = amax / 4064.0f;
			for (int i = s0; i < s0 + 256; i++) {
				float c = ceilf(bmax[(i - s0) / 32] * s);
				int m = c < 1 ? 1 : c > 32 ? 32 : (int)c;
				float xi = rintf(x[i] * (s * (127.0f / (float)m)));
				in_range = in_range && fabsf(xi) <= 127;
				xh[i] = (double)D * m * xi;
			}
		}
		for (int impl = 0; impl < 2; impl++) {
			rl_qgemv_select(impl);
			rl_qgemm_rows_act(dt, OC, IC, W, 1, x, IC, y, OC, scratch, RL_ACT_INT8);
			for (int r = 0; r < OC; r++) {
				rl_dtypes[dt].to_float(W + r * rb, w, IC);
				rl_dtypes[dt].to_float(A + r * rb, a, IC);
				double ref = 0, mag = 0;
				for (int i = 0; i < IC; i++) {
					ref += a[i] * xh[i] + ((double)w[i] - a[i]) * x[i];
					mag += fabs(a[i] * xh[i]) + fabs(((double)w[i] - a[i]) * x[i]);
				}
				double e = fabs(y[r] - ref) / (2e-6 * mag + 1e-30);
				if (!(e <= worst[impl])) {
					worst[impl] = isnan(e) ? INFINITY : e;
					snprintf(where[impl], sizeof where[impl], "%s, row %d: %.8g vs %.8g", rl_dtypes[dt].name, r,
						 y[r], ref);
				}
			}
			float keep = x[700];
			x[700] = NAN;
			rl_qgemm_rows_act(dt, OC, IC, W, 1, x, IC, y, OC, scratch, RL_ACT_INT8);
			for (int r = 0; r < OC; r++)
				nan_ok = nan_ok && isnan(y[r]);
			x[700] = keep;
		}
		free(A);
		free(W);
	}
	rl_qgemv_select(-1);
	CHECK(worst[0] <= 1, "gguf_dot8_portable_matches_definition", "error %.3g of 2e-6 x the terms at %s", worst[0],
	      where[0]);
	CHECK(worst[1] <= 1, "gguf_dot8_avx2_matches_definition", "error %.3g of 2e-6 x the terms at %s", worst[1], where[1]);
	CHECK(in_range, "gguf_dot8_definition_in_range", "an xi of the definition beyond 127");
	CHECK(nan_ok, "gguf_dot8_nan_in_a_later_256", "an output of a row whose third 256 holds a NaN is not NaN");
	free(w);
	free(a);
	free(x);
	free(y);
	free(xh);
	free(scratch);
}

static void test_errors(void)
{
	enum { R = 4, C = 256 };
	float *w = malloc(R * C * sizeof(float));
	for (int i = 0; i < R * C; i++)
		w[i] = nrand();
	rl_tensor t = { .name = "blk.1.ffn_gate.weight", .dtype = RL_F32, .ndim = 2, .shape = { R, C }, .data = w,
			.bytes = R * C * 4 };
	void *q = NULL;
	size_t bytes;
	rl_quant_stats st;
	w[2 * C + 9] = NAN;
	int rc = rl_quantize_tensor(&t, RL_Q2_K, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	CHECK(rc < 0 && strstr(rl_err(), "blk.1.ffn_gate.weight") && strstr(rl_err(), "row 2"), "gguf_nonfinite_names_row",
	      "rc %d: %s", rc, rl_err());
	/* a block scale beyond f16's range: ggml would store inf; we refuse, naming the row */
	w[2 * C + 9] = 1e9f;
	rc = rl_quantize_tensor(&t, RL_Q4_K, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	CHECK(rc < 0 && strstr(rl_err(), "row 2") && strstr(rl_err(), "f16"), "gguf_scale_overflow_names_row",
	      "rc %d: %s", rc, rl_err());
	w[2 * C + 9] = 0;
	rc = rl_quantize_tensor(&t, RL_Q4_K, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	/* on gaussian weights: q4_K's error is near what 4.5 bits give (SQNR about 20 dB) */
	CHECK(rc == 0 && st.sqnr_db > 17 && st.sqnr_db < 30, "gguf_q4_K_sqnr", "rc %d, SQNR %.2f dB", rc, st.sqnr_db);
	free(q);
	t.shape[1] = 172;
	t.shape[0] = 2;
	rc = rl_quantize_tensor(&t, RL_Q4_K, RL_QUANT_RTN, NULL, &q, &bytes, &st);
	CHECK(rc < 0 && strstr(rl_err(), "172") && strstr(rl_err(), "q4_K"), "gguf_tensor_bad_row", "rc %d: %s", rc,
	      rl_err());
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
	rl_policy *p = rl_policy_parse("q4_K;ffn_gate,ffn_up=q2_K;attn_v=q8_0;attn_output=q4_0");
	CHECK(p && dtype_of(p, "blk.0.ffn_gate.weight", 2, 512) == RL_Q2_K &&
	      dtype_of(p, "blk.0.ffn_up.weight", 2, 512) == RL_Q2_K &&
	      dtype_of(p, "blk.0.ffn_down.weight", 2, 768) == RL_Q4_K && dtype_of(p, "blk.1.attn_v.weight", 2, 512) == RL_Q8_0 &&
	      dtype_of(p, "blk.1.attn_output.weight", 2, 512) == RL_Q4_0 &&
	      dtype_of(p, "token_embd.weight", 2, 512) == RL_Q8G32 && dtype_of(p, "blk.0.attn_norm.weight", 1, 512) == RL_F32,
	      "gguf_policy", "%s", p ? "a tensor got the wrong format" : rl_err());
	CHECK(p && dtype_of(p, "blk.0.ffn_gate.weight", 2, 172) == RL_NDTYPES &&
	      strstr(rl_err(), "blk.0.ffn_gate.weight: row length 172 is not a multiple of 256 (q2_K); use q2g32"),
	      "gguf_policy_row_hint", "%s", rl_err());
	CHECK(p && dtype_of(p, "blk.0.attn_v.weight", 2, 48) == RL_NDTYPES &&
	      strstr(rl_err(), "row length 48 is not a multiple of 32 (q8_0); use q8g32"), "gguf_policy_row_hint_q8_0",
	      "%s", rl_err());
	rl_policy_free(p);
	p = rl_policy_parse("q4_k");
	CHECK(!p && strstr(rl_err(), "unknown format \"q4_k\""), "gguf_policy_names_case_sensitive", "%s",
	      p ? "accepted" : rl_err());
	rl_policy_free(p);
	CHECK(strstr(rl_policy_help(), "q4_K") && strstr(rl_policy_help(), "q2_K") && strstr(rl_policy_help(), "q8_0"),
	      "gguf_policy_help", "qpack -p help does not list ggml's formats");
}

int main(void)
{
	test_traits();
	test_fixture();
	test_dot();
	test_dot8();
	test_dot8_definition();
	test_errors();
	test_policy();
	return t_done();
}
