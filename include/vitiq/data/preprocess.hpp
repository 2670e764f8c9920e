// vitiq/data/preprocess.hpp -- how a decoded stimulus becomes a model input, for training
// (random views) and for evaluation (a fixed view, or all tiles).
//
// Two preprocessings, chosen explicitly in PreprocessOptions::mode:
//   native_crop (the default for quality work): an S x S crop at the stimulus' own resolution,
//       its offsets optionally on the 8-pixel JPEG grid, optionally mirrored; no rescaling, so
//       compression artefacts reach the model as they are. Evaluation: the centre crop (on the
//       grid), or all grid-aligned tiles (tiles()) whose predictions are averaged.
//   resize_crop (what the original per-observer project did, torchvision semantics): training
//       RandomResizedCrop(S, scale = (0.08, 1), ratio = (3/4, 4/3)) -- ten tries to draw an area
//       and aspect ratio that fit, then the centre fallback -- followed by a random horizontal
//       flip; evaluation Resize(R) (shorter side to R, aspect kept) then CenterCrop(S). Rescaling
//       blurs or aliases the very artefacts a quality model should see.
// Both end with ToTensor (values / 255) and, unless switched off, ImageNet normalisation.
// Resizing is vitiq::io::resize_bilinear, i.e. PyTorch's bilinear interpolation without
// antialiasing (torchvision on PIL images antialiases: results then differ slightly).
//
// Invariant: every random choice is drawn from the Rng passed in, so a view is a function of
// (image, options, Rng state): a loader that seeds the Rng from (seed, epoch, sample index) gets
// the same views whatever the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/detail/xtensor.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/image.hpp"

namespace vitiq::data {

/// @brief Which preprocessing turns a stimulus into a model input (see the file comment).
enum class Preprocessing {
  native_crop,  ///< crops at native resolution (+ flip), no rescaling: keeps compression artefacts
  resize_crop,  ///< the original project's: RandomResizedCrop + flip / Resize + CenterCrop
};

/// @brief "native_crop" or "resize_crop".
constexpr std::string_view to_string(Preprocessing p) {
  return p == Preprocessing::native_crop ? "native_crop" : "resize_crop";
}

/// @brief Parse the names written by to_string(Preprocessing); false on an unknown name.
inline bool parse(std::string_view s, Preprocessing& out) {
  if (s == "native_crop" || s == "native") out = Preprocessing::native_crop;
  else if (s == "resize_crop" || s == "resize") out = Preprocessing::resize_crop;
  else return false;
  return true;
}

/// @brief Everything that decides a view of a stimulus.
struct PreprocessOptions {
  Preprocessing mode = Preprocessing::native_crop;
  int size = 64;          ///< S: side of the model input
  bool hflip = true;      ///< training views are mirrored with probability 1/2
  bool normalize = true;  ///< subtract io::imagenet_mean, divide by io::imagenet_std
  // native_crop
  int grid = 8;           ///< crop offsets are multiples of grid (8: the JPEG block grid; 1: any)
  // resize_crop
  std::array<double, 2> scale = {0.08, 1.0};              ///< RandomResizedCrop area range
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};   ///< RandomResizedCrop aspect range (w / h)
  int resize = 0;         ///< evaluation: shorter side resized to this before CenterCrop(S); 0 = S
};

/// @brief A rectangle of an image: rows [top, top + height), columns [left, left + width).
struct CropRect {
  int top = 0, left = 0, height = 0, width = 0;
  friend bool operator==(const CropRect&, const CropRect&) = default;
};

/// @brief torchvision's RandomResizedCrop.get_params: up to ten tries at a rectangle with area
/// share in `scale` and aspect ratio (w / h, drawn log-uniformly) in `ratio`; sides rounded half
/// to even (Python's round); position uniform. If no try fits: the whole image clipped to the
/// nearest allowed aspect ratio, centred.
/// @param H, W  image size
inline CropRect random_resized_crop_params(int H, int W, std::array<double, 2> scale, std::array<double, 2> ratio,
                                           Rng& rng) {
  const double area = double(H) * double(W);
  const double log_r0 = std::log(ratio[0]), log_r1 = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale[0], scale[1]);
    const double aspect = std::exp(rng.uniform(log_r0, log_r1));
    const int w = int(std::nearbyint(std::sqrt(target_area * aspect)));
    const int h = int(std::nearbyint(std::sqrt(target_area / aspect)));
    if (0 < w && w <= W && 0 < h && h <= H) {
      const int i = int(rng.below(std::uint64_t(H - h + 1)));
      const int j = int(rng.below(std::uint64_t(W - w + 1)));
      return {i, j, h, w};
    }
  }
  // Fallback to a central crop.
  const double in_ratio = double(W) / double(H);
  int w = W, h = H;
  if (in_ratio < std::min(ratio[0], ratio[1])) {
    w = W;
    h = int(std::nearbyint(w / std::min(ratio[0], ratio[1])));
  } else if (in_ratio > std::max(ratio[0], ratio[1])) {
    h = H;
    w = int(std::nearbyint(h * std::max(ratio[0], ratio[1])));
  }
  return {(H - h) / 2, (W - w) / 2, h, w};
}

/// @brief A random S x S crop whose offsets are multiples of `grid` (uniform over the allowed
/// offsets).
/// @throws Error when the image is smaller than S x S.
inline CropRect native_crop_params(int H, int W, int S, int grid, Rng& rng) {
  if (S < 1 || H < S || W < S)
    throw Error("native crop: the image of " + std::to_string(W) + " x " + std::to_string(H) +
                " pixels (width x height) is smaller than the crop of " + std::to_string(S) + " x " + std::to_string(S));
  const int g = std::max(1, grid);
  const int rows = (H - S) / g + 1, cols = (W - S) / g + 1;
  return {int(rng.below(std::uint64_t(rows))) * g, int(rng.below(std::uint64_t(cols))) * g, S, S};
}

/// @brief The S x S crop nearest the centre whose offsets are multiples of `grid`.
/// @throws Error when the image is smaller than S x S.
inline CropRect native_centre_params(int H, int W, int S, int grid) {
  if (S < 1 || H < S || W < S)
    throw Error("native crop: the image of " + std::to_string(W) + " x " + std::to_string(H) +
                " pixels (width x height) is smaller than the crop of " + std::to_string(S) + " x " + std::to_string(S));
  const int g = std::max(1, grid);
  const int top = int(std::lround(double(H - S) / 2.0 / g)) * g, left = int(std::lround(double(W - S) / 2.0 / g)) * g;
  return {std::min(top, (H - S) / g * g), std::min(left, (W - S) / g * g), S, S};
}

/// @brief Copy a rectangle of an 8-bit image into float planes, optionally mirrored left-right
/// and normalised.
/// @param img   [H, W, 3]
/// @param r     inside the image
/// @param out   [3, r.height, r.width] destination
inline void crop_to_planes(const io::ImageU8& img, const CropRect& r, bool flip, bool normalize, float* out) {
  const std::size_t W = img.shape(1);
  const std::size_t h = std::size_t(r.height), w = std::size_t(r.width);
  const std::uint8_t* src = img.data();
  for (std::size_t c = 0; c < 3; ++c) {
    const float mean = normalize ? io::imagenet_mean[c] : 0.0f, sd = normalize ? io::imagenet_std[c] : 1.0f;
    float* plane = out + c * h * w;
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) {
        const std::size_t sx = std::size_t(r.left) + (flip ? w - 1 - x : x);
        const float v = float(src[((std::size_t(r.top) + y) * W + sx) * 3 + c]) / 255.0f;
        plane[y * w + x] = normalize ? (v - mean) / sd : v;
      }
  }
}

namespace detail {
inline void check_rgb(const io::ImageU8& img) {
  if (img.dimension() != 3 || img.shape(2) != 3 || img.shape(0) == 0 || img.shape(1) == 0)
    throw Error("preprocess: expected an RGB image [H, W, 3]");
}
/// Crop r, resize to S x S (bilinear), flip, normalise: [3, S, S] into out.
inline void resized_crop_to(const io::ImageU8& img, const CropRect& r, int S, bool flip, bool normalize, float* out) {
  io::ImageF planes = io::ImageF::from_shape({3, std::size_t(r.height), std::size_t(r.width)});
  crop_to_planes(img, r, flip, false, planes.data());
  io::ImageF resized = io::resize_bilinear(planes, S, S);
  if (normalize) io::normalize(resized, io::imagenet_mean, io::imagenet_std);
  std::copy(resized.begin(), resized.end(), out);
}
}  // namespace detail

/// @brief A random training view of a stimulus, written into `out`.
/// @param img  [H, W, 3]
/// @param opt  the preprocessing (mode, S, flip, normalisation, ...)
/// @param rng  the only source of randomness
/// @param out  [3, S, S]
/// @throws Error for native_crop when the image is smaller than S x S.
inline void train_view(const io::ImageU8& img, const PreprocessOptions& opt, Rng& rng, float* out) {
  detail::check_rgb(img);
  const int H = int(img.shape(0)), W = int(img.shape(1));
  if (opt.mode == Preprocessing::native_crop) {
    const CropRect r = native_crop_params(H, W, opt.size, opt.grid, rng);
    const bool flip = opt.hflip && rng.uniform() < 0.5;
    crop_to_planes(img, r, flip, opt.normalize, out);
  } else {
    const CropRect r = random_resized_crop_params(H, W, opt.scale, opt.ratio, rng);
    const bool flip = opt.hflip && rng.uniform() < 0.5;
    detail::resized_crop_to(img, r, opt.size, flip, opt.normalize, out);
  }
}

/// @brief train_view() returning a new [3, S, S] image.
inline io::ImageF train_view(const io::ImageU8& img, const PreprocessOptions& opt, Rng& rng) {
  io::ImageF out = io::ImageF::from_shape({3, std::size_t(opt.size), std::size_t(opt.size)});
  train_view(img, opt, rng, out.data());
  return out;
}

/// @brief The fixed evaluation view: native_crop -> the grid-aligned centre crop; resize_crop ->
/// Resize(shorter side to opt.resize, or S) then CenterCrop(S) as torchvision places it.
/// @param img  [H, W, 3]
/// @return [3, S, S]
inline io::ImageF eval_view(const io::ImageU8& img, const PreprocessOptions& opt) {
  detail::check_rgb(img);
  const int H = int(img.shape(0)), W = int(img.shape(1)), S = opt.size;
  io::ImageF out = io::ImageF::from_shape({3, std::size_t(S), std::size_t(S)});
  if (opt.mode == Preprocessing::native_crop) {
    crop_to_planes(img, native_centre_params(H, W, S, opt.grid), false, opt.normalize, out.data());
    return out;
  }
  // torchvision Resize(int): the shorter side becomes R, the longer int(R * long / short).
  const int R = opt.resize > 0 ? opt.resize : S;
  int nh = R, nw = R;
  if (H <= W) nw = int(double(R) * double(W) / double(H));
  else nh = int(double(R) * double(H) / double(W));
  io::ImageF resized = io::resize_bilinear(io::to_chw_float(img), nh, nw);
  io::ImageF c = io::center_crop(resized, S);
  if (opt.normalize) io::normalize(c, io::imagenet_mean, io::imagenet_std);
  return c;
}

/// @brief Top-left corners of all S x S tiles at multiples of `stride` that fit in H x W, row by
/// row (a 256 x 256 stimulus, S = stride = 64: 16 tiles).
inline std::vector<CropRect> tile_rects(int H, int W, int S, int stride) {
  std::vector<CropRect> out;
  if (S < 1 || stride < 1) throw Error("tiles: size and stride must be positive");
  for (int t = 0; t + S <= H; t += stride)
    for (int l = 0; l + S <= W; l += stride) out.push_back({t, l, S, S});
  return out;
}

/// @brief All grid-aligned S x S tiles of a stimulus at native resolution, for test-time
/// averaging of predictions.
/// @param img        [H, W, 3]
/// @param S          tile side
/// @param stride     distance between tile origins (default S: non-overlapping); keep it a
///                   multiple of 8 so every tile sees the JPEG grid in the same phase
/// @param normalize  ImageNet normalisation
/// @return [T, 3, S, S], T = number of tiles (tile_rects order)
/// @throws Error when the image is smaller than S x S.
inline xt::xtensor<float, 4> tiles(const io::ImageU8& img, int S, int stride = 0, bool normalize = true) {
  detail::check_rgb(img);
  const int H = int(img.shape(0)), W = int(img.shape(1));
  if (S < 1 || H < S || W < S)
    throw Error("tiles: the image of " + std::to_string(W) + " x " + std::to_string(H) +
                " pixels (width x height) is smaller than one tile of " + std::to_string(S) + " x " + std::to_string(S));
  const std::vector<CropRect> rects = tile_rects(H, W, S, stride > 0 ? stride : S);
  xt::xtensor<float, 4> out = xt::xtensor<float, 4>::from_shape({rects.size(), 3, std::size_t(S), std::size_t(S)});
  const std::size_t per = std::size_t(3) * std::size_t(S) * std::size_t(S);
  for (std::size_t i = 0; i < rects.size(); ++i) crop_to_planes(img, rects[i], false, normalize, out.data() + i * per);
  return out;
}

}  // namespace vitiq::data
