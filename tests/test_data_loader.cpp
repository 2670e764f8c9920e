// tests/test_data_loader.cpp -- preprocessing (native crops, torchvision's RandomResizedCrop,
// Resize + CenterCrop, tiles) and the threaded batch loader (vitiq/data/{preprocess,loader}.hpp).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/catch.hpp"
#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/loader.hpp"
#include "vitiq/data/preprocess.hpp"
#include "vitiq/io/image.hpp"

namespace fs = std::filesystem;
using namespace vitiq::data;
using vitiq::io::ImageU8;

namespace {

/// A [H, W, 3] image of random pixels (seeded).
ImageU8 random_image(int H, int W, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  ImageU8 img = ImageU8::from_shape({std::size_t(H), std::size_t(W), 3});
  for (auto& v : img) v = std::uint8_t(rng.below(256));
  return img;
}

/// Pixel (c, y, x) of a crop of img as to_chw_float gives it, optionally mirrored.
float expected_pixel(const ImageU8& img, const CropRect& r, bool flip, std::size_t c, std::size_t y, std::size_t x) {
  const std::size_t sx = std::size_t(r.left) + (flip ? std::size_t(r.width) - 1 - x : x);
  return float(img(std::size_t(r.top) + y, sx, c)) / 255.0f;
}

/// Bitwise-equal shapes and values (xtensor's == kept out of Catch's CHECK).
template <class A, class B>
bool same_tensor(const A& a, const B& b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

TEST_CASE("native crops: offsets on the grid, inside the image, no rescaling", "[data][preprocess]") {
  vitiq::Rng rng(1);
  std::set<int> tops, lefts;
  for (int i = 0; i < 2000; ++i) {
    const CropRect r = native_crop_params(100, 90, 64, 8, rng);
    CHECK(r.top % 8 == 0);
    CHECK(r.left % 8 == 0);
    CHECK(r.top + 64 <= 100);
    CHECK(r.left + 64 <= 90);
    tops.insert(r.top);
    lefts.insert(r.left);
  }
  CHECK(tops == std::set<int>{0, 8, 16, 24, 32});  // (100 - 64) / 8 + 1 = 5 positions
  CHECK(lefts == std::set<int>{0, 8, 16, 24});
  CHECK(native_centre_params(256, 256, 64, 8) == CropRect{96, 96, 64, 64});
  CHECK(native_centre_params(100, 90, 64, 8) == CropRect{16, 16, 64, 64});  // centre (18, 13): nearest grid (16, 16)
  CHECK_THROWS_AS(native_crop_params(60, 90, 64, 8, rng), vitiq::Error);

  // train_view: the pixels of the crop, mirrored or not
  const ImageU8 img = random_image(40, 48, 7);
  PreprocessOptions opt;
  opt.size = 16;
  opt.normalize = false;
  int flips = 0;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    vitiq::Rng a(seed), b(seed);
    const vitiq::io::ImageF v = train_view(img, opt, a);
    const CropRect r = native_crop_params(40, 48, 16, 8, b);
    const bool flip = b.uniform() < 0.5;
    flips += flip;
    bool same = true;
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t y = 0; y < 16; ++y)
        for (std::size_t x = 0; x < 16; ++x) same = same && v(c, y, x) == expected_pixel(img, r, flip, c, y, x);
    CHECK(same);
  }
  CHECK(flips > 5);
  CHECK(flips < 35);
  // normalisation: (v - mean) / std
  opt.normalize = true;
  opt.hflip = false;
  vitiq::Rng a(3), b(3);
  const vitiq::io::ImageF n = train_view(img, opt, a);
  const CropRect r = native_crop_params(40, 48, 16, 8, b);
  const float got = n(1, 2, 3);  // (xtensor expressions inside CHECK confuse Catch's decomposer)
  CHECK(got == Approx((expected_pixel(img, r, false, 1, 2, 3) - 0.456f) / 0.224f));
}

TEST_CASE("RandomResizedCrop parameters follow torchvision", "[data][preprocess]") {
  vitiq::Rng rng(2);
  for (int i = 0; i < 3000; ++i) {
    const CropRect r = random_resized_crop_params(200, 300, {0.08, 1.0}, {3.0 / 4.0, 4.0 / 3.0}, rng);
    REQUIRE(r.height >= 1);
    REQUIRE(r.width >= 1);
    CHECK(r.top >= 0);
    CHECK(r.left >= 0);
    CHECK(r.top + r.height <= 200);
    CHECK(r.left + r.width <= 300);
    const double share = double(r.height) * r.width / (200.0 * 300.0);
    const double aspect = double(r.width) / r.height;
    if (r.height == 200 && r.width == 266) continue;  // the fallback (3/2 > 4/3: w = round(200 * 4/3))
    // sides are rounded to integers: allow the rounding of each side
    CHECK(share >= 0.08 * (1 - 2.0 / std::min(r.height, r.width)) - 1e-9);
    CHECK(share <= 1.0);
    CHECK(aspect >= 0.75 * (1 - 1.0 / std::min(r.height, r.width)) - 1e-9);
    CHECK(aspect <= 4.0 / 3.0 * (1 + 1.0 / std::min(r.height, r.width)) + 1e-9);
  }
  // ten failed tries: the centre fallback with the aspect clipped to the allowed range
  // (torchvision: in_ratio = 3 > 4/3 -> h = H = 100, w = round(100 * 4/3) = 133, centred)
  CHECK(random_resized_crop_params(100, 300, {1.5, 2.0}, {3.0 / 4.0, 4.0 / 3.0}, rng) == CropRect{0, 83, 100, 133});
  CHECK(random_resized_crop_params(300, 100, {1.5, 2.0}, {3.0 / 4.0, 4.0 / 3.0}, rng) == CropRect{83, 0, 133, 100});
  CHECK(random_resized_crop_params(100, 110, {1.5, 2.0}, {3.0 / 4.0, 4.0 / 3.0}, rng) == CropRect{0, 0, 100, 110});
}

TEST_CASE("resize_crop evaluation is Resize (shorter side) then CenterCrop", "[data][preprocess]") {
  const ImageU8 img = random_image(80, 120, 9);
  PreprocessOptions opt;
  opt.mode = Preprocessing::resize_crop;
  opt.size = 32;
  opt.resize = 40;
  const vitiq::io::ImageF v = eval_view(img, opt);
  // torchvision Resize(40): 80 x 120 -> 40 x int(40 * 120 / 80) = 40 x 60; CenterCrop(32)
  vitiq::io::ImageF ref = vitiq::io::center_crop(vitiq::io::resize_bilinear(vitiq::io::to_chw_float(img), 40, 60), 32);
  vitiq::io::normalize(ref, vitiq::io::imagenet_mean, vitiq::io::imagenet_std);
  REQUIRE(v.shape() == ref.shape());
  CHECK(same_tensor(v, ref));
  // a training view has the model's size
  vitiq::Rng rng(4);
  const vitiq::io::ImageF t = train_view(img, opt, rng);
  CHECK(t.shape(0) == 3);
  CHECK(t.shape(1) == 32);
  CHECK(t.shape(2) == 32);
  Preprocessing p;
  CHECK(parse("resize_crop", p));
  CHECK(p == Preprocessing::resize_crop);
  CHECK(to_string(Preprocessing::native_crop) == "native_crop");
  CHECK(!parse("crop", p));
}

TEST_CASE("tiles: every grid-aligned S x S tile, in row order", "[data][preprocess]") {
  const ImageU8 img = random_image(64, 100, 5);
  const auto t = tiles(img, 32, 0, false);  // 2 rows x 3 columns (100 / 32 = 3)
  REQUIRE(t.shape(0) == 6);
  CHECK(t.shape(1) == 3);
  CHECK(t.shape(2) == 32);
  CHECK(t.shape(3) == 32);
  const CropRect r{32, 64, 32, 32};  // tile 5: row 1, column 2
  bool same = true;
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t y = 0; y < 32; ++y)
      for (std::size_t x = 0; x < 32; ++x) same = same && t(5, c, y, x) == expected_pixel(img, r, false, c, y, x);
  CHECK(same);
  CHECK(tile_rects(256, 256, 64, 64).size() == 16);
  CHECK(tile_rects(256, 256, 64, 32).size() == 49);
  CHECK_THROWS_AS(tiles(img, 80), vitiq::Error);
}

TEST_CASE("batch loader: the same batches whatever the thread count", "[data][loader]") {
  // 21 images in memory and 2 in PNG files
  const fs::path dir = fs::temp_directory_path() / ("vitiq_test_data_loader_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<LoaderSample> samples;
  for (int i = 0; i < 23; ++i) {
    LoaderSample s;
    const ImageU8 img = random_image(40 + 8 * (i % 3), 48, std::uint64_t(100 + i));
    if (i < 2) {
      s.path = dir / ("s" + std::to_string(i) + ".png");
      vitiq::io::write_png(s.path, img);
    } else {
      s.image = std::make_shared<const ImageU8>(img);
    }
    s.label = 1 + i % 5;
    samples.push_back(s);
  }
  auto run = [&](int threads, Preprocessing mode, LoaderCache cache, std::uint64_t epochs) {
    LoaderOptions opt;
    opt.batch_size = 5;
    opt.preprocess.size = 16;
    opt.preprocess.mode = mode;
    opt.seed = 42;
    opt.threads = threads;
    opt.cache = cache;
    BatchLoader loader(samples, opt);
    CHECK(loader.batches_per_epoch() == 5);
    std::vector<Batch> out;
    for (std::uint64_t e = 0; e < epochs; ++e) {
      loader.start_epoch(e);
      Batch b;
      while (loader.next(b)) out.push_back(b);
    }
    return out;
  };
  for (const Preprocessing mode : {Preprocessing::native_crop, Preprocessing::resize_crop}) {
    const auto ref = run(0, mode, LoaderCache::encoded, 2);
    REQUIRE(ref.size() == 10);
    for (const int threads : {1, 3}) {
      const auto other = run(threads, mode, threads == 3 ? LoaderCache::decoded : LoaderCache::none, 2);
      REQUIRE(other.size() == ref.size());
      for (std::size_t k = 0; k < ref.size(); ++k) {
        INFO("threads " << threads << ", batch " << k);
        CHECK(other[k].samples == ref[k].samples);
        CHECK(other[k].labels == ref[k].labels);
        CHECK(same_tensor(other[k].images, ref[k].images));
      }
    }
    // shapes, labels, the last short batch, and each sample once per epoch
    std::multiset<std::size_t> seen;
    for (std::size_t k = 0; k < 5; ++k) {
      CHECK(ref[k].images.shape(0) == (k < 4 ? 5u : 3u));
      CHECK(ref[k].images.shape(1) == 3);
      CHECK(ref[k].images.shape(2) == 16);
      for (std::size_t j = 0; j < ref[k].samples.size(); ++j) {
        seen.insert(ref[k].samples[j]);
        CHECK(ref[k].labels[j] == samples[ref[k].samples[j]].label);
      }
    }
    CHECK(seen.size() == 23);
    CHECK(std::set<std::size_t>(seen.begin(), seen.end()).size() == 23);
    // a new epoch: another order and other views
    CHECK(ref[0].samples != ref[5].samples);
  }
  // one batch rebuilt alone equals the loader's
  {
    LoaderOptions opt;
    opt.batch_size = 5;
    opt.preprocess.size = 16;
    opt.seed = 42;
    opt.threads = 2;
    BatchLoader loader(samples, opt);
    loader.start_epoch(1);
    Batch b0, b1;
    loader.next(b0);
    loader.next(b1);
    xt::xtensor<float, 4> images = xt::xtensor<float, 4>::from_shape(b1.images.shape());
    std::vector<double> labels(b1.samples.size());
    loader.fill(b1.samples, 1, images.data(), labels.data());
    CHECK(same_tensor(images, b1.images));
    // restarting an epoch gives the same first batch again
    loader.start_epoch(1);
    Batch again;
    loader.next(again);
    CHECK(same_tensor(again.images, b0.images));
  }
  // drop_last, and an unreadable file: the error names it and comes out of next()
  {
    LoaderOptions opt;
    opt.batch_size = 5;
    opt.preprocess.size = 16;
    opt.drop_last = true;
    opt.shuffle = false;
    opt.threads = 2;
    std::vector<LoaderSample> bad = samples;
    bad[7].image.reset();
    bad[7].path = dir / "missing.png";
    BatchLoader loader(bad, opt);
    CHECK(loader.batches_per_epoch() == 4);
    loader.start_epoch(0);
    Batch b;
    CHECK(loader.next(b));  // samples 0-4
    std::string msg;
    try {
      loader.next(b);  // samples 5-9: sample 7 is missing
    } catch (const vitiq::Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("missing.png") != std::string::npos);
  }
  fs::remove_all(dir);
}
