#!/bin/sh
# evaluate-adapter.sh STUDENT ADAPTER [TEACHER]: what an existing adapter
# is and what it brings back.
#
# STUDENT is the quantized model the adapter was trained on (any model
# argument); ADAPTER an adapter stream from distill (a checkpoint will do).
# With TEACHER, the recovery table too; with stories260K-style models, the
# TinyStories tasks. TEXT names the evaluation text (default: the first 40 kB
# of the TinyStories dev text).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
shared=${SHARED:-$top/../shared}
[ $# -ge 2 ] || { echo "usage: evaluate-adapter.sh STUDENT ADAPTER [TEACHER]" >&2; exit 2; }
student=$1 adapter=$2 teacher=${3:-}

# the adapter's header: rank, alpha, the adapted tensors, and the identity of
# the student it belongs to (base.content, base.source)
"$bin/tsdump" "$adapter" | head -n 1 | grep -o '"rank":[0-9]*,"alpha":[0-9.]*\|"base":{[^}]*}'
# a checkpoint also carries the training step in a summary message
"$bin/tsdump" "$adapter" | grep '"t":"summary"' | cut -c 1-120 || true

# the text to score; cloze and last-word tasks when the TinyStories data is there
text=${TEXT:-}
if [ -z "$text" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	text=$tmp/dev-40k.txt
	head -c 40000 "$shared/data/tinystories/dev.txt" > "$text"
fi
set -- --task "ppl:$text"
[ ! -f "$shared/data/tinystories/lastword.jsonl" ] || set -- "$@" --task "lastword:$shared/data/tinystories/lastword.jsonl"

# STUDENT+ADAPTER attaches the adapter unmerged; evalrun refuses an adapter
# made for another student, naming both identities
if [ -n "$teacher" ]; then
	"$bin/evalrun" "$@" --fp "$teacher" --quant "$student" --recovered "$student+$adapter"
else
	"$bin/evalrun" "$@" "$student" "$student+$adapter"
fi
