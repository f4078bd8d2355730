#!/bin/sh
# run.sh: `make bench`. Ratios measured side by side in one run, medians of
# several repetitions: a random-weight model with Qwen3-0.6B's shapes (speed
# does not depend on the values).
#   prefill FLOP/s / this machine's sgemm FLOP/s      (goal >= 0.6)
#   prefill tokens/s / PyTorch's forward, same model  (goal >= 1.0)
#   f32 decode weight bytes/s / memory read bandwidth (goal >= 0.7)
#   peak RSS of importing the model / its f32 size    (goal <= 1.2)
# BENCH_CONFIG picks another config.json; BENCH_THREADS (default 2), BENCH_TOKENS (512).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
config=${BENCH_CONFIG:-$top/bench/configs/qwen3-0.6b.json}
threads=${BENCH_THREADS:-2}
tokens=${BENCH_TOKENS:-512}
work=$(mktemp -d "${TMPDIR:-/tmp}/rlbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
bin=$top/bin
echo "bench: $(basename "$config"), random weights, $threads threads, prefill of $tokens tokens"

rss_random=$("$top/bench/maxrss" "$bin/qpack" -p f32 --random "$config" --seed 1 -o "$work/model.msgpack" 2>/dev/null)
size=$(wc -c < "$work/model.msgpack")
rss_stream=$("$top/bench/maxrss" "$bin/qpack" -p f32 -o "$work/model2.msgpack" "$work/model.msgpack" 2>/dev/null)
rm -f "$work/model2.msgpack"
awk -v a="$rss_random" -v b="$rss_stream" -v s="$size" 'BEGIN {
	printf "import peak RSS / f32 size: qpack --random %.3f, qpack of a stream %.3f (goal <= 1.2; %.2f GB model)\n", a / s, b / s, s / 1e9 }'

ours=$("$top/bench/model_speed" -t "$threads" --tokens "$tokens" --decode 16 --reps 3 "$work/model.msgpack")
echo "ours: $ours"
get() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
printf 'prefill FLOP/s / sgemm FLOP/s: %s (goal >= 0.6)\n' "$(get "$ours" prefill_over_sgemm)"
printf 'f32 decode weight bytes/s / read bandwidth: %s (goal >= 0.7)\n' "$(get "$ours" decode_over_bandwidth)"

if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	torch=$(/usr/bin/python3 "$top/bench/torch_prefill.py" "$config" --tokens "$tokens" --reps 3 --threads "$threads")
	echo "pytorch: $torch"
	awk -v a="$(get "$ours" prefill_tokens_per_s)" -v b="$(get "$torch" tokens_per_s)" 'BEGIN {
		if (a + 0 <= 0 || b + 0 <= 0) { print "prefill tokens/s / PyTorch: not measured (no figure parsed)"; exit 1 }
		printf "prefill tokens/s / PyTorch: %.3f (goal >= 1.0)\n", a / b }'
else
	echo "prefill tokens/s / PyTorch: not measured (no python3-torch)"
fi
