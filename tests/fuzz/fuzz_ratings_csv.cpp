// tests/fuzz/fuzz_ratings_csv.cpp -- libFuzzer target: the rating tables (original
// per-observer CSV and long format, strict and skipping), split.csv, stimulus names.
// Body in fuzz_targets.hpp; seeds in corpus/ratings_csv/. Build and run: see tests/fuzz/CMakeLists.txt.
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitiq_fuzz::ratings_csv(data, size);
  return 0;
}
