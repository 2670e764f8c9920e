// vitiq/data/import.hpp -- turn a researcher's own per-observer study into the study folder every
// vitiq program reads (images/, ratings.csv, split.csv; see vitiq/data/study.hpp), with a report
// (import_report.json) of what was found, drawn, dropped and doubted.
//
// Three input layouts, told apart by detect_layout():
//   original  the published layout of this line of research: Obs_iterative/Obs<N>/Obs<N>_<k>.csv
//             (training session k; Obs<N>_4_selfacc.csv is session 4, the repeat of session 1),
//             Test/Obs<N>.csv (the common test set) and Dataset/Obs<N>.csv (all training votes of
//             observer N, checked against the session files); Obs0 files are not an observer
//   sessions  vitiq's own per-session files, obs<id>_session<n>.csv (read_original_dir)
//   long      one long-format ratings.csv (read_long_csv)
//
// Invariants: import_study() either writes the complete output folder or nothing (the folder is
// built as a temporary sibling and renamed into place; an existing non-empty folder is refused);
// every error names the file and line at fault; nothing is dropped without an entry in the
// report; the split never puts one source name in two parts (ContentSplit), and a common test set
// found in the input is the test split.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#include "vitiq/data/csv.hpp"
#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::data {

/// @brief How the ratings to import are laid out.
enum class ImportLayout { automatic, original, sessions, long_table };

/// @brief "auto", "original", "sessions" or "long".
constexpr std::string_view to_string(ImportLayout l) {
  return l == ImportLayout::automatic ? "auto"
         : l == ImportLayout::original ? "original"
         : l == ImportLayout::sessions ? "sessions"
                                       : "long";
}

/// @brief Parse "auto", "original", "sessions" or "long"; nullopt otherwise.
inline std::optional<ImportLayout> parse_import_layout(std::string_view s) {
  for (auto l : {ImportLayout::automatic, ImportLayout::original, ImportLayout::sessions, ImportLayout::long_table})
    if (s == to_string(l)) return l;
  return std::nullopt;
}

/// @brief What to do with the training stimuli of a source that also has stimuli in the common
/// test set.
enum class OverlapPolicy {
  drop,  ///< keep them (and their votes) out of the output, listed in the report
  keep,  ///< keep them in training; split.csv names their source `<source>#overlap` (see below)
};

/// @brief Suffix given in split.csv to the source of kept training stimuli of an overlap source
/// (OverlapPolicy::keep): the test stimuli keep the plain source name, so no source name is in
/// two parts and ContentSplit's invariant holds, while the mark says where they came from.
inline constexpr std::string_view overlap_source_suffix = "#overlap";

/// @brief A layout and why it was chosen.
struct LayoutGuess {
  ImportLayout layout = ImportLayout::automatic;
  std::string why;  ///< e.g. "found Obs_iterative/, Test/, Dataset/ in DIR"
};

/// @brief Tell the layout of `ratings` (a folder or a file): a file is a long table; a folder with
/// an Obs_iterative, Test or Dataset subfolder (any case) is the original layout; a folder with a
/// ratings.csv is a long table; a folder with files named like obs<id>_session<n>.csv holds
/// vitiq's session files.
/// @throws IoError when `ratings` does not exist; FormatError when the folder matches none.
inline LayoutGuess detect_layout(const std::filesystem::path& ratings) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(ratings, ec)) throw IoError(ratings.string() + ": no such file or folder");
  if (!fs::is_directory(ratings, ec)) return {ImportLayout::long_table, "a single file: a long-format table"};
  std::vector<std::string> found;
  bool has_ratings_csv = false, has_session_files = false;
  for (const auto& e : fs::directory_iterator(ratings, ec)) {
    std::string name = e.path().filename().string(), low = name;
    for (auto& c : low) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (e.is_directory() && (low == "obs_iterative" || low == "test" || low == "dataset")) found.push_back(name + "/");
    if (e.is_regular_file() && name == "ratings.csv") has_ratings_csv = true;
    if (e.is_regular_file() && e.path().extension() == ".csv" && parse_observer_session(name)) has_session_files = true;
  }
  if (ec) throw IoError(ratings.string() + ": cannot list (" + ec.message() + ")");
  std::sort(found.begin(), found.end());
  if (!found.empty()) {
    std::string list;
    for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
    return {ImportLayout::original, "found " + list + " in " + ratings.string()};
  }
  if (has_ratings_csv) return {ImportLayout::long_table, "found ratings.csv in " + ratings.string()};
  if (has_session_files) return {ImportLayout::sessions, "found files named obs<id>_session<n>.csv in " + ratings.string()};
  throw FormatError(ratings.string() +
                    ": cannot tell the layout (no Obs_iterative/, Test/ or Dataset/ folder, no ratings.csv, no "
                    "obs<id>_session<n>.csv file); see --layout");
}

/// @brief What import_study() reads and writes.
struct ImportOptions {
  std::filesystem::path ratings;  ///< folder (or, for the long layout, file) of the ratings
  std::filesystem::path images;   ///< folder of the stimuli, named as in the tables
  std::filesystem::path out;      ///< study folder to create (absent or empty)
  ImportLayout layout = ImportLayout::automatic;
  SplitFractions fractions;       ///< train/val/test shares of the sources (as vitiq-make-dataset)
  std::uint64_t seed = 1;         ///< the same seed gives the same split
  OverlapPolicy overlap = OverlapPolicy::drop;
  bool skip_invalid = false;      ///< invalid rows become warnings (see ReadOptions)
  bool copy_images = false;       ///< copy the images into out/images (default: symbolic links)
};

/// @brief Repeated votes of one observer: stimuli rated in two or more training sessions.
struct RepeatStats {
  std::size_t stimuli = 0;  ///< stimuli rated more than once
  std::size_t pairs = 0;    ///< pairs of votes on the same stimulus
  std::size_t agree = 0;    ///< of which with the same vote
  double abs_diff = 0;      ///< summed |vote difference| over the pairs
};

/// @brief What an import found and did; written as import_report.json.
struct ImportReport {
  ImportLayout layout = ImportLayout::automatic;
  std::string layout_why;                  ///< why this layout
  std::filesystem::path ratings, images, out;
  std::vector<std::string> observers;      ///< in observer_less order
  std::map<std::string, std::map<int, std::size_t>> sessions;  ///< observer -> session -> votes written
  std::size_t votes = 0;                   ///< votes written to ratings.csv
  std::size_t stimuli = 0;                 ///< images written (split.csv rows)
  std::size_t sources = 0;                 ///< distinct source names in split.csv
  std::size_t train_stimuli = 0, val_stimuli = 0, test_stimuli = 0;
  int test_session = 0;                    ///< session number of the common test set; 0: none
  std::string test_how;                    ///< where the test split came from
  std::size_t test_set_size = 0;           ///< stimuli of the common test set (0: drawn)
  std::map<std::string, RepeatStats> repeats;  ///< observer -> repeated training votes
  OverlapPolicy overlap = OverlapPolicy::drop;
  std::vector<std::string> overlap_sources;     ///< sources with stimuli in test and in training
  std::vector<std::string> overlap_stimuli;     ///< their training stimuli (dropped or kept, per overlap)
  std::size_t overlap_votes = 0;                ///< votes on those stimuli (and training votes on test stimuli)
  std::vector<std::string> notes;          ///< decisions taken (test session number, overlap handling, ...)
  std::vector<std::string> warnings;       ///< doubts that did not stop the import
  std::vector<std::string> skipped_rows;   ///< "<file>:<line>: <reason> (row skipped)"
  std::vector<std::string> skipped_files;  ///< "<file>: <why>"

  /// @brief The report as JSON (what import_report.json holds).
  json::Value to_json() const {
    using json::Value;
    auto num = [](double d) { return Value::make_number(d); };
    auto str = [](const std::string& s) { return Value::make_string(s); };
    auto strs = [&](const std::vector<std::string>& v) {
      Value a = Value::make_array();
      for (const auto& s : v) a.push_back(str(s));
      return a;
    };
    Value j = Value::make_object();
    j.set("layout", str(std::string(to_string(layout))));
    j.set("layout_why", str(layout_why));
    j.set("ratings", str(ratings.string()));
    j.set("images", str(images.string()));
    j.set("out", str(out.string()));
    j.set("observers", strs(observers));
    Value per = Value::make_object();
    for (const auto& [o, ss] : sessions) {
      Value s = Value::make_object();
      for (const auto& [k, n] : ss) s.set(std::to_string(k), num(double(n)));
      per.set(o, std::move(s));
    }
    j.set("sessions", std::move(per));
    j.set("votes", num(double(votes)));
    j.set("stimuli", num(double(stimuli)));
    j.set("sources", num(double(sources)));
    Value parts = Value::make_object();
    parts.set("train", num(double(train_stimuli)));
    parts.set("val", num(double(val_stimuli)));
    parts.set("test", num(double(test_stimuli)));
    j.set("split_stimuli", std::move(parts));
    j.set("test_session", test_session > 0 ? num(test_session) : Value());
    j.set("test_how", str(test_how));
    j.set("test_set_size", num(double(test_set_size)));
    Value rep = Value::make_object();
    for (const auto& [o, r] : repeats) {
      Value x = Value::make_object();
      x.set("stimuli", num(double(r.stimuli)));
      x.set("pairs", num(double(r.pairs)));
      x.set("agree", num(double(r.agree)));
      x.set("self_agreement", r.pairs ? num(double(r.agree) / double(r.pairs)) : Value());
      x.set("mean_abs_diff", r.pairs ? num(r.abs_diff / double(r.pairs)) : Value());
      rep.set(o, std::move(x));
    }
    j.set("repeats", std::move(rep));
    j.set("overlap", str(overlap == OverlapPolicy::drop ? "drop" : "keep"));
    j.set("overlap_sources", strs(overlap_sources));
    j.set("overlap_stimuli", strs(overlap_stimuli));
    j.set("overlap_votes", num(double(overlap_votes)));
    j.set("notes", strs(notes));
    j.set("warnings", strs(warnings));
    j.set("skipped_rows", strs(skipped_rows));
    j.set("skipped_files", strs(skipped_files));
    return j;
  }

  /// @brief A few lines for people: layout, counts, split, repeats, overlap, warnings.
  std::string summary() const {
    std::string s = "layout: " + std::string(to_string(layout)) + " (" + layout_why + ")\n";
    std::string obs;
    for (const auto& o : observers) obs += (obs.empty() ? "" : ", ") + o;
    s += "observers: " + std::to_string(observers.size()) + " (" + obs + ")\n";
    for (const auto& [o, ss] : sessions) {
      s += "  observer " + o + ":";
      for (const auto& [k, n] : ss) s += " session " + std::to_string(k) + " " + std::to_string(n) + ",";
      s.pop_back();
      const auto r = repeats.find(o);
      if (r != repeats.end() && r->second.pairs)
        s += "; repeats " + std::to_string(r->second.pairs) + " pairs, " +
             std::to_string(int(100.0 * double(r->second.agree) / double(r->second.pairs) + 0.5)) + "% identical";
      s += "\n";
    }
    s += "votes: " + std::to_string(votes) + ", stimuli: " + std::to_string(stimuli) + ", sources: " +
         std::to_string(sources) + "\n";
    s += "split (stimuli): train " + std::to_string(train_stimuli) + ", val " + std::to_string(val_stimuli) +
         ", test " + std::to_string(test_stimuli) + "; test: " + test_how + "\n";
    if (!overlap_sources.empty()) {
      std::string list;
      for (const auto& o : overlap_sources) list += (list.empty() ? "" : ", ") + o;
      s += "overlap sources (in test and training): " + list + "; " + std::to_string(overlap_stimuli.size()) +
           " training stimuli, " + std::to_string(overlap_votes) + " votes " +
           (overlap == OverlapPolicy::drop ? "dropped" : "kept as train (source marked #overlap)") + "\n";
    }
    for (const auto& n : notes) s += "note: " + n + "\n";
    const std::size_t shown = 10;
    for (std::size_t i = 0; i < warnings.size() && i < shown; ++i) s += "warning: " + warnings[i] + "\n";
    if (warnings.size() > shown)
      s += "warning: ... and " + std::to_string(warnings.size() - shown) + " more (import_report.json)\n";
    for (std::size_t i = 0; i < skipped_rows.size() && i < shown; ++i) s += "skipped: " + skipped_rows[i] + "\n";
    if (skipped_rows.size() > shown)
      s += "skipped: ... and " + std::to_string(skipped_rows.size() - shown) + " more rows (import_report.json)\n";
    for (const auto& f : skipped_files) s += "skipped file: " + f + "\n";
    return s;
  }
};

/// @brief An import worked out in memory: the ratings and split to write, and the report.
struct ImportPlan {
  std::vector<Rating> ratings;  ///< what ratings.csv will hold, in that order
  ContentSplit split;           ///< what split.csv will hold (one row per image to link)
  ImportReport report;
};

namespace detail {

inline std::string lower_ascii(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Subfolder of `dir` whose name is `name` in any case; empty when none.
inline std::filesystem::path find_subdir(const std::filesystem::path& dir, std::string_view name) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_directory() && lower_ascii(e.path().filename().string()) == name) return e.path();
  return {};
}

/// Regular .csv files below `dir` (recursively), sorted.
inline std::vector<std::filesystem::path> csv_files(const std::filesystem::path& dir, bool recursive) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  if (recursive) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec))
      if (e.is_regular_file() && lower_ascii(e.path().extension().string()) == ".csv") out.push_back(e.path());
  } else {
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.is_regular_file() && lower_ascii(e.path().extension().string()) == ".csv") out.push_back(e.path());
  }
  if (ec) throw IoError(dir.string() + ": cannot list (" + ec.message() + ")");
  std::sort(out.begin(), out.end());
  return out;
}

/// Move ReadReport warnings into the import report: skipped rows apart from other warnings.
inline void take_warnings(ReadReport& rr, ImportReport& rep) {
  for (auto& w : rr.warnings) {
    constexpr std::string_view tag = "(row skipped)";
    if (w.size() >= tag.size() && w.compare(w.size() - tag.size(), tag.size(), tag) == 0)
      rep.skipped_rows.push_back(std::move(w));
    else
      rep.warnings.push_back(std::move(w));
  }
  rr.warnings.clear();
}

/// Read Dataset/Obs<N>.csv: rows validated like a session file's (vote, image) but the same
/// image may appear more than once (a repeat stimulus). Ratings get session 0 here.
inline std::vector<Rating> read_dataset_csv(const std::filesystem::path& path, const std::string& observer,
                                            const ReadOptions& opt, ReadReport& rr) {
  RatingChecker checker(opt, &rr);
  const CsvTable t = read_csv_table(path);
  const std::size_t icol = t.require("Image Name"), vcol = t.require("Vote");
  const auto dcol = t.find("Duration"), tcol = t.find("Timestamp");
  std::vector<Rating> out;
  for (const auto& row : t.rows) {
    ++rr.rows;
    const std::string where = t.where(row);
    Rating r;
    r.observer = observer;
    // A distinct session per row for the checker, so that a repeated image is no duplicate here;
    // reset below (the session is decided by the caller).
    r.session = int(row.line);
    r.image = std::string(trim(row.fields[icol]));
    r.origin = where.substr(0, where.size() - 2);
    if (r.image.empty()) { checker.invalid(where, "empty image name"); continue; }
    std::string why;
    if (!read_vote_and_extras(row, vcol, dcol, tcol, r, why)) { checker.invalid(where, why); continue; }
    if (!checker.accept(r, where)) continue;
    r.session = 0;
    out.push_back(std::move(r));
  }
  rr.kept += out.size();
  return out;
}

/// Check that a Dataset file and the session files of one observer hold the same training votes:
/// every Dataset row is matched to a distinct session vote on the same image with the same vote,
/// and every image of the session files appears in the Dataset file.
inline void check_dataset_agrees(const std::vector<Rating>& dataset, const std::vector<Rating>& session_votes,
                                 const std::filesystem::path& dataset_path, const std::string& observer,
                                 RatingChecker& checker) {
  struct Slot { const Rating* r; bool used; };
  std::map<std::string, std::vector<Slot>> by_image;
  for (const auto& r : session_votes) by_image[r.image].push_back({&r, false});
  std::set<std::string> seen;
  for (const auto& d : dataset) {
    const std::string where = d.origin + ": ";
    auto it = by_image.find(d.image);
    if (it == by_image.end()) {
      checker.invalid(where, "'" + d.image + "' is in no session file of observer " + observer);
      continue;
    }
    Slot* match = nullptr;
    for (auto& s : it->second)
      if (!s.used && s.r->vote == d.vote) { match = &s; break; }
    if (!match) {
      std::string theirs;
      for (const auto& s : it->second)
        theirs += (theirs.empty() ? "" : ", ") + std::to_string(s.r->vote) + " at " + s.r->origin;
      checker.invalid(where, "vote " + std::to_string(d.vote) + " for '" + d.image +
                                 "' disagrees with the session files of observer " + observer + " (" + theirs +
                                 (std::all_of(it->second.begin(), it->second.end(), [](const Slot& s) { return s.used; })
                                      ? "; all already matched by earlier rows"
                                      : "") +
                                 ")");
      continue;
    }
    match->used = true;
    seen.insert(d.image);
  }
  for (const auto& r : session_votes)
    if (!seen.count(r.image))
      checker.invalid(r.origin + ": ", "vote of '" + r.image + "' by observer " + observer + " is missing from " +
                                           dataset_path.string());
}

/// The original layout: Obs_iterative/, Test/, Dataset/ (see the file comment).
inline std::vector<Rating> read_original_layout(const std::filesystem::path& dir, const ReadOptions& opt,
                                                ImportReport& rep, int& test_session) {
  namespace fs = std::filesystem;
  static const std::regex session_re(R"(^obs([0-9A-Za-z]+)_([0-9]{1,6})(?:_([0-9A-Za-z_-]+))?\.csv$)",
                                     std::regex::icase);
  static const std::regex whole_re(R"(^obs([0-9A-Za-z]+)\.csv$)", std::regex::icase);
  const fs::path iter_dir = find_subdir(dir, "obs_iterative"), test_dir = find_subdir(dir, "test"),
                 data_dir = find_subdir(dir, "dataset");
  auto is_obs0 = [](const std::string& id) { return id.find_first_not_of('0') == std::string::npos; };

  // observer -> session -> file
  std::map<std::string, std::map<int, fs::path>> session_files;
  std::map<std::string, fs::path> test_files, dataset_files;
  std::set<std::string, decltype(&observer_less)> observers(&observer_less);
  if (!iter_dir.empty())
    for (const auto& f : csv_files(iter_dir, true)) {
      const std::string name = f.filename().string();
      std::smatch m;
      if (name.size() > 255 || !std::regex_match(name, m, session_re)) {
        rep.warnings.push_back(f.string() + ": not named Obs<N>_<k>.csv (file ignored)");
        continue;
      }
      const std::string id = m[1].str();
      if (is_obs0(id)) {
        rep.skipped_files.push_back(f.string() + ": Obs0 is not an observer (a synthetic label of the original data)");
        continue;
      }
      const int k = std::stoi(m[2].str());
      if (k < 1) throw FormatError(f.string() + ": session number " + m[2].str() + " (sessions count from 1)");
      const auto [it, fresh] = session_files[id].emplace(k, f);
      if (!fresh)
        throw FormatError(f.string() + ": a second file for observer " + id + " session " + std::to_string(k) +
                          " (the first is " + it->second.string() + ")");
      if (m[3].matched)
        rep.notes.push_back(f.string() + ": session " + std::to_string(k) + " of observer " + id + " ('" + m[3].str() +
                            "'" + (lower_ascii(m[3].str()) == "selfacc" ? ": the repeat of session 1" : "") + ")");
      observers.insert(id);
    }
  auto whole_files = [&](const fs::path& d, std::map<std::string, fs::path>& into) {
    if (d.empty()) return;
    for (const auto& f : csv_files(d, false)) {
      const std::string name = f.filename().string();
      std::smatch m;
      if (name.size() > 255 || !std::regex_match(name, m, whole_re)) {
        rep.warnings.push_back(f.string() + ": not named Obs<N>.csv (file ignored)");
        continue;
      }
      const std::string id = m[1].str();
      if (is_obs0(id)) {
        rep.skipped_files.push_back(f.string() + ": Obs0 is not an observer (a synthetic label of the original data)");
        continue;
      }
      const auto [it, fresh] = into.emplace(id, f);
      if (!fresh)
        throw FormatError(f.string() + ": a second file for observer " + id + " (the first is " + it->second.string() + ")");
      observers.insert(id);
    }
  };
  whole_files(test_dir, test_files);
  whole_files(data_dir, dataset_files);
  if (observers.empty())
    throw FormatError(dir.string() + ": no observer files (Obs_iterative/Obs<N>/Obs<N>_<k>.csv, Test/Obs<N>.csv, "
                                     "Dataset/Obs<N>.csv)");

  std::vector<Rating> training, test;
  ReadReport rr;
  int highest = 0;
  std::map<std::string, std::vector<Rating>> dataset_only;
  for (const auto& o : observers) {
    std::vector<Rating> mine;
    const auto sf = session_files.find(o);
    if (sf != session_files.end())
      for (const auto& [k, f] : sf->second) {
        auto rs = read_original_csv(f, o, k, opt, &rr);
        highest = std::max(highest, k);
        for (auto& r : rs) mine.push_back(std::move(r));
      }
    const auto df = dataset_files.find(o);
    if (df != dataset_files.end()) {
      std::vector<Rating> ds = read_dataset_csv(df->second, o, opt, rr);
      if (sf != session_files.end()) {
        RatingChecker checker(opt, &rr);
        check_dataset_agrees(ds, mine, df->second, o, checker);  // each vote counted once: the sessions'
      } else {
        // Sessions unknown: occurrence k of an image is session k (a repeat stimulus' second vote: 2).
        std::map<std::string, int> count;
        for (auto& r : ds) {
          r.session = ++count[r.image];
          highest = std::max(highest, r.session);
        }
        rep.warnings.push_back(df->second.string() + ": observer " + o +
                               " has no session files: the sessions are unknown; its votes are imported as session 1"
                               " (a stimulus rated twice: its second vote as session 2)");
        mine = std::move(ds);
      }
    }
    for (auto& r : mine) training.push_back(std::move(r));
  }
  if (!test_files.empty()) {
    test_session = highest + 1;
    rep.notes.push_back("the common test set (Test/) is imported as session " + std::to_string(test_session) +
                        ", the one after the highest training session (" + std::to_string(highest) + ")");
    for (const auto& o : observers) {
      const auto tf = test_files.find(o);
      if (tf == test_files.end()) continue;
      auto rs = read_original_csv(tf->second, o, test_session, opt, &rr);
      for (auto& r : rs) test.push_back(std::move(r));
    }
  }
  take_warnings(rr, rep);
  // Observer by observer: training sessions, then the test session.
  std::vector<Rating> all;
  all.reserve(training.size() + test.size());
  for (const auto& o : observers) {
    for (auto& r : training) if (r.observer == o) all.push_back(std::move(r));
    for (auto& r : test) if (r.observer == o) all.push_back(std::move(r));
  }
  return all;
}

/// A common test session in a sessions or long table: the highest session number, rated by
/// every observer (at least two), with the same stimuli for all, none of which the observers
/// rated in another session. 0 when there is none.
inline int find_common_test_session(const std::vector<Rating>& ratings, std::string& why) {
  std::map<std::string, std::map<int, std::set<std::string>>> by;
  int highest = 0;
  for (const auto& r : ratings) {
    by[r.observer][r.session].insert(r.image);
    highest = std::max(highest, r.session);
  }
  if (by.size() < 2) { why = "fewer than two observers"; return 0; }
  const std::set<std::string>* first = nullptr;
  for (const auto& [o, ss] : by) {
    const auto it = ss.find(highest);
    if (it == ss.end()) { why = "observer " + o + " has no session " + std::to_string(highest); return 0; }
    if (!first) first = &it->second;
    else if (it->second != *first) { why = "the observers rated different stimuli in session " + std::to_string(highest); return 0; }
    for (const auto& [k, imgs] : ss)
      if (k != highest)
        for (const auto& i : imgs)
          if (it->second.count(i)) {
            why = "observer " + o + " rated '" + i + "' of session " + std::to_string(highest) + " also in session " + std::to_string(k);
            return 0;
          }
  }
  return highest;
}

}  // namespace detail

/// @brief Read, check and split a study in memory; nothing is written.
/// @throws IoError / FormatError "<file>:<line>: <reason>" (see import_study()).
inline ImportPlan plan_import(const ImportOptions& opt) {
  namespace fs = std::filesystem;
  ImportPlan plan;
  ImportReport& rep = plan.report;
  rep.ratings = opt.ratings;
  rep.images = opt.images;
  rep.out = opt.out;
  rep.overlap = opt.overlap;
  if (opt.images.empty()) throw Error("import: no image folder given");
  {
    std::error_code ec;
    if (!fs::is_directory(opt.images, ec)) throw IoError(opt.images.string() + ": not a folder (the images)");
  }
  if (opt.layout == ImportLayout::automatic) {
    const LayoutGuess g = detect_layout(opt.ratings);
    rep.layout = g.layout;
    rep.layout_why = g.why;
  } else {
    rep.layout = opt.layout;
    rep.layout_why = "--layout " + std::string(to_string(opt.layout));
    std::error_code ec;
    if (!fs::exists(opt.ratings, ec)) throw IoError(opt.ratings.string() + ": no such file or folder");
  }
  ReadOptions ro;
  ro.skip_invalid = opt.skip_invalid;
  ro.image_dir = opt.images;
  std::vector<Rating> ratings;
  int test_session = 0;
  switch (rep.layout) {
    case ImportLayout::original:
      ratings = detail::read_original_layout(opt.ratings, ro, rep, test_session);
      if (test_session) rep.test_how = "the common test set of Test/ (session " + std::to_string(test_session) + ")";
      break;
    case ImportLayout::sessions:
    case ImportLayout::long_table: {
      ReadReport rr;
      if (rep.layout == ImportLayout::sessions) {
        ratings = read_original_dir(opt.ratings, ro, &rr);
      } else {
        std::error_code ec;
        const fs::path file = fs::is_directory(opt.ratings, ec) ? opt.ratings / "ratings.csv" : opt.ratings;
        ratings = read_long_csv(file, ro, &rr);
      }
      detail::take_warnings(rr, rep);
      std::string why;
      test_session = detail::find_common_test_session(ratings, why);
      if (test_session) {
        rep.test_how = "session " + std::to_string(test_session) +
                       ", the highest session, rated by every observer on the same stimuli and in no other session";
        rep.notes.push_back("session " + std::to_string(test_session) + " is taken as the common test set");
      } else {
        rep.notes.push_back("no common test set in the input (" + why + ")");
      }
      break;
    }
    case ImportLayout::automatic: break;
  }
  if (ratings.empty()) throw FormatError(opt.ratings.string() + ": no ratings");

  // Stimuli, sources, names without band and Q.
  std::map<std::string, std::string> source_of;  // image -> source
  for (const auto& r : ratings) {
    if (source_of.count(r.image)) continue;
    const StimulusName n = parse_stimulus_name(r.image);
    source_of[r.image] = n.source;
    if (!n.original_form)
      rep.warnings.push_back(r.origin + ": '" + r.image +
                             "' has no _I<band>_Q<q> in its name: band and Q unknown (source taken as '" + n.source +
                             "'); the Q look-up baseline will be unavailable for it");
  }

  std::map<std::string, Part> image_part;         // what split.csv will say
  std::map<std::string, std::string> split_source;  // source column of split.csv
  std::set<std::string> drop_images;              // training votes of these are dropped
  bool drop_training_votes_of_test_images = false;
  std::set<std::string> test_images;
  if (test_session) {
    std::set<std::string> training_images;
    std::map<std::string, std::set<std::string>> test_by_observer;
    for (const auto& r : ratings) {
      if (r.session == test_session) {
        test_images.insert(r.image);
        test_by_observer[r.observer].insert(r.image);
      } else {
        training_images.insert(r.image);
      }
    }
    rep.test_set_size = test_images.size();
    for (const auto& o : observers_of(ratings)) {
      const auto it = test_by_observer.find(o);
      if (it == test_by_observer.end()) {
        rep.warnings.push_back("observer " + o + " has no test votes (session " + std::to_string(test_session) + ")");
        continue;
      }
      for (const auto& i : test_images)
        if (!it->second.count(i)) rep.warnings.push_back("observer " + o + " did not rate test stimulus '" + i + "'");
    }
    std::set<std::string> test_sources;
    for (const auto& i : test_images) test_sources.insert(source_of.at(i));
    std::set<std::string> overlap;
    for (const auto& i : training_images)
      if (test_sources.count(source_of.at(i))) overlap.insert(source_of.at(i));
    rep.overlap_sources.assign(overlap.begin(), overlap.end());
    for (const auto& i : training_images)
      if (overlap.count(source_of.at(i)) && !test_images.count(i)) rep.overlap_stimuli.push_back(i);
    for (const auto& r : ratings)
      if (r.session != test_session && overlap.count(source_of.at(r.image))) ++rep.overlap_votes;
    for (const auto& i : training_images)
      if (test_images.count(i))
        rep.warnings.push_back("'" + i + "' is in the common test set and in a training session");
    // Test: the common test set. Train/val: the sources without test stimuli, by the shares.
    for (const auto& i : test_images) {
      image_part[i] = Part::test;
      split_source[i] = source_of.at(i);
    }
    std::map<std::string, double> weight;
    for (const auto& i : training_images)
      if (!test_sources.count(source_of.at(i))) weight[source_of.at(i)] += 1;
    const std::vector<std::pair<std::string, double>> rest(weight.begin(), weight.end());
    std::map<std::string, Part> parts;
    if (!rest.empty()) {
      if (opt.fractions.train + opt.fractions.val > 0) {
        parts = split_sources(rest, {opt.fractions.train, opt.fractions.val, 0.0}, opt.seed);
      } else {
        for (const auto& [s, w] : rest) parts[s] = Part::train;
        rep.warnings.push_back("the train and val shares are both 0: every non-test source is put in train");
      }
    }
    for (const auto& i : training_images) {
      const std::string& s = source_of.at(i);
      if (test_images.count(i)) continue;
      if (overlap.count(s)) {
        if (opt.overlap == OverlapPolicy::drop) {
          drop_images.insert(i);
        } else {
          image_part[i] = Part::train;
          split_source[i] = s + std::string(overlap_source_suffix);
        }
        continue;
      }
      image_part[i] = parts.at(s);
      split_source[i] = s;
    }
    drop_training_votes_of_test_images = opt.overlap == OverlapPolicy::drop;
    if (!overlap.empty()) {
      std::string list;
      for (const auto& s : overlap) list += (list.empty() ? "" : ", ") + s;
      if (opt.overlap == OverlapPolicy::drop)
        rep.notes.push_back("--overlap drop: the " + std::to_string(rep.overlap_stimuli.size()) +
                            " training stimuli of the sources also in the test set (" + list + ") and " +
                            std::to_string(rep.overlap_votes) + " training votes on them are left out");
      else
        rep.notes.push_back("--overlap keep: the training stimuli of the sources also in the test set (" + list +
                            ") stay in train; split.csv names their source '<source>" +
                            std::string(overlap_source_suffix) + "' so that no source name is in two parts");
    }
    rep.test_how = rep.test_how.empty() ? "the common test set" : rep.test_how;
    rep.test_session = test_session;
  } else {
    std::vector<std::pair<std::string, std::string>> images(source_of.begin(), source_of.end());
    const ContentSplit drawn = ContentSplit::make(images, opt.fractions, opt.seed);
    for (const auto& e : drawn.entries()) {
      image_part[e.image] = e.part;
      split_source[e.image] = e.source;
    }
    rep.test_how = "drawn by source (share " + json::number_to_string(opt.fractions.test) + ", seed " +
                   std::to_string(opt.seed) + ")";
  }

  // The output tables.
  for (auto& r : ratings) {
    const bool training = r.session != test_session || !test_session;
    if (training && (drop_images.count(r.image) ||
                     (drop_training_votes_of_test_images && test_images.count(r.image))))
      continue;
    r.origin.clear();
    plan.ratings.push_back(std::move(r));
  }
  std::vector<SplitEntry> entries;
  for (const auto& [img, part] : image_part) entries.push_back({img, split_source.at(img), part});
  plan.split = ContentSplit(std::move(entries));

  // Counts.
  rep.observers = observers_of(plan.ratings);
  for (const auto& r : plan.ratings) ++rep.sessions[r.observer][r.session];
  rep.votes = plan.ratings.size();
  rep.stimuli = plan.split.entries().size();
  rep.sources = plan.split.sources().size();
  for (const auto& e : plan.split.entries())
    (e.part == Part::train ? rep.train_stimuli : e.part == Part::val ? rep.val_stimuli : rep.test_stimuli) += 1;
  std::map<std::string, std::map<std::string, std::vector<int>>> votes;  // observer -> image -> training votes
  for (const auto& r : plan.ratings)
    if (!test_session || r.session != test_session) votes[r.observer][r.image].push_back(r.vote);
  for (const auto& [o, imgs] : votes) {
    RepeatStats s;
    for (const auto& [i, v] : imgs) {
      if (v.size() < 2) continue;
      ++s.stimuli;
      for (std::size_t a = 0; a < v.size(); ++a)
        for (std::size_t b = a + 1; b < v.size(); ++b) {
          ++s.pairs;
          s.agree += v[a] == v[b];
          s.abs_diff += std::abs(v[a] - v[b]);
        }
    }
    rep.repeats[o] = s;
  }
  return plan;
}

/// @brief Check that `out` may receive an import: absent, or an empty folder (not a link).
/// @return `out` made absolute and normal (no trailing slash)
/// @throws IoError naming `out` otherwise.
inline std::filesystem::path check_import_out(const std::filesystem::path& out_arg) {
  namespace fs = std::filesystem;
  if (out_arg.empty()) throw IoError("import: no output folder given");
  fs::path out = fs::absolute(out_arg).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  std::error_code ec;
  const auto st = fs::symlink_status(out, ec);
  if (fs::exists(st)) {
    if (fs::is_symlink(st) || !fs::is_directory(st))
      throw IoError(out.string() + ": exists and is not a folder (vitiq-import never overwrites)");
    if (!fs::is_empty(out, ec))
      throw IoError(out.string() + ": exists and is not empty (vitiq-import never overwrites a folder)");
  }
  return out;
}

/// @brief Write a planned import: `out` (absent or an empty folder) receives images/ (symbolic
/// links to the input images, or copies), ratings.csv, split.csv and import_report.json. The
/// folder is built as a hidden temporary sibling and renamed into place at the end; on any error
/// the sibling is removed and `out` is left as it was.
/// @throws IoError naming the path at fault (including an existing non-empty `out`).
inline void write_import(const ImportPlan& plan, const ImportOptions& opt) {
  namespace fs = std::filesystem;
  const fs::path out = check_import_out(opt.out);
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec) throw IoError(out.parent_path().string() + ": cannot create (" + ec.message() + ")");
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".import." + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  try {
    fs::create_directories(tmp / "images", ec);
    if (ec) throw IoError(tmp.string() + ": cannot create (" + ec.message() + ")");
    const fs::path images = fs::absolute(opt.images);
    for (const auto& e : plan.split.entries()) {
      const fs::path src = images / e.image, dst = tmp / "images" / e.image;
      if (dst.has_parent_path()) fs::create_directories(dst.parent_path(), ec);
      if (opt.copy_images) fs::copy_file(src, dst, ec);
      else fs::create_symlink(src, dst, ec);
      if (ec)
        throw IoError(src.string() + ": cannot " + (opt.copy_images ? "copy" : "link") + " into " +
                      (out / "images").string() + " (" + ec.message() + ")");
    }
    write_long_csv(tmp / "ratings.csv", plan.ratings);
    plan.split.write_csv(tmp / "split.csv");
    ImportReport rep = plan.report;
    rep.out = out;
    io::atomic_write(tmp / "import_report.json", rep.to_json().dump() + "\n");
    // rename(2) replaces an empty folder and refuses a non-empty one (filled meanwhile).
    if (::rename(tmp.c_str(), out.c_str()) != 0) {
      const std::error_code rc(errno, std::generic_category());
      throw IoError(out.string() + ": cannot move the imported study into place (" + rc.message() + ")");
    }
  } catch (...) {
    std::error_code ignore;
    fs::remove_all(tmp, ignore);
    throw;
  }
}

/// @brief Import a study: plan_import() then write_import().
///
/// Errors, each naming file and line ("<file>:<line>: <reason>"): a missing image, a vote outside
/// 1..5 or not an integer, the same stimulus twice in one session, broken CSV quoting or a wrong
/// field count, a Dataset/ row that disagrees with the observer's session files (or a session vote
/// missing from Dataset/). With skip_invalid the row errors become ImportReport::skipped_rows.
/// Warnings (ImportReport::warnings): a name without band and Q, an observer without test votes,
/// a test stimulus some observer did not rate, a stimulus in the test set and in training.
/// @return the report (also written as out/import_report.json)
/// @throws IoError / FormatError; on any error nothing is written.
inline ImportReport import_study(const ImportOptions& opt) {
  check_import_out(opt.out);  // before the reading, which may take a while
  const ImportPlan plan = plan_import(opt);
  write_import(plan, opt);
  ImportReport rep = plan.report;
  rep.out = opt.out;
  return rep;
}

}  // namespace vitiq::data
