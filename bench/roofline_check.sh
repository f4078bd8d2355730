#!/bin/sh
# roofline_check.sh: validates roofline(1) on this machine. For random-weight
# models with the shapes of Qwen3-0.6B and Qwen3-1.7B, stored f32, q4 and w4w2,
# it measures decode tokens/s (bench/model_speed: one sequence, positions
# 0..15) and prints
#   predicted / measured with --measure (this host's bandwidth, sgemm and our
#     decode kernels' rates; goal 0.85-1.15), and
#   predicted / measured from the measured bandwidth and FLOP/s alone
#     (--hw custom:..., no kernel rates), so the model is not only checked
#     against figures taken from our own kernels.
# Each figure is the median of REPS pairs (prediction and measurement taken one
# after the other, since a shared machine's speed drifts). The last part of make bench.
# ROOFLINE_CONFIGS (default: configs/qwen3-0.6b.json configs/qwen3-1.7b.json),
# ROOFLINE_POLICIES (default: f32 q4 w4w2), BENCH_THREADS (2), REPS (3).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
threads=${BENCH_THREADS:-2}
reps=${REPS:-3}
configs=${ROOFLINE_CONFIGS:-"$top/configs/qwen3-0.6b.json $top/configs/qwen3-1.7b.json"}
policies=${ROOFLINE_POLICIES:-"f32 q4 w4w2"}
work=$(mktemp -d "${TMPDIR:-/tmp}/rlroof.XXXXXX")
trap 'rm -rf "$work"' EXIT
get() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
# the policy's decode tokens/s of roofline's JSON (the first row)
decode_rate() { printf '%s' "$1" | sed -n 's/.*"decode":{"policy":{[^}]*"tokens_per_s":\([0-9.eE+-]*\).*/\1/p'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "roofline check: random-weight models, $threads threads, decode of positions 0..15 (context 8 predicted), median of $reps"
printf '%-16s %-6s %10s %10s %10s %12s %12s\n' model policy measured predicted "bw+flops" "pred/meas" "bw+flops/meas"
for config in $configs; do
	name=$(basename "$config" .json)
	for policy in $policies; do
		model=$work/$name-$policy.msgpack
		"$bin/qpack" --random "$config" --seed 1 -q rtn -p "$policy" -o "$model" 2>/dev/null
		: > "$work/r"
		i=0
		while [ $i -lt "$reps" ]; do
			i=$((i + 1))
			pred=$("$bin/roofline" --model "$config" --policy "$policy" --measure -t "$threads" --ctx 8 --json 2>/dev/null)
			bw=$(printf '%s' "$pred" | sed -n 's/.*"bw_gb_s":\([0-9.eE+-]*\).*/\1/p')
			tf=$(printf '%s' "$pred" | sed -n 's/.*"tflops":\([0-9.eE+-]*\).*/\1/p')
			plain=$("$bin/roofline" --model "$config" --policy "$policy" --hw "custom:bw=$bw,flops=$tf" --ctx 8 --json)
			meas=$("$top/bench/model_speed" -t "$threads" --tokens 16 --decode 16 --reps 3 "$model")
			echo "$(get "$meas" decode_tokens_per_s) $(decode_rate "$pred") $(decode_rate "$plain")" >> "$work/r"
		done
		m=$(awk '{ print $1 }' "$work/r" | median)
		p=$(awk '{ print $2 }' "$work/r" | median)
		b=$(awk '{ print $3 }' "$work/r" | median)
		rp=$(awk '{ print $2 / $1 }' "$work/r" | median)
		rb=$(awk '{ print $3 / $1 }' "$work/r" | median)
		printf '%-16s %-6s %10.3f %10.3f %10.3f %12.3f %12.3f\n' "$name" "$policy" "$m" "$p" "$b" "$rp" "$rb"
		rm -f "$model"
	done
done
echo "goal: pred/meas (with --measure) within 0.85-1.15; tokens/s of random-weight models"
