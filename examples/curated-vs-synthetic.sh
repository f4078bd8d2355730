#!/bin/sh
# curated-vs-synthetic.sh [OUTDIR]: does curated text beat the teacher's own
# samples for recovery? One half of the TinyStories dev text is scored by the
# teacher (teacher-gen --score: its logits over real text, nothing sampled);
# synthetic samples of about the same token count come from the teacher; an
# adapter is trained on each, and both are evaluated on the OTHER half (never
# evaluate on text you trained on).
#   N=samples (default 500), EPOCHS (default 2), RANK (default 4)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
out=${1:-$(mktemp -d)}
n=${N:-500} epochs=${EPOCHS:-2} rank=${RANK:-4}
mkdir -p "$out"
dev=$shared/data/tinystories/dev.txt

# the two halves, at a paragraph boundary (documents are separated by blank lines)
awk -v RS= -v ORS='\n\n' -v out="$out" 'NR % 2 { print > (out "/train.txt"); next } { print > (out "/eval.txt") }' "$dev"

"$bin/qpack" -p f32 -o "$out/teacher.msgpack" "$shared/models/stories260K/stories260K.bin"
"$bin/qpack" -q rtn -o "$out/student.msgpack" "$out/teacher.msgpack"

# curated: the teacher's logits over the first n documents of the training half
"$bin/teacher-gen" --score "$out/train.txt" -n "$n" -o "$out/curated.msgpack" "$out/teacher.msgpack"
# synthetic: as many samples, sampled from the teacher itself
"$bin/teacher-gen" -n "$n" --max-len 256 -o "$out/synthetic.msgpack" "$out/teacher.msgpack"

for data in curated synthetic; do
	"$bin/distill" -r "$rank" --epochs "$epochs" --lr 0.005 --samples "$out/$data.msgpack" \
		-o "$out/$data-adapter.msgpack" "$out/student.msgpack"
done

# the recovery table of both on the held-out half
"$bin/evalrun" --task "ppl:$out/eval.txt" --fp "$out/teacher.msgpack" --quant "$out/student.msgpack" \
	--recovered "$out/student.msgpack+$out/curated-adapter.msgpack" \
	--recovered "$out/student.msgpack+$out/synthetic-adapter.msgpack" | tee "$out/results.txt"
