// tests/fuzz/fuzz_safetensors.cpp -- libFuzzer target: the safetensors reader
// (vitiq::io::SafetensorsFile::parse, every tensor read).
// Body in fuzz_targets.hpp; seeds in corpus/safetensors/. Build and run: see tests/fuzz/CMakeLists.txt.
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitiq_fuzz::safetensors(data, size);
  return 0;
}
