// tests/test_explain_trained.cpp -- attention rollout of a briefly trained model looks where the
// label is decided. Stimuli: 32 x 32 smooth random backgrounds with one 8 x 8 patch cell, at a
// random position, carrying high-frequency noise whose amplitude is the label (5 classes); the
// rest of the image carries no information about the label. A tiny-preset model trained for a few
// seconds with the library's Trainer must put clearly more rollout mass on that cell than its
// area share (1/16).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

#include "vitiq/explain/local_change.hpp"
#include "vitiq/explain/rollout.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

using namespace vitiq::explain;

namespace {

constexpr auto C = vitiq::presets::tiny;  // 32 px, patch 8: a 4 x 4 grid
constexpr int S = C.image_size, P = C.patch_size, G = S / P;

struct Sample {
  vitiq::Stimulus stimulus;
  int cell = 0;  // the distorted patch cell, row-major in the 4 x 4 grid
};

/// Class k (0..4): noise of amplitude 14 k grey levels in one cell (class 0: none).
std::vector<Sample> make_samples(int count, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<Sample> out;
  for (int i = 0; i < count; ++i) {
    Sample s;
    const int k = i % 5;
    s.cell = int(rng.below(G * G));
    s.stimulus.name = "s" + std::to_string(i);
    s.stimulus.height = s.stimulus.width = S;
    s.stimulus.vote = double(k + 1);
    s.stimulus.rgb.resize(std::size_t(S * S * 3));
    double base[3], gx[3], gy[3];
    for (int c = 0; c < 3; ++c) base[c] = 70 + 110 * rng.uniform(), gx[c] = 3 * rng.normal(), gy[c] = 3 * rng.normal();
    const int cy = s.cell / G * P, cx = s.cell % G * P;
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const bool in = y >= cy && y < cy + P && x >= cx && x < cx + P;
        const double n = in ? 14.0 * k * ((x + y) % 2 ? 1.0 : -1.0) * (0.5 + rng.uniform()) : 0.0;
        for (int c = 0; c < 3; ++c) {
          const double v = base[c] + gx[c] * (x - 16) / 4.0 + gy[c] * (y - 16) / 4.0 + 2.0 * rng.normal() + n;
          s.stimulus.rgb[std::size_t((y * S + x) * 3 + c)] = std::uint8_t(std::clamp(std::lround(v), 0L, 255L));
        }
      }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

TEST_CASE("a briefly trained model's rollout puts its mass where the label is decided", "[explain][trained]") {
  const auto train = make_samples(400, 11), test = make_samples(100, 12);
  std::vector<vitiq::Stimulus> stimuli;
  for (const auto& s : train) stimuli.push_back(s.stimulus);
  vitiq::CropBatchSource<float> source(stimuli, S, {.grid = 1, .hflip = false, .seed = 3});
  vitiq::ViT<C> model({}, 5);
  vitiq::TrainOptions opt;
  opt.epochs = 25;
  opt.batch_size = 32;
  opt.optimizer.lr = 3e-3;
  opt.warmup_epochs = 1;
  opt.seed = 7;
  opt.labels.form = vitiq::LabelForm::hard;
  vitiq::Trainer<vitiq::ViT<C>> trainer(model, opt);
  trainer.fit(source, nullptr);

  // Test images of classes 2..4 (a visible distortion): accuracy, and the share of rollout mass in
  // the distorted cell over its area share 1/16.
  std::vector<float> image(std::size_t(3 * S * S));
  int correct = 0, n = 0;
  double ratio_rollout = 0, ratio_raw = 0, ratio_grad = 0;
  for (const auto& s : test) {
    vitiq::detail::crop_to_chw(s.stimulus, 0, 0, S, false, true, image.data());
    const auto ag = attention_with_gradients(model, std::span<const float>(image));
    correct += ag.target + 1 == int(s.stimulus.vote);
    if (s.stimulus.vote < 3) continue;
    const auto cov = region_coverage({s.cell % G * P, s.cell / G * P, P, P}, S, S, G, G);
    const double area = 1.0 / (G * G);
    ratio_rollout += mass_share(attention_rollout(ag.attention, C.heads, C.num_tokens()), cov) / area;
    ratio_raw += mass_share(raw_attention_maps(ag.attention, C.heads, C.num_tokens()).back(), cov) / area;
    ratio_grad += mass_share(gradient_rollout(ag.attention, ag.gradients, C.heads, C.num_tokens()), cov) / area;
    ++n;
  }
  ratio_rollout /= n, ratio_raw /= n, ratio_grad /= n;
  const double accuracy = double(correct) / double(test.size());
  std::printf("trained rollout test: accuracy %.2f; mass in the distorted cell / area share: rollout %.2f, "
              "raw last block %.2f, gradient rollout %.2f (%d images)\n", accuracy, ratio_rollout, ratio_raw, ratio_grad, n);
  INFO("accuracy " << accuracy << ", ratios rollout " << ratio_rollout << ", raw " << ratio_raw << ", gradient " << ratio_grad);
  CHECK(accuracy > 0.4);        // the model learned the task (chance: 0.2; measured 0.61)
  CHECK(ratio_rollout > 3.0);   // measured 9.1 (OMP_NUM_THREADS=1)
  CHECK(ratio_raw > 3.0);       // measured 13.6
}
