// examples/predict.cpp -- vitiq-predict: score image files with a trained model.
//
//   vitiq-predict --preset NAME --weights FILE.safetensors [--json] [--no-normalize] [--no-resize]
//                 [--device cpu|cuda] IMAGE...
//
// For each image: the logits, the class probabilities (softmax of the logits), the arg-max class
// as a 1-based vote (class index + 1) and the expected vote sum_k k p_k, k = 1..K. Images go
// through the model 16 at a time. A bad image is reported on stderr (one line naming it) and
// skipped; the others are still scored, and the exit code is 1. Exit codes: 0 all images scored,
// 1 an error (unknown preset, weights that cannot be loaded, an image that cannot be used),
// 2 a usage error. No exception leaves main(). `--device cuda` runs the same model with
// CudaBackend<float> (examples/cuda_predict.cu, built only where CMake found CUDA: VITIQ_HAS_CUDA);
// on a build without CUDA or a machine without a device it fails with one line and exit code 1.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/io/image.hpp"
#include "vitiq/io/json.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

#if defined(VITIQ_HAS_CUDA)
#include "cuda_predict.hpp"
#endif

namespace {

constexpr const char* program = "vitiq-predict";
constexpr std::size_t max_batch = 16;  // images per forward pass

constexpr const char* usage_text = R"(usage: vitiq-predict --preset NAME --weights FILE.safetensors [options] IMAGE...

Scores each IMAGE (JPEG, PNG, BMP or binary PGM/PPM; converted to RGB) with a vitiq model.

required:
  --preset NAME         model configuration: tiny, cifar, aio, iqa or seed
  --weights FILE        model weights (.safetensors, vitiq or converted PyTorch names)
options:
  --json                one JSON object per line instead of text: keys "image", "logits",
                        "probabilities", "class", "expected_vote"
  --no-resize           refuse images that are not the preset's size (default: bilinear resize
                        to image_size x image_size, as PyTorch's F.interpolate, aspect not kept)
  --no-normalize        feed pixels in [0, 1] (default: subtract the ImageNet mean
                        (0.485, 0.456, 0.406) and divide by the std (0.229, 0.224, 0.225))
  --device cpu|cuda     where the model runs (default cpu); cuda needs a build with CUDA and
                        an NVIDIA GPU
  -h, --help            this text

output, per image:
  logits                the model's K outputs
  probabilities         softmax of the logits
  class                 the arg-max class as a 1-based vote: class index + 1 (1..K)
  expected_vote         sum over k = 1..K of k * p_k

exit status: 0 every image scored; 1 an error (unknown preset, weights that cannot be loaded,
an image that cannot be read or has the wrong size with --no-resize: reported on stderr, the
other images are still scored); 2 a usage error.
)";

struct Options {
  std::string preset;
  std::filesystem::path weights;
  bool json = false;
  bool cuda = false;  // --device cuda
  vitiq::io::Preprocess pre;
  std::vector<std::string> images;
};

/// Usage error: one line on stderr, exit status 2.
struct UsageError {
  std::string message;
};

Options parse_args(int argc, char** argv, bool& help) {
  Options o;
  bool have_preset = false, have_weights = false, options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (options_done || a.empty() || a[0] != '-' || a == "-") {
      o.images.emplace_back(a);
      continue;
    }
    // --name VALUE or --name=VALUE
    std::string_view name = a, inline_value;
    bool has_inline = false;
    if (const auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
      has_inline = true;
    }
    const auto value = [&]() -> std::string {
      if (has_inline) return std::string(inline_value);
      if (i + 1 >= argc) throw UsageError{std::string(name) + " needs a value"};
      return argv[++i];
    };
    const auto flag = [&]() {
      if (has_inline) throw UsageError{std::string(name) + " takes no value"};
    };
    if (name == "--") {
      flag();
      options_done = true;
    } else if (name == "-h" || name == "--help") {
      help = true;
    } else if (name == "--preset") {
      o.preset = value();
      have_preset = true;
    } else if (name == "--weights") {
      o.weights = value();
      have_weights = true;
    } else if (name == "--json") {
      flag();
      o.json = true;
    } else if (name == "--device") {
      const std::string d = value();
      if (d != "cpu" && d != "cuda") throw UsageError{"--device must be cpu or cuda, not '" + d + "'"};
      o.cuda = d == "cuda";
    } else if (name == "--no-resize") {
      flag();
      o.pre.resize = false;
    } else if (name == "--no-normalize") {
      flag();
      o.pre.normalize = false;
    } else {
      throw UsageError{"unknown option '" + std::string(a) + "'"};
    }
  }
  if (help) return o;
  if (!have_preset) throw UsageError{"--preset is required"};
  if (!have_weights) throw UsageError{"--weights is required"};
  if (o.images.empty()) throw UsageError{"no IMAGE given"};
  return o;
}

/// `message`, prefixed with `file` unless it already names it.
std::string naming(const std::string& file, const std::string& message) {
  return message.find(file) != std::string::npos ? message : file + ": " + message;
}

void report(const std::string& message) { std::fprintf(stderr, "%s: %s\n", program, message.c_str()); }


/// A number with enough digits to read back the float or double it came from (%.9g).
std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

/// The scores of one image.
struct Prediction {
  std::vector<float> logits;          // [K]
  std::vector<double> probabilities;  // [K], softmax(logits)
  int vote = 0;                       // arg-max index + 1
  double expected_vote = 0.0;         // sum_k k p_k, k = 1..K
};

/// Softmax (max-subtracted, in double), the 1-based arg-max and the expected vote.
Prediction score(std::span<const float> logits) {
  Prediction p;
  p.logits.assign(logits.begin(), logits.end());
  const double top = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float z : logits) {
    p.probabilities.push_back(std::exp(static_cast<double>(z) - top));
    sum += p.probabilities.back();
  }
  std::size_t best = 0;
  for (std::size_t k = 0; k < p.probabilities.size(); ++k) {
    p.probabilities[k] /= sum;
    p.expected_vote += static_cast<double>(k + 1) * p.probabilities[k];
    if (p.probabilities[k] > p.probabilities[best]) best = k;
  }
  p.vote = static_cast<int>(best) + 1;
  return p;
}

template <class T>
std::string json_array(const std::vector<T>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ", ";
    out += number(static_cast<double>(v[i]));
  }
  return out + "]";
}

void print(const std::string& image, const Prediction& p, bool json) {
  if (json) {
    std::printf("{\"image\": %s, \"logits\": %s, \"probabilities\": %s, \"class\": %d, "
                "\"expected_vote\": %s}\n",
                vitiq::json::escape(image).c_str(), json_array(p.logits).c_str(),
                json_array(p.probabilities).c_str(), p.vote, number(p.expected_vote).c_str());
    return;
  }
  std::printf("%s\n  class %d (1-based), expected vote %.4f\n  logits:       ", image.c_str(), p.vote,
              p.expected_vote);
  for (const float z : p.logits) std::printf(" %.6g", static_cast<double>(z));
  std::printf("\n  probabilities:");
  for (const double q : p.probabilities) std::printf(" %.6f", q);
  std::printf("\n");
}

/// Load the model of preset C, then score every image. Returns false when an image failed.
template <vitiq::Config C>
bool run(const Options& o) {
  static_assert(C.channels == 3, "vitiq-predict reads RGB images: every preset must have 3 channels");
  vitiq::ViT<C> model;
  try {
    vitiq::load_weights(model, o.weights);
  } catch (const vitiq::Error& e) {
    throw vitiq::Error(naming(o.weights.string(), e.what()));
  }
  // Small batches (a few images) run their Linear layers on weights packed once: the parameters
  // do not change from here on (ViT::set_weight_packing).
  model.set_weight_packing(true);

  constexpr std::size_t K = static_cast<std::size_t>(C.num_classes);
  constexpr std::size_t per_image =
      static_cast<std::size_t>(C.channels) * static_cast<std::size_t>(C.image_size) *
      static_cast<std::size_t>(C.image_size);
  std::vector<float> batch(max_batch * per_image);  // [B, C, S, S]
  std::vector<const std::string*> names;             // the images in the batch
  bool all_ok = true;
#if defined(VITIQ_HAS_CUDA)
  // The same model on the GPU: the weights go through the CPU model (loaded and checked above).
  std::unique_ptr<vitiq_examples::DeviceForward> gpu;
  if (o.cuda) gpu = vitiq_examples::make_cuda_forward(o.preset, model.parameters_to_host());
#endif

  for (std::size_t first = 0; first < o.images.size(); first += max_batch) {
    const std::size_t last = std::min(first + max_batch, o.images.size());
    names.clear();
    for (std::size_t i = first; i < last; ++i) {
      const std::string& file = o.images[i];
      try {
        const vitiq::io::ImageF x = vitiq::io::prepare_for_model(file, C.image_size, o.pre);  // [C, S, S]
        std::copy(x.begin(), x.end(), batch.begin() + static_cast<std::ptrdiff_t>(names.size() * per_image));
        names.push_back(&file);
      } catch (const vitiq::Error& e) {
        report(naming(file, e.what()));
        all_ok = false;
      }
    }
    if (names.empty()) continue;
    const std::size_t B = names.size();
    const std::span<const float> images(batch.data(), B * per_image);
#if defined(VITIQ_HAS_CUDA)
    const std::span<const float> logits = gpu ? gpu->forward(images, static_cast<std::ptrdiff_t>(B))
                                              : model.forward(images, static_cast<std::ptrdiff_t>(B));  // [B, K]
#else
    const std::span<const float> logits = model.forward(images, static_cast<std::ptrdiff_t>(B));  // [B, K]
#endif
    for (std::size_t b = 0; b < B; ++b) {
      const auto z = logits.subspan(b * K, K);
      if (!std::all_of(z.begin(), z.end(), [](float v) { return std::isfinite(v); })) {
        report(*names[b] + ": the model produced non-finite logits (check the weights)");
        all_ok = false;
        continue;
      }
      print(*names[b], score(z), o.json);
    }
  }
  return all_ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool help = false;
    Options o;
    try {
      o = parse_args(argc, argv, help);
    } catch (const UsageError& e) {
      report(e.message + " (see --help)");
      return 2;
    }
    if (help) {
      std::fputs(usage_text, stdout);
      return 0;
    }

    if (o.cuda) {  // fail before any image is read
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

    bool ok = true;
    const bool known = vitiq::dispatch_preset(o.preset, [&]<vitiq::Config C>() { ok = run<C>(o); });
    if (!known) {
      std::string names;
      for (const std::string_view n : vitiq::preset_names) {
        if (!names.empty()) names += ", ";
        names += n;
      }
      report("unknown preset '" + o.preset + "' (known: " + names + ")");
      return 1;
    }
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      report("cannot write the results to standard output");
      return 1;
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    report(e.what());
    return 1;
  } catch (...) {
    report("unknown error");
    return 1;
  }
}
