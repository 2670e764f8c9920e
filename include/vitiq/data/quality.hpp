// vitiq/data/quality.hpp -- objective distortion measures of a decoded stimulus against its
// reference: PSNR (RGB and luma) and PSNR-B, the blocking-aware PSNR of Yim & Bovik (2011), with
// an optional spatial weight (one rectangle counting more) for observers that look at one region.
//
// These drive the simulated observers' latent quality, so content matters and not only the JPEG
// quality factor: a smooth sky and a textured wall at the same Q get different PSNR-B.
//
// PSNR-B (C. Yim, A. C. Bovik, "Quality assessment of deblocked images", IEEE TIP 20(1), 2011):
// on the luma y of the distorted image, with block size B = 8,
//   D_B  = mean of (y_p - y_q)^2 over horizontally and vertically adjacent pixel pairs (p, q)
//          that straddle a block boundary,
//   D_Bc = the same mean over the adjacent pairs inside blocks,
//   eta  = log2(B) / log2(min(H, W)) when D_B > D_Bc, else 0,
//   BEF  = eta * (D_B - D_Bc),   MSE-B = MSE(luma) + BEF,   PSNR-B = 10 log10(255^2 / MSE-B).
// With a weight map w, every mean becomes a w-weighted mean (a pair weighs (w_p + w_q) / 2).
// Identical images give +inf dB (callers clamp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/image.hpp"

namespace vitiq::data {

/// @brief A rectangle that counts `weight` times as much as the rest of the image (weight 1
/// everywhere when height or width is 0).
struct WeightRect {
  int top = 0, left = 0, height = 0, width = 0;
  double weight = 1;

  /// @brief Weight of pixel (y, x).
  double at(int y, int x) const {
    return (y >= top && y < top + height && x >= left && x < left + width) ? weight : 1.0;
  }
  /// @brief The centred rectangle of `fraction` of each side (fraction 0.5: the middle quarter
  /// of the area), its corners on the 8-pixel grid.
  static WeightRect centre(int image_h, int image_w, double fraction, double weight) {
    WeightRect r;
    r.height = std::max(8, int(std::lround(image_h * fraction / 8.0)) * 8);
    r.width = std::max(8, int(std::lround(image_w * fraction / 8.0)) * 8);
    r.top = std::max(0, (image_h - r.height) / 16 * 8);
    r.left = std::max(0, (image_w - r.width) / 16 * 8);
    r.weight = weight;
    return r;
  }
};

/// @brief Distortion of one stimulus against its reference.
struct Distortion {
  double psnr_rgb = 0;  ///< PSNR over the three channels, dB
  double psnr_y = 0;    ///< PSNR of BT.601 luma, dB
  double psnr_b = 0;    ///< PSNR-B of luma, dB (blocking-aware)
  double mse_y = 0;     ///< luma MSE (8-bit scale)
  double bef = 0;       ///< blocking effect factor added to mse_y
};

namespace detail {
inline double luma601(const std::uint8_t* p) { return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]; }
inline double psnr_of(double mse) {
  return mse > 0 ? 10.0 * std::log10(255.0 * 255.0 / mse) : std::numeric_limits<double>::infinity();
}
}  // namespace detail

/// @brief PSNR, luma PSNR and PSNR-B of `dist` against `ref`, optionally weighted.
/// @param ref     [H, W, 3] reference
/// @param dist    [H, W, 3] distorted (decoded) stimulus, same size; its JPEG grid starts at (0, 0)
/// @param weight  spatial weight (default: uniform)
/// @param block   block size of the grid (8 for JPEG)
/// @throws Error when the shapes differ or are not [H, W, 3] with H, W >= 2.
inline Distortion measure_distortion(const io::ImageU8& ref, const io::ImageU8& dist, const WeightRect& weight = {},
                                     int block = 8) {
  if (ref.shape() != dist.shape() || ref.dimension() != 3 || ref.shape(2) != 3 || ref.shape(0) < 2 || ref.shape(1) < 2)
    throw Error("measure_distortion: images must both be [H, W, 3] with H, W >= 2 and the same shape");
  const int H = int(ref.shape(0)), W = int(ref.shape(1));
  const std::uint8_t* a = ref.data();
  const std::uint8_t* b = dist.data();
  std::vector<double> y(std::size_t(H) * std::size_t(W)), wmap(y.size());
  double se_rgb = 0, se_y = 0, wsum = 0;
  for (int i = 0; i < H; ++i)
    for (int j = 0; j < W; ++j) {
      const std::size_t p = std::size_t(i) * std::size_t(W) + std::size_t(j);
      const double w = weight.at(i, j);
      wmap[p] = w;
      wsum += w;
      double e = 0;
      for (int c = 0; c < 3; ++c) {
        const double d = double(a[p * 3 + std::size_t(c)]) - double(b[p * 3 + std::size_t(c)]);
        e += d * d;
      }
      se_rgb += w * e / 3.0;
      y[p] = detail::luma601(b + p * 3);
      const double dy = detail::luma601(a + p * 3) - y[p];
      se_y += w * dy * dy;
    }
  Distortion d;
  d.mse_y = se_y / wsum;
  d.psnr_rgb = detail::psnr_of(se_rgb / wsum);
  d.psnr_y = detail::psnr_of(d.mse_y);
  // Blocking effect factor on the distorted luma.
  double db = 0, dbw = 0, dc = 0, dcw = 0;
  for (int i = 0; i < H; ++i)
    for (int j = 0; j + 1 < W; ++j) {  // horizontal neighbours (j, j + 1)
      const std::size_t p = std::size_t(i) * std::size_t(W) + std::size_t(j);
      const double diff = y[p] - y[p + 1], w = 0.5 * (wmap[p] + wmap[p + 1]);
      if ((j + 1) % block == 0) db += w * diff * diff, dbw += w;
      else dc += w * diff * diff, dcw += w;
    }
  for (int i = 0; i + 1 < H; ++i)
    for (int j = 0; j < W; ++j) {  // vertical neighbours (i, i + 1)
      const std::size_t p = std::size_t(i) * std::size_t(W) + std::size_t(j), q = p + std::size_t(W);
      const double diff = y[p] - y[q], w = 0.5 * (wmap[p] + wmap[q]);
      if ((i + 1) % block == 0) db += w * diff * diff, dbw += w;
      else dc += w * diff * diff, dcw += w;
    }
  const double DB = dbw > 0 ? db / dbw : 0, DBc = dcw > 0 ? dc / dcw : 0;
  const double eta = DB > DBc ? std::log2(double(block)) / std::log2(double(std::min(H, W))) : 0.0;
  d.bef = eta * (DB - DBc);
  d.psnr_b = detail::psnr_of(d.mse_y + d.bef);
  return d;
}

}  // namespace vitiq::data
