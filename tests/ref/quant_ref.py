#!/usr/bin/python3
"""Independent reference for our group formats, written from DESIGN.md's text
("Quantized formats") with numpy, not from lib/dtype.c.

Writes tests/fixtures/quant_ref.bin, which tests/test_quant.c compares byte for
byte with the C quantizer (rtn) and value for value with its dequantizer.

Layout of the fixture (little-endian):
  b"RLQR", u32 version=1, u32 ncases
  per case: u32 bits, u32 group, u32 rows, u32 cols,
            f32 weights[rows*cols], u32 nbytes, u8 packed[nbytes],
            f32 dequantized[rows*cols]

Regenerate with: /usr/bin/python3 tests/ref/quant_ref.py > tests/fixtures/quant_ref.bin
"""
import struct
import sys

import numpy as np


def quantize_group(w, bits):
    nmax = (1 << bits) - 1
    lo, hi = np.float32(w.min()), np.float32(w.max())
    min16 = np.float16(lo)
    scale16 = np.float16(np.float32(hi - lo) / np.float32(nmax))
    mn, sc = np.float32(min16), np.float32(scale16)
    if sc > 0:
        q = np.rint((w - mn) / sc)          # float32 arithmetic, ties to even
        q = np.clip(q, 0, nmax).astype(np.uint8)
    else:
        scale16 = np.float16(0)
        sc = np.float32(0)
        q = np.zeros(len(w), dtype=np.uint8)
    # q packed LSB-first: element i holds bits [i*b, i*b+b) of the byte string
    nbits = len(w) * bits
    packed = bytearray((nbits + 7) // 8)
    for i, v in enumerate(q):
        for k in range(bits):
            if (int(v) >> k) & 1:
                pos = i * bits + k
                packed[pos // 8] |= 1 << (pos % 8)
    head = struct.pack("<HH", scale16.view(np.uint16), min16.view(np.uint16))
    deq = (sc * q.astype(np.float32)).astype(np.float32) + mn   # two float32 roundings
    return head + bytes(packed), deq.astype(np.float32)


def case(rng, bits, group, rows, cols, kind):
    if kind == "normal":
        w = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    else:  # edge cases: a constant row, a row with one outlier, tiny values
        w = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.02)
        w[0, :] = np.float32(0.25)
        w[1 % rows, cols // 2] = np.float32(3.0)
        w[2 % rows, :] *= np.float32(1e-4)
    out = bytearray()
    deq = np.empty_like(w)
    for r in range(rows):
        for g0 in range(0, cols, group):
            b, d = quantize_group(w[r, g0:g0 + group], bits)
            out += b
            deq[r, g0:g0 + group] = d
    return (struct.pack("<IIII", bits, group, rows, cols) + w.tobytes() +
            struct.pack("<I", len(out)) + bytes(out) + deq.tobytes())


def main():
    rng = np.random.default_rng(20261122)
    cases = [(2, 32, 4, 172, "normal"), (3, 16, 3, 64, "normal"), (4, 64, 3, 172, "normal"),
             (8, 32, 2, 100, "normal"), (2, 256, 2, 300, "normal"), (4, 32, 3, 64, "edge"),
             (3, 128, 3, 200, "edge"), (2, 16, 3, 37, "edge")]
    body = b"".join(case(rng, *c) for c in cases)
    sys.stdout.buffer.write(b"RLQR" + struct.pack("<II", 1, len(cases)) + body)


if __name__ == "__main__":
    main()
