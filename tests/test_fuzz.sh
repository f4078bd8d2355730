#!/bin/sh
# test_fuzz.sh: every fuzz harness replays its saved inputs (fuzz/regress/NAME:
# hostile inputs written by hand and crashes `make fuzz` once found) without
# crashing. The harnesses run the parsers exactly as libFuzzer does.
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1
for src in fuzz/fuzz_*.c; do
	name=$(basename "$src" .c | sed 's/^fuzz_//')
	replay=fuzz/replay_$name
	set -- fuzz/regress/"$name"/*
	if [ ! -x "$replay" ]; then
		fail "fuzz_replay_$name" "$replay not built (make check builds it)"
	elif [ ! -e "$1" ]; then
		fail "fuzz_replay_$name" "no inputs in fuzz/regress/$name"
	elif "$replay" "$@" > "$TMP/replay.out" 2>&1; then
		pass "fuzz_replay_$name"
	else
		fail "fuzz_replay_$name" "$(tail -n 3 "$TMP/replay.out" | tr '\n' ' ')"
	fi
done
t_done
