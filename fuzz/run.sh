#!/bin/sh
# run.sh DIR HARNESS.c...: builds each harness with libFuzzer against DIR's
# sanitized library and runs it for $FUZZ_SECONDS, seeded from fuzz/seeds.sh's
# corpus and fuzz/regress/NAME/. Prints executions and crashes per harness;
# exits 1 if any crashed (the inputs are in DIR/crashes/NAME/).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/$1
shift
secs=${FUZZ_SECONDS:-60}
pkg=$(pkg-config --cflags --libs msgpack openblas libarchive libpcre2-8 libutf8proc 2>/dev/null)
sh "$top/fuzz/seeds.sh" "$dir/seeds" || exit 1
status=0
for src in "$@"; do
	name=$(basename "$src" .c | sed 's/^fuzz_//')
	bin=$dir/fuzz_$name
	if ! clang -O1 -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -iquote "$top/lib" -o "$bin" \
		"$top/$src" "$dir/lib/librecover.a" $pkg -lm -lpthread; then
		echo "fuzz $name: does not build"; status=1; continue
	fi
	corpus=$dir/corpus/$name crashes=$dir/crashes/$name
	mkdir -p "$corpus" "$crashes"
	cp "$dir/seeds/$name"/* "$corpus"/ 2>/dev/null
	cp "$top/fuzz/regress/$name"/* "$corpus"/ 2>/dev/null
	(cd "$top" && ASAN_OPTIONS=detect_leaks=0 "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="$crashes/" "$corpus" > "$dir/fuzz_$name.log" 2>&1)
	runs=$(grep -o 'Done [0-9]* runs' "$dir/fuzz_$name.log" | grep -o '[0-9]*' | tail -n 1)
	found=$(ls "$crashes" | wc -l)
	echo "fuzz $name: ${runs:-?} executions in $secs s, $found crashing inputs"
	[ "$found" = 0 ] || { status=1; tail -n 30 "$dir/fuzz_$name.log"; }
done
exit $status
