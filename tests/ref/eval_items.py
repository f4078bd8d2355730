#!/usr/bin/python3
"""eval_items.py: an independent PyTorch reference for evalrun's item scoring.

Uses the model, tokenizer and forward pass of stories260k.py (written from
llama2.c's description, not from our C code) to score, by the continuation
rule of DESIGN.md ("Text scoring"), the first 20 items of

  ../shared/data/mc/tinystories_cloze.jsonl  (query + choices)
  ../shared/data/mc/winogrande.jsonl         (context_options + continuation)
  ../shared/data/mc/arc_easy.jsonl           (query + choices)
  ../shared/data/tinystories/lastword.jsonl  (context + target)

and, for the KL task, the first 10 documents of ../shared/data/tinystories/dev.txt
against the same model with its final norm weights halved (its logits halved):
the sum over predicted tokens of KL(original || halved) and the count of tokens
whose argmaxes agree.

Regenerate (from the repository root, Debian's interpreter):

    /usr/bin/python3 tests/ref/eval_items.py ../shared/models/stories260K/stories260K.bin

writes tests/fixtures/eval_items.json.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stories260k as ref  # noqa: E402

N_ITEMS = 20
N_DOCS = 10


def score(cfg, w, enc, ctx, cont):
    """(log-likelihood, tokens, all greedy) of cont after ctx."""
    sep = b"" if cont[:1].isspace() else b" "
    a = enc.encode(ctx)
    b = enc.encode(ctx + sep + cont)
    lcp = 0
    while lcp < min(len(a), len(b)) and a[lcp] == b[lcp]:
        lcp += 1
    assert 0 < lcp < len(b) <= cfg["seq_len"]
    logp = ref.forward(cfg, w, b[:-1]).log_softmax(dim=-1)
    ll, greedy = 0.0, True
    for j in range(lcp, len(b)):
        row = logp[j - 1]
        ll += float(row[b[j]])
        greedy = greedy and int(row.argmax()) == b[j]
    return ll, len(b) - lcp, greedy


def items(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, json.loads(line)


def main():
    model = sys.argv[1]
    shared = os.path.join(ref.REPO, "..", "shared", "data")
    torch.set_grad_enabled(False)
    cfg, w = ref.read_checkpoint(model)
    pieces, scores = ref.read_tokenizer(os.path.join(os.path.dirname(os.path.abspath(model)), "tok512.bin"),
                                        cfg["vocab"])
    enc = ref.Encoder(pieces, scores)
    out = {"model": "stories260K", "mc": [], "lastword": []}
    for name in ("mc/tinystories_cloze.jsonl", "mc/winogrande.jsonl", "mc/arc_easy.jsonl"):
        for k, (line, it) in enumerate(items(os.path.join(shared, name))):
            if k == N_ITEMS:
                break
            if "context_options" in it:
                pairs = [(c, it["continuation"]) for c in it["context_options"]]
            else:
                pairs = [(it["query"], c) for c in it["choices"]]
            res = [score(cfg, w, enc, c.encode(), x.encode()) for c, x in pairs]
            out["mc"].append({"file": name, "line": line, "ll": [r[0] for r in res],
                              "ntok": [r[1] for r in res]})
    for k, (line, it) in enumerate(items(os.path.join(shared, "tinystories/lastword.jsonl"))):
        if k == N_ITEMS:
            break
        ll, n, g = score(cfg, w, enc, it["context"].encode(), it["target"].encode())
        out["lastword"].append({"line": line, "ll": ll, "ntok": n, "greedy": int(g)})
    with open(os.path.join(shared, "tinystories/dev.txt"), "rb") as f:
        docs = ref.split_documents(f.read())[:N_DOCS]
    w2 = dict(w)
    w2["rms_final"] = w["rms_final"] * 0.5
    kl_sum, top1, ntok = 0.0, 0, 0
    for d in docs:
        ids = enc.encode(d)
        p = ref.forward(cfg, w, ids[:-1]).log_softmax(dim=-1)
        q = ref.forward(cfg, w2, ids[:-1]).log_softmax(dim=-1)
        kl_sum += float((p.exp() * (p - q)).sum())
        top1 += int((p.argmax(dim=-1) == q.argmax(dim=-1)).sum())
        ntok += len(ids) - 1
    out["kl"] = {"docs": N_DOCS, "ntokens": ntok, "kl_sum": kl_sum, "top1": top1}
    path = os.path.join(ref.REPO, "tests", "fixtures", "eval_items.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")
    print("wrote %s: %d mc items, %d lastword items, KL %.6f over %d tokens"
          % (path, len(out["mc"]), len(out["lastword"]), kl_sum / ntok, ntok))


if __name__ == "__main__":
    main()
