#!/bin/sh
# distill_sweep.sh [OUTDIR]: the tuning table of doc/distill.md, rerunnable.
# Not part of make check or make bench: about 25 minutes on 2 loaded cores
# with SWEEP_SAMPLES=1000.
#
# stories260K, W4/W2-GateUp (rtn unless SWEEP_QUANTIZER=mse); one setting
# changed at a time from the base: SWEEP_SAMPLES synthetic samples (2000) of
# up to 256 tokens, top-64 logits, rank 4 on ffn_gate and ffn_up, standard
# init, tau 1, SWEEP_EPOCHS (2) epochs at lr 0.005.  Rows:
#   rank 1, 2, 4, 8;  init svd;  top-k 16 and the full vocabulary (exact KL);
#   tau 2 (teacher-gen --kd-temp 2, distill --tau 2);
#   curated vs synthetic data at equal token counts: teacher-gen --score on
#   one half of the dev text (the odd documents, as
#   examples/curated-vs-synthetic.sh splits it), synthetic samples of the same
#   token count, both evaluated on the other half only.
# Every other row is evaluated on the whole dev text (the training data is
# synthetic) and on lastword.jsonl.  Recovery = (recovered - quant) / (fp -
# quant); KL reduced = 1 - KL(recovered) / KL(quant).  Writes OUTDIR/sweep.tsv
# and prints a markdown table.  SWEEP_THREADS (2).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
out=${1:-$top/out/sweep}
n=${SWEEP_SAMPLES:-2000} epochs=${SWEEP_EPOCHS:-2} t=${SWEEP_THREADS:-2} quantizer=${SWEEP_QUANTIZER:-rtn}
dev=$shared/data/tinystories/dev.txt
lastword=$shared/data/tinystories/lastword.jsonl
mkdir -p "$out"
cd "$out"
say() { echo "sweep: $*" >&2; }

[ -s teacher.msgpack ] || "$bin/qpack" -p f32 -o teacher.msgpack "$shared/models/stories260K/stories260K.bin" 2>/dev/null
[ -s student.msgpack ] || "$bin/qpack" -p w4w2 -q "$quantizer" -o student.msgpack teacher.msgpack 2>/dev/null
# the halves, at document boundaries (blank lines), as examples/curated-vs-synthetic.sh makes them
awk -v RS= -v ORS='\n\n' 'NR % 2 { print > "train.txt"; next } { print > "eval.txt" }' "$dev"

gen() { # gen FILE ARGS...: a samples stream, unless already made
	f=$1
	shift
	[ -s "$f" ] && "$bin/tsdump" "$f" >/dev/null 2>&1 && return
	say "teacher-gen $* -> $f"
	"$bin/teacher-gen" -t "$t" --seed 1 -o "$f" "$@" teacher.msgpack 2>/dev/null
}
gen s64.msgpack -n "$n" --max-len 256
gen s16.msgpack -n "$n" --max-len 256 -k 16
gen sfull.msgpack -n "$n" --max-len 256 -k "$("$bin/tsdump" teacher.msgpack | sed -n 's/.*"vocab_size":\([0-9]*\).*/\1/p' | head -n 1)"
gen stau2.msgpack -n "$n" --max-len 256 --kd-temp 2
# curated: the training half scored; synthetic: as many tokens, sampled
gen curated.msgpack --score train.txt -n "$n"
# predicted tokens of a samples stream: T - prompt_len of each sample
tokens() {
	"$bin/tsdump" "$1" | sed -n 's/.*"prompt_len":\([0-9]*\),"tokens":\[\([^]]*\)\].*/\1 \2/p' |
		awk '{ s += split($2, a, ",") - $1 } END { print s }'
}
ct=$(tokens curated.msgpack)
st=$(tokens s64.msgpack)
nsyn=$(awk -v c="$ct" -v s="$st" -v n="$n" 'BEGIN { printf "%d", c / (s / n) + 0.5 }')
gen synthetic.msgpack -n "$nsyn" --max-len 256
say "curated $ct tokens; synthetic $nsyn samples of $(tokens synthetic.msgpack) tokens"

# evaluate MODEL TEXT: "nll kld acc acc_stderr" (acc only for the whole dev text)
evaluate() {
	tasks="--task ppl:$2"
	[ "$2" = "$dev" ] && tasks="$tasks --task lastword:$lastword"
	# shellcheck disable=SC2086 # tasks holds several words
	"$bin/evalrun" -t "$t" $tasks --reference teacher.msgpack "$1" | awk '
		$3 == "nll" && $2 ~ /^ppl/ { nll = $4 } $3 == "kld" { kld = $4 } $3 == "acc" { acc = $4; se = $5 }
		END { printf "%s %s %s %s\n", nll, kld, acc == "" ? "-" : acc, se == "" ? "-" : se }'
}
once() { # once FILE COMMAND...: FILE from COMMAND's output, unless already made
	f=$1
	shift
	[ -s "$f" ] || { "$@" > "$f.tmp" && mv "$f.tmp" "$f"; }
}
once fp.dev evaluate teacher.msgpack "$dev"
once base.dev evaluate student.msgpack "$dev"
once fp.eval evaluate teacher.msgpack eval.txt
once base.eval evaluate student.msgpack eval.txt

# row NAME SAMPLES TEXT DISTILL-ARGS...
: > sweep.tsv
row() {
	name=$1 samples=$2 text=$3
	shift 3
	if [ ! -s "$name.adapter.msgpack" ]; then
		say "$name: distill $*"
		"$bin/distill" -t "$t" --epochs "$epochs" --lr 0.005 --samples "$samples" -o "$name.adapter.msgpack" "$@" \
			student.msgpack 2> "$name.log"
	fi
	sfx="dev"
	[ "$text" = "$dev" ] || sfx="eval"
	once "$name.$sfx" evaluate "student.msgpack+$name.adapter.msgpack" "$text"
	secs=$(sed -n 's/.*tokens in \([0-9.]*\) s.*/\1/p' "$name.log")
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$*" "$(cat "fp.$sfx")" "$(cat "base.$sfx")" "$(cat "$name.$sfx")" "$secs" >> sweep.tsv
}
row rank1 s64.msgpack "$dev" -r 1
row rank2 s64.msgpack "$dev" -r 2
row rank4 s64.msgpack "$dev" -r 4
row rank8 s64.msgpack "$dev" -r 8
row svd s64.msgpack "$dev" -r 4 --init svd --teacher teacher.msgpack
row topk16 s16.msgpack "$dev" -r 4
row topkfull sfull.msgpack "$dev" -r 4
row tau2 stau2.msgpack "$dev" -r 4 --tau 2
row curated curated.msgpack eval.txt -r 4
row synthetic synthetic.msgpack eval.txt -r 4

# the table: recovery of the NLL gap, KL reduced, last-word accuracy recovery (with its stderr)
awk -F'\t' -v n="$n" -v e="$epochs" -v q="$quantizer" 'BEGIN {
	printf "stories260K W4/W2-GateUp (%s), %s samples (unless noted), %s epochs, lr 0.005:\n\n", q, n, e
	print "| run | distill options | NLL | NLL gap recovered | KL | KL reduced | last word | its recovery | train s |"
	print "|---|---|---|---|---|---|---|---|---|" }
{
	split($3, f, " "); split($4, b, " "); split($5, r, " ")
	lw = r[3] == "-" ? "-" : sprintf("%.3f +- %.3f", r[3], r[4])
	lr = r[3] == "-" ? "-" : sprintf("%.0f%% +- %.0f", 100 * (r[3] - b[3]) / (f[3] - b[3]), 100 * r[4] / (f[3] - b[3]))
	printf "| %s | %s | %.4f | %.1f%% | %.4f | %.1f%% | %s | %s | %s |\n", $1, $2, r[1], 100 * (b[1] - r[1]) / (b[1] - f[1]),
		r[2], 100 * (1 - r[2] / b[2]), lw, lr, $6 }' sweep.tsv
