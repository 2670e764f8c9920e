// vitiq/io/json.hpp -- a small strict JSON parser and writer (RFC 8259), enough for safetensors
// headers, configuration files and the programs' JSON reports.
//
// Invariant: parse() either returns a complete value or throws FormatError naming the source and
// the byte offset; nesting deeper than max_depth is refused (hostile input cannot exhaust the stack).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "vitiq/error.hpp"

namespace vitiq::json {

/// @brief Deepest nesting of arrays and objects parse() accepts (a bare scalar is depth 0,
/// `[1]` depth 1); deeper documents are refused rather than recursed into.
inline constexpr int max_depth = 64;

namespace detail {
class Parser;
}

/// @brief A JSON value: null, bool, number, string, array or object (insertion order kept).
///
/// The as_* accessors and the mutators throw FormatError ("json: value is not a number", ...)
/// when the value is of another kind.
class Value {
 public:
  /// @brief The JSON type of a value.
  enum class Kind { null, boolean, number, string, array, object };

  /// @brief A null value.
  Value() = default;
  /// @brief A boolean value.
  /// @param b the value
  static Value make_bool(bool b) { Value v; v.kind_ = Kind::boolean; v.bool_ = b; return v; }
  /// @brief A number value.
  /// @param d    the value
  /// @param text its original JSON text, kept for as_int64() and dump(); empty: dump() formats d
  static Value make_number(double d, std::string text = {}) {
    Value v; v.kind_ = Kind::number; v.number_ = d; v.text_ = std::move(text); return v;
  }
  /// @brief A string value.
  /// @param s the content (UTF-8, unescaped)
  static Value make_string(std::string s) { Value v; v.kind_ = Kind::string; v.text_ = std::move(s); return v; }
  /// @brief An empty array.
  static Value make_array() { Value v; v.kind_ = Kind::array; return v; }
  /// @brief An empty object.
  static Value make_object() { Value v; v.kind_ = Kind::object; return v; }

  /// @brief The JSON type of the value.
  Kind kind() const { return kind_; }
  /// @brief True for null.
  bool is_null() const { return kind_ == Kind::null; }
  /// @brief True for true and false.
  bool is_bool() const { return kind_ == Kind::boolean; }
  /// @brief True for a number.
  bool is_number() const { return kind_ == Kind::number; }
  /// @brief True for a string.
  bool is_string() const { return kind_ == Kind::string; }
  /// @brief True for an array.
  bool is_array() const { return kind_ == Kind::array; }
  /// @brief True for an object.
  bool is_object() const { return kind_ == Kind::object; }

  /// @brief The boolean. @throws FormatError when the value is not a boolean
  bool as_bool() const { expect(Kind::boolean, "a boolean"); return bool_; }
  /// @brief The number as a double. @throws FormatError when the value is not a number
  double as_number() const { expect(Kind::number, "a number"); return number_; }
  /// @brief The number as an exact int64 (from its text); throws if it is not an integer.
  /// @throws FormatError when the value is not a number, its text is not an integer (a fraction,
  /// an exponent, or a number made by make_number() without text), or it does not fit 64 bits
  std::int64_t as_int64() const {
    expect(Kind::number, "a number");
    const bool neg = !text_.empty() && text_[0] == '-';
    const std::size_t first = neg ? 1 : 0;
    if (first >= text_.size()) throw FormatError("json: '" + text_ + "' is not an integer");
    std::int64_t v = 0;  // accumulated negatively: INT64_MIN has no positive counterpart
    for (std::size_t i = first; i < text_.size(); ++i) {
      const char c = text_[i];
      if (c < '0' || c > '9') throw FormatError("json: '" + text_ + "' is not an integer");
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_sub_overflow(v, (c - '0'), &v))
        throw FormatError("json: integer '" + text_ + "' does not fit 64 bits");
    }
    if (neg) return v;
    if (v == std::numeric_limits<std::int64_t>::min())
      throw FormatError("json: integer '" + text_ + "' does not fit 64 bits");
    return -v;
  }
  /// @brief The string content. @throws FormatError when the value is not a string
  const std::string& as_string() const { expect(Kind::string, "a string"); return text_; }
  /// @brief The elements. @throws FormatError when the value is not an array
  const std::vector<Value>& as_array() const { expect(Kind::array, "an array"); return array_; }
  /// @brief The elements, modifiable. @throws FormatError when the value is not an array
  std::vector<Value>& as_array() { expect(Kind::array, "an array"); return array_; }
  /// @brief The members as (key, value) pairs in insertion order.
  /// @throws FormatError when the value is not an object
  const std::vector<std::pair<std::string, Value>>& as_object() const { expect(Kind::object, "an object"); return object_; }

  /// @brief Member of an object, or nullptr.
  /// @param key member name
  /// @return the member, or nullptr when absent or when the value is not an object
  const Value* find(std::string_view key) const {
    if (kind_ != Kind::object) return nullptr;
    for (const auto& [k, v] : object_) if (k == key) return &v;
    return nullptr;
  }
  /// @brief Member of an object; throws FormatError naming the key when absent.
  /// @param key member name
  /// @return the member
  /// @throws FormatError when the member is absent (or the value is not an object)
  const Value& at(std::string_view key) const {
    const Value* v = find(key);
    if (!v) throw FormatError("json: no member '" + std::string(key) + "'");
    return *v;
  }
  /// @brief Append an element to an array.
  /// @param v the element
  /// @throws FormatError when the value is not an array
  void push_back(Value v) { expect(Kind::array, "an array"); array_.push_back(std::move(v)); }
  /// @brief Add (or replace) a member of an object.
  ///
  /// A new key goes last; a replaced one keeps its position.
  /// @param key member name
  /// @param v   member value
  /// @throws FormatError when the value is not an object
  void set(std::string key, Value v) {
    expect(Kind::object, "an object");
    for (auto& [k, old] : object_) if (k == key) { old = std::move(v); return; }
    object_.emplace_back(std::move(key), std::move(v));
  }

  /// @brief Serialise (compact). NaN and infinities are written as null.
  ///
  /// A number keeps its original text when it has one; members keep their insertion order.
  std::string dump() const;

 private:
  friend class detail::Parser;
  void expect(Kind k, const char* what) const {
    if (kind_ != k) throw FormatError(std::string("json: value is not ") + what);
  }
  Kind kind_ = Kind::null;
  bool bool_ = false;
  double number_ = 0;
  std::string text_;  // string content, or the number's original text
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

/// @brief `s` as a JSON string literal, quotes included.
///
/// Escapes quote, backslash and control characters; other bytes (UTF-8) are copied.
/// @param s the string
inline std::string escape(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

/// @brief A double as JSON text: the shortest text that reads back as the same double
/// (independent of the C locale), null for NaN and infinities.
/// @param d the number
inline std::string number_to_string(double d) {
  if (!std::isfinite(d)) return "null";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

inline std::string Value::dump() const {
  switch (kind_) {
    case Kind::null: return "null";
    case Kind::boolean: return bool_ ? "true" : "false";
    case Kind::number: return text_.empty() ? number_to_string(number_) : text_;
    case Kind::string: return escape(text_);
    case Kind::array: {
      std::string s = "[";
      for (std::size_t i = 0; i < array_.size(); ++i) s += (i ? "," : "") + array_[i].dump();
      return s + "]";
    }
    case Kind::object: {
      std::string s = "{";
      for (std::size_t i = 0; i < object_.size(); ++i)
        s += (i ? "," : "") + escape(object_[i].first) + ":" + object_[i].second.dump();
      return s + "}";
    }
  }
  return "null";
}

namespace detail {

/// Recursive-descent parser of one document; recursion is bounded by max_depth.
class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw FormatError(std::string(source_) + ": invalid JSON at byte " + std::to_string(at) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) == lit) { pos_ += lit.size(); return true; }
    return false;
  }
  // `depth`: number of arrays and objects enclosing the value.
  Value parse_value(int depth) {
    if (pos_ >= s_.size()) fail("unexpected end of input");
    const char c = s_[pos_];
    if (c == '{' || c == '[') {
      if (depth >= max_depth) fail("nesting deeper than " + std::to_string(max_depth) + " levels");
      return c == '{' ? parse_object(depth + 1) : parse_array(depth + 1);
    }
    if (c == '"') return Value::make_string(parse_string());
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if (consume("true")) return Value::make_bool(true);
    if (consume("false")) return Value::make_bool(false);
    if (consume("null")) return Value{};
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F)
      fail("unexpected byte 0x" + hex2(static_cast<unsigned char>(c)));
    fail(std::string("unexpected character '") + c + "'");
  }
  static std::string hex2(unsigned char c) {
    constexpr char digits[] = "0123456789abcdef";
    return {digits[c >> 4], digits[c & 15]};
  }
  Value parse_object(int depth) {
    ++pos_;
    Value obj = Value::make_object();
    skip_ws();
    if (consume("}")) return obj;
    std::unordered_set<std::string> keys;  // duplicate check in O(1): headers may hold many tensors
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      const std::size_t key_at = pos_;
      std::string key = parse_string();
      if (!keys.insert(key).second) fail_at(key_at, "duplicate key '" + key + "'");
      skip_ws();
      if (!consume(":")) fail("expected ':'");
      skip_ws();
      Value member = parse_value(depth);
      obj.object_.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (consume(",")) continue;
      if (consume("}")) return obj;
      fail(pos_ >= s_.size() ? "unexpected end of input" : "expected ',' or '}'");
    }
  }
  Value parse_array(int depth) {
    ++pos_;
    Value arr = Value::make_array();
    skip_ws();
    if (consume("]")) return arr;
    while (true) {
      skip_ws();
      arr.array_.push_back(parse_value(depth));
      skip_ws();
      if (consume(",")) continue;
      if (consume("]")) return arr;
      fail(pos_ >= s_.size() ? "unexpected end of input" : "expected ',' or ']'");
    }
  }
  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
      ++pos_;
    }
    return v;
  }
  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    }
  }
  // Length of the well-formed UTF-8 sequence starting at pos_ (lead byte >= 0x80), or 0.
  // Refuses overlong forms, UTF-16 surrogates and code points above U+10FFFF (RFC 3629).
  std::size_t utf8_length() const {
    const auto at = [&](std::size_t i) { return static_cast<unsigned char>(s_[pos_ + i]); };
    const unsigned char c = at(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (pos_ + n > s_.size()) return 0;
    if (at(1) < lo || at(1) > hi) return 0;
    for (std::size_t i = 2; i < n; ++i)
      if (at(i) < 0x80 || at(i) > 0xBF) return 0;
    return n;
  }
  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') { ++pos_; return out; }
      if (c < 0x20) fail("control character in string");
      if (c >= 0x80) {
        const std::size_t n = utf8_length();
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(s_.substr(pos_, n));
        pos_ += n;
        continue;
      }
      ++pos_;
      if (c != '\\') { out += char(c); continue; }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const std::size_t escape_at = pos_ - 1;
          ++pos_;
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume("\\u")) fail_at(escape_at, "unpaired high surrogate");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(escape_at, "high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail_at(escape_at, "unpaired low surrogate");
          }
          append_utf8(out, cp);
          continue;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
      ++pos_;
    }
  }
  Value parse_number() {
    const std::size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const std::size_t d0 = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d0;
    };
    if (pos_ < s_.size() && s_[pos_] == '0') ++pos_;  // a leading zero stands alone ("01" is two tokens)
    else if (digits() == 0) fail("bad number");
    if (pos_ < s_.size() && s_[pos_] == '.') { ++pos_; if (digits() == 0) fail("bad fraction"); }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) fail("bad exponent");
    }
    const std::string_view text = s_.substr(start, pos_ - start);
    return Value::make_number(to_double(text), std::string(text));
  }
  // The grammar-checked number text as a double (locale-independent, correctly rounded);
  // magnitudes beyond double's range become +-infinity, below it +-0.
  static double to_double(std::string_view text) {
    const bool neg = text[0] == '-';
    const std::string_view body = text.substr(neg ? 1 : 0);  // from_chars takes no '+' and we pass no '-'
    double d = 0;
    const auto r = std::from_chars(body.data(), body.data() + body.size(), d);
    if (r.ec == std::errc::result_out_of_range) {
      // Decimal exponent of the leading significant digit decides between overflow and underflow.
      long long exp10 = 0, point = -1, first = -1, i = 0;
      std::size_t k = 0;
      for (; k < body.size() && body[k] != 'e' && body[k] != 'E'; ++k) {
        if (body[k] == '.') { point = i; continue; }
        if (first < 0 && body[k] != '0') first = i;
        ++i;
      }
      if (point < 0) point = i;
      if (k < body.size()) {
        ++k;
        const bool eneg = body[k] == '-';
        if (body[k] == '+' || body[k] == '-') ++k;
        for (; k < body.size(); ++k) exp10 = std::min<long long>(exp10 * 10 + (body[k] - '0'), 1'000'000'000);
        if (eneg) exp10 = -exp10;
      }
      d = (first >= 0 && point - first + exp10 > 0) ? std::numeric_limits<double>::infinity() : 0.0;
    }
    return neg ? -d : d;
  }

  std::string_view s_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// @brief Parse a complete JSON document.
///
/// Strict RFC 8259: no comments, trailing commas, duplicate keys, invalid UTF-8, lone surrogates
/// or leading zeros; nesting is limited to max_depth (64) levels of arrays and objects.
/// @param text        the document (UTF-8)
/// @param source_name named in error messages (a file name)
/// @return the document's root value
/// @throws FormatError "<source>: invalid JSON at byte <offset>: <what>"
inline Value parse(std::string_view text, std::string_view source_name) {
  return detail::Parser(text, source_name).parse_document();
}

}  // namespace vitiq::json
