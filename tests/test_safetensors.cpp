// tests/test_safetensors.cpp -- safetensors reading and writing (vitiq/io/safetensors.hpp) and the
// file helpers under it (vitiq/io/atomic_file.hpp): round trips of every dtype, F16/BF16 rounding,
// metadata, scalar and empty shapes, checked conversions, shape mismatch messages, every header
// validation failure, truncated and mutated files, hostile sizes, atomic writes that fail cleanly.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/safetensors.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using vitiq::io::DType;
using vitiq::io::SafetensorsFile;
using vitiq::io::SafetensorsWriter;

namespace {

// A fresh, empty directory for one test case; removed by the destructor.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("vitiq_test_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// A safetensors file from header text (not padded) followed by `data_bytes` bytes 0, 1, 2, ...
std::vector<std::byte> with_header(std::string_view header, std::size_t data_bytes) {
  std::vector<std::byte> out(8 + header.size() + data_bytes);
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = std::byte(i & 0xFF);
  return out;
}

// The FormatError message of parsing `bytes` as "bad.safetensors"; "" when it parses.
std::string refusal(std::vector<std::byte> bytes) {
  try {
    SafetensorsFile::parse(std::move(bytes), "bad.safetensors");
  } catch (const vitiq::FormatError& e) {
    return e.what();
  }
  return "";
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, std::size_t b,
                  std::size_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

template <class T>
std::vector<std::byte> le_bytes(std::initializer_list<T> values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  std::size_t i = 0;
  for (const T v : values) std::memcpy(out.data() + sizeof(T) * i++, &v, sizeof(T));
  return out;
}

std::uint16_t u16_at(std::span<const std::byte> b, std::size_t i) {
  std::uint16_t v;
  std::memcpy(&v, b.data() + 2 * i, 2);
  return v;
}

// Reference rounding of `x` to a 16-bit float format, nearest even, found by search over the
// format's values (independent of the bit tricks under test). `decode` maps bits to value;
// `inf_bits` is the encoding of +infinity and `inf_standin` the value it would have were the
// exponent range one larger (2^16 for F16, 2^128 for BF16): IEEE rounds to infinity from there.
template <class Decode>
std::uint16_t reference_round(double x, Decode decode, std::uint32_t inf_bits, double inf_standin) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  x = std::fabs(x);
  const auto value = [&](std::uint32_t m) { return m == inf_bits ? inf_standin : double(decode(std::uint16_t(m))); };
  if (x >= inf_standin) return std::uint16_t(sign | inf_bits);
  std::uint32_t lo = 0, hi = inf_bits;  // value(lo) <= x < value(hi)
  while (hi - lo > 1) {
    const std::uint32_t mid = (lo + hi) / 2;
    (value(mid) <= x ? lo : hi) = mid;
  }
  const double dl = x - value(lo), dh = value(hi) - x;
  const std::uint32_t pick = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
  return std::uint16_t(sign | pick);
}
std::uint16_t ref_half(double x) { return reference_round(x, vitiq::io::detail::half_to_float, 0x7C00, 65536.0); }
std::uint16_t ref_bf16(double x) {
  return reference_round(x, vitiq::io::detail::bf16_to_float, 0x7F80, std::ldexp(1.0, 128));
}

// A file holding several dtypes, metadata and a scalar; its last tensor ends at the last byte.
std::vector<std::byte> sample_file() {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "\u00e9 Ã©");
  w.add<double>("w", {2, 3}, std::vector<double>{1, 2, 3, 4, 5, 6}, DType::F32);
  w.add<double>("h", {3}, std::vector<double>{0.5, -1, 2}, DType::F16);
  w.add<std::int64_t>("step", {}, std::vector<std::int64_t>{42}, DType::I64);
  w.add<double>("b", {2, 2}, std::vector<double>{1, -1, 0.25, 8}, DType::BF16);
  w.add<std::int64_t>("u", {5}, std::vector<std::int64_t>{1, 2, 3, 4, 5}, DType::U8);
  return w.serialize();
}

}  // namespace

TEST_CASE("safetensors: dtype names and sizes", "[io][safetensors]") {
  const std::pair<DType, std::pair<const char*, std::size_t>> table[] = {
      {DType::F64, {"F64", 8}}, {DType::F32, {"F32", 4}}, {DType::F16, {"F16", 2}}, {DType::BF16, {"BF16", 2}},
      {DType::I64, {"I64", 8}}, {DType::I32, {"I32", 4}}, {DType::I16, {"I16", 2}}, {DType::I8, {"I8", 1}},
      {DType::U8, {"U8", 1}},   {DType::BOOL, {"BOOL", 1}}};
  for (const auto& [t, ns] : table) {
    CHECK(vitiq::io::dtype_name(t) == ns.first);
    CHECK(vitiq::io::dtype_size(t) == ns.second);
    DType back = DType::BOOL == t ? DType::F64 : DType::BOOL;
    CHECK(vitiq::io::parse_dtype(ns.first, back));
    CHECK(back == t);
  }
  DType d = DType::U8;
  CHECK_FALSE(vitiq::io::parse_dtype("f32", d));
  CHECK_FALSE(vitiq::io::parse_dtype("F8", d));
  CHECK(d == DType::U8);
}

TEST_CASE("safetensors: every dtype round-trips through a file", "[io][safetensors]") {
  TempDir dir;
  const fs::path path = dir.path / "all.safetensors";
  const std::vector<double> fl = {0.0, -0.0, 1.0, -2.5, 0.15625, 1024.0, -61440.0, 3.0e-5};
  const std::vector<std::int64_t> i64 = {0, 1, -1, std::numeric_limits<std::int64_t>::min(),
                                         std::numeric_limits<std::int64_t>::max(), 9007199254740993LL};
  SafetensorsWriter w;
  w.add<double>("f64", {2, 4}, fl, DType::F64);
  w.add<double>("f32", {8}, fl, DType::F32);
  w.add<double>("f16", {4, 2}, fl, DType::F16);
  w.add<double>("bf16", {2, 2, 2}, fl, DType::BF16);
  w.add<std::int64_t>("i64", {6}, i64, DType::I64);
  w.add<std::int64_t>("i32", {3}, std::vector<std::int64_t>{-2147483648LL, 2147483647LL, -7}, DType::I32);
  w.add<std::int64_t>("i16", {3}, std::vector<std::int64_t>{-32768, 32767, 5}, DType::I16);
  w.add<std::int64_t>("i8", {3}, std::vector<std::int64_t>{-128, 127, 0}, DType::I8);
  w.add<std::int64_t>("u8", {3}, std::vector<std::int64_t>{0, 255, 17}, DType::U8);
  w.add<std::uint8_t>("bool", {4}, std::vector<std::uint8_t>{0, 1, 1, 0}, DType::BOOL);
  w.add<float>("from_float", {2}, std::vector<float>{0.5f, -3.0f}, DType::F32);
  w.write(path);
  CHECK(listing(dir.path) == std::vector<std::string>{"all.safetensors"});

  const SafetensorsFile f = SafetensorsFile::load(path);
  CHECK(f.source() == path.string());
  CHECK(f.names() == std::vector<std::string>{"f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool",
                                              "from_float"});
  CHECK(f.metadata().empty());
  CHECK(f.info("f64").dtype == DType::F64);
  CHECK(f.info("bf16").shape == std::vector<std::int64_t>{2, 2, 2});
  CHECK(f.info("bf16").numel() == 8);

  // Every value above is exact in every floating format (3.0e-5 is not: it rounds).
  CHECK(f.read<double>("f64") == fl);
  for (const char* name : {"f32", "f16", "bf16"}) {
    INFO(name);
    const auto back = f.read<double>(name);
    REQUIRE(back.size() == fl.size());
    for (std::size_t i = 0; i + 1 < fl.size(); ++i) {
      CHECK(back[i] == fl[i]);
      CHECK(std::signbit(back[i]) == std::signbit(fl[i]));
    }
    CHECK(back.back() == Approx(3.0e-5).epsilon(std::string(name) == "f32" ? 1e-7 : 4e-3));
  }
  CHECK(f.read<double>("f32").back() == double(float(3.0e-5)));
  CHECK(f.read<float>("f16")[2] == 1.0f);
  CHECK(f.read<std::int64_t>("i64") == i64);
  CHECK(f.read<std::int64_t>("i32") == std::vector<std::int64_t>{-2147483648LL, 2147483647LL, -7});
  CHECK(f.read<std::int64_t>("i16") == std::vector<std::int64_t>{-32768, 32767, 5});
  CHECK(f.read<std::int64_t>("i8") == std::vector<std::int64_t>{-128, 127, 0});
  CHECK(f.read<std::int64_t>("u8") == std::vector<std::int64_t>{0, 255, 17});
  CHECK(f.read<std::uint8_t>("bool") == std::vector<std::uint8_t>{0, 1, 1, 0});
  CHECK(f.read<double>("bool") == std::vector<double>{0, 1, 1, 0});
  CHECK(f.read<float>("i8") == std::vector<float>{-128, 127, 0});
  CHECK(f.read<float>("from_float") == std::vector<float>{0.5f, -3.0f});

  // The stored bytes are the little-endian encodings.
  CHECK(u16_at(f.raw("f16"), 2) == 0x3C00);   // 1.0 in F16
  CHECK(u16_at(f.raw("f16"), 3) == 0xC100);   // -2.5
  CHECK(u16_at(f.raw("bf16"), 2) == 0x3F80);  // 1.0 in BF16
  CHECK(u16_at(f.raw("bf16"), 1) == 0x8000);  // -0.0
  CHECK(f.raw("i16").size() == 6);
  CHECK(std::to_integer<int>(f.raw("i16")[0]) == 0x00);
  CHECK(std::to_integer<int>(f.raw("i16")[1]) == 0x80);  // -32768 = 0x8000, low byte first
  CHECK(f.raw("i64").size() == 48);

  // add_raw of each tensor's bytes writes the same file again.
  SafetensorsWriter w2;
  for (const auto& name : f.names()) w2.add_raw(name, f.info(name).dtype, f.info(name).shape, f.raw(name));
  CHECK(w2.serialize() == w.serialize());
  CHECK(vitiq::io::read_file(path) == w.serialize());
}

TEST_CASE("safetensors: metadata, scalar and empty shapes, header layout", "[io][safetensors]") {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("quote\"key", "line\nbreak \xc3\xa9 \\ end");
  w.set_metadata("format", "vitiq");  // replaced
  const double pi = 3.25;
  w.add<double>("scalar", {}, std::span<const double>(&pi, 1), DType::F64);
  w.add<float>("empty", {2, 0}, std::span<const float>(), DType::F32);
  w.add<float>("after", {1}, std::vector<float>{7.0f}, DType::F16);
  const std::vector<std::byte> bytes = w.serialize();

  std::uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  CHECK(header_len % 8 == 0);
  CHECK(bytes.size() == 8 + header_len + 8 + 0 + 2);
  const std::string header(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  CHECK(header.front() == '{');
  const std::size_t close = header.rfind('}');
  CHECK(header.find_first_not_of(' ', close + 1) == std::string::npos);  // padded with spaces
  CHECK(close + 8 > header.size());                                      // and no more than needed

  const SafetensorsFile f = SafetensorsFile::parse(bytes, "meta.safetensors");
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "vitiq"},
                                                          {"quote\"key", "line\nbreak \xc3\xa9 \\ end"}});
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.info("scalar").numel() == 1);
  CHECK(f.read<double>("scalar") == std::vector<double>{3.25});
  CHECK(f.info("empty").numel() == 0);
  CHECK(f.read<float>("empty").empty());
  CHECK(f.raw("empty").empty());
  CHECK(f.read<float>("after") == std::vector<float>{7.0f});
  CHECK(f.info("after").begin == 8);
  CHECK(f.info("after").end == 10);
  CHECK(f.contains("scalar"));
  CHECK_FALSE(f.contains("nope"));
  CHECK_FALSE(f.contains("__metadata__"));
  double s = 0;
  f.read_into<double>("scalar", {}, std::span<double>(&s, 1));
  CHECK(s == 3.25);

  // An empty tensor sitting at another tensor's offset overlaps nothing.
  const std::string h = "{" + entry("e", "F32", "[0]", 4, 4) + "," + entry("a", "F32", "[2]", 0, 8) + "}";
  CHECK(SafetensorsFile::parse(with_header(h, 8), "x").names() == std::vector<std::string>{"e", "a"});
}

TEST_CASE("safetensors: read_into checks shape and size, naming tensor and shapes", "[io][safetensors]") {
  SafetensorsWriter w;
  w.add<float>("blocks.0.w", {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}, DType::F32);
  const SafetensorsFile f = SafetensorsFile::parse(w.serialize(), "model.safetensors");
  std::vector<float> out(6);
  const std::vector<std::int64_t> good = {2, 3}, swapped = {3, 2}, flat = {6}, more = {2, 3, 1};
  f.read_into<float>("blocks.0.w", good, out);
  CHECK(out == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK_THROWS_AS(f.read_into<float>("blocks.0.w", swapped, out), vitiq::ConfigMismatch);
  CHECK_THROWS_WITH(f.read_into<float>("blocks.0.w", swapped, out),
                    "model.safetensors: tensor 'blocks.0.w' has shape [2, 3], expected [3, 2]");
  CHECK_THROWS_WITH(f.read_into<float>("blocks.0.w", flat, out), Contains("has shape [2, 3], expected [6]"));
  CHECK_THROWS_WITH(f.read_into<float>("blocks.0.w", more, out), Contains("expected [2, 3, 1]"));
  CHECK_THROWS_WITH(f.read_into<float>("blocks.0.w", {}, out), Contains("expected []"));
  std::vector<float> small(5, -1.0f);
  CHECK_THROWS_AS(f.read_into<float>("blocks.0.w", good, small), vitiq::ConfigMismatch);
  CHECK(small == std::vector<float>(5, -1.0f));  // untouched
  CHECK_THROWS_AS(f.read_into<float>("nope", good, out), vitiq::FormatError);
  CHECK_THROWS_WITH(f.info("nope"), "model.safetensors: no tensor named 'nope'");
  CHECK_THROWS_WITH(f.read<float>("nope"), Contains("no tensor named 'nope'"));
  CHECK_THROWS_WITH(f.raw("nope"), Contains("no tensor named 'nope'"));
}

TEST_CASE("safetensors: conversion to integers is exact or refused", "[io][safetensors]") {
  SafetensorsWriter w;
  w.add<double>("whole", {3}, std::vector<double>{-3, 0, 1e15}, DType::F64);
  w.add<double>("frac", {2}, std::vector<double>{1, 1.5}, DType::F32);
  w.add<double>("nan", {1}, std::vector<double>{std::nan("")}, DType::F16);
  w.add<double>("huge", {1}, std::vector<double>{1e19}, DType::F64);
  w.add<double>("inf", {1}, std::vector<double>{-INFINITY}, DType::BF16);
  w.add<std::int64_t>("wide", {2}, std::vector<std::int64_t>{1, std::int64_t(1) << 40}, DType::I64);
  w.add<std::int64_t>("neg", {1}, std::vector<std::int64_t>{-1}, DType::I8);
  const SafetensorsFile f = SafetensorsFile::parse(w.serialize(), "c.safetensors");
  CHECK(f.read<std::int64_t>("whole") == std::vector<std::int64_t>{-3, 0, 1000000000000000LL});
  CHECK_THROWS_WITH(f.read<std::int64_t>("frac"),
                    "c.safetensors: tensor 'frac': element 1 (1.5) is not representable as int64");
  CHECK_THROWS_WITH(f.read<std::int64_t>("nan"), Contains("tensor 'nan': element 0 (nan)"));
  CHECK_THROWS_WITH(f.read<std::int64_t>("huge"), Contains("(1e+19) is not representable as int64"));
  CHECK_THROWS_WITH(f.read<std::int64_t>("inf"), Contains("(-inf)"));
  CHECK(std::isnan(f.read<float>("nan")[0]));
  CHECK(f.read<double>("inf")[0] == -INFINITY);
  CHECK_THROWS_WITH(f.read<std::int32_t>("wide"), Contains("element 1 (1099511627776) is not representable as int32"));
  CHECK_THROWS_WITH(f.read<std::uint8_t>("neg"), Contains("(-1) is not representable as uint8"));
  CHECK(f.read<std::int16_t>("neg") == std::vector<std::int16_t>{-1});
  CHECK(f.read<double>("wide")[1] == 1099511627776.0);
}

TEST_CASE("safetensors: writer refuses what it cannot store", "[io][safetensors]") {
  SafetensorsWriter w;
  const std::vector<float> two = {1, 2};
  w.add<float>("a", {2}, two, DType::F32);
  CHECK_THROWS_WITH(w.add<float>("a", {2}, two, DType::F32), Contains("duplicate tensor 'a'"));
  CHECK_THROWS_WITH(w.add<float>("__metadata__", {2}, two, DType::F32), Contains("reserved"));
  CHECK_THROWS_WITH(w.add<float>("b", {3}, two, DType::F32), Contains("tensor 'b' has shape [3] (3 elements) but 2"));
  CHECK_THROWS_WITH(w.add<float>("b", {-1, -2}, two, DType::F32), Contains("invalid shape [-1, -2]"));
  CHECK_THROWS_WITH(w.add<float>("b", {1LL << 62, 1LL << 62}, two, DType::F32), Contains("invalid shape"));
  CHECK_THROWS_WITH(w.add<double>("b", {2}, std::vector<double>{1, 2.5}, DType::I32),
                    Contains("tensor 'b': element 1 (2.5) cannot be stored as I32"));
  CHECK_THROWS_WITH(w.add<std::int64_t>("b", {1}, std::vector<std::int64_t>{128}, DType::I8),
                    Contains("element 0 (128) cannot be stored as I8"));
  CHECK_THROWS_WITH(w.add<std::int64_t>("b", {1}, std::vector<std::int64_t>{-1}, DType::U8), Contains("as U8"));
  CHECK_THROWS_WITH(w.add<std::int64_t>("b", {1}, std::vector<std::int64_t>{2}, DType::BOOL), Contains("as BOOL"));
  CHECK_THROWS_WITH(w.add<double>("b", {1}, std::vector<double>{std::nan("")}, DType::I64), Contains("(nan)"));
  CHECK_THROWS_WITH(w.add_raw("b", DType::F32, {2}, std::vector<std::byte>(7)), Contains("needs 8 bytes, got 7"));
  CHECK_THROWS_WITH(w.add_raw("a", DType::F32, {2}, std::vector<std::byte>(8)), Contains("duplicate"));
  CHECK_THROWS_WITH(w.add_raw("__metadata__", DType::U8, {0}, {}), Contains("reserved"));
  const bool flags[3] = {true, false, true};
  w.add<bool>("flags", {3}, std::span<const bool>(flags), DType::BOOL);
  // The refused tensors left nothing behind.
  const SafetensorsFile f = SafetensorsFile::parse(w.serialize(), "w.safetensors");
  CHECK(f.names() == std::vector<std::string>{"a", "flags"});
  CHECK(f.read<std::uint8_t>("flags") == std::vector<std::uint8_t>{1, 0, 1});
}

TEST_CASE("safetensors: F16 and BF16 decode every pattern and re-encode it", "[io][safetensors]") {
  using namespace vitiq::io::detail;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const std::uint16_t b = std::uint16_t(h);
    const std::uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const float f = half_to_float(b);
    if (e == 31 && m != 0) {
      REQUIRE(std::isnan(f));
      REQUIRE(std::isnan(half_to_float(float_to_half(f))));
    } else {
      const double mag = e == 31 ? INFINITY : e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), int(e) - 25);
      REQUIRE(double(f) == ((h & 0x8000) ? -mag : mag));
      REQUIRE(std::signbit(f) == bool(h & 0x8000));
      REQUIRE(float_to_half(f) == b);
    }
    const float g = bf16_to_float(b);
    if (((h >> 7) & 0xFF) == 0xFF && (h & 0x7F) != 0) {
      REQUIRE(std::isnan(g));
      REQUIRE(std::isnan(bf16_to_float(float_to_bf16(g))));
    } else {
      REQUIRE(float_to_bf16(g) == b);
    }
  }
  CHECK(half_to_float(0x7BFF) == 65504.0f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0x7F7F) == std::bit_cast<float>(0x7F7F0000u));
}

TEST_CASE("safetensors: float to F16/BF16 rounds to nearest even", "[io][safetensors]") {
  using namespace vitiq::io::detail;
  // Hand-picked ties and boundaries.
  CHECK(float_to_half(1.0f + 1.0f / 2048) == 0x3C00);         // tie, down to even
  CHECK(float_to_half(1.0f + 3.0f / 2048) == 0x3C02);         // tie, up to even
  CHECK(float_to_half(65504.0f) == 0x7BFF);
  CHECK(float_to_half(65519.996f) == 0x7BFF);                 // just below the tie
  CHECK(float_to_half(65520.0f) == 0x7C00);                   // tie with "65536": to infinity
  CHECK(float_to_half(-1e6f) == 0xFC00);
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);      // smallest subnormal
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);      // tie, down to zero
  CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);      // tie, up to even
  CHECK(float_to_half(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)) == 0x0400);  // rounds up to the smallest normal
  CHECK(float_to_half(-0.0f) == 0x8000);
  CHECK(float_to_half(INFINITY) == 0x7C00);
  CHECK(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  CHECK(float_to_bf16(1.0f + 1.0f / 256) == 0x3F80);          // tie, down to even
  CHECK(float_to_bf16(1.0f + 3.0f / 256) == 0x3F82);          // tie, up to even
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);
  CHECK(float_to_bf16(-INFINITY) == 0xFF80);
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));  // NaN stays NaN

  // Random floats, dense around both formats' ranges, against the reference search.
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> exp(-30, 17);
  for (int i = 0; i < 200'000; ++i) {
    float f = std::bit_cast<float>(std::uint32_t(rng()));
    if (i % 2) f = std::ldexp(1.0f + float(rng() % (1u << 23)) / float(1u << 23), exp(rng)) * (rng() % 2 ? 1 : -1);
    if (std::isnan(f)) continue;
    INFO("f = " << f << " bits " << std::bit_cast<std::uint32_t>(f));
    REQUIRE(float_to_half(f) == ref_half(f));
    REQUIRE(float_to_bf16(f) == ref_bf16(f));
  }
}

TEST_CASE("safetensors: double data rounds once to F16/BF16", "[io][safetensors]") {
  // Just above a tie: rounding through float would land on the tie and go to even (down).
  const std::vector<double> x = {1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30),
                                 1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40),
                                 1 + std::ldexp(1.0, -11) - std::ldexp(1.0, -40)};
  SafetensorsWriter w;
  w.add<double>("b", {3}, x, DType::BF16);
  w.add<double>("h", {3}, x, DType::F16);
  std::vector<float> xf(x.begin(), x.end());
  w.add<float>("bf", {3}, xf, DType::BF16);
  const SafetensorsFile f = SafetensorsFile::parse(w.serialize(), "r.safetensors");
  CHECK(u16_at(f.raw("b"), 0) == 0x3F81);
  CHECK(u16_at(f.raw("bf"), 0) == 0x3F80);  // float(x[0]) is the tie itself
  CHECK(u16_at(f.raw("h"), 1) == 0x3C01);
  CHECK(u16_at(f.raw("h"), 2) == 0x3C00);

  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> exp(-30, 17);
  std::vector<double> many;
  for (int i = 0; i < 20'000; ++i)
    many.push_back(std::ldexp(1.0 + double(rng() >> 11) / 9007199254740992.0, exp(rng)) * (i % 2 ? 1 : -1));
  many.push_back(std::numeric_limits<double>::max());
  many.push_back(-1e-300);
  many.push_back(65519.99999999999);
  many.push_back(65520.0);
  SafetensorsWriter w2;
  w2.add<double>("h", {std::int64_t(many.size())}, many, DType::F16);
  w2.add<double>("b", {std::int64_t(many.size())}, many, DType::BF16);
  const SafetensorsFile f2 = SafetensorsFile::parse(w2.serialize(), "r2.safetensors");
  for (std::size_t i = 0; i < many.size(); ++i) {
    INFO("x = " << many[i]);
    REQUIRE(u16_at(f2.raw("h"), i) == ref_half(many[i]));
    REQUIRE(u16_at(f2.raw("b"), i) == ref_bf16(many[i]));
  }
}

TEST_CASE("safetensors: every header validation failure is a FormatError naming file and tensor",
          "[io][safetensors]") {
  const auto one = [](const std::string& e) { return "{" + e + "}"; };
  struct Case {
    std::vector<std::byte> bytes;
    std::string why;
  };
  std::vector<Case> cases;
  for (std::size_t n = 0; n < 8; ++n) cases.push_back({std::vector<std::byte>(n), "shorter than its 8-byte header"});
  {
    auto b = with_header("{}", 0);
    const std::uint64_t len = 100;
    std::memcpy(b.data(), &len, 8);
    cases.push_back({b, "truncated: header length 100 but only 2 bytes follow"});
    const std::uint64_t over = (100u << 20) + 1;
    std::memcpy(b.data(), &over, 8);
    cases.push_back({b, "header length 104857601 exceeds the limit"});
    const std::uint64_t max = ~std::uint64_t(0);
    std::memcpy(b.data(), &max, 8);
    cases.push_back({b, "exceeds the limit"});
  }
  cases.push_back({with_header("{\"a\":", 0), "invalid JSON at byte 5"});
  cases.push_back({with_header("{} x", 0), "unexpected trailing characters"});
  cases.push_back({with_header("{\"\xff\":1}", 0), "invalid UTF-8"});
  cases.push_back({with_header("", 0), "unexpected end of input"});
  for (const char* h : {"[1,2]", "\"s\"", "3", "null"}) cases.push_back({with_header(h, 0), "header is not a JSON object"});
  cases.push_back({with_header("{\"a\":3}", 0), "tensor 'a': entry is not an object"});
  cases.push_back({with_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'a': missing or non-string dtype"});
  cases.push_back({with_header("{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'a': missing or non-string dtype"});
  cases.push_back({with_header("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'a': missing or non-array shape"});
  cases.push_back({with_header(one(entry("a", "F32", "\"1\"", 0, 4)), 4), "tensor 'a': missing or non-array shape"});
  cases.push_back({with_header(one(entry("a", "F32", "{}", 0, 4)), 4), "missing or non-array shape"});
  cases.push_back({with_header(one(entry("a", "F32", "[1.5]", 0, 4)), 4), "tensor 'a': shape holds a non-integer"});
  cases.push_back({with_header(one(entry("a", "F32", "[1e0]", 0, 4)), 4), "shape holds a non-integer"});
  cases.push_back({with_header(one(entry("a", "F32", "[\"1\"]", 0, 4)), 4), "tensor 'a': shape holds a non-number"});
  cases.push_back({with_header(one(entry("a", "F32", "[null]", 0, 4)), 4), "shape holds a non-number"});
  cases.push_back({with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "tensor 'a': data_offsets must be [begin, end]"});
  for (const char* off : {"[0]", "[0,4,8]", "\"0,4\"", "{}", "[]"})
    cases.push_back({with_header(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":") + off + "}}", 4),
                     "tensor 'a': data_offsets must be [begin, end]"});
  for (const char* off : {"[\"0\",4]", "[0.0,4]", "[0,4.0]", "[0,null]", "[0,18446744073709551616]"})
    cases.push_back({with_header(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":") + off + "}}", 4),
                     "tensor 'a': data_offsets are not integers"});
  for (const char* dt : {"F8", "f32", "", "float32", "U16"})
    cases.push_back({with_header(one(entry("a", dt, "[1]", 0, 4)), 4), std::string("tensor 'a': unknown dtype '") + dt + "'"});
  cases.push_back({with_header(one(entry("a", "F32", "[-1]", 0, 4)), 4), "tensor 'a': negative dimension -1"});
  cases.push_back({with_header(one(entry("a", "F32", "[2,-3]", 0, 4)), 4), "negative dimension -3"});
  cases.push_back({with_header(one(entry("a", "F32", "[4294967296,4294967296,4294967296]", 0, 4)), 4),
                   "tensor 'a': shape overflows 64 bits"});
  cases.push_back({with_header(one(entry("a", "F64", "[2305843009213693952]", 0, 8)), 8),
                   "tensor 'a': byte size of shape [2305843009213693952] overflows 64 bits"});
  cases.push_back({with_header(one(entry("a", "F32", "[2]", 0, 4)), 4), "tensor 'a': holds 4 bytes, but shape [2] of F32 needs 8"});
  cases.push_back({with_header(one(entry("a", "BF16", "[]", 0, 4)), 4), "holds 4 bytes, but shape [] of BF16 needs 2"});
  cases.push_back({with_header(one(entry("a", "U8", "[0]", 0, 1)), 4), "needs 0"});
  cases.push_back({with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8),
                   "tensor 'a': data_offsets [8, 4] are not ordered (begin > end)"});
  cases.push_back({with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,-4]}}", 8), "not ordered"});
  cases.push_back({with_header(one(entry("a", "F32", "[2]", 0, 8)), 4), "tensor 'a': data_offsets end 8 beyond the data section (4 bytes)"});
  cases.push_back({with_header(one(entry("a", "U8", "[1]", 4, 5)), 4), "beyond the data section"});
  cases.push_back({with_header("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}", 8),
                   "duplicate key 'a'"});
  cases.push_back({with_header("{\"__metadata__\":\"x\"}", 0), "__metadata__ is not an object"});
  cases.push_back({with_header("{\"__metadata__\":{\"k\":3}}", 0), "__metadata__ value of 'k' is not a string"});
  cases.push_back({with_header("{\"__metadata__\":{\"ok\":\"v\",\"k\":{}}}", 0), "value of 'k' is not a string"});
  cases.push_back({with_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "duplicate key '__metadata__'"});
  cases.push_back({with_header("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}", 12),
                   "tensors 'a' and 'b' overlap"});
  cases.push_back({with_header("{" + entry("b", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 0, 4) + "}", 4), "overlap"});
  cases.push_back({with_header("{" + entry("big", "F32", "[3]", 0, 12) + "," + entry("in", "F32", "[1]", 4, 8) + "}", 12),
                   "tensors 'big' and 'in' overlap"});
  cases.push_back({with_header("{" + entry("x", "U8", "[1]", 0, 1) + "," + entry("weight.q", "F32", "[7]", 1, 29) + "}", 8),
                   "tensor 'weight.q': data_offsets end 29 beyond"});
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": expecting '" << cases[i].why << "'");
    const std::string what = refusal(cases[i].bytes);
    CHECK_THAT(what, Contains("bad.safetensors") && Contains(cases[i].why));
  }
}

TEST_CASE("safetensors: a header claiming a huge tensor is refused before any allocation", "[io][safetensors]") {
  // A 64 GiB tensor (sizes consistent with its shape) in a 16-byte data section, and a header
  // length of 90 MiB in a 16-byte file. With the address space capped a little above what the
  // process uses, allocating for either claim would end in std::bad_alloc instead of FormatError.
  const std::string huge = "{" + entry("big", "F32", "[16384,1048576]", 0, std::size_t(1) << 36) + "}";
  auto claim = with_header("{}", 14);
  const std::uint64_t len = 90u << 20;
  std::memcpy(claim.data(), &len, 8);
#if defined(__SANITIZE_ADDRESS__)
  const bool cap = false;  // ASan reserves terabytes of address space
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
  const bool cap = false;
#else
  const bool cap = true;
#endif
#else
  const bool cap = true;
#endif
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_AS, &old) == 0);
  if (cap) {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t pages = 0;
    statm >> pages;
    REQUIRE(pages > 0);
    rlimit lower = old;
    lower.rlim_cur = rlim_t(pages * std::uint64_t(::sysconf(_SC_PAGESIZE)) + (std::uint64_t(512) << 20));
    if (old.rlim_cur == RLIM_INFINITY || lower.rlim_cur < old.rlim_cur) REQUIRE(::setrlimit(RLIMIT_AS, &lower) == 0);
  }
  std::string what_huge, what_claim;
  bool other_exception = false;
  try {
    what_huge = refusal(with_header(huge, 16));
    what_claim = refusal(claim);
  } catch (...) {
    other_exception = true;
  }
  ::setrlimit(RLIMIT_AS, &old);
  REQUIRE_FALSE(other_exception);
  CHECK_THAT(what_huge, Contains("bad.safetensors: tensor 'big': data_offsets end 68719476736 beyond the data section"));
  CHECK_THAT(what_claim, Contains("bad.safetensors: truncated: header length 94371840 but only 16 bytes follow"));
}

TEST_CASE("safetensors: a truncated file is refused at every cut, never crashing", "[io][safetensors]") {
  const std::vector<std::byte> full = sample_file();
  REQUIRE_NOTHROW(SafetensorsFile::parse(full, "full.safetensors"));
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    INFO("cut at byte " << cut << " of " << full.size());
    std::vector<std::byte> part(full.begin(), full.begin() + long(cut));
    try {
      SafetensorsFile::parse(std::move(part), "cut.safetensors");
      FAIL("a file cut at byte " << cut << " was accepted");
    } catch (const vitiq::FormatError& e) {
      REQUIRE_THAT(e.what(), Contains("cut.safetensors"));
    }
  }
}

TEST_CASE("safetensors: corrupted files parse or throw FormatError, nothing else", "[io][safetensors]") {
  const std::vector<std::byte> full = sample_file();
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, full.data(), 8);
  const char alphabet[] = "{}[]\",:0123456789-.eE FIBU8\\\x80\xff";
  std::mt19937 rng(31337);
  int accepted = 0, refused = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::vector<std::byte> m = full;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % 8 == 0 ? rng() % 8 : 8 + rng() % header_len;  // mostly the header
      m[at] = rng() % 2 ? std::byte(rng() & 0xFF) : std::byte(alphabet[rng() % (sizeof alphabet - 1)]);
    }
    try {
      const SafetensorsFile f = SafetensorsFile::parse(std::move(m), "m.safetensors");
      ++accepted;
      for (const auto& name : f.names()) {
        const vitiq::io::TensorInfo& t = f.info(name);
        REQUIRE(t.end - t.begin == t.numel() * vitiq::io::dtype_size(t.dtype));
        REQUIRE(f.read<double>(name).size() == t.numel());
      }
    } catch (const vitiq::FormatError& e) {
      REQUIRE_THAT(e.what(), Contains("m.safetensors"));
      ++refused;
    }
  }
  CHECK(refused > 1000);
  CHECK(accepted > 100);
}

#ifdef VITIQ_TEST_DATA_DIR
TEST_CASE("safetensors: files written by the Python reference read and re-write unchanged", "[io][safetensors]") {
  const fs::path path = fs::path(VITIQ_TEST_DATA_DIR) / "golden_tiny.safetensors";
  const SafetensorsFile f = SafetensorsFile::load(path);
  REQUIRE(f.names().size() > 3);
  CHECK(f.metadata().count("dim") == 1);
  SafetensorsWriter w;
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  for (const auto& name : f.names()) {
    INFO(name);
    CHECK(f.read<double>(name).size() == f.info(name).numel());
    w.add_raw(name, f.info(name).dtype, f.info(name).shape, f.raw(name));
  }
  const SafetensorsFile g = SafetensorsFile::parse(w.serialize(), "rewritten");
  CHECK(g.names() == f.names());
  CHECK(g.metadata() == f.metadata());
  for (const auto& name : f.names()) {
    CHECK(g.info(name).shape == f.info(name).shape);
    CHECK(std::ranges::equal(g.raw(name), f.raw(name)));
  }
}
#endif

TEST_CASE("safetensors: load names the path on I/O and format errors", "[io][safetensors]") {
  TempDir dir;
  const fs::path missing = dir.path / "missing.safetensors";
  CHECK_THROWS_AS(SafetensorsFile::load(missing), vitiq::IoError);
  CHECK_THROWS_WITH(SafetensorsFile::load(missing), Contains(missing.string()) && Contains("No such file"));
  CHECK_THROWS_WITH(SafetensorsFile::load(dir.path), Contains(dir.path.string()) && Contains("Is a directory"));
  const fs::path junk = dir.path / "junk.safetensors";
  vitiq::io::atomic_write(junk, std::string_view("\x05\0\0\0\0\0\0\0{\"a\":", 13));
  CHECK_THROWS_AS(SafetensorsFile::load(junk), vitiq::FormatError);
  CHECK_THROWS_WITH(SafetensorsFile::load(junk), Contains(junk.string()) && Contains("invalid JSON"));
}

TEST_CASE("atomic_write: creates and replaces whole files, leaving no temporary", "[io][atomic]") {
  TempDir dir;
  const fs::path p = dir.path / "out.bin";
  std::vector<std::byte> data(300'000);
  std::mt19937 rng(5);
  for (auto& b : data) b = std::byte(rng() & 0xFF);
  data[0] = std::byte{0};
  vitiq::io::atomic_write(p, data);
  CHECK(vitiq::io::read_file(p) == data);
  vitiq::io::atomic_write(p, std::string_view("short"));
  CHECK(vitiq::io::read_file(p) == bytes_of("short"));
  vitiq::io::atomic_write(p, std::string_view());
  CHECK(vitiq::io::read_file(p).empty());
  CHECK(fs::file_size(p) == 0);
  SafetensorsWriter w;
  w.add<float>("x", {1}, std::vector<float>{1.0f}, DType::F32);
  w.write(dir.path / "w.safetensors");
  CHECK(vitiq::io::read_file(dir.path / "w.safetensors") == w.serialize());
  CHECK(listing(dir.path) == std::vector<std::string>{"out.bin", "w.safetensors"});
}

TEST_CASE("atomic_write: a failed write throws IoError, keeps the old file, removes the temporary",
          "[io][atomic]") {
  TempDir dir;
  // Into a directory that does not exist: nothing created anywhere.
  const fs::path nowhere = dir.path / "missing" / "b.txt";
  CHECK_THROWS_AS(vitiq::io::atomic_write(nowhere, std::string_view("x")), vitiq::IoError);
  CHECK_THROWS_WITH(vitiq::io::atomic_write(nowhere, std::string_view("x")),
                    Contains(nowhere.string()) && Contains("cannot write") && Contains("No such file or directory"));
  CHECK(listing(dir.path).empty());

  // Over a directory: the rename fails, the directory and its content stay.
  const fs::path d = dir.path / "target";
  fs::create_directories(d / "inner");
  CHECK_THROWS_WITH(vitiq::io::atomic_write(d, std::string_view("x")), Contains(d.string()) && Contains("rename failed"));
  CHECK(fs::is_directory(d / "inner"));
  CHECK(listing(dir.path) == std::vector<std::string>{"target"});

  // The disk "fills up" mid-write (file size limit): the old content survives.
  const fs::path old = dir.path / "old.bin";
  vitiq::io::atomic_write(old, std::string_view("old content"));
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  rlimit small = saved;
  small.rlim_cur = 1 << 20;
  const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string error;
  try {
    vitiq::io::atomic_write(old, std::vector<std::byte>(std::size_t(3) << 20, std::byte{7}));
  } catch (const vitiq::IoError& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, saved_handler);
  CHECK_THAT(error, Contains(old.string()) && Contains("write failed") && Contains(std::strerror(EFBIG)));
  CHECK(vitiq::io::read_file(old) == bytes_of("old content"));
  CHECK(listing(dir.path) == std::vector<std::string>{"old.bin", "target"});

  // A directory without write permission (meaningless for root, who may write anyway).
  if (::geteuid() != 0) {
    const fs::path ro = dir.path / "ro";
    fs::create_directories(ro);
    vitiq::io::atomic_write(ro / "f.txt", std::string_view("kept"));
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_THROWS_WITH(vitiq::io::atomic_write(ro / "f.txt", std::string_view("new")),
                      Contains("f.txt") && Contains("Permission denied"));
    fs::permissions(ro, fs::perms::owner_all);
    CHECK(vitiq::io::read_file(ro / "f.txt") == bytes_of("kept"));
    CHECK(listing(ro) == std::vector<std::string>{"f.txt"});
  }
}

TEST_CASE("atomic_write: concurrent writers never leave a mixed or partial file", "[io][atomic]") {
  TempDir dir;
  const fs::path p = dir.path / "shared.txt";
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const std::string content(20'000 + std::size_t(t), char('a' + t));
      try {
        for (int i = 0; i < 15; ++i) vitiq::io::atomic_write(p, content);
      } catch (const std::exception&) {
        ++failures;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  const auto got = vitiq::io::read_file(p);
  REQUIRE(got.size() >= 20'000);
  const std::size_t t = got.size() - 20'000;
  REQUIRE(t < 4);
  CHECK(got == bytes_of(std::string(got.size(), char('a' + t))));
  CHECK(listing(dir.path) == std::vector<std::string>{"shared.txt"});
}

TEST_CASE("read_file: exact bytes; IoError naming the path", "[io][atomic]") {
  TempDir dir;
  CHECK_THROWS_AS(vitiq::io::read_file(dir.path / "nope"), vitiq::IoError);
  CHECK_THROWS_WITH(vitiq::io::read_file(dir.path / "nope"),
                    Contains((dir.path / "nope").string()) && Contains("No such file or directory"));
  CHECK_THROWS_WITH(vitiq::io::read_file(dir.path), Contains(dir.path.string()) && Contains("Is a directory"));
  {
    std::ofstream(dir.path / "empty");
  }
  CHECK(vitiq::io::read_file(dir.path / "empty").empty());
  {
    std::ofstream out(dir.path / "bin", std::ios::binary);
    out.write("a\0b\r\n\xff", 6);
  }
  CHECK(vitiq::io::read_file(dir.path / "bin") == bytes_of(std::string_view("a\0b\r\n\xff", 6)));
  // Files of unknown size (a pipe-like /proc file) are read to the end too.
  CHECK_FALSE(vitiq::io::read_file("/proc/self/status").empty());
}
