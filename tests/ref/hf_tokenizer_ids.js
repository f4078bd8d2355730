// hf_tokenizer_ids.js: token ids from Hugging Face's own tokenizers library
// (its Node binding, the npm package "tokenizers", which runs the Rust
// implementation), to check our tokenizer.json export against.
//
//   node tests/ref/hf_tokenizer_ids.js DIR/tokenizer.json DOCS.json > IDS
//
// DOCS.json is a JSON array of documents (tests/test_hf_export --make writes
// TinyStories' dev text so). Each is encoded with the tokenizer's special
// tokens (its post-processor's BOS) and its ids written as one line,
// separated by spaces. The module is found through NODE_PATH.
const fs = require("fs");
const { Tokenizer } = require("tokenizers");

const [file, docsFile] = process.argv.slice(2);
const tokenizer = Tokenizer.fromFile(file);
const docs = JSON.parse(fs.readFileSync(docsFile, "utf8"));
(async () => {
	const lines = [];
	for (const d of docs) {
		const enc = await tokenizer.encode(d, null, { addSpecialTokens: true });
		lines.push(enc.getIds().join(" "));
	}
	process.stdout.write(lines.join("\n") + "\n");
})().catch((e) => {
	process.stderr.write(String(e) + "\n");
	process.exit(1);
});
