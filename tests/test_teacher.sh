#!/bin/sh
# test_teacher.sh: teacher-gen end to end: determinism, shards, options, bad input.
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/stories260K/stories260K.bin
TG=$BIN/teacher-gen
samples() { # the sample lines of a stream, sorted by id
	"$BIN/tsdump" "$1" | grep '"t":"sample"' | sort -t, -k2,2
}

check teacher_gen_runs "$TG" -n 9 -b 4 --max-len 64 --seed 3 -o "$TMP/a.msgpack" "$MODEL"
"$TG" -n 9 -b 4 --max-len 64 --seed 3 -o "$TMP/b.msgpack" "$MODEL" 2>/dev/null
if cmp -s "$TMP/a.msgpack" "$TMP/b.msgpack"; then pass teacher_gen_deterministic; else fail teacher_gen_deterministic "two runs differ"; fi
"$TG" -n 9 -b 7 --max-len 64 --seed 3 -o "$TMP/c.msgpack" "$MODEL" 2>/dev/null
if [ "$(samples "$TMP/a.msgpack")" = "$(samples "$TMP/c.msgpack")" ]; then pass teacher_gen_batch_independent; else fail teacher_gen_batch_independent "another batch size changed the samples"; fi
"$TG" -n 9 -b 4 --max-len 64 --seed 4 -o "$TMP/d.msgpack" "$MODEL" 2>/dev/null
if [ "$(samples "$TMP/a.msgpack")" != "$(samples "$TMP/d.msgpack")" ]; then pass teacher_gen_seed_matters; else fail teacher_gen_seed_matters "seeds 3 and 4 gave the same samples"; fi

# shards: their union is the unsharded run, sample for sample, and cat reads as one stream
for i in 0 1 2; do "$TG" -n 9 -b 2 --max-len 64 --seed 3 --shard $i/3 -o "$TMP/s$i.msgpack" "$MODEL" 2>/dev/null; done
cat "$TMP/s0.msgpack" "$TMP/s1.msgpack" "$TMP/s2.msgpack" > "$TMP/all.msgpack"
if "$BIN/tsdump" "$TMP/all.msgpack" >/dev/null 2>&1 && [ "$(samples "$TMP/all.msgpack")" = "$(samples "$TMP/a.msgpack")" ] &&
	[ "$("$BIN/tsdump" "$TMP/s1.msgpack" | grep -c '"t":"sample"')" = 3 ]; then
	pass teacher_gen_shard_union
else
	fail teacher_gen_shard_union "the shards' samples differ from the unsharded run's"
fi

cat "$TMP/s1.msgpack" "$TMP/s1.msgpack" > "$TMP/twice.msgpack"
expect_fail teacher_gen_duplicate_ids_refused "sample id 1 appears twice" "$BIN/tsdump" "$TMP/twice.msgpack"

# what the stream records
"$BIN/tsdump" "$TMP/a.msgpack" > "$TMP/a.jsonl"
if head -n 1 "$TMP/a.jsonl" | grep -q '"kind":"samples".*"vocab_size":512,"topk":64,"logit_dtype":"f16"' &&
	[ "$(grep -c '"t":"sample"' "$TMP/a.jsonl")" = 9 ] && grep -q '"prompt_len":1,"tokens":\[1,' "$TMP/a.jsonl"; then
	pass teacher_gen_stream_fields
else
	fail teacher_gen_stream_fields "$(head -c 300 "$TMP/a.jsonl")"
fi
"$TG" -n 2 -k 0 --logits f32 --kd-temp 2 --max-len 16 -o "$TMP/full.msgpack" "$MODEL" 2>/dev/null
if "$BIN/tsdump" "$TMP/full.msgpack" | head -n 1 | grep -q '"topk":0,"logit_dtype":"f32".*"kd_temp":2' &&
	"$BIN/tsdump" "$TMP/full.msgpack" | grep '"t":"sample"' | head -n 1 | grep -q '"logsumexp_tau"'; then
	pass teacher_gen_full_vocab_kd_temp
else
	fail teacher_gen_full_vocab_kd_temp "no full-vocabulary f32 rows with logsumexp_tau"
fi
# greedy from BOS is the llama2.c sample; max-len counts BOS
"$TG" -n 1 --temp 0 --max-len 20 -o "$TMP/g.msgpack" "$MODEL" 2>/dev/null
if "$BIN/tsdump" --text --model "$MODEL" "$TMP/g.msgpack" | grep -q '"text":"Once upon a time, there was a little girl named Lily. She' &&
	"$BIN/tsdump" "$TMP/g.msgpack" | grep '"t":"sample"' | grep -o '"tokens":\[[0-9,]*\]' | tr ',' '\n' | wc -l | grep -qx 20; then
	pass teacher_gen_greedy_is_llama2c_sample
else
	fail teacher_gen_greedy_is_llama2c_sample "$("$BIN/tsdump" --text --model "$MODEL" "$TMP/g.msgpack" | grep -o '"text":"[^"]*"' | head -c 200)"
fi
# LLM-QAT starts: a random first token, then greedy ones
"$TG" -n 4 --start qat --qat-greedy 3 --max-len 12 -o "$TMP/q.msgpack" "$MODEL" 2>/dev/null
firsts=$("$BIN/tsdump" "$TMP/q.msgpack" | grep '"t":"sample"' | sed 's/.*"tokens":\[1,\([0-9]*\),.*/\1/' | sort -u | wc -l)
if [ "$firsts" -ge 3 ]; then pass teacher_gen_qat_starts; else fail teacher_gen_qat_starts "$firsts distinct first tokens in 4 samples"; fi

# progress and summary on stderr
"$TG" -n 3 --max-len 32 -o "$TMP/p.msgpack" "$MODEL" 2>"$TMP/p.err"
if grep -q 'teacher-gen: 3 samples, [0-9]* generated tokens in' "$TMP/p.err"; then pass teacher_gen_summary; else fail teacher_gen_summary "$(cat "$TMP/p.err")"; fi

# bad input
"$TG" -n 0 -o "$TMP/x.msgpack" "$MODEL" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && pass teacher_gen_n0_usage || fail teacher_gen_n0_usage "-n 0 exited $rc"
expect_fail teacher_gen_k_too_large "larger than the model's vocabulary of 512" "$TG" -k 600 -o "$TMP/x.msgpack" "$MODEL"
head -c 5000 "$TMP/a.msgpack" > "$TMP/cut.msgpack"
expect_fail teacher_gen_bad_model "cut.msgpack" "$TG" -o "$TMP/x.msgpack" "$TMP/cut.msgpack"
no_output teacher_gen_no_output_after_errors "$TMP/x.msgpack"
if "$TG" -n 1 --max-len 5000 -o "$TMP/long.msgpack" "$MODEL" 2>"$TMP/long.err" && grep -q 'longer than the model.s context; using 512' "$TMP/long.err"; then
	pass teacher_gen_max_len_clipped
else
	fail teacher_gen_max_len_clipped "$(cat "$TMP/long.err")"
fi
# a broken pipe ends it with status 1 (the reader saw a cut stream)
(sh -c "'$TG' -n 200 --max-len 64 '$MODEL' 2>/dev/null; echo \$? > '$TMP/pipe.rc'") | head -c 2000 > /dev/null
[ "$(cat "$TMP/pipe.rc")" = 1 ] && pass teacher_gen_broken_pipe || fail teacher_gen_broken_pipe "exit $(cat "$TMP/pipe.rc")"
t_done
