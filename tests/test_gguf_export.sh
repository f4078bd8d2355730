#!/bin/sh
# test_gguf_export.sh: our GGUF files read by parsers we did not write.
# - @huggingface/gguf (npm) sees the metadata, tensor names, types, shapes and
#   layout we meant, for models (stories260K's group formats as f32 and f16;
#   a random model in q4_K/q2_K/q8_0/q4_0/f16/bf16 with rows of 256; the HF
#   llama and qwen3 fixtures) and LoRA adapters;
# - with LONG=1, llama.cpp itself (node-llama-cpp's prebuilt CPU library) runs
#   them and its logits match ours, with and without the adapters.
# The files come from test_gguf_write (GGUF_WRITE_KEEP); .ci/deps.sh installs
# the npm packages into build/npm (LONG=1 adds node-llama-cpp).
. "$(dirname "$0")/lib.sh"
NM=$(npm_modules @huggingface/gguf)

# ---- lora-merge --gguf / --gguf-lora: the tool's side ----
printf '{"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256}' > "$TMP/k.json"
printf 'Once upon a time there was a cat.\n\nThe dog ran to the park and played with a ball.\n' > "$TMP/text.txt"
"$BIN/qpack" --random "$TMP/k.json" --seed 5 -p 'q4_K;ffn_gate,ffn_up=q2_K' -o "$TMP/k.msgpack" 2>/dev/null
check gguf_tool_kquants "$BIN/lora-merge" --gguf "$TMP/k.gguf" "$TMP/k.msgpack"
# the same scores through our reader: the same weights (HF-style rotate-half
# q/k rows went out permuted for llama.cpp, so only the rounding may differ)
nll() { grep "\"model\":\"$1\"" "$2" | grep '"metric":"nll"' | sed 's/.*"value":\([^,]*\),.*/\1/'; }
"$BIN/evalrun" --json --task "ppl:$TMP/text.txt" "$TMP/k.msgpack" "$TMP/k.gguf" > "$TMP/k.out" 2>"$TMP/k.err"
a=$(nll "$TMP/k.msgpack" "$TMP/k.out") b=$(nll "$TMP/k.gguf" "$TMP/k.out")
if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'; then
	pass gguf_tool_kquants_same_nll
else
	fail gguf_tool_kquants_same_nll "nll stream '$a', GGUF '$b': $(head -c 200 "$TMP/k.err")"; fi
STORIES=$SHARED/models/stories260K/stories260K.bin
if [ -f "$STORIES" ]; then
	"$BIN/qpack" -p f32 -o "$TMP/t.msgpack" "$STORIES" 2>/dev/null
	"$BIN/qpack" -q rtn -o "$TMP/s.msgpack" "$TMP/t.msgpack" 2>/dev/null
	"$BIN/teacher-gen" -n 8 --max-len 32 -o "$TMP/samples.msgpack" "$TMP/t.msgpack" 2>/dev/null
	"$BIN/distill" -r 4 --epochs 1 --samples "$TMP/samples.msgpack" -o "$TMP/a.msgpack" "$TMP/s.msgpack" 2>/dev/null
	check gguf_tool_student "$BIN/lora-merge" --gguf "$TMP/s.gguf" --gguf-lora "$TMP/a.gguf" "$TMP/s.msgpack" "$TMP/a.msgpack"
	check gguf_tool_student_f16 "$BIN/lora-merge" --gguf "$TMP/s16.gguf" --gguf-float f16 "$TMP/s.msgpack+$TMP/a.msgpack"
	"$BIN/evalrun" --json --task "ppl:$TMP/text.txt" "$TMP/s.msgpack+$TMP/a.msgpack" "$TMP/s.gguf+$TMP/a.gguf" \
		"$TMP/s16.gguf" "$TMP/s.msgpack" > "$TMP/s.out" 2>"$TMP/s.err"
	a=$(nll "$TMP/s.msgpack+$TMP/a.msgpack" "$TMP/s.out") b=$(nll "$TMP/s.gguf+$TMP/a.gguf" "$TMP/s.out")
	c=$(nll "$TMP/s16.gguf" "$TMP/s.out") d=$(nll "$TMP/s.msgpack" "$TMP/s.out")
	# group formats exported as f32 hold the same values; only the order of the arithmetic may differ
	if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }'; then
		pass gguf_tool_student_adapter_nll
	else
		fail gguf_tool_student_adapter_nll "nll stream+adapter '$a', GGUF+adapter '$b': $(head -c 200 "$TMP/s.err")"
	fi
	if [ -n "$c" ] && [ -n "$d" ] && [ "$c" != "$a" ] && awk -v a="$c" -v b="$d" 'BEGIN { d = a - b; exit !(d < 0.05 && d > -0.05) }'; then
		pass gguf_tool_student_f16_nll
	else
		fail gguf_tool_student_f16_nll "nll f16 GGUF '$c', student '$d' (within 0.05)"
	fi
	# bad input: unwritable, a bad float, no adapter for --gguf-lora; nothing left behind
	expect_fail gguf_tool_unwritable "$TMP/nodir/x.gguf" "$BIN/lora-merge" --gguf "$TMP/nodir/x.gguf" "$TMP/s.msgpack"
	"$BIN/lora-merge" --gguf "$TMP/x.gguf" --gguf-float q4 "$TMP/s.msgpack" 2>/dev/null
	if [ $? -eq 2 ]; then pass gguf_tool_bad_float; else fail gguf_tool_bad_float "--gguf-float q4 is not a usage error"; fi
	no_output gguf_tool_bad_float_nothing_left "$TMP/x.gguf"
	expect_fail gguf_tool_lora_without_adapter 'no adapter for --gguf-lora' \
		"$BIN/lora-merge" --gguf-lora "$TMP/y.gguf" "$TMP/s.msgpack"
	no_output gguf_tool_lora_without_adapter_nothing_left "$TMP/y.gguf"
	# an adapter for another model is refused, and no file appears
	"$BIN/qpack" -q rtn -p q8 -o "$TMP/other.msgpack" "$TMP/t.msgpack" 2>/dev/null
	expect_fail gguf_tool_other_model 'trained on' "$BIN/lora-merge" --gguf-lora "$TMP/z.gguf" "$TMP/other.msgpack" "$TMP/a.msgpack"
	no_output gguf_tool_other_model_nothing_left "$TMP/z.gguf"
else
	skip gguf_tool_student "no $STORIES"
fi

# ---- parsers we did not write ----
if ! command -v node >/dev/null 2>&1; then
	skip gguf_export_parser "node is not installed (make deps installs Node.js and npm)"
	t_done
fi
if [ -z "$NM" ]; then
	skip gguf_export_parser "no build/npm/node_modules/@huggingface/gguf (make deps installs it from the npm registry)"
	t_done
fi
K=$TMP/keep
mkdir -p "$K"
if ! GGUF_WRITE_KEEP=$K "$TOP/tests/test_gguf_write" >"$TMP/write.log" 2>&1; then
	fail gguf_export_files "test_gguf_write failed: $(grep FAIL "$TMP/write.log" | head -n 3 | tr '\n' ' ')"
	t_done
fi
pass gguf_export_files

gcheck() { NODE_PATH=$NM node "$TOP/tests/ref/gguf_check.mjs" "$@"; }
llama_common() { # $1 prefix: the stories260K config
	echo general.architecture=llama llama.embedding_length=64 llama.block_count=5 llama.feed_forward_length=172 \
		llama.attention.head_count=8 llama.attention.head_count_kv=4 llama.context_length=512 llama.rope.dimension_count=8 \
		llama.rope.freq_base=10000 tokenizer.ggml.model=llama tokenizer.ggml.tokens#512 tokenizer.ggml.scores#512 \
		tokenizer.ggml.token_type#512 'tokenizer.ggml.tokens[3]=<0x00>' 'tokenizer.ggml.token_type[3]=6' \
		tokenizer.ggml.bos_token_id=1 tokenizer.ggml.eos_token_id=2 tokenizer.ggml.add_bos_token=true \
		ntensors=47 '!tensor:output.weight' tensor:output_norm.weight=F32:64 tensor:blk.2.attn_norm.weight=F32:64
}
# shellcheck disable=SC2046
gcheck gguf_export_stories_f32 "$K/s32.gguf" $(llama_common) general.type=model filetype=F32 \
	tensor:token_embd.weight=F32:64x512 tensor:blk.4.ffn_gate.weight=F32:64x172 tensor:blk.0.ffn_down.weight=F32:172x64 \
	tensor:blk.0.attn_k.weight=F32:64x32 tensor:blk.3.attn_q.weight=F32:64x64
# shellcheck disable=SC2046
gcheck gguf_export_stories_f16 "$K/s16.gguf" $(llama_common) filetype=F16 \
	tensor:token_embd.weight=F16:64x512 tensor:blk.4.ffn_up.weight=F16:64x172 tensor:blk.0.ffn_down.weight=F16:172x64
for k in gguf_write_kquants gguf_write_kquants_half; do
	gcheck "gguf_export_${k#gguf_write_}" "$K/$k.gguf" general.architecture=llama llama.embedding_length=256 \
		llama.feed_forward_length=512 llama.block_count=2 llama.attention.head_count=4 llama.attention.head_count_kv=2 \
		llama.rope.dimension_count=64 llama.vocab_size=512 tokenizer.ggml.add_space_prefix=false filetype=Q2_K ntensors=21 \
		tensor:blk.0.ffn_gate.weight=Q2_K:256x512 tensor:blk.1.ffn_up.weight=Q2_K:256x512 \
		tensor:blk.1.ffn_down.weight=Q4_K:512x256 tensor:blk.0.attn_q.weight=Q4_K:256x256 \
		tensor:blk.0.attn_k.weight=Q4_K:256x128 tensor:blk.1.attn_v.weight=Q8_0:256x128 \
		tensor:blk.0.attn_output.weight=Q4_0:256x256 tensor:token_embd.weight=F16:256x512 tensor:output.weight=BF16:256x512
	gcheck "gguf_export_${k#gguf_write_}_lora" "$K/$k.lora.gguf" general.architecture=llama general.type=adapter \
		adapter.type=lora adapter.lora.alpha=8 ntensors=16 \
		tensor:blk.0.ffn_up.weight.lora_a=F32:256x4 tensor:blk.0.ffn_up.weight.lora_b=F32:4x512 \
		tensor:blk.1.attn_k.weight.lora_a=F32:256x4 tensor:blk.1.attn_k.weight.lora_b=F32:4x128 \
		'!tensor:blk.0.ffn_down.weight.lora_a'
done
gcheck gguf_export_hf_llama "$K/hf_llama.gguf" general.architecture=llama llama.embedding_length=16 \
	llama.feed_forward_length=40 llama.attention.head_count=4 llama.attention.head_count_kv=2 llama.vocab_size=272 \
	'!llama.attention.key_length' tensor:output.weight=F32:16x272 tensor:blk.1.attn_k.weight=F32:16x8 ntensors=21
gcheck gguf_export_hf_qwen3 "$K/hf_qwen3.gguf" general.architecture=qwen3 qwen3.embedding_length=16 \
	qwen3.attention.key_length=8 qwen3.attention.value_length=8 qwen3.rope.freq_base=1000000 \
	tokenizer.ggml.model=gpt2 tokenizer.ggml.pre=qwen2 tokenizer.ggml.tokens#300 tokenizer.ggml.merges#8 \
	'tokenizer.ggml.merges[0]=Ġ t' 'tokenizer.ggml.tokens[266]=<|im_end|>' 'tokenizer.ggml.token_type[266]=3' \
	'tokenizer.ggml.token_type[299]=5' tokenizer.ggml.eos_token_id=266 tokenizer.ggml.add_bos_token=false filetype=BF16 \
	tensor:blk.0.attn_q_norm.weight=F32:8 tensor:blk.1.attn_q.weight=BF16:16x32 tensor:token_embd.weight=BF16:16x300 \
	'!tensor:output.weight'
gcheck gguf_export_hf_qwen3_lora "$K/gguf_write_hf_qwen3.lora.gguf" general.architecture=qwen3 general.type=adapter \
	adapter.type=lora tensor:blk.0.attn_q.weight.lora_b=F32:4x32 tensor:blk.1.ffn_gate.weight.lora_a=F32:16x4
if [ -f "$TMP/a.gguf" ]; then # lora-merge's own output: the default W4/W2 student (q4g32, q2g32) and its adapter
	gcheck gguf_export_tool_student "$TMP/s.gguf" general.architecture=llama llama.block_count=5 filetype=F32 \
		tensor:blk.0.ffn_gate.weight=F32:64x172 tensor:token_embd.weight=F32:64x512
	gcheck gguf_export_tool_adapter "$TMP/a.gguf" general.type=adapter adapter.type=lora adapter.lora.alpha=4 \
		ntensors=20 tensor:blk.4.ffn_up.weight.lora_a=F32:64x4 tensor:blk.4.ffn_up.weight.lora_b=F32:4x172
fi

# llama.cpp runs them: logits within its own arithmetic of ours (f32 weights
# 1e-2; k-quants 5e-2, as llama.cpp rounds activations to 8 bits for them)
if [ "${LONG:-0}" = 1 ]; then
	if [ -f "$NM/node-llama-cpp/package.json" ]; then
		(cd "$K" && NODE_PATH=$NM node "$TOP/tests/ref/llamacpp_logits.mjs" \
			s32.gguf@0.01 hf_llama.gguf@0.01 hf_qwen2.gguf@0.01 hf_qwen3.gguf@0.01 hf_linearrope.gguf@0.01 \
			hf_llama.gguf+gguf_write_hf_llama.lora.gguf@0.01 hf_qwen3.gguf+gguf_write_hf_qwen3.lora.gguf@0.01 \
			gguf_write_kquants.gguf@0.05 gguf_write_kquants_half.gguf@0.05 \
			gguf_write_kquants.gguf+gguf_write_kquants.lora.gguf@0.05 \
			gguf_write_kquants_half.gguf+gguf_write_kquants_half.lora.gguf@0.05) >"$TMP/llama.out" 2>&1
		cat "$TMP/llama.out"
		grep -q '^PASS llamacpp_' "$TMP/llama.out" ||
			fail gguf_export_llamacpp "llama.cpp did not run: $(tail -n 3 "$TMP/llama.out" | tr '\n' ' ')"
	else
		skip gguf_export_llamacpp "no build/npm/node_modules/node-llama-cpp (LONG=1 make deps installs it)"
	fi
fi
t_done
