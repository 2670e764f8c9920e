// tests/cuda/test_cuda_model.cu -- whole-model agreement of CudaBackend with the CPU reference:
// the same ViT (same seed, hence the same initial weights) and the same inputs on
// ViT<C, CpuBackend<T>> and ViT<C, CudaBackend<T>>: logits, loss, attention probabilities of every
// block, every parameter gradient, the input gradient and 10 AdamW steps; with dropout and
// stochastic depth on too (the masks are the same counter-based hash); and a short Trainer run.
//
// float with TF32 off, tolerances of the specification: logits, attention and loss 1e-5
// relative, every gradient 1e-4 (the scalar temperature gradients 1e-3, as in the golden test),
// 10-step losses 1e-4, final weights 1e-3. double: near machine precision. Each case prints a line
// "cuda agreement ..." with the measured errors (benchmarks/gpu_check.sh collects them).
#include "support/catch.hpp"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "support.hpp"
#include "vitiq/train/trainer.hpp"

using vitiq_test::rel_error;

namespace {

struct Tolerances {
  double logits, loss, attention, grad, temperature_grad, train_loss, final_weights;
};
constexpr Tolerances float_tol{1e-5, 1e-5, 1e-5, 1e-4, 1e-3, 1e-4, 1e-3};
constexpr Tolerances double_tol{1e-12, 1e-12, 1e-12, 1e-9, 1e-9, 1e-10, 1e-8};

template <vitiq::Config C, class T>
// keep_maps false: the class-token-only last block where the model uses it (cls pool, no masks).
void check_agreement(const std::string& name, const Tolerances& tol, bool regularize, bool keep_maps = true) {
  using Cpu = vitiq::CpuBackend<T>;
  using Gpu = vitiq::CudaBackend<T>;
  constexpr int K = C.num_classes;
  const int B = 6;
  vitiq::ViT<C, Cpu> mc({}, 5);
  vitiq::ViT<C, Gpu> mg({}, 5);
  mc.keep_attention_maps(keep_maps);
  mg.keep_attention_maps(keep_maps);
  REQUIRE(mc.parameters_to_host() == mg.parameters_to_host());  // initialised on the host alike

  const std::size_t per_image = std::size_t(C.channels) * C.image_size * C.image_size;
  const auto images = vitiq_test::random_values<T>(per_image * B, 81, -2.0, 2.0);
  const std::vector<double> votes{1, 2, 3, 4, 5, 3};
  const auto targets = vitiq::make_targets<T>(votes, K);
  auto dev_images = mg.backend().allocate(images.size());
  auto dev_targets = mg.backend().allocate(targets.size());
  auto dev_dimages = mg.backend().allocate(images.size());
  mg.backend().to_device(dev_images.data(), images.data(), images.size());
  mg.backend().to_device(dev_targets.data(), targets.data(), targets.size());
  std::vector<T> dimages_cpu(images.size()), dimages_gpu(images.size());

  if (regularize) {
    const vitiq::Regularization reg{.emb_dropout = 0.1, .attn_dropout = 0.1, .dropout = 0.1, .stochastic_depth = 0.2};
    mc.set_training(true);
    mg.set_training(true);
    mc.set_regularization(reg);
    mg.set_regularization(reg);
    mc.set_dropout_seed(99);
    mg.set_dropout_seed(99);
  }

  // Forward: logits, attention, loss.
  const T* zc = mc.forward_device(images.data(), B);
  const std::vector<T> logits_cpu(zc, zc + B * K);
  mg.forward_device(dev_images.data(), B);
  std::vector<T> logits_gpu(std::size_t(B * K));
  mg.backend().to_host(logits_gpu.data(), mg.logits(), logits_gpu.size());
  const double e_logits = rel_error(logits_gpu, logits_cpu);
  double e_attn = 0;
  for (int l = 0; l < C.depth; ++l) {
    if (mc.class_token_last_block() && l == C.depth - 1) continue;  // its full maps were not made
    e_attn = std::max(e_attn, rel_error(mg.attention_to_host(l), mc.attention_to_host(l)));
  }
  vitiq::Criterion<Cpu> lc;
  vitiq::Criterion<Gpu> lg;
  const double loss_cpu = lc.forward_backward(mc.backend(), zc, targets.data(), B, K);
  const double loss_gpu = lg.forward_backward(mg.backend(), mg.logits(), dev_targets.data(), B, K);
  const double e_loss = std::abs(loss_gpu - loss_cpu) / std::abs(loss_cpu);

  // Backward: every parameter gradient and the image gradient.
  mc.zero_grad();
  mg.zero_grad();
  mc.backward_device(lc.dlogits(), dimages_cpu.data());
  mg.backward_device(lg.dlogits(), dev_dimages.data());
  mg.backend().to_host(dimages_gpu.data(), dev_dimages.data(), dimages_gpu.size());
  const auto gc = mc.gradients_to_host(), gg = mg.gradients_to_host();
  double e_grad = 0, e_temp = 0;
  for (const auto& p : vitiq::param_table<C>()) {
    const std::vector<T> a(gg.begin() + long(p.offset), gg.begin() + long(p.offset + p.size));
    const std::vector<T> b(gc.begin() + long(p.offset), gc.begin() + long(p.offset + p.size));
    const double e = rel_error(a, b);
    INFO(name << ": gradient " << p.name << " relative error " << e);
    if (p.kind == vitiq::ParamKind::temperature) {
      CHECK(e < tol.temperature_grad);
      e_temp = std::max(e_temp, e);
    } else {
      CHECK(e < tol.grad);
      e_grad = std::max(e_grad, e);
    }
  }
  const double e_dimages = rel_error(dimages_gpu, dimages_cpu);

  // 10 AdamW steps on the same batch (lr 1e-3, decay 0.05 on Linear weights).
  const vitiq::AdamOptions opt{.kind = vitiq::OptimizerKind::adamw, .lr = 1e-3, .weight_decay = 0.05};
  vitiq::Adam<Cpu> ac(mc.backend(), vitiq::param_table<C>(), mc.num_params, opt);
  vitiq::Adam<Gpu> ag(mg.backend(), vitiq::param_table<C>(), mg.num_params, opt);
  double e_train = 0;
  for (int s = 0; s < 10; ++s) {
    const double l_cpu = lc.forward_backward(mc.backend(), mc.forward_device(images.data(), B), targets.data(), B, K);
    const double l_gpu = lg.forward_backward(mg.backend(), mg.forward_device(dev_images.data(), B), dev_targets.data(), B, K);
    e_train = std::max(e_train, std::abs(l_gpu - l_cpu) / std::abs(l_cpu));
    mc.zero_grad();
    mg.zero_grad();
    mc.backward_device(lc.dlogits());
    mg.backward_device(lg.dlogits());
    vitiq::clip_grad_norm(mc.backend(), mc.gradients(), mc.num_params, 1.0);
    vitiq::clip_grad_norm(mg.backend(), mg.gradients(), mg.num_params, 1.0);
    ac.step(mc.parameters(), mc.gradients());
    ag.step(mg.parameters(), mg.gradients());
  }
  const auto pc = mc.parameters_to_host(), pg = mg.parameters_to_host();
  double e_final = 0;
  for (const auto& p : vitiq::param_table<C>()) {
    const std::vector<T> a(pg.begin() + long(p.offset), pg.begin() + long(p.offset + p.size));
    const std::vector<T> b(pc.begin() + long(p.offset), pc.begin() + long(p.offset + p.size));
    e_final = std::max(e_final, rel_error(a, b));
  }

  std::printf("cuda agreement %-14s %-6s %-12s logits %.2e  loss %.2e  attention %.2e  grads %.2e  "
              "temperature %.2e  dimages %.2e  10-step losses %.2e  final weights %.2e\n",
              name.c_str(), sizeof(T) == 4 ? "float" : "double",
              regularize ? "dropout+sd" : (mc.class_token_last_block() ? "cls-last" : "plain"), e_logits, e_loss,
              e_attn, e_grad, e_temp, e_dimages, e_train, e_final);
  CHECK(e_logits < tol.logits);
  CHECK(e_loss < tol.loss);
  CHECK(e_attn < tol.attention);
  CHECK(e_dimages < tol.grad);
  CHECK(e_train < tol.train_loss);
  CHECK(e_final < tol.final_weights);
}

constexpr vitiq::Config diag_perhead{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 24, .depth = 2,
                                     .heads = 3, .dim_head = 8, .mlp_dim = 48, .num_classes = 5,
                                     .spt = vitiq::SptVariant::diagonal, .lsa = true,
                                     .temperature = vitiq::Temperature::per_head, .pool = vitiq::Pool::mean};
constexpr vitiq::Config none_shared{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 2,
                                    .heads = 2, .dim_head = 8, .mlp_dim = 32, .num_classes = 5,
                                    .spt = vitiq::SptVariant::none, .lsa = true,
                                    .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::cls};
constexpr vitiq::Config mhsa{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 1,
                             .heads = 2, .dim_head = 8, .mlp_dim = 32, .num_classes = 5,
                             .spt = vitiq::SptVariant::axial, .lsa = false,
                             .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::cls};

/// A fixed set of random images with votes, for the Trainer test.
struct RandomSource final : vitiq::BatchSource<float> {
  std::size_t n;
  std::size_t per_image;
  std::size_t size() const override { return n; }
  void fill(std::span<const std::size_t> indices, std::uint64_t, float* images, double* votes) override {
    for (std::size_t b = 0; b < indices.size(); ++b) {
      const auto img = vitiq_test::random_values<float>(per_image, 1000 + indices[b], -2.0, 2.0);
      std::copy(img.begin(), img.end(), images + b * per_image);
      votes[b] = double(1 + indices[b] % 5);
    }
  }
};

}  // namespace

TEMPLATE_TEST_CASE("cuda agreement: preset tiny (axial SPT, shared_log temperature, cls pool)", "[cuda][device][model]",
                   float, double) {
  using T = TestType;
  check_agreement<vitiq::presets::tiny, T>("tiny", sizeof(T) == 4 ? float_tol : double_tol, false);
  check_agreement<vitiq::presets::tiny, T>("tiny", sizeof(T) == 4 ? float_tol : double_tol, true);
  check_agreement<vitiq::presets::tiny, T>("tiny", sizeof(T) == 4 ? float_tol : double_tol, false, false);
}
TEMPLATE_TEST_CASE("cuda agreement: diagonal SPT, per-head temperature, mean pool", "[cuda][device][model]", float,
                   double) {
  using T = TestType;
  check_agreement<diag_perhead, T>("diag_perhead", sizeof(T) == 4 ? float_tol : double_tol, false);
}
TEMPLATE_TEST_CASE("cuda agreement: no SPT shift, shared_log temperature", "[cuda][device][model]", float, double) {
  using T = TestType;
  check_agreement<none_shared, T>("none_shared", sizeof(T) == 4 ? float_tol : double_tol, false);
  check_agreement<none_shared, T>("none_shared", sizeof(T) == 4 ? float_tol : double_tol, false, false);
}
TEMPLATE_TEST_CASE("cuda agreement: plain MHSA (fixed temperature, no mask)", "[cuda][device][model]", float, double) {
  using T = TestType;
  check_agreement<mhsa, T>("mhsa", sizeof(T) == 4 ? float_tol : double_tol, false);
  check_agreement<mhsa, T>("mhsa", sizeof(T) == 4 ? float_tol : double_tol, false, false);
}
TEST_CASE("cuda agreement: preset aio in float, with dropout and stochastic depth", "[cuda][device][model]") {
  check_agreement<vitiq::presets::aio, float>("aio", float_tol, true);
  check_agreement<vitiq::presets::aio, float>("aio", float_tol, false, false);
}

TEST_CASE("cuda: TF32 can be switched on and off", "[cuda][device]") {
  vitiq::CudaBackend<float> be(std::make_shared<vitiq::cuda::Context>(0));
  be.set_tf32(true);
  CHECK(be.context().math_mode() == vitiq::cuda::MathMode::tf32);
  // A TF32 GEMM is close to the float one, not equal to it in general.
  const std::ptrdiff_t n = 256;
  const auto A = vitiq_test::random_values<float>(std::size_t(n * n), 91);
  vitiq_test::DeviceCopy<float> dA(be, A), dC(be, std::vector<float>(std::size_t(n * n)));
  be.gemm(false, false, n, n, n, 1.f, dA.get(), n, dA.get(), n, 0.f, dC.get(), n);
  const auto c_tf32 = dC.host();
  be.set_tf32(false);
  CHECK(be.context().math_mode() == vitiq::cuda::MathMode::fp32);
  be.gemm(false, false, n, n, n, 1.f, dA.get(), n, dA.get(), n, 0.f, dC.get(), n);
  const double e = rel_error(c_tf32, dC.host());
  std::printf("cuda TF32 vs float32 GEMM (256^3): relative difference %.2e\n", e);
  CHECK(e < 1e-2);
}

TEST_CASE("cuda: the Trainer runs on the CUDA backend and follows the CPU run", "[cuda][device][model]") {
  constexpr vitiq::Config C = vitiq::presets::tiny;
  vitiq::ViT<C> mc({}, 3);
  vitiq::ViT<C, vitiq::CudaBackend<float>> mg({}, 3);
  vitiq::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.seed = 4;
  o.regularization = {.attn_dropout = 0.1, .dropout = 0.1};
  RandomSource source;
  source.n = 24;
  source.per_image = std::size_t(C.channels) * C.image_size * C.image_size;
  vitiq::Trainer<decltype(mc)> tc(mc, o);
  vitiq::Trainer<decltype(mg)> tg(mg, o);
  const auto rc = tc.fit(source, nullptr);
  const auto rg = tg.fit(source, nullptr);
  REQUIRE(rc.history.size() == 2);
  REQUIRE(rg.history.size() == 2);
  for (std::size_t e = 0; e < 2; ++e) {
    INFO("epoch " << e + 1 << " cpu loss " << rc.history[e].train_loss << " gpu loss " << rg.history[e].train_loss);
    CHECK(std::abs(rg.history[e].train_loss - rc.history[e].train_loss) < 1e-4 * std::abs(rc.history[e].train_loss));
  }
  CHECK(rel_error(mg.parameters_to_host(), mc.parameters_to_host()) < 1e-3);
}
