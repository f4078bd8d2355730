# Recover-LoRA toolkit: one static library, one small program per tool.
PREFIX ?= /usr/local
CC ?= cc
PKGS = msgpack openblas libarchive
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS ?= -O2
CFLAGS += -std=c11 -Wall -Wextra -D_GNU_SOURCE -iquote lib $(PKG_CFLAGS)
LDLIBS = lib/librecover.a $(PKG_LIBS) -lm -lpthread

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(LIB_SRC:.c=.o)
LIB_HDR := $(wildcard lib/*.h)
TOOLS := $(patsubst bin/%.c,bin/%,$(sort $(wildcard bin/*.c)))
TEST_C := $(patsubst %.c,%,$(sort $(wildcard tests/test_*.c)))
TEST_SH := $(sort $(wildcard tests/test_*.sh))
BENCH_C := $(patsubst %.c,%,$(sort $(wildcard bench/*.c)))
MAN1 := $(wildcard man/man1/*.1)
MAN5 := $(wildcard man/man5/*.5)

.PHONY: all check check-long bench install clean deps

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

bench/%: bench/%.c lib/librecover.a
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Installs the Debian packages the build and tests need, when they are missing.
deps:
	@sh .ci/deps.sh

# check, check-long and bench install missing packages first, then build
# in a second make that sees them.
check:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(TEST_C)
	@sh tests/run.sh $(TEST_C) $(TEST_SH)

check-long:
	@sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(TEST_C)
	@LONG=1 sh tests/run.sh $(TEST_C) $(TEST_SH)

bench:
	@DEPS_EXTRA=1 sh .ci/deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_C)
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5

clean:
	rm -f lib/*.o lib/librecover.a $(TOOLS) $(TEST_C) $(BENCH_C)
