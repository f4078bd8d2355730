#!/bin/sh
# test_hf.sh: the tools take Hugging Face model directories as model arguments,
# and refuse bad ones with exit status 1, a message naming the file, and no output.
. "$(dirname "$0")/lib.sh"
FIX=$TOP/tests/fixtures/hf

for d in llama qwen2 qwen3; do
	check "qpack_hf_$d" "$BIN/qpack" -p f32 -o "$TMP/$d.msgpack" "$FIX/$d"
done
# a bf16 directory quantized straight away, and read by the other tools
check qpack_hf_w4w2 "$BIN/qpack" -o "$TMP/q.msgpack" "$FIX/qwen3"
printf 'the theory of the thing\n\nin on a set\n' > "$TMP/text.txt"
if "$BIN/evalrun" --task "ppl:$TMP/text.txt" "$FIX/qwen3" "$TMP/qwen3.msgpack" > "$TMP/ev.out" 2>&1 &&
	[ "$(grep -c ' nll ' "$TMP/ev.out")" -ge 2 ]; then
	pass evalrun_hf_dir
else
	fail evalrun_hf_dir "$(tail -n 3 "$TMP/ev.out" | tr '\n' ' ')"
fi
# the directory and its f32 stream score the same
a=$(awk '$3 == "nll" { print $4 }' "$TMP/ev.out" | sort -u | wc -l)
if [ "$a" -eq 1 ]; then pass evalrun_hf_dir_equals_stream; else fail evalrun_hf_dir_equals_stream "$(cat "$TMP/ev.out")"; fi
if "$BIN/qpack" -p f32 "$FIX/llama" 2>&1 >/dev/null | grep -q 'no tokenizer.json: byte-level tokenizer'; then
	pass qpack_hf_says_byte_level_tokenizer
else
	fail qpack_hf_says_byte_level_tokenizer "no note of the byte-level tokenizer"
fi

# bad directories: exit 1, the file named, nothing left behind
cp -r "$FIX/qwen3" "$TMP/noshard"
rm "$TMP/noshard/model-00002-of-00002.safetensors"
expect_fail hf_missing_shard 'noshard/model-00002-of-00002.safetensors: No such file' \
	"$BIN/qpack" -p f32 -o "$TMP/out.msgpack" "$TMP/noshard"
no_output hf_missing_shard_no_output "$TMP/out.msgpack"
cp -r "$FIX/llama" "$TMP/rope"
sed 's/"rope_scaling": null/"rope_scaling": {"rope_type": "yarn", "factor": 8.0}/' "$FIX/llama/config.json" > "$TMP/rope/config.json"
expect_fail hf_rope_scaling 'rope/config.json: rope_scaling type "yarn" is not supported' \
	"$BIN/qpack" -p f32 -o "$TMP/out.msgpack" "$TMP/rope"
no_output hf_rope_scaling_no_output "$TMP/out.msgpack"
cp -r "$FIX/llama" "$TMP/trunc"
head -c 40000 "$FIX/llama/model.safetensors" > "$TMP/trunc/model.safetensors"
expect_fail hf_truncated 'trunc/model.safetensors: tensor .* out of range' \
	"$BIN/qpack" -p f32 -o "$TMP/out.msgpack" "$TMP/trunc"
no_output hf_truncated_no_output "$TMP/out.msgpack"
expect_fail hf_teacher_gen_bad_dir 'trunc/model.safetensors' "$BIN/teacher-gen" -n 1 "$TMP/trunc"

# GGUF files through the tools: they load (the same NLL as the HF directory they
# were written from), and a damaged one fails cleanly leaving nothing behind
printf 'Once upon a time there was a cat.\n\nThe cat sat on a mat.\n' > "$TMP/t.txt"
a=$("$BIN/evalrun" --json --task "ppl:$TMP/t.txt" "$FIX/qwen3" | sed -n 's/.*"metric":"nll","value":\([^,]*\).*/\1/p')
b=$("$BIN/evalrun" --json --task "ppl:$TMP/t.txt" "$TOP/tests/fixtures/gguf/qwen3.gguf" | sed -n 's/.*"metric":"nll","value":\([^,]*\).*/\1/p')
if [ -n "$a" ] && [ "$a" = "$b" ]; then pass gguf_evalrun_same_nll; else fail gguf_evalrun_same_nll "HF $a, GGUF $b"; fi
head -c 5000 "$TOP/tests/fixtures/gguf/llama.gguf" > "$TMP/cut.gguf"
expect_fail gguf_cut_tool 'cut.gguf: ' "$BIN/qpack" -p f32 -o "$TMP/out.msgpack" "$TMP/cut.gguf"
no_output gguf_cut_tool_no_output "$TMP/out.msgpack"
printf 'GGUF\011\0\0\0' > "$TMP/v9.gguf"
expect_fail gguf_bad_version_tool 'v9.gguf: GGUF version 9' "$BIN/evalrun" --task "ppl:$TMP/t.txt" "$TMP/v9.gguf"
t_done
