/* tsdump: prints a tstream as JSON lines, one per message. */
#include <err.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "model.h"
#include "sha256.h"
#include "tool.h"

static int show_data, show_text;
static rl_tokenizer *text_tok; /* for --text on sample streams */

static void usage(FILE *f)
{
	fprintf(f, "usage: tsdump [--data] [--text] [--model MODEL] [FILE...]\n"
		   "Prints each message of each stream (stdin when no FILE) as a line of JSON.\n");
}

static void print_number(double v)
{
	if (isfinite(v))
		printf("%.9g", v);
	else
		printf("null");
}

static void print_object(const msgpack_object *o);

static void print_bin_summary(const void *p, size_t len)
{
	char hex[65];
	rl_sha256_hex_of(p, len, hex);
	printf("{\"bytes\":%zu,\"sha256\":\"%s\"}", len, hex);
}

static void print_object(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: printf("null"); break;
	case MSGPACK_OBJECT_BOOLEAN: printf(o->via.boolean ? "true" : "false"); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: printf("%llu", (unsigned long long)o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: printf("%lld", (long long)o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: print_number(o->via.f64); break;
	case MSGPACK_OBJECT_STR: rl_json_write_string(stdout, o->via.str.ptr, o->via.str.size); break;
	case MSGPACK_OBJECT_BIN: print_bin_summary(o->via.bin.ptr, o->via.bin.size); break;
	case MSGPACK_OBJECT_ARRAY:
		putchar('[');
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				putchar(',');
			print_object(&o->via.array.ptr[i]);
		}
		putchar(']');
		break;
	case MSGPACK_OBJECT_MAP:
		putchar('{');
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				putchar(',');
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type == MSGPACK_OBJECT_STR)
				print_object(k);
			else
				printf("\"?\"");
			putchar(':');
			print_object(&o->via.map.ptr[i].val);
		}
		putchar('}');
		break;
	default: printf("null"); break;
	}
}

/* values of n elements of any dtype, rows of row_elems, as an array or a summary */
static void print_values(const void *p, size_t len, rl_dtype dt, size_t n, size_t row_elems)
{
	float *v = malloc((n ? n : 1) * sizeof(float));
	if (!v)
		errx(1, "out of memory");
	size_t rb = rl_row_bytes(dt, row_elems);
	for (size_t r = 0; r * row_elems < n; r++) /* group formats restart their groups at each row */
		rl_dtypes[dt].to_float((const char *)p + r * rb, v + r * row_elems, row_elems);
	if (show_data) {
		putchar('[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				putchar(',');
			print_number(v[i]);
		}
		putchar(']');
	} else {
		double mn = INFINITY, mx = -INFINITY, sum = 0;
		size_t nonfinite = 0;
		for (size_t i = 0; i < n; i++) {
			if (!isfinite(v[i])) {
				nonfinite++;
				continue;
			}
			mn = v[i] < mn ? v[i] : mn;
			mx = v[i] > mx ? v[i] : mx;
			sum += v[i];
		}
		char hex[65];
		rl_sha256_hex_of(p, len, hex);
		printf("{\"bytes\":%zu,\"min\":", len);
		print_number(mn);
		printf(",\"max\":");
		print_number(mx);
		printf(",\"mean\":");
		print_number(n > nonfinite ? sum / (double)(n - nonfinite) : NAN);
		if (nonfinite)
			printf(",\"nonfinite\":%zu", nonfinite);
		printf(",\"sha256\":\"%s\"}", hex);
	}
	free(v);
}

static void print_ids(const void *p, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		int32_t v;
		memcpy(&v, (const char *)p + 4 * i, 4);
		printf(i ? ",%d" : "%d", v);
	}
	putchar(']');
}

static void print_text(const void *p, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int prev = -1;
	for (size_t i = 0; i < n; i++) {
		int32_t t;
		memcpy(&t, (const char *)p + 4 * i, 4);
		size_t plen;
		const char *piece = rl_decode_piece(text_tok, prev, t, &plen);
		/* BOS and EOS stay in "tokens"; the text is the document */
		if (piece && t != text_tok->bos_id && t != text_tok->eos_id)
			fwrite(piece, 1, plen, mem);
		prev = t;
	}
	fclose(mem);
	rl_json_write_string(stdout, buf, len);
	free(buf);
}

/* the message's other fields, skipping those already printed */
static void print_rest(const msgpack_object *map, const char *const *skip)
{
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		int skipped = 0;
		for (int j = 0; skip[j]; j++)
			if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(skip[j]) &&
			    memcmp(k->via.str.ptr, skip[j], k->via.str.size) == 0)
				skipped = 1;
		if (skipped)
			continue;
		putchar(',');
		print_object(k);
		putchar(':');
		print_object(&map->via.map.ptr[i].val);
	}
}

static void print_tensor(const rl_msg *m)
{
	static const char *const skip[] = { "t", "data", NULL };
	printf("{\"t\":\"tensor\"");
	print_rest(m->map, skip);
	printf(",\"data\":");
	const rl_tensor_msg *t = &m->tensor;
	size_t row = 1;
	for (int i = 1; i < t->ndim; i++)
		row *= t->shape[i];
	print_values(t->data, t->nrows * t->row_bytes, t->dtype, t->nrows * row, row);
	printf("}\n");
}

static void print_sample(const rl_msg *m, const rl_samples_info *info)
{
	static const char *const skip[] = { "t", "tokens", "topk_ids", "topk_logits", "logsumexp", "logsumexp_tau", NULL };
	const rl_sample_msg *s = &m->sample;
	size_t rows = s->ntokens - s->prompt_len, k = info->topk;
	printf("{\"t\":\"sample\"");
	print_rest(m->map, skip);
	printf(",\"tokens\":");
	print_ids(s->tokens, s->ntokens);
	if (show_text && text_tok) {
		printf(",\"text\":");
		print_text(s->tokens, s->ntokens);
	}
	printf(",\"topk_ids\":");
	if (show_data)
		print_ids(s->topk_ids, rows * k);
	else
		print_bin_summary(s->topk_ids, rows * k * 4);
	printf(",\"topk_logits\":");
	size_t nl = rows * k;
	print_values(s->topk_logits, nl * rl_dtypes[info->logit_dtype].block_bytes, info->logit_dtype, nl, nl ? nl : 1);
	printf(",\"logsumexp\":");
	print_values(s->logsumexp, rows * 4, RL_F32, rows, rows ? rows : 1);
	if (s->logsumexp_tau) {
		printf(",\"logsumexp_tau\":");
		print_values(s->logsumexp_tau, rows * 4, RL_F32, rows, rows ? rows : 1);
	}
	printf("}\n");
}

static void print_tokenizer(const rl_msg *m)
{
	static const char *const skip[] = { "t", "pieces", NULL };
	printf("{\"t\":\"tokenizer\"");
	print_rest(m->map, skip);
	const msgpack_object *p = rl_mp_get(m->map, "pieces");
	printf(",\"pieces\":");
	if (show_text && p && p->type == MSGPACK_OBJECT_ARRAY) {
		putchar('[');
		for (uint32_t i = 0; i < p->via.array.size; i++) {
			const msgpack_object *e = &p->via.array.ptr[i];
			if (i)
				putchar(',');
			if (e->type == MSGPACK_OBJECT_BIN)
				rl_json_write_string(stdout, e->via.bin.ptr, e->via.bin.size);
			else
				printf("null");
		}
		putchar(']');
	} else if (p && p->type == MSGPACK_OBJECT_ARRAY) {
		printf("{\"count\":%u}", p->via.array.size);
	} else {
		printf("null");
	}
	printf("}\n");
}

static int dump(const char *path)
{
	rl_reader *r = rl_reader_open(path);
	if (!r) {
		warnx("%s", rl_err());
		return 1;
	}
	rl_msg m;
	int got;
	while ((got = rl_read(r, &m)) > 0) {
		if (m.type == RL_MSG_HEADER && show_text && strcmp(rl_reader_kind(r), "samples") == 0) {
			const rl_samples_info *info = rl_reader_samples(r);
			if (!text_tok) {
				warnx("%s: --text on a samples stream needs --model MODEL for the tokenizer", rl_reader_name(r));
				rl_reader_close(r);
				return 1;
			}
			if ((uint32_t)text_tok->vocab_size != info->vocab_size) {
				warnx("%s: the samples are over %u tokens but the --model tokenizer has %d: not the teacher's",
				      rl_reader_name(r), info->vocab_size, text_tok->vocab_size);
				rl_reader_close(r);
				return 1;
			}
		}
		if (m.type == RL_MSG_TENSOR)
			print_tensor(&m);
		else if (m.type == RL_MSG_SAMPLE)
			print_sample(&m, rl_reader_samples(r));
		else if (m.type == RL_MSG_TOKENIZER)
			print_tokenizer(&m);
		else {
			print_object(m.map);
			putchar('\n');
		}
	}
	if (got < 0) {
		fflush(stdout);
		warnx("%s", rl_err());
	}
	rl_reader_close(r);
	return got < 0;
}

int main(int argc, char **argv)
{
	/* no rl_tool_init(): like cat, tsdump | head ends quietly by SIGPIPE */
	const char *model = NULL;
	static const struct option longopts[] = {
		{ "data", no_argument, NULL, 'd' }, { "text", no_argument, NULL, 'x' },
		{ "model", required_argument, NULL, 'm' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': show_data = 1; break;
		case 'x': show_text = 1; break;
		case 'm': model = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	rl_model mdl;
	if (model) {
		if (rl_model_load(model, NULL, &mdl))
			errx(1, "%s", rl_err());
		text_tok = &mdl.tok;
	}
	int failed = 0;
	if (optind == argc)
		failed |= dump("-");
	for (int i = optind; i < argc; i++)
		failed |= dump(argv[i]);
	if (fflush(stdout) != 0 || ferror(stdout))
		err(1, "stdout");
	if (model)
		rl_model_free(&mdl);
	return failed;
}
