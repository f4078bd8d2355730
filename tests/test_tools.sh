#!/bin/sh
# test_tools.sh: the tools end to end on stories260K, and their answers to bad input.
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
DEV=$SHARED/data/tinystories/dev.txt

# --- import and inspect ---
check qpack_import "$BIN/qpack" -p f32 -o "$TMP/m.msgpack" "$MODEL"
check qpack_import_stdout sh -c "'$BIN/qpack' -p f32 '$MODEL' > '$TMP/m2.msgpack'"
if cmp -s "$TMP/m.msgpack" "$TMP/m2.msgpack"; then pass qpack_deterministic; else fail qpack_deterministic "two imports differ"; fi
check qpack_restream sh -c "'$BIN/qpack' -p f32 - < '$TMP/m.msgpack' > '$TMP/m3.msgpack'"
if cmp -s "$TMP/m.msgpack" "$TMP/m3.msgpack"; then pass qpack_stream_to_stream_identical; else fail qpack_stream_to_stream_identical "re-packing a stream changed it"; fi
check qpack_f16 "$BIN/qpack" -p f16 -o "$TMP/m16.msgpack" "$MODEL"
check qpack_bf16 "$BIN/qpack" -p bf16 -o "$TMP/mbf16.msgpack" "$MODEL"
s32=$(wc -c < "$TMP/m.msgpack"); s16=$(wc -c < "$TMP/m16.msgpack")
if [ "$s16" -lt $((s32 * 6 / 10)) ]; then pass qpack_f16_smaller; else fail qpack_f16_smaller "f16 stream $s16 bytes vs f32 $s32"; fi

"$BIN/tsdump" "$TMP/m.msgpack" > "$TMP/dump.jsonl" 2>"$TMP/dump.err"
if [ $? -eq 0 ] && head -n 1 "$TMP/dump.jsonl" | grep -q '"t":"header"' &&
	grep -q '"name":"blk.4.ffn_up.weight"' "$TMP/dump.jsonl" && tail -n 1 "$TMP/dump.jsonl" | grep -q '"t":"end"'; then
	pass tsdump_model
else
	fail tsdump_model "$(head -c 300 "$TMP/dump.err")"
fi
# the header records where the tensors came from; the f16 stream keeps the same source
src32=$(head -n 1 "$TMP/dump.jsonl" | sed 's/.*"source":"\([0-9a-f]*\)".*/\1/')
src16=$("$BIN/tsdump" "$TMP/m16.msgpack" | head -n 1 | sed 's/.*"source":"\([0-9a-f]*\)".*/\1/')
if [ ${#src32} -eq 64 ] && [ "$src32" = "$src16" ]; then pass source_identity_kept; else fail source_identity_kept "'$src32' vs '$src16'"; fi
# tensor summaries and --data
if grep '"name":"output_norm.weight"' "$TMP/dump.jsonl" | grep -q '"min":.*"max":.*"mean":.*"sha256":'; then pass tsdump_summary; else fail tsdump_summary "no min/max/mean/sha256"; fi
n=$("$BIN/tsdump" --data "$TMP/m.msgpack" | grep '"name":"output_norm.weight"' | sed 's/.*"data":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | wc -l)
if [ "$n" -eq 64 ]; then pass tsdump_data; else fail tsdump_data "output_norm has $n values, want 64"; fi
if "$BIN/tsdump" --text "$TMP/m.msgpack" | grep '"t":"tokenizer"' | grep -q '"<0x0A>"'; then pass tsdump_text_pieces; else fail tsdump_text_pieces "no pieces as text"; fi

# --- quantization policies ---
if "$BIN/qpack" -p help | grep -q 'policy := rule' && "$BIN/qpack" -p help | grep -q 'q2g32'; then pass qpack_policy_help; else fail qpack_policy_help "no grammar or formats"; fi
expect_fail bad_policy_format 'unknown format "q9" at character 13' "$BIN/qpack" -p 'q4;ffn_gate=q9' -o "$TMP/out.msgpack" "$MODEL"
expect_fail bad_quantizer 'unknown quantizer' "$BIN/qpack" -q best -o "$TMP/out.msgpack" "$MODEL"
no_output no_output_after_bad_policy "$TMP/out.msgpack"
if "$BIN/qpack" -p 'q4;blk.7.ffn_up=q2' -o "$TMP/q4.msgpack" "$MODEL" 2>"$TMP/warn.err" &&
	grep -q 'blk.7.ffn_up.*matches no tensor' "$TMP/warn.err"; then
	pass qpack_unmatched_target_warns
else
	fail qpack_unmatched_target_warns "$(head -c 300 "$TMP/warn.err")"
fi
"$BIN/qpack" -o "$TMP/w4w2.msgpack" "$MODEL" 2>"$TMP/w4w2.err"
"$BIN/tsdump" "$TMP/w4w2.msgpack" > "$TMP/w4w2.jsonl" 2>&1
if grep '"name":"blk.0.ffn_gate.weight"' "$TMP/w4w2.jsonl" | grep -q '"dtype":"q2g32".*"stats":{"bpw":3,.*"sqnr_db":' &&
	grep '"name":"blk.0.attn_q.weight"' "$TMP/w4w2.jsonl" | grep -q '"dtype":"q4g32"' &&
	grep '"name":"token_embd.weight"' "$TMP/w4w2.jsonl" | grep -q '"dtype":"q8g32"' &&
	grep '"name":"blk.0.attn_norm.weight"' "$TMP/w4w2.jsonl" | grep -q '"dtype":"f32"' &&
	grep -q 'blk.0.ffn_gate.weight *q2g32 *mse *3.00 bpw' "$TMP/w4w2.err"; then
	pass qpack_w4w2_default
else
	fail qpack_w4w2_default "$(head -c 300 "$TMP/w4w2.err")"
fi
# the better quantizer must remove at least 30% of round-to-nearest's NLL increase
"$BIN/qpack" -q rtn -o "$TMP/w4w2rtn.msgpack" "$MODEL" 2>/dev/null
nll() { "$BIN/evalrun" --task "ppl:$DEV" "$1" 2>&1 | awk '$3 == "nll" { print $4 }'; }
n_mse=$(nll "$TMP/w4w2.msgpack"); n_rtn=$(nll "$TMP/w4w2rtn.msgpack")
if awk -v m="$n_mse" -v r="$n_rtn" 'BEGIN { f = 1.5542; exit !(m > f && r > m && (r - m) >= 0.3 * (r - f)) }'; then
	pass quantizer_mse_recovers_30pct_of_rtn
else
	fail quantizer_mse_recovers_30pct_of_rtn "w4w2 NLL mse '$n_mse', rtn '$n_rtn', f32 1.5542"
fi

# --- perplexity: the reference figure of DESIGN.md (1.5542 nats/token over 190,544 tokens) ---
"$BIN/evalrun" --task "ppl:$DEV" --json "$MODEL" > "$TMP/ppl.json" 2>"$TMP/ppl.err"
nll=$(sed -n 's/.*"metric":"nll","value":\([0-9.]*\).*"n":\([0-9]*\).*/\1 \2/p' "$TMP/ppl.json")
set -- $nll
if [ "${1:-}" != "" ] && [ "$(printf '%.4f' "$1")" = "1.5542" ] && [ "$2" = 190544 ]; then
	pass ppl_stories260K_reference
else
	fail ppl_stories260K_reference "got nll '${1:-}' over '${2:-}' tokens: $(head -c 300 "$TMP/ppl.err")"
fi
# a negative vocab size means a separate classifier after the weights: with the
# embeddings copied there the figure is unchanged; with zeros, every token has
# probability 1/512, so the NLL is ln 512 = 6.2383
untied() { # untied FILE CLASSIFIER-SOURCE
	{ head -c 20 "$MODEL"; printf '\000\376\377\377'; tail -c +25 "$MODEL"; cat "$2"; } > "$1"
}
tail -c +29 "$MODEL" | head -c 131072 > "$TMP/embd.bin"
head -c 131072 /dev/zero > "$TMP/zeros.bin"
untied "$TMP/untied.bin" "$TMP/embd.bin"
untied "$TMP/untied0.bin" "$TMP/zeros.bin"
cp "$SHARED/models/stories260K/tok512.bin" "$TMP/tok512.bin"
u1=$("$BIN/evalrun" --task "ppl:$DEV" "$TMP/untied.bin" 2>&1 | awk '$3 == "nll" { print $4 }')
u0=$("$BIN/evalrun" --task "ppl:$DEV" "$TMP/untied0.bin" 2>&1 | awk '$3 == "nll" { print $4 }')
if [ "$u1" = 1.5542 ] && [ "$u0" = 6.2383 ] &&
	"$BIN/qpack" "$TMP/untied.bin" 2>/dev/null | "$BIN/tsdump" | grep -q '"name":"output.weight"'; then
	pass llama2c_separate_classifier
else
	fail llama2c_separate_classifier "nll with the embeddings as classifier '$u1' (want 1.5542), with zeros '$u0' (want 6.2383)"
fi
"$BIN/evalrun" --task "ppl:$DEV" --json "$TMP/m.msgpack" > "$TMP/ppl2.json" 2>&1
if cmp -s "$TMP/ppl.json" "$TMP/ppl2.json" || [ "$(sed 's/"model":"[^"]*"//g' "$TMP/ppl.json")" = "$(sed 's/"model":"[^"]*"//g' "$TMP/ppl2.json")" ]; then
	pass ppl_stream_equals_checkpoint
else
	fail ppl_stream_equals_checkpoint "$(head -c 300 "$TMP/ppl2.json")"
fi
# windows: with a short context every token is still scored once
printf 'Once upon a time there was a cat. The cat liked to sleep in the sun all day long and dream of fish.\n\nTom had a red ball.\n' > "$TMP/two.txt"
a=$("$BIN/evalrun" --task "ppl:$TMP/two.txt" --json "$MODEL" | sed -n 's/.*"metric":"nll".*"n":\([0-9]*\).*/\1/p')
b=$("$BIN/evalrun" --task "ppl:$TMP/two.txt" --ctx 8 --json "$MODEL" | sed -n 's/.*"metric":"nll".*"n":\([0-9]*\).*/\1/p')
if [ -n "$a" ] && [ "$a" = "$b" ]; then pass ppl_windows_score_each_token_once; else fail ppl_windows_score_each_token_once "ctx 512: $a tokens, ctx 8: $b"; fi
if "$BIN/evalrun" --task "ppl:$TMP/two.txt" "$MODEL" | grep -q '^model .*task.*metric'; then pass evalrun_table; else fail evalrun_table "no table header"; fi

# --- random models ---
cat > "$TMP/tiny.json" <<'JSON'
{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300,
 "max_position_embeddings": 128, "rope_theta": 1000000, "rms_norm_eps": 1e-6, "tie_word_embeddings": true}
JSON
check qpack_random "$BIN/qpack" --random "$TMP/tiny.json" --seed 3 -o "$TMP/r1.msgpack"
"$BIN/qpack" --random "$TMP/tiny.json" --seed 3 -o "$TMP/r2.msgpack" 2>/dev/null
"$BIN/qpack" --random "$TMP/tiny.json" --seed 4 -o "$TMP/r3.msgpack" 2>/dev/null
if cmp -s "$TMP/r1.msgpack" "$TMP/r2.msgpack" && ! cmp -s "$TMP/r1.msgpack" "$TMP/r3.msgpack"; then pass random_seeded; else fail random_seeded "same seed differs or different seeds agree"; fi
check evalrun_random "$BIN/evalrun" --task "ppl:$TMP/two.txt" "$TMP/r1.msgpack"

# --- bad input: a clear error naming the input, exit 1, no output file left ---
head -c 100000 "$MODEL" > "$TMP/trunc.bin"
cp "$SHARED/models/stories260K/tok512.bin" "$TMP/tok512.bin"
expect_fail bad_truncated_checkpoint "trunc.bin.*truncated" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/trunc.bin"
no_output no_half_output "$TMP/out.msgpack"
# header fields: zero, negative, absurd, inconsistent with the file size
hdr() { # hdr FILE dim hidden layers heads kvheads vocab seqlen: a checkpoint with another header
	f=$1; shift
	printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(for v in "$@"; do v=$(( v & 0xffffffff )); echo $((v & 255)) $(((v >> 8) & 255)) $(((v >> 16) & 255)) $(((v >> 24) & 255)); done))" > "$f"
	tail -c +29 "$MODEL" >> "$f"
}
hdr "$TMP/zero.bin" 0 172 5 8 4 512 512
expect_fail bad_zero_dim "zero.bin.*dim = 0" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/zero.bin"
hdr "$TMP/neg.bin" 64 172 -5 8 4 512 512
expect_fail bad_negative_layers "neg.bin.*n_layers" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/neg.bin"
hdr "$TMP/huge.bin" 64 172 5 8 4 512 2000000000
expect_fail bad_absurd_seq_len "huge.bin.*seq_len" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/huge.bin"
hdr "$TMP/size.bin" 64 180 5 8 4 512 512
expect_fail bad_size_mismatch "size.bin.*bytes" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/size.bin"
hdr "$TMP/gqa.bin" 64 172 5 8 3 512 512
expect_fail bad_heads "gqa.bin.*n_kv_heads" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/gqa.bin"
head -c 3000 "$SHARED/models/stories260K/tok512.bin" > "$TMP/badtok.bin"
expect_fail bad_tokenizer "badtok.bin" "$BIN/qpack" --tokenizer "$TMP/badtok.bin" -o "$TMP/out.msgpack" "$MODEL"
mkdir -p "$TMP/lonely" && cp "$MODEL" "$TMP/lonely/"
expect_fail bad_no_tokenizer "no tokenizer.*--tokenizer" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/lonely/stories260K.bin"
no_output no_half_output_after_errors "$TMP/out.msgpack"
expect_fail bad_missing_file "nope.bin.*No such file" "$BIN/qpack" -o "$TMP/out.msgpack" "$TMP/nope.bin"
# streams: cut off, cut inside a message
size=$(wc -c < "$TMP/m.msgpack")
head -c $((size / 2)) "$TMP/m.msgpack" > "$TMP/cut.msgpack"
expect_fail bad_stream_cut "cut.msgpack.*cut" "$BIN/evalrun" --task "ppl:$TMP/two.txt" "$TMP/cut.msgpack"
expect_fail bad_stream_cut_tsdump "cut.msgpack.*cut" "$BIN/tsdump" "$TMP/cut.msgpack"
expect_fail bad_stream_cut_qpack "stdin.*cut" sh -c "'$BIN/qpack' -o '$TMP/out.msgpack' - < '$TMP/cut.msgpack'"
no_output no_output_from_cut_stream "$TMP/out.msgpack"
# the wrong kind of file, and usage errors
expect_fail bad_text_as_model "two.txt" "$BIN/evalrun" --task "ppl:$TMP/two.txt" "$TMP/two.txt"
"$BIN/qpack" -p f32 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass usage_error_exit_2 || fail usage_error_exit_2 "qpack without a model exited $rc"
"$BIN/qpack" -h | grep -q usage && pass help_exit_0 || fail help_exit_0 "qpack -h"
expect_fail bad_ppl_file "missing.txt" "$BIN/evalrun" --task "ppl:$TMP/missing.txt" "$MODEL"
t_done
