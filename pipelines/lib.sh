# lib.sh: what the pipelines share; sourced by pipelines/*.sh (and
# examples/), never run. The sourcing script sets rl_name (its name in
# messages) and calls rl_init first.
#
#   rl_init             top, bin, shared; installs what is missing and builds the tools
#   rl_say MSG          a progress line on stderr, "NAME: MSG"
#   rl_die MSG          that, then exit 1
#   rl_default_model DIR  the model a pipeline uses without one: $RECOVER_MODEL,
#                       else stories260K from ../shared, else a seeded random model
#                       made in DIR (and says which)
#   rl_abs PATH         PATH made absolute
#   rl_model_args DEFAULT-OUTDIR [MODEL [OUTDIR]]  sets out (made), model and text,
#                       absolute paths, as recover.sh chooses them
#   rl_id FILE          path, size and modification time: what a stamp records of an input
#   rl_stage OUT STAMP CMD...  runs CMD unless OUT is complete and was made with STAMP
#   rl_results FILE...  results streams (evalrun -o) as tab-separated lines:
#                       model role task metric value stderr n

rl_init() {
	top=$(cd -P "$(dirname "$0")/.." && pwd) # -P: through a link to pipelines/, the real checkout
	bin=$top/bin
	shared=${SHARED:-$top/../shared}
	sh "$top/.ci/deps.sh"
	make -s -C "$top" all >&2
}

rl_say() { echo "${rl_name:-pipeline}: $*" >&2; }
rl_die() { rl_say "$*"; exit 1; }

rl_default_model() {
	if [ -n "${RECOVER_MODEL:-}" ]; then
		echo "$RECOVER_MODEL"
	elif [ -f "$shared/models/stories260K/stories260K.bin" ]; then
		rl_say "model: stories260K ($shared/models/stories260K/stories260K.bin)"
		echo "$shared/models/stories260K/stories260K.bin"
	else
		cat > "$1/random-config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
 "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512}
JSON
		[ -s "$1/random.msgpack" ] ||
			"$bin/qpack" -p f32 --random "$1/random-config.json" --seed 1 -o "$1/random.msgpack" ||
			exit 1
		rl_say "model: no stories260K at $shared/models; using a RANDOM-WEIGHT model (seed 1): figures below describe no real model"
		echo "$1/random.msgpack"
	fi
}

rl_abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

rl_model_args() {
	out=$(rl_abs "${3:-$1}")
	mkdir -p "$out"
	model=${2:-}
	[ -n "$model" ] || model=$(rl_default_model "$out")
	[ "$model" != - ] || rl_die "MODEL must be a file: a rerun reads it again"
	model=$(rl_abs "$model")
	text=$(rl_abs "${RECOVER_TEXT:-$shared/data/tinystories/dev.txt}")
	[ -f "$text" ] || rl_die "no evaluation text at $text (set RECOVER_TEXT)"
}

rl_id() { echo "$1 $(stat -L -c '%s %Y' "$1" 2>/dev/null || echo missing)"; }

# rl_stage OUT STAMP COMMAND...: COMMAND writes OUT (atomically: the tools'
# -o does, and so must anything else) with its stderr in OUT's .log. It is
# skipped when OUT exists, is complete (a stream has its end message, which
# tsdump checks) and was made with the same STAMP, kept in OUT.from. Put into
# STAMP the settings and the rl_id of each input, so that a remade input
# remakes what depends on it.
rl_stage() {
	rl_out=$1 rl_stamp=$2
	shift 2
	if [ -s "$rl_out" ] && [ "$(cat "$rl_out.from" 2>/dev/null)" = "$rl_stamp" ] &&
		{ case $rl_out in *.msgpack) "$bin/tsdump" "$rl_out" >/dev/null 2>&1 ;; esac; }; then
		rl_say "reusing $rl_out"
		return 0
	fi
	rl_say "$(basename "$1") $(shift; echo "$*")"
	rm -f "$rl_out.from"
	rl_log=${rl_out%.msgpack}.log
	"$@" 2>"$rl_log" || { cat "$rl_log" >&2; rl_die "failed: $(basename "$1") (log: $rl_log)"; }
	[ ! -s "$rl_log" ] || tail -n 1 "$rl_log" >&2
	printf '%s\n' "$rl_stamp" > "$rl_out.from"
}

rl_results() {
	"$bin/tsdump" "$@" | awk '
	function field(key,   i, s) {
		i = index($0, "\"" key "\":")
		if (!i)
			return ""
		s = substr($0, i + length(key) + 3)
		if (substr(s, 1, 1) == "\"") { # a string: up to the next unescaped quote
			s = substr(s, 2)
			for (i = 1; i <= length(s); i++) {
				if (substr(s, i, 1) == "\\") { i++; continue }
				if (substr(s, i, 1) == "\"") break
			}
			return substr(s, 1, i - 1)
		}
		match(s, /^[^,}]*/)
		return substr(s, 1, RLENGTH)
	}
	/^\{"t":"result"/ {
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", field("model"), field("role"), field("task"),
			field("metric"), field("value"), field("stderr"), field("n")
	}'
}
