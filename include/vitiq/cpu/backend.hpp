// vitiq/cpu/backend.hpp -- the CPU backend: Eigen GEMMs over row-major maps of flat buffers and
// OpenMP loops for everything else, in float (training) and double (gradient checks).
//
// This file is also the reference implementation of every op: the code is plain and commented,
// each backward cites its derivation, and faster versions elsewhere are tested against it.
// Conventions (see vitiq/backend.hpp): outputs first; parameter gradients accumulate (+=),
// activation gradients are assigned (=).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include <Eigen/Core>

#include "vitiq/backend.hpp"
#include "vitiq/config.hpp"
#include "vitiq/cpu/rng.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vitiq {

/// @brief An owning, 64-byte aligned, zero-initialised host array; move-only.
///
/// The Buffer type of CpuBackend.
/// @tparam T the element type
template <class T>
class HostBuffer {
 public:
  /// @brief An empty buffer (data() is nullptr, size() is 0).
  HostBuffer() = default;
  /// @brief Allocate `n` zero-filled elements (no allocation when n is 0).
  /// @param n number of elements
  /// @throws std::bad_alloc when the allocation fails
  explicit HostBuffer(std::size_t n) : size_(n) {
    if (n) {
      data_.reset(static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t{64})));
      std::memset(static_cast<void*>(data_.get()), 0, n * sizeof(T));
    }
  }
  /// @brief Take over another buffer's memory.
  HostBuffer(HostBuffer&&) noexcept = default;
  /// @brief Free this buffer's memory and take over another's.
  HostBuffer& operator=(HostBuffer&&) noexcept = default;
  /// @brief First element (nullptr when empty).
  T* data() { return data_.get(); }
  /// @brief First element (nullptr when empty).
  const T* data() const { return data_.get(); }
  /// @brief Number of elements.
  std::size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0;
};

/// @brief CPU backend over Eigen and OpenMP. `T` is float or double.
///
/// Stateless: "device" memory is host memory, and every op runs synchronously.
/// All pointers are row-major tensors of the shapes given; sizes are element counts.
/// @tparam T the scalar type (float for training, double for gradient checks)
template <class T>
struct CpuBackend {
  /// The element type of every tensor.
  using Scalar = T;
  /// The owning buffer type returned by allocate().
  using Buffer = HostBuffer<T>;
  /// Signed type of sizes, strides and leading dimensions.
  using Index = std::ptrdiff_t;

  /// Loops over fewer elements than this run on one thread: a parallel region costs more than
  /// the work, and idle workers spinning on a busy machine cost far more.
  static constexpr Index parallel_grain = Index(1) << 15;

  // ---------------------------------------------------------------- memory
  /// @brief A zero-filled buffer of n elements.
  /// @param n number of elements
  /// @return the owning buffer
  Buffer allocate(std::size_t n) const { return Buffer(n); }
  /// @brief Copy n elements from host memory into backend memory.
  /// @param dst backend memory [n]
  /// @param src host memory [n]
  /// @param n   number of elements
  void to_device(T* dst, const T* src, std::size_t n) const { if (n) std::memcpy(dst, src, n * sizeof(T)); }
  /// @brief Copy n elements from backend memory into host memory.
  /// @param dst host memory [n]
  /// @param src backend memory [n]
  /// @param n   number of elements
  void to_host(T* dst, const T* src, std::size_t n) const { if (n) std::memcpy(dst, src, n * sizeof(T)); }
  /// @brief Copy n elements within backend memory (the ranges may overlap).
  /// @param dst destination [n]
  /// @param src source [n]
  /// @param n   number of elements
  void copy(T* dst, const T* src, std::size_t n) const { if (n) std::memmove(dst, src, n * sizeof(T)); }
  /// @brief x[i] = value.
  /// @param x     tensor [n]
  /// @param value the value written
  /// @param n     number of elements
  void fill(T* x, T value, std::size_t n) const { std::fill(x, x + n, value); }
  /// @brief Wait for queued work (nothing to wait for on the CPU).
  void synchronize() const {}

  // ---------------------------------------------------------------- GEMM
  /// @brief Row-major GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
  /// op(A) = A (stored [M, lda]) or A^T (stored [K, lda]); likewise B. beta = 0 never reads C.
  /// @param trans_a op(A) = A^T when true
  /// @param trans_b op(B) = B^T when true
  /// @param M       rows of op(A) and C
  /// @param N       columns of op(B) and C
  /// @param K       columns of op(A), rows of op(B); K = 0 gives C = beta * C
  /// @param alpha   scale of the product
  /// @param A       [M, lda] (or [K, lda] when trans_a)
  /// @param lda     row stride of A in elements
  /// @param B       [K, ldb] (or [N, ldb] when trans_b)
  /// @param ldb     row stride of B in elements
  /// @param beta    scale of the old C (0: C is overwritten, 1: the product accumulates)
  /// @param C       output [M, ldc]
  /// @param ldc     row stride of C in elements
  void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A, Index lda,
            const T* B, Index ldb, T beta, T* C, Index ldc) const {
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
    using OMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
    if (M == 0 || N == 0) return;
    OMap c(C, M, N, Eigen::OuterStride<>(ldc));
    if (K == 0) {
      if (beta == T(0)) c.setZero(); else c *= beta;
      return;
    }
    auto run = [&](const auto& a, const auto& b) {
      if (beta == T(0)) {
        c.noalias() = alpha * (a * b);
      } else {
        if (beta != T(1)) c *= beta;
        c.noalias() += alpha * (a * b);
      }
    };
    CMap a_n(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
    CMap b_n(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
    if (!trans_a && !trans_b) run(a_n, b_n);
    else if (!trans_a && trans_b) run(a_n, b_n.transpose());
    else if (trans_a && !trans_b) run(a_n.transpose(), b_n);
    else run(a_n.transpose(), b_n.transpose());
  }

  /// @brief A two-level batch of GEMMs: for o < batch_outer, i < batch_inner, the GEMM above on
  /// A + o*sa_outer + i*sa_inner, B + o*sb_outer + i*sb_inner, C + o*sc_outer + i*sc_inner.
  /// Used for attention, where batch element b and head j address q, k, v inside the qkv rows.
  ///
  /// The batch runs in parallel, so the C blocks must not overlap.
  /// @param trans_a,trans_b,M,N,K,alpha,lda,ldb,beta,ldc as in gemm(), for every GEMM of the batch
  /// @param A           first A matrix
  /// @param sa_outer    element stride of A between outer batch indices
  /// @param sa_inner    element stride of A between inner batch indices
  /// @param B           first B matrix
  /// @param sb_outer    element stride of B between outer batch indices
  /// @param sb_inner    element stride of B between inner batch indices
  /// @param C           first C matrix (output)
  /// @param sc_outer    element stride of C between outer batch indices
  /// @param sc_inner    element stride of C between inner batch indices
  /// @param batch_outer number of outer batch indices (the batch B for attention)
  /// @param batch_inner number of inner batch indices (the heads h for attention)
  void gemm_batched(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                    Index lda, Index sa_outer, Index sa_inner, const T* B, Index ldb, Index sb_outer,
                    Index sb_inner, T beta, T* C, Index ldc, Index sc_outer, Index sc_inner,
                    Index batch_outer, Index batch_inner) const {
    const Index total = batch_outer * batch_inner;
#pragma omp parallel for schedule(static) if(total * M * N * K >= parallel_grain)
    for (Index t = 0; t < total; ++t) {
      const Index o = t / batch_inner, i = t % batch_inner;
      gemm(trans_a, trans_b, M, N, K, alpha, A + o * sa_outer + i * sa_inner, lda,
           B + o * sb_outer + i * sb_inner, ldb, beta, C + o * sc_outer + i * sc_inner, ldc);
    }
  }

  // ---------------------------------------------------------------- elementwise
  /// @brief y[r, c] += b[c] for y [rows, cols].
  /// @param y    tensor [rows, cols], updated in place
  /// @param b    bias [cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void add_bias(T* y, const T* b, Index rows, Index cols) const {
#pragma omp parallel for schedule(static) if(rows * cols >= parallel_grain)
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) y[r * cols + c] += b[c];
  }

  /// @brief db[c] += sum_r dy[r, c] (the gradient of add_bias), dy [rows, cols].
  ///
  /// Sums in double.
  /// @param db   bias gradient [cols] (accumulated)
  /// @param dy   output gradient [rows, cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void bias_backward(T* db, const T* dy, Index rows, Index cols) const {
    column_sums_accumulate(db, cols, [&](Index r, Index c) { return dy[r * cols + c]; }, rows);
  }

  /// @brief y[i] += x[i].
  /// @param y tensor [n], updated in place
  /// @param x tensor [n]
  /// @param n number of elements
  void add(T* y, const T* x, std::size_t n) const {
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) y[i] += x[i];
  }

  /// @brief y[i] = a[i] * b[i] (dropout masks). y may alias a or b.
  /// @param y output [n]
  /// @param a tensor [n]
  /// @param b tensor [n]
  /// @param n number of elements
  void multiply(T* y, const T* a, const T* b, std::size_t n) const {
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) y[i] = a[i] * b[i];
  }

  /// @brief x[i] *= a.
  /// @param x tensor [n], updated in place
  /// @param a the factor
  /// @param n number of elements
  void scale(T* x, T a, std::size_t n) const {
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) x[i] *= a;
  }

  /// @brief x[r, c] *= s[r] for x [rows, cols] (stochastic depth: one factor per sample).
  /// @param x    tensor [rows, cols], updated in place
  /// @param s    row factors [rows]
  /// @param rows number of rows
  /// @param cols number of columns
  void scale_rows(T* x, const T* s, Index rows, Index cols) const {
#pragma omp parallel for schedule(static) if(rows * cols >= parallel_grain)
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) x[r * cols + c] *= s[r];
  }

  /// @brief Sum of squares of x, accumulated in double (gradient-norm clipping).
  /// @param x tensor [n]
  /// @param n number of elements
  /// @return sum_i x[i]^2
  double sum_squares(const T* x, std::size_t n) const {
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) s += double(x[i]) * double(x[i]);
    return s;
  }

  /// @brief True when every x[i] is finite.
  /// @param x tensor [n]
  /// @param n number of elements
  /// @return false when some x[i] is NaN or infinite
  bool all_finite(const T* x, std::size_t n) const {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) bad |= !std::isfinite(x[i]);
    return !bad;
  }

  /// @brief Inverted dropout mask: mask[i] = 1/(1-p) with probability 1-p, else 0, drawn from a
  /// counter-based generator keyed by (seed, stream, i): the same mask for any thread count and
  /// on any backend.
  /// @param mask   output [n]
  /// @param n      number of elements
  /// @param p      drop probability, in [0, 1)
  /// @param seed   the model's dropout seed
  /// @param stream selects an independent mask (one per masked tensor and pass)
  void dropout_mask(T* mask, std::size_t n, T p, std::uint64_t seed, std::uint64_t stream) const {
    const T keep = T(1) / (T(1) - p);
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i)
      mask[i] = uniform01(seed, stream, std::uint64_t(i)) < double(p) ? T(0) : keep;
  }

  /// @brief Exact GELU, y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
  /// @param y output [n]
  /// @param x input [n]
  /// @param n number of elements
  void gelu_forward(T* y, const T* x, std::size_t n) const {
    const T r = T(0.70710678118654752440);
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * r));
  }

  /// @brief dx = dy * GELU'(x), GELU'(x) = Phi(x) + x * phi(x), phi the standard normal density.
  ///
  /// dx is assigned and may alias dy.
  /// @param dx input gradient [n] (assigned)
  /// @param dy output gradient [n]
  /// @param x  the forward's input [n]
  /// @param n  number of elements
  void gelu_backward(T* dx, const T* dy, const T* x, std::size_t n) const {
    const T r = T(0.70710678118654752440), c = T(0.39894228040143267794);  // 1/sqrt(2), 1/sqrt(2 pi)
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) {
      const T cdf = T(0.5) * (T(1) + std::erf(x[i] * r));
      const T pdf = c * std::exp(T(-0.5) * x[i] * x[i]);
      dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
  }

  // ---------------------------------------------------------------- LayerNorm
  /// @brief y = (x - mean) * rstd * w + b per row of x [rows, cols]; biased variance, eps 1e-5.
  ///
  /// mean, rstd [rows] are kept for the backward. Statistics accumulate in double.
  /// @param y    output [rows, cols]
  /// @param mean output: row means [rows]
  /// @param rstd output: row reciprocal standard deviations 1 / sqrt(var + 1e-5) [rows]
  /// @param x    input [rows, cols]
  /// @param w    scale [cols]
  /// @param b    shift [cols]
  /// @param rows number of rows (normalised independently)
  /// @param cols number of features per row
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, Index rows,
                         Index cols) const {
#pragma omp parallel for schedule(static) if(rows * cols >= parallel_grain)
    for (Index r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      double m = 0;  // accumulate statistics in double: float rows of 1000s of features
      for (Index c = 0; c < cols; ++c) m += xr[c];
      m /= double(cols);
      double v = 0;
      for (Index c = 0; c < cols; ++c) v += (xr[c] - m) * (xr[c] - m);
      v /= double(cols);
      const T s = T(1.0 / std::sqrt(v + 1e-5));
      const T mt = T(m);
      for (Index c = 0; c < cols; ++c) yr[c] = (xr[c] - mt) * s * w[c] + b[c];
      mean[r] = mt;
      rstd[r] = s;
    }
  }

  /// @brief Backward of layernorm_forward. With xhat = (x - mean) * rstd and g = dy * w:
  /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (assigned);
  /// dw += sum_rows dy * xhat; db += sum_rows dy.
  /// @param dx   input gradient [rows, cols] (assigned)
  /// @param dw   scale gradient [cols] (accumulated)
  /// @param db   shift gradient [cols] (accumulated)
  /// @param dy   output gradient [rows, cols]
  /// @param x    the forward's input [rows, cols]
  /// @param mean the forward's row means [rows]
  /// @param rstd the forward's reciprocal standard deviations [rows]
  /// @param w    scale [cols]
  /// @param rows number of rows
  /// @param cols number of features per row
  void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                          const T* rstd, const T* w, Index rows, Index cols) const {
#pragma omp parallel for schedule(static) if(rows * cols >= parallel_grain)
    for (Index r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      const T* dyr = dy + r * cols;
      T* dxr = dx + r * cols;
      const T m = mean[r], s = rstd[r];
      double sum_g = 0, sum_gx = 0;
      for (Index c = 0; c < cols; ++c) {
        const T g = dyr[c] * w[c];
        sum_g += g;
        sum_gx += g * (xr[c] - m) * s;
      }
      const T mg = T(sum_g / double(cols)), mgx = T(sum_gx / double(cols));
      for (Index c = 0; c < cols; ++c) {
        const T xhat = (xr[c] - m) * s;
        dxr[c] = s * (dyr[c] * w[c] - mg - xhat * mgx);
      }
    }
    column_sums_accumulate(dw, cols, [&](Index r, Index c) {
      return dy[r * cols + c] * (x[r * cols + c] - mean[r]) * rstd[r];
    }, rows);
    column_sums_accumulate(db, cols, [&](Index r, Index c) { return dy[r * cols + c]; }, rows);
  }

  // ---------------------------------------------------------------- SPT
  /// @brief Shifted Patch Tokenization's gather: images [B, C, H, W] -> patches [B, n, PD].
  /// Copy k of the concatenation [x, s1, s2, s3, s4] reads x[c, i + di_k, j + dj_k] (0 outside);
  /// token t = r * (W/P) + col; feature (p1 * P + p2) * copies*C + k*C + c.
  ///
  /// n = (H/P) * (W/P) and PD = spt_copies(v) * C * P * P.
  /// @param patches output [B, n, PD]
  /// @param images  input [B, C, H, W]
  /// @param B       batch size
  /// @param C       channels
  /// @param H       image height, a multiple of P
  /// @param W       image width, a multiple of P
  /// @param P       patch size
  /// @param v       which shifted copies to concatenate
  void spt_forward(T* patches, const T* images, Index B, Index C, Index H, Index W, Index P,
                   SptVariant v) const {
    spt_walk(B, C, H, W, P, v, [&](Index dst, Index src) { patches[dst] = src < 0 ? T(0) : images[src]; });
  }

  /// @brief Transpose of spt_forward: dimages [B, C, H, W] = scatter-add of dpatches (assigned).
  /// @param dimages  image gradient [B, C, H, W] (assigned)
  /// @param dpatches patch gradient [B, n, PD]
  /// @param B,C,H,W,P,v as in spt_forward
  void spt_backward(T* dimages, const T* dpatches, Index B, Index C, Index H, Index W, Index P,
                    SptVariant v) const {
    std::fill(dimages, dimages + B * C * H * W, T(0));
    // Different tokens read the same pixel: parallel over images only, so writes never race.
    spt_walk(B, C, H, W, P, v, [&](Index dst, Index src) { if (src >= 0) dimages[src] += dpatches[dst]; });
  }

  // ---------------------------------------------------------------- tokens
  /// @brief x[b, 0] = cls + pos[0]; x[b, 1 + t] = tokens[b, t] + pos[1 + t].
  /// x [B, N, D], tokens [B, N-1, D], cls [D], pos [N, D].
  /// @param x      output token sequence [B, N, D]
  /// @param tokens patch tokens [B, N-1, D]
  /// @param cls    class token [D]
  /// @param pos    position embedding [N, D]
  /// @param B      batch size
  /// @param N      tokens per sequence, class token included
  /// @param D      token width
  void embed_forward(T* x, const T* tokens, const T* cls, const T* pos, Index B, Index N, Index D) const {
#pragma omp parallel for schedule(static) if(B * N * D >= parallel_grain)
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < N; ++t)
        for (Index c = 0; c < D; ++c)
          x[(b * N + t) * D + c] =
              (t == 0 ? cls[c] : tokens[(b * (N - 1) + t - 1) * D + c]) + pos[t * D + c];
  }

  /// @brief Backward of embed_forward: dtokens assigned; dcls, dpos accumulated.
  /// @param dtokens patch-token gradient [B, N-1, D] (assigned)
  /// @param dcls    class-token gradient [D] (accumulated: sum over b of dx[b, 0])
  /// @param dpos    position-embedding gradient [N, D] (accumulated: sum over b of dx[b])
  /// @param dx      sequence gradient [B, N, D]
  /// @param B,N,D   as in embed_forward
  void embed_backward(T* dtokens, T* dcls, T* dpos, const T* dx, Index B, Index N, Index D) const {
#pragma omp parallel for schedule(static) if(B * N * D >= parallel_grain)
    for (Index b = 0; b < B; ++b)
      for (Index t = 1; t < N; ++t)
        for (Index c = 0; c < D; ++c) dtokens[(b * (N - 1) + t - 1) * D + c] = dx[(b * N + t) * D + c];
    column_sums_accumulate(dpos, N * D, [&](Index b, Index i) { return dx[b * N * D + i]; }, B);
    column_sums_accumulate(dcls, D, [&](Index b, Index c) { return dx[b * N * D + c]; }, B);
  }

  /// @brief out [B, D] = x[b, 0] (cls) or mean over the N tokens (mean); x [B, N, D].
  /// @param out  output [B, D]
  /// @param x    token sequence [B, N, D]
  /// @param pool Pool::cls or Pool::mean
  /// @param B    batch size
  /// @param N    tokens per sequence
  /// @param D    token width
  void pool_forward(T* out, const T* x, Pool pool, Index B, Index N, Index D) const {
#pragma omp parallel for schedule(static) if(B * N * D >= parallel_grain)
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < D; ++c) {
        if (pool == Pool::cls) {
          out[b * D + c] = x[b * N * D + c];
        } else {
          T s = 0;
          for (Index t = 0; t < N; ++t) s += x[(b * N + t) * D + c];
          out[b * D + c] = s / T(N);
        }
      }
  }

  /// @brief Backward of pool_forward: dx [B, N, D] assigned (zero where the pool did not read).
  /// @param dx     sequence gradient [B, N, D] (assigned, every element)
  /// @param dout   pooled gradient [B, D]
  /// @param pool   as in pool_forward
  /// @param B,N,D  as in pool_forward
  void pool_backward(T* dx, const T* dout, Pool pool, Index B, Index N, Index D) const {
#pragma omp parallel for schedule(static) if(B * N * D >= parallel_grain)
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < N; ++t)
        for (Index c = 0; c < D; ++c)
          dx[(b * N + t) * D + c] =
              pool == Pool::cls ? (t == 0 ? dout[b * D + c] : T(0)) : dout[b * D + c] / T(N);
  }

  // ---------------------------------------------------------------- attention
  /// @brief A = softmax(mask(S * tau)) over the last axis. S, A [B, h, N, N]; raw scores S = q k^T.
  /// tau per head from `param` as `mode` says (fixed_tau for TemperatureMode::fixed). With
  /// mask_diagonal the diagonal logit is the most negative finite value, so A_ii = 0 exactly.
  /// @param A             attention probabilities [B, h, N, N] (output; each row sums to 1)
  /// @param S             raw scores q k^T [B, h, N, N]
  /// @param param         temperature parameter: [1] (shared_log), [h] (per_head), unread (fixed)
  /// @param mode          how tau is obtained from `param`
  /// @param fixed_tau     tau for TemperatureMode::fixed (d^-0.5 for plain MHSA)
  /// @param mask_diagonal LSA's diagonal mask: a token does not attend to itself
  /// @param B             batch size
  /// @param h             heads
  /// @param N             tokens
  void attention_softmax_forward(T* A, const T* S, const T* param, TemperatureMode mode, T fixed_tau,
                                 bool mask_diagonal, Index B, Index h, Index N) const {
    const T lowest = std::numeric_limits<T>::lowest();
#pragma omp parallel for schedule(static) if(B * h * N * N >= parallel_grain)
    for (Index row = 0; row < B * h * N; ++row) {
      const Index j = (row / N) % h, i = row % N;
      const T tau = head_tau(param, mode, fixed_tau, j);
      const T* s = S + row * N;
      T* a = A + row * N;
      T mx = lowest;
      for (Index c = 0; c < N; ++c) {
        a[c] = (mask_diagonal && c == i) ? lowest : s[c] * tau;
        mx = std::max(mx, a[c]);
      }
      T sum = 0;
      for (Index c = 0; c < N; ++c) {
        a[c] = (mask_diagonal && c == i) ? T(0) : std::exp(a[c] - mx);
        sum += a[c];
      }
      const T inv = T(1) / sum;
      for (Index c = 0; c < N; ++c) a[c] *= inv;
    }
  }

  /// @brief Backward of attention_softmax_forward. With Z = S * tau (masked):
  /// dZ = A * (dA - sum_c dA * A) (softmax Jacobian), dS = tau * dZ (assigned),
  /// dtau_j = sum over its rows of dZ * S; the temperature parameter gradient accumulates
  /// dparam[0] += tau * sum_j dtau_j (shared_log: d exp(p)/dp = tau) or dparam[j] += dtau_j.
  ///
  /// The masked diagonal needs no flag: A_ii = 0 makes dZ_ii = 0.
  /// @param dS        score gradient [B, h, N, N] (assigned)
  /// @param dparam    temperature gradient, [1] or [h] as `param` (accumulated; unwritten for fixed)
  /// @param dA        gradient w.r.t. the attention probabilities [B, h, N, N]
  /// @param A         the forward's attention probabilities [B, h, N, N]
  /// @param S         the forward's raw scores [B, h, N, N]
  /// @param param     temperature parameter, as in the forward
  /// @param mode      as in the forward
  /// @param fixed_tau as in the forward
  /// @param B,h,N     as in the forward
  void attention_softmax_backward(T* dS, T* dparam, const T* dA, const T* A, const T* S,
                                  const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h,
                                  Index N) const {
    std::vector<double> dtau(static_cast<std::size_t>(h), 0.0);
#pragma omp parallel if(B * h * N * N >= parallel_grain)
    {
      std::vector<double> local(static_cast<std::size_t>(h), 0.0);
#pragma omp for schedule(static)
      for (Index row = 0; row < B * h * N; ++row) {
        const Index j = (row / N) % h;
        const T tau = head_tau(param, mode, fixed_tau, j);
        const T* a = A + row * N;
        const T* da = dA + row * N;
        const T* s = S + row * N;
        T* ds = dS + row * N;
        T dot = 0;
        for (Index c = 0; c < N; ++c) dot += da[c] * a[c];
        double acc = 0;
        for (Index c = 0; c < N; ++c) {
          const T dz = a[c] * (da[c] - dot);  // zero on the masked diagonal, where A = 0
          acc += double(dz) * double(s[c]);
          ds[c] = tau * dz;
        }
        local[static_cast<std::size_t>(j)] += acc;
      }
#pragma omp critical
      for (Index j = 0; j < h; ++j) dtau[std::size_t(j)] += local[std::size_t(j)];
    }
    if (mode == TemperatureMode::shared_log) {
      double total = 0;
      for (double v : dtau) total += v;
      dparam[0] += T(total * double(std::exp(param[0])));
    } else if (mode == TemperatureMode::per_head) {
      for (Index j = 0; j < h; ++j) dparam[j] += T(dtau[std::size_t(j)]);
    }
  }

  // ---------------------------------------------------------------- losses
  /// @brief Softmax cross-entropy against target distributions.
  /// loss[b] = -sum_k t[b,k] log p[b,k]; probs [B, K] = softmax(logits);
  /// dlogits = grad_scale * (p * sum_k t - t) (assigned). logits, targets [B, K].
  /// @param loss       per-sample losses [B] (output)
  /// @param probs      softmax probabilities [B, K] (output)
  /// @param dlogits    gradient of grad_scale * sum_b loss[b] w.r.t. the logits [B, K] (assigned)
  /// @param logits     [B, K]
  /// @param targets    target distributions [B, K] (rows need not sum to 1)
  /// @param grad_scale factor of the gradient (1/B for the batch mean)
  /// @param B          batch size
  /// @param K          classes
  void softmax_cross_entropy(T* loss, T* probs, T* dlogits, const T* logits, const T* targets,
                             T grad_scale, Index B, Index K) const {
#pragma omp parallel for schedule(static) if(B * K * 64 >= parallel_grain)
    for (Index b = 0; b < B; ++b) {
      const T* z = logits + b * K;
      const T* t = targets + b * K;
      T mx = z[0];
      for (Index k = 1; k < K; ++k) mx = std::max(mx, z[k]);
      T sum = 0;
      for (Index k = 0; k < K; ++k) sum += std::exp(z[k] - mx);
      const T lse = mx + std::log(sum);
      T l = 0, tsum = 0;
      for (Index k = 0; k < K; ++k) {
        const T p = std::exp(z[k] - lse);
        probs[b * K + k] = p;
        l -= t[k] * (z[k] - lse);
        tsum += t[k];
      }
      for (Index k = 0; k < K; ++k) dlogits[b * K + k] = grad_scale * (probs[b * K + k] * tsum - t[k]);
      loss[b] = l;
    }
  }

  /// @brief Squared error of the expected vote E = sum_k (k+1) p_k against votes [B] (1-based).
  /// loss[b] = (E - v)^2; dlogits[b,k] = grad_scale * 2 (E - v) p_k ((k+1) - E) (assigned).
  /// @param loss       per-sample losses [B] (output)
  /// @param probs      softmax probabilities [B, K] (output)
  /// @param dlogits    gradient of grad_scale * sum_b loss[b] w.r.t. the logits [B, K] (assigned)
  /// @param logits     [B, K]
  /// @param votes      target votes in [1, K] [B] (fractional values, e.g. a MOS, allowed)
  /// @param grad_scale factor of the gradient (1/B for the batch mean)
  /// @param B          batch size
  /// @param K          classes
  void expected_vote_mse(T* loss, T* probs, T* dlogits, const T* logits, const T* votes, T grad_scale,
                         Index B, Index K) const {
#pragma omp parallel for schedule(static) if(B * K * 64 >= parallel_grain)
    for (Index b = 0; b < B; ++b) {
      const T* z = logits + b * K;
      T mx = z[0];
      for (Index k = 1; k < K; ++k) mx = std::max(mx, z[k]);
      T sum = 0;
      for (Index k = 0; k < K; ++k) sum += std::exp(z[k] - mx);
      T e = 0;
      for (Index k = 0; k < K; ++k) {
        probs[b * K + k] = std::exp(z[k] - mx) / sum;
        e += T(k + 1) * probs[b * K + k];
      }
      const T r = e - votes[b];
      loss[b] = r * r;
      for (Index k = 0; k < K; ++k)
        dlogits[b * K + k] = grad_scale * T(2) * r * probs[b * K + k] * (T(k + 1) - e);
    }
  }

  // ---------------------------------------------------------------- optimiser
  /// @brief One Adam / AdamW step over n elements, with PyTorch's exact arithmetic:
  /// (AdamW) p *= 1 - lr*wd;  (Adam) g += wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
  /// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
  /// @param p parameters [n], updated in place
  /// @param g gradients [n] (not modified)
  /// @param m first moment [n], updated in place
  /// @param v second moment [n], updated in place
  /// @param n number of elements
  /// @param s hyper-parameters and bias corrections of this step
  void adam_update(T* p, const T* g, T* m, T* v, std::size_t n, const AdamStep<T>& s) const {
    const T step_size = s.lr / s.bias_correction1;
    const T bc2_sqrt = std::sqrt(s.bias_correction2);
#pragma omp parallel for schedule(static) if(Index(n) >= parallel_grain)
    for (Index i = 0; i < Index(n); ++i) {
      T grad = g[i];
      if (s.weight_decay != T(0)) {
        if (s.decoupled) p[i] *= T(1) - s.lr * s.weight_decay;
        else grad += s.weight_decay * p[i];
      }
      m[i] = s.beta1 * m[i] + (T(1) - s.beta1) * grad;
      v[i] = s.beta2 * v[i] + (T(1) - s.beta2) * grad * grad;
      const T denom = std::sqrt(v[i]) / bc2_sqrt + s.eps;
      p[i] -= step_size * m[i] / denom;
    }
  }

 private:
  static T head_tau(const T* param, TemperatureMode mode, T fixed_tau, Index j) {
    switch (mode) {
      case TemperatureMode::shared_log: return std::exp(param[0]);
      case TemperatureMode::per_head: return param[j];
      default: return fixed_tau;
    }
  }

  /// out[c] += sum_{r < rows} value(r, c) for c < cols, parallel over column blocks.
  template <class F>
  static void column_sums_accumulate(T* out, Index cols, F value, Index rows) {
#pragma omp parallel for schedule(static) if(rows * cols >= parallel_grain)
    for (Index c0 = 0; c0 < cols; c0 += 64) {
      const Index c1 = std::min(cols, c0 + 64);
      double acc[64] = {};
      for (Index r = 0; r < rows; ++r)
        for (Index c = c0; c < c1; ++c) acc[c - c0] += double(value(r, c));
      for (Index c = c0; c < c1; ++c) out[c] += T(acc[c - c0]);
    }
  }

  /// Calls f(patch_index, image_index or -1) for every element of the SPT patch matrix.
  template <class F>
  static void spt_walk(Index B, Index C, Index H, Index W, Index P, SptVariant v, F f) {
    const Index copies = spt_copies(v);
    const Index s = P / 2;
    Index di[5] = {0, 0, 0, -1, 1}, dj[5] = {0, -1, 1, 0, 0};
    if (v == SptVariant::diagonal) {
      const Index ddi[5] = {0, -s, -s, s, s}, ddj[5] = {0, -s, s, -s, s};
      std::copy(ddi, ddi + 5, di);
      std::copy(ddj, ddj + 5, dj);
    }
    const Index gw = W / P, n = (H / P) * gw, PD = copies * C * P * P;
#pragma omp parallel for schedule(static) if(B * n * PD >= parallel_grain)
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < n; ++t) {
        const Index r0 = (t / gw) * P, c0 = (t % gw) * P;
        for (Index p1 = 0; p1 < P; ++p1)
          for (Index p2 = 0; p2 < P; ++p2)
            for (Index k = 0; k < copies; ++k)
              for (Index c = 0; c < C; ++c) {
                const Index i = r0 + p1 + di[k], j = c0 + p2 + dj[k];
                const Index dst = (b * n + t) * PD + (p1 * P + p2) * copies * C + k * C + c;
                const bool inside = i >= 0 && i < H && j >= 0 && j < W;
                f(dst, inside ? ((b * C + c) * H + i) * W + j : Index(-1));
              }
      }
  }
};

}  // namespace vitiq
