#!/bin/sh
# inspect-stream.sh [MODEL]: what flows through a pipe. tsdump prints each
# message as JSON; grep and cut pick what matters.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$top/../shared/models/stories260K/stories260K.bin}
# the header: architecture, config and the source identity
"$top/bin/qpack" "$model" | "$top/bin/tsdump" | head -n 1
# each tensor's name, dtype, shape and value range
"$top/bin/qpack" "$model" | "$top/bin/tsdump" | grep '"t":"tensor"' | cut -c 1-200
