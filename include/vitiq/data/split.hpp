// vitiq/data/split.hpp -- train / validation / test splits by source content, stored on disk.
//
// Stimuli cut from the same source photo (crops, JPEG versions) look alike; if some were trained
// on and others tested, the test would be inflated. A ContentSplit therefore assigns whole
// sources to a part, seeded, and is written to a CSV (`image,source,split`) so that every later
// run reads the same split instead of drawing its own.
//
// Invariant: in a ContentSplit no source has images in two parts (checked on construction and on
// reading).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/csv.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"

namespace vitiq::data {

/// @brief The three parts of a split.
enum class Part { train, val, test };

/// @brief "train", "val" or "test".
constexpr std::string_view to_string(Part p) {
  return p == Part::train ? "train" : p == Part::val ? "val" : "test";
}

/// @brief Parse "train", "val" (or "validation") or "test"; nullopt otherwise.
inline std::optional<Part> parse_part(std::string_view s) {
  if (s == "train") return Part::train;
  if (s == "val" || s == "validation") return Part::val;
  if (s == "test") return Part::test;
  return std::nullopt;
}

/// @brief Target shares of the three parts (any non-negative numbers, normalised to sum 1).
struct SplitFractions {
  double train = 0.7;
  double val = 0.1;
  double test = 0.2;
};

/// @brief Assign whole sources to parts, seeded.
///
/// The sources are shuffled with the seed; first every part with a positive fraction receives
/// one source (test, then val, then train, as long as sources remain), then each further source
/// goes to the part furthest below its target share of the total weight (ties: train, val, test).
/// With the same inputs and seed the result is always the same.
/// @param sources  (source name, weight) pairs, e.g. weight = number of stimuli; names unique
/// @param f        target shares
/// @param seed     shuffles the sources
/// @return source name -> part
/// @throws Error on a duplicate source name, a negative weight or fraction, or all fractions 0.
inline std::map<std::string, Part> split_sources(std::span<const std::pair<std::string, double>> sources,
                                                 SplitFractions f, std::uint64_t seed) {
  if (f.train < 0 || f.val < 0 || f.test < 0 || f.train + f.val + f.test <= 0)
    throw Error("split fractions must be non-negative and not all zero");
  const double sum = f.train + f.val + f.test;
  const std::array<double, 3> share = {f.train / sum, f.val / sum, f.test / sum};
  std::vector<std::pair<std::string, double>> order(sources.begin(), sources.end());
  std::sort(order.begin(), order.end());  // the input order does not matter, only the seed
  for (std::size_t i = 1; i < order.size(); ++i)
    if (order[i].first == order[i - 1].first) throw Error("split: source '" + order[i].first + "' listed twice");
  double total = 0;
  for (const auto& [name, w] : order) {
    if (!(w >= 0)) throw Error("split: source '" + name + "' has a negative weight");
    total += w;
  }
  Rng rng(mix64(seed ^ 0x5EED5B17ULL));
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);

  std::map<std::string, Part> out;
  std::array<double, 3> have = {0, 0, 0};
  std::size_t next = 0;
  for (int p : {2, 1, 0})  // seed each non-empty part: test, val, train
    if (share[std::size_t(p)] > 0 && next < order.size()) {
      out[order[next].first] = Part(p);
      have[std::size_t(p)] += order[next].second;
      ++next;
    }
  for (; next < order.size(); ++next) {
    int best = -1;
    double best_deficit = 0;
    for (int p = 0; p < 3; ++p) {
      if (share[std::size_t(p)] <= 0) continue;
      const double deficit = share[std::size_t(p)] * total - have[std::size_t(p)];
      if (best < 0 || deficit > best_deficit) best = p, best_deficit = deficit;
    }
    out[order[next].first] = Part(best);
    have[std::size_t(best)] += order[next].second;
  }
  return out;
}

/// @brief One line of a split: an image, its source and its part.
struct SplitEntry {
  std::string image;
  std::string source;
  Part part = Part::train;
};

/// @brief A split of images by source content.
class ContentSplit {
 public:
  ContentSplit() = default;

  /// @brief From entries; throws FormatError when an image is listed twice or a source has
  /// images in two parts.
  explicit ContentSplit(std::vector<SplitEntry> entries) : entries_(std::move(entries)) { index(); }

  /// @brief Split images (image, source) by source, seeded: split_sources() with each source
  /// weighted by its number of images.
  static ContentSplit make(std::span<const std::pair<std::string, std::string>> images, SplitFractions f,
                           std::uint64_t seed) {
    std::map<std::string, double> weight;
    for (const auto& [img, src] : images) weight[src] += 1;
    const std::vector<std::pair<std::string, double>> sources(weight.begin(), weight.end());
    const auto parts = split_sources(sources, f, seed);
    std::vector<SplitEntry> e;
    e.reserve(images.size());
    for (const auto& [img, src] : images) e.push_back({img, src, parts.at(src)});
    return ContentSplit(std::move(e));
  }

  /// @brief Part of an image, or nullopt when the split does not list it.
  std::optional<Part> part(std::string_view image) const {
    const auto it = by_image_.find(std::string(image));
    if (it == by_image_.end()) return std::nullopt;
    return entries_[it->second].part;
  }
  /// @brief Source of an image, or nullopt.
  std::optional<std::string> source(std::string_view image) const {
    const auto it = by_image_.find(std::string(image));
    if (it == by_image_.end()) return std::nullopt;
    return entries_[it->second].source;
  }
  /// @brief All entries, in the order given.
  const std::vector<SplitEntry>& entries() const { return entries_; }
  /// @brief The images of one part, in entry order.
  std::vector<std::string> images(Part p) const {
    std::vector<std::string> out;
    for (const auto& e : entries_) if (e.part == p) out.push_back(e.image);
    return out;
  }
  /// @brief Source -> part.
  const std::map<std::string, Part>& sources() const { return by_source_; }

  /// @brief Write `image,source,split` (atomic). @throws IoError naming the file.
  void write_csv(const std::filesystem::path& path) const {
    std::string text = "image,source,split\n";
    for (const auto& e : entries_) text += csv_line({e.image, e.source, std::string(to_string(e.part))});
    io::atomic_write(path, text);
  }

  /// @brief Read `image,source,split` (columns in any order, more allowed).
  /// @throws IoError; FormatError "<file>:<line>: ..." for a missing column, an unknown part, an
  ///         empty image or source, an image listed twice, or a source in two parts.
  static ContentSplit read_csv(const std::filesystem::path& path) {
    const CsvTable t = read_csv_table(path);
    const std::size_t ic = t.require("image"), sc = t.require("source"), pc = t.require("split");
    ContentSplit s;
    std::map<std::string, std::size_t> source_line;
    for (const auto& row : t.rows) {
      SplitEntry e{std::string(trim(row.fields[ic])), std::string(trim(row.fields[sc])), Part::train};
      const auto p = parse_part(trim(row.fields[pc]));
      if (e.image.empty()) throw FormatError(t.where(row) + "empty image name");
      if (e.source.empty()) throw FormatError(t.where(row) + "empty source");
      if (!p) throw FormatError(t.where(row) + "split '" + std::string(trim(row.fields[pc])) + "' is not train, val or test");
      e.part = *p;
      if (s.by_image_.count(e.image)) throw FormatError(t.where(row) + "image '" + e.image + "' listed twice");
      const auto [it, fresh] = s.by_source_.emplace(e.source, e.part);
      if (fresh) source_line[e.source] = row.line;
      if (it->second != e.part)
        throw FormatError(t.where(row) + "source '" + e.source + "' is in " + std::string(to_string(e.part)) +
                          " here but in " + std::string(to_string(it->second)) + " at line " +
                          std::to_string(source_line[e.source]));
      s.by_image_[e.image] = s.entries_.size();
      s.entries_.push_back(std::move(e));
    }
    return s;
  }

 private:
  void index() {
    by_image_.clear();
    by_source_.clear();
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const auto& e = entries_[i];
      if (!by_image_.emplace(e.image, i).second) throw FormatError("split: image '" + e.image + "' listed twice");
      const auto [it, fresh] = by_source_.emplace(e.source, e.part);
      if (!fresh && it->second != e.part)
        throw FormatError("split: source '" + e.source + "' would be in both " + std::string(to_string(it->second)) +
                          " and " + std::string(to_string(e.part)));
    }
  }
  std::vector<SplitEntry> entries_;
  std::map<std::string, std::size_t> by_image_;
  std::map<std::string, Part> by_source_;
};

}  // namespace vitiq::data
