#!/bin/sh
# export-llamacpp.sh PACK [OUTDIR]
# export-llamacpp.sh STUDENT ADAPTER [OUTDIR]
#   a recovery as files llama.cpp runs, in two forms, checked before use.
#
# PACK is a recovery pack (pipelines/recover.sh writes out/recovery.tar);
# STUDENT and ADAPTER are the quantized model and the adapter distill trained
# on it. OUTDIR (default export) receives:
#   student.gguf + adapter.gguf  the student as stored and the adapter apart:
#                                llama.cpp applies it at run time (--lora)
#   merged.gguf                  the adapter merged into the weights (f16):
#                                one file, no run-time LoRA
# Before it says they are good, the script scores the original and each export
# on the same text with evalrun (our GGUF reader reads them back): the NLLs must
# agree. TEXT names the text (default: the first 20 kB of the TinyStories dev
# text).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
case $# in
1 | 2) model=$1 adapter='' out=${2:-export} ;;
3) model=$1 adapter=$2 out=$3 ;;
*) echo "usage: export-llamacpp.sh PACK [OUTDIR] | STUDENT ADAPTER [OUTDIR]" >&2; exit 2 ;;
esac
mkdir -p "$out"

# 1. the unmerged pair: a pack carries its adapter, so MODEL alone will do
# shellcheck disable=SC2086 # $adapter is empty or one path without spaces
"$bin/lora-merge" --gguf "$out/student.gguf" --gguf-lora "$out/adapter.gguf" "$model" $adapter

# 2. merged: the f32 merged stream, then as GGUF with our group formats'
# dequantized weights stored as f16 (llama.cpp has no type for q2g32)
# shellcheck disable=SC2086
"$bin/lora-merge" -o "$out/merged.msgpack" "$model" $adapter
"$bin/lora-merge" --gguf "$out/merged.gguf" --gguf-float f16 "$out/merged.msgpack"
rm -f "$out/merged.msgpack"

# 3. the check: the same text through the original and through each export
text=${TEXT:-}
if [ -z "$text" ]; then
	text=$out/check.txt
	head -c 20000 "$shared/data/tinystories/dev.txt" > "$text"
fi
orig=$model${adapter:++$adapter}
"$bin/evalrun" --json --task "ppl:$text" "$orig" "$out/student.gguf+$out/adapter.gguf" "$out/merged.gguf" \
	> "$out/check.json"
# one NLL per model, in the order given; the pair must agree to rounding, the
# f16 merge to f16's rounding of each weight
awk -v orig="$orig" '
	match($0, /"model":"[^"]*"/) { m = substr($0, RSTART + 9, RLENGTH - 10) }
	/"metric":"nll"/ && match($0, /"value":[-0-9.e+]*/) { v[++n] = substr($0, RSTART + 8, RLENGTH - 8); name[n] = m }
	END {
		if (n != 3) { print "export-llamacpp: evalrun gave " n " NLLs, not 3" > "/dev/stderr"; exit 1 }
		tol[2] = 1e-4; tol[3] = 5e-3
		printf "%-50s nll %.5f\n", name[1], v[1]
		for (i = 2; i <= 3; i++) {
			d = v[i] - v[1]; if (d < 0) d = -d
			printf "%-50s nll %.5f  (|diff| %.1e, allowed %.0e)\n", name[i], v[i], d, tol[i]
			if (d > tol[i]) bad = 1
		}
		exit bad
	}' "$out/check.json" || { echo "export-llamacpp: an export does not score like $orig" >&2; exit 1; }

echo "export-llamacpp: $out/student.gguf with $out/adapter.gguf, and $out/merged.gguf, score like $orig; in llama.cpp:"
echo "  llama-cli -m $out/student.gguf --lora $out/adapter.gguf -p 'Once upon a time'"
echo "  llama-cli -m $out/merged.gguf -p 'Once upon a time'"
