// tests/test_linear_probe.cpp -- the linear probe (vitiq/train/linear_probe.hpp) and what it relies
// on: head_features() is the head's input (logits = features W^T + b), extract_features() gives every
// view's features in order, probe_probabilities() reproduces predict_probabilities() (whose views
// now share batches across stimuli), the probe's gradient against finite differences, fit_head()
// recovering a known head, and the Trainer's validate_every.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "vitiq/train/linear_probe.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

namespace {

constexpr vitiq::Config small{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 1, .heads = 2,
                              .dim_head = 8, .mlp_dim = 32, .num_classes = 5};

/// Stimuli of various sizes (1, 2 or 4 tiles of 16 x 16) with random pixels and votes 1..5.
std::vector<vitiq::Stimulus> stimuli(int count, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<vitiq::Stimulus> out;
  for (int i = 0; i < count; ++i) {
    vitiq::Stimulus s;
    s.name = "s" + std::to_string(i);
    s.height = 16 * (1 + i % 2);
    s.width = 16 * (1 + (i / 2) % 2);
    s.vote = double(1 + i % 5);
    s.rgb.resize(std::size_t(s.height * s.width * 3));
    for (auto& p : s.rgb) p = std::uint8_t(rng.below(256));
    out.push_back(std::move(s));
  }
  return out;
}

/// Softmax of logits z [K] into p.
void softmax(const double* z, double* p, int K) {
  double mx = z[0], sum = 0;
  for (int k = 1; k < K; ++k) mx = std::max(mx, z[k]);
  for (int k = 0; k < K; ++k) sum += (p[k] = std::exp(z[k] - mx));
  for (int k = 0; k < K; ++k) p[k] /= sum;
}

}  // namespace

TEST_CASE("head_features is the head's input: logits = features W^T + b", "[probe]") {
  vitiq::ViT<small, vitiq::CpuBackend<double>> model({}, 3);
  vitiq::Rng rng(5);
  std::vector<double> images(4 * 3 * 16 * 16);
  for (auto& x : images) x = rng.normal();
  const auto logits = model.forward(std::span<const double>(images), 4);
  const auto f = model.head_features_to_host();
  REQUIRE(f.size() == std::size_t(4 * small.dim));
  const vitiq::LinearHead h = vitiq::get_head(model);
  for (int b = 0; b < 4; ++b)
    for (int k = 0; k < small.num_classes; ++k) {
      double z = h.b[std::size_t(k)];
      for (int d = 0; d < small.dim; ++d) z += h.w[std::size_t(k * small.dim + d)] * f[std::size_t(b * small.dim + d)];
      CHECK(z == Approx(logits[std::size_t(b * small.num_classes + k)]).epsilon(1e-12).margin(1e-12));
    }
}

TEST_CASE("set_head writes the head and nothing else; get_head reads it back", "[probe]") {
  vitiq::ViT<small> model({}, 7);
  const auto before = model.parameters_to_host();
  vitiq::LinearHead h = vitiq::get_head(model);
  for (std::size_t k = 0; k < h.w.size(); ++k) h.w[k] = 0.01 * double(k);
  for (std::size_t k = 0; k < h.b.size(); ++k) h.b[k] = -0.5 * double(k);
  vitiq::set_head(model, h);
  const auto after = model.parameters_to_host();
  constexpr auto o = vitiq::param_offsets<small>();
  std::size_t changed_outside = 0;
  for (std::size_t i = 0; i < after.size(); ++i) {
    const bool in_head = (i >= o.head_w && i < o.head_w + h.w.size()) || (i >= o.head_b && i < o.head_b + h.b.size());
    if (!in_head && after[i] != before[i]) ++changed_outside;
  }
  CHECK(changed_outside == 0);
  const vitiq::LinearHead back = vitiq::get_head(model);
  for (std::size_t k = 0; k < h.w.size(); ++k) CHECK(back.w[k] == Approx(h.w[k]).epsilon(1e-6));
  for (std::size_t k = 0; k < h.b.size(); ++k) CHECK(back.b[k] == Approx(h.b[k]).epsilon(1e-6));
  vitiq::LinearHead wrong = h;
  wrong.dim = small.dim + 1;
  CHECK_THROWS_AS(vitiq::set_head(model, wrong), std::invalid_argument);
}

TEST_CASE("extract_features and probe_probabilities reproduce predict_probabilities view by view", "[probe]") {
  const auto set = stimuli(23, 11);  // 1, 2 and 4 views: batches of 5 views cut stimuli in different places
  vitiq::TileEvalSource<double> source(set, small.image_size);
  vitiq::ViT<small, vitiq::CpuBackend<double>> model({}, 13);
  for (int batch : {1, 5, 64}) {
    INFO("max batch " << batch);
    const vitiq::ProbeFeatures f = vitiq::extract_features(model, source, batch);
    REQUIRE(f.stimuli() == set.size());
    // The same stimulus' views one forward each: the reference order and values.
    std::size_t view = 0;
    std::vector<double> image(3 * 16 * 16);
    for (std::size_t i = 0; i < set.size(); ++i) {
      std::vector<double> views(source.views(i) * image.size());
      source.fill_views(i, views.data());
      REQUIRE(f.first_view[i] == view);
      for (std::size_t v = 0; v < source.views(i); ++v, ++view) {
        model.forward(std::span<const double>(views.data() + v * image.size(), image.size()), 1);
        const auto one = model.head_features_to_host();
        for (int d = 0; d < small.dim; ++d) CHECK(f.x[view * small.dim + std::size_t(d)] == Approx(one[std::size_t(d)]).margin(1e-12));
      }
    }
    const auto by_probe = vitiq::probe_probabilities(f, vitiq::get_head(model));
    const auto by_model = vitiq::predict_probabilities(model, source, batch);
    REQUIRE(by_probe.size() == by_model.size());
    for (std::size_t k = 0; k < by_model.size(); ++k) CHECK(by_probe[k] == Approx(by_model[k]).margin(1e-12));
  }
}

TEST_CASE("the probe loss gradient matches finite differences", "[probe]") {
  vitiq::Rng rng(21);
  vitiq::ProbeFeatures f;
  f.dim = 6;
  f.first_view = {0, 1, 4, 6, 7};  // 4 stimuli with 1, 3, 2, 1 views
  f.x.resize(7 * 6);
  for (auto& x : f.x) x = rng.normal();
  const int K = 4;
  std::vector<double> targets(4 * K), weights = {1, 2, 0.5, 3};
  for (int i = 0; i < 4; ++i) {
    double z[K], p[K];
    for (auto& e : z) e = rng.normal();
    softmax(z, p, K);
    for (int k = 0; k < K; ++k) targets[std::size_t(i * K + k)] = p[k];
  }
  vitiq::LinearHead h{K, 6, std::vector<double>(K * 6), std::vector<double>(K)};
  for (auto& w : h.w) w = 0.5 * rng.normal();
  for (auto& b : h.b) b = 0.5 * rng.normal();
  const double l2 = 0.03;
  std::vector<double> gw(h.w.size()), gb(h.b.size());
  vitiq::detail::probe_loss(f, targets, weights, h, l2, &gw, &gb);
  const double eps = 1e-6;
  double worst = 0;
  auto check = [&](std::vector<double>& p, const std::vector<double>& g) {
    for (std::size_t k = 0; k < p.size(); ++k) {
      const double keep = p[k];
      p[k] = keep + eps;
      const double up = vitiq::detail::probe_loss(f, targets, weights, h, l2, nullptr, nullptr);
      p[k] = keep - eps;
      const double down = vitiq::detail::probe_loss(f, targets, weights, h, l2, nullptr, nullptr);
      p[k] = keep;
      const double fd = (up - down) / (2 * eps);
      worst = std::max(worst, std::abs(fd - g[k]) / std::max(1e-3, std::abs(fd) + std::abs(g[k])));
    }
  };
  check(h.w, gw);
  check(h.b, gb);
  INFO("worst relative error " << worst);
  CHECK(worst < 1e-6);
}

TEST_CASE("fit_head recovers a known head from its own soft labels", "[probe]") {
  // Features of 300 single-view stimuli; targets are the probabilities of a known head, so the
  // loss minimum is that head's (the targets' entropy) and its probabilities are reproduced.
  vitiq::Rng rng(31);
  const int D = 8, K = 5, n = 300;
  vitiq::LinearHead truth{K, D, std::vector<double>(K * D), std::vector<double>(K)};
  for (auto& w : truth.w) w = rng.normal();
  for (auto& b : truth.b) b = 0.3 * rng.normal();
  vitiq::ProbeFeatures f;
  f.dim = D;
  f.x.resize(std::size_t(n * D));
  for (auto& x : f.x) x = rng.normal();
  for (int i = 0; i <= n; ++i) f.first_view.push_back(std::size_t(i));
  const auto targets = vitiq::probe_probabilities(f, truth);
  const std::vector<double> weights(n, 1.0);
  const vitiq::LinearHead zero{K, D, std::vector<double>(K * D, 0.0), std::vector<double>(K, 0.0)};
  const auto r = vitiq::fit_head(f, targets, weights, zero, {.iterations = 600, .lr = 0.05, .l2 = 0});
  double entropy = 0;
  for (double t : targets) entropy -= t > 0 ? t * std::log(t) / n : 0;
  INFO("initial " << r.initial_loss << ", final " << r.final_loss << ", entropy (minimum) " << entropy);
  CHECK(r.initial_loss == Approx(std::log(double(K))).epsilon(1e-9));
  CHECK(r.final_loss < entropy + 0.01);
  const auto p = vitiq::probe_probabilities(f, r.head);
  double worst = 0;
  for (std::size_t k = 0; k < p.size(); ++k) worst = std::max(worst, std::abs(p[k] - targets[k]));
  CHECK(worst < 0.05);
  // Invalid input is refused with a reason.
  CHECK_THROWS_AS(vitiq::fit_head(f, targets, std::vector<double>(n, 0.0), zero), std::invalid_argument);
  CHECK_THROWS_AS(vitiq::fit_head(f, std::vector<double>(3), weights, zero), std::invalid_argument);
}

TEST_CASE("validate_every validates every n-th epoch and the last", "[probe][train]") {
  std::vector<vitiq::Stimulus> train = stimuli(20, 41), val = stimuli(6, 42);
  vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 3});
  vitiq::TileEvalSource<float> eval(val, small.image_size);
  vitiq::ViT<small> model({}, 1);
  vitiq::TrainOptions o;
  o.epochs = 5;
  o.batch_size = 8;
  o.validate_every = 2;
  vitiq::Trainer<decltype(model)> trainer(model, o);
  const auto result = trainer.fit(source, &eval);
  REQUIRE(result.history.size() == 5);
  CHECK(std::isnan(result.history[0].val_accuracy));
  CHECK_FALSE(std::isnan(result.history[1].val_accuracy));
  CHECK(std::isnan(result.history[2].val_accuracy));
  CHECK_FALSE(std::isnan(result.history[3].val_accuracy));
  CHECK_FALSE(std::isnan(result.history[4].val_accuracy));  // the last epoch always
  CHECK_FALSE(result.history[0].best);
  CHECK((result.best_epoch % 2 == 0 || result.best_epoch == 5));
}
