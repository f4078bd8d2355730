#!/bin/sh
# tgen.sh: teacher-gen's tokens/s against a PyTorch generation loop with a KV
# cache over the same shapes (bench/torch_generate.py), same thread count, at
# batch 1 and 32; REPS repetitions, each timing ours then PyTorch's, the ratio
# the median of theirs. Called by run.sh; alone:
#   sh bench/tgen.sh [F32_MODEL QUANT_MODEL CONFIG]
# stories260K always; the 0.6B shape when its model streams are given.
# TGEN_THREADS (default 2), TGEN_REPS (3), TGEN_BIN (another teacher-gen to time).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
threads=${TGEN_THREADS:-${BENCH_THREADS:-2}}
reps=${TGEN_REPS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/rltgen.XXXXXX")
trap 'rm -rf "$work"' EXIT
get() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
one() { # one ARGS...: teacher-gen's generated tokens/s in one run
	"${TGEN_BIN:-$top/bin/teacher-gen}" -t "$threads" -o "$work/tg.msgpack" "$@" 2>&1 >/dev/null |
		sed -n 's/.*(\([0-9]*\) tokens\/s).*/\1/p' | tail -n 1
}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
torch_one() { # torch_one CONFIG BATCH STEPS: PyTorch's tokens/s in one timed run (after its warm-up)
	get "$(/usr/bin/python3 "$top/bench/torch_generate.py" "$1" --batch "$2" --steps "$3" --reps 1 --threads "$threads")" tokens_per_s
}
# side by side: each repetition times ours, then PyTorch, so that a change in the
# machine's load between them moves both; the ratio is the median of the
# repetitions' ratios, the rates the medians of each side's
pair() { # pair MODEL CONFIG STEPS N BATCH: "ours torch ratio", medians
	for r in $(seq "$reps"); do
		o=$(one -n "$4" -b "$5" --max-len $(($3 + 1)) "$1")
		p=0
		[ "$have_torch" = 1 ] && p=$(torch_one "$2" "$5" "$3")
		echo "$o $p"
	done > "$work/pair"
	printf '%s %s %s\n' "$(cut -d' ' -f1 "$work/pair" | median)" "$(cut -d' ' -f2 "$work/pair" | median)" \
		"$(awk '{ print ($2 > 0 ? $1 / $2 : 0) }' "$work/pair" | median)"
}
compare() { # compare LABEL MODEL TORCH_CONFIG STEPS N1 N32 GOAL
	set -- "$@" $(pair "$2" "$3" "$4" "$5" 1) $(pair "$2" "$3" "$4" "$6" 32)
	awk -v l="$1" -v a="$8" -v c="$9" -v r1="${10}" -v b="${11}" -v d="${12}" -v r32="${13}" -v g="$7" 'BEGIN {
		printf "teacher-gen %s: batch 1 %s tok/s, batch 32 %s tok/s (batch-32 / batch-1 scaling %.2f)", l, a, b, b / a
		if (c > 0) printf "; PyTorch %s and %s tok/s; ours / PyTorch (median of the runs side by side): batch 1 %.2f, batch 32 %.2f (goal >= %s)", c, d, r1, r32, g
		else printf "; PyTorch not measured (no python3-torch)"
		printf "\n" }'
}
stories=$top/../shared/models/stories260K/stories260K.bin
[ -f "$stories" ] && compare stories260K "$stories" "$top/configs/stories260k.json" 128 64 64 5
if [ $# -ge 3 ]; then
	compare "0.6B f32" "$1" "$3" 16 8 32 1
	compare "0.6B w4w2" "$2" "$3" 16 8 32 1
fi
