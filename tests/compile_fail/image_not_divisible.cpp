// tests/compile_fail/image_not_divisible.cpp -- must NOT compile: a 30-pixel image does not split into 8-pixel patches.
// The test compile_fail.image_not_divisible builds this file and passes only on the expected message.
// EXPECT: image_size must be divisible by patch_size
#include "vitiq/config.hpp"

static_assert(vitiq::validate_config<vitiq::Config{.image_size = 30, .patch_size = 8}>());

int main() { return 0; }
