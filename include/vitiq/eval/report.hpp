// vitiq/eval/report.hpp -- machine-readable evaluation reports: CSV files (data/csv.hpp's RFC 4180 quoting,
// written atomically), a ClassificationReport as a JSON object, and confusion matrices as CSV.
//
// Numbers are written locale-independently: doubles as printf's "%.17g" would (std::to_chars,
// general format, 17 significant digits, so they read back bit-exactly); NaN and +-inf (which
// JSON cannot express) as null in JSON.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/data/csv.hpp"
#include "vitiq/error.hpp"
#include "vitiq/eval/metrics.hpp"
#include "vitiq/io/atomic_file.hpp"

namespace vitiq::eval {

/// @brief A double as printf("%.17g") would write it in the "C" locale (round-trips exactly);
/// "nan", "inf" or "-inf" for non-finite values.
inline std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 17);
  return std::string(buf, res.ptr);
}

/// @brief A double as a JSON value: format_double() for finite values, null for NaN and +-inf.
inline std::string json_number(double v) { return std::isfinite(v) ? format_double(v) : std::string("null"); }

// CSV fields and records: the study tables' writer (data/csv.hpp), one definition for both.
using data::csv_field;
using data::csv_line;

/// @brief Write `text` to `path` atomically with vitiq::io::atomic_write (a temporary file in
/// the same directory, fsync, rename): readers see the old file or the whole new one, never a
/// part. The directory must exist. Throws vitiq::IoError naming the file when it cannot be
/// written (the temporary file is removed then).
inline void write_text_file_atomic(const std::filesystem::path& path, std::string_view text) {
  io::atomic_write(path, text);
}

/// @brief Write a CSV file atomically (write_text_file_atomic()): the header line (none if
/// `header` is empty), then one line per row, fields quoted as csv_field(), lines ending in "\n".
/// Throws std::invalid_argument, before writing anything, when `header` is non-empty and a row has
/// another number of fields; vitiq::IoError when the file cannot be written.
inline void write_csv(const std::filesystem::path& path, std::span<const std::string> header,
                      std::span<const std::vector<std::string>> rows) {
  std::string text;
  if (!header.empty()) text += csv_line(header);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (!header.empty() && rows[r].size() != header.size())
      throw std::invalid_argument("vitiq::eval::write_csv: row " + std::to_string(r) + " of '" + path.string() +
                                  "' has " + std::to_string(rows[r].size()) + " fields, the header " +
                                  std::to_string(header.size()));
    text += csv_line(rows[r]);
  }
  write_text_file_atomic(path, text);
}

/// @brief A ClassificationReport as one line of JSON (no trailing newline), keys in this order:
/// {"count":N,"exact_accuracy":..,"within_one":..,"mae_argmax":..,"rmse_argmax":..,
/// "mae_expected":..,"rmse_expected":..,"macro_f1":..,"quadratic_kappa":..,"plcc":..,"srcc":..,
/// "krcc":..,"confusion":[[..],..]} -- doubles as json_number() (%.17g, NaN/inf as null), the
/// confusion as an array of rows [true vote - 1][predicted vote - 1].
inline std::string classification_report_to_json(const ClassificationReport& r) {
  std::string s = "{\"count\":" + std::to_string(r.count);
  const auto field = [&](const char* key, double v) {
    s += ",\"";
    s += key;
    s += "\":";
    s += json_number(v);
  };
  field("exact_accuracy", r.exact_accuracy);
  field("within_one", r.within_one);
  field("mae_argmax", r.mae_argmax);
  field("rmse_argmax", r.rmse_argmax);
  field("mae_expected", r.mae_expected);
  field("rmse_expected", r.rmse_expected);
  field("macro_f1", r.macro_f1);
  field("quadratic_kappa", r.quadratic_kappa);
  field("plcc", r.plcc);
  field("srcc", r.srcc);
  field("krcc", r.krcc);
  s += ",\"confusion\":[";
  for (std::size_t i = 0; i < r.confusion.size(); ++i) {
    if (i) s += ',';
    s += '[';
    for (std::size_t j = 0; j < r.confusion[i].size(); ++j) {
      if (j) s += ',';
      s += std::to_string(r.confusion[i][j]);
    }
    s += ']';
  }
  s += "]}";
  return s;
}

/// @brief A K x K confusion matrix as CSV text: the header "true_vote,pred_1,..,pred_K", then
/// one line per true vote k = 1..K: "k,count(true k, predicted 1),..". Throws
/// std::invalid_argument when the matrix is not square.
inline std::string confusion_to_csv(const std::vector<std::vector<long>>& confusion) {
  const std::size_t k = confusion.size();
  std::string s = "true_vote";
  for (std::size_t j = 0; j < k; ++j) s += ",pred_" + std::to_string(j + 1);
  s += '\n';
  for (std::size_t i = 0; i < k; ++i) {
    if (confusion[i].size() != k)
      throw std::invalid_argument("vitiq::eval::confusion_to_csv: row " + std::to_string(i) + " has " +
                                  std::to_string(confusion[i].size()) + " entries, expected " + std::to_string(k));
    s += std::to_string(i + 1);
    for (long c : confusion[i]) s += ',' + std::to_string(c);
    s += '\n';
  }
  return s;
}

/// @brief Write confusion_to_csv(confusion) to `path` atomically (write_text_file_atomic()).
inline void write_confusion_csv(const std::filesystem::path& path, const std::vector<std::vector<long>>& confusion) {
  write_text_file_atomic(path, confusion_to_csv(confusion));
}

}  // namespace vitiq::eval
