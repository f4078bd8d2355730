#!/bin/sh
# run.sh: `make bench`. Ratios measured side by side in one run, medians of
# several repetitions: a random-weight model with Qwen3-0.6B's shapes (speed
# does not depend on the values).
#   prefill FLOP/s / this machine's sgemm FLOP/s      (goal >= 0.6)
#   prefill tokens/s / PyTorch's forward, same model  (goal >= 1.0)
#   f32 decode weight bytes/s / memory read bandwidth (goal >= 0.7)
#   peak RSS of importing the model / its f32 size    (goal <= 1.2)
#   quantization MB/s of f32 input, rtn and mse
#   decode tokens/s at f32, 4-bit (q4) and W4/W2-GateUp (w4w2); w4w2 / q4 against
#   the ratio of weight bytes read per token (goal >= 0.9 x), and quantized
#   decode bytes/s / read bandwidth (goal >= 0.8)
#   the same decode with 8-bit activations (--int8-act of evalrun and teacher-gen)
#   single-thread fused dot rate of each 2- and 4-bit format (bench/qdot), f32 and
#   8-bit activations (with f32 ones also AVX-512 / AVX2 kernels where the CPU
#   has both); with GGML_DIR (a ggml source tree built with cmake in
#   GGML_DIR/build, or GGML_BUILD) against ggml's vec_dot, same protocol (bench/peer)
# BENCH_CONFIG picks another config.json; BENCH_THREADS (default 2), BENCH_TOKENS (512).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
config=${BENCH_CONFIG:-$top/configs/qwen3-0.6b.json}
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

# --- quantization ---
mbs() { # mbs START END: MB/s of the f32 model between two timestamps
	awk -v s="$size" -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", s / 1e6 / (b - a) }'
}
secs() { date +%s.%N; }
t0=$(secs); "$bin/qpack" -q rtn -p w4w2 -o "$work/w4w2rtn.msgpack" "$work/model.msgpack" 2>/dev/null; t1=$(secs)
"$bin/qpack" -q mse -p w4w2 -o "$work/w4w2.msgpack" "$work/model.msgpack" 2>/dev/null; t2=$(secs)
"$bin/qpack" -q rtn -p q4 -o "$work/q4.msgpack" "$work/model.msgpack" 2>/dev/null
echo "quantization of f32 input (load, quantize, write): rtn $(mbs "$t0" "$t1") MB/s, mse $(mbs "$t1" "$t2") MB/s"
rm -f "$work/w4w2rtn.msgpack"

# q4 and w4w2 decoded in turn in one process (model_speed with two models), so
# their ratio is taken on the same machine, repetition by repetition
for act in "" --int8-act; do
	pair=$("$top/bench/model_speed" -t "$threads" --decode 16 --reps 7 $act "$work/q4.msgpack" "$work/w4w2.msgpack")
	label=${act:+", 8-bit activations"}
	echo "q4 vs w4w2$label: $pair"
	awk -v l="$label" -v f="$(get "$ours" decode_tokens_per_s)" -v a="$(get "$pair" a_decode_tokens_per_s)" \
	    -v b="$(get "$pair" b_decode_tokens_per_s)" -v s="$(get "$pair" speed_ratio)" -v br="$(get "$pair" bytes_ratio)" \
	    -v ra="$(get "$pair" a_decode_over_bandwidth)" -v rb="$(get "$pair" b_decode_over_bandwidth)" 'BEGIN {
		printf "decode tokens/s%s: f32 %.2f, q4 %.2f, w4w2 %.2f\n", l, f, a, b
		printf "w4w2 / q4 decode speed%s %.3f vs bytes ratio %.3f: %.3f of it (goal >= 0.9)\n", l, s, br, s / br
		printf "quantized decode bytes/s / read bandwidth%s: q4 %.3f, w4w2 %.3f (goal >= 0.8)\n", l, ra, rb }'
done

echo "single-thread fused dot (weights/s over 16 MiB of packed rows):"
"$top/bench/qdot" | tee "$work/qdot.jsonl"
# ggml's K-quants against our group formats of the same bits (f32 activations both)
awk -F'[:,]' '{ gsub(/["}]/, ""); r[$2] = $4; r8[$2] = $6; r2[$2] = $10 } END {
	printf "fused dot q4_K / q4g32 %.2f, q4_0 / q4g32 %.2f, q2_K / q2g32 %.2f\n", r["q4_K"] / r["q4g32"], r["q4_0"] / r["q4g32"], r["q2_K"] / r["q2g32"]
	if (r2["q4g32"] > 0) {
		printf "fused dot, f32 activations, AVX-512 / AVX2 kernels:"
		n = split("q2g32 q2g256 q4g32 q4g256 q8g32", f, " ")
		for (i = 1; i <= n; i++) printf " %s %.2f", f[i], r[f[i]] / r2[f[i]]
		printf "\n"
	}
	printf "fused dot 8-bit / f32 activations:"
	n = split("q2g32 q2g256 q2_K q4g32 q4g256 q4_0 q4_K", f, " ")
	for (i = 1; i <= n; i++) printf " %s %.2f", f[i], r8[f[i]] / r[f[i]]
	printf "\n" }' "$work/qdot.jsonl"
# the peer: ggml's vec_dot (8-bit activations), the same rows and timing
if [ -n "${GGML_DIR:-}" ]; then
	gb=${GGML_BUILD:-$GGML_DIR/build}
	if cc -O2 -I"$GGML_DIR/include" -o "$work/ggml_qdot" "$top/bench/peer/ggml_qdot.c" -L"$gb/src" -lggml-base -lggml-cpu \
		-Wl,-rpath,"$gb/src" 2>"$work/ggml.err"; then
		"$work/ggml_qdot" q2_K q4_K q4_0 | tee "$work/ggml.jsonl"
		awk -F'[:,]' '{ gsub(/"/, "") } FNR == NR { g[$2] = $4; next } { r8[$2] = $6 } END {
			printf "fused dot, 8-bit activations, ours / ggml vec_dot: q2_K %.2f, q4_K %.2f, q4_0 %.2f (goal >= 1)\n",
				r8["q2_K"] / g["q2_K"], r8["q4_K"] / g["q4_K"], r8["q4_0"] / g["q4_0"] }' "$work/ggml.jsonl" "$work/qdot.jsonl"
	else
		echo "ggml vec_dot: not measured (could not build bench/peer/ggml_qdot.c against $GGML_DIR: $(head -n 1 "$work/ggml.err"))"
	fi
else
	echo "ggml vec_dot: not measured (set GGML_DIR to a ggml source tree built with cmake)"
fi

# --- teacher-gen against a PyTorch generation loop with a KV cache (same shapes, same threads) ---
TGEN_THREADS=$threads sh "$top/bench/tgen.sh" "$work/model.msgpack" "$work/w4w2.msgpack" "$config"
stories=$top/../shared/models/stories260K/stories260K.bin
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1

# --- evalrun: three stories260K models on the dev data, and mc items/s against a PyTorch loop ---
if [ -f "$stories" ]; then
	data=$top/../shared/data
	"$bin/qpack" -p f32 -o "$work/fp.msgpack" "$stories" 2>/dev/null
	"$bin/qpack" -q rtn -o "$work/rtn.msgpack" "$work/fp.msgpack" 2>/dev/null
	"$bin/qpack" -q mse -o "$work/mse.msgpack" "$work/fp.msgpack" 2>/dev/null
	t0=$(secs)
	"$bin/evalrun" -t "$threads" --task "ppl:$data/tinystories/dev.txt" --task "mc:$data/mc/tinystories_cloze.jsonl" \
		--task "lastword:$data/tinystories/lastword.jsonl" --fp "$work/fp.msgpack" --quant "$work/rtn.msgpack" \
		--recovered "$work/mse.msgpack" > /dev/null
	t1=$(secs)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "evalrun, 3 stories260K models x (ppl + KL over dev.txt, cloze, lastword): %.1f s (goal <= 60)\n", b - a }'
	head -n 300 "$data/mc/tinystories_cloze.jsonl" > "$work/cloze300.jsonl"
	for r in 1 2 3; do
		t0=$(secs)
		"$bin/evalrun" -t "$threads" --task "mc:$work/cloze300.jsonl" "$work/fp.msgpack" > /dev/null
		t1=$(secs)
		echo "$t0 $t1"
	done | awk '{ print 300 / ($2 - $1) }' | sort -n | sed -n 2p > "$work/ours_items"
	if [ "$have_torch" = 1 ]; then
		pt=$(/usr/bin/python3 "$top/bench/torch_eval.py" "$stories" "$work/cloze300.jsonl" --items 300 --threads "$threads")
		awk -v a="$(cat "$work/ours_items")" -v b="$(get "$pt" items_per_s)" 'BEGIN {
			printf "evalrun mc items/s (300 cloze items, stories260K): ours %.1f, PyTorch loop %.1f: %.2f x\n", a, b, a / b }'
	else
		echo "evalrun mc items/s: ours $(cat "$work/ours_items"); PyTorch not measured (no python3-torch)"
	fi
fi

# --- tokenizers: encode speed of Qwen3's byte-level BPE and tok512 on the dev text ---
qwen3_tok=$top/../shared/data/tokenizers/qwen3
if [ -f "$qwen3_tok/tokenizer.json" ] && [ -f "$top/../shared/models/stories260K/tok512.bin" ]; then
	"$top/bench/tokenizer_speed" "$top/../shared/data/tinystories/dev.txt" "$qwen3_tok" \
		"$top/../shared/models/stories260K/tok512.bin"
fi

# --- import of a Hugging Face directory: a random Qwen3-0.6B-shape model in bf16 safetensors to an f32 stream ---
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	/usr/bin/python3 "$top/bench/hf_random.py" "$config" "$work/hf" > /dev/null
	t0=$(secs)
	rss_hf=$("$top/bench/maxrss" "$bin/qpack" -p f32 -o "$work/hf.msgpack" "$work/hf" 2>/dev/null)
	t1=$(secs)
	awk -v r="$rss_hf" -v s="$(wc -c < "$work/hf.msgpack")" -v a="$t0" -v b="$t1" 'BEGIN {
		printf "HF bf16 import: peak RSS / f32 stream size %.3f (goal <= 1.2), %.0f MB/s of f32 written\n", r / s, s / 1e6 / (b - a) }'
	rm -rf "$work/hf" "$work/hf.msgpack"
else
	echo "HF bf16 import: not measured (no python3-numpy)"
fi

# --- distill: training tokens/s against PyTorch, FLOP/s against sgemm, peak RSS (bench/distill.sh) ---
sh "$top/bench/distill.sh"

# --- roofline: predicted / measured decode tokens/s of 0.6B and 1.7B shapes (bench/roofline_check.sh) ---
# BENCH_ROOFLINE=0 leaves it out (it makes six random models, up to 6.8 GB each)
[ "${BENCH_ROOFLINE:-1}" = 0 ] || BENCH_THREADS=$threads sh "$top/bench/roofline_check.sh"
