// vitiq/eval/metrics.hpp -- evaluation of artificial observers (AIOs): classification metrics of
// predicted 5-point ACR votes, correlations (PLCC, SRCC, Kendall tau-b), error measures, MOS with
// a Student-t 95 % confidence interval, simple baselines (majority vote, Q look-up), the
// model x observer cross-accuracy matrix and panel (MOS) metrics.
//
// Conventions (chosen to match scipy 1.10 / scikit-learn 1.2, which the tests check against):
//  * Votes are 1-based, 1 .. K (K = 5 for ACR); the confusion matrix is [true vote - 1][predicted
//    vote - 1].
//  * Correlations are NaN when undefined: fewer than two points, an input that is constant (all
//    values compare equal), or any NaN in the input (scipy's nan_policy='propagate').
//  * Macro-F1 is scikit-learn's f1_score(average='macro', labels=1..K, zero_division=0): every
//    one of the K classes counts in the average; a class with no true and no predicted sample
//    (and any class with no true positive) has F1 = 0.
//  * Quadratic kappa is scikit-learn's cohen_kappa_score(weights='quadratic', labels=1..K); it is
//    NaN when undefined (every true and every predicted vote is the same single class, or no
//    samples), where scikit-learn divides 0 by 0.
//  * Empty inputs give NaN means (accuracy, MAE, RMSE, MOS) rather than throwing.
//  * Size mismatches and votes outside 1..K throw std::invalid_argument.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace vitiq::eval {

/// @brief A quiet NaN: the value of every metric that is undefined for its input.
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// @brief The true-vote value that marks "this observer did not rate this stimulus"
/// (see cross_accuracy()).
inline constexpr int kNotRated = -1;

namespace detail {

/// @brief Throw std::invalid_argument unless two input lengths agree.
inline void check_same_size(std::size_t a, std::size_t b, const char* fn) {
  if (a != b)
    throw std::invalid_argument(std::string("vitiq::eval::") + fn + ": input sizes differ (" + std::to_string(a) +
                                " vs " + std::to_string(b) + ")");
}

/// @brief Throw std::invalid_argument unless every vote lies in 1..K.
inline void check_votes(std::span<const int> votes, int K, const char* fn, const char* what) {
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (votes[i] < 1 || votes[i] > K)
      throw std::invalid_argument(std::string("vitiq::eval::") + fn + ": " + what + "[" + std::to_string(i) +
                                  "] = " + std::to_string(votes[i]) + " outside 1.." + std::to_string(K));
}

/// @brief True when some element is NaN.
inline bool any_nan(std::span<const double> x) {
  return std::any_of(x.begin(), x.end(), [](double v) { return std::isnan(v); });
}

/// @brief True when all elements compare equal to the first (scipy's constant-input test).
inline bool is_constant(std::span<const double> x) {
  return std::all_of(x.begin(), x.end(), [&](double v) { return v == x[0]; });
}

/// @brief Mean with one correction pass (sum of residuals), accurate to about one ulp.
inline double accurate_mean(std::span<const double> x) {
  const double n = double(x.size());
  double m = 0;
  for (double v : x) m += v;
  m /= n;
  double r = 0;
  for (double v : x) r += v - m;
  return m + r / n;
}

/// @brief Euclidean norm of v, scaled so that it neither overflows nor underflows.
inline double scaled_norm(const std::vector<double>& v) {
  double scale = 0;
  for (double a : v) scale = std::max(scale, std::abs(a));
  if (scale == 0 || !std::isfinite(scale)) return scale;
  double s = 0;
  for (double a : v) s += (a / scale) * (a / scale);
  return scale * std::sqrt(s);
}

/// @brief The most frequent value of a (value -> count) table; ties go to the smallest value.
/// `counts` must be non-empty.
inline int mode_smallest(const std::map<int, long>& counts) {
  int best = counts.begin()->first;
  long best_count = -1;
  for (const auto& [v, c] : counts)  // ascending votes: strict '>' keeps the smallest of tied ones
    if (c > best_count) best = v, best_count = c;
  return best;
}

/// @brief log(Gamma(a)) - log(Gamma(a + b)) for a >= 10, b > 0, without the cancellation of
/// two large lgamma values (Stirling series of the difference).
inline double lgamma_ratio_large(double a, double b) {
  const auto s = [](double z) {  // lgamma(z) - [(z - 1/2) ln z - z + ln(2 pi) / 2]
    const double z2 = 1.0 / (z * z);
    return (1.0 / 12 + z2 * (-1.0 / 360 + z2 * (1.0 / 1260 + z2 * (-1.0 / 1680 + z2 * (1.0 / 1188 +
            z2 * (-691.0 / 360360 + z2 * (1.0 / 156))))))) / z;
  };
  return -(a - 0.5) * std::log1p(b / a) - b * std::log(a + b) + b + (s(a) - s(a + b));
}

/// @brief log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b), a, b > 0.
inline double log_beta(double a, double b) {
  const double big = std::max(a, b), small = std::min(a, b);
  if (big < 10) return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b);
  return std::lgamma(small) + lgamma_ratio_large(big, small);
}

/// @brief Continued fraction of the incomplete beta function (modified Lentz), converging for
/// x < (a + 1) / (a + b + 2).
inline double incomplete_beta_cf(double a, double b, double x) {
  constexpr double tiny = 1e-300;
  constexpr int max_iter = 100000;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::abs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= max_iter; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::abs(del - 1) <= DBL_EPSILON) break;
  }
  return h;
}

/// @brief I_x(a, b) by its continued fraction and prefactor, for x <= (a + 1) / (a + b + 2).
inline double incomplete_beta_direct(double a, double b, double x, double y) {
  const double lx = x < 0.5 ? std::log(x) : std::log1p(-y);
  const double ly = y < 0.5 ? std::log(y) : std::log1p(-x);
  const double front = std::exp(a * lx + b * ly - log_beta(a, b)) / a;
  return front * incomplete_beta_cf(a, b, x);
}

/// @brief Regularised incomplete beta I_x(a, b), given both x and y = 1 - x (so that a value of x
/// close to 1 loses no digits). Accurate to a few ulp relative for the values of t quantiles.
inline double incomplete_beta(double a, double b, double x, double y) {
  if (x <= 0) return 0;
  if (y <= 0) return 1;
  if (x > (a + 1) / (a + b + 2)) return 1 - incomplete_beta_direct(b, a, y, x);  // I_x(a,b) = 1 - I_y(b,a)
  return incomplete_beta_direct(a, b, x, y);
}

/// @brief x = df / (df + t^2) and y = t^2 / (df + t^2), each without overflow or cancellation.
inline void student_t_xy(double t, double df, double& x, double& y) {
  const double t2 = t * t;
  if (t2 > df) {
    const double r = df / t2;
    x = r / (1 + r);
    y = 1 / (1 + r);
  } else {
    const double r = t2 / df;
    x = 1 / (1 + r);
    y = r / (1 + r);
  }
}

/// @brief Upper tail P(T > t) of Student's t with df degrees of freedom, for t >= 0:
/// I_x(df/2, 1/2) / 2.
inline double student_t_upper_tail(double t, double df) {
  double x, y;
  student_t_xy(t, df, x, y);
  return 0.5 * incomplete_beta(0.5 * df, 0.5, x, y);
}

/// @brief P(0 < T < t) of Student's t, for t >= 0: I_y(1/2, df/2) / 2 (accurate near t = 0,
/// where 1/2 - upper tail would cancel).
inline double student_t_central(double t, double df) {
  double x, y;
  student_t_xy(t, df, x, y);
  return 0.5 * incomplete_beta(0.5, 0.5 * df, y, x);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Student's t

/// @brief Cumulative distribution function of Student's t with `df` > 0 degrees of freedom
/// (df need not be an integer). NaN for a NaN argument or df <= 0.
inline double student_t_cdf(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return kNaN;
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  const double tail = detail::student_t_upper_tail(std::abs(t), df);
  return t >= 0 ? 1 - tail : tail;
}

/// @brief Quantile (inverse CDF) of Student's t with `df` > 0 degrees of freedom (df need not be
/// an integer).
///
/// Bisection down to adjacent doubles on the regularised incomplete beta function (continued
/// fraction; Stirling-corrected log-beta for large df): for 1/4 <= p <= 3/4 it solves
/// P(0 < T < |t|) = |p - 1/2| (exact in double), otherwise P(T > |t|) = min(p, 1 - p), so that
/// neither form cancels. Against a 50-digit mpmath reference (p from 1e-3 to 1 - 1e-5): within
/// 1e-14 relative for df from 0.3 to 1000, 5e-14 at df = 1e4, 4e-13 at 1e5, 1.2e-11 at 1e6 (the
/// continued fraction converges slowly for large df); the tests check 1e-13 at p = 0.975 for df
/// 1..30, 50, 100, 1000 and at other p. Note: scipy 1.10's scipy.stats.t.ppf (cdflib) errs by up
/// to about 1e-9 relative. Returns -inf / +inf for p = 0 / 1, 0 for p = 0.5, NaN for p outside
/// [0, 1] or df not in (0, inf).
inline double student_t_quantile(double p, double df) {
  if (!(p >= 0 && p <= 1) || !(df > 0) || std::isinf(df)) return kNaN;
  if (p == 0) return -std::numeric_limits<double>::infinity();
  if (p == 1) return std::numeric_limits<double>::infinity();
  if (p == 0.5) return 0.0;
  const bool central = p >= 0.25 && p <= 0.75;
  // central: target |p - 1/2| (exact for p in [1/4, 3/4]); else the tail min(p, 1 - p) (exact).
  const double target = central ? std::abs(p - 0.5) : std::min(p, 1 - p);
  // below(t): t lies below the root.
  const auto below = [&](double t) {
    return central ? detail::student_t_central(t, df) < target : detail::student_t_upper_tail(t, df) > target;
  };
  double lo = 0, hi = 1;
  while (below(hi)) {
    lo = hi;
    hi *= 2;
    if (std::isinf(hi)) return p > 0.5 ? hi : -hi;
  }
  for (int it = 0; it < 2000; ++it) {
    const double mid = lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi || hi - lo <= 2 * DBL_EPSILON * hi) break;
    if (below(mid))
      lo = mid;
    else
      hi = mid;
  }
  const double t = lo + 0.5 * (hi - lo);
  return p > 0.5 ? t : -t;
}

// ---------------------------------------------------------------------------------------------
// Errors and correlations

/// @brief Root mean squared error sqrt(mean((a - b)^2)). NaN when empty; throws
/// std::invalid_argument when the sizes differ.
inline double rmse(std::span<const double> a, std::span<const double> b) {
  detail::check_same_size(a.size(), b.size(), "rmse");
  if (a.empty()) return kNaN;
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / double(a.size()));
}

/// @brief Mean absolute error mean(|a - b|). NaN when empty; throws std::invalid_argument when the
/// sizes differ.
inline double mae(std::span<const double> a, std::span<const double> b) {
  detail::check_same_size(a.size(), b.size(), "mae");
  if (a.empty()) return kNaN;
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
  return s / double(a.size());
}

/// @brief Pearson's linear correlation coefficient (PLCC), as scipy.stats.pearsonr's statistic.
///
/// NaN when there are fewer than two points, when x or y is constant (all elements equal), or
/// when any element is NaN. For two points it is the product of the signs of the differences,
/// exactly +-1 (as scipy). The result is clipped to [-1, 1]. Throws std::invalid_argument when
/// the sizes differ. Symmetric in x and y.
inline double pearson(std::span<const double> x, std::span<const double> y) {
  detail::check_same_size(x.size(), y.size(), "pearson");
  const std::size_t n = x.size();
  if (n < 2 || detail::any_nan(x) || detail::any_nan(y)) return kNaN;
  if (detail::is_constant(x) || detail::is_constant(y)) return kNaN;
  if (n == 2) {
    const auto sign = [](double v) { return double((v > 0) - (v < 0)); };
    return sign(x[1] - x[0]) * sign(y[1] - y[0]);
  }
  const double mx = detail::accurate_mean(x), my = detail::accurate_mean(y);
  std::vector<double> xm(n), ym(n);
  for (std::size_t i = 0; i < n; ++i) xm[i] = x[i] - mx, ym[i] = y[i] - my;
  const double nx = detail::scaled_norm(xm), ny = detail::scaled_norm(ym);
  double r = 0;
  for (std::size_t i = 0; i < n; ++i) r += (xm[i] / nx) * (ym[i] / ny);
  if (std::isnan(r)) return kNaN;
  return std::clamp(r, -1.0, 1.0);
}

/// @brief 1-based ranks with ties given the average of the ranks they span (scipy.stats.rankdata,
/// method='average'); e.g. {10, 20, 10} -> {1.5, 3, 1.5}. If any element is NaN every rank is NaN
/// (scipy's nan_policy='propagate'). -0.0 and +0.0 tie.
inline std::vector<double> average_ranks(std::span<const double> x) {
  const std::size_t n = x.size();
  if (detail::any_nan(x)) return std::vector<double>(n, kNaN);
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && x[idx[j]] == x[idx[i]]) ++j;
    const double avg = 0.5 * double(i + 1 + j);  // mean of the ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k) r[idx[k]] = avg;
    i = j;
  }
  return r;
}

/// @brief Spearman's rank correlation (SRCC): Pearson's correlation of the average ranks, as
/// scipy.stats.spearmanr. NaN when there are fewer than two points, when x or y is constant, or
/// when any element is NaN. Throws std::invalid_argument when the sizes differ.
inline double spearman(std::span<const double> x, std::span<const double> y) {
  detail::check_same_size(x.size(), y.size(), "spearman");
  if (x.size() < 2 || detail::any_nan(x) || detail::any_nan(y)) return kNaN;
  const std::vector<double> rx = average_ranks(x), ry = average_ranks(y);
  return pearson(rx, ry);
}

/// @brief Kendall's tau-b (KRCC), as scipy.stats.kendalltau's default statistic:
/// tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1 / n2 = pairs tied in x / in y.
///
/// O(n log n) (sort plus merge-sort inversion count, Knight's algorithm, like scipy). NaN when
/// there are fewer than two points, when all pairs are tied in x or in y (a constant input), or
/// when any element is NaN. Clipped to [-1, 1]. Throws std::invalid_argument when the sizes differ.
inline double kendall_tau_b(std::span<const double> x, std::span<const double> y) {
  detail::check_same_size(x.size(), y.size(), "kendall_tau_b");
  const std::size_t n = x.size();
  if (n < 2 || detail::any_nan(x) || detail::any_nan(y)) return kNaN;
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    return x[a] < x[b] || (x[a] == x[b] && y[a] < y[b]);
  });
  const auto pairs = [](std::int64_t c) { return c * (c - 1) / 2; };
  std::int64_t xtie = 0, ntie = 0;  // pairs tied in x; pairs tied in both
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && x[idx[j]] == x[idx[i]]) ++j;
    xtie += pairs(std::int64_t(j - i));
    for (std::size_t a = i; a < j;) {
      std::size_t b = a + 1;
      while (b < j && y[idx[b]] == y[idx[a]]) ++b;
      ntie += pairs(std::int64_t(b - a));
      a = b;
    }
    i = j;
  }
  // Discordant pairs = strict inversions of y in this order (within an x tie, y is ascending).
  std::vector<double> ys(n), buf(n);
  for (std::size_t i = 0; i < n; ++i) ys[i] = y[idx[i]];
  std::int64_t dis = 0;
  for (std::size_t width = 1; width < n; width *= 2) {
    for (std::size_t lo = 0; lo < n; lo += 2 * width) {
      const std::size_t mid = std::min(lo + width, n), hi = std::min(lo + 2 * width, n);
      std::size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        if (ys[j] < ys[i]) {
          dis += std::int64_t(mid - i);
          buf[k++] = ys[j++];
        } else {
          buf[k++] = ys[i++];
        }
      }
      while (i < mid) buf[k++] = ys[i++];
      while (j < hi) buf[k++] = ys[j++];
    }
    ys.swap(buf);
  }
  std::int64_t ytie = 0;  // ys is now sorted
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && ys[j] == ys[i]) ++j;
    ytie += pairs(std::int64_t(j - i));
    i = j;
  }
  const std::int64_t tot = pairs(std::int64_t(n));
  if (xtie == tot || ytie == tot) return kNaN;
  const std::int64_t con_minus_dis = tot - xtie - ytie + ntie - 2 * dis;
  const double tau = double(con_minus_dis) / std::sqrt(double(tot - xtie)) / std::sqrt(double(tot - ytie));
  return std::clamp(tau, -1.0, 1.0);
}

// ---------------------------------------------------------------------------------------------
// MOS

/// @brief A mean opinion score with the half-width of its Student-t 95 % confidence interval.
struct MosStats {
  double mean;            ///< mean of the votes (NaN for no votes)
  double ci95_halfwidth;  ///< t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation
                          ///< (n - 1 denominator); NaN for fewer than two votes
  int n;                  ///< number of votes
};

/// @brief MOS and 95 % confidence half-width of a set of votes: the interval is
/// mean +- t_{0.975, n-1} * s / sqrt(n) (as scipy.stats.t.interval(0.95, n-1, mean, sem)).
/// No votes: {NaN, NaN, 0}; one vote: {vote, NaN, 1}.
inline MosStats mos_with_ci(std::span<const double> votes) {
  const std::size_t n = votes.size();
  if (n == 0) return {kNaN, kNaN, 0};
  const double mean = detail::accurate_mean(votes);
  if (n == 1) return {mean, kNaN, 1};
  double ss = 0;
  for (double v : votes) ss += (v - mean) * (v - mean);
  const double sd = std::sqrt(ss / double(n - 1));
  const double t = student_t_quantile(0.975, double(n - 1));
  return {mean, t * sd / std::sqrt(double(n)), int(n)};
}

/// @brief mos_with_ci() of integer votes.
inline MosStats mos_with_ci(std::span<const int> votes) {
  const std::vector<double> v(votes.begin(), votes.end());
  return mos_with_ci(std::span<const double>(v));
}

// ---------------------------------------------------------------------------------------------
// Classification report

/// @brief Metrics of one observer model's predicted votes against the observer's true votes.
struct ClassificationReport {
  double exact_accuracy;   ///< fraction with predicted == true
  double within_one;       ///< fraction with |predicted - true| <= 1
  double mae_argmax;       ///< mean |predicted - true| (predicted = argmax vote)
  double rmse_argmax;      ///< sqrt(mean (predicted - true)^2)
  double mae_expected;     ///< mean |expected - true| (expected = sum_k k p_k)
  double rmse_expected;    ///< sqrt(mean (expected - true)^2)
  double macro_f1;         ///< sklearn f1_score(average='macro', labels=1..K, zero_division=0)
  double quadratic_kappa;  ///< sklearn cohen_kappa_score(weights='quadratic', labels=1..K); NaN if undefined
  double plcc;             ///< pearson(expected, true); NaN if undefined
  double srcc;             ///< spearman(expected, true); NaN if undefined
  double krcc;             ///< kendall_tau_b(expected, true); NaN if undefined
  std::vector<std::vector<long>> confusion;  ///< [true vote - 1][predicted vote - 1], K x K
  std::size_t count;                         ///< number of samples
};

/// @brief Evaluate predicted votes (argmax) and expected votes against true votes.
///
/// @param true_votes      the observer's votes, each in 1..K
/// @param predicted_votes the model's predicted (argmax) votes, each in 1..K
/// @param expected_votes  the model's expected vote sum_k k p_k per sample (any real)
/// @param K               number of vote classes (5 for ACR), >= 1
///
/// Macro-F1: F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k), 0 when that denominator is 0 (class k absent
/// from truth and prediction); the mean over all K classes, absent ones included -- exactly
/// sklearn's f1_score(average='macro', labels=1..K, zero_division=0). Quadratic kappa:
/// 1 - sum w_ij O_ij / sum w_ij E_ij with w_ij = (i - j)^2, E the outer product of the marginals
/// over n -- sklearn's cohen_kappa_score(weights='quadratic', labels=1..K); NaN when the
/// denominator is 0 (all true and predicted votes the same single class) or n = 0.
/// Correlations follow pearson(), spearman(), kendall_tau_b() (NaN when the true votes or the
/// expected votes are constant). With no samples every metric is NaN and the confusion is zero.
/// Throws std::invalid_argument when the sizes differ, K < 1, or a vote lies outside 1..K.
inline ClassificationReport evaluate_votes(std::span<const int> true_votes, std::span<const int> predicted_votes,
                                           std::span<const double> expected_votes, int K = 5) {
  if (K < 1) throw std::invalid_argument("vitiq::eval::evaluate_votes: K = " + std::to_string(K) + " < 1");
  detail::check_same_size(true_votes.size(), predicted_votes.size(), "evaluate_votes");
  detail::check_same_size(true_votes.size(), expected_votes.size(), "evaluate_votes");
  detail::check_votes(true_votes, K, "evaluate_votes", "true_votes");
  detail::check_votes(predicted_votes, K, "evaluate_votes", "predicted_votes");
  const std::size_t n = true_votes.size();
  const auto k = std::size_t(K);
  ClassificationReport r{};
  r.count = n;
  r.confusion.assign(k, std::vector<long>(k, 0));
  if (n == 0) {
    r.exact_accuracy = r.within_one = r.mae_argmax = r.rmse_argmax = r.mae_expected = r.rmse_expected = kNaN;
    r.macro_f1 = r.quadratic_kappa = r.plcc = r.srcc = r.krcc = kNaN;
    return r;
  }
  long exact = 0, within = 0;
  std::int64_t abs_sum = 0, sq_sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const int t = true_votes[i], p = predicted_votes[i];
    ++r.confusion[std::size_t(t - 1)][std::size_t(p - 1)];
    const int d = p - t;
    exact += d == 0;
    within += d >= -1 && d <= 1;
    abs_sum += d < 0 ? -d : d;
    sq_sum += std::int64_t(d) * d;
  }
  const double dn = double(n);
  r.exact_accuracy = double(exact) / dn;
  r.within_one = double(within) / dn;
  r.mae_argmax = double(abs_sum) / dn;
  r.rmse_argmax = std::sqrt(double(sq_sum) / dn);

  const std::vector<double> truth(true_votes.begin(), true_votes.end());
  r.mae_expected = mae(expected_votes, truth);
  r.rmse_expected = rmse(expected_votes, truth);

  std::vector<std::int64_t> row(k, 0), col(k, 0);  // true counts, predicted counts
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t j = 0; j < k; ++j) row[i] += r.confusion[i][j], col[j] += r.confusion[i][j];
  double f1_sum = 0;
  for (std::size_t c = 0; c < k; ++c) {
    const std::int64_t tp = r.confusion[c][c], fp = col[c] - tp, fn = row[c] - tp;
    const std::int64_t denom = 2 * tp + fp + fn;
    f1_sum += denom == 0 ? 0.0 : double(2 * tp) / double(denom);
  }
  r.macro_f1 = f1_sum / double(K);

  // kappa = 1 - sum w O / sum w E, E_ij = row_i col_j / n  =>  1 - n * sum w O / sum w row col.
  std::int64_t num = 0, den = 0;
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t j = 0; j < k; ++j) {
      const std::int64_t w = std::int64_t(i > j ? i - j : j - i) * std::int64_t(i > j ? i - j : j - i);
      num += w * r.confusion[i][j];
      den += w * row[i] * col[j];
    }
  r.quadratic_kappa = den == 0 ? kNaN : 1.0 - dn * double(num) / double(den);

  r.plcc = pearson(expected_votes, truth);
  r.srcc = spearman(expected_votes, truth);
  r.krcc = kendall_tau_b(expected_votes, truth);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Baselines

/// @brief The most frequent vote; ties go to the smallest tied vote (as scipy.stats.mode and
/// numpy.argmax(numpy.bincount(...))). Throws std::invalid_argument when `votes` is empty.
inline int majority_vote(std::span<const int> votes) {
  if (votes.empty()) throw std::invalid_argument("vitiq::eval::majority_vote: no votes");
  std::map<int, long> counts;
  for (int v : votes) ++counts[v];
  return detail::mode_smallest(counts);
}

/// @brief The majority-vote baseline: majority_vote(train_votes) repeated n_test times.
/// Throws std::invalid_argument when `train_votes` is empty.
inline std::vector<int> majority_vote_predictions(std::span<const int> train_votes, std::size_t n_test) {
  return std::vector<int>(n_test, majority_vote(train_votes));
}

/// @brief The Q look-up baseline: predict the vote an observer gave most often at a quality
/// parameter Q (e.g. a JPEG quality factor) in the training data.
///
/// Rules: at a Q seen in training, the most frequent vote there, ties to the smallest tied vote.
/// At an unseen Q, the prediction of the nearest seen Q (by |q - Q|); when two seen Q are equally
/// near (one below, one above) and their predictions differ, the overall majority vote of all
/// training votes (ties to the smallest) instead.
class QLookup {
 public:
  /// @brief Fit on pairs (q[i], votes[i]), replacing any earlier fit. Throws std::invalid_argument
  /// when the sizes differ or there are no pairs.
  void fit(std::span<const int> q, std::span<const int> votes) {
    detail::check_same_size(q.size(), votes.size(), "QLookup::fit");
    if (q.empty()) throw std::invalid_argument("vitiq::eval::QLookup::fit: no training pairs");
    std::map<int, std::map<int, long>> counts;
    std::map<int, long> all;
    for (std::size_t i = 0; i < q.size(); ++i) ++counts[q[i]][votes[i]], ++all[votes[i]];
    table_.clear();
    for (const auto& [qv, c] : counts) table_[qv] = detail::mode_smallest(c);
    overall_ = detail::mode_smallest(all);
  }

  /// @brief Predicted vote at quality parameter q (rules in the class description). Throws
  /// std::logic_error before fit().
  int predict(int q) const {
    if (table_.empty()) throw std::logic_error("vitiq::eval::QLookup::predict: called before fit()");
    const auto above = table_.lower_bound(q);
    if (above != table_.end() && above->first == q) return above->second;
    if (above == table_.end()) return std::prev(above)->second;
    if (above == table_.begin()) return above->second;
    const auto below = std::prev(above);
    const std::int64_t d_below = std::int64_t(q) - below->first, d_above = std::int64_t(above->first) - q;
    if (d_below < d_above) return below->second;
    if (d_above < d_below) return above->second;
    return below->second == above->second ? below->second : overall_;
  }

  /// @brief predict() of every element of q.
  std::vector<int> predict(std::span<const int> q) const {
    std::vector<int> out;
    out.reserve(q.size());
    for (int v : q) out.push_back(predict(v));
    return out;
  }

  /// @brief Whether fit() has been called.
  bool fitted() const { return !table_.empty(); }

  /// @brief The overall majority vote of the training votes (ties to the smallest). Throws
  /// std::logic_error before fit().
  int overall_majority() const {
    if (table_.empty()) throw std::logic_error("vitiq::eval::QLookup::overall_majority: called before fit()");
    return overall_;
  }

  /// @brief The fitted table: seen Q -> predicted vote.
  const std::map<int, int>& table() const { return table_; }

 private:
  std::map<int, int> table_;  ///< seen Q -> most frequent vote there
  int overall_ = 0;           ///< majority of all training votes
};

// ---------------------------------------------------------------------------------------------
// Cross comparison and panels

/// @brief Exact-accuracy matrix of M models against O observers.
///
/// @param predicted predicted[m][s]: model m's vote for stimulus s, each in 1..K; every row has
///                  the same length N
/// @param truth     truth[o][s]: observer o's vote for stimulus s, in 1..K, or kNotRated (-1)
///                  where observer o did not rate s; every row has length N
/// @param K         number of vote classes
/// @return result[m][o] = (#stimuli rated by o where predicted[m][s] == truth[o][s]) /
///         (#stimuli rated by o); NaN when observer o rated none.
/// Throws std::invalid_argument on ragged rows or votes outside those ranges.
inline std::vector<std::vector<double>> cross_accuracy(std::span<const std::vector<int>> predicted,
                                                       std::span<const std::vector<int>> truth, int K = 5) {
  std::size_t n = 0;
  if (!predicted.empty()) n = predicted[0].size();
  else if (!truth.empty()) n = truth[0].size();
  for (const auto& row : predicted) {
    detail::check_same_size(row.size(), n, "cross_accuracy (predicted rows)");
    detail::check_votes(row, K, "cross_accuracy", "predicted");
  }
  for (const auto& row : truth) {
    detail::check_same_size(row.size(), n, "cross_accuracy (truth rows)");
    for (std::size_t s = 0; s < n; ++s)
      if (row[s] != kNotRated && (row[s] < 1 || row[s] > K))
        throw std::invalid_argument("vitiq::eval::cross_accuracy: truth vote " + std::to_string(row[s]) +
                                    " is neither kNotRated (-1) nor in 1.." + std::to_string(K));
  }
  std::vector<std::vector<double>> out(predicted.size(), std::vector<double>(truth.size(), kNaN));
  for (std::size_t o = 0; o < truth.size(); ++o) {
    long rated = 0;
    for (int v : truth[o]) rated += v != kNotRated;
    if (rated == 0) continue;
    for (std::size_t m = 0; m < predicted.size(); ++m) {
      long hit = 0;
      for (std::size_t s = 0; s < n; ++s) hit += truth[o][s] != kNotRated && truth[o][s] == predicted[m][s];
      out[m][o] = double(hit) / double(rated);
    }
  }
  return out;
}

/// @brief Panel-level agreement of a predicted MOS vector with the true MOS vector (no nonlinear
/// mapping is fitted before the PLCC).
struct PanelReport {
  double plcc;  ///< pearson(predicted, true); NaN if undefined
  double srcc;  ///< spearman(predicted, true); NaN if undefined
  double krcc;  ///< kendall_tau_b(predicted, true); NaN if undefined
  double rmse;  ///< rmse(predicted, true); NaN if empty
};

/// @brief PLCC, SRCC, KRCC and RMSE of predicted MOS against true MOS (one entry per stimulus).
/// Throws std::invalid_argument when the sizes differ.
inline PanelReport evaluate_panel(std::span<const double> predicted_mos, std::span<const double> true_mos) {
  detail::check_same_size(predicted_mos.size(), true_mos.size(), "evaluate_panel");
  return {pearson(predicted_mos, true_mos), spearman(predicted_mos, true_mos), kendall_tau_b(predicted_mos, true_mos),
          rmse(predicted_mos, true_mos)};
}

}  // namespace vitiq::eval
