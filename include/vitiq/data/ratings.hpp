// vitiq/data/ratings.hpp -- rating tables of a per-observer study: the original project's CSV
// (one file per observer and session, `Image Name,Vote,Duration,Timestamp`) and the long format
// (`image,observer,session,vote[,...]`, a whole study in one file), stimulus file names of the
// original form `<id><source name>_I<band>_Q<q>.jpeg`, and per-observer views.
//
// Invariants: a rating read from a file was validated (vote in 1..5, every required column
// present, no second rating of the same (image, observer, session), the image present when an
// image folder is given); a row that fails is either an error naming file and line
// ("ratings.csv:17: vote 7 outside 1..5") or, when the caller asks for it, skipped with a warning
// of the same text in the report. Nothing is dropped without a word.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vitiq/data/csv.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"

namespace vitiq::data {

/// @brief Number of ACR categories: votes are 1 (bad) .. 5 (excellent).
inline constexpr int kCategories = 5;

// ---------------------------------------------------------------------------------------------
// Quality bands and stimulus names

/// @brief One JPEG quality band of the original study: quality factors q_min..q_max.
struct QualityBand {
  int band;
  int q_min, q_max;
};

/// @brief The five bands (DATA.md: I1 = Q 2-10, I2 = 11-18, I3 = 19-25, I4 = 26-50, I5 = 50-100;
/// Q = 50 is listed in both I4 and I5, vitiq puts it in I4 and generates I5 from 51).
inline constexpr std::array<QualityBand, 5> quality_bands = {
    {{1, 2, 10}, {2, 11, 18}, {3, 19, 25}, {4, 26, 50}, {5, 51, 100}}};

/// @brief Band 1..5 of a JPEG quality factor (Q = 1 counts as I1); 0 outside 1..100.
inline int band_of_q(int q) {
  if (q < 1 || q > 100) return 0;
  for (const auto& b : quality_bands)
    if (q <= b.q_max) return b.band;
  return 0;
}

/// @brief The parts of a stimulus file name of the original form
/// `<id><source name>_I<band>_Q<q>.jpeg` (vitiq's regional stimuli add `_R<q of the region>`).
struct StimulusName {
  bool original_form = false;  ///< the name matched the pattern
  std::string id;              ///< the leading digits (may be empty)
  std::string source;          ///< the source photo's name (what follows the id)
  int band = 0;                ///< 1..5; 0 when the name carries none
  int q = 0;                   ///< JPEG quality factor; 0 when the name carries none
  int region_q = 0;            ///< quality of the harder-compressed region; 0 when none
};

/// @brief Parse band and Q out of a file name (a path is reduced to its file name).
/// `00012astronaut_I3_Q22.jpeg` gives {true, "00012", "astronaut", 3, 22, 0}; a name without
/// `_I<band>_Q<q>` gives original_form = false, band = q = 0 and source = the stem.
inline StimulusName parse_stimulus_name(std::string_view name) {
  StimulusName out;
  std::string stem = std::filesystem::path(std::string(name)).filename().string();
  const auto dot = stem.rfind('.');
  if (dot != std::string::npos && dot > 0) stem.resize(dot);
  // std::regex matches recursively, one stack frame per character: a name of some 10,000
  // characters (a hostile CSV field) would overflow the stack. No file name is longer than 255
  // bytes (NAME_MAX), so longer text is not a stimulus name of the original form.
  if (stem.size() > 1024) {
    out.source = std::move(stem);
    return out;
  }
  static const std::regex pattern(R"(^(.*)_I([1-9])_Q([0-9]{1,3})(?:_R([0-9]{1,3}))?$)");
  std::smatch m;
  if (!std::regex_match(stem, m, pattern)) {
    out.source = stem;
    return out;
  }
  const std::string prefix = m[1].str();
  std::size_t digits = 0;
  while (digits < prefix.size() && prefix[digits] >= '0' && prefix[digits] <= '9') ++digits;
  out.original_form = true;
  out.id = prefix.substr(0, digits);
  out.source = prefix.substr(digits);
  out.band = std::stoi(m[2].str());
  out.q = std::stoi(m[3].str());
  out.region_q = m[4].matched ? std::stoi(m[4].str()) : 0;
  return out;
}

/// @brief The original-form name `<id><source>_I<band>_Q<q><ext>` (ext with its dot), or with
/// `_R<region_q>` before the extension when region_q > 0.
inline std::string stimulus_file_name(std::string_view id, std::string_view source, int band, int q,
                                      std::string_view ext = ".jpeg", int region_q = 0) {
  std::string s = std::string(id) + std::string(source) + "_I" + std::to_string(band) + "_Q" + std::to_string(q);
  if (region_q > 0) s += "_R" + std::to_string(region_q);
  return s + std::string(ext);
}

// ---------------------------------------------------------------------------------------------
// Ratings

/// @brief One vote of one observer on one stimulus in one session.
struct Rating {
  std::string image;     ///< stimulus file name, relative to the study's image folder
  std::string observer;  ///< observer id ("1", "obsA", ...)
  int session = 0;       ///< session number (>= 0)
  int vote = 0;          ///< 1..5
  double duration = std::numeric_limits<double>::quiet_NaN();  ///< seconds; NaN when unknown
  std::string timestamp;  ///< e.g. "20-Jan-2023 11:47:37"; empty when unknown
  std::string origin;     ///< where it was read, "file.csv:12"; empty for ratings made in memory
};

/// @brief How strictly tables are read.
struct ReadOptions {
  /// false: the first invalid row throws FormatError "<file>:<line>: <reason>";
  /// true: invalid rows are skipped and each reason goes to ReadReport::warnings.
  bool skip_invalid = false;
  /// When not empty, every image must exist in this folder (otherwise: an invalid row).
  std::filesystem::path image_dir;
};

/// @brief What a read did: rows seen, rows kept, and a warning per skipped row.
struct ReadReport {
  std::size_t rows = 0;                ///< data rows seen
  std::size_t kept = 0;                ///< rows returned
  std::vector<std::string> warnings;   ///< "<file>:<line>: <reason> (row skipped)"
};

namespace detail {

/// Validation shared by both readers: records errors or warnings, remembers first occurrences.
class RatingChecker {
 public:
  RatingChecker(const ReadOptions& opt, ReadReport* report) : opt_(opt), report_(report) {}

  /// Report `what` at `where` ("file:line: "); throws unless skipping.
  void invalid(const std::string& where, const std::string& what) {
    if (!opt_.skip_invalid) throw FormatError(where + what);
    if (report_) report_->warnings.push_back(where + what + " (row skipped)");
  }

  /// Check a rating fully parsed from `where`; return whether it is kept.
  bool accept(const Rating& r, const std::string& where) {
    if (r.vote < 1 || r.vote > kCategories) {
      invalid(where, "vote " + std::to_string(r.vote) + " outside 1.." + std::to_string(kCategories));
      return false;
    }
    if (!opt_.image_dir.empty() && !image_exists(r.image)) {
      invalid(where, "image '" + r.image + "' not found in " + opt_.image_dir.string());
      return false;
    }
    const std::string key = r.image + '\x1f' + r.observer + '\x1f' + std::to_string(r.session);
    const auto [it, fresh] = seen_.emplace(key, r.origin);
    if (!fresh) {
      invalid(where, "duplicate rating of '" + r.image + "' by observer " + r.observer + " in session " +
                         std::to_string(r.session) + " (first at " + it->second + ")");
      return false;
    }
    return true;
  }

 private:
  bool image_exists(const std::string& image) {
    const auto it = exists_.find(image);
    if (it != exists_.end()) return it->second;
    std::error_code ec;
    const bool e = std::filesystem::is_regular_file(opt_.image_dir / image, ec);
    exists_.emplace(image, e);
    return e;
  }
  const ReadOptions& opt_;
  ReadReport* report_;
  std::unordered_map<std::string, std::string> seen_;  // (image, observer, session) -> origin
  std::unordered_map<std::string, bool> exists_;
};

inline std::string format_duration(double d) {
  if (!std::isfinite(d)) return {};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", d);
  return buf;
}

/// Read the vote and the optional duration/timestamp columns of a row into r; false (with a message)
/// on a vote that is not an integer or a bad duration. Votes are clamped to +-1e6 here; the
/// RatingChecker decides whether they are in range.
inline bool read_vote_and_extras(const CsvRecord& row, std::size_t vcol, std::optional<std::size_t> dcol,
                                 std::optional<std::size_t> tcol, Rating& r, std::string& why) {
  const auto v = parse_int(row.fields[vcol]);
  if (!v) {
    why = "vote '" + std::string(trim(row.fields[vcol])) + "' is not an integer";
    return false;
  }
  r.vote = static_cast<int>(std::clamp<long long>(*v, -1000000, 1000000));
  if (dcol) {
    const std::string_view s = trim(row.fields[*dcol]);
    if (!s.empty()) {
      const auto d = parse_double(s);
      if (!d || *d < 0) {
        why = "duration '" + std::string(s) + "' is not a non-negative number";
        return false;
      }
      r.duration = *d;
    }
  }
  if (tcol) r.timestamp = std::string(trim(row.fields[*tcol]));
  return true;
}

}  // namespace detail

/// @brief Read one file of the original project: one observer, one session, columns
/// `Image Name,Vote,Duration,Timestamp` (any order, case-insensitive; Duration and Timestamp may
/// be absent).
/// @param path      the CSV file
/// @param observer  observer id given to every rating
/// @param session   session number given to every rating
/// @param opt       validation (see ReadOptions)
/// @param report    optional: counts and warnings
/// @return the valid ratings in file order
/// @throws IoError when the file cannot be read; FormatError "<file>:<line>: <reason>" for a
///         missing column, a bad field count or quoting, and (unless skipping) a vote that is not
///         an integer in 1..5, an empty image name, a bad duration, a duplicate, a missing image.
inline std::vector<Rating> read_original_csv(const std::filesystem::path& path, std::string_view observer,
                                             int session, const ReadOptions& opt = {},
                                             ReadReport* report = nullptr) {
  detail::RatingChecker checker(opt, report);
  const CsvTable t = read_csv_table(path);
  const std::size_t icol = t.require("Image Name"), vcol = t.require("Vote");
  const auto dcol = t.find("Duration"), tcol = t.find("Timestamp");
  std::vector<Rating> out;
  for (const auto& row : t.rows) {
    if (report) ++report->rows;
    const std::string where = t.where(row);
    Rating r;
    r.observer = std::string(observer);
    r.session = session;
    r.image = std::string(trim(row.fields[icol]));
    r.origin = where.substr(0, where.size() - 2);
    if (r.image.empty()) { checker.invalid(where, "empty image name"); continue; }
    std::string why;
    if (!detail::read_vote_and_extras(row, vcol, dcol, tcol, r, why)) { checker.invalid(where, why); continue; }
    if (!checker.accept(r, where)) continue;
    out.push_back(std::move(r));
  }
  if (report) report->kept += out.size();
  return out;
}

/// @brief Observer id and session number encoded in an original-format file name:
/// `obs<id>_session<n>.csv`, also `observer`, `subject`, `sess`, `s` and `-` spelled variants,
/// any case (`Observer3-Session2.csv`, `subject_A_s4.csv`). nullopt when the name has neither,
/// when the session number does not fit an int, or when the name is longer than 1024 characters.
inline std::optional<std::pair<std::string, int>> parse_observer_session(std::string_view file_name) {
  if (file_name.size() > 1024) return std::nullopt;  // no file name is; std::regex recurses per character
  static const std::regex pattern(R"((?:^|[^A-Za-z])(?:observer|subject|obs)[_-]?([A-Za-z0-9]+?)[_-]?(?:session|sess|s)[_-]?([0-9]+)(?:[^0-9]|$))",
                                  std::regex::icase);
  const std::string name = std::filesystem::path(std::string(file_name)).filename().string();
  std::smatch m;
  if (!std::regex_search(name, m, pattern)) return std::nullopt;
  const auto session = parse_int(m[2].str());  // digits only: std::stoi would throw on overflow
  if (!session || *session > std::numeric_limits<int>::max()) return std::nullopt;
  return std::make_pair(m[1].str(), static_cast<int>(*session));
}

/// @brief Read every original-format CSV of a folder whose name parse_observer_session()
/// understands (others are listed in report->warnings), in name order; duplicates are checked
/// across all files.
/// @throws IoError / FormatError as read_original_csv; FormatError when no file matches.
inline std::vector<Rating> read_original_dir(const std::filesystem::path& dir, const ReadOptions& opt = {},
                                             ReadReport* report = nullptr) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".csv") files.push_back(e.path());
  if (ec) throw IoError(dir.string() + ": cannot list (" + ec.message() + ")");
  std::sort(files.begin(), files.end());
  // One checker for all files, so a duplicate across files is found; read each file, then check.
  detail::RatingChecker checker(opt, report);
  ReadOptions per_file = opt;
  per_file.image_dir.clear();  // checked once below, with the shared checker
  std::vector<Rating> out;
  bool any = false;
  for (const auto& f : files) {
    const auto os = parse_observer_session(f.filename().string());
    if (!os) {
      if (report) report->warnings.push_back(f.string() + ": no observer and session in the file name (file ignored)");
      continue;
    }
    any = true;
    ReadReport sub;
    std::vector<Rating> rs = read_original_csv(f, os->first, os->second, per_file, report ? &sub : nullptr);
    if (report) {
      report->rows += sub.rows;
      for (auto& w : sub.warnings) report->warnings.push_back(std::move(w));
    }
    for (auto& r : rs) {
      if (!checker.accept(r, r.origin + ": ")) continue;
      out.push_back(std::move(r));
    }
  }
  if (!any) throw FormatError(dir.string() + ": no file named like obs<id>_session<n>.csv");
  if (report) report->kept += out.size();
  return out;
}

/// @brief Read a long-format table: a header with at least `image,observer,session,vote` (any
/// order, case-insensitive, more columns allowed; `duration` and `timestamp` are read when
/// present), one rating per row.
/// @throws IoError / FormatError "<file>:<line>: <reason>" as read_original_csv, plus a session
///         that is not a non-negative integer and an empty observer id.
inline std::vector<Rating> read_long_csv(const std::filesystem::path& path, const ReadOptions& opt = {},
                                         ReadReport* report = nullptr) {
  detail::RatingChecker checker(opt, report);
  const CsvTable t = read_csv_table(path);
  const std::size_t icol = t.require("image"), ocol = t.require("observer"), scol = t.require("session"),
                    vcol = t.require("vote");
  const auto dcol = t.find("duration"), tcol = t.find("timestamp");
  std::vector<Rating> out;
  for (const auto& row : t.rows) {
    if (report) ++report->rows;
    const std::string where = t.where(row);
    Rating r;
    r.image = std::string(trim(row.fields[icol]));
    r.observer = std::string(trim(row.fields[ocol]));
    r.origin = where.substr(0, where.size() - 2);
    if (r.image.empty()) { checker.invalid(where, "empty image name"); continue; }
    if (r.observer.empty()) { checker.invalid(where, "empty observer id"); continue; }
    const auto s = parse_int(row.fields[scol]);
    if (!s || *s < 0 || *s > 1000000) {
      checker.invalid(where, "session '" + std::string(trim(row.fields[scol])) + "' is not a non-negative integer");
      continue;
    }
    r.session = static_cast<int>(*s);
    std::string why;
    if (!detail::read_vote_and_extras(row, vcol, dcol, tcol, r, why)) { checker.invalid(where, why); continue; }
    if (!checker.accept(r, where)) continue;
    out.push_back(std::move(r));
  }
  if (report) report->kept += out.size();
  return out;
}

/// @brief Write ratings in the original format (`Image Name,Vote,Duration,Timestamp`), in the
/// given order, atomically. Observer and session are not stored in this format: pass the ratings
/// of one observer and one session (write_original_files splits a study).
/// @throws IoError naming the file.
inline void write_original_csv(const std::filesystem::path& path, std::span<const Rating> ratings) {
  std::string text = "Image Name,Vote,Duration,Timestamp\n";
  for (const auto& r : ratings)
    text += csv_line({r.image, std::to_string(r.vote), detail::format_duration(r.duration), r.timestamp});
  io::atomic_write(path, text);
}

/// @brief File name of one observer's session in the original format: `obs<id>_session<n>.csv`.
inline std::string original_file_name(std::string_view observer, int session) {
  return "obs" + std::string(observer) + "_session" + std::to_string(session) + ".csv";
}

/// @brief Write a study as original-format files, one per (observer, session), named by
/// original_file_name(), in `dir` (created). Ratings keep their relative order within a file.
/// @return the files written, in (observer, session) order
inline std::vector<std::filesystem::path> write_original_files(const std::filesystem::path& dir,
                                                               std::span<const Rating> ratings) {
  std::filesystem::create_directories(dir);
  std::map<std::pair<std::string, int>, std::vector<Rating>> groups;
  for (const auto& r : ratings) groups[{r.observer, r.session}].push_back(r);
  std::vector<std::filesystem::path> files;
  for (const auto& [key, rs] : groups) {
    files.push_back(dir / original_file_name(key.first, key.second));
    write_original_csv(files.back(), rs);
  }
  return files;
}

/// @brief Write ratings in the long format `image,observer,session,vote,duration,timestamp`,
/// atomically, in the given order.
/// @throws IoError naming the file.
inline void write_long_csv(const std::filesystem::path& path, std::span<const Rating> ratings) {
  std::string text = "image,observer,session,vote,duration,timestamp\n";
  text.reserve(ratings.size() * 64);
  for (const auto& r : ratings)
    text += csv_line({r.image, r.observer, std::to_string(r.session), std::to_string(r.vote),
                      detail::format_duration(r.duration), r.timestamp});
  io::atomic_write(path, text);
}

// ---------------------------------------------------------------------------------------------
// Views

/// @brief Order of observer ids: numerically when both are integers ("2" < "10"), otherwise as
/// text, integers first.
inline bool observer_less(std::string_view a, std::string_view b) {
  const auto ia = parse_int(a), ib = parse_int(b);
  if (ia && ib) return *ia < *ib || (*ia == *ib && a < b);
  if (ia != ib && (ia || ib)) return bool(ia);
  return a < b;
}

/// @brief The distinct observer ids of a set of ratings, in observer_less order.
inline std::vector<std::string> observers_of(std::span<const Rating> ratings) {
  std::set<std::string> s;
  for (const auto& r : ratings) s.insert(r.observer);
  std::vector<std::string> out(s.begin(), s.end());
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return observer_less(a, b); });
  return out;
}

/// @brief Everything one observer rated, by session.
struct ObserverView {
  std::string observer;
  std::map<int, std::vector<Rating>> sessions;  ///< session -> its ratings, in table order

  /// @brief Distinct images the observer rated (in any session), sorted.
  std::vector<std::string> images() const {
    std::set<std::string> s;
    for (const auto& [k, rs] : sessions)
      for (const auto& r : rs) s.insert(r.image);
    return {s.begin(), s.end()};
  }
  /// @brief Number of ratings over all sessions.
  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& [k, rs] : sessions) n += rs.size();
    return n;
  }
};

/// @brief The ratings of one observer, grouped by session (empty view when none).
inline ObserverView observer_view(std::span<const Rating> ratings, std::string_view observer) {
  ObserverView v;
  v.observer = std::string(observer);
  for (const auto& r : ratings)
    if (r.observer == observer) v.sessions[r.session].push_back(r);
  return v;
}

}  // namespace vitiq::data
