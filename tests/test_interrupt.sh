#!/bin/sh
# test_interrupt.sh: kill -9 at the worst moments. distill resumed from its
# last periodic checkpoint ends with the uninterrupted run's adapter, bit for
# bit; a producer killed mid-stream makes every reader downstream stop with
# "stream cut" and status 1, writing nothing; no tool leaves a half-written
# file under its output's name (there is either none, or the previous one).
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
"$BIN/qpack" -p f32 -o "$TMP/fp.msgpack" "$MODEL" 2>/dev/null
"$BIN/qpack" -q rtn -o "$TMP/q.msgpack" "$TMP/fp.msgpack" 2>/dev/null
"$BIN/teacher-gen" -n 32 --max-len 64 --seed 3 -o "$TMP/s.msgpack" "$TMP/fp.msgpack" 2>/dev/null
head -c 6000 "$SHARED/data/tinystories/dev.txt" > "$TMP/dev.txt"
# a model that takes qpack -q mse a few seconds to write, tensor after tensor
cat > "$TMP/big.json" <<'JSON'
{"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 256}
JSON

# wait_for TEST: polls (up to 60 s) until the shell test TEST holds; 1 if it never does
wait_for() {
	i=0
	while ! eval "$1"; do
		[ $i -lt 600 ] || return 1
		sleep 0.1
		i=$((i + 1))
	done
}
# tmp_of FILE: the name of a temporary of FILE (FILE.tmp.*) when one exists
tmp_of() { for f in "$1".tmp.*; do [ -e "$f" ] && echo "$f"; done | head -n 1; }
size() { wc -c < "$1" 2>/dev/null || echo 0; }

# --- distill: kill -9, then --resume from the last periodic checkpoint ---
RUN="-r 4 --epochs 6 --lr 0.005 --batch-tokens 256 --eval-every 0 --samples $TMP/s.msgpack -t 2"
# shellcheck disable=SC2086
"$BIN/distill" $RUN -o "$TMP/whole.msgpack" "$TMP/q.msgpack" 2>"$TMP/whole.err"
total=$(sed -n 's/.* \([0-9]*\) steps over .*/\1/p' "$TMP/whole.err" | head -n 1)
# shellcheck disable=SC2086
"$BIN/distill" $RUN --checkpoint "$TMP/ck.msgpack" --checkpoint-every 3 -o "$TMP/killed.msgpack" "$TMP/q.msgpack" 2>/dev/null &
pid=$!
wait_for '[ -e "$TMP/ck.msgpack" ] || ! kill -0 $pid 2>/dev/null'
kill -9 $pid 2>/dev/null
wait $pid
rc=$?
ckstep=$("$BIN/tsdump" "$TMP/ck.msgpack" 2>/dev/null | sed -n 's/.*"t":"summary".*"step":\([0-9]*\).*/\1/p')
# shellcheck disable=SC2086
"$BIN/distill" $RUN --resume "$TMP/ck.msgpack" -o "$TMP/resumed.msgpack" "$TMP/q.msgpack" 2>"$TMP/resume.err"
if [ $rc = 137 ] && [ ! -e "$TMP/killed.msgpack" ] && [ -n "$ckstep" ] && [ "$ckstep" -gt 0 ] &&
	[ "$ckstep" -lt "${total:-0}" ] && cmp -s "$TMP/whole.msgpack" "$TMP/resumed.msgpack"; then
	pass interrupt_distill_kill9_resume_bit_exact
else
	fail interrupt_distill_kill9_resume_bit_exact "exit $rc, checkpoint at step ${ckstep:-none} of ${total:-?}; $(tail -n 1 "$TMP/resume.err")"
fi

# --- a producer killed mid-stream: the readers downstream say "stream cut" ---
CUT='stream cut (inside message [0-9]+|off: no end message)'
# cut_pipe NAME PRODUCER-PID-FILE SEEN READER-COMMAND...: the reader reads
# from $TMP/fifo, through a tee into SEEN; once bytes have flowed, the
# producer is killed; the reader must exit 1 naming the cut.
mkfifo "$TMP/fifo"
cut_pipe() {
	name=$1 pidfile=$2 seen=$3
	shift 3
	tee "$seen" < "$TMP/fifo" | "$@" >/dev/null 2>"$TMP/$name.err" &
	reader=$!
	wait_for '[ "$(size "$seen")" -gt 0 ]' || true
	kill -9 "$(cat "$pidfile")"
	wait $reader
	rc=$?
	if [ $rc = 1 ] && grep -Eq "$CUT" "$TMP/$name.err"; then
		pass "$name"
	else
		fail "$name" "exit $rc, wanted 1 and /$CUT/: $(head -c 300 "$TMP/$name.err")"
	fi
}
gen() { # a teacher-gen that would run for minutes, into the fifo
	"$BIN/teacher-gen" -n 100000 --max-len 64 -b 4 -t 1 "$TMP/fp.msgpack" > "$TMP/fifo" 2>/dev/null &
	echo $! > "$TMP/producer.pid"
}
gen
cut_pipe interrupt_teacher_gen_killed_distill_says_cut "$TMP/producer.pid" "$TMP/seen1" \
	"$BIN/distill" -r 2 --epochs 1 -o "$TMP/cut-adapter.msgpack" "$TMP/q.msgpack"
no_output interrupt_teacher_gen_killed_no_adapter "$TMP/cut-adapter.msgpack"
gen
cut_pipe interrupt_teacher_gen_killed_tsdump_says_cut "$TMP/producer.pid" "$TMP/seen2" "$BIN/tsdump"
# what the killed teacher-gen left: qpack --importance reads samples too
expect_fail interrupt_cut_samples_qpack_importance "$CUT" \
	"$BIN/qpack" -q mse --importance "$TMP/seen2" -o "$TMP/imp.msgpack" "$TMP/fp.msgpack"
no_output interrupt_cut_samples_no_model "$TMP/imp.msgpack"
# a model stream cut the same way: evalrun and teacher-gen reading it
"$BIN/qpack" --random "$TMP/big.json" --seed 1 -q mse > "$TMP/fifo" 2>/dev/null &
echo $! > "$TMP/producer.pid"
cut_pipe interrupt_qpack_killed_evalrun_says_cut "$TMP/producer.pid" "$TMP/seen3" \
	"$BIN/evalrun" --task "ppl:$TMP/dev.txt" -o "$TMP/cut-results.msgpack" -
no_output interrupt_qpack_killed_no_results "$TMP/cut-results.msgpack"
expect_fail interrupt_cut_model_teacher_gen "$CUT" "$BIN/teacher-gen" -n 2 -o "$TMP/cut-samples.msgpack" "$TMP/seen3"
no_output interrupt_cut_model_no_samples "$TMP/cut-samples.msgpack"

# --- kill -9 while writing: the output's name holds the previous file or none ---
# killed_keeps NAME OUT WHEN COMMAND...: runs COMMAND (which writes OUT) in the
# background, kills it -9 once the shell test WHEN holds, and checks that OUT
# is as it was before (absent, or the same bytes, still a complete stream).
killed_keeps() {
	name=$1 o=$2 when=$3
	shift 3
	[ -e "$o" ] && cp "$o" "$TMP/before"
	"$@" 2>/dev/null &
	pid=$!
	if ! wait_for "$when"; then
		kill -9 $pid 2>/dev/null
		wait $pid
		fail "$name" "the moment to kill never came ($when)"
		return
	fi
	if ! kill -9 $pid 2>/dev/null; then
		wait $pid
		fail "$name" "it finished before it could be killed"
		return
	fi
	wait $pid
	if [ -e "$TMP/before" ]; then
		if cmp -s "$o" "$TMP/before" && "$BIN/tsdump" "$o" >/dev/null 2>&1; then pass "$name"; else fail "$name" "$o changed"; fi
	else
		if [ -e "$o" ]; then fail "$name" "$o appeared"; else pass "$name"; fi
	fi
	rm -f "$TMP/before"
}
# qpack and teacher-gen are killed while their temporary is half written
# (a temporary that does not read as a whole stream)
half_written() { t=$(tmp_of "$1") && [ -n "$t" ] && [ "$(size "$t")" -gt 0 ] && ! "$BIN/tsdump" "$t" >/dev/null 2>&1; }
for round in none previous; do
	[ $round = none ] || "$BIN/qpack" -p f32 -o "$TMP/k-model.msgpack" "$TMP/q.msgpack" 2>/dev/null
	killed_keeps "interrupt_kill9_qpack_o_$round" "$TMP/k-model.msgpack" 'half_written "$TMP/k-model.msgpack"' \
		"$BIN/qpack" --random "$TMP/big.json" --seed 1 -q mse -o "$TMP/k-model.msgpack"
	rm -f "$TMP"/k-model.msgpack.tmp.*
	[ $round = none ] || cp "$TMP/s.msgpack" "$TMP/k-samples.msgpack"
	killed_keeps "interrupt_kill9_teacher_gen_o_$round" "$TMP/k-samples.msgpack" 'half_written "$TMP/k-samples.msgpack"' \
		"$BIN/teacher-gen" -n 100000 --max-len 64 -b 4 -t 1 -o "$TMP/k-samples.msgpack" "$TMP/fp.msgpack"
	rm -f "$TMP"/k-samples.msgpack.tmp.*
	# distill writes its adapter at the end: killed while it trains (its first checkpoint written)
	[ $round = none ] || cp "$TMP/whole.msgpack" "$TMP/k-adapter.msgpack"
	rm -f "$TMP/k-ck.msgpack"
	killed_keeps "interrupt_kill9_distill_o_$round" "$TMP/k-adapter.msgpack" '[ -e "$TMP/k-ck.msgpack" ]' \
		"$BIN/distill" -r 2 --epochs 1000 --checkpoint "$TMP/k-ck.msgpack" --checkpoint-every 1 \
		--samples "$TMP/s.msgpack" -t 1 -o "$TMP/k-adapter.msgpack" "$TMP/q.msgpack"
	# its checkpoint, rewritten at every step, is whole too
	check "interrupt_kill9_distill_checkpoint_whole_$round" "$BIN/tsdump" "$TMP/k-ck.msgpack"
	# evalrun writes its results at the end: killed while it scores the whole dev text
	[ $round = none ] || "$BIN/evalrun" --task "ppl:$TMP/dev.txt" -o "$TMP/k-results.msgpack" "$TMP/fp.msgpack" >/dev/null 2>&1
	killed_keeps "interrupt_kill9_evalrun_o_$round" "$TMP/k-results.msgpack" 'sleep 0.5' \
		"$BIN/evalrun" --task "ppl:$SHARED/data/tinystories/dev.txt" -t 1 -o "$TMP/k-results.msgpack" \
		"$TMP/fp.msgpack" "$TMP/q.msgpack"
done
t_done
