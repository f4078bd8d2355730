# lib.sh: helpers for shell tests, sourced by tests/*.sh.
# Each check prints "PASS name", "FAIL name: why" or "SKIP name: why";
# tests/run.sh counts them. Run from the repository root.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=$TOP/bin
SHARED=${SHARED:-$TOP/../shared}
T_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rltest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; T_FAILED=1; }
skip() { echo "SKIP $1: $2"; }

# check NAME COMMAND...: passes when the command succeeds.
check() {
	name=$1; shift
	if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"; fi
}

# expect_fail NAME PATTERN COMMAND...: the command must exit 1 and print PATTERN (grep -E) on stderr.
expect_fail() {
	name=$1; pattern=$2; shift 2
	"$@" >"$TMP/ef.out" 2>"$TMP/ef.err"
	rc=$?
	if [ $rc -ne 1 ]; then
		fail "$name" "exit status $rc, wanted 1; stderr: $(head -c 300 "$TMP/ef.err")"
	elif ! grep -Eq -- "$pattern" "$TMP/ef.err"; then
		fail "$name" "stderr lacks /$pattern/: $(head -c 300 "$TMP/ef.err")"
	else
		pass "$name"
	fi
}

t_done() { exit $T_FAILED; }

# npm_modules PACKAGE: the node_modules folder that holds PACKAGE ($NODE_PATH's,
# the checkout's build/npm, or for build/sanitize and build/fuzz, copies of the
# tree, the checkout's), or nothing.
npm_modules() {
	for d in $(printf '%s' "${NODE_PATH:-}" | tr ':' ' ') "$TOP/build/npm/node_modules" "$TOP/../npm/node_modules"; do
		[ -f "$d/$1/package.json" ] && { (cd "$d" && pwd); return; }
	done
}

# no_output NAME FILE: neither FILE nor a temporary of it may exist.
no_output() {
	if [ -e "$2" ] || ls "$2".tmp.* >/dev/null 2>&1; then fail "$1" "$2 or a temporary of it was left behind"; else pass "$1"; fi
}
