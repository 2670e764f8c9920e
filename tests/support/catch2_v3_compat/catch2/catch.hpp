// tests/support/catch2_v3_compat/catch2/catch.hpp -- on the include path only with Catch2 3.x,
// where <catch2/catch.hpp> no longer exists: tests that include it directly still compile.
#pragma once
#include "../../catch.hpp"
