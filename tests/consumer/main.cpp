// tests/consumer/main.cpp -- compiled against the installed headers through find_package(vitiq).
#include <cstdio>

#include "vitiq/config.hpp"

int main() {
  constexpr vitiq::Config c = vitiq::presets::tiny;
  static_assert(vitiq::validate_config<c>());
  std::printf("consumer: vitiq::presets::tiny.num_tokens() = %d\n", c.num_tokens());
  return c.num_tokens() == 17 ? 0 : 1;
}
