/* json.c: a strict RFC 8259 reader, the JSON string writer, and whole-file
 * reading (see json.h).
 *
 * The input is len bytes that need not end in a NUL, and may be hostile (a
 * downloaded config.json, a jsonl task): every read is checked against the
 * end, nesting is bounded so recursion cannot overflow the stack, and a
 * failed parse frees everything it built. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"

/* Deep enough for any config or task file; shallow enough that the recursion
 * (a few hundred bytes of stack a level) stays far from any stack limit. */
#define MAX_DEPTH 512

typedef struct {
	const unsigned char *start, *p, *end;
	int depth;
} parser;

/* ---- errors ---- */

/* Sets "line L, column C: <message>" for the byte at `at`. Lines and columns
 * count from 1; columns count bytes, which is well defined even where the
 * input is not valid UTF-8. */
__attribute__((format(printf, 3, 4)))
static void fail(const parser *ps, const unsigned char *at, const char *fmt, ...)
{
	size_t line = 1, column = 1;
	for (const unsigned char *q = ps->start; q < at; q++) {
		if (*q == '\n') {
			line++;
			column = 1;
		} else {
			column++;
		}
	}
	char message[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	rl_seterr("line %zu, column %zu: %s", line, column, message);
}

/* "expected <what>, found <the byte at at>" */
static void expected(const parser *ps, const unsigned char *at, const char *what)
{
	char found[32];
	if (at >= ps->end)
		snprintf(found, sizeof found, "end of input");
	else if (*at >= 0x21 && *at < 0x7f)
		snprintf(found, sizeof found, "'%c'", *at);
	else
		snprintf(found, sizeof found, "byte 0x%02X", *at);
	fail(ps, at, "expected %s, found %s", what, found);
}

/* ---- UTF-8 ---- */

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 when
 * it is not one: truncated, a stray continuation byte, overlong, a UTF-16
 * surrogate (U+D800..U+DFFF) or beyond U+10FFFF (RFC 3629, section 4). */
static size_t utf8_sequence_length(const unsigned char *s, size_t n)
{
	if (n == 0)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;  /* the allowed range of the second byte */
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;  /* below is overlong */
		else if (c == 0xED)
			hi = 0x9F;  /* above is a surrogate */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;  /* below is overlong */
		else if (c == 0xF4)
			hi = 0x8F;  /* above is past U+10FFFF */
	} else {
		return 0;   /* a continuation byte, C0/C1 (overlong) or F5..FF */
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* Writes code point cp (at most U+10FFFF, not a surrogate) as UTF-8; returns the bytes written. */
static size_t utf8_encode(unsigned char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xC0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xE0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char)(0xF0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* ---- the parser ---- */

static rl_json *parse_value(parser *ps);

static void skip_whitespace(parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/* Allocates a node of the given type (rl_json_free frees it); NULL after setting the error. */
static rl_json *new_node(parser *ps, rl_json_type type)
{
	rl_json *v = calloc(1, sizeof *v);
	if (!v) {
		fail(ps, ps->p, "out of memory");
		return NULL;
	}
	v->type = type;
	return v;
}

/* Makes room for one more item (and key, for objects) in v. The arrays grow
 * by doubling; on failure v is unchanged apart from possibly larger arrays. */
static int make_room(parser *ps, rl_json *v, size_t *cap)
{
	if (v->len < *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 8;
	if (n > SIZE_MAX / sizeof(void *)) {
		fail(ps, ps->p, "out of memory");
		return -1;
	}
	rl_json **items = realloc(v->items, n * sizeof *items);
	if (!items) {
		fail(ps, ps->p, "out of memory");
		return -1;
	}
	v->items = items;
	if (v->type == RL_JSON_OBJECT) {
		char **keys = realloc(v->keys, n * sizeof *keys);
		if (!keys) {
			fail(ps, ps->p, "out of memory");
			return -1;
		}
		v->keys = keys;
	}
	*cap = n;
	return 0;
}

static int hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits at s (after "\u"), or -1 after setting the error. */
static long parse_hex4(parser *ps, const unsigned char *s)
{
	long v = 0;
	for (int i = 0; i < 4; i++) {
		int d = s + i < ps->end ? hex_digit(s[i]) : -1;
		if (d < 0) {
			expected(ps, s + i, "4 hex digits after \\u");
			return -1;
		}
		v = v << 4 | d;
	}
	return v;
}

/* Parses the string whose opening quote is at ps->p into an allocated,
 * NUL-terminated buffer (caller frees); its length (it may hold NULs) goes
 * to *len. Returns NULL after setting the error. */
static char *parse_string(parser *ps, size_t *len)
{
	const unsigned char *s = ps->p + 1;
	/* Decoding never makes a string longer (an escape of 2, 6 or 12 bytes
	 * becomes at most 1, 3 or 4), so the raw bytes up to the closing quote
	 * bound the output. A quote preceded by a backslash does not close. */
	const unsigned char *q = s;
	while (q < ps->end && *q != '"')
		q += *q == '\\' && q + 1 < ps->end ? 2 : 1;
	unsigned char *out = malloc((size_t)(q - s) + 1);
	if (!out) {
		fail(ps, ps->p, "out of memory");
		return NULL;
	}
	size_t n = 0;
	for (;;) {
		if (s >= ps->end) {
			expected(ps, s, "'\"' closing the string");
			goto fail;
		}
		unsigned char c = *s;
		if (c == '"')
			break;
		if (c < 0x20) {
			expected(ps, s, "a string character (control characters must be escaped)");
			goto fail;
		}
		if (c >= 0x80) {
			size_t k = utf8_sequence_length(s, (size_t)(ps->end - s));
			if (k == 0) {
				expected(ps, s, "valid UTF-8");
				goto fail;
			}
			memcpy(out + n, s, k);
			n += k;
			s += k;
			continue;
		}
		if (c != '\\') {
			out[n++] = c;
			s++;
			continue;
		}
		if (s + 1 >= ps->end) {
			expected(ps, s + 1, "an escape character after '\\'");
			goto fail;
		}
		switch (s[1]) {
		case '"': out[n++] = '"'; break;
		case '\\': out[n++] = '\\'; break;
		case '/': out[n++] = '/'; break;
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'u': {
			long cp = parse_hex4(ps, s + 2);
			if (cp < 0)
				goto fail;
			if (cp >= 0xDC00 && cp <= 0xDFFF) {
				fail(ps, s, "expected a high surrogate \\uD800-\\uDBFF before \\u%04lX", cp);
				goto fail;
			}
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				/* Characters past U+FFFF come as a UTF-16 pair: the
				 * low half must follow at once (RFC 8259, section 7). */
				const unsigned char *low = s + 6;
				if (low + 1 >= ps->end || low[0] != '\\' || low[1] != 'u') {
					fail(ps, low, "expected a low surrogate \\uDC00-\\uDFFF after \\u%04lX", cp);
					goto fail;
				}
				long lo = parse_hex4(ps, low + 2);
				if (lo < 0)
					goto fail;
				if (lo < 0xDC00 || lo > 0xDFFF) {
					fail(ps, low, "expected a low surrogate \\uDC00-\\uDFFF after \\u%04lX, found \\u%04lX",
					     cp, lo);
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				s += 6;
			}
			n += utf8_encode(out + n, (uint32_t)cp);
			s += 6;
			continue;
		}
		default:
			expected(ps, s + 1, "one of \" \\ / b f n r t u after '\\'");
			goto fail;
		}
		s += 2;
	}
	out[n] = '\0';
	ps->p = s + 1;
	*len = n;
	return (char *)out;
fail:
	free(out);
	return NULL;
}

static rl_json *parse_number(parser *ps)
{
	const unsigned char *start = ps->p, *e = ps->end, *p = start;
	/* The RFC 8259 grammar: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?
	 * checked first, because strtod also takes hex, inf, nan, "+1" and "1.". */
	int negative = p < e && *p == '-';
	if (negative)
		p++;
	if (p >= e || *p < '0' || *p > '9') {
		expected(ps, p, "a digit");
		return NULL;
	}
	if (*p == '0') {
		p++;
		if (p < e && *p >= '0' && *p <= '9') {
			expected(ps, p, "no digit after a leading 0");
			return NULL;
		}
	} else {
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	const unsigned char *int_end = p;
	int integral = 1;
	if (p < e && *p == '.') {
		integral = 0;
		p++;
		if (p >= e || *p < '0' || *p > '9') {
			expected(ps, p, "a digit after '.'");
			return NULL;
		}
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		integral = 0;
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || *p < '0' || *p > '9') {
			expected(ps, p, "a digit in the exponent");
			return NULL;
		}
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}

	/* strtod needs a NUL after the number, which the input may not have. */
	size_t n = (size_t)(p - start);
	char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
	if (!buf) {
		fail(ps, start, "out of memory");
		return NULL;
	}
	memcpy(buf, start, n);
	buf[n] = '\0';
	/* The tools never call setlocale, so strtod reads '.' as the decimal point. */
	errno = 0;
	double number = strtod(buf, NULL);
	int range = errno;
	if (buf != small)
		free(buf);
	if (range == ERANGE && isinf(number)) {
		/* Infinity has no JSON spelling, so it could not be written back. */
		fail(ps, start, "expected a number within the range of a double");
		return NULL;
	}

	rl_json *v = new_node(ps, RL_JSON_NUMBER);
	if (!v)
		return NULL;
	v->number = number;
	if (integral) {
		/* Exact integers matter (sizes, token ids past 2^53): accumulate
		 * the magnitude, at most 2^63 for a negative number. */
		unsigned long long limit = negative ? 9223372036854775808ull : 9223372036854775807ull;
		unsigned long long magnitude = 0;
		int fits = 1;
		for (const unsigned char *d = start + negative; d < int_end; d++) {
			unsigned digit = (unsigned)(*d - '0');
			if (magnitude > (limit - digit) / 10) {
				fits = 0;
				break;
			}
			magnitude = magnitude * 10 + digit;
		}
		if (fits) {
			v->is_integer = 1;
			if (!negative)
				v->integer = (long long)magnitude;
			else if (magnitude == 9223372036854775808ull)
				v->integer = INT64_MIN;
			else
				v->integer = -(long long)magnitude;
		}
	}
	ps->p = p;
	return v;
}

static rl_json *parse_literal(parser *ps)
{
	static const struct { const char *word; rl_json_type type; int boolean; } literals[] = {
		{ "true", RL_JSON_BOOL, 1 }, { "false", RL_JSON_BOOL, 0 }, { "null", RL_JSON_NULL, 0 },
	};
	for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
		size_t n = strlen(literals[i].word);
		if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, literals[i].word, n) == 0) {
			rl_json *v = new_node(ps, literals[i].type);
			if (!v)
				return NULL;
			v->boolean = literals[i].boolean;
			ps->p += n;
			return v;
		}
	}
	expected(ps, ps->p, "a value");
	return NULL;
}

static rl_json *parse_array(parser *ps)
{
	if (ps->depth >= MAX_DEPTH) {
		fail(ps, ps->p, "expected at most %d nested arrays and objects", MAX_DEPTH);
		return NULL;
	}
	rl_json *a = new_node(ps, RL_JSON_ARRAY);
	if (!a)
		return NULL;
	ps->depth++;
	ps->p++;
	size_t cap = 0;
	skip_whitespace(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		ps->depth--;
		return a;
	}
	for (;;) {
		rl_json *item = parse_value(ps);
		if (!item)
			goto fail;
		if (make_room(ps, a, &cap)) {
			rl_json_free(item);
			goto fail;
		}
		a->items[a->len++] = item;
		skip_whitespace(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			break;
		}
		expected(ps, ps->p, "',' or ']'");
		goto fail;
	}
	ps->depth--;
	return a;
fail:
	rl_json_free(a);
	return NULL;
}

static rl_json *parse_object(parser *ps)
{
	if (ps->depth >= MAX_DEPTH) {
		fail(ps, ps->p, "expected at most %d nested arrays and objects", MAX_DEPTH);
		return NULL;
	}
	rl_json *o = new_node(ps, RL_JSON_OBJECT);
	if (!o)
		return NULL;
	ps->depth++;
	ps->p++;
	size_t cap = 0;
	skip_whitespace(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		ps->depth--;
		return o;
	}
	for (;;) {
		skip_whitespace(ps);
		if (ps->p >= ps->end || *ps->p != '"') {
			expected(ps, ps->p, o->len ? "a string key" : "a string key or '}'");
			goto fail;
		}
		size_t key_len;
		char *key = parse_string(ps, &key_len);
		if (!key)
			goto fail;
		skip_whitespace(ps);
		if (ps->p >= ps->end || *ps->p != ':') {
			expected(ps, ps->p, "':' after the key");
			free(key);
			goto fail;
		}
		ps->p++;
		rl_json *value = parse_value(ps);
		if (!value) {
			free(key);
			goto fail;
		}
		if (make_room(ps, o, &cap)) {
			free(key);
			rl_json_free(value);
			goto fail;
		}
		o->keys[o->len] = key;
		o->items[o->len++] = value;
		skip_whitespace(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			break;
		}
		expected(ps, ps->p, "',' or '}'");
		goto fail;
	}
	ps->depth--;
	return o;
fail:
	rl_json_free(o);
	return NULL;
}

static rl_json *parse_value(parser *ps)
{
	skip_whitespace(ps);
	if (ps->p >= ps->end) {
		expected(ps, ps->p, "a value");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
		return parse_object(ps);
	case '[':
		return parse_array(ps);
	case '"': {
		rl_json *v = new_node(ps, RL_JSON_STRING);
		if (!v)
			return NULL;
		v->string = parse_string(ps, &v->len);
		if (!v->string) {
			free(v);
			return NULL;
		}
		return v;
	}
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return parse_number(ps);
	default:
		return parse_literal(ps);
	}
}

rl_json *rl_json_parse(const char *text, size_t len)
{
	if (!text) {
		rl_seterr("line 1, column 1: expected a value, found no input");
		return NULL;
	}
	parser ps = { (const unsigned char *)text, (const unsigned char *)text,
		      (const unsigned char *)text + len, 0 };
	/* RFC 8259 (section 8.1) lets a parser ignore a byte order mark, and
	 * some Windows editors write one. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		ps.p += 3;
	rl_json *v = parse_value(&ps);
	if (!v)
		return NULL;
	skip_whitespace(&ps);
	if (ps.p < ps.end) {
		expected(&ps, ps.p, "end of input");
		rl_json_free(v);
		return NULL;
	}
	return v;
}

void rl_json_free(rl_json *v)
{
	if (!v)
		return;
	/* Recursion is bounded by the parser's MAX_DEPTH. */
	if (v->type == RL_JSON_ARRAY || v->type == RL_JSON_OBJECT) {
		for (size_t i = 0; i < v->len; i++) {
			rl_json_free(v->items[i]);
			if (v->keys)
				free(v->keys[i]);
		}
	}
	free(v->items);
	free(v->keys);
	free(v->string);
	free(v);
}

const rl_json *rl_json_get(const rl_json *object, const char *key)
{
	if (!object || object->type != RL_JSON_OBJECT || !key)
		return NULL;
	/* From the end, so a repeated key gives its last value, as in most parsers. */
	for (size_t i = object->len; i-- > 0;)
		if (strcmp(object->keys[i], key) == 0)
			return object->items[i];
	return NULL;
}

/* ---- writing ---- */

void rl_json_write_string(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	putc('"', f);
	while (p < end) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			putc('\\', f);
			putc(c, f);
			p++;
		} else if (c < 0x20) {
			switch (c) {
			case '\n': fputs("\\n", f); break;
			case '\t': fputs("\\t", f); break;
			case '\r': fputs("\\r", f); break;
			case '\b': fputs("\\b", f); break;
			case '\f': fputs("\\f", f); break;
			default: fprintf(f, "\\u%04x", c); break;
			}
			p++;
		} else if (c < 0x80) {
			putc(c, f);
			p++;
		} else {
			size_t k = utf8_sequence_length(p, (size_t)(end - p));
			if (k) {
				fwrite(p, 1, k, f);
				p += k;
			} else {
				/* Keeps the output valid UTF-8, and a reader sees
				 * which byte it was (as U+0080..U+00FF). */
				fprintf(f, "\\u%04x", c);
				p++;
			}
		}
	}
	putc('"', f);
}

/* ---- files ---- */

rl_json *rl_json_read(const char *path)
{
	size_t len;
	char *text = rl_read_file(path, &len);
	if (!text)
		return NULL;
	rl_json *j = rl_json_parse(text, len);
	free(text);
	if (!j)
		rl_seterr("%s: %s", path, rl_err());
	return j;
}

char *rl_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rl_seterr("%s: %s", path, strerror(errno));
		return NULL;
	}
	/* The size of a regular file sizes the buffer, with room for the NUL
	 * and one byte more so that the read that sees end of file needs no
	 * larger buffer. Pipes and /proc files report 0 or a wrong size, so
	 * reading goes on to end of file anyway. */
	struct stat st;
	size_t cap = 1 << 16;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (uint64_t)st.st_size < SIZE_MAX - 2)
		cap = (size_t)st.st_size + 2;
	char *buf = malloc(cap);
	size_t n = 0;
	for (;;) {
		if (!buf) {
			rl_seterr("%s: out of memory", path);
			close(fd);
			return NULL;
		}
		if (n + 1 >= cap) {
			/* Keep a byte free for the NUL; grow by half again. */
			size_t grown = cap + cap / 2 + 1;
			char *bigger = grown > cap ? realloc(buf, grown) : NULL;
			if (!bigger)
				free(buf);
			buf = bigger;
			cap = grown;
			continue;
		}
		ssize_t got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rl_seterr("%s: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}
