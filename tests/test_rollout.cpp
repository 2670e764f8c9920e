// tests/test_rollout.cpp -- attention rollout on hand-computed cases: identity and uniform
// attention, a chain of one-hot attentions, row (not column) normalisation, head fusion modes,
// discarding never touching the class token, and rollout of a real model's attention.
#include <catch2/catch.hpp>

#include <vector>

#include "vitiq/explain/rollout.hpp"
#include "vitiq/vitiq.hpp"

using namespace vitiq::explain;

namespace {

Square one_hot_rows(std::size_t n, const std::vector<std::size_t>& target) {
  Square s{n, std::vector<double>(n * n, 0.0)};
  for (std::size_t i = 0; i < n; ++i) s(i, target[i]) = 1.0;
  return s;
}

double row_sum(const Square& m, std::size_t i) {
  double s = 0;
  for (std::size_t j = 0; j < m.n; ++j) s += m(i, j);
  return s;
}

}  // namespace

TEST_CASE("rollout of identity and of uniform attention gives a uniform map", "[rollout]") {
  const std::size_t N = 5;  // class token + 2 x 2 patches
  std::vector<Square> ident(3, one_hot_rows(N, {0, 1, 2, 3, 4}));
  const auto m = class_token_map(rollout_fused(ident));
  for (double v : m) CHECK(v == 0.0);  // the class token keeps to itself: no patch gets mass
  std::vector<Square> uniform(3, Square{N, std::vector<double>(N * N, 1.0 / N)});
  const auto u = class_token_map(rollout_fused(uniform));
  for (double v : u) CHECK(v == Approx(u[0]).epsilon(1e-14));
  CHECK(u[0] > 0.0);
}

TEST_CASE("a chain of one-hot attentions is followed", "[rollout]") {
  // Block 1: class token -> patch token 2, token 2 -> token 4. Block 2: class token -> token 2.
  // With M = (A + I) / 2: R row 0 = 1/2 M1 row 2 + 1/2 M1 row 0 = 1/4 e4 + 1/2 e2 + 1/4 e0.
  const std::size_t N = 5;
  const Square A1 = one_hot_rows(N, {2, 1, 4, 3, 4});  // token 4 attends to itself, token 1 to itself...
  const Square A2 = one_hot_rows(N, {2, 1, 2, 3, 4});
  const auto map = class_token_map(rollout_fused({A1, A2}));
  // map index = token - 1
  CHECK(map[0] == Approx(0.0).margin(1e-15));
  CHECK(map[1] == Approx(0.5));
  CHECK(map[2] == Approx(0.0).margin(1e-15));
  CHECK(map[3] == Approx(0.25));
}

TEST_CASE("rows of every intermediate product sum to 1 (rows, not columns)", "[rollout]") {
  const std::size_t N = 6;
  vitiq::Rng rng(4);
  std::vector<Square> blocks;
  for (int l = 0; l < 4; ++l) {
    Square s{N, std::vector<double>(N * N)};
    for (std::size_t i = 0; i < N; ++i) {
      double sum = 0;
      for (std::size_t j = 0; j < N; ++j) sum += (s(i, j) = (i == j ? 0.0 : rng.uniform() * (j == 1 ? 5.0 : 1.0)));
      for (std::size_t j = 0; j < N; ++j) s(i, j) /= sum;  // LSA: zero diagonal, row-stochastic
    }
    blocks.push_back(s);
  }
  for (std::size_t L = 1; L <= blocks.size(); ++L) {
    const Square R = rollout_fused(std::vector<Square>(blocks.begin(), blocks.begin() + long(L)));
    for (std::size_t i = 0; i < N; ++i) CHECK(row_sum(R, i) == Approx(1.0).epsilon(1e-13));
    // Column sums are not 1 here (token 1 attracts five times the weight): a column-normalised
    // implementation would give a different answer.
    double col1 = 0;
    for (std::size_t i = 0; i < N; ++i) col1 += R(i, 1);
    CHECK(std::abs(col1 - 1.0) > 0.1);
  }
}

TEST_CASE("head fusion: mean, max, min", "[rollout]") {
  const std::vector<double> a{0.2, 0.8, 0.6, 0.4,   // head 0, [2, 2]
                              0.6, 0.4, 0.0, 1.0};  // head 1
  const auto mean = fuse_heads<double>(a, 2, 2, HeadFusion::mean).a;
  const std::vector<double> expect{0.4, 0.6, 0.3, 0.7};
  for (std::size_t i = 0; i < 4; ++i) CHECK(mean[i] == Approx(expect[i]).epsilon(1e-15));
  CHECK(fuse_heads<double>(a, 2, 2, HeadFusion::max).a == std::vector<double>{0.6, 0.8, 0.6, 1.0});
  CHECK(fuse_heads<double>(a, 2, 2, HeadFusion::min).a == std::vector<double>{0.2, 0.4, 0.0, 0.4});
}

TEST_CASE("discarding the lowest entries never removes the class token's row or column", "[rollout]") {
  const std::size_t N = 5;
  Square s{N, std::vector<double>(N * N, 0.5)};
  for (std::size_t j = 0; j < N; ++j) { s(0, j) = 1e-6; s(j, 0) = 1e-6; }
  discard_lowest(s, 0.9);
  for (std::size_t j = 0; j < N; ++j) {
    CHECK(s(0, j) == 1e-6);
    CHECK(s(j, 0) == 1e-6);
  }
  int zeros = 0;
  for (std::size_t i = 1; i < N; ++i)
    for (std::size_t j = 1; j < N; ++j) zeros += s(i, j) == 0.0;
  CHECK(zeros == 14);  // floor(0.9 * 16)
}

TEST_CASE("rollout of a model's attention is a distribution over the patches and the class token", "[rollout][model]") {
  constexpr auto C = vitiq::presets::tiny;
  vitiq::ViT<C> model({}, 8);
  vitiq::Rng rng(1);
  std::vector<float> image(3 * 32 * 32);
  for (auto& x : image) x = float(rng.normal());
  model.forward(image, 1);
  std::vector<std::vector<float>> attention;
  for (int l = 0; l < C.depth; ++l) attention.push_back(model.attention_to_host(l));
  for (auto fusion : {HeadFusion::mean, HeadFusion::max, HeadFusion::min}) {
    const auto map = attention_rollout(attention, C.heads, C.num_tokens(), {.fusion = fusion});
    REQUIRE(map.size() == std::size_t(C.num_patches()));
    double s = 0;
    for (double v : map) { CHECK(v >= 0.0); s += v; }
    CHECK(s > 0.0);
    CHECK(s < 1.0);  // the rest stays on the class token itself (identity path)
  }
}
