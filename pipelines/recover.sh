#!/bin/sh
# recover.sh [MODEL] [OUTDIR]: the whole recovery pipeline on one model.
#
# It imports the model into a full-precision model stream (the teacher),
# quantizes it W4/W2-GateUp (the student; $RECOVER_POLICY and
# $RECOVER_QUANTIZER change that), samples synthetic training data from the
# teacher with its top-k logits (teacher-gen; $RECOVER_SAMPLES of up to
# $RECOVER_LEN tokens, the top $RECOVER_TOPK logits of each), trains LoRA
# adapters on the student by distillation (distill; $RECOVER_RANK,
# $RECOVER_EPOCHS, $RECOVER_LR, $RECOVER_INIT), and measures the
# three with evalrun: perplexity and KL/top-1 agreement against the teacher on
# the evaluation text, and, for stories260K's data, the TinyStories cloze and
# last-word tasks, with the recovery table; and packs the student, its adapter
# and the results into a recovery pack (lora-merge --pack), out/recovery.tar.
#
# MODEL defaults to $RECOVER_MODEL, else ../shared/models/stories260K (found
# relative to this script, not the caller's directory), else a small seeded
# random model that qpack makes (its figures describe nothing but the code).
# OUTDIR defaults to out/ beside the repository's Makefile. Outputs are written
# atomically, and a rerun reuses the stages whose outputs are complete.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
shared=${SHARED:-$top/../shared}
model=${1:-${RECOVER_MODEL:-}}
out=${2:-$top/out}

say() { echo "recover: $*" >&2; }
rl_name=recover
. "$here/lib.sh"

sh "$top/.ci/deps.sh"
make -s -C "$top" all >&2
bin=$top/bin
mkdir -p "$out"

[ -n "$model" ] || model=$(rl_default_model "$out")
text=${RECOVER_TEXT:-$shared/data/tinystories/dev.txt}
[ -f "$text" ] || { say "no evaluation text at $text (set RECOVER_TEXT)"; exit 1; }

# stage STEP NAME OUTPUT STAMP COMMAND...: runs COMMAND (which writes OUTPUT,
# its stderr to OUTPUT's .log) unless OUTPUT is complete (a stream ends with an
# end message, which tsdump checks) and was made from the same inputs and
# settings (STAMP, kept beside it) while every stage before it was reused too.
# Sets reused=0 when it runs.
reused=1
stage() {
	step=$1 name=$2 output=$3 stamp=$4
	shift 4
	if [ "$reused" = 1 ] && [ -s "$output" ] && [ "$(cat "$output.from" 2>/dev/null)" = "$stamp" ] &&
		"$bin/tsdump" "$output" >/dev/null 2>&1; then
		say "[$step/6] $name: reusing $output"
		return
	fi
	reused=0
	say "[$step/6] $name: $(basename "$1") $(shift; echo "$*")"
	rm -f "$output.from"
	"$@" 2>"${output%.msgpack}.log" || { cat "${output%.msgpack}.log" >&2; exit 1; }
	tail -n 1 "${output%.msgpack}.log" >&2
	printf '%s\n' "$stamp" > "$output.from"
}

# 1: the teacher, from the same model file (its path, size and modification time); never reused from stdin
teacher=$out/teacher.msgpack
[ "$model" != - ] || reused=0
stage 1 import "$teacher" "$model $(stat -L -c '%s %Y' "$model" 2>/dev/null || echo missing)" \
	"$bin/qpack" -p f32 -o "$teacher" "$model"

# 2: the student
policy=${RECOVER_POLICY:-w4w2}
quantizer=${RECOVER_QUANTIZER:-mse}
student=$out/student.msgpack
stage 2 quantize "$student" "$policy $quantizer" "$bin/qpack" -p "$policy" -q "$quantizer" -o "$student" "$teacher"

# 3: synthetic data from the teacher
# (defaults from doc/distill.md: 10,000 samples reach further than more
# epochs over fewer; the top 16 logits do as well as 64 in a quarter of the bytes)
nsamples=${RECOVER_SAMPLES:-10000}
slen=${RECOVER_LEN:-256}
topk=${RECOVER_TOPK:-16}
samples=$out/samples.msgpack
stage 3 synthesize "$samples" "$nsamples $slen $topk" \
	"$bin/teacher-gen" -n "$nsamples" --max-len "$slen" -k "$topk" --seed 1 -o "$samples" "$teacher"

# 4: the adapters (rank 4 on ffn_gate and ffn_up: 3.6% of stories260K's
# parameters; svd init starts from the quantization residual, which needs the teacher)
rank=${RECOVER_RANK:-4}
epochs=${RECOVER_EPOCHS:-2}
lr=${RECOVER_LR:-0.01}
init=${RECOVER_INIT:-svd}
adapter=$out/adapter.msgpack
stage 4 distill "$adapter" "$rank $epochs $lr $init" \
	"$bin/distill" -r "$rank" --epochs "$epochs" --lr "$lr" --init "$init" --teacher "$teacher" \
	--samples "$samples" -o "$adapter" "$student"

# stage 5: evaluate; the cloze and last-word tasks are TinyStories', so only for models of its vocabulary
tasks="--task ppl:$text"
# ($RECOVER_TASKS=ppl keeps only the perplexity, =tinystories adds them for any model)
if [ "${RECOVER_TASKS:-}" != ppl ] && { [ "$(basename "$model")" = stories260K.bin ] || [ "${RECOVER_TASKS:-}" = tinystories ]; }; then
	tasks="$tasks --task mc:$shared/data/mc/tinystories_cloze.jsonl --task lastword:$shared/data/tinystories/lastword.jsonl"
fi
say "[5/6] evaluate: $tasks"
# shellcheck disable=SC2086 # tasks holds several words on purpose
"$bin/evalrun" $tasks --fp "$teacher" --quant "$student" --recovered "$student+$adapter" -o "$out/results.msgpack" \
	> "$out/results.txt.tmp"
mv "$out/results.txt.tmp" "$out/results.txt"

# 6: the recovery pack: the student as trained against, its adapter, the results
say "[6/6] pack: lora-merge --pack $out/recovery.tar"
"$bin/lora-merge" --pack "$out/recovery.tar" --results "$out/results.msgpack" "$student" "$adapter" 2>"$out/recovery.log" ||
	{ cat "$out/recovery.log" >&2; exit 1; }
"$bin/lora-merge" --verify "$out/recovery.tar" > /dev/null
cat "$out/results.txt"
say "done: $out/recovery.tar (the student, its adapter and the results; lora-merge --verify checks it), and beside it teacher.msgpack, student.msgpack, samples.msgpack, adapter.msgpack, results.txt and results.msgpack (logs too)"
