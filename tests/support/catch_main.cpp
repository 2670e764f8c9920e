// tests/support/catch_main.cpp -- main() of vitiq_tests (kept apart: Catch2's runner compiles slowly).
#if __has_include(<catch2/catch_all.hpp>)
// Catch2 3.x: the runner lives in the library; CATCH_CONFIG_MAIN no longer exists.
#include <catch2/catch_session.hpp>
int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
#else
#define CATCH_CONFIG_MAIN
#include "catch.hpp"
#endif
