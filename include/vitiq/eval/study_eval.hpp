// vitiq/eval/study_eval.hpp -- evaluate a whole per-observer study: every artificial individual
// observer (AIO) of a training run against its observer's test votes, every AIO against every
// observer, the panel of AIOs against the MOS, and the baselines each result must be read beside
// (majority vote, image-blind Q look-up, the observer's self-agreement, the Bayes ceiling of a
// simulated study). Also reads the study and the run folders from disk, and writes the report
// (summary.json and CSV files, all atomically).
//
// Nothing here runs a model: a caller turns each AIO's weights into per-stimulus vote
// probabilities (vitiq::predict_probabilities over the test stimuli) and hands them to
// evaluate_run(). So this header needs no image or model code, and a user can evaluate
// probabilities from anywhere (PyTorch, another program) the same way:
// @code
// namespace ev = vitiq::eval;
// const ev::Study study = ev::read_study("study");
// std::vector<ev::ModelPredictions> preds;   // one per AIO: images [N], probabilities [N, 5]
// ...                                        // fill from vitiq::predict_probabilities
// const ev::StudyEvaluation e = ev::evaluate_run(study, preds, ev::read_ground_truth("study/ground_truth.json"));
// ev::write_report(e, "report");
// std::fputs(ev::format_table(e).c_str(), stdout);
// @endcode
//
// Study layout (as vitiq-train reads it): images/ (file names `<id><source>_I<band>_Q<q>.jpeg`),
// ratings.csv (long format, columns image,observer,session,vote; more allowed), split.csv
// (columns image,split with split train|val|test; more allowed), optionally ground_truth.json.
// Run layout (vitiq-train --out RUNS): RUNS/aio0/ and RUNS/observer_<id>/, each with
// best.safetensors and metrics.csv (iterative mode: session_<s>/metrics.csv per session).
//
// Conventions: votes 1..K; "each vote counts": an observer who rated a test stimulus twice
// contributes both votes (the AIO's one prediction is scored against each); NaN marks an
// undefined or unavailable number (JSON null, "n/a" in the table).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/eval/metrics.hpp"
#include "vitiq/eval/report.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::eval {

// ---------------------------------------------------------------------------------------------
// The study

/// @brief One row of ratings.csv: observer `observer` gave `vote` (1..K) to `image` in `session`.
struct Rating {
  std::string image;     ///< file name under images/
  std::string observer;  ///< observer id as written in ratings.csv
  int session = 0;       ///< session number (repeated sessions re-rate the same stimuli)
  int vote = 0;          ///< 1..K
};

/// @brief A per-observer study in memory: its ratings and its split.
struct Study {
  std::vector<Rating> ratings;                ///< every vote, in file order
  std::map<std::string, std::string> split;   ///< image -> "train" | "val" | "test"
};

/// @brief Order of observer ids: numerically when both are integers ("2" < "10"), else as text.
inline bool observer_less(const std::string& a, const std::string& b) {
  const auto numeric = [](const std::string& s) {
    return !s.empty() && s.size() < 18 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
  };
  if (numeric(a) && numeric(b)) return std::stoll(a) < std::stoll(b);
  return a < b;
}

/// @brief The distinct observer ids of a study, ordered by observer_less().
inline std::vector<std::string> study_observers(const Study& study) {
  std::set<std::string> ids;
  for (const auto& r : study.ratings) ids.insert(r.observer);
  std::vector<std::string> out(ids.begin(), ids.end());
  std::sort(out.begin(), out.end(), observer_less);
  return out;
}

/// @brief The test stimuli: images whose split is "test" and that someone rated, sorted by name.
inline std::vector<std::string> test_images(const Study& study) {
  std::set<std::string> names;
  for (const auto& r : study.ratings) {
    const auto it = study.split.find(r.image);
    if (it != study.split.end() && it->second == "test") names.insert(r.image);
  }
  return {names.begin(), names.end()};
}

namespace detail {

/// @brief The number after the last `tag` (e.g. "_Q") in `name` that is followed by digits and
/// then '.', '_' or the end of the name; -1 when there is none.
inline int tagged_number(std::string_view name, std::string_view tag) {
  for (std::size_t end = name.size(); end >= tag.size();) {
    const std::size_t at = name.rfind(tag, end - tag.size());
    if (at == std::string_view::npos) break;
    std::size_t i = at + tag.size();
    long v = 0;
    while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) && v < 1000000) v = v * 10 + (name[i++] - '0');
    if (i > at + tag.size() && (i == name.size() || name[i] == '.' || name[i] == '_')) return int(v);
    if (at == 0) break;
    end = at + tag.size() - 1;
  }
  return -1;
}

}  // namespace detail

/// @brief The JPEG quality factor Q of an original-form file name `<id><source>_I<band>_Q<q>.jpeg`
/// (the digits after the last "_Q" followed by digits and '.', '_' or the end); -1 when absent.
inline int jpeg_quality(std::string_view name) { return detail::tagged_number(name, "_Q"); }

/// @brief The compression band of an original-form file name (the digits after the last "_I"
/// followed by digits and '_', '.' or the end); 0 when absent.
inline int jpeg_band(std::string_view name) { return std::max(0, detail::tagged_number(name, "_I")); }

namespace detail {

/// @brief One CSV line split into fields (RFC 4180 quotes; a CR is dropped).
inline std::vector<std::string> split_csv_fields(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') cur += '"', ++i;
      else if (c == '"') quoted = false;
      else cur += c;
    } else if (c == '"') quoted = true;
    else if (c == ',') out.push_back(std::move(cur)), cur.clear();
    else if (c != '\r') cur += c;
  }
  out.push_back(std::move(cur));
  return out;
}

/// @brief A CSV file with a header line, as rows of fields, plus the column index of each name.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> line;  ///< the 1-based file line of each row (for messages)
  /// Column index of `name`, -1 when absent.
  int column(std::string_view name) const {
    for (std::size_t i = 0; i < header.size(); ++i) if (header[i] == name) return int(i);
    return -1;
  }
};

/// @brief Read a CSV file with a header (a UTF-8 BOM is skipped, empty lines ignored). Throws
/// IoError when it cannot be opened, FormatError (file:line) on a row of the wrong width or when
/// a `required` column is missing.
inline CsvTable read_csv_table(const std::filesystem::path& path, std::initializer_list<std::string_view> required = {}) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path.string() + ": cannot open");
  CsvTable t;
  std::string line;
  if (!std::getline(in, line)) throw FormatError(path.string() + ":1: empty file, expected a header");
  if (line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
  t.header = split_csv_fields(line);
  for (std::string_view r : required)
    if (t.column(r) < 0) throw FormatError(path.string() + ":1: missing column '" + std::string(r) + "'");
  for (int n = 2; std::getline(in, line); ++n) {
    if (line.empty() || line == "\r") continue;
    auto f = split_csv_fields(line);
    if (f.size() != t.header.size())
      throw FormatError(path.string() + ":" + std::to_string(n) + ": " + std::to_string(f.size()) +
                        " fields, the header has " + std::to_string(t.header.size()));
    t.rows.push_back(std::move(f));
    t.line.push_back(n);
  }
  return t;
}

/// @brief The whole of `s` as an int, or false.
inline bool parse_int(const std::string& s, int& out) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(s, &used);
    if (used != s.size()) return false;
    out = v;
    return true;
  } catch (...) {
    return false;
  }
}

/// @brief The whole of `s` as a double (NaN for an empty field or "nan"), or false.
inline bool parse_double(const std::string& s, double& out) {
  if (s.empty() || s == "nan" || s == "NaN") return out = kNaN, true;
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    if (used != s.size()) return false;
    out = v;
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace detail

/// @brief Read a study folder: `dir`/ratings.csv (columns image, observer, session, vote) and
/// `dir`/split.csv (columns image, split). Images are not opened.
/// @param K number of vote classes; every vote must lie in 1..K
/// @throws IoError when a file cannot be opened; FormatError (naming file and line) on a missing
/// column, a non-integer session or vote, a vote outside 1..K, a rated image without a split, or
/// no ratings at all.
inline Study read_study(const std::filesystem::path& dir, int K = 5) {
  Study s;
  const auto rpath = dir / "ratings.csv", spath = dir / "split.csv";
  const auto split = detail::read_csv_table(spath, {"image", "split"});
  const int si = split.column("image"), ss = split.column("split");
  for (const auto& row : split.rows) s.split[row[std::size_t(si)]] = row[std::size_t(ss)];
  const auto ratings = detail::read_csv_table(rpath, {"image", "observer", "session", "vote"});
  const auto ci = std::size_t(ratings.column("image")), co = std::size_t(ratings.column("observer")),
             cs = std::size_t(ratings.column("session")), cv = std::size_t(ratings.column("vote"));
  for (std::size_t i = 0; i < ratings.rows.size(); ++i) {
    const auto& row = ratings.rows[i];
    const std::string where = rpath.string() + ":" + std::to_string(ratings.line[i]) + ": ";
    Rating r{row[ci], row[co], 0, 0};
    if (!detail::parse_int(row[cs], r.session) || !detail::parse_int(row[cv], r.vote))
      throw FormatError(where + "session and vote must be integers");
    if (r.vote < 1 || r.vote > K)
      throw FormatError(where + "vote " + std::to_string(r.vote) + " outside 1.." + std::to_string(K));
    if (!s.split.count(r.image)) throw FormatError(where + "image '" + r.image + "' has no row in " + spath.string());
    s.ratings.push_back(std::move(r));
  }
  if (s.ratings.empty()) throw FormatError(rpath.string() + ": no ratings");
  return s;
}

// ---------------------------------------------------------------------------------------------
// Ground truth of a simulated study

/// @brief What a simulated study knows about one observer (NaN where not given).
struct GroundTruthObserver {
  double bayes_ceiling = kNaN;            ///< best achievable exact accuracy on the test split
  double expected_self_agreement = kNaN;  ///< expected exact agreement of two votes on one stimulus
  double q_lookup_accuracy = kNaN;        ///< the generator's own image-blind Q look-up accuracy (test)
  /// image -> the observer's true vote distribution on it [K] (read_stimulus_truth(); empty when
  /// the study has no per-stimulus ground truth). With it, evaluate_run() separates a model's own
  /// error from the sampling noise of the test votes.
  std::map<std::string, std::vector<double>> stimulus_probabilities;
};

/// @brief Observer id -> ground truth. Empty when the study has none.
using GroundTruth = std::map<std::string, GroundTruthObserver>;

namespace detail {

/// @brief Every number within `v` (depth <= 3) with the lower-cased path of keys leading to it.
inline void numeric_leaves(const json::Value& v, const std::string& path, int depth,
                           std::vector<std::pair<std::string, double>>& out) {
  if (v.is_number()) {
    out.emplace_back(path, v.as_number());
  } else if (v.is_object() && depth < 3) {
    for (const auto& [k, m] : v.as_object()) {
      std::string key = k;
      for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
      numeric_leaves(m, path.empty() ? key : path + "." + key, depth + 1, out);
    }
  }
}

/// @brief Whether `word` occurs in `path` bounded by its ends or by '.', '_', '-' or ' '.
inline bool has_word(std::string_view path, std::string_view word) {
  const auto boundary = [](char c) { return c == '.' || c == '_' || c == '-' || c == ' '; };
  for (std::size_t at = path.find(word); at != std::string_view::npos; at = path.find(word, at + 1)) {
    const std::size_t end = at + word.size();
    if ((at == 0 || boundary(path[at - 1])) && (end == path.size() || boundary(path[end]))) return true;
  }
  return false;
}

/// @brief The best-matching number in [0, 1] among `leaves` whose path contains one of `tokens`.
/// Score: +4 when the path names the test split ("test" as a word), +1 for "exact" / "accuracy" /
/// "acc", +3 for each word of `prefer`; -8 for another statistic (within, one, rmse, mae, std, sd,
/// se, ci, ci95, count, pairs, n), -2 for another split (train, val, validation, all) unless the
/// test split is named, -6 for each word of `avoid`. The highest score wins, the first of equal
/// ones. NaN when none matches.
inline double pick_leaf(const std::vector<std::pair<std::string, double>>& leaves,
                        std::initializer_list<std::string_view> tokens, std::initializer_list<std::string_view> prefer = {},
                        std::initializer_list<std::string_view> avoid = {}) {
  double best = kNaN;
  int best_score = -1000;
  for (const auto& leaf : leaves) {  // (no structured binding: clang 14 cannot capture one)
    const std::string& path = leaf.first;
    const double value = leaf.second;
    if (!std::any_of(tokens.begin(), tokens.end(), [&](std::string_view t) { return path.find(t) != std::string::npos; }))
      continue;
    if (!(value >= 0 && value <= 1)) continue;
    const auto has = [&](std::string_view w) { return has_word(path, w); };
    int score = 0;
    if (has("test")) score += 4;
    if (has("exact") || has("accuracy") || has("acc")) score += 1;
    for (std::string_view w : prefer) if (has(w)) score += 3;
    for (std::string_view w : avoid) if (has(w)) score -= 6;
    for (std::string_view bad : {"within", "one", "rmse", "mae", "std", "sd", "se", "ci", "ci95", "count", "pairs", "n"})
      if (has(bad)) score -= 8;
    for (std::string_view other : {"train", "val", "validation", "all"})
      if (has(other) && !has("test")) score -= 2;
    if (score > best_score) best_score = score, best = value;
  }
  return best;
}

/// @brief The observer id of an array entry: its "id", "observer", "observer_id" or "name" member.
inline std::string entry_id(const json::Value& v) {
  for (std::string_view key : {"id", "observer_id", "observer", "name"})
    if (const json::Value* m = v.find(key)) {
      if (m->is_string()) return m->as_string();
      if (m->is_number()) {
        const double d = m->as_number();
        if (d == std::floor(d) && std::abs(d) < 1e15) return std::to_string(static_cast<long long>(d));
      }
    }
  return {};
}

}  // namespace detail

/// @brief Read the per-observer ground truth from a parsed ground_truth.json, defensively (its
/// exact schema belongs to the data generator, vitiq-make-dataset).
///
/// The first top-level member whose key contains "observer" (e.g. "observers"), or else the top
/// level itself, is either an object keyed by observer id or an array of objects naming their id
/// in "id" / "observer_id" / "observer" / "name". In each observer's entry (nested objects up to
/// depth 3 searched; key paths lower-cased and joined by '.'), numbers in [0, 1] are matched:
///  - Bayes ceiling: a path containing "ceiling" (preferring "bayes");
///  - expected self-agreement: a path containing "self" and "agree", preferring "expected" and
///    avoiding "target" / "realised" / "realized" / "measured";
///  - Q look-up accuracy: a path containing "q_lookup" / "qlookup" / "q-lookup" / "lookup",
///    avoiding "band" (the band look-up) and "expected" (the expected rather than realised one);
/// among several candidates, the one naming the test split and exact accuracy wins (pick_leaf()).
/// So the generator's {"observers": [{"id": "1", "expected": {"self_agreement_exact": ..},
/// "test": {"bayes_ceiling": .., "q_lookup_accuracy": ..}}]} is read as intended, and so are
/// flatter forms ({"observers": {"1": {"bayes_ceiling": ..}}}). Entries with none of the three
/// are left out; unknown shapes give an empty result.
///
/// This is the one place to adapt when the generator's key names change.
inline GroundTruth parse_ground_truth(const json::Value& root) {
  GroundTruth out;
  const json::Value* obs = nullptr;
  // "observers" itself first: the generator also writes "observer_model" (the model's description).
  if (root.is_object()) obs = root.find("observers");
  if (obs && !obs->is_object() && !obs->is_array()) obs = nullptr;
  if (!obs && root.is_object())
    for (const auto& [k, v] : root.as_object()) {
      std::string key = k;
      for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
      if (key.find("observer") != std::string::npos && (v.is_object() || v.is_array())) { obs = &v; break; }
    }
  if (!obs) obs = &root;
  const auto add = [&](const std::string& id, const json::Value& entry) {
    if (id.empty() || !entry.is_object()) return;
    std::vector<std::pair<std::string, double>> leaves;
    detail::numeric_leaves(entry, "", 0, leaves);
    GroundTruthObserver g;
    g.bayes_ceiling = detail::pick_leaf(leaves, {"ceiling"}, {"bayes"});
    std::vector<std::pair<std::string, double>> self;
    for (const auto& l : leaves)
      if (l.first.find("self") != std::string::npos && l.first.find("agree") != std::string::npos) self.push_back(l);
    g.expected_self_agreement = detail::pick_leaf(self, {"self"}, {"expected"}, {"target", "realised", "realized", "measured"});
    g.q_lookup_accuracy = detail::pick_leaf(leaves, {"q_lookup", "qlookup", "q-lookup", "lookup"}, {}, {"band", "expected"});
    if (!std::isnan(g.bayes_ceiling) || !std::isnan(g.expected_self_agreement) || !std::isnan(g.q_lookup_accuracy))
      out[id] = g;
  };
  if (obs->is_object()) {
    for (const auto& [k, v] : obs->as_object()) {
      std::string id = detail::entry_id(v);
      add(id.empty() ? k : id, v);
    }
  } else if (obs->is_array()) {
    for (const auto& v : obs->as_array()) add(detail::entry_id(v), v);
  }
  return out;
}

/// @brief parse_ground_truth() of the file at `path`; an empty result when the file does not
/// exist. Throws IoError when it exists but cannot be read, FormatError when it is not JSON.
inline GroundTruth read_ground_truth(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_ground_truth(json::parse(ss.str(), path.string()));
}

/// @brief Add the per-stimulus ground truth of a simulated study to `truth`: the CSV at `path`
/// (vitiq-make-dataset's ground_truth_stimuli.csv) has a column "image" and, per observer id, the
/// columns obs<id>_p1 .. obs<id>_p<K> with that observer's probability of each vote on the image.
/// Observers missing from `truth` are added. Returns the number of observers read (0 when the file
/// does not exist, `truth` then unchanged).
/// @throws IoError when the file exists but cannot be read; FormatError naming file, line and
/// column for a missing "image" column, an incomplete set of obs<id>_p columns, a field that is not
/// a number, a probability outside [0, 1] or a row whose probabilities do not sum to 1 (+-1e-3).
inline std::size_t read_stimulus_truth(const std::filesystem::path& path, GroundTruth& truth, int K = 5) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const auto t = detail::read_csv_table(path, {"image"});
  const std::size_t ci = std::size_t(t.column("image"));
  std::map<std::string, std::vector<int>> columns;  // observer id -> column of p_1 .. p_K (-1 missing)
  for (std::size_t c = 0; c < t.header.size(); ++c) {
    const std::string& h = t.header[c];
    const auto p = h.rfind("_p");
    int k = 0;
    if (h.rfind("obs", 0) != 0 || p == std::string::npos || p <= 3 || !detail::parse_int(h.substr(p + 2), k) || k < 1 || k > K)
      continue;
    auto& cols = columns[h.substr(3, p - 3)];
    cols.resize(std::size_t(K), -1);
    cols[std::size_t(k - 1)] = int(c);
  }
  for (const auto& [id, cols] : columns)
    for (int k = 0; k < K; ++k)
      if (cols[std::size_t(k)] < 0)
        throw FormatError(path.string() + ":1: observer " + id + " has no column 'obs" + id + "_p" + std::to_string(k + 1) + "'");
  std::map<std::string, std::map<std::string, std::vector<double>>> read;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    const auto& row = t.rows[i];
    const std::string where = path.string() + ":" + std::to_string(t.line[i]) + ": ";
    for (const auto& [id, cols] : columns) {
      std::vector<double> p(static_cast<std::size_t>(K));
      double sum = 0;
      for (int k = 0; k < K; ++k) {
        const std::string& field = row[std::size_t(cols[std::size_t(k)])];
        const std::string name = t.header[std::size_t(cols[std::size_t(k)])];
        if (!detail::parse_double(field, p[std::size_t(k)]) || !(p[std::size_t(k)] >= 0 && p[std::size_t(k)] <= 1))
          throw FormatError(where + "column '" + name + "': '" + field + "' is not a probability");
        sum += p[std::size_t(k)];
      }
      if (std::abs(sum - 1) > 1e-3)
        throw FormatError(where + "observer " + id + "'s probabilities sum to " + std::to_string(sum) + ", not 1");
      read[id][row[ci]] = std::move(p);
    }
  }
  for (auto& [id, m] : read) truth[id].stimulus_probabilities = std::move(m);
  return columns.size();
}

// ---------------------------------------------------------------------------------------------
// The runs

/// @brief One trained model of a run folder.
struct ModelRun {
  std::string name;               ///< "aio0" or "observer_ID"
  std::string observer;           ///< the observer id; empty for AIO0 (the band model)
  std::filesystem::path dir;      ///< RUNS/name
  std::filesystem::path weights;  ///< RUNS/name/best.safetensors
};

/// @brief The models of a run folder that have best.safetensors: every observer_<id>/ (ordered by
/// observer_less() of the id), then aio0/. Throws IoError when `runs` is not a directory.
inline std::vector<ModelRun> find_models(const std::filesystem::path& runs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(runs, ec)) throw IoError(runs.string() + ": not a directory");
  std::vector<ModelRun> out;
  for (const auto& e : fs::directory_iterator(runs)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("observer_", 0) != 0 || name.size() == 9) continue;
    if (!fs::is_regular_file(e.path() / "best.safetensors", ec)) continue;
    out.push_back({name, name.substr(9), e.path(), e.path() / "best.safetensors"});
  }
  std::sort(out.begin(), out.end(), [](const ModelRun& a, const ModelRun& b) { return observer_less(a.observer, b.observer); });
  if (fs::is_regular_file(runs / "aio0" / "best.safetensors", ec))
    out.push_back({"aio0", "", runs / "aio0", runs / "aio0" / "best.safetensors"});
  return out;
}

/// @brief One epoch of a training curve (a row of metrics.csv).
struct EpochRecord {
  double x = 0;        ///< position on the curve: epochs since the start, over all sessions
  int session = 0;     ///< session number (iterative fine-tuning), 0 for a single run
  int epoch = 0;       ///< epoch within its run or session
  double lr = kNaN;              ///< learning rate at the end of the epoch
  double train_loss = kNaN;      ///< mean training loss of the epoch
  double train_accuracy = kNaN;  ///< training accuracy of the epoch
  double val_loss = kNaN;        ///< validation loss (NaN without validation)
  double val_accuracy = kNaN;    ///< validation accuracy (NaN without validation)
  bool best = false;   ///< a new best validation score (its weights were kept)
};

/// @brief A model's training history: one record per epoch, sessions concatenated.
struct TrainingCurve {
  std::vector<EpochRecord> epochs;  ///< every epoch of every session, in order
  /// x of the boundary before each session after the first: half-way between the previous
  /// session's last epoch and this session's first.
  std::vector<double> session_starts;
  std::vector<int> session_ids;  ///< [session_starts] the session that starts there
};

/// @brief Read the training curve of a model folder: `dir`/metrics.csv when it exists, else
/// `dir`/session_<s>/metrics.csv of every session in order of s, concatenated (x continues
/// across sessions). Columns used: epoch, lr, train_loss, train_accuracy, val_loss,
/// val_accuracy, best (missing ones stay NaN). Empty when there is no metrics.csv.
/// Throws FormatError on a malformed file.
inline TrainingCurve read_training_curve(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<int, fs::path>> files;
  std::error_code ec;
  if (fs::is_regular_file(dir / "metrics.csv", ec)) {
    files.emplace_back(0, dir / "metrics.csv");
  } else if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      int s = 0;
      if (name.rfind("session_", 0) == 0 && detail::parse_int(name.substr(8), s) &&
          fs::is_regular_file(e.path() / "metrics.csv", ec))
        files.emplace_back(s, e.path() / "metrics.csv");
    }
    std::sort(files.begin(), files.end());
  }
  TrainingCurve curve;
  double offset = 0;
  for (std::size_t f = 0; f < files.size(); ++f) {
    const auto t = detail::read_csv_table(files[f].second, {"epoch"});
    if (f > 0) curve.session_starts.push_back(offset + 0.5), curve.session_ids.push_back(files[f].first);
    int last_epoch = 0;
    for (std::size_t i = 0; i < t.rows.size(); ++i) {
      EpochRecord r;
      r.session = files[f].first;
      const auto get = [&](const char* col, double& out) {
        const int c = t.column(col);
        if (c < 0) return;
        if (!detail::parse_double(t.rows[i][std::size_t(c)], out))
          throw FormatError(files[f].second.string() + ":" + std::to_string(t.line[i]) + ": column '" + col + "' is not a number");
      };
      double epoch = 0, best = 0;
      get("epoch", epoch);
      get("lr", r.lr);
      get("train_loss", r.train_loss);
      get("train_accuracy", r.train_accuracy);
      get("val_loss", r.val_loss);
      get("val_accuracy", r.val_accuracy);
      get("best", best);
      if (!(std::abs(epoch) <= 1e9))  // NaN, inf, 1e300: converting those to int is undefined
        throw FormatError(files[f].second.string() + ":" + std::to_string(t.line[i]) + ": epoch '" +
                          t.rows[i][std::size_t(t.column("epoch"))] + "' is not an epoch number");
      r.epoch = int(epoch);
      r.best = best == 1;
      r.x = offset + epoch;
      last_epoch = std::max(last_epoch, r.epoch);
      curve.epochs.push_back(r);
    }
    offset += last_epoch;
  }
  return curve;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// @brief One model's output on the test stimuli.
struct ModelPredictions {
  std::string name;                  ///< "aio0" or "observer_<id>" (any unique name)
  std::string observer;              ///< the observer it models; empty for AIO0 (the band model)
  std::vector<std::string> images;   ///< [N] stimulus names; must cover every test image
  std::vector<double> probabilities; ///< [N, K] row-major: P(vote k+1 | image i), rows sum to 1
};

/// @brief Agreement of an observer with themself over pairs of votes on the same stimulus.
struct SelfAgreement {
  std::size_t pairs = 0;     ///< number of vote pairs (a stimulus rated r times gives r(r-1)/2)
  double exact = kNaN;       ///< fraction of pairs with equal votes
  double within_one = kNaN;  ///< fraction of pairs differing by at most 1
  double rmse = kNaN;        ///< sqrt(mean squared difference of the two votes)
};

/// @brief Self-agreement of `observer` over every stimulus they rated more than once (any split;
/// a real study repeats a training session): every pair of their votes on one stimulus counts.
/// All NaN (pairs = 0) when nothing was repeated.
inline SelfAgreement self_agreement(const Study& study, const std::string& observer) {
  std::map<std::string, std::vector<int>> votes;
  for (const auto& r : study.ratings)
    if (r.observer == observer) votes[r.image].push_back(r.vote);
  SelfAgreement a;
  std::size_t exact = 0, within = 0;
  double sq = 0;
  for (const auto& [image, v] : votes)
    for (std::size_t i = 0; i < v.size(); ++i)
      for (std::size_t j = i + 1; j < v.size(); ++j) {
        const int d = v[i] - v[j];
        ++a.pairs;
        exact += d == 0;
        within += d >= -1 && d <= 1;
        sq += double(d) * d;
      }
  if (a.pairs) {
    a.exact = double(exact) / double(a.pairs);
    a.within_one = double(within) / double(a.pairs);
    a.rmse = std::sqrt(sq / double(a.pairs));
  }
  return a;
}

/// @brief The image-blind baselines of one observer, scored on their test votes.
struct ObserverBaselines {
  std::string observer;            ///< the observer id
  std::size_t train_votes = 0;     ///< votes on train-split stimuli (fit data)
  std::size_t test_votes = 0;      ///< votes on test-split stimuli (score data)
  int majority_vote = 0;           ///< most frequent training vote (ties: smallest); 0 if none
  ClassificationReport majority{}; ///< always predicting majority_vote (expected = that vote)
  bool q_lookup_available = false; ///< false when a train or test file name has no _Q<q>
  std::map<int, int> q_table;      ///< fitted Q -> vote
  std::vector<int> q_predictions;  ///< [N] the look-up's vote per test stimulus (0 if unavailable)
  ClassificationReport q_lookup{}; ///< the Q look-up (QLookup fit on the train votes)
  SelfAgreement self;              ///< self_agreement()
  GroundTruthObserver truth;       ///< from ground_truth.json, NaN when absent
  /// With per-stimulus ground truth (truth.stimulus_probabilities covering every test stimulus the
  /// observer rated), else NaN: the Bayes predictor (arg-max of the true vote distribution) scored
  /// against the observer's actual test votes, and its expected accuracy (the mean largest
  /// probability: the Bayes ceiling of these test votes). Their difference is the luck of the draw
  /// of the test votes, which no model can do anything about.
  double bayes_realized_accuracy = kNaN;
  double bayes_expected_accuracy = kNaN;  ///< see bayes_realized_accuracy
  /// The Q look-up's exact accuracy in expectation over the observer's vote noise (mean true
  /// probability of its vote), NaN without per-stimulus ground truth or Q look-up.
  double q_lookup_expected_accuracy = kNaN;
};

/// @brief One model's evaluation.
struct AioEvaluation {
  std::string name;                 ///< as ModelPredictions::name
  std::string observer;             ///< as ModelPredictions::observer (empty for AIO0)
  std::vector<int> predicted;       ///< [N] arg-max vote per test stimulus (ties: smallest vote)
  std::vector<double> expected;     ///< [N] expected vote sum_k k p_k
  std::vector<double> probabilities;///< [N, K] in test_images order
  /// Against the observer's test votes (each vote counts); for AIO0 against the JPEG band of
  /// each test stimulus (file name _I<band>_; stimuli without a band in 1..K are left out).
  ClassificationReport report{};
  double share_of_ceiling = kNaN;   ///< report.exact_accuracy / Bayes ceiling (NaN if unknown)
  /// With per-stimulus ground truth, else NaN: the exact accuracy the model's arg-max votes have in
  /// expectation over the observer's vote noise (mean true probability of the predicted vote over
  /// the observer's test votes), and its share of the Bayes ceiling. Free of the sampling noise of
  /// the test votes (+-0.03 for 300 votes), so it shows the model's own distance to the ceiling.
  double expected_accuracy = kNaN;
  double expected_share_of_ceiling = kNaN;  ///< expected_accuracy / Bayes ceiling
};

/// @brief The panel: the per-observer AIOs averaged, against the MOS of the test stimuli.
struct PanelEvaluation {
  std::vector<std::string> members;  ///< names of the AIOs averaged (those with an observer)
  std::vector<double> mean_argmax;   ///< [N] mean of the members' arg-max votes
  std::vector<double> mean_expected; ///< [N] mean of the members' expected votes
  std::vector<double> q_lookup_mean; ///< [N] mean of the observers' Q look-up votes (baseline)
  PanelReport argmax{kNaN, kNaN, kNaN, kNaN};    ///< mean_argmax against the MOS
  PanelReport expected{kNaN, kNaN, kNaN, kNaN};  ///< mean_expected against the MOS
  PanelReport q_lookup{kNaN, kNaN, kNaN, kNaN};  ///< q_lookup_mean against the MOS (image-blind baseline)
};

/// @brief Everything evaluate_run() computes.
struct StudyEvaluation {
  int K = 5;                                          ///< number of vote classes
  std::vector<std::string> test_images;               ///< [N] sorted names
  std::vector<int> test_q;                            ///< [N] JPEG Q from the names (-1 if absent)
  std::vector<int> test_band;                         ///< [N] band from the names (0 if absent)
  std::vector<std::string> observers;                 ///< [O] ids, observer_less() order
  std::vector<std::vector<std::vector<int>>> test_votes;  ///< [O][N] -> that observer's votes (session order)
  std::vector<MosStats> mos;                          ///< [N] all observers' votes pooled
  std::vector<ObserverBaselines> baselines;           ///< [O]
  std::vector<AioEvaluation> aios;                    ///< [M] in the order given
  /// [M][O]: exact accuracy of model m against observer o's test votes (each vote counts); NaN
  /// when o has no test votes.
  std::vector<std::vector<double>> cross;
  PanelEvaluation panel;                              ///< the per-observer AIOs as a panel
  /// [O][B][K]: votes of observer o (all splits) on stimuli of band b+1 with vote k+1, B = 5
  /// bands; stimuli without a band in 1..5 are not counted.
  std::vector<std::vector<std::vector<long>>> distribution;
  std::vector<std::string> warnings;                  ///< things worth saying (unknown observer, ...)

  /// Index of observer `id` in observers, -1 if absent.
  int observer_index(const std::string& id) const {
    for (std::size_t i = 0; i < observers.size(); ++i) if (observers[i] == id) return int(i);
    return -1;
  }
  /// The baselines of AIO `a`'s observer, or nullptr (AIO0, unknown observer).
  const ObserverBaselines* baselines_of(const AioEvaluation& a) const {
    const int o = observer_index(a.observer);
    return a.observer.empty() || o < 0 ? nullptr : &baselines[std::size_t(o)];
  }
};

/// @brief Number of JPEG bands in StudyEvaluation::distribution.
inline constexpr int kBands = 5;

/// @brief Evaluate a run: every model against its observer and against every observer, the
/// panel, and the baselines.
///
/// @param study  the ratings and split (read_study())
/// @param models one entry per model; each must give probabilities for every test image
///               (test_images(study)); extra images are ignored
/// @param truth  ground truth of a simulated study (read_ground_truth()), may be empty
/// @param K      number of vote classes
///
/// Per observer o (study_observers() order): the test votes are all of o's votes on test
/// stimuli (every session); the majority vote and the Q look-up (QLookup: most frequent vote per
/// JPEG Q, nearest Q for unseen ones) are fit on o's train-split votes and scored like a model
/// (its expected vote = its vote); self-agreement as self_agreement().
/// Per model: arg-max and expected vote per test stimulus; evaluate_votes() against the
/// observer's votes (the prediction repeated for each vote), or for AIO0 against the band.
/// Cross: exact accuracy of every model against every observer. Panel: the per-observer AIOs'
/// mean arg-max and mean expected vote against the pooled MOS (mos_with_ci of every vote on the
/// stimulus), plus the mean of the observers' Q look-ups as the image-blind panel baseline.
/// @throws std::invalid_argument when a model lacks a test image, its probabilities do not have
/// N x K entries, or K < 2.
inline StudyEvaluation evaluate_run(const Study& study, std::span<const ModelPredictions> models,
                                    const GroundTruth& truth = {}, int K = 5) {
  if (K < 2) throw std::invalid_argument("vitiq::eval::evaluate_run: K = " + std::to_string(K) + " < 2");
  StudyEvaluation ev;
  ev.K = K;
  ev.test_images = test_images(study);
  ev.observers = study_observers(study);
  const std::size_t N = ev.test_images.size(), O = ev.observers.size(), k = std::size_t(K);
  std::map<std::string, std::size_t> test_index, obs_index;
  for (std::size_t s = 0; s < N; ++s) {
    test_index[ev.test_images[s]] = s;
    ev.test_q.push_back(jpeg_quality(ev.test_images[s]));
    ev.test_band.push_back(jpeg_band(ev.test_images[s]));
  }
  for (std::size_t o = 0; o < O; ++o) obs_index[ev.observers[o]] = o;

  // Votes per observer: test votes by stimulus (session order), training votes with their Q.
  std::vector<std::vector<std::vector<std::pair<int, int>>>> by_session(O, std::vector<std::vector<std::pair<int, int>>>(N));
  std::vector<std::vector<int>> train_votes(O), train_q(O);
  std::vector<bool> train_q_ok(O, true);
  ev.distribution.assign(O, std::vector<std::vector<long>>(kBands, std::vector<long>(k, 0)));
  for (const auto& r : study.ratings) {
    const std::size_t o = obs_index.at(r.observer);
    const auto sp = study.split.find(r.image);
    const std::string split = sp == study.split.end() ? std::string() : sp->second;
    if (split == "test") by_session[o][test_index.at(r.image)].emplace_back(r.session, r.vote);
    if (split == "train") {
      train_votes[o].push_back(r.vote);
      const int q = jpeg_quality(r.image);
      train_q[o].push_back(q);
      if (q < 0) train_q_ok[o] = false;
    }
    const int band = jpeg_band(r.image);
    if (band >= 1 && band <= kBands && r.vote >= 1 && r.vote <= K) ++ev.distribution[o][std::size_t(band - 1)][std::size_t(r.vote - 1)];
  }
  ev.test_votes.assign(O, std::vector<std::vector<int>>(N));
  std::vector<std::vector<double>> pooled(N);
  for (std::size_t o = 0; o < O; ++o)
    for (std::size_t s = 0; s < N; ++s) {
      auto& v = by_session[o][s];
      std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [session, vote] : v) ev.test_votes[o][s].push_back(vote), pooled[s].push_back(vote);
    }
  for (std::size_t s = 0; s < N; ++s) ev.mos.push_back(mos_with_ci(std::span<const double>(pooled[s])));

  // Flatten: per observer, the test votes and the stimulus of each.
  const auto flat = [&](std::size_t o, std::vector<int>& votes, std::vector<std::size_t>& stim) {
    for (std::size_t s = 0; s < N; ++s)
      for (int v : ev.test_votes[o][s]) votes.push_back(v), stim.push_back(s);
  };
  const auto score_constant = [&](const std::vector<int>& truth_votes, const std::vector<int>& pred) {
    const std::vector<double> expected(pred.begin(), pred.end());
    return evaluate_votes(truth_votes, pred, expected, K);
  };

  // Baselines.
  const bool all_test_q = std::all_of(ev.test_q.begin(), ev.test_q.end(), [](int q) { return q >= 0; });
  for (std::size_t o = 0; o < O; ++o) {
    ObserverBaselines b;
    b.observer = ev.observers[o];
    std::vector<int> tv;
    std::vector<std::size_t> ts;
    flat(o, tv, ts);
    b.train_votes = train_votes[o].size();
    b.test_votes = tv.size();
    if (!train_votes[o].empty()) {
      b.majority_vote = majority_vote(train_votes[o]);
      b.majority = score_constant(tv, std::vector<int>(tv.size(), b.majority_vote));
      if (train_q_ok[o] && all_test_q) {
        QLookup look;
        look.fit(train_q[o], train_votes[o]);
        b.q_lookup_available = true;
        b.q_table = look.table();
        b.q_predictions = look.predict(ev.test_q);
        std::vector<int> pred;
        for (std::size_t i = 0; i < tv.size(); ++i) pred.push_back(b.q_predictions[ts[i]]);
        b.q_lookup = score_constant(tv, pred);
      } else {
        ev.warnings.push_back("observer " + b.observer + ": no Q look-up (a file name lacks _Q<q>)");
      }
    } else {
      ev.warnings.push_back("observer " + b.observer + ": no training votes, no majority or Q look-up baseline");
    }
    if (!b.q_lookup_available) {
      b.q_predictions.assign(N, 0);
      b.q_lookup = evaluate_votes({}, {}, {}, K);
    }
    if (train_votes[o].empty()) b.majority = evaluate_votes({}, {}, {}, K);
    b.self = self_agreement(study, b.observer);
    if (const auto it = truth.find(b.observer); it != truth.end()) b.truth = it->second;
    if (const auto& sp = b.truth.stimulus_probabilities; !sp.empty() && !tv.empty()) {
      double realized = 0, expected = 0, lookup = 0;
      bool complete = true;
      for (std::size_t i = 0; i < tv.size(); ++i) {
        const auto it = sp.find(ev.test_images[ts[i]]);
        if (it == sp.end() || it->second.size() != k) { complete = false; break; }
        const auto& p = it->second;
        const std::size_t best = std::size_t(std::max_element(p.begin(), p.end()) - p.begin());
        realized += double(int(best) + 1 == tv[i]);
        expected += p[best];
        const int q_vote = b.q_lookup_available ? b.q_predictions[ts[i]] : 0;
        if (q_vote >= 1 && q_vote <= K) lookup += p[std::size_t(q_vote - 1)];
      }
      if (complete) {
        b.bayes_realized_accuracy = realized / double(tv.size());
        b.bayes_expected_accuracy = expected / double(tv.size());
        if (b.q_lookup_available) b.q_lookup_expected_accuracy = lookup / double(tv.size());
      } else {
        ev.warnings.push_back("observer " + b.observer + ": the per-stimulus ground truth lacks a test stimulus");
      }
    }
    ev.baselines.push_back(std::move(b));
  }

  // Models.
  for (const auto& m : models) {
    if (m.probabilities.size() != m.images.size() * k)
      throw std::invalid_argument("vitiq::eval::evaluate_run: model '" + m.name + "' has " +
                                  std::to_string(m.probabilities.size()) + " probabilities for " +
                                  std::to_string(m.images.size()) + " images x " + std::to_string(K) + " votes");
    std::map<std::string, std::size_t> row;
    for (std::size_t i = 0; i < m.images.size(); ++i) row[m.images[i]] = i;
    AioEvaluation a;
    a.name = m.name;
    a.observer = m.observer;
    for (std::size_t s = 0; s < N; ++s) {
      const auto it = row.find(ev.test_images[s]);
      if (it == row.end())
        throw std::invalid_argument("vitiq::eval::evaluate_run: model '" + m.name + "' has no prediction for test image '" +
                                    ev.test_images[s] + "'");
      const double* p = m.probabilities.data() + it->second * k;
      std::size_t best = 0;
      double e = 0;
      for (std::size_t c = 0; c < k; ++c) {
        if (p[c] > p[best]) best = c;
        e += double(c + 1) * p[c];
        a.probabilities.push_back(p[c]);
      }
      a.predicted.push_back(int(best) + 1);
      a.expected.push_back(e);
    }
    std::vector<int> tv, pv;
    std::vector<double> xv;
    if (m.observer.empty()) {
      for (std::size_t s = 0; s < N; ++s)
        if (ev.test_band[s] >= 1 && ev.test_band[s] <= K)
          tv.push_back(ev.test_band[s]), pv.push_back(a.predicted[s]), xv.push_back(a.expected[s]);
    } else if (const auto o = obs_index.find(m.observer); o != obs_index.end()) {
      std::vector<std::size_t> ts;
      flat(o->second, tv, ts);
      for (std::size_t s : ts) pv.push_back(a.predicted[s]), xv.push_back(a.expected[s]);
    } else {
      ev.warnings.push_back("model " + m.name + ": observer '" + m.observer + "' has no ratings in the study");
    }
    a.report = evaluate_votes(tv, pv, xv, K);
    if (const ObserverBaselines* b = ev.baselines_of(a)) {
      a.share_of_ceiling = a.report.exact_accuracy / b->truth.bayes_ceiling;
      if (!std::isnan(b->bayes_expected_accuracy)) {  // every test stimulus of the observer has its truth
        const auto& sp = b->truth.stimulus_probabilities;
        std::vector<int> votes;
        std::vector<std::size_t> ts;
        flat(std::size_t(ev.observer_index(a.observer)), votes, ts);
        double expected = 0;
        for (std::size_t s : ts) expected += sp.at(ev.test_images[s])[std::size_t(a.predicted[s] - 1)];
        a.expected_accuracy = expected / double(ts.size());
        a.expected_share_of_ceiling = a.expected_accuracy / b->truth.bayes_ceiling;
      }
    }
    ev.aios.push_back(std::move(a));
  }

  // Cross comparison: [model][observer], each vote counts.
  for (const auto& a : ev.aios) {
    std::vector<double> row(O, kNaN);
    for (std::size_t o = 0; o < O; ++o) {
      long hit = 0, total = 0;
      for (std::size_t s = 0; s < N; ++s)
        for (int v : ev.test_votes[o][s]) ++total, hit += v == a.predicted[s];
      if (total) row[o] = double(hit) / double(total);
    }
    ev.cross.push_back(std::move(row));
  }

  // Panel.
  PanelEvaluation& p = ev.panel;
  std::vector<const AioEvaluation*> members;
  for (const auto& a : ev.aios)
    if (!a.observer.empty()) members.push_back(&a), p.members.push_back(a.name);
  std::vector<double> mos(N);
  for (std::size_t s = 0; s < N; ++s) mos[s] = ev.mos[s].mean;
  if (!members.empty()) {
    p.mean_argmax.assign(N, 0);
    p.mean_expected.assign(N, 0);
    for (const AioEvaluation* a : members)
      for (std::size_t s = 0; s < N; ++s) {
        p.mean_argmax[s] += double(a->predicted[s]) / double(members.size());
        p.mean_expected[s] += a->expected[s] / double(members.size());
      }
    p.argmax = evaluate_panel(p.mean_argmax, mos);
    p.expected = evaluate_panel(p.mean_expected, mos);
  }
  std::size_t looked = 0;
  for (const auto& b : ev.baselines) looked += b.q_lookup_available;
  if (looked) {
    p.q_lookup_mean.assign(N, 0);
    for (const auto& b : ev.baselines)
      if (b.q_lookup_available)
        for (std::size_t s = 0; s < N; ++s) p.q_lookup_mean[s] += double(b.q_predictions[s]) / double(looked);
    p.q_lookup = evaluate_panel(p.q_lookup_mean, mos);
  }
  return ev;
}

// ---------------------------------------------------------------------------------------------
// Writing the report

/// @brief A JSON value as indented text (2 spaces); arrays holding no array or object, and
/// objects holding only numbers (e.g. a Q look-up table), stay on one line.
inline std::string json_pretty(const json::Value& v, int indent = 0) {
  const std::string pad(std::size_t(indent) * 2, ' '), pad2(std::size_t(indent + 1) * 2, ' ');
  const auto flat_array = [](const json::Value& a) {
    if (!a.is_array()) return false;
    for (const auto& e : a.as_array()) if (e.is_array() || e.is_object()) return false;
    return true;
  };
  if (v.is_array()) {
    if (v.as_array().empty() || flat_array(v)) return v.dump();
    std::string s = "[\n";
    const auto& a = v.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) s += pad2 + json_pretty(a[i], indent + 1) + (i + 1 < a.size() ? ",\n" : "\n");
    return s + pad + "]";
  }
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (o.empty()) return "{}";
    if (std::all_of(o.begin(), o.end(), [](const auto& m) { return m.second.is_number(); })) return v.dump();
    std::string s = "{\n";
    for (std::size_t i = 0; i < o.size(); ++i)
      s += pad2 + json::escape(o[i].first) + ": " + json_pretty(o[i].second, indent + 1) + (i + 1 < o.size() ? ",\n" : "\n");
    return s + pad + "}";
  }
  return v.dump();
}

namespace detail {

inline json::Value jnum(double d) { return json::Value::make_number(d); }
inline json::Value jstr(std::string s) { return json::Value::make_string(std::move(s)); }
inline json::Value jreport(const ClassificationReport& r) {
  return json::parse(classification_report_to_json(r), "classification_report_to_json");
}
inline json::Value jpanel(const PanelReport& r, std::size_t n) {
  json::Value o = json::Value::make_object();
  o.set("n", jnum(double(n)));
  o.set("plcc", jnum(r.plcc));
  o.set("srcc", jnum(r.srcc));
  o.set("krcc", jnum(r.krcc));
  o.set("rmse", jnum(r.rmse));
  return o;
}
inline json::Value jself(const SelfAgreement& a) {
  json::Value o = json::Value::make_object();
  o.set("pairs", jnum(double(a.pairs)));
  o.set("exact", jnum(a.exact));
  o.set("within_one", jnum(a.within_one));
  o.set("rmse", jnum(a.rmse));
  return o;
}
template <class T>
json::Value jarray(const std::vector<T>& v) {
  json::Value a = json::Value::make_array();
  for (const auto& x : v) a.push_back(jnum(double(x)));
  return a;
}
inline std::string fd(double v) { return format_double(v); }

}  // namespace detail

/// @brief The whole evaluation as one JSON object: {"K", "test_stimuli": N, "observers": [..],
/// "warnings", "observer_baselines": {id: {train_votes, test_votes, majority_vote, majority
/// (report), q_lookup_available, q_table {Q: vote}, q_lookup (report), self_agreement {pairs,
/// exact, within_one, rmse}, ground_truth {bayes_ceiling, expected_self_agreement,
/// q_lookup_accuracy, bayes_realized_accuracy, bayes_expected_accuracy,
/// q_lookup_expected_accuracy}}}, "aios": [{name,
/// observer, target ("observer votes"|"band"), report, share_of_ceiling, expected_accuracy,
/// expected_share_of_ceiling, vs_q_lookup, vs_majority}], "cross_accuracy": {rows: [names], columns:
/// [ids], values [M][O]}, "panel": {members, argmax, expected, q_lookup: {n, plcc, srcc, krcc,
/// rmse}}, "rating_distribution": {id: [B][K]}} plus `extra` members appended at the end
/// (e.g. the program's settings). NaN is null.
inline json::Value summary_json(const StudyEvaluation& ev, const std::vector<std::pair<std::string, json::Value>>& extra = {}) {
  using detail::jnum, detail::jstr;
  json::Value root = json::Value::make_object();
  root.set("K", jnum(ev.K));
  root.set("test_stimuli", jnum(double(ev.test_images.size())));
  json::Value obs = json::Value::make_array();
  for (const auto& o : ev.observers) obs.push_back(jstr(o));
  root.set("observers", obs);
  json::Value warn = json::Value::make_array();
  for (const auto& w : ev.warnings) warn.push_back(jstr(w));
  root.set("warnings", warn);

  json::Value base = json::Value::make_object();
  for (const auto& b : ev.baselines) {
    json::Value o = json::Value::make_object();
    o.set("train_votes", jnum(double(b.train_votes)));
    o.set("test_votes", jnum(double(b.test_votes)));
    o.set("majority_vote", jnum(b.majority_vote));
    o.set("majority", detail::jreport(b.majority));
    o.set("q_lookup_available", json::Value::make_bool(b.q_lookup_available));
    json::Value table = json::Value::make_object();
    for (const auto& [q, v] : b.q_table) table.set(std::to_string(q), jnum(v));
    o.set("q_table", table);
    o.set("q_lookup", detail::jreport(b.q_lookup));
    o.set("self_agreement", detail::jself(b.self));
    json::Value gt = json::Value::make_object();
    gt.set("bayes_ceiling", jnum(b.truth.bayes_ceiling));
    gt.set("expected_self_agreement", jnum(b.truth.expected_self_agreement));
    gt.set("q_lookup_accuracy", jnum(b.truth.q_lookup_accuracy));
    gt.set("bayes_realized_accuracy", jnum(b.bayes_realized_accuracy));
    gt.set("bayes_expected_accuracy", jnum(b.bayes_expected_accuracy));
    gt.set("q_lookup_expected_accuracy", jnum(b.q_lookup_expected_accuracy));
    o.set("ground_truth", gt);
    base.set(b.observer, o);
  }
  root.set("observer_baselines", base);

  json::Value aios = json::Value::make_array();
  for (const auto& a : ev.aios) {
    json::Value o = json::Value::make_object();
    o.set("name", jstr(a.name));
    o.set("observer", a.observer.empty() ? json::Value() : jstr(a.observer));
    o.set("target", jstr(a.observer.empty() ? "band" : "observer votes"));
    o.set("report", detail::jreport(a.report));
    o.set("share_of_ceiling", jnum(a.share_of_ceiling));
    o.set("expected_accuracy", jnum(a.expected_accuracy));
    o.set("expected_share_of_ceiling", jnum(a.expected_share_of_ceiling));
    const ObserverBaselines* b = ev.baselines_of(a);
    o.set("vs_q_lookup", jnum(b ? a.report.exact_accuracy - b->q_lookup.exact_accuracy : kNaN));
    o.set("vs_majority", jnum(b ? a.report.exact_accuracy - b->majority.exact_accuracy : kNaN));
    aios.push_back(o);
  }
  root.set("aios", aios);

  json::Value cross = json::Value::make_object();
  json::Value rows = json::Value::make_array(), values = json::Value::make_array();
  for (std::size_t m = 0; m < ev.aios.size(); ++m) rows.push_back(jstr(ev.aios[m].name)), values.push_back(detail::jarray(ev.cross[m]));
  cross.set("rows", rows);
  cross.set("columns", obs);
  cross.set("values", values);
  root.set("cross_accuracy", cross);

  json::Value panel = json::Value::make_object();
  json::Value members = json::Value::make_array();
  for (const auto& m : ev.panel.members) members.push_back(jstr(m));
  panel.set("members", members);
  panel.set("argmax", detail::jpanel(ev.panel.argmax, ev.panel.mean_argmax.size()));
  panel.set("expected", detail::jpanel(ev.panel.expected, ev.panel.mean_expected.size()));
  panel.set("q_lookup", detail::jpanel(ev.panel.q_lookup, ev.panel.q_lookup_mean.size()));
  root.set("panel", panel);

  json::Value dist = json::Value::make_object();
  for (std::size_t o = 0; o < ev.observers.size(); ++o) {
    json::Value bands = json::Value::make_array();
    for (const auto& b : ev.distribution[o]) bands.push_back(detail::jarray(b));
    dist.set(ev.observers[o], bands);
  }
  root.set("rating_distribution", dist);
  for (const auto& [k, v] : extra) root.set(k, v);
  return root;
}

/// @brief Votes as text separated by spaces ("3 4"); empty for none.
inline std::string join_votes(const std::vector<int>& votes) {
  std::string s;
  for (int v : votes) {  // (appending, not "literal + temporary": g++ 12 -O3 warns -Wrestrict there)
    if (!s.empty()) s += ' ';
    s += std::to_string(v);
  }
  return s;
}

/// @brief Write the report files into `dir` (created), each atomically:
///  - summary.json: summary_json(ev, extra), indented;
///  - per_aio.csv: one row per model: aio, observer, target, n_votes, the ClassificationReport
///    numbers, share_of_ceiling, and beside them the observer's baselines (majority vote and its
///    accuracy, Q look-up accuracy / within-one / MAE / kappa, self-agreement pairs / exact /
///    within-one / RMSE, ground-truth Bayes ceiling, expected self-agreement, generator's Q
///    look-up accuracy), the differences vs the Q look-up and the majority, and with per-stimulus
///    ground truth the expected accuracy and its share of the ceiling, the Bayes predictor's
///    realised and expected accuracy on the observer's test votes and the Q look-up's expected
///    accuracy;
///  - cross_accuracy.csv: aio, then observer_<id> per observer: cross[m][o];
///  - panel.csv: predictor (aio_argmax_mean | aio_expected_mean | q_lookup_mean), members, n,
///    plcc, srcc, krcc, rmse;
///  - mos_test.csv: image, q, band, n_votes, mos, ci95_halfwidth, ci95_low, ci95_high,
///    panel_argmax_mean, panel_expected_mean, q_lookup_mean (one row per test stimulus);
///  - confusion_<name>.csv per model (write_confusion_csv());
///  - predictions.csv: aio, observer, image, q, band, observer_votes (space-separated; empty for
///    AIO0), predicted_vote, expected_vote, p_1..p_K.
/// Numbers as format_double() (17 digits, "nan" when undefined). Throws vitiq::IoError when a
/// file cannot be written.
inline void write_report(const StudyEvaluation& ev, const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, json::Value>>& extra = {}) {
  using detail::fd;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create: " + ec.message());
  write_text_file_atomic(dir / "summary.json", json_pretty(summary_json(ev, extra)) + "\n");

  {
    const std::vector<std::string> header{
        "aio", "observer", "target", "n_votes", "exact_accuracy", "within_one", "mae_argmax", "rmse_argmax",
        "mae_expected", "rmse_expected", "macro_f1", "quadratic_kappa", "plcc", "srcc", "krcc", "share_of_ceiling",
        "majority_vote", "majority_accuracy", "q_lookup_accuracy", "q_lookup_within_one", "q_lookup_mae",
        "q_lookup_kappa", "self_agreement_pairs", "self_agreement_exact", "self_agreement_within_one",
        "self_agreement_rmse", "bayes_ceiling", "expected_self_agreement", "truth_q_lookup_accuracy",
        "accuracy_minus_q_lookup", "accuracy_minus_majority", "expected_accuracy", "expected_share_of_ceiling",
        "bayes_realized_accuracy", "bayes_expected_accuracy", "q_lookup_expected_accuracy"};
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : ev.aios) {
      const auto& r = a.report;
      const ObserverBaselines* b = ev.baselines_of(a);
      const ObserverBaselines none{};
      const ObserverBaselines& x = b ? *b : none;
      const double nan = kNaN;
      rows.push_back({a.name, a.observer, a.observer.empty() ? "band" : "observer votes", std::to_string(r.count),
                      fd(r.exact_accuracy), fd(r.within_one), fd(r.mae_argmax), fd(r.rmse_argmax), fd(r.mae_expected),
                      fd(r.rmse_expected), fd(r.macro_f1), fd(r.quadratic_kappa), fd(r.plcc), fd(r.srcc), fd(r.krcc),
                      fd(a.share_of_ceiling), b ? std::to_string(x.majority_vote) : "",
                      fd(b ? x.majority.exact_accuracy : nan), fd(b ? x.q_lookup.exact_accuracy : nan),
                      fd(b ? x.q_lookup.within_one : nan), fd(b ? x.q_lookup.mae_argmax : nan),
                      fd(b ? x.q_lookup.quadratic_kappa : nan), std::to_string(x.self.pairs), fd(x.self.exact),
                      fd(x.self.within_one), fd(x.self.rmse), fd(x.truth.bayes_ceiling),
                      fd(x.truth.expected_self_agreement), fd(x.truth.q_lookup_accuracy),
                      fd(b ? r.exact_accuracy - x.q_lookup.exact_accuracy : nan),
                      fd(b ? r.exact_accuracy - x.majority.exact_accuracy : nan), fd(a.expected_accuracy),
                      fd(a.expected_share_of_ceiling), fd(x.bayes_realized_accuracy), fd(x.bayes_expected_accuracy),
                      fd(x.q_lookup_expected_accuracy)});
    }
    write_csv(dir / "per_aio.csv", header, rows);
  }
  {
    std::vector<std::string> header{"aio"};
    for (const auto& o : ev.observers) header.push_back("observer_" + o);
    std::vector<std::vector<std::string>> rows;
    for (std::size_t m = 0; m < ev.aios.size(); ++m) {
      std::vector<std::string> row{ev.aios[m].name};
      for (double v : ev.cross[m]) row.push_back(fd(v));
      rows.push_back(std::move(row));
    }
    write_csv(dir / "cross_accuracy.csv", header, rows);
  }
  {
    std::string members;
    for (const auto& m : ev.panel.members) members += (members.empty() ? "" : " ") + m;
    const auto row = [&](const char* name, const std::string& who, std::size_t n, const PanelReport& r) {
      return std::vector<std::string>{name, who, std::to_string(n), fd(r.plcc), fd(r.srcc), fd(r.krcc), fd(r.rmse)};
    };
    std::string lookups;
    for (const auto& b : ev.baselines)
      if (b.q_lookup_available) lookups += (lookups.empty() ? "q_lookup_" : " q_lookup_") + b.observer;
    const std::vector<std::vector<std::string>> rows{
        row("aio_argmax_mean", members, ev.panel.mean_argmax.size(), ev.panel.argmax),
        row("aio_expected_mean", members, ev.panel.mean_expected.size(), ev.panel.expected),
        row("q_lookup_mean", lookups, ev.panel.q_lookup_mean.size(), ev.panel.q_lookup)};
    write_csv(dir / "panel.csv", std::vector<std::string>{"predictor", "members", "n", "plcc", "srcc", "krcc", "rmse"}, rows);
  }
  {
    std::vector<std::vector<std::string>> rows;
    for (std::size_t s = 0; s < ev.test_images.size(); ++s) {
      const MosStats& m = ev.mos[s];
      const auto at = [&](const std::vector<double>& v) { return v.empty() ? kNaN : v[s]; };
      rows.push_back({ev.test_images[s], std::to_string(ev.test_q[s]), std::to_string(ev.test_band[s]), std::to_string(m.n),
                      fd(m.mean), fd(m.ci95_halfwidth), fd(m.mean - m.ci95_halfwidth), fd(m.mean + m.ci95_halfwidth),
                      fd(at(ev.panel.mean_argmax)), fd(at(ev.panel.mean_expected)), fd(at(ev.panel.q_lookup_mean))});
    }
    write_csv(dir / "mos_test.csv",
              std::vector<std::string>{"image", "q", "band", "n_votes", "mos", "ci95_halfwidth", "ci95_low", "ci95_high",
                                       "panel_argmax_mean", "panel_expected_mean", "q_lookup_mean"},
              rows);
  }
  for (const auto& a : ev.aios) write_confusion_csv(dir / ("confusion_" + a.name + ".csv"), a.report.confusion);
  {
    std::vector<std::string> header{"aio", "observer", "image", "q", "band", "observer_votes", "predicted_vote", "expected_vote"};
    for (int c = 1; c <= ev.K; ++c) header.push_back(std::string("p_").append(std::to_string(c)));
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : ev.aios) {
      const int o = a.observer.empty() ? -1 : ev.observer_index(a.observer);
      for (std::size_t s = 0; s < ev.test_images.size(); ++s) {
        std::vector<std::string> row{a.name, a.observer, ev.test_images[s], std::to_string(ev.test_q[s]),
                                     std::to_string(ev.test_band[s]),
                                     o >= 0 ? join_votes(ev.test_votes[std::size_t(o)][s]) : std::string(),
                                     std::to_string(a.predicted[s]), fd(a.expected[s])};
        for (int c = 0; c < ev.K; ++c) row.push_back(fd(a.probabilities[s * std::size_t(ev.K) + std::size_t(c)]));
        rows.push_back(std::move(row));
      }
    }
    write_csv(dir / "predictions.csv", header, rows);
  }
}

/// @brief The terminal summary: one line per model with exact accuracy, within +-1, MAE (arg-max),
/// quadratic kappa, PLCC (expected vote), and beside them the observer's Q look-up accuracy with
/// the difference, the majority-vote accuracy, the self-agreement (exact), the Bayes ceiling and
/// the share of it reached; with per-stimulus ground truth one line per AIO with its expected
/// accuracy and the Bayes predictor's score on the same votes; then the panel lines. "n/a" for
/// unavailable numbers. AIO0's line is scored against the JPEG band.
inline std::string format_table(const StudyEvaluation& ev) {
  const auto num = [](double v, int prec = 3) {
    if (std::isnan(v)) return std::string("n/a");
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return std::string(b);
  };
  const auto sgn = [](double v) {
    if (std::isnan(v)) return std::string("n/a");
    char b[32];
    std::snprintf(b, sizeof b, "%+.3f", v);
    return std::string(b);
  };
  const std::vector<std::string> head{"AIO", "target", "n", "exact", "+-1", "MAE", "kappa", "PLCC",
                                      "Q-look", "vs Q", "major.", "self", "ceiling", "share"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : ev.aios) {
    const auto& r = a.report;
    const ObserverBaselines* b = ev.baselines_of(a);
    rows.push_back({a.name, a.observer.empty() ? "band" : "obs " + a.observer, std::to_string(r.count),
                    num(r.exact_accuracy), num(r.within_one), num(r.mae_argmax), num(r.quadratic_kappa), num(r.plcc),
                    num(b ? b->q_lookup.exact_accuracy : kNaN),
                    sgn(b ? r.exact_accuracy - b->q_lookup.exact_accuracy : kNaN),
                    num(b ? b->majority.exact_accuracy : kNaN), num(b ? b->self.exact : kNaN),
                    num(b ? b->truth.bayes_ceiling : kNaN), num(a.share_of_ceiling * 100, 0) + (std::isnan(a.share_of_ceiling) ? "" : "%")});
  }
  std::vector<std::size_t> width(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  const auto line = [&](const std::vector<std::string>& r) {
    for (std::size_t c = 0; c < r.size(); ++c) {
      const std::string pad(width[c] - r[c].size(), ' ');
      out += c < 2 ? r[c] + pad : pad + r[c];  // names left, numbers right
      out += c + 1 < r.size() ? "  " : "\n";
    }
  };
  line(head);
  std::size_t total = 0;
  for (auto w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& r : rows) line(r);
  bool truth_lines = false;
  for (const auto& a : ev.aios) {
    if (std::isnan(a.expected_accuracy)) continue;
    const ObserverBaselines* b = ev.baselines_of(a);
    if (!truth_lines)
      out += "\nagainst the true vote distributions (per-stimulus ground truth: no sampling noise of the test votes):\n";
    truth_lines = true;
    char line_text[300];
    std::snprintf(line_text, sizeof line_text,
                  "  %-16s expected exact %s = %s%% of the ceiling (Q look-up %s); the Bayes predictor scores %s "
                  "on these votes (expected %s)\n",
                  a.name.c_str(), num(a.expected_accuracy).c_str(), num(a.expected_share_of_ceiling * 100, 1).c_str(),
                  num(b->q_lookup_expected_accuracy).c_str(), num(b->bayes_realized_accuracy).c_str(),
                  num(b->bayes_expected_accuracy).c_str());
    out += line_text;
  }
  out += "\npanel vs MOS (" + std::to_string(ev.test_images.size()) + " test stimuli, " +
         std::to_string(ev.panel.members.size()) + " AIOs):\n";
  const auto panel = [&](const char* name, const PanelReport& p) {
    char b[200];
    std::snprintf(b, sizeof b, "  %-22s PLCC %s  SRCC %s  KRCC %s  RMSE %s\n", name, num(p.plcc).c_str(),
                  num(p.srcc).c_str(), num(p.krcc).c_str(), num(p.rmse).c_str());
    out += b;
  };
  panel("mean arg-max vote", ev.panel.argmax);
  panel("mean expected vote", ev.panel.expected);
  panel("mean Q look-up (blind)", ev.panel.q_lookup);
  return out;
}

}  // namespace vitiq::eval
