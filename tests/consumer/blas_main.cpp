// tests/consumer/blas_main.cpp -- built against the installed vitiq::blas: the BLAS GEMM engine is
// there and computes the product the Eigen engine computes.
#include <cmath>
#include <cstdio>
#include <vector>

#include "vitiq/cpu/backend.hpp"

int main() {
  if (!vitiq::blas_available()) {
    std::printf("consumer_blas: vitiq::blas linked, but no BLAS engine\n");
    return 1;
  }
  const int M = 70, N = 90, K = 33;
  std::vector<float> A(M * K), B(K * N), C[2];
  for (int i = 0; i < M * K; ++i) A[i] = float(std::sin(i));
  for (int i = 0; i < K * N; ++i) B[i] = float(std::cos(i));
  vitiq::CpuBackend<float> be;
  for (int e = 0; e < 2; ++e) {
    vitiq::set_gemm_engine(e == 0 ? vitiq::GemmEngine::eigen : vitiq::GemmEngine::blas);
    C[e].assign(M * N, 0.f);
    be.gemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C[e].data(), N);
  }
  double worst = 0;
  for (int i = 0; i < M * N; ++i) worst = std::fmax(worst, std::fabs(C[0][i] - C[1][i]));
  std::printf("consumer_blas: max |eigen - blas| = %.3g\n", worst);
  return worst < 1e-4 ? 0 : 1;
}
