#!/bin/sh
# distill.sh: distill's training speed and memory, ratios measured side by side
# in one run (bench/run.sh calls it; it also runs alone). The step compared is
# the same in both: sequences of 256 tokens, LoRA rank 4 on ffn_gate and
# ffn_up, KL over the teacher's top-64 plus the tail, clipping, one AdamW step
# (bench/torch_train.py); ours trains a W4/W2-GateUp student, PyTorch the same
# shapes in f32 (it has no 2- or 4-bit matrices).
#   training tokens/s / PyTorch's, stories260K           (goal >= 5)
#   training tokens/s / PyTorch's, random 30M LLaMA shape (goal >= 1.5)
#   achieved FLOP/s / sgemm FLOP/s, 30M model              (goal >= 0.5)
#   peak RSS / (weights + saved activations + adapter and optimizer state), 30M (goal <= 1.3)
# Medians of BENCH_REPS (3) runs, ours and PyTorch's alternating so that both
# see the same load. BENCH_THREADS (2). Both sides time the same steps: PyTorch
# runs one warm-up step and then STEPS timed ones, distill STEPS + 1 steps and
# reports its rate after the first (whose page faults on the freshly allocated
# activations and cold caches cost it about 20% more than a later step).
#
# FLOPs of one training token, counted as the model's (attention's recomputed
# probabilities in the backward not counted): 4 P (each linear's forward and
# its input gradient; frozen weights get none), 6 r (in + out) per adapter
# (forward, the gradients of A, B and the input), and 12 L H D (T + 1) / 2 for
# causal attention (QK^T and PV forward; dP, dV, dQ, dK backward), with P the
# weights of the linear layers and the classifier, T the sequence length.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
threads=${BENCH_THREADS:-2}
reps=${BENCH_REPS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/rldistill.XXXXXX")
trap 'rm -rf "$work"' EXIT
stories=$top/../shared/models/stories260K/stories260K.bin
dev=$top/../shared/data/tinystories/dev.txt
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
get() { printf '%s' "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'; }
jnum() { tr -d '\n' < "$1" | sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p"; }

# text to score: TinyStories if at hand, else this repository's man pages; one
# document, so teacher-gen --score cuts it into pieces of exactly 257 tokens
if [ -f "$dev" ]; then head -c 2000000 "$dev"; else cat "$top"/man/man1/*.1; fi | tr '\n' ' ' > "$work/doc.txt"

# bench_model LABEL CONFIG TEACHER BATCH STEPS GOAL: ours and PyTorch's tokens/s
bench_model() {
	label=$1 cfg=$2 teacher=$3 batch=$4 steps=$5 goal=$6
	"$bin/qpack" -p w4w2 -q rtn -o "$work/student.msgpack" "$teacher" 2>/dev/null
	"$bin/teacher-gen" -t "$threads" --score "$work/doc.txt" --max-len 257 -n $((batch * (steps + 1))) \
		-o "$work/samples.msgpack" "$teacher" 2>/dev/null
	: > "$work/ours" && : > "$work/torch"
	for _ in $(seq "$reps"); do
		"$top/bench/maxrss" "$bin/distill" -t "$threads" -r 4 --epochs 1 --batch-tokens $((batch * 256)) \
			--heldout 0 --eval-every 0 --samples "$work/samples.msgpack" -o /dev/null "$work/student.msgpack" \
			2> "$work/distill.err" >> "$work/rss"
		sed -n 's/.*tokens in .* s ([0-9]* tokens\/s; \([0-9]*\) after the first step).*/\1/p' "$work/distill.err" >> "$work/ours"
		if [ "$have_torch" = 1 ]; then
			get "$(/usr/bin/python3 "$top/bench/torch_train.py" "$cfg" --batch "$batch" --len 256 --rank 4 \
				--topk 64 --steps "$steps" --threads "$threads")" tokens_per_s >> "$work/torch"
		fi
	done
	ours=$(median < "$work/ours")
	if [ "$have_torch" = 1 ]; then
		awk -v l="$label" -v a="$ours" -v b="$(median < "$work/torch")" -v g="$goal" 'BEGIN {
			printf "distill %s: %.0f training tokens/s, PyTorch %.0f: %.2f x (goal >= %s)\n", l, a, b, a / b, g }'
	else
		echo "distill $label: $ours training tokens/s; PyTorch not measured (no python3-torch)"
	fi
}

if [ -f "$stories" ]; then
	"$bin/qpack" -p f32 -o "$work/teacher.msgpack" "$stories" 2>/dev/null
	bench_model stories260K "$top/configs/stories260k.json" "$work/teacher.msgpack" 16 6 5
else
	echo "distill stories260K: not measured (no $stories)"
fi

cfg=$top/configs/llama-30m.json
"$bin/qpack" -p f32 --random "$cfg" --seed 1 -o "$work/teacher.msgpack" 2>/dev/null
: > "$work/rss"
bench_model "30M random" "$cfg" "$work/teacher.msgpack" 8 3 1.5
sgemm=$(get "$("$top/bench/machine" -t "$threads" -r 3)" sgemm_gflops)
C=$(jnum "$cfg" hidden_size) F=$(jnum "$cfg" intermediate_size) L=$(jnum "$cfg" num_hidden_layers)
H=$(jnum "$cfg" num_attention_heads) KH=$(jnum "$cfg" num_key_value_heads) V=$(jnum "$cfg" vocab_size)
awk -v a="$ours" -v s="$sgemm" -v C="$C" -v F="$F" -v L="$L" -v H="$H" -v KH="$KH" -v V="$V" 'BEGIN {
	D = C / H; r = 4; T = 256
	P = L * (2 * C * H * D + 2 * C * KH * D + 3 * C * F) + V * C
	flops = 4 * P + 6 * r * (C + F) * 2 * L + 12 * L * H * D * (T + 1) / 2
	printf "distill 30M: %.1f GFLOP/s (%.0f MFLOP per token) / sgemm %.1f GFLOP/s: %.3f (goal >= 0.5)\n",
		a * flops / 1e9, flops / 1e6, s, a * flops / 1e9 / s }'
# the memory line of the last run: weights, saved activations, adapter+gradient+AdamW (MB)
mem=$(sed -n 's/.*memory: student weights \([0-9.]*\) MB, saved activations \([0-9.]*\) MB, adapter with its gradient and AdamW state \([0-9.]*\) MB.*/\1 \2 \3/p' "$work/distill.err")
rss=$(median < "$work/rss")
echo "$mem" | awk -v rss="$rss" '{
	printf "distill 30M peak RSS / (weights %.1f + saved activations %.1f + adapter and optimizer %.1f MB): %.3f (goal <= 1.3)\n",
		$1, $2, $3, rss / 1e6 / ($1 + $2 + $3) }'
