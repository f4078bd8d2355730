#!/bin/sh
# tree.sh DIR: a fresh copy of the sources in DIR (inside the repository), for
# builds with other compilers or flags (make check-sanitize, make fuzz) that
# must not disturb the normal build. Build outputs are not copied.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/$1
rm -rf "$dir"
mkdir -p "$dir"
cd "$top"
tar -cf - --exclude='*.o' --exclude='*.a' --exclude=build --exclude=out --exclude=.git \
	Makefile .ci lib bin tests man pipelines examples fuzz bench README.md | (cd "$dir" && tar -xf -)
# the tools and tests of the copy are rebuilt there; stale binaries would hide that
cd "$dir"
find bin tests bench fuzz -type f ! -name '*.*' -perm -u+x -delete
