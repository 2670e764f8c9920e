// tests/test_model.cpp -- properties of the model and of the training pieces: attention rows sum
// to 1 and the LSA diagonal is zero in every block, a tiny model overfits 16 images, dropout is
// reproducible and thread-count independent, Adam / AdamW / clipping / schedules follow PyTorch's
// formulas, and the parameter layout matches the PyTorch names and shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <cstdio>
#include <set>
#include <type_traits>
#include <vector>

#include "vitiq/vitiq.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = T(rng.normal());
  return v;
}

}  // namespace

TEST_CASE("presets have the specification's shapes", "[config]") {
  using namespace vitiq::presets;
  STATIC_REQUIRE(tiny.num_tokens() == 17);
  STATIC_REQUIRE(tiny.patch_dim() == 5 * 3 * 64);
  STATIC_REQUIRE(cifar.num_tokens() == 65);
  STATIC_REQUIRE(cifar.inner_dim() == 192);
  STATIC_REQUIRE(aio.num_tokens() == 65);
  STATIC_REQUIRE(iqa.num_tokens() == 65);
  STATIC_REQUIRE(seed.num_tokens() == 257);
  STATIC_REQUIRE(seed.patch_dim() == 5 * 3 * 256);
  STATIC_REQUIRE(vitiq::Config{.spt = vitiq::SptVariant::none}.patch_dim() == 3 * 64);
  STATIC_REQUIRE(vitiq::ValidConfig<tiny>);
  STATIC_REQUIRE_FALSE(vitiq::ValidConfig<vitiq::Config{.image_size = 30, .patch_size = 8}>);
  STATIC_REQUIRE_FALSE(vitiq::ValidConfig<vitiq::Config{.heads = 0}>);
  CHECK(vitiq::config_error(vitiq::Config{.image_size = 30}) == "image_size must be divisible by patch_size");
  CHECK(vitiq::config_error(tiny).empty());
  // Training FLOPs per image quoted in the CPU speed issue: cifar 1.14, aio 0.28, iqa 1.68 GFLOP.
  CHECK(vitiq::training_flops(cifar) * 1e-9 == Approx(1.14).margin(0.01));
  CHECK(vitiq::training_flops(aio) * 1e-9 == Approx(0.28).margin(0.01));
  CHECK(vitiq::training_flops(iqa) * 1e-9 == Approx(1.68).margin(0.01));
  // The class-token-only last block of aio, by hand: of the last block's 19.2 MFLOP (qkv 6.39,
  // scores and A v 2.16, projection 2.13, MLP 8.52) it keeps k, v (4.26) and 0.23 for the class
  // token: 14.7 of the 92.5 MFLOP forward saved.
  CHECK(vitiq::forward_flops(aio) * 1e-6 == Approx(92.5).margin(0.1));
  CHECK(vitiq::executed_forward_flops(aio, true) / vitiq::forward_flops(aio) == Approx(0.841).margin(0.002));
  CHECK(vitiq::executed_forward_flops(aio, false) == vitiq::forward_flops(aio));
  // Training: 3 x that, less the folded patch LayerNorm's skipped input gradient, 64 x 960 x 128
  // (15.7 of the 277.5 MFLOP nominal step).
  CHECK(vitiq::executed_training_flops(aio, true, true) / vitiq::training_flops(aio) == Approx(0.784).margin(0.002));
  CHECK(vitiq::executed_training_flops(aio, false, false) == vitiq::training_flops(aio));
}

TEST_CASE("parameter table: PyTorch names, shapes and a gap-free layout", "[layout]") {
  const auto table = vitiq::param_table<vitiq::presets::tiny>();
  std::size_t at = 0;
  std::set<std::string> names;
  for (const auto& p : table) {
    CHECK(p.offset == at);
    at += p.size;
    names.insert(p.name);
  }
  CHECK(at == vitiq::param_count<vitiq::presets::tiny>());
  CHECK(names.size() == table.size());
  // 4 patch + pos + cls + 2 * 12 per block + 4 head
  CHECK(table.size() == 6 + 2 * 12 + 4);
  CHECK(table.front().name == "to_patch_embedding.to_patch_tokens.1.weight");
  CHECK(names.count("transformer.layers.1.0.temperature") == 1);
  CHECK(names.count("transformer.layers.0.1.net.4.bias") == 1);
  for (const auto& p : table) {
    if (p.name == "transformer.layers.0.1.net.1.weight") {
      CHECK(p.legacy_name == "transformer.layers.0.1.fn.net.0.weight");
      CHECK(p.shape == std::vector<std::size_t>{64, 32});
    }
    if (p.name == "transformer.layers.0.1.net.0.weight") CHECK(p.legacy_name == "transformer.layers.0.1.norm.weight");
    if (p.name == "pos_embedding") CHECK(p.shape == std::vector<std::size_t>{1, 17, 32});
    if (p.name == "transformer.layers.0.0.temperature") CHECK(p.shape.empty());
  }
}

TEST_CASE("attention rows sum to 1 and the LSA diagonal is zero in every block", "[model][attention]") {
  vitiq::ViT<vitiq::presets::tiny> model({}, 3);
  model.keep_attention_maps(true);  // the last block's full maps (else its class row only)
  const int B = 3;
  const auto images = random_vec<float>(B * 3 * 32 * 32, 1);
  model.forward(images, B);
  constexpr int N = vitiq::presets::tiny.num_tokens(), h = vitiq::presets::tiny.heads;
  for (int l = 0; l < vitiq::presets::tiny.depth; ++l) {
    const auto A = model.attention_to_host(l);
    REQUIRE(A.size() == std::size_t(B * h * N * N));
    for (int row = 0; row < B * h * N; ++row) {
      double s = 0;
      for (int c = 0; c < N; ++c) s += A[std::size_t(row * N + c)];
      CHECK(s == Approx(1.0).epsilon(1e-6));
      CHECK(A[std::size_t(row * N + row % N)] == 0.0f);
    }
  }
}

TEST_CASE("the folded patch LayerNorm (batch 2) gives the unfolded one's logits and gradients (batch 1 each)",
          "[model][gradcheck]") {
  // tiny: n = 16 patches, D = 32: batch 2 folds the patch LayerNorm into the patch Linear, batch 1
  // does not. The gradients of the batch of two, for the same logit gradients, are the sums of the
  // two single-image ones.
  vitiq::ViT<vitiq::presets::tiny> model({}, 5);
  auto p = model.parameters_to_host();
  vitiq::Rng rng(8);
  for (const auto& info : vitiq::param_table<vitiq::presets::tiny>())
    if (info.kind == vitiq::ParamKind::norm)
      for (std::size_t i = 0; i < info.size; ++i) p[info.offset + i] += 0.3f * float(rng.normal());
  model.set_parameters(p);
  constexpr std::size_t image = 3 * 32 * 32, K = vitiq::presets::tiny.num_classes;
  const auto images = random_vec<float>(2 * image, 4);
  const auto dlogits = random_vec<float>(2 * K, 6);
  model.zero_grad();
  const auto out2 = model.forward(images, 2);
  const std::vector<float> logits2(out2.begin(), out2.end());
  model.backward(dlogits);
  const auto grads2 = model.gradients_to_host();
  model.zero_grad();
  std::vector<float> logits1;
  for (std::size_t b = 0; b < 2; ++b) {
    const auto out = model.forward(std::span<const float>(images.data() + b * image, image), 1);
    logits1.insert(logits1.end(), out.begin(), out.end());
    model.backward(std::span<const float>(dlogits.data() + b * K, K));
  }
  const auto grads1 = model.gradients_to_host();
  double dl = 0, scale_l = 0;
  for (std::size_t i = 0; i < logits1.size(); ++i) {
    dl = std::max(dl, double(std::abs(logits1[i] - logits2[i])));
    scale_l = std::max(scale_l, double(std::abs(logits2[i])));
  }
  CHECK(dl <= 1e-5 * scale_l);
  for (const auto& info : vitiq::param_table<vitiq::presets::tiny>()) {  // tensor by tensor
    double dg = 0, scale_g = 0;
    for (std::size_t i = 0; i < info.size; ++i) {
      dg = std::max(dg, double(std::abs(grads1[info.offset + i] - grads2[info.offset + i])));
      scale_g = std::max(scale_g, double(std::abs(grads2[info.offset + i])));
    }
    INFO(info.name << ": max |difference| " << dg << ", max |gradient| " << scale_g);
    CHECK(scale_g > 0);
    CHECK(dg <= 2e-5 * scale_g);
  }
}

TEST_CASE("eval mode is deterministic and ignores dropout; training dropout is seeded and thread-count independent",
          "[model][dropout]") {
  vitiq::ViT<vitiq::presets::tiny> model({}, 4);
  const int B = 2;
  const auto images = random_vec<float>(B * 3 * 32 * 32, 2);
  model.set_regularization({.emb_dropout = 0.1, .attn_dropout = 0.1, .dropout = 0.1, .stochastic_depth = 0.1});
  auto run = [&] {
    const auto logits = model.forward(images, B);
    return std::vector<float>(logits.begin(), logits.end());
  };
  const auto eval1 = run();
  model.set_training(true);
  model.set_dropout_seed(5);
  model.set_forward_count(10);
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);
#endif
  const auto train1 = run();
  CHECK(train1 != eval1);
  model.set_forward_count(10);
  CHECK(run() == train1);  // same seed and pass counter, same threads: bit for bit
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  model.set_forward_count(10);
  const auto train2 = run();
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  // One thread: the same masks (a different mask would move logits by O(1)); GEMM blocking may
  // differ in the last bits.
  for (std::size_t i = 0; i < train1.size(); ++i) CHECK(train2[i] == Approx(train1[i]).epsilon(1e-5));
  model.set_training(false);
  CHECK(run() == eval1);
}

TEST_CASE("a tiny model overfits 16 images to 100 % training accuracy", "[model][train]") {
  constexpr auto C = vitiq::presets::tiny;
  using Be = vitiq::CpuBackend<float>;
  vitiq::ViT<C> model({}, 1);
  const int B = 16;
  const auto images = random_vec<float>(B * 3 * 32 * 32, 9);
  std::vector<double> votes;
  for (int b = 0; b < B; ++b) votes.push_back(double(1 + (b * 7) % 5));
  const auto targets = vitiq::make_targets<float>(votes, C.num_classes, {.form = vitiq::LabelForm::hard});
  vitiq::Criterion<Be> loss;
  vitiq::Adam<Be> opt(model.backend(), vitiq::param_table<C>(), model.num_params, {.lr = 1e-3});
  model.set_training(true);
  int step = 0, correct = 0;
  double l = 0;
  for (; step < 300; ++step) {
    const float* z = model.forward_device(images.data(), B);
    l = loss.forward_backward(model.backend(), z, targets.data(), B, C.num_classes);
    correct = 0;
    for (int b = 0; b < B; ++b) {
      int arg = 0;
      for (int k = 1; k < C.num_classes; ++k) if (z[b * 5 + k] > z[b * 5 + arg]) arg = k;
      correct += (arg + 1 == int(votes[std::size_t(b)]));
    }
    if (correct == B && l < 0.05) break;
    model.zero_grad();
    model.backward_device(loss.dlogits());
    opt.step(model.parameters(), model.gradients());
  }
  INFO("steps " << step << ", loss " << l);
  std::printf("tiny model: 16 images fitted in %d steps (loss %.4f)\n", step, l);
  CHECK(correct == B);
  CHECK(step < 300);
}

TEST_CASE("Adam and AdamW follow PyTorch's update formulas", "[optim]") {
  using Be = vitiq::CpuBackend<double>;
  Be be;
  // 3 parameters (scalar tails only) and 37 (whole vectors and a tail, in two ranges).
  for (const int n : {3, 37}) {
    CAPTURE(n);
    std::vector<vitiq::ParamInfo> table{{"w", "w", {std::size_t(n - 1)}, 0, std::size_t(n - 1), vitiq::ParamKind::weight},
                                        {"b", "b", {1}, std::size_t(n - 1), 1, vitiq::ParamKind::bias}};
    for (auto kind : {vitiq::OptimizerKind::adam, vitiq::OptimizerKind::adamw}) {
      vitiq::AdamOptions o{.kind = kind, .lr = 0.1, .beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3, .weight_decay = 0.5};
      vitiq::Adam<Be> adam(be, table, std::size_t(n), o);
      const std::size_t un = std::size_t(n);
      std::vector<double> p(un), m(un, 0.0), v(un, 0.0);
      for (int i = 0; i < n; ++i) p[std::size_t(i)] = (i % 2 ? -1.0 : 1.0) * (1.0 + i);
      std::vector<double> ref = p;
      for (int t = 1; t <= 3; ++t) {
        std::vector<double> g(un);
        for (int i = 0; i < n; ++i) g[std::size_t(i)] = (i % 3 == 0 ? 0.3 * t : i % 3 == 1 ? -0.1 : 0.7 / t) * (1 + 0.1 * i);
        adam.step(p.data(), g.data());
        for (int i = 0; i < n; ++i) {
          const double wd = i < n - 1 ? 0.5 : 0.0;  // the bias gets no decay
          double gi = g[std::size_t(i)];
          if (kind == vitiq::OptimizerKind::adamw) ref[std::size_t(i)] *= 1 - 0.1 * wd;
          else gi += wd * ref[std::size_t(i)];
          m[std::size_t(i)] = 0.8 * m[std::size_t(i)] + 0.2 * gi;
          v[std::size_t(i)] = 0.9 * v[std::size_t(i)] + 0.1 * gi * gi;
          const double bc1 = 1 - std::pow(0.8, t), bc2 = 1 - std::pow(0.9, t);
          ref[std::size_t(i)] -= 0.1 / bc1 * m[std::size_t(i)] / (std::sqrt(v[std::size_t(i)]) / std::sqrt(bc2) + 1e-3);
        }
      }
      for (int i = 0; i < n; ++i) CHECK(p[std::size_t(i)] == Approx(ref[std::size_t(i)]).epsilon(1e-14));
    }
  }
}

TEST_CASE("gradient clipping and learning-rate schedules", "[optim]") {
  vitiq::CpuBackend<double> be;
  std::vector<double> g{3.0, 4.0};
  CHECK(vitiq::clip_grad_norm(be, g.data(), 2, 1.0) == Approx(5.0));
  CHECK(std::hypot(g[0], g[1]) == Approx(1.0 * 5.0 / (5.0 + 1e-6)));
  std::vector<double> small{0.3, 0.4};
  vitiq::clip_grad_norm(be, small.data(), 2, 1.0);
  CHECK(small[0] == 0.3);  // under the limit: untouched

  CHECK(vitiq::warmup_cosine_lr(0, 1.0, 10, 110) == Approx(0.1));
  CHECK(vitiq::warmup_cosine_lr(9, 1.0, 10, 110) == Approx(1.0));
  CHECK(vitiq::warmup_cosine_lr(10, 1.0, 10, 110) == Approx(1.0));
  CHECK(vitiq::warmup_cosine_lr(60, 1.0, 10, 110) == Approx(0.5));
  CHECK(vitiq::warmup_cosine_lr(110, 1.0, 10, 110, 0.01) == Approx(0.01));

  // ReduceLROnPlateau(factor 0.5, patience 2): torch gives 1, 1, 1, 1, 0.5 for these losses.
  vitiq::ReduceOnPlateau plateau(1.0, 0.5, 2);
  std::vector<double> lrs;
  for (double metric : {1.0, 0.9, 0.95, 0.95, 0.95, 0.5, 0.6}) lrs.push_back(plateau.step(metric));
  CHECK(lrs == std::vector<double>{1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5});
}

TEST_CASE("target construction: Gaussian soft labels, smoothing, hard", "[loss]") {
  float t[5];
  vitiq::make_target(t, 3.0, 5);
  CHECK(t[0] == Approx(0.0002).margin(5e-5));
  CHECK(t[1] == Approx(0.0997).margin(5e-5));
  CHECK(t[2] == Approx(0.8002).margin(5e-5));
  vitiq::make_target(t, 2.0, 5, {.form = vitiq::LabelForm::smoothed, .smoothing = 0.1});
  CHECK(t[1] == Approx(0.92));
  CHECK(t[0] == Approx(0.02));
  vitiq::make_target(t, 5.0, 5, {.form = vitiq::LabelForm::hard});
  CHECK(t[4] == 1.0f);
  CHECK_THROWS_AS(vitiq::make_target(t, 6.0, 5), std::invalid_argument);
}

namespace {
template <class T>
double max_rel(std::span<const T> a, std::span<const T> b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / (den + 1e-300);
}
}  // namespace

TEMPLATE_TEST_CASE("weight packing: evaluation forwards on packed weights give the plain logits and follow "
                   "parameter changes", "[model]", float, double) {
  using T = TestType;
  constexpr auto C = vitiq::presets::aio;  // every Linear width but the head's a multiple of the panel
  using Model = vitiq::ViT<C, vitiq::CpuBackend<T>>;
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  Model plain({}, 7), packed({}, 7);
  packed.set_weight_packing(true);
  REQUIRE(packed.weight_packing());
  const std::size_t per_image = 3 * 64 * 64;
  const auto images = random_vec<T>(9 * per_image, 8);
  auto compare = [&](long B) {
    const std::span<const T> in(images.data(), std::size_t(B) * per_image);
    const auto plain_logits = plain.forward(in, B);
    const std::vector<T> want(plain_logits.begin(), plain_logits.end());
    const auto got = packed.forward(in, B);
    INFO("batch " << B);
    CHECK(max_rel<T>(got, want) < tol);
  };
  compare(1);  // 65 rows: packed
  compare(2);
  compare(9);  // 585 rows > packed_rows_max: plain GEMMs
  // The packed copy follows every way the parameters change.
  auto host = plain.parameters_to_host();
  for (auto& x : host) x = T(0.9) * x;
  plain.set_parameters(host);
  packed.set_parameters(host);
  compare(1);
  const std::size_t fc1 = Model::offsets.blocks[1].fc1_w, qkv = Model::offsets.blocks[3].qkv_w;
  plain.parameters()[fc1] += T(0.5);
  packed.parameters()[fc1] += T(0.5);  // non-const parameters() marks the copy stale
  compare(1);
  T* p = packed.parameters();
  packed.forward(std::span<const T>(images.data(), per_image), 1);  // packs with the old value
  p[qkv + 3] += T(0.25);  // a write after the packing ...
  packed.weights_changed();  // ... announced
  plain.parameters()[qkv + 3] += T(0.25);
  compare(1);
  // Training mode never reads the packed copy.
  plain.set_training(true);
  packed.set_training(true);
  compare(1);
}
