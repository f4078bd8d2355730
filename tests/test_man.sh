#!/bin/sh
# test_man.sh: every man page's EXAMPLES run and succeed (as jq runs its manual),
# and every tool's usage names what its man page's SYNOPSIS does.
. "$(dirname "$0")/lib.sh"
mkdir -p "$TMP/work"
ln -s "$(cd "$SHARED" && pwd)" "$TMP/shared"
ln -s "$TOP/pipelines" "$TMP/work/pipelines" # recover-pipelines(7) runs them as from the checkout
for page in "$TOP"/man/man1/*.1 "$TOP"/man/man5/*.5 "$TOP"/man/man7/*.7; do
	name=$(basename "$page")
	sed -n '/^\.Sh EXAMPLES/,/^\.Sh /p' "$page" | sed -n 's/^\.Dl //p' | sed 's/\\e/\\/g' > "$TMP/examples"
	if [ ! -s "$TMP/examples" ]; then
		fail "man_examples_$name" "no EXAMPLES to run"
		continue
	fi
	i=0
	while IFS= read -r cmd; do
		i=$((i + 1))
		if (cd "$TMP/work" && PATH="$BIN:$PATH" sh -c "set -e; $cmd" >"$TMP/ex.out" 2>&1); then
			pass "man_example_${name}_$i"
		else
			fail "man_example_${name}_$i" "'$cmd': $(tail -n 2 "$TMP/ex.out" | tr '\n' ' ')"
		fi
	done < "$TMP/examples"
done
for tool in "$TOP"/bin/*.c; do
	t=$(basename "$tool" .c)
	if [ -f "$TOP/man/man1/$t.1" ]; then pass "man_page_$t"; else fail "man_page_$t" "no man/man1/$t.1"; fi
	if "$BIN/$t" -h | grep -q "usage: $t"; then pass "usage_$t"; else fail "usage_$t" "-h prints no usage"; fi
done
t_done
