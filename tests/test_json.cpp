// tests/test_json.cpp -- the strict JSON parser and writer (vitiq/io/json.hpp): values and their
// accessors, numbers (exact int64, range, grammar), string escapes and surrogate pairs, UTF-8
// checking, the nesting limit, trailing garbage, error messages with source and byte offset,
// insertion order, dump()/escape() round trips, and truncated or mutated documents.
#include <catch2/catch.hpp>

#include <bit>
#include <clocale>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "vitiq/io/json.hpp"

using Catch::Matchers::Contains;
namespace json = vitiq::json;

namespace {

// The FormatError message of parse(text), or "" when it parses.
std::string parse_error(std::string_view text, std::string_view source = "doc.json") {
  try {
    json::parse(text, source);
  } catch (const vitiq::FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("json: scalars and their kinds", "[io][json]") {
  CHECK(json::parse("null", "t").is_null());
  CHECK(json::parse("true", "t").as_bool() == true);
  CHECK(json::parse("false", "t").as_bool() == false);
  CHECK(json::parse("\"hi\"", "t").as_string() == "hi");
  CHECK(json::parse("\"\"", "t").as_string().empty());
  CHECK(json::parse("42", "t").as_number() == 42.0);
  CHECK(json::parse(" \t\r\n[ 1 ,\n2 ] \n", "t").as_array().size() == 2);
  CHECK(json::parse("{}", "t").as_object().empty());
  CHECK(json::parse("[]", "t").as_array().empty());
  CHECK(json::parse("[]", "t").kind() == json::Value::Kind::array);
  CHECK(json::parse("{}", "t").kind() == json::Value::Kind::object);
}

TEST_CASE("json: numbers keep their text; int64 is exact", "[io][json]") {
  CHECK(json::parse("-2.5e3", "t").as_number() == -2500.0);
  CHECK(json::parse("1E2", "t").as_number() == 100.0);
  CHECK(json::parse("1e+2", "t").as_number() == 100.0);
  CHECK(json::parse("125e-3", "t").as_number() == 0.125);
  CHECK(json::parse("0", "t").as_int64() == 0);
  CHECK(json::parse("-0", "t").as_int64() == 0);
  CHECK(std::signbit(json::parse("-0.0", "t").as_number()));
  CHECK(json::parse("0.1", "t").as_number() == 0.1);  // correctly rounded
  CHECK(json::parse("2.2250738585072014e-308", "t").as_number() == std::numeric_limits<double>::min());

  // Beyond double precision, still exact through the text.
  CHECK(json::parse("9007199254740993", "t").as_int64() == 9007199254740993LL);
  CHECK(json::parse("9223372036854775807", "t").as_int64() == std::numeric_limits<std::int64_t>::max());
  CHECK(json::parse("-9223372036854775808", "t").as_int64() == std::numeric_limits<std::int64_t>::min());
  CHECK_THROWS_WITH(json::parse("9223372036854775808", "t").as_int64(), Contains("does not fit 64 bits"));
  CHECK_THROWS_WITH(json::parse("-9223372036854775809", "t").as_int64(), Contains("does not fit 64 bits"));
  CHECK_THROWS_AS(json::parse("99999999999999999999999", "t").as_int64(), vitiq::FormatError);
  CHECK_THROWS_WITH(json::parse("1.0", "t").as_int64(), Contains("not an integer"));
  CHECK_THROWS_WITH(json::parse("1e3", "t").as_int64(), Contains("not an integer"));
  CHECK_THROWS_AS(json::Value::make_number(3.0).as_int64(), vitiq::FormatError);  // no text to read
  CHECK(json::Value::make_number(3.0, "3").as_int64() == 3);

  // Out of double's range: infinities and zeros, the text kept for dump().
  const json::Value big = json::parse("1e400", "t");
  CHECK(std::isinf(big.as_number()));
  CHECK(big.as_number() > 0);
  CHECK(json::parse("-1e400", "t").as_number() == -std::numeric_limits<double>::infinity());
  CHECK(json::parse("123456789e99999999999999999999", "t").as_number() == std::numeric_limits<double>::infinity());
  CHECK(json::parse("1e-400", "t").as_number() == 0.0);
  CHECK(std::signbit(json::parse("-1e-400", "t").as_number()));
  CHECK(json::parse("0.0000000000000000000000000000001e-300", "t").as_number() == 0.0);
  CHECK(json::parse("100000000000000000000000000000e300", "t").as_number() == std::numeric_limits<double>::infinity());
  CHECK(big.dump() == "1e400");
  CHECK(json::parse("[1.50,-0,1E+2]", "t").dump() == "[1.50,-0,1E+2]");
}

TEST_CASE("json: number grammar is RFC 8259's", "[io][json]") {
  for (const char* bad : {"01", "-01", "00", "-", "+1", ".5", "1.", "1.e3", "1e", "1e+", "1e-", "0x10", "NaN",
                          "Infinity", "-Infinity", "1_000", "- 1", "1.5.2", "--1", "0e", "[01]", "{\"a\":01}"}) {
    INFO(bad);
    const std::string what = parse_error(bad);
    CHECK_THAT(what, Contains("doc.json: invalid JSON at byte"));
  }
  CHECK_THAT(parse_error("1.x"), Contains("at byte 2: bad fraction"));
  CHECK_THAT(parse_error("1e"), Contains("at byte 2: bad exponent"));
  CHECK_THAT(parse_error("-a"), Contains("at byte 1: bad number"));
}

TEST_CASE("json: number_to_string is the shortest round trip and locale-free", "[io][json]") {
  CHECK(json::number_to_string(0.1) == "0.1");
  CHECK(json::number_to_string(3) == "3");
  CHECK(json::number_to_string(-2.5) == "-2.5");
  CHECK(json::number_to_string(1e300) == "1e+300");
  CHECK(json::number_to_string(std::nan("")) == "null");
  CHECK(json::number_to_string(std::numeric_limits<double>::infinity()) == "null");
  CHECK(json::number_to_string(-std::numeric_limits<double>::infinity()) == "null");
  CHECK(json::Value::make_number(std::nan("")).dump() == "null");
  CHECK(json::Value::make_number(0.25).dump() == "0.25");

  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000; ++i) {
    const double d = std::bit_cast<double>(rng());
    if (!std::isfinite(d)) continue;
    const std::string text = json::number_to_string(d);
    INFO(text);
    const double back = json::parse(text, "t").as_number();
    REQUIRE(std::bit_cast<std::uint64_t>(back) == std::bit_cast<std::uint64_t>(d));
  }

  // A locale with a decimal comma changes neither reading nor writing.
  const std::string old = std::setlocale(LC_NUMERIC, nullptr);
  bool switched = false;
  for (const char* loc : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"})
    if (std::setlocale(LC_NUMERIC, loc)) { switched = true; break; }
  if (switched) {
    CHECK(json::parse("1.5", "t").as_number() == 1.5);
    CHECK(json::number_to_string(1.5) == "1.5");
  }
  std::setlocale(LC_NUMERIC, old.c_str());
}

TEST_CASE("json: string escapes and surrogate pairs", "[io][json]") {
  CHECK(json::parse(R"("\"\\\/\b\f\n\r\t")", "t").as_string() == "\"\\/\b\f\n\r\t");
  CHECK(json::parse(R"("\u0041\u00e9\u20AC")", "t").as_string() == "A\xc3\xa9\xe2\x82\xac");
  CHECK(json::parse(R"("\u0000")", "t").as_string() == std::string(1, '\0'));
  CHECK(json::parse(R"("\ud83d\ude00")", "t").as_string() == "\xf0\x9f\x98\x80");  // U+1F600
  CHECK(json::parse(R"("\uD800\uDC00")", "t").as_string() == "\xf0\x90\x80\x80");  // U+10000
  CHECK(json::parse(R"("\udbff\udfff")", "t").as_string() == "\xf4\x8f\xbf\xbf");  // U+10FFFF
  CHECK(json::parse(R"("a\u007fb")", "t").as_string() == "a\x7f" "b");

  CHECK_THAT(parse_error(R"("\ud800")"), Contains("at byte 1: unpaired high surrogate"));
  CHECK_THAT(parse_error(R"("ab\ud800x")"), Contains("at byte 3: unpaired high surrogate"));
  CHECK_THAT(parse_error(R"("\ud800\u0041")"), Contains("not followed by a low surrogate"));
  CHECK_THAT(parse_error(R"("\ud800\ud800")"), Contains("not followed by a low surrogate"));
  CHECK_THAT(parse_error(R"("\udc00")"), Contains("unpaired low surrogate"));
  CHECK_THAT(parse_error(R"("\u12")"), Contains("truncated \\u escape"));
  CHECK_THAT(parse_error(R"("\u12g4")"), Contains("at byte 5: bad hex digit"));
  CHECK_THAT(parse_error(R"("\x41")"), Contains("bad escape '\\x'"));
  CHECK_THAT(parse_error(R"("\')"), Contains("bad escape"));
  CHECK_THAT(parse_error("\"a\nb\""), Contains("at byte 2: control character in string"));
  CHECK_THAT(parse_error("\"a\tb\""), Contains("control character"));
  CHECK_THAT(parse_error("\"abc"), Contains("unterminated string"));
  CHECK_THAT(parse_error("\"abc\\"), Contains("unterminated escape"));
  CHECK_THAT(parse_error("'abc'"), Contains("unexpected character '''"));
}

TEST_CASE("json: raw UTF-8 is checked", "[io][json]") {
  CHECK(json::parse("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "t").as_string() == "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  CHECK(json::parse("\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"", "t").as_string().size() == 10);  // U+D7FF U+E000 U+10FFFF
  for (const char* bad : {"\"\x80\"",              // lone continuation byte
                          "\"\xc0\xaf\"",          // overlong '/'
                          "\"\xc1\xbf\"",          // overlong
                          "\"\xe0\x80\xaf\"",      // overlong 3-byte
                          "\"\xf0\x80\x80\xaf\"",  // overlong 4-byte
                          "\"\xed\xa0\x80\"",      // UTF-16 surrogate D800 encoded
                          "\"\xf4\x90\x80\x80\"",  // above U+10FFFF
                          "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xe2\x82\"", "\"\xe2\x82", "\"\xc3\""}) {
    INFO(bad);
    CHECK_THAT(parse_error(bad), Contains("invalid UTF-8"));
  }
  CHECK_THAT(parse_error("\xef\xbb\xbf{}"), Contains("at byte 0: unexpected byte 0xef"));  // no BOM
}

TEST_CASE("json: escape() writes what parse() reads back", "[io][json]") {
  CHECK(json::escape("plain") == "\"plain\"");
  CHECK(json::escape("a\"b\\c") == R"("a\"b\\c")");
  CHECK(json::escape("\n\r\t\b\f") == R"("\n\r\t\b\f")");
  CHECK(json::escape(std::string("\x01\x1f\0", 3)) == R"("\u0001\u001f\u0000")");
  CHECK(json::escape("\xc3\xa9/") == "\"\xc3\xa9/\"");  // UTF-8 and '/' copied

  std::string all;
  for (int c = 0; c < 0x80; ++c) all += char(c);
  all += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  CHECK(json::parse(json::escape(all), "t").as_string() == all);
  const std::string escaped = json::escape(all);
  for (unsigned char c : escaped) CHECK(c >= 0x20);  // no raw control character left
}

TEST_CASE("json: nesting is limited to max_depth", "[io][json]") {
  STATIC_REQUIRE(json::max_depth == 64);
  const auto arrays = [](int n) { return std::string(std::size_t(n), '[') + std::string(std::size_t(n), ']'); };
  const auto objects = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += "{\"k\":";
    s += "1";
    for (int i = 0; i < n; ++i) s += "}";
    return s;
  };
  const json::Value deep = json::parse(arrays(json::max_depth), "t");
  const json::Value* v = &deep;
  int depth = 0;
  while (v->is_array() && !v->as_array().empty()) { v = &v->as_array()[0]; ++depth; }
  CHECK(depth == json::max_depth - 1);  // the innermost array is empty
  CHECK_NOTHROW(json::parse(objects(json::max_depth), "t"));
  CHECK_THAT(parse_error(arrays(json::max_depth + 1)), Contains("at byte 64: nesting deeper than 64 levels"));
  CHECK_THAT(parse_error(objects(json::max_depth + 1)), Contains("nesting deeper than 64"));
  CHECK_THAT(parse_error("[{\"a\":" + arrays(json::max_depth - 1) + "}]"), Contains("nesting deeper"));
  // Hostile nesting far beyond the limit is refused without exhausting the stack.
  CHECK_THAT(parse_error(std::string(1'000'000, '[')), Contains("nesting deeper"));
  std::string hostile;
  for (int i = 0; i < 200'000; ++i) hostile += "{\"a\":[";
  CHECK_THAT(parse_error(hostile), Contains("nesting deeper"));
}

TEST_CASE("json: trailing garbage and other malformed documents are refused", "[io][json]") {
  for (const char* bad : {"", " ", "{} x", "[1] [2]", "1 2", "nullx", "truex", "{}}", "[]]", "\"a\"\"b\"", "[1,]",
                          "{\"a\":1,}", "[,1]", "[1,,2]", "{,}", "{\"a\"}", "{\"a\" 1}", "{a:1}", "{'a':1}", "[1 2]",
                          "{\"a\":1 \"b\":2}", "// c\n1", "/* c */1", "[", "{", "{\"a\":", "[1,", "nul", "tru", "fals",
                          "True", "NULL", "\x01", "[\"a\"\x0b]"}) {
    INFO(bad);
    CHECK_THAT(parse_error(bad), Contains("doc.json: invalid JSON at byte"));
  }
  CHECK_THAT(parse_error(std::string("{}\0", 3)), Contains("at byte 2: unexpected trailing characters"));
  CHECK_THAT(parse_error("{} x"), Contains("at byte 3: unexpected trailing characters"));
  CHECK_THAT(parse_error("[1,]", "f.json"), Contains("f.json: invalid JSON at byte 3"));
  CHECK_THAT(parse_error(""), Contains("at byte 0: unexpected end of input"));
  CHECK_THAT(parse_error("[1,2"), Contains("at byte 4: unexpected end of input"));
  CHECK_THAT(parse_error("[1 2]"), Contains("at byte 3: expected ',' or ']'"));
  CHECK_THAT(parse_error("{\"a\":1 \"b\":2}"), Contains("expected ',' or '}'"));
  CHECK_THAT(parse_error("{1:2}"), Contains("at byte 1: expected a string key"));
}

TEST_CASE("json: duplicate keys are refused, naming the key and its offset", "[io][json]") {
  CHECK_THAT(parse_error(R"({"a":1,"b":2,"a":3})"), Contains("at byte 13: duplicate key 'a'"));
  // The same key in different objects is fine; keys differing only by escapes are the same key.
  CHECK_NOTHROW(json::parse(R"({"a":{"a":1},"b":{"a":2}})", "t"));
  CHECK_THAT(parse_error(R"({"A":1,"\u0041":2})"), Contains("duplicate key 'A'"));
  // Many keys: the check stays fast and still finds the duplicate at the end.
  std::string many = "{";
  for (int i = 0; i < 50'000; ++i) many += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  CHECK(json::parse(many + "\"end\":0}", "t").as_object().size() == 50'001);
  CHECK_THAT(parse_error(many + "\"k49999\":0}"), Contains("duplicate key 'k49999'"));
}

TEST_CASE("json: objects keep insertion order; dump() is compact and reads back", "[io][json]") {
  const std::string text = R"({"z":1,"a":[true,false,null,"s\n"],"m":{"y":-1.25e-3,"b":{}},"e":[]})";
  const json::Value v = json::parse(text, "t");
  REQUIRE(v.as_object().size() == 4);
  CHECK(v.as_object()[0].first == "z");
  CHECK(v.as_object()[1].first == "a");
  CHECK(v.as_object()[2].first == "m");
  CHECK(v.as_object()[3].first == "e");
  CHECK(v.dump() == text);
  CHECK(json::parse(v.dump(), "again").dump() == text);
  CHECK(v.at("m").at("y").as_number() == -1.25e-3);
  CHECK(v.find("nope") == nullptr);
  CHECK(v.at("a").find("x") == nullptr);  // not an object
  CHECK_THROWS_WITH(v.at("nope"), Contains("no member 'nope'"));
}

TEST_CASE("json: building values; accessors check the kind", "[io][json]") {
  json::Value o = json::Value::make_object();
  o.set("b", json::Value::make_number(2));
  o.set("a", json::Value::make_string("x\"y"));
  json::Value arr = json::Value::make_array();
  arr.push_back(json::Value::make_bool(true));
  arr.push_back(json::Value{});
  arr.push_back(json::Value::make_number(0.5));
  o.set("c", arr);
  o.set("b", json::Value::make_number(3));  // replaced in place
  CHECK(o.dump() == R"({"b":3,"a":"x\"y","c":[true,null,0.5]})");
  CHECK(json::parse(o.dump(), "t").dump() == o.dump());

  const json::Value n = json::Value::make_number(1);
  CHECK_THROWS_WITH(n.as_string(), Contains("not a string"));
  CHECK_THROWS_WITH(n.as_bool(), Contains("not a boolean"));
  CHECK_THROWS_WITH(n.as_array(), Contains("not an array"));
  CHECK_THROWS_WITH(n.as_object(), Contains("not an object"));
  CHECK_THROWS_WITH(json::Value::make_string("1").as_number(), Contains("not a number"));
  CHECK_THROWS_WITH(json::Value::make_string("1").as_int64(), Contains("not a number"));
  json::Value s = json::Value::make_string("x");
  CHECK_THROWS_AS(s.push_back(json::Value{}), vitiq::FormatError);
  CHECK_THROWS_AS(s.set("k", json::Value{}), vitiq::FormatError);
  CHECK(json::Value{}.dump() == "null");
}

TEST_CASE("json: every truncation of a document is refused", "[io][json]") {
  const std::string doc =
      R"({"a":[1,-2.5e3,true,false,null],"s":"x\"\\\u00e9\ud83d\ude00\n","n":9007199254740993,"o":{"k":[[],{}]}})";
  REQUIRE_NOTHROW(json::parse(doc, "t"));
  for (std::size_t cut = 0; cut < doc.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK_THAT(parse_error(doc.substr(0, cut), "cut.json"), Contains("cut.json: invalid JSON at byte"));
  }
}

TEST_CASE("json: mutated documents parse or throw FormatError, nothing else", "[io][json]") {
  const std::string doc = R"({"a":[1,-2.5e3,true,false,null],"s":"x\"\u00e9\ud83d\ude00","n":{"k":[[],{}]}})";
  const char alphabet[] = "{}[]\",:\\u0123456789eE+-.tfnd \x01\x7f\x80\xc3\xed\xf0";
  std::mt19937 rng(7);
  int parsed = 0, refused = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::string m = doc;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % m.size();
      const char c = alphabet[rng() % (sizeof alphabet - 1)];
      switch (rng() % 3) {
        case 0: m[at] = c; break;
        case 1: m.insert(m.begin() + long(at), c); break;
        default: if (m.size() > 1) m.erase(m.begin() + long(at)); break;
      }
    }
    try {
      const json::Value v = json::parse(m, "m.json");
      ++parsed;
      REQUIRE(json::parse(v.dump(), "again").dump() == v.dump());  // whatever parses also round-trips
    } catch (const vitiq::FormatError& e) {
      REQUIRE_THAT(e.what(), Contains("m.json: invalid JSON at byte"));
      ++refused;
    }
  }
  CHECK(refused > 10'000);
  CHECK(parsed > 0);
}
