// tests/test_attention_fused.cpp -- the CPU backend's fused attention (attention_forward,
// attention_backward) against the unfused composition it replaces in the model: gemm_batched for
// the scores, attention_softmax_forward, gemm_batched for the output; backward two gemm_batched,
// attention_softmax_backward, two gemm_batched. Float and double, every temperature mode with and
// without the LSA mask, both GEMM engines, one and two threads, block counts B*h that are not a
// multiple of the thread count; and a whole model whose backward takes the fused path against the
// same model forced onto the unfused one (kept attention gradients). The class-token ops
// (attention_cls_forward/backward) against the class rows of the fused ones, and a model's
// class-token-only last block against its full last block (kept attention maps).
#include <catch2/catch.hpp>

#include <cmath>
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

/// The fused ops are the unfused composition regrouped by (b, j) block: the same single-threaded
/// GEMMs; the softmax exp vectorised over whole rows and tau applied as a GEMM alpha in the
/// backward, so they agree to a few ulp (here at most 7e-7 in float), not to the bit.
template <class T>
constexpr double tol() { return std::is_same_v<T, float> ? 4e-6 : 1e-13; }

/// Everything one call of the forward and the backward produces.
template <class T>
struct Result {
  std::vector<T> out, A, S, d_qkv, dparam;
};

/// A 64-byte aligned backend buffer of n copies of `value` (the model's tensors are 64-byte aligned;
/// Eigen's vectorised row reductions start their aligned packets where the row's address says, so
/// the bits of a softmax row depend on its alignment).
template <class T>
vitiq::HostBuffer<T> filled(const vitiq::CpuBackend<T>& be, std::size_t n, T value) {
  auto buf = be.allocate(n);
  be.fill(buf.data(), value, n);
  return buf;
}

template <class T>
std::vector<T> to_vec(const vitiq::HostBuffer<T>& b) {
  return std::vector<T>(b.data(), b.data() + b.size());
}

template <class T>
Result<T> run_unfused(const vitiq::CpuBackend<T>& be, const std::vector<T>& qkv, const std::vector<T>& d_out,
                      const T* param, vitiq::TemperatureMode mode, T fixed_tau, bool mask, Index B, Index h, Index N,
                      Index d) {
  const Index I = h * d;
  const std::size_t bhnn = std::size_t(B * h * N * N);
  auto out = filled(be, std::size_t(B * N * I), T(-3)), A = filled(be, bhnn, T(-3)), S = filled(be, bhnn, T(-3));
  auto d_qkv = filled(be, std::size_t(B * N * 3 * I), T(-3)), dA = filled(be, bhnn, T(0)), dS = filled(be, bhnn, T(0));
  std::vector<T> dparam = {T(0.125), T(-0.25), T(0.5), T(1)};
  be.gemm_batched(false, true, N, N, d, T(1), qkv.data(), 3 * I, N * 3 * I, d, qkv.data() + I, 3 * I, N * 3 * I, d,
                  T(0), S.data(), N, h * N * N, N * N, B, h);
  be.attention_softmax_forward(A.data(), S.data(), param, mode, fixed_tau, mask, B, h, N);
  be.gemm_batched(false, false, N, d, N, T(1), A.data(), N, h * N * N, N * N, qkv.data() + 2 * I, 3 * I, N * 3 * I,
                  d, T(0), out.data(), I, N * I, d, B, h);
  be.gemm_batched(false, true, N, N, d, T(1), d_out.data(), I, N * I, d, qkv.data() + 2 * I, 3 * I, N * 3 * I, d,
                  T(0), dA.data(), N, h * N * N, N * N, B, h);
  be.gemm_batched(true, false, N, d, N, T(1), A.data(), N, h * N * N, N * N, d_out.data(), I, N * I, d, T(0),
                  d_qkv.data() + 2 * I, 3 * I, N * 3 * I, d, B, h);
  be.attention_softmax_backward(dS.data(), dparam.data(), dA.data(), A.data(), S.data(), param, mode, fixed_tau,
                                B, h, N);
  be.gemm_batched(false, false, N, d, N, T(1), dS.data(), N, h * N * N, N * N, qkv.data() + I, 3 * I, N * 3 * I, d,
                  T(0), d_qkv.data(), 3 * I, N * 3 * I, d, B, h);
  be.gemm_batched(true, false, N, d, N, T(1), dS.data(), N, h * N * N, N * N, qkv.data(), 3 * I, N * 3 * I, d, T(0),
                  d_qkv.data() + I, 3 * I, N * 3 * I, d, B, h);
  return {to_vec(out), to_vec(A), to_vec(S), to_vec(d_qkv), dparam};
}

template <class T>
Result<T> run_fused(const vitiq::CpuBackend<T>& be, const std::vector<T>& qkv, const std::vector<T>& d_out,
                    const T* param, vitiq::TemperatureMode mode, T fixed_tau, bool mask, Index B, Index h, Index N,
                    Index d) {
  const Index I = h * d;
  const std::size_t bhnn = std::size_t(B * h * N * N);
  // Outputs start from other values than the unfused run's: every element must be written.
  auto out = filled(be, std::size_t(B * N * I), T(7)), A = filled(be, bhnn, T(7)), S = filled(be, bhnn, T(7));
  auto d_qkv = filled(be, std::size_t(B * N * 3 * I), T(7));
  std::vector<T> dparam = {T(0.125), T(-0.25), T(0.5), T(1)};  // accumulated into, as the unfused run's
  be.attention_forward(out.data(), A.data(), S.data(), qkv.data(), param, mode, fixed_tau, mask, B, h, N, d);
  be.attention_backward(d_qkv.data(), dparam.data(), d_out.data(), qkv.data(), A.data(), S.data(), param, mode,
                        fixed_tau, B, h, N, d);
  return {to_vec(out), to_vec(A), to_vec(S), to_vec(d_qkv), dparam};
}

}  // namespace

TEMPLATE_TEST_CASE("fused attention equals the unfused composition of batched GEMMs and softmax",
                   "[cpu_kernels][attention]", float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  struct Shape { Index B, h, N, d; };
  // 9 and 15 blocks (odd: two threads get unequal shares), a few tokens and the aio shape
  // (N = 65, d = 32), and one block alone.
  const Shape shapes[] = {{3, 3, 17, 8}, {5, 3, 65, 32}, {1, 1, 9, 4}};
  struct Case { vitiq::TemperatureMode mode; bool mask; };
  const Case cases[] = {{vitiq::TemperatureMode::shared_log, true}, {vitiq::TemperatureMode::shared_log, false},
                        {vitiq::TemperatureMode::per_head, true},   {vitiq::TemperatureMode::per_head, false},
                        {vitiq::TemperatureMode::fixed, true},      {vitiq::TemperatureMode::fixed, false}};
  for (const Shape& sh : shapes) {
    const Index B = sh.B, h = sh.h, N = sh.N, d = sh.d, I = h * d;
    const auto qkv = random_vec<T>(std::size_t(B * N * 3 * I), 31, 0.8);
    const auto d_out = random_vec<T>(std::size_t(B * N * I), 32);
    const std::vector<T> shared{T(std::log(0.3))}, per_head{T(0.2), T(0.35), T(0.5)};
    for (const vitiq::GemmEngine engine : engines()) {
      Engine en(engine);
      for (const Case& c : cases) {
        const T* param = c.mode == vitiq::TemperatureMode::shared_log ? shared.data()
                         : c.mode == vitiq::TemperatureMode::per_head ? per_head.data()
                                                                      : nullptr;
        const T fixed_tau = T(1.0 / std::sqrt(double(d)));
        Result<T> fused[2];
        for (int threads : {1, 2}) {
          Threads th(threads);
          INFO("B " << B << " h " << h << " N " << N << " d " << d << " engine " << int(engine) << " mode "
                    << int(c.mode) << " mask " << c.mask << " threads " << threads);
          const Result<T> ref = run_unfused(be, qkv, d_out, param, c.mode, fixed_tau, c.mask, B, h, N, d);
          const Result<T> got = run_fused(be, qkv, d_out, param, c.mode, fixed_tau, c.mask, B, h, N, d);
          CHECK(max_rel_diff(got.S, ref.S) <= tol<T>());
          CHECK(max_rel_diff(got.A, ref.A) <= tol<T>());
          CHECK(max_rel_diff(got.out, ref.out) <= tol<T>());
          CHECK(max_rel_diff(got.d_qkv, ref.d_qkv) <= tol<T>());
          CHECK(max_rel_diff(got.dparam, ref.dparam) <= tol<T>());
          if (c.mode == vitiq::TemperatureMode::fixed) CHECK(got.dparam == ref.dparam);  // unwritten
          if (c.mask) {
            int nonzero = 0;
            for (Index r = 0; r < B * h * N; ++r) nonzero += got.A[std::size_t(r * N + r % N)] != T(0);
            CHECK(nonzero == 0);  // the LSA diagonal is exactly 0
          }
          fused[threads - 1] = got;
        }
        // Each block is computed by one thread alone and the temperature sums go in block order:
        // the thread count changes nothing.
        CHECK(fused[0].out == fused[1].out);
        CHECK(fused[0].A == fused[1].A);
        CHECK(fused[0].d_qkv == fused[1].d_qkv);
        CHECK(fused[0].dparam == fused[1].dparam);
      }
    }
  }
}

namespace {

constexpr vitiq::Config fused_probe{.image_size = 12, .patch_size = 4, .channels = 3, .dim = 12, .depth = 2,
                                    .heads = 3, .dim_head = 8, .mlp_dim = 20, .num_classes = 5,
                                    .spt = vitiq::SptVariant::axial, .lsa = true,
                                    .temperature = vitiq::Temperature::per_head, .pool = vitiq::Pool::mean};

/// Every parameter gradient, then the image gradient, of one forward/backward of `model` on fixed
/// images and logit gradients; the logits into `logits`.
template <vitiq::Config C, class T>
std::vector<T> model_gradients(vitiq::ViT<C, vitiq::CpuBackend<T>>& model, std::vector<T>& logits, Index B) {
  const auto images = random_vec<T>(std::size_t(B * C.channels * C.image_size * C.image_size), 41);
  const auto dlogits = random_vec<T>(std::size_t(B * C.num_classes), 42);
  const auto out = model.forward(images, B);
  logits.assign(out.begin(), out.end());
  model.zero_grad();
  std::vector<T> dimages(images.size());
  model.backward_device(dlogits.data(), dimages.data());
  auto g = model.gradients_to_host();
  g.insert(g.end(), dimages.begin(), dimages.end());
  return g;
}

}  // namespace

TEMPLATE_TEST_CASE("a model's fused attention path gives the gradients of the unfused path", "[model][attention]",
                   float, double) {
  using T = TestType;
  const Index B = 3;  // 3 * 3 heads = 9 blocks
  for (int threads : {1, 2}) {
    Threads th(threads);
    INFO("threads " << threads);
    vitiq::ViT<fused_probe, vitiq::CpuBackend<T>> model({}, 5);
    model.set_training(true);  // training mode without attention dropout: the fused path
    std::vector<T> logits_fused, logits_unfused;
    const auto g_fused = model_gradients(model, logits_fused, B);
    model.keep_attention_gradients(true);  // the kept dA needs the unfused backward
    const auto g_unfused = model_gradients(model, logits_unfused, B);
    REQUIRE(model.attention_gradient(0) != nullptr);
    CHECK(logits_fused == logits_unfused);  // the forward is the same in both
    CHECK(max_rel_diff(g_fused, g_unfused) <= tol<T>());
    // The temperatures (per head, first in each block's parameters) take the same gradient.
    for (Index l = 0; l < fused_probe.depth; ++l)
      for (Index j = 0; j < fused_probe.heads; ++j) {
        const std::size_t at = model.offsets.blocks[std::size_t(l)].temperature + std::size_t(j);
        CHECK(std::abs(double(g_fused[at]) - double(g_unfused[at])) <= 1e-5 * (std::abs(double(g_unfused[at])) + 1e-3));
      }
  }
}

TEMPLATE_TEST_CASE("attention_cls ops equal the class rows of the fused attention", "[cpu_kernels][attention]", float,
                   double) {
  using T = TestType;
  vitiq::CpuBackend<T> be;
  struct Shape { Index B, h, N, d; };
  const Shape shapes[] = {{3, 3, 17, 8}, {5, 4, 65, 32}, {1, 1, 9, 4}};
  for (const Shape& sh : shapes) {
    const Index B = sh.B, h = sh.h, N = sh.N, d = sh.d, I = h * d;
    const auto qkv = random_vec<T>(std::size_t(B * N * 3 * I), 33, 0.8);
    const auto d_cls = random_vec<T>(std::size_t(B * I), 34);
    std::vector<T> d_full(std::size_t(B * N * I), T(0));  // the class rows' gradient, zero elsewhere
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < I; ++c) d_full[std::size_t(b * N * I + c)] = d_cls[std::size_t(b * I + c)];
    const std::vector<T> shared{T(std::log(0.3))}, per_head{T(0.2), T(0.35), T(0.5), T(0.65)};
    for (const vitiq::GemmEngine engine : engines()) {
      Engine en(engine);
      for (const auto mode :
           {vitiq::TemperatureMode::shared_log, vitiq::TemperatureMode::per_head, vitiq::TemperatureMode::fixed})
        for (const bool mask : {true, false}) {
          const T* param = mode == vitiq::TemperatureMode::shared_log ? shared.data()
                           : mode == vitiq::TemperatureMode::per_head ? per_head.data()
                                                                      : nullptr;
          const T fixed_tau = T(1.0 / std::sqrt(double(d)));
          std::vector<T> cls_out[2], cls_dqkv[2], cls_dparam[2];
          for (int threads : {1, 2}) {
            Threads th(threads);
            INFO("B " << B << " h " << h << " N " << N << " d " << d << " engine " << int(engine) << " mode "
                      << int(mode) << " mask " << mask << " threads " << threads);
            const Result<T> full = run_fused(be, qkv, d_full, param, mode, fixed_tau, mask, B, h, N, d);
            auto out = filled(be, std::size_t(B * I), T(7)), A = filled(be, std::size_t(B * h * N), T(7)),
                 S = filled(be, std::size_t(B * h * N), T(7)), d_qkv = filled(be, std::size_t(B * N * 3 * I), T(7));
            std::vector<T> dparam = {T(0.125), T(-0.25), T(0.5), T(1)};
            be.attention_cls_forward(out.data(), A.data(), S.data(), qkv.data(), param, mode, fixed_tau, mask, B, h,
                                     N, d);
            be.attention_cls_backward(d_qkv.data(), dparam.data(), d_cls.data(), qkv.data(), A.data(), S.data(),
                                      param, mode, fixed_tau, B, h, N, d);
            // The class rows of the full op's outputs.
            std::vector<T> S_row, A_row, out_row, S_got = to_vec(S), A_got = to_vec(A), out_got = to_vec(out);
            for (Index bj = 0; bj < B * h; ++bj)
              for (Index c = 0; c < N; ++c) {
                S_row.push_back(full.S[std::size_t(bj * N * N + c)]);
                A_row.push_back(full.A[std::size_t(bj * N * N + c)]);
              }
            for (Index b = 0; b < B; ++b)
              for (Index c = 0; c < I; ++c) out_row.push_back(full.out[std::size_t(b * N * I + c)]);
            CHECK(max_rel_diff(S_got, S_row) <= tol<T>());
            CHECK(max_rel_diff(A_got, A_row) <= tol<T>());
            CHECK(max_rel_diff(out_got, out_row) <= tol<T>());
            if (mask) {
              int nonzero = 0;
              for (Index bj = 0; bj < B * h; ++bj) nonzero += A_got[std::size_t(bj * N)] != T(0);
              CHECK(nonzero == 0);  // the class token's own key is masked exactly
            }
            // d_qkv: every k and v column and the class rows' q columns as the full backward; the
            // other rows' q columns unwritten (still 7).
            std::vector<T> got, want;
            int untouched = 0;
            for (Index r = 0; r < B * N; ++r)
              for (Index c = 0; c < 3 * I; ++c) {
                const std::size_t at = std::size_t(r * 3 * I + c);
                if (c < I && r % N != 0) {
                  untouched += d_qkv.data()[at] == T(7);
                  continue;
                }
                got.push_back(d_qkv.data()[at]);
                want.push_back(full.d_qkv[at]);
              }
            CHECK(untouched == (B * N - B) * I);
            CHECK(max_rel_diff(got, want) <= tol<T>());
            CHECK(max_rel_diff(dparam, full.dparam) <= tol<T>());
            cls_out[threads - 1] = out_got;
            cls_dqkv[threads - 1] = to_vec(d_qkv);
            cls_dparam[threads - 1] = dparam;
          }
          CHECK(cls_out[0] == cls_out[1]);  // one thread per block, sums in block order
          CHECK(cls_dqkv[0] == cls_dqkv[1]);
          CHECK(cls_dparam[0] == cls_dparam[1]);
        }
    }
  }
}

namespace {

/// fused_probe with class-token pooling.
constexpr vitiq::Config cls_probe = [] {
  vitiq::Config c = fused_probe;
  c.pool = vitiq::Pool::cls;
  return c;
}();

template <vitiq::Config C, class T>
void check_class_token_last_block(Index B) {
  for (int threads : {1, 2}) {
    Threads th(threads);
    INFO("threads " << threads << " B " << B);
    vitiq::ViT<C, vitiq::CpuBackend<T>> model({}, 6);
    model.set_training(true);
    REQUIRE(model.class_token_last_block());
    std::vector<T> logits_cls, logits_full;
    const auto g_cls = model_gradients(model, logits_cls, B);
    CHECK_THROWS_AS(model.attention(C.depth - 1), std::logic_error);
    CHECK_NOTHROW(model.attention(C.depth - 2));
    model.keep_attention_maps(true);
    REQUIRE_FALSE(model.class_token_last_block());
    const auto g_full = model_gradients(model, logits_full, B);
    CHECK_NOTHROW(model.attention(C.depth - 1));
    CHECK(max_rel_diff(logits_cls, logits_full) <= tol<T>());
    CHECK(max_rel_diff(g_cls, g_full) <= 10 * tol<T>());
    double norm = 0;  // the last block's q weights and temperature take a gradient: a real check
    for (Index i = 0; i < C.inner_dim() * C.dim; ++i) norm += std::abs(double(g_cls[model.offsets.blocks[C.depth - 1].qkv_w + std::size_t(i)]));
    CHECK(norm > 0);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("a model's class-token-only last block gives the logits and gradients of the full block",
                   "[model][attention]", float, double) {
  using T = TestType;
  check_class_token_last_block<cls_probe, T>(3);  // B*n = 27 >= D: patch LayerNorm folded
  check_class_token_last_block<cls_probe, T>(1);  // 9 < 12: not folded
  check_class_token_last_block<vitiq::presets::tiny, T>(2);
  // Masks are drawn for every token: regularised training and mean pooling keep the full block.
  vitiq::ViT<cls_probe, vitiq::CpuBackend<T>> model({}, 6);
  model.set_training(true);
  model.set_regularization({.dropout = 0.1});
  CHECK_FALSE(model.class_token_last_block());
  model.set_regularization({.stochastic_depth = 0.1});
  CHECK_FALSE(model.class_token_last_block());
  model.set_regularization({.attn_dropout = 0.1});
  CHECK_FALSE(model.class_token_last_block());
  model.set_regularization({.emb_dropout = 0.1});
  CHECK(model.class_token_last_block());  // before the blocks: every token is masked alike anyway
  model.set_training(false);
  model.set_regularization({.dropout = 0.1});
  CHECK(model.class_token_last_block());  // evaluation applies no masks
  vitiq::ViT<fused_probe, vitiq::CpuBackend<T>> mean_pool({}, 6);
  CHECK_FALSE(mean_pool.class_token_last_block());
}
