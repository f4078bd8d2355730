// gguf_check.mjs: a GGUF file we wrote, read by a parser we did not write
// (the npm package @huggingface/gguf), held against what the caller expects.
//
//   NODE_PATH=build/npm/node_modules node tests/ref/gguf_check.mjs NAME FILE EXPECT...
//
// EXPECT is one of
//   key=value          a scalar metadata value (as String() writes it)
//   key#n              an array of n elements
//   key[i]=value       element i of an array
//   ntensors=n         the tensor count
//   tensor:NAME=TYPE:d0xd1   a tensor's ggml type (the package's name for it) and dims, innermost first
//   !tensor:NAME       no such tensor
//   !key               no such metadata key
//   filetype=NAME      general.file_type, by the package's name for it (MOSTLY_Q2_K)
// Every file is also checked for layout: tensor data aligned to general.alignment
// (32 by default), inside the file, not overlapping, of the size its type and
// dims imply (block sizes from the GGUF specification). Prints "PASS NAME" or
// "FAIL NAME: why" and exits 0 either way (tests/run.sh counts the lines).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve(process.env.NODE_PATH || "build/npm/node_modules", "x.js"));
const { gguf, GGMLQuantizationType, GGMLFileQuantizationType } = await import(require.resolve("@huggingface/gguf"));

// ggml's block sizes: [elements per block, bytes per block]
const BLOCK = { F32: [1, 4], F16: [1, 2], BF16: [1, 2], Q4_0: [32, 18], Q8_0: [32, 34], Q2_K: [256, 84], Q4_K: [256, 144] };

const [name, file, ...expects] = process.argv.slice(2);
const problems = [];
try {
	const { metadata, tensorInfos, tensorDataOffset } = await gguf(path.resolve(file), { allowLocalFile: true });
	const tensors = new Map(tensorInfos.map((t) => [t.name, t]));
	for (const e of expects) {
		let m;
		if ((m = e.match(/^!tensor:(.+)$/))) {
			if (tensors.has(m[1])) problems.push(`tensor ${m[1]} should be absent`);
		} else if ((m = e.match(/^!(.+)$/))) {
			if (m[1] in metadata) problems.push(`metadata ${m[1]} should be absent`);
		} else if ((m = e.match(/^tensor:(.+)=([A-Z0-9_]+):([0-9x]+)$/))) {
			const t = tensors.get(m[1]);
			const dims = t ? t.shape.map(String).join("x") : "";
			const type = t ? GGMLQuantizationType[t.dtype] : "";
			if (!t) problems.push(`no tensor ${m[1]}`);
			else if (type !== m[2] || dims !== m[3]) problems.push(`${m[1]} is ${type} ${dims}, wanted ${m[2]} ${m[3]}`);
		} else if ((m = e.match(/^ntensors=(\d+)$/))) {
			if (tensorInfos.length !== Number(m[1])) problems.push(`${tensorInfos.length} tensors, wanted ${m[1]}`);
		} else if ((m = e.match(/^filetype=(.+)$/))) {
			const got = GGMLFileQuantizationType[metadata["general.file_type"]];
			if (got !== m[1]) problems.push(`general.file_type ${metadata["general.file_type"]} (${got}), wanted ${m[1]}`);
		} else if ((m = e.match(/^(.+)#(\d+)$/))) {
			const v = metadata[m[1]];
			if (!Array.isArray(v) || v.length !== Number(m[2]))
				problems.push(`${m[1]} has ${Array.isArray(v) ? v.length : "no"} elements, wanted ${m[2]}`);
		} else if ((m = e.match(/^(.+)\[(\d+)\]=(.*)$/))) {
			const v = metadata[m[1]];
			if (!Array.isArray(v) || String(v[Number(m[2])]) !== m[3])
				problems.push(`${m[1]}[${m[2]}] is ${Array.isArray(v) ? JSON.stringify(v[Number(m[2])]) : "missing"}, wanted ${m[3]}`);
		} else if ((m = e.match(/^([^=]+)=(.*)$/))) {
			if (String(metadata[m[1]]) !== m[2]) problems.push(`${m[1]} is ${metadata[m[1]]}, wanted ${m[2]}`);
		} else {
			problems.push(`bad expectation ${e}`);
		}
	}
	const align = BigInt(metadata["general.alignment"] ?? 32);
	const size = BigInt(fs.statSync(file).size);
	let end = 0n;
	const byOffset = [...tensorInfos].sort((a, b) => (a.offset < b.offset ? -1 : 1));
	for (const t of byOffset) {
		const type = GGMLQuantizationType[t.dtype];
		const [per, bytes] = BLOCK[type] || [0, 0];
		const n = t.shape.reduce((a, b) => a * b, 1n);
		if (!per || t.shape[0] % BigInt(per)) {
			problems.push(`${t.name}: type ${type} with rows of ${t.shape[0]}`);
			continue;
		}
		const start = tensorDataOffset + t.offset;
		if (start % align) problems.push(`${t.name}: data at ${start}, not aligned to ${align}`);
		if (t.offset < end) problems.push(`${t.name}: overlaps the tensor before it`);
		end = t.offset + (n / BigInt(per)) * BigInt(bytes);
		if (tensorDataOffset + end > size) problems.push(`${t.name}: ends past the end of the file`);
	}
} catch (e) {
	problems.push(String(e.message || e).split("\n")[0]);
}
console.log(problems.length ? `FAIL ${name}: ${problems.join("; ")}` : `PASS ${name}`);
