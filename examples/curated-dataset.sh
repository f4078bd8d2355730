#!/bin/sh
# curated-dataset.sh [TEXT] [MODEL] [OUTDIR]: recover with your own text
# instead of synthetic samples.
#
# TEXT holds documents separated by blank lines (default: the TinyStories dev
# text). teacher-gen --score records the teacher's logits over it, nothing
# sampled; distill trains on that exactly as on synthetic data. Every tenth
# document is held out, and the recovery is measured on those only.
# pipelines/synthetic-vs-curated.sh compares the two kinds of data.
#   N (documents used for training, default all), EPOCHS (default 2), RANK (default 4)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
text=$(abs "${1:-$shared/data/tinystories/dev.txt}")
model=$(abs "${2:-$shared/models/stories260K/stories260K.bin}")
out=${3:-$(mktemp -d)}
mkdir -p "$out"
cd "$out"

# paragraph mode (RS=): one record per document; every tenth is held out
awk -v RS= -v ORS='\n\n' 'NR % 10 == 0 { print > "heldout.txt"; next } { print > "train.txt" }' "$text"

"$bin/qpack" -p f32 -o teacher.msgpack "$model"
"$bin/qpack" -q mse -o student.msgpack teacher.msgpack
# one sample per document, a longer document cut into pieces of --max-len
# tokens; -n keeps the first N pieces
"$bin/teacher-gen" --score train.txt ${N:+-n "$N"} --max-len 256 -o curated.msgpack teacher.msgpack
"$bin/distill" -r "${RANK:-4}" --epochs "${EPOCHS:-2}" --lr 0.005 --samples curated.msgpack \
	-o adapter.msgpack student.msgpack
"$bin/evalrun" --task ppl:heldout.txt --fp teacher.msgpack --quant student.msgpack \
	--recovered student.msgpack+adapter.msgpack | tee results.txt
