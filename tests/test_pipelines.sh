#!/bin/sh
# test_pipelines.sh: the pipelines beside recover.sh, in tiny versions on
# stories260K: the rank × policy sweep (its table, JSON and SVG read back by
# jq and xmllint), synthetic vs curated data, sharded generation (the joined
# shards are the unsharded run's samples), and teacher-gen over ssh into a
# local distill (through an sshd this test starts on a local port).
. "$(dirname "$0")/lib.sh"
P=$TOP/pipelines
MODEL=$SHARED/models/stories260K/stories260K.bin
head -c 8000 "$SHARED/data/tinystories/dev.txt" > "$TMP/dev.txt"
for t in jq xmllint; do
	command -v $t >/dev/null || fail pipelines_tools "$t is missing (.ci/deps.sh installs it)"
done
tsv() { awk -F '\t' -v p="$2" -v r="$3" -v c="$4" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } $1 == p && $3 == r { print $col[c] }' "$1"; }

# --- sweep.sh ---
export RECOVER_SAMPLES=8 RECOVER_LEN=48 RECOVER_EPOCHS=1 RECOVER_TEXT=$TMP/dev.txt
S=$TMP/sweep
if SWEEP_RANKS="1 2" SWEEP_POLICIES="w4w2:w4w2 g3:q4;ffn_gate,ffn_up=q3" SHARED=$SHARED sh "$P/sweep.sh" "$MODEL" "$S" \
	>"$TMP/sw.out" 2>"$TMP/sw.err" && [ "$(wc -l < "$S/results.tsv")" = 8 ]; then
	pass sweep_runs
else
	fail sweep_runs "$(tail -n 3 "$TMP/sw.err" | tr '\n' ' ')"
fi
# every cell has numbers; the recovery is the share of the student's gap to the teacher closed
fp=$(tsv "$S/results.tsv" fp 0 nll)
if awk -F '\t' -v fp="$fp" 'NR > 1 && $1 != "fp" {
		if ($6 !~ /^[0-9.]+$/ || $8 !~ /^[0-9.]+$/) bad = bad " " $1 "/" $3 ": nll " $6 " kld " $8
		if ($3 == 0) { q[$1] = $6; next }
		if ($4 !~ /^[1-9][0-9]*$/) bad = bad " " $1 "/" $3 ": params " $4
		if ($10 != "n/a") { want = 100 * ($6 - q[$1]) / (fp - q[$1]); d = $10 - want; if (d < -1e-3 || d > 1e-3) bad = bad " " $1 "/" $3 ": recovery " $10 " != " want }
	}
	END { if (bad != "") { print bad; exit 1 } }' "$S/results.tsv" >"$TMP/cells" && grep -q '^w4w2 ' "$S/results.txt"; then
	pass sweep_cells
else
	fail sweep_cells "$(cat "$TMP/cells")"
fi
# the adapter rank 2 params are twice rank 1's; a cell is what distill gives on its own with the same inputs
p1=$(tsv "$S/results.tsv" g3 1 params) p2=$(tsv "$S/results.tsv" g3 2 params)
"$BIN/distill" -r 2 --epochs 1 --lr 0.005 --targets ffn_gate,ffn_up --samples "$S/samples.msgpack" \
	-o "$TMP/direct.msgpack" "$S/g3.student.msgpack" 2>/dev/null
if [ -n "$p1" ] && [ "$p2" = $((2 * p1)) ] && cmp -s "$TMP/direct.msgpack" "$S/g3.r2.adapter.msgpack" &&
	"$BIN/tsdump" "$S/g3.student.msgpack" | grep -q '"name":"blk.0.ffn_up.weight","dtype":"q3g32"'; then
	pass sweep_cell_is_distill
else
	fail sweep_cell_is_distill "params $p1, $p2; or the sweep's adapter differs from distill's own"
fi
# results.json holds the same rows (jq reads it); sweep.svg is well-formed XML with a line per policy
if jq -e 'length == 7 and (map(select(.policy == "w4w2" and .rank == 2))[0].nll | tostring) == "'"$(tsv "$S/results.tsv" w4w2 2 nll)"'"' \
	"$S/results.json" >/dev/null 2>"$TMP/jq.err"; then
	pass sweep_json
else
	fail sweep_json "$(head -c 200 "$TMP/jq.err") $(head -c 300 "$S/results.json")"
fi
if xmllint --noout "$S/sweep.svg" 2>"$TMP/xml.err" &&
	[ "$(xmllint --xpath 'count(//*[local-name()="polyline"])' "$S/sweep.svg")" = 2 ] &&
	xmllint --xpath 'string(//*[local-name()="polyline"][@data-policy="g3"]/@points)' "$S/sweep.svg" | grep -Eq '^[0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+$' &&
	[ "$(xmllint --xpath 'count(//*[local-name()="line"][@class="teacher"])' "$S/sweep.svg")" = 1 ]; then
	pass sweep_svg
else
	fail sweep_svg "$(head -c 200 "$TMP/xml.err")"
fi
# a rerun with one more rank trains only that rank
cp "$S/results.tsv" "$TMP/first.tsv"
if SWEEP_RANKS="1 2 3" SWEEP_POLICIES="w4w2:w4w2 g3:q4;ffn_gate,ffn_up=q3" SHARED=$SHARED sh "$P/sweep.sh" "$MODEL" "$S" \
	>/dev/null 2>"$TMP/sw2.err" && [ "$(grep -c ': distill ' "$TMP/sw2.err")" = 2 ] &&
	[ "$(grep -c ': distill -r 3 ' "$TMP/sw2.err")" = 2 ] && ! grep -q ': qpack\|: teacher-gen' "$TMP/sw2.err" &&
	[ "$(tsv "$S/results.tsv" w4w2 2 nll)" = "$(tsv "$TMP/first.tsv" w4w2 2 nll)" ] && [ -n "$(tsv "$S/results.tsv" g3 3 nll)" ]; then
	pass sweep_rerun_trains_only_new_cells
else
	fail sweep_rerun_trains_only_new_cells "$(grep ': distill\|: qpack\|: teacher-gen' "$TMP/sw2.err" | head -n 4 | tr '\n' ' ')"
fi
expect_fail sweep_bad_rank "SWEEP_RANKS: 'x' is not a rank" env SWEEP_RANKS="1 x" sh "$P/sweep.sh" "$MODEL" "$TMP/sweep-bad"
expect_fail sweep_bad_policy "SWEEP_POLICIES: 'w4w2' is not NAME:POLICY" env SWEEP_POLICIES=w4w2 sh "$P/sweep.sh" "$MODEL" "$TMP/sweep-bad"

# --- synthetic-vs-curated.sh ---
C=$TMP/svc
if RECOVER_SAMPLES=12 RECOVER_LEN=64 SHARED=$SHARED sh "$P/synthetic-vs-curated.sh" "$MODEL" "$C" >/dev/null 2>"$TMP/svc.err" &&
	awk -F '\t' 'NR > 1 { ok += ($2 == 12 && $3 > 100 && $4 ~ /^[0-9.]+$/ && $5 ~ /^[0-9.]+$/) } END { exit !(NR == 3 && ok == 2) }' "$C/results.tsv" &&
	grep -q 'curated-adapter.msgpack.*recovered' "$C/results.txt" && grep -q 'synthetic-adapter.msgpack.*recovered' "$C/results.txt" &&
	"$BIN/tsdump" "$C/curated.msgpack" | head -n 1 | grep -q '"start":"score"'; then
	pass svc_runs
else
	fail svc_runs "$(tail -n 3 "$TMP/svc.err" | tr '\n' ' ') $(cat "$C/results.tsv" 2>/dev/null)"
fi
# the training and evaluation halves share no document, and together are the text
if awk -v RS= 'FILENAME == ARGV[1] { train[$0] = 1; n++; next } FILENAME == ARGV[2] { if ($0 in train) exit 1; n++; next } { m++ } END { exit !(n == m) }' \
	"$C/train.txt" "$C/eval.txt" "$TMP/dev.txt"; then
	pass svc_halves_disjoint
else
	fail svc_halves_disjoint "train.txt and eval.txt overlap, or do not add up to the text"
fi

# --- sharded-gen.sh ---
"$BIN/qpack" -p f32 -o "$TMP/fp.msgpack" "$MODEL" 2>/dev/null
"$BIN/qpack" -q rtn -o "$TMP/q.msgpack" "$TMP/fp.msgpack" 2>/dev/null
if VERIFY=1 SHARD_THREADS=1 sh "$P/sharded-gen.sh" 3 "$TMP/fp.msgpack" "$TMP/joined.msgpack" -n 14 --max-len 48 --seed 5 \
	>/dev/null 2>"$TMP/sg.err" && grep -q 'VERIFY: the joined shards hold the unsharded run.s 14 samples' "$TMP/sg.err" &&
	[ "$("$BIN/tsdump" "$TMP/joined.msgpack" | grep -c '^{"t":"header"')" = 3 ] &&
	! ls "$TMP"/joined.msgpack.shard-* >/dev/null 2>&1; then
	pass sharded_gen_verified
else
	fail sharded_gen_verified "$(tail -n 3 "$TMP/sg.err" | tr '\n' ' ')"
fi
# and independently of the script's own check: the same samples, sorted by id, and the same adapter
samples() { "$BIN/tsdump" "$1" | grep '^{"t":"sample"' | sort -t, -k2,2; }
"$BIN/distill" -r 2 --epochs 2 --samples "$TMP/joined.msgpack" -t 1 -o "$TMP/joined.adapter" "$TMP/q.msgpack" 2>/dev/null
"$BIN/distill" -r 2 --epochs 2 --samples "$TMP/joined.msgpack.unsharded" -t 1 -o "$TMP/unsharded.adapter" "$TMP/q.msgpack" 2>/dev/null
if [ "$(samples "$TMP/joined.msgpack")" = "$(samples "$TMP/joined.msgpack.unsharded")" ] &&
	[ "$(samples "$TMP/joined.msgpack" | wc -l)" = 14 ] && cmp -s "$TMP/joined.adapter" "$TMP/unsharded.adapter"; then
	pass sharded_gen_same_samples_same_adapter
else
	fail sharded_gen_same_samples_same_adapter "the joined shards' samples or adapter differ from the unsharded run's"
fi
expect_fail sharded_gen_failed_shard "shard [0-9]/2 failed" sh "$P/sharded-gen.sh" 2 "$TMP/fp.msgpack" "$TMP/bad.msgpack" -n 4 --temp -1
no_output sharded_gen_failed_no_output "$TMP/bad.msgpack"

# --- remote-distill.sh: locally, then over ssh to an sshd of our own ---
GEN="-n 12 --max-len 48 --seed 2" DIS="-r 2 --epochs 1 -t 1"
# shellcheck disable=SC2086 # GEN and DIS are lists of options
"$BIN/teacher-gen" $GEN -o "$TMP/rs.msgpack" "$TMP/fp.msgpack" 2>/dev/null
# shellcheck disable=SC2086
"$BIN/distill" $DIS --samples "$TMP/rs.msgpack" -o "$TMP/file.adapter" "$TMP/q.msgpack" 2>/dev/null
if GEN_OPTS=$GEN DISTILL_OPTS=$DIS sh "$P/remote-distill.sh" "$TMP/fp.msgpack" "$TMP/q.msgpack" "$TMP/local.adapter" 2>"$TMP/rd.err" &&
	cmp -s "$TMP/file.adapter" "$TMP/local.adapter"; then
	pass remote_distill_local_pipe
else
	fail remote_distill_local_pipe "$(tail -n 2 "$TMP/rd.err" | tr '\n' ' ')"
fi

# start_sshd: an sshd as this user on a free local port, with its own host
# key and our own authorized key; sets SSHD_PID and writes $TMP/ssh/config.
# Returns 1 with the reason in $why when none can be started.
start_sshd() {
	sshd=$(command -v sshd || echo /usr/sbin/sshd)
	[ -x "$sshd" ] || { why="no sshd (Debian: openssh-server)"; return 1; }
	command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || { why="no ssh/ssh-keygen (openssh-client)"; return 1; }
	d=$TMP/ssh
	mkdir -p "$d" && chmod 700 "$d"
	ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" && ssh-keygen -q -t ed25519 -N '' -f "$d/user_key" || { why="ssh-keygen failed"; return 1; }
	cp "$d/user_key.pub" "$d/authorized_keys"
	# as root, sshd wants its privilege-separation directory, which its service would make
	if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
	for try in 1 2 3 4 5; do
		port=$(awk -v s="$$$try" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
		cat > "$d/sshd_config" <<-EOF
		Port $port
		ListenAddress 127.0.0.1
		HostKey $d/host_key
		AuthorizedKeysFile $d/authorized_keys
		PidFile none
		StrictModes no
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		PermitRootLogin prohibit-password
		AllowUsers $(id -un)
		EOF
		"$sshd" -D -e -f "$d/sshd_config" 2>"$d/sshd.log" &
		SSHD_PID=$!
		trap 'kill $SSHD_PID 2>/dev/null; rm -rf "$TMP"' EXIT
		i=0
		while [ $i -lt 50 ] && kill -0 $SSHD_PID 2>/dev/null && ! grep -q 'Server listening' "$d/sshd.log"; do sleep 0.1; i=$((i + 1)); done
		if grep -q 'Server listening' "$d/sshd.log"; then
			printf '[127.0.0.1]:%s %s\n' "$port" "$(cat "$d/host_key.pub")" > "$d/known_hosts"
			cat > "$d/config" <<-EOF
			Host loopback
			  HostName 127.0.0.1
			  Port $port
			  User $(id -un)
			  IdentityFile $d/user_key
			  IdentitiesOnly yes
			  UserKnownHostsFile $d/known_hosts
			  StrictHostKeyChecking yes
			  BatchMode yes
			  LogLevel ERROR
			EOF
			ssh -F "$d/config" loopback true 2>"$d/ssh.err" && return 0
			why="ssh to the test's sshd failed: $(head -c 200 "$d/ssh.err")"
		else
			why="sshd did not start: $(tail -n 1 "$d/sshd.log")"
		fi
		kill $SSHD_PID 2>/dev/null
		wait $SSHD_PID 2>/dev/null
		SSHD_PID=
	done
	return 1
}
if start_sshd; then
	export SSH="ssh -F $TMP/ssh/config" REMOTE_BIN=$BIN
	if REMOTE=loopback GEN_OPTS=$GEN DISTILL_OPTS=$DIS sh "$P/remote-distill.sh" "$TMP/fp.msgpack" "$TMP/q.msgpack" "$TMP/remote.adapter" \
		2>"$TMP/rr.err" && grep -q "ssh -F .* loopback .*teacher-gen" "$TMP/rr.err" && cmp -s "$TMP/file.adapter" "$TMP/remote.adapter"; then
		pass remote_distill_over_ssh
	else
		fail remote_distill_over_ssh "$(tail -n 2 "$TMP/rr.err" | tr '\n' ' ')"
	fi
	# the teacher already on the remote; and a remote without teacher-gen fails, leaving no adapter
	if REMOTE=loopback REMOTE_TEACHER=$TMP/fp.msgpack GEN_OPTS=$GEN DISTILL_OPTS=$DIS sh "$P/remote-distill.sh" \
		/nonexistent "$TMP/q.msgpack" "$TMP/remote2.adapter" 2>"$TMP/rr2.err" && cmp -s "$TMP/file.adapter" "$TMP/remote2.adapter"; then
		pass remote_distill_remote_teacher
	else
		fail remote_distill_remote_teacher "$(tail -n 2 "$TMP/rr2.err" | tr '\n' ' ')"
	fi
	expect_fail remote_distill_remote_fails "did not arrive whole" \
		env REMOTE=loopback REMOTE_BIN=/nonexistent GEN_OPTS="$GEN" DISTILL_OPTS="$DIS" sh "$P/remote-distill.sh" "$TMP/fp.msgpack" "$TMP/q.msgpack" "$TMP/remote3.adapter"
	no_output remote_distill_remote_fails_no_adapter "$TMP/remote3.adapter"
	kill $SSHD_PID
	wait $SSHD_PID 2>/dev/null
else
	skip remote_distill_over_ssh "$why"
fi
t_done
