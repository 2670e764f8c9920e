// tests/support/cpu_kernel_checks.hpp -- what the CPU kernel tests share: random inputs, the
// relative difference they compare with, and scopes that set the thread count and the GEMM engine.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitiq/vitiq.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vitiq_test {

/// n values drawn from N(0, scale^2) by vitiq::Rng(seed).
template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  vitiq::Rng rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = T(scale * rng.normal());
  return v;
}

/// max |a - b| / (max |b| + tiny)
template <class T>
double max_rel_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / (den + 1e-300);
}

/// Sets the backend's thread count for one scope.
struct Threads {
  explicit Threads(int n) {
#if defined(_OPENMP)
    old = omp_get_max_threads();
    omp_set_num_threads(n);
#else
    (void)n;
#endif
  }
  ~Threads() {
#if defined(_OPENMP)
    omp_set_num_threads(old);
#endif
  }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
  int old = 1;
};

/// The GEMM engines this test program has: Eigen, and the BLAS where it links vitiq::blas.
inline std::vector<vitiq::GemmEngine> engines() {
  std::vector<vitiq::GemmEngine> e{vitiq::GemmEngine::eigen};
  if (vitiq::blas_available()) e.push_back(vitiq::GemmEngine::blas);
  return e;
}

/// Sets the GEMM engine for one scope.
struct Engine {
  explicit Engine(vitiq::GemmEngine e) : old(vitiq::gemm_engine()) { vitiq::set_gemm_engine(e); }
  ~Engine() { vitiq::set_gemm_engine(old); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  vitiq::GemmEngine old;
};

}  // namespace vitiq_test
