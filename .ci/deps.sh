#!/bin/sh
# deps.sh: installs the Debian packages the toolkit needs, when missing.
#   build: gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev
#   tests (DEPS_TESTS=1, as make check does): jq and libxml2-utils (xmllint) read back the
#     pipelines' JSON and SVG; openssh-server and openssh-client for the remote stage over loopback
#   bench and reference scripts: python3-torch python3-numpy (DEPS_EXTRA=1 or `make bench`)
#   make fuzz: clang, for libFuzzer (DEPS_FUZZ=1)
set -e
pkgs="gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev"
[ "${DEPS_TESTS:-0}" = 1 ] && pkgs="$pkgs jq libxml2-utils openssh-server openssh-client"
[ "${DEPS_EXTRA:-0}" = 1 ] && pkgs="$pkgs python3-torch python3-numpy"
[ "${DEPS_FUZZ:-0}" = 1 ] && pkgs="$pkgs clang"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
if [ "$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
	echo "deps: missing Debian packages:$missing (install them as root)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq $missing >/dev/null
