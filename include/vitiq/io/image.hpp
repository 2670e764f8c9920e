// vitiq/io/image.hpp -- image files in and out, and the preprocessing that feeds a model.
//
// Two image types:
//   ImageU8  [H, W, 3]  8-bit RGB, interleaved, as image files store it;
//   ImageF   [C, H, W]  float planes, as a model consumes them (values in [0, 1] before
//                       normalisation).
// Decoding and encoding use stb_image / stb_image_write. vitiq never defines
// STB_IMAGE_IMPLEMENTATION: link the compiled library (Debian: pkg-config `stb`) or define the
// implementation in exactly one translation unit of your own program.
//
// Invariants kept here:
//   - every error on a file or a byte buffer is a vitiq::Error (IoError, FormatError) whose message
//     starts with the file (or source) name;
//   - a decoder never allocates for an image larger than max_image_pixels: the header is checked
//     first (stbi_info_from_memory), so a hostile header cannot force a huge allocation;
//   - resize_bilinear computes what PyTorch's
//     F.interpolate(x, size, mode='bilinear', align_corners=False, antialias=False) computes on the
//     CPU, in the same order of float operations.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<stb_image.h>)  // include path points into the stb folder (pkg-config stb)
#include <stb_image.h>
#include <stb_image_write.h>
#else  // Debian's plain /usr/include/stb layout
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#endif

#include "vitiq/detail/xtensor.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"

namespace vitiq::io {

/// 8-bit RGB image, shape [H, W, 3], row-major (the channel varies fastest).
using ImageU8 = xt::xtensor<std::uint8_t, 3>;
/// Float image, shape [C, H, W], row-major (one plane per channel).
using ImageF = xt::xtensor<float, 3>;

/// Largest image (width * height) the decoders accept: 2^26 = 67,108,864 pixels (192 MiB as RGB).
inline constexpr std::int64_t max_image_pixels = std::int64_t{1} << 26;

/// ImageNet channel means (RGB) used by the seed project and by torchvision's models.
inline constexpr std::array<float, 3> imagenet_mean = {0.485f, 0.456f, 0.406f};
/// ImageNet channel standard deviations (RGB).
inline constexpr std::array<float, 3> imagenet_std = {0.229f, 0.224f, 0.225f};

namespace detail {

/// stb's reason for its last failure on this thread ("unknown" when it gave none).
inline std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r != nullptr && *r != '\0' ? std::string(r) : std::string("unknown reason");
}

/// Memory sink for stbi_write_*_to_func. The callback runs inside C code, so it must not throw:
/// an allocation failure is recorded and reported once stb has returned.
struct ByteSink {
  std::vector<std::byte> bytes;
  bool failed = false;

  static void append(void* context, void* data, int size) {
    auto* self = static_cast<ByteSink*>(context);
    if (self->failed || size <= 0) return;
    try {
      const auto* p = static_cast<const std::byte*>(data);
      self->bytes.insert(self->bytes.end(), p, p + size);
    } catch (...) {
      self->failed = true;
    }
  }
};

/// Check an image about to be encoded; return its (H, W, channels) as ints.
/// @param img    [H, W, c] with c in 1..4
/// @param what   "PNG" or "JPEG", for messages
/// @param max_side  the format's limit on a side (65535 for JPEG)
inline std::array<int, 3> encodable_shape(const ImageU8& img, const char* what, std::size_t max_side) {
  const std::size_t h = img.shape(0), w = img.shape(1), c = img.shape(2);
  if (h == 0 || w == 0)
    throw Error(std::string("cannot encode an empty image as ") + what + " (" + std::to_string(h) +
                " x " + std::to_string(w) + ")");
  if (c < 1 || c > 4)
    throw Error(std::string("cannot encode an image with ") + std::to_string(c) + " channels as " +
                what + " (1 to 4 are possible)");
  if (h > max_side || w > max_side || h * w * c > static_cast<std::size_t>(INT_MAX))
    throw Error(std::string("image of ") + std::to_string(h) + " x " + std::to_string(w) +
                " pixels is too large to encode as " + what);
  return {static_cast<int>(h), static_cast<int>(w), static_cast<int>(c)};
}

/// One axis of PyTorch's bilinear interpolation: for each output index, the two source indices
/// and their weights. Mirrors aten/src/ATen/native/UpSample.h (compute_source_index_and_lambda,
/// area_pixel_compute_source_index, area_pixel_compute_scale) for align_corners = false and float
/// tensors, including its mix of precisions: the scale in/out is a float; the source coordinate
/// is computed in double (at::acc_type<float> on the CPU) from that float scale; lambda1 is that
/// coordinate's fractional part rounded to float, and lambda0 = 1 - lambda1 in float. (Computing
/// the coordinate in float instead moves some weights by a few ulp; checked against PyTorch 1.13.)
struct LinearTaps {
  std::vector<std::size_t> i0, i1;  // [out] source indices
  std::vector<float> w0, w1;        // [out] their weights, w0 + w1 = 1
};

inline LinearTaps linear_taps(std::size_t in, std::size_t out) {
  LinearTaps t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w0.resize(out);
  t.w1.resize(out);
  // area_pixel_compute_scale<float>: (float)input_size / output_size.
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const double scale_d = scale;  // promoted, as area_pixel_compute_source_index<double> sees it
  for (std::size_t o = 0; o < out; ++o) {
    if (in == out) {  // this axis is not resized: copy
      t.i0[o] = t.i1[o] = o;
      t.w0[o] = 1.0f;
      t.w1[o] = 0.0f;
      continue;
    }
    // area_pixel_compute_source_index<double>: half-pixel centres, negative sources clamped to 0.
    double src = scale_d * (static_cast<double>(o) + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    const auto lo = static_cast<std::size_t>(src);  // src >= 0: truncation is floor
    t.i0[o] = lo;
    t.i1[o] = lo + (lo < in - 1 ? 1 : 0);  // the last row/column pairs with itself
    const auto w1 = static_cast<float>(src - static_cast<double>(lo));  // in [0, 1)
    t.w1[o] = w1;
    t.w0[o] = 1.0f - w1;
  }
  return t;
}

/// Why stb_image must not see these bytes as a JPEG; empty when they are not a JPEG or are safe.
///
/// Debian 12's stb_image (2022) builds a Huffman table from the 16 code counts of a DHT segment
/// without checking that they add up to at most 256, then writes that many entries into tables of
/// 256 and 257 bytes: a hostile JPEG corrupts the heap (found by tests/fuzz/fuzz_image). This walks
/// the segments the way stb_image reads them (the same test for a JPEG, bytes before a marker
/// skipped, FF fill bytes, every marker but SOI, EOI, TEM and RSTn followed by its length,
/// entropy-coded data scanned for the next marker, bytes past the end read as 0) and checks every
/// DHT segment stb_image could parse; a marker inside a length-delimited segment is never one.
/// It also refuses a scan (SOS) that decodes with a Huffman table no earlier DHT defined: stb_image
/// then reads a table from uninitialised memory (an out-of-bounds read, found by fuzz_image).
inline std::string jpeg_defect(std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const auto at = [&](std::size_t k) -> unsigned { return k < n ? p[k] : 0u; };  // stbi__get8 at EOF: 0
  std::size_t i = 0;
  bool defined[2][4] = {};   // [DC, AC][table id]: set by a DHT segment
  bool progressive = false;  // the last SOF was SOF2
  if (at(i++) != 0xFF) return {};  // stbi__jpeg_test: FF (FF...) D8
  while (i < n && at(i) == 0xFF) ++i;
  if (at(i++) != 0xD8) return {};
  while (i < n) {
    if (p[i] != 0xFF) { ++i; continue; }  // entropy-coded data, or bytes stb_image skips
    while (i < n && p[i] == 0xFF) ++i;    // fill bytes
    if (i >= n) break;
    const unsigned m = p[i++];
    if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0xD8 || m == 0x01) continue;  // no length
    if (m == 0xD9) break;                                                          // EOI
    const std::size_t len = (at(i) << 8) | at(i + 1);                              // includes itself
    if (m == 0xC4) {  // DHT: tables of (class/id, 16 counts, values) until the length is used up
      std::size_t k = i + 2;
      for (long left = long(len) - 2; left > 0;) {
        const unsigned q = at(k);  // table class (0 DC, 1 AC) and id; stb refuses class > 1, id > 3
        unsigned codes = 0;
        for (std::size_t c = 0; c < 16; ++c) codes += at(k + 1 + c);
        if (codes > 256)
          return "a Huffman table of " + std::to_string(codes) + " codes at byte " + std::to_string(i - 2) +
                 ", at most 256 are possible";
        if ((q >> 4) <= 1 && (q & 15) <= 3) defined[q >> 4][q & 15] = true;
        k += 17 + codes;
        left -= long(17 + codes);
      }
    }
    if (m == 0xC0 || m == 0xC1 || m == 0xC2) progressive = (m == 0xC2);  // the SOFs stb_image reads
    if (m == 0xDA) {  // SOS: Ns, Ns x (component, DC/AC table ids), Ss, Se, Ah/Al
      const unsigned ns = at(i + 2);
      const unsigned ss = at(i + 3 + 2 * ns), ah = at(i + 5 + 2 * ns) >> 4;
      // The tables stb_image decodes this scan with: DC and AC (baseline), DC in a first DC scan,
      // AC in an AC scan (progressive); a DC refinement scan reads raw bits.
      const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
      for (unsigned c = 0; c < ns && c < 4; ++c) {
        const unsigned td = at(i + 4 + 2 * c) >> 4, ta = at(i + 4 + 2 * c) & 15;
        if ((dc && td <= 3 && !defined[0][td]) || (ac && ta <= 3 && !defined[1][ta]))
          return "the scan at byte " + std::to_string(i - 2) + " uses " + (dc && td <= 3 && !defined[0][td] ? "DC" : "AC") +
                 " Huffman table " + std::to_string(dc && td <= 3 && !defined[0][td] ? td : ta) +
                 ", which no DHT segment before it defines";
      }
    }
    i += std::max<std::size_t>(len, 2);
  }
  return {};
}

/// Why stb_image must not see these bytes as a PNG; empty when they are not a PNG or are safe.
///
/// stb_image grows its buffer for the compressed data to the length an IDAT chunk claims before it
/// reads the chunk: 300 bytes claiming a 1 GB chunk allocate 1 GB (found by tests/fuzz/fuzz_image).
/// Every chunk up to IEND must fit in the bytes that follow its header. An empty IDAT chunk before
/// any image data is refused too: stb_image then copies 0 bytes to a null pointer (undefined).
inline std::string png_defect(std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  static constexpr unsigned char signature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (n < 8 || std::memcmp(p, signature, 8) != 0) return {};
  const auto be32 = [&](std::size_t k) {
    return (std::uint32_t{p[k]} << 24) | (std::uint32_t{p[k + 1]} << 16) | (std::uint32_t{p[k + 2]} << 8) | p[k + 3];
  };
  std::size_t i = 8;
  bool have_data = false;  // a non-empty IDAT seen
  for (; i + 8 <= n;) {
    const std::uint32_t len = be32(i);
    const std::string type(reinterpret_cast<const char*>(p + i + 4), 4);
    if (len > n - i - 8)
      return "chunk '" + type + "' at byte " + std::to_string(i) + " claims " + std::to_string(len) +
             " bytes, only " + std::to_string(n - i - 8) + " follow";
    if (type == "IEND") return {};
    if (type == "IDAT" && len == 0 && !have_data)  // stb_image: memcpy to a null buffer (UBSan, fuzz_image)
      return "an empty IDAT chunk at byte " + std::to_string(i) + " comes before any image data";
    have_data = have_data || (type == "IDAT" && len > 0);
    i += 12 + std::size_t(len);  // length, type, data, CRC
  }
  if (i < n) return "the chunk header at byte " + std::to_string(i) + " is cut short";
  return {};
}

/// Why stb_image must not see these bytes as a PNM; empty when they are not a binary PGM/PPM or are
/// safe.
///
/// Debian 12's stb_image reads the width, height and maximum value of a PGM/PPM header into an int
/// with no overflow check: "P5" followed by a long run of digits is signed-integer overflow
/// (undefined behaviour; found by tests/fuzz/fuzz_image under UBSan). This reads the header the way
/// stb_image does ("P5" or "P6", then three integers separated by whitespace and # comments) and
/// refuses a number larger than INT_MAX, and a maximum value over 255: stb_image 2.27 converts
/// 16-bit samples with its 8-bit routine and reads past its buffer (found by fuzz_image).
inline std::string pnm_defect(std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return {};
  const auto space = [](unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  static constexpr const char* field[3] = {"width", "height", "maximum value"};
  std::size_t i = 2;
  for (const char* what : field) {
    for (;;) {  // whitespace and comments up to the end of their line
      while (i < n && space(p[i])) ++i;
      if (i >= n || p[i] != '#') break;
      while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
    }
    const std::size_t start = i;
    std::int64_t value = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; ++i) {
      value = value * 10 + (p[i] - '0');
      if (value > INT_MAX)
        return std::string("the ") + what + " at byte " + std::to_string(start) + " does not fit in an int";
    }
    if (what == field[2] && value > 255)
      return "maximum value " + std::to_string(value) + " at byte " + std::to_string(start) +
             ": 16-bit PGM/PPM is not supported";
  }
  return {};
}

/// The format decode_image reads these bytes as, from their first bytes: "JPEG" (FF D8, after any
/// FF fill bytes), "PNG" (its signature), "BMP" ("BM"), "PNM" ("P5" or "P6"); empty for anything
/// else. These are exactly the tests stb_image applies first, and none of these starts can pass
/// stb_image's tests for the formats it would try after a failed one (GIF, PSD, PIC, HDR, TGA).
inline std::string sniff_format(std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  static constexpr unsigned char png[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (n >= 8 && std::memcmp(p, png, 8) == 0) return "PNG";
  if (n >= 2 && p[0] == 0xFF) {
    std::size_t i = 1;
    while (i < n && p[i] == 0xFF) ++i;
    if (i < n && p[i] == 0xD8) return "JPEG";
  }
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "BMP";
  if (n >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) return "PNM";
  return {};
}

/// Why stb_image must not parse these bytes at all (not even their header), as the reason
/// decode_image gives, e.g. "corrupt JPEG: ..."; empty when the pre-checks above find nothing.
///
/// Only JPEG, PNG, BMP and 8-bit binary PGM/PPM reach stb_image. Debian 12's stb_image (2.27) has
/// memory errors a fuzzer finds within minutes in its other decoders and in 16-bit PNM (it
/// converts 16-bit samples with the 8-bit routine: a heap overflow, found by fuzz_image); image
/// quality data sets are JPEG, PNG or BMP.
inline std::string stb_defect(std::span<const std::byte> bytes) {
  if (sniff_format(bytes).empty())
    return "not a JPEG, PNG, BMP or binary PGM/PPM file: vitiq reads only these formats";
  if (std::string why = jpeg_defect(bytes); !why.empty()) return "corrupt JPEG: " + why;
  if (std::string why = png_defect(bytes); !why.empty()) return "truncated PNG: " + why;
  if (std::string why = pnm_defect(bytes); !why.empty()) return "corrupt PNM header: " + why;
  return {};
}

}  // namespace detail

/// @brief Decode an image held in memory (JPEG, PNG, BMP, or 8-bit binary PGM/PPM) into 8-bit RGB.
/// Grey, grey + alpha and RGBA images are converted to RGB (alpha is dropped, not composited);
/// 16-bit PNGs are reduced to 8 bits. Other formats stb_image knows (GIF, TGA, PSD, HDR, PIC) are
/// refused: Debian 12's stb_image is not safe on hostile files of those (see stb_defect).
/// @param bytes        the encoded file content
/// @param source_name  names the data in error messages (usually the file name)
/// @return [H, W, 3] RGB
/// @throws FormatError "<source_name>: cannot decode image (<stb's reason>)" when the data is not
///         an image stb can read, is empty, or is larger than max_image_pixels (checked from the
///         header, before any pixel buffer is allocated); "<source_name>: cannot decode image
///         (corrupt JPEG: ...)" for a JPEG whose Huffman tables stb_image would overflow on,
///         "... (truncated PNG: ...)" for a PNG chunk longer than the bytes that follow it,
///         "... (corrupt PNM header: ...)" for a PGM/PPM header number that overflows an int or
///         a 16-bit PGM/PPM; "... (not a JPEG, PNG, BMP or binary PGM/PPM file: ...)" for
///         anything else.
inline ImageU8 decode_image(std::span<const std::byte> bytes, std::string_view source_name) {
  const std::string name(source_name);
  if (bytes.empty()) throw FormatError(name + ": cannot decode image (empty file)");
  if (bytes.size() > static_cast<std::size_t>(INT_MAX))
    throw FormatError(name + ": cannot decode image (file of " + std::to_string(bytes.size()) +
                      " bytes is larger than the 2 GiB the decoder accepts)");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  if (const std::string why = detail::stb_defect(bytes); !why.empty())  // before stb parses anything
    throw FormatError(name + ": cannot decode image (" + why + ")");

  // Read the header only, and refuse huge images before the decoder allocates for them.
  int w = 0, h = 0, comp = 0;
  if (stbi_info_from_memory(data, len, &w, &h, &comp) == 0)
    throw FormatError(name + ": cannot decode image (" + detail::stb_reason() + ")");
  if (w <= 0 || h <= 0 || std::int64_t{w} * h > max_image_pixels)
    throw FormatError(name + ": image of " + std::to_string(w) + " x " + std::to_string(h) +
                      " pixels exceeds the limit of " + std::to_string(max_image_pixels) +
                      " pixels");

  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(data, len, &w, &h, &comp, /*req_comp=*/3), &stbi_image_free);
  if (!pixels) throw FormatError(name + ": cannot decode image (" + detail::stb_reason() + ")");
  if (w <= 0 || h <= 0 || std::int64_t{w} * h > max_image_pixels)  // the decoder disagreed with the header
    throw FormatError(name + ": cannot decode image (inconsistent size " + std::to_string(w) +
                      " x " + std::to_string(h) + ")");

  ImageU8 img = ImageU8::from_shape({static_cast<std::size_t>(h), static_cast<std::size_t>(w), 3});
  std::memcpy(img.data(), pixels.get(), img.size());
  return img;
}

/// @brief Read and decode an image file into 8-bit RGB (see decode_image for formats and
/// conversions).
/// @param path  the file
/// @return [H, W, 3] RGB
/// @throws IoError when the file cannot be read; FormatError naming the file and stb's reason,
///         e.g. "photo.jpg: cannot decode image (bad huffman code)", when it is not a readable
///         image or exceeds max_image_pixels.
inline ImageU8 load_image(const std::filesystem::path& path) {
  const std::vector<std::byte> bytes = read_file(path);
  return decode_image(bytes, path.string());
}

/// @brief Encode an image as PNG in memory (stb_image_write, compression level 8).
/// @param img  [H, W, c], c = 3 (RGB); 1 (grey), 2 (grey + alpha) and 4 (RGBA) are written too
/// @return the PNG file content
/// @throws Error when the image is empty, has another channel count, or is too large.
inline std::vector<std::byte> encode_png(const ImageU8& img) {
  const auto [h, w, c] = detail::encodable_shape(img, "PNG", static_cast<std::size_t>(INT_MAX));
  detail::ByteSink sink;
  if (stbi_write_png_to_func(&detail::ByteSink::append, &sink, w, h, c, img.data(), w * c) == 0 ||
      sink.failed)
    throw Error("cannot encode a " + std::to_string(h) + " x " + std::to_string(w) +
                " image as PNG (out of memory)");
  return std::move(sink.bytes);
}

/// @brief Encode an image as baseline JPEG in memory (stb_image_write).
/// stb subsamples chroma 4:2:0 at quality <= 90 and keeps full chroma (4:4:4) above 90.
/// @param img      [H, W, c], c = 3 (RGB) or 1 (grey); 2 and 4 channels are written without alpha
/// @param quality  1 (worst) .. 100 (best), the IJG quality scale
/// @return the JPEG file content
/// @throws Error when quality is outside 1..100, or the image is empty, has a side over 65535
///         pixels, or has another channel count.
inline std::vector<std::byte> encode_jpeg(const ImageU8& img, int quality) {
  if (quality < 1 || quality > 100)
    throw Error("JPEG quality must be in 1..100, got " + std::to_string(quality));
  const auto [h, w, c] = detail::encodable_shape(img, "JPEG", 65535);
  detail::ByteSink sink;
  if (stbi_write_jpg_to_func(&detail::ByteSink::append, &sink, w, h, c, img.data(), quality) == 0 ||
      sink.failed)
    throw Error("cannot encode a " + std::to_string(h) + " x " + std::to_string(w) +
                " image as JPEG (out of memory)");
  return std::move(sink.bytes);
}

/// @brief Write an image as a PNG file, atomically (a reader never sees a partial file).
/// @param path  destination
/// @param img   [H, W, 3] RGB (1, 2 or 4 channels also accepted, see encode_png)
/// @throws Error when the image cannot be encoded; IoError naming the file when it cannot be
///         written.
inline void write_png(const std::filesystem::path& path, const ImageU8& img) {
  atomic_write(path, encode_png(img));
}

/// @brief Write an image as a JPEG file, atomically.
/// @param path     destination
/// @param img      [H, W, 3] RGB (see encode_jpeg)
/// @param quality  1..100
/// @throws Error when quality is outside 1..100 or the image cannot be encoded; IoError naming
///         the file when it cannot be written.
inline void write_jpeg(const std::filesystem::path& path, const ImageU8& img, int quality) {
  atomic_write(path, encode_jpeg(img, quality));
}

/// @brief 8-bit interleaved pixels to float planes in [0, 1]: out[c, y, x] = in[y, x, c] / 255
/// (torchvision's ToTensor).
/// @param img  [H, W, C]
/// @return [C, H, W]
inline ImageF to_chw_float(const ImageU8& img) {
  const std::size_t h = img.shape(0), w = img.shape(1), c = img.shape(2);
  ImageF out = ImageF::from_shape({c, h, w});
  const std::uint8_t* src = img.data();
  float* dst = out.data();
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x)
      for (std::size_t k = 0; k < c; ++k)
        dst[(k * h + y) * w + x] = static_cast<float>(src[(y * w + x) * c + k]) / 255.0f;
  return out;
}

/// @brief Float planes in [0, 1] back to 8-bit interleaved pixels:
/// out[y, x, c] = round(clamp(in[c, y, x], 0, 1) * 255), halves rounded up; NaN gives 0.
/// Inverts to_chw_float exactly.
/// @param img  [C, H, W]
/// @return [H, W, C]
inline ImageU8 to_hwc_u8(const ImageF& img) {
  const std::size_t c = img.shape(0), h = img.shape(1), w = img.shape(2);
  ImageU8 out = ImageU8::from_shape({h, w, c});
  const float* src = img.data();
  std::uint8_t* dst = out.data();
  for (std::size_t k = 0; k < c; ++k)
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) {
        const float v = src[(k * h + y) * w + x];
        const float clamped = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;  // NaN -> 0
        dst[(y * w + x) * c + k] = static_cast<std::uint8_t>(clamped * 255.0f + 0.5f);
      }
  return out;
}

/// @brief Bilinear resize with exactly the semantics of PyTorch's
/// `F.interpolate(x[None], size=(out_h, out_w), mode='bilinear', align_corners=False,
/// antialias=False)[0]`: source coordinate src = (dst + 0.5) * in / out - 0.5, clamped at 0 below;
/// the upper neighbour index clamped at in - 1; weights computed with PyTorch's precisions (float
/// scale, double coordinate, float weights); the interpolation along a row done first, then the
/// two rows blended, in float. No antialiasing: downscaling by more than 2x aliases, as in PyTorch.
/// @param img    [C, H, W]
/// @param out_h  output height, >= 1
/// @param out_w  output width, >= 1
/// @return [C, out_h, out_w]; a copy of img when the size is unchanged
/// @throws Error when out_h or out_w < 1, or img is empty.
inline ImageF resize_bilinear(const ImageF& img, int out_h, int out_w) {
  const std::size_t c = img.shape(0), in_h = img.shape(1), in_w = img.shape(2);
  if (out_h < 1 || out_w < 1)
    throw Error("resize_bilinear: output size " + std::to_string(out_h) + " x " +
                std::to_string(out_w) + " must be at least 1 x 1");
  const auto oh = static_cast<std::size_t>(out_h), ow = static_cast<std::size_t>(out_w);
  if (oh == in_h && ow == in_w) return img;
  if (in_h == 0 || in_w == 0) throw Error("resize_bilinear: cannot resize an empty image");

  const detail::LinearTaps ty = detail::linear_taps(in_h, oh);
  const detail::LinearTaps tx = detail::linear_taps(in_w, ow);
  ImageF out = ImageF::from_shape({c, oh, ow});
  for (std::size_t k = 0; k < c; ++k) {
    const float* plane = img.data() + k * in_h * in_w;  // [in_h, in_w]
    float* dst = out.data() + k * oh * ow;               // [oh, ow]
    for (std::size_t y = 0; y < oh; ++y) {
      const float* r0 = plane + ty.i0[y] * in_w;
      const float* r1 = plane + ty.i1[y] * in_w;
      const float wy0 = ty.w0[y], wy1 = ty.w1[y];
      for (std::size_t x = 0; x < ow; ++x) {
        const std::size_t x0 = tx.i0[x], x1 = tx.i1[x];
        const float wx0 = tx.w0[x], wx1 = tx.w1[x];
        // PyTorch's Interpolate<2>: t0 * w0 + t1 * w1, the inner (width) sum evaluated first.
        const float t0 = r0[x0] * wx0 + r0[x1] * wx1;
        const float t1 = r1[x0] * wx0 + r1[x1] * wx1;
        dst[y * ow + x] = t0 * wy0 + t1 * wy1;
      }
    }
  }
  return out;
}

/// @brief Per-channel normalisation in place: img[c] = (img[c] - mean[c]) / std[c]
/// (torchvision's Normalize: a subtraction, then a division).
/// @param img   [3, H, W]
/// @param mean  per-channel mean, e.g. imagenet_mean
/// @param std   per-channel standard deviation, e.g. imagenet_std; every entry non-zero
/// @throws Error when img does not have 3 channels.
inline void normalize(ImageF& img, std::array<float, 3> mean, std::array<float, 3> std) {
  if (img.shape(0) != 3)
    throw Error("normalize: expected 3 channels, got " + std::to_string(img.shape(0)));
  const std::size_t plane = img.shape(1) * img.shape(2);
  for (std::size_t k = 0; k < 3; ++k) {
    float* p = img.data() + k * plane;
    for (std::size_t i = 0; i < plane; ++i) p[i] = (p[i] - mean[k]) / std[k];
  }
}

/// @brief Copy the rectangle [top, top + h) x [left, left + w) out of an image.
/// @param img  [C, H, W]
/// @return [C, h, w]
/// @throws Error when h or w < 1 or the rectangle is not entirely inside the image.
inline ImageF crop(const ImageF& img, int top, int left, int h, int w) {
  const auto in_h = static_cast<std::int64_t>(img.shape(1));
  const auto in_w = static_cast<std::int64_t>(img.shape(2));
  if (h < 1 || w < 1 || top < 0 || left < 0 || std::int64_t{top} + h > in_h ||
      std::int64_t{left} + w > in_w)
    throw Error("crop: rectangle top " + std::to_string(top) + ", left " + std::to_string(left) +
                ", size " + std::to_string(h) + " x " + std::to_string(w) +
                " is not inside the image of " + std::to_string(in_h) + " x " +
                std::to_string(in_w));
  const auto t = static_cast<std::size_t>(top), l = static_cast<std::size_t>(left);
  return xt::view(img, xt::all(), xt::range(t, t + static_cast<std::size_t>(h)),
                  xt::range(l, l + static_cast<std::size_t>(w)));
}

/// @brief The central size x size square, placed as torchvision's CenterCrop places it:
/// top = round((H - size) / 2), left = round((W - size) / 2), halves rounded to even.
/// @param img   [C, H, W] with H, W >= size
/// @param size  side of the square, >= 1
/// @return [C, size, size]
/// @throws Error when size < 1 or larger than H or W.
inline ImageF center_crop(const ImageF& img, int size) {
  const auto in_h = static_cast<std::int64_t>(img.shape(1));
  const auto in_w = static_cast<std::int64_t>(img.shape(2));
  if (size < 1 || size > in_h || size > in_w)
    throw Error("center_crop: size " + std::to_string(size) + " does not fit in the image of " +
                std::to_string(in_h) + " x " + std::to_string(in_w));
  // Python's round() rounds halves to even; so does nearbyint in the default rounding mode.
  const int top = static_cast<int>(std::nearbyint(static_cast<double>(in_h - size) / 2.0));
  const int left = static_cast<int>(std::nearbyint(static_cast<double>(in_w - size) / 2.0));
  return crop(img, top, left, size, size);
}

/// @brief Mirror an image left to right: out[c, y, x] = img[c, y, W - 1 - x].
/// @param img  [C, H, W]
/// @return [C, H, W]
inline ImageF hflip(const ImageF& img) { return xt::flip(img, 2); }

/// @brief Which preprocessing steps prepare_for_model may apply.
struct Preprocess {
  bool resize = true;     ///< resize (bilinear, aspect ratio not kept) to the model's size
  bool normalize = true;  ///< subtract imagenet_mean, divide by imagenet_std
};

/// @brief A decoded RGB image [H, W, 3] as model input: RGB in [0, 1], resized to size x size if it
/// is not already, then normalised with the ImageNet mean and standard deviation when asked.
/// @return [3, size, size]
inline ImageF prepare_for_model(const ImageU8& rgb, int size, bool normalize_imagenet) {
  ImageF img = to_chw_float(rgb);
  const auto s = static_cast<std::size_t>(size);
  if (img.shape(1) != s || img.shape(2) != s) img = resize_bilinear(img, size, size);
  if (normalize_imagenet) normalize(img, imagenet_mean, imagenet_std);
  return img;
}

/// @brief Load an image file and turn it into a model input: RGB in [0, 1], resized to
/// size x size if it is not already (when allowed), then normalised with the ImageNet mean and
/// standard deviation (when asked).
/// @param path  image file
/// @param size  the model's image side (Config::image_size)
/// @param pre   which steps to apply
/// @return [3, size, size]
/// @throws IoError / FormatError naming the file when it cannot be read or decoded; Error naming
///         the file and both sizes when the image is not size x size and pre.resize is false.
inline ImageF prepare_for_model(const std::filesystem::path& path, int size, const Preprocess& pre) {
  const ImageU8 rgb = load_image(path);
  const auto s = static_cast<std::size_t>(size);
  if (!pre.resize && (rgb.shape(0) != s || rgb.shape(1) != s))
    throw Error(path.string() + ": image is " + std::to_string(rgb.shape(1)) + " x " +
                std::to_string(rgb.shape(0)) + " (width x height), the model needs " +
                std::to_string(size) + " x " + std::to_string(size) + " and resizing is off");
  return prepare_for_model(rgb, size, pre.normalize);
}

}  // namespace vitiq::io
