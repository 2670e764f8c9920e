// vitiq/cuda/backend.hpp -- the CUDA backend: every op of the CPU reference backend
// (vitiq/cpu/backend.hpp) with the same signature and semantics, on device memory. GEMMs go to
// cuBLAS (float32 with TF32 off unless the context says otherwise; double too); everything else
// is a kernel of vitiq/cuda/kernels.hpp. All work is queued on the context's stream.
//
// Row-major GEMMs on column-major cuBLAS: a row-major [r, ld] matrix is the column-major
// [ld-strided] matrix of its transpose, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T,
// i.e. cuBLAS is called with the operands swapped (B first), m = N and n = M.
//
// Compiles only under nvcc; use it through `ViT<C, CudaBackend<float>>` (vitiq/cuda.hpp).
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda/backend.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language)"
#endif

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "vitiq/backend.hpp"
#include "vitiq/config.hpp"
#include "vitiq/cuda/context.hpp"
#include "vitiq/cuda/error.hpp"
#include "vitiq/cuda/kernels.hpp"

/// Check the kernel launch just made by a CudaBackend op (see Context::check_launch).
#define VITIQ_CUDA_LAUNCHED(name) ctx_->check_launch(name, __FILE__, __LINE__)

namespace vitiq {

/// @brief CUDA backend over cuBLAS and the kernels of vitiq/cuda/kernels.hpp. `T` is float
/// (training) or double (agreement tests).
///
/// Carries a shared execution context (cuda::Context: device, stream, cuBLAS handle); copies of a
/// backend share it. A default-constructed backend uses cuda::Context::shared_default() and throws
/// cuda::Error ("no CUDA device found ...") where there is no device. Every op has the signature,
/// the shapes and the accumulation rule of the same op of CpuBackend (documented there); all
/// pointers are device pointers. Ops are asynchronous except to_host(), sum_squares() and
/// all_finite(), which return host data, and to_device(), which has read its source on return.
/// @tparam T the scalar type, float or double
template <class T>
class CudaBackend {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "vitiq::CudaBackend: T is float or double");

 public:
  /// The element type of every tensor.
  using Scalar = T;
  /// The owning buffer type returned by allocate(): device memory.
  using Buffer = cuda::DeviceBuffer<T>;
  /// Signed type of sizes, strides and leading dimensions.
  using Index = std::ptrdiff_t;

  /// @brief A backend on the process-wide default context (device 0).
  /// @throws cuda::Error when no CUDA device is found
  CudaBackend() : ctx_(cuda::Context::shared_default()) {}
  /// @brief A backend on the given context.
  /// @param ctx the context (device, stream, cuBLAS handle); must not be null
  explicit CudaBackend(std::shared_ptr<cuda::Context> ctx) : ctx_(std::move(ctx)) {
    if (!ctx_) throw cuda::Error("vitiq::CudaBackend: null context");
  }

  /// @brief The execution context (stream, cuBLAS handle, math mode).
  cuda::Context& context() const { return *ctx_; }
  /// @brief The context, shared.
  const std::shared_ptr<cuda::Context>& shared_context() const { return ctx_; }
  /// @brief Switch TF32 tensor-core GEMMs on or off for float (off by default; see cuda::MathMode).
  /// @param on true: MathMode::tf32; false: MathMode::fp32
  void set_tf32(bool on) const { ctx_->set_math_mode(on ? cuda::MathMode::tf32 : cuda::MathMode::fp32); }

  // ---------------------------------------------------------------- memory
  /// @brief A zero-filled device buffer of n elements (the zeros are queued on the stream).
  /// @param n number of elements
  /// @return the owning buffer
  /// @throws cuda::Error when the allocation fails
  Buffer allocate(std::size_t n) const { return Buffer(n, ctx_->stream()); }
  /// @brief Copy n elements from host memory into device memory; `src` may be reused on return.
  /// @param dst device memory [n]
  /// @param src host memory [n]
  /// @param n   number of elements
  void to_device(T* dst, const T* src, std::size_t n) const {
    if (n == 0) return;
    VITIQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, ctx_->stream()));
    ctx_->synchronize();
  }
  /// @brief Copy n elements from device memory into host memory (waits for queued work).
  /// @param dst host memory [n]
  /// @param src device memory [n]
  /// @param n   number of elements
  void to_host(T* dst, const T* src, std::size_t n) const {
    if (n == 0) return;
    VITIQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost, ctx_->stream()));
    ctx_->synchronize();
  }
  /// @brief Copy n elements within device memory (the ranges may overlap).
  /// @param dst destination [n]
  /// @param src source [n]
  /// @param n   number of elements
  void copy(T* dst, const T* src, std::size_t n) const {
    if (n == 0 || dst == src) return;
    const std::size_t bytes = n * sizeof(T);
    if (dst < src + n && src < dst + n) {  // overlap: cudaMemcpy's result would be undefined
      T* tmp = static_cast<T*>(ctx_->scratch(bytes));
      VITIQ_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, ctx_->stream()));
      src = tmp;
    }
    VITIQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_->stream()));
  }
  /// @brief x[i] = value.
  /// @param x     tensor [n]
  /// @param value the value written
  /// @param n     number of elements
  void fill(T* x, T value, std::size_t n) const {
    if (n == 0) return;
    if (value == T(0) && !std::signbit(value)) {
      VITIQ_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(T), ctx_->stream()));
      return;
    }
    cuda::kernels::fill<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(x, value, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::fill");
  }
  /// @brief Wait for all queued work; reports an asynchronous kernel failure.
  /// @throws cuda::Error when queued work failed
  void synchronize() const { ctx_->synchronize(); }

  // ---------------------------------------------------------------- GEMM
  /// @brief Row-major GEMM C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C (CpuBackend::gemm).
  /// beta = 0 never reads C; K = 0 gives C = beta * C.
  void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A, Index lda, const T* B,
            Index ldb, T beta, T* C, Index ldc) const {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      scale_matrix(C, beta, M, N, ldc);
      return;
    }
    check_int("gemm", {M, N, K, lda, ldb, ldc});
    // C^T[N, M] = op(B)^T op(A)^T in column-major terms: B is cuBLAS's first operand.
    const cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if constexpr (std::is_same_v<T, float>)
      VITIQ_CUBLAS_CHECK(cublasSgemm(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, B, int(ldb), A,
                                     int(lda), &beta, C, int(ldc)));
    else
      VITIQ_CUBLAS_CHECK(cublasDgemm(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, B, int(ldb), A,
                                     int(lda), &beta, C, int(ldc)));
    if (ctx_->sync_each_op()) ctx_->synchronize();
  }

  /// @brief No packed weight layout on the GPU (CpuBackend::pack_linear_weight): a copy of W [n, k].
  void pack_linear_weight(T* wp, const T* w, Index n, Index k) const { copy(wp, w, std::size_t(n * k)); }
  /// @brief C [M, n] = X [M, k] W^T (or += when accumulate) with W from pack_linear_weight (a
  /// copy): one gemm() (CpuBackend::linear_packed).
  void linear_packed(T* C, Index ldc, const T* X, Index ldx, const T* wp, Index M, Index n, Index k,
                     bool accumulate) const {
    gemm(false, true, M, n, k, T(1), X, ldx, wp, k, accumulate ? T(1) : T(0), C, ldc);
  }

  /// @brief A two-level batch of GEMMs (CpuBackend::gemm_batched): for o < batch_outer,
  /// i < batch_inner, gemm() on A + o*sa_outer + i*sa_inner, B + ..., C + ....
  ///
  /// One strided-batched cuBLAS call when the two levels collapse into one stride (or there is
  /// one outer index), otherwise one pointer-array batched call whose pointer arrays a kernel
  /// writes into the context's scratch. The C blocks must not overlap.
  void gemm_batched(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A, Index lda,
                    Index sa_outer, Index sa_inner, const T* B, Index ldb, Index sb_outer, Index sb_inner, T beta,
                    T* C, Index ldc, Index sc_outer, Index sc_inner, Index batch_outer, Index batch_inner) const {
    const Index total = batch_outer * batch_inner;
    if (total == 0 || M == 0 || N == 0) return;
    if (K == 0) {
      for (Index t = 0; t < total; ++t)
        scale_matrix(C + (t / batch_inner) * sc_outer + (t % batch_inner) * sc_inner, beta, M, N, ldc);
      return;
    }
    check_int("gemm_batched", {M, N, K, lda, ldb, ldc, total});
    const cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    // The two levels collapse into one stride when only one level varies, or when the outer
    // stride is batch_inner times the inner one for A, B and C alike.
    long long sa = sa_inner, sb = sb_inner, sc = sc_inner;
    bool collapses = true;
    if (batch_inner == 1) {
      sa = sa_outer;
      sb = sb_outer;
      sc = sc_outer;
    } else if (batch_outer != 1) {
      collapses = sa_outer == batch_inner * sa_inner && sb_outer == batch_inner * sb_inner &&
                  sc_outer == batch_inner * sc_inner;
    }
    if (collapses) {
      if constexpr (std::is_same_v<T, float>)
        VITIQ_CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, B,
                                                     int(ldb), sb, A, int(lda), sa, &beta, C, int(ldc), sc,
                                                     int(total)));
      else
        VITIQ_CUBLAS_CHECK(cublasDgemmStridedBatched(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, B,
                                                     int(ldb), sb, A, int(lda), sa, &beta, C, int(ldc), sc,
                                                     int(total)));
    } else {
      void* scratch = ctx_->scratch(3 * std::size_t(total) * sizeof(T*));
      // [pa | pb | pc], `total` pointers each.
      T** pc = static_cast<T**>(scratch) + 2 * total;
      const T** pa = static_cast<const T**>(scratch);
      const T** pb = pa + total;
      cuda::kernels::batched_pointers<T><<<blocks(total), cuda::kernels::block_threads, 0, ctx_->stream()>>>(
          pa, pb, pc, A, sa_outer, sa_inner, B, sb_outer, sb_inner, C, sc_outer, sc_inner, total, batch_inner);
      VITIQ_CUDA_LAUNCHED("cuda::kernels::batched_pointers");
      if constexpr (std::is_same_v<T, float>)
        VITIQ_CUBLAS_CHECK(cublasSgemmBatched(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, pb, int(ldb),
                                              pa, int(lda), &beta, pc, int(ldc), int(total)));
      else
        VITIQ_CUBLAS_CHECK(cublasDgemmBatched(ctx_->cublas(), ta, tb, int(N), int(M), int(K), &alpha, pb, int(ldb),
                                              pa, int(lda), &beta, pc, int(ldc), int(total)));
    }
    if (ctx_->sync_each_op()) ctx_->synchronize();
  }

  // ---------------------------------------------------------------- elementwise
  /// @brief y[r, c] += b[c] for y [rows, cols].
  void add_bias(T* y, const T* b, Index rows, Index cols) const {
    if (rows * cols == 0) return;
    cuda::kernels::add_bias<<<blocks(rows * cols), cuda::kernels::block_threads, 0, ctx_->stream()>>>(y, b, rows, cols);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::add_bias");
  }
  /// @brief y[r, c] = x[r, c] + b[c], or b[c] when x is null; y may alias x. Composed of copy or
  /// fill and add_bias (no kernel of its own).
  void bias_init(T* y, const T* x, const T* b, Index rows, Index cols) const {
    const std::size_t n = std::size_t(rows * cols);
    if (n == 0) return;
    if (!x) fill(y, T(0), n);
    else if (x != y) copy(y, x, n);
    add_bias(y, b, rows, cols);
  }
  /// @brief y[r, c] = x[r, c] * s[c] (y may alias x).
  void scale_columns(T* y, const T* x, const T* s, Index rows, Index cols) const {
    if (rows * cols == 0) return;
    cuda::kernels::scale_columns<<<blocks(rows * cols), cuda::kernels::block_threads, 0, ctx_->stream()>>>(y, x, s, rows,
                                                                                                  cols);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::scale_columns");
  }
  /// @brief out[c] += sum_r a[r, c] * b[r, c], summed in double.
  void column_dots(T* out, const T* a, const T* b, Index rows, Index cols) const {
    column_sums_accumulate(out, cuda::kernels::ProductValue<T>{a, b, cols}, rows, cols);
  }
  /// @brief db[c] += sum_r dy[r, c], summed in double.
  void bias_backward(T* db, const T* dy, Index rows, Index cols) const {
    column_sums_accumulate(db, cuda::kernels::MatrixValue<T>{dy, cols}, rows, cols);
  }
  /// @brief y[i] += x[i].
  void add(T* y, const T* x, std::size_t n) const {
    if (n == 0) return;
    cuda::kernels::add<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(y, x, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::add");
  }
  /// @brief y[i] = a[i] * b[i]; y may alias a or b.
  void multiply(T* y, const T* a, const T* b, std::size_t n) const {
    if (n == 0) return;
    cuda::kernels::multiply<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(y, a, b, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::multiply");
  }
  /// @brief x[i] *= a.
  void scale(T* x, T a, std::size_t n) const {
    if (n == 0) return;
    cuda::kernels::scale<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(x, a, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::scale");
  }
  /// @brief x[r, c] *= s[r] for x [rows, cols].
  void scale_rows(T* x, const T* s, Index rows, Index cols) const {
    if (rows * cols == 0) return;
    cuda::kernels::scale_rows<<<blocks(rows * cols), cuda::kernels::block_threads, 0, ctx_->stream()>>>(x, s, rows, cols);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::scale_rows");
  }
  /// @brief Sum of squares of x in double (waits for the result).
  double sum_squares(const T* x, std::size_t n) const {
    if (n == 0) return 0.0;
    const int nb = std::min(blocks(Index(n)), 1024);
    double* partial = static_cast<double*>(ctx_->scratch((std::size_t(nb) + 1) * sizeof(double)));
    cuda::kernels::sum_squares_partial<<<nb, cuda::kernels::block_threads, 0, ctx_->stream()>>>(partial + 1, x, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::sum_squares_partial");
    cuda::kernels::sum_partials<double><<<1, cuda::kernels::block_threads, 0, ctx_->stream()>>>(partial, partial + 1, Index(nb));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::sum_partials");
    double result = 0;
    VITIQ_CUDA_CHECK(cudaMemcpyAsync(&result, partial, sizeof(double), cudaMemcpyDeviceToHost, ctx_->stream()));
    ctx_->synchronize();
    return result;
  }
  /// @brief True when every x[i] is finite (waits for the result).
  bool all_finite(const T* x, std::size_t n) const {
    if (n == 0) return true;
    int* flag = static_cast<int*>(ctx_->scratch(sizeof(int)));
    VITIQ_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), ctx_->stream()));
    cuda::kernels::any_nonfinite<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(flag, x, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::any_nonfinite");
    int bad = 0;
    VITIQ_CUDA_CHECK(cudaMemcpyAsync(&bad, flag, sizeof(int), cudaMemcpyDeviceToHost, ctx_->stream()));
    ctx_->synchronize();
    return bad == 0;
  }
  /// @brief Inverted dropout mask from the counter-based hash: the CPU backend's mask, bit for bit.
  void dropout_mask(T* mask, std::size_t n, T p, std::uint64_t seed, std::uint64_t stream) const {
    if (n == 0) return;
    const T keep = T(1) / (T(1) - p);
    cuda::kernels::dropout_mask<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(mask, Index(n), double(p),
                                                                                           keep, seed, stream);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::dropout_mask");
  }
  /// @brief Exact GELU.
  void gelu_forward(T* y, const T* x, std::size_t n) const {
    if (n == 0) return;
    cuda::kernels::gelu_forward<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(y, x, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::gelu_forward");
  }
  /// @brief dx = dy * GELU'(x) (assigned; may alias dy).
  void gelu_backward(T* dx, const T* dy, const T* x, std::size_t n) const {
    if (n == 0) return;
    cuda::kernels::gelu_backward<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(dx, dy, x, Index(n));
    VITIQ_CUDA_LAUNCHED("cuda::kernels::gelu_backward");
  }

  // ---------------------------------------------------------------- LayerNorm
  /// @brief LayerNorm per row (eps 1e-5, biased variance, statistics in double); mean, rstd kept.
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, Index rows, Index cols) const {
    if (rows == 0) return;
    cuda::kernels::layernorm_forward<<<row_blocks(rows), cuda::kernels::row_threads, 0, ctx_->stream()>>>(y, mean, rstd, x, w, b,
                                                                                              rows, cols);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::layernorm_forward");
  }
  /// @brief Backward of layernorm_forward: dx assigned, or added to when accumulate_dx (skipped when
  /// nullptr); dw, db accumulated (column sums in double). w null: no affine part; mean null: x
  /// holds xhat (both without dw, db; CpuBackend::layernorm_backward).
  void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean, const T* rstd, const T* w,
                          Index rows, Index cols, bool accumulate_dx = false) const {
    if (rows == 0) return;
    if (dx) {  // nullptr: only dw and db wanted (CpuBackend::layernorm_backward)
      cuda::kernels::layernorm_backward_rows<<<row_blocks(rows), cuda::kernels::row_threads, 0, ctx_->stream()>>>(
          dx, dy, x, mean, rstd, w, rows, cols, accumulate_dx);
      VITIQ_CUDA_LAUNCHED("cuda::kernels::layernorm_backward_rows");
    }
    if (!mean || !w) {
      if (dw || db) throw cuda::Error("vitiq::CudaBackend::layernorm_backward: dw and db need w and mean");
      return;
    }
    column_sums_accumulate(dw, cuda::kernels::LayerNormWeightGrad<T>{dy, x, mean, rstd, cols}, rows, cols);
    column_sums_accumulate(db, cuda::kernels::MatrixValue<T>{dy, cols}, rows, cols);
  }

  // ---------------------------------------------------------------- SPT
  /// @brief Shifted Patch Tokenization's gather: images [B, C, H, W] -> patches [B, n, PD].
  void spt_forward(T* patches, const T* images, Index B, Index C, Index H, Index W, Index P, SptVariant v) const {
    const cuda::kernels::SptGeometry g = spt_geometry(B, C, H, W, P, v);
    if (g.B * g.n * g.PD == 0) return;
    cuda::kernels::spt_forward<<<blocks(g.B * g.n * g.PD), cuda::kernels::block_threads, 0, ctx_->stream()>>>(patches, images, g);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::spt_forward");
  }
  /// @brief Transpose of spt_forward (assigned), computed as a gather: no atomics, deterministic.
  void spt_backward(T* dimages, const T* dpatches, Index B, Index C, Index H, Index W, Index P, SptVariant v) const {
    const cuda::kernels::SptGeometry g = spt_geometry(B, C, H, W, P, v);
    if (B * C * H * W == 0) return;
    cuda::kernels::spt_backward<<<blocks(B * C * H * W), cuda::kernels::block_threads, 0, ctx_->stream()>>>(dimages, dpatches, g);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::spt_backward");
  }

  // ---------------------------------------------------------------- tokens
  /// @brief x[b, 0] = cls + pos[0]; x[b, 1 + t] = tokens[b, t] + pos[1 + t].
  void embed_forward(T* x, const T* tokens, const T* cls, const T* pos, Index B, Index N, Index D) const {
    if (B * N * D == 0) return;
    cuda::kernels::embed_forward<<<blocks(B * N * D), cuda::kernels::block_threads, 0, ctx_->stream()>>>(x, tokens, cls, pos, B,
                                                                                            N, D);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::embed_forward");
  }
  /// @brief Backward of embed_forward: dtokens assigned; dcls, dpos accumulated (sums in double).
  void embed_backward(T* dtokens, T* dcls, T* dpos, const T* dx, Index B, Index N, Index D) const {
    if (B * N * D == 0) return;
    if (N > 1) {
      cuda::kernels::embed_tokens_backward<<<blocks(B * (N - 1) * D), cuda::kernels::block_threads, 0, ctx_->stream()>>>(
          dtokens, dx, B, N, D);
      VITIQ_CUDA_LAUNCHED("cuda::kernels::embed_tokens_backward");
    }
    column_sums_accumulate(dpos, cuda::kernels::MatrixValue<T>{dx, N * D}, B, N * D);
    column_sums_accumulate(dcls, cuda::kernels::MatrixValue<T>{dx, N * D}, B, D);
  }
  /// @brief out [B, D] = x[b, 0] (cls) or the mean over the N tokens (mean).
  void pool_forward(T* out, const T* x, Pool pool, Index B, Index N, Index D) const {
    if (B * D == 0) return;
    cuda::kernels::pool_forward<<<blocks(B * D), cuda::kernels::block_threads, 0, ctx_->stream()>>>(out, x, pool == Pool::cls, B,
                                                                                       N, D);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::pool_forward");
  }
  /// @brief Backward of pool_forward: every element of dx [B, N, D] assigned.
  void pool_backward(T* dx, const T* dout, Pool pool, Index B, Index N, Index D) const {
    if (B * N * D == 0) return;
    cuda::kernels::pool_backward<<<blocks(B * N * D), cuda::kernels::block_threads, 0, ctx_->stream()>>>(dx, dout,
                                                                                            pool == Pool::cls, B, N, D);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::pool_backward");
  }

  // ---------------------------------------------------------------- attention
  /// @brief A = softmax(mask(S * tau)) over the last axis of [B, h, N, N]; one warp per row.
  void attention_softmax_forward(T* A, const T* S, const T* param, TemperatureMode mode, T fixed_tau,
                                 bool mask_diagonal, Index B, Index h, Index N) const {
    softmax_query_rows_forward(A, S, param, mode, fixed_tau, mask_diagonal, B, h, N, N);
  }
  /// @brief Backward of attention_softmax_forward: dS assigned; the temperature gradient
  /// accumulated into dparam (unwritten for TemperatureMode::fixed), summed in double per head.
  void attention_softmax_backward(T* dS, T* dparam, const T* dA, const T* A, const T* S, const T* param,
                                  TemperatureMode mode, T fixed_tau, Index B, Index h, Index N) const {
    softmax_query_rows_backward(dS, dparam, dA, A, S, param, mode, fixed_tau, B, h, N, N);
  }

  /// @brief The whole attention core (CpuBackend::attention_forward): S_bj = Q_bj K_bj^T,
  /// A_bj = softmax(mask(S_bj * tau_j)), O_bj = A_bj V_bj, with q, k, v column blocks of the qkv
  /// rows [B, N, 3I] and O into out [B, N, I]. Composed of gemm_batched,
  /// attention_softmax_forward and gemm_batched: S and A [B, h, N, N] are outputs anyway.
  void attention_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode, T fixed_tau,
                         bool mask_diagonal, Index B, Index h, Index N, Index d) const {
    attention_query_rows_forward(out, A, S, qkv, param, mode, fixed_tau, mask_diagonal, B, h, N, d, N);
  }
  /// @brief Backward of attention_forward (CpuBackend::attention_backward): d_qkv [B, N, 3I]
  /// assigned, the temperature gradient accumulated into dparam. Composed of gemm_batched and
  /// attention_softmax_backward; dA and dS [B, h, N, N] live in the backend's attention workspace
  /// (grown on demand, shared by copies of this backend).
  void attention_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S, const T* param,
                          TemperatureMode mode, T fixed_tau, Index B, Index h, Index N, Index d) const {
    attention_query_rows_backward(d_qkv, dparam, d_out, qkv, A, S, param, mode, fixed_tau, B, h, N, d, N);
  }

  /// @brief attention_forward for the class token's query only (CpuBackend::attention_cls_forward):
  /// out [B, I], A and S [B, h, N]. Composed of gemm_batched (one query row per block), the softmax
  /// kernel on one row per block (mask on the class token's own key) and gemm_batched.
  void attention_cls_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode, T fixed_tau,
                             bool mask_diagonal, Index B, Index h, Index N, Index d) const {
    attention_query_rows_forward(out, A, S, qkv, param, mode, fixed_tau, mask_diagonal, B, h, N, d, 1);
  }
  /// @brief Backward of attention_cls_forward (CpuBackend::attention_cls_backward): the k and v
  /// columns of every row of d_qkv [B, N, 3I] and the q columns of each image's row 0 assigned (the
  /// other q columns unwritten); the temperature gradient accumulated. da and dz [B, h, N] live in
  /// the attention workspace.
  void attention_cls_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S,
                              const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h, Index N,
                              Index d) const {
    attention_query_rows_backward(d_qkv, dparam, d_out, qkv, A, S, param, mode, fixed_tau, B, h, N, d, 1);
  }

  // ---------------------------------------------------------------- losses
  /// @brief Softmax cross-entropy against target distributions (CpuBackend::softmax_cross_entropy).
  void softmax_cross_entropy(T* loss, T* probs, T* dlogits, const T* logits, const T* targets, T grad_scale, Index B,
                             Index K) const {
    if (B == 0) return;
    cuda::kernels::softmax_cross_entropy<<<blocks(B), cuda::kernels::block_threads, 0, ctx_->stream()>>>(
        loss, probs, dlogits, logits, targets, grad_scale, B, K);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::softmax_cross_entropy");
  }
  /// @brief Squared error of the expected vote (CpuBackend::expected_vote_mse).
  void expected_vote_mse(T* loss, T* probs, T* dlogits, const T* logits, const T* votes, T grad_scale, Index B,
                         Index K) const {
    if (B == 0) return;
    cuda::kernels::expected_vote_mse<<<blocks(B), cuda::kernels::block_threads, 0, ctx_->stream()>>>(loss, probs, dlogits, logits,
                                                                                        votes, grad_scale, B, K);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::expected_vote_mse");
  }

  // ---------------------------------------------------------------- optimiser
  /// @brief One fused Adam / AdamW step over n elements with PyTorch's arithmetic.
  void adam_update(T* p, const T* g, T* m, T* v, std::size_t n, const AdamStep<T>& s) const {
    if (n == 0) return;
    const T step_size = s.lr / s.bias_correction1;
    const T bc2_sqrt = std::sqrt(s.bias_correction2);
    cuda::kernels::adam_update<<<blocks(Index(n)), cuda::kernels::block_threads, 0, ctx_->stream()>>>(p, g, m, v, Index(n), s,
                                                                                         step_size, bc2_sqrt);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::adam_update");
  }

 private:
  /// Blocks of a grid-stride 1-D launch over n elements (at least 1, at most 65536).
  static int blocks(Index n) {
    const Index b = (n + cuda::kernels::block_threads - 1) / cuda::kernels::block_threads;
    return int(std::clamp<Index>(b, 1, Index(1) << 16));
  }
  /// Blocks of a one-block-per-row launch (grid-stride over rows beyond the cap).
  static int row_blocks(Index rows) { return int(std::clamp<Index>(rows, 1, Index(1) << 20)); }
  /// Blocks of a one-warp-per-row launch.
  /// The attention softmax over [B, h, Nq, N]: the first Nq tokens' queries against the N keys,
  /// one warp per row (Nq = N: attention_softmax_forward; 1: the class token's row).
  void softmax_query_rows_forward(T* A, const T* S, const T* param, TemperatureMode mode, T fixed_tau,
                                  bool mask_diagonal, Index B, Index h, Index N, Index Nq) const {
    const Index rows = B * h * Nq;
    if (rows == 0) return;
    cuda::kernels::attention_softmax_forward<<<warp_row_blocks(rows), cuda::kernels::block_threads, 0, ctx_->stream()>>>(
        A, S, param, mode, fixed_tau, mask_diagonal, B, h, N, Nq);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::attention_softmax_forward");
  }
  /// Backward of softmax_query_rows_forward: dS assigned, the temperature gradient accumulated
  /// (row sums in double in the context's scratch, then one block per parameter set).
  void softmax_query_rows_backward(T* dS, T* dparam, const T* dA, const T* A, const T* S, const T* param,
                                   TemperatureMode mode, T fixed_tau, Index B, Index h, Index N, Index Nq) const {
    const Index rows = B * h * Nq;
    if (rows == 0) return;
    const bool want_tau = mode != TemperatureMode::fixed;
    double* row_acc = want_tau ? static_cast<double*>(ctx_->scratch(std::size_t(rows) * sizeof(double))) : nullptr;
    cuda::kernels::attention_softmax_backward<<<warp_row_blocks(rows), cuda::kernels::block_threads, 0, ctx_->stream()>>>(
        dS, row_acc, dA, A, S, param, mode, fixed_tau, want_tau, B, h, N, Nq);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::attention_softmax_backward");
    if (!want_tau) return;
    cuda::kernels::temperature_grad_finish<<<1, cuda::kernels::block_threads, 0, ctx_->stream()>>>(dparam, row_acc, param, mode,
                                                                                      B, h, Nq);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::temperature_grad_finish");
  }

  /// The attention core for the first Nq tokens' queries (Nq = N: attention_forward; 1:
  /// attention_cls_forward): S, A [B, h, Nq, N], out [B, Nq, I]; gemm_batched, the softmax kernel,
  /// gemm_batched.
  void attention_query_rows_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode,
                                    T fixed_tau, bool mask_diagonal, Index B, Index h, Index N, Index d,
                                    Index Nq) const {
    const Index I = h * d;
    gemm_batched(false, true, Nq, N, d, T(1), qkv, 3 * I, N * 3 * I, d, qkv + I, 3 * I, N * 3 * I, d, T(0), S, N,
                 h * Nq * N, Nq * N, B, h);  // [B, h, Nq, N]
    softmax_query_rows_forward(A, S, param, mode, fixed_tau, mask_diagonal, B, h, N, Nq);
    gemm_batched(false, false, Nq, d, N, T(1), A, N, h * Nq * N, Nq * N, qkv + 2 * I, 3 * I, N * 3 * I, d, T(0), out,
                 I, Nq * I, d, B, h);  // [B, Nq, I]
  }
  /// Backward of attention_query_rows_forward: the k, v columns of d_qkv [B, N, 3I] and the q
  /// columns of each image's first Nq rows assigned, the temperature gradient accumulated; dA and
  /// dS [B, h, Nq, N] live in the attention workspace.
  void attention_query_rows_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S,
                                     const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h, Index N,
                                     Index d, Index Nq) const {
    const Index I = h * d;
    const std::size_t count = std::size_t(B * h * Nq * N), stride = (count + 63) / 64 * 64;
    if (count == 0) return;
    T* dA = attention_workspace(2 * stride);
    T* dS = dA + stride;
    gemm_batched(false, true, Nq, N, d, T(1), d_out, I, Nq * I, d, qkv + 2 * I, 3 * I, N * 3 * I, d, T(0), dA, N,
                 h * Nq * N, Nq * N, B, h);  // dA = dO V^T
    gemm_batched(true, false, N, d, Nq, T(1), A, N, h * Nq * N, Nq * N, d_out, I, Nq * I, d, T(0), d_qkv + 2 * I,
                 3 * I, N * 3 * I, d, B, h);  // dV = A^T dO
    softmax_query_rows_backward(dS, dparam, dA, A, S, param, mode, fixed_tau, B, h, N, Nq);
    gemm_batched(false, false, Nq, d, N, T(1), dS, N, h * Nq * N, Nq * N, qkv + I, 3 * I, N * 3 * I, d, T(0), d_qkv,
                 3 * I, N * 3 * I, d, B, h);  // dQ = dS K (tau is in dS)
    gemm_batched(true, false, N, d, Nq, T(1), dS, N, h * Nq * N, Nq * N, qkv, 3 * I, N * 3 * I, d, T(0), d_qkv + I,
                 3 * I, N * 3 * I, d, B, h);  // dK = dS^T Q
  }

  static int warp_row_blocks(Index rows) {
    return int(std::clamp<Index>((rows + cuda::kernels::softmax_warps - 1) / cuda::kernels::softmax_warps, 1, Index(1) << 20));
  }

  /// At least n elements of the attention backward's workspace; growing frees the old area
  /// (cudaFree waits for the device, so queued users are done). Stream-ordered reuse is safe.
  T* attention_workspace(std::size_t n) const {
    if (attn_work_->size() < n) {
      *attn_work_ = Buffer();
      *attn_work_ = Buffer(n, ctx_->stream());
    }
    return attn_work_->data();
  }

  /// cuBLAS takes int sizes: refuse anything larger rather than truncate it.
  static void check_int(const char* op, std::initializer_list<Index> values) {
    for (const Index v : values)
      if (v < 0 || v > Index(INT_MAX))
        throw cuda::Error(std::string("vitiq::CudaBackend::") + op + ": size or stride " + std::to_string(v) +
                          " outside cuBLAS's int range");
  }

  /// C = beta * C on an [M, N] block with row stride ldc (GEMM with K = 0).
  void scale_matrix(T* C, T beta, Index M, Index N, Index ldc) const {
    cuda::kernels::scale_matrix<<<blocks(M * N), cuda::kernels::block_threads, 0, ctx_->stream()>>>(C, beta, M, N, ldc);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::scale_matrix");
  }

  /// out[c] += sum_{r < rows} f(r, c) for c < cols, in double: partial sums over row chunks, then
  /// one pass summing the chunks in order (deterministic, no atomics).
  template <class F>
  void column_sums_accumulate(T* out, F f, Index rows, Index cols) const {
    if (rows == 0 || cols == 0) return;
    Index rows_per_chunk = 128;
    Index chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    if (chunks > 65535) {  // gridDim.y limit
      rows_per_chunk = (rows + 65534) / 65535;
      chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    }
    const Index col_blocks = (cols + cuda::kernels::colsum_x - 1) / cuda::kernels::colsum_x;
    if (col_blocks > Index(INT_MAX)) throw cuda::Error("vitiq::CudaBackend: too many columns for a column sum");
    double* partial = static_cast<double*>(ctx_->scratch(std::size_t(chunks * cols) * sizeof(double)));
    const dim3 grid{unsigned(col_blocks), unsigned(chunks), 1u};
    const dim3 block{unsigned(cuda::kernels::colsum_x), unsigned(cuda::kernels::colsum_y), 1u};
    cuda::kernels::column_sums_partial<<<grid, block, 0, ctx_->stream()>>>(partial, f, rows, cols, rows_per_chunk);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::column_sums_partial");
    cuda::kernels::column_sums_finish<<<blocks(cols), cuda::kernels::block_threads, 0, ctx_->stream()>>>(out, partial, chunks, cols);
    VITIQ_CUDA_LAUNCHED("cuda::kernels::column_sums_finish");
  }

  /// The SPT geometry of CpuBackend::spt_walk: copy k reads (i + di[k], j + dj[k]).
  static cuda::kernels::SptGeometry spt_geometry(Index B, Index C, Index H, Index W, Index P, SptVariant v) {
    cuda::kernels::SptGeometry g{};
    g.B = B;
    g.C = C;
    g.H = H;
    g.W = W;
    g.P = P;
    g.copies = spt_copies(v);
    g.gw = W / P;
    g.n = (H / P) * g.gw;
    g.PD = g.copies * C * P * P;
    const Index s = P / 2;
    const Index axial_di[5] = {0, 0, 0, -1, 1}, axial_dj[5] = {0, -1, 1, 0, 0};
    const Index diag_di[5] = {0, -s, -s, s, s}, diag_dj[5] = {0, -s, s, -s, s};
    const bool diag = v == SptVariant::diagonal;
    for (int k = 0; k < 5; ++k) {
      g.di[k] = diag ? diag_di[k] : axial_di[k];
      g.dj[k] = diag ? diag_dj[k] : axial_dj[k];
    }
    return g;
  }

  std::shared_ptr<cuda::Context> ctx_;
  std::shared_ptr<Buffer> attn_work_ = std::make_shared<Buffer>();  // dA and dS of attention_backward
};

}  // namespace vitiq

#undef VITIQ_CUDA_LAUNCHED
