// tests/test_explain_heatmap.cpp -- pictures of explanation maps: colour maps at known points
// (matplotlib's values), bilinear upsampling of a patch map, normalisation, blending over a
// greyscale / contrast-boosted / faded image, PNG output; local changes confined to their region
// and the region's coverage of a patch grid.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "vitiq/explain/heatmap.hpp"
#include "vitiq/explain/local_change.hpp"
#include "vitiq/explain/rollout.hpp"

using namespace vitiq::explain;
namespace io = vitiq::io;

namespace {

io::ImageU8 ramp_image(std::size_t H, std::size_t W) {
  io::ImageU8 img = io::ImageU8::from_shape({H, W, 3});
  for (std::size_t y = 0; y < H; ++y)
    for (std::size_t x = 0; x < W; ++x) {
      img(y, x, 0) = std::uint8_t(60 + (x * 100) / W);
      img(y, x, 1) = std::uint8_t(80 + (y * 90) / H);
      img(y, x, 2) = std::uint8_t((x * 7 + y * 13) % 256);
    }
  return img;
}

void check_colour(Colour c, double r, double g, double b, double tol = 1e-6) {
  CHECK(c[0] == Approx(r).margin(tol));
  CHECK(c[1] == Approx(g).margin(tol));
  CHECK(c[2] == Approx(b).margin(tol));
}

}  // namespace

TEST_CASE("colour maps give matplotlib's colours", "[explain][heatmap]") {
  // inferno: matplotlib's table entries 0, 128 (t = 128/255) and 255.
  check_colour(colour(Colormap::inferno, 0.0), 0.001462, 0.000466, 0.013866);
  check_colour(colour(Colormap::inferno, 128 / 255.), 0.735683, 0.215906, 0.330245);
  check_colour(colour(Colormap::inferno, 1.0), 0.988362, 0.998364, 0.644924);
  // Between stops: matplotlib's entry 100 is within the interpolation error.
  check_colour(colour(Colormap::inferno, 100 / 255.), 0.565854, 0.143567, 0.408258, 0.006);
  // jet: cm.jet(0), cm.jet(0.25) (matplotlib quantises to 256 levels: 64/255 = 0.2509...), cm.jet(1).
  check_colour(colour(Colormap::jet, 0.0), 0.0, 0.0, 0.5);
  check_colour(colour(Colormap::jet, 64 / 255.), 0.0, 0.503922, 1.0, 1e-5);
  check_colour(colour(Colormap::jet, 1.0), 0.5, 0.0, 0.0);
  // diverging = RdBu_r: dark blue, near white at the centre, dark red.
  check_colour(colour(Colormap::diverging, 0.0), 5 / 255., 48 / 255., 97 / 255.);
  check_colour(colour(Colormap::diverging, 0.5), 247 / 255., 247 / 255., 247 / 255.);
  check_colour(colour(Colormap::diverging, 1.0), 103 / 255., 0.0, 31 / 255.);
  // Out of range values are clamped; NaN is the low end.
  CHECK(colour(Colormap::inferno, -3.0) == colour(Colormap::inferno, 0.0));
  CHECK(colour(Colormap::jet, 7.0) == colour(Colormap::jet, 1.0));
  CHECK(colour(Colormap::diverging, std::nan("")) == colour(Colormap::diverging, 0.0));
  CHECK(parse_colormap("jet") == Colormap::jet);
  CHECK_THROWS_WITH(parse_colormap("viridis"), Catch::Matchers::Contains("viridis"));
}

TEST_CASE("a patch map upsampled bilinearly keeps its values at the patch centres", "[explain][heatmap]") {
  const std::vector<double> map{0.0, 1.0,   // [2, 2]
                                2.0, 3.0};
  // Patches of 4 x 4 pixels: the values sit at the patch centres, x = 2 and x = 6 in continuous
  // coordinates (pixel x covers [x, x + 1)).
  const auto up = upsample_bilinear(map, 2, 2, 8, 8);
  REQUIRE(up.size() == 64);
  // Pixels 0 and 1 (centres 0.5, 1.5) lie before the first patch centre: clamped to its value.
  CHECK(up[0] == Approx(0.0).margin(1e-7));
  CHECK(up[1] == Approx(0.0).margin(1e-7));
  CHECK(up[7 * 8 + 7] == Approx(3.0).margin(1e-6));
  // Pixel 3 (centre 3.5) is 1.5 / 4 = 0.375 of the way from the first patch centre to the second:
  // 0.375 along x (step 1), 0.75 along y (step 2).
  CHECK(up[0 * 8 + 3] == Approx(0.375).margin(1e-6));
  CHECK(up[3 * 8 + 0] == Approx(0.75).margin(1e-6));
  // Monotone along a row.
  for (int x = 1; x < 8; ++x) CHECK(up[std::size_t(x)] >= up[std::size_t(x - 1)]);
  CHECK_THROWS(upsample_bilinear(map, 3, 2, 8, 8));
  const auto n = normalise_signed({-2.0, 1.0, 0.5});
  CHECK(n == std::vector<double>{-1.0, 0.5, 0.25});
}

TEST_CASE("overlays blend the coloured map over a prepared image and write a PNG", "[explain][heatmap]") {
  const io::ImageU8 img = ramp_image(16, 24);
  // Greyscale: all channels equal the luma.
  const io::ImageU8 g = background(img, {.greyscale = true});
  const double y = 0.299 * img(3, 5, 0) + 0.587 * img(3, 5, 1) + 0.114 * img(3, 5, 2);
  CHECK(int(g(3, 5, 0)) == int(std::lround(y)));
  CHECK(int(g(3, 5, 1)) == int(g(3, 5, 0)));
  // Contrast boost stretches each channel to (nearly) the full range.
  const io::ImageU8 c = background(img, {.contrast_boost = true});
  int lo = 255, hi = 0;
  for (std::size_t i = 0; i < 16 * 24; ++i) lo = std::min(lo, int(c.data()[3 * i])), hi = std::max(hi, int(c.data()[3 * i]));
  CHECK(lo <= 3);
  CHECK(hi >= 252);
  // Fade 1 is white.
  const io::ImageU8 f = background(img, {.fade = 1.0});
  for (auto v : f) CHECK(int(v) == 255);
  // alpha 0 keeps the image, alpha 1 shows the colour map only.
  const std::vector<double> map{0.0, 1.0, 0.5, 0.25, 0.75, 1.0};  // [2, 3]
  OverlayOptions none{.alpha = 0.0};
  CHECK(bool(overlay_map(img, map, 2, 3, none) == img));
  OverlayOptions only{.colormap = Colormap::jet, .alpha = 1.0};
  const io::ImageU8 o = overlay_map(img, map, 2, 3, only);
  const Colour lowest = colour(Colormap::jet, 0.0);  // the top-left pixel holds the map's minimum
  CHECK(int(o(0, 0, 2)) == int(std::lround(255 * lowest[2])));
  CHECK(int(o(0, 0, 0)) == 0);
  CHECK_THROWS(overlay(img, std::vector<double>(10, 0.0)));

  const auto dir = std::filesystem::temp_directory_path() / ("vitiq_heatmap_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  write_overlay_png(dir / "o.png", img, map, 2, 3, only);
  const io::ImageU8 back = io::load_image(dir / "o.png");
  CHECK(bool(back == o));
  std::filesystem::remove_all(dir);
}

TEST_CASE("local changes stay inside their region", "[explain][local_change]") {
  const io::ImageU8 img = ramp_image(32, 40);
  const Region r = parse_region("8,4,16,12");
  CHECK((r.x == 8 && r.y == 4 && r.w == 16 && r.h == 12));
  CHECK_THROWS_WITH(parse_region("8,4,16"), Catch::Matchers::Contains("8,4,16"));
  CHECK_THROWS(parse_region("8,4,0,3"));
  for (const char* spec : {"occlude", "occlude:0", "jpeg:2", "blur:2", "grey"}) {
    const LocalChange ch = parse_change(spec);
    const io::ImageU8 out = apply_local_change(img, r, ch);
    std::size_t changed_inside = 0;
    for (std::size_t y = 0; y < 32; ++y)
      for (std::size_t x = 0; x < 40; ++x)
        for (std::size_t c = 0; c < 3; ++c) {
          const bool inside = x >= 8 && x < 24 && y >= 4 && y < 16;
          if (!inside) REQUIRE(int(out(y, x, c)) == int(img(y, x, c)));
          else changed_inside += out(y, x, c) != img(y, x, c);
        }
    INFO(spec);
    CHECK(changed_inside > 16 * 12 / 2);  // most of the region really changed
  }
  CHECK(parse_change("jpeg").amount == 5);
  CHECK(change_name(parse_change("blur:1.5")) == "blur1.5");
  CHECK_THROWS(parse_change("jpeg:0"));
  CHECK_THROWS(parse_change("sharpen"));
  CHECK_THROWS(apply_local_change(img, {50, 50, 4, 4}, parse_change("grey")));
}

TEST_CASE("region coverage of a patch grid and the share of a map inside it", "[explain][local_change]") {
  // A 32 x 32 image in a 4 x 4 grid of 8-pixel cells; the region covers cell (1, 1) fully and
  // half of cell (1, 2).
  const Region r{8, 8, 12, 8};
  const auto cov = region_coverage(r, 32, 32, 4, 4);
  CHECK(cov[1 * 4 + 1] == Approx(1.0));
  CHECK(cov[1 * 4 + 2] == Approx(0.5));
  CHECK(cov[0] == 0.0);
  double sum = 0;
  for (double v : cov) sum += v;
  CHECK(sum / 16 == Approx(area_share(r, 32, 32)));
  std::vector<double> map(16, 1.0);
  map[5] = 5.0;  // the fully covered cell
  CHECK(mass_share(map, cov) == Approx((5.0 + 0.5) / 20.0));
}
