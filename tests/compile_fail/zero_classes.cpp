// tests/compile_fail/zero_classes.cpp -- must NOT compile: a classifier with zero classes.
// The test compile_fail.zero_classes builds this file and passes only on the expected message.
// EXPECT: num_classes must be positive
#include "vitiq/config.hpp"

static_assert(vitiq::validate_config<vitiq::Config{.num_classes = 0}>());

int main() { return 0; }
