// vitiq/data/ground_truth.hpp -- what a simulated study knows that a real one does not: per
// observer the Bayes ceiling (best achievable exact accuracy on the test split), the expected
// self-agreement and the image-blind Q look-up accuracy (ground_truth.json), and every observer's
// true vote distribution on every stimulus (ground_truth_stimuli.csv, columns obs<id>_p<k>).
//
// One definition for both sides: vitiq-make-dataset (build_study) writes these fields with
// put_observer_truth() and stimulus_truth_column(), and vitiq-eval reads them with
// read_ground_truth() and read_stimulus_truth(), so the key names live here only.
//
// Invariant: a field that is present but not what this file says (a string for a number, a
// probability outside [0, 1], a row not summing to 1) is a FormatError naming the file and the key
// or line; a real study simply has neither file (an empty GroundTruth).
#pragma once

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/data/csv.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::data {

/// @brief What a simulated study knows about one observer (NaN where not given).
struct GroundTruthObserver {
  double bayes_ceiling = std::numeric_limits<double>::quiet_NaN();            ///< best exact accuracy on the test split
  double expected_self_agreement = std::numeric_limits<double>::quiet_NaN();  ///< expected exact agreement of two votes
  double q_lookup_accuracy = std::numeric_limits<double>::quiet_NaN();        ///< the generator's Q look-up on the test votes
  /// image -> the observer's true vote distribution [K] (read_stimulus_truth(); empty without it).
  std::map<std::string, std::vector<double>> stimulus_probabilities;
};

/// @brief Observer id -> ground truth. Empty when the study has none.
using GroundTruth = std::map<std::string, GroundTruthObserver>;

/// @brief The keys of ground_truth.json that carry a GroundTruthObserver: in each entry of the
/// top-level "observers" array, "id", "expected"."self_agreement_exact", "test"."bayes_ceiling"
/// and "test"."q_lookup_accuracy".
namespace ground_truth_keys {
inline constexpr std::string_view observers = "observers";                 ///< the top-level array
inline constexpr std::string_view id = "id";                               ///< an entry's observer id
inline constexpr std::string_view expected = "expected";                   ///< an entry's expected statistics
inline constexpr std::string_view test = "test";                           ///< an entry's test-split statistics
inline constexpr std::string_view self_agreement = "self_agreement_exact"; ///< in "expected"
inline constexpr std::string_view ceiling = "bayes_ceiling";               ///< in "test"
inline constexpr std::string_view q_lookup = "q_lookup_accuracy";          ///< in "test"
}  // namespace ground_truth_keys

/// @brief Write the fields of `g` into an observer's "expected" and "test" objects of
/// ground_truth.json (other members of those objects are the writer's own).
inline void put_observer_truth(json::Value& expected, json::Value& test, const GroundTruthObserver& g) {
  namespace k = ground_truth_keys;
  expected.set(std::string(k::self_agreement), json::Value::make_number(g.expected_self_agreement));
  test.set(std::string(k::ceiling), json::Value::make_number(g.bayes_ceiling));
  test.set(std::string(k::q_lookup), json::Value::make_number(g.q_lookup_accuracy));
}

/// @brief The per-observer ground truth of a parsed ground_truth.json.
/// @param source named in errors (the file)
/// @throws FormatError "<source>: observers[i].test.bayes_ceiling: ..." for a missing "observers"
///         array, an entry without a string "id", a missing "expected" / "test" object or a field
///         that is neither a number in [0, 1] nor null (null: NaN, not known).
inline GroundTruth parse_ground_truth(const json::Value& root, std::string_view source) {
  namespace k = ground_truth_keys;
  const auto fail = [&](const std::string& where, const std::string& what) {
    return FormatError(std::string(source) + ": " + where + ": " + what);
  };
  const json::Value* obs = root.is_object() ? root.find(k::observers) : nullptr;
  if (!obs || !obs->is_array()) throw fail(std::string(k::observers), "missing or not an array");
  GroundTruth out;
  std::size_t i = 0;
  for (const auto& e : obs->as_array()) {
    const std::string at = std::string(k::observers) + "[" + std::to_string(i++) + "]";
    const json::Value* id = e.is_object() ? e.find(k::id) : nullptr;
    if (!id || !id->is_string() || id->as_string().empty()) throw fail(at + "." + std::string(k::id), "missing or not a string");
    const auto number = [&](std::string_view object, std::string_view key) {
      const std::string path = at + "." + std::string(object) + "." + std::string(key);
      const json::Value* o = e.find(object);
      if (!o || !o->is_object()) throw fail(at + "." + std::string(object), "missing or not an object");
      const json::Value* v = o->find(key);
      if (!v) throw fail(path, "missing");
      if (v->is_null()) return std::numeric_limits<double>::quiet_NaN();
      if (!v->is_number() || !(v->as_number() >= 0 && v->as_number() <= 1)) throw fail(path, "not a number in [0, 1]");
      return v->as_number();
    };
    GroundTruthObserver g;
    g.expected_self_agreement = number(k::expected, k::self_agreement);
    g.bayes_ceiling = number(k::test, k::ceiling);
    g.q_lookup_accuracy = number(k::test, k::q_lookup);
    if (!out.emplace(id->as_string(), std::move(g)).second) throw fail(at + ".id", "observer '" + id->as_string() + "' listed twice");
  }
  return out;
}

/// @brief parse_ground_truth() of the file at `path`; empty when the file does not exist (a real
/// study). @throws IoError when it exists but cannot be read, FormatError when it is malformed.
inline GroundTruth read_ground_truth(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  const auto bytes = io::read_file(path);
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return parse_ground_truth(json::parse(text, path.string()), path.string());
}

/// @brief The column of ground_truth_stimuli.csv holding observer `id`'s probability of vote `k`
/// (1-based): "obs<id>_p<k>".
inline std::string stimulus_truth_column(std::string_view id, int k) {
  return "obs" + std::string(id) + "_p" + std::to_string(k);
}

/// @brief Add the per-stimulus ground truth of ground_truth_stimuli.csv at `path` to `truth`: a
/// column "image" and, per observer id, the columns stimulus_truth_column(id, 1..K). Observers
/// missing from `truth` are added. Returns the number of observers read (0 when the file does not
/// exist, `truth` then unchanged).
/// @throws IoError when the file exists but cannot be read; FormatError naming file, line and
/// column for a missing "image" column, an incomplete set of obs<id>_p columns, a field that is not
/// a number, a probability outside [0, 1] or a row whose probabilities do not sum to 1 (+-1e-3).
inline std::size_t read_stimulus_truth(const std::filesystem::path& path, GroundTruth& truth, int K = 5) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const CsvTable t = read_csv_table(path);
  const std::size_t ci = t.require("image");
  std::map<std::string, std::vector<int>> columns;  // observer id -> column of p_1 .. p_K (-1 missing)
  for (std::size_t c = 0; c < t.header.size(); ++c) {
    const std::string& h = t.header[c];
    const auto p = h.rfind("_p");
    if (h.rfind("obs", 0) != 0 || p == std::string::npos || p <= 3) continue;
    const auto k = parse_int(std::string_view(h).substr(p + 2));
    if (!k || *k < 1 || *k > K) continue;
    const std::string id = h.substr(3, p - 3);
    if (stimulus_truth_column(id, int(*k)) != h) continue;
    auto& cols = columns[id];
    cols.resize(std::size_t(K), -1);
    cols[std::size_t(*k - 1)] = int(c);
  }
  for (const auto& [id, cols] : columns)
    for (int k = 0; k < K; ++k)
      if (cols[std::size_t(k)] < 0)
        throw FormatError(path.string() + ":1: observer " + id + " has no column '" + stimulus_truth_column(id, k + 1) + "'");
  std::map<std::string, std::map<std::string, std::vector<double>>> read;
  for (const auto& row : t.rows) {
    const std::string where = t.where(row);
    for (const auto& [id, cols] : columns) {
      std::vector<double> p(static_cast<std::size_t>(K));
      double sum = 0;
      for (int k = 0; k < K; ++k) {
        const std::size_t c = std::size_t(cols[std::size_t(k)]);
        const auto v = parse_double(row.fields[c]);
        if (!v || !(*v >= 0 && *v <= 1))
          throw FormatError(where + "column '" + t.header[c] + "': '" + std::string(trim(row.fields[c])) + "' is not a probability");
        p[std::size_t(k)] = *v;
        sum += *v;
      }
      if (std::abs(sum - 1) > 1e-3)
        throw FormatError(where + "observer " + id + "'s probabilities sum to " + std::to_string(sum) + ", not 1");
      read[id][std::string(trim(row.fields[ci]))] = std::move(p);
    }
  }
  for (auto& [id, m] : read) truth[id].stimulus_probabilities = std::move(m);
  return columns.size();
}

}  // namespace vitiq::data
