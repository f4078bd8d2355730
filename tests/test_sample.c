/* test_sample: the random streams, top-k, the sampler's frequencies against the
 * distribution it should draw from, and teacher-gen's recorded logits against
 * the batched forward pass (the reference path) over the same tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "model.h"
#include "sample.h"
#include "stream.h"
#include "t.h"

static void test_rng(void)
{
	rl_rng a, b, c;
	rl_rng_seed(&a, 7, 3);
	rl_rng_seed(&b, 7, 3);
	rl_rng_seed(&c, 7, 4);
	int same = 1, differ = 0;
	double mean = 0;
	for (int i = 0; i < 100000; i++) {
		uint64_t x = rl_rng_next(&a), y = rl_rng_next(&b), z = rl_rng_next(&c);
		same &= x == y;
		differ += x != z;
		mean += (double)(x >> 11) * 0x1.0p-53;
	}
	mean /= 100000;
	CHECK(same && differ > 99990 && fabs(mean - 0.5) < 0.005, "rng_per_sample_streams",
	      "same %d, differ %d, mean %g", same, differ, mean);
}

static void test_topk(void)
{
	float z[10] = { 0.5f, 2.0f, -1.0f, 2.0f, 3.0f, 0.5f, 2.0f, -5.0f, 1.0f, 3.0f };
	int ids[10];
	float v[10];
	rl_topk(z, 10, 5, ids, v, NULL);
	/* 3 (ids 4, 9), then 2 (ids 1, 3, 6): ties to the lower id */
	int want[5] = { 4, 9, 1, 3, 6 };
	CHECK(memcmp(ids, want, sizeof want) == 0 && v[0] == 3.0f && v[4] == 2.0f, "topk_sorted_ties_lower_id",
	      "got %d %d %d %d %d", ids[0], ids[1], ids[2], ids[3], ids[4]);
	rl_topk(z, 10, 10, ids, v, NULL);
	int ok = 1;
	for (int i = 1; i < 10; i++)
		ok &= v[i - 1] > v[i] || (v[i - 1] == v[i] && ids[i - 1] < ids[i]);
	CHECK(ok && ids[9] == 7, "topk_full_vocabulary", "not a total order");
}

/* The selection with scratch (block maxima, then a select and a sort) gives
 * exactly the heap's answer: many sizes, few distinct values (ties), -0 and +0,
 * sorted and reversed inputs. And logsumexp against a double-precision sum. */
static void test_topk_scratch(void)
{
	static const int Vs[] = { 1, 2, 7, 8, 9, 63, 64, 65, 300, 512, 1000, 20011 };
	uint64_t state = 12345;
	int bad = 0;
	char why[160] = "";
	double worst = 0;
	for (size_t vi = 0; vi < sizeof Vs / sizeof *Vs; vi++) {
		int V = Vs[vi];
		float *z = malloc((size_t)V * sizeof(float)), *v1 = malloc((size_t)V * sizeof(float));
		float *v2 = malloc((size_t)V * sizeof(float));
		int *i1 = malloc((size_t)V * sizeof(int)), *i2 = malloc((size_t)V * sizeof(int));
		uint64_t *scratch = malloc((size_t)V * sizeof(uint64_t));
		for (int kind = 0; kind < 5; kind++) {
			for (int i = 0; i < V; i++) {
				double u = (double)(rl_splitmix64(&state) >> 11) * 0x1.0p-53;
				z[i] = kind == 0   ? (float)(u * 20 - 10)
				       : kind == 1 ? (float)(int)(u * 5) - 2.0f     /* five values, many ties */
				       : kind == 2 ? (u < 0.5 ? -0.0f : 0.0f)        /* signed zeros only */
				       : kind == 3 ? (float)i * 0.25f                /* ascending */
						   : (float)(V - i) * 0.25f;         /* descending */
			}
			int ks[] = { 1, 2, 5, 64, V / 2, V - 1, V };
			for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
				int k = ks[ki];
				if (k < 1 || k > V)
					continue;
				rl_topk(z, V, k, i1, v1, NULL);
				rl_topk(z, V, k, i2, v2, scratch);
				if ((memcmp(i1, i2, (size_t)k * sizeof(int)) || memcmp(v1, v2, (size_t)k * sizeof(float))) && !bad++)
					snprintf(why, sizeof why, "V %d, k %d, values of kind %d", V, k, kind);
			}
			if (kind == 0)
				for (int sc = 0; sc < 2; sc++) {
					float scale = sc ? 0.5f : 1.0f;
					double mx = -INFINITY, sum = 0;
					for (int i = 0; i < V; i++)
						mx = fmax(mx, (double)z[i] * scale);
					for (int i = 0; i < V; i++)
						sum += exp((double)z[i] * scale - mx);
					double ref = mx + log(sum), e = fabs(rl_logsumexp_scaled(z, V, scale) - ref) / fmax(fabs(ref), 1);
					worst = fmax(worst, e);
				}
		}
		free(z);
		free(v1);
		free(v2);
		free(i1);
		free(i2);
		free(scratch);
	}
	CHECK(bad == 0, "topk_scratch_equals_heap", "the two selections differ at %s", why);
	CHECK(worst < 1e-6, "logsumexp_matches_double", "relative error %.3g", worst);
}

/* Draws 400,000 tokens and compares the frequencies with the distribution the
 * settings define, computed here independently; tolerance 0.004 absolute (about
 * five standard deviations at p = 0.3). */
static void frequency_case(const char *name, float temp, int top_k, float top_p, int ban)
{
	float z[6] = { 1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.7f };
	enum { V = 6, DRAWS = 400000 };
	/* expected: order by logit, keep top_k, then the smallest prefix reaching top_p */
	int order[V] = { 1, 3, 5, 0, 2, 4 };
	double p[V] = { 0 }, total = 0;
	int keep = top_k > 0 ? top_k : V, m = 0;
	int cand[V];
	for (int i = 0; i < V && m < keep + (ban >= 0); i++)
		if (order[i] != ban && m < keep)
			cand[m++] = order[i];
	for (int i = 0; i < m; i++)
		total += exp(z[cand[i]] / temp);
	int nk = m;
	if (top_p < 1) {
		double cum = 0;
		for (int i = 0; i < m; i++) {
			cum += exp(z[cand[i]] / temp) / total;
			if (cum >= top_p) {
				nk = i + 1;
				break;
			}
		}
	}
	total = 0;
	for (int i = 0; i < nk; i++)
		total += exp(z[cand[i]] / temp);
	for (int i = 0; i < nk; i++)
		p[cand[i]] = exp(z[cand[i]] / temp) / total;
	rl_rng r;
	rl_rng_seed(&r, 42, 0);
	rl_sampler sp = { temp, top_k, top_p, ban };
	int is[V];
	float fs[V];
	long count[V] = { 0 };
	for (int i = 0; i < DRAWS; i++)
		count[rl_sample(z, V, &sp, &r, is, fs)]++;
	double worst = 0;
	for (int i = 0; i < V; i++) {
		double d = fabs((double)count[i] / DRAWS - p[i]);
		worst = d > worst ? d : worst;
	}
	CHECK(worst < 0.004, name, "largest frequency error %.4f", worst);
}

static void test_sampler(void)
{
	frequency_case("sampler_frequencies_plain", 1.0f, 0, 1.0f, -1);
	frequency_case("sampler_frequencies_temperature", 0.6f, 0, 1.0f, -1);
	frequency_case("sampler_frequencies_top_k", 1.3f, 3, 1.0f, -1);
	frequency_case("sampler_frequencies_top_p", 1.0f, 0, 0.8f, -1);
	frequency_case("sampler_frequencies_banned_token", 1.0f, 0, 1.0f, 1);
	float z[4] = { 0.1f, 0.9f, 0.9f, -2.0f };
	rl_rng r;
	rl_rng_seed(&r, 1, 1);
	rl_sampler g = { 0, 0, 1, -1 }, gb = { 0, 0, 1, 1 };
	int is[4];
	float fs[4];
	CHECK(rl_sample(z, 4, &g, &r, is, fs) == 1 && rl_sample(z, 4, &gb, &r, is, fs) == 2, "sampler_greedy",
	      "argmax with ties to the lower id, skipping a banned token");
}

static double logsumexp_double(const float *z, int V, double scale)
{
	double mx = -INFINITY, s = 0;
	for (int i = 0; i < V; i++)
		mx = fmax(mx, z[i] * scale);
	for (int i = 0; i < V; i++)
		s += exp(z[i] * scale - mx);
	return mx + log(s);
}

/* Every recorded row against the batched forward pass over the sample's tokens. */
static void test_recorded_logits(void)
{
	char model[4096];
	snprintf(model, sizeof model, "%s/models/stories260K/stories260K.bin",
		 getenv("SHARED") ? getenv("SHARED") : "../shared");
	if (access("bin/teacher-gen", X_OK) || access(model, R_OK)) {
		t_skip("recorded_logits_equal_forward", "bin/teacher-gen or ../shared's stories260K is missing");
		return;
	}
	char path[] = "/tmp/rltest_samplesXXXXXX", cmd[4700];
	int fd = mkstemp(path);
	close(fd);
	snprintf(cmd, sizeof cmd, "bin/teacher-gen -n 6 -b 4 -k 16 --logits f32 --kd-temp 2 --max-len 40 --seed 5 -o %s %s 2>/dev/null",
		 path, model);
	int rc = system(cmd);
	rl_model m;
	rl_reader *r = rc == 0 ? rl_reader_open(path) : NULL;
	if (!r || rl_model_load(model, NULL, &m)) {
		CHECK(0, "recorded_logits_equal_forward", "teacher-gen exited %d: %s", rc, rl_err());
		unlink(path);
		return;
	}
	int V = m.cfg.vocab_size, nsamples = 0, bad = 0, got;
	double worst = 0, worst_lse = 0;
	char why[200] = "";
	rl_forward *f = rl_forward_new(&m, 64, 64);
	float *lg = malloc((size_t)64 * V * sizeof(float));
	rl_msg msg;
	while ((got = rl_read(r, &msg)) == 1) {
		if (msg.type != RL_MSG_SAMPLE)
			continue;
		const rl_sample_msg *s = &msg.sample;
		int T = (int)s->ntokens, P = (int)s->prompt_len, k = (int)rl_reader_samples(r)->topk;
		int toks[64];
		for (int i = 0; i < T; i++) /* unaligned in the message: see stream.h */
			memcpy(&toks[i], (const char *)s->tokens + 4 * (size_t)i, 4);
		rl_seq q = { .ntok = T - 1, .tokens = toks };
		if (rl_forward_run(f, NULL, 1, &q, lg)) {
			bad++;
			break;
		}
		for (int j = 0; j < T - P; j++) {
			const float *z = lg + (size_t)(P - 1 + j) * V;
			float mx = 0;
			for (int i = 0; i < V; i++)
				mx = fabsf(z[i]) > mx ? fabsf(z[i]) : mx;
			for (int i = 0; i < k; i++) {
				int32_t id;
				float v;
				memcpy(&id, (const char *)s->topk_ids + ((size_t)j * k + i) * 4, 4);
				memcpy(&v, (const char *)s->topk_logits + ((size_t)j * k + i) * 4, 4);
				double e = fabs(v - z[id]) / mx;
				if (e > worst)
					worst = e;
				/* the recorded ids are the top-k of the forward's logits (up to near-ties) */
				if (i == 0) {
					int am = 0;
					for (int t = 1; t < V; t++)
						am = z[t] > z[am] ? t : am;
					if (z[am] - z[id] > 1e-4f * mx && !bad++)
						snprintf(why, sizeof why, "sample %llu row %d: top id %d, forward's argmax %d",
							 (unsigned long long)s->id, j, id, am);
				}
			}
			float lse, lt;
			memcpy(&lse, (const char *)s->logsumexp + (size_t)j * 4, 4);
			memcpy(&lt, (const char *)s->logsumexp_tau + (size_t)j * 4, 4);
			double e1 = fabs(lse - logsumexp_double(z, V, 1.0)) / fabs(lse);
			double e2 = fabs(lt - logsumexp_double(z, V, 0.5)) / fabs(lt);
			worst_lse = fmax(worst_lse, fmax(e1, e2));
		}
		nsamples++;
	}
	CHECK(got == 0 && nsamples == 6 && !bad && worst <= 1e-4 && worst_lse <= 1e-5, "recorded_logits_equal_forward",
	      "%d samples, read %d, logit error %.3g, logsumexp error %.3g %s", nsamples, got, worst, worst_lse, why);
	free(lg);
	rl_forward_free(f);
	rl_reader_close(r);
	rl_model_free(&m);
	unlink(path);
}

int main(void)
{
	test_rng();
	test_topk();
	test_topk_scratch();
	test_sampler();
	test_recorded_logits();
	return t_done();
}
