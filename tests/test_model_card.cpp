// tests/test_model_card.cpp -- the model card (vitiq/io/model_card.hpp) and the scoring path of
// vitiq-predict (vitiq/eval/predict_image.hpp): a card survives metadata and a weights file, every
// malformed field is a FormatError naming the file and the key, and an image scored the way
// vitiq-predict scores it gives the probabilities of TileEvalSource + predict_probabilities (the
// code path of vitiq-eval).
#include "support/catch.hpp"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/eval/predict_image.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / ("vitiq_test_card_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

vitiq::ModelCard example_card() {
  vitiq::ModelCard c;
  c.preset = "tiny";
  c.view = vitiq::InputView::native_tiles;
  c.tile_size = 32;
  c.symmetries = 8;
  c.normalize = true;
  c.labels = vitiq::LabelKind::vote;
  c.observer = "7";
  c.study = "/data/study";
  c.split_digest = "0123456789abcdef";
  return c;
}

void require_same(const vitiq::ModelCard& a, const vitiq::ModelCard& b) {
  CHECK(a.preset == b.preset);
  CHECK(a.view == b.view);
  CHECK(a.tile_size == b.tile_size);
  CHECK(a.symmetries == b.symmetries);
  CHECK(a.normalize == b.normalize);
  CHECK(a.labels == b.labels);
  CHECK(a.observer == b.observer);
  CHECK(a.study == b.study);
  CHECK(a.split_digest == b.split_digest);
}

/// A stimulus of random pixels (a fixed seed).
vitiq::Stimulus random_stimulus(const std::string& name, int h, int w, std::uint64_t seed) {
  vitiq::Stimulus s;
  s.name = name;
  s.height = h;
  s.width = w;
  vitiq::Rng rng(seed);
  s.rgb.resize(std::size_t(h) * std::size_t(w) * 3);
  for (auto& v : s.rgb) v = std::uint8_t(rng.below(256));
  return s;
}

constexpr auto Tiny = vitiq::presets::tiny;

}  // namespace

TEST_CASE("a model card survives to_metadata / from_metadata", "[card]") {
  vitiq::ModelCard c = example_card();
  require_same(*vitiq::ModelCard::from_metadata(c.to_metadata(), "x"), c);
  c.view = vitiq::InputView::resize;
  c.symmetries = 1;
  c.normalize = false;
  c.observer = "";  // AIO0
  for (auto labels : {vitiq::LabelKind::vote, vitiq::LabelKind::band, vitiq::LabelKind::qband, vitiq::LabelKind::mos}) {
    c.labels = labels;
    require_same(*vitiq::ModelCard::from_metadata(c.to_metadata(), "x"), c);
  }
  c.symmetries = 2;
  require_same(*vitiq::ModelCard::from_metadata(c.to_metadata(), "x"), c);
  // Metadata without "card.version" has no card (weights from before cards, or from PyTorch).
  CHECK_FALSE(vitiq::ModelCard::from_metadata({}, "x").has_value());
  CHECK_FALSE(vitiq::ModelCard::from_metadata({{"format", "vitiq-weights"}, {"card.preset", "tiny"}}, "x").has_value());
}

TEST_CASE("each malformed card field is a FormatError naming the file and the key", "[card]") {
  const auto good = example_card().to_metadata();
  const std::map<std::string, std::vector<std::string>> bad{
      {"card.version", {"2", "", "one"}},
      {"card.view", {"tiles", "", "Resize"}},
      {"card.tile_size", {"0", "-32", "32px", "", "1e3", "99999999999"}},
      {"card.symmetries", {"3", "4", "0", "9", "two", ""}},
      {"card.normalize", {"yes", "true", "", "ImageNet"}},
      {"card.labels", {"votes", "", "MOS"}},
  };
  for (const auto& [key, values] : bad)
    for (const auto& v : values) {
      INFO(key << " = '" << v << "'");
      auto md = good;
      md[key] = v;
      REQUIRE_THROWS_AS(vitiq::ModelCard::from_metadata(md, "runs/aio0/best.safetensors"), vitiq::FormatError);
      REQUIRE_THROWS_WITH(vitiq::ModelCard::from_metadata(md, "runs/aio0/best.safetensors"),
                          Contains("runs/aio0/best.safetensors") && Contains("'" + key + "'"));
    }
  // A card with a field missing is malformed too, never a silent default.
  for (const auto& [key, value] : good) {
    if (key == "card.version") continue;
    INFO("without " << key);
    auto md = good;
    md.erase(key);
    REQUIRE_THROWS_AS(vitiq::ModelCard::from_metadata(md, "w.safetensors"), vitiq::FormatError);
    REQUIRE_THROWS_WITH(vitiq::ModelCard::from_metadata(md, "w.safetensors"),
                        Contains("w.safetensors") && Contains("'" + key + "'") && Contains("missing"));
  }
}

TEST_CASE("weights saved with a card give the card back, and still load", "[card]") {
  const fs::path dir = temp_dir();
  const fs::path path = dir / "carded.safetensors";
  vitiq::ViT<Tiny> model({}, 3);
  // A weights file of before cards has none.
  vitiq::save_weights(model, dir / "plain.safetensors");
  CHECK_FALSE(vitiq::read_model_card(dir / "plain.safetensors").has_value());
  // Load weights and save them again with the card, as vitiq-train writes it.
  vitiq::ViT<Tiny> loaded;
  vitiq::load_weights(loaded, VITIQ_TEST_DATA_DIR "/predict_tiny.safetensors");
  const vitiq::ModelCard card = example_card();
  vitiq::save_weights(loaded, path, vitiq::NamingScheme::current, card.to_metadata());
  const auto back = vitiq::read_model_card(path);
  REQUIRE(back.has_value());
  require_same(*back, card);
  vitiq::ViT<Tiny> again;
  vitiq::load_weights(again, path);
  CHECK(again.parameters_to_host() == loaded.parameters_to_host());

  // A malformed card in a file names the file.
  auto md = card.to_metadata();
  md["card.symmetries"] = "5";
  vitiq::save_weights(loaded, dir / "bad.safetensors", vitiq::NamingScheme::current, md);
  REQUIRE_THROWS_WITH(vitiq::read_model_card(dir / "bad.safetensors"),
                      Contains((dir / "bad.safetensors").string()) && Contains("'card.symmetries'"));
  REQUIRE_THROWS_AS(vitiq::read_model_card(dir / "missing.safetensors"), vitiq::IoError);

  // file_digest: FNV-1a 64, 16 hex digits; the empty file gives the offset basis.
  vitiq::io::atomic_write(dir / "empty", "");
  CHECK(vitiq::file_digest(dir / "empty") == "cbf29ce484222325");
  vitiq::io::atomic_write(dir / "a", "a");
  CHECK(vitiq::file_digest(dir / "a") == "af63dc4c8601ec8c");  // FNV-1a 64 of "a"
  REQUIRE_THROWS_AS(vitiq::file_digest(dir / "missing"), vitiq::IoError);
  fs::remove_all(dir);
}

TEST_CASE("vitiq-predict's scoring gives TileEvalSource + predict_probabilities", "[card]") {
  const fs::path dir = temp_dir();
  // A carded tiny model, read back from its file as vitiq-predict reads it.
  vitiq::ViT<Tiny> trained({}, 11);
  vitiq::ModelCard card = example_card();
  card.symmetries = 2;
  vitiq::save_weights(trained, dir / "aio.safetensors", vitiq::NamingScheme::current, card.to_metadata());
  const auto read = vitiq::read_model_card(dir / "aio.safetensors");
  REQUIRE(read.has_value());
  vitiq::ViT<Tiny> model;
  vitiq::load_weights(model, dir / "aio.safetensors");

  // Stimuli with 1, 6 and 12 tiles, sides not all multiples of 32 (the rest is not seen).
  std::vector<vitiq::Stimulus> stimuli{random_stimulus("a.png", 32, 32, 1), random_stimulus("b.png", 70, 100, 2),
                                       random_stimulus("c.png", 96, 128, 3)};
  for (int sym : {1, 2, 8})
    for (bool normalize : {true, false}) {
      INFO("symmetries " << sym << ", normalize " << normalize);
      vitiq::TileEvalSource<float> source(stimuli, Tiny.image_size, normalize, sym);
      const std::vector<double> expected = vitiq::predict_probabilities(model, source);
      const auto got = vitiq::eval::score_stimuli(
          model, stimuli, {.view = vitiq::InputView::native_tiles, .symmetries = sym, .normalize = normalize});
      REQUIRE(got.size() == stimuli.size());
      for (std::size_t i = 0; i < stimuli.size(); ++i) {
        CHECK(got[i].views == source.views(i));
        CHECK(got[i].finite);
        double e = 0;
        for (std::size_t k = 0; k < 5; ++k) {
          CHECK(got[i].probabilities[k] == expected[i * 5 + k]);  // the very same computation
          e += double(k + 1) * got[i].probabilities[k];
        }
        CHECK(got[i].expected_vote == Approx(e).epsilon(1e-12));
      }
    }
  CHECK(vitiq::eval::score_stimuli(model, stimuli, {.symmetries = 8})[2].views == 3 * 4 * 8);

  // The card's view, applied as vitiq-predict applies it, on one stimulus alone (other batches
  // than in an evaluation of all three) and with packed weights (few rows): within 1e-6.
  const vitiq::eval::ViewChoice choice{.view = read->view, .symmetries = read->symmetries, .normalize = read->normalize};
  vitiq::TileEvalSource<float> all(stimuli, Tiny.image_size, true, 2);
  const std::vector<double> eval = vitiq::predict_probabilities(model, all);
  vitiq::ViT<Tiny> packed;
  vitiq::load_weights(packed, dir / "aio.safetensors");
  packed.set_weight_packing(true);
  for (std::size_t i = 0; i < stimuli.size(); ++i) {
    const auto one = vitiq::eval::score_stimuli(packed, std::vector<vitiq::Stimulus>{stimuli[i]}, choice);
    for (std::size_t k = 0; k < 5; ++k) CHECK(one[0].probabilities[k] == Approx(eval[i * 5 + k]).margin(1e-6));
  }

  // The logits are the mean over the views.
  {
    vitiq::TileEvalSource<float> src(stimuli, Tiny.image_size, true, 1);
    std::vector<float> views(src.views(1) * 3 * 32 * 32);
    src.fill_views(1, views.data());
    const auto z = model.forward(views, long(src.views(1)));
    std::vector<double> mean(5, 0.0);
    for (std::size_t v = 0; v < src.views(1); ++v)
      for (std::size_t k = 0; k < 5; ++k) mean[k] += double(z[v * 5 + k]) / double(src.views(1));
    const auto got = vitiq::eval::score_stimuli(model, stimuli, {.symmetries = 1});
    for (std::size_t k = 0; k < 5; ++k) CHECK(got[1].logits[k] == Approx(mean[k]).margin(1e-6));
  }

  // An image smaller than one tile: an error naming the file and both sizes.
  const std::vector<vitiq::Stimulus> small{random_stimulus("small.png", 20, 40, 4)};
  REQUIRE_THROWS_WITH(vitiq::eval::score_stimuli(model, small, {}),
                      Contains("small.png") && Contains("40 x 20") && Contains("32 x 32"));

  // The resize view is the old vitiq-predict: prepare_for_model, one forward.
  vitiq::io::write_png(dir / "odd.png", vitiq::io::ImageU8(xt::adapt(small[0].rgb, std::vector<std::size_t>{20, 40, 3})));
  const vitiq::Stimulus decoded = vitiq::eval::load_stimulus(dir / "odd.png");
  CHECK(decoded.rgb == small[0].rgb);
  const vitiq::io::ImageF x = vitiq::io::prepare_for_model(dir / "odd.png", 32, {});
  const auto z = model.forward(std::span<const float>(x.data(), x.size()), 1);
  const auto r = vitiq::eval::score_stimuli(model, std::vector<vitiq::Stimulus>{decoded}, {.view = vitiq::InputView::resize});
  CHECK(r[0].views == 1);
  for (std::size_t k = 0; k < 5; ++k) CHECK(r[0].logits[k] == Approx(double(z[k])).margin(1e-6));
  fs::remove_all(dir);
}
