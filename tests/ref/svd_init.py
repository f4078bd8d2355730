#!/usr/bin/python3
"""svd_init.py: the best rank-r approximation errors of a fixed residual, by
numpy's SVD in float64, for the SVD initialisation test in tests/test_train.c.

The teacher weight T (24, 40) and the student's S are given by formulas that
the C test evaluates the same way (in double, each rounded to float32); the
residual is R = T - S in float32 arithmetic, of a decaying spectrum plus a
little noise.  By Eckart-Young the error of the best rank-r approximation is
||R - R_r||_F = sqrt(sum of the squared singular values past r), which the
C code's init (A and B from LAPACK's sgesdd) must reach.

Regenerate (from the repository root, Debian's interpreter with python3-numpy):

    /usr/bin/python3 tests/ref/svd_init.py

writes tests/fixtures/svd_init.txt: a comment line, "OC IC", "fro ||R||_F",
then one "r error" line per rank.
"""
import math
import os

import numpy as np

OC, IC = 24, 40
RANKS = [1, 2, 4, 8, 24]


def teacher(o, c):
    return 0.5 * math.sin(0.37 * o + 0.23 * c + 0.1 * o * c / 7.0)


def residual(o, c):
    r = sum(0.6 ** k * math.sin(0.31 * k * o + 0.5 * k) * math.cos(0.19 * k * c + 0.3 * k) for k in range(1, 7))
    return r + 0.03 * math.sin(0.77 * o * c + 0.3 * o * o + 0.11 * c)


def main():
    t = np.array([[teacher(o, c) for c in range(IC)] for o in range(OC)], dtype=np.float64).astype(np.float32)
    s = np.array([[float(t[o, c]) - residual(o, c) for c in range(IC)] for o in range(OC)],
                 dtype=np.float64).astype(np.float32)
    r = (t - s).astype(np.float64)  # float32 subtraction, as the C code does
    sv = np.linalg.svd(r, compute_uv=False)
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "svd_init.txt")
    with open(out, "w") as f:
        f.write("# svd_init.py: best rank-r errors of the residual, numpy float64 SVD\n")
        f.write("%d %d\n" % (OC, IC))
        f.write("fro %.9e\n" % math.sqrt(float((sv ** 2).sum())))
        for k in RANKS:
            f.write("%d %.9e\n" % (k, math.sqrt(float((sv[k:] ** 2).sum()))))
    print("svd_init.py: singular values %s ... -> %s" % (np.array2string(sv[:6], precision=4), out))


if __name__ == "__main__":
    main()
