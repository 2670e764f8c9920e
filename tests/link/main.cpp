// tests/link/main.cpp -- links tu_a.cpp and tu_b.cpp, which include the same headers and
// instantiate the same code; the program fails when the two disagree.
#include <cstddef>
#include <cstdio>
#include <string>

std::size_t tu_a_param_count();
std::size_t tu_b_param_count();
std::string tu_a_error();
std::string tu_b_error();
double tu_a_model_output();
double tu_b_model_output();

int main() {
  const std::size_t pa = tu_a_param_count(), pb = tu_b_param_count();
  const std::string ea = tu_a_error(), eb = tu_b_error();
  const double ma = tu_a_model_output(), mb = tu_b_model_output();
  std::printf("tu_a: %zu parameters, %.9g, '%s'\ntu_b: %zu parameters, %.9g, '%s'\n", pa, ma,
              ea.c_str(), pb, mb, eb.c_str());
  const bool ok = pa == pb && pa > 0 && ea == eb && !ea.empty() && ma == mb;
  std::puts(ok ? "link test: OK" : "link test: the two translation units disagree");
  return ok ? 0 : 1;
}
