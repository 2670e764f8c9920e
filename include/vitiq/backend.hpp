// vitiq/backend.hpp -- the backend contract every backend type satisfies, and the small value
// types its operations take.
//
// The model, the losses and the optimisers are written once against this contract; a backend is a
// type (CpuBackend<float>, CpuBackend<double>, later CudaBackend<float>) whose instance carries the
// execution context. All tensor arguments are raw pointers into backend memory ("device" pointers;
// host memory on the CPU backend), row-major, with the shape given in a comment and the sizes as
// arguments. Argument order: outputs first, then inputs, then parameters, then sizes.
//
// Gradient accumulation rule (followed by every backward op, see docs/design.md):
//   * parameter gradients ACCUMULATE (+=),
//   * activation gradients are ASSIGNED (=), unless the op's comment says otherwise.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "vitiq/config.hpp"

namespace vitiq {

/// @brief How attention_softmax_forward obtains the temperature tau of each head.
enum class TemperatureMode {
  shared_log,  ///< tau = exp(param[0]) for every head
  per_head,    ///< tau_j = param[j]
  fixed,       ///< tau = the fixed value given (plain MHSA, no parameter)
};

/// @brief One Adam/AdamW update's hyper-parameters, bias corrections already computed.
///
/// Built by Adam::step() for each contiguous range of the parameter layout and passed to the
/// backend's adam_update().
/// @tparam T the backend's scalar type
template <class T>
struct AdamStep {
  T lr;            ///< learning rate of this step
  /// decay rate of the first moment m
  T beta1, beta2;  ///< decay rate of the second moment v
  T eps;           ///< added to the bias-corrected root of v
  T weight_decay;  ///< L2 (Adam) or decoupled (AdamW) decay of this range
  bool decoupled;  ///< true: AdamW, p *= 1 - lr * wd; false: Adam, g += wd * p
  T bias_correction1;  ///< 1 - beta1^t
  T bias_correction2;  ///< 1 - beta2^t
};

/// @brief The contract a backend type fulfils (checked where the model is instantiated).
/// See CpuBackend for the documentation of each operation.
///
/// The concept checks a floating-point `Scalar`, a `Buffer` type, `allocate(n)` returning a
/// Buffer, `to_device`, `to_host`, `fill`, `copy`, row-major `gemm` and `synchronize`. The model,
/// losses and optimisers also need `Buffer::data()` (an owning, move-only buffer) and the ops
/// listed in docs/design.md, which the concept does not spell out.
/// @tparam B the candidate backend type
template <class B>
concept Backend = requires(B b, typename B::Scalar* p, const typename B::Scalar* cp, std::size_t n) {
  typename B::Scalar;
  typename B::Buffer;
  requires std::floating_point<typename B::Scalar>;
  { b.allocate(n) } -> std::same_as<typename B::Buffer>;
  b.to_device(p, cp, n);
  b.to_host(p, cp, n);
  b.fill(p, typename B::Scalar{}, n);
  b.copy(p, cp, n);
  b.gemm(false, false, 1, 1, 1, typename B::Scalar{1}, cp, 1, cp, 1, typename B::Scalar{0}, p, 1);
  b.synchronize();
};

}  // namespace vitiq
