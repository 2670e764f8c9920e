// tests/test_trainer.cpp -- the training loop: it learns a synthetic task, writes metrics.csv and
// the best/last checkpoints, a run stopped mid-epoch (the ctrl-C flag) and resumed ends with
// weights identical bit for bit to an uninterrupted run, and a diverging run stops naming the step.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <span>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

constexpr vitiq::Config small{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 1, .heads = 2,
                              .dim_head = 8, .mlp_dim = 32, .num_classes = 5};

/// Stimuli of 32 x 32 pixels whose vote is their brightness level (1..5) plus texture noise.
std::vector<vitiq::Stimulus> synthetic(int count, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<vitiq::Stimulus> out;
  for (int i = 0; i < count; ++i) {
    vitiq::Stimulus s;
    s.name = "s" + std::to_string(i);
    s.height = s.width = 32;
    s.vote = double(1 + i % 5);
    s.rgb.resize(32 * 32 * 3);
    for (auto& p : s.rgb) p = std::uint8_t(std::clamp(40.0 * s.vote + 20.0 * rng.normal(), 0.0, 255.0));
    out.push_back(std::move(s));
  }
  return out;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("vitiq_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

vitiq::TrainOptions options(const fs::path& dir, int epochs) {
  vitiq::TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 8;
  o.optimizer.lr = 3e-3;
  o.warmup_epochs = 0.5;
  o.seed = 17;
  o.out_dir = dir;
  o.regularization.dropout = 0.1;  // the resume test must also restore the dropout stream
  return o;
}

}  // namespace

TEST_CASE("the trainer learns a synthetic task and writes metrics and checkpoints", "[train]") {
  const auto train = synthetic(60, 1), val = synthetic(20, 2);
  vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 3});
  vitiq::TileEvalSource<float> eval(val, small.image_size);
  vitiq::ViT<small> model({}, 1);
  const fs::path dir = temp_dir("learn");
  vitiq::Trainer<decltype(model)> trainer(model, options(dir, 12));
  int epochs_seen = 0;
  trainer.on_epoch = [&](const vitiq::EpochReport&) { ++epochs_seen; };
  const auto result = trainer.fit(source, &eval);
  CHECK(epochs_seen == 12);
  REQUIRE(result.history.size() == 12);
  INFO("first epoch loss " << result.history.front().train_loss << ", last " << result.history.back().train_loss
                           << ", best validation accuracy " << result.best_val_accuracy);
  CHECK(result.history.back().train_loss < result.history.front().train_loss);
  CHECK(result.best_val_accuracy > 0.6);  // chance is 0.2
  CHECK(fs::exists(dir / "best.safetensors"));
  CHECK(fs::exists(dir / "last.safetensors"));
  std::ifstream csv(dir / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  CHECK(header.rfind("epoch,step,lr,train_loss", 0) == 0);
  int rows = 0;
  for (std::string line; std::getline(csv, line);) ++rows;
  CHECK(rows == 12);
  fs::remove_all(dir);
}

TEST_CASE("a run stopped mid-epoch and resumed ends bit-identical to an uninterrupted run", "[train][resume]") {
  const auto train = synthetic(40, 5), val = synthetic(10, 6);
  vitiq::TileEvalSource<float> eval(val, small.image_size);

  const fs::path full_dir = temp_dir("full");
  vitiq::ViT<small> full({}, 2);
  {
    vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 9});
    vitiq::Trainer<decltype(full)> t(full, options(full_dir, 3));
    t.fit(source, &eval);
  }

  const fs::path part_dir = temp_dir("part");
  std::atomic<bool> stop{false};
  int steps = 0;
  {
    vitiq::ViT<small> a({}, 2);
    vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 9});
    auto o = options(part_dir, 3);
    o.stop = &stop;
    vitiq::Trainer<decltype(a)> t(a, o);
    t.on_step = [&](const vitiq::StepProgress&) { if (++steps == 7) stop = true; };  // epoch 2, batch 2 of 5
    const auto r = t.fit(source, &eval);
    CHECK(r.stopped);
  }
  vitiq::ViT<small> resumed({}, 99);  // different init: everything must come from the checkpoint
  {
    vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 9});
    auto o = options(part_dir, 3);
    o.resume = true;
    vitiq::Trainer<decltype(resumed)> t(resumed, o);
    const auto r = t.fit(source, &eval);
    CHECK_FALSE(r.stopped);
    CHECK(r.history.size() == 3);
  }
  CHECK(resumed.parameters_to_host() == full.parameters_to_host());
  std::ifstream a(full_dir / "metrics.csv"), b(part_dir / "metrics.csv");
  std::string la, lb;
  std::getline(a, la);
  std::getline(b, lb);
  for (int i = 0; i < 3; ++i) {
    std::getline(a, la);
    std::getline(b, lb);
    // epoch, step, lr, losses and accuracies agree; the timing columns differ
    CHECK(la.substr(0, la.find(",", la.find(",", la.find(",", la.find(",", la.find(",", la.find(",") + 1) + 1) + 1) + 1) + 1)) ==
          lb.substr(0, lb.find(",", lb.find(",", lb.find(",", lb.find(",", lb.find(",", lb.find(",") + 1) + 1) + 1) + 1) + 1)));
  }
  fs::remove_all(full_dir);
  fs::remove_all(part_dir);
}

TEST_CASE("a learning-rate blow-up stops training, naming the step, and keeps the last good checkpoint", "[train][nan]") {
  const auto train = synthetic(24, 7);
  vitiq::CropBatchSource<float> source(train, small.image_size, {.seed = 1});
  vitiq::ViT<small> model({}, 3);
  const fs::path dir = temp_dir("nan");
  auto o = options(dir, 50);
  o.optimizer.lr = 1e9;
  o.optimizer.weight_decay = 0;
  o.clip_norm = 0;
  o.warmup_epochs = 0;
  o.schedule = vitiq::ScheduleKind::constant;
  vitiq::Trainer<decltype(model)> t(model, o);
  CHECK_THROWS_WITH(t.fit(source, nullptr), Contains("training diverged at step"));
  // Checkpoints written before the failure still load.
  if (fs::exists(dir / "last.ckpt.safetensors")) {
    vitiq::ViT<small> back;
    vitiq::Adam<vitiq::CpuBackend<float>> adam(back.backend(), vitiq::param_table<small>(), back.num_params);
    CHECK_NOTHROW(vitiq::load_checkpoint(dir / "last.ckpt.safetensors", back, adam));
  }
  fs::remove_all(dir);
}

TEST_CASE("training crops: on the grid, and --dihedral draws all 8 symmetries of the square", "[train]") {
  // A 24 x 24 stimulus whose red channel is 10 x row and green channel 10 x column: every output
  // pixel says where it came from. Crops of 16 on the 8-pixel grid start at 0 or 8.
  vitiq::Stimulus s;
  s.name = "coords";
  s.height = s.width = 24;
  s.rgb.resize(24 * 24 * 3);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 24; ++x) {
      s.rgb[std::size_t(y * 24 + x) * 3 + 0] = std::uint8_t(10 * y);
      s.rgb[std::size_t(y * 24 + x) * 3 + 1] = std::uint8_t(10 * x);
    }
  const std::vector<vitiq::Stimulus> one{s};
  constexpr int S = 16;
  // The 8 maps (y, x) -> offset inside the crop, written out independently of the implementation.
  const auto symmetry_of = [&](const std::vector<float>& img, int& top, int& left) {
    const auto src = [&](int c, int y, int x) { return int(std::lround(img[std::size_t((c * S + y) * S + x)] * 255.f / 10.f)); };
    int found = -1;
    for (int t = 0; t < 8 && found < 0; ++t) {
      bool all = true;
      int t0 = -1, l0 = -1;
      for (int y = 0; y < S && all; ++y)
        for (int x = 0; x < S && all; ++x) {
          int u = 0, v = 0;  // expected source offset for symmetry t
          switch (t) {
            case 0: u = y, v = x; break;                   // identity
            case 1: u = y, v = S - 1 - x; break;           // mirror columns
            case 2: u = S - 1 - y, v = x; break;           // mirror rows
            case 3: u = S - 1 - y, v = S - 1 - x; break;   // rotate 180
            case 4: u = x, v = y; break;                   // transpose
            case 5: u = x, v = S - 1 - y; break;           // rotate 90
            case 6: u = S - 1 - x, v = y; break;           // rotate 270
            default: u = S - 1 - x, v = S - 1 - y; break;  // anti-transpose
          }
          const int r = src(0, y, x), c = src(1, y, x);
          if (t0 < 0) t0 = r - u, l0 = c - v;
          all = (r - u == t0) && (c - v == l0);
        }
      if (all) found = t, top = t0, left = l0;
    }
    return found;
  };
  for (const bool dihedral : {false, true}) {
    vitiq::CropBatchSource<float> source(one, S, {.grid = 8, .hflip = true, .dihedral = dihedral, .normalize = false, .seed = 5});
    std::vector<float> img(3 * S * S);
    std::array<int, 8> seen{};
    for (std::uint64_t epoch = 0; epoch < 400; ++epoch) {
      const std::size_t idx = 0;
      double vote = 0;
      source.fill(std::span(&idx, 1), epoch, img.data(), &vote);
      int top = -1, left = -1;
      const int t = symmetry_of(img, top, left);
      REQUIRE(t >= 0);  // always one of the 8 symmetries of a crop
      CHECK((top == 0 || top == 8));
      CHECK((left == 0 || left == 8));
      ++seen[std::size_t(t)];
    }
    const int kinds = int(std::count_if(seen.begin(), seen.end(), [](int n) { return n > 0; }));
    CAPTURE(dihedral, seen);
    if (dihedral) {
      CHECK(kinds == 8);
      for (int n : seen) CHECK(n > 20);  // each about 50 of 400
    } else {
      CHECK(kinds == 2);  // identity and the horizontal mirror only
      CHECK(seen[0] > 150);
      CHECK(seen[1] > 150);
    }
  }
}

TEST_CASE("training crops: --desaturate mixes a crop with its luma by a random share, luma unchanged", "[train]") {
  // A uniform orange stimulus: every output pixel must be luma + c (orig - luma) for one c in [0, 1]
  // per crop, with the same luma.
  vitiq::Stimulus s;
  s.name = "orange";
  s.height = s.width = 24;
  s.rgb.resize(24 * 24 * 3);
  for (std::size_t i = 0; i < s.rgb.size(); i += 3) s.rgb[i] = 200, s.rgb[i + 1] = 50, s.rgb[i + 2] = 10;
  const std::vector<vitiq::Stimulus> one{s};
  const float orig[3] = {200 / 255.f, 50 / 255.f, 10 / 255.f};
  const float luma = 0.299f * orig[0] + 0.587f * orig[1] + 0.114f * orig[2];
  constexpr int S = 16;
  for (const double p : {0.0, 0.5, 1.0}) {
    vitiq::CropBatchSource<float> source(one, S, {.grid = 8, .desaturate = p, .normalize = false, .seed = 7});
    std::vector<float> img(3 * S * S);
    int changed = 0;
    float cmin = 2, cmax = -1;
    for (std::uint64_t epoch = 0; epoch < 200; ++epoch) {
      const std::size_t idx = 0;
      double vote = 0;
      source.fill(std::span(&idx, 1), epoch, img.data(), &vote);
      const float c = (img[0] - luma) / (orig[0] - luma);
      for (int i = 0; i < S * S; ++i) {
        const float r = img[std::size_t(i)], g = img[std::size_t(S * S + i)], b = img[std::size_t(2 * S * S + i)];
        CHECK(std::abs(0.299f * r + 0.587f * g + 0.114f * b - luma) < 1e-5f);
        CHECK(std::abs(g - (luma + c * (orig[1] - luma))) < 1e-5f);
        CHECK(std::abs(b - (luma + c * (orig[2] - luma))) < 1e-5f);
      }
      CHECK(c >= -1e-5f);
      CHECK(c <= 1 + 1e-5f);
      changed += std::abs(c - 1) > 1e-4f;
      cmin = std::min(cmin, c), cmax = std::max(cmax, c);
    }
    CAPTURE(p, changed, cmin, cmax);
    if (p == 0) CHECK(changed == 0);
    if (p == 0.5) CHECK((changed > 70 && changed < 130));
    if (p == 1) {
      CHECK(changed == 200);
      CHECK(cmin < 0.05f);  // shares spread over [0, 1]
      CHECK(cmax > 0.95f);
    }
  }
}
