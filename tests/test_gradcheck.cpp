// tests/test_gradcheck.cpp -- central finite-difference gradient checks in double for every op of
// the CPU backend and for the whole model (tiny preset and an odd-shaped configuration with patch
// size 2 and three heads), with and without dropout / stochastic depth.
//
// Each check compares an analytic gradient g with the central difference f of a scalar loss
// sum(out * R) (R random) and requires the relative error ||g - f|| / ||g + f|| < 1e-6.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "vitiq/vitiq.hpp"

namespace {

using Be = vitiq::CpuBackend<double>;
using Vec = std::vector<double>;
using Index = std::ptrdiff_t;

Vec random_vec(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  vitiq::Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double rel_error(const Vec& a, const Vec& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += (a[i] + b[i]) * (a[i] + b[i]);
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

/// Central differences of loss() w.r.t. x[i] for the listed indices (all when empty).
Vec numeric_grad(Vec& x, const std::function<double()>& loss, const std::vector<std::size_t>& idx,
                 double h = 1e-5) {
  Vec g;
  for (std::size_t i : idx) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = loss();
    x[i] = keep - h;
    const double down = loss();
    x[i] = keep;
    g.push_back((up - down) / (2 * h));
  }
  return g;
}

std::vector<std::size_t> all_indices(std::size_t n) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

Vec pick(const Vec& v, const std::vector<std::size_t>& idx) {
  Vec out;
  for (auto i : idx) out.push_back(v[i]);
  return out;
}

constexpr double tol = 1e-6;

}  // namespace

TEST_CASE("gemm matches a naive product in every transpose mode", "[ops][gemm]") {
  Be be;
  const Index M = 5, N = 7, K = 4;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const Index lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
      Vec A = random_vec(std::size_t((ta ? K : M) * lda), 1), B = random_vec(std::size_t((tb ? N : K) * ldb), 2);
      Vec C = random_vec(std::size_t(M * ldc), 3), expect = C;
      for (Index i = 0; i < M; ++i)
        for (Index j = 0; j < N; ++j) {
          double s = 0;
          for (Index k = 0; k < K; ++k)
            s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
          expect[i * ldc + j] = 0.5 * s + 2.0 * C[i * ldc + j];
        }
      be.gemm(ta, tb, M, N, K, 0.5, A.data(), lda, B.data(), ldb, 2.0, C.data(), ldc);
      CHECK(rel_error(C, expect) < 1e-14);
    }
}

TEST_CASE("layernorm backward matches finite differences", "[ops][gradcheck]") {
  Be be;
  const Index rows = 3, cols = 7;
  Vec x = random_vec(rows * cols, 1), w = random_vec(cols, 2), b = random_vec(cols, 3), R = random_vec(rows * cols, 4);
  Vec y(rows * cols), mean(rows), rstd(rows);
  auto loss = [&] {
    be.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, cols);
    return dot(y, R);
  };
  loss();
  Vec dx(rows * cols), dw(cols, 0.0), db(cols, 0.0);
  be.layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), mean.data(), rstd.data(), w.data(), rows, cols);
  CHECK(rel_error(dx, numeric_grad(x, loss, all_indices(x.size()))) < tol);
  CHECK(rel_error(dw, numeric_grad(w, loss, all_indices(w.size()))) < tol);
  CHECK(rel_error(db, numeric_grad(b, loss, all_indices(b.size()))) < tol);
}

TEST_CASE("gelu backward matches finite differences", "[ops][gradcheck]") {
  Be be;
  Vec x = random_vec(50, 5, 2.0), R = random_vec(50, 6), y(50), dx(50);
  auto loss = [&] { be.gelu_forward(y.data(), x.data(), x.size()); return dot(y, R); };
  be.gelu_backward(dx.data(), R.data(), x.data(), x.size());
  CHECK(rel_error(dx, numeric_grad(x, loss, all_indices(x.size()))) < tol);
  // GELU(1) = 0.5 (1 + erf(1/sqrt 2)) = 0.8413447460685429
  Vec one{1.0}, out{0.0};
  be.gelu_forward(out.data(), one.data(), 1);
  CHECK(out[0] == Approx(0.8413447460685429).epsilon(1e-15));
}

TEST_CASE("bias add and its backward", "[ops][gradcheck]") {
  Be be;
  const Index rows = 4, cols = 5;
  Vec bias = random_vec(cols, 1), R = random_vec(rows * cols, 2), base = random_vec(rows * cols, 3);
  auto loss = [&] { Vec y = base; be.add_bias(y.data(), bias.data(), rows, cols); return dot(y, R); };
  Vec db(cols, 0.0);
  be.bias_backward(db.data(), R.data(), rows, cols);
  CHECK(rel_error(db, numeric_grad(bias, loss, all_indices(cols))) < tol);
}

TEST_CASE("SPT gather and scatter are adjoint and match finite differences", "[ops][gradcheck][spt]") {
  Be be;
  for (auto v : {vitiq::SptVariant::axial, vitiq::SptVariant::diagonal, vitiq::SptVariant::none}) {
    const Index B = 2, C = 2, H = 6, W = 6, P = 3, copies = vitiq::spt_copies(v);
    const Index n = (H / P) * (W / P), PD = copies * C * P * P;
    Vec x = random_vec(B * C * H * W, 1), R = random_vec(B * n * PD, 2), patches(B * n * PD), dx(B * C * H * W);
    auto loss = [&] { be.spt_forward(patches.data(), x.data(), B, C, H, W, P, v); return dot(patches, R); };
    be.spt_backward(dx.data(), R.data(), B, C, H, W, P, v);
    CHECK(rel_error(dx, numeric_grad(x, loss, all_indices(x.size()))) < tol);
  }
}

TEST_CASE("SPT places shifted pixels where the specification says", "[ops][spt]") {
  Be be;
  const Index C = 1, H = 4, W = 4, P = 2;
  Vec x(16);
  for (Index i = 0; i < 16; ++i) x[i] = double(i + 1);  // x[r, c] = 4 r + c + 1
  Vec patches(4 * 5 * 4);
  be.spt_forward(patches.data(), x.data(), 1, C, H, W, P, vitiq::SptVariant::axial);
  // token 0 (rows 0-1, cols 0-1), feature (p1 * P + p2) * 5 + k.
  auto at = [&](Index t, Index p1, Index p2, Index k) { return patches[t * 20 + (p1 * P + p2) * 5 + k]; };
  CHECK(at(0, 0, 0, 0) == 1);   // x itself
  CHECK(at(0, 0, 0, 1) == 0);   // (0, -1): x[0, -1] outside
  CHECK(at(0, 0, 0, 2) == 2);   // (0, +1): x[0, 1]
  CHECK(at(0, 0, 0, 3) == 0);   // (-1, 0): outside
  CHECK(at(0, 0, 0, 4) == 5);   // (+1, 0): x[1, 0]
  CHECK(at(3, 1, 1, 0) == 16);  // token 3 = rows 2-3, cols 2-3; pixel (3, 3)
  CHECK(at(3, 1, 1, 1) == 15);  // x[3, 2]
  be.spt_forward(patches.data(), x.data(), 1, C, H, W, P, vitiq::SptVariant::diagonal);
  CHECK(at(3, 0, 0, 1) == 6);   // s = 1, offset (-1, -1) from pixel (2, 2): x[1, 1] = 6
  CHECK(at(0, 0, 0, 4) == 6);   // (+1, +1) from pixel (0, 0): x[1, 1]
}

TEST_CASE("embedding and pooling backward match finite differences", "[ops][gradcheck]") {
  Be be;
  const Index B = 2, N = 4, D = 3;
  Vec tok = random_vec(B * (N - 1) * D, 1), cls = random_vec(D, 2), pos = random_vec(N * D, 3), R = random_vec(B * N * D, 4);
  Vec x(B * N * D);
  auto loss = [&] { be.embed_forward(x.data(), tok.data(), cls.data(), pos.data(), B, N, D); return dot(x, R); };
  Vec dtok(tok.size()), dcls(D, 0.0), dpos(N * D, 0.0);
  be.embed_backward(dtok.data(), dcls.data(), dpos.data(), R.data(), B, N, D);
  CHECK(rel_error(dtok, numeric_grad(tok, loss, all_indices(tok.size()))) < tol);
  CHECK(rel_error(dcls, numeric_grad(cls, loss, all_indices(cls.size()))) < tol);
  CHECK(rel_error(dpos, numeric_grad(pos, loss, all_indices(pos.size()))) < tol);
  for (auto pool : {vitiq::Pool::cls, vitiq::Pool::mean}) {
    Vec in = random_vec(B * N * D, 5), Rp = random_vec(B * D, 6), out(B * D), din(B * N * D);
    auto l2 = [&] { be.pool_forward(out.data(), in.data(), pool, B, N, D); return dot(out, Rp); };
    be.pool_backward(din.data(), Rp.data(), pool, B, N, D);
    CHECK(rel_error(din, numeric_grad(in, l2, all_indices(in.size()))) < tol);
  }
}

TEST_CASE("attention softmax backward matches finite differences for every temperature form", "[ops][gradcheck][attention]") {
  Be be;
  const Index B = 2, h = 3, N = 5;
  struct Case { vitiq::TemperatureMode mode; bool mask; Vec param; };
  std::vector<Case> cases = {{vitiq::TemperatureMode::shared_log, true, {std::log(0.35)}},
                             {vitiq::TemperatureMode::per_head, true, {0.3, 0.5, 0.8}},
                             {vitiq::TemperatureMode::fixed, false, {0.0}}};
  for (auto& c : cases) {
    Vec S = random_vec(B * h * N * N, 7, 2.0), R = random_vec(B * h * N * N, 8), A(S.size()), dS(S.size());
    auto loss = [&] {
      be.attention_softmax_forward(A.data(), S.data(), c.param.data(), c.mode, 0.4, c.mask, B, h, N);
      return dot(A, R);
    };
    loss();
    Vec dparam(c.param.size(), 0.0);
    be.attention_softmax_backward(dS.data(), dparam.data(), R.data(), A.data(), S.data(), c.param.data(),
                                  c.mode, 0.4, B, h, N);
    // The masked diagonal does not depend on S: its gradient is zero, as the difference shows.
    CHECK(rel_error(dS, numeric_grad(S, loss, all_indices(S.size()))) < tol);
    if (c.mode != vitiq::TemperatureMode::fixed)
      CHECK(rel_error(dparam, numeric_grad(c.param, loss, all_indices(c.param.size()))) < tol);
    for (Index row = 0; row < B * h * N; ++row) {
      double s = 0;
      for (Index k = 0; k < N; ++k) s += A[row * N + k];
      CHECK(s == Approx(1.0).epsilon(1e-12));
      if (c.mask) CHECK(A[row * N + row % N] == 0.0);
    }
  }
}

TEST_CASE("losses: cross-entropy and expected-vote MSE gradients", "[ops][gradcheck][loss]") {
  Be be;
  const Index B = 3, K = 5;
  Vec z = random_vec(B * K, 9), loss_v(B), probs(B * K), dz(B * K);
  Vec votes{1.0, 3.0, 4.5};
  Vec t = vitiq::make_targets<double>(votes, int(K));
  auto ce = [&] {
    Vec g(B * K);
    be.softmax_cross_entropy(loss_v.data(), probs.data(), g.data(), z.data(), t.data(), 1.0 / B, B, K);
    return (loss_v[0] + loss_v[1] + loss_v[2]) / B;
  };
  be.softmax_cross_entropy(loss_v.data(), probs.data(), dz.data(), z.data(), t.data(), 1.0 / B, B, K);
  CHECK(rel_error(dz, numeric_grad(z, ce, all_indices(z.size()))) < tol);
  auto mse = [&] {
    Vec g(B * K);
    be.expected_vote_mse(loss_v.data(), probs.data(), g.data(), z.data(), votes.data(), 1.0 / B, B, K);
    return (loss_v[0] + loss_v[1] + loss_v[2]) / B;
  };
  be.expected_vote_mse(loss_v.data(), probs.data(), dz.data(), z.data(), votes.data(), 1.0 / B, B, K);
  CHECK(rel_error(dz, numeric_grad(z, mse, all_indices(z.size()))) < tol);
}

namespace {

// A loss on the whole model: cross-entropy of the logits against soft targets.
template <vitiq::Config C>
struct ModelProbe {
  vitiq::ViT<C, Be> model{Be{}, 11};
  vitiq::Criterion<Be> criterion;
  Vec images, targets;
  Index B;
  std::uint64_t count0 = 0;

  explicit ModelProbe(Index batch) : B(batch) {
    images = random_vec(std::size_t(B * C.channels * C.image_size * C.image_size), 21);
    Vec votes;
    for (Index b = 0; b < B; ++b) votes.push_back(double(1 + b % C.num_classes));
    targets = vitiq::make_targets<double>(votes, C.num_classes);
    // Non-trivial norms, so the norm gradients are tested away from w = 1, b = 0.
    Vec p = model.parameters_to_host();
    vitiq::Rng rng(5);
    for (const auto& info : vitiq::param_table<C>())
      if (info.kind == vitiq::ParamKind::norm)
        for (std::size_t i = 0; i < info.size; ++i) p[info.offset + i] += 0.1 * rng.normal();
    model.set_parameters(p);
  }
  double loss() {
    model.set_forward_count(count0);  // the same dropout masks in every evaluation
    const double* logits = model.forward_device(images.data(), B);
    return criterion.forward_backward(model.backend(), logits, targets.data(), B, C.num_classes);
  }
  void check(std::size_t per_tensor) {
    loss();
    model.zero_grad();
    Vec dimages(images.size());
    model.backward_device(criterion.dlogits(), dimages.data());
    const Vec analytic = model.gradients_to_host();
    Vec params = model.parameters_to_host();
    auto f = [&] { model.set_parameters(params); return loss(); };
    vitiq::Rng rng(3);
    for (const auto& info : vitiq::param_table<C>()) {
      std::vector<std::size_t> idx;
      for (std::size_t k = 0; k < std::min(per_tensor, info.size); ++k)
        idx.push_back(info.offset + (info.size <= per_tensor ? k : rng.below(info.size)));
      const double err = rel_error(pick(analytic, idx), numeric_grad(params, f, idx));
      INFO("parameter " << info.name);
      CHECK(err < tol);
    }
    model.set_parameters(params);
    std::vector<std::size_t> idx;
    for (std::size_t k = 0; k < 40; ++k) idx.push_back(rng.below(images.size()));
    auto fi = [&] { return loss(); };
    INFO("input images");
    CHECK(rel_error(pick(dimages, idx), numeric_grad(images, fi, idx)) < tol);
  }
};

constexpr vitiq::Config odd{.image_size = 12, .patch_size = 2, .channels = 3, .dim = 12, .depth = 2,
                            .heads = 3, .dim_head = 4, .mlp_dim = 20, .num_classes = 5,
                            .spt = vitiq::SptVariant::axial, .lsa = true,
                            .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::mean};
constexpr vitiq::Config odd_diag{.image_size = 12, .patch_size = 4, .channels = 2, .dim = 10, .depth = 2,
                                 .heads = 3, .dim_head = 4, .mlp_dim = 14, .num_classes = 4,
                                 .spt = vitiq::SptVariant::diagonal, .lsa = true,
                                 .temperature = vitiq::Temperature::per_head, .pool = vitiq::Pool::cls};
constexpr vitiq::Config plain{.image_size = 8, .patch_size = 4, .channels = 3, .dim = 8, .depth = 1,
                              .heads = 2, .dim_head = 4, .mlp_dim = 16, .num_classes = 3,
                              .spt = vitiq::SptVariant::none, .lsa = false,
                              .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::cls};

}  // namespace

TEST_CASE("whole-model gradients: tiny preset", "[model][gradcheck]") {
  // Batch 2: 32 patches >= D = 32, the patch LayerNorm folded into the patch Linear; batch 1: not.
  ModelProbe<vitiq::presets::tiny> probe(2);
  probe.check(6);
  ModelProbe<vitiq::presets::tiny> single(1);
  single.check(6);
}

TEST_CASE("whole-model gradients: odd configuration (patch 2, three heads, mean pool)", "[model][gradcheck]") {
  ModelProbe<odd> probe(3);
  probe.check(8);
}

TEST_CASE("whole-model gradients: diagonal SPT, per-head temperature; plain MHSA without SPT", "[model][gradcheck]") {
  ModelProbe<odd_diag> a(2);
  a.check(6);
  ModelProbe<plain> b(2);
  b.check(6);
}

TEST_CASE("whole-model gradients with dropout and stochastic depth active", "[model][gradcheck][dropout]") {
  ModelProbe<odd> probe(3);
  probe.model.set_training(true);
  probe.model.set_regularization({.emb_dropout = 0.1, .attn_dropout = 0.1, .dropout = 0.1, .stochastic_depth = 0.3});
  probe.model.set_dropout_seed(99);
  probe.count0 = 7;
  probe.check(8);
}
