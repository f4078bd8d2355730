#!/bin/sh
# test_lora_merge.sh: lora-merge on stories260K with a briefly trained adapter:
# the merged model scores as the unmerged student+adapter does; -p warns and
# measures what re-quantizing costs; recovery packs are byte-reproducible,
# verified, and load as models in every tool; bad input is refused with
# nothing half-written.
. "$(dirname "$0")/lib.sh"
model=$SHARED/models/stories260K/stories260K.bin
if [ ! -f "$model" ]; then
	skip lora_merge "no stories260K at $model"
	t_done
fi
cd "$TMP" || exit 1
head -c 20000 "$SHARED/data/tinystories/dev.txt" > dev.txt
"$BIN/qpack" -p f32 -o teacher.msgpack "$model" 2>/dev/null &&
	"$BIN/qpack" -q rtn -o student.msgpack teacher.msgpack 2>/dev/null &&
	"$BIN/teacher-gen" -n 48 --max-len 64 -o samples.msgpack teacher.msgpack 2>/dev/null &&
	"$BIN/distill" -r 4 --epochs 2 --lr 0.01 --samples samples.msgpack -o adapter.msgpack student.msgpack 2>/dev/null ||
	{ fail lora_merge_setup "could not make a student and an adapter"; t_done; }

# field FIELD: the first value of FIELD in evalrun's --json output on stdin
nll_of() { "$BIN/evalrun" --task ppl:dev.txt --json "$1" 2>/dev/null | sed -n 's/.*"metric":"nll","value":\([0-9.eE+-]*\).*/\1/p' | head -n 1; }
# close A B TOL: |A - B| <= TOL |B|
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= t * m) }'; }

# --- merging ---
if "$BIN/lora-merge" -o merged.msgpack student.msgpack adapter.msgpack 2>merge.err; then pass merge_runs; else fail merge_runs "$(cat merge.err)"; fi
u=$(nll_of student.msgpack+adapter.msgpack) mg=$(nll_of merged.msgpack) s=$(nll_of student.msgpack)
if close "$mg" "$u" 1e-5 && ! close "$s" "$u" 1e-3; then pass merge_equals_unmerged; else
	fail merge_equals_unmerged "merged NLL $mg, unmerged $u (student $s)"; fi
if "$BIN/tsdump" merged.msgpack | grep '"blk.0.ffn_gate.weight"' | grep -q '"dtype":"f32"' &&
	"$BIN/tsdump" merged.msgpack | grep '"blk.0.attn_q.weight"' | grep -q '"dtype":"q4g32"'; then
	pass merge_adapted_f32_rest_as_stored
else
	fail merge_adapted_f32_rest_as_stored "$("$BIN/tsdump" merged.msgpack | grep 'blk.0.ffn_gate\|blk.0.attn_q' | head -c 300)"
fi
src() { "$BIN/tsdump" "$1" | head -n 1 | sed -n 's/.*"source":"\([0-9a-f]*\)".*/\1/p'; }
if [ -n "$(src merged.msgpack)" ] && [ "$(src merged.msgpack)" = "$(src student.msgpack)" ]; then pass merge_keeps_source; else
	fail merge_keeps_source "$(src merged.msgpack) vs $(src student.msgpack)"; fi
"$BIN/lora-merge" student.msgpack+adapter.msgpack > merged2.msgpack 2>/dev/null
if cmp -s merged.msgpack merged2.msgpack; then pass merge_plus_form_same_bytes; else fail merge_plus_form_same_bytes "MODEL+ADAPTER merges differently"; fi

# --- re-quantizing: a warning and what it costs ---
"$BIN/lora-merge" -p q8 -o q8.msgpack student.msgpack adapter.msgpack 2>q8.err
if grep -q 'warning: re-quantizing' q8.err && grep -Eq 'check \(built-in.*NLL student [0-9.]+, merged [0-9.]+, re-quantized [0-9.]+: keeps [0-9.-]+% of the adapter' q8.err; then
	pass requant_warns_and_measures
else
	fail requant_warns_and_measures "$(grep -v '^lora-merge: blk' q8.err | head -c 400)"
fi
keep=$(sed -n 's/.*keeps \([0-9.-]*\)%.*/\1/p' q8.err)
# 8 bits keep nearly all of the gain; 2 bits (w4w2 again) much less
"$BIN/lora-merge" -p w4w2 -q rtn --check dev.txt -o w4w2.msgpack student.msgpack adapter.msgpack 2>w4w2.err
keep2=$(sed -n 's/.*keeps \([0-9.-]*\)%.*/\1/p' w4w2.err)
if awk -v a="$keep" -v b="$keep2" 'BEGIN { exit !(a != "" && b != "" && a > 90 && b < a - 20) }' && grep -q 'check (dev.txt' w4w2.err; then
	pass requant_cost_depends_on_bits
else
	fail requant_cost_depends_on_bits "q8 keeps $keep%, w4w2 $keep2%"
fi
if "$BIN/tsdump" w4w2.msgpack | grep '"blk.0.ffn_gate.weight"' | grep -q '"dtype":"q2g32".*"quantizer":"rtn"'; then pass requant_stored_with_stats; else
	fail requant_stored_with_stats "$("$BIN/tsdump" w4w2.msgpack | grep blk.0.ffn_gate | head -c 300)"; fi

# --- recovery packs ---
"$BIN/evalrun" --task ppl:dev.txt --fp teacher.msgpack --quant student.msgpack --recovered student.msgpack+adapter.msgpack \
	-o results.msgpack >/dev/null 2>&1
"$BIN/lora-merge" --pack a.tar --results results.msgpack student.msgpack adapter.msgpack 2>/dev/null
sleep 1
"$BIN/lora-merge" --pack b.tar --results results.msgpack student.msgpack adapter.msgpack 2>/dev/null
if [ -s a.tar ] && cmp -s a.tar b.tar; then pass pack_reproducible; else fail pack_reproducible "two packs of the same inputs differ"; fi
if [ "$(tar tf a.tar | tr '\n' ' ')" = "adapter.msgpack manifest.json model.msgpack results.msgpack " ] &&
	tar tvf a.tar | awk '$1 != "-rw-r--r--" || $2 != "0/0" { bad = 1 } END { exit bad }'; then
	pass pack_members_sorted_plain
else
	fail pack_members_sorted_plain "$(tar tvf a.tar | tr '\n' ';')"
fi
# the manifest's sha256 against sha256sum of what tar extracts (tools we did not write)
mkdir x && (cd x && tar xf ../a.tar)
ok=1
for f in adapter.msgpack model.msgpack results.msgpack; do
	h=$(sha256sum "x/$f" | cut -c1-64)
	grep -q "\"$f\": {\"bytes\": $(wc -c < "x/$f"), \"sha256\": \"$h\"}" x/manifest.json || ok=0
done
cmp -s x/model.msgpack student.msgpack && cmp -s x/adapter.msgpack adapter.msgpack || ok=0
if [ $ok = 1 ]; then pass pack_manifest_hashes; else fail pack_manifest_hashes "$(head -c 600 x/manifest.json)"; fi
if grep -q '"policy": "q4g32;ffn_gate,ffn_up=q2g32"' x/manifest.json && grep -q '"results": \[{' x/manifest.json &&
	grep -q '"rank": 4' x/manifest.json; then
	pass pack_manifest_describes
else
	fail pack_manifest_describes "$(head -c 600 x/manifest.json)"
fi
if "$BIN/lora-merge" --verify a.tar > verify.out 2>&1 && grep -q 'every member as its manifest says' verify.out; then pass pack_verify; else
	fail pack_verify "$(cat verify.out)"; fi
if [ "$(nll_of a.tar)" = "$u" ]; then pass pack_as_model_evalrun; else fail pack_as_model_evalrun "pack NLL $(nll_of a.tar), student+adapter $u"; fi
"$BIN/teacher-gen" -n 4 --max-len 32 --seed 3 -o g1.msgpack a.tar 2>/dev/null
"$BIN/teacher-gen" -n 4 --max-len 32 --seed 3 -o g2.msgpack student.msgpack+adapter.msgpack 2>/dev/null
if [ -s g1.msgpack ] && [ "$("$BIN/tsdump" g1.msgpack | sed 1d)" = "$("$BIN/tsdump" g2.msgpack | sed 1d)" ]; then
	pass pack_as_model_teacher_gen
else
	fail pack_as_model_teacher_gen "samples from the pack differ from student+adapter's"
fi
"$BIN/lora-merge" -o from-pack.msgpack a.tar 2>/dev/null
if cmp -s from-pack.msgpack merged.msgpack; then pass pack_merges_like_its_parts; else fail pack_merges_like_its_parts "merging the pack differs"; fi
expect_fail pack_refused_by_qpack 'carries an adapter' "$BIN/qpack" -o q.msgpack a.tar
expect_fail pack_refused_by_distill 'already carries an adapter' "$BIN/distill" --samples samples.msgpack -o d.msgpack a.tar

# --- bad input ---
"$BIN/qpack" -q mse -o other.msgpack teacher.msgpack 2>/dev/null
expect_fail bad_other_base 'trained on the model of content .*--force' "$BIN/lora-merge" -o o.msgpack other.msgpack adapter.msgpack
no_output bad_other_base_no_output o.msgpack
"$BIN/lora-merge" --force -o o.msgpack other.msgpack adapter.msgpack 2>force.err
if [ -s o.msgpack ] && grep -q 'warning: adapter.msgpack was trained on another model' force.err; then pass force_applies_with_warning; else
	fail force_applies_with_warning "$(cat force.err)"; fi
cat > small.json <<'EOF'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 5,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 256}
EOF
"$BIN/qpack" --random small.json -q rtn -o small.msgpack 2>/dev/null
expect_fail bad_shape_even_forced 'shape \[|does not fit|targets' "$BIN/lora-merge" --force -o s.msgpack small.msgpack adapter.msgpack
no_output bad_shape_no_output s.msgpack
expect_fail bad_no_adapter 'no adapter to merge' "$BIN/lora-merge" -o n.msgpack student.msgpack
expect_fail bad_adapter_is_model 'not an adapter stream' "$BIN/lora-merge" -o n.msgpack student.msgpack teacher.msgpack

# an output that exists is replaced whole, or left alone when the run fails
cp merged.msgpack keep.msgpack
"$BIN/lora-merge" -o keep.msgpack other.msgpack adapter.msgpack 2>/dev/null
if cmp -s keep.msgpack merged.msgpack && ! ls keep.msgpack.tmp.* >/dev/null 2>&1; then pass failed_run_keeps_old_output; else
	fail failed_run_keeps_old_output "keep.msgpack changed or a temporary was left"; fi
"$BIN/lora-merge" -p q8 -o keep.msgpack student.msgpack adapter.msgpack 2>/dev/null
if cmp -s keep.msgpack q8.msgpack; then pass output_replaced; else fail output_replaced "keep.msgpack is not the new merge"; fi

# a pack whose member fails its sha256: flip one byte inside model.msgpack's data
cp a.tar bad.tar
off=$(tar tvf a.tar --block-number | awk '/model.msgpack/ { print ($2 + 0 + 1) * 512 + 4000 }' | tr -d :)
if [ -n "$off" ]; then
	printf 'Z' | dd of=bad.tar bs=1 seek="$off" conv=notrunc 2>/dev/null
	expect_fail pack_bad_member_verify 'model.msgpack fails its check' "$BIN/lora-merge" --verify bad.tar
	expect_fail pack_bad_member_load 'model.msgpack|fails its check' "$BIN/evalrun" --task ppl:dev.txt bad.tar
else
	fail pack_bad_member "could not find model.msgpack's block in a.tar"
fi
# entries with absolute paths or "..", links and unknown members are refused
mkdir -p evil/sub && cp x/* evil/sub/ && echo owned > evil/victim
(cd evil/sub && tar -P -cf ../../dotdot.tar adapter.msgpack manifest.json ../victim model.msgpack)
expect_fail pack_dotdot_refused 'absolute path or one with "\.\."; refused' "$BIN/lora-merge" --verify dotdot.tar
(cd evil/sub && tar -P -cf ../../abs.tar adapter.msgpack manifest.json "$TMP/evil/victim" model.msgpack)
expect_fail pack_absolute_refused 'absolute path or one with "\.\."; refused' "$BIN/evalrun" --task ppl:dev.txt abs.tar
(cd evil/sub && rm -f results.msgpack && ln -s /etc/passwd results.msgpack && tar -cf ../../link.tar adapter.msgpack manifest.json model.msgpack results.msgpack)
expect_fail pack_link_refused 'not a regular file' "$BIN/lora-merge" --verify link.tar
(cd evil/sub && rm results.msgpack && cp ../victim extra.txt && tar -cf ../../extra.tar adapter.msgpack extra.txt manifest.json model.msgpack)
expect_fail pack_unknown_member_refused 'not a member a pack has' "$BIN/lora-merge" --verify extra.tar
(cd evil/sub && rm extra.txt && tar -cf ../../nomanifest.tar adapter.msgpack model.msgpack)
expect_fail pack_without_manifest 'no manifest.json' "$BIN/lora-merge" --verify nomanifest.tar
head -c 30000 a.tar > cut.tar
expect_fail pack_cut_refused 'cut\.tar' "$BIN/lora-merge" --verify cut.tar
expect_fail verify_not_a_pack 'dev.txt' "$BIN/lora-merge" --verify dev.txt
no_output pack_failures_leave_no_pack failed.tar
t_done
