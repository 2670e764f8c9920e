// vitiq/explain/local_change.hpp -- local changes for checking what an observer model attends to:
// occlusion, stronger JPEG compression, blur or greyscale applied inside a pixel rectangle only,
// and the rectangle's coverage of a patch grid (for the share of attention inside it).
//
// Invariant: apply_local_change() leaves every pixel outside the region bit-identical; inside, a
// change is computed on the whole image (JPEG blocks and blur kernels see the real neighbours)
// and only the region is copied back.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/image.hpp"

namespace vitiq::explain {

/// @brief A pixel rectangle: left x, top y, width w, height h.
struct Region {
  int x = 0, y = 0, w = 0, h = 0;
};

/// @brief The kinds of local change.
enum class ChangeKind {
  occlude,    ///< fill with a constant grey (`amount` = grey level 0..255, default 128)
  jpeg,       ///< re-encode at JPEG quality `amount` (1..100, default 5)
  blur,       ///< Gaussian blur with standard deviation `amount` pixels (default 3)
  greyscale,  ///< luma Y = 0.299 R + 0.587 G + 0.114 B
};

/// @brief A local change and its strength.
struct LocalChange {
  ChangeKind kind = ChangeKind::occlude;  ///< what is done inside the region
  double amount = 128;                    ///< grey level, JPEG quality or blur sigma (unused for greyscale)
};

namespace detail {
inline double parse_number(std::string_view s, std::string_view what) {
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw Error(std::string(what) + ": '" + std::string(s) + "' is not a number");
  return v;
}
}  // namespace detail

/// @brief Parse "X,Y,W,H" (pixels).
/// @throws vitiq::Error naming the text when it is not four integers or W or H < 1
inline Region parse_region(std::string_view text) {
  int v[4];
  std::string_view rest = text;
  for (int i = 0; i < 4; ++i) {
    const auto comma = rest.find(',');
    if ((i < 3) != (comma != std::string_view::npos))
      throw Error("region '" + std::string(text) + "': expected X,Y,W,H in pixels");
    const std::string_view part = rest.substr(0, comma);
    const auto r = std::from_chars(part.data(), part.data() + part.size(), v[i]);
    if (r.ec != std::errc() || r.ptr != part.data() + part.size())
      throw Error("region '" + std::string(text) + "': '" + std::string(part) + "' is not an integer");
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  if (v[2] < 1 || v[3] < 1) throw Error("region '" + std::string(text) + "': width and height must be >= 1");
  return {v[0], v[1], v[2], v[3]};
}

/// @brief Parse a change: "occlude[:GREY]", "jpeg[:QUALITY]", "blur[:SIGMA]", "grey" / "greyscale".
/// @throws vitiq::Error naming the text when the kind is unknown or the amount out of range
inline LocalChange parse_change(std::string_view text) {
  const auto colon = text.find(':');
  const std::string_view kind = text.substr(0, colon);
  const bool has = colon != std::string_view::npos;
  const std::string_view amount = has ? text.substr(colon + 1) : std::string_view{};
  LocalChange c;
  if (kind == "occlude") {
    c = {ChangeKind::occlude, has ? detail::parse_number(amount, "occlude") : 128.0};
    if (c.amount < 0 || c.amount > 255) throw Error("change '" + std::string(text) + "': grey level must be in 0..255");
  } else if (kind == "jpeg") {
    c = {ChangeKind::jpeg, has ? detail::parse_number(amount, "jpeg") : 5.0};
    if (c.amount < 1 || c.amount > 100 || c.amount != std::floor(c.amount))
      throw Error("change '" + std::string(text) + "': JPEG quality must be an integer in 1..100");
  } else if (kind == "blur") {
    c = {ChangeKind::blur, has ? detail::parse_number(amount, "blur") : 3.0};
    if (!(c.amount > 0) || c.amount > 100) throw Error("change '" + std::string(text) + "': blur sigma must be in (0, 100]");
  } else if (kind == "grey" || kind == "greyscale" || kind == "gray") {
    if (has) throw Error("change '" + std::string(text) + "': greyscale takes no amount");
    c = {ChangeKind::greyscale, 0.0};
  } else {
    throw Error("unknown change '" + std::string(text) + "' (known: occlude[:GREY], jpeg[:Q], blur[:SIGMA], grey)");
  }
  return c;
}

/// @brief A short name of a change for files and tables: "occlude128", "jpeg5", "blur3", "grey".
inline std::string change_name(const LocalChange& c) {
  const auto num = [](double v) {
    std::string s = std::to_string(v);
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
    return s;
  };
  switch (c.kind) {
    case ChangeKind::occlude: return "occlude" + num(c.amount);
    case ChangeKind::jpeg: return "jpeg" + num(c.amount);
    case ChangeKind::blur: return "blur" + num(c.amount);
    case ChangeKind::greyscale: return "grey";
  }
  return "?";
}

namespace detail {
/// Separable Gaussian blur of an [H, W, 3] image, kernel radius ceil(3 sigma), edges clamped.
inline io::ImageU8 gaussian_blur(const io::ImageU8& img, double sigma) {
  const int H = int(img.shape(0)), W = int(img.shape(1)), r = std::max(1, int(std::ceil(3 * sigma)));
  std::vector<double> k(std::size_t(2 * r + 1));
  double sum = 0;
  for (int i = -r; i <= r; ++i) sum += (k[std::size_t(i + r)] = std::exp(-0.5 * i * i / (sigma * sigma)));
  for (auto& x : k) x /= sum;
  std::vector<double> tmp(std::size_t(H) * W * 3);
  for (int y = 0; y < H; ++y)  // along x
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int i = -r; i <= r; ++i)
          s += k[std::size_t(i + r)] * img(std::size_t(y), std::size_t(std::clamp(x + i, 0, W - 1)), std::size_t(c));
        tmp[(std::size_t(y) * W + std::size_t(x)) * 3 + std::size_t(c)] = s;
      }
  io::ImageU8 out = img;
  for (int y = 0; y < H; ++y)  // along y
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int i = -r; i <= r; ++i)
          s += k[std::size_t(i + r)] * tmp[(std::size_t(std::clamp(y + i, 0, H - 1)) * W + std::size_t(x)) * 3 + std::size_t(c)];
        out(std::size_t(y), std::size_t(x), std::size_t(c)) = std::uint8_t(std::lround(std::clamp(s, 0.0, 255.0)));
      }
  return out;
}
}  // namespace detail

/// @brief The image with `change` applied inside `region` only (the region is clipped to the image).
/// @param image [H, W, 3]
/// @return [H, W, 3]; pixels outside the region are unchanged
/// @throws vitiq::Error when the region does not overlap the image
inline io::ImageU8 apply_local_change(const io::ImageU8& image, const Region& region, const LocalChange& change) {
  const int H = int(image.shape(0)), W = int(image.shape(1));
  const int x0 = std::max(0, region.x), y0 = std::max(0, region.y);
  const int x1 = std::min(W, region.x + region.w), y1 = std::min(H, region.y + region.h);
  if (x1 <= x0 || y1 <= y0)
    throw Error("region " + std::to_string(region.x) + "," + std::to_string(region.y) + "," + std::to_string(region.w) + "," +
                std::to_string(region.h) + " does not overlap the " + std::to_string(W) + " x " + std::to_string(H) + " image");
  io::ImageU8 changed;
  switch (change.kind) {
    case ChangeKind::occlude:
      changed = image;
      std::fill(changed.begin(), changed.end(), std::uint8_t(std::lround(std::clamp(change.amount, 0.0, 255.0))));
      break;
    case ChangeKind::jpeg:
      changed = io::decode_image(io::encode_jpeg(image, int(change.amount)), "local JPEG change");
      break;
    case ChangeKind::blur: changed = detail::gaussian_blur(image, change.amount); break;
    case ChangeKind::greyscale:
      changed = image;
      for (std::size_t i = 0; i < std::size_t(H) * std::size_t(W); ++i) {
        std::uint8_t* p = changed.data() + 3 * i;
        p[0] = p[1] = p[2] = std::uint8_t(std::lround(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
      }
      break;
  }
  io::ImageU8 out = image;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x)
      for (std::size_t c = 0; c < 3; ++c)
        out(std::size_t(y), std::size_t(x), c) = changed(std::size_t(y), std::size_t(x), c);
  return out;
}

/// @brief For a [rows, cols] grid of equal cells over an H x W image: the fraction of each cell's
/// area inside the region (row-major [rows, cols], values in [0, 1]).
inline std::vector<double> region_coverage(const Region& region, int H, int W, std::size_t rows, std::size_t cols) {
  std::vector<double> cov(rows * cols, 0.0);
  const double ch = double(H) / double(rows), cw = double(W) / double(cols);
  const double rx0 = std::max(0, region.x), ry0 = std::max(0, region.y);
  const double rx1 = std::min(W, region.x + region.w), ry1 = std::min(H, region.y + region.h);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const double oy = std::max(0.0, std::min(ry1, double(r + 1) * ch) - std::max(ry0, double(r) * ch));
      const double ox = std::max(0.0, std::min(rx1, double(c + 1) * cw) - std::max(rx0, double(c) * cw));
      cov[r * cols + c] = oy * ox / (ch * cw);
    }
  return cov;
}

/// @brief The region's share of the image area (clipped to the image).
inline double area_share(const Region& region, int H, int W) {
  const double w = std::max(0, std::min(W, region.x + region.w) - std::max(0, region.x));
  const double h = std::max(0, std::min(H, region.y + region.h) - std::max(0, region.y));
  return w * h / (double(W) * double(H));
}

}  // namespace vitiq::explain
