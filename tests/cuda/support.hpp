// tests/cuda/support.hpp -- helpers of the CUDA tests: random host data, copies to and from a
// CudaBackend, and error measures for comparing the CPU and CUDA backends.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitiq/cuda.hpp"

namespace vitiq_test {

/// Uniform random values in [lo, hi) from vitiq::Rng(seed).
template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  vitiq::Rng rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = T(rng.uniform(lo, hi));
  return v;
}

/// A device copy of host data on a CudaBackend.
template <class T>
struct DeviceCopy {
  vitiq::CudaBackend<T>* be;
  vitiq::cuda::DeviceBuffer<T> buf;
  DeviceCopy(vitiq::CudaBackend<T>& b, const std::vector<T>& host) : be(&b), buf(b.allocate(host.size())) {
    b.to_device(buf.data(), host.data(), host.size());
  }
  T* get() { return buf.data(); }
  std::vector<T> host() const {
    std::vector<T> out(buf.size());
    be->to_host(out.data(), buf.data(), out.size());
    return out;
  }
};

/// ||a - b|| / ||b|| (||a - b|| when b is zero).
template <class T, class U>
double rel_error(const std::vector<T>& a, const std::vector<U>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

/// max_i |a_i - b_i|.
template <class T>
double max_abs_error(const std::vector<T>& a, const std::vector<T>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

/// Relative tolerance of an op's CPU/GPU agreement: float ~ a few ulps of accumulated rounding,
/// double near machine precision.
template <class T>
constexpr double op_tolerance() {
  return sizeof(T) == 4 ? 2e-6 : 1e-13;
}

}  // namespace vitiq_test
