// tests/fuzz/fuzz_image.cpp -- libFuzzer target: image decoding through
// vitiq::io::decode_image (stb compiled in, so it is instrumented too).
// Body in fuzz_targets.hpp; seeds in corpus/image/. Build and run: see tests/fuzz/CMakeLists.txt.
// stb is compiled into this program (not linked from libstb) so that libFuzzer sees its branches;
// vitiq/io/image.hpp documents defining the implementation in one translation unit.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define VITIQ_FUZZ_WITH_IMAGE
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitiq_fuzz::image(data, size);
  return 0;
}
