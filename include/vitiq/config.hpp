// vitiq/config.hpp -- the compile-time model configuration and the named presets.
//
// A `vitiq::Config` fixes every quantity that sets a buffer size or a loop bound (image, patch,
// channels, dim, depth, heads, dim_head, mlp_dim, classes, SPT variant, LSA, temperature form,
// pooling). It is used as a class-type template parameter: `vitiq::ViT<vitiq::presets::aio>`.
// Everything else (learning rate, dropout, batch size, seed) is a runtime setting.
//
// Invariant: a Config that passes `validate_config<C>()` describes a model whose derived sizes
// (grid, tokens, patch_dim, inner_dim) are all positive and exact.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vitiq {

/// @brief Which shifted copies Shifted Patch Tokenization concatenates to the image.
enum class SptVariant {
  axial,     ///< offsets (0,-1), (0,+1), (-1,0), (+1,0): the reference implementation
  diagonal,  ///< offsets (-s,-s), (-s,+s), (+s,-s), (+s,+s) with s = floor(P/2): the paper
  none,      ///< no shifted copies: plain patch embedding behind the same LayerNorm + Linear
};

/// @brief How the LSA temperature is parameterised.
enum class Temperature {
  shared_log,  ///< one scalar per block, tau = exp(parameter), initialised to log(d^-0.5)
  per_head,    ///< one value per head, tau = parameter, initialised to d^-0.5
};

/// @brief How the token sequence is reduced to one vector before the head.
enum class Pool {
  cls,   ///< token 0 (the class token)
  mean,  ///< mean over all N tokens, class token included
};

/// @brief Number of image copies SPT concatenates (the image itself plus its shifts).
/// @param v the SPT variant
/// @return 1 for SptVariant::none, else 5
constexpr int spt_copies(SptVariant v) { return v == SptVariant::none ? 1 : 5; }

/// @brief The complete shape of a model; a structural type usable as a template argument.
struct Config {
  int image_size = 32;   ///< H = W, pixels
  int patch_size = 8;    ///< P, pixels
  int channels = 3;      ///< C
  int dim = 32;          ///< D, token width
  int depth = 2;         ///< L, number of transformer blocks
  int heads = 2;         ///< h
  int dim_head = 16;     ///< d
  int mlp_dim = 64;      ///< M
  int num_classes = 5;   ///< K
  /// Which shifted copies Shifted Patch Tokenization adds (SptVariant::none: plain patches).
  SptVariant spt = SptVariant::axial;
  bool lsa = true;       ///< Locality Self-Attention (diagonal mask + learnable temperature)
  /// Parameterisation of the LSA temperature (ignored without LSA).
  Temperature temperature = Temperature::shared_log;
  /// How the tokens are reduced to one vector before the head.
  Pool pool = Pool::cls;

  /// Patches per side, H / P.
  constexpr int grid() const { return image_size / patch_size; }
  /// n, number of patches.
  constexpr int num_patches() const { return grid() * grid(); }
  /// N = n + 1, number of tokens (class token first).
  constexpr int num_tokens() const { return num_patches() + 1; }
  /// Features of one patch token before the embedding: copies * C * P * P.
  constexpr int patch_dim() const { return spt_copies(spt) * channels * patch_size * patch_size; }
  /// I = h * d, width of q, k and v.
  constexpr int inner_dim() const { return heads * dim_head; }
  /// Number of learnable temperature values per block (0 without LSA).
  constexpr int temperature_size() const {
    return !lsa ? 0 : (temperature == Temperature::shared_log ? 1 : heads);
  }
  /// @brief Field-wise equality (defaulted).
  friend constexpr bool operator==(const Config&, const Config&) = default;
};

/// @brief Empty string when `c` is a valid configuration, else a sentence naming the bad field.
/// Used at run time (checkpoint import); the compile-time check is validate_config<C>().
/// @param c the configuration to check
/// @return "" when valid, else e.g. "image_size must be divisible by patch_size"
inline std::string config_error(const Config& c) {
  if (c.image_size <= 0) return "image_size must be positive";
  if (c.patch_size <= 0) return "patch_size must be positive";
  if (c.image_size % c.patch_size != 0) return "image_size must be divisible by patch_size";
  if (c.channels <= 0) return "channels must be positive";
  if (c.dim <= 0) return "dim must be positive";
  if (c.depth <= 0) return "depth must be positive";
  if (c.heads <= 0) return "heads must be positive";
  if (c.dim_head <= 0) return "dim_head must be positive";
  if (c.mlp_dim <= 0) return "mlp_dim must be positive";
  if (c.num_classes <= 0) return "num_classes must be positive";
  if (c.spt == SptVariant::diagonal && c.patch_size < 2)
    return "spt = diagonal needs patch_size >= 2 (the shift is floor(P/2))";
  return {};
}

/// @brief Compile-time validation; each failure names the field that is wrong.
/// `ViT<C>` calls it, so an invalid configuration does not compile.
/// @tparam C the configuration to check
/// @return true (an invalid C fails a static_assert instead of returning)
template <Config C>
constexpr bool validate_config() {
  static_assert(C.image_size > 0, "vitiq::Config: image_size must be positive");
  static_assert(C.patch_size > 0, "vitiq::Config: patch_size must be positive");
  static_assert(C.patch_size <= 0 || C.image_size % C.patch_size == 0,
                "vitiq::Config: image_size must be divisible by patch_size");
  static_assert(C.channels > 0, "vitiq::Config: channels must be positive");
  static_assert(C.dim > 0, "vitiq::Config: dim must be positive");
  static_assert(C.depth > 0, "vitiq::Config: depth must be positive");
  static_assert(C.heads > 0, "vitiq::Config: heads must be positive (zero heads is not a model)");
  static_assert(C.dim_head > 0, "vitiq::Config: dim_head must be positive");
  static_assert(C.mlp_dim > 0, "vitiq::Config: mlp_dim must be positive");
  static_assert(C.num_classes > 0, "vitiq::Config: num_classes must be positive");
  static_assert(C.spt != SptVariant::diagonal || C.patch_size >= 2,
                "vitiq::Config: spt = diagonal needs patch_size >= 2");
  return true;
}

/// @brief True when C is a valid configuration (usable in `requires` clauses).
///
/// Checks the same conditions as validate_config() without failing the compilation.
/// @tparam C the configuration to check
template <Config C>
concept ValidConfig = C.image_size > 0 && C.patch_size > 0 && C.image_size % C.patch_size == 0 &&
                      C.channels > 0 && C.dim > 0 && C.depth > 0 && C.heads > 0 &&
                      C.dim_head > 0 && C.mlp_dim > 0 && C.num_classes > 0 &&
                      (C.spt != SptVariant::diagonal || C.patch_size >= 2);

/// @brief The named presets of the specification.
namespace presets {
/// For tests: 32 px, patch 8, D 32, 2 blocks of 2 heads.
inline constexpr Config tiny{.image_size = 32, .patch_size = 8, .channels = 3, .dim = 32, .depth = 2,
                             .heads = 2, .dim_head = 16, .mlp_dim = 64, .num_classes = 5,
                             .spt = SptVariant::axial, .lsa = true,
                             .temperature = Temperature::shared_log, .pool = Pool::cls};
/// The paper's small-data setting (CIFAR: 10 classes, diagonal SPT, per-head temperature).
inline constexpr Config cifar{.image_size = 32, .patch_size = 4, .channels = 3, .dim = 192, .depth = 9,
                              .heads = 12, .dim_head = 16, .mlp_dim = 384, .num_classes = 10,
                              .spt = SptVariant::diagonal, .lsa = true,
                              .temperature = Temperature::per_head, .pool = Pool::cls};
/// Default for per-observer models on a CPU: 64 px native-resolution crops.
inline constexpr Config aio{.image_size = 64, .patch_size = 8, .channels = 3, .dim = 128, .depth = 4,
                            .heads = 4, .dim_head = 32, .mlp_dim = 256, .num_classes = 5,
                            .spt = SptVariant::axial, .lsa = true,
                            .temperature = Temperature::shared_log, .pool = Pool::cls};
/// A mid-sized model for quality work; the CPU speed benchmark.
inline constexpr Config iqa{.image_size = 128, .patch_size = 16, .channels = 3, .dim = 256, .depth = 6,
                            .heads = 8, .dim_head = 32, .mlp_dim = 512, .num_classes = 5,
                            .spt = SptVariant::axial, .lsa = true,
                            .temperature = Temperature::shared_log, .pool = Pool::cls};
/// The original per-observer project's model.
inline constexpr Config seed{.image_size = 256, .patch_size = 16, .channels = 3, .dim = 1024, .depth = 6,
                             .heads = 16, .dim_head = 64, .mlp_dim = 2048, .num_classes = 5,
                             .spt = SptVariant::axial, .lsa = true,
                             .temperature = Temperature::shared_log, .pool = Pool::cls};
}  // namespace presets

static_assert(validate_config<presets::tiny>() && validate_config<presets::cifar>() &&
              validate_config<presets::aio>() && validate_config<presets::iqa>() &&
              validate_config<presets::seed>());

/// @brief Name of an SPT variant as written in files and on the command line.
/// @param v the variant
/// @return "axial", "diagonal" or "none"
constexpr std::string_view to_string(SptVariant v) {
  return v == SptVariant::axial ? "axial" : v == SptVariant::diagonal ? "diagonal" : "none";
}
/// @brief Name of a temperature form as written in files and on the command line.
/// @param t the temperature form
/// @return "shared_log" or "per_head"
constexpr std::string_view to_string(Temperature t) {
  return t == Temperature::shared_log ? "shared_log" : "per_head";
}
/// @brief Name of a pooling as written in files and on the command line.
/// @param p the pooling
/// @return "cls" or "mean"
constexpr std::string_view to_string(Pool p) { return p == Pool::cls ? "cls" : "mean"; }

/// @brief Parse an SPT variant name written by to_string(SptVariant).
/// @param s   "axial", "diagonal" or "none"
/// @param out set to the parsed variant; left unchanged on failure
/// @return false when `s` names no variant
inline bool parse(std::string_view s, SptVariant& out) {
  if (s == "axial") out = SptVariant::axial;
  else if (s == "diagonal") out = SptVariant::diagonal;
  else if (s == "none") out = SptVariant::none;
  else return false;
  return true;
}
/// @brief Parse a temperature form name written by to_string(Temperature).
/// @param s   "shared_log" or "per_head"
/// @param out set to the parsed form; left unchanged on failure
/// @return false when `s` names no form
inline bool parse(std::string_view s, Temperature& out) {
  if (s == "shared_log") out = Temperature::shared_log;
  else if (s == "per_head") out = Temperature::per_head;
  else return false;
  return true;
}
/// @brief Parse a pooling name written by to_string(Pool).
/// @param s   "cls" or "mean"
/// @param out set to the parsed pooling; left unchanged on failure
/// @return false when `s` names no pooling
inline bool parse(std::string_view s, Pool& out) {
  if (s == "cls") out = Pool::cls;
  else if (s == "mean") out = Pool::mean;
  else return false;
  return true;
}

}  // namespace vitiq

namespace vitiq {

/// @brief Names of the presets, in the order dispatch_preset() knows them.
inline constexpr std::string_view preset_names[] = {"tiny", "cifar", "aio", "iqa", "seed"};

/// @brief Call `f.template operator()<C>()` with the preset named `name`; return false when no
/// preset has that name. Lets a program pick a compile-time configuration from a run-time string:
/// @code
/// vitiq::dispatch_preset(name, [&]<vitiq::Config C>() { vitiq::ViT<C> model; ... });
/// @endcode
/// Every preset instantiates `f`, so its body must compile for all of them.
/// @tparam F   a callable with a template call operator over `Config`
/// @param name one of preset_names
/// @param f    called once, with the named preset as its template argument
/// @return true when `name` is a preset (and `f` ran), false otherwise
template <class F>
bool dispatch_preset(std::string_view name, F&& f) {
  if (name == "tiny") { f.template operator()<presets::tiny>(); return true; }
  if (name == "cifar") { f.template operator()<presets::cifar>(); return true; }
  if (name == "aio") { f.template operator()<presets::aio>(); return true; }
  if (name == "iqa") { f.template operator()<presets::iqa>(); return true; }
  if (name == "seed") { f.template operator()<presets::seed>(); return true; }
  return false;
}

}  // namespace vitiq
