/* json.h: a small JSON reader (RFC 8259) for config files and jsonl tasks,
 * and the one string escaper every JSON writer uses. */
#ifndef RL_JSON_H
#define RL_JSON_H
#include <stddef.h>
#include <stdio.h>

typedef enum { RL_JSON_NULL, RL_JSON_BOOL, RL_JSON_NUMBER, RL_JSON_STRING,
	       RL_JSON_ARRAY, RL_JSON_OBJECT } rl_json_type;

typedef struct rl_json {
	rl_json_type type;
	int boolean;            /* BOOL */
	double number;          /* NUMBER */
	int is_integer;         /* NUMBER written without fraction or exponent, fits int64 */
	long long integer;      /* NUMBER, when is_integer */
	char *string;           /* STRING: UTF-8, NUL-terminated; may contain NUL (see len) */
	size_t len;             /* STRING: bytes; ARRAY/OBJECT: number of items */
	struct rl_json **items; /* ARRAY elements, OBJECT values (len of them) */
	char **keys;            /* OBJECT keys (len of them), NUL-terminated */
} rl_json;

/* Parses len bytes; the whole input must be one value (surrounding whitespace
 * allowed). Errors give line:column and what was expected. Nesting deeper
 * than 512 is an error, never a stack overflow. Returns a tree to free with
 * rl_json_free, or NULL. */
rl_json *rl_json_parse(const char *text, size_t len);
void rl_json_free(rl_json *v);

/* Object member by key (the last one if repeated), or NULL. */
const rl_json *rl_json_get(const rl_json *object, const char *key);

/* Writes s (len bytes) as a JSON string with quotes; bytes that are not valid
 * UTF-8 are written as \u00XX of the byte so the output is always valid. */
void rl_json_write_string(FILE *f, const char *s, size_t len);

/* Reads a whole file into memory (allocated, NUL-terminated; caller frees). */
char *rl_read_file(const char *path, size_t *len);

/* Reads and parses a JSON file: the tree, or NULL after rl_seterr naming path. */
rl_json *rl_json_read(const char *path);

#endif
