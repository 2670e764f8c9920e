// vitiq/eval/significance.hpp -- is one model's score really better than another's on the same
// test votes? Paired significance for per-vote scores: the exact McNemar test on the discordant
// votes, a percentile bootstrap of the score difference that resamples stimuli (all votes of a
// stimulus travel together), and the Fisher-z interval of a Pearson correlation.
//
// Formulas:
//  * Binomial tail with p = 1/2: P(X <= k) = 2^-n sum_{i=0..k} C(n, i), X ~ Binomial(n, 1/2).
//    Summed from the largest term t_k = exp(lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1) - n ln 2)
//    downwards with t_{i-1} = t_i * i / (n - i + 1), in long double and in log space, so that it
//    neither overflows nor underflows before the final exp (k > n/2 goes through the complement).
//  * Exact McNemar (two-sided): b = items only A gets right, c = items only B gets right;
//    p = min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); p = 1 when b + c = 0.
//  * Paired bootstrap: items i (test votes) belong to groups g (stimuli); a resample draws G
//    groups out of the G with replacement (w_g = how often g was drawn) and recomputes the
//    statistic on the items of the drawn groups, each counted w_g times:
//      mean difference  D = sum_g w_g (A_g - B_g) / sum_g w_g n_g  (A_g, B_g: sums over group g);
//      PLCC difference  D = r_w(x_A, y) - r_w(x_B, y), r_w the Pearson correlation with weight w_g
//                       on every item of group g.
//    The percentile interval at level L is [Q((1-L)/2), Q((1+L)/2)] of the R resampled
//    differences, Q the linear-interpolation sample quantile (numpy's default, "type 7");
//    resamples where the statistic is undefined (a constant PLCC input) are left out.
//  * Fisher z: z = atanh(r), [tanh(z - z_q / sqrt(n - 3)), tanh(z + z_q / sqrt(n - 3))],
//    z_q the standard normal quantile at (1 + L)/2 (1.959963984540054 for L = 0.95).
//
// Verdict (A against B, "is A better?"): for accuracy "yes" when the interval lies above 0 and
// the McNemar p < 0.05, "no" when it lies below 0 and p < 0.05 (A is worse), else "not
// significant"; for statistics without a test p (MAE, PLCC) the interval alone decides, with the
// better direction of the statistic (lower MAE, higher PLCC).
//
// Invariant: every result depends only on the inputs and the seed (vitiq::Rng, xoshiro256**):
// the same call gives the same interval, on any machine.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/eval/metrics.hpp"

namespace vitiq::eval {

// ---------------------------------------------------------------------------------------------
// Exact binomial tail and McNemar

namespace detail {

/// @brief log P(X <= k), X ~ Binomial(n, 1/2), in long double (k < 0, k >= n, n < 0 handled by
/// the callers' conventions: -inf, 0, NaN).
inline long double binomial_half_log_cdf_ld(std::int64_t k, std::int64_t n) {
  using L = long double;
  if (n < 0) return std::numeric_limits<L>::quiet_NaN();
  if (k < 0) return -std::numeric_limits<L>::infinity();
  if (k >= n) return 0;
  // Upper half: P(X <= k) = 1 - P(X <= n - k - 1), and P(X <= n - k - 1) <= 1/2.
  if (2 * k >= n) return std::log1p(-std::exp(binomial_half_log_cdf_ld(n - k - 1, n)));
  const L ln2 = 0.693147180559945309417232121458176568L;
  const L log_tk = std::lgamma(L(n) + 1) - std::lgamma(L(k) + 1) - std::lgamma(L(n - k) + 1) - L(n) * ln2;
  // sum_{i=0..k} t_i / t_k; the ratios i / (n - i + 1) are < 1 for k < n/2, so the terms shrink.
  L sum = 1, term = 1;
  for (std::int64_t i = k; i > 0; --i) {
    term *= L(i) / L(n - i + 1);
    sum += term;
    if (term < sum * 1e-22L) break;
  }
  return log_tk + std::log(sum);
}

}  // namespace detail

/// @brief log P(X <= k) for X ~ Binomial(n, 1/2), exactly summed (see the file comment).
/// @param k any integer: -inf for k < 0, 0 for k >= n
/// @param n number of trials, n >= 0 (NaN for n < 0)
/// Relative accuracy of exp() of the result: about 1e-13 for n up to 10^5 with an 80-bit long
/// double (lgammal of 10^5 is 1e6 with an absolute error of a few 1e-14); where long double is
/// double, about 1e-10 there.
inline double binomial_half_log_cdf(std::int64_t k, std::int64_t n) {
  return double(detail::binomial_half_log_cdf_ld(k, n));
}

/// @brief P(X <= k) for X ~ Binomial(n, 1/2): exp(binomial_half_log_cdf(k, n)), taken in long
/// double so that exact values (7/128) come out exact; 0 where the true value is below the
/// smallest double (e.g. k = 0, n > 1074).
inline double binomial_half_cdf(std::int64_t k, std::int64_t n) {
  return double(std::exp(detail::binomial_half_log_cdf_ld(k, n)));
}

/// @brief Two-sided exact McNemar test on the discordant pairs of a paired comparison.
/// @param b items only model A gets right, b >= 0
/// @param c items only model B gets right, c >= 0
/// @return p = min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); 1 when b + c = 0 (no
///         discordant item: no evidence either way); NaN when b or c is negative. The concordant
///         items (both right, both wrong) do not enter. Exact in the sense of the binomial sum,
///         not the chi-squared approximation; 0 where p underflows a double.
inline double exact_mcnemar(std::int64_t b, std::int64_t c) {
  if (b < 0 || c < 0) return kNaN;
  if (b + c == 0) return 1.0;
  const long double log_p = 0.693147180559945309417232121458176568L + detail::binomial_half_log_cdf_ld(std::min(b, c), b + c);
  return std::min(1.0, double(std::exp(log_p)));
}

// ---------------------------------------------------------------------------------------------
// Normal quantile and Fisher z

/// @brief Quantile of the standard normal distribution: x with Phi(x) = p. Bisection to adjacent
/// doubles on the tail 0.5 erfc(x / sqrt 2) = min(p, 1 - p) (no cancellation in the tails).
/// -inf / +inf for p = 0 / 1, NaN outside [0, 1].
inline double normal_quantile(double p) {
  if (!(p >= 0 && p <= 1)) return kNaN;
  if (p == 0) return -std::numeric_limits<double>::infinity();
  if (p == 1) return std::numeric_limits<double>::infinity();
  if (p == 0.5) return 0.0;
  const double tail = std::min(p, 1 - p);
  const auto upper = [](double x) { return 0.5 * std::erfc(x / std::sqrt(2.0)); };
  double lo = 0, hi = 1;
  while (upper(hi) > tail) lo = hi, hi *= 2;  // erfc reaches 0 near x = 38.5: bounded
  for (int it = 0; it < 2000; ++it) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi) break;
    (upper(mid) > tail ? lo : hi) = mid;
  }
  const double x = lo + 0.5 * (hi - lo);
  return p > 0.5 ? x : -x;
}

/// @brief A confidence interval [low, high].
struct Interval {
  double low = kNaN;   ///< lower bound
  double high = kNaN;  ///< upper bound
};

/// @brief Fisher-z confidence interval of a Pearson correlation r from n pairs:
/// [tanh(atanh r - z_q / sqrt(n - 3)), tanh(atanh r + z_q / sqrt(n - 3))], z_q =
/// normal_quantile((1 + level) / 2). [r, r] for |r| = 1; NaN bounds for n <= 3, r NaN or
/// outside [-1, 1], or level outside (0, 1). Assumes (x, y) roughly bivariate normal: for
/// votes on a 1..5 scale it is an approximation.
inline Interval fisher_z_interval(std::size_t n, double r, double level = 0.95) {
  if (n <= 3 || !(r >= -1 && r <= 1) || !(level > 0 && level < 1)) return {};
  if (std::abs(r) == 1) return {r, r};
  const double z = std::atanh(r), h = normal_quantile(0.5 + 0.5 * level) / std::sqrt(double(n) - 3);
  return {std::tanh(z - h), std::tanh(z + h)};
}

// ---------------------------------------------------------------------------------------------
// Paired bootstrap over groups of items

/// @brief Settings of a bootstrap.
struct BootstrapOptions {
  int resamples = 2000;     ///< R: number of resamples; 0 gives NaN intervals (nothing drawn)
  std::uint64_t seed = 1;   ///< seed of the vitiq::Rng that draws the groups
  double level = 0.95;      ///< level L of the percentile interval, in (0, 1)
};

/// @brief A bootstrap interval of a difference.
struct BootstrapInterval {
  double difference = kNaN;  ///< the statistic's difference on all items (no resampling)
  double ci_low = kNaN;      ///< lower percentile bound ((1 - L)/2 quantile of the resamples)
  double ci_high = kNaN;     ///< upper percentile bound ((1 + L)/2 quantile)
  int resamples = 0;         ///< resamples where the difference was defined (used for the bounds)
};

/// @brief The linear-interpolation sample quantile (numpy.quantile's default) of the non-NaN
/// values; NaN when there are none or q is outside [0, 1].
inline double sample_quantile(std::vector<double> values, double q) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }), values.end());
  if (values.empty() || !(q >= 0 && q <= 1)) return kNaN;
  std::sort(values.begin(), values.end());
  const double h = q * double(values.size() - 1);
  const auto i = std::size_t(std::floor(h));
  if (i + 1 >= values.size()) return values.back();
  return values[i] + (h - double(i)) * (values[i + 1] - values[i]);
}

/// @brief Several paired differences on the same items, bootstrapped on the same resamples of
/// the items' groups (so that the comparisons of one model against several others see the same
/// resampled stimuli).
///
/// Items are given once, with their group (any labels; a group is every item with that label).
/// Each add_*() registers one difference and returns its index; run() resamples the groups
/// (BootstrapOptions::resamples times, with vitiq::Rng(seed).below(G) per draw) and returns one
/// BootstrapInterval per registered difference, in that order. The formulas are in the file
/// comment. Per resample the cost is G draws plus O(G) per difference (per-group sums).
class PairedBootstrap {
 public:
  /// @brief The items: group[i] is the group (stimulus) of item i.
  explicit PairedBootstrap(std::span<const std::size_t> group) {
    std::map<std::size_t, std::size_t> dense;
    for (std::size_t g : group) dense.emplace(g, 0);
    std::size_t next = 0;
    for (auto& [label, id] : dense) id = next++;
    item_group_.reserve(group.size());
    for (std::size_t g : group) item_group_.push_back(dense.at(g));
    group_size_.assign(dense.size(), 0);
    for (std::size_t g : item_group_) group_size_[g] += 1;
  }

  /// @brief Number of items.
  std::size_t items() const { return item_group_.size(); }
  /// @brief Number of groups G (distinct labels).
  std::size_t groups() const { return group_size_.size(); }

  /// @brief Register mean(a) - mean(b) over the items (e.g. per-vote 0/1 correctness, absolute
  /// errors). @return its index. Throws std::invalid_argument when a or b has not items() values.
  std::size_t add_mean(std::span<const double> a, std::span<const double> b) {
    detail::check_same_size(a.size(), items(), "PairedBootstrap::add_mean (a)");
    detail::check_same_size(b.size(), items(), "PairedBootstrap::add_mean (b)");
    Stat s;
    s.kind = Kind::mean;
    s.sums.assign(groups(), {});
    for (std::size_t i = 0; i < items(); ++i) s.sums[item_group_[i]][0] += a[i] - b[i];
    stats_.push_back(std::move(s));
    return stats_.size() - 1;
  }

  /// @brief Register pearson(xa, y) - pearson(xb, y) over the items (e.g. each model's expected
  /// vote against the votes). @return its index. Throws std::invalid_argument on a size mismatch.
  std::size_t add_plcc(std::span<const double> xa, std::span<const double> xb, std::span<const double> y) {
    detail::check_same_size(xa.size(), items(), "PairedBootstrap::add_plcc (xa)");
    detail::check_same_size(xb.size(), items(), "PairedBootstrap::add_plcc (xb)");
    detail::check_same_size(y.size(), items(), "PairedBootstrap::add_plcc (y)");
    Stat s;
    s.kind = Kind::plcc;
    s.sums.assign(groups(), {});
    constexpr double inf = std::numeric_limits<double>::infinity();
    s.range.assign(groups(), {inf, -inf, inf, -inf, inf, -inf});
    // Centre on the full-sample means first: the weighted moments then lose no digits.
    const auto mean = [](std::span<const double> v) { return v.empty() ? 0.0 : detail::accurate_mean(v); };
    const double ma = mean(xa), mb = mean(xb), my = mean(y);
    for (std::size_t i = 0; i < items(); ++i) {
      const double a = xa[i] - ma, b = xb[i] - mb, t = y[i] - my;
      auto& m = s.sums[item_group_[i]];
      m[0] += a, m[1] += b, m[2] += t, m[3] += a * a, m[4] += b * b, m[5] += t * t, m[6] += a * t, m[7] += b * t;
      auto& r = s.range[item_group_[i]];
      const double v[3] = {xa[i], xb[i], y[i]};
      for (std::size_t j = 0; j < 3; ++j) r[2 * j] = std::min(r[2 * j], v[j]), r[2 * j + 1] = std::max(r[2 * j + 1], v[j]);
    }
    s.plain_a = pearson(xa, y);
    s.plain_b = pearson(xb, y);
    stats_.push_back(std::move(s));
    return stats_.size() - 1;
  }

  /// @brief Difference `index` on the resample where group g (0 .. groups()-1, in ascending
  /// order of the labels) is taken counts[g] times; counts all 1 is the full sample (up to the
  /// rounding of the per-group sums; difference() gives the direct value). NaN when undefined.
  double statistic(std::size_t index, std::span<const std::uint32_t> counts) const {
    detail::check_same_size(counts.size(), groups(), "PairedBootstrap::statistic");
    std::vector<Drawn> drawn;
    double w = 0;
    gather(counts, drawn, w);
    return statistic_on(stats_.at(index), drawn, w);
  }

  /// @brief Difference `index` on all items, computed directly (mean of the differences, or
  /// pearson() - pearson()).
  double difference(std::size_t index) const {
    const Stat& s = stats_.at(index);
    if (s.kind == Kind::plcc) return s.plain_a - s.plain_b;
    if (items() == 0) return kNaN;
    double d = 0;
    for (const auto& g : s.sums) d += g[0];
    return d / double(items());
  }

  /// @brief The resampled differences: [difference][resample], NaN where undefined. The groups
  /// of resample r are the draws r*G .. r*G + G - 1 of vitiq::Rng(seed).below(G).
  std::vector<std::vector<double>> resampled(const BootstrapOptions& options = {}) const {
    const std::size_t R = std::size_t(std::max(0, options.resamples));
    std::vector<std::vector<double>> out(stats_.size(), std::vector<double>(R, kNaN));
    if (groups() == 0) return out;
    Rng rng(options.seed);
    std::vector<std::uint32_t> counts(groups());
    std::vector<Drawn> drawn;
    for (std::size_t r = 0; r < R; ++r) {
      std::fill(counts.begin(), counts.end(), 0u);
      for (std::size_t d = 0; d < groups(); ++d) ++counts[std::size_t(rng.below(groups()))];
      double w = 0;
      gather(counts, drawn, w);  // once per resample, shared by every difference
      for (std::size_t k = 0; k < stats_.size(); ++k) out[k][r] = statistic_on(stats_[k], drawn, w);
    }
    return out;
  }

  /// @brief One BootstrapInterval per registered difference, all on the same resamples.
  /// Throws std::invalid_argument when options.level is not in (0, 1).
  std::vector<BootstrapInterval> run(const BootstrapOptions& options = {}) const {
    if (!(options.level > 0 && options.level < 1))
      throw std::invalid_argument("vitiq::eval::PairedBootstrap::run: level " + std::to_string(options.level) +
                                  " not in (0, 1)");
    const auto samples = resampled(options);
    std::vector<BootstrapInterval> out;
    for (std::size_t k = 0; k < stats_.size(); ++k) {
      BootstrapInterval b;
      b.difference = difference(k);
      for (double v : samples[k]) b.resamples += !std::isnan(v);
      b.ci_low = sample_quantile(samples[k], 0.5 - 0.5 * options.level);
      b.ci_high = sample_quantile(samples[k], 0.5 + 0.5 * options.level);
      out.push_back(b);
    }
    return out;
  }

 private:
  enum class Kind { mean, plcc };
  struct Stat {
    Kind kind = Kind::mean;
    /// [G] per-group sums: mean: {sum (a - b)}; plcc (centred): {a, b, y, a^2, b^2, y^2, ay, by}
    std::vector<std::array<double, 8>> sums;
    std::vector<std::array<double, 6>> range;  ///< plcc: [G] {min, max} of xa, xb, y per group
    double plain_a = kNaN, plain_b = kNaN;  ///< plcc on all items
  };
  struct Drawn {
    std::size_t group;  ///< dense group id
    double count;       ///< times drawn, > 0
  };

  /// The drawn groups (ascending) and the resample's number of items w = sum counts[g] n_g.
  void gather(std::span<const std::uint32_t> counts, std::vector<Drawn>& drawn, double& w) const {
    drawn.clear();
    w = 0;
    for (std::size_t g = 0; g < groups(); ++g)
      if (counts[g]) drawn.push_back({g, double(counts[g])}), w += double(counts[g]) * double(group_size_[g]);
  }

  /// The statistic of `s` on the resample `drawn` with w items (file comment); NaN if undefined.
  static double statistic_on(const Stat& s, const std::vector<Drawn>& drawn, double w) {
    if (!(w > 0)) return kNaN;
    if (s.kind == Kind::mean) {
      double d = 0;
      for (const Drawn& x : drawn) d += x.count * s.sums[x.group][0];
      return d / w;
    }
    std::array<double, 8> m{};
    constexpr double inf = std::numeric_limits<double>::infinity();
    std::array<double, 6> range{inf, -inf, inf, -inf, inf, -inf};
    for (const Drawn& x : drawn) {
      const auto& sg = s.sums[x.group];
      const auto& rg = s.range[x.group];
      for (std::size_t j = 0; j < 8; ++j) m[j] += x.count * sg[j];
      for (std::size_t j = 0; j < 6; j += 2) range[j] = std::min(range[j], rg[j]), range[j + 1] = std::max(range[j + 1], rg[j + 1]);
    }
    for (double& v : m) v /= w;
    const double va = m[3] - m[0] * m[0], vb = m[4] - m[1] * m[1], vy = m[5] - m[2] * m[2];
    const double ca = m[6] - m[0] * m[2], cb = m[7] - m[1] * m[2];
    // A resample whose x or y is constant has no correlation (as pearson()): told exactly by the
    // range of the drawn values, not by a variance that rounding leaves at 1e-17 instead of 0.
    const bool y_constant = range[4] == range[5];
    const auto r = [&](double c, double vx, double vt, bool x_constant) {
      if (x_constant || y_constant || !(vx > 0) || !(vt > 0)) return kNaN;
      return std::clamp(c / std::sqrt(vx * vt), -1.0, 1.0);
    };
    return r(ca, va, vy, range[0] == range[1]) - r(cb, vb, vy, range[2] == range[3]);
  }

  std::vector<std::size_t> item_group_;   ///< [items] dense group id
  std::vector<std::size_t> group_size_;   ///< [G] items per group
  std::vector<Stat> stats_;
};

/// @brief Bootstrap interval of mean(a) - mean(b), items resampled by group (a PairedBootstrap
/// with one difference).
inline BootstrapInterval paired_bootstrap(std::span<const std::size_t> group, std::span<const double> a,
                                          std::span<const double> b, const BootstrapOptions& options = {}) {
  PairedBootstrap pb(group);
  pb.add_mean(a, b);
  return pb.run(options)[0];
}

/// @brief Bootstrap interval of pearson(xa, y) - pearson(xb, y), items resampled by group.
inline BootstrapInterval paired_bootstrap_plcc(std::span<const std::size_t> group, std::span<const double> xa,
                                               std::span<const double> xb, std::span<const double> y,
                                               const BootstrapOptions& options = {}) {
  PairedBootstrap pb(group);
  pb.add_plcc(xa, xb, y);
  return pb.run(options)[0];
}

// ---------------------------------------------------------------------------------------------
// Comparisons of two models on the same votes

/// @brief Is model A better than model B? (The rule is in the file comment.)
enum class Verdict {
  better,           ///< "yes": significantly better
  worse,            ///< "no": significantly worse
  not_significant,  ///< "not significant": the data cannot tell (or nothing to compare)
};

/// @brief "yes", "no" or "not significant".
inline const char* verdict_name(Verdict v) {
  return v == Verdict::better ? "yes" : v == Verdict::worse ? "no" : "not significant";
}

/// @brief "yes", "no" or "n.s." (for tables).
inline const char* verdict_short(Verdict v) { return v == Verdict::better ? "yes" : v == Verdict::worse ? "no" : "n.s."; }

/// @brief One statistic of a paired comparison of model A against model B on the same items.
struct PairedComparison {
  double difference = kNaN;  ///< statistic(A) - statistic(B) on all items
  double ci_low = kNaN;      ///< bootstrap percentile interval of the difference (stimuli resampled)
  double ci_high = kNaN;     ///< see ci_low
  double mcnemar_p = kNaN;   ///< accuracy only: exact_mcnemar(b, c); NaN for the other statistics
  long b = 0;                ///< accuracy only: items only A gets right
  long c = 0;                ///< accuracy only: items only B gets right
  std::size_t n = 0;         ///< items (test votes) compared
  std::size_t stimuli = 0;   ///< groups (test stimuli) the bootstrap resampled
  int resamples = 0;         ///< bootstrap resamples used (where the difference was defined)
  Verdict verdict = Verdict::not_significant;  ///< is A better? (file comment)
};

/// @brief The verdict of an accuracy-like difference (higher is better) with a test p-value:
/// better when ci_low > 0 and p < alpha, worse when ci_high < 0 and p < alpha. A NaN p (no
/// test) lets the interval alone decide.
inline Verdict verdict_of(double ci_low, double ci_high, double p, bool higher_is_better = true, double alpha = 0.05) {
  const bool tested = std::isnan(p) || p < alpha;
  const bool above = ci_low > 0, below = ci_high < 0;  // false for NaN bounds
  if (tested && (higher_is_better ? above : below)) return Verdict::better;
  if (tested && (higher_is_better ? below : above)) return Verdict::worse;
  return Verdict::not_significant;
}

/// @brief A model's per-item predictions on the compared items (test votes).
struct ItemPredictions {
  std::vector<int> vote;         ///< [n] predicted (arg-max) vote per item
  std::vector<double> expected;  ///< [n] expected vote per item (a vote model: the vote itself)
};

/// @brief All statistics of A against one other model on the same votes.
struct ModelComparison {
  std::string against;        ///< what A is compared with ("q_lookup", "majority", a model name)
  PairedComparison accuracy;  ///< exact accuracy of the arg-max vote (McNemar + bootstrap)
  PairedComparison mae;       ///< MAE of the arg-max vote (lower is better; bootstrap)
  PairedComparison plcc;      ///< PLCC of the expected vote against the votes (bootstrap; NaN
                              ///< when undefined, e.g. a constant predictor such as the majority)
  /// True when there were items to compare.
  bool available() const { return accuracy.n > 0; }
};

/// @brief Model A against each of `others` on the same items: accuracy (difference, bootstrap
/// interval, exact McNemar), MAE and PLCC differences with bootstrap intervals, every
/// comparison and statistic on the same resamples of the groups.
///
/// @param group   [n] the group (stimulus) of each item (vote)
/// @param votes   [n] the true votes
/// @param a       model A's predictions (vote and expected both [n])
/// @param others  the models A is compared with (each [n])
/// @param names   names for ModelComparison::against, one per entry of `others` (or empty)
/// Throws std::invalid_argument when a size differs from n.
inline std::vector<ModelComparison> compare_models(std::span<const std::size_t> group, std::span<const int> votes,
                                                   const ItemPredictions& a, std::span<const ItemPredictions> others,
                                                   std::span<const std::string> names = {},
                                                   const BootstrapOptions& options = {}) {
  const std::size_t n = votes.size();
  detail::check_same_size(group.size(), n, "compare_models (group)");
  const auto check = [&](const ItemPredictions& p) {
    detail::check_same_size(p.vote.size(), n, "compare_models (vote)");
    detail::check_same_size(p.expected.size(), n, "compare_models (expected)");
  };
  check(a);
  for (const auto& o : others) check(o);
  if (!names.empty()) detail::check_same_size(names.size(), others.size(), "compare_models (names)");
  const std::vector<double> truth(votes.begin(), votes.end());
  const auto hits = [&](const ItemPredictions& p) {
    std::vector<double> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = p.vote[i] == votes[i];
    return h;
  };
  const auto errors = [&](const ItemPredictions& p) {
    std::vector<double> e(n);
    for (std::size_t i = 0; i < n; ++i) e[i] = std::abs(double(p.vote[i]) - truth[i]);
    return e;
  };
  PairedBootstrap pb(group);
  const std::vector<double> hit_a = hits(a), err_a = errors(a);
  std::vector<ModelComparison> out(others.size());
  for (std::size_t k = 0; k < others.size(); ++k) {
    const ItemPredictions& o = others[k];
    const std::vector<double> hit_o = hits(o);
    pb.add_mean(hit_a, hit_o);
    pb.add_mean(err_a, errors(o));
    pb.add_plcc(a.expected, o.expected, truth);
    ModelComparison& m = out[k];
    if (!names.empty()) m.against = names[k];
    for (std::size_t i = 0; i < n; ++i) m.accuracy.b += hit_a[i] > hit_o[i], m.accuracy.c += hit_o[i] > hit_a[i];
    m.accuracy.mcnemar_p = exact_mcnemar(m.accuracy.b, m.accuracy.c);
  }
  const std::vector<BootstrapInterval> iv = pb.run(options);
  for (std::size_t k = 0; k < others.size(); ++k) {
    ModelComparison& m = out[k];
    PairedComparison* parts[3] = {&m.accuracy, &m.mae, &m.plcc};
    for (std::size_t j = 0; j < 3; ++j) {
      PairedComparison& p = *parts[j];
      const BootstrapInterval& b = iv[3 * k + j];
      p.difference = b.difference, p.ci_low = b.ci_low, p.ci_high = b.ci_high, p.resamples = b.resamples;
      p.n = n;
      p.stimuli = pb.groups();
      p.verdict = verdict_of(p.ci_low, p.ci_high, p.mcnemar_p, /*higher_is_better=*/j != 1);
    }
  }
  return out;
}

}  // namespace vitiq::eval
