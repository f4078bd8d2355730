#!/bin/sh
# recover.sh [MODEL] [OUTDIR]: the whole recovery pipeline on one model.
#
# This version runs the stages that exist so far: it imports the model into a
# full-precision model stream (the teacher), quantizes it W4/W2-GateUp (the
# student; $RECOVER_POLICY and $RECOVER_QUANTIZER change that), and measures
# both perplexities (evalrun). Synthetic data, distillation and the recovery
# pack join as their tools land.
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

sh "$top/.ci/deps.sh"
make -s -C "$top" all >&2
bin=$top/bin
mkdir -p "$out"

if [ -z "$model" ]; then
	if [ -f "$shared/models/stories260K/stories260K.bin" ]; then
		model=$shared/models/stories260K/stories260K.bin
		say "model: stories260K ($model)"
	else
		cat > "$out/random-config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512}
JSON
		if [ ! -s "$out/random.msgpack" ]; then
			"$bin/qpack" -p f32 --random "$out/random-config.json" --seed 1 -o "$out/random.msgpack"
		fi
		model=$out/random.msgpack
		say "model: no stories260K at $shared/models; using a RANDOM-WEIGHT model (seed 1): figures below describe no real model"
	fi
fi
text=${RECOVER_TEXT:-$shared/data/tinystories/dev.txt}
[ -f "$text" ] || { say "no evaluation text at $text (set RECOVER_TEXT)"; exit 1; }

# stage 1: import (reused when complete: streams end with an end message, which tsdump checks)
# and made from the same model file (its path, size and modification time).
teacher=$out/teacher.msgpack
stamp="$model $(stat -L -c '%s %Y' "$model" 2>/dev/null || echo missing)"
if [ "$model" != - ] && [ -s "$teacher" ] && [ "$(cat "$teacher.from" 2>/dev/null)" = "$stamp" ] &&
	"$bin/tsdump" "$teacher" >/dev/null 2>&1; then
	say "[1/3] import: reusing $teacher"
	reused=1
else
	say "[1/3] import: qpack -p f32 $model"
	rm -f "$teacher.from"
	"$bin/qpack" -p f32 -o "$teacher" "$model"
	printf '%s\n' "$stamp" > "$teacher.from"
	reused=0
fi

# stage 2: quantize (reused only when the teacher was and the policy is the same)
policy=${RECOVER_POLICY:-w4w2}
quantizer=${RECOVER_QUANTIZER:-mse}
student=$out/student.msgpack
if [ "$reused" = 1 ] && [ -s "$student" ] && [ "$(cat "$student.from" 2>/dev/null)" = "$policy $quantizer" ] &&
	"$bin/tsdump" "$student" >/dev/null 2>&1; then
	say "[2/3] quantize: reusing $student"
else
	say "[2/3] quantize: qpack -p '$policy' -q $quantizer"
	rm -f "$student.from"
	"$bin/qpack" -p "$policy" -q "$quantizer" -o "$student" "$teacher" 2>"$out/qpack.log" ||
		{ cat "$out/qpack.log" >&2; exit 1; }
	tail -n 1 "$out/qpack.log" >&2
	printf '%s\n' "$policy $quantizer" > "$student.from"
fi

# stage 3: evaluate
say "[3/3] evaluate: perplexity on $text"
"$bin/evalrun" --task "ppl:$text" "$teacher" "$student" > "$out/results.txt.tmp"
mv "$out/results.txt.tmp" "$out/results.txt"
cat "$out/results.txt"
say "done: $out/teacher.msgpack, $out/student.msgpack, $out/results.txt (per-tensor errors in $out/qpack.log)"
