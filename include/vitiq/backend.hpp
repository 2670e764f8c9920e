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
template <class T>
struct AdamStep {
  T lr;            ///< learning rate of this step
  T beta1, beta2;  ///< moment decay rates
  T eps;           ///< added to the bias-corrected root of v
  T weight_decay;  ///< L2 (Adam) or decoupled (AdamW) decay of this range
  bool decoupled;  ///< true: AdamW, p *= 1 - lr * wd; false: Adam, g += wd * p
  T bias_correction1;  ///< 1 - beta1^t
  T bias_correction2;  ///< 1 - beta2^t
};

/// @brief The contract a backend type fulfils (checked where the model is instantiated).
/// See CpuBackend for the documentation of each operation.
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
