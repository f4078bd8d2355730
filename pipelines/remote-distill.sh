#!/bin/sh
# remote-distill.sh TEACHER STUDENT ADAPTER: synthetic data from TEACHER
# piped straight into distill, with no samples file on either side; with
# REMOTE=host, teacher-gen runs on that host over ssh, and only the samples
# stream comes back.
#
#   teacher-gen ... TEACHER | distill ... -o ADAPTER STUDENT            (no REMOTE)
#   ssh HOST teacher-gen ... - < TEACHER | distill ... -o ADAPTER STUDENT  (REMOTE=HOST)
#
# The teacher's logits travel in the stream, so distill never needs the
# teacher, and the remote never needs the student. If the connection or
# teacher-gen dies, the stream arrives without its end message and distill
# stops with "stream cut" (status 1), writing no adapter.
#
#   REMOTE          the host (as ssh names it) for teacher-gen; unset: run it here
#   SSH             the ssh command (default "ssh"; e.g. "ssh -F ./ssh_config")
#   REMOTE_BIN      the directory of teacher-gen on the remote (default: its PATH)
#   REMOTE_TEACHER  the teacher's path on the remote; by default TEACHER, a
#                   local model stream, is sent over the connection to
#                   teacher-gen's standard input
#   GEN_OPTS        teacher-gen's options (default "-n 2000 --max-len 256 --seed 1")
#   DISTILL_OPTS    distill's options (default "-r 4 --epochs 4 --lr 0.005")
# (the options are split at spaces: no quoting inside them)
set -eu
rl_name=remote-distill
. "$(dirname "$0")/lib.sh"
if [ $# -ne 3 ]; then
	echo "usage: [REMOTE=host] remote-distill.sh TEACHER STUDENT ADAPTER" >&2
	exit 2
fi
teacher=$1 student=$2 adapter=$3
rl_init
gen_opts=${GEN_OPTS:--n 2000 --max-len 256 --seed 1}
distill_opts=${DISTILL_OPTS:--r 4 --epochs 4 --lr 0.005}

# q WORD: WORD quoted for the remote's shell
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

if [ -z "${REMOTE:-}" ]; then
	rl_say "teacher-gen $gen_opts $teacher | distill $distill_opts -o $adapter $student"
	# shellcheck disable=SC2086 # the options are lists of words
	"$bin/teacher-gen" $gen_opts "$teacher" | "$bin/distill" $distill_opts -o "$adapter" "$student" ||
		rl_die "failed: no adapter (see the messages above)"
else
	cmd=$(q "${REMOTE_BIN:+$REMOTE_BIN/}teacher-gen")
	for o in $gen_opts; do cmd="$cmd $(q "$o")"; done
	if [ -n "${REMOTE_TEACHER:-}" ]; then
		cmd="$cmd $(q "$REMOTE_TEACHER")"
		input=/dev/null
	else
		"$bin/tsdump" "$teacher" 2>/dev/null | head -n 1 | grep -q '"kind":"model"' ||
			rl_die "$teacher: not a model stream, which is what goes over the connection (make one with qpack -p f32 -o teacher.msgpack MODEL, or name the remote's copy in REMOTE_TEACHER)"
		cmd="$cmd -"
		input=$teacher
	fi
	rl_say "${SSH:-ssh} $REMOTE $cmd < $input | distill $distill_opts -o $adapter $student"
	# shellcheck disable=SC2086 # SSH and the options are lists of words
	${SSH:-ssh} "$REMOTE" "$cmd" < "$input" | "$bin/distill" $distill_opts -o "$adapter" "$student" ||
		rl_die "failed: no adapter (see the messages above; the samples from $REMOTE did not arrive whole)"
fi
rl_say "done: $adapter"
