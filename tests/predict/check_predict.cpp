// tests/predict/check_predict.cpp -- end-to-end check of the vitiq-predict program against PyTorch.
//
//   check_predict <path to vitiq-predict> <tests/data directory>
//
// Runs `vitiq-predict --preset tiny --weights DIR/predict_tiny.safetensors --json
// DIR/predict_tiny.png DIR/predict_tiny_resize.png`, parses each output line with vitiq's JSON
// parser and compares it with DIR/predict_tiny_expected.json, written by PyTorch:
//   {"predict_tiny.png": {"logits": [...], "probabilities": [...]}, "predict_tiny_resize.png": ...}
// Logits and probabilities must agree to a relative error ||a - b|| / ||b|| <= 1e-5 (printed);
// "class" must be the 1-based arg-max of the probabilities and "expected_vote" sum_k k p_k.
// The second image is not 32 x 32, so the test covers the bilinear resize as well.
// Exit status 0 when everything agrees, 1 otherwise (with a message on stderr).
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/io/json.hpp"

namespace {

namespace fs = std::filesystem;

constexpr double tolerance = 1e-5;  // relative error of logits and probabilities

/// Raised for any failed check; main() prints it and returns 1.
struct CheckFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- access to vitiq::json::Value (the only code that knows the parser's interface) ----------

const vitiq::json::Value& member(const vitiq::json::Value& object, std::string_view key,
                                 const std::string& where) {
  if (!object.is_object()) throw CheckFailed(where + ": not a JSON object");
  const vitiq::json::Value* v = object.find(key);
  if (v == nullptr) throw CheckFailed(where + ": no key \"" + std::string(key) + "\"");
  return *v;
}

double number(const vitiq::json::Value& v, const std::string& where) {
  if (!v.is_number()) throw CheckFailed(where + ": not a number");
  return v.as_number();
}

std::vector<double> numbers(const vitiq::json::Value& v, const std::string& where) {
  if (!v.is_array()) throw CheckFailed(where + ": not an array");
  std::vector<double> out;
  std::size_t i = 0;
  for (const vitiq::json::Value& x : v.as_array()) out.push_back(number(x, where + "[" + std::to_string(i++) + "]"));
  return out;
}

std::string text(const vitiq::json::Value& v, const std::string& where) {
  if (!v.is_string()) throw CheckFailed(where + ": not a string");
  return std::string(v.as_string());
}

// ---------------------------------------------------------------------------------------------

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CheckFailed(path.string() + ": cannot open for reading");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

/// `s` quoted for /bin/sh.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Run `command` through the shell; return its standard output; fail unless it exits with 0.
std::string run(const std::string& command) {
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw CheckFailed("cannot start: " + command);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  if (status == -1) throw CheckFailed("cannot wait for: " + command);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw CheckFailed("vitiq-predict failed (" +
                      (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                         : std::string("killed by a signal")) +
                      "; its messages are above): " + command);
  return out;
}

double norm(const std::vector<double>& v) {
  double s = 0.0;
  for (const double x : v) s += x * x;
  return std::sqrt(s);
}

/// ||a - b|| / ||b|| (||a - b|| when b is zero).
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  const double nb = norm(b);
  return nb > 0.0 ? norm(d) / nb : norm(d);
}

void compare(const std::string& what, const std::vector<double>& got, const std::vector<double>& expected) {
  if (got.size() != expected.size())
    throw CheckFailed(what + ": " + std::to_string(got.size()) + " values, PyTorch has " +
                      std::to_string(expected.size()));
  const double err = relative_error(got, expected);
  std::printf("%s: relative error %.3g (limit %.0e)\n", what.c_str(), err, tolerance);
  if (!(err <= tolerance)) throw CheckFailed(what + ": relative error " + std::to_string(err) + " exceeds the limit");
}

std::size_t argmax(const std::vector<double>& v) {
  return static_cast<std::size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

/// Check one output line of vitiq-predict against the PyTorch values of its image.
/// Returns the image's file name.
std::string check_line(const std::string& line, std::size_t line_no, const vitiq::json::Value& expected_all,
                       const std::string& expected_name) {
  const std::string where = "vitiq-predict output line " + std::to_string(line_no);
  const vitiq::json::Value out = vitiq::json::parse(line, where);
  const std::string image = fs::path(text(member(out, "image", where), where + ".image")).filename().string();
  const std::vector<double> logits = numbers(member(out, "logits", where), where + ".logits");
  const std::vector<double> probs = numbers(member(out, "probabilities", where), where + ".probabilities");
  const double vote = number(member(out, "class", where), where + ".class");
  const double expected_vote = number(member(out, "expected_vote", where), where + ".expected_vote");

  const vitiq::json::Value& ref = member(expected_all, image, expected_name);
  const std::vector<double> ref_logits = numbers(member(ref, "logits", expected_name + "." + image),
                                                 expected_name + "." + image + ".logits");
  const std::vector<double> ref_probs =
      numbers(member(ref, "probabilities", expected_name + "." + image),
              expected_name + "." + image + ".probabilities");
  if (logits.empty()) throw CheckFailed(where + ": no logits");

  compare(image + " logits", logits, ref_logits);
  compare(image + " probabilities", probs, ref_probs);

  // The derived fields agree with the printed probabilities.
  if (probs.size() != logits.size()) throw CheckFailed(where + ": logits and probabilities differ in length");
  double sum = 0.0, mean_vote = 0.0;
  for (std::size_t k = 0; k < probs.size(); ++k) {
    sum += probs[k];
    mean_vote += static_cast<double>(k + 1) * probs[k];
  }
  if (std::abs(sum - 1.0) > 1e-6) throw CheckFailed(image + ": probabilities sum to " + std::to_string(sum));
  if (vote != static_cast<double>(argmax(probs) + 1))
    throw CheckFailed(image + ": class " + std::to_string(vote) + " is not the 1-based arg-max " +
                      std::to_string(argmax(probs) + 1) + " of the probabilities");
  if (std::abs(expected_vote - mean_vote) > 1e-6 * mean_vote)
    throw CheckFailed(image + ": expected_vote " + std::to_string(expected_vote) + " is not sum_k k p_k = " +
                      std::to_string(mean_vote));
  // ... and with PyTorch's probabilities: the same class (unless PyTorch's top two are tied to
  // within the tolerance) and the same expected vote.
  std::vector<double> sorted = ref_probs;
  std::sort(sorted.rbegin(), sorted.rend());
  const bool near_tie = sorted.size() > 1 && sorted[0] - sorted[1] <= tolerance;
  if (!near_tie && vote != static_cast<double>(argmax(ref_probs) + 1))
    throw CheckFailed(image + ": class " + std::to_string(vote) + ", PyTorch's arg-max gives " +
                      std::to_string(argmax(ref_probs) + 1));
  double ref_vote = 0.0;
  for (std::size_t k = 0; k < ref_probs.size(); ++k) ref_vote += static_cast<double>(k + 1) * ref_probs[k];
  const double vote_err = std::abs(expected_vote - ref_vote) / ref_vote;
  std::printf("%s expected_vote: %.9g, PyTorch %.9g, relative error %.3g\n", image.c_str(), expected_vote,
              ref_vote, vote_err);
  if (!(vote_err <= tolerance)) throw CheckFailed(image + ": expected_vote differs from PyTorch's");
  return image;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: check_predict <path to vitiq-predict> <tests/data directory>\n");
    return 2;
  }
  try {
    const std::string predict = argv[1];
    const fs::path dir = argv[2];
    const std::vector<std::string> images = {"predict_tiny.png", "predict_tiny_resize.png"};
    const fs::path expected_path = dir / "predict_tiny_expected.json";

    const vitiq::json::Value expected = vitiq::json::parse(read_text(expected_path), expected_path.string());

    std::string command = shell_quote(predict) + " --preset tiny --weights " +
                          shell_quote((dir / "predict_tiny.safetensors").string()) + " --json";
    for (const std::string& image : images) {
      command += ' ';
      command += shell_quote((dir / image).string());
    }
    std::printf("running: %s\n", command.c_str());
    std::fflush(stdout);
    const std::string output = run(command);

    std::vector<std::string> lines;
    std::istringstream stream(output);
    for (std::string line; std::getline(stream, line);)
      if (!line.empty()) lines.push_back(line);
    if (lines.size() != images.size())
      throw CheckFailed("vitiq-predict printed " + std::to_string(lines.size()) + " lines, expected " +
                        std::to_string(images.size()) + ":\n" + output);

    std::map<std::string, int> seen;
    for (std::size_t i = 0; i < lines.size(); ++i)
      ++seen[check_line(lines[i], i + 1, expected, expected_path.string())];
    for (const std::string& image : images)
      if (seen[image] != 1) throw CheckFailed(image + ": reported " + std::to_string(seen[image]) + " times");

    std::printf("check_predict: OK\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "check_predict: FAILED: %s\n", e.what());
    return 1;
  }
}
