// tests/test_rollout.cpp -- attention rollout on hand-computed cases: identity and uniform
// attention, a chain of one-hot attentions, row (not column) normalisation, head fusion modes,
// discarding never touching the class token, rollout of a real model's attention, the attention
// gradients of gradient-weighted rollout against finite differences (double), and the raw maps and
// per-head matrices of one image of a batch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
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
  model.keep_attention_maps(true);
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

// ---------------------------------------------------------------------------------------------
// Gradient-weighted rollout: the gradient it uses against finite differences, in double.

namespace {

constexpr vitiq::Config fd_config{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 2, .heads = 2,
                                  .dim_head = 8, .mlp_dim = 32, .num_classes = 3};
using FdModel = vitiq::ViT<fd_config, vitiq::CpuBackend<double>>;

double logit_of(FdModel& m, const std::vector<double>& image, int target) {
  return m.forward(image, 1)[std::size_t(target)];
}

}  // namespace

TEST_CASE("the attention gradients of gradient-weighted rollout agree with finite differences", "[rollout][gradient]") {
  // Moving the q and k rows of block l's Wqkv along a direction u changes only that block's
  // attention A_l (v, the other blocks' weights and the residual stream before block l stay as
  // they are), so the change of the class score S is exactly sum(dS/dA_l * dA_l/du). Both
  // derivatives along u are taken here by central differences; dS/dA_l is the gradient the method
  // reads from the backward. A wrong gradient (another class, another block, transposed, taken
  // after the softmax backward) breaks the equality.
  FdModel model({}, 21);
  model.keep_attention_maps(true);  // at() below reads every block's maps after a plain forward
  vitiq::Rng rng(5);
  std::vector<double> image(3 * 16 * 16);
  for (auto& x : image) x = rng.normal();
  constexpr std::size_t N = std::size_t(fd_config.num_tokens()), H = std::size_t(fd_config.heads);
  constexpr std::size_t I = std::size_t(fd_config.inner_dim()), D = std::size_t(fd_config.dim);
  for (int target : {0, 2}) {
    const auto ag = attention_with_gradients(model, std::span<const double>(image), target);
    REQUIRE(ag.target == target);
    REQUIRE(ag.gradients.size() == std::size_t(fd_config.depth));
    const auto other = attention_with_gradients(model, std::span<const double>(image), target == 0 ? 1 : 0);
    for (std::size_t l = 0; l < std::size_t(fd_config.depth); ++l) {
      double gnorm = 0;
      for (double g : ag.gradients[l]) gnorm += g * g;
      CHECK(gnorm > 1e-12);  // a zero gradient would pass the comparison trivially
      for (int trial = 0; trial < 3; ++trial) {
        const std::size_t off = FdModel::offsets.blocks[l].qkv_w;  // [3I, D]: q rows, k rows, v rows
        std::vector<double> u(2 * I * D);
        for (auto& x : u) x = rng.normal();
        double* w = model.parameters();
        const std::vector<double> keep(w + off, w + off + 2 * I * D);
        const double h = 1e-5;
        auto at = [&](double eps, std::vector<double>& attn) {
          for (std::size_t i = 0; i < u.size(); ++i) w[off + i] = keep[i] + eps * u[i];
          const double s = logit_of(model, image, target);
          attn = model.attention_to_host(std::ptrdiff_t(l));
          return s;
        };
        std::vector<double> a_plus, a_minus, a_other_block;
        const double s_plus = at(h, a_plus), s_minus = at(-h, a_minus);
        std::copy(keep.begin(), keep.end(), w + off);
        const double ds = (s_plus - s_minus) / (2 * h);  // dS/du
        double predicted = 0, wrong_class = 0, transposed = 0, wrong_block = 0;
        const std::size_t lo = (l + 1) % std::size_t(fd_config.depth);
        for (std::size_t j = 0; j < H; ++j)
          for (std::size_t r = 0; r < N; ++r)
            for (std::size_t c = 0; c < N; ++c) {
              const std::size_t i = (j * N + r) * N + c;
              const double da = (a_plus[i] - a_minus[i]) / (2 * h);  // dA_l/du
              predicted += ag.gradients[l][i] * da;
              wrong_class += other.gradients[l][i] * da;
              transposed += ag.gradients[l][(j * N + c) * N + r] * da;
              wrong_block += ag.gradients[lo][i] * da;
            }
        INFO("block " << l << ", class " << target << ": dS/du " << ds << ", sum(G dA/du) " << predicted);
        const double tol = 1e-6 * (std::abs(ds) + std::abs(predicted)) + 1e-9;
        CHECK(std::abs(predicted - ds) < tol);
        CHECK(std::abs(ds) > 1e-6);  // the direction moves the score at all
        // The same comparison rejects the wrong gradients (the check can fail).
        CHECK(std::abs(wrong_class - ds) > 100 * tol);
        CHECK(std::abs(transposed - ds) > 100 * tol);
        CHECK(std::abs(wrong_block - ds) > 100 * tol);
      }
    }
    // The method itself on these gradients: a distribution over patches and class token.
    const auto map = gradient_rollout(ag.attention, ag.gradients, H, N);
    REQUIRE(map.size() == std::size_t(fd_config.num_patches()));
    double s = 0;
    for (double v : map) { CHECK(v >= 0.0); s += v; }
    CHECK(s <= 1.0 + 1e-12);
  }
}

TEST_CASE("raw maps, per-head matrices and image_attention read the right image of a batch", "[rollout]") {
  FdModel model({}, 4);
  model.keep_attention_maps(true);
  vitiq::Rng rng(9);
  std::vector<double> two(2 * 3 * 16 * 16);
  for (auto& x : two) x = rng.normal();
  model.forward(two, 2);
  const auto second = image_attention(model, 1);
  CHECK_THROWS_AS(image_attention(model, 2), std::out_of_range);
  model.forward(std::span<const double>(two).subspan(3 * 16 * 16), 1);
  const auto alone = image_attention(model, 0);
  REQUIRE(alone.size() == second.size());
  for (std::size_t l = 0; l < alone.size(); ++l)
    for (std::size_t i = 0; i < alone[l].size(); ++i) CHECK(alone[l][i] == Approx(second[l][i]).margin(1e-12));
  constexpr std::size_t N = std::size_t(fd_config.num_tokens()), H = std::size_t(fd_config.heads);
  const auto heads = head_matrices(alone, H, N);
  const auto raw = raw_attention_maps(alone, H, N);
  const auto raw_max = raw_attention_maps(alone, H, N, HeadFusion::max);
  REQUIRE(heads.size() == 2);
  REQUIRE(heads[0].size() == H);
  for (std::size_t l = 0; l < 2; ++l) {
    double s = 0;
    for (std::size_t p = 0; p < raw[l].size(); ++p) {
      // map cell p = token p + 1 of the class token's row, mean and max over the heads
      const double a0 = heads[l][0](0, p + 1), a1 = heads[l][1](0, p + 1);
      CHECK(raw[l][p] == Approx((a0 + a1) / 2).epsilon(1e-14));
      CHECK(raw_max[l][p] == std::max(a0, a1));
      s += raw[l][p];
    }
    CHECK(s == Approx(1.0).epsilon(1e-12));  // LSA: the class token does not attend to itself
    for (std::size_t j = 0; j < H; ++j) {
      CHECK(heads[l][j](0, 0) == 0.0);
      CHECK(row_sum(heads[l][j], 3) == Approx(1.0).epsilon(1e-12));
    }
  }
}
