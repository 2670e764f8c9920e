// vitiq/train/stimulus_set.hpp -- decoded stimuli held in memory, and the two views a quality
// model needs of them: random native-resolution crops for training (offsets on the 8-pixel JPEG
// grid, optional horizontal flip or any symmetry of the square, optional loss of a random share
// of the colour, no rescaling: compression artefacts stay intact) and all grid-aligned tiles for
// evaluation (predictions averaged over the tiles of a stimulus).
//
// load_stimuli() decodes a study's images into Stimulus values (vitiq::io: link vitiq::io).
//
// Randomness of a crop comes from (seed, epoch, sample index) only, so batches do not depend on
// thread count or on which samples were drawn before.
#pragma once

#include <array>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/train/trainer.hpp"

namespace vitiq {

/// @brief One decoded stimulus: RGB pixels [h, w, 3] row-major, and its label.
struct Stimulus {
  std::string name;  ///< file name (as in the rating tables)
  int height = 0;    ///< h, pixels
  int width = 0;     ///< w, pixels
  std::vector<std::uint8_t> rgb;  ///< [h, w, 3]
  double vote = 0;                ///< 1-based vote, or MOS, or band
};

/// @brief How crops are taken for training.
struct CropOptions {
  int grid = 8;            ///< crop offsets are multiples of this (8: the JPEG block grid); 1 = any offset
  bool hflip = true;       ///< random horizontal flip
  bool dihedral = false;   ///< also a random vertical flip and transpose: any of the 8 symmetries of
                           ///< the square (a crop on the 8-pixel grid keeps its blocks on the grid)
  double desaturate = 0;   ///< probability that a crop loses a uniform random share of its colour
                           ///< (each pixel mixed with its BT.601 luma): colourfulness stops being a
                           ///< cue for compression, the luma and its artefacts are unchanged
  bool normalize = true;   ///< ImageNet mean/std
  std::uint64_t seed = 0;  ///< with (epoch, index), fixes every crop and flip
};

namespace detail {
/// Symmetries of a square crop, as bits: mirror the columns, mirror the rows, swap rows and columns
/// (applied to the output coordinates in that order: out(y, x) = in(y', x')).
enum Symmetry : unsigned { kMirrorX = 1, kMirrorY = 2, kTranspose = 4 };

/// Copy the crop (top, left, S x S) of s into out [3, S, S] under the symmetry `sym` (Symmetry bits),
/// normalised with the ImageNet mean and std if asked.
/// `colour` in [0, 1] keeps that share of each pixel's colour: p = luma + colour * (p - luma), with
/// luma = 0.299 R + 0.587 G + 0.114 B (1 = the pixels as they are).
template <class T>
void crop_to_chw(const Stimulus& s, int top, int left, int S, unsigned sym, bool normalize, T* out,
                 float colour = 1.0f) {
  constexpr std::array<float, 3> mean{0.485f, 0.456f, 0.406f}, stdv{0.229f, 0.224f, 0.225f};
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      int u = (sym & kTranspose) ? x : y, v = (sym & kTranspose) ? y : x;  // source row, column
      if (sym & kMirrorX) v = S - 1 - v;
      if (sym & kMirrorY) u = S - 1 - u;
      const std::uint8_t* px = &s.rgb[(std::size_t(top + u) * std::size_t(s.width) + std::size_t(left + v)) * 3];
      std::array<float, 3> p{float(px[0]) / 255.0f, float(px[1]) / 255.0f, float(px[2]) / 255.0f};
      if (colour != 1.0f) {
        const float luma = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
        for (float& q : p) q = luma + colour * (q - luma);
      }
      for (std::size_t c = 0; c < 3; ++c)
        out[(c * std::size_t(S) + std::size_t(y)) * std::size_t(S) + std::size_t(x)] =
            T(normalize ? (p[c] - mean[c]) / stdv[c] : p[c]);
    }
}
}  // namespace detail

/// @brief Training batches of random S x S native-resolution crops of in-memory stimuli.
template <class T>
class CropBatchSource : public BatchSource<T> {
 public:
  /// @param stimuli each at least S x S pixels
  /// @param S       crop size (the model's image_size)
  /// @param opt     crop grid, flips, normalisation, seed
  CropBatchSource(const std::vector<Stimulus>& stimuli, int S, CropOptions opt = {})
      : stimuli_(stimuli), S_(S), opt_(opt) {
    for (const auto& s : stimuli_)
      if (s.height < S || s.width < S)
        throw std::invalid_argument("CropBatchSource: stimulus '" + s.name + "' is smaller than the crop");
  }
  /// @brief Number of samples (one crop of each stimulus per epoch).
  std::size_t size() const override { return stimuli_.size(); }
  /// @brief One random crop per requested stimulus: images [B, 3, S, S], votes [B].
  void fill(std::span<const std::size_t> indices, std::uint64_t epoch, T* images, double* votes) override {
    const std::size_t per = std::size_t(3) * S_ * S_;
    for (std::size_t b = 0; b < indices.size(); ++b) {
      const Stimulus& s = stimuli_[indices[b]];
      Rng rng(mix64(opt_.seed ^ mix64(epoch)) ^ mix64(indices[b] + 0xC0FFEEULL));
      const int g = std::max(1, opt_.grid);
      const int rows = (s.height - S_) / g + 1, cols = (s.width - S_) / g + 1;
      const int top = int(rng.below(std::uint64_t(rows))) * g, left = int(rng.below(std::uint64_t(cols))) * g;
      unsigned sym = (opt_.hflip && rng.uniform() < 0.5) ? detail::kMirrorX : 0u;
      if (opt_.dihedral) sym |= unsigned(rng.below(4)) << 1;  // mirror rows, transpose
      float colour = 1.0f;
      if (opt_.desaturate > 0 && rng.uniform() < opt_.desaturate) colour = float(rng.uniform());
      detail::crop_to_chw(s, top, left, S_, sym, opt_.normalize, images + b * per, colour);
      votes[b] = s.vote;
    }
  }

 private:
  const std::vector<Stimulus>& stimuli_;
  int S_;
  CropOptions opt_;
};

/// @brief Evaluation views: all non-overlapping S x S tiles of each stimulus (a 256-pixel stimulus
/// and S = 64 give 16 tiles), each seen under `symmetries` symmetries of the square (1: as it is;
/// 2: also mirrored left-right, the flip training crops get; 8: all of the dihedral group); the
/// prediction of a stimulus is the mean over its views. Mirrors and transposes keep every tile on
/// the JPEG grid, so test-time symmetries average out the noise of a single view without showing the
/// model artefacts it has not seen in training.
template <class T>
class TileEvalSource : public EvalSource<T> {
 public:
  /// @brief Views of `stimuli` (kept by reference) as S x S tiles, ImageNet-normalised if asked;
  /// `symmetries` is 1, 2 or 8 (anything else throws std::invalid_argument).
  TileEvalSource(const std::vector<Stimulus>& stimuli, int S, bool normalize = true, int symmetries = 1)
      : stimuli_(stimuli), S_(S), normalize_(normalize), symmetries_(symmetries) {
    if (symmetries != 1 && symmetries != 2 && symmetries != 8)
      throw std::invalid_argument("TileEvalSource: symmetries must be 1, 2 or 8, got " + std::to_string(symmetries));
  }
  /// @brief Number of stimuli.
  std::size_t size() const override { return stimuli_.size(); }
  /// @brief floor(h / S) * floor(w / S) tiles of stimulus i, times the number of symmetries.
  std::size_t views(std::size_t i) const override {
    return std::size_t(stimuli_[i].height / S_) * std::size_t(stimuli_[i].width / S_) * std::size_t(symmetries_);
  }
  /// @brief The views of stimulus i: tiles in row-major tile order, each followed by its symmetric
  /// copies (symmetry bits 1 .. symmetries-1, detail::Symmetry): images [views(i), 3, S, S].
  void fill_views(std::size_t i, T* images) override {
    const Stimulus& s = stimuli_[i];
    const int rows = s.height / S_, cols = s.width / S_;
    const std::size_t per = std::size_t(3) * S_ * S_;
    std::size_t v = 0;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        for (int sym = 0; sym < symmetries_; ++sym)
          detail::crop_to_chw(s, r * S_, c * S_, S_, unsigned(sym), normalize_, images + (v++) * per);
  }
  /// @brief The label of stimulus i.
  double vote(std::size_t i) const override { return stimuli_[i].vote; }
  /// @brief Symmetries per tile (1, 2 or 8).
  int symmetries() const { return symmetries_; }

 private:
  const std::vector<Stimulus>& stimuli_;
  int S_;
  bool normalize_;
  int symmetries_;
};

/// @brief Decode the stimuli `names` of a study folder (`dir`/images/<name>) on OpenMP threads.
/// @param dir   the study folder
/// @param names file names under `dir`/images
/// @return one Stimulus per name, in the order of `names` (vote 0)
/// @throws IoError / FormatError naming the file (io::load_image()): of several failures, the one
///         of the first failing name in `names`
inline std::vector<Stimulus> load_stimuli(const std::filesystem::path& dir, const std::vector<std::string>& names) {
  std::vector<Stimulus> out(names.size());
  std::vector<std::exception_ptr> errors(names.size());
#pragma omp parallel for schedule(dynamic, 8)
  for (long i = 0; i < long(names.size()); ++i) {
    const auto k = std::size_t(i);
    try {
      const auto img = io::load_image(dir / "images" / names[k]);
      out[k].name = names[k];
      out[k].height = int(img.shape()[0]);
      out[k].width = int(img.shape()[1]);
      out[k].rgb.assign(img.begin(), img.end());
    } catch (...) {
      errors[k] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

}  // namespace vitiq
