#!/bin/sh
# test_pipeline.sh: the main job, pipelines/recover.sh, as a user runs it.
. "$(dirname "$0")/lib.sh"
R=$TOP/pipelines/recover.sh
export RECOVER_SAMPLES=8 RECOVER_LEN=64 RECOVER_EPOCHS=1
# an excerpt of the dev text keeps the evaluation short (test_tools.sh checks the whole text's NLL)
head -c 8000 "$SHARED/data/tinystories/dev.txt" > "$TMP/excerpt.txt"

# the default model, with no model argument
if SHARED=$SHARED RECOVER_TEXT=$TMP/excerpt.txt "$R" "" "$TMP/out" >"$TMP/r1.out" 2>"$TMP/r1.err" &&
	grep -q 'model: stories260K' "$TMP/r1.err" &&
	grep -Eq '^[^ ]*teacher.msgpack +fp +ppl:[^ ]+ +nll +1\.[0-9]+ ' "$TMP/out/results.txt" &&
	grep -Eq '^[^ ]*student.msgpack +quant +ppl:[^ ]+ +nll +[2-9]\.' "$TMP/out/results.txt" &&
	grep -Eq '^[^ ]*student.msgpack +quant +ppl:[^ ]+ +kld +[0-9.]+ ' "$TMP/out/results.txt" &&
	grep -Eq '^[^ ]*student.msgpack +quant +lastword:[^ ]+ +acc ' "$TMP/out/results.txt" &&
	grep -Eq '^[^ ]*teacher.msgpack +fp +mc:[^ ]+ +acc_norm ' "$TMP/out/results.txt" &&
	"$BIN/tsdump" "$TMP/out/results.msgpack" | grep -q '"metric":"kld"' &&
	grep -Eq 'adapter.msgpack +recovered +ppl:[^ ]+ +nll ' "$TMP/out/results.txt" &&
	grep -q '^recovery = ' "$TMP/out/results.txt" &&
	[ "$("$BIN/tsdump" "$TMP/out/samples.msgpack" | grep -c '"t":"sample"')" = 8 ]; then
	pass pipeline_default_model
else
	fail pipeline_default_model "$(tail -n 3 "$TMP/r1.err" | tr '\n' ' ') $(head -c 300 "$TMP/out/results.txt" 2>/dev/null)"
fi
# it ends with a recovery pack that checks out and scores as the student with its adapter
nll_of() { "$BIN/evalrun" --task "ppl:$TMP/excerpt.txt" --json "$1" 2>/dev/null | sed -n 's/.*"metric":"nll","value":\([0-9.eE+-]*\).*/\1/p'; }
if "$BIN/lora-merge" --verify "$TMP/out/recovery.tar" >/dev/null 2>&1 && grep -q '\[6/6\] pack' "$TMP/r1.err" &&
	[ -n "$(nll_of "$TMP/out/recovery.tar")" ] &&
	[ "$(nll_of "$TMP/out/recovery.tar")" = "$(nll_of "$TMP/out/student.msgpack+$TMP/out/adapter.msgpack")" ]; then
	pass pipeline_recovery_pack
else
	fail pipeline_recovery_pack "$(grep pack "$TMP/r1.err" | tail -n 2 | tr '\n' ' ')"
fi

# a rerun reuses the complete import
if SHARED=$SHARED RECOVER_TASKS=ppl RECOVER_TEXT=$TMP/excerpt.txt "$R" "" "$TMP/out" >/dev/null 2>"$TMP/r2.err" &&
	grep -q 'import: reusing' "$TMP/r2.err" && grep -q 'distill: reusing' "$TMP/r2.err"; then
	pass pipeline_rerun_reuses
else
	fail pipeline_rerun_reuses "$(tail -n 3 "$TMP/r2.err" | tr '\n' ' ')"
fi

# another model in the same directory is imported afresh, never mistaken for the first
cat > "$TMP/cfg.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256}
JSON
"$BIN/qpack" -p f32 --random "$TMP/cfg.json" --seed 3 -o "$TMP/rand.msgpack" 2>/dev/null
if SHARED=$SHARED RECOVER_TEXT=$TMP/excerpt.txt "$R" "$TMP/rand.msgpack" "$TMP/out" >/dev/null 2>"$TMP/r3.err" &&
	! grep -q 'reusing' "$TMP/r3.err" && ! grep -q 'teacher.msgpack *fp *ppl:[^ ]* *nll *1\.' "$TMP/out/results.txt"; then
	pass pipeline_other_model_not_reused
else
	fail pipeline_other_model_not_reused "$(tail -n 3 "$TMP/r3.err" | tr '\n' ' ')"
fi

# without ../shared's model it falls back to a seeded random model, and says so
mkdir -p "$TMP/noshared"
if SHARED=$TMP/noshared RECOVER_TEXT=$TMP/excerpt.txt "$R" "" "$TMP/out2" >/dev/null 2>"$TMP/r4.err" &&
	grep -q 'RANDOM-WEIGHT' "$TMP/r4.err" && grep -q ' ppl ' "$TMP/out2/results.txt"; then
	pass pipeline_random_fallback
else
	fail pipeline_random_fallback "$(tail -n 3 "$TMP/r4.err" | tr '\n' ' ')"
fi
t_done
