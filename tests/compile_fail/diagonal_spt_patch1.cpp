// tests/compile_fail/diagonal_spt_patch1.cpp -- must NOT compile: diagonal SPT shifts by floor(P/2), which is 0 for patch 1.
// The test compile_fail.diagonal_spt_patch1 builds this file and passes only on the expected message.
// EXPECT: spt = diagonal needs patch_size >= 2
#include "vitiq/config.hpp"

static_assert(vitiq::validate_config<vitiq::Config{.image_size = 32, .patch_size = 1, .spt = vitiq::SptVariant::diagonal}>());

int main() { return 0; }
