// vitiq/cuda/rng.hpp -- the counter-based hash of vitiq/cpu/rng.hpp (mix64, uniform01), callable
// from device code, so dropout masks drawn on the GPU equal the CPU backend's bit for bit.
//
// The arithmetic is a copy of the CPU functions: 64-bit integer operations and one exact
// conversion to double. tests/cuda/test_cuda_ops.cu checks both copies against each other on the
// host and, on a GPU, the masks of CudaBackend::dropout_mask against CpuBackend::dropout_mask.
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda/rng.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language)"
#endif

#include <cstdint>

namespace vitiq::cuda {

/// @brief SplitMix64 finaliser, identical to vitiq::mix64, for host and device code.
/// @param z the input word
/// @return vitiq::mix64(z)
__host__ __device__ constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// @brief A uniform double in [0, 1) from (seed, stream, counter), identical to vitiq::uniform01.
/// @param seed    the run's dropout seed
/// @param stream  selects an independent sequence (one per masked tensor and pass)
/// @param counter index within the sequence (the element index)
/// @return a multiple of 2^-53 in [0, 1)
__host__ __device__ constexpr double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter) {
  const std::uint64_t h = mix64(mix64(seed ^ mix64(stream)) + counter);
  return double(h >> 11) * 0x1.0p-53;
}

}  // namespace vitiq::cuda
