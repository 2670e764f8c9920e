// vitiq/explain/heatmap.hpp -- turning an explanation map into a picture: bilinear upsampling of a
// [rows, cols] patch map to the image, normalisation, colour maps (inferno, jet, a diverging map for
// differences), blending over the image (optionally greyscale, contrast-boosted and faded) and PNG
// output through vitiq::io (atomic writes).
//
// Maps are row-major std::vector<double>; images are vitiq::io::ImageU8 [H, W, 3]. Invariants: a
// colour map takes t in [0, 1] (clamped; NaN reads as 0) to RGB in [0, 1]; the diverging map is
// white-ish at t = 0.5, so a signed map scaled to [-1, 1] shows 0 as the (faded) image itself.
// Needs vitiq::io (stb + xtensor) like vitiq/io/image.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/image.hpp"

namespace vitiq::explain {

/// @brief The colour maps of the explanation figures.
enum class Colormap {
  inferno,    ///< matplotlib's perceptually uniform black - purple - orange - yellow
  jet,        ///< matplotlib's jet (blue - cyan - yellow - red), as older saliency papers use
  diverging,  ///< matplotlib's RdBu_r (ColorBrewer RdBu reversed): blue < 0.5 (white) < red
};

/// @brief An RGB colour, components in [0, 1].
using Colour = std::array<double, 3>;

namespace detail {

/// Piecewise-linear interpolation through stops (position, colour), positions increasing from 0 to 1.
template <std::size_t M>
Colour interpolate_stops(const std::array<double, M>& at, const std::array<Colour, M>& c, double t) {
  std::size_t i = 1;
  while (i + 1 < M && t > at[i]) ++i;
  const double f = std::clamp((t - at[i - 1]) / (at[i] - at[i - 1]), 0.0, 1.0);
  return {c[i - 1][0] + f * (c[i][0] - c[i - 1][0]), c[i - 1][1] + f * (c[i][1] - c[i - 1][1]),
          c[i - 1][2] + f * (c[i][2] - c[i - 1][2])};
}

/// One channel of a matplotlib LinearSegmentedColormap given as (x, y) pairs (y0 = y1 everywhere).
inline double segment(std::span<const std::array<double, 2>> s, double t) {
  for (std::size_t i = 1; i < s.size(); ++i)
    if (t <= s[i][0]) return s[i - 1][1] + (t - s[i - 1][0]) / (s[i][0] - s[i - 1][0]) * (s[i][1] - s[i - 1][1]);
  return s.back()[1];
}

}  // namespace detail

/// @brief The colour of `map` at t in [0, 1] (clamped; NaN gives the colour at 0).
///
/// inferno: matplotlib's table sampled at every 16th of its 256 entries (and the last), linear in
/// between (within 0.006 of the full table); jet: matplotlib's segment data, exact; diverging:
/// the 11 ColorBrewer RdBu colours reversed at even spacing, as matplotlib's RdBu_r.
inline Colour colour(Colormap map, double t) {
  t = std::isnan(t) ? 0.0 : std::clamp(t, 0.0, 1.0);
  switch (map) {
    case Colormap::inferno: {
      static constexpr std::array<double, 17> at{0 / 255.,   16 / 255.,  32 / 255.,  48 / 255.,  64 / 255.,  80 / 255.,
                                                 96 / 255.,  112 / 255., 128 / 255., 144 / 255., 160 / 255., 176 / 255.,
                                                 192 / 255., 208 / 255., 224 / 255., 240 / 255., 1.0};
      static constexpr std::array<Colour, 17> c{{{0.001462, 0.000466, 0.013866}, {0.042253, 0.028139, 0.141141},
                                                 {0.129285, 0.047293, 0.290788}, {0.238273, 0.036621, 0.396353},
                                                 {0.341500, 0.062325, 0.429425}, {0.441207, 0.099338, 0.431594},
                                                 {0.540920, 0.134729, 0.415123}, {0.640135, 0.171438, 0.381065},
                                                 {0.735683, 0.215906, 0.330245}, {0.822386, 0.275197, 0.266085},
                                                 {0.894305, 0.353399, 0.193584}, {0.946965, 0.449191, 0.115272},
                                                 {0.978422, 0.557937, 0.034931}, {0.987874, 0.675267, 0.065257},
                                                 {0.974638, 0.797692, 0.206332}, {0.947594, 0.917399, 0.410665},
                                                 {0.988362, 0.998364, 0.644924}}};
      return detail::interpolate_stops(at, c, t);
    }
    case Colormap::jet: {
      static constexpr std::array<std::array<double, 2>, 5> r{{{0, 0}, {0.35, 0}, {0.66, 1}, {0.89, 1}, {1, 0.5}}};
      static constexpr std::array<std::array<double, 2>, 6> g{
          {{0, 0}, {0.125, 0}, {0.375, 1}, {0.64, 1}, {0.91, 0}, {1, 0}}};
      static constexpr std::array<std::array<double, 2>, 5> b{{{0, 0.5}, {0.11, 1}, {0.34, 1}, {0.65, 0}, {1, 0}}};
      return {detail::segment(r, t), detail::segment(g, t), detail::segment(b, t)};
    }
    case Colormap::diverging: {
      static constexpr std::array<double, 11> at{0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
      // #053061 #2166ac #4393c3 #92c5de #d1e5f0 #f7f7f7 #fddbc7 #f4a582 #d6604d #b2182b #67001f
      static constexpr std::array<Colour, 11> c{{{5 / 255., 48 / 255., 97 / 255.},
                                                 {33 / 255., 102 / 255., 172 / 255.},
                                                 {67 / 255., 147 / 255., 195 / 255.},
                                                 {146 / 255., 197 / 255., 222 / 255.},
                                                 {209 / 255., 229 / 255., 240 / 255.},
                                                 {247 / 255., 247 / 255., 247 / 255.},
                                                 {253 / 255., 219 / 255., 199 / 255.},
                                                 {244 / 255., 165 / 255., 130 / 255.},
                                                 {214 / 255., 96 / 255., 77 / 255.},
                                                 {178 / 255., 24 / 255., 43 / 255.},
                                                 {103 / 255., 0 / 255., 31 / 255.}}};
      return detail::interpolate_stops(at, c, t);
    }
  }
  return {0, 0, 0};
}

/// @brief Parse a colour map name: "inferno", "jet", "diverging" (also "rdbu").
/// @throws vitiq::Error naming the unknown name
inline Colormap parse_colormap(std::string_view name) {
  if (name == "inferno") return Colormap::inferno;
  if (name == "jet") return Colormap::jet;
  if (name == "diverging" || name == "rdbu") return Colormap::diverging;
  throw Error("unknown colour map '" + std::string(name) + "' (known: inferno, jet, diverging)");
}

/// @brief Bilinear upsampling of a [rows, cols] map to [out_h, out_w], with the semantics of
/// PyTorch's F.interpolate(mode='bilinear', align_corners=False) (vitiq::io::resize_bilinear):
/// every patch value sits at its patch centre.
/// @return [out_h, out_w] row-major
/// @throws vitiq::Error when map.size() != rows * cols or a size is 0
inline std::vector<double> upsample_bilinear(std::span<const double> map, std::size_t rows, std::size_t cols, int out_h,
                                             int out_w) {
  if (rows == 0 || cols == 0 || map.size() != rows * cols)
    throw Error("upsample_bilinear: a map of " + std::to_string(map.size()) + " values is not " + std::to_string(rows) +
                " x " + std::to_string(cols));
  io::ImageF m = io::ImageF::from_shape({1, rows, cols});
  std::copy(map.begin(), map.end(), m.begin());
  const io::ImageF up = io::resize_bilinear(m, out_h, out_w);  // [1, out_h, out_w]
  return std::vector<double>(up.begin(), up.end());
}

/// @brief Scale a signed map to [-1, 1] by its largest magnitude (an all-zero map stays zero).
inline std::vector<double> normalise_signed(std::vector<double> m) {
  double a = 0;
  for (double x : m) a = std::max(a, std::abs(x));
  if (a > 0)
    for (auto& x : m) x /= a;
  return m;
}

/// @brief How an image is prepared as the background of an overlay.
struct BackgroundOptions {
  bool greyscale = false;       ///< luma Y = 0.299 R + 0.587 G + 0.114 B in all three channels
  bool contrast_boost = false;  ///< stretch the 1st..99th percentile of each channel (of Y when greyscale) to 0..255
  double fade = 0.0;            ///< mix with white: 0 keeps the image, 1 gives white
};

/// @brief The background of an overlay: the image, optionally greyscale, contrast-boosted
/// (percentile stretch, as PIL's ImageOps.autocontrast(cutoff=1)) and faded towards white.
/// @param image [H, W, 3]
/// @return [H, W, 3]
inline io::ImageU8 background(const io::ImageU8& image, const BackgroundOptions& opt = {}) {
  if (image.dimension() != 3 || image.shape(2) != 3) throw Error("background: the image must be [H, W, 3]");
  io::ImageU8 out = image;
  const std::size_t P = image.shape(0) * image.shape(1);
  std::uint8_t* px = out.data();
  if (opt.greyscale)
    for (std::size_t i = 0; i < P; ++i) {
      const double y = 0.299 * px[3 * i] + 0.587 * px[3 * i + 1] + 0.114 * px[3 * i + 2];
      px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = std::uint8_t(std::lround(std::clamp(y, 0.0, 255.0)));
    }
  if (opt.contrast_boost && P > 0)
    for (std::size_t c = 0; c < 3; ++c) {
      std::array<std::size_t, 256> hist{};
      for (std::size_t i = 0; i < P; ++i) ++hist[px[3 * i + c]];
      // The 1 % cutoffs at either end, from the histogram.
      const std::size_t cut = P / 100;
      int lo = 0, hi = 255;
      for (std::size_t acc = 0; lo < 255 && (acc += hist[std::size_t(lo)]) <= cut;) ++lo;
      for (std::size_t acc = 0; hi > 0 && (acc += hist[std::size_t(hi)]) <= cut;) --hi;
      if (hi <= lo) continue;  // a flat channel stays as it is
      for (std::size_t i = 0; i < P; ++i) {
        const double v = (double(px[3 * i + c]) - lo) * 255.0 / double(hi - lo);
        px[3 * i + c] = std::uint8_t(std::lround(std::clamp(v, 0.0, 255.0)));
      }
    }
  if (opt.fade > 0)
    for (std::size_t i = 0; i < 3 * P; ++i)
      px[i] = std::uint8_t(std::lround(double(px[i]) + std::clamp(opt.fade, 0.0, 1.0) * (255.0 - double(px[i]))));
  return out;
}

/// @brief How a map is drawn over an image.
struct OverlayOptions {
  Colormap colormap = Colormap::inferno;  ///< colour of the map
  double vmin = 0.0;                      ///< map value drawn at t = 0
  double vmax = 1.0;                      ///< map value drawn at t = 1
  double alpha = 0.5;                     ///< weight of the map's colour: out = (1 - a) image + a colour
  BackgroundOptions background{};         ///< how the image is prepared under the map
};

/// @brief Colour a map of the image's size and blend it over the (prepared) image.
/// @param image [H, W, 3]
/// @param map   [H, W] row-major, e.g. upsample_bilinear(...) of a patch map
/// @return [H, W, 3]
/// @throws vitiq::Error when the map is not H * W values
inline io::ImageU8 overlay(const io::ImageU8& image, std::span<const double> map, const OverlayOptions& opt = {}) {
  const std::size_t H = image.shape(0), W = image.shape(1);
  if (map.size() != H * W)
    throw Error("overlay: a map of " + std::to_string(map.size()) + " values does not cover a " + std::to_string(H) +
                " x " + std::to_string(W) + " image");
  io::ImageU8 out = background(image, opt.background);
  std::uint8_t* px = out.data();
  const double span = opt.vmax != opt.vmin ? opt.vmax - opt.vmin : 1.0, a = std::clamp(opt.alpha, 0.0, 1.0);
  for (std::size_t i = 0; i < H * W; ++i) {
    const Colour c = colour(opt.colormap, (map[i] - opt.vmin) / span);
    for (std::size_t k = 0; k < 3; ++k)
      px[3 * i + k] = std::uint8_t(std::lround(std::clamp((1 - a) * double(px[3 * i + k]) + a * 255.0 * c[k], 0.0, 255.0)));
  }
  return out;
}

/// @brief A map of any size as a colour image (no background), e.g. for a full attention matrix.
/// @param map [rows, cols] row-major
/// @return [rows, cols, 3]
inline io::ImageU8 colour_image(std::span<const double> map, std::size_t rows, std::size_t cols, Colormap cm,
                                double vmin, double vmax) {
  if (map.size() != rows * cols) throw Error("colour_image: the map is not rows * cols values");
  io::ImageU8 out = io::ImageU8::from_shape({rows, cols, 3});
  const double span = vmax != vmin ? vmax - vmin : 1.0;
  for (std::size_t i = 0; i < rows * cols; ++i) {
    const Colour c = colour(cm, (map[i] - vmin) / span);
    for (std::size_t k = 0; k < 3; ++k) out.data()[3 * i + k] = std::uint8_t(std::lround(255.0 * c[k]));
  }
  return out;
}

/// @brief The usual picture of an explanation: the [rows, cols] patch map upsampled to the image
/// (bilinear), scaled to [0, 1] by its minimum and maximum, coloured and blended over the image.
/// @param image [H, W, 3]
/// @param map   [rows, cols] row-major
/// @return [H, W, 3]
inline io::ImageU8 overlay_map(const io::ImageU8& image, std::span<const double> map, std::size_t rows,
                               std::size_t cols, OverlayOptions opt = {}) {
  std::vector<double> up = upsample_bilinear(map, rows, cols, int(image.shape(0)), int(image.shape(1)));
  const auto [lo, hi] = std::minmax_element(up.begin(), up.end());
  const double a = *lo, b = *hi;
  for (auto& x : up) x = b > a ? (x - a) / (b - a) : 0.0;
  opt.vmin = 0.0;
  opt.vmax = 1.0;
  return overlay(image, up, opt);
}

/// @brief overlay_map() written as a PNG file (atomically, vitiq::io::write_png).
/// @throws vitiq::Error / IoError naming the file when it cannot be written
inline void write_overlay_png(const std::filesystem::path& path, const io::ImageU8& image, std::span<const double> map,
                              std::size_t rows, std::size_t cols, const OverlayOptions& opt = {}) {
  io::write_png(path, overlay_map(image, map, rows, cols, opt));
}

}  // namespace vitiq::explain
