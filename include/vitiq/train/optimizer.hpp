// vitiq/train/optimizer.hpp -- Adam and AdamW over the model's flat buffers with PyTorch's exact
// semantics, parameter groups for weight decay, and gradient-norm clipping.
//
// The moments m and v are flat buffers of the parameter layout; weight decay is switched per
// contiguous range of that layout (Linear weight matrices decay; norms, biases, embeddings and
// temperatures do not, unless AdamOptions::decay_all).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "vitiq/backend.hpp"
#include "vitiq/model/param_layout.hpp"

namespace vitiq {

/// @brief Adam (L2 penalty added to the gradient) or AdamW (decoupled weight decay).
enum class OptimizerKind { adam, adamw };

/// @brief Hyper-parameters of Adam / AdamW (PyTorch's defaults apart from weight_decay).
struct AdamOptions {
  /// Adam (L2 added to the gradient) or AdamW (decoupled decay).
  OptimizerKind kind = OptimizerKind::adamw;
  /// Learning rate used by Adam::step(params, grads).
  double lr = 1e-3;
  /// Decay rate of the first moment m.
  double beta1 = 0.9;
  /// Decay rate of the second moment v.
  double beta2 = 0.999;
  /// Added to the bias-corrected sqrt(v) in the denominator.
  double eps = 1e-8;
  /// Weight decay of the decaying ranges (Linear weights, or all with decay_all).
  double weight_decay = 0.0;
  bool decay_all = false;  ///< false: no decay on norms, biases, embeddings and temperatures
};

/// @brief Adam / AdamW state (m, v, step count) and the update, on backend `BackendT`.
///
/// Keeps a pointer to the backend given at construction, which must outlive the optimiser.
/// @tparam BackendT a type satisfying vitiq::Backend
template <class BackendT>
class Adam {
 public:
  /// The backend's scalar type.
  using T = typename BackendT::Scalar;

  /// @brief Optimiser for a flat buffer of `n` parameters described by `table` (param_table<C>()).
  ///
  /// Moments start at zero and the step count at 0. Adjacent tensors with the same decay setting
  /// are merged into one range, updated by one adam_update() call.
  /// @param backend the backend of the parameter buffer (kept by pointer)
  /// @param table   the named tensors of the layout; they must lie inside [0, n)
  /// @param n       length of the parameter, gradient and moment buffers (ViT::num_params)
  /// @param opt     hyper-parameters
  Adam(BackendT& backend, const std::vector<ParamInfo>& table, std::size_t n, AdamOptions opt = {})
      : be_(&backend), opt_(opt), n_(n), m_(backend.allocate(n)), v_(backend.allocate(n)) {
    for (const ParamInfo& p : table) {
      const bool decay = opt.decay_all || p.kind == ParamKind::weight;
      if (!ranges_.empty() && ranges_.back().decay == decay &&
          ranges_.back().offset + ranges_.back().size == p.offset)
        ranges_.back().size += p.size;
      else
        ranges_.push_back({p.offset, p.size, decay});
    }
  }

  /// @brief One update of params [n] from grads [n] with learning rate `lr` (backend memory).
  ///
  /// Increments steps() first, so the bias corrections use t = steps(). Only the ranges of the
  /// table are updated; the gradients are not modified.
  /// @param params parameters [n] in backend memory, updated in place
  /// @param grads  gradients [n] in backend memory
  /// @param lr     learning rate of this step (e.g. from a schedule); options().lr is not used
  void step(T* params, const T* grads, double lr) {
    ++t_;
    const double bc1 = 1.0 - std::pow(opt_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(opt_.beta2, double(t_));
    for (const Range& r : ranges_) {
      AdamStep<T> s{T(lr), T(opt_.beta1), T(opt_.beta2), T(opt_.eps), T(r.decay ? opt_.weight_decay : 0.0),
                    opt_.kind == OptimizerKind::adamw, T(bc1), T(bc2)};
      be_->adam_update(params + r.offset, grads + r.offset, m_.data() + r.offset, v_.data() + r.offset,
                       r.size, s);
    }
  }
  /// @brief One update with the configured learning rate options().lr.
  /// @param params parameters [n] in backend memory, updated in place
  /// @param grads  gradients [n] in backend memory
  void step(T* params, const T* grads) { step(params, grads, opt_.lr); }

  /// @brief Number of updates so far (PyTorch's `step` state).
  std::int64_t steps() const { return t_; }
  /// @brief Restore the number of updates (resuming from a checkpoint).
  /// @param t the value steps() had when the checkpoint was written
  void set_steps(std::int64_t t) { t_ = t; }
  /// @brief The hyper-parameters.
  const AdamOptions& options() const { return opt_; }
  /// @brief The hyper-parameters, modifiable between steps.
  ///
  /// The weight-decay ranges were fixed at construction: changing decay_all has no effect.
  AdamOptions& options() { return opt_; }
  /// @brief Number of elements n of the buffers.
  std::size_t size() const { return n_; }
  /// @brief First moment [n], backend memory.
  T* m() { return m_.data(); }
  /// @brief First moment [n], backend memory (read-only).
  const T* m() const { return m_.data(); }
  /// @brief Second moment [n], backend memory.
  T* v() { return v_.data(); }
  /// @brief Second moment [n], backend memory (read-only).
  const T* v() const { return v_.data(); }

 private:
  struct Range {
    std::size_t offset, size;
    bool decay;
  };
  BackendT* be_;
  AdamOptions opt_;
  std::size_t n_;
  typename BackendT::Buffer m_, v_;
  std::vector<Range> ranges_;
  std::int64_t t_ = 0;
};

/// @brief Scale grads [n] so that their global L2 norm is at most max_norm, as
/// torch.nn.utils.clip_grad_norm_ does (coefficient max_norm / (norm + 1e-6), applied when < 1).
/// @tparam BackendT a type satisfying vitiq::Backend
/// @param be       the backend the gradients live on
/// @param grads    gradients [n] in backend memory, scaled in place
/// @param n        number of elements
/// @param max_norm the largest L2 norm allowed
/// @return the norm before clipping
template <class BackendT>
double clip_grad_norm(BackendT& be, typename BackendT::Scalar* grads, std::size_t n, double max_norm) {
  const double norm = std::sqrt(be.sum_squares(grads, n));
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) be.scale(grads, typename BackendT::Scalar(coef), n);
  return norm;
}

}  // namespace vitiq
