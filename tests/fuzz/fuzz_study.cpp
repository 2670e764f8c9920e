// tests/fuzz/fuzz_study.cpp -- libFuzzer target: the study and run files the programs
// parse (split.csv, ratings.csv, ground_truth.json, metrics.csv).
// Body in fuzz_targets.hpp; seeds in corpus/study/. Build and run: see tests/fuzz/CMakeLists.txt.
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitiq_fuzz::study(data, size);
  return 0;
}
