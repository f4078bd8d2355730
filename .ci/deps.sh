#!/bin/sh
# deps.sh: installs the Debian packages the toolkit needs, when missing.
#   build: gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev
#   tests: python3-torch python3-numpy (tests/test_hf_export.sh runs a PyTorch reference),
#          and from npm, in build/npm, Hugging Face's tokenizers (the same script)
#   bench and reference scripts: python3-torch python3-numpy
#   make fuzz: clang, for libFuzzer (DEPS_FUZZ=1)
set -e
pkgs="gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev"
pkgs="$pkgs python3-torch python3-numpy"
[ "${DEPS_FUZZ:-0}" = 1 ] && pkgs="$pkgs clang"
# npm packages the tests use, pinned, in build/npm/node_modules (when npm is there)
npm_pkgs="tokenizers@0.23.2"
if command -v npm >/dev/null; then
	for p in $npm_pkgs; do
		[ -f "build/npm/node_modules/${p%@*}/package.json" ] && continue
		echo "deps: npm installing $p in build/npm" >&2
		mkdir -p build/npm
		npm install --prefix build/npm --no-save --no-audit --no-fund --silent "$p" >&2 || echo "deps: npm install $p failed" >&2
	done
fi
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
