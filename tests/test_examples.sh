#!/bin/sh
# test_examples.sh: the scripts in examples/ run to the end and say what they
# promise. The custom-pipeline examples run in make check with tiny settings;
# the others evaluate whole texts for tens of seconds (make check-long).
. "$(dirname "$0")/lib.sh"
E=$TOP/examples
head -c 6000 "$SHARED/data/tinystories/dev.txt" > "$TMP/dev.txt"

# a policy of one's own: 2-bit MLP but for block 0, adapters on exactly those tensors
if N=8 EPOCHS=1 TEXT=$TMP/dev.txt sh "$E/custom-policy.sh" "" "$TMP/cp" >"$TMP/cp.out" 2>&1 &&
	grep -q 'blk\.1\.ffn_down\.weight  *q2g32' "$TMP/cp.out" && grep -q 'blk\.0\.ffn_down\.weight  *q4g32' "$TMP/cp.out" &&
	grep '"targets"' "$TMP/cp.out" | grep -q 'blk.4.ffn_down' && ! grep '"targets"' "$TMP/cp.out" | grep -q 'blk.0.' &&
	grep -Eq '^student.msgpack\+adapter.msgpack +ppl:eval.txt +nll .*% +[0-9.]+$' "$TMP/cp/results.txt"; then
	pass example_custom_policy
else
	fail example_custom_policy "$(tail -n 3 "$TMP/cp.out" | tr '\n' ' ')"
fi
# curated text: trained on nine documents in ten, evaluated on the tenth
head -c 30000 "$SHARED/data/tinystories/dev.txt" > "$TMP/text.txt"
if N=10 EPOCHS=1 sh "$E/curated-dataset.sh" "$TMP/text.txt" "" "$TMP/cd" >"$TMP/cd.out" 2>&1 &&
	"$BIN/tsdump" "$TMP/cd/curated.msgpack" | grep -c '"t":"sample"' | grep -qx 10 &&
	grep -Eq '^student.msgpack\+adapter.msgpack +ppl:heldout.txt +nll .*% +[0-9.]+$' "$TMP/cd/results.txt" &&
	! grep -Fxf "$TMP/cd/heldout.txt" "$TMP/cd/train.txt" | grep -q .; then
	pass example_curated_dataset
else
	fail example_curated_dataset "$(tail -n 3 "$TMP/cd.out" | tr '\n' ' ')"
fi
# an existing adapter: its header, its scores, and its recovery
if TEXT=$TMP/dev.txt sh "$E/evaluate-adapter.sh" "$TMP/cp/student.msgpack" "$TMP/cp/adapter.msgpack" "$TMP/cp/teacher.msgpack" \
	>"$TMP/ea.out" 2>&1 && grep -q '^"rank":4,"alpha":4' "$TMP/ea.out" && grep -q '"what":"distill","step":' "$TMP/ea.out" &&
	grep -Eq 'adapter.msgpack +lastword:.* +acc .*% +[0-9.]+$' "$TMP/ea.out"; then
	pass example_evaluate_adapter
else
	fail example_evaluate_adapter "$(tail -n 3 "$TMP/ea.out" | tr '\n' ' ')"
fi
expect_fail example_evaluate_adapter_wrong_student "trained on the model of content" \
	sh "$E/evaluate-adapter.sh" "$TMP/cd/student.msgpack" "$TMP/cp/adapter.msgpack"

# llama.cpp's files: the student and adapter apart, and merged; each scores like the original
if TEXT=$TMP/dev.txt sh "$E/export-llamacpp.sh" "$TMP/cp/student.msgpack" "$TMP/cp/adapter.msgpack" "$TMP/ex" \
	>"$TMP/ex.out" 2>&1 && grep -q 'score like' "$TMP/ex.out" &&
	"$BIN/evalrun" --task "ppl:$TMP/dev.txt" "$TMP/ex/student.gguf" | grep -q 'student.gguf' &&
	[ "$(grep -c 'allowed' "$TMP/ex.out")" = 2 ] && [ ! -e "$TMP/ex/merged.msgpack" ]; then
	pass example_export_llamacpp
else
	fail example_export_llamacpp "$(tail -n 3 "$TMP/ex.out" | tr '\n' ' ')"
fi
"$BIN/lora-merge" --pack "$TMP/cp.tar" "$TMP/cp/student.msgpack" "$TMP/cp/adapter.msgpack" 2>/dev/null
check example_export_llamacpp_pack env TEXT="$TMP/dev.txt" sh "$E/export-llamacpp.sh" "$TMP/cp.tar" "$TMP/expack"
expect_fail example_export_llamacpp_wrong_student "trained on the model of content" \
	sh "$E/export-llamacpp.sh" "$TMP/cd/student.msgpack" "$TMP/cp/adapter.msgpack" "$TMP/exbad"

if [ "${LONG:-0}" != 1 ]; then
	skip examples_long "inspect-stream and compare-storage take minutes; make check-long runs them"
	t_done
fi
check example_inspect_stream sh "$E/inspect-stream.sh"
check example_compare_storage sh "$E/compare-storage.sh"
t_done
