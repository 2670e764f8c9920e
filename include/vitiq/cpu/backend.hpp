// vitiq/cpu/backend.hpp -- the CPU backend: Eigen GEMM kernels over row-major flat buffers and
// vectorised loops, in float (training) and double (gradient checks), run on the caller's thread
// plus a small pool of helper threads that sleep when idle (detail::WorkerPool).
//
// Every op is documented here; the plain versions of the ops that are optimised (GEMM tiling, the
// attention softmax, GELU, LayerNorm, SPT) stay at the end of this file in vitiq::reference and
// tests/test_cpu_kernels.cpp checks both against each other. The fused attention ops
// (attention_forward/backward) have the unfused ones (gemm_batched, attention_softmax_*) as their
// oracle: tests/test_attention_fused.cpp.
// Conventions (see vitiq/backend.hpp): outputs first; parameter gradients accumulate (+=),
// activation gradients are assigned (=).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>  // vectorised erf (GELU)

#include "vitiq/backend.hpp"
#include "vitiq/config.hpp"
#include "vitiq/cpu/rng.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <climits>
#include <string>
#include <type_traits>

#include "vitiq/error.hpp"

namespace vitiq {

/// @brief The kernel the CPU backend's GEMMs run on.
///
/// `eigen` (default): Eigen's packed product, header-only, identical on every machine.
/// `blas`: the system CBLAS (on Debian, OpenBLAS through libblas.so.3: 1.3-1.7x faster per core
/// on the model's shapes where OpenBLAS picks its AVX-512 kernels; see benchmarks/RESULTS.md). It
/// is there only in programs that link the `vitiq::blas` CMake target (it defines
/// VITIQ_USE_CBLAS); choosing it makes OpenBLAS single-threaded, because the backend cuts each
/// GEMM into one tile per thread itself. Results differ from Eigen's in the last bits, so a run
/// is bit-for-bit reproducible only with the same engine.
/// The initial engine comes from the environment variable VITIQ_GEMM (`eigen` or `blas`).
enum class GemmEngine { eigen, blas };

namespace detail {

/// Row-major CBLAS GEMMs, set by translation units compiled with VITIQ_USE_CBLAS (below).
struct BlasHooks {
  void (*sgemm)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) = nullptr;
  void (*dgemm)(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*,
                int) = nullptr;
  void (*single_thread)() = nullptr;  ///< make the BLAS library run each call on the caller's thread
};
inline BlasHooks& blas_hooks() {
  static BlasHooks hooks;
  return hooks;
}

/// The engine in use: -1 until first asked (then read from VITIQ_GEMM), else a GemmEngine.
inline std::atomic<int>& gemm_engine_slot() {
  static std::atomic<int> engine{-1};
  return engine;
}

}  // namespace detail

/// @brief Whether this program can run GEMMs on a BLAS (it links vitiq::blas).
inline bool blas_available() { return detail::blas_hooks().sgemm != nullptr; }

/// @brief Choose the GEMM kernel of the CPU backend for the whole process.
/// @throws Error when `blas` is asked for in a program built without a BLAS.
inline void set_gemm_engine(GemmEngine engine) {
  if (engine == GemmEngine::blas) {
    if (!blas_available())
      throw Error("GEMM engine 'blas': this program was built without a BLAS (Debian: install libblas-dev and "
                  "libopenblas0-pthread, configure vitiq with -DVITIQ_WITH_BLAS=ON, link vitiq::blas)");
    if (detail::blas_hooks().single_thread) detail::blas_hooks().single_thread();
  }
  detail::gemm_engine_slot().store(int(engine));
}

/// @brief The GEMM kernel in use; the first call reads VITIQ_GEMM (`eigen`, the default, or `blas`).
/// @throws Error naming VITIQ_GEMM when it holds anything else, or `blas` without a BLAS.
inline GemmEngine gemm_engine() {
  const int e = detail::gemm_engine_slot().load(std::memory_order_relaxed);
  if (e >= 0) return GemmEngine(e);
  const char* env = std::getenv("VITIQ_GEMM");
  const std::string v = env ? env : "";
  if (v.empty() || v == "eigen") {
    set_gemm_engine(GemmEngine::eigen);
  } else if (v == "blas") {
    set_gemm_engine(GemmEngine::blas);
  } else {
    throw Error("environment variable VITIQ_GEMM='" + v + "': expected 'eigen' or 'blas'");
  }
  return GemmEngine(detail::gemm_engine_slot().load());
}

namespace detail {

/// @brief Number of threads the CPU backend may use for one op: OpenMP's setting
/// (OMP_NUM_THREADS, omp_set_num_threads), 1 inside a caller's own OpenMP parallel region or
/// without OpenMP.
inline int cpu_threads() {
#if defined(_OPENMP)
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

/// @brief The CPU backend's threads: the calling thread and up to `threads - 1` helper threads
/// share the chunks of one job through an atomic counter.
///
/// Why not OpenMP parallel regions: every region ends in a barrier that waits for every thread
/// of the team, so on a shared two-core machine one descheduled worker stalls the whole op, and
/// OpenMP's idle workers spin for a while after each region, taking the core from whoever else
/// needs it. Here the caller takes chunks too and waits only for chunks a helper has actually
/// started: a helper that is not running when a job is posted simply takes no part in it.
/// Idle helpers spin for at most spin_microseconds() (VITIQ_SPIN_US, default 50) and then sleep
/// in the kernel (futex) until the next job.
///
/// One job at a time: a second thread that calls in while a job runs, and any call from inside a
/// chunk, runs its job serially on its own thread. Helpers are created on first use and joined at
/// exit.
class WorkerPool {
 public:
  using Index = std::ptrdiff_t;

  /// @brief The process's pool.
  static WorkerPool& instance() {
    static WorkerPool pool;
    return pool;
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);  // a helper checks stop_ under this mutex before it sleeps
      stop_.store(true);
    }
    wake_helpers();
    for (auto& t : helpers_) t.join();
  }

  /// @brief Call f(i) for every i in [0, chunks), each exactly once, on the calling thread and up
  /// to threads - 1 helpers; returns when all calls have returned. f must not throw.
  /// @param chunks  number of calls
  /// @param threads most threads to use (the caller included)
  /// @param f       callable with signature void(Index)
  template <class F>
  void run(Index chunks, int threads, const F& f) {
    if (chunks <= 0) return;
    if (threads <= 1 || chunks == 1 || inside() || !call_mutex_.try_lock()) {
      for (Index i = 0; i < chunks; ++i) f(i);
      return;
    }
    std::lock_guard<std::mutex> lock(call_mutex_, std::adopt_lock);
    ensure_helpers(threads - 1);
    fn_ = [](const void* ctx, Index i) { (*static_cast<const F*>(ctx))(i); };
    ctx_ = &f;
    chunks_ = chunks;
    next_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    wanted_.store(threads - 1, std::memory_order_relaxed);
    open_.store(true);
    wake_helpers();
    inside() = true;
    work();
    inside() = false;
    wait_until([&] { return done_.load(std::memory_order_acquire) >= chunks; });  // chunks helpers took
    open_.store(false);
    wait_until([&] { return users_.load() == 0; });  // helpers that looked at this job have left it
  }

  /// @brief How long idle helpers spin before they sleep (VITIQ_SPIN_US, default 50).
  static long spin_microseconds() {
    static const long us = [] {
      const char* e = std::getenv("VITIQ_SPIN_US");
      return e ? std::max(0L, std::atol(e)) : 50L;
    }();
    return us;
  }

 private:
  WorkerPool() = default;

  static bool& inside() {
    thread_local bool in = false;
    return in;
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }

  /// Spin a little, then yield the core (a helper that took a chunk may be waiting for it).
  template <class Pred>
  static void wait_until(Pred done) {
    for (int i = 0; !done(); ++i) {
      if (i < 4096) pause();
      else std::this_thread::yield();
    }
  }

  void work() {
    for (Index i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < chunks_;) {
      fn_(ctx_, i);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void ensure_helpers(int count) {
    while (int(helpers_.size()) < count) {
      const int k = int(helpers_.size());
      helpers_.emplace_back([this, k] { helper_loop(k); });
    }
  }

  void helper_loop(int k) {
    inside() = true;  // a job's chunks never start nested jobs on the pool
    std::uint32_t seen = generation_.load();
    const auto spin = std::chrono::microseconds(spin_microseconds());
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      // The stop flag is part of both waits: a helper started just before the pool is destroyed
      // may read `seen` after the destructor's last generation step and would otherwise sleep forever.
      for (int i = 0; generation_.load(std::memory_order_relaxed) == seen && !stop_.load(); ++i) {
        pause();
        if ((i & 63) == 63 && std::chrono::steady_clock::now() - t0 > spin) {
          // Sleep until the generation moves on or the pool stops.
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          sleep_cv_.wait(lock, [&] { return generation_.load() != seen || stop_.load(); });
          break;
        }
      }
      seen = generation_.load();
      if (stop_.load()) return;
      if (k >= wanted_.load(std::memory_order_relaxed)) continue;
      users_.fetch_add(1);
      if (open_.load()) work();
      users_.fetch_sub(1);
    }
  }

  /// Start a new generation (a job or the stop) and wake every sleeping helper. The increment
  /// happens under sleep_mutex_, so a helper between its predicate check and its sleep cannot miss it.
  void wake_helpers() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      generation_.fetch_add(1);
    }
    sleep_cv_.notify_all();
  }

  std::mutex call_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
  std::vector<std::thread> helpers_;
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<bool> open_{false}, stop_{false};
  std::atomic<int> wanted_{0}, users_{0};
  std::atomic<Index> next_{0}, done_{0};
  void (*fn_)(const void*, Index) = nullptr;
  const void* ctx_ = nullptr;
  Index chunks_ = 0;
};

}  // namespace detail

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

/// @brief CPU backend: Eigen's GEMM kernels, vectorised loops, detail::WorkerPool threads.
/// `T` is float or double.
///
/// Stateless: "device" memory is host memory, and every op runs synchronously. Ops use up to
/// detail::cpu_threads() threads (OpenMP's thread count setting); work too small to split runs on
/// the caller's thread.
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

  /// Work below this many elements (or multiply-adds for GEMMs) runs on one thread: handing
  /// chunks to a helper costs a few microseconds.
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
  ///
  /// Large products are cut into one tile of C per thread (along the longer side of C); each
  /// tile is one single-threaded Eigen GEMM (packing + AVX kernels). Small ones run whole on the
  /// caller's thread. Where K is at least twice C's longer side (the weight gradients, dW =
  /// dY^T X over B*N rows), a tile of C would make every thread pack the whole long operand:
  /// there the threads share K instead, the first adding its part into C (with beta), the others
  /// into scratch matrices that are then added to C in a fixed order (deterministic for a given
  /// thread count; the sums are grouped differently from one thread's).
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
    if (M == 0 || N == 0) return;
    (void)gemm_engine();  // reads VITIQ_GEMM on the caller's thread (may throw), not in a helper
    const int threads = detail::cpu_threads();
    // A tile narrower than this wastes the micro-kernel and re-packs the other operand too often.
    constexpr Index min_tile = 64;
    const Index longer = std::max(M, N);
    const Index tiles = std::min<Index>(threads, longer / min_tile);
    if (tiles <= 1 || M * N * K < 8 * parallel_grain) {
      gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    if (K >= 2 * longer && K / threads >= 4 * min_tile) {
      gemm_split_k(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
      return;
    }
    const bool split_rows = M >= N;
    detail::WorkerPool::instance().run(tiles, threads, [&](Index t) {
      // tile boundaries on multiples of 16 (whole micro-kernel panels)
      const Index b0 = (longer * t / tiles) / 16 * 16, b1 = t + 1 == tiles ? longer : (longer * (t + 1) / tiles) / 16 * 16;
      if (b1 <= b0) return;
      if (split_rows) {
        const T* a = trans_a ? A + b0 : A + b0 * lda;
        gemm_serial(trans_a, trans_b, b1 - b0, N, K, alpha, a, lda, B, ldb, beta, C + b0 * ldc, ldc);
      } else {
        const T* b = trans_b ? B + b0 * ldb : B + b0;
        gemm_serial(trans_a, trans_b, M, b1 - b0, K, alpha, A, lda, b, ldb, beta, C + b0, ldc);
      }
    });
  }

  /// gemm() with K shared by `parts` threads: part 0 computes C = alpha op(A) op(B) + beta C over
  /// its K range, part p > 0 alpha op(A) op(B) over its range into scratch p - 1 [M, N]; then C +=
  /// scratch 0, scratch 1, ... row by row. The scratch is the calling thread's, kept between calls.
  static void gemm_split_k(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A, Index lda,
                           const T* B, Index ldb, T beta, T* C, Index ldc, int parts) {
    thread_local std::vector<T> scratch;
    scratch.resize(std::size_t((parts - 1) * M * N));
    T* work = scratch.data();
    detail::WorkerPool::instance().run(parts, parts, [&](Index p) {
      const Index k0 = (K * p / parts) / 16 * 16, k1 = p + 1 == parts ? K : (K * (p + 1) / parts) / 16 * 16;
      const T* a = trans_a ? A + k0 * lda : A + k0;  // op(A) columns k0.. : rows of A^T, columns of A
      const T* b = trans_b ? B + k0 : B + k0 * ldb;  // op(B) rows k0..
      if (p == 0) gemm_serial(trans_a, trans_b, M, N, k1 - k0, alpha, a, lda, b, ldb, beta, C, ldc);
      else gemm_serial(trans_a, trans_b, M, N, k1 - k0, alpha, a, lda, b, ldb, T(0), work + (p - 1) * M * N, N);
    });
    parallel_for(M, N * parts, [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r) {
        auto c = vec(C + r * ldc, N);
        for (int p = 1; p < parts; ++p) c += vec(work + (p - 1) * M * N + r * N, N);
      }
    });
  }

  /// @brief A two-level batch of GEMMs: for o < batch_outer, i < batch_inner, the GEMM above on
  /// A + o*sa_outer + i*sa_inner, B + o*sb_outer + i*sb_inner, C + o*sc_outer + i*sc_inner.
  /// Used for attention, where batch element b and head j address q, k, v inside the qkv rows.
  ///
  /// The batch is shared among the threads, each GEMM single-threaded, so the C blocks must not
  /// overlap.
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
    (void)gemm_engine();  // resolved on the caller's thread (may throw), not in a helper
    parallel_for(total, M * N * K, [&](Index t0, Index t1) {
      for (Index t = t0; t < t1; ++t) {
        const Index o = t / batch_inner, i = t % batch_inner;
        gemm_serial(trans_a, trans_b, M, N, K, alpha, A + o * sa_outer + i * sa_inner, lda,
                    B + o * sb_outer + i * sb_inner, ldb, beta, C + o * sc_outer + i * sc_inner, ldc);
      }
    });
  }

  /// @brief Width (output features) of the column panels of pack_linear_weight(): two SIMD
  /// packets of T (16 floats with AVX2, 32 with AVX-512) where the packed micro-kernel exists;
  /// 0 where it does not (double, or no SIMD): there the "packed" layout is W itself.
  static constexpr Index packed_panel() {
    if constexpr (std::is_same_v<T, float> && Eigen::internal::packet_traits<T>::size > 1)
      return 2 * Index(Eigen::internal::packet_traits<T>::size);
    else
      return 0;
  }

  /// @brief Pack a Linear weight W [n, k] (y = x W^T) for linear_packed(): n / packed_panel()
  /// column panels, each [k, panel] row-major (panel consecutive output features per k), one after
  /// the other; a plain copy of W when n is not a multiple of the panel width or there is no
  /// packed kernel. Same size as W, and the rows [r0, r1) of W (r0, r1 on panel boundaries) land at
  /// offset r0 * k as in W: a packed row range is a packed weight of its own.
  /// @param wp packed weight [n * k] (output)
  /// @param w  the weight [n, k]
  /// @param n  output features (rows of W)
  /// @param k  input features (columns of W)
  void pack_linear_weight(T* wp, const T* w, Index n, Index k) const {
    if (!packed_layout(n)) {
      std::copy(w, w + n * k, wp);
      return;
    }
    if constexpr (packed_panel() > 0) {
      constexpr Index NR = packed_panel();
      parallel_for(n / NR, k * NR, [&](Index p0, Index p1) {
        for (Index p = p0; p < p1; ++p)
          for (Index r = 0; r < NR; ++r) {
            const T* src = w + (p * NR + r) * k;
            T* dst = wp + p * NR * k + r;
            for (Index c = 0; c < k; ++c) dst[c * NR] = src[c];
          }
      });
    }
  }

  /// @brief C [M, n] = X [M, k] W^T (or += when `accumulate`), W as pack_linear_weight() left it.
  ///
  /// The weights are packed once, not in every call: for the few rows of small-batch inference
  /// (65 rows at batch 1) packing W is a fifth of a BLAS GEMM's time. A 6 x panel micro-kernel
  /// (12 packet accumulators, X broadcast row by row, K in blocks of 384) runs over the panels,
  /// the panels shared by the threads. Where the layout is a plain copy (packed_panel() = 0 or n
  /// not a multiple of it), gemm(). The same function as gemm() up to rounding (sums in another
  /// order).
  /// @param C          output [M, ldc]
  /// @param ldc        row stride of C
  /// @param X          input [M, ldx]
  /// @param ldx        row stride of X
  /// @param wp         packed weight (pack_linear_weight of W [n, k])
  /// @param M          rows
  /// @param n          output features
  /// @param k          input features
  /// @param accumulate add to C (true) or overwrite it (false; C is not read)
  void linear_packed(T* C, Index ldc, const T* X, Index ldx, const T* wp, Index M, Index n, Index k,
                     bool accumulate) const {
    if (M == 0 || n == 0) return;
    if (!packed_layout(n) || k == 0) {
      gemm(false, true, M, n, k, T(1), X, ldx, wp, k, accumulate ? T(1) : T(0), C, ldc);
      return;
    }
    if constexpr (packed_panel() > 0) {
      constexpr Index NR = packed_panel();
      constexpr Index KC = 384;  // a panel's K block: 384 x 16 floats = 24 KiB, about L1
      parallel_for(n / NR, M * k * NR, [&](Index p0, Index p1) {
        for (Index k0 = 0; k0 < k; k0 += KC) {
          const Index kc = std::min(KC, k - k0);
          const bool add = accumulate || k0 > 0;
          for (Index p = p0; p < p1; ++p) {
            const T* w = wp + (p * k + k0) * NR;
            T* c = C + p * NR;
            const T* x = X + k0;
            Index m = 0;
            for (; m + 6 <= M; m += 6) packed_kernel<6>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add);
            switch (M - m) {
              case 5: packed_kernel<5>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add); break;
              case 4: packed_kernel<4>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add); break;
              case 3: packed_kernel<3>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add); break;
              case 2: packed_kernel<2>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add); break;
              case 1: packed_kernel<1>(c + m * ldc, ldc, x + m * ldx, ldx, w, kc, add); break;
              default: break;
            }
          }
        }
      });
    }
  }

  // ---------------------------------------------------------------- elementwise
  /// @brief y[r, c] += b[c] for y [rows, cols].
  /// @param y    tensor [rows, cols], updated in place
  /// @param b    bias [cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void add_bias(T* y, const T* b, Index rows, Index cols) const {
    parallel_for(rows, cols, [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r)
        for (Index c = 0; c < cols; ++c) y[r * cols + c] += b[c];
    });
  }

  /// @brief y[r, c] = x[r, c] + b[c], or y[r, c] = b[c] when x is null, for y [rows, cols].
  ///
  /// The start of a Linear layer's output (with x: of a residual stream plus a layer's output)
  /// before a GEMM with beta = 1 adds the product: one pass over y instead of zeroing it for the
  /// GEMM and adding the bias after it. y may alias x.
  /// @param y    output [rows, cols]
  /// @param x    tensor [rows, cols], or nullptr
  /// @param b    bias [cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void bias_init(T* y, const T* x, const T* b, Index rows, Index cols) const {
    const auto bias = vec(b, cols);
    parallel_for(rows, cols, [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r) {
        if (x) vec(y + r * cols, cols) = vec(x + r * cols, cols) + bias;
        else vec(y + r * cols, cols) = bias;
      }
    });
  }

  /// @brief y[r, c] = x[r, c] * s[c] for y, x [rows, cols] (y may alias x): a matrix times a
  /// diagonal one, W diag(w), as when a LayerNorm's scale is folded into the next Linear's weight.
  /// @param y    output [rows, cols]
  /// @param x    input [rows, cols]
  /// @param s    column scales [cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void scale_columns(T* y, const T* x, const T* s, Index rows, Index cols) const {
    const auto sv = vec(s, cols);
    parallel_for(rows, cols, [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r) vec(y + r * cols, cols) = vec(x + r * cols, cols) * sv;
    });
  }

  /// @brief out[c] += sum_r a[r, c] * b[r, c] for a, b [rows, cols] (column-wise dot products),
  /// summed in double as bias_backward.
  /// @param out  [cols] (accumulated)
  /// @param a    [rows, cols]
  /// @param b    [rows, cols]
  /// @param rows number of rows
  /// @param cols number of columns
  void column_dots(T* out, const T* a, const T* b, Index rows, Index cols) const {
    column_sums_accumulate(out, cols, [&](Index r, Index c) { return a[r * cols + c] * b[r * cols + c]; }, rows);
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
    parallel_for(Index(n), 1, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) y[i] += x[i];
    });
  }

  /// @brief y[i] = a[i] * b[i] (dropout masks). y may alias a or b.
  /// @param y output [n]
  /// @param a tensor [n]
  /// @param b tensor [n]
  /// @param n number of elements
  void multiply(T* y, const T* a, const T* b, std::size_t n) const {
    parallel_for(Index(n), 1, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) y[i] = a[i] * b[i];
    });
  }

  /// @brief x[i] *= a.
  /// @param x tensor [n], updated in place
  /// @param a the factor
  /// @param n number of elements
  void scale(T* x, T a, std::size_t n) const {
    parallel_for(Index(n), 1, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) x[i] *= a;
    });
  }

  /// @brief x[r, c] *= s[r] for x [rows, cols] (stochastic depth: one factor per sample).
  /// @param x    tensor [rows, cols], updated in place
  /// @param s    row factors [rows]
  /// @param rows number of rows
  /// @param cols number of columns
  void scale_rows(T* x, const T* s, Index rows, Index cols) const {
    parallel_for(rows, cols, [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r)
        for (Index c = 0; c < cols; ++c) x[r * cols + c] *= s[r];
    });
  }

  /// @brief Sum of squares of x, accumulated in double (gradient-norm clipping).
  ///
  /// Fixed blocks of 4096 summed in order: the same result for any thread count.
  /// @param x tensor [n]
  /// @param n number of elements
  /// @return sum_i x[i]^2
  double sum_squares(const T* x, std::size_t n) const {
    constexpr Index block = 4096;
    const Index blocks = (Index(n) + block - 1) / block;
    std::vector<double> part(std::size_t(blocks), 0.0);
    parallel_for(blocks, block, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b) {
        const Index i0 = b * block, i1 = std::min(Index(n), i0 + block);
        part[std::size_t(b)] = vec(x + i0, i1 - i0).template cast<double>().square().sum();
      }
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
  }

  /// @brief True when every x[i] is finite.
  /// @param x tensor [n]
  /// @param n number of elements
  /// @return false when some x[i] is NaN or infinite
  bool all_finite(const T* x, std::size_t n) const {
    std::atomic<bool> bad{false};
    parallel_for(Index(n), 1, [&](Index i0, Index i1) {
      if (!vec(x + i0, i1 - i0).isFinite().all()) bad.store(true, std::memory_order_relaxed);
    });
    return !bad.load();
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
    parallel_for(Index(n), 8, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i)
        mask[i] = uniform01(seed, stream, std::uint64_t(i)) < double(p) ? T(0) : keep;
    });
  }

  /// @brief Exact GELU, y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
  ///
  /// Vectorised: in float, erf is Eigen's rational approximation (a few ulp); in double, std::erf.
  /// @param y output [n]
  /// @param x input [n]
  /// @param n number of elements
  void gelu_forward(T* y, const T* x, std::size_t n) const {
    const T r = T(0.70710678118654752440);
    parallel_for(Index(n), 8, [&](Index i0, Index i1) {
      const auto xv = vec(x + i0, i1 - i0);
      vec(y + i0, i1 - i0) = T(0.5) * xv * (T(1) + (xv * r).erf());
    });
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
    parallel_for(Index(n), 8, [&](Index i0, Index i1) {
      const auto xv = vec(x + i0, i1 - i0);
      const auto cdf = T(0.5) * (T(1) + (xv * r).erf());
      const auto pdf = c * (T(-0.5) * xv * xv).exp();
      vec(dx + i0, i1 - i0) = vec(dy + i0, i1 - i0) * (cdf + xv * pdf);
    });
  }

  // ---------------------------------------------------------------- LayerNorm
  /// @brief y = (x - mean) * rstd * w + b per row of x [rows, cols]; biased variance, eps 1e-5.
  ///
  /// mean, rstd [rows] are kept for the backward. Two passes over each row (mean, then the
  /// centred variance), summed in T with Eigen's vector accumulators (16 float lanes each add
  /// cols/16 terms: for rows of 960 floats the relative error of the statistics stays near 1e-6;
  /// vitiq::reference::layernorm_forward is the slow double-precision oracle the tests compare with).
  /// With w and b null, y = xhat = (x - mean) * rstd (no affine part: the model folds the patch
  /// LayerNorm's w and b into the Linear that follows). y may alias x.
  /// @param y    output [rows, cols]
  /// @param mean output: row means [rows]
  /// @param rstd output: row reciprocal standard deviations 1 / sqrt(var + 1e-5) [rows]
  /// @param x    input [rows, cols]
  /// @param w    scale [cols], or nullptr (with b) for none
  /// @param b    shift [cols], or nullptr (with w) for none
  /// @param rows number of rows (normalised independently)
  /// @param cols number of features per row
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, Index rows,
                         Index cols) const {
    parallel_for(rows, cols, [&](Index r0, Index r1) {
      const T inv_cols = T(1) / T(cols);
      for (Index r = r0; r < r1; ++r) {
        const auto xr = vec(x + r * cols, cols);
        const T m = xr.sum() * inv_cols;
        const T v = (xr - m).square().sum() * inv_cols;
        const T s = T(1) / std::sqrt(v + T(1e-5));
        if (w) vec(y + r * cols, cols) = (xr - m) * (s * vec(w, cols)) + vec(b, cols);
        else vec(y + r * cols, cols) = (xr - m) * s;
        mean[r] = m;
        rstd[r] = s;
      }
    });
  }

  /// @brief Backward of layernorm_forward. With xhat = (x - mean) * rstd and g = dy * w:
  /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (assigned, or added to dx when
  /// accumulate_dx: the residual stream's gradient, which the block's input shares with the
  /// LayerNorm's; skipped when dx is nullptr, e.g. for the patch LayerNorm, whose input needs no
  /// gradient in training); dw += sum_rows dy * xhat; db += sum_rows dy.
  /// For the LayerNorm without affine part (layernorm_forward with w, b null) pass w = nullptr
  /// (g = dy) and dw = db = nullptr; mean = nullptr says that x holds xhat itself (the forward's
  /// output) rather than the input.
  /// @param dx   input gradient [rows, cols] (assigned, or accumulated when accumulate_dx), or nullptr
  /// @param dw   scale gradient [cols] (accumulated), or nullptr
  /// @param db   shift gradient [cols] (accumulated), or nullptr
  /// @param dy   output gradient [rows, cols]
  /// @param x    the forward's input [rows, cols], or xhat when mean is null
  /// @param mean the forward's row means [rows], or nullptr
  /// @param rstd the forward's reciprocal standard deviations [rows]
  /// @param w    scale [cols], or nullptr for none
  /// @param rows number of rows
  /// @param cols number of features per row
  /// @param accumulate_dx false: dx = the gradient; true: dx += the gradient
  void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                          const T* rstd, const T* w, Index rows, Index cols, bool accumulate_dx = false) const {
    if (!mean || !w) {  // the LayerNorm without affine part, or x = xhat: rows only, no dw, db
      if (dw || db) throw Error("vitiq::CpuBackend::layernorm_backward: dw and db need w and mean");
      if (!dx) return;
      parallel_for(rows, cols, [&](Index r0, Index r1) {
        for (Index r = r0; r < r1; ++r) {
          const auto dyr = vec(dy + r * cols, cols);
          const T s = rstd[r], m = mean ? mean[r] : T(0), xs = mean ? s : T(1);
          const auto xhat = (vec(x + r * cols, cols) - m) * xs;  // x itself when mean is null
          if (w) layernorm_dx_row(dx + r * cols, dyr * vec(w, cols), xhat, s, cols, accumulate_dx);
          else layernorm_dx_row(dx + r * cols, dyr, xhat, s, cols, accumulate_dx);
        }
      });
      return;
    }
    // One pass: blocks of a fixed number of rows each write dx and their partial column sums of
    // dw and db (summed in T over the block's rows); the blocks' sums are added in double in block
    // order, so the result does not depend on the thread count.
    constexpr Index rows_per_block = 64;
    const Index blocks = (rows + rows_per_block - 1) / rows_per_block;
    std::vector<T> part(std::size_t(blocks * 2 * cols));  // [blocks, {dw, db}, cols]
    parallel_for(blocks, rows_per_block * cols, [&](Index k0, Index k1) {
      const auto wv = vec(w, cols);
      for (Index k = k0; k < k1; ++k) {
        auto pw = vec(part.data() + k * 2 * cols, cols), pb = vec(part.data() + (k * 2 + 1) * cols, cols);
        pw.setZero();
        pb.setZero();
        for (Index r = k * rows_per_block; r < std::min(rows, (k + 1) * rows_per_block); ++r) {
          const auto xr = vec(x + r * cols, cols), dyr = vec(dy + r * cols, cols);
          const T m = mean[r], s = rstd[r];
          const auto xhat = (xr - m) * s;
          if (dx) layernorm_dx_row(dx + r * cols, dyr * wv, xhat, s, cols, accumulate_dx);
          pw += dyr * xhat;
          pb += dyr;
        }
      }
    });
    parallel_for(cols, 2 * blocks, [&](Index c0, Index c1) {
      for (Index c = c0; c < c1; ++c) {
        double sw = 0, sb = 0;
        for (Index k = 0; k < blocks; ++k) {
          sw += double(part[std::size_t((k * 2) * cols + c)]);
          sb += double(part[std::size_t((k * 2 + 1) * cols + c)]);
        }
        dw[c] += T(sw);
        db[c] += T(sb);
      }
    });
  }

  // ---------------------------------------------------------------- SPT
  /// @brief Shifted Patch Tokenization's gather: images [B, C, H, W] -> patches [B, n, PD].
  /// Copy k of the concatenation [x, s1, s2, s3, s4] reads x[c, i + di_k, j + dj_k] (0 outside);
  /// token t = r * (W/P) + col; feature (p1 * P + p2) * copies*C + k*C + c.
  ///
  /// n = (H/P) * (W/P) and PD = spt_copies(v) * C * P * P. One pass: every patch row of every
  /// copy is read straight from the image row it comes from (no shifted copies are made).
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
    const SptGeometry g(C, H, W, P, v);
    parallel_for(B * g.n, g.PD, [&](Index bt0, Index bt1) {
      for (Index bt = bt0; bt < bt1; ++bt) {
        const Index b = bt / g.n, t = bt % g.n;
        T* out = patches + bt * g.PD;
        g.for_each_run(t, [&](Index k, Index c, Index p1, Index i, Index p2a, Index p2b, Index j0) {
          T* o = out + (p1 * P) * g.stride + k * C + c;  // feature of (p1, p2 = 0, k, c)
          if (i < 0) {  // row outside the image: the whole patch row is 0
            for (Index p2 = 0; p2 < P; ++p2) o[p2 * g.stride] = T(0);
            return;
          }
          const T* row = images + ((b * C + c) * H + i) * W;
          for (Index p2 = 0; p2 < p2a; ++p2) o[p2 * g.stride] = T(0);
          for (Index p2 = p2a; p2 < p2b; ++p2) o[p2 * g.stride] = row[j0 + p2];
          for (Index p2 = p2b; p2 < P; ++p2) o[p2 * g.stride] = T(0);
        });
      }
    });
  }

  /// @brief Transpose of spt_forward: dimages [B, C, H, W] = scatter-add of dpatches (assigned).
  ///
  /// Parallel over image planes (b, c): each plane gathers its own contributions, so no writes race.
  /// @param dimages  image gradient [B, C, H, W] (assigned)
  /// @param dpatches patch gradient [B, n, PD]
  /// @param B,C,H,W,P,v as in spt_forward
  void spt_backward(T* dimages, const T* dpatches, Index B, Index C, Index H, Index W, Index P,
                    SptVariant v) const {
    const SptGeometry g(C, H, W, P, v);
    parallel_for(B * C, g.n * g.PD / C, [&](Index bc0, Index bc1) {
      for (Index bc = bc0; bc < bc1; ++bc) {
        const Index b = bc / C, c_plane = bc % C;
        T* plane = dimages + bc * H * W;
        std::fill(plane, plane + H * W, T(0));
        for (Index t = 0; t < g.n; ++t) {
          const T* in = dpatches + (b * g.n + t) * g.PD;
          g.for_each_run(t, [&](Index k, Index c, Index p1, Index i, Index p2a, Index p2b, Index j0) {
            if (c != c_plane || i < 0) return;
            const T* o = in + (p1 * P) * g.stride + k * C + c;
            T* row = plane + i * W;
            for (Index p2 = p2a; p2 < p2b; ++p2) row[j0 + p2] += o[p2 * g.stride];
          }, c_plane);
        }
      }
    });
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
    parallel_for(B, N * D, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b)
        for (Index t = 0; t < N; ++t)
          for (Index c = 0; c < D; ++c)
            x[(b * N + t) * D + c] =
                (t == 0 ? cls[c] : tokens[(b * (N - 1) + t - 1) * D + c]) + pos[t * D + c];
    });
  }

  /// @brief Backward of embed_forward: dtokens assigned; dcls, dpos accumulated.
  /// @param dtokens patch-token gradient [B, N-1, D] (assigned)
  /// @param dcls    class-token gradient [D] (accumulated: sum over b of dx[b, 0])
  /// @param dpos    position-embedding gradient [N, D] (accumulated: sum over b of dx[b])
  /// @param dx      sequence gradient [B, N, D]
  /// @param B,N,D   as in embed_forward
  void embed_backward(T* dtokens, T* dcls, T* dpos, const T* dx, Index B, Index N, Index D) const {
    parallel_for(B, N * D, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b)
        std::copy(dx + (b * N + 1) * D, dx + (b + 1) * N * D, dtokens + b * (N - 1) * D);
    });
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
    parallel_for(B, N * D, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b)
        for (Index c = 0; c < D; ++c) {
          if (pool == Pool::cls) {
            out[b * D + c] = x[b * N * D + c];
          } else {
            T s = 0;
            for (Index t = 0; t < N; ++t) s += x[(b * N + t) * D + c];
            out[b * D + c] = s / T(N);
          }
        }
    });
  }

  /// @brief Backward of pool_forward: dx [B, N, D] assigned (zero where the pool did not read).
  /// @param dx     sequence gradient [B, N, D] (assigned, every element)
  /// @param dout   pooled gradient [B, D]
  /// @param pool   as in pool_forward
  /// @param B,N,D  as in pool_forward
  void pool_backward(T* dx, const T* dout, Pool pool, Index B, Index N, Index D) const {
    parallel_for(B, N * D, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b)
        for (Index t = 0; t < N; ++t)
          for (Index c = 0; c < D; ++c)
            dx[(b * N + t) * D + c] =
                pool == Pool::cls ? (t == 0 ? dout[b * D + c] : T(0)) : dout[b * D + c] / T(N);
    });
  }

  // ---------------------------------------------------------------- attention
  /// @brief A = softmax(mask(S * tau)) over the last axis. S, A [B, h, N, N]; raw scores S = q k^T.
  /// tau per head from `param` as `mode` says (fixed_tau for TemperatureMode::fixed). With
  /// mask_diagonal the diagonal logit is the most negative finite value, so A_ii = 0 exactly.
  ///
  /// Row by row, vectorised (Eigen's exp); each row stays in L1 between its three passes.
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
    parallel_for(B * h * N, N, [&](Index row0, Index row1) {
      for (Index row = row0; row < row1; ++row) {
        const Index j = (row / N) % h, i = row % N;
        const T tau = head_tau(param, mode, fixed_tau, j);
        auto a = vec(A + row * N, N);
        a = vec(S + row * N, N) * tau;
        if (mask_diagonal) a[i] = lowest;
        const T mx = a.maxCoeff();
        a = (a - mx).exp();
        if (mask_diagonal) a[i] = T(0);
        a *= T(1) / a.sum();
      }
    });
  }

  /// @brief Backward of attention_softmax_forward. With Z = S * tau (masked):
  /// dZ = A * (dA - sum_c dA * A) (softmax Jacobian), dS = tau * dZ (assigned),
  /// dtau_j = sum over its rows of dZ * S; the temperature parameter gradient accumulates
  /// dparam[0] += tau * sum_j dtau_j (shared_log: d exp(p)/dp = tau) or dparam[j] += dtau_j.
  ///
  /// The masked diagonal needs no flag: A_ii = 0 makes dZ_ii = 0. The per-head sums are made
  /// per (b, j) block (each row's dot product in T, the rows added in double) and the blocks
  /// added in block order: the same result for any thread count.
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
    std::vector<double> block_dtau(std::size_t(B * h), 0.0);  // per (b, j)
    parallel_for(B * h, N * N, [&](Index bj0, Index bj1) {
      for (Index bj = bj0; bj < bj1; ++bj) {
        const T tau = head_tau(param, mode, fixed_tau, bj % h);
        double acc = 0;
        for (Index row = bj * N; row < (bj + 1) * N; ++row) {
          const auto a = vec(A + row * N, N), da = vec(dA + row * N, N);
          const T dot = (da * a).sum();
          auto ds = vec(dS + row * N, N);
          ds = a * (da - dot);  // dZ; zero on the masked diagonal, where A = 0
          acc += double((ds * vec(S + row * N, N)).sum());  // row in T, rows summed in double
          ds *= tau;
        }
        block_dtau[std::size_t(bj)] = acc;
      }
    });
    accumulate_temperature_grad(dparam, block_dtau, param, mode, B, h);
  }

  /// @brief The whole attention core, fused: for every batch element b and head j,
  /// S_bj = Q_bj K_bj^T, A_bj = softmax(mask(S_bj * tau_j)) and O_bj = A_bj V_bj.
  ///
  /// Q_bj, K_bj, V_bj [N, d] are column blocks of the qkv rows [B, N, 3I] (I = h * d): columns
  /// j*d, I + j*d and 2I + j*d, row stride 3I. O_bj goes to the columns j*d of out [B, N, I]
  /// (heads concatenated, row stride I). The result is that of gemm_batched (scores),
  /// attention_softmax_forward and gemm_batched (output): S bit for bit (the same single-threaded
  /// GEMM calls), A and out up to a few ulp (each softmax row runs in an aligned, padded copy, so
  /// the exp is vectorised over the whole row; see softmax_row_padded).
  /// One parallel loop over the B*h blocks: each block's scores, probabilities and output are made
  /// while its N x N tile is in cache (the unfused ops stream the whole [B, h, N, N] tensors through
  /// memory between their passes). tau multiplies the scores inside the softmax's first pass.
  /// @param out           head outputs [B, N, I] (assigned)
  /// @param A             attention probabilities [B, h, N, N] (output; each row sums to 1)
  /// @param S             raw scores q k^T [B, h, N, N] (output; the backward's temperature gradient reads them)
  /// @param qkv           queries, keys and values [B, N, 3I]
  /// @param param         temperature parameter: [1] (shared_log), [h] (per_head), unread (fixed)
  /// @param mode          how tau is obtained from `param`
  /// @param fixed_tau     tau for TemperatureMode::fixed (d^-0.5 for plain MHSA)
  /// @param mask_diagonal LSA's diagonal mask: A_ii = 0 exactly
  /// @param B             batch size
  /// @param h             heads
  /// @param N             tokens
  /// @param d             width of one head
  void attention_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode, T fixed_tau,
                         bool mask_diagonal, Index B, Index h, Index N, Index d) const {
    attention_query_rows_forward(out, A, S, qkv, param, mode, fixed_tau, mask_diagonal, B, h, N, d, N);
  }

  /// @brief Backward of attention_forward, fused: for every (b, j) block
  /// dA = dO V^T, dV = A^T dO, dS = attention_softmax_backward's dS of (dA, A, S), dQ = dS K,
  /// dK = dS^T Q; the temperature gradient accumulates exactly as in attention_softmax_backward.
  ///
  /// The result is that of the unfused composition (two gemm_batched, attention_softmax_backward,
  /// two gemm_batched) up to a few ulp: tau is the alpha of the dQ and dK GEMMs instead of a pass
  /// over dS. One parallel loop over the B*h blocks; dA, then dZ, of the block live in one N x N
  /// scratch (rows padded to 64 bytes) per chunk of blocks, so no [B, h, N, N] gradient tensor is
  /// written. The per-head temperature sums are made per (b, j) block (each row's dot product in
  /// T, the rows added in double) and the blocks added in block order: the same result for any
  /// thread count.
  /// @param d_qkv     gradient w.r.t. qkv [B, N, 3I] (assigned: every q, k and v column)
  /// @param dparam    temperature gradient, [1] or [h] as `param` (accumulated; unwritten for fixed)
  /// @param d_out     gradient w.r.t. the head outputs [B, N, I]
  /// @param qkv       the forward's qkv [B, N, 3I]
  /// @param A         the forward's attention probabilities [B, h, N, N]
  /// @param S         the forward's raw scores [B, h, N, N]
  /// @param param     temperature parameter, as in the forward
  /// @param mode      as in the forward
  /// @param fixed_tau as in the forward
  /// @param B,h,N,d   as in the forward
  void attention_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S,
                          const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h, Index N,
                          Index d) const {
    attention_query_rows_backward(d_qkv, dparam, d_out, qkv, A, S, param, mode, fixed_tau, B, h, N, d, N);
  }

  /// @brief attention_forward for the class token's query only (row 0 of every image): for every
  /// batch element b and head j, s = q_b0 K_bj^T [N], a = softmax(mask(s * tau_j)) with LSA's mask
  /// on the class token's own key (a_0 = 0 exactly), o = a V_bj [d].
  ///
  /// What a model needs from its last block when only the class token's output is read (Pool::cls):
  /// the keys and values of every token, the query of the class token alone. The result is row 0
  /// of each block of attention_forward (S bit for bit, A and out up to a few ulp).
  /// @param out           class-token head outputs [B, I] (assigned; heads concatenated)
  /// @param A             the class token's attention probabilities [B, h, N] (output)
  /// @param S             its raw scores q_0 k^T [B, h, N] (output; read by the backward)
  /// @param qkv           queries, keys and values [B, N, 3I]; only row 0 of each image's q columns is read
  /// @param param,mode,fixed_tau,mask_diagonal as in attention_forward
  /// @param B,h,N,d       as in attention_forward
  void attention_cls_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode, T fixed_tau,
                             bool mask_diagonal, Index B, Index h, Index N, Index d) const {
    attention_query_rows_forward(out, A, S, qkv, param, mode, fixed_tau, mask_diagonal, B, h, N, d, 1);
  }

  /// @brief Backward of attention_cls_forward: for every (b, j), da = dO V^T [N], dV = a^T dO,
  /// dz = a (da - da.a), dq_0 = tau dz K, dK = tau dz^T q_0; the temperature gradient accumulates
  /// as in attention_backward (sum of dz * s per block in double, blocks in order).
  ///
  /// The class rows of attention_backward's result when d_out is zero on every other row.
  /// @param d_qkv     gradient w.r.t. qkv [B, N, 3I]: the k and v columns of every row and the q
  ///                  columns of row 0 of each image are assigned; the q columns of the other rows
  ///                  are not written (they have no gradient: their queries were never used)
  /// @param dparam    temperature gradient, [1] or [h] as `param` (accumulated; unwritten for fixed)
  /// @param d_out     gradient w.r.t. the class-token head outputs [B, I]
  /// @param qkv       the forward's qkv [B, N, 3I]
  /// @param A         the forward's probabilities [B, h, N]
  /// @param S         the forward's raw scores [B, h, N]
  /// @param param,mode,fixed_tau as in the forward
  /// @param B,h,N,d   as in the forward
  void attention_cls_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S,
                              const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h, Index N,
                              Index d) const {
    attention_query_rows_backward(d_qkv, dparam, d_out, qkv, A, S, param, mode, fixed_tau, B, h, N, d, 1);
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
    parallel_for(B, K * 64, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b) {
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
    });
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
    parallel_for(B, K * 64, [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b) {
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
    });
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
    // PyTorch's Adam(W) formulas element by element, as vector expressions over each chunk (the
    // scalar loop did not vectorise: four pointers that may alias).
    const bool decay = s.weight_decay != T(0), decoupled = decay && s.decoupled;
    const T keep = T(1) - s.lr * s.weight_decay;
    parallel_for(Index(n), 4, [&](Index i0, Index i1) {
      const Index len = i1 - i0;
      auto pv = vec(p + i0, len), mv = vec(m + i0, len), vv = vec(v + i0, len);
      const auto gv = vec(g + i0, len);
      if (decoupled) pv *= keep;
      if (decay && !decoupled) {
        mv = s.beta1 * mv + (T(1) - s.beta1) * (gv + s.weight_decay * pv);
        vv = s.beta2 * vv + (T(1) - s.beta2) * (gv + s.weight_decay * pv).square();
      } else {
        mv = s.beta1 * mv + (T(1) - s.beta1) * gv;
        vv = s.beta2 * vv + (T(1) - s.beta2) * gv.square();
      }
      pv -= step_size * mv / (vv.sqrt() / bc2_sqrt + s.eps);
    });
  }

  /// @brief Single-threaded row-major GEMM (the kernel of gemm() and gemm_batched()): Eigen's
  /// packed, cache-blocked product, without Eigen's own OpenMP threading, or the BLAS's GEMM when
  /// gemm_engine() is GemmEngine::blas (see there).
  /// @param trans_a,trans_b,M,N,K,alpha,A,lda,B,ldb,beta,C,ldc as in gemm()
  static void gemm_serial(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                          Index lda, const T* B, Index ldb, T beta, T* C, Index ldc) {
    if (M == 0 || N == 0) return;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      constexpr Index int_max = INT_MAX;
      if (gemm_engine() == GemmEngine::blas && std::max({M, N, K, lda, ldb, ldc}) <= int_max) {
        const auto& h = detail::blas_hooks();
        // OpenBLAS applies beta = 0 as a separate pass over C before the product (its generic
        // beta kernel: about four times the time of a memset on this project's machines, and
        // 3 us on a 65 x 65 attention tile whose product takes 5 us). Zeroing C here and asking
        // for C += alpha op(A) op(B) gives the same bits (0 + x = x) without that pass.
        if (beta == T(0)) {
          if (ldc == N) std::memset(C, 0, std::size_t(M * N) * sizeof(T));
          else for (Index r = 0; r < M; ++r) std::memset(C + r * ldc, 0, std::size_t(N) * sizeof(T));
          beta = T(1);
        }
        if constexpr (std::is_same_v<T, float>)
          h.sgemm(trans_a, trans_b, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
        else
          h.dgemm(trans_a, trans_b, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
        return;
      }
    }
    if (beta == T(0)) {
      for (Index r = 0; r < M; ++r) std::fill(C + r * ldc, C + r * ldc + N, T(0));
    } else if (beta != T(1)) {
      for (Index r = 0; r < M; ++r)
        for (Index c = 0; c < N; ++c) C[r * ldc + c] *= beta;
    }
    if (K == 0) return;
    namespace ei = Eigen::internal;
    constexpr int R = Eigen::RowMajor, Cm = Eigen::ColMajor, Dyn = Eigen::Dynamic;
    ei::gemm_blocking_space<R, T, T, Dyn, Dyn, Dyn, 1, false> blocking(M, N, K, 1, true);
    // C += alpha op(A) op(B); a transposed row-major operand is a column-major one.
    if (!trans_a && !trans_b)
      ei::general_matrix_matrix_product<Index, T, R, false, T, R, false, R, 1>::run(
          M, N, K, A, lda, B, ldb, C, 1, ldc, alpha, blocking);
    else if (!trans_a && trans_b)
      ei::general_matrix_matrix_product<Index, T, R, false, T, Cm, false, R, 1>::run(
          M, N, K, A, lda, B, ldb, C, 1, ldc, alpha, blocking);
    else if (trans_a && !trans_b)
      ei::general_matrix_matrix_product<Index, T, Cm, false, T, R, false, R, 1>::run(
          M, N, K, A, lda, B, ldb, C, 1, ldc, alpha, blocking);
    else
      ei::general_matrix_matrix_product<Index, T, Cm, false, T, Cm, false, R, 1>::run(
          M, N, K, A, lda, B, ldb, C, 1, ldc, alpha, blocking);
  }

 private:
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  static Eigen::Map<Vec> vec(T* p, Index n) { return Eigen::Map<Vec>(p, n); }
  static Eigen::Map<const Vec> vec(const T* p, Index n) { return Eigen::Map<const Vec>(p, n); }

  /// f(begin, end) over [0, n) in chunks shared by the backend's threads; on the caller's thread
  /// alone when n * cost (elements or multiply-adds) is below parallel_grain.
  template <class F>
  static void parallel_for(Index n, Index cost, const F& f) {
    if (n <= 0) return;
    const int threads = detail::cpu_threads();
    if (threads <= 1 || n == 1 || n * cost < parallel_grain) {
      f(Index(0), n);
      return;
    }
    // A few chunks per thread: when a helper is late, the caller takes its share.
    const Index chunks = std::min<Index>(n, Index(threads) * 4);
    detail::WorkerPool::instance().run(chunks, threads, [&](Index c) { f(n * c / chunks, n * (c + 1) / chunks); });
  }

  /// attention_forward for the first Nq tokens' queries (Nq = N: the whole attention; 1: the class
  /// token's row): per (b, j) block, S [Nq, N] = Q[:Nq] K^T, A = softmax(mask(S tau)) row by row
  /// (query i masks key i), O [Nq, d] = A V into out [B, Nq, I]; A and S are [B, h, Nq, N]. One
  /// parallel loop over the B*h blocks, each made whole while its tile is in cache.
  void attention_query_rows_forward(T* out, T* A, T* S, const T* qkv, const T* param, TemperatureMode mode,
                                    T fixed_tau, bool mask_diagonal, Index B, Index h, Index N, Index d,
                                    Index Nq) const {
    const Index I = h * d, ld = 3 * I;
    const Index padded = (N + 15) / 16 * 16;  // a softmax row in whole 64-byte lines
    (void)gemm_engine();  // resolved on the caller's thread (may throw), not in a helper
    parallel_for(B * h, 2 * Nq * N * d, [&](Index bj0, Index bj1) {
      Buffer row(static_cast<std::size_t>(padded));  // 64-byte aligned: the softmax's exp runs on whole vectors
      for (Index bj = bj0; bj < bj1; ++bj) {
        const Index b = bj / h, j = bj % h;
        const T* q = qkv + b * N * ld + j * d;  // [Nq of N, d], row stride 3I; k [N, d] at + I, v at + 2I
        T* s = S + bj * Nq * N;                 // [Nq, N]
        T* a = A + bj * Nq * N;                 // [Nq, N]
        gemm_serial(false, true, Nq, N, d, T(1), q, ld, q + I, ld, T(0), s, N);
        const T tau = head_tau(param, mode, fixed_tau, j);
        for (Index i = 0; i < Nq; ++i) softmax_row_padded(a + i * N, s + i * N, row.data(), tau, mask_diagonal, i, N, padded);
        gemm_serial(false, false, Nq, d, N, T(1), a, N, q + 2 * I, ld, T(0), out + b * Nq * I + j * d, I);  // [Nq, d]
      }
    });
  }

  /// Backward of attention_query_rows_forward: per (b, j) block dA = dO V^T [Nq, N], dV = A^T dO,
  /// dZ = the softmax backward of dA (in one [Nq, N] scratch, rows padded to 64 bytes), dQ[:Nq] =
  /// tau dZ K, dK = tau dZ^T Q[:Nq]; d_out is [B, Nq, I]. The q columns of rows Nq.. of d_qkv are
  /// not written. The temperature sums are made per block (rows in double) and added in block
  /// order: the same result for any thread count.
  void attention_query_rows_backward(T* d_qkv, T* dparam, const T* d_out, const T* qkv, const T* A, const T* S,
                                     const T* param, TemperatureMode mode, T fixed_tau, Index B, Index h, Index N,
                                     Index d, Index Nq) const {
    const Index I = h * d, ld = 3 * I;
    (void)gemm_engine();  // resolved on the caller's thread (may throw), not in a helper
    std::vector<double> block_dtau(std::size_t(B * h), 0.0);  // per (b, j)
    const Index ldz = (N + 15) / 16 * 16;  // scratch rows in whole 64-byte lines: vector loops need no scalar head
    parallel_for(B * h, 4 * Nq * N * d, [&](Index bj0, Index bj1) {
      Buffer scratch(static_cast<std::size_t>(Nq * ldz));  // dA, then dZ, of the current block [Nq, ldz]
      T* dz = scratch.data();
      for (Index bj = bj0; bj < bj1; ++bj) {
        const Index b = bj / h, j = bj % h;
        const T* q = qkv + b * N * ld + j * d;       // [N, d], row stride 3I; k at + I, v at + 2I
        const T* dout = d_out + b * Nq * I + j * d;  // [Nq, d], row stride I
        T* dq = d_qkv + b * N * ld + j * d;          // [Nq of N, d], row stride 3I; dk at + I, dv at + 2I
        const T* a = A + bj * Nq * N;                // [Nq, N]
        gemm_serial(false, true, Nq, N, d, T(1), dout, I, q + 2 * I, ld, T(0), dz, ldz);  // dA = dO V^T
        gemm_serial(true, false, N, d, Nq, T(1), a, N, dout, I, T(0), dq + 2 * I, ld);    // dV = A^T dO
        block_dtau[std::size_t(bj)] = softmax_jacobian_block(dz, ldz, a, S + bj * Nq * N, Nq, N);  // dZ over dA
        // dS = tau dZ: tau is the GEMMs' alpha.
        const T tau = head_tau(param, mode, fixed_tau, j);
        gemm_serial(false, false, Nq, d, N, tau, dz, ldz, q + I, ld, T(0), dq, ld);       // dQ = dS K
        gemm_serial(true, false, N, d, Nq, tau, dz, ldz, q, ld, T(0), dq + I, ld);        // dK = dS^T Q
      }
    });
    accumulate_temperature_grad(dparam, block_dtau, param, mode, B, h);
  }

  static T head_tau(const T* param, TemperatureMode mode, T fixed_tau, Index j) {
    switch (mode) {
      case TemperatureMode::shared_log: return std::exp(param[0]);
      case TemperatureMode::per_head: return param[j];
      default: return fixed_tau;
    }
  }

  /// One softmax row of attention_softmax_forward, a [N] = softmax(mask(s [N] * tau)) with i the
  /// row's own token, computed in an aligned row `work` [padded] (padded >= N, a multiple of the
  /// vector width): Eigen's exp then runs on whole vectors only (a row of A at an arbitrary address
  /// starts with up to 15 scalar exp calls before its first aligned vector). The same function up
  /// to a few ulp (vectorised exp, sums in another order); the masked A_ii is still exactly 0.
  static void softmax_row_padded(T* a_out, const T* s, T* work, T tau, bool mask_diagonal, Index i, Index N,
                                 Index padded) {
    if constexpr (std::is_same_v<T, float> && Eigen::internal::packet_traits<T>::HasExp &&
                  Eigen::internal::packet_traits<T>::size > 1) {
      softmax_row_packets(a_out, s, work, tau, mask_diagonal, i, N, padded);
      return;
    }
    const T lowest = std::numeric_limits<T>::lowest();
    Eigen::Map<Vec, Eigen::Aligned64> z(work, padded);
    z.head(N) = vec(s, N) * tau;
    z.tail(padded - N).setConstant(lowest);  // no effect on the maximum; excluded from the sum
    if (mask_diagonal) z[i] = lowest;
    const T mx = z.maxCoeff();
    z = (z - mx).exp();
    if (mask_diagonal) z[i] = T(0);
    vec(a_out, N) = z.head(N) * (T(1) / z.head(N).sum());
  }

  /// Whether a Linear weight with n output features gets the packed layout (else a plain copy).
  static constexpr bool packed_layout(Index n) {
    if constexpr (packed_panel() > 0) return n % packed_panel() == 0;
    else return false;
  }

  /// linear_packed's micro-kernel: C [R, panel] (+)= X [R, kc] Wp [kc, panel] with R rows of X
  /// (ldx apart) broadcast one element at a time against the panel's two packets per k.
  template <int R>
  static void packed_kernel(T* c, Index ldc, const T* x, Index ldx, const T* w, Index kc, bool add) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<T>::type;
    constexpr Index W = ei::packet_traits<T>::size;
    Packet acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = ei::pset1<Packet>(T(0));
    for (Index kk = 0; kk < kc; ++kk) {
      const Packet b0 = ei::ploadu<Packet>(w + kk * 2 * W), b1 = ei::ploadu<Packet>(w + kk * 2 * W + W);
      for (int r = 0; r < R; ++r) {
        const Packet a = ei::pset1<Packet>(x[r * ldx + kk]);
        acc[r][0] = ei::pmadd(a, b0, acc[r][0]);
        acc[r][1] = ei::pmadd(a, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      T* row = c + r * ldc;
      if (add) {
        acc[r][0] = ei::padd(ei::ploadu<Packet>(row), acc[r][0]);
        acc[r][1] = ei::padd(ei::ploadu<Packet>(row + W), acc[r][1]);
      }
      ei::pstoreu(row, acc[r][0]);
      ei::pstoreu(row + W, acc[r][1]);
    }
  }

  /// One row of layernorm_backward's input gradient from g = dy * w (or dy) and xhat [cols]:
  /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), assigned or (accumulate) added.
  template <class G, class X>
  static void layernorm_dx_row(T* dx, const G& g, const X& xhat, T rstd, Index cols, bool accumulate) {
    const T inv_cols = T(1) / T(cols);
    const T mg = g.sum() * inv_cols, mgx = (g * xhat).sum() * inv_cols;
    if (accumulate) vec(dx, cols) += rstd * (g - mg - xhat * mgx);
    else vec(dx, cols) = rstd * (g - mg - xhat * mgx);
  }

  /// softmax_row_padded in four short passes over the row with Eigen's packet primitives (the
  /// same exp): z = s tau stored (the masked entry and the padding set to lowest), its maximum,
  /// e = exp(z - max) stored with its running sum, then a = e / sum; the expression form needs
  /// a pass per expression and its own tails. exp of the masked and padding entries is Eigen's clamped exp(-88.7),
  /// a denormal that cannot move a sum >= 1 (the maximum's own term); the masked A_ii is then set
  /// to exactly 0. Float only (the double path keeps the expressions: the test reference).
  static void softmax_row_packets(T* a_out, const T* s, T* work, T tau, bool mask_diagonal, Index i, Index N,
                                  Index padded) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<T>::type;
    constexpr Index W = ei::packet_traits<T>::size;  // padded is a multiple of 16, so of W
    const T lowest = std::numeric_limits<T>::lowest();
    const Packet vtau = ei::pset1<Packet>(tau);
    const Index full = N / W * W;
    for (Index c = 0; c < full; c += W) ei::pstore(work + c, ei::pmul(ei::ploadu<Packet>(s + c), vtau));
    for (Index c = full; c < padded; ++c) work[c] = c < N ? s[c] * tau : lowest;
    if (mask_diagonal) work[i] = lowest;
    Packet vmax = ei::pload<Packet>(work);
    for (Index c = W; c < padded; c += W) vmax = ei::pmax(vmax, ei::pload<Packet>(work + c));
    const Packet mx = ei::pset1<Packet>(ei::predux_max(vmax));
    Packet vsum = ei::pset1<Packet>(T(0));
    for (Index c = 0; c < padded; c += W) {
      const Packet e = ei::pexp(ei::psub(ei::pload<Packet>(work + c), mx));
      ei::pstore(work + c, e);
      vsum = ei::padd(vsum, e);
    }
    const T inv_s = T(1) / ei::predux(vsum);
    const Packet inv = ei::pset1<Packet>(inv_s);
    for (Index c = 0; c < full; c += W) ei::pstoreu(a_out + c, ei::pmul(ei::pload<Packet>(work + c), inv));
    for (Index c = full; c < N; ++c) a_out[c] = work[c] * inv_s;
    if (mask_diagonal) a_out[i] = T(0);
  }

  /// The softmax Jacobian on one (b, j) block of `rows` query rows over N keys, in place: dz
  /// [rows, ldz] holds dA and becomes dZ = A (dA - sum_c dA A) row by row (A [rows, N]). Returns
  /// the block's share of dtau_j, sum dZ * S (S [rows, N]): each row's sum in T, the rows added in double.
  static double softmax_jacobian_block(T* dz, Index ldz, const T* A, const T* S, Index rows, Index N) {
    double acc = 0;
    for (Index r = 0; r < rows; ++r) {
      const auto a = vec(A + r * N, N);
      auto z = vec(dz + r * ldz, N);
      const T dot = (z * a).sum();
      z = a * (z - dot);  // zero on the masked diagonal, where A = 0
      acc += double((z * vec(S + r * N, N)).sum());
    }
    return acc;
  }

  /// The temperature gradient from the per-(b, j) block sums [B * h] (block order, in double):
  /// dparam[0] += tau * sum_j dtau_j (shared_log) or dparam[j] += dtau_j (per_head); nothing for fixed.
  static void accumulate_temperature_grad(T* dparam, const std::vector<double>& block_dtau, const T* param,
                                          TemperatureMode mode, Index B, Index h) {
    std::vector<double> dtau(std::size_t(h), 0.0);
    for (Index bj = 0; bj < B * h; ++bj) dtau[std::size_t(bj % h)] += block_dtau[std::size_t(bj)];
    if (mode == TemperatureMode::shared_log) {
      double total = 0;
      for (double v : dtau) total += v;
      dparam[0] += T(total * double(std::exp(param[0])));
    } else if (mode == TemperatureMode::per_head) {
      for (Index j = 0; j < h; ++j) dparam[j] += T(dtau[std::size_t(j)]);
    }
  }

  /// out[c] += sum_{r < rows} value(r, c) for c < cols, parallel over column blocks (the same
  /// sums for any thread count).
  template <class F>
  static void column_sums_accumulate(T* out, Index cols, F value, Index rows) {
    const Index blocks = (cols + 63) / 64;
    parallel_for(blocks, 64 * rows, [&](Index k0, Index k1) {
      for (Index k = k0; k < k1; ++k) {
        const Index c0 = k * 64, c1 = std::min(cols, c0 + 64);
        double acc[64] = {};
        for (Index r = 0; r < rows; ++r)
          for (Index c = c0; c < c1; ++c) acc[c - c0] += double(value(r, c));
        for (Index c = c0; c < c1; ++c) out[c] += T(acc[c - c0]);
      }
    });
  }

  /// Where the SPT patch matrix reads the image: for token t, copy k, channel c and patch row p1,
  /// the image row i (or -1 when outside) and the columns p2 in [p2a, p2b) that lie inside, read
  /// at image column j0 + p2.
  struct SptGeometry {
    Index C, H, W, P, copies, gw, n, PD, stride;  // stride: feature step of p2 (copies * C)
    Index di[5] = {0, 0, 0, -1, 1}, dj[5] = {0, -1, 1, 0, 0};
    SptGeometry(Index C_, Index H_, Index W_, Index P_, SptVariant v)
        : C(C_), H(H_), W(W_), P(P_), copies(spt_copies(v)), gw(W_ / P_), n((H_ / P_) * (W_ / P_)),
          PD(spt_copies(v) * C_ * P_ * P_), stride(spt_copies(v) * C_) {
      if (v == SptVariant::diagonal) {
        const Index s = P / 2;
        const Index ddi[5] = {0, -s, -s, s, s}, ddj[5] = {0, -s, s, -s, s};
        std::copy(ddi, ddi + 5, di);
        std::copy(ddj, ddj + 5, dj);
      }
    }
    /// f(k, c, p1, i, p2a, p2b, j0) for every copy, channel (only `only_c` when >= 0) and patch row.
    template <class F>
    void for_each_run(Index t, F f, Index only_c = -1) const {
      const Index r0 = (t / gw) * P, c0 = (t % gw) * P;
      for (Index p1 = 0; p1 < P; ++p1)
        for (Index k = 0; k < copies; ++k) {
          const Index i = r0 + p1 + di[k], j0 = c0 + dj[k];
          const bool row_in = i >= 0 && i < H;
          const Index p2a = std::clamp<Index>(-j0, 0, P), p2b = std::clamp<Index>(W - j0, 0, P);
          for (Index c = only_c < 0 ? 0 : only_c; c < (only_c < 0 ? C : only_c + 1); ++c)
            f(k, c, p1, row_in ? i : Index(-1), p2a, std::max(p2a, p2b), j0);
        }
    }
  };
};

/// @brief Plain, single-threaded versions of the CpuBackend ops that are optimised above: the
/// test oracle of tests/test_cpu_kernels.cpp. Same arguments and contracts as the CpuBackend op
/// of the same name; written for clarity, not speed.
namespace reference {

/// @brief Row-major GEMM through Eigen's plain product expression (see CpuBackend::gemm).
template <class T>
void gemm(bool trans_a, bool trans_b, std::ptrdiff_t M, std::ptrdiff_t N, std::ptrdiff_t K, T alpha,
          const T* A, std::ptrdiff_t lda, const T* B, std::ptrdiff_t ldb, T beta, T* C, std::ptrdiff_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using OMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  if (M == 0 || N == 0) return;
  OMap c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) c.setZero(); else c *= beta;
  if (K == 0) return;
  CMap a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  CMap b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  const Mat pa = trans_a ? Mat(a.transpose()) : Mat(a);
  const Mat pb = trans_b ? Mat(b.transpose()) : Mat(b);
  c.noalias() += alpha * pa.lazyProduct(pb);
}

/// @brief See CpuBackend::gelu_forward (std::erf).
template <class T>
void gelu_forward(T* y, const T* x, std::size_t n) {
  const T r = T(0.70710678118654752440);
  for (std::size_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * r));
}

/// @brief See CpuBackend::gelu_backward (std::erf, std::exp).
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, std::size_t n) {
  const T r = T(0.70710678118654752440), c = T(0.39894228040143267794);
  for (std::size_t i = 0; i < n; ++i) {
    const T cdf = T(0.5) * (T(1) + std::erf(x[i] * r));
    const T pdf = c * std::exp(T(-0.5) * x[i] * x[i]);
    dx[i] = dy[i] * (cdf + x[i] * pdf);
  }
}

/// @brief See CpuBackend::layernorm_forward.
template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, std::ptrdiff_t rows,
                       std::ptrdiff_t cols) {
  for (std::ptrdiff_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    double m = 0;
    for (std::ptrdiff_t c = 0; c < cols; ++c) m += xr[c];
    m /= double(cols);
    double v = 0;
    for (std::ptrdiff_t c = 0; c < cols; ++c) v += (xr[c] - m) * (xr[c] - m);
    v /= double(cols);
    const T s = T(1.0 / std::sqrt(v + 1e-5)), mt = T(m);
    for (std::ptrdiff_t c = 0; c < cols; ++c) y[r * cols + c] = w ? (xr[c] - mt) * s * w[c] + b[c] : (xr[c] - mt) * s;
    mean[r] = mt;
    rstd[r] = s;
  }
}

/// @brief See CpuBackend::layernorm_backward.
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean, const T* rstd, const T* w,
                        std::ptrdiff_t rows, std::ptrdiff_t cols, bool accumulate_dx = false) {
  // mean null: x holds xhat; w null: no affine part (then dw, db are null too)
  std::vector<double> sw(std::size_t(cols), 0.0), sb(std::size_t(cols), 0.0);
  for (std::ptrdiff_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    const T m = mean ? mean[r] : T(0), s = rstd[r], xs = mean ? s : T(1);
    double sum_g = 0, sum_gx = 0;
    for (std::ptrdiff_t c = 0; c < cols; ++c) {
      const T g = w ? dyr[c] * w[c] : dyr[c];
      sum_g += g;
      sum_gx += g * (xr[c] - m) * xs;
      sw[std::size_t(c)] += double(dyr[c] * (xr[c] - m) * xs);
      sb[std::size_t(c)] += double(dyr[c]);
    }
    const T mg = T(sum_g / double(cols)), mgx = T(sum_gx / double(cols));
    if (!dx) continue;
    for (std::ptrdiff_t c = 0; c < cols; ++c) {
      const T v = s * ((w ? dyr[c] * w[c] : dyr[c]) - mg - (xr[c] - m) * xs * mgx);
      dx[r * cols + c] = accumulate_dx ? dx[r * cols + c] + v : v;
    }
  }
  for (std::ptrdiff_t c = 0; c < cols; ++c) {
    if (dw) dw[c] += T(sw[std::size_t(c)]);
    if (db) db[c] += T(sb[std::size_t(c)]);
  }
}

/// @brief See CpuBackend::spt_forward: one image element per patch element, index by index.
template <class T>
void spt_forward(T* patches, const T* images, std::ptrdiff_t B, std::ptrdiff_t C, std::ptrdiff_t H,
                 std::ptrdiff_t W, std::ptrdiff_t P, SptVariant v) {
  using Index = std::ptrdiff_t;
  const Index copies = spt_copies(v), s = P / 2;
  Index di[5] = {0, 0, 0, -1, 1}, dj[5] = {0, -1, 1, 0, 0};
  if (v == SptVariant::diagonal) {
    const Index ddi[5] = {0, -s, -s, s, s}, ddj[5] = {0, -s, s, -s, s};
    std::copy(ddi, ddi + 5, di);
    std::copy(ddj, ddj + 5, dj);
  }
  const Index gw = W / P, n = (H / P) * gw, PD = copies * C * P * P;
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < n; ++t)
      for (Index p1 = 0; p1 < P; ++p1)
        for (Index p2 = 0; p2 < P; ++p2)
          for (Index k = 0; k < copies; ++k)
            for (Index c = 0; c < C; ++c) {
              const Index i = (t / gw) * P + p1 + di[k], j = (t % gw) * P + p2 + dj[k];
              const bool inside = i >= 0 && i < H && j >= 0 && j < W;
              patches[(b * n + t) * PD + (p1 * P + p2) * copies * C + k * C + c] =
                  inside ? images[((b * C + c) * H + i) * W + j] : T(0);
            }
}

/// @brief See CpuBackend::spt_backward: the transpose of reference::spt_forward, element by element.
template <class T>
void spt_backward(T* dimages, const T* dpatches, std::ptrdiff_t B, std::ptrdiff_t C, std::ptrdiff_t H,
                  std::ptrdiff_t W, std::ptrdiff_t P, SptVariant v) {
  using Index = std::ptrdiff_t;
  const Index copies = spt_copies(v), s = P / 2;
  Index di[5] = {0, 0, 0, -1, 1}, dj[5] = {0, -1, 1, 0, 0};
  if (v == SptVariant::diagonal) {
    const Index ddi[5] = {0, -s, -s, s, s}, ddj[5] = {0, -s, s, -s, s};
    std::copy(ddi, ddi + 5, di);
    std::copy(ddj, ddj + 5, dj);
  }
  const Index gw = W / P, n = (H / P) * gw, PD = copies * C * P * P;
  std::fill(dimages, dimages + B * C * H * W, T(0));
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < n; ++t)
      for (Index p1 = 0; p1 < P; ++p1)
        for (Index p2 = 0; p2 < P; ++p2)
          for (Index k = 0; k < copies; ++k)
            for (Index c = 0; c < C; ++c) {
              const Index i = (t / gw) * P + p1 + di[k], j = (t % gw) * P + p2 + dj[k];
              if (i >= 0 && i < H && j >= 0 && j < W)
                dimages[((b * C + c) * H + i) * W + j] += dpatches[(b * n + t) * PD + (p1 * P + p2) * copies * C + k * C + c];
            }
}

/// @brief See CpuBackend::attention_softmax_forward (std::exp, row by row).
template <class T>
void attention_softmax_forward(T* A, const T* S, const T* param, TemperatureMode mode, T fixed_tau,
                               bool mask_diagonal, std::ptrdiff_t B, std::ptrdiff_t h, std::ptrdiff_t N) {
  const T lowest = std::numeric_limits<T>::lowest();
  for (std::ptrdiff_t row = 0; row < B * h * N; ++row) {
    const std::ptrdiff_t j = (row / N) % h, i = row % N;
    const T tau = mode == TemperatureMode::shared_log ? std::exp(param[0])
                  : mode == TemperatureMode::per_head ? param[j] : fixed_tau;
    const T* s = S + row * N;
    T* a = A + row * N;
    T mx = lowest;
    for (std::ptrdiff_t c = 0; c < N; ++c) {
      a[c] = (mask_diagonal && c == i) ? lowest : s[c] * tau;
      mx = std::max(mx, a[c]);
    }
    T sum = 0;
    for (std::ptrdiff_t c = 0; c < N; ++c) {
      a[c] = (mask_diagonal && c == i) ? T(0) : std::exp(a[c] - mx);
      sum += a[c];
    }
    for (std::ptrdiff_t c = 0; c < N; ++c) a[c] /= sum;
  }
}

/// @brief See CpuBackend::attention_softmax_backward.
template <class T>
void attention_softmax_backward(T* dS, T* dparam, const T* dA, const T* A, const T* S, const T* param,
                                TemperatureMode mode, T fixed_tau, std::ptrdiff_t B, std::ptrdiff_t h,
                                std::ptrdiff_t N) {
  std::vector<double> dtau(std::size_t(h), 0.0);
  for (std::ptrdiff_t row = 0; row < B * h * N; ++row) {
    const std::ptrdiff_t j = (row / N) % h;
    const T tau = mode == TemperatureMode::shared_log ? std::exp(param[0])
                  : mode == TemperatureMode::per_head ? param[j] : fixed_tau;
    const T *a = A + row * N, *da = dA + row * N, *s = S + row * N;
    T dot = 0;
    for (std::ptrdiff_t c = 0; c < N; ++c) dot += da[c] * a[c];
    for (std::ptrdiff_t c = 0; c < N; ++c) {
      const T dz = a[c] * (da[c] - dot);
      dtau[std::size_t(j)] += double(dz) * double(s[c]);
      dS[row * N + c] = tau * dz;
    }
  }
  if (mode == TemperatureMode::shared_log) {
    double total = 0;
    for (double v : dtau) total += v;
    dparam[0] += T(total * double(std::exp(param[0])));
  } else if (mode == TemperatureMode::per_head) {
    for (std::ptrdiff_t j = 0; j < h; ++j) dparam[j] += T(dtau[std::size_t(j)]);
  }
}

}  // namespace reference

}  // namespace vitiq

#if defined(VITIQ_USE_CBLAS)
// The BLAS engine: this translation unit was compiled for a program that links vitiq::blas.
// Registration happens in every such translation unit (internal linkage, identical effect), so
// the GemmEngine code above stays the same in every translation unit of a program.
#include <cblas.h>
#include <dlfcn.h>

namespace vitiq::detail {
namespace {
inline void cblas_s(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}
inline void cblas_d(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
                    int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}
inline void blas_single_thread() {  // OpenBLAS's own setting, looked up: other BLAS libraries lack it
  if (void* f = ::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<void (*)(int)>(f)(1);
}
[[maybe_unused]] const bool blas_registered = [] {
  BlasHooks& h = blas_hooks();
  h.sgemm = &cblas_s;
  h.dgemm = &cblas_d;
  h.single_thread = &blas_single_thread;
  return true;
}();
}  // namespace
}  // namespace vitiq::detail
#endif
