#!/bin/sh
# test_evalrun.sh: evalrun's tasks, roles and recovery table, outputs, and bad input.
# Per-item log-likelihoods against PyTorch are in test_eval.c.
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
DEV=$SHARED/data/tinystories/dev.txt
E=$BIN/evalrun

"$BIN/qpack" -p f32 -o "$TMP/fp.msgpack" "$MODEL" 2>/dev/null
"$BIN/qpack" -q rtn -o "$TMP/q.msgpack" "$TMP/fp.msgpack" 2>/dev/null
head -c 12000 "$DEV" > "$TMP/dev.txt"

# value METRIC TASK-SUBSTRING [ROLE]: a value from the table (json) on stdin
value() { grep "\"metric\":\"$1\"" | grep -F "$2" | grep -F "${3:-}" | sed -n 's/.*"value":\([^,]*\),.*/\1/p' | head -n 1; }

# --- acc and acc_norm where they disagree: "Amy." has the higher total
# log-likelihood, "Lucy." the higher per character; "Sue." beats the long
# greedy sentence in total but not per character ---
cat > "$TMP/hand.jsonl" <<'EOF'
{"query": "Once upon a time, there was a little girl named", "choices": ["Sue.", "Lily. She loved to play outside in the park. One day, she saw a big, red ball."], "gold": 1}
{"query": "Once upon a time, there was a little girl named", "choices": ["Amy.", "Lucy."], "gold": 0}
{"query": "Once upon a time, there was a little girl named", "choices": ["Lucy.", "Amy."], "gold": 0}
EOF
"$E" --json --task "mc:$TMP/hand.jsonl" --items "$TMP/items.jsonl" "$MODEL" > "$TMP/hand.json" 2>"$TMP/err"
acc=$(value acc hand < "$TMP/hand.json"); accn=$(value acc_norm hand < "$TMP/hand.json")
# the items show why: each pred is the argmax of ll, each pred_norm of ll / characters
why=$(awk -F'"ll":\\[' '{ split($2, a, "]"); split(a[1], ll, ",");
	match($0, /"pred":[0-9]+/); p = substr($0, RSTART + 7, RLENGTH - 7);
	match($0, /"pred_norm":[0-9]+/); pn = substr($0, RSTART + 12, RLENGTH - 12);
	print p, pn, (ll[1] > ll[2]) ? 0 : 1 }' "$TMP/items.jsonl" | tr '\n' ' ')
if [ "$acc" = 0.333333333 ] && [ "$accn" = 0.666666667 ] && [ "$why" = "0 1 0 0 1 0 1 0 1 " ]; then
	pass mc_acc_vs_acc_norm
else
	fail mc_acc_vs_acc_norm "acc $acc acc_norm $accn, items (pred pred_norm argmax-ll): $why; $(cat "$TMP/err")"
fi

cat > "$TMP/wino.jsonl" <<'EOF'
{"context_options": ["Lily had a red ball. Tom", "Lily had a red ball. Lily"], "continuation": "was happy to play with her ball.", "gold": 1}
{"context_options": ["The dog ran to the park. The dog", "The dog ran to the park. The park"], "continuation": "barked at the bird.", "gold": 0}
EOF
"$E" --task "mc:$TMP/wino.jsonl" "$MODEL" > "$TMP/wino.txt" 2>&1
if grep -q ' acc ' "$TMP/wino.txt" && ! grep -q acc_norm "$TMP/wino.txt"; then pass mc_winogrande_form; else fail mc_winogrande_form "$(cat "$TMP/wino.txt")"; fi

# --- roles, KL against the fp model, recovery ---
"$E" --json --task "ppl:$TMP/dev.txt" --task "mc:$TMP/hand.jsonl" --fp "$TMP/fp.msgpack" --quant "$TMP/q.msgpack" \
	--recovered "$TMP/fp.msgpack" --recovered "$TMP/q.msgpack" -o "$TMP/res.msgpack" > "$TMP/rec.json" 2>"$TMP/err"
rfp=$(grep '"metric":"recovery_nll"' "$TMP/rec.json" | grep -F '"model":"'"$TMP/fp.msgpack" | sed -n 's/.*"value":\([^,]*\),.*/\1/p')
rq=$(grep '"metric":"recovery_kld"' "$TMP/rec.json" | grep -F '"model":"'"$TMP/q.msgpack" | sed -n 's/.*"value":\([^,]*\),.*/\1/p')
if [ "$rfp" = 100 ] && [ "$rq" = 0 ]; then pass recovery_ends; else fail recovery_ends "fp as recovered: $rfp, quant as recovered: $rq; $(cat "$TMP/err")"; fi
kq=$(grep '"metric":"kld"' "$TMP/rec.json" | grep '"role":"quant"' | sed -n 's/.*"value":\([^,]*\),.*/\1/p')
t1=$(grep '"metric":"top1"' "$TMP/rec.json" | grep '"role":"quant"' | sed -n 's/.*"value":\([^,]*\),.*/\1/p')
if awk -v k="$kq" -v t="$t1" 'BEGIN { exit !(k > 0.1 && t > 0.2 && t < 0.9) }'; then pass kld_quant; else fail kld_quant "kld $kq top1 $t1"; fi
# three hand-made items cannot tell fp from quant: n/a, not a ratio of noise
if grep '"metric":"recovery_acc"' "$TMP/rec.json" | grep -q '"value":null'; then pass recovery_na_in_noise; else fail recovery_na_in_noise "$(grep recovery_acc "$TMP/rec.json")"; fi
"$BIN/tsdump" "$TMP/res.msgpack" > "$TMP/res.jsonl" 2>&1
if grep -q '"kind":"results"' "$TMP/res.jsonl" && grep -q '"metric":"recovery_nll".*"value":100' "$TMP/res.jsonl" &&
	[ "$(grep -c '"t":"result"' "$TMP/res.jsonl")" -ge 20 ]; then pass results_stream; else fail results_stream "$(head -c 400 "$TMP/res.jsonl")"; fi
# --- the recovery's standard error, paired item by item: the formula redone here
# from the items, and a bootstrap of the items (resampled with replacement)
# that should agree with it ---
"$BIN/qpack" -q mse -o "$TMP/mse.msgpack" "$TMP/fp.msgpack" 2>/dev/null
LW=$SHARED/data/tinystories/lastword.jsonl
"$E" --json --task "lastword:$LW" --fp "$TMP/fp.msgpack" --quant "$TMP/q.msgpack" --recovered "$TMP/mse.msgpack" \
	--items "$TMP/lw.jsonl" > "$TMP/lw.json" 2>"$TMP/err"
row=$(grep '"metric":"recovery_acc"' "$TMP/lw.json")
got_r=$(printf '%s' "$row" | sed -n 's/.*"value":\([^,]*\),.*/\1/p')
got_se=$(printf '%s' "$row" | sed -n 's/.*"stderr":\([^,]*\),.*/\1/p')
fpm=$TMP/fp.msgpack qm=$TMP/q.msgpack mm=$TMP/mse.msgpack
ref=$(awk -v fpm="$fpm" -v qm="$qm" -v mm="$mm" '
	{ match($0, /"model":"[^"]*"/); m = substr($0, RSTART + 9, RLENGTH - 10)
	  match($0, /"line":[0-9]+/); l = substr($0, RSTART + 7, RLENGTH - 7) + 0
	  match($0, /"greedy":[01]/); g = substr($0, RSTART + 9, 1) + 0
	  if (m == fpm) f[l] = g; else if (m == qm) q[l] = g; else if (m == mm) r[l] = g
	  if (l > n) n = l }
	END {
		for (i = 1; i <= n; i++) { a[i] = r[i] - q[i]; b[i] = f[i] - q[i]; sa += a[i]; sb += b[i] }
		R = sa / sb
		for (i = 1; i <= n; i++) ss += (a[i] - R * b[i]) ^ 2
		se = 100 * sqrt(n / (n - 1) * ss) / (sb < 0 ? -sb : sb)
		srand(7); B = 2000
		for (k = 0; k < B; k++) {
			xa = 0; xb = 0
			for (j = 0; j < n; j++) { i = int(rand() * n) + 1; xa += a[i]; xb += b[i] }
			v = xb ? 100 * xa / xb : 0; s1 += v; s2 += v * v
		}
		boot = sqrt((s2 - s1 * s1 / B) / (B - 1))
		printf "%.6f %.6f %.6f %d\n", 100 * R, se, boot, n }' "$TMP/lw.jsonl")
set -- $ref
echo "# recovery_stderr_paired: evalrun $got_r ± $got_se; from the items $1 ± $2, bootstrap $3"
if awk -v gr="$got_r" -v gs="$got_se" -v r="$1" -v s="$2" -v b="$3" -v n="$4" 'BEGIN {
	exit !(n == 317 && gs + 0 > 0 && (gr - r) ^ 2 < 1e-8 && (gs - s) ^ 2 < 1e-8 && gs / b > 0.8 && gs / b < 1.25) }'; then
	pass recovery_stderr_paired
else
	fail recovery_stderr_paired "evalrun: recovery $got_r stderr $got_se; from the items: recovery $1 stderr $2, bootstrap $3 (n $4); $(head -c 300 "$TMP/err")"
fi
"$E" --task "ppl:$TMP/dev.txt" --fp "$TMP/fp.msgpack" --quant "$TMP/q.msgpack" --recovered "$TMP/q.msgpack" > "$TMP/rec.txt" 2>&1
if grep -q '^recovery = ' "$TMP/rec.txt" && grep -Eq 'kld .* 0\.0%' "$TMP/rec.txt"; then pass recovery_table; else fail recovery_table "$(tail -n 4 "$TMP/rec.txt")"; fi

# --- --int8-act: a quantized model measured against itself with exact
# activations moves a little; a model stored as floats does not move ---
"$E" --json --int8-act --task "ppl:$TMP/dev.txt" --reference "$TMP/q.msgpack" "$TMP/q.msgpack" "$TMP/fp.msgpack" > "$TMP/i8.json" 2>"$TMP/err"
kq=$(value kld '"model":"'"$TMP/q.msgpack" < "$TMP/i8.json"); kf=$(grep '"model":"'"$TMP/fp.msgpack" "$TMP/i8.json" | value nll ppl)
nf=$("$E" --json --task "ppl:$TMP/dev.txt" "$TMP/fp.msgpack" 2>/dev/null | value nll ppl)
if awk -v k="$kq" 'BEGIN { exit !(k > 0 && k < 0.05) }' && [ -n "$kf" ] && [ "$kf" = "$nf" ]; then
	pass int8_act_cost
else
	fail int8_act_cost "self-KL of the quantized model $kq, f32 model's nll $kf vs $nf; $(cat "$TMP/err")"
fi

# --- lastword ---
head -n 30 "$SHARED/data/tinystories/lastword.jsonl" > "$TMP/lw.jsonl"
"$E" --json --task "lastword:$TMP/lw.jsonl" "$MODEL" > "$TMP/lw.json" 2>&1
a=$(value acc lastword < "$TMP/lw.json"); n=$(value nll lastword < "$TMP/lw.json")
if awk -v a="$a" -v n="$n" 'BEGIN { exit !(a > 0.05 && a < 0.8 && n > 0.5) }'; then pass lastword_task; else fail lastword_task "acc $a nll $n"; fi

# --- bad input ---
printf '{"query":"q","choices":["a","b"],"gold":0}\n{"query":"q","choices":["a","b"],"gold":5}\n' > "$TMP/bad.jsonl"
expect_fail bad_gold "bad.jsonl:2: gold 5 is out of range" "$E" --task "mc:$TMP/bad.jsonl" "$MODEL"
"$E" --skip-bad --task "mc:$TMP/bad.jsonl" "$MODEL" > "$TMP/skip.out" 2>"$TMP/skip.err"
if [ $? -eq 0 ] && grep -q 'bad.jsonl:2: .*skipped' "$TMP/skip.err" && grep -Eq ' acc .* 1$' "$TMP/skip.out"; then
	pass skip_bad
else
	fail skip_bad "$(cat "$TMP/skip.err" "$TMP/skip.out")"
fi
: > "$TMP/empty.jsonl"
expect_fail bad_empty_task "empty.jsonl: no items" "$E" --task "lastword:$TMP/empty.jsonl" "$MODEL"
cat > "$TMP/tiny.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 300,
 "max_position_embeddings": 64, "rope_theta": 10000, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
"$BIN/qpack" --random "$TMP/tiny.json" --seed 1 -o "$TMP/r.msgpack" 2>/dev/null
expect_fail bad_reference_vocab "vocabularies differ" "$E" --task "ppl:$TMP/dev.txt" --reference "$TMP/r.msgpack" "$MODEL"
expect_fail bad_model_no_items_file "missing.bin" "$E" --task "mc:$TMP/hand.jsonl" --items "$TMP/out.jsonl" "$TMP/missing.bin"
no_output items_not_left_behind "$TMP/out.jsonl"
"$E" --task "foo:bar" "$MODEL" >/dev/null 2>&1
if [ $? -eq 2 ]; then pass unknown_task_usage; else fail unknown_task_usage "exit status not 2"; fi
"$E" --task "ppl:$TMP/dev.txt" --recovered "$MODEL" >/dev/null 2>&1
if [ $? -eq 2 ]; then pass recovered_needs_roles; else fail recovered_needs_roles "exit status not 2"; fi
t_done
