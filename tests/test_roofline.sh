#!/bin/sh
# test_roofline.sh: roofline's arithmetic on a tiny config against figures
# worked out by hand, its JSON and SVG well-formed, the speed-up falling as
# the KV cache grows, a model stream agreeing with its config, and bad input.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
R=$BIN/roofline
# dim 64, ffn 128, 2 layers, 4 heads of 16, 2 KV heads (KD 32), vocab 300, tied
cat > "$TMP/tiny.json" <<'EOF'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 512,
 "tie_word_embeddings": true}
EOF
# jget FILE EXPR: a Python expression over the parsed JSON j
jget() { $PY -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# near NAME GOT WANT: equal to 1e-6 relative
near() {
	if awk -v a="$2" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * (b < 0 ? -b : b) + 1e-12) }'; then
		pass "$1"
	else
		fail "$1" "got $2, want $3"
	fi
}
if [ ! -x "$PY" ] || ! $PY -c 'import json, xml.etree.ElementTree' 2>/dev/null; then
	skip roofline "no $PY"
	t_done
fi

# Bytes by hand, q4 = q4g32: a row of 64 is 2 groups x (f16 scale + f16 min + 16 bytes of q) = 40,
# a row of 128 is 80; q2g32: a row of 64 is 2 x (4 + 8) = 24; the tied classifier at q8g32:
# 2 x (4 + 32) = 72 a row. Per layer: q, k, v rows 64 + 32 + 32; output 64; gate, up 128 each; down 64.
#   attn_qkv 2 x 128 x 40 = 10240, attn_output 2 x 64 x 40 = 5120, ffn_gate_up 2 x 256 x 40 = 20480,
#   ffn_down 2 x 64 x 80 = 10240, output 300 x 72 = 21600, one embedding row 72,
#   KV at context 0: K and V, 2 layers, 32 floats, read 1 position and write 1: 2 x 2 x 32 x 4 x 2 = 1024.
q4_bytes=68776
w4w2_bytes=$((q4_bytes - 20480 + 2 * 256 * 24))
# FLOPs: 2 per weight: (16384 + 8192 + 32768 + 16384 + 19200) x 2, attention 4 x 2 x 4 x 16 x 1
flops=$(( (16384 + 8192 + 32768 + 16384 + 19200) * 2 + 512 ))
"$R" --model "$TMP/tiny.json" --policy w4w2 --baseline q4 --hw custom:bw=1,flops=1000 --ctx 0,100 --json > "$TMP/a.json" 2>"$TMP/a.err"
if jget "$TMP/a.json" "len(j['rows'])" > /dev/null 2>&1; then pass json_parses; else fail json_parses "$(head -c 300 "$TMP/a.json")"; fi
near q4_bytes_per_token "$(jget "$TMP/a.json" "j['rows'][0]['decode']['baseline']['bytes_per_token']")" $q4_bytes
near w4w2_bytes_per_token "$(jget "$TMP/a.json" "j['rows'][0]['decode']['policy']['bytes_per_token']")" $w4w2_bytes
near q4_qkv_bytes "$(jget "$TMP/a.json" "j['rows'][0]['decode']['baseline']['classes']['attn_qkv']['bytes']")" 10240
near w4w2_gate_up_bytes "$(jget "$TMP/a.json" "j['rows'][0]['decode']['policy']['classes']['ffn_gate_up']['bytes']")" 12288
near flops_per_token "$(jget "$TMP/a.json" "j['rows'][0]['decode']['policy']['flops_per_token']")" $flops
# memory-bound at 1 GB/s: tokens/s = 1e9 / bytes
near q4_decode_rate "$(jget "$TMP/a.json" "j['rows'][0]['decode']['baseline']['tokens_per_s']")" "$(awk -v b=$q4_bytes 'BEGIN { printf "%.10g", 1e9 / b }')"
near speedup_is_bytes_ratio "$(jget "$TMP/a.json" "j['rows'][0]['speedup']")" "$(awk -v a=$q4_bytes -v b=$w4w2_bytes 'BEGIN { printf "%.10g", a / b }')"
# context 100: KV 2 x 2 x 32 x 4 x (100 + 2), attention FLOPs 4 x 2 x 4 x 16 x 101
near kv_bytes_ctx100 "$(jget "$TMP/a.json" "j['rows'][1]['decode']['policy']['classes']['attention']['bytes']")" 52224
near attention_flops_ctx100 "$(jget "$TMP/a.json" "j['rows'][1]['decode']['policy']['classes']['attention']['flops']")" 51712
near stored_bytes_q4 "$(jget "$TMP/a.json" "j['weight_bytes']['baseline']")" $((21600 + 10240 + 5120 + 20480 + 10240 + 4 * (2 * 64 + 2 * 64 + 64)))

# batch 4: the matrices' bytes are shared by 4 tokens, the embedding row and KV are each token's own
"$R" --model "$TMP/tiny.json" --policy q4 --hw custom:bw=1,flops=1000 --ctx 0 --batch 4 --json > "$TMP/b.json"
near batch4_bytes "$(jget "$TMP/b.json" "j['rows'][0]['decode']['policy']['bytes_per_token']")" $(( (q4_bytes - 72 - 1024) / 4 + 72 + 1024 ))
# LoRA rank 8 on the 2-bit gate and up: 4 tensors x 8 x (128 + 64) f32
"$R" --model "$TMP/tiny.json" --policy w4w2 --lora 8 --hw custom:bw=1,flops=1000 --ctx 0 --json > "$TMP/l.json"
near lora_bytes "$(jget "$TMP/l.json" "j['rows'][0]['decode']['policy']['classes']['lora']['bytes']")" $((4 * 8 * 192 * 4))
near lora_none_on_q4 "$(jget "$TMP/l.json" "j['rows'][0]['decode']['baseline']['classes']['lora']['bytes']")" 0
# prefill of 512 tokens at 1 GFLOP/s: compute-bound, per token the matrices' FLOPs plus causal attention
# 4 x 2 x 4 x 16 x 513 / 2; the embedding row at 1000 GB/s
"$R" --model "$TMP/tiny.json" --policy q4 --hw custom:bw=1000,flops=0.001 --ctx 0 --json > "$TMP/p.json"
near prefill_rate "$(jget "$TMP/p.json" "j['rows'][0]['prefill']['policy']['tokens_per_s']")" \
	"$(awk 'BEGIN { printf "%.10g", 1 / ((185856 + 131328) / 1e9 + 72 / 1e12) }')"

# the speed-up falls as the KV cache (the same for both policies) grows, and stays above 1
"$R" --model "$TMP/tiny.json" --hw custom:bw=100,flops=10 --ctx 0,64,256,511 --json > "$TMP/m.json"
if [ "$(jget "$TMP/m.json" "all(a['speedup'] > b['speedup'] > 1 for a, b in zip(j['rows'], j['rows'][1:]))")" = True ]; then
	pass speedup_falls_with_context
else
	fail speedup_falls_with_context "$(jget "$TMP/m.json" "[r['speedup'] for r in j['rows']]")"
fi

# a model stream gives what its config and policy give
"$BIN/qpack" --random "$TMP/tiny.json" -q rtn -p w4w2 -o "$TMP/tiny.msgpack" 2>/dev/null
"$R" --model "$TMP/tiny.msgpack" --hw custom:bw=1,flops=1000 --ctx 0 --json > "$TMP/s.json"
near stream_as_stored "$(jget "$TMP/s.json" "j['rows'][0]['decode']['policy']['bytes_per_token']")" $w4w2_bytes
near stream_stored_bytes "$(jget "$TMP/s.json" "j['weight_bytes']['policy']")" "$(jget "$TMP/a.json" "j['weight_bytes']['policy']")"

# the table, and the SVG
check table "$R" --model "$TMP/tiny.json" --hw m2 --ctx 0,100
"$R" --model "$TMP/tiny.json" --hw h100-sxm --ctx 0,100,400 --svg "$TMP/r.svg" > "$TMP/t.out"
if grep -q 'speed-up' "$TMP/t.out" && grep -q 'ffn_gate_up' "$TMP/t.out"; then pass table_columns; else fail table_columns "$(head -c 300 "$TMP/t.out")"; fi
if $PY -c "
import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
ns = '{http://www.w3.org/2000/svg}'
assert r.tag == ns + 'svg'
texts = [t.text or '' for t in r.iter(ns + 'text')]
assert any('ffn_gate_up' in t for t in texts), 'no layer class on the roofline'
assert len(r.findall(ns + 'polyline')) == 2, 'want the roof and the speed-up curve'
assert len(r.findall(ns + 'circle')) >= 3 + 5
" "$TMP/r.svg" 2>"$TMP/svg.err"; then pass svg_well_formed; else fail svg_well_formed "$(tail -n 1 "$TMP/svg.err")"; fi
check hw_list sh -c "'$R' --hw list | grep -q h100-sxm"

# --measure: this host's figures, each positive
"$R" --model "$TMP/tiny.json" --measure -t 1 --ctx 0 --json > "$TMP/x.json" 2>/dev/null
if [ "$(jget "$TMP/x.json" "j['hw']['measured'] and j['hw']['bw_gb_s'] > 0 and j['hw']['tflops'] > 0 and all(r['weights_per_s'] > 0 for r in j['hw']['kernels']) and j['rows'][0]['decode']['policy']['tokens_per_s'] > 0" 2>&1)" = True ]; then
	pass measure
else
	fail measure "$(head -c 300 "$TMP/x.json")"
fi
# ... one kernel time for each product shape the matrices use (W4/W2-GateUp and the
# q4 baseline: q and attn_output q4g32 64x64, k and v 32x64, gate/up q2g32 and q4g32
# 128x64, down q4g32 64x128, the classifier q8g32 300x64), no more
if [ "$(jget "$TMP/x.json" "sorted((r['format'], r['rows'], r['row']) for r in j['hw']['kernels'])" 2>&1)" = \
	"[('q2g32', 128, 64), ('q4g32', 32, 64), ('q4g32', 64, 64), ('q4g32', 64, 128), ('q4g32', 128, 64), ('q8g32', 300, 64)]" ]; then
	pass measure_kernels_per_shape
else
	fail measure_kernels_per_shape "$(jget "$TMP/x.json" "j['hw']['kernels']" 2>&1)"
fi
# ... and a class's decode time is the longer of its bytes over the bandwidth and
# its products' measured times (2 layers: q, attn_output, down 2 each, k and v 4,
# gate and up 4), tallied here from the shapes above
cat > "$TMP/classes.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
t = {(k['format'], k['rows'], k['row']): k['seconds'] for k in j['hw']['kernels']}
bw = j['hw']['bw_gb_s'] * 1e9
want = {'attn_qkv': 2 * t['q4g32', 64, 64] + 4 * t['q4g32', 32, 64],
	'attn_output': 2 * t['q4g32', 64, 64],
	'ffn_gate_up': 4 * t['q2g32', 128, 64],
	'ffn_down': 2 * t['q4g32', 64, 128],
	'output': t['q8g32', 300, 64]}
c = j['rows'][0]['decode']['policy']['classes']
bad = [k for k, v in want.items()
       if abs(c[k]['time_s'] - max(v, c[k]['bytes'] / bw)) > 1e-9 * c[k]['time_s']]
print(bad or 'ok')
EOF
if [ "$($PY "$TMP/classes.py" "$TMP/x.json" 2>&1)" = ok ]; then
	pass measure_class_time_from_kernels
else
	fail measure_class_time_from_kernels "$($PY "$TMP/classes.py" "$TMP/x.json" 2>&1)"
fi

# bad input
printf '{"model_type": "llama", "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256}' > "$TMP/nodim.json"
expect_fail missing_field 'hidden_size' "$R" --model "$TMP/nodim.json"
sed 's/"llama"/"gpt2"/' "$TMP/tiny.json" > "$TMP/gpt2.json"
expect_fail unknown_arch 'model_type "gpt2"' "$R" --model "$TMP/gpt2.json"
expect_fail hw_zero 'bw=0 is not a positive' "$R" --model "$TMP/tiny.json" --hw custom:bw=0,flops=1
expect_fail hw_negative 'flops=-3 is not a positive' "$R" --model "$TMP/tiny.json" --hw custom:bw=10,flops=-3
expect_fail hw_nan 'bw=nan is not a positive' "$R" --model "$TMP/tiny.json" --hw custom:bw=nan,flops=1
expect_fail hw_absurd 'absurd' "$R" --model "$TMP/tiny.json" --hw custom:bw=5e9,flops=1
expect_fail hw_tiny 'absurd' "$R" --model "$TMP/tiny.json" --hw custom:bw=1e-6,flops=1
expect_fail hw_half 'needs both' "$R" --model "$TMP/tiny.json" --hw custom:bw=10
expect_fail hw_unknown 'unknown device' "$R" --model "$TMP/tiny.json" --hw cray-1
expect_fail policy_unknown_format 'unknown format "q5"' "$R" --model "$TMP/tiny.json" --policy 'q4;ffn_up=q5'
expect_fail baseline_unknown_format 'baseline.*unknown format' "$R" --model "$TMP/tiny.json" --baseline 'f12'
expect_fail no_model "$TMP/none.json" "$R" --model "$TMP/none.json"
expect_fail svg_unwritable 'svg' "$R" --model "$TMP/tiny.json" --svg "$TMP/no/dir/r.svg"
"$R" --model "$TMP/tiny.json" --ctx 5,1 >/dev/null 2>&1
if [ $? -eq 2 ]; then pass usage_ctx_order; else fail usage_ctx_order "wanted exit 2"; fi
"$R" --model "$TMP/tiny.json" --batch 0 >/dev/null 2>&1
if [ $? -eq 2 ]; then pass usage_batch; else fail usage_batch "wanted exit 2"; fi
"$R" --model "$TMP/tiny.json" --measure --hw m2 >/dev/null 2>&1
if [ $? -eq 2 ]; then pass usage_measure_and_hw; else fail usage_measure_and_hw "wanted exit 2"; fi
t_done
