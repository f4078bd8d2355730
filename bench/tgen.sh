#!/bin/sh
# tgen.sh: teacher-gen's tokens/s against a PyTorch generation loop with a KV
# cache over the same shapes (bench/torch_generate.py), same thread count, at
# batch 1 and 32; medians of REPS runs each (ours here, PyTorch's inside its
# script). Called by run.sh; alone:
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
rate() { # rate ARGS...: the median of teacher-gen's generated tokens/s over the repetitions
	for r in $(seq "$reps"); do
		"${TGEN_BIN:-$top/bin/teacher-gen}" -t "$threads" -o "$work/tg.msgpack" "$@" 2>&1 >/dev/null |
			sed -n 's/.*(\([0-9]*\) tokens\/s).*/\1/p' | tail -n 1
	done | median
}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
compare() { # compare LABEL MODEL TORCH_CONFIG STEPS N1 N32 GOAL
	label=$1 model=$2 cfg=$3 steps=$4
	o1=$(rate -n "$5" -b 1 --max-len $((steps + 1)) "$model")
	o32=$(rate -n "$6" -b 32 --max-len $((steps + 1)) "$model")
	p1=0 p32=0
	if [ "$have_torch" = 1 ]; then
		p1=$(get "$(/usr/bin/python3 "$top/bench/torch_generate.py" "$cfg" --batch 1 --steps "$steps" --reps "$reps" --threads "$threads")" tokens_per_s)
		p32=$(get "$(/usr/bin/python3 "$top/bench/torch_generate.py" "$cfg" --batch 32 --steps "$steps" --reps "$reps" --threads "$threads")" tokens_per_s)
	fi
	awk -v l="$label" -v a="$o1" -v b="$o32" -v c="$p1" -v d="$p32" -v g="$7" 'BEGIN {
		printf "teacher-gen %s: batch 1 %s tok/s, batch 32 %s tok/s (batch-32 / batch-1 scaling %.2f)", l, a, b, b / a
		if (c > 0) printf "; PyTorch %s and %s tok/s; ours / PyTorch: batch 1 %.2f, batch 32 %.2f (goal >= %s)", c, d, a / c, b / d, g
		else printf "; PyTorch not measured (no python3-torch)"
		printf "\n" }'
}
stories=$top/../shared/models/stories260K/stories260K.bin
[ -f "$stories" ] && compare stories260K "$stories" "$top/configs/stories260k.json" 128 64 64 5
if [ $# -ge 3 ]; then
	compare "0.6B f32" "$1" "$3" 16 8 32 1
	compare "0.6B w4w2" "$2" "$3" 16 8 32 1
fi
