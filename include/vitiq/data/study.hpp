// vitiq/data/study.hpp -- a per-observer study folder in memory: every vote (ratings.csv, long
// format) and the split by source content (split.csv), read by the one reader every program uses.
//
// A study folder (written by vitiq-make-dataset or vitiq-import) holds
//   images/        the stimuli, named as in the tables
//   ratings.csv    image,observer,session,vote[,duration,timestamp]  (data::read_long_csv)
//   split.csv      image,source,split with split train|val|test      (data::ContentSplit)
// and, for a simulated study, ground_truth.json and ground_truth_stimuli.csv (ground_truth.hpp).
//
// Invariant: a Study read from disk has at least one rating, every rating is valid (vote in 1..5,
// no duplicate (image, observer, session)) and every rated image has a part in the split; every
// violation is a FormatError naming the file and line.
#pragma once

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/error.hpp"

namespace vitiq::data {

/// @brief A per-observer study: its ratings and its content split.
struct Study {
  std::filesystem::path dir;    ///< the folder it was read from (images are dir / "images" / name)
  std::vector<Rating> ratings;  ///< every vote, in file order
  ContentSplit split;           ///< image -> source and part

  /// @brief Part of a rated image (read_study() guarantees one for every rated image).
  Part part_of(std::string_view image) const {
    const auto p = split.part(image);
    if (!p) throw FormatError((dir / "split.csv").string() + ": no row for image '" + std::string(image) + "'");
    return *p;
  }
  /// @brief The distinct observer ids, in observer_less() order.
  std::vector<std::string> observers() const { return observers_of(ratings); }
  /// @brief The rated images of one part, sorted by name.
  std::vector<std::string> rated_images(Part p) const {
    std::set<std::string> names;
    for (const auto& r : ratings)
      if (split.part(r.image) == p) names.insert(r.image);
    return {names.begin(), names.end()};
  }
  /// @brief The test stimuli: rated images of the test part, sorted by name.
  std::vector<std::string> test_images() const { return rated_images(Part::test); }
  /// @brief Path of a stimulus' image file.
  std::filesystem::path image_path(std::string_view image) const { return dir / "images" / std::string(image); }
};

/// @brief Read a study folder: `dir`/split.csv (ContentSplit::read_csv) and `dir`/ratings.csv
/// (read_long_csv with `opt`).
/// @throws IoError when a file cannot be read; FormatError "<file>:<line>: <reason>" for anything
///         the two readers refuse, a rated image without a row in split.csv, or no ratings at all.
inline Study read_study(const std::filesystem::path& dir, const ReadOptions& opt = {}, ReadReport* report = nullptr) {
  Study s;
  s.dir = dir;
  const auto rpath = dir / "ratings.csv", spath = dir / "split.csv";
  s.split = ContentSplit::read_csv(spath);
  s.ratings = read_long_csv(rpath, opt, report);
  for (const auto& r : s.ratings)
    if (!s.split.part(r.image))
      throw FormatError(r.origin + ": image '" + r.image + "' has no row in " + spath.string());
  if (s.ratings.empty()) throw FormatError(rpath.string() + ": no ratings");
  return s;
}

}  // namespace vitiq::data
