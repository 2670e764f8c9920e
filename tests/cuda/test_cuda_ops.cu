// tests/cuda/test_cuda_ops.cu -- every op of CudaBackend against the CPU reference backend, on the
// same random inputs, in float and double; the device copy of the dropout hash against the CPU
// one (the [host] test runs without a GPU too).
//
// Tolerances: op_tolerance<T>() (float 2e-6, double 1e-13, relative, norm-wise) unless an op
// says otherwise; dropout masks and copies must match exactly.
#include "support/catch.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "support.hpp"

using vitiq_test::DeviceCopy;
using vitiq_test::random_values;
using vitiq_test::rel_error;
using Index = std::ptrdiff_t;

TEST_CASE("cuda: the device copy of the dropout hash equals the CPU hash", "[cuda][host]") {
  static_assert(vitiq::cuda::mix64(12345) == vitiq::mix64(12345));
  static_assert(vitiq::cuda::uniform01(1, 2, 3) == vitiq::uniform01(1, 2, 3));
  vitiq::Rng rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t seed = rng.next(), stream = rng.next() % 100000, counter = rng.next() % (1ull << 40);
    REQUIRE(vitiq::cuda::mix64(seed) == vitiq::mix64(seed));
    REQUIRE(vitiq::cuda::uniform01(seed, stream, counter) == vitiq::uniform01(seed, stream, counter));
  }
}

TEST_CASE("cuda: a context reports the device and refuses nothing it needs", "[cuda][device]") {
  vitiq::CudaBackend<float> be;
  INFO(vitiq::cuda::device_description(be.context().device()));
  CHECK(vitiq::cuda::device_count() > 0);
  CHECK(be.context().math_mode() == vitiq::cuda::MathMode::fp32);
  auto buf = be.allocate(1000);
  std::vector<float> host(1000, 1.f);
  be.to_host(host.data(), buf.data(), host.size());
  CHECK(std::all_of(host.begin(), host.end(), [](float x) { return x == 0.f; }));  // zero-filled
  be.fill(buf.data(), 2.5f, 1000);
  be.to_host(host.data(), buf.data(), host.size());
  CHECK(std::all_of(host.begin(), host.end(), [](float x) { return x == 2.5f; }));
  // Moving a buffer moves ownership.
  auto moved = std::move(buf);
  CHECK(buf.data() == nullptr);
  CHECK(moved.size() == 1000);
}

TEMPLATE_TEST_CASE("cuda: copy, also between overlapping ranges", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CudaBackend<T> be;
  const auto x = random_values<T>(1000, 1);
  DeviceCopy<T> d(be, x);
  be.copy(d.get() + 10, d.get(), 500);  // overlapping, forward
  std::vector<T> expect = x;
  std::copy(x.begin(), x.begin() + 500, expect.begin() + 10);
  CHECK(d.host() == expect);
}

TEMPLATE_TEST_CASE("cuda: gemm agrees with the CPU for every transpose, beta and stride", "[cuda][device]", float,
                   double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index M = 37, N = 45, K = 29, pad = 3;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const T beta : {T(0), T(1), T(0.5)}) {
        const Index lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        const auto A = random_values<T>(std::size_t((ta ? K : M) * lda), 11);
        const auto B = random_values<T>(std::size_t((tb ? N : K) * ldb), 12);
        auto C = random_values<T>(std::size_t(M * ldc), 13);
        DeviceCopy<T> dA(gpu, A), dB(gpu, B), dC(gpu, C);
        gpu.gemm(ta, tb, M, N, K, T(0.75), dA.get(), lda, dB.get(), ldb, beta, dC.get(), ldc);
        cpu.gemm(ta, tb, M, N, K, T(0.75), A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta);
        CHECK(rel_error(dC.host(), C) < vitiq_test::op_tolerance<T>());
      }
  // K = 0: C = beta * C; beta = 0 must not read C (NaN there stays unread).
  std::vector<T> C(12, std::numeric_limits<T>::quiet_NaN());
  DeviceCopy<T> dC(gpu, C);
  gpu.gemm(false, false, 3, 4, 0, T(1), dC.get(), 4, dC.get(), 4, T(0), dC.get(), 4);
  for (const T c : dC.host()) CHECK(c == T(0));
}

TEMPLATE_TEST_CASE("cuda: gemm_batched with the attention's two-level strides", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 3, h = 4, N = 17, d = 8, I = h * d;
  const auto qkv = random_values<T>(std::size_t(B * N * 3 * I), 21);
  const auto A = random_values<T>(std::size_t(B * h * N * N), 22, 0.0, 1.0);
  DeviceCopy<T> dqkv(gpu, qkv), dA(gpu, A);
  // scores S_bj = Q_bj K_bj^T: [B, h, N, N] (outer stride h*N*N = h * inner stride: collapses for C only)
  std::vector<T> S(std::size_t(B * h * N * N), T(0));
  DeviceCopy<T> dS(gpu, S);
  cpu.gemm_batched(false, true, N, N, d, T(1), qkv.data(), 3 * I, N * 3 * I, d, qkv.data() + I, 3 * I, N * 3 * I, d,
                   T(0), S.data(), N, h * N * N, N * N, B, h);
  gpu.gemm_batched(false, true, N, N, d, T(1), dqkv.get(), 3 * I, N * 3 * I, d, dqkv.get() + I, 3 * I, N * 3 * I, d,
                   T(0), dS.get(), N, h * N * N, N * N, B, h);
  CHECK(rel_error(dS.host(), S) < vitiq_test::op_tolerance<T>());
  // O_bj = A_bj V_bj into column blocks of [B, N, I]
  std::vector<T> O(std::size_t(B * N * I), T(0));
  DeviceCopy<T> dO(gpu, O);
  cpu.gemm_batched(false, false, N, d, N, T(1), A.data(), N, h * N * N, N * N, qkv.data() + 2 * I, 3 * I, N * 3 * I, d,
                   T(0), O.data(), I, N * I, d, B, h);
  gpu.gemm_batched(false, false, N, d, N, T(1), dA.get(), N, h * N * N, N * N, dqkv.get() + 2 * I, 3 * I, N * 3 * I,
                   d, T(0), dO.get(), I, N * I, d, B, h);
  CHECK(rel_error(dO.host(), O) < vitiq_test::op_tolerance<T>());
  // dV = A^T dO with beta = 1 (accumulating), transposed A.
  std::vector<T> dV = random_values<T>(std::size_t(B * N * 3 * I), 23);
  DeviceCopy<T> ddV(gpu, dV);
  cpu.gemm_batched(true, false, N, d, N, T(1), A.data(), N, h * N * N, N * N, O.data(), I, N * I, d, T(1),
                   dV.data() + 2 * I, 3 * I, N * 3 * I, d, B, h);
  gpu.gemm_batched(true, false, N, d, N, T(1), dA.get(), N, h * N * N, N * N, dO.get(), I, N * I, d, T(1),
                   ddV.get() + 2 * I, 3 * I, N * 3 * I, d, B, h);
  CHECK(rel_error(ddV.host(), dV) < vitiq_test::op_tolerance<T>());
  // A batch whose levels collapse (contiguous [B*h, N, N] blocks), and one with a single outer index.
  std::vector<T> P(std::size_t(B * h * N * N), T(0));
  DeviceCopy<T> dP(gpu, P);
  cpu.gemm_batched(false, false, N, N, N, T(1), A.data(), N, h * N * N, N * N, A.data(), N, h * N * N, N * N, T(0),
                   P.data(), N, h * N * N, N * N, B, h);
  gpu.gemm_batched(false, false, N, N, N, T(1), dA.get(), N, h * N * N, N * N, dA.get(), N, h * N * N, N * N, T(0),
                   dP.get(), N, h * N * N, N * N, B, h);
  CHECK(rel_error(dP.host(), P) < vitiq_test::op_tolerance<T>());
  cpu.gemm_batched(false, true, N, N, N, T(1), A.data(), N, 0, N * N, A.data(), N, 0, N * N, T(0), P.data(), N, 0,
                   N * N, 1, h);
  gpu.gemm_batched(false, true, N, N, N, T(1), dA.get(), N, 0, N * N, dA.get(), N, 0, N * N, T(0), dP.get(), N, 0,
                   N * N, 1, h);
  CHECK(rel_error(dP.host(), P) < vitiq_test::op_tolerance<T>());
}

TEMPLATE_TEST_CASE("cuda: elementwise ops, reductions and dropout masks", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index rows = 1000, cols = 77;
  const std::size_t n = std::size_t(rows * cols);
  auto y = random_values<T>(n, 31);
  const auto x = random_values<T>(n, 32);
  const auto b = random_values<T>(std::size_t(cols), 33);
  const auto s = random_values<T>(std::size_t(rows), 34);
  DeviceCopy<T> dy(gpu, y), dx(gpu, x), db(gpu, b), ds(gpu, s);

  cpu.add_bias(y.data(), b.data(), rows, cols);
  gpu.add_bias(dy.get(), db.get(), rows, cols);
  CHECK(dy.host() == y);
  cpu.add(y.data(), x.data(), n);
  gpu.add(dy.get(), dx.get(), n);
  CHECK(dy.host() == y);
  cpu.bias_init(y.data(), y.data(), b.data(), rows, cols);  // in place, then from nothing into x's copy
  gpu.bias_init(dy.get(), dy.get(), db.get(), rows, cols);
  CHECK(dy.host() == y);
  {
    std::vector<T> z = x;
    DeviceCopy<T> dz(gpu, z);
    cpu.bias_init(z.data(), nullptr, b.data(), rows, cols);
    gpu.bias_init(dz.get(), nullptr, db.get(), rows, cols);
    CHECK(dz.host() == z);
  }
  cpu.multiply(y.data(), y.data(), x.data(), n);
  gpu.multiply(dy.get(), dy.get(), dx.get(), n);
  CHECK(dy.host() == y);
  cpu.scale(y.data(), T(1.5), n);
  gpu.scale(dy.get(), T(1.5), n);
  CHECK(dy.host() == y);
  cpu.scale_rows(y.data(), s.data(), rows, cols);
  gpu.scale_rows(dy.get(), ds.get(), rows, cols);
  CHECK(dy.host() == y);

  // Column sums in double: bias_backward accumulates.
  std::vector<T> gb = random_values<T>(std::size_t(cols), 35);
  DeviceCopy<T> dgb(gpu, gb);
  cpu.bias_backward(gb.data(), x.data(), rows, cols);
  gpu.bias_backward(dgb.get(), dx.get(), rows, cols);
  CHECK(rel_error(dgb.host(), gb) < vitiq_test::op_tolerance<T>());

  const double ss_cpu = cpu.sum_squares(x.data(), n), ss_gpu = gpu.sum_squares(dx.get(), n);
  CHECK(std::abs(ss_gpu - ss_cpu) <= 1e-12 * ss_cpu);
  CHECK(gpu.all_finite(dx.get(), n));
  std::vector<T> bad = x;
  bad[n - 3] = std::numeric_limits<T>::infinity();
  DeviceCopy<T> dbad(gpu, bad);
  CHECK_FALSE(gpu.all_finite(dbad.get(), n));
  bad[n - 3] = std::numeric_limits<T>::quiet_NaN();
  DeviceCopy<T> dnan(gpu, bad);
  CHECK_FALSE(gpu.all_finite(dnan.get(), n));

  // Dropout masks: identical bit for bit.
  for (const double p : {0.1, 0.5}) {
    std::vector<T> m(n);
    auto dm = gpu.allocate(n);
    cpu.dropout_mask(m.data(), n, T(p), 0xABCDEFull, 17);
    gpu.dropout_mask(dm.data(), n, T(p), 0xABCDEFull, 17);
    std::vector<T> hm(n);
    gpu.to_host(hm.data(), dm.data(), n);
    CHECK(hm == m);
  }

  // GELU (erf and exp of the device math library: a few ulps).
  std::vector<T> g(n), dg(n);
  const auto xs = random_values<T>(n, 36, -5.0, 5.0);
  DeviceCopy<T> dxs(gpu, xs), dgo(gpu, g), dgi(gpu, x);
  cpu.gelu_forward(g.data(), xs.data(), n);
  gpu.gelu_forward(dgo.get(), dxs.get(), n);
  CHECK(rel_error(dgo.host(), g) < vitiq_test::op_tolerance<T>());
  cpu.gelu_backward(dg.data(), x.data(), xs.data(), n);
  gpu.gelu_backward(dgi.get(), dgi.get(), dxs.get(), n);  // in place: dx aliases dy
  CHECK(rel_error(dgi.host(), dg) < vitiq_test::op_tolerance<T>());
}

TEMPLATE_TEST_CASE("cuda: LayerNorm forward and backward", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  for (const Index cols : {Index(24), Index(128), Index(3840)}) {
    const Index rows = 300;
    const std::size_t n = std::size_t(rows * cols);
    const auto x = random_values<T>(n, 41, -3.0, 5.0);
    const auto w = random_values<T>(std::size_t(cols), 42, 0.5, 1.5);
    const auto b = random_values<T>(std::size_t(cols), 43);
    const auto dy = random_values<T>(n, 44);
    const std::size_t R = static_cast<std::size_t>(rows);
    std::vector<T> y(n), mean(R), rstd(R), dx(n);
    std::vector<T> dw = random_values<T>(std::size_t(cols), 45), db = random_values<T>(std::size_t(cols), 46);
    DeviceCopy<T> gx(gpu, x), gw(gpu, w), gb(gpu, b), gdy(gpu, dy), gy(gpu, y), gm(gpu, mean), gr(gpu, rstd),
        gdx(gpu, dx), gdw(gpu, dw), gdb(gpu, db);
    cpu.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, cols);
    gpu.layernorm_forward(gy.get(), gm.get(), gr.get(), gx.get(), gw.get(), gb.get(), rows, cols);
    INFO("cols " << cols);
    CHECK(rel_error(gy.host(), y) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gm.host(), mean) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gr.host(), rstd) < vitiq_test::op_tolerance<T>());
    cpu.layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), w.data(),
                           rows, cols);
    gpu.layernorm_backward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gm.get(), gr.get(), gw.get(), rows,
                           cols);
    CHECK(rel_error(gdx.host(), dx) < 10 * vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gdw.host(), dw) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gdb.host(), db) < vitiq_test::op_tolerance<T>());
    // accumulate_dx: dx += the gradient (dx already holds one gradient: the result is twice it)
    cpu.layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), w.data(),
                           rows, cols, true);
    gpu.layernorm_backward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gm.get(), gr.get(), gw.get(), rows,
                           cols, true);
    CHECK(rel_error(gdx.host(), dx) < 10 * vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gdw.host(), dw) < vitiq_test::op_tolerance<T>());
    // No affine part (the folded patch LayerNorm): in place to xhat, then the backward from xhat.
    std::vector<T> xh = x;
    DeviceCopy<T> gxh(gpu, xh);
    cpu.layernorm_forward(xh.data(), mean.data(), rstd.data(), xh.data(), nullptr, nullptr, rows, cols);
    gpu.layernorm_forward(gxh.get(), gm.get(), gr.get(), gxh.get(), nullptr, nullptr, rows, cols);
    CHECK(rel_error(gxh.host(), xh) < vitiq_test::op_tolerance<T>());
    cpu.layernorm_backward(dx.data(), nullptr, nullptr, dy.data(), xh.data(), nullptr, rstd.data(), nullptr, rows, cols);
    gpu.layernorm_backward(gdx.get(), nullptr, nullptr, gdy.get(), gxh.get(), nullptr, gr.get(), nullptr, rows, cols);
    CHECK(rel_error(gdx.host(), dx) < 10 * vitiq_test::op_tolerance<T>());
  }
}

TEMPLATE_TEST_CASE("cuda: scale_columns and column_dots", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index rows = 300, cols = 131;
  const std::size_t n = std::size_t(rows * cols);
  auto a = random_values<T>(n, 51);
  const auto b = random_values<T>(n, 52);
  const auto s = random_values<T>(std::size_t(cols), 53);
  std::vector<T> dots = random_values<T>(std::size_t(cols), 54);
  DeviceCopy<T> ga(gpu, a), gb(gpu, b), gs(gpu, s), gdots(gpu, dots);
  cpu.column_dots(dots.data(), a.data(), b.data(), rows, cols);
  gpu.column_dots(gdots.get(), ga.get(), gb.get(), rows, cols);
  CHECK(rel_error(gdots.host(), dots) < vitiq_test::op_tolerance<T>());
  cpu.scale_columns(a.data(), a.data(), s.data(), rows, cols);  // in place
  gpu.scale_columns(ga.get(), ga.get(), gs.get(), rows, cols);
  CHECK(ga.host() == a);
}

TEMPLATE_TEST_CASE("cuda: SPT gather and scatter, token embedding, pooling", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 3, C = 3, S = 16, P = 4, n = (S / P) * (S / P), D = 24, N = n + 1;
  const auto images = random_values<T>(std::size_t(B * C * S * S), 51);
  DeviceCopy<T> dimg(gpu, images);
  for (const auto v : {vitiq::SptVariant::axial, vitiq::SptVariant::diagonal, vitiq::SptVariant::none}) {
    const Index PD = vitiq::spt_copies(v) * C * P * P;
    std::vector<T> patches(std::size_t(B * n * PD)), back(images.size());
    auto dpatches = gpu.allocate(patches.size());
    cpu.spt_forward(patches.data(), images.data(), B, C, S, S, P, v);
    gpu.spt_forward(dpatches.data(), dimg.get(), B, C, S, S, P, v);
    std::vector<T> hp(patches.size());
    gpu.to_host(hp.data(), dpatches.data(), hp.size());
    CHECK(hp == patches);  // a gather: exact
    const auto grad = random_values<T>(patches.size(), 52);
    DeviceCopy<T> dgrad(gpu, grad);
    auto dback = gpu.allocate(back.size());
    gpu.fill(dback.data(), T(7), back.size());  // assigned: the old values must not survive
    cpu.spt_backward(back.data(), grad.data(), B, C, S, S, P, v);
    gpu.spt_backward(dback.data(), dgrad.get(), B, C, S, S, P, v);
    std::vector<T> hb(back.size());
    gpu.to_host(hb.data(), dback.data(), hb.size());
    CHECK(rel_error(hb, back) < vitiq_test::op_tolerance<T>());
  }

  const auto tokens = random_values<T>(std::size_t(B * n * D), 53);
  const auto cls = random_values<T>(std::size_t(D), 54);
  const auto pos = random_values<T>(std::size_t(N * D), 55);
  std::vector<T> x(std::size_t(B * N * D));
  DeviceCopy<T> dt(gpu, tokens), dc(gpu, cls), dp(gpu, pos), dx(gpu, x);
  cpu.embed_forward(x.data(), tokens.data(), cls.data(), pos.data(), B, N, D);
  gpu.embed_forward(dx.get(), dt.get(), dc.get(), dp.get(), B, N, D);
  CHECK(dx.host() == x);
  const auto gx = random_values<T>(x.size(), 56);
  std::vector<T> gtok(tokens.size()), gcls = random_values<T>(cls.size(), 57), gpos = random_values<T>(pos.size(), 58);
  DeviceCopy<T> dgx(gpu, gx), dgtok(gpu, gtok), dgcls(gpu, gcls), dgpos(gpu, gpos);
  cpu.embed_backward(gtok.data(), gcls.data(), gpos.data(), gx.data(), B, N, D);
  gpu.embed_backward(dgtok.get(), dgcls.get(), dgpos.get(), dgx.get(), B, N, D);
  CHECK(dgtok.host() == gtok);
  CHECK(rel_error(dgcls.host(), gcls) < vitiq_test::op_tolerance<T>());
  CHECK(rel_error(dgpos.host(), gpos) < vitiq_test::op_tolerance<T>());

  for (const auto pool : {vitiq::Pool::cls, vitiq::Pool::mean}) {
    std::vector<T> out(std::size_t(B * D)), dxo(x.size());
    DeviceCopy<T> dout(gpu, out), ddx(gpu, random_values<T>(x.size(), 59));
    cpu.pool_forward(out.data(), x.data(), pool, B, N, D);
    gpu.pool_forward(dout.get(), dx.get(), pool, B, N, D);
    CHECK(rel_error(dout.host(), out) < vitiq_test::op_tolerance<T>());
    const auto g = random_values<T>(out.size(), 60);
    DeviceCopy<T> dg(gpu, g);
    cpu.pool_backward(dxo.data(), g.data(), pool, B, N, D);
    gpu.pool_backward(ddx.get(), dg.get(), pool, B, N, D);
    CHECK(ddx.host() == dxo);
  }
}

TEMPLATE_TEST_CASE("cuda: attention softmax with temperature, three modes, forward and backward", "[cuda][device]",
                   float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 2, h = 3;
  for (const Index N : {Index(17), Index(65), Index(257)})
    for (const auto mode : {vitiq::TemperatureMode::shared_log, vitiq::TemperatureMode::per_head,
                            vitiq::TemperatureMode::fixed})
      for (const bool mask : {true, false}) {
        const std::size_t n = std::size_t(B * h * N * N);
        const auto S = random_values<T>(n, 61, -4.0, 4.0);
        const auto dA = random_values<T>(n, 62);
        const std::vector<T> param = mode == vitiq::TemperatureMode::shared_log ? std::vector<T>{T(-0.7)}
                                                                                : std::vector<T>{T(0.3), T(0.5), T(0.9)};
        const T fixed = T(0.35);
        std::vector<T> A(n), dS(n), dparam = {T(0.25), T(-0.5), T(1)};
        DeviceCopy<T> gS(gpu, S), gdA(gpu, dA), gparam(gpu, param), gA(gpu, A), gdS(gpu, dS), gdparam(gpu, dparam);
        cpu.attention_softmax_forward(A.data(), S.data(), param.data(), mode, fixed, mask, B, h, N);
        gpu.attention_softmax_forward(gA.get(), gS.get(), gparam.get(), mode, fixed, mask, B, h, N);
        INFO("N " << N << " mode " << int(mode) << " mask " << mask);
        const auto hA = gA.host();
        CHECK(rel_error(hA, A) < vitiq_test::op_tolerance<T>());
        if (mask)
          for (Index r = 0; r < B * h * N; ++r) CHECK(hA[std::size_t(r * N + r % N)] == T(0));
        cpu.attention_softmax_backward(dS.data(), dparam.data(), dA.data(), A.data(), S.data(), param.data(), mode, fixed,
                                       B, h, N);
        gpu.attention_softmax_backward(gdS.get(), gdparam.get(), gdA.get(), gA.get(), gS.get(), gparam.get(), mode,
                                       fixed, B, h, N);
        CHECK(rel_error(gdS.host(), dS) < 10 * vitiq_test::op_tolerance<T>());
        CHECK(rel_error(gdparam.host(), dparam) < 10 * vitiq_test::op_tolerance<T>());
      }
}

TEMPLATE_TEST_CASE("cuda: losses and the fused Adam/AdamW update", "[cuda][device]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 300, K = 5;
  const auto logits = random_values<T>(std::size_t(B * K), 71, -3.0, 3.0);
  std::vector<double> votes(static_cast<std::size_t>(B));
  vitiq::Rng rng(72);
  for (auto& v : votes) v = double(1 + rng.below(5));
  const auto targets = vitiq::make_targets<T>(votes, int(K));
  std::vector<T> vote_t(votes.begin(), votes.end());
  DeviceCopy<T> gz(gpu, logits), gt(gpu, targets), gv(gpu, vote_t);
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<T> loss(static_cast<std::size_t>(B)), probs(static_cast<std::size_t>(B * K)),
        dl(static_cast<std::size_t>(B * K));
    DeviceCopy<T> gl(gpu, loss), gp(gpu, probs), gdl(gpu, dl);
    if (kind == 0) {
      cpu.softmax_cross_entropy(loss.data(), probs.data(), dl.data(), logits.data(), targets.data(), T(1) / T(B), B, K);
      gpu.softmax_cross_entropy(gl.get(), gp.get(), gdl.get(), gz.get(), gt.get(), T(1) / T(B), B, K);
    } else {
      cpu.expected_vote_mse(loss.data(), probs.data(), dl.data(), logits.data(), vote_t.data(), T(1) / T(B), B, K);
      gpu.expected_vote_mse(gl.get(), gp.get(), gdl.get(), gz.get(), gv.get(), T(1) / T(B), B, K);
    }
    INFO("loss kind " << kind);
    CHECK(rel_error(gl.host(), loss) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gp.host(), probs) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gdl.host(), dl) < 10 * vitiq_test::op_tolerance<T>());
  }

  const std::size_t n = 5000;
  for (const bool decoupled : {true, false}) {
    auto p = random_values<T>(n, 73), m = random_values<T>(n, 74, 0.0, 0.1), v = random_values<T>(n, 75, 0.0, 0.01);
    const auto g = random_values<T>(n, 76);
    DeviceCopy<T> gp(gpu, p), gm(gpu, m), gvv(gpu, v), gg(gpu, g);
    for (int t = 1; t <= 10; ++t) {
      const vitiq::AdamStep<T> s{T(1e-3), T(0.9), T(0.999), T(1e-8), T(0.05), decoupled,
                                 T(1 - std::pow(0.9, t)), T(1 - std::pow(0.999, t))};
      cpu.adam_update(p.data(), g.data(), m.data(), v.data(), n, s);
      gpu.adam_update(gp.get(), gg.get(), gm.get(), gvv.get(), n, s);
    }
    INFO("decoupled " << decoupled);
    CHECK(rel_error(gp.host(), p) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gm.host(), m) < vitiq_test::op_tolerance<T>());
    CHECK(rel_error(gvv.host(), v) < vitiq_test::op_tolerance<T>());
  }
}
