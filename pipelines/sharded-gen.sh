#!/bin/sh
# sharded-gen.sh N TEACHER OUT [TEACHER-GEN OPTIONS...]: the samples of
# `teacher-gen OPTIONS TEACHER`, made by N processes at once and joined.
#
# Process i runs teacher-gen --shard i/N, which makes exactly the unsharded
# run's samples whose id is i modulo N, byte for byte; their streams are
# joined with cat(1) into OUT (atomically), which every tool reads as one
# samples stream. Only the order of the samples and the framing of the
# segments differ from the unsharded run, and distill does not depend on
# either (it visits samples in a seeded order of their ids).
#
# Each shard writes OUT.shard-I-of-N (atomically, its log beside it); when a
# shard fails the others are stopped, no OUT is written, and the complete
# shards stay to be reused by a rerun with the same options. The shards are
# removed with their logs once joined (KEEP_SHARDS=1 keeps them).
#
#   SHARD_THREADS  threads per process (default: the cores divided among them)
#   VERIFY=1       also make the unsharded run (OUT.unsharded) and check that
#                  the joined stream holds the same samples, field for field
#                  (token ids, and the sha256 of every ids and logits payload)
#
# The shards may equally run on N machines (teacher-gen --shard i/N there);
# copy the streams back and join them with cat.
set -eu
rl_name=sharded-gen
. "$(dirname "$0")/lib.sh"
if [ $# -lt 3 ]; then
	echo "usage: sharded-gen.sh N TEACHER OUT [TEACHER-GEN OPTIONS...]" >&2
	exit 2
fi
n=$1 teacher=$2 dest=$3
shift 3
case $n in '' | *[!0-9]* | 0) rl_die "N: '$n' is not a number of processes" ;; esac
for a; do
	case $a in -o* | --shard*) rl_die "$a: the shards' outputs are sharded-gen's to choose" ;; esac
done
[ -f "$teacher" ] || rl_die "TEACHER: no file $teacher"
rl_init
cores=$(nproc 2>/dev/null || echo 1)
threads=${SHARD_THREADS:-$((cores / n))}
[ "$threads" -ge 1 ] || threads=1
stamp="$* $(rl_id "$teacher")"

# start the shards that are not complete from an earlier run with the same options
running='' i=0
while [ "$i" -lt "$n" ]; do
	s=$dest.shard-$i-of-$n
	if [ "$(cat "$s.from" 2>/dev/null)" = "$stamp" ] && "$bin/tsdump" "$s" >/dev/null 2>&1; then
		rl_say "shard $i/$n: reusing $s"
	else
		rm -f "$s.from"
		"$bin/teacher-gen" -t "$threads" "$@" --shard "$i/$n" -o "$s" "$teacher" 2>"$s.log" &
		running="$running $!:$i"
	fi
	i=$((i + 1))
done
trap 'for j in $running; do kill "${j%:*}" 2>/dev/null; done' INT TERM HUP
rl_say "$n shards of: teacher-gen $* $teacher ($threads threads each)"

# wait for them, stopping the others at the first failure
while [ -n "$running" ]; do
	still=
	for j in $running; do
		pid=${j%:*} i=${j#*:}
		if kill -0 "$pid" 2>/dev/null; then
			still="$still $j"
		elif wait "$pid"; then
			printf '%s\n' "$stamp" > "$dest.shard-$i-of-$n.from"
			rl_say "shard $i/$n: $(tail -n 1 "$dest.shard-$i-of-$n.log")"
		else
			cat "$dest.shard-$i-of-$n.log" >&2
			for k in $running; do [ "$k" = "$j" ] || kill "${k%:*}" 2>/dev/null || true; done
			wait
			rl_die "shard $i/$n failed (log: $dest.shard-$i-of-$n.log); the others were stopped, no $dest"
		fi
	done
	running=$still
	[ -z "$running" ] || sleep 0.2
done
trap - INT TERM HUP

# join them: a temporary beside OUT, renamed when whole
shards() {
	i=0
	while [ "$i" -lt "$n" ]; do cat "$dest.shard-$i-of-$n" || return 1; i=$((i + 1)); done
}
shards > "$dest.tmp.$$" || { rm -f "$dest.tmp.$$"; rl_die "$dest: cannot write"; }
mv "$dest.tmp.$$" "$dest"
count=$("$bin/tsdump" "$dest" | grep -c '^{"t":"sample"') || rl_die "$dest: the joined stream does not read back"
rl_say "joined $n shards: $count samples -> $dest"
if [ "${KEEP_SHARDS:-0}" != 1 ]; then
	i=0
	while [ "$i" -lt "$n" ]; do rm -f "$dest.shard-$i-of-$n" "$dest.shard-$i-of-$n.from" "$dest.shard-$i-of-$n.log"; i=$((i + 1)); done
fi

if [ "${VERIFY:-0}" = 1 ]; then
	rl_say "VERIFY: the unsharded run: teacher-gen -t $cores $* $teacher"
	"$bin/teacher-gen" -t "$cores" "$@" -o "$dest.unsharded" "$teacher" 2>"$dest.unsharded.log" ||
		{ cat "$dest.unsharded.log" >&2; rl_die "VERIFY: the unsharded run failed"; }
	# every message as a line of JSON: a sample's token ids, and the sha256 of each of its payloads
	lines() { "$bin/tsdump" "$1" | grep -v '^{"t":"end"' | sort -u; }
	if [ "$(lines "$dest")" = "$(lines "$dest.unsharded")" ]; then
		rl_say "VERIFY: the joined shards hold the unsharded run's $count samples and header, field for field"
	else
		rl_die "VERIFY: the joined shards differ from the unsharded run ($dest.unsharded)"
	fi
fi
