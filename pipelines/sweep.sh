#!/bin/sh
# sweep.sh [MODEL] [OUTDIR]: recovery against LoRA rank, for several
# quantization policies.
#
# One teacher and one set of synthetic samples serve every cell: for each
# policy the student is quantized once, an adapter is trained for each rank,
# and one evalrun call scores the teacher, the student and the student with
# each adapter on the evaluation text (NLL, KL and top-1 against the teacher,
# the recovery of each). The results land in OUTDIR as results.txt (a table),
# results.tsv and results.json (one row per policy and rank; rank 0 is the
# student without an adapter, policy "fp" the teacher) and sweep.svg (NLL
# against rank, a line per policy, the teacher's NLL dashed). A rerun reuses
# every output whose inputs and settings are unchanged, so adding a rank or a
# policy trains only the new cells.
#
#   SWEEP_RANKS     ranks (default "1 2 4 8")
#   SWEEP_POLICIES  NAME:POLICY pairs, POLICY in qpack's grammar (default
#                   "w4w2:w4w2 q4:q4 w4w3:q4;ffn_gate,ffn_up=q3")
#   SWEEP_TARGETS   the tensors adapted, the same for every policy so that a
#                   rank costs the same everywhere (default ffn_gate,ffn_up)
#   SWEEP_TEACHER, SWEEP_SAMPLES  existing files to use instead of making them
#                   (e.g. recover.sh's out/teacher.msgpack and out/samples.msgpack)
#   RECOVER_SAMPLES (1000), RECOVER_LEN (256), RECOVER_EPOCHS (4),
#   RECOVER_LR (0.005), RECOVER_QUANTIZER (mse), RECOVER_TEXT (the TinyStories
#   dev text), RECOVER_MODEL: as in recover.sh
#
# MODEL and OUTDIR default as in recover.sh, OUTDIR to out/sweep.
set -eu
rl_name=sweep
. "$(dirname "$0")/lib.sh"
rl_init
rl_model_args "$top/out/sweep" "$@"
ranks=${SWEEP_RANKS:-1 2 4 8}
policies=${SWEEP_POLICIES:-w4w2:w4w2 q4:q4 w4w3:q4;ffn_gate,ffn_up=q3}
targets=${SWEEP_TARGETS:-ffn_gate,ffn_up}
quantizer=${RECOVER_QUANTIZER:-mse}
nsamples=${RECOVER_SAMPLES:-1000} slen=${RECOVER_LEN:-256}
epochs=${RECOVER_EPOCHS:-4} lr=${RECOVER_LR:-0.005}
for r in $ranks; do
	case $r in '' | *[!0-9]* | 0) rl_die "SWEEP_RANKS: '$r' is not a rank (a positive integer)" ;; esac
done
for p in $policies; do
	case ${p%%:*} in '' | *[!A-Za-z0-9_.-]* | "$p") rl_die "SWEEP_POLICIES: '$p' is not NAME:POLICY (NAME of letters, digits, _ . -)" ;; esac
done
teacher=${SWEEP_TEACHER:+$(rl_abs "$SWEEP_TEACHER")}
samples=${SWEEP_SAMPLES:+$(rl_abs "$SWEEP_SAMPLES")}
cd "$out"

# the teacher and the samples, shared by every cell
if [ -z "$teacher" ]; then
	teacher=teacher.msgpack
	rl_stage teacher.msgpack "$(rl_id "$model")" "$bin/qpack" -p f32 -o teacher.msgpack "$model"
fi
if [ -z "$samples" ]; then
	samples=samples.msgpack
	rl_stage samples.msgpack "$nsamples $slen $(rl_id "$teacher")" \
		"$bin/teacher-gen" -n "$nsamples" --max-len "$slen" --seed 1 -o samples.msgpack "$teacher"
fi

# evaluate NAME: the teacher, NAME's student and its adapters, into NAME.results.msgpack (and .txt)
evaluate() {
	set -- "$1" --task "ppl:$text" --fp "$teacher" --quant "$1.student.msgpack"
	for r in $ranks; do set -- "$@" --recovered "$1.student.msgpack+$1.r$r.adapter.msgpack"; done
	name=$1
	shift
	"$bin/evalrun" "$@" -o "$name.results.msgpack" > "$name.results.txt.tmp"
	mv "$name.results.txt.tmp" "$name.results.txt"
}

for p in $policies; do
	name=${p%%:*} spec=${p#*:}
	rl_stage "$name.student.msgpack" "$spec $quantizer $(rl_id "$teacher")" \
		"$bin/qpack" -p "$spec" -q "$quantizer" -o "$name.student.msgpack" "$teacher"
	stamps=
	for r in $ranks; do
		a=$name.r$r.adapter.msgpack
		rl_stage "$a" "$r $epochs $lr $targets $(rl_id "$name.student.msgpack") $(rl_id "$samples")" \
			"$bin/distill" -r "$r" --epochs "$epochs" --lr "$lr" --targets "$targets" \
			--samples "$samples" -o "$a" "$name.student.msgpack"
		stamps="$stamps $(rl_id "$a")"
	done
	rl_stage "$name.results.msgpack" "$text $(rl_id "$text") $(rl_id "$teacher")$stamps" evaluate "$name"
done

# the rows: policy spec rank params params_pct nll nll_se kld top1 recovery_nll recovery_kld
{
	printf 'policy\tspec\trank\tparams\tparams_pct\tnll\tnll_se\tkld\ttop1\trecovery_nll\trecovery_kld\n'
	for p in $policies; do
		name=${p%%:*} spec=${p#*:}
		for r in $ranks; do
			# distill's first line: "... 9440 parameters (3.63% of the model's) ..."
			sed -n '1s/.* \([0-9][0-9]*\) parameters (\([0-9.]*\)%.*/'"$name"' '"$r"' \1 \2/p' "$name.r$r.adapter.log"
		done
	done > params.tmp
	rl_results ./*.results.msgpack | awk -F '\t' -v OFS='\t' -v policies="$policies" -v ranks="$ranks" -v teacher="$teacher" '
	part == 1 { split($0, f, " "); params[f[1] " " f[2]] = f[3]; pct[f[1] " " f[2]] = f[4]; next }
	{ v[$1 SUBSEP $2 SUBSEP $4] = $5; se[$1 SUBSEP $2 SUBSEP $4] = $6 }
	function val(m, role, metric, withse) {
		if (!((m, role, metric) in v))
			return withse ? "n/a\tn/a" : "n/a"
		return withse ? v[m, role, metric] "\t" se[m, role, metric] : v[m, role, metric]
	}
	function row(policy, spec, rank, np, pp, m, role) {
		print policy, spec, rank, np, pp, val(m, role, "nll", 1), val(m, role, "kld"), val(m, role, "top1"),
			val(m, role, "recovery_nll"), val(m, role, "recovery_kld")
	}
	END {
		np = split(policies, P, " ")
		nr = split(ranks, R, " ")
		row("fp", "f32", 0, 0, 0, teacher, "fp")
		for (i = 1; i <= np; i++) {
			name = P[i]; sub(/:.*/, "", name)
			spec = P[i]; sub(/^[^:]*:/, "", spec)
			s = name ".student.msgpack"
			row(name, spec, 0, 0, 0, s, "quant")
			for (j = 1; j <= nr; j++)
				row(name, spec, R[j], params[name " " R[j]], pct[name " " R[j]], s "+" name ".r" R[j] ".adapter.msgpack", "recovered")
		}
	}' part=1 params.tmp part=2 -
} > results.tsv.tmp
rm -f params.tmp
mv results.tsv.tmp results.tsv

# results.json: the same rows as objects; n/a becomes null
awk -F '\t' 'NR == 1 { for (i = 1; i <= NF; i++) key[i] = $i; next }
	{
		printf "%s{", (NR == 2 ? "[" : ",\n ")
		for (i = 1; i <= NF; i++) {
			v = $i
			if (v == "n/a") v = "null"
			else if (i <= 2) { gsub(/["\\]/, "\\\\&", v); v = "\"" v "\"" }
			printf "%s\"%s\":%s", (i > 1 ? "," : ""), key[i], v
		}
		printf "}"
	}
	END { print (NR > 1 ? "]" : "[]") }' results.tsv > results.json.tmp
mv results.json.tmp results.json

# results.txt: the table a person reads
awk -F '\t' -v model="$model" -v text="$text" -v n="$nsamples" -v len="$slen" -v ep="$epochs" -v lr="$lr" -v q="$quantizer" -v targets="$targets" '
	NR == 1 {
		printf "sweep of %s: %s samples of up to %s tokens, %s epochs at lr %s, %s quantizer, adapters on %s\n", model, n, len, ep, lr, q, targets
		printf "evaluated on %s; recovery = share of the student'"'"'s gap to the teacher closed (n/a: gap within noise)\n\n", text
		printf "%-8s %-28s %4s %8s %7s %8s %7s %7s %7s %9s %9s\n", "policy", "spec", "rank", "params", "%model", "nll", "±", "kld", "top1", "rec. nll", "rec. kld"
		next
	}
	function num(x, f) { return x == "n/a" ? x : sprintf(f, x) }
	function pct(x) { return x == "n/a" ? x : sprintf("%.1f%%", x) }
	{
		printf "%-8s %-28s %4s %8s %7s %8s %7s %7s %7s %9s %9s\n", $1, $2, $3 == 0 ? "-" : $3, $3 == 0 ? "-" : $4,
			$3 == 0 ? "-" : $5 "%", num($6, "%.4f"), num($7, "%.4f"), num($8, "%.4f"), num($9, "%.4f"),
			$3 == 0 ? "-" : pct($10), $3 == 0 ? "-" : pct($11)
	}' results.tsv > results.txt.tmp
mv results.txt.tmp results.txt

# sweep.svg: NLL against rank (evenly spaced; "none" is the student without
# an adapter), one line per policy, the teacher dashed
awk -F '\t' -v title="NLL on $(basename "$text") against LoRA rank: $(basename "$model")" '
	function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
	NR == 1 { next }
	$1 == "fp" { fp = $6; next }
	$6 == "n/a" { next }
	{
		if (!($1 in seen)) { seen[$1] = 1; order[++np] = $1 }
		if (!($3 in xi)) { xi[$3] = ++nx; xlabel[nx] = $3 == 0 ? "none" : $3 }
		y[$1, xi[$3]] = $6
		lo = (lo == "" || $6 < lo) ? $6 : lo
		hi = (hi == "" || $6 > hi) ? $6 : hi
	}
	END {
		if (fp != "" && fp != "n/a") { lo = fp < lo ? fp : lo; hi = fp > hi ? fp : hi }
		if (hi == lo) { hi += 0.5; lo -= 0.5 }
		pad = (hi - lo) * 0.08; hi += pad; lo -= pad
		W = 640; H = 400; L = 64; R = 150; T = 40; B = 50
		pw = W - L - R; ph = H - T - B
		split("#1f77b4 #d62728 #2ca02c #9467bd #ff7f0e #8c564b #e377c2 #17becf", color, " ")
		printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H
		printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H
		printf "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n", L + pw / 2, esc(title)
		for (k = 0; k <= 5; k++) { # y grid and labels
			v = lo + (hi - lo) * k / 5; py = T + ph - ph * k / 5
			printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, L + pw, py
			printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n", L - 6, py + 4, v
		}
		for (i = 1; i <= nx; i++) {
			px[i] = nx == 1 ? L + pw / 2 : L + 20 + (pw - 40) * (i - 1) / (nx - 1)
			printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px[i], T + ph + 18, xlabel[i]
		}
		printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph
		printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">LoRA rank</text>\n", L + pw / 2, H - 10
		printf "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">NLL (nats/token)</text>\n", T + ph / 2, T + ph / 2
		if (fp != "" && fp != "n/a") {
			py = T + ph - ph * (fp - lo) / (hi - lo)
			printf "<line class=\"teacher\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"6 4\"/>\n", L, py, L + pw, py
			printf "<text x=\"%d\" y=\"%.1f\">teacher %.4f</text>\n", L + pw + 8, py + 4, fp
		}
		for (p = 1; p <= np; p++) {
			c = color[(p - 1) % 8 + 1]; pts = ""
			for (i = 1; i <= nx; i++)
				if ((order[p], i) in y)
					pts = pts sprintf("%s%.1f,%.1f", pts == "" ? "" : " ", px[i], T + ph - ph * (y[order[p], i] - lo) / (hi - lo))
			printf "<polyline class=\"policy\" data-policy=\"%s\" points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", esc(order[p]), pts, c
			n = split(pts, xy, " ")
			for (i = 1; i <= n; i++) {
				split(xy[i], q, ",")
				printf "<circle cx=\"%s\" cy=\"%s\" r=\"3.5\" fill=\"%s\"/>\n", q[1], q[2], c
			}
			ly = T + 10 + 20 * p
			printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", L + pw + 8, ly, L + pw + 28, ly, c
			printf "<text x=\"%d\" y=\"%d\">%s</text>\n", L + pw + 34, ly + 4, esc(order[p])
		}
		print "</svg>"
	}' results.tsv > sweep.svg.tmp
mv sweep.svg.tmp sweep.svg

cat results.txt
rl_say "done: $out/results.txt, results.tsv, results.json, sweep.svg (adapters, results streams and logs beside them)"
