// vitiq/cuda/kernels.hpp -- the CUDA kernels of CudaBackend: every op of the CPU reference
// (vitiq/cpu/backend.hpp) that is not a GEMM. Each kernel is a template (header-only, so several
// translation units may include it); CudaBackend launches them on its context's stream.
//
// Conventions: `Index` (64-bit) for every size and offset; 1-D kernels use grid-stride loops, so
// any grid size covers any n; reductions are deterministic (fixed association order, no atomics)
// and, where the CPU backend accumulates in double (LayerNorm statistics, parameter-gradient
// column sums, the temperature gradient, sum_squares), accumulate in double too. Row kernels use
// one block (LayerNorm) or one warp (attention softmax) per row; block sizes are multiples of 32.
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda/kernels.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language)"
#endif

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "vitiq/backend.hpp"
#include "vitiq/cuda/rng.hpp"

namespace vitiq::cuda::kernels {

/// Signed type of sizes, strides and indices in the kernels.
using Index = std::ptrdiff_t;

/// Threads per block of the 1-D kernels and of the one-block reductions.
inline constexpr int block_threads = 256;
/// Threads per block of the row kernels (one block per LayerNorm row).
inline constexpr int row_threads = 128;

// ------------------------------------------------------------------ device helpers

/// exp in T's precision (expf for float).
template <class T>
__device__ __forceinline__ T dexp(T x) {
  if constexpr (std::is_same_v<T, float>) return expf(x);
  else return exp(x);
}
/// log in T's precision.
template <class T>
__device__ __forceinline__ T dlog(T x) {
  if constexpr (std::is_same_v<T, float>) return logf(x);
  else return log(x);
}
/// erf in T's precision.
template <class T>
__device__ __forceinline__ T derf(T x) {
  if constexpr (std::is_same_v<T, float>) return erff(x);
  else return erf(x);
}
/// sqrt in T's precision.
template <class T>
__device__ __forceinline__ T dsqrt(T x) {
  if constexpr (std::is_same_v<T, float>) return sqrtf(x);
  else return sqrt(x);
}
/// a * b rounded to T, never contracted into an FMA (where the CPU code stores the product).
template <class T>
__device__ __forceinline__ T mul_rn(T a, T b) {
  if constexpr (std::is_same_v<T, float>) return __fmul_rn(a, b);
  else return __dmul_rn(a, b);
}
/// The most negative finite T (std::numeric_limits<T>::lowest(), usable in device code).
template <class T>
__device__ __forceinline__ constexpr T lowest_value() {
  if constexpr (std::is_same_v<T, float>) return -3.402823466e+38F;
  else return -1.7976931348623157e+308;
}
/// True when x is neither NaN nor infinite.
template <class T>
__device__ __forceinline__ bool finite_value(T x) {
  return isfinite(x);
}

/// Sum over the 32 lanes of a warp (butterfly: every lane gets the same total). All 32 lanes
/// must call it.
template <class V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/// Maximum over the 32 lanes of a warp; every lane gets it. All 32 lanes must call it.
template <class V>
__device__ __forceinline__ V warp_max(V v) {
  for (int o = 16; o > 0; o >>= 1) {
    const V other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return v;
}
/// Sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread gets the
/// total. `scratch` is shared memory of at least 33 values; every thread of the block must call
/// it (it synchronises the block).
template <class V>
__device__ V block_sum(V v, V* scratch) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, warps = int(blockDim.x) >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V t = lane < warps ? scratch[lane] : V(0);
    t = warp_sum(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  const V total = scratch[32];
  __syncthreads();  // the caller may reuse scratch at once
  return total;
}

/// First index and stride of a grid-stride loop over a 1-D grid.
__device__ __forceinline__ Index grid_start() { return Index(blockIdx.x) * blockDim.x + threadIdx.x; }
/// Stride of a grid-stride loop over a 1-D grid.
__device__ __forceinline__ Index grid_stride() { return Index(gridDim.x) * blockDim.x; }

/// tau of head j (CpuBackend::head_tau).
template <class T>
__device__ __forceinline__ T head_tau(const T* param, TemperatureMode mode, T fixed_tau, Index j) {
  switch (mode) {
    case TemperatureMode::shared_log: return dexp(param[0]);
    case TemperatureMode::per_head: return param[j];
    default: return fixed_tau;
  }
}

// ------------------------------------------------------------------ elementwise

/// x[i] = v, i < n.
template <class T>
__global__ void fill(T* x, T v, Index n) {
  for (Index i = grid_start(); i < n; i += grid_stride()) x[i] = v;
}

/// C[r, c] = beta * C[r, c] (0 when beta is 0, C not read) for r < M, c < N, C [M, ldc].
template <class T>
__global__ void scale_matrix(T* C, T beta, Index M, Index N, Index ldc) {
  for (Index i = grid_start(); i < M * N; i += grid_stride()) {
    T& c = C[(i / N) * ldc + i % N];
    c = beta == T(0) ? T(0) : beta * c;
  }
}

/// y[r, c] += b[c], y [rows, cols].
template <class T>
__global__ void add_bias(T* y, const T* b, Index rows, Index cols) {
  for (Index i = grid_start(); i < rows * cols; i += grid_stride()) y[i] += b[i % cols];
}

/// y[i] += x[i].
template <class T>
__global__ void add(T* y, const T* x, Index n) {
  for (Index i = grid_start(); i < n; i += grid_stride()) y[i] += x[i];
}

/// y[i] = a[i] * b[i] (y may alias a or b: each element is read before it is written).
template <class T>
__global__ void multiply(T* y, const T* a, const T* b, Index n) {
  for (Index i = grid_start(); i < n; i += grid_stride()) y[i] = a[i] * b[i];
}

/// x[i] *= a.
template <class T>
__global__ void scale(T* x, T a, Index n) {
  for (Index i = grid_start(); i < n; i += grid_stride()) x[i] *= a;
}

/// x[r, c] *= s[r], x [rows, cols].
template <class T>
__global__ void scale_rows(T* x, const T* s, Index rows, Index cols) {
  for (Index i = grid_start(); i < rows * cols; i += grid_stride()) x[i] *= s[i / cols];
}

/// y[r, c] = x[r, c] * s[c], y, x [rows, cols] (y may alias x: each element is read before it is written).
template <class T>
__global__ void scale_columns(T* y, const T* x, const T* s, Index rows, Index cols) {
  for (Index i = grid_start(); i < rows * cols; i += grid_stride()) y[i] = x[i] * s[i % cols];
}

/// Inverted dropout mask from the counter-based hash: mask[i] = 0 when uniform01(seed, stream, i)
/// < p, else keep = 1/(1-p) (computed by the caller in T, as the CPU backend does).
template <class T>
__global__ void dropout_mask(T* mask, Index n, double p, T keep, std::uint64_t seed, std::uint64_t stream) {
  for (Index i = grid_start(); i < n; i += grid_stride())
    mask[i] = uniform01(seed, stream, std::uint64_t(i)) < p ? T(0) : keep;
}

/// Exact GELU y = 0.5 x (1 + erf(x / sqrt 2)).
template <class T>
__global__ void gelu_forward(T* y, const T* x, Index n) {
  const T r = T(0.70710678118654752440);
  for (Index i = grid_start(); i < n; i += grid_stride()) y[i] = T(0.5) * x[i] * (T(1) + derf(x[i] * r));
}

/// dx = dy * (Phi(x) + x phi(x)); dx may alias dy.
template <class T>
__global__ void gelu_backward(T* dx, const T* dy, const T* x, Index n) {
  const T r = T(0.70710678118654752440), c = T(0.39894228040143267794);
  for (Index i = grid_start(); i < n; i += grid_stride()) {
    const T xi = x[i];
    const T cdf = T(0.5) * (T(1) + derf(xi * r));
    const T pdf = c * dexp(T(-0.5) * xi * xi);
    dx[i] = dy[i] * (cdf + xi * pdf);
  }
}

// ------------------------------------------------------------------ reductions

/// partial[blockIdx.x] = sum over this block's grid-stride share of x[i]^2, in double.
template <class T>
__global__ void sum_squares_partial(double* partial, const T* x, Index n) {
  __shared__ double scratch[33];
  double s = 0;
  for (Index i = grid_start(); i < n; i += grid_stride()) s += double(x[i]) * double(x[i]);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/// out[0] = sum of partial[0 .. count), one block.
template <class V>
__global__ void sum_partials(V* out, const V* partial, Index count) {
  __shared__ V scratch[33];
  V s = 0;
  for (Index i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[0] = s;
}

/// *flag = 1 when some x[i] is NaN or infinite (flag zeroed by the caller; every writer writes 1).
template <class T>
__global__ void any_nonfinite(int* flag, const T* x, Index n) {
  for (Index i = grid_start(); i < n; i += grid_stride())
    if (!finite_value(x[i])) *flag = 1;
}

/// Functor: element (r, c) of a row-major matrix with row stride ld.
template <class T>
struct MatrixValue {
  const T* p;  ///< first element
  Index ld;    ///< row stride
  /// p[r * ld + c]
  __device__ T operator()(Index r, Index c) const { return p[r * ld + c]; }
};

/// Functor: a[r, c] * b[r, c] (column_dots).
template <class T>
struct ProductValue {
  const T* a;  ///< the first matrix
  const T* b;  ///< the second matrix
  Index cols;  ///< row length of both
  /// The summand of out[c] from row r.
  __device__ T operator()(Index r, Index c) const { return a[r * cols + c] * b[r * cols + c]; }
};

/// Functor: dy * xhat of LayerNorm, dy[r, c] * (x[r, c] - mean[r]) * rstd[r] (the CPU's T arithmetic).
template <class T>
struct LayerNormWeightGrad {
  const T *dy, *x, *mean, *rstd;  ///< the backward's inputs
  Index cols;                     ///< row length
  /// The summand of dw[c] from row r.
  __device__ T operator()(Index r, Index c) const {
    const Index i = r * cols + c;
    return dy[i] * (x[i] - mean[r]) * rstd[r];
  }
};

/// Threads in x (columns) and y (rows) of a column_sums_partial block.
inline constexpr int colsum_x = 32, colsum_y = 8;

/// partial[chunk, c] = sum over rows [chunk * rows_per_chunk, +rows_per_chunk) of f(r, c), in
/// double. Block (32, 8): 32 adjacent columns (coalesced), 8 row lanes; grid (ceil(cols / 32),
/// chunks).
template <class F>
__global__ void column_sums_partial(double* partial, F f, Index rows, Index cols, Index rows_per_chunk) {
  __shared__ double sums[colsum_y][colsum_x + 1];
  const Index c = Index(blockIdx.x) * colsum_x + threadIdx.x;
  const Index r0 = Index(blockIdx.y) * rows_per_chunk;
  const Index r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double acc = 0;
  if (c < cols)
    for (Index r = r0 + threadIdx.y; r < r1; r += colsum_y) acc += double(f(r, c));
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t = 0;
    for (int k = 0; k < colsum_y; ++k) t += sums[k][threadIdx.x];
    partial[Index(blockIdx.y) * cols + c] = t;
  }
}

/// out[c] += T(sum over chunks of partial[chunk, c]) (the accumulation rule of parameter gradients).
template <class T>
__global__ void column_sums_finish(T* out, const double* partial, Index chunks, Index cols) {
  for (Index c = grid_start(); c < cols; c += grid_stride()) {
    double t = 0;
    for (Index k = 0; k < chunks; ++k) t += partial[k * cols + c];
    out[c] += T(t);
  }
}

// ------------------------------------------------------------------ LayerNorm

/// One block (row_threads) per row of x [rows, cols]: mean and biased variance in double
/// (two passes, as the CPU), y = (x - mean) * rstd * w + b; mean, rstd [rows] kept.
template <class T>
__global__ void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, Index rows,
                                  Index cols) {
  __shared__ double scratch[33];
  for (Index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double s = 0;
    for (Index c = threadIdx.x; c < cols; c += blockDim.x) s += double(xr[c]);
    const double m = block_sum(s, scratch) / double(cols);
    double v = 0;
    for (Index c = threadIdx.x; c < cols; c += blockDim.x) {
      const double dev = double(xr[c]) - m;
      v += dev * dev;
    }
    v = block_sum(v, scratch) / double(cols);
    const T sd = T(1.0 / sqrt(v + 1e-5));
    const T mt = T(m);
    for (Index c = threadIdx.x; c < cols; c += blockDim.x)  // w, b null: no affine part (y = xhat)
      yr[c] = w ? (xr[c] - mt) * sd * w[c] + b[c] : (xr[c] - mt) * sd;
    if (threadIdx.x == 0) {
      mean[r] = mt;
      rstd[r] = sd;
    }
  }
}

/// The row part of LayerNorm's backward, one block per row: with g = dy * w and
/// xhat = (x - mean) * rstd, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (assigned, or added
/// to dx when accumulate); the
/// two means accumulate in double. dw and db are column sums (column_sums_partial).
template <class T>
__global__ void layernorm_backward_rows(T* dx, const T* dy, const T* x, const T* mean, const T* rstd, const T* w,
                                        Index rows, Index cols, bool accumulate) {
  __shared__ double scratch[33];
  for (Index r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    // mean null: x holds xhat; w null: no affine part (g = dy)
    const T s = rstd[r], m = mean ? mean[r] : T(0), xs = mean ? s : T(1);
    double sum_g = 0, sum_gx = 0;
    for (Index c = threadIdx.x; c < cols; c += blockDim.x) {
      const T g = w ? dyr[c] * w[c] : dyr[c];
      sum_g += double(g);
      sum_gx += double(g * (xr[c] - m) * xs);
    }
    sum_g = block_sum(sum_g, scratch);
    sum_gx = block_sum(sum_gx, scratch);
    const T mg = T(sum_g / double(cols)), mgx = T(sum_gx / double(cols));
    for (Index c = threadIdx.x; c < cols; c += blockDim.x) {
      const T xhat = (xr[c] - m) * xs;
      const T v = s * ((w ? dyr[c] * w[c] : dyr[c]) - mg - xhat * mgx);
      dxr[c] = accumulate ? dxr[c] + v : v;
    }
  }
}

// ------------------------------------------------------------------ SPT

/// The geometry of Shifted Patch Tokenization, computed on the host (CudaBackend::spt_geometry).
struct SptGeometry {
  Index B, C, H, W, P;  ///< batch, channels, height, width, patch size
  Index copies;         ///< 5 shifted copies (axial, diagonal) or 1 (none)
  Index gw, n, PD;      ///< patches per image row, patches per image, features per patch
  Index di[5], dj[5];   ///< the row and column shift of each copy
};

/// patches[b, t, (p1 * P + p2) * copies * C + k * C + c] = images[b, c, i, j] with
/// (i, j) = (r0 + p1 + di_k, c0 + p2 + dj_k), 0 outside the image. One thread per patch element.
template <class T>
__global__ void spt_forward(T* patches, const T* images, SptGeometry g) {
  const Index total = g.B * g.n * g.PD;
  const Index kc = g.copies * g.C;
  for (Index dst = grid_start(); dst < total; dst += grid_stride()) {
    const Index f = dst % g.PD, bt = dst / g.PD;
    const Index t = bt % g.n, b = bt / g.n;
    const Index pix = f / kc, kcr = f % kc;  // pix = p1 * P + p2
    const Index k = kcr / g.C, c = kcr % g.C;
    const Index i = (t / g.gw) * g.P + pix / g.P + g.di[k];
    const Index j = (t % g.gw) * g.P + pix % g.P + g.dj[k];
    const bool inside = i >= 0 && i < g.H && j >= 0 && j < g.W;
    patches[dst] = inside ? images[((b * g.C + c) * g.H + i) * g.W + j] : T(0);
  }
}

/// Transpose of spt_forward, as a gather (no atomics): one thread per image element sums, in
/// ascending patch-element order as the CPU's scatter does, the at most `copies` patch elements
/// that read it. Copy k reads pixel (i, j) from the unshifted position (i - di_k, j - dj_k).
template <class T>
__global__ void spt_backward(T* dimages, const T* dpatches, SptGeometry g) {
  const Index total = g.B * g.C * g.H * g.W;
  for (Index e = grid_start(); e < total; e += grid_stride()) {
    const Index j = e % g.W, i = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C, b = e / (g.W * g.H * g.C);
    Index src[5];
    int count = 0;
    for (Index k = 0; k < g.copies; ++k) {
      const Index u = i - g.di[k], v = j - g.dj[k];
      if (u < 0 || u >= g.H || v < 0 || v >= g.W) continue;
      const Index t = (u / g.P) * g.gw + v / g.P, pix = (u % g.P) * g.P + v % g.P;
      const Index s = (b * g.n + t) * g.PD + pix * g.copies * g.C + k * g.C + c;
      int at = count++;  // insertion sort: ascending patch-element index
      while (at > 0 && src[at - 1] > s) {
        src[at] = src[at - 1];
        --at;
      }
      src[at] = s;
    }
    T sum = T(0);
    for (int q = 0; q < count; ++q) sum += dpatches[src[q]];
    dimages[e] = sum;
  }
}

// ------------------------------------------------------------------ tokens and pooling

/// x[b, 0] = cls + pos[0]; x[b, 1 + t] = tokens[b, t] + pos[1 + t]; x [B, N, D].
template <class T>
__global__ void embed_forward(T* x, const T* tokens, const T* cls, const T* pos, Index B, Index N, Index D) {
  for (Index e = grid_start(); e < B * N * D; e += grid_stride()) {
    const Index c = e % D, t = (e / D) % N, b = e / (N * D);
    x[e] = (t == 0 ? cls[c] : tokens[(b * (N - 1) + t - 1) * D + c]) + pos[t * D + c];
  }
}

/// dtokens[b, t] = dx[b, 1 + t] (assigned), dtokens [B, N-1, D].
template <class T>
__global__ void embed_tokens_backward(T* dtokens, const T* dx, Index B, Index N, Index D) {
  const Index n = N - 1;
  for (Index e = grid_start(); e < B * n * D; e += grid_stride()) {
    const Index c = e % D, t = (e / D) % n, b = e / (n * D);
    dtokens[e] = dx[(b * N + t + 1) * D + c];
  }
}

/// out [B, D] = x[b, 0] (cls) or the mean over the N tokens (summed in token order, in T).
template <class T>
__global__ void pool_forward(T* out, const T* x, bool cls, Index B, Index N, Index D) {
  for (Index e = grid_start(); e < B * D; e += grid_stride()) {
    const Index c = e % D, b = e / D;
    if (cls) {
      out[e] = x[b * N * D + c];
    } else {
      T s = 0;
      for (Index t = 0; t < N; ++t) s += x[(b * N + t) * D + c];
      out[e] = s / T(N);
    }
  }
}

/// dx [B, N, D] (every element assigned) from dout [B, D].
template <class T>
__global__ void pool_backward(T* dx, const T* dout, bool cls, Index B, Index N, Index D) {
  for (Index e = grid_start(); e < B * N * D; e += grid_stride()) {
    const Index c = e % D, t = (e / D) % N, b = e / (N * D);
    dx[e] = cls ? (t == 0 ? dout[b * D + c] : T(0)) : dout[b * D + c] / T(N);
  }
}

// ------------------------------------------------------------------ attention softmax

/// Warps per block of the attention kernels (one warp per row of N scores).
inline constexpr int softmax_warps = block_threads / 32;

/// A = softmax(mask(S * tau)) row by row, one warp per row of [B, h, Nq, N]: the first Nq tokens'
/// queries against all N keys (Nq = N: the full attention; 1: the class token's row). Query i's
/// masked entry (its own key, column i) gets probability exactly 0.
template <class T>
__global__ void attention_softmax_forward(T* A, const T* S, const T* param, TemperatureMode mode, T fixed_tau,
                                          bool mask_diagonal, Index B, Index h, Index N, Index Nq) {
  const Index rows = B * h * Nq;
  const int lane = int(threadIdx.x) & 31;
  const Index warps = Index(gridDim.x) * (blockDim.x / 32);
  // `row` is the same for all 32 lanes of a warp, so the shuffles see full warps.
  for (Index row = Index(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const Index j = (row / Nq) % h, i = row % Nq;  // query i (token i) against the N keys
    const T tau = head_tau(param, mode, fixed_tau, j);
    const T* s = S + row * N;
    T* a = A + row * N;
    T mx = lowest_value<T>();
    for (Index c = lane; c < N; c += 32)
      if (!(mask_diagonal && c == i)) {
        const T z = mul_rn(s[c], tau);
        mx = z > mx ? z : mx;
      }
    mx = warp_max(mx);
    T sum = 0;
    for (Index c = lane; c < N; c += 32) {
      const T e = (mask_diagonal && c == i) ? T(0) : dexp(mul_rn(s[c], tau) - mx);
      a[c] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    const T inv = T(1) / sum;
    for (Index c = lane; c < N; c += 32) a[c] *= inv;
  }
}

/// Backward of the softmax, one warp per row of [B, h, Nq, N]: dZ = A (dA - sum dA A), dS = tau dZ (assigned),
/// row_acc[row] = sum_c dZ * S in double (the row's share of dtau; unwritten when `want_tau` is
/// false).
template <class T>
__global__ void attention_softmax_backward(T* dS, double* row_acc, const T* dA, const T* A, const T* S,
                                           const T* param, TemperatureMode mode, T fixed_tau, bool want_tau,
                                           Index B, Index h, Index N, Index Nq) {
  const Index rows = B * h * Nq;
  const int lane = int(threadIdx.x) & 31;
  const Index warps = Index(gridDim.x) * (blockDim.x / 32);
  for (Index row = Index(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const Index j = (row / Nq) % h;
    const T tau = head_tau(param, mode, fixed_tau, j);
    const T* a = A + row * N;
    const T* da = dA + row * N;
    const T* s = S + row * N;
    T* ds = dS + row * N;
    T dot = 0;
    for (Index c = lane; c < N; c += 32) dot += da[c] * a[c];
    dot = warp_sum(dot);
    double acc = 0;
    for (Index c = lane; c < N; c += 32) {
      const T dz = a[c] * (da[c] - dot);
      acc += double(dz) * double(s[c]);
      ds[c] = tau * dz;
    }
    acc = warp_sum(acc);
    if (want_tau && lane == 0) row_acc[row] = acc;
  }
}

/// One block: dtau_j = sum of row_acc [B, h, Nq] over the rows of head j; dparam[j] += dtau_j (per_head) or
/// dparam[0] += exp(param[0]) * sum_j dtau_j (shared_log).
template <class T>
__global__ void temperature_grad_finish(T* dparam, const double* row_acc, const T* param, TemperatureMode mode,
                                        Index B, Index h, Index Nq) {
  __shared__ double scratch[33];
  double total = 0;
  for (Index j = 0; j < h; ++j) {
    double local = 0;
    for (Index m = threadIdx.x; m < B * Nq; m += blockDim.x) local += row_acc[((m / Nq) * h + j) * Nq + m % Nq];
    const double dtau = block_sum(local, scratch);
    total += dtau;
    if (threadIdx.x == 0 && mode == TemperatureMode::per_head) dparam[j] += T(dtau);
  }
  if (threadIdx.x == 0 && mode == TemperatureMode::shared_log) dparam[0] += T(total * double(dexp(param[0])));
}

// ------------------------------------------------------------------ losses (one thread per sample)

/// Softmax cross-entropy against target distributions; CpuBackend::softmax_cross_entropy.
template <class T>
__global__ void softmax_cross_entropy(T* loss, T* probs, T* dlogits, const T* logits, const T* targets,
                                      T grad_scale, Index B, Index K) {
  for (Index b = grid_start(); b < B; b += grid_stride()) {
    const T* z = logits + b * K;
    const T* t = targets + b * K;
    T mx = z[0];
    for (Index k = 1; k < K; ++k) mx = z[k] > mx ? z[k] : mx;
    T sum = 0;
    for (Index k = 0; k < K; ++k) sum += dexp(z[k] - mx);
    const T lse = mx + dlog(sum);
    T l = 0, tsum = 0;
    for (Index k = 0; k < K; ++k) {
      const T p = dexp(z[k] - lse);
      probs[b * K + k] = p;
      l -= t[k] * (z[k] - lse);
      tsum += t[k];
    }
    for (Index k = 0; k < K; ++k) dlogits[b * K + k] = grad_scale * (probs[b * K + k] * tsum - t[k]);
    loss[b] = l;
  }
}

/// Squared error of the expected vote; CpuBackend::expected_vote_mse.
template <class T>
__global__ void expected_vote_mse(T* loss, T* probs, T* dlogits, const T* logits, const T* votes, T grad_scale,
                                  Index B, Index K) {
  for (Index b = grid_start(); b < B; b += grid_stride()) {
    const T* z = logits + b * K;
    T mx = z[0];
    for (Index k = 1; k < K; ++k) mx = z[k] > mx ? z[k] : mx;
    T sum = 0;
    for (Index k = 0; k < K; ++k) sum += dexp(z[k] - mx);
    T e = 0;
    for (Index k = 0; k < K; ++k) {
      probs[b * K + k] = dexp(z[k] - mx) / sum;
      e += T(k + 1) * probs[b * K + k];
    }
    const T r = e - votes[b];
    loss[b] = r * r;
    for (Index k = 0; k < K; ++k) dlogits[b * K + k] = grad_scale * T(2) * r * probs[b * K + k] * (T(k + 1) - e);
  }
}

// ------------------------------------------------------------------ optimiser

/// One fused Adam / AdamW step over n elements with PyTorch's arithmetic (CpuBackend::adam_update);
/// step_size = lr / bc1 and bc2_sqrt = sqrt(bc2) come from the host, computed as the CPU does.
template <class T>
__global__ void adam_update(T* p, const T* g, T* m, T* v, Index n, AdamStep<T> s, T step_size, T bc2_sqrt) {
  for (Index i = grid_start(); i < n; i += grid_stride()) {
    T grad = g[i];
    T pi = p[i];
    if (s.weight_decay != T(0)) {
      if (s.decoupled) pi *= T(1) - s.lr * s.weight_decay;
      else grad += s.weight_decay * pi;
    }
    const T mi = s.beta1 * m[i] + (T(1) - s.beta1) * grad;
    const T vi = s.beta2 * v[i] + (T(1) - s.beta2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    const T denom = dsqrt(vi) / bc2_sqrt + s.eps;
    p[i] = pi - step_size * mi / denom;
  }
}

// ------------------------------------------------------------------ GEMM support

/// Pointer arrays of a two-level GEMM batch: for t < total, o = t / inner, i = t % inner,
/// pa[t] = A + o * sa_outer + i * sa_inner (likewise B, C).
template <class T>
__global__ void batched_pointers(const T** pa, const T** pb, T** pc, const T* A, Index sa_outer, Index sa_inner,
                                 const T* B, Index sb_outer, Index sb_inner, T* C, Index sc_outer,
                                 Index sc_inner, Index total, Index inner) {
  for (Index t = grid_start(); t < total; t += grid_stride()) {
    const Index o = t / inner, i = t % inner;
    pa[t] = A + o * sa_outer + i * sa_inner;
    pb[t] = B + o * sb_outer + i * sb_inner;
    pc[t] = C + o * sc_outer + i * sc_inner;
  }
}

}  // namespace vitiq::cuda::kernels
