#!/bin/sh
# test_hf_export.sh: our Hugging Face and PEFT exports checked by code we did
# not write. tests/test_hf_export --make writes the exports and our logits;
# tests/ref/check_hf_export.py parses the safetensors files itself and runs an
# independent PyTorch forward pass (1e-4 relative); Hugging Face's tokenizers
# library (npm "tokenizers", its Rust code) encodes TinyStories' dev text
# with our tokenizer.json files to the ids our tokenizers give. Then the
# tools: MODEL+PEFTDIR scores as MODEL+ADAPTER does, and lora-merge --hf and
# --peft write what scores as the merged model and the adapter.
. "$(dirname "$0")/lib.sh"
S260=$SHARED/models/stories260K/stories260K.bin
PY=/usr/bin/python3

if [ ! -r "$S260" ]; then
	skip hf_export_make "no stories260K in $SHARED (set SHARED)"
	t_done
fi
if ! "$TOP/tests/test_hf_export" --make "$TMP" > "$TMP/make.log" 2>&1; then
	fail hf_export_make "$(tail -n 3 "$TMP/make.log" | tr '\n' ' ')"
	t_done
fi
pass hf_export_make

# PyTorch: the safetensors layout, HF's names, and the logits
if "$PY" -c 'import torch' 2>/dev/null; then
	"$PY" "$TOP/tests/ref/check_hf_export.py" "$TMP" || T_FAILED=1
else
	skip hf_export_pytorch "Debian's python3-torch is not installed (make deps installs it)"
fi

# Hugging Face's tokenizers: the same ids as ours on every document
mod=$(npm_modules tokenizers)
if ! command -v node >/dev/null || [ -z "$mod" ]; then
	why="node or the npm package tokenizers is missing (.ci/deps.sh installs it in build/npm)"
	if [ "${CI:-}" = true ]; then fail hf_tokenizers_library "$why"; else skip hf_tokenizers_library "$why"; fi
else
	for t in s260 qwen3tok; do
		[ -f "$TMP/$t/tokenizer.json" ] || { skip "hf_tokenizers_${t}_same_ids" "no $t export (no ../shared/data/tokenizers/qwen3?)"; continue; }
		if NODE_PATH=$mod node "$TOP/tests/ref/hf_tokenizer_ids.js" "$TMP/$t/tokenizer.json" "$TMP/docs.json" \
			> "$TMP/$t.hf.ids" 2> "$TMP/$t.hf.err" && cmp -s "$TMP/$t.hf.ids" "$TMP/$t.ids"; then
			pass "hf_tokenizers_${t}_same_ids"
			echo "# $t: Hugging Face's tokenizers gives our ids for all $(wc -l < "$TMP/$t.ids") documents"
		else
			fail "hf_tokenizers_${t}_same_ids" "$(head -c 200 "$TMP/$t.hf.err") $(cmp "$TMP/$t.hf.ids" "$TMP/$t.ids" 2>&1)"
		fi
	done
fi

# our own loader through the tools: an exported directory is a model argument,
# and MODEL+PEFTDIR is the model with the adapter attached
printf 'Once upon a time there was a cat.\n\nThe cat sat on a mat. It was happy.\n' > "$TMP/t.txt"
nll() { "$BIN/evalrun" --json --task "ppl:$TMP/t.txt" "$1" | sed -n 's/.*"metric":"nll","value":\([^,]*\).*/\1/p'; }
a=$(nll "$S260+$TMP/s260_peft")
b=$(nll "$S260+$TMP/s260_adapter.msgpack")
c=$(nll "$S260")
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]; then
	pass evalrun_model_plus_peft_dir
else
	fail evalrun_model_plus_peft_dir "PEFT dir $a, adapter stream $b, no adapter $c"
fi
a=$(nll "$TMP/s260_base")
if [ -n "$a" ] && awk -v a="$a" -v c="$c" 'BEGIN { d = a - c; exit !(d < 1e-5 && d > -1e-5) }'; then
	pass evalrun_hf_export_same_nll
else
	fail evalrun_hf_export_same_nll "exported $a, stories260K $c"
fi
check teacher_gen_model_plus_peft_dir "$BIN/teacher-gen" -n 2 --max-len 16 -o "$TMP/s.msgpack" "$S260+$TMP/s260_peft"
# distill reads a PEFT adapter back as its starting point: with no epochs it
# writes that adapter, which scores as the directory does
"$BIN/teacher-gen" -n 2 --max-len 16 -o "$TMP/s2.msgpack" "$S260" 2>/dev/null
if "$BIN/distill" --init "$TMP/s260_peft" --epochs 0 --samples "$TMP/s2.msgpack" -o "$TMP/from_peft.msgpack" "$S260" \
	2>"$TMP/dp.err" && [ "$(nll "$S260+$TMP/from_peft.msgpack")" = "$(nll "$S260+$TMP/s260_peft")" ]; then
	pass distill_init_from_peft_dir
else
	fail distill_init_from_peft_dir "$(tail -n 2 "$TMP/dp.err")"
fi
expect_fail evalrun_peft_wrong_base 'adapter_model.safetensors: .*(not .*linear layer|shape)' \
	"$BIN/evalrun" --task "ppl:$TMP/t.txt" "$TOP/tests/fixtures/hf/qwen3+$TMP/s260_peft"

# lora-merge --hf and --peft: a quantized student (w4w2) with the adapter
# (made for stories260K, so --force), exported; the HF directory scores as the
# merged stream (its quantized weights dequantized exactly), the PEFT
# directory as the adapter stream
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= t * m) }'; }
"$BIN/qpack" -q rtn -o "$TMP/student.msgpack" "$S260" 2>/dev/null || fail lora_merge_setup "qpack failed"
if "$BIN/lora-merge" --force --hf "$TMP/lm_hf" --peft "$TMP/lm_peft" -o "$TMP/lm.msgpack" \
	"$TMP/student.msgpack" "$TMP/s260_adapter.msgpack" 2> "$TMP/lm.err" &&
	grep -q 'lm_hf: Hugging Face model (llama, f32)' "$TMP/lm.err" && grep -q 'lm_peft: PEFT adapter (rank 4' "$TMP/lm.err"; then
	pass lora_merge_hf_peft_runs
else
	fail lora_merge_hf_peft_runs "$(tail -n 3 "$TMP/lm.err" | tr '\n' ' ')"
fi
a=$(nll "$TMP/lm_hf") b=$(nll "$TMP/lm.msgpack") u=$(nll "$TMP/student.msgpack")
if close "$a" "$b" 1e-5 && ! close "$u" "$b" 1e-3; then pass lora_merge_hf_scores_as_merged; else
	fail lora_merge_hf_scores_as_merged "HF dir $a, merged stream $b, student $u"; fi
# the PEFT directory carries the student's identity (--force recorded it)
a=$(nll "$TMP/student.msgpack+$TMP/lm_peft") b=$(nll "$TMP/lm.msgpack")
if close "$a" "$b" 1e-5; then pass lora_merge_peft_scores_as_adapter; else
	fail lora_merge_peft_scores_as_adapter "student+PEFT $a, merged $b"; fi
if "$BIN/lora-merge" --hf "$TMP/lm_bf16" --hf-dtype bf16 "$TMP/student.msgpack+$TMP/lm_peft" 2>/dev/null &&
	grep -q '"torch_dtype": "bfloat16"' "$TMP/lm_bf16/config.json" && [ ! -e "$TMP/lm_bf16.msgpack" ]; then
	pass lora_merge_hf_bf16_from_peft
else
	fail lora_merge_hf_bf16_from_peft "no bf16 directory"
fi
expect_fail lora_merge_other_base_refused 'trained on the model of content' \
	"$BIN/lora-merge" --peft "$TMP/nope" "$TMP/student.msgpack" "$TMP/s260_adapter.msgpack"
no_output lora_merge_other_base_no_output "$TMP/nope"
printf 'keep\n' > "$TMP/afile"
expect_fail lora_merge_hf_onto_a_file 'afile: exists and is not a directory' \
	"$BIN/lora-merge" --hf "$TMP/afile" "$TMP/student.msgpack+$TMP/lm_peft"
if [ "$(cat "$TMP/afile")" = keep ]; then pass lora_merge_hf_file_kept; else fail lora_merge_hf_file_kept "the file changed"; fi
expect_fail lora_merge_peft_parent_missing 'nowhere/p: No such file' \
	"$BIN/lora-merge" --peft "$TMP/nowhere/p" "$TMP/student.msgpack+$TMP/lm_peft"
"$BIN/lora-merge" --hf-dtype q4 --hf "$TMP/x" "$TMP/student.msgpack+$TMP/lm_peft" 2>/dev/null
if [ $? -eq 2 ]; then pass lora_merge_hf_dtype_usage; else fail lora_merge_hf_dtype_usage "--hf-dtype q4 did not exit 2"; fi
t_done
