#!/bin/sh
# synthetic-vs-curated.sh [MODEL] [OUTDIR]: does curated text beat the
# teacher's own samples as distillation data?
#
# Curated data is the teacher's logits over real text (teacher-gen --score:
# nothing sampled); synthetic data is sampled from the teacher itself, as many
# samples. An adapter is trained on each for the same student, and both are
# evaluated on text that neither saw: by default the evaluation text is split
# at its documents (blank-line separated), the odd ones to train on and the
# even ones to evaluate on. OUTDIR gets results.txt (evalrun's recovery table
# with both adapters) and results.tsv (one row per data kind: samples, tokens,
# NLL, KL, top-1 and their recoveries). A rerun reuses complete stages.
#
#   CURATED         a text file to train on instead; the whole evaluation text
#                   is then held out (do not pick text it contains)
#   RECOVER_SAMPLES curated documents (pieces of up to RECOVER_LEN tokens) kept,
#                   and synthetic samples made (default 500)
#   RECOVER_LEN (256), RECOVER_RANK (4), RECOVER_EPOCHS (2), RECOVER_LR (0.005),
#   RECOVER_POLICY (w4w2), RECOVER_QUANTIZER (mse), RECOVER_TEXT (the
#   TinyStories dev text), RECOVER_MODEL: as in recover.sh
#
# MODEL defaults as in recover.sh; OUTDIR to out/synthetic-vs-curated.
set -eu
rl_name=synthetic-vs-curated
. "$(dirname "$0")/lib.sh"
rl_init
rl_model_args "$top/out/synthetic-vs-curated" "$@"
curated=${CURATED:+$(rl_abs "$CURATED")}
[ -z "$curated" ] || [ -f "$curated" ] || rl_die "CURATED: no file $curated"
n=${RECOVER_SAMPLES:-500} len=${RECOVER_LEN:-256} rank=${RECOVER_RANK:-4}
epochs=${RECOVER_EPOCHS:-2} lr=${RECOVER_LR:-0.005}
policy=${RECOVER_POLICY:-w4w2} quantizer=${RECOVER_QUANTIZER:-mse}
cd "$out"

# the training and evaluation texts
if [ -z "$curated" ]; then
	awk -v RS= -v ORS='\n\n' 'NR % 2 { print > "train.txt.tmp"; next } { print > "eval.txt.tmp" }' "$text"
	[ -s train.txt.tmp ] && [ -s eval.txt.tmp ] || rl_die "$text: fewer than two documents (blank-line separated) to split"
	for f in train eval; do # an unchanged half keeps its date, so what was made from it is reused
		if cmp -s $f.txt.tmp $f.txt; then rm $f.txt.tmp; else mv $f.txt.tmp $f.txt; fi
	done
	curated=train.txt evaltext=eval.txt
	rl_say "training text: the odd documents of $text; evaluation: the even ones"
else
	evaltext=$text
fi

rl_stage teacher.msgpack "$(rl_id "$model")" "$bin/qpack" -p f32 -o teacher.msgpack "$model"
rl_stage student.msgpack "$policy $quantizer $(rl_id teacher.msgpack)" \
	"$bin/qpack" -p "$policy" -q "$quantizer" -o student.msgpack teacher.msgpack
rl_stage curated.msgpack "$n $len $(rl_id "$curated") $(rl_id teacher.msgpack)" \
	"$bin/teacher-gen" --score "$curated" -n "$n" --max-len "$len" -o curated.msgpack teacher.msgpack
rl_stage synthetic.msgpack "$n $len $(rl_id teacher.msgpack)" \
	"$bin/teacher-gen" -n "$n" --max-len "$len" --seed 1 -o synthetic.msgpack teacher.msgpack
for data in curated synthetic; do
	rl_stage $data-adapter.msgpack "$rank $epochs $lr $(rl_id student.msgpack) $(rl_id $data.msgpack)" \
		"$bin/distill" -r "$rank" --epochs "$epochs" --lr "$lr" --samples $data.msgpack \
		-o $data-adapter.msgpack student.msgpack
done

evaluate() {
	"$bin/evalrun" --task "ppl:$evaltext" --fp teacher.msgpack --quant student.msgpack \
		--recovered student.msgpack+curated-adapter.msgpack \
		--recovered student.msgpack+synthetic-adapter.msgpack -o results.msgpack > results.txt.tmp
	mv results.txt.tmp results.txt
}
rl_stage results.msgpack "$(rl_id "$evaltext") $(rl_id curated-adapter.msgpack) $(rl_id synthetic-adapter.msgpack)" evaluate

# results.tsv: data samples tokens nll kld top1 recovery_nll recovery_kld recovery_top1
{
	printf 'data\tsamples\ttokens\tnll\tkld\ttop1\trecovery_nll\trecovery_kld\trecovery_top1\n'
	for data in curated synthetic; do
		# teacher-gen's summary: "teacher-gen: N samples, T generated tokens in ..."
		sed -n 's/^teacher-gen: \([0-9]*\) samples, \([0-9]*\) generated tokens.*/'$data' \1 \2/p' $data.log
	done > sizes.tmp
	rl_results results.msgpack | awk -F '\t' -v OFS='\t' '
	part == 1 { split($0, f, " "); ns[f[1]] = f[2]; nt[f[1]] = f[3]; next }
	$2 == "recovered" { d = $1; sub(/^student.msgpack\+/, "", d); sub(/-adapter.msgpack$/, "", d); v[d, $4] = $5 }
	function g(d, m) { return (d, m) in v ? v[d, m] : "n/a" }
	END {
		for (i = 1; i <= 2; i++) {
			d = i == 1 ? "curated" : "synthetic"
			print d, ns[d], nt[d], g(d, "nll"), g(d, "kld"), g(d, "top1"), g(d, "recovery_nll"), g(d, "recovery_kld"), g(d, "recovery_top1")
		}
	}' part=1 sizes.tmp part=2 -
} > results.tsv.tmp
rm -f sizes.tmp
mv results.tsv.tmp results.tsv

cat results.txt
rl_say "done: $out/results.txt and results.tsv (samples, adapters and logs beside them)"
