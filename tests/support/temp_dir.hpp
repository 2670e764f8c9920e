// tests/support/temp_dir.hpp -- a fresh directory under the system temp folder for one test,
// removed with its content at scope exit (used by the tests that write files).
#pragma once

#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>

namespace vitiq_test {

/// A fresh directory under the system temp folder, removed with its content at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::filesystem::path p = std::filesystem::temp_directory_path() / ("vitiq_test_" + std::to_string(rd()));
      if (std::filesystem::create_directory(p)) {
        path = p;
        return;
      }
    }
    throw std::runtime_error("cannot create a temporary directory");
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace vitiq_test
