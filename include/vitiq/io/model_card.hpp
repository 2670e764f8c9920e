// vitiq/io/model_card.hpp -- what a trained AIO needs to be applied the way it was trained: the
// preset, the input view (native tiles on the JPEG grid averaged, or a whole-image resize), the
// normalisation, the label kind, the observer and the study it was trained on. vitiq-train writes
// it into the `__metadata__` of every weights file (keys "card.*"), vitiq-predict and
// vitiq-attention read it back and apply the same view by default.
//
// Invariant: to_metadata() and from_metadata() are inverses for every valid card; a card key that
// is present but malformed is a FormatError naming the file and the key, never a silent default.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/safetensors.hpp"

namespace vitiq {

/// @brief How an image becomes the model's input.
enum class InputView {
  native_tiles,  ///< all non-overlapping S x S tiles at native resolution (offsets on the S grid,
                 ///< hence on the 8-pixel JPEG grid when S is a multiple of 8), probabilities averaged
  resize,        ///< the whole image resized (bilinear, aspect not kept) to S x S
};

/// @brief The label a model's classes stand for.
enum class LabelKind {
  vote,   ///< an observer's ACR vote 1..K
  band,   ///< the JPEG quality band 1..5 of the stimulus name
  qband,  ///< the band refined by Q (AIO0 with --label qband)
  mos,    ///< the stimulus' mean vote over all observers (AIO0 with --label mos)
};

inline constexpr std::string_view to_string(InputView v) { return v == InputView::resize ? "resize" : "native_tiles"; }
inline constexpr std::string_view to_string(LabelKind k) {
  switch (k) {
    case LabelKind::vote: return "vote";
    case LabelKind::band: return "band";
    case LabelKind::qband: return "qband";
    case LabelKind::mos: return "mos";
  }
  return "vote";
}

/// @brief The model card stored beside a model's weights.
struct ModelCard {
  std::string preset;                       ///< preset name (tiny, cifar, aio, iqa, seed)
  InputView view = InputView::native_tiles;  ///< how an image becomes input
  int tile_size = 0;                        ///< S: the model's image_size
  int symmetries = 1;                       ///< views per tile averaged at test time: 1, 2 or 8
  bool normalize = true;                    ///< ImageNet mean / std after scaling to [0, 1]
  LabelKind labels = LabelKind::vote;       ///< what the classes mean
  std::string observer;                     ///< observer id; empty for AIO0
  std::string study;                        ///< the study folder it was trained on
  std::string split_digest;                 ///< FNV-1a 64 of split.csv's bytes, 16 hex digits

  /// @brief The card as metadata entries "card.<field>" (plus "card.version" = "1").
  std::map<std::string, std::string> to_metadata() const {
    return {{"card.version", "1"},
            {"card.preset", preset},
            {"card.view", std::string(to_string(view))},
            {"card.tile_size", std::to_string(tile_size)},
            {"card.symmetries", std::to_string(symmetries)},
            {"card.normalize", normalize ? "imagenet" : "none"},
            {"card.labels", std::string(to_string(labels))},
            {"card.observer", observer},
            {"card.study", study},
            {"card.split_digest", split_digest}};
  }

  /// @brief The card in `metadata`, or nullopt when it has none (no "card.version": weights written
  /// before cards, or by another tool).
  /// @param source named in errors (the weights file)
  /// @throws FormatError "<source>: metadata 'card.<field>': ..." for a present but malformed field
  static std::optional<ModelCard> from_metadata(const std::map<std::string, std::string>& metadata,
                                                std::string_view source) {
    if (!metadata.count("card.version")) return std::nullopt;
    const auto bad = [&](std::string_view key, const std::string& why) {
      return FormatError(std::string(source) + ": metadata '" + std::string(key) + "': " + why);
    };
    const auto get = [&](std::string_view key) -> const std::string& {
      const auto it = metadata.find(std::string(key));
      if (it == metadata.end()) throw bad(key, "missing (the file has a model card)");
      return it->second;
    };
    const auto integer = [&](std::string_view key, int lo, int hi) {
      const std::string& v = get(key);
      int x = 0;
      std::size_t used = 0;
      try { x = std::stoi(v, &used); } catch (...) { used = 0; }
      if (v.empty() || used != v.size() || x < lo || x > hi)
        throw bad(key, "'" + v + "' is not an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      return x;
    };
    if (get("card.version") != "1") throw bad("card.version", "'" + get("card.version") + "' is not a version this vitiq reads (1)");
    ModelCard c;
    c.preset = get("card.preset");
    const std::string& view = get("card.view");
    if (view == "native_tiles") c.view = InputView::native_tiles;
    else if (view == "resize") c.view = InputView::resize;
    else throw bad("card.view", "'" + view + "' is not native_tiles or resize");
    c.tile_size = integer("card.tile_size", 1, 1 << 16);
    c.symmetries = integer("card.symmetries", 1, 8);
    if (c.symmetries != 1 && c.symmetries != 2 && c.symmetries != 8) throw bad("card.symmetries", "must be 1, 2 or 8");
    const std::string& norm = get("card.normalize");
    if (norm != "imagenet" && norm != "none") throw bad("card.normalize", "'" + norm + "' is not imagenet or none");
    c.normalize = norm == "imagenet";
    const std::string& labels = get("card.labels");
    if (labels == "vote") c.labels = LabelKind::vote;
    else if (labels == "band") c.labels = LabelKind::band;
    else if (labels == "qband") c.labels = LabelKind::qband;
    else if (labels == "mos") c.labels = LabelKind::mos;
    else throw bad("card.labels", "'" + labels + "' is not vote, band, qband or mos");
    c.observer = get("card.observer");
    c.study = get("card.study");
    c.split_digest = get("card.split_digest");
    return c;
  }
};

/// @brief FNV-1a 64 of a file's bytes as 16 hex digits (the card's split_digest).
/// @throws IoError naming the file when it cannot be read
inline std::string file_digest(const std::filesystem::path& path) {
  const std::vector<std::byte> bytes = io::read_file(path);
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::byte b : bytes) h = (h ^ std::uint64_t(b)) * 0x100000001b3ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

/// @brief The model card of a weights file, nullopt when it has none.
/// @throws IoError / FormatError naming the file
inline std::optional<ModelCard> read_model_card(const std::filesystem::path& weights) {
  const auto file = io::SafetensorsFile::load(weights);
  return ModelCard::from_metadata(file.metadata(), weights.string());
}

}  // namespace vitiq
