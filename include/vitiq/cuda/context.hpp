// vitiq/cuda/context.hpp -- device memory and the execution context of the CUDA backend: an
// owning, move-only device buffer; a context with one stream, one cuBLAS handle bound to it and a
// growable scratch area; the process-wide default context; device queries.
//
// Every CUDA and cuBLAS call is checked (vitiq/cuda/error.hpp). Everything the backend does is
// queued on the context's stream, so the order of the calls is the order of the work; to_host()
// and the ops that return a value to the host synchronise that stream.
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda/context.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language)"
#endif

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "vitiq/cuda/error.hpp"

namespace vitiq::cuda {

/// @brief Number of CUDA devices usable by this process; 0 when there is none or the driver
/// cannot be reached (never throws).
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

/// @brief Why no device is usable ("" when one is): the runtime's answer to cudaGetDeviceCount.
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device found (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
  }
  return n == 0 ? "no CUDA device found (cudaGetDeviceCount returned 0)" : "";
}

/// @brief "NAME (compute capability X.Y, N GiB)" of device `device`.
/// @param device the device ordinal
/// @throws Error when the device cannot be queried
inline std::string device_description(int device) {
  cudaDeviceProp p{};
  VITIQ_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return std::string(p.name) + " (compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
         ", " + std::to_string(p.totalGlobalMem >> 30) + " GiB)";
}

/// @brief An owning array of `n` elements of device memory; move-only.
///
/// The Buffer type of CudaBackend. An empty buffer (default-constructed, or n = 0) has
/// data() == nullptr. The destructor frees the memory (cudaFree, which waits for the device).
/// @tparam T the element type
template <class T>
class DeviceBuffer {
 public:
  /// @brief An empty buffer.
  DeviceBuffer() = default;
  /// @brief Allocate n elements and queue their zero-filling on `stream`.
  /// @param n      number of elements
  /// @param stream the stream that zero-fills them (work queued later on it sees zeros)
  /// @throws Error when the allocation fails
  DeviceBuffer(std::size_t n, cudaStream_t stream) : size_(n) {
    if (n == 0) return;
    void* p = nullptr;
    VITIQ_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    data_ = static_cast<T*>(p);
    VITIQ_CUDA_CHECK(cudaMemsetAsync(data_, 0, n * sizeof(T), stream));
  }
  /// @brief Take over another buffer's memory (the other becomes empty).
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  /// @brief Free this buffer's memory and take over another's.
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  /// @brief Frees the memory.
  ~DeviceBuffer() { release(); }

  /// @brief First element, device memory (nullptr when empty).
  T* data() { return data_; }
  /// @brief First element, device memory (nullptr when empty).
  const T* data() const { return data_; }
  /// @brief Number of elements.
  std::size_t size() const { return size_; }

 private:
  void release() noexcept {
    if (data_) report_unchecked(cudaFree(data_), "cudaFree (DeviceBuffer)");
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// @brief How cuBLAS may compute float GEMMs.
enum class MathMode {
  fp32,      ///< true float32 (CUBLAS_DEFAULT_MATH: no TF32); the default, the verified mode
  tf32,      ///< TF32 tensor cores for float GEMMs (CUBLAS_TF32_TENSOR_OP_MATH): faster, ~1e-3 relative
  pedantic,  ///< CUBLAS_PEDANTIC_MATH: prescribed precision in every phase (debugging)
};

/// @brief The execution context of the CUDA backend: a device, a stream, a cuBLAS handle bound to
/// the stream, and scratch memory for reductions and pointer arrays.
///
/// Not thread-safe: one host thread queues work on a context at a time. Several CudaBackend
/// instances (a model, its optimiser, a loss) share one context through a std::shared_ptr.
class Context {
 public:
  /// @brief A context on `device` with a new non-blocking stream and cuBLAS handle, float GEMMs
  /// in MathMode::fp32 (TF32 off). The environment variable VITIQ_CUDA_TF32=1 selects
  /// MathMode::tf32 instead; VITIQ_CUDA_SYNC=1 makes every op wait for its kernels and check
  /// them (slow; for locating a failing kernel).
  /// @param device the device ordinal (made current on this thread)
  /// @throws Error when no CUDA device is found, or a call fails
  explicit Context(int device = 0) : device_(device) {
    if (const std::string why = no_device_reason(); !why.empty()) throw Error("vitiq/cuda: " + why);
    VITIQ_CUDA_CHECK(cudaSetDevice(device));
    VITIQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      VITIQ_CUBLAS_CHECK(cublasCreate(&handle_));
      VITIQ_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
      VITIQ_CUBLAS_CHECK(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST));
      const char* tf32 = std::getenv("VITIQ_CUDA_TF32");
      set_math_mode(tf32 && std::string(tf32) == "1" ? MathMode::tf32 : MathMode::fp32);
      const char* sync = std::getenv("VITIQ_CUDA_SYNC");
      sync_each_op_ = sync && std::string(sync) == "1";
    } catch (...) {
      destroy();
      throw;
    }
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  /// @brief Waits for the stream, then destroys the handle and the stream.
  ~Context() { destroy(); }

  /// @brief The process-wide context on device 0, created by the first call (shared by every
  /// default-constructed CudaBackend) and kept until the process ends.
  /// @throws Error when no CUDA device is found (a later call tries again)
  static std::shared_ptr<Context> shared_default() {
    static std::mutex mutex;
    // Deliberately never destroyed: destroying a cuBLAS handle during static destruction can run
    // after the CUDA runtime has been unloaded. The driver reclaims everything at exit.
    static auto* ctx = new std::shared_ptr<Context>();
    std::lock_guard<std::mutex> lock(mutex);
    if (!*ctx) *ctx = std::make_shared<Context>(0);
    return *ctx;
  }

  /// @brief The device ordinal.
  int device() const { return device_; }
  /// @brief The stream every op of the backend is queued on.
  cudaStream_t stream() const { return stream_; }
  /// @brief The cuBLAS handle, bound to stream().
  cublasHandle_t cublas() const { return handle_; }

  /// @brief Choose how float GEMMs are computed (see MathMode); double GEMMs are unaffected.
  /// @param mode fp32 (default), tf32 or pedantic
  /// @throws Error when cuBLAS refuses the mode
  void set_math_mode(MathMode mode) {
    const cublasMath_t m = mode == MathMode::tf32       ? CUBLAS_TF32_TENSOR_OP_MATH
                           : mode == MathMode::pedantic ? CUBLAS_PEDANTIC_MATH
                                                        : CUBLAS_DEFAULT_MATH;
    VITIQ_CUBLAS_CHECK(cublasSetMathMode(handle_, m));
    mode_ = mode;
  }
  /// @brief The current MathMode.
  MathMode math_mode() const { return mode_; }

  /// @brief Wait for all work queued on the stream; reports an asynchronous kernel error.
  /// @throws Error when queued work failed
  void synchronize() const { VITIQ_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  /// @brief True when VITIQ_CUDA_SYNC=1: each op synchronises after its launches.
  bool sync_each_op() const { return sync_each_op_; }
  /// @brief Turn per-op synchronisation on or off (see sync_each_op()).
  /// @param on true to wait for and check every kernel as it is launched
  void set_sync_each_op(bool on) { sync_each_op_ = on; }

  /// @brief Check the last launch (named `what`): a launch error at once, an execution error when
  /// sync_each_op() is on.
  /// @param what the kernel's name, for the message
  /// @param file source file of the launch
  /// @param line source line of the launch
  /// @throws Error when the launch (or, with sync_each_op(), the kernel) failed
  void check_launch(const char* what, const char* file, int line) const {
    check(cudaGetLastError(), what, file, line);
    if (sync_each_op_) check(cudaStreamSynchronize(stream_), what, file, line);
  }

  /// @brief At least `bytes` bytes of device scratch, 256-byte aligned, valid until the next call.
  ///
  /// Growing frees the old area (cudaFree waits for the device, so queued users are done). Only
  /// one op uses the scratch at a time; ops are stream-ordered, so reuse by the next op is safe.
  /// @param bytes the size needed
  /// @throws Error when the allocation fails
  void* scratch(std::size_t bytes) {
    if (scratch_.size() < bytes) {
      scratch_ = DeviceBuffer<unsigned char>();
      scratch_ = DeviceBuffer<unsigned char>((bytes + 255) / 256 * 256 * 2, stream_);
    }
    return scratch_.data();
  }

 private:
  void destroy() noexcept {
    if (stream_) report_unchecked(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (~Context)");
    scratch_ = DeviceBuffer<unsigned char>();
    if (handle_) cublasDestroy(handle_);
    if (stream_) report_unchecked(cudaStreamDestroy(stream_), "cudaStreamDestroy (~Context)");
    handle_ = nullptr;
    stream_ = nullptr;
  }

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  MathMode mode_ = MathMode::fp32;
  bool sync_each_op_ = false;
  DeviceBuffer<unsigned char> scratch_;
};

}  // namespace vitiq::cuda
