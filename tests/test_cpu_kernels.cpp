// tests/test_cpu_kernels.cpp -- the optimised CPU backend against its plain versions
// (vitiq::reference in vitiq/cpu/backend.hpp): tiled GEMMs (beta = 0 over NaN too), batched GEMMs, the vectorised attention
// softmax and its backward, GELU, LayerNorm, the one-pass SPT gather and its transpose, and the
// worker pool that runs them (every chunk exactly once, nested and concurrent calls).
//
// Each kernel runs on one and on two threads; the two-thread runs go through detail::WorkerPool.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "support/cpu_kernel_checks.hpp"
#include "vitiq/vitiq.hpp"

namespace {

using Index = std::ptrdiff_t;
using vitiq_test::engines;
using vitiq_test::Engine;
using vitiq_test::max_rel_diff;
using vitiq_test::random_vec;
using vitiq_test::Threads;

template <class T>
constexpr double tol() { return std::is_same_v<T, float> ? 2e-6 : 1e-13; }

}  // namespace

TEST_CASE("worker pool: every chunk runs exactly once, nested and concurrent calls run serially", "[cpu_kernels][pool]") {
  auto& pool = vitiq::detail::WorkerPool::instance();
  for (int threads : {1, 2, 3}) {
    for (Index chunks : {Index(1), Index(2), Index(7), Index(1000)}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(chunks));
      for (auto& h : hits) h = 0;
      pool.run(chunks, threads, [&](Index i) { hits[std::size_t(i)].fetch_add(1); });
      int wrong = 0;
      for (auto& h : hits) wrong += h.load() != 1;
      CHECK(wrong == 0);
    }
  }
  // A chunk that calls the pool again runs the inner job on its own thread, completely.
  std::atomic<int> inner{0};
  pool.run(8, 2, [&](Index) { pool.run(10, 2, [&](Index) { inner.fetch_add(1); }); });
  CHECK(inner.load() == 80);
  // Two threads calling at once: one gets the pool, the other runs serially; nothing is lost.
  std::atomic<long> sum{0};
  auto caller = [&] {
    for (int rep = 0; rep < 200; ++rep) pool.run(16, 2, [&](Index i) { sum.fetch_add(long(i)); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  CHECK(sum.load() == 2L * 200 * (15 * 16 / 2));
}

TEMPLATE_TEST_CASE("tiled GEMM matches the plain product in every transpose mode and beta", "[cpu_kernels][gemm]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  // Shapes below and above the tiling threshold, wide and tall (split by columns and by rows),
  // K much longer than C's sides (split along K with two threads: 1100 and 777 are not multiples
  // of the 16-element part boundaries), and leading dimensions larger than the rows.
  const Index shapes[][3] = {{3, 5, 7}, {130, 70, 33}, {37, 300, 129}, {513, 96, 64}, {64, 64, 0},
                             {128, 70, 1100}, {96, 200, 777}};
  for (const vitiq::GemmEngine engine : engines())
  for (int threads : {1, 2}) {
    Engine en(engine);
    Threads th(threads);
    for (const auto& s : shapes) {
      const Index M = s[0], N = s[1], K = s[2], pad = 3;
      for (int mode = 0; mode < 4; ++mode) {
        const bool ta = mode & 1, tb = mode & 2;
        const Index lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        const auto A = random_vec<T>(std::size_t((ta ? K : M) * lda), 1);
        const auto B = random_vec<T>(std::size_t((tb ? N : K) * ldb), 2);
        for (T beta : {T(0), T(1), T(0.5)}) {
          auto C = random_vec<T>(std::size_t(M * ldc), 3), C_ref = C;
          be.gemm(ta, tb, M, N, K, T(0.75), A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          vitiq::reference::gemm(ta, tb, M, N, K, T(0.75), A.data(), lda, B.data(), ldb, beta, C_ref.data(), ldc);
          INFO("engine " << int(engine) << " threads " << threads << " M " << M << " N " << N << " K " << K
                         << " mode " << mode << " beta " << beta);
          CHECK(max_rel_diff(C, C_ref) < 10 * tol<T>());
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("linear_packed on pack_linear_weight's layout equals the plain product", "[cpu_kernels][gemm]",
                   float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  constexpr Index NR = vitiq::CpuBackend<T>::packed_panel();  // 0 for double: copy + gemm
  // Rows around the 6-row micro-kernel (every remainder 1-5), panel counts 1-16, K below, at and
  // above the 384-element K block, n not a multiple of the panel (copy layout, gemm), strided X, C.
  const Index shapes[][3] = {{1, 16, 17},  {5, 32, 384}, {6, 48, 385}, {7, 16, 1},   {11, 64, 800},
                             {65, 256, 96}, {64, 96, 240}, {130, 32, 40}, {13, 20, 33}, {9, 8, 5}};
  for (int threads : {1, 2}) {
    Threads th(threads);
    for (const auto& s : shapes) {
      const Index M = s[0], n = s[1], k = s[2], ldx = k + 3, ldc = n + 5;
      const auto X = random_vec<T>(std::size_t(M * ldx), 4);
      const auto Wt = random_vec<T>(std::size_t(n * k), 5);
      std::vector<T> Wp(Wt.size(), T(-7));
      be.pack_linear_weight(Wp.data(), Wt.data(), n, k);
      if (NR > 0 && n % NR == 0) {  // panel p, input feature c, output r: W[p*NR + r, c]
        const Index p = n / NR - 1, r = NR - 1, c = k - 1;
        CHECK(Wp[std::size_t(p * NR * k + c * NR + r)] == Wt[std::size_t((p * NR + r) * k + c)]);
      } else {
        CHECK(Wp == Wt);
      }
      for (const bool accumulate : {false, true}) {
        auto C = random_vec<T>(std::size_t(M * ldc), 6), C_ref = C;
        if (!accumulate)  // not read: NaN must not leak into the result
          for (Index i = 0; i < M; ++i) C[std::size_t(i * ldc)] = std::numeric_limits<T>::quiet_NaN();
        be.linear_packed(C.data(), ldc, X.data(), ldx, Wp.data(), M, n, k, accumulate);
        vitiq::reference::gemm(false, true, M, n, k, T(1), X.data(), ldx, Wt.data(), k, accumulate ? T(1) : T(0),
                               C_ref.data(), ldc);
        INFO("threads " << threads << " M " << M << " n " << n << " k " << k << " accumulate " << accumulate);
        CHECK(max_rel_diff(C, C_ref) < 10 * tol<T>());
        int padding_changed = 0;  // the columns past n of each row are left alone
        const auto C0 = random_vec<T>(std::size_t(M * ldc), 6);
        for (Index i = 0; i < M; ++i)
          for (Index j = n; j < ldc; ++j) padding_changed += C[std::size_t(i * ldc + j)] != C0[std::size_t(i * ldc + j)];
        CHECK(padding_changed == 0);
      }
    }
  }
}

TEMPLATE_TEST_CASE("GEMM with beta = 0 overwrites C, NaN and infinity included, with the bits of C = 0, beta = 1",
                   "[cpu_kernels][gemm]", float, double) {
  // The BLAS engine zeroes C itself and asks the BLAS for beta = 1 (OpenBLAS's own beta = 0 pass
  // is slow); BLAS semantics say C is not read when beta = 0, so NaN there must not leak through.
  using T = TestType;
  vitiq::CpuBackend<T> be;
  for (const vitiq::GemmEngine engine : engines())
  for (int threads : {1, 2}) {
    Engine en(engine);
    Threads th(threads);
    for (const Index ldc_pad : {Index(0), Index(5)}) {  // C contiguous (one memset) and strided (per row)
      const Index M = 150, N = 70, K = 40, ldc = N + ldc_pad;
      const auto A = random_vec<T>(std::size_t(M * K), 21), B = random_vec<T>(std::size_t(K * N), 22);
      std::vector<T> C(std::size_t(M * ldc), std::numeric_limits<T>::quiet_NaN());
      for (std::size_t i = 0; i < C.size(); i += 7) C[i] = -std::numeric_limits<T>::infinity();
      std::vector<T> C_ref(C.size(), T(0));
      be.gemm(false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(0), C.data(), ldc);
      be.gemm(false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(1), C_ref.data(), ldc);
      INFO("engine " << int(engine) << " threads " << threads << " ldc " << ldc);
      bool same = true;
      for (Index r = 0; r < M; ++r)
        for (Index c = 0; c < N; ++c) same = same && C[std::size_t(r * ldc + c)] == C_ref[std::size_t(r * ldc + c)];
      CHECK(same);
      // the padding between rows is not C's: untouched (NaN / -inf stay)
      if (ldc_pad > 0) CHECK(std::isnan(C[std::size_t(N + 1)]));
    }
  }
}

TEMPLATE_TEST_CASE("scale_columns and column_dots match the plain loops", "[cpu_kernels][elementwise]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  for (int threads : {1, 2}) {
    Threads th(threads);
    const Index rows = 300, cols = 131;  // more than two 64-column blocks, a ragged last one
    const auto a = random_vec<T>(std::size_t(rows * cols), 25), b = random_vec<T>(std::size_t(rows * cols), 26);
    const auto s = random_vec<T>(std::size_t(cols), 27);
    std::vector<T> y(a.size()), in_place = a;
    be.scale_columns(y.data(), a.data(), s.data(), rows, cols);
    be.scale_columns(in_place.data(), in_place.data(), s.data(), rows, cols);
    bool scaled = true;
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) scaled = scaled && y[std::size_t(r * cols + c)] == a[std::size_t(r * cols + c)] * s[std::size_t(c)];
    CHECK(scaled);
    CHECK(in_place == y);
    std::vector<T> dots(std::size_t(cols), T(0.5)), dots_ref(std::size_t(cols), T(0));
    be.column_dots(dots.data(), a.data(), b.data(), rows, cols);
    for (Index c = 0; c < cols; ++c) {
      double acc = 0;
      for (Index r = 0; r < rows; ++r) acc += double(a[std::size_t(r * cols + c)] * b[std::size_t(r * cols + c)]);
      dots_ref[std::size_t(c)] = T(0.5) + T(acc);
    }
    INFO("threads " << threads);
    CHECK(max_rel_diff(dots, dots_ref) < tol<T>());
  }
}

TEMPLATE_TEST_CASE("bias_init writes x + b or b per row, in place too", "[cpu_kernels][elementwise]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  for (int threads : {1, 2}) {
    Threads th(threads);
    const Index rows = 1031, cols = 37;  // above the grain; cols not a multiple of the vector width
    const auto x = random_vec<T>(std::size_t(rows * cols), 23), b = random_vec<T>(std::size_t(cols), 24);
    std::vector<T> y(x.size(), std::numeric_limits<T>::quiet_NaN()), y_in_place = x;
    be.bias_init(y.data(), x.data(), b.data(), rows, cols);
    be.bias_init(y_in_place.data(), y_in_place.data(), b.data(), rows, cols);
    std::vector<T> only_b(x.size(), std::numeric_limits<T>::quiet_NaN());
    be.bias_init(only_b.data(), nullptr, b.data(), rows, cols);
    bool sums = true, in_place = true, bias = true;
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) {
        const std::size_t i = std::size_t(r * cols + c);
        sums = sums && y[i] == x[i] + b[std::size_t(c)];
        in_place = in_place && y_in_place[i] == y[i];
        bias = bias && only_b[i] == b[std::size_t(c)];
      }
    INFO("threads " << threads);
    CHECK(sums);
    CHECK(in_place);
    CHECK(bias);
  }
}

TEMPLATE_TEST_CASE("batched GEMM matches one plain product per batch entry", "[cpu_kernels][gemm]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  // The attention layout: q, k inside qkv rows [B, N, 3I], scores [B, h, N, N].
  const Index Bt = 3, h = 4, N = 17, d = 8, I = h * d;
  const auto qkv = random_vec<T>(std::size_t(Bt * N * 3 * I), 4);
  for (const vitiq::GemmEngine engine : engines())
  for (int threads : {1, 2}) {
    Engine en(engine);
    Threads th(threads);
    INFO("engine " << int(engine) << " threads " << threads);
    std::vector<T> S(std::size_t(Bt * h * N * N), T(7)), S_ref = S;
    be.gemm_batched(false, true, N, N, d, T(1), qkv.data(), 3 * I, N * 3 * I, d, qkv.data() + I, 3 * I, N * 3 * I,
                    d, T(0), S.data(), N, h * N * N, N * N, Bt, h);
    for (Index b = 0; b < Bt; ++b)
      for (Index j = 0; j < h; ++j)
        vitiq::reference::gemm(false, true, N, N, d, T(1), qkv.data() + b * N * 3 * I + j * d, 3 * I,
                               qkv.data() + b * N * 3 * I + I + j * d, 3 * I, T(0),
                               S_ref.data() + (b * h + j) * N * N, N);
    CHECK(max_rel_diff(S, S_ref) < 10 * tol<T>());
  }
}

TEMPLATE_TEST_CASE("vectorised attention softmax and backward match the plain loops", "[cpu_kernels][attention]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  // N = 65 (the models' 64 patches + class token), rows shorter than one vector (5), a whole
  // number of vectors (16) and one past it (17): the vector loops' tails and the padding.
  for (const Index N : {Index(65), Index(5), Index(16), Index(17)}) {
    CAPTURE(N);
    const Index Bt = 3, h = 3;
    const std::size_t n = std::size_t(Bt * h * N * N);
    const auto S = random_vec<T>(n, 5, 4.0), dA = random_vec<T>(n, 6);
    const std::vector<T> shared{T(std::log(0.3))}, per_head{T(0.2), T(0.35), T(0.5)};
    struct Case { vitiq::TemperatureMode mode; const T* param; bool mask; };
    const Case cases[] = {{vitiq::TemperatureMode::shared_log, shared.data(), true},
                          {vitiq::TemperatureMode::per_head, per_head.data(), true},
                          {vitiq::TemperatureMode::fixed, nullptr, false}};
    for (int threads : {1, 2}) {
      Threads th(threads);
      for (const Case& c : cases) {
        std::vector<T> A(n), A_ref(n), dS(n), dS_ref(n);
        be.attention_softmax_forward(A.data(), S.data(), c.param, c.mode, T(0.25), c.mask, Bt, h, N);
        vitiq::reference::attention_softmax_forward(A_ref.data(), S.data(), c.param, c.mode, T(0.25), c.mask, Bt, h, N);
        CHECK(max_rel_diff(A, A_ref) < 10 * tol<T>());
        if (c.mask) {
          int nonzero = 0;
          for (Index r = 0; r < Bt * h * N; ++r) nonzero += A[std::size_t(r * N + r % N)] != T(0);
          CHECK(nonzero == 0);  // the LSA diagonal is exactly 0
        }
        std::vector<T> dp(3, T(0.125)), dp_ref = dp;
        be.attention_softmax_backward(dS.data(), dp.data(), dA.data(), A.data(), S.data(), c.param, c.mode, T(0.25), Bt, h, N);
        vitiq::reference::attention_softmax_backward(dS_ref.data(), dp_ref.data(), dA.data(), A.data(), S.data(), c.param,
                                                     c.mode, T(0.25), Bt, h, N);
        CHECK(max_rel_diff(dS, dS_ref) < 10 * tol<T>());
        CHECK(max_rel_diff(dp, dp_ref) < 10 * tol<T>());
      }
    }
  }
}

TEMPLATE_TEST_CASE("vectorised GELU and LayerNorm match the plain loops", "[cpu_kernels][elementwise]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  for (int threads : {1, 2}) {
    Threads th(threads);
    const std::size_t n = 70001;  // above the grain, odd length
    const auto x = random_vec<T>(n, 7, 3.0), dy = random_vec<T>(n, 8);
    std::vector<T> y(n), y_ref(n), dx(n), dx_ref(n);
    be.gelu_forward(y.data(), x.data(), n);
    vitiq::reference::gelu_forward(y_ref.data(), x.data(), n);
    CHECK(max_rel_diff(y, y_ref) < 2 * tol<T>());
    be.gelu_backward(dx.data(), dy.data(), x.data(), n);
    vitiq::reference::gelu_backward(dx_ref.data(), dy.data(), x.data(), n);
    CHECK(max_rel_diff(dx, dx_ref) < 2 * tol<T>());

    const Index rows = 700, cols = 96;
    const auto lx = random_vec<T>(std::size_t(rows * cols), 9, 2.0), ldy = random_vec<T>(std::size_t(rows * cols), 10);
    const auto w = random_vec<T>(std::size_t(cols), 11), b = random_vec<T>(std::size_t(cols), 12);
    std::vector<T> ly(lx.size()), ly_ref(lx.size());
    std::vector<T> m(static_cast<std::size_t>(rows)), m_ref = m, r = m, r_ref = m;
    be.layernorm_forward(ly.data(), m.data(), r.data(), lx.data(), w.data(), b.data(), rows, cols);
    vitiq::reference::layernorm_forward(ly_ref.data(), m_ref.data(), r_ref.data(), lx.data(), w.data(), b.data(), rows, cols);
    CHECK(max_rel_diff(ly, ly_ref) < 10 * tol<T>());
    CHECK(max_rel_diff(r, r_ref) < 10 * tol<T>());
    std::vector<T> ldx(lx.size()), ldx_ref(lx.size()), dw(std::size_t(cols), T(1)), dw_ref = dw, db = dw, db_ref = dw;
    be.layernorm_backward(ldx.data(), dw.data(), db.data(), ldy.data(), lx.data(), m.data(), r.data(), w.data(), rows, cols);
    vitiq::reference::layernorm_backward(ldx_ref.data(), dw_ref.data(), db_ref.data(), ldy.data(), lx.data(), m.data(),
                                         r.data(), w.data(), rows, cols);
    CHECK(max_rel_diff(ldx, ldx_ref) < 10 * tol<T>());
    CHECK(max_rel_diff(dw, dw_ref) < 10 * tol<T>());
    CHECK(max_rel_diff(db, db_ref) < 10 * tol<T>());
    // accumulate_dx: dx += the gradient (the model's residual-stream gradient), in both versions
    const auto d_resid = random_vec<T>(lx.size(), 13);
    std::vector<T> acc = d_resid, acc_ref = d_resid, acc_expected(lx.size());
    be.layernorm_backward(acc.data(), dw.data(), db.data(), ldy.data(), lx.data(), m.data(), r.data(), w.data(), rows,
                          cols, true);
    vitiq::reference::layernorm_backward(acc_ref.data(), dw_ref.data(), db_ref.data(), ldy.data(), lx.data(), m.data(),
                                         r.data(), w.data(), rows, cols, true);
    for (std::size_t i = 0; i < acc_expected.size(); ++i) acc_expected[i] = d_resid[i] + ldx_ref[i];
    CHECK(max_rel_diff(acc, acc_expected) < 10 * tol<T>());
    CHECK(max_rel_diff(acc_ref, acc_expected) < 10 * tol<T>());
    CHECK(max_rel_diff(dw, dw_ref) < 10 * tol<T>());  // dw, db accumulated twice now
    CHECK(max_rel_diff(db, db_ref) < 10 * tol<T>());

    // Without affine part (w, b null; the folded patch LayerNorm): the forward in place gives xhat,
    // equal to the affine forward with w = 1, b = 0; the backward from xhat (mean null) equals the
    // backward from x with w = 1.
    const std::vector<T> ones(std::size_t(cols), T(1)), zeros(std::size_t(cols), T(0));
    std::vector<T> xhat = lx, xhat_ref(lx.size()), m1 = m, r1 = r;
    be.layernorm_forward(xhat.data(), m1.data(), r1.data(), xhat.data(), nullptr, nullptr, rows, cols);
    vitiq::reference::layernorm_forward(xhat_ref.data(), m_ref.data(), r_ref.data(), lx.data(), ones.data(),
                                        zeros.data(), rows, cols);
    CHECK(max_rel_diff(xhat, xhat_ref) < 10 * tol<T>());
    CHECK(max_rel_diff(r1, r_ref) < 10 * tol<T>());
    std::vector<T> dx_plain(lx.size()), dx_plain_ref(lx.size()), dx_from_xhat_ref(lx.size()), scratch_w = dw, scratch_b = db;
    be.layernorm_backward(dx_plain.data(), nullptr, nullptr, ldy.data(), xhat.data(), nullptr, r1.data(), nullptr, rows, cols);
    vitiq::reference::layernorm_backward(dx_plain_ref.data(), scratch_w.data(), scratch_b.data(), ldy.data(), lx.data(),
                                         m1.data(), r1.data(), ones.data(), rows, cols);
    vitiq::reference::layernorm_backward<T>(dx_from_xhat_ref.data(), nullptr, nullptr, ldy.data(), xhat.data(), nullptr,
                                         r1.data(), nullptr, rows, cols);
    CHECK(max_rel_diff(dx_plain, dx_plain_ref) < 10 * tol<T>());
    CHECK(max_rel_diff(dx_from_xhat_ref, dx_plain_ref) < 10 * tol<T>());
    CHECK_THROWS_AS(be.layernorm_backward(dx_plain.data(), dw.data(), nullptr, ldy.data(), xhat.data(), nullptr,
                                          r1.data(), nullptr, rows, cols),
                    vitiq::Error);
  }
}

TEMPLATE_TEST_CASE("one-pass SPT gather and its transpose match the index-by-index loops", "[cpu_kernels][spt]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  const Index Bt = 2, C = 3, H = 12, W = 16;
  for (int threads : {1, 2}) {
    Threads th(threads);
    for (Index P : {Index(2), Index(4)})
      for (auto v : {vitiq::SptVariant::axial, vitiq::SptVariant::diagonal, vitiq::SptVariant::none}) {
        const Index n = (H / P) * (W / P), PD = vitiq::spt_copies(v) * C * P * P;
        const auto img = random_vec<T>(std::size_t(Bt * C * H * W), 13);
        std::vector<T> p(std::size_t(Bt * n * PD), T(9)), p_ref = p;
        be.spt_forward(p.data(), img.data(), Bt, C, H, W, P, v);
        vitiq::reference::spt_forward(p_ref.data(), img.data(), Bt, C, H, W, P, v);
        CHECK(p == p_ref);  // a gather: bit for bit
        const auto dp = random_vec<T>(p.size(), 14);
        std::vector<T> di(img.size(), T(9)), di_ref = di;
        be.spt_backward(di.data(), dp.data(), Bt, C, H, W, P, v);
        vitiq::reference::spt_backward(di_ref.data(), dp.data(), Bt, C, H, W, P, v);
        CHECK(max_rel_diff(di, di_ref) < 10 * tol<T>());
      }
  }
}

TEST_CASE("sum of squares and finiteness do not depend on the thread count", "[cpu_kernels][elementwise]") {
  vitiq::CpuBackend<float> be;
  auto x = random_vec<float>(100003, 15);
  double ref = 0;
  for (float v : x) ref += double(v) * double(v);
  double s1, s2;
  {
    Threads th(1);
    s1 = be.sum_squares(x.data(), x.size());
    CHECK(be.all_finite(x.data(), x.size()));
  }
  {
    Threads th(2);
    s2 = be.sum_squares(x.data(), x.size());
    CHECK(be.all_finite(x.data(), x.size()));
    x[77777] = std::numeric_limits<float>::quiet_NaN();
    CHECK_FALSE(be.all_finite(x.data(), x.size()));
  }
  CHECK(s1 == s2);
  CHECK(s1 == Approx(ref).epsilon(1e-12));
}

TEST_CASE("GEMM engines: the BLAS engine is there exactly when the program links vitiq::blas", "[cpu_kernels][gemm]") {
#if defined(VITIQ_USE_CBLAS)
  REQUIRE(vitiq::blas_available());
  // A whole model agrees on both engines (float, the aio preset's shape at batch 2).
  constexpr vitiq::Config C = vitiq::presets::aio;
  vitiq::ViT<C> model({}, 3);
  const auto images = random_vec<float>(std::size_t(2 * 3 * C.image_size * C.image_size), 5);
  std::vector<float> logits[2];
  for (int k = 0; k < 2; ++k) {
    Engine en(k == 0 ? vitiq::GemmEngine::eigen : vitiq::GemmEngine::blas);
    const float* out = model.forward_device(images.data(), 2);
    logits[k].assign(out, out + 2 * C.num_classes);
  }
  CHECK(max_rel_diff(logits[1], logits[0]) < 1e-5);
  CHECK(max_rel_diff(logits[1], logits[0]) > 0);  // really another kernel (sums in another order)
#else
  CHECK_FALSE(vitiq::blas_available());
  CHECK_THROWS_WITH(vitiq::set_gemm_engine(vitiq::GemmEngine::blas),
                    Catch::Matchers::Contains("this program was built without a BLAS"));
  CHECK(vitiq::gemm_engine() == vitiq::GemmEngine::eigen);
#endif
}
