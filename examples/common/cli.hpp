// examples/common/cli.hpp -- the command-line layer every vitiq-* program shares (CLI11, Debian's
// libcli11-dev): `--opt value` and `--opt=value`, `-h`/`--help` prints the help on stdout and exits
// 0, and any usage error (unknown option, missing or bad value, failed check) is one line on stderr,
// "vitiq-<name>: <what> (see --help)", with exit code 2. Programs build a CLI::App, add their
// options, and call vitiq::cli::parse(app, argc, argv).
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "vitiq/config.hpp"

namespace vitiq::cli {

/// @brief A usage error found after parsing (a combination of options): one line, exit code 2.
[[noreturn]] inline void usage_error(std::string_view program, std::string_view what) {
  std::fprintf(stderr, "%.*s: %.*s (see --help)\n", int(program.size()), program.data(), int(what.size()), what.data());
  std::exit(2);
}

/// @brief Parse argv into `app` (named after the program, e.g. "vitiq-train"). Returns on success;
/// exits 0 after printing the help, 2 after a one-line usage error.
inline void parse(CLI::App& app, int argc, char** argv) {
  // Extras are collected rather than refused, so that an unknown option is named first, before a
  // missing required option that CLI11 would otherwise report in its place.
  app.allow_extras();
  const auto unknown = [&] {
    const auto rest = app.remaining();
    if (!rest.empty()) usage_error(app.get_name(), (rest.front().rfind("-", 0) == 0 ? "unknown option '" : "unexpected argument '") + rest.front() + "'");
  };
  try {
    app.parse(argc, argv);
    unknown();
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    unknown();
    std::string what = e.what();
    while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
    usage_error(app.get_name(), what);
  }
}

/// @brief A check that accepts only the names of vitiq's presets (tiny, cifar, aio, iqa, seed).
inline CLI::Validator preset_name() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        for (auto n : preset_names)
          if (s == n) return {};
        std::string all;
        for (auto n : preset_names) all += (all.empty() ? "" : ", ") + std::string(n);
        return "unknown preset '" + s + "' (one of " + all + ")";
      },
      "PRESET");
}

/// @brief Three non-negative shares "A,B,C" (train,val,test of `--split`), nullopt when the text is
/// not three numbers separated by commas.
inline std::optional<std::array<double, 3>> shares(std::string_view text) {
  std::array<double, 3> out{};
  std::size_t n = 0, start = 0;
  for (std::size_t k = 0; k <= text.size(); ++k)
    if (k == text.size() || text[k] == ',') {
      const std::string field(text.substr(start, k - start));
      std::size_t used = 0;
      double v = 0;
      try { v = std::stod(field, &used); } catch (...) { return std::nullopt; }
      if (used != field.size() || !(v >= 0) || n == 3) return std::nullopt;
      out[n++] = v;
      start = k + 1;
    }
  if (n != 3) return std::nullopt;
  return out;
}

}  // namespace vitiq::cli
