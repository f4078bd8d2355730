# Recover-LoRA toolkit: one static library, one small program per tool.
PREFIX ?= /usr/local
CC ?= cc
PKGS = msgpack openblas libarchive libpcre2-8 libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS ?= -O2
override CFLAGS += -std=c11 -Wall -Wextra -D_GNU_SOURCE -iquote lib $(PKG_CFLAGS)
LDLIBS = lib/librecover.a $(PKG_LIBS) -lm -lpthread

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(LIB_SRC:.c=.o)
LIB_HDR := $(wildcard lib/*.h)
TOOLS := $(patsubst bin/%.c,bin/%,$(sort $(wildcard bin/*.c)))
TEST_C := $(patsubst %.c,%,$(sort $(wildcard tests/test_*.c)))
TEST_SH := $(sort $(wildcard tests/test_*.sh))
BENCH_C := $(patsubst %.c,%,$(sort $(wildcard bench/*.c)))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(patsubst fuzz/fuzz_%.c,fuzz/replay_%,$(FUZZ_SRC))
MAN1 := $(wildcard man/man1/*.1)
MAN5 := $(wildcard man/man5/*.5)
MAN7 := $(wildcard man/man7/*.7)

.PHONY: all check check-long check-sanitize fuzz bench install clean deps

all: $(TOOLS)

lib/%.o: lib/%.c $(LIB_HDR)
	$(CC) $(CFLAGS) -c -o $@ $<

lib/librecover.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

bin/%: bin/%.c lib/librecover.a
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

tests/test_%: tests/test_%.c tests/t.h lib/librecover.a
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
tests/test_quant tests/test_gguf_quant: tests/int8_check.h

# a harness without libFuzzer: replays saved inputs (make check)
fuzz/replay_%: fuzz/fuzz_%.c fuzz/driver.c fuzz/fuzz.h lib/librecover.a
	$(CC) $(CFLAGS) -o $@ $< fuzz/driver.c $(LDLIBS)

bench/%: bench/%.c lib/librecover.a
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Installs the Debian packages the build and tests need, when they are missing.
deps:
	@sh .ci/deps.sh

# check, check-long and bench install missing packages first, then build
# in a second make that sees them.
check:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(TEST_C) $(FUZZ_REPLAY)
	@sh tests/run.sh $(TEST_C) $(TEST_SH)

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer, built
# in a copy of the tree (build/sanitize) so the normal build stays as it is.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
check-sanitize:
	@sh .ci/deps.sh
	@sh fuzz/tree.sh build/sanitize
	@$(MAKE) --no-print-directory -C build/sanitize CFLAGS="$(SAN_FLAGS)" all $(TEST_C) $(FUZZ_REPLAY)
	@cd build/sanitize && SHARED=$(abspath ../shared) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1 sh tests/run.sh $(TEST_C) $(TEST_SH)

# libFuzzer (clang) on every harness for FUZZ_SECONDS each (default 60), in
# build/fuzz; crashing inputs land in build/fuzz/crashes/NAME/ (copy them to
# fuzz/regress/NAME/ to keep them as regression tests).
FUZZ_SECONDS ?= 60
fuzz:
	@DEPS_FUZZ=1 sh .ci/deps.sh
	@sh fuzz/tree.sh build/fuzz
	@$(MAKE) --no-print-directory -C build/fuzz CC=clang \
		CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" lib/librecover.a
	@SHARED=$(abspath ../shared) FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh build/fuzz $(FUZZ_SRC)

check-long:
	@LONG=1 sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(TEST_C)
	@LONG=1 sh tests/run.sh $(TEST_C) $(TEST_SH)

bench:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_C)
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 $(MAN7) $(DESTDIR)$(PREFIX)/share/man/man7

clean:
	rm -f lib/*.o lib/librecover.a $(TOOLS) $(TEST_C) $(BENCH_C) $(FUZZ_REPLAY)
	rm -rf build
