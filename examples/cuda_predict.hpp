// examples/cuda_predict.hpp -- the CUDA path of vitiq-predict, seen from plain C++: a model of a
// named preset on the GPU behind a small interface, so that predict.cpp (compiled by the C++
// compiler) never includes a CUDA header. Implemented in examples/cuda_predict.cu (nvcc), linked
// into vitiq-predict only where CMake found CUDA (compile definition VITIQ_HAS_CUDA).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace vitiq_examples {

/// A model on the GPU: forward passes from host images to host logits.
class DeviceForward {
 public:
  virtual ~DeviceForward() = default;
  /// Logits [B, K] (host memory, valid until the next call) of images [B, C, S, S] (host memory).
  virtual std::span<const float> forward(std::span<const float> images, std::ptrdiff_t batch) = 0;
};

/// "" when a CUDA device is usable, else why not ("no CUDA device found (...)").
std::string cuda_unavailable_reason();

/// Name and compute capability of the device the models run on.
std::string cuda_device_description();

/// ViT<preset, CudaBackend<float>> with the given parameters [num_params] (host memory, in the
/// parameter layout's order, e.g. a CPU model's parameters_to_host()).
/// @throws vitiq::Error for an unknown preset, a parameter count that does not match, or a CUDA failure
std::unique_ptr<DeviceForward> make_cuda_forward(std::string_view preset, std::span<const float> parameters);

}  // namespace vitiq_examples
