// vitiq/data/csv.hpp -- the CSV reader and writer behind every table of a study (ratings, splits,
// ground truth).
//
// Reading follows RFC 4180 and what spreadsheets and MATLAB write: fields separated by commas,
// optionally quoted ("a, b" and "say ""hi""" are single fields; a quoted field may span lines),
// LF or CRLF line ends, an optional UTF-8 byte-order mark, blank lines (also trailing ones) ignored.
// Writing quotes a field only when it has to and ends lines with LF.
//
// Invariant: every error names the source and the 1-based line of the record at fault,
// "ratings.csv:17: ...", and every record carries the line where it starts, so callers can name
// it too.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"

namespace vitiq::data {

/// @brief One CSV record: its fields (quotes removed) and the 1-based line where it starts.
struct CsvRecord {
  std::vector<std::string> fields;
  std::size_t line = 0;
};

namespace detail {
inline std::string_view trim_view(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace detail

/// @brief Split CSV text into records.
/// @param text    the whole file content (a leading UTF-8 BOM is skipped)
/// @param source  names the text in error messages (usually the file name)
/// @return the records in order; blank lines (no characters, or only a CR) give no record
/// @throws FormatError "<source>:<line>: unterminated quoted field" or "...: character 'x' after
///         a closing quote" on malformed quoting.
inline std::vector<CsvRecord> parse_csv(std::string_view text, std::string_view source) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<CsvRecord> out;
  CsvRecord rec;
  std::string field;
  std::size_t line = 1;
  bool in_record = false;   // some character of the current record has been seen
  bool field_quoted = false;
  auto fail = [&](std::size_t at, const std::string& what) -> void {
    throw FormatError(std::string(source) + ":" + std::to_string(at) + ": " + what);
  };
  auto end_record = [&] {
    // A line of spaces only is blank too (no record), unless it had a separator or a quote.
    if (in_record && rec.fields.empty() && !field_quoted && detail::trim_view(field).empty()) in_record = false;
    if (in_record) {
      rec.fields.push_back(std::move(field));
      out.push_back(std::move(rec));
    }
    rec = CsvRecord{};
    field.clear();
    in_record = false;
    field_quoted = false;
  };
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const char c = text[i];
    if (!in_record) rec.line = line;
    if (c == '"' && field.empty() && !field_quoted) {
      // A quoted field: read to the closing quote ("" is a literal quote).
      in_record = true;
      field_quoted = true;
      const std::size_t start_line = line;
      ++i;
      for (;;) {
        if (i >= n) fail(start_line, "unterminated quoted field");
        const char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (q == '\n') ++line;
        field += q;
        ++i;
      }
      // After the closing quote only a separator or a line end may follow.
      if (i < n && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && (i + 1 == n || text[i + 1] == '\n')))
        fail(line, std::string("character '") + text[i] + "' after a closing quote");
      continue;
    }
    if (c == ',') {
      in_record = true;
      rec.fields.push_back(std::move(field));
      field.clear();
      field_quoted = false;
      ++i;
      continue;
    }
    if (c == '\r' && (i + 1 == n || text[i + 1] == '\n')) {  // CRLF (or a final CR): a line end
      ++i;
      continue;
    }
    if (c == '\n') {
      end_record();
      ++line;
      ++i;
      continue;
    }
    if (field_quoted) fail(line, std::string("character '") + c + "' after a closing quote");
    in_record = true;
    field += c;
    ++i;
  }
  end_record();
  return out;
}

/// @brief A CSV file with a header line: column names and the data records.
struct CsvTable {
  std::string source;               ///< file name, for messages
  std::vector<std::string> header;  ///< column names, surrounding spaces removed
  std::vector<CsvRecord> rows;      ///< data records (the header excluded)

  /// @brief Index of a column, compared without regard to case or surrounding spaces; nullopt
  /// when absent.
  std::optional<std::size_t> find(std::string_view name) const {
    for (std::size_t i = 0; i < header.size(); ++i) {
      const std::string& h = header[i];
      if (h.size() == name.size() &&
          std::equal(h.begin(), h.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return i;
    }
    return std::nullopt;
  }

  /// @brief Index of a required column.
  /// @throws FormatError "<source>:1: missing column '<name>' (header: a,b,c)".
  std::size_t require(std::string_view name) const {
    if (auto i = find(name)) return *i;
    std::string h;
    for (std::size_t i = 0; i < header.size(); ++i) h += (i ? "," : "") + header[i];
    throw FormatError(source + ":1: missing column '" + std::string(name) + "' (header: " + h + ")");
  }

  /// @brief "<source>:<line>: " for a record, the prefix of every message about it.
  std::string where(const CsvRecord& r) const { return source + ":" + std::to_string(r.line) + ": "; }
};

/// @brief Text without leading and trailing spaces and tabs.
inline std::string_view trim(std::string_view s) { return detail::trim_view(s); }

/// @brief Parse text with a header line into a table.
/// @throws FormatError naming source and line: an empty file (no header), a record whose field
///         count differs from the header's ("<source>:9: 3 fields, the header has 4"), or bad quoting.
inline CsvTable parse_csv_table(std::string_view text, std::string_view source) {
  CsvTable t;
  t.source = std::string(source);
  std::vector<CsvRecord> recs = parse_csv(text, source);
  if (recs.empty()) throw FormatError(t.source + ":1: empty file, expected a header line");
  for (auto& h : recs.front().fields) t.header.emplace_back(trim(h));
  for (std::size_t i = 1; i < recs.size(); ++i) {
    if (recs[i].fields.size() != t.header.size())
      throw FormatError(t.where(recs[i]) + std::to_string(recs[i].fields.size()) + " field" +
                        (recs[i].fields.size() == 1 ? "" : "s") + ", the header has " +
                        std::to_string(t.header.size()));
    t.rows.push_back(std::move(recs[i]));
  }
  return t;
}

/// @brief Read a CSV file with a header line.
/// @throws IoError when the file cannot be read; FormatError as parse_csv_table.
inline CsvTable read_csv_table(const std::filesystem::path& path) {
  const std::vector<std::byte> bytes = io::read_file(path);
  return parse_csv_table(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                         path.string());
}

/// @brief A field as CSV text (RFC 4180): quoted (with "" for ") when it holds a comma, a quote, a
/// line break, or starts or ends with a space or tab (which the reader would trim); otherwise
/// unchanged. The one CSV writer of vitiq: study tables and evaluation reports alike.
inline std::string csv_field(std::string_view s) {
  const auto edge = [](char c) { return c == ' ' || c == '\t'; };
  const bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos || (!s.empty() && (edge(s.front()) || edge(s.back())));
  if (!quote) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

/// @brief One CSV line (LF-terminated) from fields.
inline std::string csv_line(std::span<const std::string> fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_field(fields[i]);
  }
  out += '\n';
  return out;
}

/// @brief csv_line of a braced list: csv_line({"a", "b"}).
inline std::string csv_line(std::initializer_list<std::string> fields) {
  return csv_line(std::span<const std::string>(fields.begin(), fields.size()));
}

/// @brief Parse a whole field as a base-10 integer (surrounding spaces allowed); nullopt otherwise.
inline std::optional<long long> parse_int(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  std::size_t i = 0;
  bool neg = false;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == s.size()) return std::nullopt;
  long long v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    if (v > (std::numeric_limits<long long>::max() - (s[i] - '0')) / 10) return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return neg ? -v : v;
}

/// @brief Parse a whole field as a finite decimal number (surrounding spaces allowed); nullopt
/// otherwise. Independent of the C locale's decimal separator only for '.'-free input, so the
/// caller's locale should be "C" (the default of a C++ program).
inline std::optional<double> parse_double(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  const std::string tmp(s);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size() || errno == ERANGE || !(v == v) ||
      v == std::numeric_limits<double>::infinity() || v == -std::numeric_limits<double>::infinity())
    return std::nullopt;
  return v;
}

}  // namespace vitiq::data
