// vitiq/train/linear_probe.hpp -- fit a model's classification head on frozen features: the
// "linear probe" half of LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features
// and Underperform Out-of-Distribution", arXiv 2202.10054).
//
// A per-observer model starts from AIO0, whose head maps features onto JPEG bands, not onto this
// observer's votes. Fine-tuning everything from that head first spends its few steps (a session
// holds 300 votes) undoing the head and disturbs the features on the way. The probe instead fits
// the head alone, as a multinomial logistic regression on the frozen head inputs of every view of
// the observer's training stimuli, which is convex and takes seconds; fine-tuning then starts from
// a head that already speaks the observer's scale.
//
//   extract_features(model, source)   head inputs LayerNorm(pooled) of every view   [views, D]
//   fit_head(features, targets, ...)  W [K, D], b [K] minimising the weighted soft-label cross-entropy
//   set_head(model, head)             write W, b into the model's parameters
//
// The loss matches training and evaluation: each view of stimulus i is a sample with stimulus i's
// target distribution (views weighted 1 / views(i), so every stimulus counts by its weight), and the
// model's prediction for a stimulus is the mean of its views' probabilities.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/model/param_layout.hpp"
#include "vitiq/train/trainer.hpp"

namespace vitiq {

/// @brief Head inputs of every view of every stimulus of an EvalSource.
struct ProbeFeatures {
  int dim = 0;                          ///< D, the feature width
  std::vector<double> x;                ///< [views, D], stimulus by stimulus, views in source order
  std::vector<std::size_t> first_view;  ///< [stimuli + 1]: views of stimulus i are first_view[i] .. first_view[i+1]-1
  /// @brief Number of stimuli.
  std::size_t stimuli() const { return first_view.empty() ? 0 : first_view.size() - 1; }
  /// @brief Number of views over all stimuli.
  std::size_t views() const { return first_view.empty() ? 0 : first_view.back(); }
};

/// @brief Forward every view of `source` (inference mode, batches of up to `max_batch` views that may
/// span several stimuli) and keep the head inputs LayerNorm(pooled) [views, D].
template <class Model>
ProbeFeatures extract_features(Model& model, EvalSource<typename Model::T>& source, int max_batch = 64) {
  using T = typename Model::T;
  constexpr auto C = Model::config;
  ProbeFeatures f;
  f.dim = C.dim;
  f.first_view.assign(source.size() + 1, 0);
  for (std::size_t i = 0; i < source.size(); ++i) f.first_view[i + 1] = f.first_view[i] + source.views(i);
  f.x.resize(f.views() * std::size_t(C.dim));
  detail::forward_views(model, source, max_batch, [&](std::size_t first_view, std::size_t, const std::size_t*, const auto&) {
    const std::vector<T> feat = model.head_features_to_host();  // [nb, D]
    double* dst = f.x.data() + first_view * std::size_t(C.dim);
    for (std::size_t k = 0; k < feat.size(); ++k) dst[k] = double(feat[k]);
  });
  return f;
}

/// @brief A classification head: logits = x W^T + b.
struct LinearHead {
  int classes = 0;        ///< K
  int dim = 0;            ///< D
  std::vector<double> w;  ///< [K, D]
  std::vector<double> b;  ///< [K]
};

/// @brief Options of fit_head().
struct ProbeOptions {
  int iterations = 300;     ///< full-batch Adam steps (the problem is convex; 300 reach a flat loss)
  double lr = 0.05;         ///< peak step size, cosine-decayed to 1 % over the iterations
  double l2 = 1e-4;         ///< L2 penalty (l2 / 2) ||W||^2 on the weights (not the biases)
};

/// @brief Result of fit_head(): the head and the training loss before and after.
struct ProbeResult {
  LinearHead head;          ///< the fitted head
  double initial_loss = 0;  ///< weighted cross-entropy (+ penalty) of the initial head
  double final_loss = 0;    ///< the same after fitting
};

namespace detail {
/// Weighted soft-label cross-entropy of head `h` over all views, its gradient into gw [K, D], gb [K].
inline double probe_loss(const ProbeFeatures& f, const std::vector<double>& targets, const std::vector<double>& weights,
                         const LinearHead& h, double l2, std::vector<double>* gw, std::vector<double>* gb) {
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int K = h.classes, D = h.dim;
  const Eigen::Index n = Eigen::Index(f.views());
  Eigen::Map<const RowMat> X(f.x.data(), n, D);
  Eigen::Map<const RowMat> W(h.w.data(), K, D);
  RowMat Z = X * W.transpose();  // [n, K]
  for (int k = 0; k < K; ++k) Z.col(k).array() += h.b[std::size_t(k)];
  RowMat G(n, K);                // d loss / d logits, [n, K]
  double loss = 0, total_weight = 0;
  for (std::size_t i = 0; i < f.stimuli(); ++i) total_weight += weights[i];
  for (std::size_t i = 0; i < f.stimuli(); ++i) {
    const std::size_t v0 = f.first_view[i], v1 = f.first_view[i + 1];
    const double wv = weights[i] / total_weight / double(v1 - v0);
    const double* t = targets.data() + i * std::size_t(K);
    for (std::size_t v = v0; v < v1; ++v) {
      const Eigen::Index r = Eigen::Index(v);
      const double mx = Z.row(r).maxCoeff();
      double sum = 0;
      for (int k = 0; k < K; ++k) sum += std::exp(Z(r, k) - mx);
      const double lse = mx + std::log(sum);
      for (int k = 0; k < K; ++k) {
        const double p = std::exp(Z(r, k) - lse);
        loss -= wv * t[k] * (Z(r, k) - lse);
        G(r, k) = wv * (p - t[k]);  // targets sum to 1
      }
    }
  }
  loss += 0.5 * l2 * W.squaredNorm();
  if (gw) {
    Eigen::Map<RowMat> GW(gw->data(), K, D);
    GW.noalias() = G.transpose() * X;
    GW += l2 * W;
    for (int k = 0; k < K; ++k) (*gb)[std::size_t(k)] = G.col(k).sum();
  }
  return loss;
}
}  // namespace detail

/// @brief Fit a linear head on frozen features by full-batch Adam on the weighted soft-label
/// cross-entropy (+ L2 on W).
/// @param features  from extract_features()
/// @param targets   [stimuli, K] target distributions (rows sum to 1), e.g. make_target() of the vote,
///                  or the mean of the targets of several votes on the same stimulus
/// @param weights   [stimuli] non-negative weights (e.g. the number of votes), not all zero
/// @param init      starting head (e.g. the model's current one), [K, D] and [K]
/// @param options   iterations, step size, penalty
/// @throws std::invalid_argument on inconsistent sizes or weights
inline ProbeResult fit_head(const ProbeFeatures& features, const std::vector<double>& targets,
                            const std::vector<double>& weights, const LinearHead& init, const ProbeOptions& options = {}) {
  const int K = init.classes, D = init.dim;
  const std::size_t n = features.stimuli();
  if (n == 0) throw std::invalid_argument("vitiq::fit_head: no stimuli");
  if (D != features.dim || init.w.size() != std::size_t(K) * std::size_t(D) || init.b.size() != std::size_t(K))
    throw std::invalid_argument("vitiq::fit_head: the head does not match the features (D = " + std::to_string(features.dim) + ")");
  if (targets.size() != n * std::size_t(K) || weights.size() != n)
    throw std::invalid_argument("vitiq::fit_head: targets must be [stimuli, K] and weights [stimuli]");
  double total = 0;
  for (double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) throw std::invalid_argument("vitiq::fit_head: weights must be finite and >= 0");
    total += w;
  }
  if (!(total > 0)) throw std::invalid_argument("vitiq::fit_head: the weights sum to 0");

  ProbeResult r;
  r.head = init;
  std::vector<double> gw(init.w.size()), gb(init.b.size());
  std::vector<double> mw(gw.size(), 0), vw(gw.size(), 0), mb(gb.size(), 0), vb(gb.size(), 0);
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  r.initial_loss = detail::probe_loss(features, targets, weights, r.head, options.l2, nullptr, nullptr);
  auto adam = [&](std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m, std::vector<double>& v,
                  double lr, double c1, double c2) {
    for (std::size_t k = 0; k < p.size(); ++k) {
      m[k] = b1 * m[k] + (1 - b1) * g[k];
      v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
      p[k] -= lr * (m[k] / c1) / (std::sqrt(v[k] / c2) + eps);
    }
  };
  for (int it = 0; it < options.iterations; ++it) {
    detail::probe_loss(features, targets, weights, r.head, options.l2, &gw, &gb);
    const double frac = options.iterations > 1 ? double(it) / double(options.iterations - 1) : 1.0;
    const double lr = options.lr * (0.01 + 0.99 * 0.5 * (1 + std::cos(3.141592653589793 * frac)));
    const double c1 = 1 - std::pow(b1, it + 1), c2 = 1 - std::pow(b2, it + 1);
    adam(r.head.w, gw, mw, vw, lr, c1, c2);
    adam(r.head.b, gb, mb, vb, lr, c1, c2);
  }
  r.final_loss = detail::probe_loss(features, targets, weights, r.head, options.l2, nullptr, nullptr);
  return r;
}

/// @brief The model's current head (W [K, D], b [K]) in double.
template <class Model>
LinearHead get_head(const Model& model) {
  constexpr auto C = Model::config;
  constexpr auto o = param_offsets<C>();
  const auto p = model.parameters_to_host();
  LinearHead h{C.num_classes, C.dim, {}, {}};
  h.w.assign(p.begin() + std::ptrdiff_t(o.head_w), p.begin() + std::ptrdiff_t(o.head_w + std::size_t(C.num_classes * C.dim)));
  h.b.assign(p.begin() + std::ptrdiff_t(o.head_b), p.begin() + std::ptrdiff_t(o.head_b + std::size_t(C.num_classes)));
  return h;
}

/// @brief Write a head into the model's parameters (the rest stays as it is).
/// @throws std::invalid_argument when the head's shape is not [K, D] of the model
template <class Model>
void set_head(Model& model, const LinearHead& head) {
  using T = typename Model::T;
  constexpr auto C = Model::config;
  constexpr auto o = param_offsets<C>();
  if (head.classes != C.num_classes || head.dim != C.dim)
    throw std::invalid_argument("vitiq::set_head: the head is [" + std::to_string(head.classes) + ", " +
                                std::to_string(head.dim) + "], the model's [" + std::to_string(C.num_classes) + ", " +
                                std::to_string(C.dim) + "]");
  auto p = model.parameters_to_host();
  for (std::size_t k = 0; k < head.w.size(); ++k) p[o.head_w + k] = T(head.w[k]);
  for (std::size_t k = 0; k < head.b.size(); ++k) p[o.head_b + k] = T(head.b[k]);
  model.set_parameters(p);
}

/// @brief Probabilities [stimuli, K] of a head on features: softmax per view, averaged over each
/// stimulus' views (what predict_probabilities() gives for a model with this head).
inline std::vector<double> probe_probabilities(const ProbeFeatures& f, const LinearHead& h) {
  const int K = h.classes, D = h.dim;
  std::vector<double> out(f.stimuli() * std::size_t(K), 0.0), z(static_cast<std::size_t>(K));
  for (std::size_t i = 0; i < f.stimuli(); ++i) {
    const std::size_t v0 = f.first_view[i], v1 = f.first_view[i + 1];
    for (std::size_t v = v0; v < v1; ++v) {
      const double* x = f.x.data() + v * std::size_t(D);
      double mx = -std::numeric_limits<double>::infinity();
      for (int k = 0; k < K; ++k) {
        double s = h.b[std::size_t(k)];
        for (int d = 0; d < D; ++d) s += h.w[std::size_t(k) * std::size_t(D) + std::size_t(d)] * x[d];
        z[std::size_t(k)] = s;
        mx = std::max(mx, s);
      }
      double sum = 0;
      for (auto& e : z) sum += (e = std::exp(e - mx));
      for (int k = 0; k < K; ++k) out[i * std::size_t(K) + std::size_t(k)] += z[std::size_t(k)] / sum / double(v1 - v0);
    }
  }
  return out;
}

}  // namespace vitiq
