// vitiq/io/model_card.hpp -- what a trained AIO needs to be applied the way it was trained: the
// preset, the input view (native tiles on the JPEG grid averaged, or a whole-image resize), the
// normalisation, the label kind, the observer and the study it was trained on. vitiq-train writes
// it into the `__metadata__` of every weights file (keys "card.*"), vitiq-predict and
// vitiq-attention read it back and apply the same view by default.
//
// Invariant: to_metadata() and from_metadata() are inverses for every valid card; a card key that
// is present but malformed is a FormatError naming the file and the key, never a silent default.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

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
                                                std::string_view source);
};

/// @brief FNV-1a 64 of a file's bytes as 16 hex digits (the card's split_digest).
/// @throws IoError naming the file when it cannot be read
std::string file_digest(const std::filesystem::path& path);

/// @brief The model card of a weights file (only its header is needed), nullopt when it has none.
/// @throws IoError / FormatError naming the file
std::optional<ModelCard> read_model_card(const std::filesystem::path& weights);

}  // namespace vitiq
