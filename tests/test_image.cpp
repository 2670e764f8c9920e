// tests/test_image.cpp -- image files (stb) and the preprocessing of vitiq/io/image.hpp.
//
// Every test image is generated at run time into a fresh temporary directory; nothing binary is
// committed. The bilinear-resize expectations were computed with PyTorch (see the snippet beside
// them) and pasted here as literals.
#include "support/catch.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/io/image.hpp"

namespace fs = std::filesystem;
using vitiq::io::ImageF;
using vitiq::io::ImageU8;

namespace {

/// A fresh directory under the system temp folder, removed with its content at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      fs::path p = fs::temp_directory_path() / ("vitiq_test_image_" + std::to_string(rd()));
      if (fs::create_directory(p)) {
        path = p;
        return;
      }
    }
    throw std::runtime_error("cannot create a temporary directory");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path / name; }
};

void write_bytes(const fs::path& p, const std::vector<std::byte>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

/// Deterministic pseudo-random pixels, [h, w, c].
ImageU8 noise_image(std::size_t h, std::size_t w, std::size_t c, std::uint32_t seed) {
  ImageU8 img = ImageU8::from_shape({h, w, c});
  std::uint32_t s = seed;
  for (auto& v : img) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>(s >> 24);
  }
  return img;
}

/// A smooth RGB image (gradients and slow waves), [h, w, 3]: what JPEG codes well.
ImageU8 smooth_image(std::size_t h, std::size_t w) {
  ImageU8 img = ImageU8::from_shape({h, w, 3});
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x) {
      const double fx = double(x) / double(w), fy = double(y) / double(h);
      img(y, x, 0) = static_cast<std::uint8_t>(std::lround(40 + 170 * fx));
      img(y, x, 1) = static_cast<std::uint8_t>(std::lround(128 + 90 * std::sin(6.0 * fy + 2.0 * fx)));
      img(y, x, 2) = static_cast<std::uint8_t>(std::lround(60 + 120 * fy * fx));
    }
  return img;
}

double psnr(const ImageU8& a, const ImageU8& b) {
  REQUIRE(a.shape() == b.shape());
  double se = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a.data()[i]) - double(b.data()[i]);
    se += d * d;
  }
  const double mse = se / double(a.size());
  return 10.0 * std::log10(255.0 * 255.0 / mse);
}

/// The input pattern of the PyTorch snippets below: x.flatten()[i] = ((i * 37) % 101) / 101.
ImageF pattern_image(std::size_t c, std::size_t h, std::size_t w) {
  ImageF img = ImageF::from_shape({c, h, w});
  for (std::size_t i = 0; i < img.size(); ++i)
    img.data()[i] = static_cast<float>(static_cast<double>((i * 37) % 101) / 101.0);
  return img;
}

/// Equal shapes and elements. (Catch's CHECK(a == b) cannot decompose xtensor expressions: xtensor
/// overloads the comparison operators Catch uses, so the comparison is wrapped in a function.)
template <class A, class B>
bool same(const A& a, const B& b) {
  return a.shape() == b.shape() && a == b;
}

/// True when `msg` contains every one of `parts` (the message is logged on failure).
bool mentions(const std::string& msg, std::initializer_list<const char*> parts) {
  UNSCOPED_INFO("message: " << msg);
  for (const char* p : parts)
    if (msg.find(p) == std::string::npos) return false;
  return true;
}

/// Run f, require an exception of type E, and return its message.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("wrong exception type, message: " << e.what());
  }
  FAIL("no exception thrown");
  return {};
}

}  // namespace

TEST_CASE("PNG round trip is exact", "[image]") {
  TempDir dir;
  const ImageU8 img = noise_image(17, 23, 3, 1);
  const fs::path p = dir / "noise.png";
  vitiq::io::write_png(p, img);
  const ImageU8 back = vitiq::io::load_image(p);
  REQUIRE(back.shape() == img.shape());
  CHECK(same(back, img));

  // The in-memory pair gives the same result.
  const auto bytes = vitiq::io::encode_png(img);
  CHECK(same(vitiq::io::decode_image(bytes, "memory"), img));
}

TEST_CASE("JPEG round trip is close at quality 95", "[image]") {
  TempDir dir;
  const ImageU8 img = smooth_image(48, 64);
  const fs::path p = dir / "smooth.jpg";
  vitiq::io::write_jpeg(p, img, 95);
  const ImageU8 back = vitiq::io::load_image(p);
  REQUIRE(back.shape() == img.shape());
  const double q95 = psnr(img, back);
  INFO("PSNR at Q95: " << q95 << " dB");
  CHECK(q95 > 30.0);

  // Lower quality, smaller file, lower fidelity.
  const auto b95 = vitiq::io::encode_jpeg(img, 95);
  const auto b10 = vitiq::io::encode_jpeg(img, 10);
  CHECK(b10.size() < b95.size());
  CHECK(psnr(img, vitiq::io::decode_image(b10, "q10")) < q95);
  // The file written is what encode_jpeg returns.
  CHECK(vitiq::io::read_file(p) == b95);
}

TEST_CASE("JPEG quality is checked", "[image]") {
  const ImageU8 img = smooth_image(8, 8);
  CHECK_NOTHROW(vitiq::io::encode_jpeg(img, 1));
  CHECK_NOTHROW(vitiq::io::encode_jpeg(img, 100));
  CHECK_THROWS_AS(vitiq::io::encode_jpeg(img, 0), vitiq::Error);
  CHECK_THROWS_AS(vitiq::io::encode_jpeg(img, 101), vitiq::Error);
  TempDir dir;
  CHECK_THROWS_AS(vitiq::io::write_jpeg(dir / "bad.jpg", img, -5), vitiq::Error);
  CHECK_FALSE(fs::exists(dir / "bad.jpg"));
}

TEST_CASE("encoders refuse empty images", "[image]") {
  const ImageU8 empty = ImageU8::from_shape({0, 4, 3});
  CHECK_THROWS_AS(vitiq::io::encode_png(empty), vitiq::Error);
  CHECK_THROWS_AS(vitiq::io::encode_jpeg(empty, 90), vitiq::Error);
  const ImageU8 five = ImageU8::from_shape({2, 2, 5});
  CHECK_THROWS_AS(vitiq::io::encode_png(five), vitiq::Error);
}

TEST_CASE("grey and RGBA PNGs load as RGB", "[image]") {
  TempDir dir;
  SECTION("grey") {
    const ImageU8 grey = noise_image(9, 11, 1, 2);
    vitiq::io::write_png(dir / "grey.png", grey);
    const ImageU8 rgb = vitiq::io::load_image(dir / "grey.png");
    REQUIRE(rgb.shape() == ImageU8::shape_type{9, 11, 3});
    for (std::size_t y = 0; y < 9; ++y)
      for (std::size_t x = 0; x < 11; ++x)
        for (std::size_t c = 0; c < 3; ++c) CHECK(rgb(y, x, c) == grey(y, x, 0));
  }
  SECTION("RGBA: alpha dropped") {
    const ImageU8 rgba = noise_image(7, 5, 4, 3);
    vitiq::io::write_png(dir / "rgba.png", rgba);
    const ImageU8 rgb = vitiq::io::load_image(dir / "rgba.png");
    REQUIRE(rgb.shape() == ImageU8::shape_type{7, 5, 3});
    for (std::size_t y = 0; y < 7; ++y)
      for (std::size_t x = 0; x < 5; ++x)
        for (std::size_t c = 0; c < 3; ++c) CHECK(rgb(y, x, c) == rgba(y, x, c));
  }
  SECTION("grey JPEG") {
    ImageU8 grey = ImageU8::from_shape({16, 16, 1});
    grey.fill(100);
    vitiq::io::write_jpeg(dir / "grey.jpg", grey, 90);
    const ImageU8 rgb = vitiq::io::load_image(dir / "grey.jpg");
    REQUIRE(rgb.shape() == ImageU8::shape_type{16, 16, 3});
    CHECK(std::abs(int(rgb(8, 8, 1)) - 100) <= 2);
  }
}

TEST_CASE("bad image files throw with the file name in the message", "[image]") {
  TempDir dir;
  const auto png = vitiq::io::encode_png(noise_image(32, 32, 3, 4));
  const auto jpg = vitiq::io::encode_jpeg(smooth_image(32, 32), 90);

  SECTION("missing file") {
    const fs::path p = dir / "missing.png";
    const std::string msg = message_of<vitiq::IoError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"missing.png"}));
  }
  SECTION("empty file") {
    const fs::path p = dir / "empty.png";
    write_bytes(p, {});
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"empty.png", "empty"}));
  }
  SECTION("not an image") {
    const fs::path p = dir / "garbage.jpg";
    const std::string text = "this is a text file, not a picture\n";
    std::vector<std::byte> bytes(text.size());
    std::memcpy(bytes.data(), text.data(), text.size());
    write_bytes(p, bytes);
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"garbage.jpg", "cannot decode image ("}));
  }
  SECTION("truncated PNG") {
    const fs::path p = dir / "truncated.png";
    write_bytes(p, std::vector<std::byte>(png.begin(), png.begin() + std::ptrdiff_t(png.size() / 2)));
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"truncated.png"}));
  }
  SECTION("corrupt PNG (broken signature)") {
    auto bytes = png;
    bytes[1] = std::byte{'X'};
    const fs::path p = dir / "corrupt.png";
    write_bytes(p, bytes);
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"corrupt.png"}));
  }
  SECTION("JPEG cut in half") {
    const fs::path p = dir / "half.jpg";
    write_bytes(p, std::vector<std::byte>(jpg.begin(), jpg.begin() + std::ptrdiff_t(jpg.size() / 2)));
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"half.jpg"}));
  }
  SECTION("JPEG cut inside its header") {
    const fs::path p = dir / "cut.jpg";
    write_bytes(p, std::vector<std::byte>(jpg.begin(), jpg.begin() + 40));
    const std::string msg = message_of<vitiq::FormatError>([&] { vitiq::io::load_image(p); });
    CHECK(mentions(msg, {"cut.jpg"}));
  }
}

TEST_CASE("a huge image header is refused before decoding", "[image]") {
  // A PNG signature and an IHDR chunk announcing 10000 x 10000 RGB pixels (1e8 > 2^26), and no
  // pixel data. stb does not check chunk CRCs, so the CRC is left zero.
  std::vector<std::uint8_t> raw = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',  // signature
                                   0, 0, 0, 13, 'I', 'H', 'D', 'R',              // chunk length, type
                                   0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10,           // width, height
                                   8, 2, 0, 0, 0,                                // 8-bit RGB
                                   0, 0, 0, 0};                                  // CRC
  std::vector<std::byte> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  const std::string msg =
      message_of<vitiq::FormatError>([&] { vitiq::io::decode_image(bytes, "huge.png"); });
  CHECK(mentions(msg, {"huge.png", "10000 x 10000", "exceeds"}));
}

TEST_CASE("to_chw_float and to_hwc_u8", "[image]") {
  const ImageU8 img = noise_image(5, 6, 3, 5);
  const ImageF f = vitiq::io::to_chw_float(img);
  REQUIRE(f.shape() == ImageF::shape_type{3, 5, 6});
  CHECK(f(2, 4, 1) == static_cast<float>(img(4, 1, 2)) / 255.0f);
  CHECK(f(0, 0, 5) == static_cast<float>(img(0, 5, 0)) / 255.0f);
  CHECK(same(vitiq::io::to_hwc_u8(f), img));  // exact inverse

  ImageF g = ImageF::from_shape({3, 1, 2});
  g(0, 0, 0) = -0.5f;                 // clamped to 0
  g(0, 0, 1) = 1.5f;                  // clamped to 255
  g(1, 0, 0) = 0.5f / 255.0f;         // rounds up to 1
  g(1, 0, 1) = 0.49f / 255.0f;        // rounds down to 0
  g(2, 0, 0) = std::nanf("");         // NaN -> 0
  g(2, 0, 1) = 128.4f / 255.0f;       // 128
  const ImageU8 u = vitiq::io::to_hwc_u8(g);
  REQUIRE(u.shape() == ImageU8::shape_type{1, 2, 3});
  CHECK(int(u(0, 0, 0)) == 0);
  CHECK(int(u(0, 1, 0)) == 255);
  CHECK(int(u(0, 0, 1)) == 1);
  CHECK(int(u(0, 1, 1)) == 0);
  CHECK(int(u(0, 0, 2)) == 0);
  CHECK(int(u(0, 1, 2)) == 128);
}

// PyTorch's reference values below come from Debian's PyTorch 1.13 (/usr/bin/python3) run with
// ATEN_CPU_CAPABILITY=default. PyTorch's kernels may evaluate t0 * w0 + t1 * w1 with fused
// multiply-adds (its AVX2 kernels, what runs by default on this machine, do; a few of the values
// below look fused too), and so may vitiq compiled for a target with FMA: whole images agree to
// 1 ulp here (measured), checked to 2e-7 (about 3 ulp at 1). The weights themselves are checked
// exactly: an impulse response involves only products by 0 and 1, which no fusion changes.

// Impulse responses: the weight PyTorch gives input sample k in output sample j.
//   import torch, torch.nn.functional as F
//   for (i, o) in [(4, 7), (7, 3), (5, 8)]:
//       vals = []
//       for k in range(i):
//           e = torch.zeros(1, 1, 1, i); e[0, 0, 0, k] = 1
//           vals += F.interpolate(e, size=(1, o), mode='bilinear',
//                                 align_corners=False).flatten().tolist()
//       print((i, o), ', '.join('%.9gf' % v for v in vals))
TEST_CASE("resize_bilinear weights are PyTorch's, bit for bit", "[image][resize]") {
  struct Case {
    std::size_t in;
    std::size_t out;
    std::vector<float> expected;  // [in, out]: row k is the response to an impulse at k
  };
  const std::vector<Case> cases = {
      {4, 7,
       {
        1.0f, 0.642857075f, 0.0714285374f, 0.0f, 0.0f, 0.0f, 0.0f,
        0.0f, 0.357142895f, 0.928571463f, 0.499999881f, 0.0f, 0.0f, 0.0f,
        0.0f, 0.0f, 0.0f, 0.500000119f, 0.928571343f, 0.357142687f, 0.0f,
        0.0f, 0.0f, 0.0f, 0.0f, 0.0714286864f, 0.642857313f, 1.0f}},
      {7, 3,
       {
        0.333333373f, 0.0f, 0.0f,
        0.666666627f, 0.0f, 0.0f,
        0.0f, 1.1920929e-07f, 0.0f,
        0.0f, 0.999999881f, 0.0f,
        0.0f, 0.0f, 0.0f,
        0.0f, 0.0f, 0.666666865f,
        0.0f, 0.0f, 0.333333135f}},
      {5, 8,
       {
        1.0f, 0.5625f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
        0.0f, 0.4375f, 0.9375f, 0.3125f, 0.0f, 0.0f, 0.0f, 0.0f,
        0.0f, 0.0f, 0.0625f, 0.6875f, 0.6875f, 0.0625f, 0.0f, 0.0f,
        0.0f, 0.0f, 0.0f, 0.0f, 0.3125f, 0.9375f, 0.4375f, 0.0f,
        0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.5625f, 1.0f}},
  };
  for (const Case& k : cases) {
    for (std::size_t i = 0; i < k.in; ++i) {
      ImageF impulse = xt::zeros<float>({std::size_t{1}, std::size_t{1}, k.in});
      impulse(0, 0, i) = 1.0f;
      const ImageF out = vitiq::io::resize_bilinear(impulse, 1, static_cast<int>(k.out));
      REQUIRE(out.shape() == ImageF::shape_type{1, 1, k.out});
      for (std::size_t j = 0; j < k.out; ++j) {
        INFO(k.in << " -> " << k.out << ": weight of input " << i << " in output " << j);
        CHECK(out(0, 0, j) == k.expected[i * k.out + j]);
      }
    }
  }
}

// Whole images:
//   def make(c, h, w):
//       n = c * h * w
//       return torch.tensor([((i * 37) % 101) / 101.0 for i in range(n)],
//                           dtype=torch.float32).reshape(1, c, h, w)
//   for (c, h, w, oh, ow) in [(2, 3, 4, 5, 7), (1, 6, 5, 4, 3), (3, 4, 4, 4, 6), (1, 7, 9, 2, 3),
//                             (1, 2, 2, 5, 1)]:
//       y = F.interpolate(make(c, h, w), size=(oh, ow), mode='bilinear', align_corners=False,
//                         antialias=False)
//       print((c, h, w, oh, ow), ', '.join('%.9gf' % v for v in y.flatten().tolist()))
TEST_CASE("resize_bilinear matches PyTorch's F.interpolate(bilinear, align_corners=False)",
          "[image][resize]") {
  struct Case {
    std::size_t c, h, w;
    int oh, ow;
    std::vector<float> expected;  // [c, oh, ow] flattened
  };
  const std::vector<Case> cases = {
      {2, 3, 4, 5, 7,  // upscale both axes
       {
        0.0f, 0.130834535f, 0.340169758f, 0.549504995f, 0.687411547f, 0.325318158f,
        0.0990099013f, 0.18613863f, 0.31697315f, 0.526308358f, 0.535643578f, 0.502121627f,
        0.368599683f, 0.285148531f, 0.465346575f, 0.596181035f, 0.805516183f, 0.514851332f,
        0.224186763f, 0.433521986f, 0.564356387f, 0.74455452f, 0.661103249f, 0.527581275f,
        0.494059414f, 0.460537493f, 0.327015489f, 0.243564323f, 0.93069315f, 0.704384685f,
        0.342291355f, 0.480198085f, 0.618104577f, 0.256011188f, 0.0297029708f, 0.396039605f,
        0.526874125f, 0.736209393f, 0.445544481f, 0.154879823f, 0.364215046f, 0.495049506f,
        0.582178235f, 0.570155621f, 0.550919414f, 0.431683123f, 0.341018468f, 0.550353646f,
        0.681188107f, 0.861386061f, 0.635077715f, 0.272984445f, 0.410891116f, 0.620226324f,
        0.829561532f, 0.960395992f, 0.540593982f, 0.528571367f, 0.50933522f, 0.390098989f,
        0.299434245f, 0.508769453f, 0.639603972f, 0.326732665f, 0.457567155f, 0.666902363f,
        0.376237541f, 0.0855728835f, 0.294908106f, 0.425742596f}},
      {1, 6, 5, 4, 3,  // downscale both axes
       {
        0.246699676f, 0.690594018f, 0.384488463f, 0.494224429f, 0.438118786f, 0.382013261f,
        0.575082481f, 0.185643598f, 0.796204567f, 0.322607249f, 0.683168292f, 0.543729365f}},
      {3, 4, 4, 4, 6,  // height unchanged, width upscaled
       {
        0.0f, 0.183168322f, 0.427392751f, 0.67161715f, 0.41584152f, 0.0990099013f,
        0.465346545f, 0.648514867f, 0.72607255f, 0.303630352f, 0.381188154f, 0.564356446f,
        0.93069309f, 0.613861382f, 0.358085811f, 0.60231024f, 0.34653455f, 0.0297029726f,
        0.396039605f, 0.579207897f, 0.65676558f, 0.234323412f, 0.311881244f, 0.495049506f,
        0.86138612f, 0.544554472f, 0.288778901f, 0.53300333f, 0.777227759f, 0.960396111f,
        0.326732665f, 0.509900987f, 0.58745867f, 0.165016472f, 0.242574289f, 0.425742567f,
        0.79207921f, 0.475247532f, 0.219471961f, 0.46369639f, 0.707920849f, 0.891089082f,
        0.257425755f, 0.440594077f, 0.684818447f, 0.929042935f, 0.673267245f, 0.356435657f,
        0.7227723f, 0.405940592f, 0.150165036f, 0.394389451f, 0.63861388f, 0.821782172f,
        0.188118815f, 0.371287137f, 0.615511537f, 0.859735966f, 0.603960335f, 0.287128717f,
        0.653465331f, 0.336633652f, 0.0808581039f, 0.325082541f, 0.56930697f, 0.752475321f,
        0.118811883f, 0.301980197f, 0.546204627f, 0.790429056f, 0.534653366f, 0.217821792f}},
      {1, 7, 9, 2, 3,  // strong downscale (no antialiasing)
       {
        0.737623751f, 0.586633682f, 0.685643554f, 0.7772277f, 0.876237631f, 0.225247532f}},
      {1, 2, 2, 5, 1,  // upscale one axis, downscale the other
       {
        0.183168322f, 0.206435651f, 0.299504966f, 0.392574281f, 0.415841579f}},
  };
  for (const Case& k : cases) {
    INFO("input " << k.c << " x " << k.h << " x " << k.w << " -> " << k.oh << " x " << k.ow);
    const ImageF out = vitiq::io::resize_bilinear(pattern_image(k.c, k.h, k.w), k.oh, k.ow);
    REQUIRE(out.shape() ==
            ImageF::shape_type{k.c, static_cast<std::size_t>(k.oh), static_cast<std::size_t>(k.ow)});
    REQUIRE(out.size() == k.expected.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      INFO("element " << i);
      CHECK(out.data()[i] == Approx(k.expected[i]).margin(2e-7).epsilon(0));
    }
  }
}

// Larger, non-integer scales:
//   for (c, h, w, oh, ow) in [(3, 37, 53, 32, 32), (3, 20, 30, 64, 64)]:
//       y = F.interpolate(make(c, h, w), size=(oh, ow), mode='bilinear',
//                         align_corners=False, antialias=False)[0]
//       print(repr(y.double().sum().item()))
//       for idx in [(0,0,0), (0,5,17), (1,31,0), (2,13,31), (2,31,31), (1,7,9)]:
//           print(idx, '%.9gf' % y[idx].item())
TEST_CASE("resize_bilinear matches PyTorch at non-integer scales", "[image][resize]") {
  struct Probe {
    std::size_t c, y, x;
    float value;
  };
  const auto check = [](const ImageF& out, double expected_sum, const std::vector<Probe>& probes) {
    double sum = 0.0;
    for (float v : out) sum += v;
    CHECK(sum == Approx(expected_sum).epsilon(1e-9));
    for (const Probe& p : probes) {
      INFO("element " << p.c << ", " << p.y << ", " << p.x);
      CHECK(out(p.c, p.y, p.x) == Approx(p.value).margin(2e-7).epsilon(0));
    }
  };
  SECTION("37 x 53 -> 32 x 32") {
    check(vitiq::io::resize_bilinear(pattern_image(3, 37, 53), 32, 32), 1521.968629845418,
          {{0, 0, 0, 0.152691841f}, {0, 5, 17, 0.455182076f}, {1, 31, 0, 0.49664247f},
           {2, 13, 31, 0.276920706f}, {2, 31, 31, 0.639387369f}, {1, 7, 9, 0.365253687f}});
  }
  SECTION("20 x 30 -> 64 x 64") {
    check(vitiq::io::resize_bilinear(pattern_image(3, 20, 30), 64, 64), 6079.72763598524,
          {{0, 0, 0, 0.0f}, {0, 5, 17, 0.809870064f}, {1, 31, 0, 0.709467888f},
           {2, 13, 31, 0.527537167f}, {2, 31, 31, 0.471844047f}, {1, 7, 9, 0.278774738f}});
  }
}

TEST_CASE("resize_bilinear to the same size is the identity", "[image][resize]") {
  const ImageF img = pattern_image(3, 13, 17);
  CHECK(same(vitiq::io::resize_bilinear(img, 13, 17), img));
  CHECK_THROWS_AS(vitiq::io::resize_bilinear(img, 0, 17), vitiq::Error);
  CHECK_THROWS_AS(vitiq::io::resize_bilinear(img, 13, -1), vitiq::Error);
  // A constant image stays constant at any size.
  ImageF flat = ImageF::from_shape({1, 5, 7});
  flat.fill(0.25f);
  const ImageF big = vitiq::io::resize_bilinear(flat, 11, 3);
  for (float v : big) CHECK(v == 0.25f);
}

TEST_CASE("crop, center_crop and hflip", "[image]") {
  const ImageF img = pattern_image(3, 5, 4);
  SECTION("crop copies the rectangle") {
    const ImageF c = vitiq::io::crop(img, 1, 2, 3, 2);
    REQUIRE(c.shape() == ImageF::shape_type{3, 3, 2});
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t y = 0; y < 3; ++y)
        for (std::size_t x = 0; x < 2; ++x) CHECK(c(k, y, x) == img(k, y + 1, x + 2));
    CHECK(same(vitiq::io::crop(img, 0, 0, 5, 4), img));
  }
  SECTION("crop bounds are checked") {
    CHECK_THROWS_AS(vitiq::io::crop(img, -1, 0, 2, 2), vitiq::Error);
    CHECK_THROWS_AS(vitiq::io::crop(img, 0, -1, 2, 2), vitiq::Error);
    CHECK_THROWS_AS(vitiq::io::crop(img, 4, 0, 2, 2), vitiq::Error);  // bottom 6 > 5
    CHECK_THROWS_AS(vitiq::io::crop(img, 0, 3, 2, 2), vitiq::Error);  // right 5 > 4
    CHECK_THROWS_AS(vitiq::io::crop(img, 0, 0, 0, 2), vitiq::Error);
    CHECK_THROWS_AS(vitiq::io::crop(img, 0, 0, 2, 0), vitiq::Error);
    CHECK_THROWS_AS(vitiq::io::crop(img, 2147483647, 0, 2147483647, 1), vitiq::Error);  // no overflow
    CHECK_NOTHROW(vitiq::io::crop(img, 4, 3, 1, 1));
  }
  SECTION("center_crop places the square as torchvision does") {
    // torchvision: top = int(round((H - size) / 2)), Python's round: half to even.
    // H = 5, size 2: round(1.5) = 2; W = 4: round(1.0) = 1.
    const ImageF c = vitiq::io::center_crop(img, 2);
    CHECK(same(c, vitiq::io::crop(img, 2, 1, 2, 2)));
    // H = 5, size 4: round(0.5) = 0; W = 4: 0.
    CHECK(same(vitiq::io::center_crop(img, 4), vitiq::io::crop(img, 0, 0, 4, 4)));
    // H = 9, size 4: round(2.5) = 2.
    const ImageF tall = pattern_image(1, 9, 4);
    CHECK(same(vitiq::io::center_crop(tall, 4), vitiq::io::crop(tall, 2, 0, 4, 4)));
    CHECK_THROWS_AS(vitiq::io::center_crop(img, 5), vitiq::Error);  // wider than W = 4
    CHECK_THROWS_AS(vitiq::io::center_crop(img, 0), vitiq::Error);
  }
  SECTION("hflip mirrors the columns") {
    const ImageF f = vitiq::io::hflip(img);
    REQUIRE(f.shape() == img.shape());
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t y = 0; y < 5; ++y)
        for (std::size_t x = 0; x < 4; ++x) CHECK(f(k, y, x) == img(k, y, 3 - x));
    CHECK(same(vitiq::io::hflip(f), img));
  }
}

TEST_CASE("normalize uses (x - mean) / std per channel", "[image]") {
  ImageF img = pattern_image(3, 2, 3);
  const ImageF before = img;
  vitiq::io::normalize(img, vitiq::io::imagenet_mean, vitiq::io::imagenet_std);
  for (std::size_t k = 0; k < 3; ++k)
    for (std::size_t y = 0; y < 2; ++y)
      for (std::size_t x = 0; x < 3; ++x)
        CHECK(img(k, y, x) ==
              (before(k, y, x) - vitiq::io::imagenet_mean[k]) / vitiq::io::imagenet_std[k]);
  // torchvision Normalize on 0.5 in the red channel: (0.5 - 0.485) / 0.229.
  ImageF half = ImageF::from_shape({3, 1, 1});
  half.fill(0.5f);
  vitiq::io::normalize(half, vitiq::io::imagenet_mean, vitiq::io::imagenet_std);
  CHECK(half(0, 0, 0) == Approx(0.0655021834).epsilon(1e-6));
  CHECK(half(1, 0, 0) == Approx(0.196428571).epsilon(1e-6));
  CHECK(half(2, 0, 0) == Approx(0.4177777778).epsilon(1e-6));

  ImageF one = ImageF::from_shape({1, 2, 2});
  CHECK_THROWS_AS(vitiq::io::normalize(one, vitiq::io::imagenet_mean, vitiq::io::imagenet_std),
                  vitiq::Error);
}

TEST_CASE("prepare_for_model", "[image]") {
  TempDir dir;
  const ImageU8 img = smooth_image(40, 48);  // H 40, W 48
  const fs::path p = dir / "photo.png";
  vitiq::io::write_png(p, img);

  SECTION("resize and normalise") {
    const ImageF x = vitiq::io::prepare_for_model(p, 32, {});
    REQUIRE(x.shape() == ImageF::shape_type{3, 32, 32});
    ImageF expected = vitiq::io::resize_bilinear(vitiq::io::to_chw_float(img), 32, 32);
    vitiq::io::normalize(expected, vitiq::io::imagenet_mean, vitiq::io::imagenet_std);
    CHECK(same(x, expected));
  }
  SECTION("neither step") {
    const ImageF x = vitiq::io::prepare_for_model(
        p, 32, vitiq::io::Preprocess{.resize = true, .normalize = false});
    CHECK(same(x, vitiq::io::resize_bilinear(vitiq::io::to_chw_float(img), 32, 32)));
  }
  SECTION("right size, no resize needed") {
    const fs::path sq = dir / "square.png";
    vitiq::io::write_png(sq, smooth_image(32, 32));
    const ImageF x = vitiq::io::prepare_for_model(
        sq, 32, vitiq::io::Preprocess{.resize = false, .normalize = false});
    CHECK(same(x, vitiq::io::to_chw_float(smooth_image(32, 32))));
  }
  SECTION("wrong size with resizing off") {
    const std::string msg = message_of<vitiq::Error>([&] {
      vitiq::io::prepare_for_model(p, 32, vitiq::io::Preprocess{.resize = false, .normalize = true});
    });
    CHECK(mentions(msg, {"photo.png", "48 x 40", "32 x 32"}));
  }
  SECTION("unreadable file") {
    const std::string msg = message_of<vitiq::IoError>(
        [&] { vitiq::io::prepare_for_model(dir / "nope.png", 32, {}); });
    CHECK(mentions(msg, {"nope.png"}));
  }
}
