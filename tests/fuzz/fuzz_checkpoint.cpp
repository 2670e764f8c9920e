// tests/fuzz/fuzz_checkpoint.cpp -- libFuzzer target: weights and checkpoints from
// bytes (vitiq::load_weights, vitiq::load_checkpoint).
// Body in fuzz_targets.hpp; seeds in corpus/checkpoint/. Build and run: see tests/fuzz/CMakeLists.txt.
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitiq_fuzz::checkpoint(data, size);
  return 0;
}
