/* roofline: predicted decode and prefill tokens/s of a model stored under a
 * policy, on a device from a table, given figures, or this host measured, and
 * the speed-up over a baseline policy. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "model.h"
#include "policy.h"
#include "roofline.h"
#include "tool.h"

#define MAX_CTX 64

static void usage(FILE *f)
{
	fprintf(f,
		"usage: roofline --model CONFIG.json|HF-DIR|MODEL [--policy P] [--baseline P0]\n"
		"       [--hw NAME|custom:bw=GB/s,flops=TFLOP/s | --measure] [--ctx N,N,...] [--batch B]\n"
		"       [--lora RANK] [--kv f32|f16] [--json] [--svg FILE] [-t N]\n"
		"       roofline --hw list\n"
		"Per generated token: bytes moved, FLOPs, and decode and prefill tokens/s under a\n"
		"roofline, for policy P (default w4w2; a model stream: as stored) against P0 (default q4).\n");
}

typedef struct {
	int ctx, prompt;
	rl_roofline_step dec, pre;     /* policy */
	rl_roofline_step bdec, bpre;   /* baseline */
} row;

/* A JSON string: quotes and control characters escaped. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* XML text: & < > " escaped. */
static void xml_str(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

static const char *bound_name(rl_roofline_bound b)
{
	return b == RL_BOUND_MEMORY ? "memory" : b == RL_BOUND_COMPUTE ? "compute" : "kernel";
}

static double matrix_bytes(const rl_roofline_weights *w)
{
	double b = 0;
	for (int k = 0; k < RL_RC_N; k++)
		if (k != RL_RC_EMBD && k != RL_RC_ATTENTION)
			for (int dt = 0; dt < RL_NDTYPES; dt++)
				b += w->bytes[k][dt];
	return b;
}

static void json_step(FILE *f, const rl_roofline_step *s)
{
	fprintf(f, "{\"bytes_per_token\":%.10g,\"flops_per_token\":%.10g,\"intensity\":%.10g,\"tokens_per_s\":%.10g,\"classes\":{",
		s->bytes, s->flops, s->flops / s->bytes, s->tokens_per_s);
	for (int k = 0; k < RL_RC_N; k++) {
		const rl_roofline_cost *c = &s->cls[k];
		fprintf(f, "%s\"%s\":{\"bytes\":%.10g,\"flops\":%.10g,\"time_s\":%.10g,\"bound\":\"%s\"}", k ? "," : "",
			rl_roofline_class_names[k], c->bytes, c->flops, c->time, bound_name(c->bound));
	}
	fputs("}}", f);
}

/* ---- SVG: the roofline with each layer class on it, and speed-up against context ---- */

static double lx(double v, double lo, double hi, double x0, double w)
{
	return x0 + w * (log10(v) - log10(lo)) / (log10(hi) - log10(lo));
}

static int write_svg(const char *path, const rl_hw *hw, const char *pname, const char *bname, const row *rows,
		     int nrows)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp) {
		rl_seterr("%s: path too long", path);
		return -1;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		rl_seterr("%s: cannot create a temporary beside it", path);
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		rl_seterr("%s: cannot write", path);
		return -1;
	}
	const double W = 960, H = 420, px = 70, py = 40, pw = 380, ph = 300;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
		   "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
		W, H, W, H);
	/* left: attainable FLOP/s against FLOP/byte, log-log */
	double ridge = hw->flops / hw->bw;
	double xlo = 0.01, xhi = 1e4, yhi = hw->flops * 3, ylo = yhi / 1e7;
	fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"13\">Roofline: ", px);
	xml_str(f, hw->name);
	fprintf(f, " (%.4g GB/s, %.4g TFLOP/s), context %d</text>\n", hw->bw / 1e9, hw->flops / 1e12, rows[0].ctx);
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", px, py,
		pw, ph);
	for (int e = -2; e <= 4; e++) {
		double x = lx(pow(10, e), xlo, xhi, px, pw);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">1e%d</text>\n",
			x, py, x, py + ph, x, py + ph + 14, e);
	}
	for (int e = (int)ceil(log10(ylo)); e <= (int)floor(log10(yhi)); e++) {
		double y = py + ph - lx(pow(10, e), ylo, yhi, 0, ph);
		fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
			px, y, px + pw, y, px - 4, y + 4, e);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">arithmetic intensity (FLOP/byte)</text>\n",
		px + pw / 2, py + ph + 30);
	fprintf(f, "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" text-anchor=\"middle\">FLOP/s</text>\n",
		py + ph / 2, py + ph / 2);
	/* the roof: bandwidth x intensity up to the ridge, then the peak */
	double x0 = xlo, y0 = hw->bw * xlo;
	double xr = ridge < xhi ? ridge : xhi;
	fprintf(f, "<polyline fill=\"none\" stroke=\"black\" stroke-width=\"2\" points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\"/>\n",
		lx(x0, xlo, xhi, px, pw), py + ph - lx(y0 > ylo ? y0 : ylo, ylo, yhi, 0, ph), lx(xr, xlo, xhi, px, pw),
		py + ph - lx(hw->bw * xr, ylo, yhi, 0, ph), px + pw, py + ph - lx(hw->flops, ylo, yhi, 0, ph));
	static const char *colour[RL_RC_N] = { "#888", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b" };
	for (int pass = 0; pass < 2; pass++) {
		const rl_roofline_step *s = pass ? &rows[0].bdec : &rows[0].dec;
		for (int k = 0; k < RL_RC_N; k++) {
			const rl_roofline_cost *c = &s->cls[k];
			if (c->flops <= 0 || c->bytes <= 0 || c->time <= 0)
				continue;
			double ai = c->flops / c->bytes, perf = c->flops / c->time;
			if (ai < xlo || ai > xhi || perf < ylo || perf > yhi)
				continue;
			double cx = lx(ai, xlo, xhi, px, pw), cy = py + ph - lx(perf, ylo, yhi, 0, ph);
			if (pass)
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" stroke=\"%s\"/>\n", cx, cy, colour[k]);
			else
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" fill-opacity=\"0.7\"/>\n", cx, cy,
					colour[k]);
		}
	}
	/* the legend, bottom right of the chart: classes that share a point stay readable */
	for (int k = 0, i = 0; k < RL_RC_N; k++) {
		const rl_roofline_cost *c = &rows[0].dec.cls[k];
		if (c->flops <= 0 || c->bytes <= 0 || c->time <= 0)
			continue;
		double y = py + ph - 12 - 14 * i++;
		fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"%s\"/>"
			   "<text x=\"%.0f\" y=\"%.0f\">%s %.3g FLOP/B</text>\n",
			px + pw - 150, y - 4, colour[k], px + pw - 142, y, rl_roofline_class_names[k], c->flops / c->bytes);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">filled: ", px, py + ph + 48);
	xml_str(f, pname);
	fputs("; hollow: ", f);
	xml_str(f, bname);
	fputs(" (decode, one token)</text>\n", f);
	/* right: speed-up of the policy over the baseline against context */
	double qx = 560, qw = 360;
	int cmax = rows[nrows - 1].ctx > 0 ? rows[nrows - 1].ctx : 1;
	double smin = 0, smax = 0;
	for (int i = 0; i < nrows; i++) {
		double sp = 100 * (rows[i].dec.tokens_per_s / rows[i].bdec.tokens_per_s - 1);
		smin = sp < smin ? sp : smin;
		smax = sp > smax ? sp : smax;
	}
	smax = smax <= smin ? smin + 1 : smax * 1.15;
	fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"13\">Decode speed-up of ", qx);
	xml_str(f, pname);
	fputs(" over ", f);
	xml_str(f, bname);
	fputs("</text>\n", f);
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", qx, py,
		qw, ph);
	for (int t = 0; t <= 4; t++) {
		double v = smin + (smax - smin) * t / 4, y = py + ph - ph * t / 4;
		fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.1f%%</text>\n",
			qx, y, qx + qw, y, qx - 4, y + 4, v);
		double c = (double)cmax * t / 4;
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.0f</text>\n", qx + qw * t / 4, py + ph + 14, c);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">context (tokens in the KV cache)</text>\n",
		qx + qw / 2, py + ph + 30);
	fputs("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"", f);
	for (int i = 0; i < nrows; i++) {
		double sp = 100 * (rows[i].dec.tokens_per_s / rows[i].bdec.tokens_per_s - 1);
		fprintf(f, "%s%.1f,%.1f", i ? " " : "", qx + qw * rows[i].ctx / cmax,
			py + ph - ph * (sp - smin) / (smax - smin));
	}
	fputs("\"/>\n", f);
	for (int i = 0; i < nrows; i++) {
		double sp = 100 * (rows[i].dec.tokens_per_s / rows[i].bdec.tokens_per_s - 1);
		double x = qx + qw * rows[i].ctx / cmax, y = py + ph - ph * (sp - smin) / (smax - smin);
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f%%</text>\n",
			x, y, x, y - 7, sp);
	}
	fputs("</svg>\n", f);
	int bad = ferror(f);
	if (fclose(f) || bad || rename(tmp, path)) {
		unlink(tmp);
		rl_seterr("%s: write failed", path);
		return -1;
	}
	return 0;
}

/* A non-negative integer no larger than max, or -1. */
static long parse_count(const char *s, long max)
{
	char *end;
	if (!*s || *s == '-' || *s == '+')
		return -1;
	long v = strtol(s, &end, 10);
	return *end || v < 0 || v > max ? -1 : v;
}

/* The model's layout (shapes, stored dtypes) from a config.json, an HF
 * directory (its config.json) or a model stream. */
static void load_model(const char *arg, rl_model *m, int *is_config)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s", arg);
	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(path, sizeof path, "%s/config.json", arg);
	FILE *f = fopen(path, "rb");
	if (!f)
		err(1, "%s", path);
	int ch;
	while ((ch = fgetc(f)) == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
		;
	fclose(f);
	*is_config = ch == '{';
	if (*is_config) {
		memset(m, 0, sizeof *m);
		if (rl_config_from_json(path, &m->cfg, m->arch) || rl_model_layout(m))
			errx(1, "%s", rl_err());
		snprintf(m->origin, sizeof m->origin, "%.500s", path);
		return;
	}
	if (rl_model_load(arg, NULL, m))
		errx(1, "%s", rl_err());
}

int main(int argc, char **argv)
{
	rl_tool_init();
	const char *model_arg = NULL, *policy_spec = NULL, *baseline_spec = "q4", *hw_spec = NULL, *svg = NULL;
	const char *ctx_spec = "0,4096,32768", *kv_spec = "f32";
	int batch = 1, lora = 0, json = 0, measure = 0, threads = 0;
	static const struct option longopts[] = {
		{ "model", required_argument, NULL, 'm' }, { "policy", required_argument, NULL, 'p' },
		{ "baseline", required_argument, NULL, 'b' }, { "hw", required_argument, NULL, 'w' },
		{ "ctx", required_argument, NULL, 'c' }, { "batch", required_argument, NULL, 'B' },
		{ "lora", required_argument, NULL, 'r' }, { "json", no_argument, NULL, 'j' },
		{ "svg", required_argument, NULL, 's' }, { "measure", no_argument, NULL, 'M' },
		{ "kv", required_argument, NULL, 'k' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	long v;
	while ((c = getopt_long(argc, argv, "m:p:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': model_arg = optarg; break;
		case 'p': policy_spec = optarg; break;
		case 'b': baseline_spec = optarg; break;
		case 'w': hw_spec = optarg; break;
		case 'c': ctx_spec = optarg; break;
		case 'B':
			if ((v = parse_count(optarg, 65536)) < 1)
				errx(2, "--batch %s: not a batch size from 1 to 65536", optarg);
			batch = (int)v;
			break;
		case 'r':
			if ((v = parse_count(optarg, 65536)) < 0)
				errx(2, "--lora %s: not a rank from 0 to 65536", optarg);
			lora = (int)v;
			break;
		case 'j': json = 1; break;
		case 's': svg = optarg; break;
		case 'M': measure = 1; break;
		case 'k': kv_spec = optarg; break;
		case 't':
			if ((threads = rl_parse_threads(optarg)) < 0)
				errx(2, "-t %s: not a thread count from 1 to 1024", optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (hw_spec && strcmp(hw_spec, "list") == 0) {
		for (int i = 0; i < rl_hw_count; i++)
			printf("%-10s %8.1f GB/s %8.2f TFLOP/s  %s\n", rl_hw_table[i].name, rl_hw_table[i].bw / 1e9,
			       rl_hw_table[i].flops / 1e12, rl_hw_table[i].about);
		return 0;
	}
	if (!model_arg || optind != argc || (measure && hw_spec)) {
		usage(stderr);
		return 2;
	}
	int kv_bytes = strcmp(kv_spec, "f32") == 0 ? 4 : strcmp(kv_spec, "f16") == 0 ? 2 : 0;
	if (!kv_bytes)
		errx(2, "--kv %s: not f32 or f16", kv_spec);
	/* contexts: ascending, non-negative */
	row rows[MAX_CTX];
	int nrows = 0;
	{
		char buf[1024];
		if (snprintf(buf, sizeof buf, "%s", ctx_spec) >= (int)sizeof buf)
			errx(2, "--ctx: list too long");
		char *save = NULL;
		for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if ((v = parse_count(tok, 1 << 24)) < 0)
				errx(2, "--ctx %s: \"%s\" is not a context from 0 to 16777216", ctx_spec, tok);
			if (nrows == MAX_CTX)
				errx(2, "--ctx %s: more than %d contexts", ctx_spec, MAX_CTX);
			if (nrows && v <= rows[nrows - 1].ctx)
				errx(2, "--ctx %s: contexts must ascend", ctx_spec);
			memset(&rows[nrows], 0, sizeof rows[nrows]);
			rows[nrows++].ctx = (int)v;
		}
		if (!nrows)
			errx(2, "--ctx %s: no context", ctx_spec);
	}
	rl_policy *pol = NULL, *base = NULL;
	if (policy_spec && !(pol = rl_policy_parse(policy_spec)))
		errx(1, "--policy: %s", rl_err());
	if (!(base = rl_policy_parse(baseline_spec)))
		errx(1, "--baseline: %s", rl_err());

	rl_model m;
	int is_config;
	load_model(model_arg, &m, &is_config);
	if (!pol && is_config) {
		policy_spec = RL_POLICY_DEFAULT;
		if (!(pol = rl_policy_parse(policy_spec)))
			errx(1, "--policy: %s", rl_err());
	}
	const char *pname = policy_spec ? policy_spec : "as stored";
	rl_roofline_weights wp, wb;
	if (rl_roofline_tally(&m, pol, lora, kv_bytes, &wp))
		errx(1, "--policy %s: %s", pname, rl_err());
	if (rl_roofline_tally(&m, base, lora, kv_bytes, &wb))
		errx(1, "--baseline %s: %s", baseline_spec, rl_err());
	for (int i = 0; pol && rl_policy_unmatched(pol, i); i++)
		warnx("--policy %s: warning: \"%s\" matches no tensor of this model", pname, rl_policy_unmatched(pol, i));
	for (int i = 0; rl_policy_unmatched(base, i); i++)
		warnx("--baseline %s: warning: \"%s\" matches no tensor of this model", baseline_spec,
		      rl_policy_unmatched(base, i));
	for (int i = 0; i < nrows; i++)
		if (rows[i].ctx >= m.cfg.seq_len) {
			warnx("warning: context %d is beyond the model's %d positions", rows[i].ctx, m.cfg.seq_len);
			break;
		}

	rl_hw hw;
	if (measure) {
		const rl_roofline_weights *ws[2] = { &wp, &wb };
		rl_set_threads(threads);
		int n = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
		fprintf(stderr, "roofline: measuring this host with %d threads ...\n", n);
		if (rl_roofline_measure(&hw, n, (size_t)512 << 20, ws, 2))
			errx(1, "--measure: %s", rl_err());
	} else if (rl_hw_parse(hw_spec ? hw_spec : "m2", &hw)) {
		errx(1, "%s", rl_err());
	}
	for (int i = 0; i < nrows; i++) {
		row *r = &rows[i];
		r->prompt = r->ctx > 0 ? r->ctx : 512;
		if (rl_roofline_decode(&wp, &hw, r->ctx, batch, &r->dec) ||
		    rl_roofline_decode(&wb, &hw, r->ctx, batch, &r->bdec) ||
		    rl_roofline_prefill(&wp, &hw, r->prompt, &r->pre) || rl_roofline_prefill(&wb, &hw, r->prompt, &r->bpre))
			errx(1, "%s", rl_err());
	}
	if (svg && write_svg(svg, &hw, pname, baseline_spec, rows, nrows))
		errx(1, "--svg %s", rl_err());

	const rl_config *cf = &m.cfg;
	if (json) {
		printf("{\"model\":");
		json_str(stdout, m.origin);
		printf(",\"arch\":");
		json_str(stdout, m.arch);
		printf(",\"config\":{\"dim\":%d,\"hidden_dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
		       "\"head_dim\":%d,\"vocab_size\":%d,\"tied_embeddings\":%s},",
		       cf->dim, cf->hidden_dim, cf->n_layers, cf->n_heads, cf->n_kv_heads, cf->head_dim, cf->vocab_size,
		       cf->tied_embeddings ? "true" : "false");
		printf("\"hw\":{\"name\":");
		json_str(stdout, hw.name);
		printf(",\"bw_gb_s\":%.10g,\"tflops\":%.10g,\"measured\":%s", hw.bw / 1e9, hw.flops / 1e12,
		       hw.measured ? "true" : "false");
		if (hw.measured) {
			printf(",\"bw1_gb_s\":%.10g,\"kernels\":[", hw.bw1 / 1e9);
			for (int i = 0; i < hw.nkernels; i++) {
				const rl_kernel_time *k = &hw.kernels[i];
				printf("%s{\"format\":\"%s\",\"rows\":%d,\"row\":%d,\"seconds\":%.10g,\"weights_per_s\":%.10g}",
				       i ? "," : "", rl_dtypes[k->s.dt].name, k->s.oc, k->s.ic, k->seconds,
				       (double)k->s.oc * k->s.ic / k->seconds);
			}
			printf("]");
		}
		printf("},\"batch\":%d,\"lora_rank\":%d,\"kv\":\"%s\",\"policy\":", batch, lora, kv_spec);
		json_str(stdout, pname);
		printf(",\"baseline\":");
		json_str(stdout, baseline_spec);
		printf(",\"weight_bytes\":{\"policy\":%.10g,\"baseline\":%.10g},\"rows\":[", wp.stored_bytes, wb.stored_bytes);
		for (int i = 0; i < nrows; i++) {
			const row *r = &rows[i];
			printf("%s{\"ctx\":%d,\"speedup\":%.10g,\"decode\":{\"policy\":", i ? "," : "", r->ctx,
			       r->dec.tokens_per_s / r->bdec.tokens_per_s);
			json_step(stdout, &r->dec);
			printf(",\"baseline\":");
			json_step(stdout, &r->bdec);
			printf("},\"prefill\":{\"tokens\":%d,\"policy\":", r->prompt);
			json_step(stdout, &r->pre);
			printf(",\"baseline\":");
			json_step(stdout, &r->bpre);
			printf("}}");
		}
		printf("]}\n");
	} else {
		printf("model     %s: %s, %d layers, dim %d, ffn %d, %d/%d heads of %d, vocab %d%s\n", m.origin, m.arch,
		       cf->n_layers, cf->dim, cf->hidden_dim, cf->n_heads, cf->n_kv_heads, cf->head_dim, cf->vocab_size,
		       cf->tied_embeddings ? ", tied" : "");
		printf("hardware  %s: %.4g GB/s, %.4g TFLOP/s", hw.name, hw.bw / 1e9, hw.flops / 1e12);
		if (hw.measured) {
			printf(" (one thread %.4g GB/s); decode's products, Gweights/s:", hw.bw1 / 1e9);
			for (int i = 0; i < hw.nkernels; i++) {
				const rl_kernel_time *k = &hw.kernels[i];
				printf("%s %s %dx%d %.3g", i ? "," : "", rl_dtypes[k->s.dt].name, k->s.oc, k->s.ic,
				       (double)k->s.oc * k->s.ic / k->seconds / 1e9);
			}
		}
		printf("\nsetting   batch %d, KV cache %s, LoRA rank %d (f32, on the <4-bit matrices)\n", batch, kv_spec, lora);
		printf("policy    %-24s %8.1f MB stored, matrices %.3f GB\n", pname, wp.stored_bytes / 1e6,
		       matrix_bytes(&wp) / 1e9);
		printf("baseline  %-24s %8.1f MB stored, matrices %.3f GB\n\n", baseline_spec, wb.stored_bytes / 1e6,
		       matrix_bytes(&wb) / 1e9);
		printf("%8s  %10s %10s %7s %10s %10s  %10s %10s %10s  %8s\n", "", "policy", "", "", "", "", "baseline", "",
		       "", "");
		printf("%8s  %10s %10s %7s %10s %10s  %10s %10s %10s  %8s\n", "ctx", "MB/token", "GFLOP/tok", "FLOP/B",
		       "decode/s", "prefill/s", "MB/token", "decode/s", "prefill/s", "speed-up");
		for (int i = 0; i < nrows; i++) {
			const row *r = &rows[i];
			printf("%8d  %10.2f %10.3f %7.3g %10.4g %10.4g  %10.2f %10.4g %10.4g  %+7.1f%%\n", r->ctx,
			       r->dec.bytes / 1e6, r->dec.flops / 1e9, r->dec.flops / r->dec.bytes, r->dec.tokens_per_s,
			       r->pre.tokens_per_s, r->bdec.bytes / 1e6, r->bdec.tokens_per_s, r->bpre.tokens_per_s,
			       100 * (r->dec.tokens_per_s / r->bdec.tokens_per_s - 1));
		}
		printf("\nprefill/s: a prompt of ctx tokens (512 where ctx is 0)\n\n");
		printf("decode, policy %s, context %d, per token:\n", pname, rows[0].ctx);
		printf("  %-12s %10s %12s %9s %10s  %s\n", "class", "MB", "MFLOP", "FLOP/B", "ms", "bound");
		for (int k = 0; k < RL_RC_N; k++) {
			const rl_roofline_cost *cc = &rows[0].dec.cls[k];
			if (cc->bytes <= 0)
				continue;
			printf("  %-12s %10.3f %12.3f %9.3g %10.4f  %s\n", rl_roofline_class_names[k], cc->bytes / 1e6,
			       cc->flops / 1e6, cc->flops / cc->bytes, cc->time * 1e3, bound_name(cc->bound));
		}
	}
	if (fflush(stdout) || ferror(stdout))
		errx(1, "<stdout>: write failed");
	rl_policy_free(pol);
	rl_policy_free(base);
	rl_model_free(&m);
	return 0;
}
