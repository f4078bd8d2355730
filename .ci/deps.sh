#!/bin/sh
# deps.sh: installs the Debian packages the toolkit needs, when missing.
#   build: gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev
#   tests: python3-torch python3-numpy (PyTorch references), Node.js and npm
#          (Debian's nodejs npm, unless node and npm are there already), and from
#          the npm registry into build/npm: @huggingface/gguf (GGUF files read by
#          a parser we did not write) and Hugging Face's tokenizers; LONG=1 adds
#          node-llama-cpp with its prebuilt CPU library (llama.cpp runs our GGUF);
#          jq and libxml2-utils (xmllint) read back the pipelines' JSON and SVG;
#          openssh-server and openssh-client for the remote stage over loopback
#   bench and reference scripts: python3-torch python3-numpy
#   make fuzz: clang, for libFuzzer (DEPS_FUZZ=1)
set -e
cd "$(dirname "$0")/.."
pkgs="gcc make pkg-config libmsgpack-dev libopenblas-dev libarchive-dev libpcre2-dev libutf8proc-dev"
pkgs="$pkgs python3-torch python3-numpy"
pkgs="$pkgs jq libxml2-utils openssh-server openssh-client"
[ "${DEPS_FUZZ:-0}" = 1 ] && pkgs="$pkgs clang"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
command -v node >/dev/null && command -v npm >/dev/null || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
	echo "deps: installing$missing" >&2
	if [ "$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
		echo "deps: missing Debian packages:$missing (install them as root)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq $missing >/dev/null
fi

# npm packages for the tests, pinned, into build/npm (tests never reach the network)
npm_pkgs="@huggingface/gguf@0.4.6 tokenizers@0.23.2"
[ "${LONG:-0}" = 1 ] && npm_pkgs="$npm_pkgs node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1"
need=
for p in $npm_pkgs; do
	[ -f "build/npm/node_modules/${p%@*}/package.json" ] || need="$need $p"
done
if [ -n "$need" ]; then
	echo "deps: npm installing$need into build/npm" >&2
	mkdir -p build/npm
	[ -f build/npm/package.json ] || echo '{"name": "recover-lora-test-deps", "private": true}' > build/npm/package.json
	# node-llama-cpp: the prebuilt binary package only, no download or build of its own
	NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --prefix build/npm --no-audit --no-fund --omit=optional \
		--loglevel=error $need >&2 ||
		echo "deps: npm install failed; the tests that need$need will be skipped" >&2
fi
