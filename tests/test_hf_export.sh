#!/bin/sh
# test_hf_export.sh: our Hugging Face and PEFT exports checked by code we did
# not write. tests/test_hf_export --make writes the exports and our logits;
# tests/ref/check_hf_export.py parses the safetensors files itself and runs an
# independent PyTorch forward pass (1e-4 relative); Hugging Face's tokenizers
# library (npm "tokenizers", its Rust code) encodes TinyStories' dev text
# with our tokenizer.json files to the ids our tokenizers give. Then the
# tools: MODEL+PEFTDIR scores as MODEL+ADAPTER does.
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
mod=
# (build/sanitize and build/fuzz, copies of the tree, use the checkout's build/npm)
for d in $(printf '%s' "${NODE_PATH:-}" | tr ':' ' ') "$TOP/build/npm/node_modules" "$TOP/../npm/node_modules"; do
	[ -f "$d/tokenizers/package.json" ] && mod=$d && break
done
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
expect_fail evalrun_peft_wrong_base 'adapter_model.safetensors: .*(not .*linear layer|shape)' \
	"$BIN/evalrun" --task "ppl:$TMP/t.txt" "$TOP/tests/fixtures/hf/qwen3+$TMP/s260_peft"
t_done
