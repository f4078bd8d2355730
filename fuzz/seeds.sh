#!/bin/sh
# seeds.sh DIR: starting inputs for each harness, made with our own tools from
# small models and ../shared's data (nothing committed but the script).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$top/../shared}
out=$1
mkdir -p "$out/stream" "$out/model" "$out/task" "$out/json" "$out/config" "$out/gguf" "$out/safetensors" "$out/tokenizer_json" "$out/pack"
make -s -C "$top" all >/dev/null
bin=$top/bin
cat > "$out/config/tiny.json" <<'JSON'
{"model_type": "qwen3", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "vocab_size": 260,
 "max_position_embeddings": 32, "rope_theta": 1000000, "rms_norm_eps": 1e-6, "tie_word_embeddings": false}
JSON
"$bin/qpack" --random "$out/config/tiny.json" --seed 1 -p f32 -o "$out/stream/model-f32" 2>/dev/null
"$bin/qpack" -p w4w2 -q rtn -o "$out/stream/model-q" "$out/stream/model-f32" 2>/dev/null || true
"$bin/teacher-gen" -n 2 --max-len 6 -k 4 -o "$out/stream/samples" "$out/stream/model-f32" 2>/dev/null
printf 'a b c\n' > "$out/text.txt"
"$bin/evalrun" --task "ppl:$out/text.txt" -o "$out/stream/results" "$out/stream/model-f32" > /dev/null 2>&1
cp "$out/stream/model-f32" "$out/model/"
# a llama2.c checkpoint header claiming stories260K's shape, then a few floats
printf '\100\0\0\0\254\0\0\0\5\0\0\0\10\0\0\0\4\0\0\0\0\2\0\0\0\2\0\0' > "$out/model/llama2c-head"
head -c 4096 "$shared/models/stories260K/stories260K.bin" > "$out/model/llama2c-cut"
head -n 3 "$shared/data/mc/arc_easy.jsonl" > "$out/task/mc"
head -n 3 "$shared/data/mc/winogrande.jsonl" > "$out/task/wino"
head -n 3 "$shared/data/tinystories/lastword.jsonl" > "$out/task/lastword"
cp "$out/task/"* "$out/json/" 2>/dev/null || true
head -n 1 "$shared/data/mc/arc_easy.jsonl" > "$out/json/one"
cp "$out/config/tiny.json" "$out/json/config"
cp "$top"/tests/fixtures/gguf/*.gguf "$out/gguf/"
cp "$top/tests/fixtures/hf/llama/model.safetensors" "$top/tests/fixtures/hf/qwen3/model-00002-of-00002.safetensors" "$out/safetensors/"
cp "$top/tests/fixtures/hf/qwen3/tokenizer.json" "$out/tokenizer_json/"
# a recovery pack of the tiny model with an adapter trained for one step
"$bin/distill" -r 2 --epochs 1 --samples "$out/stream/samples" -o "$out/adapter" "$out/stream/model-q" 2>/dev/null &&
	"$bin/lora-merge" --pack "$out/pack/pack" "$out/stream/model-q" "$out/adapter" 2>/dev/null || true
