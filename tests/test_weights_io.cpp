// tests/test_weights_io.cpp -- weights and checkpoints through safetensors: round trips in both
// naming schemes and precisions, refusal (naming the field or tensor) of files that do not fit
// the model, malformed and truncated files, hostile headers, atomic writes.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / ("vitiq_test_io_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

/// A safetensors image with the given header text and `data` bytes of zeros.
std::vector<std::byte> with_header(const std::string& header, std::size_t data) {
  std::vector<std::byte> out(8 + header.size() + data, std::byte{0});
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

constexpr auto tiny = vitiq::presets::tiny;

}  // namespace

TEST_CASE("weights round trip in both naming schemes, float and double", "[io][weights]") {
  const fs::path dir = temp_dir();
  vitiq::ViT<tiny> a({}, 1), b({}, 2);
  for (auto scheme : {vitiq::NamingScheme::current, vitiq::NamingScheme::legacy}) {
    vitiq::save_weights(a, dir / "w.safetensors", scheme);
    vitiq::load_weights(b, dir / "w.safetensors");
    CHECK(a.parameters_to_host() == b.parameters_to_host());
  }
  // float file into a double model and back: exact for float-representable values
  vitiq::ViT<tiny, vitiq::CpuBackend<double>> d({}, 3);
  vitiq::load_weights(d, dir / "w.safetensors");
  const auto pa = a.parameters_to_host();
  const auto pd = d.parameters_to_host();
  for (std::size_t i = 0; i < pa.size(); ++i) REQUIRE(double(pa[i]) == pd[i]);
  const auto file = vitiq::io::SafetensorsFile::load(dir / "w.safetensors");
  CHECK(file.metadata().at("spt") == "axial");
  CHECK(file.metadata().at("dim") == "32");
  CHECK(file.info("transformer.layers.0.1.fn.net.0.weight").shape == std::vector<std::int64_t>{64, 32});
  CHECK(file.info("transformer.layers.0.0.fn.temperature").shape.empty());
  fs::remove_all(dir);
}

TEST_CASE("loading refuses a file whose configuration or shapes do not match, naming the field", "[io][weights]") {
  const fs::path dir = temp_dir();
  vitiq::ViT<tiny> a({}, 1);
  vitiq::save_weights(a, dir / "tiny.safetensors");
  constexpr vitiq::Config wider{.dim = 48, .heads = 2, .dim_head = 16, .mlp_dim = 64};
  vitiq::ViT<wider> w;
  CHECK_THROWS_WITH(vitiq::load_weights(w, dir / "tiny.safetensors"),
                    Contains("tiny.safetensors") && Contains("'dim' is 32 in the file, but the model has 48"));
  constexpr vitiq::Config diag{.spt = vitiq::SptVariant::diagonal};
  vitiq::ViT<diag> dg;
  CHECK_THROWS_WITH(vitiq::load_weights(dg, dir / "tiny.safetensors"), Contains("'spt' is axial"));

  // Without configuration metadata (a converted PyTorch file), shapes are still checked.
  vitiq::io::SafetensorsWriter bare;
  const auto host = a.parameters_to_host();
  for (const auto& p : vitiq::param_table<tiny>())
    bare.add<float>(p.name, {p.shape.begin(), p.shape.end()}, std::span<const float>(host.data() + p.offset, p.size),
                    vitiq::io::DType::F16);
  bare.write(dir / "bare.safetensors");
  vitiq::ViT<tiny> c({}, 9);
  vitiq::load_weights(c, dir / "bare.safetensors");  // F16 storage converts
  CHECK(c.parameters_to_host()[0] == host[0]);       // LayerNorm weight 1.0 is exact in F16
  vitiq::ViT<wider> w2;
  CHECK_THROWS_WITH(vitiq::load_weights(w2, dir / "bare.safetensors"),
                    Contains("to_patch_embedding.to_patch_tokens.2.weight' has shape [32, 960], expected [48, 960]"));
  fs::remove_all(dir);
}

TEST_CASE("a missing tensor is named", "[io][weights]") {
  const fs::path dir = temp_dir();
  vitiq::io::SafetensorsWriter w;
  const float one = 1.0f;
  w.add<float>("cls_token", {1}, std::span<const float>(&one, 1), vitiq::io::DType::F32);
  w.write(dir / "partial.safetensors");
  vitiq::ViT<tiny> m;
  CHECK_THROWS_WITH(vitiq::load_weights(m, dir / "partial.safetensors"),
                    Contains("partial.safetensors") && Contains("no tensor named"));
  fs::remove_all(dir);
}

TEST_CASE("checkpoints restore weights, optimiser moments and training state exactly", "[io][checkpoint]") {
  const fs::path dir = temp_dir();
  using Be = vitiq::CpuBackend<float>;
  vitiq::ViT<tiny> m({}, 1);
  vitiq::Adam<Be> opt(m.backend(), vitiq::param_table<tiny>(), m.num_params, {.lr = 1e-3, .weight_decay = 0.05});
  std::vector<float> images(2 * 3 * 32 * 32, 0.25f), dl(10, 0.1f);
  m.forward(images, 2);
  m.backward(dl);
  opt.step(m.parameters(), m.gradients());
  vitiq::TrainState st;
  st.step = 1;
  st.epoch = 3;
  st.rng_state[0] = 0xFFFFFFFFFFFFFFFFULL;
  st.forward_count = 42;
  st.dropout_seed = 7;
  st.extra["best_val"] = "0.625";
  vitiq::save_checkpoint(dir / "ckpt.safetensors", m, opt, st);

  vitiq::ViT<tiny> m2({}, 5);
  vitiq::Adam<Be> opt2(m2.backend(), vitiq::param_table<tiny>(), m2.num_params, {.lr = 1e-3, .weight_decay = 0.05});
  const auto st2 = vitiq::load_checkpoint(dir / "ckpt.safetensors", m2, opt2);
  CHECK(st2.step == 1);
  CHECK(st2.epoch == 3);
  CHECK(st2.rng_state[0] == 0xFFFFFFFFFFFFFFFFULL);
  CHECK(st2.extra.at("best_val") == "0.625");
  CHECK(m2.forward_count() == 42);
  CHECK(opt2.steps() == 1);
  CHECK(m2.parameters_to_host() == m.parameters_to_host());
  CHECK(std::vector<float>(opt2.m(), opt2.m() + m.num_params) == std::vector<float>(opt.m(), opt.m() + m.num_params));
  CHECK(std::vector<float>(opt2.v(), opt2.v() + m.num_params) == std::vector<float>(opt.v(), opt.v() + m.num_params));
  // A weights file is not a checkpoint.
  vitiq::save_weights(m, dir / "w.safetensors");
  CHECK_THROWS_WITH(vitiq::load_checkpoint(dir / "w.safetensors", m2, opt2), Contains("not a vitiq checkpoint"));
  fs::remove_all(dir);
}

TEST_CASE("a truncated file never loads and never crashes, at any cut", "[io][safetensors]") {
  const fs::path dir = temp_dir();
  vitiq::ViT<tiny> m({}, 1);
  vitiq::save_weights(m, dir / "w.safetensors");
  const auto full = vitiq::io::read_file(dir / "w.safetensors");
  int refused = 0;
  for (std::size_t cut = 0; cut < full.size(); cut += (cut < 4096 ? 1 : 997)) {
    std::vector<std::byte> part(full.begin(), full.begin() + long(cut));
    try {
      vitiq::io::SafetensorsFile::parse(std::move(part), "cut.safetensors");
    } catch (const vitiq::FormatError& e) {
      REQUIRE_THAT(e.what(), Contains("cut.safetensors"));
      ++refused;
      continue;
    }
    FAIL("a file cut at byte " << cut << " was accepted");
  }
  CHECK(refused > 4000);
  fs::remove_all(dir);
}

TEST_CASE("hostile and malformed headers are refused with the reason", "[io][safetensors]") {
  auto refuse = [](std::vector<std::byte> b, const std::string& why) {
    CHECK_THROWS_WITH(vitiq::io::SafetensorsFile::parse(std::move(b), "bad.safetensors"),
                      Contains("bad.safetensors") && Contains(why));
  };
  refuse(bytes_of("abc"), "shorter than");
  // header length claims 100 GB
  std::vector<std::byte> huge(16, std::byte{0});
  const std::uint64_t big = 100ull << 30;
  std::memcpy(huge.data(), &big, 8);
  refuse(huge, "exceeds the limit");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000,1000],\"data_offsets\":[0,4]}}", 4), "needs");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4),
         "overflows");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), "beyond the data section");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4), "negative dimension");
  refuse(with_header("{\"a\":{\"dtype\":\"X9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "unknown dtype");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "data_offsets");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4), "not ordered");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8), "overlap");
  refuse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "duplicate");
  refuse(with_header("{\"__metadata__\":{\"k\":3}}", 0), "not a string");
  refuse(with_header("[1,2]", 0), "not a JSON object");
  refuse(with_header("{\"a\":", 0), "invalid JSON");
  refuse(with_header(std::string(100, '[') + std::string(100, ']'), 0), "nesting deeper");
  refuse(with_header("{} trailing", 0), "trailing");
  // scalar shape [] holds one element
  const auto ok = vitiq::io::SafetensorsFile::parse(
      with_header("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8), "ok");
  CHECK(ok.info("s").numel() == 1);
  CHECK(ok.read<double>("s") == std::vector<double>{0.0});
}

TEST_CASE("F16 and BF16 conversions round to nearest even", "[io][safetensors]") {
  using namespace vitiq::io::detail;
  CHECK(half_to_float(float_to_half(1.0f)) == 1.0f);
  CHECK(half_to_float(float_to_half(65504.0f)) == 65504.0f);
  CHECK(std::isinf(half_to_float(float_to_half(1e6f))));
  CHECK(half_to_float(float_to_half(5.960464477539063e-08f)) == 5.960464477539063e-08f);  // smallest subnormal
  CHECK(half_to_float(float_to_half(1.0f + 1.0f / 2048)) == 1.0f);                         // tie to even
  CHECK(half_to_float(float_to_half(1.0f + 3.0f / 2048)) == 1.0f + 2.0f / 1024);
  CHECK(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)) == 1.0f);  // tie to even
  CHECK(bf16_to_float(float_to_bf16(3.0f)) == 3.0f);
  for (float f : {0.1f, -2.5f, 1234.5f, 1e-3f}) {
    CHECK(std::abs(half_to_float(float_to_half(f)) - f) <= std::abs(f) * 1e-3f);
    CHECK(std::abs(bf16_to_float(float_to_bf16(f)) - f) <= std::abs(f) * 8e-3f);
  }
}

TEST_CASE("atomic writes replace whole files and leave no temporary behind", "[io][atomic]") {
  const fs::path dir = temp_dir();
  vitiq::io::atomic_write(dir / "a.txt", std::string_view("first"));
  vitiq::io::atomic_write(dir / "a.txt", std::string_view("second"));
  std::ifstream in(dir / "a.txt");
  std::string s;
  in >> s;
  CHECK(s == "second");
  CHECK_THROWS_WITH(vitiq::io::atomic_write(dir / "missing" / "b.txt", std::string_view("x")),
                    Contains("missing/b.txt") && Contains("cannot write"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) { (void)e; ++files; }
  CHECK(files == 1);
  CHECK_THROWS_AS(vitiq::io::read_file(dir / "nope"), vitiq::IoError);
  fs::remove_all(dir);
}

TEST_CASE("JSON parser: escapes, surrogates, numbers, errors with offsets", "[io][json]") {
  const auto v = vitiq::json::parse(R"({"a":[1,-2.5e3,true,null],"s":"x\"\\\u00e9\ud83d\ude00\n","n":9007199254740993})", "t");
  CHECK(v.at("a").as_array()[1].as_number() == -2500.0);
  CHECK(v.at("s").as_string() == "x\"\\\xc3\xa9\xf0\x9f\x98\x80\n");
  CHECK(v.at("n").as_int64() == 9007199254740993LL);  // exact beyond double precision
  CHECK(vitiq::json::parse(v.dump(), "again").dump() == v.dump());
  CHECK_THROWS_WITH(vitiq::json::parse("[1,]", "f.json"), Contains("f.json: invalid JSON at byte 3"));
  CHECK_THROWS_WITH(vitiq::json::parse("\"\\ud800\"", "f.json"), Contains("surrogate"));
  CHECK_THROWS_WITH(vitiq::json::parse("01", "f.json"), Contains("trailing"));
  CHECK_THROWS_WITH(vitiq::json::parse("{\"a\":1,\"a\":2}", "f.json"), Contains("duplicate key"));
  CHECK(vitiq::json::escape("a\x01") == "\"a\\u0001\"");
}

TEST_CASE("average_weights: the element-wise mean of weights files; refusals name the file", "[io][weights]") {
  const fs::path dir = temp_dir() / "soup";
  fs::create_directories(dir);
  vitiq::ViT<tiny> a({}, 1), b({}, 2), c({}, 3), soup({}, 4);
  vitiq::save_weights(a, dir / "a.safetensors");
  vitiq::save_weights(b, dir / "b.safetensors");
  vitiq::save_weights(c, dir / "c.safetensors");
  vitiq::average_weights(soup, {dir / "a.safetensors", dir / "b.safetensors", dir / "c.safetensors"});
  const auto pa = a.parameters_to_host(), pb = b.parameters_to_host(), pc = c.parameters_to_host();
  const auto ps = soup.parameters_to_host();
  REQUIRE(ps.size() == pa.size());
  for (std::size_t i = 0; i < ps.size(); ++i)
    REQUIRE(ps[i] == float((double(pa[i]) + double(pb[i]) + double(pc[i])) / 3.0));
  // one file: the model gets that file's weights
  vitiq::average_weights(soup, {dir / "b.safetensors"});
  CHECK(soup.parameters_to_host() == pb);
  // nothing to average, a file of another configuration, a missing file: errors, model unchanged
  CHECK_THROWS_AS(vitiq::average_weights(soup, {}), std::invalid_argument);
  vitiq::ViT<vitiq::presets::aio> other({}, 5);
  vitiq::save_weights(other, dir / "aio.safetensors");
  CHECK_THROWS_WITH(vitiq::average_weights(soup, {dir / "a.safetensors", dir / "aio.safetensors"}),
                    Contains("aio.safetensors"));
  CHECK_THROWS_WITH(vitiq::average_weights(soup, {dir / "a.safetensors", dir / "none.safetensors"}),
                    Contains("none.safetensors"));
  CHECK(soup.parameters_to_host() == pb);
  fs::remove_all(dir);
}
