#!/bin/sh
# custom-policy.sh [MODEL] [OUTDIR]: recover a model quantized by a policy of
# your own instead of W4/W2-GateUp.
#
# The one-line way is the main job with another policy:
#     RECOVER_POLICY='q4;ffn_*=q2;blk.0.ffn_*=q4' pipelines/recover.sh
# This script spells out the same steps with the tools themselves.
#   N (samples, default 200), EPOCHS (default 2), RANK (default 4)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
model=${1:-$shared/models/stories260K/stories260K.bin}
out=${2:-$(mktemp -d)}
text=${TEXT:-$shared/data/tinystories/dev.txt}
mkdir -p "$out"
cd "$out"

# The policy: 4-bit by default, the whole MLP (gate, up and down) at 2 bits,
# except in the first block, which many models are most sensitive in. Rules
# are read left to right and later ones win; `qpack -p help` has the grammar.
policy='q4;ffn_*=q2;blk.0.ffn_*=q4'

"$bin/qpack" -p f32 -o teacher.msgpack "$model"
# qpack prints each tensor's format and bits per weight on stderr
"$bin/qpack" -p "$policy" -q mse -o student.msgpack teacher.msgpack 2> student.log
grep -E 'blk\.[01]\.ffn_down' student.log

# distill adapts, by default, every block weight stored in fewer than 4 bits:
# here the 2-bit MLP of blocks 1 and up (--targets chooses others)
"$bin/teacher-gen" -n "${N:-200}" --max-len 128 -o samples.msgpack teacher.msgpack
"$bin/distill" -r "${RANK:-4}" --epochs "${EPOCHS:-2}" --lr 0.005 --samples samples.msgpack \
	-o adapter.msgpack student.msgpack
# which tensors got adapters: the adapter's header lists them
"$bin/tsdump" adapter.msgpack | head -n 1 | grep -o '"targets":\[[^]]*\]'

# the recovery table on the first 40 kB of the evaluation text
head -c 40000 "$text" > eval.txt
"$bin/evalrun" --task ppl:eval.txt --fp teacher.msgpack --quant student.msgpack \
	--recovered student.msgpack+adapter.msgpack | tee results.txt
