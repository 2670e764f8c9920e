#!/usr/bin/python3
"""Expected values for tests/test_significance.cpp (include/vitiq/eval/significance.hpp).

Standard library only (Debian's /usr/bin/python3; no scipy needed):

    /usr/bin/python3 tests/reference/make_significance_expectations.py

prints the numbers the test states: exact binomial tails P(X <= k), X ~ Binomial(n, 1/2), as
exact rationals (fractions.Fraction over 2^n, summed with integer binomial coefficients) rounded
once to the nearest double; the exact McNemar p-values min(1, 2 P(X <= min(b, c))); and the
Fisher-z interval of a correlation (math.atanh / tanh, statistics.NormalDist for the quantile).
Doubles are printed with repr() (shortest round-trip).
"""
import math
from fractions import Fraction
from statistics import NormalDist


def tail(k, n):
    """P(X <= k) exactly, as a Fraction."""
    if k < 0:
        return Fraction(0)
    if k >= n:
        return Fraction(1)
    c, s = 1, 0
    for i in range(k + 1):  # C(n, i) by the exact recurrence C(n, i+1) = C(n, i) (n - i) / (i + 1)
        s += c
        c = c * (n - i) // (i + 1)
    return Fraction(s, 2 ** n)


def log_tail(k, n):
    """log P(X <= k) from the exact rational (big-integer logs: no underflow)."""
    f = tail(k, n)
    return math.log(f.numerator) - math.log(f.denominator)


def mcnemar(b, c):
    if b + c == 0:
        return Fraction(1)
    return min(Fraction(1), 2 * tail(min(b, c), b + c))


print("// binomial tails P(X <= k | n, 1/2)")
for k, n in [(2, 10), (5, 20), (3, 7), (0, 1), (40, 100), (49500, 100000), (49999, 100000)]:
    print(f"//   k={k} n={n}: {float(tail(k, n))!r}  (exact {tail(k, n) if n <= 20 else '...'})")
print(f"//   log P(X <= 0 | 2000) = {log_tail(0, 2000)!r}")
print(f"//   log P(X <= 100 | 5000) = {log_tail(100, 5000)!r}")
print(f"//   P(X <= 50200 | 100000) = {float(tail(50200, 100000))!r} (upper half: through the complement)")
print("// exact McNemar p")
for b, c in [(0, 0), (3, 3), (2, 8), (8, 2), (40, 60), (0, 20), (1, 0), (0, 2000), (49500, 50500), (1, 1)]:
    print(f"//   b={b} c={c}: {float(mcnemar(b, c))!r}")
print("// Fisher z")
for n, r in [(28, 0.5), (103, -0.3)]:
    zq = NormalDist().inv_cdf(0.975)
    h = zq / math.sqrt(n - 3)
    z = math.atanh(r)
    print(f"//   n={n} r={r}: z_q={zq!r} [{math.tanh(z - h)!r}, {math.tanh(z + h)!r}]")
