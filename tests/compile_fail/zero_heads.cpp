// tests/compile_fail/zero_heads.cpp -- must NOT compile: a model with zero attention heads.
// The test compile_fail.zero_heads builds this file and passes only on the expected message.
// EXPECT: heads must be positive
#include "vitiq/config.hpp"

static_assert(vitiq::validate_config<vitiq::Config{.heads = 0}>());

int main() { return 0; }
