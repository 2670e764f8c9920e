// tests/test_data_trainer_source.cpp -- LoaderBatchSource (vitiq/data/trainer_source.hpp): the
// trainer's batches made by the data loader's preprocessing, identical for any thread count, and
// a small model learns from them.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/catch.hpp"
#include "vitiq/data/trainer_source.hpp"
#include "vitiq/vitiq.hpp"

using namespace vitiq::data;

namespace {

constexpr vitiq::Config small_model{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 1, .heads = 2,
                                    .dim_head = 8, .mlp_dim = 32, .num_classes = 5};

/// 24 x 32 images whose vote is their brightness level (1..5) plus texture noise.
std::vector<LoaderSample> synthetic(int count, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<LoaderSample> out;
  for (int i = 0; i < count; ++i) {
    auto img = std::make_shared<vitiq::io::ImageU8>(vitiq::io::ImageU8::from_shape({24, 32, 3}));
    const double vote = double(1 + i % 5);
    for (auto& p : *img) p = std::uint8_t(std::clamp(40.0 * vote + 20.0 * rng.normal(), 0.0, 255.0));
    out.push_back({{}, img, vote});
  }
  return out;
}

}  // namespace

TEST_CASE("LoaderBatchSource fills the trainer's batches as the loader does, on any thread count", "[data][loader]") {
  LoaderOptions opt;
  opt.preprocess.size = 16;
  opt.seed = 5;
  opt.threads = 0;
  BatchLoader loader(synthetic(30, 1), opt);
  const std::vector<std::size_t> idx = {3, 17, 0, 29, 8, 8, 12};
  const std::size_t per = 3 * 16 * 16;
  std::vector<float> ref(idx.size() * per);
  std::vector<double> ref_votes(idx.size());
  loader.fill(idx, 2, ref.data(), ref_votes.data());
  for (const int threads : {1, 3, 8}) {
    LoaderBatchSource<float> source(loader, threads);
    CHECK(source.size() == 30);
    std::vector<float> got(idx.size() * per);
    std::vector<double> votes(idx.size());
    source.fill(idx, 2, got.data(), votes.data());
    CHECK(got == ref);
    CHECK(votes == ref_votes);
  }
  LoaderBatchSource<double> dsource(loader, 2);
  std::vector<double> got(idx.size() * per), votes(idx.size());
  dsource.fill(idx, 2, got.data(), votes.data());
  CHECK(std::equal(got.begin(), got.end(), ref.begin(), [](double a, float b) { return a == double(b); }));
}

TEST_CASE("a small model learns from LoaderBatchSource batches", "[data][loader]") {
  LoaderOptions opt;
  opt.preprocess.size = small_model.image_size;
  opt.seed = 3;
  opt.threads = 2;
  BatchLoader loader(synthetic(60, 1), opt);
  LoaderBatchSource<float> source(loader);
  vitiq::ViT<small_model> model({}, 1);
  vitiq::TrainOptions o;
  o.epochs = 6;
  o.batch_size = 8;
  o.optimizer.lr = 3e-3;
  o.warmup_epochs = 0.5;
  o.seed = 17;
  vitiq::Trainer<decltype(model)> trainer(model, o);
  const auto result = trainer.fit(source, nullptr);
  REQUIRE(result.history.size() == 6);
  CHECK(result.history.back().train_loss < result.history.front().train_loss);
}
