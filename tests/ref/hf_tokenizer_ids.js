// hf_tokenizer_ids.js: token ids from Hugging Face's own tokenizers library
// (its Node binding, the npm package "tokenizers", which runs the Rust
// implementation), for the tests of our tokenizer.json export.
//
//   node tests/ref/hf_tokenizer_ids.js DIR/tokenizer.json TEXT > IDS
//
// TEXT holds documents separated by blank lines; each document, stripped of
// surrounding whitespace, is encoded with the tokenizer's special tokens
// (its post-processor's BOS), and its ids written as one line, separated by
// spaces. The module is found through NODE_PATH.
const fs = require("fs");
const { Tokenizer } = require("tokenizers");

const [file, textFile] = process.argv.slice(2);
const tokenizer = Tokenizer.fromFile(file);
const docs = fs.readFileSync(textFile, "utf8").split(/\n[ \t\r]*\n/).map((d) => d.trim()).filter((d) => d.length);
(async () => {
	const out = [];
	for (const d of docs) {
		const enc = await tokenizer.encode(d, null, { addSpecialTokens: true });
		out.push(enc.getIds().join(" "));
	}
	process.stdout.write(out.join("\n") + "\n");
})();
