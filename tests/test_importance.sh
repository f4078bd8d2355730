#!/bin/sh
# test_importance.sh: qpack --importance SAMPLES, activation statistics from
# the teacher's own samples weighting the mse quantizer's error.
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
"$BIN/qpack" -p f32 -o "$TMP/fp.msgpack" "$MODEL" 2>/dev/null
"$BIN/teacher-gen" -n 16 --max-len 96 --seed 5 -o "$TMP/s.msgpack" "$TMP/fp.msgpack" 2>/dev/null
check importance_runs "$BIN/qpack" --importance "$TMP/s.msgpack" -o "$TMP/qi.msgpack" "$TMP/fp.msgpack"
"$BIN/qpack" -o "$TMP/q.msgpack" "$TMP/fp.msgpack" 2>/dev/null
head -c 30000 "$SHARED/data/tinystories/dev.txt" > "$TMP/dev.txt"
kl() { "$BIN/evalrun" --json --task "ppl:$TMP/dev.txt" --reference "$TMP/fp.msgpack" "$1" | grep '"metric":"kld"' | sed 's/.*"value":\([^,]*\),.*/\1/'; }
a=$(kl "$TMP/q.msgpack"); b=$(kl "$TMP/qi.msgpack")
# the weighting changes what is chosen, and on the teacher's own data it does not hurt
if ! cmp -s "$TMP/q.msgpack" "$TMP/qi.msgpack" && awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > 0 && b <= a * 1.01) }'; then
	pass importance_helps
else
	fail importance_helps "KL to the teacher: mse $a, mse with importance $b"
fi
cat > "$TMP/tiny.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 512,
 "max_position_embeddings": 64, "rope_theta": 10000, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
"$BIN/qpack" --random "$TMP/tiny.json" --seed 1 -o "$TMP/r.msgpack" 2>/dev/null
expect_fail importance_wrong_teacher "samples of teacher .* this model's source" "$BIN/qpack" --importance "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/r.msgpack"
no_output importance_wrong_teacher_no_output "$TMP/x.msgpack"
expect_fail importance_not_samples "a model stream, not samples" "$BIN/qpack" --importance "$TMP/fp.msgpack" -o "$TMP/x.msgpack" "$TMP/fp.msgpack"
"$BIN/qpack" -q rtn --importance "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/fp.msgpack" 2>"$TMP/rtn.err"
if grep -q "rtn quantizer does not use it" "$TMP/rtn.err"; then pass importance_rtn_warns; else fail importance_rtn_warns "$(cat "$TMP/rtn.err" | tail -n 2)"; fi
t_done
