#!/usr/bin/env python3
"""Per-band regression of a built study's distortion measures: the constants of the synthetic
study in tests/test_data_observers.cpp (SyntheticStudy) come from this script run on the default
study (`vitiq-make-dataset --out DIR`, seed 1):

    python3 tests/reference/data/measure_regression.py DIR/ground_truth_stimuli.csv

For each band it fits psnr_b = mean + a * (content_psnr_b - mean content) + b * (q - mean q) + residual
and prints mean, a, b and the residual's standard deviation, plus the content measure's mean and
standard deviation. Needs numpy (Debian: python3-numpy). Regional stimuli (region_q > 0) are left out.
"""
import csv
import sys

import numpy as np


def main(path):
    rows = [r for r in csv.DictReader(open(path, newline="")) if int(r["region_q"]) == 0]
    band = np.array([int(r["band"]) for r in rows])
    q = np.array([float(r["q"]) for r in rows])
    m = np.array([float(r["psnr_b"]) for r in rows])
    c = np.array([float(r["content_psnr_b"]) for r in rows])
    print(f"content measure: mean {c.mean():.2f} dB, sd {c.std():.2f} dB ({len(rows)} stimuli)")
    print("band  mean   a(content)  b(per Q)  residual sd")
    for k in range(1, 6):
        s = band == k
        A = np.vstack([c[s] - c.mean(), q[s] - q[s].mean(), np.ones(s.sum())]).T
        coef, *_ = np.linalg.lstsq(A, m[s], rcond=None)
        resid = m[s] - A @ coef
        print(f"I{k}   {coef[2]:6.2f}  {coef[0]:6.2f}      {coef[1]:6.3f}    {resid.std():5.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: measure_regression.py STUDY/ground_truth_stimuli.csv")
    main(sys.argv[1])
