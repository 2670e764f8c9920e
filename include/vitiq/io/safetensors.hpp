// vitiq/io/safetensors.hpp -- reading and writing safetensors files: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}} with an optional
// "__metadata__" string map, then the raw little-endian tensor data.
//
// Invariant: a SafetensorsFile that parsed has a strict-JSON (UTF-8) header, every tensor inside
// the data section with a byte size equal to numel * dtype size, no byte shared by two tensors,
// and no duplicate names (bytes no tensor covers are tolerated). Every check runs on the header
// alone, before anything is allocated for the tensors, so a hostile header cannot force a large
// allocation. Little-endian on disk and (static_assert) on the host; F16/BF16 conversions are
// written out here and round to nearest even.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::io {

static_assert(std::endian::native == std::endian::little, "vitiq's safetensors I/O assumes a little-endian host");

/// @brief Element types of safetensors.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// @brief The dtype's name in the header ("F32", ...).
/// @param t the dtype
inline std::string_view dtype_name(DType t) {
  constexpr std::string_view names[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"};
  return names[int(t)];
}
/// @brief Bytes per element.
/// @param t the dtype
inline std::size_t dtype_size(DType t) {
  constexpr std::size_t sizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
  return sizes[int(t)];
}
/// @brief Parse a dtype name of the header ("F32", ...), case-sensitive.
/// @param s   the name
/// @param out set to the dtype; left unchanged on failure
/// @return false when `s` names no supported dtype
inline bool parse_dtype(std::string_view s, DType& out) {
  for (int i = 0; i <= int(DType::BOOL); ++i)
    if (dtype_name(DType(i)) == s) { out = DType(i); return true; }
  return false;
}

namespace detail {
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) bits = sign;
    else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) { mant <<= 1; --exp; }
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}
inline std::uint16_t float_to_half(float f) {  // round to nearest even
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000;
  const std::uint32_t absx = x & 0x7FFFFFFF;
  if (absx >= 0x7F800000) return std::uint16_t(sign | 0x7C00 | (absx > 0x7F800000 ? 0x200 : 0));
  if (absx >= 0x477FF000) return std::uint16_t(sign | 0x7C00);  // overflow to inf
  if (absx < 0x38800000) {  // subnormal or zero in half
    const float a = std::bit_cast<float>(absx);
    const float scaled = a * 16777216.0f;  // 2^24: units of the smallest subnormal
    std::uint32_t m = std::uint32_t(scaled);
    const float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1))) ++m;
    return std::uint16_t(sign | m);
  }
  std::uint32_t r = absx - 0x38000000;  // rebias exponent
  r += 0xFFF + ((r >> 13) & 1);
  return std::uint16_t(sign | (r >> 13));
}
inline float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }
inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return std::uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7FFF + ((x >> 16) & 1);
  return std::uint16_t(x >> 16);
}
// `d` rounded to float with round-to-odd (truncate, then set the last bit when inexact). Rounding
// that float to F16 or BF16 (nearest even) then equals rounding `d` directly: float keeps more than
// two bits beyond their precision, so no double rounding can occur.
template <class Wide>
inline float to_float_round_odd(Wide d) {
  const float f = static_cast<float>(d);
  if (std::isnan(d) || static_cast<Wide>(f) == d) return f;
  const float t = std::fabs(static_cast<Wide>(f)) > std::fabs(d) ? std::nextafter(f, 0.0f) : f;  // truncated
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(t) | 1u);
}
// An arithmetic value as a float ready for F16/BF16 rounding (see to_float_round_odd).
template <class T>
inline float to_float_for_half(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_floating_point_v<T>) {
    return to_float_round_odd(static_cast<long double>(v));
  } else {
    // long double holds every 64-bit integer exactly on x86-64 and AArch64 Linux.
    using Wide = std::conditional_t<(std::numeric_limits<long double>::digits >= 64), long double, double>;
    return to_float_round_odd(static_cast<Wide>(v));
  }
}
// Converts `v` to T when it is representable: any value to a floating T (rounded; NaN and
// infinities kept); to an integral T only a finite integral value in T's range.
template <class T, class U>
inline bool checked_cast(U v, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    out = static_cast<T>(v);
    return true;
  } else if constexpr (std::is_floating_point_v<U>) {
    constexpr int bits = std::numeric_limits<T>::digits;  // 63 for int64_t, 8 for uint8_t, ...
    const long double x = v;
    const long double lo = std::is_signed_v<T> ? -std::ldexp(1.0L, bits) : 0.0L;
    if (!std::isfinite(x) || std::trunc(x) != x || x < lo || x >= std::ldexp(1.0L, bits)) return false;
    out = static_cast<T>(x);
    return true;
  } else {
    if (!std::in_range<T>(v)) return false;
    out = static_cast<T>(v);
    return true;
  }
}
template <class T>
inline std::string value_string(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    return json::number_to_string(double(v));
  } else {
    return std::to_string(v);
  }
}
template <class T>
inline std::string type_string() {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_floating_point_v<T>) return "long double";
  else return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(sizeof(T) * 8);
}
// Product of the dimensions; false when one is negative or the product (or its byte size at
// `elem_size` bytes each) overflows 64 bits.
inline bool checked_numel(std::span<const std::int64_t> shape, std::size_t elem_size, std::uint64_t& numel) {
  numel = 1;
  for (const std::int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(numel, std::uint64_t(d), &numel)) return false;
  std::uint64_t bytes = 0;
  return !__builtin_mul_overflow(numel, std::uint64_t(elem_size), &bytes) &&
         bytes <= std::numeric_limits<std::size_t>::max();
}
inline std::string shape_string(std::span<const std::int64_t> s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace detail

/// @brief One tensor's entry in the header.
struct TensorInfo {
  /// The tensor's name (key in the header).
  std::string name;
  /// The stored element type.
  DType dtype;
  std::vector<std::int64_t> shape;  ///< [] for a scalar
  std::size_t begin;  ///< offset of its first byte in the data section
  std::size_t end;    ///< offset one past its last byte in the data section (begin == end: empty)
  /// @brief Number of elements (1 for a scalar).
  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    return n;
  }
};

/// @brief A safetensors file read wholly into memory and validated.
class SafetensorsFile {
 public:
  /// Headers longer than this (100 MiB) are refused before being read.
  static constexpr std::uint64_t max_header_bytes = 100u << 20;

  /// @brief Read and validate a file.
  /// @param path the file
  /// @return the parsed file, its source() being the path
  /// @throws IoError when the file cannot be read, FormatError when it is malformed (both name the path)
  static SafetensorsFile load(const std::filesystem::path& path) { return parse(read_file(path), path.string()); }

  /// @brief Validate bytes already in memory; `source_name` is named in errors.
  /// @param bytes       the complete file content (kept by the object)
  /// @param source_name named in error messages and returned by source()
  /// @return the parsed file
  /// @throws FormatError when the content is malformed
  static SafetensorsFile parse(std::vector<std::byte> bytes, std::string source_name) {
    SafetensorsFile f;
    f.source_ = std::move(source_name);
    f.bytes_ = std::move(bytes);
    f.index();
    return f;
  }

  /// @brief The file name (or source name) given when loading.
  const std::string& source() const { return source_; }
  /// @brief True when the file holds a tensor called `name`.
  /// @param name tensor name
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  /// @brief The entry of a tensor.
  /// @param name tensor name
  /// @return its dtype, shape and byte range, valid while this object lives
  /// @throws FormatError naming the file and tensor when there is no such tensor
  const TensorInfo& info(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (!t) throw FormatError(source_ + ": no tensor named '" + std::string(name) + "'");
    return *t;
  }
  /// @brief Tensor names in header order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& t : tensors_) out.push_back(t.name);
    return out;
  }
  /// @brief The `__metadata__` map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// @brief The raw little-endian bytes of a tensor.
  /// @param name tensor name
  /// @return a view into the file's bytes, valid while this object lives
  /// @throws FormatError when there is no such tensor
  std::span<const std::byte> raw(std::string_view name) const {
    const TensorInfo& t = info(name);
    return {bytes_.data() + data_start_ + t.begin, t.end - t.begin};
  }

  /// @brief A tensor converted to T (float, double or an integer type), any stored dtype.
  ///
  /// To a floating T every value converts (rounded to nearest; F16 and BF16 widen exactly through
  /// float; NaN and infinities are kept). To an integral T only values it represents exactly do:
  /// a finite whole number in T's range (BOOL reads as 0 and 1).
  /// @tparam T   the element type wanted (arithmetic, not bool: read BOOL tensors as std::uint8_t)
  /// @param name tensor name
  /// @return the elements, row-major, numel() of them
  /// @throws FormatError naming the file and tensor when there is no such tensor, or when an
  /// element is not representable as an integral T (a fraction, NaN, out of range)
  template <class T>
  std::vector<T> read(std::string_view name) const {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>,
                  "read() converts to float, double or an integer type (read BOOL as std::uint8_t)");
    const TensorInfo& t = info(name);
    std::vector<T> out(t.numel());
    convert(t, out.data());
    return out;
  }

  /// @brief Read a tensor into `out`, checking its shape first.
  /// @tparam T             the element type of `out` (converted as read())
  /// @param name           tensor name
  /// @param expected_shape the shape the tensor must have
  /// @param out            destination, exactly numel() elements
  /// @throws ConfigMismatch "<file>: tensor 'x' has shape [a, b], expected [c, d]", or when the
  /// size of `out` differs from the tensor's
  /// @throws FormatError when there is no such tensor, or an element does not convert (see read())
  template <class T>
  void read_into(std::string_view name, std::span<const std::int64_t> expected_shape, std::span<T> out) const {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>,
                  "read_into() converts to float, double or an integer type (read BOOL as std::uint8_t)");
    const TensorInfo& t = info(name);
    if (!std::equal(t.shape.begin(), t.shape.end(), expected_shape.begin(), expected_shape.end()))
      throw ConfigMismatch(source_ + ": tensor '" + t.name + "' has shape " + detail::shape_string(t.shape) +
                           ", expected " + detail::shape_string(expected_shape));
    if (out.size() != t.numel())
      throw ConfigMismatch(source_ + ": tensor '" + t.name + "' has " + std::to_string(t.numel()) +
                           " elements, the destination " + std::to_string(out.size()));
    convert(t, out.data());
  }

 private:
  const TensorInfo* find(std::string_view name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(source_ + ": " + what); }

  void index() {
    if (bytes_.size() < 8) fail("not a safetensors file (shorter than its 8-byte header length)");
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, bytes_.data(), 8);
    if (header_len > max_header_bytes) fail("header length " + std::to_string(header_len) + " exceeds the limit");
    if (header_len > bytes_.size() - 8)
      fail("truncated: header length " + std::to_string(header_len) + " but only " + std::to_string(bytes_.size() - 8) +
           " bytes follow");
    data_start_ = 8 + std::size_t(header_len);
    const std::size_t data_size = bytes_.size() - data_start_;
    const std::string_view text(reinterpret_cast<const char*>(bytes_.data() + 8), std::size_t(header_len));
    const json::Value header = json::parse(text, source_ + " (safetensors header)");
    if (!header.is_object()) fail("header is not a JSON object");
    for (const auto& member : header.as_object()) {
      const std::string& name = member.first;  // (clang 14 cannot capture structured bindings)
      const json::Value& entry = member.second;
      if (name == "__metadata__") {
        if (!entry.is_object()) fail("__metadata__ is not an object");
        for (const auto& [k, v] : entry.as_object()) {
          if (!v.is_string()) fail("__metadata__ value of '" + k + "' is not a string");
          metadata_[k] = v.as_string();
        }
        continue;
      }
      auto bad = [&](const std::string& what) { fail("tensor '" + name + "': " + what); };
      if (!entry.is_object()) bad("entry is not an object");
      const json::Value* dt = entry.find("dtype");
      const json::Value* sh = entry.find("shape");
      const json::Value* off = entry.find("data_offsets");
      if (!dt || !dt->is_string()) bad("missing or non-string dtype");
      if (!sh || !sh->is_array()) bad("missing or non-array shape");
      if (!off || !off->is_array() || off->as_array().size() != 2) bad("data_offsets must be [begin, end]");
      TensorInfo t;
      t.name = name;
      if (!parse_dtype(dt->as_string(), t.dtype)) bad("unknown dtype '" + dt->as_string() + "'");
      std::uint64_t numel = 1;
      for (const json::Value& d : sh->as_array()) {
        if (!d.is_number()) bad("shape holds a non-number");
        std::int64_t v = 0;
        try { v = d.as_int64(); } catch (const FormatError&) { bad("shape holds a non-integer"); }
        if (v < 0) bad("negative dimension " + std::to_string(v));
        if (__builtin_mul_overflow(numel, std::uint64_t(v), &numel)) bad("shape overflows 64 bits");
        t.shape.push_back(v);
      }
      std::uint64_t nbytes = 0;
      if (__builtin_mul_overflow(numel, std::uint64_t(dtype_size(t.dtype)), &nbytes))
        bad("byte size of shape " + detail::shape_string(t.shape) + " overflows 64 bits");
      std::int64_t b = 0, e = 0;
      try {
        b = off->as_array()[0].as_int64();
        e = off->as_array()[1].as_int64();
      } catch (const FormatError&) { bad("data_offsets are not integers"); }
      if (b < 0 || e < b)
        bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are not ordered (begin > end)");
      if (std::uint64_t(e) > data_size)
        bad("data_offsets end " + std::to_string(e) + " beyond the data section (" + std::to_string(data_size) +
            " bytes): file truncated?");
      if (std::uint64_t(e - b) != nbytes)
        bad("holds " + std::to_string(e - b) + " bytes, but shape " + detail::shape_string(t.shape) + " of " +
            std::string(dtype_name(t.dtype)) + " needs " + std::to_string(nbytes));
      t.begin = std::size_t(b);
      t.end = std::size_t(e);
      if (by_name_.count(name)) bad("duplicate tensor name");
      by_name_[name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    // No two tensors share a byte: sorted by begin, each must start at or after the previous end
    // (ends then never decrease, so neighbours suffice). Empty tensors occupy no byte.
    std::vector<const TensorInfo*> sorted;
    sorted.reserve(tensors_.size());
    for (const auto& t : tensors_)
      if (t.end > t.begin) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(),
              [](const TensorInfo* x, const TensorInfo* y) { return x->begin < y->begin; });
    for (std::size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i]->begin < sorted[i - 1]->end)
        fail("tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  }

  template <class T>
  void convert(const TensorInfo& t, T* out) const {
    const std::byte* p = bytes_.data() + data_start_ + t.begin;
    const std::size_t n = t.numel();
    // `load(i)` gives element i in a type that holds the stored value exactly.
    auto each = [&](auto load) {
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = load(i);
        if (!detail::checked_cast(v, out[i]))
          fail("tensor '" + t.name + "': element " + std::to_string(i) + " (" + detail::value_string(v) +
               ") is not representable as " + detail::type_string<T>());
      }
    };
    auto get = [&]<class U>(U, std::size_t i) { U v; std::memcpy(&v, p + i * sizeof(U), sizeof(U)); return v; };
    switch (t.dtype) {
      case DType::F64: each([&](std::size_t i) { return get(double{}, i); }); break;
      case DType::F32: each([&](std::size_t i) { return get(float{}, i); }); break;
      case DType::F16: each([&](std::size_t i) { return detail::half_to_float(get(std::uint16_t{}, i)); }); break;
      case DType::BF16: each([&](std::size_t i) { return detail::bf16_to_float(get(std::uint16_t{}, i)); }); break;
      case DType::I64: each([&](std::size_t i) { return get(std::int64_t{}, i); }); break;
      case DType::I32: each([&](std::size_t i) { return get(std::int32_t{}, i); }); break;
      case DType::I16: each([&](std::size_t i) { return get(std::int16_t{}, i); }); break;
      case DType::I8: each([&](std::size_t i) { return get(std::int8_t{}, i); }); break;
      case DType::U8: each([&](std::size_t i) { return get(std::uint8_t{}, i); }); break;
      case DType::BOOL:
        each([&](std::size_t i) { return std::uint8_t(get(std::uint8_t{}, i) != std::uint8_t{0}); });
        break;
    }
  }

  std::string source_;
  std::vector<std::byte> bytes_;
  std::size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
};

/// @brief Collects tensors and metadata, then writes a safetensors file atomically.
class SafetensorsWriter {
 public:
  /// @brief Add (or replace) a `__metadata__` entry.
  /// @param key   metadata key
  /// @param value metadata value (a string, as the format requires)
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  /// @brief Add a tensor, converting `data` to the stored dtype `as`.
  ///
  /// Floating dtypes (F64, F32, F16, BF16) take any arithmetic T, rounded to nearest even (once:
  /// double data rounds straight to F16/BF16, not through float). Integer dtypes (I64 ... U8)
  /// take values they represent exactly (whole numbers in range); BOOL takes 0 and 1.
  /// @tparam T    the source element type
  /// @param name  tensor name, unique in the file, not "__metadata__"
  /// @param shape the tensor's shape ([] for a scalar), no negative dimension
  /// @param data  the elements, row-major, product of `shape` of them
  /// @param as    the dtype to store
  /// @throws Error when the data size does not match the shape, an element is not representable
  /// in `as`, or the name is already taken or reserved
  template <class T>
  void add(std::string name, std::vector<std::int64_t> shape, std::span<const T> data, DType as) {
    static_assert(std::is_arithmetic_v<T>, "SafetensorsWriter::add takes arithmetic data");
    const std::size_t n = checked_size(name, shape, as);
    if (n != data.size())
      throw Error("safetensors writer: tensor '" + name + "' has shape " + detail::shape_string(shape) + " (" +
                  std::to_string(n) + " elements) but " + std::to_string(data.size()) + " values");
    const std::size_t width = dtype_size(as);
    std::vector<std::byte> bytes(n * width);
    auto store = [&]<class U>(std::size_t i, U) {
      using Src = std::conditional_t<std::is_same_v<T, bool>, std::uint8_t, T>;
      const Src x = static_cast<Src>(data[i]);
      U v{};
      if (!detail::checked_cast(x, v) || (as == DType::BOOL && v != U(0) && v != U(1)))
        throw Error("safetensors writer: tensor '" + name + "': element " + std::to_string(i) + " (" +
                    detail::value_string(x) + ") cannot be stored as " + std::string(dtype_name(as)));
      std::memcpy(bytes.data() + i * width, &v, sizeof v);
    };
    for (std::size_t i = 0; i < n; ++i) {
      switch (as) {
        case DType::F64: store(i, double{}); break;
        case DType::F32: store(i, float{}); break;
        case DType::F16:
        case DType::BF16: {
          const float f = detail::to_float_for_half(data[i]);
          const std::uint16_t h = as == DType::F16 ? detail::float_to_half(f) : detail::float_to_bf16(f);
          std::memcpy(bytes.data() + i * width, &h, 2);
          break;
        }
        case DType::I64: store(i, std::int64_t{}); break;
        case DType::I32: store(i, std::int32_t{}); break;
        case DType::I16: store(i, std::int16_t{}); break;
        case DType::I8: store(i, std::int8_t{}); break;
        case DType::U8:
        case DType::BOOL: store(i, std::uint8_t{}); break;
      }
    }
    push(std::move(name), as, std::move(shape), std::move(bytes));
  }

  /// @brief Add a tensor from its raw little-endian bytes.
  /// @param name  tensor name, unique in the file, not "__metadata__"
  /// @param dtype the stored dtype
  /// @param shape the tensor's shape ([] for a scalar), no negative dimension
  /// @param bytes the data (copied), exactly numel * dtype_size(dtype) bytes
  /// @throws Error when the byte count does not match the shape, or the name is already taken or
  /// reserved
  void add_raw(std::string name, DType dtype, std::vector<std::int64_t> shape, std::span<const std::byte> bytes) {
    const std::size_t n = checked_size(name, shape, dtype);
    if (bytes.size() != n * dtype_size(dtype))
      throw Error("safetensors writer: tensor '" + name + "' of shape " + detail::shape_string(shape) + " and dtype " +
                  std::string(dtype_name(dtype)) + " needs " + std::to_string(n * dtype_size(dtype)) + " bytes, got " +
                  std::to_string(bytes.size()));
    push(std::move(name), dtype, std::move(shape), {bytes.begin(), bytes.end()});
  }

  /// @brief The complete file content; the header is padded with spaces to a multiple of 8.
  ///
  /// Tensors are laid out in the order they were added; metadata keys are sorted.
  std::vector<std::byte> serialize() const {
    std::string header = "{";
    bool first = true;
    if (!metadata_.empty()) {
      header += "\"__metadata__\":{";
      bool f2 = true;
      for (const auto& [k, v] : metadata_) {
        if (!f2) header += ',';
        header += json::escape(k);
        header += ':';
        header += json::escape(v);
        f2 = false;
      }
      header += "}";
      first = false;
    }
    std::size_t offset = 0;
    for (const auto& e : entries_) {
      // Appended piece by piece: g++ 12 warns falsely (-Wrestrict) on `const char* + std::string&&`.
      if (!first) header += ',';
      header += json::escape(e.name);
      header += ":{\"dtype\":\"";
      header += dtype_name(e.dtype);
      header += "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) {
        if (i) header += ',';
        header += std::to_string(e.shape[i]);
      }
      header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes.size()) + "]}";
      offset += e.bytes.size();
      first = false;
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    std::vector<std::byte> out(8 + header.size() + offset);
    const std::uint64_t len = header.size();
    std::memcpy(out.data(), &len, 8);
    std::memcpy(out.data() + 8, header.data(), header.size());
    std::size_t at = 8 + header.size();
    for (const auto& e : entries_) {
      if (!e.bytes.empty()) std::memcpy(out.data() + at, e.bytes.data(), e.bytes.size());
      at += e.bytes.size();
    }
    return out;
  }

  /// @brief Write the file atomically (see atomic_write()).
  /// @param path the file to create or replace
  /// @throws IoError naming the path
  void write(const std::filesystem::path& path) const { atomic_write(path, serialize()); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> bytes;
  };
  // Number of elements of `shape`, after checking the name is free and the shape valid.
  std::size_t checked_size(const std::string& name, std::span<const std::int64_t> shape, DType dtype) const {
    if (name == "__metadata__") throw Error("safetensors writer: '__metadata__' is reserved, not a tensor name");
    for (const auto& e : entries_)
      if (e.name == name) throw Error("safetensors writer: duplicate tensor '" + name + "'");
    std::uint64_t n = 0;
    if (!detail::checked_numel(shape, dtype_size(dtype), n))
      throw Error("safetensors writer: tensor '" + name + "' has an invalid shape " + detail::shape_string(shape));
    return std::size_t(n);
  }
  void push(std::string name, DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> bytes) {
    entries_.push_back({std::move(name), dtype, std::move(shape), std::move(bytes)});
  }

  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
};

}  // namespace vitiq::io
