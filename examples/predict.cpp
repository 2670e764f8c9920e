// examples/predict.cpp -- vitiq-predict: score image files with a trained model, the way the model
// was trained and is evaluated.
//
//   vitiq-predict --weights FILE.safetensors [--preset NAME] [--view tiles|resize]
//                 [--symmetries 1|2|8] [--no-normalize] [--json] [--device cpu|cuda] IMAGE...
//
// The weights' model card (vitiq/io/model_card.hpp, written by vitiq-train) gives the preset and
// the view: by default an image is scored as vitiq-eval scores a test stimulus, all its
// non-overlapping native-resolution tiles of the model's size, each under the card's symmetries,
// the softmax averaged over these views (vitiq/eval/predict_image.hpp: Stimulus -> TileEvalSource
// -> predict_probabilities, the very code of vitiq-eval). Flags override the card. Weights without
// a card are scored as before cards (the whole image resized to the model's size) with a warning.
//
// For each image: the logits (mean over the views), the class probabilities (mean over the views
// of the softmax), the arg-max class as a 1-based vote and the expected vote sum_k k p_k, the view
// and the number of views. A bad image (unreadable, or smaller than one tile) is reported on
// stderr (one line naming it) and skipped; the others are still scored, and the exit code is 1.
// Exit codes: 0 all images scored, 1 an error, 2 a usage error. No exception leaves main().
// `--device cuda` runs the same model and the same views with CudaBackend<float>
// (examples/cuda_predict.cu, built only where CMake found CUDA: VITIQ_HAS_CUDA); on a build
// without CUDA or a machine without a device it fails with one line and exit code 1.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cli.hpp"
#include "vitiq/eval/predict_image.hpp"
#include "vitiq/io/json.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/io/safetensors.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

#if defined(VITIQ_HAS_CUDA)
#include "cuda_predict.hpp"
#endif

namespace {

constexpr const char* program = "vitiq-predict";
constexpr std::size_t chunk = 256;  // images decoded and scored at a time (bounds the memory)

constexpr const char* footer_text = R"(
The weights' model card (written by vitiq-train) gives the preset, the view and the
normalisation; flags override it. Default view: every non-overlapping native-resolution tile
of the model's size (the JPEG artefacts stay intact), each under the card's symmetries, the
softmax averaged over these views: the numbers vitiq-eval reports for the same stimulus.
Weights without a card: --preset is required and the default view is resize (with a warning).

output, per image (--json: one object per line with these keys, and "image"):
  logits                the model's K outputs, mean over the views
  probabilities         mean over the views of softmax(logits of the view)
  class                 the arg-max class as a 1-based vote: class index + 1 (1..K)
  expected_vote         sum over k = 1..K of k * p_k
  view                  native_tiles or resize
  views                 number of views averaged (tiles x symmetries; 1 for resize)

exit status: 0 every image scored; 1 an error (unknown or disagreeing preset, weights that
cannot be loaded, an image that cannot be read or is smaller than one tile: reported on
stderr, the other images are still scored); 2 a usage error.
)";

struct Options {
  std::string preset;  // "" = the card's
  std::filesystem::path weights;
  std::string view;  // "" = the card's; "tiles" or "resize"
  int symmetries = 0;  // 0 = the card's
  bool no_normalize = false;
  bool json = false;
  bool cuda = false;  // --device cuda
  std::vector<std::string> images;
};

/// What the weights file and the flags decide together.
struct Plan {
  std::string preset;
  vitiq::eval::ViewChoice choice;
  std::optional<vitiq::ModelCard> card;
  std::string warning;  // printed after the scores when not empty
};

/// `message`, prefixed with `file` unless it already names it.
std::string naming(const std::string& file, const std::string& message) {
  return message.find(file) != std::string::npos ? message : file + ": " + message;
}

void report(const std::string& message) { std::fprintf(stderr, "%s: %s\n", program, message.c_str()); }

Options parse_args(int argc, char** argv) {
  Options o;
  CLI::App app("Scores each IMAGE (JPEG, PNG, BMP or binary PGM/PPM; converted to RGB) with a vitiq model.",
               program);
  app.footer(footer_text);
  app.add_option("--weights", o.weights, "model weights (.safetensors, vitiq or converted PyTorch names)")
      ->required()
      ->type_name("FILE");
  app.add_option("--preset", o.preset,
                 "model configuration: tiny, cifar, aio, iqa or seed (default: the model card's; required "
                 "for weights without a card; must agree with the card)")
      ->check(vitiq::cli::preset_name());
  app.add_option("--view", o.view,
                 "tiles: all non-overlapping native-resolution tiles of the model's size, averaged; resize: "
                 "the whole image resized (bilinear, aspect not kept) to the model's size (default: the "
                 "card's; resize for weights without a card)")
      ->check(CLI::IsMember({"tiles", "resize"}))
      ->type_name("V");
  app.add_option("--symmetries", o.symmetries,
                 "views per tile (tile view): 1 as it is, 2 also mirrored left-right, 8 every symmetry of the "
                 "square (default: the card's; 1 without a card)")
      ->check(CLI::IsMember({1, 2, 8}))
      ->type_name("N");
  app.add_flag("--no-normalize", o.no_normalize,
               "feed pixels in [0, 1] (default: as the card says; without a card the ImageNet mean "
               "(0.485, 0.456, 0.406) is subtracted and the std (0.229, 0.224, 0.225) divides)");
  app.add_flag("--json", o.json, "one JSON object per line instead of text");
  std::string device = "cpu";
  app.add_option("--device", device, "where the model runs (default cpu); cuda needs a build with CUDA and an NVIDIA GPU")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->type_name("D");
  app.add_option("images", o.images, "image files")->type_name("IMAGE");
  vitiq::cli::parse(app, argc, argv);
  o.cuda = device == "cuda";
  if (o.images.empty()) vitiq::cli::usage_error(program, "no IMAGE given");
  return o;
}

/// The preset and the view of `weights` under the flags `o`. Exits 2 when weights without a card
/// get no --preset; throws vitiq::Error for a card that disagrees with --preset or with itself.
Plan make_plan(const Options& o, const vitiq::io::SafetensorsFile& file) {
  Plan p;
  const std::string w = o.weights.string();
  p.card = vitiq::ModelCard::from_metadata(file.metadata(), w);
  if (p.card) {
    const vitiq::ModelCard& c = *p.card;
    if (!o.preset.empty() && o.preset != c.preset)
      throw vitiq::Error(w + ": --preset " + o.preset + " disagrees with the model card's preset " + c.preset);
    p.preset = c.preset;
    p.choice.view = c.view;
    p.choice.symmetries = c.symmetries;
    p.choice.normalize = c.normalize;
  } else {
    if (o.preset.empty())
      vitiq::cli::usage_error(program, w + " has no model card: --preset is required");
    p.preset = o.preset;
    p.choice.view = vitiq::InputView::resize;
    p.choice.symmetries = 1;
    p.choice.normalize = true;
    if (o.view.empty())
      p.warning = "warning: " + w + " has no model card: each image was resized whole to the model's input " +
                  "(as vitiq-predict did before cards), not scored as native tiles like vitiq-eval; choose " +
                  "with --view tiles|resize";
  }
  if (!o.view.empty()) p.choice.view = o.view == "tiles" ? vitiq::InputView::native_tiles : vitiq::InputView::resize;
  if (o.symmetries != 0) {
    if (p.choice.view != vitiq::InputView::native_tiles)
      vitiq::cli::usage_error(program, "--symmetries applies to the tile view only (the view is resize)");
    p.choice.symmetries = o.symmetries;
  }
  if (p.choice.view == vitiq::InputView::resize) p.choice.symmetries = 1;
  if (o.no_normalize) p.choice.normalize = false;
  return p;
}

/// A number with enough digits to read back the float or double it came from (%.9g).
std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string json_array(const std::vector<double>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ", ";
    out += number(v[i]);
  }
  return out + "]";
}

/// Probabilities with 17 significant digits (as vitiq-eval's predictions.csv), the rest with 9.
std::string json_array17(const std::vector<double>& v) {
  std::string out = "[";
  char buf[40];
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.17g", i > 0 ? ", " : "", v[i]);
    out += buf;
  }
  return out + "]";
}

void print(const std::string& image, const vitiq::eval::ImageScores& p, vitiq::InputView view, bool json) {
  const std::string view_name(vitiq::to_string(view));
  if (json) {
    std::printf("{\"image\": %s, \"logits\": %s, \"probabilities\": %s, \"class\": %d, "
                "\"expected_vote\": %s, \"view\": \"%s\", \"views\": %zu}\n",
                vitiq::json::escape(image).c_str(), json_array(p.logits).c_str(), json_array17(p.probabilities).c_str(),
                p.vote, number(p.expected_vote).c_str(), view_name.c_str(), p.views);
    return;
  }
  std::printf("%s\n  class %d (1-based), expected vote %.4f (%s, %zu view%s)\n  logits:       ", image.c_str(), p.vote,
              p.expected_vote, view_name.c_str(), p.views, p.views == 1 ? "" : "s");
  for (const double z : p.logits) std::printf(" %.6g", z);
  std::printf("\n  probabilities:");
  for (const double q : p.probabilities) std::printf(" %.6f", q);
  std::printf("\n");
}

#if defined(VITIQ_HAS_CUDA)
/// The GPU model as predict_probabilities sees a model (evaluation mode only).
template <vitiq::Config C>
struct DeviceModel {
  using T = float;
  static constexpr vitiq::Config config = C;
  vitiq_examples::DeviceForward& gpu;
  bool training() const { return false; }
  void set_training(bool) {}
  std::span<const float> forward(std::span<const float> images, long batch) { return gpu.forward(images, batch); }
};
#endif

/// Load the model of preset C, then score every image; `scored` counts the images printed.
/// Returns false when an image failed.
template <vitiq::Config C>
bool run(const Options& o, const Plan& plan, const vitiq::io::SafetensorsFile& file, std::size_t& scored) {
  static_assert(C.channels == 3, "vitiq-predict reads RGB images: every preset must have 3 channels");
  const std::string w = o.weights.string();
  if (plan.card && plan.card->tile_size != C.image_size)
    throw vitiq::FormatError(w + ": metadata 'card.tile_size': " + std::to_string(plan.card->tile_size) +
                             " is not the " + std::to_string(C.image_size) + "-pixel input of preset " + plan.preset);
  vitiq::ViT<C> model;
  try {
    vitiq::load_weights(model, file);
  } catch (const vitiq::Error& e) {
    throw vitiq::Error(naming(w, e.what()));
  }
  // Batches of few rows (one resized image, a small image's few tiles) run their Linear layers on
  // weights packed once: the parameters do not change from here on (ViT::set_weight_packing).
  // Larger tile batches use the GEMMs, as vitiq-eval.
  model.set_weight_packing(true);
#if defined(VITIQ_HAS_CUDA)
  // The same model on the GPU: the weights go through the CPU model (loaded and checked above).
  std::unique_ptr<vitiq_examples::DeviceForward> gpu;
  if (o.cuda) gpu = vitiq_examples::make_cuda_forward(plan.preset, model.parameters_to_host());
#endif

  bool all_ok = true;
  std::vector<vitiq::Stimulus> stimuli;
  for (std::size_t first = 0; first < o.images.size(); first += chunk) {
    const std::size_t last = std::min(first + chunk, o.images.size());
    stimuli.clear();
    for (std::size_t i = first; i < last; ++i) {
      const std::string& name = o.images[i];
      try {
        vitiq::Stimulus s = vitiq::eval::load_stimulus(name);
        s.name = name;
        if (plan.choice.view == vitiq::InputView::native_tiles) vitiq::eval::check_holds_a_tile(s, C.image_size);
        stimuli.push_back(std::move(s));
      } catch (const vitiq::Error& e) {
        report(naming(name, e.what()));
        all_ok = false;
      }
    }
    if (stimuli.empty()) continue;
    std::vector<vitiq::eval::ImageScores> scores;
#if defined(VITIQ_HAS_CUDA)
    if (gpu) {
      DeviceModel<C> device{*gpu};
      scores = vitiq::eval::score_stimuli(device, stimuli, plan.choice);
    } else {
      scores = vitiq::eval::score_stimuli(model, stimuli, plan.choice);
    }
#else
    scores = vitiq::eval::score_stimuli(model, stimuli, plan.choice);
#endif
    for (std::size_t i = 0; i < stimuli.size(); ++i) {
      if (!scores[i].finite) {
        report(stimuli[i].name + ": the model produced non-finite logits (check the weights)");
        all_ok = false;
        continue;
      }
      print(stimuli[i].name, scores[i], plan.choice.view, o.json);
      ++scored;
    }
  }
  return all_ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);

    if (o.cuda) {  // fail before any file is read
#if defined(VITIQ_HAS_CUDA)
      if (const std::string why = vitiq_examples::cuda_unavailable_reason(); !why.empty()) {
        report("--device cuda: " + why);
        return 1;
      }
#else
      report("--device cuda: this vitiq-predict was built without CUDA (no CUDA compiler and toolkit found by CMake)");
      return 1;
#endif
    }

    const std::string w = o.weights.string();
    std::optional<vitiq::io::SafetensorsFile> file;
    try {
      file.emplace(vitiq::io::SafetensorsFile::load(o.weights));
    } catch (const vitiq::Error& e) {
      throw vitiq::Error(naming(w, e.what()));
    }
    const Plan plan = make_plan(o, *file);

    bool ok = true;
    std::size_t scored = 0;
    const bool known =
        vitiq::dispatch_preset(plan.preset, [&]<vitiq::Config C>() { ok = run<C>(o, plan, *file, scored); });
    if (!known) {  // only a card can name a preset the validator has not seen
      std::string names;
      for (const std::string_view n : vitiq::preset_names) names += (names.empty() ? "" : ", ") + std::string(n);
      report(w + ": metadata 'card.preset': unknown preset '" + plan.preset + "' (known: " + names + ")");
      return 1;
    }
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      report("cannot write the results to standard output");
      return 1;
    }
    // After the scores and only with some: an error stays the one line on stderr when nothing
    // was scored or the scores could not be written.
    if (!plan.warning.empty() && scored > 0) report(plan.warning);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    report(e.what());
    return 1;
  } catch (...) {
    report("unknown error");
    return 1;
  }
}
