// vitiq/io/safetensors.hpp -- reading and writing safetensors files: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}} with an optional
// "__metadata__" string map, then the raw little-endian tensor data.
//
// Invariant: a SafetensorsFile that parsed has every tensor inside the data section, with a byte
// size equal to numel * dtype size, no two tensors overlapping, and no duplicate names; every
// check runs before anything is allocated for the tensors, so a hostile header cannot force a
// large allocation.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
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
  /// Byte offset of the first byte in the data section.
  std::size_t begin, end;           ///< byte offset one past the last byte in the data section
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
  /// Headers larger than this are refused (the format's own reference limit is 100 MB).
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
  /// Conversion is a static_cast per element (F16 and BF16 go through float).
  /// @tparam T   the element type wanted
  /// @param name tensor name
  /// @return the elements, row-major, numel() of them
  /// @throws FormatError when there is no such tensor
  template <class T>
  std::vector<T> read(std::string_view name) const {
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
  /// @throws FormatError when there is no such tensor
  template <class T>
  void read_into(std::string_view name, std::span<const std::int64_t> expected_shape, std::span<T> out) const {
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
    auto it = by_name_.find(std::string(name));
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
        if (v < 0) bad("negative dimension");
        if (__builtin_mul_overflow(numel, std::uint64_t(v), &numel)) bad("shape overflows");
        t.shape.push_back(v);
      }
      std::uint64_t nbytes = 0;
      if (__builtin_mul_overflow(numel, std::uint64_t(dtype_size(t.dtype)), &nbytes)) bad("byte size overflows");
      std::int64_t b = 0, e = 0;
      try {
        b = off->as_array()[0].as_int64();
        e = off->as_array()[1].as_int64();
      } catch (const FormatError&) { bad("data_offsets are not integers"); }
      if (b < 0 || e < b) bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are not ordered");
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
    std::vector<const TensorInfo*> sorted;
    for (const auto& t : tensors_) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(), [](auto a, auto b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i]->begin < sorted[i - 1]->end)
        fail("tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  }

  template <class T>
  void convert(const TensorInfo& t, T* out) const {
    const std::byte* p = bytes_.data() + data_start_ + t.begin;
    const std::size_t n = t.numel();
    auto each = [&](auto load) { for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(load(i)); };
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
      case DType::BOOL: each([&](std::size_t i) { return get(std::uint8_t{}, i) != 0; }); break;
    }
  }

  std::string source_;
  std::vector<std::byte> bytes_;
  std::size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

/// @brief Collects tensors and metadata, then writes a safetensors file atomically.
class SafetensorsWriter {
 public:
  /// @brief Add (or replace) a `__metadata__` entry.
  /// @param key   metadata key
  /// @param value metadata value (a string, as the format requires)
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  /// @brief Add a tensor stored as `as` (F64, F32, F16, BF16) from float or double data.
  ///
  /// F16 and BF16 round to nearest even.
  /// @tparam T    the source element type
  /// @param name  tensor name, unique in the file
  /// @param shape the tensor's shape ([] for a scalar)
  /// @param data  the elements, row-major, product of `shape` of them
  /// @param as    the dtype to store
  /// @throws Error when the data size does not match the shape, `as` is not a floating dtype, or
  /// the name is already taken
  template <class T>
  void add(std::string name, std::vector<std::int64_t> shape, std::span<const T> data, DType as) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    if (n != data.size()) throw Error("safetensors writer: tensor '" + name + "' shape does not match its data");
    std::vector<std::byte> bytes(n * dtype_size(as));
    for (std::size_t i = 0; i < n; ++i) {
      std::byte* dst = bytes.data() + i * dtype_size(as);
      switch (as) {
        case DType::F64: { const double v = double(data[i]); std::memcpy(dst, &v, 8); break; }
        case DType::F32: { const float v = float(data[i]); std::memcpy(dst, &v, 4); break; }
        case DType::F16: { const std::uint16_t v = detail::float_to_half(float(data[i])); std::memcpy(dst, &v, 2); break; }
        case DType::BF16: { const std::uint16_t v = detail::float_to_bf16(float(data[i])); std::memcpy(dst, &v, 2); break; }
        default: throw Error("safetensors writer: tensor '" + name + "': floating data cannot be stored as " +
                             std::string(dtype_name(as)));
      }
    }
    add_raw(std::move(name), as, std::move(shape), bytes);
  }

  /// @brief Add a tensor from its raw little-endian bytes.
  ///
  /// The byte count is not checked against the shape.
  /// @param name  tensor name, unique in the file
  /// @param dtype the stored dtype
  /// @param shape the tensor's shape ([] for a scalar)
  /// @param bytes the data (copied)
  /// @throws Error when the name is already taken
  void add_raw(std::string name, DType dtype, std::vector<std::int64_t> shape, std::span<const std::byte> bytes) {
    for (const auto& e : entries_)
      if (e.name == name) throw Error("safetensors writer: duplicate tensor '" + name + "'");
    entries_.push_back({std::move(name), dtype, std::move(shape), {bytes.begin(), bytes.end()}});
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
      for (const auto& [k, v] : metadata_) { header += (f2 ? "" : ",") + json::escape(k) + ":" + json::escape(v); f2 = false; }
      header += "}";
      first = false;
    }
    std::size_t offset = 0;
    for (const auto& e : entries_) {
      header += (first ? "" : ",") + json::escape(e.name) + ":{\"dtype\":\"" + std::string(dtype_name(e.dtype)) +
                "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) header += (i ? "," : "") + std::to_string(e.shape[i]);
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
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
};

}  // namespace vitiq::io
