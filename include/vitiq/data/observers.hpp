// vitiq/data/observers.hpp -- simulated observers calibrated to the real ones of DATA.md.
//
// An observer turns a stimulus' objective quality measure m (e.g. PSNR-B in dB, see quality.hpp)
// into a 5-point vote with an ordered-probit model:
//   latent mean    mu = g(m), g monotone increasing, piecewise linear through knots (x_j, y_j)
//                  and extended linearly beyond the first and last knot;
//   vote           k when t_{k-1} < mu + sigma * e <= t_k, e ~ N(0, 1), t_0 = -inf, t_5 = +inf,
//   so            P(vote = k) = Phi((t_k - mu) / sigma) - Phi((t_{k-1} - mu) / sigma).
// g carries the observer's bias and non-linearity, the thresholds t_1 < ... < t_4 the width of
// each category, sigma the observer's inconsistency. Because every vote probability is known,
// the best achievable exact accuracy (Bayes ceiling, mean over stimuli of max_k P(vote = k)) and
// the expected self-agreement (mean of sum_k P_k^2 for two independent votes) are exact.
//
// calibrate_observer() fits g, t and sigma so that on a given set of stimuli the expected share
// of each vote in each JPEG band and the expected exact self-agreement match one row of the real
// study (real_observer_targets(), from DATA.md).
//
// Invariant: probabilities() returns five non-negative numbers summing to 1 (to rounding), and
// sample_vote() with a uniform u draws vote k with exactly that probability.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/error.hpp"

namespace vitiq::data {

/// @brief Vote shares per band: [band - 1][vote - 1].
using BandShares = std::array<std::array<double, 5>, 5>;
/// @brief Probabilities of votes 1..5.
using VoteProbs = std::array<double, 5>;

/// @brief What one real observer did (DATA.md): the share of each vote per JPEG band and the
/// exact agreement with themself on the repeated session.
struct ObserverTarget {
  int id = 0;                   ///< 1..5, the row of DATA.md's table
  BandShares share{};           ///< [band - 1][vote - 1]; each band's row sums to 1
  double self_agreement = 0;    ///< exact agreement, session 4 vs session 1
};

/// @brief The five real observers of DATA.md. The table's percentages are rounded, so a band's
/// row may sum to 99 or 101: each row is divided by its sum.
inline std::array<ObserverTarget, 5> real_observer_targets() {
  // percent, [observer][band][vote]
  constexpr double pct[5][5][5] = {
      {{37, 52, 10, 0, 0}, {1, 46, 49, 4, 0}, {0, 14, 77, 9, 0}, {0, 2, 78, 19, 1}, {0, 0, 38, 50, 12}},
      {{76, 22, 2, 0, 0}, {28, 55, 15, 1, 0}, {7, 55, 32, 5, 0}, {5, 30, 54, 10, 1}, {3, 12, 57, 27, 1}},
      {{79, 20, 1, 0, 0}, {23, 63, 14, 0, 0}, {1, 69, 27, 3, 0}, {2, 36, 50, 12, 0}, {0, 17, 49, 28, 6}},
      {{68, 28, 3, 1, 0}, {9, 44, 36, 8, 3}, {1, 13, 60, 22, 4}, {1, 5, 30, 45, 19}, {0, 2, 8, 28, 62}},
      {{75, 18, 5, 2, 0}, {22, 46, 25, 7, 0}, {5, 43, 41, 11, 0}, {1, 18, 49, 30, 2}, {0, 6, 28, 52, 14}}};
  constexpr double agreement[5] = {0.58, 0.62, 0.73, 0.57, 0.47};
  std::array<ObserverTarget, 5> out{};
  for (int o = 0; o < 5; ++o) {
    out[std::size_t(o)].id = o + 1;
    out[std::size_t(o)].self_agreement = agreement[o];
    for (int b = 0; b < 5; ++b) {
      double s = 0;
      for (int k = 0; k < 5; ++k) s += pct[o][b][k];
      for (int k = 0; k < 5; ++k) out[std::size_t(o)].share[std::size_t(b)][std::size_t(k)] = pct[o][b][k] / s;
    }
  }
  return out;
}

/// @brief Standard normal cumulative distribution Phi(x).
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }

/// @brief The vote drawn by a uniform u in [0, 1): the smallest k with P_1 + ... + P_k > u
/// (vote 5 when rounding leaves the sum just under u).
inline int sample_vote(const VoteProbs& p, double u) {
  double c = 0;
  for (int k = 0; k < 4; ++k) {
    c += p[std::size_t(k)];
    if (u < c) return k + 1;
  }
  return 5;
}

/// @brief Probability that two independent votes with probabilities p are equal: sum_k p_k^2.
inline double expected_exact_agreement(const VoteProbs& p) {
  double s = 0;
  for (double x : p) s += x * x;
  return s;
}

/// @brief Probability that two independent votes differ by at most one.
inline double expected_within_one(const VoteProbs& p) {
  double s = 0;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j)
      if (std::abs(i - j) <= 1) s += p[std::size_t(i)] * p[std::size_t(j)];
  return s;
}

/// @brief Expected squared difference of two independent votes, E[(v1 - v2)^2].
inline double expected_squared_difference(const VoteProbs& p) {
  double s = 0;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) s += p[std::size_t(i)] * p[std::size_t(j)] * double((i - j) * (i - j));
  return s;
}

/// @brief The most probable vote (ties: the smaller vote).
inline int most_probable_vote(const VoteProbs& p) {
  return int(std::max_element(p.begin(), p.end()) - p.begin()) + 1;
}

/// @brief An ordered-probit observer (see the file comment).
struct OrderedProbitObserver {
  std::vector<double> knot_x;  ///< measure at the knots, increasing
  std::vector<double> knot_y;  ///< latent at the knots, non-decreasing
  std::array<double, 4> thresholds = {1.5, 2.5, 3.5, 4.5};  ///< t_1 < t_2 < t_3 < t_4
  double sigma = 0.5;          ///< standard deviation of the latent noise, > 0
  double content_weight = 0;   ///< alpha: how far the observer discounts the content's difficulty
  double content_mean = 0;     ///< centre of the content measure (mean over the fitted stimuli)

  /// @brief The measure the observer responds to: m - alpha (c - content_mean), where c is the
  /// content's difficulty (the same measure for the same content at a fixed reference quality).
  /// alpha = 0: raw m; alpha = 1: m relative to what this content gives at the reference quality.
  double effective(double m, double c) const { return m - content_weight * (c - content_mean); }

  /// @brief mu = g(m): interpolation between knots, linear extension outside.
  double latent(double m) const {
    const std::size_t J = knot_x.size();
    if (J == 0) return m;
    if (J == 1) return knot_y[0];
    std::size_t j = std::size_t(std::upper_bound(knot_x.begin(), knot_x.end(), m) - knot_x.begin());
    j = std::clamp<std::size_t>(j, 1, J - 1);  // segment [j - 1, j]
    const double x0 = knot_x[j - 1], x1 = knot_x[j], y0 = knot_y[j - 1], y1 = knot_y[j];
    return x1 > x0 ? y0 + (y1 - y0) * (m - x0) / (x1 - x0) : y0;
  }

  /// @brief P(vote = k), k = 1..5, for a stimulus of measure m whose content measure is c.
  VoteProbs probabilities(double m, double c) const { return probabilities(effective(m, c)); }

  /// @brief P(vote = k), k = 1..5, for an effective measure e (see effective()).
  VoteProbs probabilities(double e) const {
    const double mu = latent(e);
    VoteProbs p{};
    double prev = 0;
    for (int k = 0; k < 4; ++k) {
      const double c = normal_cdf((thresholds[std::size_t(k)] - mu) / sigma);
      p[std::size_t(k)] = std::max(0.0, c - prev);
      prev = std::max(prev, c);
    }
    p[4] = std::max(0.0, 1.0 - prev);
    return p;
  }

  /// @brief One vote for a stimulus of measure m and content measure c.
  int sample(double m, double c, Rng& rng) const { return sample_vote(probabilities(m, c), rng.uniform()); }

  /// @brief Check the invariants; throws Error naming the broken one.
  void validate() const {
    if (knot_x.size() != knot_y.size()) throw Error("observer: knot_x and knot_y differ in length");
    for (std::size_t j = 1; j < knot_x.size(); ++j) {
      if (!(knot_x[j] > knot_x[j - 1])) throw Error("observer: knot_x must increase");
      if (!(knot_y[j] >= knot_y[j - 1])) throw Error("observer: knot_y must not decrease");
    }
    for (int k = 1; k < 4; ++k)
      if (!(thresholds[std::size_t(k)] > thresholds[std::size_t(k - 1)])) throw Error("observer: thresholds must increase");
    if (!(sigma > 0)) throw Error("observer: sigma must be positive");
    if (!std::isfinite(content_weight) || !std::isfinite(content_mean)) throw Error("observer: content terms must be finite");
  }
};

/// @brief How calibrate_observer() fits.
struct CalibrationOptions {
  int knots = 6;                   ///< knots of g, at quantiles (j + 0.5) / knots of the measure
  double agreement_weight = 4.0;   ///< weight of the squared self-agreement error vs the shares'
  int max_iterations = 200;       ///< Levenberg-Marquardt iterations per start
  double min_content_weight = -0.5;  ///< lower bound of the fitted content weight alpha
  double max_content_weight = 1.25;  ///< upper bound of the fitted content weight alpha (min = max: fixed)
};

/// @brief What calibrate_observer() achieved, as expectations on the fitted stimuli.
struct CalibrationResult {
  OrderedProbitObserver observer;
  BandShares share{};              ///< expected vote shares per band on the fitted stimuli
  std::array<long, 5> band_count{};  ///< fitted stimuli per band
  double self_agreement = 0;       ///< expected exact self-agreement (mean sum_k P_k^2)
  double max_share_error = 0;      ///< max over bands (with stimuli) and votes of |share - target|
  double loss = 0;                 ///< final objective
  int evaluations = 0;             ///< objective evaluations used
};

namespace detail {

/// Solve A x = b (n x n, row-major) by Gaussian elimination with partial pivoting; false when
/// A is singular to working precision.
inline bool solve_linear(std::vector<double> A, std::vector<double> b, std::vector<double>& x) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::abs(A[r * n + c]) > std::abs(A[piv * n + c])) piv = r;
    if (!(std::abs(A[piv * n + c]) > 1e-300)) return false;
    if (piv != c) {
      for (std::size_t k = 0; k < n; ++k) std::swap(A[c * n + k], A[piv * n + k]);
      std::swap(b[c], b[piv]);
    }
    for (std::size_t r = c + 1; r < n; ++r) {
      const double f = A[r * n + c] / A[c * n + c];
      if (f == 0) continue;
      for (std::size_t k = c; k < n; ++k) A[r * n + k] -= f * A[c * n + k];
      b[r] -= f * b[c];
    }
  }
  x.assign(n, 0.0);
  for (std::size_t c = n; c-- > 0;) {
    double s = b[c];
    for (std::size_t k = c + 1; k < n; ++k) s -= A[c * n + k] * x[k];
    x[c] = s / A[c * n + c];
  }
  return true;
}

/// Minimise |r(x)|^2 by Levenberg-Marquardt (Marquardt's diagonal scaling, forward-difference
/// Jacobian). Returns the best point; writes its objective and adds the residual evaluations.
inline std::vector<double> levenberg_marquardt(const std::function<std::vector<double>(const std::vector<double>&)>& r,
                                               std::vector<double> x, int max_iterations, double& f_out, int& evals) {
  auto sq = [](const std::vector<double>& v) {
    double s = 0;
    for (double e : v) s += e * e;
    return s;
  };
  std::vector<double> res = r(x);
  ++evals;
  double f = sq(res);
  const std::size_t n = x.size(), m = res.size();
  double lambda = 1e-3;
  std::vector<double> J(m * n), JtJ(n * n), Jtr(n), step;
  for (int it = 0; it < max_iterations; ++it) {
    for (std::size_t j = 0; j < n; ++j) {  // Jacobian column j
      std::vector<double> xh = x;
      const double h = 1e-6 * std::max(1.0, std::abs(x[j]));
      xh[j] += h;
      const std::vector<double> rh = r(xh);
      ++evals;
      for (std::size_t i = 0; i < m; ++i) J[i * n + j] = (rh[i] - res[i]) / h;
    }
    for (std::size_t a = 0; a < n; ++a) {
      Jtr[a] = 0;
      for (std::size_t i = 0; i < m; ++i) Jtr[a] += J[i * n + a] * res[i];
      for (std::size_t b = 0; b < n; ++b) {
        double s = 0;
        for (std::size_t i = 0; i < m; ++i) s += J[i * n + a] * J[i * n + b];
        JtJ[a * n + b] = s;
      }
    }
    bool improved = false;
    for (int tries = 0; tries < 12 && !improved; ++tries) {
      std::vector<double> A = JtJ, g(n);
      for (std::size_t a = 0; a < n; ++a) {
        A[a * n + a] += lambda * std::max(JtJ[a * n + a], 1e-12);
        g[a] = -Jtr[a];
      }
      if (!solve_linear(A, g, step)) { lambda *= 10; continue; }
      std::vector<double> xn = x;
      for (std::size_t a = 0; a < n; ++a) xn[a] += step[a];
      std::vector<double> rn = r(xn);
      ++evals;
      const double fn = sq(rn);
      if (fn < f) {
        const double gain = f - fn;
        x = std::move(xn), res = std::move(rn);
        const double old = f;
        f = fn;
        lambda = std::max(lambda / 3, 1e-12);
        improved = true;
        if (gain < 1e-10 * (1 + old)) { f_out = f; return x; }
      } else {
        lambda *= 4;
      }
    }
    if (!improved) break;
  }
  f_out = f;
  return x;
}

/// Parameters -> observer: x = [y_0, log dy_1 .. log dy_{J-1}, a, b, log sigma] with
/// t = 1.5, 1.5 + 3 w_1, 1.5 + 3 (w_1 + w_2), 4.5 and w = softmax(0, a, b).
inline OrderedProbitObserver unpack(const std::vector<double>& x, const std::vector<double>& knot_x) {
  OrderedProbitObserver o;
  const std::size_t J = knot_x.size();
  o.knot_x = knot_x;
  o.knot_y.resize(J);
  o.knot_y[0] = x[0];
  for (std::size_t j = 1; j < J; ++j) o.knot_y[j] = o.knot_y[j - 1] + std::exp(std::clamp(x[j], -30.0, 30.0));
  const double a = std::clamp(x[J], -30.0, 30.0), b = std::clamp(x[J + 1], -30.0, 30.0);
  const double e0 = 1, e1 = std::exp(a), e2 = std::exp(b), z = e0 + e1 + e2;
  o.thresholds = {1.5, 1.5 + 3 * e0 / z, 1.5 + 3 * (e0 + e1) / z, 4.5};
  o.sigma = std::exp(std::clamp(x[J + 2], -10.0, 5.0));
  return o;
}

}  // namespace detail

/// @brief Expected vote shares per band and expected exact self-agreement of an observer on a
/// set of stimuli.
/// @param measure  [N] the stimuli's measures
/// @param content  [N] their content measures, or empty (then the content term is 0)
/// @param band     [N] their bands 1..5 (0: counted in the agreement only)
inline std::pair<BandShares, double> expected_shares(const OrderedProbitObserver& o, std::span<const double> measure,
                                                     std::span<const double> content, std::span<const int> band) {
  BandShares sh{};
  std::array<long, 5> n{};
  double agree = 0;
  for (std::size_t i = 0; i < measure.size(); ++i) {
    const VoteProbs p = content.empty() ? o.probabilities(measure[i]) : o.probabilities(measure[i], content[i]);
    agree += expected_exact_agreement(p);
    const int b = band[i];
    if (b < 1 || b > 5) continue;
    ++n[std::size_t(b - 1)];
    for (int k = 0; k < 5; ++k) sh[std::size_t(b - 1)][std::size_t(k)] += p[std::size_t(k)];
  }
  for (int b = 0; b < 5; ++b)
    if (n[std::size_t(b)])
      for (auto& v : sh[std::size_t(b)]) v /= double(n[std::size_t(b)]);
  return {sh, measure.empty() ? 0.0 : agree / double(measure.size())};
}

namespace detail {
/// Knots at the quantiles (j + 0.5) / J of `values`, strictly increasing (at least two).
inline std::vector<double> quantile_knots(std::vector<double> values, int J) {
  std::sort(values.begin(), values.end());
  std::vector<double> knots;
  for (int j = 0; j < J; ++j) {
    const double q = (j + 0.5) / J * double(values.size() - 1);
    const std::size_t lo = std::size_t(q);
    const double x = values[lo] + (q - double(lo)) * (values[std::min(lo + 1, values.size() - 1)] - values[lo]);
    if (knots.empty() || x > knots.back() + 1e-9) knots.push_back(x);
  }
  if (knots.size() < 2) knots = {values.front(), values.front() + 1.0};  // all values equal
  return knots;
}
}  // namespace detail

/// @brief Fit an ordered-probit observer to a real observer's vote shares per band and
/// self-agreement, on the given stimuli.
///
/// Objective: sum over bands with stimuli and votes of (expected share - target)^2, plus
/// agreement_weight * (expected agreement - target)^2; minimised by Levenberg-Marquardt from
/// three starting noise levels (deterministic: no random numbers). The knots of g sit at
/// quantiles of the effective measure. With content measures the content weight alpha is fitted
/// too, within [0, max_content_weight]: observers whose votes spread widely within a band at
/// high self-agreement get a small alpha (content drives their votes), observers with narrow
/// distributions a large one.
/// @param measure  [N] objective measure of each stimulus (larger = better quality), N >= 2
/// @param content  [N] content measure of each stimulus (the same measure of the same content at
///                 a fixed reference quality), or empty for alpha = 0
/// @param band     [N] band 1..5 of each stimulus (0 = none: only in the agreement term)
/// @param target   the real observer to imitate
/// @throws Error when sizes differ, fewer than 2 stimuli are given or a measure is not finite.
inline CalibrationResult calibrate_observer(std::span<const double> measure, std::span<const double> content,
                                            std::span<const int> band, const ObserverTarget& target,
                                            const CalibrationOptions& opt = {}) {
  if (measure.size() != band.size() || (!content.empty() && content.size() != measure.size()))
    throw Error("calibrate_observer: measure, content and band differ in length");
  if (measure.size() < 2) throw Error("calibrate_observer: need at least 2 stimuli");
  for (std::size_t i = 0; i < measure.size(); ++i)
    if (!std::isfinite(measure[i]) || (!content.empty() && !std::isfinite(content[i])))
      throw Error("calibrate_observer: every measure must be finite");
  const bool use_content = !content.empty() && opt.max_content_weight > opt.min_content_weight;
  const double a_lo = opt.min_content_weight, a_span = opt.max_content_weight - opt.min_content_weight;
  double content_mean = 0;
  for (double c : content) content_mean += c;
  if (!content.empty()) content_mean /= double(content.size());
  const int J = std::max(2, opt.knots);

  std::array<bool, 5> has{};
  for (int b : band) if (b >= 1 && b <= 5) has[std::size_t(b - 1)] = true;
  const double wa = std::sqrt(std::max(0.0, opt.agreement_weight));
  // x = [y_0, log dy_1 .. log dy_{J-1}, a, b, log sigma, (alpha logit)]
  std::vector<double> knots;
  double knots_alpha = 0;
  auto unpack = [&](const std::vector<double>& x) {
    const double alpha = use_content ? a_lo + a_span / (1 + std::exp(-std::clamp(x[std::size_t(J) + 3], -30.0, 30.0)))
                                     : (content.empty() ? 0.0 : opt.min_content_weight);
    if (!(alpha == knots_alpha) || knots.empty()) {  // knots depend on alpha only: reuse them
      std::vector<double> eff(measure.size());
      for (std::size_t i = 0; i < measure.size(); ++i)
        eff[i] = measure[i] - (content.empty() ? 0.0 : alpha * (content[i] - content_mean));
      knots = detail::quantile_knots(std::move(eff), J);
      knots_alpha = alpha;
    }
    std::vector<double> xs(x.begin(), x.begin() + std::ptrdiff_t(J) + 3);
    if (knots.size() < std::size_t(J)) {  // ties collapsed knots: keep the parameters that remain
      std::vector<double> t(xs.begin(), xs.begin() + std::ptrdiff_t(knots.size()));
      t.insert(t.end(), xs.end() - 3, xs.end());
      xs = std::move(t);
    }
    OrderedProbitObserver o = detail::unpack(xs, knots);
    o.content_weight = alpha;
    o.content_mean = content_mean;
    return o;
  };
  auto residuals = [&](const std::vector<double>& x) {
    const OrderedProbitObserver o = unpack(x);
    const auto [sh, agree] = expected_shares(o, measure, content, band);
    std::vector<double> r;
    r.reserve(26);
    for (int b = 0; b < 5; ++b)
      if (has[std::size_t(b)])
        for (int k = 0; k < 5; ++k)
          r.push_back(sh[std::size_t(b)][std::size_t(k)] - target.share[std::size_t(b)][std::size_t(k)]);
    r.push_back(wa * (agree - target.self_agreement));
    return r;
  };

  // Starts: g maps the measure's quantiles onto the latent scale so that, without noise, the
  // pooled vote shares would be the target's (a quantile match); then several noise levels and
  // content weights (the problem has local minima, e.g. sigma -> 0 with the content spread
  // doing all the work).
  std::array<double, 6> cum{};  // pooled target cdf over the fitted stimuli: cum[k] = P(vote <= k)
  {
    std::array<double, 5> pooled{};
    double n = 0;
    for (int b : band)
      if (b >= 1 && b <= 5) {
        for (int k = 0; k < 5; ++k) pooled[std::size_t(k)] += target.share[std::size_t(b - 1)][std::size_t(k)];
        n += 1;
      }
    for (int k = 0; k < 5; ++k) cum[std::size_t(k + 1)] = cum[std::size_t(k)] + (n > 0 ? pooled[std::size_t(k)] / n : 0.2);
  }
  auto quantile_to_latent = [&](double u) {  // 0.5 .. 5.5, through t_k = k + 0.5 at cum[k]
    for (int k = 1; k <= 5; ++k)
      if (u <= cum[std::size_t(k)] || k == 5) {
        const double lo = cum[std::size_t(k - 1)], hi = cum[std::size_t(k)];
        return double(k) - 0.5 + (hi > lo ? std::clamp((u - lo) / (hi - lo), 0.0, 1.0) : 0.5);
      }
    return 5.5;
  };
  CalibrationResult res;
  std::vector<double> best;
  double fbest = std::numeric_limits<double>::infinity();
  const std::vector<double> alphas = use_content ? std::vector<double>{std::clamp(0.0, a_lo, a_lo + a_span), 0.6}
                                                 : std::vector<double>{0.0};
  for (const double alpha0 : alphas)
    for (const double sigma0 : {0.2, 0.5, 0.9}) {
      std::vector<double> x(std::size_t(J) + (use_content ? 4 : 3), 0.0);
      double prev = 0;
      for (int j = 0; j < J; ++j) {
        const double y = quantile_to_latent((j + 0.5) / J);
        x[std::size_t(j)] = j == 0 ? y : std::log(std::max(1e-3, y - prev));
        prev = j == 0 ? y : prev + std::exp(x[std::size_t(j)]);
      }
      x[std::size_t(J) + 2] = std::log(sigma0);
      if (use_content) {
        const double u = std::clamp((alpha0 - a_lo) / a_span, 0.01, 0.99);
        x[std::size_t(J) + 3] = std::log(u / (1 - u));
      }
      double f = 0;
      x = detail::levenberg_marquardt(residuals, x, opt.max_iterations, f, res.evaluations);
      if (f < fbest) fbest = f, best = x;
    }
  res.observer = unpack(best);
  res.loss = fbest;
  const auto [sh, agree] = expected_shares(res.observer, measure, content, band);
  res.share = sh;
  res.self_agreement = agree;
  for (int b : band) if (b >= 1 && b <= 5) ++res.band_count[std::size_t(b - 1)];
  for (int b = 0; b < 5; ++b)
    if (res.band_count[std::size_t(b)])
      for (int k = 0; k < 5; ++k)
        res.max_share_error = std::max(res.max_share_error, std::abs(sh[std::size_t(b)][std::size_t(k)] -
                                                                     target.share[std::size_t(b)][std::size_t(k)]));
  return res;
}

/// @brief Bayes ceiling: the best achievable expected exact accuracy of any predictor that knows
/// the stimulus, mean over stimuli of max_k P(vote = k). NaN for no stimuli.
inline double bayes_ceiling(std::span<const VoteProbs> probs) {
  if (probs.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (const auto& p : probs) s += *std::max_element(p.begin(), p.end());
  return s / double(probs.size());
}

/// @brief Expected self-agreement over stimuli (two independent votes per stimulus).
struct ExpectedAgreement {
  double exact = 0;       ///< mean of sum_k P_k^2
  double within_one = 0;  ///< mean P(|v1 - v2| <= 1)
  double rmse = 0;        ///< sqrt(mean E[(v1 - v2)^2])
};

/// @brief Expected self-agreement of an observer with the given vote probabilities.
inline ExpectedAgreement expected_agreement(std::span<const VoteProbs> probs) {
  ExpectedAgreement a;
  if (probs.empty()) return a;
  double sq = 0;
  for (const auto& p : probs) {
    a.exact += expected_exact_agreement(p);
    a.within_one += expected_within_one(p);
    sq += expected_squared_difference(p);
  }
  const double n = double(probs.size());
  a.exact /= n;
  a.within_one /= n;
  a.rmse = std::sqrt(sq / n);
  return a;
}

}  // namespace vitiq::data
