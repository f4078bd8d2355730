#!/bin/sh
# test_distill.sh: distill end to end on stories260K: the student comes back
# towards the teacher, runs are deterministic, a resumed run equals an
# uninterrupted one bit for bit, signals leave a checkpoint, bad input fails.
# Gradients themselves are checked in test_train.c.
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
D=$BIN/distill
"$BIN/qpack" -p f32 -o "$TMP/fp.msgpack" "$MODEL" 2>/dev/null
"$BIN/qpack" -q rtn -o "$TMP/q.msgpack" "$TMP/fp.msgpack" 2>/dev/null
"$BIN/teacher-gen" -n 64 --max-len 96 --seed 3 -o "$TMP/s.msgpack" "$TMP/fp.msgpack" 2>/dev/null
head -c 20000 "$SHARED/data/tinystories/dev.txt" > "$TMP/dev.txt"
RUN="-r 4 --epochs 3 --lr 0.005 --batch-tokens 768 --eval-every 0 --samples $TMP/s.msgpack -t 2"

# shellcheck disable=SC2086
check distill_runs "$D" $RUN -o "$TMP/a.msgpack" "$TMP/q.msgpack"
kl() { "$BIN/evalrun" --json --task "ppl:$TMP/dev.txt" --reference "$TMP/fp.msgpack" "$1" | grep '"metric":"kld"' | sed 's/.*"value":\([^,]*\),.*/\1/'; }
k0=$(kl "$TMP/q.msgpack"); k1=$(kl "$TMP/q.msgpack+$TMP/a.msgpack")
if awk -v a="$k0" -v b="$k1" 'BEGIN { exit !(b > 0 && b < 0.8 * a) }'; then
	pass distill_recovers
else
	fail distill_recovers "KL to the teacher on held-out text: student $k0, with the adapter $k1"
fi

# shellcheck disable=SC2086
"$D" $RUN -o "$TMP/b.msgpack" "$TMP/q.msgpack" 2>/dev/null
if cmp -s "$TMP/a.msgpack" "$TMP/b.msgpack"; then pass distill_deterministic; else fail distill_deterministic "two runs differ"; fi
# the samples' order in the stream does not matter: shards joined either way
for i in 0 1; do "$BIN/teacher-gen" -n 64 --max-len 96 --seed 3 --shard $i/2 -o "$TMP/sh$i.msgpack" "$TMP/fp.msgpack" 2>/dev/null; done
cat "$TMP/sh1.msgpack" "$TMP/sh0.msgpack" > "$TMP/s10.msgpack"
# shellcheck disable=SC2086
"$D" $RUN --samples "$TMP/s10.msgpack" -o "$TMP/c.msgpack" "$TMP/q.msgpack" 2>/dev/null
if cmp -s "$TMP/a.msgpack" "$TMP/c.msgpack"; then pass distill_order_free; else fail distill_order_free "shards joined in another order changed the adapter"; fi

# a checkpoint mid-run, resumed, ends where the uninterrupted run ends
# shellcheck disable=SC2086
"$D" $RUN --checkpoint "$TMP/ck.msgpack" --checkpoint-every 7 -o "$TMP/d.msgpack" "$TMP/q.msgpack" 2>"$TMP/d.err"
total=$(sed -n 's/.* \([0-9]*\) steps over .*/\1/p' "$TMP/d.err" | head -n 1)
ckstep=$("$BIN/tsdump" "$TMP/ck.msgpack" | sed -n 's/.*"t":"summary".*"step":\([0-9]*\).*/\1/p')
# shellcheck disable=SC2086
"$D" $RUN --resume "$TMP/ck.msgpack" -o "$TMP/e.msgpack" "$TMP/q.msgpack" 2>/dev/null
if [ -n "$ckstep" ] && [ "$ckstep" -gt 0 ] && [ "$ckstep" -lt "$total" ] && cmp -s "$TMP/a.msgpack" "$TMP/e.msgpack"; then
	pass distill_resume_bit_exact
else
	fail distill_resume_bit_exact "checkpoint at step $ckstep of $total; resumed adapter differs from the uninterrupted one"
fi
# the closing line: the whole run's rate and the rate after its first step
if grep -q "^distill: $total steps, [0-9]* tokens in [0-9.]* s ([0-9]* tokens/s; [0-9]* after the first step); last train KL" "$TMP/d.err"; then
	pass distill_summary_rates
else
	fail distill_summary_rates "$(tail -n 1 "$TMP/d.err")"
fi

# SIGTERM: a checkpoint that is a readable adapter, exit 1, no output under its name
# shellcheck disable=SC2086
"$D" $RUN --epochs 100000 --checkpoint "$TMP/sig.msgpack" --checkpoint-every 1 -o "$TMP/f.msgpack" "$TMP/q.msgpack" 2>"$TMP/sig.err" &
pid=$!
# signal once training is under way (the first checkpoint exists), however slow the machine
i=0
while [ ! -e "$TMP/sig.msgpack" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
rc=$?
sigstep=$("$BIN/tsdump" "$TMP/sig.msgpack" 2>/dev/null | sed -n 's/.*"t":"summary".*"step":\([0-9]*\).*/\1/p')
if [ $rc -eq 1 ] && grep -q "stopped by signal 15" "$TMP/sig.err" && [ ! -e "$TMP/f.msgpack" ] &&
	[ "${sigstep:-0}" -gt 0 ] && "$BIN/evalrun" --task "ppl:$TMP/dev.txt" "$TMP/q.msgpack+$TMP/sig.msgpack" >/dev/null 2>&1; then
	pass distill_signal_checkpoint
else
	fail distill_signal_checkpoint "exit $rc, checkpoint step ${sigstep:-none}: $(tail -n 1 "$TMP/sig.err")"
fi

# --init svd: A and B from the quantization residual's SVD; the student starts closer to the teacher
# (--epochs 0 writes the initial adapter)
# shellcheck disable=SC2086
"$D" $RUN --init svd --teacher "$TMP/fp.msgpack" --epochs 0 -o "$TMP/svd0.msgpack" "$TMP/q.msgpack" 2>"$TMP/svd.err"
k2=$(kl "$TMP/q.msgpack+$TMP/svd0.msgpack")
if grep -q "SVD initialisation" "$TMP/svd.err" && awk -v a="$k0" -v b="$k2" 'BEGIN { exit !(b > 0 && b < 0.95 * a) }'; then
	pass distill_svd_init_closer
else
	fail distill_svd_init_closer "KL to the teacher: student $k0, with the SVD initialisation $k2: $(tail -n 1 "$TMP/svd.err")"
fi
# --init ADAPTER starts from that adapter: with no training, the same model
# shellcheck disable=SC2086
"$D" $RUN --init "$TMP/a.msgpack" --epochs 0 -o "$TMP/i0.msgpack" "$TMP/q.msgpack" 2>/dev/null
k3=$(kl "$TMP/q.msgpack+$TMP/i0.msgpack")
if [ -n "$k3" ] && [ "$k3" = "$k1" ]; then pass distill_init_adapter; else fail distill_init_adapter "KL $k3, the adapter's own $k1"; fi

# bad input
cat > "$TMP/tiny.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 512,
 "max_position_embeddings": 64, "rope_theta": 10000, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
"$BIN/qpack" --random "$TMP/tiny.json" --seed 1 -p f32 -o "$TMP/r.msgpack" 2>/dev/null
"$BIN/teacher-gen" -n 4 --max-len 16 -o "$TMP/rs.msgpack" "$TMP/r.msgpack" 2>/dev/null
expect_fail distill_wrong_teacher "samples of teacher .* the student .* comes from" "$D" --samples "$TMP/rs.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
no_output distill_wrong_teacher_no_output "$TMP/x.msgpack"
expect_fail distill_svd_other_teacher "own teacher" "$D" --init svd --teacher "$TMP/r.msgpack" --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
"$D" --init svd --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack" 2>"$TMP/u.err"
rc=$?
if [ $rc -eq 2 ] && grep -q "needs the teacher" "$TMP/u.err"; then pass distill_svd_needs_teacher; else
	fail distill_svd_needs_teacher "exit $rc (a usage error is 2): $(cat "$TMP/u.err")"; fi
expect_fail distill_init_rank_mismatch "rank 4" "$D" --init "$TMP/a.msgpack" -r 8 --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
expect_fail distill_init_missing "nothere" "$D" --init "$TMP/nothere.msgpack" --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
expect_fail distill_no_targets "blk.9" "$D" --targets 'blk.9.ffn_gate' --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
head -c 30000 "$TMP/s.msgpack" > "$TMP/cut.msgpack"
expect_fail distill_cut_stream "cut" "$D" --samples "$TMP/cut.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
expect_fail distill_tau_needs_kd_temp "kd-temp 2" "$D" --tau 2 --samples "$TMP/s.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
expect_fail distill_model_stream_as_samples "not samples" "$D" --samples "$TMP/fp.msgpack" -o "$TMP/x.msgpack" "$TMP/q.msgpack"
no_output distill_bad_input_no_output "$TMP/x.msgpack"
t_done
