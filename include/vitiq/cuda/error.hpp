// vitiq/cuda/error.hpp -- error checking of every CUDA runtime and cuBLAS call: a failed call
// throws vitiq::cuda::Error whose message names the call, the source file and line, and the
// error's name and description.
//
// Compiles only under nvcc (the CUDA language); the CPU build never includes it.
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda/error.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language)"
#endif

#include <cstdio>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "vitiq/error.hpp"

namespace vitiq::cuda {

/// @brief A CUDA runtime or cuBLAS call failed, or no CUDA device is usable.
///
/// what() names the call, the file and line of the call site and the error, e.g.
/// "vitiq/cuda: cudaMalloc(&p, bytes) failed (include/vitiq/cuda/context.hpp:52): out of memory
/// [cudaErrorMemoryAllocation]".
class Error : public vitiq::Error {
 public:
  using vitiq::Error::Error;
};

/// @brief Throw Error unless `status` is cudaSuccess.
/// @param status the value the call returned
/// @param call   the call's text (the macro VITIQ_CUDA_CHECK passes it)
/// @param file   source file of the call
/// @param line   source line of the call
/// @throws Error naming the call and the error
inline void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error, so later checks report their own
  throw Error(std::string("vitiq/cuda: ") + call + " failed (" + file + ":" + std::to_string(line) +
              "): " + cudaGetErrorString(status) + " [" + cudaGetErrorName(status) + "]");
}

/// @brief Throw Error unless `status` is CUBLAS_STATUS_SUCCESS.
/// @param status the value the call returned
/// @param call   the call's text (the macro VITIQ_CUBLAS_CHECK passes it)
/// @param file   source file of the call
/// @param line   source line of the call
/// @throws Error naming the call and the cuBLAS status
inline void check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(std::string("vitiq/cuda: ") + call + " failed (" + file + ":" + std::to_string(line) +
              "): " + cublasGetStatusString(status) + " [" + cublasGetStatusName(status) + "]");
}

/// @brief For destructors, which must not throw: print a failed call on stderr (except while
/// the CUDA runtime is being unloaded at program exit, when freeing is moot).
/// @param status the value the call returned
/// @param call   the call's text
inline void report_unchecked(cudaError_t status, const char* call) noexcept {
  if (status == cudaSuccess || status == cudaErrorCudartUnloading) return;
  std::fprintf(stderr, "vitiq/cuda: %s failed: %s [%s]\n", call, cudaGetErrorString(status),
               cudaGetErrorName(status));
}

}  // namespace vitiq::cuda

/// Check a CUDA runtime call: throws vitiq::cuda::Error naming the call, file and line.
#define VITIQ_CUDA_CHECK(call) ::vitiq::cuda::check((call), #call, __FILE__, __LINE__)
/// Check a cuBLAS call: throws vitiq::cuda::Error naming the call, file and line.
#define VITIQ_CUBLAS_CHECK(call) ::vitiq::cuda::check((call), #call, __FILE__, __LINE__)
