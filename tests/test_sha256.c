/* test_sha256: SHA-256 against the FIPS 180-4 example digests, incremental
 * updates split at every offset against one update, and a large pseudo-random
 * file against the system's sha256sum (an independent implementation). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"
#include "t.h"

/* The hex digest of len bytes at data, hashed in one update. */
static void hash_hex(const void *data, size_t len, char hex[65])
{
	rl_sha256 s;
	unsigned char d[32];
	rl_sha256_init(&s);
	rl_sha256_update(&s, data, len);
	rl_sha256_final(&s, d);
	rl_sha256_hex(d, hex);
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void test_vectors(void)
{
	/* FIPS 180-4 examples (NIST CSRC "Example Algorithms", SHA256.pdf,
	 * SHA256_2.pdf) and the one-million-'a' vector of FIPS 180-2. */
	static const struct { const char *name, *message, *digest; } vectors[] = {
		{ "sha256 empty", "",
		  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "sha256 abc", "abc",
		  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "sha256 448 bits", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	char hex[65];
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		hash_hex(vectors[i].message, strlen(vectors[i].message), hex);
		CHECK(strcmp(hex, vectors[i].digest) == 0, vectors[i].name, "got %s, want %s", hex,
		      vectors[i].digest);
	}

	/* One million 'a', fed in uneven pieces so blocks straddle updates. */
	static char a[1000000];
	memset(a, 'a', sizeof a);
	rl_sha256 s;
	unsigned char d[32];
	rl_sha256_init(&s);
	for (size_t done = 0, piece = 1; done < sizeof a; piece = piece * 3 % 1009 + 1) {
		size_t n = piece < sizeof a - done ? piece : sizeof a - done;
		rl_sha256_update(&s, a + done, n);
		done += n;
	}
	rl_sha256_final(&s, d);
	rl_sha256_hex(d, hex);
	const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	CHECK(strcmp(hex, want) == 0, "sha256 million a, pieces", "got %s, want %s", hex, want);
	hash_hex(a, sizeof a, hex);
	CHECK(strcmp(hex, want) == 0, "sha256 million a, one update", "got %s, want %s", hex, want);

	/* Lengths around the padding boundary: 55 bytes fit the length in the
	 * last block, 56 need another. Digests from Python's hashlib. */
	static const struct { size_t len; const char *digest; } edges[] = {
		{ 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
		{ 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
		{ 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
	};
	for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "sha256 %zu bytes of a", edges[i].len);
		hash_hex(a, edges[i].len, hex);
		CHECK(strcmp(hex, edges[i].digest) == 0, name, "got %s, want %s", hex, edges[i].digest);
	}
}

static void test_incremental(void)
{
	/* 130 bytes: two whole blocks and a bit, so splits fall before, inside
	 * and after each block boundary. */
	unsigned char message[130];
	uint64_t seed = 1;
	for (size_t i = 0; i < sizeof message; i++)
		message[i] = (unsigned char)splitmix64(&seed);
	char whole[65];
	hash_hex(message, sizeof message, whole);
	int bad = -1;
	for (size_t split = 0; split <= sizeof message && bad < 0; split++) {
		rl_sha256 s;
		unsigned char d[32];
		char hex[65];
		rl_sha256_init(&s);
		rl_sha256_update(&s, message, split);
		rl_sha256_update(&s, message + split, sizeof message - split);
		rl_sha256_final(&s, d);
		rl_sha256_hex(d, hex);
		if (strcmp(hex, whole) != 0)
			bad = (int)split;
	}
	CHECK(bad < 0, "sha256 split at every offset 0..130", "split at %d differs from one update", bad);

	/* One byte at a time, and a zero-length update (data may be NULL). */
	rl_sha256 s;
	unsigned char d[32];
	char hex[65];
	rl_sha256_init(&s);
	rl_sha256_update(&s, NULL, 0);
	for (size_t i = 0; i < sizeof message; i++) {
		rl_sha256_update(&s, message + i, 1);
		rl_sha256_update(&s, message, 0);
	}
	rl_sha256_final(&s, d);
	rl_sha256_hex(d, hex);
	CHECK(strcmp(hex, whole) == 0, "sha256 byte at a time", "got %s, want %s", hex, whole);

	/* A copy of the state finalizes to the digest so far and leaves the
	 * original to go on (the stream code hashes this way). */
	rl_sha256_init(&s);
	rl_sha256_update(&s, message, 70);
	rl_sha256 copy = s;
	rl_sha256_final(&copy, d);
	char prefix[65];
	rl_sha256_hex(d, hex);
	hash_hex(message, 70, prefix);
	rl_sha256_update(&s, message + 70, sizeof message - 70);
	rl_sha256_final(&s, d);
	char rest[65];
	rl_sha256_hex(d, rest);
	CHECK(strcmp(hex, prefix) == 0 && strcmp(rest, whole) == 0, "sha256 copy of the state",
	      "prefix %s (want %s), whole %s (want %s)", hex, prefix, rest, whole);
}

static void test_sha256sum(void)
{
	const char *name = "sha256 matches sha256sum on 1 MB";
	if (system("command -v sha256sum >/dev/null 2>&1") != 0) {
		t_skip(name, "no sha256sum command");
		return;
	}
	char path[64];
	snprintf(path, sizeof path, "/tmp/test_sha256.%ld", (long)getpid());
	size_t n = 1 << 20;
	unsigned char *data = malloc(n);
	if (!data) {
		CHECK(0, name, "out of memory");
		return;
	}
	uint64_t seed = 20240601;
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = splitmix64(&seed);
		memcpy(data + i, &r, 8);
	}
	FILE *f = fopen(path, "wb");
	int written = f && fwrite(data, 1, n, f) == n;
	if (f && fclose(f) != 0)
		written = 0;
	if (!written) {
		CHECK(0, name, "cannot write %s", path);
		free(data);
		remove(path);
		return;
	}
	char command[128], line[256] = "";
	snprintf(command, sizeof command, "sha256sum %s", path);
	FILE *p = popen(command, "r");
	int got_line = p && fgets(line, sizeof line, p) != NULL;
	int status = p ? pclose(p) : -1;
	remove(path);
	char hex[65];
	hash_hex(data, n, hex);
	free(data);
	if (!got_line || status != 0) {
		CHECK(0, name, "sha256sum failed (status %d)", status);
		return;
	}
	/* sha256sum prints "<64 hex digits>  <path>". */
	CHECK(strlen(line) >= 64 && strncmp(line, hex, 64) == 0, name, "got %s, sha256sum says %.64s", hex,
	      line);
}

int main(void)
{
	test_vectors();
	test_incremental();
	test_sha256sum();
	return t_done();
}
