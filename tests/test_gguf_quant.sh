#!/bin/sh
# test_gguf_quant.sh: ggml's block formats end to end on a small random model
# whose rows are multiples of 256 (stories260K's rows of 64 and 172 fit no
# K-quant): qpack stores them, tools run the model, and the model runs on
# exactly the weights the format dequantizes to.
. "$(dirname "$0")/lib.sh"
STORIES=$SHARED/models/stories260K/stories260K.bin
TOK=$SHARED/models/stories260K/tok512.bin
DEV=$SHARED/data/tinystories/dev.txt

cat > "$TMP/cfg.json" <<'EOF'
{"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}
EOF
check gguf_random_model "$BIN/qpack" --random "$TMP/cfg.json" --seed 3 -p f32 -o "$TMP/f32.msgpack"
check gguf_qpack_q4_K "$BIN/qpack" -p q4_K -o "$TMP/q4k.msgpack" "$TMP/f32.msgpack"
check gguf_qpack_w4w2_K "$BIN/qpack" -p 'q4_K;ffn_gate,ffn_up=q2_K' -o "$TMP/w42.msgpack" "$TMP/f32.msgpack"
"$BIN/tsdump" "$TMP/w42.msgpack" > "$TMP/w42.jsonl" 2>&1
if grep -q '"name":"blk.1.ffn_up.weight","dtype":"q2_K"' "$TMP/w42.jsonl" &&
	grep -q '"name":"blk.1.ffn_down.weight","dtype":"q4_K"' "$TMP/w42.jsonl" &&
	grep '"name":"blk.0.ffn_gate.weight"' "$TMP/w42.jsonl" | grep -q '"bpw":2.625'; then
	pass gguf_stream_dtypes
else
	fail gguf_stream_dtypes "tsdump does not show q2_K gate/up at 2.625 bpw and q4_K down: $(head -c 200 "$TMP/w42.jsonl")"
fi

# the quantized model scores exactly as its dequantized f32 copy, and not as the original
if [ -f "$TOK" ] && [ -f "$DEV" ]; then
	head -c 2000 "$DEV" > "$TMP/dev.txt"
	check gguf_dequantized_copy "$BIN/qpack" -p f32 -o "$TMP/deq.msgpack" "$TMP/w42.msgpack"
	"$BIN/evalrun" --json --task "ppl:$TMP/dev.txt" --tokenizer "$TOK" "$TMP/w42.msgpack" "$TMP/deq.msgpack" \
		"$TMP/f32.msgpack" "$TMP/q4k.msgpack" > "$TMP/ppl.json" 2>"$TMP/ppl.err"
	nll() { grep "\"model\":\"$TMP/$1\"" "$TMP/ppl.json" | grep '"metric":"nll"' | sed 's/.*"value":\([^,]*\),.*/\1/'; }
	a=$(nll w42.msgpack) b=$(nll deq.msgpack) c=$(nll f32.msgpack) d=$(nll q4k.msgpack)
	if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && [ -n "$d" ] && [ "$d" != "$c" ]; then
		pass gguf_model_runs_on_its_weights
	else
		fail gguf_model_runs_on_its_weights "nll w4w2-K '$a', its f32 copy '$b', f32 '$c', q4_K '$d': $(head -c 200 "$TMP/ppl.err")"
	fi
else
	skip gguf_model_runs_on_its_weights "no $TOK or $DEV"
fi
check gguf_teacher_gen "$BIN/teacher-gen" -n 2 --min-len 8 --max-len 12 -o "$TMP/s.msgpack" "$TMP/w42.msgpack"
# --importance: the k-quants take ggml's importance-matrix quantizers (their bytes are
# checked against ggml's in test_gguf_quant), so the stream changes
"$BIN/teacher-gen" -n 4 --max-len 32 -o "$TMP/calib.msgpack" "$TMP/f32.msgpack" 2>/dev/null
if "$BIN/qpack" --importance "$TMP/calib.msgpack" -p 'q4_K;ffn_gate,ffn_up=q2_K' -o "$TMP/w42i.msgpack" \
	"$TMP/f32.msgpack" 2>"$TMP/imp.err" && ! cmp -s "$TMP/w42.msgpack" "$TMP/w42i.msgpack"; then
	pass gguf_importance
else
	fail gguf_importance "failed, or the same bytes as without importance: $(tail -n 2 "$TMP/imp.err")"
fi

# rows the blocks cannot hold: an error with a hint, and no output
if "$BIN/qpack" -p help | grep -q 'q4_0 q8_0 q4_K q2_K'; then pass gguf_policy_help; else fail gguf_policy_help "not listed"; fi
if [ -f "$STORIES" ]; then
	expect_fail gguf_row_hint 'blk\.0\.ffn_down\.weight: row length 172 is not a multiple of 256 \(q2_K\); use q2g32' \
		"$BIN/qpack" -p 'q4;ffn_down=q2_K' -o "$TMP/bad.msgpack" "$STORIES"
	no_output gguf_no_output_after_bad_row "$TMP/bad.msgpack"
else
	skip gguf_row_hint "no $STORIES"
fi
t_done
