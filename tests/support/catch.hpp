// tests/support/catch.hpp -- the one Catch2 include of the vitiq tests, for Catch2 2.x and 3.x.
//
// Debian 12 ships Catch2 2.13 (<catch2/catch.hpp>, Approx at global scope); 3.x splits the
// header (<catch2/catch_all.hpp>) and moves Approx into namespace Catch. Tests write
// `#include "support/catch.hpp"` and use TEST_CASE, REQUIRE, Approx, Catch::Matchers as in 2.x.
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
