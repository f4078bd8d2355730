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
"$TG" -n 9 -b 9 --max-len 64 --seed 3 -o "$TMP/c.msgpack" "$MODEL" 2>/dev/null
if [ "$(samples "$TMP/a.msgpack")" = "$(samples "$TMP/c.msgpack")" ]; then pass teacher_gen_batch_independent; else fail teacher_gen_batch_independent "another batch size changed the samples"; fi
"$TG" -n 9 -b 4 --max-len 64 --seed 4 -o "$TMP/d.msgpack" "$MODEL" 2>/dev/null
if [ "$(samples "$TMP/a.msgpack")" != "$(samples "$TMP/d.msgpack")" ]; then pass teacher_gen_seed_matters; else fail teacher_gen_seed_matters "seeds 3 and 4 gave the same samples"; fi

# the thread count changes nothing: work is split in fixed ranges, whoever runs them
"$TG" -n 9 -b 4 --max-len 64 --seed 3 -t 3 -o "$TMP/t3.msgpack" "$MODEL" 2>/dev/null
"$TG" -n 9 -b 4 --max-len 64 --seed 3 -t 1 -o "$TMP/t1.msgpack" "$MODEL" 2>/dev/null
if [ -s "$TMP/t3.msgpack" ] && [ "$(samples "$TMP/t1.msgpack")" = "$(samples "$TMP/t3.msgpack")" ] &&
	[ "$(samples "$TMP/t1.msgpack")" = "$(samples "$TMP/a.msgpack")" ]; then
	pass teacher_gen_thread_count_independent
else
	fail teacher_gen_thread_count_independent "1 and 3 threads gave different samples"
fi

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

# --int8-act: a model stored as floats gives the same stream; a quantized one
# other logits (the stream itself is still valid)
"$TG" -n 3 -b 2 --max-len 24 --seed 3 --int8-act -o "$TMP/i8f.msgpack" "$MODEL" 2>/dev/null
"$TG" -n 3 -b 2 --max-len 24 --seed 3 -o "$TMP/f.msgpack" "$MODEL" 2>/dev/null
"$BIN/qpack" -o "$TMP/w42.msgpack" "$MODEL" 2>/dev/null
"$TG" -n 3 -b 2 --max-len 24 --seed 3 --temp 0 -o "$TMP/qd.msgpack" "$TMP/w42.msgpack" 2>/dev/null
"$TG" -n 3 -b 2 --max-len 24 --seed 3 --temp 0 --int8-act -o "$TMP/i8q.msgpack" "$TMP/w42.msgpack" 2>/dev/null
if [ -s "$TMP/f.msgpack" ] && cmp -s "$TMP/i8f.msgpack" "$TMP/f.msgpack" && "$BIN/tsdump" "$TMP/i8q.msgpack" >/dev/null 2>&1 &&
	[ "$(samples "$TMP/i8q.msgpack" | wc -l)" = 3 ] && [ "$(samples "$TMP/i8q.msgpack")" != "$(samples "$TMP/qd.msgpack")" ]; then
	pass teacher_gen_int8_act
else
	fail teacher_gen_int8_act "f32 streams equal: $(cmp -s "$TMP/i8f.msgpack" "$TMP/f.msgpack" && echo yes || echo no), quantized streams differ as wanted: no"
fi

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
# --prompts: each sample starts with its prompt (BOS + encode), sampled after it;
# a batch mixing prompt prefills with decode steps changes nothing, nor do shards
printf 'Once upon a time\n\n  Lily and Tom went to the park.  \nThe cat\n' > "$TMP/prompts.txt"
"$TG" --prompts "$TMP/prompts.txt" -n 7 -b 3 --max-len 40 --seed 2 -o "$TMP/p1.msgpack" "$MODEL" 2>/dev/null
"$TG" --prompts "$TMP/prompts.txt" -n 7 -b 1 --max-len 40 --seed 2 -o "$TMP/p2.msgpack" "$MODEL" 2>/dev/null
for i in 0 1; do "$TG" --prompts "$TMP/prompts.txt" -n 7 -b 2 --max-len 40 --seed 2 --shard $i/2 -o "$TMP/ps$i.msgpack" "$MODEL" 2>/dev/null; done
cat "$TMP/ps0.msgpack" "$TMP/ps1.msgpack" > "$TMP/ps.msgpack"
if [ -s "$TMP/p1.msgpack" ] && [ "$(samples "$TMP/p1.msgpack")" = "$(samples "$TMP/p2.msgpack")" ] &&
	[ "$(samples "$TMP/p1.msgpack")" = "$(samples "$TMP/ps.msgpack")" ]; then
	pass teacher_gen_prompts_batch_and_shards
else
	fail teacher_gen_prompts_batch_and_shards "batch size or sharding changed prompted samples"
fi
"$BIN/tsdump" --text --model "$MODEL" "$TMP/p1.msgpack" > "$TMP/p1.txt" 2>&1
n0=$(grep -c '"id":[0-9]*,"prompt_len":5,.*"text":"Once upon a time' "$TMP/p1.txt")
n1=$(grep -c '"prompt_len":[0-9]*,.*"text":"Lily and Tom went to the park\.' "$TMP/p1.txt")
n2=$(grep -c '"text":"The cat' "$TMP/p1.txt")
if [ "$n0" = 3 ] && [ "$n1" = 2 ] && [ "$n2" = 2 ]; then pass teacher_gen_prompts_cycle; else fail teacher_gen_prompts_cycle "prompt counts $n0 $n1 $n2, wanted 3 2 2"; fi
printf '\n\n' > "$TMP/noprompts.txt"
expect_fail teacher_gen_no_prompts "noprompts.txt: no prompts" "$TG" --prompts "$TMP/noprompts.txt" -o "$TMP/np.msgpack" "$MODEL"
no_output teacher_gen_no_prompts_no_output "$TMP/np.msgpack"
expect_fail teacher_gen_prompt_too_long "prompts.txt:3: a prompt of .* tokens leaves no room" "$TG" --prompts "$TMP/prompts.txt" --max-len 8 -o "$TMP/np.msgpack" "$MODEL"

# --score: the teacher's logits over given text, no sampling. With the whole
# vocabulary recorded, the NLL read back from the stream is evalrun's, and
# pieces of --max-len tokens cover every token after BOS exactly once.
head -c 2500 "$SHARED/data/tinystories/dev.txt" > "$TMP/score.txt"
"$TG" --score "$TMP/score.txt" -k 0 --logits f32 -o "$TMP/sc.msgpack" "$MODEL" 2>/dev/null
"$TG" --score "$TMP/score.txt" -k 4 --max-len 16 -o "$TMP/sc16.msgpack" "$MODEL" 2>/dev/null
nll_of_stream() {
	"$BIN/tsdump" --data "$1" | grep '"t":"sample"' | awk '
	function field(name,   s) { s = $0; sub(".*\"" name "\":\\[", "", s); sub("\\].*", "", s); return s }
	{ split(field("tokens"), tok, ","); R = split(field("logsumexp"), lse, ",")
	  K = split(field("topk_ids"), ids, ",") / R; split(field("topk_logits"), lg, ",")
	  match($0, /"prompt_len":[0-9]+/); P = substr($0, RSTART + 13, RLENGTH - 13)
	  for (j = 0; j < R; j++) { t = tok[P + j + 1]; found = 0
	    for (i = 1; i <= K; i++) if (ids[j * K + i] == t) { nll += lse[j + 1] - lg[j * K + i]; found = 1; break }
	    if (!found) { print "missing"; exit 1 }
	    n++ } }
	END { printf "%.6f %d\n", nll / n, n }'
}
ours=$(nll_of_stream "$TMP/sc.msgpack")
ev=$("$BIN/evalrun" --json --task "ppl:$TMP/score.txt" "$MODEL" | grep '"metric":"nll"' | sed 's/.*"value":\([^,]*\),.*"n":\([0-9]*\)}.*/\1 \2/')
rows16=$("$BIN/tsdump" "$TMP/sc16.msgpack" | grep '"t":"sample"' | sed 's/.*"logsumexp":{"bytes":\([0-9]*\).*/\1/' | awk '{ s += $1 / 4 } END { print s }')
if awk -v a="$ours" -v b="$ev" -v r="$rows16" 'BEGIN { split(a, x, " "); split(b, y, " ");
	exit !(x[2] == y[2] && r == y[2] && (x[1] - y[1]) ^ 2 < (1e-4 * y[1]) ^ 2) }'; then
	pass teacher_gen_score_matches_evalrun
else
	fail teacher_gen_score_matches_evalrun "stream nll/tokens $ours, evalrun $ev, rows with --max-len 16: $rows16"
fi
"$TG" --score "$TMP/score.txt" --prompts "$TMP/prompts.txt" "$MODEL" > /dev/null 2>&1
if [ $? -eq 2 ]; then pass teacher_gen_score_and_prompts; else fail teacher_gen_score_and_prompts "not a usage error"; fi

# a tokenizer without BOS (Qwen's) starts from "<|endoftext|>", or from --start-token
"$TG" -n 3 --max-len 10 -o "$TMP/q3.msgpack" "$TOP/tests/fixtures/hf/qwen3" 2>/dev/null
"$TG" -n 3 --max-len 10 --start-token '<|im_start|>' -o "$TMP/q3b.msgpack" "$TOP/tests/fixtures/hf/qwen3" 2>/dev/null
if "$BIN/tsdump" "$TMP/q3.msgpack" | grep -q '"start_token":264' &&
	[ "$("$BIN/tsdump" "$TMP/q3.msgpack" | grep -c '"tokens":\[264[],]')" = 3 ] &&
	[ "$("$BIN/tsdump" "$TMP/q3b.msgpack" | grep -c '"tokens":\[265[],]')" = 3 ]; then
	pass teacher_gen_start_token
else
	fail teacher_gen_start_token "samples of a BOS-less tokenizer do not start from <|endoftext|> or --start-token"
fi
expect_fail teacher_gen_bad_start_token "no such token" "$TG" --start-token nope -o "$TMP/x.msgpack" "$MODEL"
# bytes that are not UTF-8 in a prompt are encoded by byte fallback, as evalrun encodes text
printf 'Once \377\376 upon\n' > "$TMP/badutf8.txt"
"$TG" --prompts "$TMP/badutf8.txt" -n 1 --max-len 20 -o "$TMP/bu.msgpack" "$MODEL" 2>/dev/null
if "$BIN/tsdump" "$TMP/bu.msgpack" | grep -q '"tokens":\[1,403,410,258,257,'; then pass teacher_gen_non_utf8_prompt; else fail teacher_gen_non_utf8_prompt "bytes 0xFF 0xFE not encoded as <0xFF> <0xFE>"; fi
# a broken pipe ends it with status 1 (the reader saw a cut stream)
(sh -c "'$TG' -n 200 --max-len 64 '$MODEL' 2>/dev/null; echo \$? > '$TMP/pipe.rc'") | head -c 2000 > /dev/null
[ "$(cat "$TMP/pipe.rc")" = 1 ] && pass teacher_gen_broken_pipe || fail teacher_gen_broken_pipe "exit $(cat "$TMP/pipe.rc")"
t_done
