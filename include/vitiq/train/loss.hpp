// vitiq/train/loss.hpp -- training targets (hard, smoothed, Gaussian soft labels) and the two
// losses used for artificial observers: cross-entropy against a target distribution, and the
// squared error of the expected vote (a regression option).
//
// Votes are 1-based (1 = bad .. K = excellent); class index k corresponds to vote k + 1.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/backend.hpp"

namespace vitiq {

/// @brief The form of the training target built from a vote.
enum class LabelForm {
  hard,      ///< one-hot on the vote
  smoothed,  ///< (1 - eps) one-hot + eps / K (PyTorch's label_smoothing)
  gaussian,  ///< t_k proportional to exp(-(k - v)^2 / (2 s^2)), the original project's soft labels
};

/// @brief Parameters of the target construction.
struct LabelOptions {
  /// Which target distribution make_target() builds.
  LabelForm form = LabelForm::gaussian;
  double smoothing = 0.1;  ///< eps for LabelForm::smoothed
  double sigma = 0.49;     ///< s for LabelForm::gaussian
};

/// @brief Write the target distribution [K] for a vote in [1, K] (fractional votes allowed for
/// gaussian, e.g. a MOS).
/// @tparam T   the scalar type of the target
/// @param out  the target [K] (assigned; sums to 1)
/// @param vote 1-based vote in [1, K]; an integer for LabelForm::hard and LabelForm::smoothed
/// @param K    number of classes
/// @param opt  which form, and its smoothing or sigma
/// @throws std::invalid_argument when the vote is outside [1, K] (or NaN), or not an integer for
/// the hard and smoothed forms
template <class T>
void make_target(T* out, double vote, int K, const LabelOptions& opt = {}) {
  if (!(vote >= 1.0 && vote <= double(K)))
    throw std::invalid_argument("vitiq::make_target: vote " + std::to_string(vote) + " outside [1, " +
                                std::to_string(K) + "]");
  if (opt.form == LabelForm::gaussian) {
    double sum = 0;
    std::vector<double> t(static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) {
      const double diff = double(k + 1) - vote;
      t[std::size_t(k)] = std::exp(-diff * diff / (2.0 * opt.sigma * opt.sigma));
      sum += t[std::size_t(k)];
    }
    for (int k = 0; k < K; ++k) out[k] = T(t[std::size_t(k)] / sum);
    return;
  }
  const long v = std::lround(vote);
  if (double(v) != vote) throw std::invalid_argument("vitiq::make_target: hard and smoothed labels need an integer vote");
  const double eps = opt.form == LabelForm::smoothed ? opt.smoothing : 0.0;
  for (int k = 0; k < K; ++k) out[k] = T((k + 1 == v ? 1.0 - eps : 0.0) + eps / K);
}

/// @brief Targets [B, K] for votes [B].
/// @tparam T    the scalar type of the targets
/// @param votes 1-based votes [B]
/// @param K     number of classes
/// @param opt   as in make_target()
/// @return the targets [B, K], row b built by make_target() from votes[b]
/// @throws std::invalid_argument as make_target()
template <class T>
std::vector<T> make_targets(std::span<const double> votes, int K, const LabelOptions& opt = {}) {
  std::vector<T> out(votes.size() * std::size_t(K));
  for (std::size_t b = 0; b < votes.size(); ++b) make_target(out.data() + b * std::size_t(K), votes[b], K, opt);
  return out;
}

/// @brief Which loss a Criterion computes.
enum class LossKind {
  cross_entropy,      ///< mean over the batch of -sum_k t_k log p_k; targets [B, K]
  expected_vote_mse,  ///< mean over the batch of (sum_k (k+1) p_k - v)^2; targets are votes [B]
};

/// @brief Computes a loss and its gradient w.r.t. the logits on a backend, owning the buffers.
///
/// The buffers are reallocated when B or K changes between calls.
/// @tparam BackendT a type satisfying vitiq::Backend
template <class BackendT>
class Criterion {
 public:
  /// The backend's scalar type.
  using T = typename BackendT::Scalar;
  /// Signed type of sizes.
  using Index = std::ptrdiff_t;

  /// @brief A criterion computing the loss `kind`.
  /// @param kind cross-entropy against distributions, or squared error of the expected vote
  explicit Criterion(LossKind kind = LossKind::cross_entropy) : kind_(kind) {}

  /// @brief Loss of the batch (mean over samples) and, in dlogits(), its gradient.
  ///
  /// The gradient is that of the mean, i.e. scaled by 1/B; pass it to ViT::backward_device().
  /// @param be      the backend the tensors live on
  /// @param logits  [B, K] in backend memory
  /// @param targets [B, K] distributions (cross_entropy) or [B] votes (expected_vote_mse), backend memory
  /// @param B       batch size, >= 1
  /// @param K       number of classes
  /// @return the mean loss, read back to the host
  double forward_backward(BackendT& be, const T* logits, const T* targets, Index B, Index K) {
    if (B != batch_ || K != classes_) {
      loss_ = be.allocate(std::size_t(B));
      probs_ = be.allocate(std::size_t(B * K));
      dlogits_ = be.allocate(std::size_t(B * K));
      host_loss_.resize(std::size_t(B));
      batch_ = B;
      classes_ = K;
    }
    const T scale = T(1) / T(B);
    if (kind_ == LossKind::cross_entropy)
      be.softmax_cross_entropy(loss_.data(), probs_.data(), dlogits_.data(), logits, targets, scale, B, K);
    else
      be.expected_vote_mse(loss_.data(), probs_.data(), dlogits_.data(), logits, targets, scale, B, K);
    be.to_host(host_loss_.data(), loss_.data(), host_loss_.size());
    double sum = 0;
    for (T l : host_loss_) sum += double(l);
    return sum / double(B);
  }

  /// @brief Gradient of the mean loss w.r.t. the logits [B, K], backend memory.
  const T* dlogits() const { return dlogits_.data(); }
  /// @brief Softmax probabilities [B, K] of the last call, backend memory.
  const T* probabilities() const { return probs_.data(); }
  /// @brief Per-sample losses [B] of the last call (host).
  std::span<const T> sample_losses() const { return host_loss_; }
  /// @brief The loss this criterion computes.
  LossKind kind() const { return kind_; }

 private:
  LossKind kind_;
  typename BackendT::Buffer loss_, probs_, dlogits_;
  std::vector<T> host_loss_;
  Index batch_ = 0, classes_ = 0;
};

}  // namespace vitiq
