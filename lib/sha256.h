/* sha256.h: FIPS 180-4 SHA-256, incremental. */
#ifndef RL_SHA256_H
#define RL_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint32_t h[8];
	uint64_t bytes;
	unsigned char block[64];
	size_t fill;
} rl_sha256;

void rl_sha256_init(rl_sha256 *s);
void rl_sha256_update(rl_sha256 *s, const void *data, size_t len);
void rl_sha256_final(rl_sha256 *s, unsigned char digest[32]);
/* digest as 64 lowercase hex digits and a NUL */
void rl_sha256_hex(const unsigned char digest[32], char hex[65]);
/* the sha256 of len bytes at p, as 64 lowercase hex digits and a NUL */
void rl_sha256_hex_of(const void *p, size_t len, char hex[65]);

#endif
