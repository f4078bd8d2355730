#!/bin/sh
# compare-storage.sh [MODEL] [TEXT]: how much perplexity does storing the
# weights in f16 or bf16 cost? Imports the model three ways and scores each
# on the same text in one evalrun call (one table, one row per model).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$top/../shared/models/stories260K/stories260K.bin}
text=${2:-$top/../shared/data/tinystories/dev.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in f32 f16 bf16; do
	"$top/bin/qpack" -p "$p" -o "$work/$p.msgpack" "$model"
done
# a model stream carries its tokenizer and config: evalrun needs nothing else
cd "$work" && "$top/bin/evalrun" --task "ppl:$text" f32.msgpack f16.msgpack bf16.msgpack
