// vitiq/eval/predict_image.hpp -- scoring image files with a trained model the way vitiq-eval
// scores the test stimuli of a study: decode -> vitiq::Stimulus -> TileEvalSource (all
// non-overlapping native-resolution S x S tiles, each under 1, 2 or 8 symmetries) ->
// vitiq::predict_probabilities (the softmax of every view, averaged). vitiq-predict and its tests
// use this header; a model card (vitiq/io/model_card.hpp) says which view a model was trained for.
//
// Invariant: score_views() returns exactly the probabilities predict_probabilities() computes for
// the same model and source (it calls it, through a LogitRecorder that only copies the logits out),
// so an image scored here and the same stimulus in vitiq-eval's predictions.csv agree up to the
// rounding of a different forward batch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "vitiq/config.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/train/trainer.hpp"

namespace vitiq::eval {

/// @brief Decode an image file into a Stimulus at native resolution (RGB, as vitiq-eval reads the
/// stimuli of a study); the stimulus is named after the file.
/// @throws IoError / FormatError naming the file when it cannot be read or decoded
inline Stimulus load_stimulus(const std::filesystem::path& path) {
  const io::ImageU8 img = io::load_image(path);
  Stimulus s;
  s.name = path.string();
  s.height = int(img.shape()[0]);
  s.width = int(img.shape()[1]);
  s.rgb.assign(img.begin(), img.end());
  return s;
}

/// @brief Check that a stimulus holds at least one S x S tile.
/// @throws Error "<file>: image is W x H (width x height), smaller than one S x S tile of the model
/// (...)" naming the file and both sizes
inline void check_holds_a_tile(const Stimulus& s, int S) {
  if (s.height >= S && s.width >= S) return;
  throw Error(s.name + ": image is " + std::to_string(s.width) + " x " + std::to_string(s.height) +
              " (width x height), smaller than one " + std::to_string(S) + " x " + std::to_string(S) +
              " tile of the model (score it with --view resize)");
}

/// @brief Whole-image views: each stimulus bilinear-resized to S x S (PyTorch's F.interpolate,
/// align_corners = false, aspect not kept; kept as it is when already S x S), one view per
/// stimulus. The view of weights without a model card, as vitiq-predict always scored before cards.
template <class T>
class ResizeEvalSource : public EvalSource<T> {
 public:
  /// @param stimuli   kept by reference
  /// @param S         the model's image_size
  /// @param normalize ImageNet mean / std after scaling to [0, 1]
  ResizeEvalSource(const std::vector<Stimulus>& stimuli, int S, bool normalize = true)
      : stimuli_(stimuli), S_(S), normalize_(normalize) {}
  /// @brief Number of stimuli.
  std::size_t size() const override { return stimuli_.size(); }
  /// @brief One view per stimulus.
  std::size_t views(std::size_t) const override { return 1; }
  /// @brief The resized stimulus i: images [1, 3, S, S].
  void fill_views(std::size_t i, T* images) override {
    const Stimulus& s = stimuli_[i];
    io::ImageU8 u8 = io::ImageU8::from_shape({std::size_t(s.height), std::size_t(s.width), std::size_t(3)});
    std::copy(s.rgb.begin(), s.rgb.end(), u8.begin());
    const io::ImageF x = io::prepare_for_model(u8, S_, normalize_);
    std::transform(x.begin(), x.end(), images, [](float v) { return T(v); });
  }
  /// @brief The label of stimulus i.
  double vote(std::size_t i) const override { return stimuli_[i].vote; }

 private:
  const std::vector<Stimulus>& stimuli_;
  int S_;
  bool normalize_;
};

/// @brief A model as predict_probabilities() sees it, keeping a copy of the logits of every view
/// in the order the views are forwarded (stimulus by stimulus, view by view).
///
/// Model is anything with `T`, `config`, `forward(span<const T>, batch)` returning host logits
/// [batch, K], `training()` and `set_training(bool)`: a ViT on any backend, or an adapter.
template <class Model>
class LogitRecorder {
 public:
  using T = typename Model::T;
  static constexpr Config config = Model::config;

  /// @param model kept by reference
  explicit LogitRecorder(Model& model) : model_(model) {}
  /// @brief The wrapped model's training flag.
  bool training() const { return model_.training(); }
  /// @brief Sets the wrapped model's training flag.
  void set_training(bool on) { model_.set_training(on); }
  /// @brief The wrapped model's forward; its logits [batch, K] are appended to logits().
  std::span<const T> forward(std::span<const T> images, long batch) {
    const auto z = model_.forward(images, batch);
    logits_.insert(logits_.end(), z.begin(), z.begin() + batch * long(config.num_classes));
    return z;
  }
  /// @brief Every forwarded view's logits [views, K].
  const std::vector<T>& logits() const { return logits_; }

 private:
  Model& model_;
  std::vector<T> logits_;
};

/// @brief The scores of one image.
struct ImageScores {
  std::vector<double> logits;         ///< [K] mean over the views of the logits
  std::vector<double> probabilities;  ///< [K] mean over the views of softmax(logits of the view)
  int vote = 0;                       ///< 1-based arg-max of the probabilities
  double expected_vote = 0;           ///< sum_k k p_k, k = 1..K
  std::size_t views = 0;              ///< views averaged
  bool finite = true;                 ///< false when a view gave a non-finite logit
};

/// @brief Score every stimulus of `source` with `model`: predict_probabilities() (the code path
/// of vitiq-eval), plus the mean logits, the arg-max and the expected vote.
/// @param max_batch views per forward (predict_probabilities' default, as vitiq-eval)
/// @return one ImageScores per stimulus of source, in order
template <class Model>
std::vector<ImageScores> score_views(Model& model, EvalSource<typename Model::T>& source, int max_batch = 64) {
  constexpr std::size_t K = std::size_t(Model::config.num_classes);
  LogitRecorder<Model> recorder(model);
  const std::vector<double> probs = predict_probabilities(recorder, source, max_batch);  // [n, K]
  std::vector<ImageScores> out(source.size());
  std::size_t view = 0;
  for (std::size_t i = 0; i < source.size(); ++i) {
    ImageScores& s = out[i];
    s.views = source.views(i);
    s.logits.assign(K, 0.0);
    for (std::size_t v = 0; v < s.views; ++v, ++view)
      for (std::size_t k = 0; k < K; ++k) {
        const double z = double(recorder.logits()[view * K + k]);
        s.finite = s.finite && std::isfinite(z);
        s.logits[k] += z / double(s.views);
      }
    s.probabilities.assign(probs.begin() + std::ptrdiff_t(i * K), probs.begin() + std::ptrdiff_t((i + 1) * K));
    std::size_t best = 0;
    for (std::size_t k = 0; k < K; ++k) {
      s.expected_vote += double(k + 1) * s.probabilities[k];
      if (s.probabilities[k] > s.probabilities[best]) best = k;
    }
    s.vote = int(best) + 1;
  }
  return out;
}

/// @brief How images are shown to a model: the card's view unless flags say otherwise.
struct ViewChoice {
  InputView view = InputView::native_tiles;  ///< tiles or a whole-image resize
  int symmetries = 1;                        ///< views per tile (tiles only): 1, 2 or 8
  bool normalize = true;                     ///< ImageNet mean / std
};

/// @brief Score decoded stimuli with `model` under `choice` (TileEvalSource for native tiles,
/// ResizeEvalSource for a resize). Every stimulus must hold a tile for the tile view
/// (check_holds_a_tile()).
template <class Model>
std::vector<ImageScores> score_stimuli(Model& model, const std::vector<Stimulus>& stimuli, const ViewChoice& choice,
                                       int max_batch = 64) {
  using T = typename Model::T;
  constexpr int S = Model::config.image_size;
  if (choice.view == InputView::native_tiles) {
    for (const Stimulus& s : stimuli) check_holds_a_tile(s, S);
    TileEvalSource<T> source(stimuli, S, choice.normalize, choice.symmetries);
    return score_views(model, source, max_batch);
  }
  ResizeEvalSource<T> source(stimuli, S, choice.normalize);
  return score_views(model, source, max_batch);
}

}  // namespace vitiq::eval
