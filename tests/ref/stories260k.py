#!/usr/bin/python3
"""stories260k.py: an independent PyTorch reference for the llama2.c model.

Written from the description of llama2.c's file format and forward pass, not
from our C code, so that the fixtures it produces can check that code.  The
forward pass runs in float64; the fixtures store float32.

Regenerate the fixtures (from the repository root; Debian's interpreter, which
has python3-torch and python3-numpy):

    /usr/bin/python3 tests/ref/stories260k.py ../shared/models/stories260K/stories260K.bin

This writes
  tests/fixtures/stories260k_ref.bin     magic "RLRF", int32 version 1, int32 T,
                                         int32 V, int32 tokens[T], float32
                                         logits[T*V]; row t holds the logits
                                         after tokens[0..t].  The tokens are BOS,
                                         40 greedy (argmax) tokens from BOS, then
                                         8 fixed ids: T = 49.
  tests/fixtures/stories260k_greedy.txt  the greedy ids for 60 steps from BOS
                                         (BOS itself not included; stops early
                                         if BOS is produced, as llama2.c's run
                                         does), one line, space separated.
and prints the greedy ids and their text, which must begin "Once upon a time,
there was a little girl named Lily. ..." (checked: the script fails if not).

Second check of the reference (not run by the tests; takes a few minutes):

    /usr/bin/python3 tests/ref/stories260k.py --ppl ../shared/models/stories260K/stories260K.bin

scores ../shared/data/tinystories/dev.txt by the text rule (paragraphs split at
blank lines, stripped, encoded as llama2.c's encode() with BOS and the dummy
prefix " ", each scored as one sequence) and prints the mean NLL in nats per
predicted token; expected 1.5542 over 190,544 tokens.

Options: --tokenizer PATH (default tok512.bin beside the model), --text PATH
(default ../shared/data/tinystories/dev.txt relative to the repository root),
--out DIR (default tests/fixtures beside this script's parent).
"""
import argparse
import heapq
import math
import os
import struct
import sys

import numpy as np
import torch

BOS = 1
FIXED_TAIL = [400, 7, 300, 259, 3, 511, 100, 42]
N_GREEDY_FIXTURE = 40
N_GREEDY_TEXT = 60
EPS = 1e-5
ROPE_BASE = 10000.0

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------- checkpoint

def read_checkpoint(path):
    """Reads a llama2.c legacy .bin into a dict of float64 tensors and a config."""
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
    tied = vocab > 0
    V = abs(vocab)
    hs = dim // n_heads
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv, vocab=V, seq_len=seq_len, head_size=hs, tied=tied)
    data = np.frombuffer(raw, dtype="<f4", offset=7 * 4)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        if off + n > data.size:
            sys.exit("stories260k.py: %s: file too short for its header" % path)
        t = torch.from_numpy(data[off:off + n].astype(np.float64).reshape(shape))
        off += n
        return t

    L, C = n_layers, dim
    w = {}
    w["emb"] = take(V, C)                        # (V, C)
    w["rms_att"] = take(L, C)                    # (L, C)
    w["wq"] = take(L, n_heads * hs, C)           # (L, NH*hs, C)
    w["wk"] = take(L, n_kv * hs, C)              # (L, KV*hs, C)
    w["wv"] = take(L, n_kv * hs, C)              # (L, KV*hs, C)
    w["wo"] = take(L, C, n_heads * hs)           # (L, C, NH*hs)
    w["rms_ffn"] = take(L, C)                    # (L, C)
    w["w1"] = take(L, hidden, C)                 # (L, H, C)
    w["w2"] = take(L, C, hidden)                 # (L, C, H)
    w["w3"] = take(L, hidden, C)                 # (L, H, C)
    w["rms_final"] = take(C)                     # (C,)
    take(seq_len, hs // 2)                       # freq_cis_real, unused
    take(seq_len, hs // 2)                       # freq_cis_imag, unused
    w["wcls"] = w["emb"] if tied else take(V, C)  # (V, C)
    if off != data.size:
        sys.exit("stories260k.py: %s: %d floats left over after the weights"
                 % (path, data.size - off))
    return cfg, w


# ---------------------------------------------------------------- forward

def rmsnorm(x, weight):
    # x (T, C), weight (C,)
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + EPS) * weight


def rope(x, hs):
    """llama2.c rotation: pairs (2j, 2j+1) within each head.  x (NH, T, hs)."""
    T = x.shape[1]
    j = torch.arange(hs // 2, dtype=torch.float64)
    freq = ROPE_BASE ** (-2.0 * j / hs)                          # (hs/2,)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * freq  # (T, hs/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = x[..., 0::2], x[..., 1::2]                            # (NH, T, hs/2)
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def forward(cfg, w, tokens):
    """Logits (T, V), float64, for a sequence that starts at position 0."""
    T = len(tokens)
    NH, KV, hs = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_size"]
    x = w["emb"][torch.tensor(tokens, dtype=torch.long)]          # (T, C)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = (h @ w["wq"][l].T).view(T, NH, hs).transpose(0, 1)    # (NH, T, hs)
        k = (h @ w["wk"][l].T).view(T, KV, hs).transpose(0, 1)    # (KV, T, hs)
        v = (h @ w["wv"][l].T).view(T, KV, hs).transpose(0, 1)    # (KV, T, hs)
        q, k = rope(q, hs), rope(k, hs)
        # GQA: query head h reads kv head h // (NH/KV).
        k = k.repeat_interleave(NH // KV, dim=0)                  # (NH, T, hs)
        v = v.repeat_interleave(NH // KV, dim=0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hs)             # (NH, T, T)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        out = (att @ v).transpose(0, 1).reshape(T, NH * hs)       # (T, NH*hs)
        x = x + out @ w["wo"][l].T
        h = rmsnorm(x, w["rms_ffn"][l])
        gate = torch.nn.functional.silu(h @ w["w1"][l].T)         # (T, H)
        x = x + (gate * (h @ w["w3"][l].T)) @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T               # (T, V)


def greedy(cfg, w, steps, stop_at_bos):
    """Argmax decoding from BOS; returns the generated ids (BOS not included)."""
    seq = [BOS]
    for _ in range(steps):
        nxt = int(forward(cfg, w, seq)[-1].argmax())
        if nxt == BOS and stop_at_bos:
            break
        seq.append(nxt)
    return seq[1:]


# ---------------------------------------------------------------- tokenizer

def read_tokenizer(path, vocab_size):
    with open(path, "rb") as f:
        raw = f.read()
    off = 4  # int32 max_token_length, not needed here
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off:off + n])
        scores.append(score)
        off += n
    return pieces, scores


def decode(pieces, ids):
    """Text of ids that follow BOS, as llama2.c's decode prints them."""
    out = bytearray()
    prev = BOS
    for t in ids:
        p = pieces[t]
        if prev == BOS and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            out.append(int(p[3:5], 16))
        else:
            out += p
        prev = t
    return out.decode("utf-8", errors="replace")


class Encoder:
    """llama2.c's encode(text, bos=1, eos=0): one token per UTF-8 codepoint
    (byte fallback id = byte + 3), then repeatedly merge the adjacent pair whose
    concatenation is a piece with the highest score, leftmost on ties.  Same
    output as llama2.c's quadratic loop, with a heap instead of rescans."""

    def __init__(self, pieces, scores):
        self.pieces = pieces
        self.scores = scores
        self.lookup = {p: i for i, p in enumerate(pieces)}

    def initial(self, text):
        ids = [BOS]
        if not text:
            return ids
        ids.append(self.lookup[b" "])
        i = 0
        while i < len(text):
            j = i + 1
            # A codepoint: the lead byte and up to 3 continuation bytes.
            while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
                j += 1
            cp = text[i:j]
            if cp in self.lookup:
                ids.append(self.lookup[cp])
            else:
                ids.extend(b + 3 for b in cp)
            i = j
        return ids

    def merge(self, ids):
        n = len(ids)
        tok = list(ids)
        nxt = list(range(1, n + 1))   # n = end of list
        prv = list(range(-1, n - 1))
        ver = [0] * n                 # bumped whenever a node's token changes
        alive = [True] * n
        heap = []

        def push(i):
            j = nxt[i]
            if j >= n:
                return
            m = self.lookup.get(self.pieces[tok[i]] + self.pieces[tok[j]])
            if m is not None:
                # Node index order is list order: the lower index is leftmost.
                heapq.heappush(heap, (-self.scores[m], i, ver[i], j, ver[j], m))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, vi, j, vj, m = heapq.heappop(heap)
            if not (alive[i] and alive[j] and nxt[i] == j and ver[i] == vi and ver[j] == vj):
                continue
            tok[i] = m
            ver[i] += 1
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        out, i = [], 0
        while i < n:
            out.append(tok[i])
            i = nxt[i]
        return out

    def merge_quadratic(self, ids):
        """llama2.c's own loop, kept to cross-check merge() on a few documents."""
        ids = list(ids)
        while True:
            best, best_id, best_i = -1e10, -1, -1
            for i in range(len(ids) - 1):
                m = self.lookup.get(self.pieces[ids[i]] + self.pieces[ids[i + 1]])
                if m is not None and self.scores[m] > best:
                    best, best_id, best_i = self.scores[m], m, i
            if best_i < 0:
                return ids
            ids[best_i:best_i + 2] = [best_id]

    def encode(self, text):
        return self.merge(self.initial(text))


def split_documents(raw):
    """Paragraphs separated by lines that hold only whitespace, stripped of
    surrounding whitespace (ASCII, as C's isspace), empty ones dropped."""
    docs, cur = [], []
    for line in raw.split(b"\n"):
        if line.strip() == b"":
            doc = b"\n".join(cur).strip()
            if doc:
                docs.append(doc)
            cur = []
        else:
            cur.append(line)
    doc = b"\n".join(cur).strip()
    if doc:
        docs.append(doc)
    return docs


# ---------------------------------------------------------------- modes

def write_fixtures(cfg, w, pieces, outdir):
    g40 = greedy(cfg, w, N_GREEDY_FIXTURE, stop_at_bos=False)
    if BOS in g40:
        sys.exit("stories260k.py: greedy decoding produced BOS within %d tokens" % N_GREEDY_FIXTURE)
    tokens = [BOS] + g40 + FIXED_TAIL
    T, V = len(tokens), cfg["vocab"]
    logits = forward(cfg, w, tokens).numpy().astype("<f4")        # (T, V)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "stories260k_ref.bin")
    with open(path + ".tmp", "wb") as f:
        f.write(b"RLRF")
        f.write(struct.pack("<3i", 1, T, V))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.tobytes())
    os.replace(path + ".tmp", path)
    print("wrote %s: T=%d V=%d" % (path, T, V))
    print("greedy %d: %s" % (N_GREEDY_FIXTURE, " ".join(map(str, g40))))

    g60 = greedy(cfg, w, N_GREEDY_TEXT, stop_at_bos=True)
    path = os.path.join(outdir, "stories260k_greedy.txt")
    with open(path + ".tmp", "w") as f:
        f.write(" ".join(map(str, g60)) + "\n")
    os.replace(path + ".tmp", path)
    text = decode(pieces, g60)
    print("wrote %s" % path)
    print("greedy %d: %s" % (len(g60), " ".join(map(str, g60))))
    print("text: %s" % text)
    expect = ("Once upon a time, there was a little girl named Lily. She loved to play "
              "outside in the park. One day, she saw a big, red ball.")
    if not text.startswith(expect):
        sys.exit("stories260k.py: greedy text does not start with the llama2.c sample; the model is wrong")
    print("greedy text matches llama2.c's sample")


def perplexity(cfg, w, pieces, scores, text_path):
    enc = Encoder(pieces, scores)
    with open(text_path, "rb") as f:
        docs = split_documents(f.read())
    for d in docs[:20]:  # the heap merge must agree with llama2.c's loop
        ini = enc.initial(d)
        assert enc.merge(ini) == enc.merge_quadratic(ini), d[:60]
    total_nll, total_tok, longest = 0.0, 0, 0
    for n, d in enumerate(docs):
        ids = enc.encode(d)
        longest = max(longest, len(ids))
        if len(ids) > cfg["seq_len"]:
            sys.exit("stories260k.py: document %d has %d tokens > seq_len %d"
                     % (n, len(ids), cfg["seq_len"]))
        if len(ids) < 2:
            continue
        logp = forward(cfg, w, ids[:-1]).log_softmax(dim=-1)     # (T-1, V)
        target = torch.tensor(ids[1:], dtype=torch.long)
        total_nll -= float(logp.gather(1, target[:, None]).sum())
        total_tok += len(ids) - 1
        if (n + 1) % 200 == 0:
            print("%d/%d documents, %.4f nats/token so far" % (n + 1, len(docs), total_nll / total_tok),
                  file=sys.stderr)
    nll = total_nll / total_tok
    print("documents: %d" % len(docs))
    print("longest document: %d tokens (BOS included)" % longest)
    print("predicted tokens: %d" % total_tok)
    print("mean NLL: %.4f nats/token" % nll)
    print("perplexity: %.3f" % math.exp(nll))


def main():
    ap = argparse.ArgumentParser(description="PyTorch reference for llama2.c stories260K")
    ap.add_argument("model", help="llama2.c .bin checkpoint")
    ap.add_argument("--tokenizer", help="tokenizer .bin (default: tok512.bin beside the model)")
    ap.add_argument("--ppl", action="store_true", help="score --text instead of writing fixtures")
    ap.add_argument("--text", default=os.path.join(REPO, "..", "shared", "data", "tinystories", "dev.txt"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg, w = read_checkpoint(args.model)
    tok_path = args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.model)), "tok512.bin")
    pieces, scores = read_tokenizer(tok_path, cfg["vocab"])
    print("config: %s" % cfg)
    if args.ppl:
        perplexity(cfg, w, pieces, scores, args.text)
    else:
        write_fixtures(cfg, w, pieces, args.out)


if __name__ == "__main__":
    main()
