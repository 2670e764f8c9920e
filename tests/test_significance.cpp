// tests/test_significance.cpp -- paired significance (include/vitiq/eval/significance.hpp): the
// exact binomial tail against exact rationals, McNemar's edge cases, the stimulus bootstrap
// against a brute-force enumeration of every resample of a small case, seed determinism, the
// Fisher-z interval, and compare_models() on hand-counted votes.
//
// The exact numbers come from tests/reference/make_significance_expectations.py (Python's
// fractions module: binomial sums as exact rationals over 2^n, rounded once to a double).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <vector>

#include "vitiq/eval/significance.hpp"

namespace {

namespace ev = vitiq::eval;

// Relative closeness, for values that span many orders of magnitude.
bool rel_close(double a, double b, double tol) { return std::abs(a - b) <= tol * std::abs(b); }

// Every one of the G^G ordered draws of G groups: calls f(counts) with counts[g] = how often
// group g was drawn (each draw equally likely, as in the bootstrap).
template <class F>
void for_each_draw(std::size_t G, F&& f) {
  std::vector<std::size_t> pick(G, 0);
  std::vector<std::uint32_t> counts(G);
  for (;;) {
    std::fill(counts.begin(), counts.end(), 0u);
    for (std::size_t p : pick) ++counts[p];
    f(counts);
    std::size_t i = 0;
    while (i < G && ++pick[i] == G) pick[i++] = 0;
    if (i == G) return;
  }
}

// The inverse CDF of an empirical distribution of equally likely values: smallest v with
// F(v) >= p.
double inverse_cdf(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto k = std::size_t(std::ceil(p * double(v.size())));
  return v[std::max<std::size_t>(k, 1) - 1];
}

// sup_x |F_a(x) - F_b(x)| of two samples (Kolmogorov-Smirnov distance).
double ks_distance(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<double> xs = a;
  xs.insert(xs.end(), b.begin(), b.end());
  double d = 0;
  for (double x : xs) {
    const double fa = double(std::upper_bound(a.begin(), a.end(), x) - a.begin()) / double(a.size());
    const double fb = double(std::upper_bound(b.begin(), b.end(), x) - b.begin()) / double(b.size());
    d = std::max(d, std::abs(fa - fb));
  }
  return d;
}

}  // namespace

TEST_CASE("binomial_half_cdf is the exact binomial tail", "[significance]") {
  // Small n, exact rationals: P(X <= 2 | 10) = (1 + 10 + 45) / 1024 = 7/128;
  // P(X <= 5 | 20) = (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20 = 21700 / 2^20 = 5425/262144;
  // P(X <= 3 | 7) = (1 + 7 + 21 + 35) / 128 = 1/2 (the lower half of an odd n).
  CHECK(rel_close(ev::binomial_half_cdf(2, 10), 7.0 / 128, 1e-15));
  CHECK(rel_close(ev::binomial_half_cdf(5, 20), 5425.0 / 262144, 1e-15));
  CHECK(rel_close(ev::binomial_half_cdf(3, 7), 0.5, 1e-15));
  CHECK(rel_close(ev::binomial_half_cdf(0, 1), 0.5, 1e-15));
  CHECK(ev::binomial_half_cdf(-1, 10) == 0.0);
  CHECK(ev::binomial_half_cdf(10, 10) == 1.0);
  CHECK(ev::binomial_half_cdf(0, 0) == 1.0);
  CHECK(std::isnan(ev::binomial_half_cdf(0, -1)));
  // Larger n (fractions.Fraction(sum of math.comb, 2**n), rounded once):
  CHECK(rel_close(ev::binomial_half_cdf(40, 100), 0.028443966820490395, 1e-13));
  CHECK(rel_close(ev::binomial_half_cdf(49500, 100000), 0.0007911799394257978, 1e-12));
  CHECK(rel_close(ev::binomial_half_cdf(49999, 100000), 0.49873843689290165, 1e-12));
  CHECK(rel_close(ev::binomial_half_cdf(50200, 100000), 0.897614234457186, 1e-12));  // upper half
  // Far tails, in log space (the values underflow a double): log 2^-2000 = -2000 ln 2, and
  // log P(X <= 100 | 5000) = log(sum_{i<=100} C(5000, i)) - 5000 ln 2.
  CHECK(rel_close(ev::binomial_half_log_cdf(0, 2000), -1386.2943611198907, 1e-14));
  CHECK(rel_close(ev::binomial_half_log_cdf(100, 5000), -2978.7319817320426, 1e-14));
  CHECK(ev::binomial_half_cdf(0, 2000) == 0.0);
  // Symmetry P(X <= k) + P(X <= n - k - 1) = 1.
  for (std::int64_t n : {1, 2, 9, 50, 1001})
    for (std::int64_t k = 0; k < n; k += std::max<std::int64_t>(1, n / 7))
      CHECK(ev::binomial_half_cdf(k, n) + ev::binomial_half_cdf(n - k - 1, n) == Approx(1.0).epsilon(1e-14));
}

TEST_CASE("exact_mcnemar: two-sided exact p on the discordant pairs", "[significance]") {
  // No discordant pair: no evidence, p = 1.
  CHECK(ev::exact_mcnemar(0, 0) == 1.0);
  // b = c: P(X <= n/2) >= 1/2, so 2 P >= 1 -> 1.
  CHECK(ev::exact_mcnemar(3, 3) == 1.0);
  CHECK(ev::exact_mcnemar(1, 1) == 1.0);
  CHECK(ev::exact_mcnemar(1, 0) == 1.0);  // 2 * P(X <= 0 | 1) = 2 * 1/2
  // 2 * 7/128 = 0.109375, symmetric in b and c.
  CHECK(rel_close(ev::exact_mcnemar(2, 8), 0.109375, 1e-15));
  CHECK(ev::exact_mcnemar(8, 2) == ev::exact_mcnemar(2, 8));
  CHECK(rel_close(ev::exact_mcnemar(40, 60), 0.05688793364098079, 1e-13));
  // Very unbalanced: 2 * 2^-20; and 2 * 2^-2000 underflows a double to 0.
  CHECK(rel_close(ev::exact_mcnemar(0, 20), 1.9073486328125e-06, 1e-15));
  CHECK(ev::exact_mcnemar(0, 2000) == 0.0);
  // Large n (100000 discordant votes).
  CHECK(rel_close(ev::exact_mcnemar(49500, 50500), 0.0015823598788515956, 1e-12));
  CHECK(std::isnan(ev::exact_mcnemar(-1, 3)));
  // The p-value grows with min(b, c) at fixed b + c.
  double last = 0;
  for (int b = 0; b <= 15; ++b) {
    const double p = ev::exact_mcnemar(b, 30 - b);
    CHECK(p >= last);
    last = p;
  }
}

TEST_CASE("normal_quantile, sample_quantile and the Fisher-z interval", "[significance]") {
  CHECK(rel_close(ev::normal_quantile(0.975), 1.959963984540054, 1e-15));
  CHECK(ev::normal_quantile(0.025) == -ev::normal_quantile(0.975));
  CHECK(ev::normal_quantile(0.5) == 0.0);
  CHECK(rel_close(ev::normal_quantile(0.8413447460685429), 1.0, 1e-14));  // Phi(1)
  CHECK(std::isnan(ev::normal_quantile(1.5)));
  // numpy.quantile([1, 2, 3, 4], 0.25) = 1.75 (linear interpolation); NaN values are left out.
  CHECK(ev::sample_quantile({4, 1, ev::kNaN, 3, 2}, 0.25) == 1.75);
  CHECK(ev::sample_quantile({4, 1, 3, 2}, 1.0) == 4.0);
  CHECK(std::isnan(ev::sample_quantile({ev::kNaN}, 0.5)));
  // n = 28, r = 0.5: z = atanh(0.5) = 0.5493061443340549, 1/sqrt(n - 3) = 0.2, half-width
  // 1.959963984540054 * 0.2 = 0.3919927969080108 -> [tanh(0.1573133474260441),
  // tanh(0.9412989412420657)] = [0.15602836252908606, 0.7358184794439374].
  const ev::Interval a = ev::fisher_z_interval(28, 0.5);
  CHECK(rel_close(a.low, 0.15602836252908606, 1e-13));
  CHECK(rel_close(a.high, 0.7358184794439374, 1e-13));
  const ev::Interval b = ev::fisher_z_interval(103, -0.3);
  CHECK(rel_close(b.low, -0.4664441315320442, 1e-13));
  CHECK(rel_close(b.high, -0.11303802922252026, 1e-13));
  CHECK(ev::fisher_z_interval(10, 1.0).low == 1.0);
  CHECK(std::isnan(ev::fisher_z_interval(3, 0.5).low));
  CHECK(std::isnan(ev::fisher_z_interval(50, ev::kNaN).high));
  // A wider level gives a wider interval.
  CHECK(ev::fisher_z_interval(28, 0.5, 0.99).low < a.low);
}

// Four stimuli with 1, 2, 3 and 2 votes; per-vote 0/1 correctness of models A and B:
//   stimulus 0: A {1}      B {0}       sum A - B =  1
//   stimulus 1: A {1, 0}   B {0, 0}    sum A - B =  1
//   stimulus 2: A {1,1,0}  B {1,0,0}   sum A - B =  1
//   stimulus 3: A {0, 1}   B {1, 1}    sum A - B = -1
// Accuracy difference on all 8 votes: (1 + 1 + 1 - 1) / 8 = 0.25. A resample draws 4 stimuli
// with replacement: 4^4 = 256 equally likely ordered draws, D = sum w_g d_g / sum w_g n_g. The
// exact distribution (enumerated here) has CDF F(-2/7) = 5/256 = 0.0195, F(-1/4) = 9/256 =
// 0.0352, F(4/7) = 241/256 = 0.9414, F(2/3) = 251/256 = 0.9805: its 2.5 % and 97.5 % points are
// -1/4 and 2/3, each with a margin of at least 0.0055 in F. Tolerance: with R = 400000
// resamples the bootstrap's empirical CDF lies within 0.005 of the exact one (the
// Dvoretzky-Kiefer-Wolfowitz bound: probability at most 2 exp(-2 R 0.005^2) = 4e-9 that it does
// not), so its percentile interval is exactly [-1/4, 2/3].
TEST_CASE("paired bootstrap: stimuli resampled, against the enumeration of all 256 resamples", "[significance]") {
  const std::vector<std::size_t> group{7, 3, 3, 9, 9, 9, 12, 12};  // any labels; ascending = 0..3
  const std::vector<double> a{1, 1, 0, 1, 1, 0, 0, 1}, b{0, 0, 0, 1, 0, 0, 1, 1};
  ev::PairedBootstrap pb(group);
  REQUIRE(pb.groups() == 4);
  const std::size_t k = pb.add_mean(a, b);
  CHECK(pb.difference(k) == 0.25);
  // Labels 3, 7, 9, 12 are groups 0..3: the stimulus with the single vote (label 7) is group 1.
  std::vector<double> exact;
  for_each_draw(4, [&](const std::vector<std::uint32_t>& w) {
    // Brute force: the resampled votes themselves, each group's votes repeated w_g times.
    double sa = 0, sb = 0, n = 0;
    for (std::size_t i = 0; i < group.size(); ++i) {
      const std::size_t g = group[i] == 3 ? 0 : group[i] == 7 ? 1 : group[i] == 9 ? 2 : 3;
      sa += w[g] * a[i], sb += w[g] * b[i], n += w[g];
    }
    const double d = (sa - sb) / n;
    CHECK(pb.statistic(k, w) == Approx(d).margin(1e-15));
    exact.push_back(pb.statistic(k, w));  // bit-identical to the bootstrap's value for these counts
  });
  REQUIRE(exact.size() == 256);
  CHECK(inverse_cdf(exact, 0.025) == Approx(-0.25).margin(1e-15));
  CHECK(inverse_cdf(exact, 0.975) == Approx(2.0 / 3).margin(1e-15));
  // The margins the tolerance relies on: F just below the 2.5 % point <= 0.025 - 0.005, F at it
  // >= 0.025 + 0.005 (and the same at 97.5 %).
  const auto F = [&](double x) { return double(std::count_if(exact.begin(), exact.end(), [&](double v) { return v <= x + 1e-12; })) / 256; };
  REQUIRE(F(-2.0 / 7) <= 0.025 - 0.005);
  REQUIRE(F(-0.25) >= 0.025 + 0.005);
  REQUIRE(F(4.0 / 7) <= 0.975 - 0.005);
  REQUIRE(F(2.0 / 3) >= 0.975 + 0.005);

  ev::BootstrapOptions o;
  o.resamples = 400000;
  o.seed = 12345;
  const auto samples = pb.resampled(o)[k];
  CHECK(ks_distance(samples, exact) < 0.005);
  const double mean_exact = std::accumulate(exact.begin(), exact.end(), 0.0) / 256;
  CHECK(std::accumulate(samples.begin(), samples.end(), 0.0) / double(samples.size()) == Approx(mean_exact).margin(0.002));
  const ev::BootstrapInterval iv = pb.run(o)[k];
  CHECK(iv.resamples == 400000);
  CHECK(iv.difference == 0.25);
  CHECK(iv.ci_low == Approx(-0.25).margin(1e-12));
  CHECK(iv.ci_high == Approx(2.0 / 3).margin(1e-12));
  // paired_bootstrap() is the same PairedBootstrap with one difference.
  const ev::BootstrapInterval one = ev::paired_bootstrap(group, a, b, o);
  CHECK(one.ci_low == iv.ci_low);
  CHECK(one.ci_high == iv.ci_high);
}

TEST_CASE("paired bootstrap of a PLCC difference agrees with pearson() on every resample", "[significance]") {
  // Votes of 4 stimuli (3, 1, 2, 2 votes) and two models' expected votes per vote.
  const std::vector<std::size_t> group{0, 0, 0, 1, 2, 2, 3, 3};
  const std::vector<double> y{1, 2, 1, 3, 4, 5, 2, 2};
  const std::vector<double> xa{1.2, 1.2, 1.2, 3.1, 4.6, 4.6, 2.5, 2.5}, xb{2.0, 2.0, 2.0, 2.9, 3.3, 3.3, 3.0, 3.0};
  ev::PairedBootstrap pb(group);
  const std::size_t k = pb.add_plcc(xa, xb, y);
  CHECK(pb.difference(k) == Approx(ev::pearson(xa, y) - ev::pearson(xb, y)).margin(1e-15));
  std::vector<double> exact;
  std::size_t undefined = 0;
  for_each_draw(4, [&](const std::vector<std::uint32_t>& w) {
    std::vector<double> ra, rb, ry;  // the resampled votes themselves
    for (std::size_t i = 0; i < group.size(); ++i)
      for (std::uint32_t c = 0; c < w[group[i]]; ++c) ra.push_back(xa[i]), rb.push_back(xb[i]), ry.push_back(y[i]);
    const double d = ev::pearson(ra, ry) - ev::pearson(rb, ry);
    const double s = pb.statistic(k, w);
    if (std::isnan(d)) {
      CHECK(std::isnan(s));  // e.g. only stimulus 3 drawn: constant votes
      ++undefined;
    } else {
      CHECK(s == Approx(d).margin(1e-12));
      exact.push_back(s);  // the bootstrap computes its resamples the same way: equal atoms tie
    }
  });
  // Undefined resamples: exactly the 4 draws of a single stimulus (4 times the same one): each
  // model's expected vote is constant within a stimulus. Any two different stimuli give
  // non-constant xa, xb and y.
  CHECK(undefined == 4);
  ev::BootstrapOptions o;
  o.resamples = 100000;
  o.seed = 7;
  const auto samples = pb.resampled(o)[k];
  std::vector<double> defined;
  for (double v : samples)
    if (!std::isnan(v)) defined.push_back(v);
  // NaN share 4/256 = 0.0156 (binomial sd 0.0004 at R = 1e5); KS distance of the defined ones
  // below 0.01 (DKW: probability 2 exp(-2 * 98400 * 1e-4) = 6e-9 of more).
  CHECK(double(samples.size() - defined.size()) / double(samples.size()) == Approx(4.0 / 256).margin(0.002));
  CHECK(ks_distance(defined, exact) < 0.01);
  const ev::BootstrapInterval iv = ev::paired_bootstrap_plcc(group, xa, xb, y, o);
  CHECK(iv.resamples == int(defined.size()));
  CHECK(iv.ci_low == Approx(ev::sample_quantile(defined, 0.025)));
  CHECK(iv.ci_low <= iv.difference);
  CHECK(iv.ci_high >= iv.difference);
}

TEST_CASE("paired bootstrap: deterministic in the seed; no resamples, no interval", "[significance]") {
  std::vector<std::size_t> group;
  std::vector<double> a, b;
  for (std::size_t s = 0; s < 60; ++s)
    for (std::size_t v = 0; v < 1 + s % 3; ++v) group.push_back(s), a.push_back(double((s * 7 + v) % 3 != 0)), b.push_back(double((s * 5 + v) % 2));
  ev::BootstrapOptions o;
  o.resamples = 500;
  o.seed = 42;
  const auto x = ev::paired_bootstrap(group, a, b, o), y = ev::paired_bootstrap(group, a, b, o);
  CHECK(x.ci_low == y.ci_low);
  CHECK(x.ci_high == y.ci_high);
  ev::PairedBootstrap pb(group);
  pb.add_mean(a, b);
  const auto s42 = pb.resampled(o)[0];
  CHECK(s42 == pb.resampled(o)[0]);
  o.seed = 43;
  CHECK(s42 != pb.resampled(o)[0]);
  CHECK(x.ci_low < x.difference);
  CHECK(x.ci_high > x.difference);
  o.resamples = 0;
  const auto none = ev::paired_bootstrap(group, a, b, o);
  CHECK(none.difference == x.difference);
  CHECK(std::isnan(none.ci_low));
  CHECK(none.resamples == 0);
  o.level = 1.0;
  CHECK_THROWS_AS(pb.run(o), std::invalid_argument);
  CHECK_THROWS_AS(pb.add_mean(a, std::vector<double>(3)), std::invalid_argument);
}

TEST_CASE("verdicts: interval and McNemar together", "[significance]") {
  using V = ev::Verdict;
  CHECK(ev::verdict_of(0.01, 0.1, 0.01) == V::better);
  CHECK(ev::verdict_of(0.01, 0.1, 0.06) == V::not_significant);  // interval alone is not enough
  CHECK(ev::verdict_of(-0.01, 0.1, 0.001) == V::not_significant);  // nor the test alone
  CHECK(ev::verdict_of(-0.2, -0.1, 0.001) == V::worse);
  CHECK(ev::verdict_of(ev::kNaN, ev::kNaN, 0.001) == V::not_significant);
  // No test p (MAE, PLCC): the interval decides; lower MAE is better.
  CHECK(ev::verdict_of(-0.3, -0.1, ev::kNaN, false) == V::better);
  CHECK(ev::verdict_of(0.1, 0.3, ev::kNaN, false) == V::worse);
  CHECK(std::string(ev::verdict_name(V::not_significant)) == "not significant");
  CHECK(std::string(ev::verdict_short(V::not_significant)) == "n.s.");
  CHECK(std::string(ev::verdict_name(V::better)) == "yes");
  CHECK(std::string(ev::verdict_name(V::worse)) == "no");
}

// 40 stimuli s = 0..39 with one vote each, vote 2 + (s mod 3): 14 votes of 2, 13 of 3, 13 of 4.
// Model A predicts the vote except at s = 0, 10, 20, 30 (vote + 1): right on 36. Model B always
// predicts 3: right on the 13 votes of 3. Of A's misses only s = 10 has vote 3 (B right), so
// c = 1 and b = 36 - (13 - 1) = 24 (A right, B wrong).
TEST_CASE("compare_models counts discordant votes and decides", "[significance]") {
  std::vector<std::size_t> group;
  std::vector<int> votes;
  ev::ItemPredictions a, m;
  for (std::size_t s = 0; s < 40; ++s) {
    const int v = 2 + int(s % 3);
    group.push_back(s), votes.push_back(v);
    const int pa = s % 10 == 0 ? v + 1 : v;
    a.vote.push_back(pa), a.expected.push_back(pa + 0.1);
    m.vote.push_back(3), m.expected.push_back(3);
  }
  const std::vector<std::string> names{"majority"};
  const std::vector<ev::ItemPredictions> others{m};
  const auto c = ev::compare_models(group, votes, a, others, names)[0];
  CHECK(c.against == "majority");
  CHECK(c.available());
  CHECK(c.accuracy.n == 40);
  CHECK(c.accuracy.stimuli == 40);
  CHECK(c.accuracy.b == 24);
  CHECK(c.accuracy.c == 1);
  CHECK(c.accuracy.difference == Approx((36.0 - 13.0) / 40));
  // 2 P(X <= 1 | 25) = 2 (1 + 25) / 2^25.
  CHECK(rel_close(c.accuracy.mcnemar_p, 52.0 / 33554432, 1e-14));
  CHECK(c.accuracy.resamples == 2000);
  CHECK(c.accuracy.ci_low > 0);
  CHECK(c.accuracy.verdict == ev::Verdict::better);
  // MAE: A errs by 1 on 4 votes (0.1); B errs by 1 on the 27 votes of 2 and 4 (0.675).
  CHECK(c.mae.difference == Approx(0.1 - 0.675));
  CHECK(c.mae.verdict == ev::Verdict::better);
  CHECK(std::isnan(c.mae.mcnemar_p));
  // The constant model has no PLCC: undefined on every resample.
  CHECK(std::isnan(c.plcc.difference));
  CHECK(c.plcc.resamples == 0);
  CHECK(c.plcc.verdict == ev::Verdict::not_significant);
  // The other way round: significantly worse.
  const std::vector<ev::ItemPredictions> rev{a};
  const auto r = ev::compare_models(group, votes, m, rev)[0];
  CHECK(r.accuracy.b == 1);
  CHECK(r.accuracy.c == 24);
  CHECK(r.accuracy.verdict == ev::Verdict::worse);
  CHECK(r.accuracy.ci_low == Approx(-c.accuracy.ci_high));  // the same resamples, negated
  CHECK_THROWS_AS(ev::compare_models(std::vector<std::size_t>(3), votes, a, others), std::invalid_argument);
}
