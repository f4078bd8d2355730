#!/bin/sh
# test_examples.sh: the scripts in examples/ run to the end (make check-long:
# they train and evaluate for tens of seconds; make check says it skipped them).
. "$(dirname "$0")/lib.sh"
if [ "${LONG:-0}" != 1 ]; then
	skip examples "they take minutes; make check-long runs them"
	t_done
fi
if N=32 EPOCHS=1 SHARED=$SHARED sh "$TOP/examples/curated-vs-synthetic.sh" "$TMP/cvs" >"$TMP/cvs.out" 2>&1 &&
	grep -q 'curated-adapter.msgpack.*recovered' "$TMP/cvs/results.txt" &&
	grep -q 'synthetic-adapter.msgpack.*recovered' "$TMP/cvs/results.txt"; then
	pass example_curated_vs_synthetic
else
	fail example_curated_vs_synthetic "$(tail -n 3 "$TMP/cvs.out" | tr '\n' ' ')"
fi
check example_inspect_stream sh "$TOP/examples/inspect-stream.sh"
check example_compare_storage sh "$TOP/examples/compare-storage.sh"
t_done
