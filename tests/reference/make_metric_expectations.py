#!/usr/bin/python3
"""Expected values for tests/test_metrics.cpp (include/vitiq/eval/metrics.hpp).

Run with Debian's Python (numpy, scipy 1.10, scikit-learn 1.2, mpmath):

    /usr/bin/python3 tests/reference/make_metric_expectations.py > /tmp/metric_literals.inc

and paste the printed C++ literals between the "BEGIN GENERATED" / "END GENERATED" markers of
tests/test_metrics.cpp. Doubles are printed with repr() (shortest round-trip), NaN as kNaN.

References:
  * accuracy / MAE / RMSE / confusion: numpy and sklearn.metrics.confusion_matrix(labels=1..K)
  * macro-F1: sklearn.metrics.f1_score(average='macro', labels=1..K, zero_division=0)
  * quadratic kappa: sklearn.metrics.cohen_kappa_score(weights='quadratic', labels=1..K)
    (sklearn divides 0 by 0 when every vote is the same single class: NaN)
  * PLCC / SRCC / KRCC: scipy.stats.pearsonr / spearmanr / kendalltau (tau-b), NaN for constant
    input; average ranks: scipy.stats.rankdata(method='average')
  * t quantiles: mpmath at 40 digits (the reference, tests check 1e-13 relative) and
    scipy.stats.t.ppf (cdflib in scipy 1.10, errors up to 1.2e-9 relative: tests check 5e-9)
  * MOS CI: mean, std(ddof=1) / sqrt(n) * t_{0.975, n-1} (mpmath quantile)
"""
import math
import warnings

import mpmath as mp
import numpy as np
import scipy.stats as st
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score

warnings.simplefilter("ignore")  # constant-input / zero-division warnings are expected here
mp.mp.dps = 40


def lit(v):
    v = float(v)
    if math.isnan(v):
        return "kNaN"
    if math.isinf(v):
        return "kInf" if v > 0 else "-kInf"
    r = repr(v)
    return r if ("." in r or "e" in r or "n" in r) else r + ".0"


def ivec(xs):
    return "{" + ", ".join(str(int(x)) for x in xs) + "}"


def dvec(xs):
    return "{" + ", ".join(lit(x) for x in xs) + "}"


def corr(fn, x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan")
    return float(fn(x, y)[0])


# ------------------------------------------------------------------------------------------
# evaluate_votes cases: (name, K, truth, predicted, expected)
vote_cases = [
    ("mixed", 5,
     [1, 2, 3, 4, 5, 3, 3, 4, 2, 5, 1, 3, 4, 4, 2, 3, 5, 1, 2, 4],
     [1, 3, 3, 4, 4, 3, 2, 4, 2, 5, 2, 3, 5, 3, 2, 3, 4, 1, 1, 4],
     [1.3, 2.6, 3.1, 3.9, 4.4, 3.0, 2.4, 4.1, 2.2, 4.8, 1.7, 3.0, 4.6, 3.4, 2.0, 3.1, 4.2, 1.2,
      1.6, 3.9]),
    ("perfect", 5,
     [1, 2, 3, 4, 5, 2, 3, 4],
     [1, 2, 3, 4, 5, 2, 3, 4],
     [1.0, 2.0, 3.0, 4.0, 5.0, 2.0, 3.0, 4.0]),
    ("constant_prediction", 5,
     [1, 2, 3, 4, 5, 3, 4, 2, 3],
     [3, 3, 3, 3, 3, 3, 3, 3, 3],
     [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]),
    ("all_one_class_truth", 5,
     [4, 4, 4, 4, 4, 4, 4],
     [4, 3, 4, 5, 4, 4, 2],
     [3.9, 3.2, 4.1, 4.6, 4.0, 3.8, 2.5]),
    ("all_one_class_perfect", 5,
     [4, 4, 4, 4, 4],
     [4, 4, 4, 4, 4],
     [4.0, 4.1, 3.9, 4.0, 4.2]),
    ("absent_classes", 5,
     [1, 2, 3, 2, 3, 1, 2, 3, 3, 2],
     [2, 2, 3, 4, 3, 1, 2, 4, 3, 3],
     [1.8, 2.1, 3.2, 3.6, 2.9, 1.4, 2.3, 3.7, 3.1, 2.8]),
    ("reversed_ties", 5,
     [1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
     [5, 4, 4, 4, 3, 3, 2, 2, 1, 1],
     [4.5, 4.5, 4.0, 3.5, 3.0, 3.0, 2.0, 2.5, 1.5, 1.5]),
    ("k3", 3,
     [1, 2, 3, 1, 2, 3, 2, 2],
     [1, 2, 2, 2, 2, 3, 1, 3],
     [1.2, 2.0, 2.4, 1.8, 2.1, 2.9, 1.4, 2.6]),
]

print("// clang-format off")
print("// ---- evaluate_votes cases: name, K, truth, predicted, expected, then")
print("// exact_accuracy, within_one, mae_argmax, rmse_argmax, mae_expected, rmse_expected, macro_f1,")
print("// quadratic_kappa, plcc, srcc, krcc, confusion")
print("const std::vector<VoteCase> kVoteCases = {")
for name, K, t, p, e in vote_cases:
    t = np.array(t)
    p = np.array(p)
    e = np.array(e, dtype=float)
    labels = list(range(1, K + 1))
    d = p - t
    vals = [
        np.mean(d == 0),
        np.mean(np.abs(d) <= 1),
        np.mean(np.abs(d)),
        np.sqrt(np.mean(d.astype(float) ** 2)),
        np.mean(np.abs(e - t)),
        np.sqrt(np.mean((e - t) ** 2)),
        f1_score(t, p, average="macro", labels=labels, zero_division=0),
        cohen_kappa_score(t, p, weights="quadratic", labels=labels),
        corr(st.pearsonr, e, t),
        corr(st.spearmanr, e, t),
        corr(st.kendalltau, e, t),
    ]
    cm = confusion_matrix(t, p, labels=labels)
    print(f'    {{"{name}", {K},')
    print(f"     {ivec(t)},")
    print(f"     {ivec(p)},")
    print(f"     {dvec(e)},")
    print(f"     {', '.join(lit(v) for v in vals)},")
    print("     {" + ", ".join(ivec(r) for r in cm) + "}},")
print("};")

# ------------------------------------------------------------------------------------------
# Correlation cases: name, x, y -> pearson, spearman, kendall tau-b, rmse, mae
rng = np.random.default_rng(20240611)
big_x = rng.integers(1, 6, size=60).astype(float)
big_y = np.round(big_x + rng.normal(0, 1.1, size=60), 1)
corr_cases = [
    ("no_ties", [0.5, 1.7, 2.2, 3.9, 4.1, 2.8, 0.1], [1.1, 2.0, 1.9, 4.4, 3.6, 3.3, 0.4]),
    ("ties_both", [1, 2, 2, 3, 3, 3, 4, 5, 5], [2, 1, 3, 3, 4, 3, 5, 5, 4]),
    ("negative", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [9.0, 7.5, 7.5, 4.0, 3.0, -1.0]),
    ("perfect", [1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]),
    ("monotone_nonlinear", [1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 4.0, 9.0, 16.0, 100.0]),
    ("two_points", [1.0, 3.0], [5.0, 2.0]),
    ("constant_y", [1.0, 2.0, 3.0, 4.0], [2.5, 2.5, 2.5, 2.5]),
    ("constant_x", [7.0, 7.0, 7.0], [1.0, 2.0, 3.0]),
    ("one_point", [1.0], [2.0]),
    ("vote_like_60", list(big_x), list(big_y)),
]
print("// ---- correlation cases: name, x, y, pearson, spearman, kendall_tau_b, rmse, mae")
print("const std::vector<CorrCase> kCorrCases = {")
for name, x, y in corr_cases:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    vals = [corr(st.pearsonr, x, y), corr(st.spearmanr, x, y), corr(st.kendalltau, x, y),
            np.sqrt(np.mean((x - y) ** 2)), np.mean(np.abs(x - y))]
    print(f'    {{"{name}", {dvec(x)},')
    print(f"     {dvec(y)},")
    print(f"     {', '.join(lit(v) for v in vals)}}},")
print("};")

# ------------------------------------------------------------------------------------------
rank_cases = [
    [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0],
    [2.0, 2.0, 2.0, 2.0],
    [-1.5, 0.0, -0.0, 7.25],
    [10.0],
]
print("// ---- average ranks: x, scipy.stats.rankdata(x)")
print("const std::vector<std::pair<std::vector<double>, std::vector<double>>> kRankCases = {")
for x in rank_cases:
    print(f"    {{{dvec(x)}, {dvec(st.rankdata(x))}}},")
print("};")


# ------------------------------------------------------------------------------------------
def t_quantile_mp(p, df):
    p = mp.mpf(float(p))  # the double the C++ side receives (0.999999 is not exact in binary)
    df = mp.mpf(df)
    f = lambda t: 1 - mp.betainc(df / 2, mp.mpf(1) / 2, 0, df / (df + t * t), regularized=True) / 2 - p
    return mp.findroot(f, mp.mpf(st.t.ppf(float(p), float(df))))


dfs = list(range(1, 31)) + [50, 100, 1000]
print("// ---- t quantiles at p = 0.975: df, mpmath (40 digits), scipy.stats.t.ppf (cdflib, errors up to 1.2e-9)")
print("const std::vector<TQuantileCase> kT975 = {")
for df in dfs:
    print(f"    {{{df}, {lit(t_quantile_mp('0.975', df))}, {lit(st.t.ppf(0.975, df))}}},")
print("};")
print("// ---- t quantiles at other p: p, df, mpmath")
print("const std::vector<std::tuple<double, double, double>> kTOther = {")
for p, df in [("0.95", 4), ("0.995", 2), ("0.9", 1), ("0.6", 7), ("0.999", 3), ("0.99", 1000),
              ("0.975", 2.5), ("0.975", 0.5), ("0.999999", 1), ("0.75", 10000)]:
    print(f"    {{{p}, {lit(df)}, {lit(t_quantile_mp(p, df))}}},")
print("};")

# ------------------------------------------------------------------------------------------
mos_cases = [
    [4, 5, 3, 4, 4, 5, 2, 4, 3, 4, 5, 4, 3, 4, 4],
    [1, 2],
    [3, 3, 3, 3],
    [2.5, 4.0, 3.5],
    [1, 2, 3, 4, 5] * 6 + [5],
]
print("// ---- MOS with CI: votes, mean, ci95 half-width")
print("const std::vector<MosCase> kMosCases = {")
for v in mos_cases:
    a = np.asarray(v, dtype=float)
    n = len(a)
    sd = np.std(a, ddof=1)
    hw = float(t_quantile_mp("0.975", n - 1)) * sd / math.sqrt(n)
    print(f"    {{{dvec(a)}, {lit(np.mean(a))}, {lit(hw)}}},")
print("};")
print("// clang-format on")
