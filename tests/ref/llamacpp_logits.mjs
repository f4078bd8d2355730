// llamacpp_logits.mjs: llama.cpp itself (the prebuilt library of the npm
// package node-llama-cpp, CPU only) runs GGUF files we wrote and its logits
// are held against ours. Arguments: MODEL.gguf@TOL or MODEL.gguf+ADAPTER.gguf@TOL,
// each with our logits beside the last file as FILE.logits.json ({tokens,
// vocab, logits: T x V, and base_logits without the adapter}, written by
// test_gguf_write with GGUF_WRITE_KEEP). Prints one PASS or FAIL line per
// file, with max|a-b|/max|b| against ours; with an adapter, llama.cpp must
// also be five times nearer ours with it than the base model's logits are.
//
//   NODE_PATH=build/npm/node_modules node tests/ref/llamacpp_logits.mjs a.gguf@0.01 b.gguf+lora.gguf@0.05
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve(process.env.NODE_PATH || "build/npm/node_modules", "x.js"));
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
let failed = 0;
for (const spec of process.argv.slice(2)) {
	const [arg, tol] = spec.split("@");
	const tolerance = Number(tol);
	const [modelPath, lora] = arg.split("+");
	const name = "llamacpp_" + path.basename(lora || modelPath).replace(/\.gguf$/, "").replace(/[^A-Za-z0-9_]/g, "_");
	try {
		const ref = JSON.parse(fs.readFileSync((lora || modelPath) + ".logits.json", "utf8"));
		const model = await llama.loadModel({ modelPath });
		const ctx = await model.createContext({ contextSize: 64, ...(lora ? { lora } : {}) });
		const seq = ctx.getSequence();
		const out = await seq.controlledEvaluate(ref.tokens.map((t) => [t, { generateNext: { logits: true } }]));
		const relative = (logits) => {
			let num = 0, den = 0;
			for (let i = 0; i < ref.tokens.length; i++) {
				const got = out[i]?.next?.logits;
				if (!got || got.size !== ref.vocab)
					throw new Error(`position ${i}: ${got ? got.size : "no"} logits, wanted ${ref.vocab}`);
				for (const [tok, v] of got) {
					const want = logits[i * ref.vocab + tok];
					num = Math.max(num, Math.abs(v - want));
					den = Math.max(den, Math.abs(want));
				}
			}
			return num / den;
		};
		const rel = relative(ref.logits);
		// with an adapter: nearer ours with it than the base model is, by a wide margin
		const base = ref.base_logits ? relative(ref.base_logits) : Infinity;
		const note = `max|a-b|/max|b| = ${rel.toExponential(2)}` + (ref.base_logits ? `; without the adapter ${base.toExponential(2)}` : "");
		if (rel < tolerance && base > 5 * rel) console.log(`PASS ${name} (${note})`);
		else { console.log(`FAIL ${name}: llama.cpp's logits against ours: ${note} (tolerance ${tolerance})`); failed++; }
		await ctx.dispose();
		await model.dispose();
	} catch (e) {
		console.log(`FAIL ${name}: ${String(e.message || e).split("\n")[0]}`);
		failed++;
	}
}
process.exit(failed ? 1 : 0);
