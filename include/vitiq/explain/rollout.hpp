// vitiq/explain/rollout.hpp -- what an artificial observer looks at: raw class-token attention,
// attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928) and gradient-weighted rollout.
//
// All functions work on host copies of the attention the forward keeps, [h, N, N] per block for
// one image (token 0 = class token, tokens 1..n = patches in row-major grid order);
// image_attention() and attention_with_gradients() make those copies from a model.
// Invariant: every matrix that rollout multiplies has rows summing to 1, so the product does too
// (rows, not columns: a widely copied implementation normalises columns by mistake).
// With LSA the diagonal of every attention matrix is 0 (no token attends to itself): the identity
// added for the residual path is then each token's only self path.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace vitiq::explain {

/// @brief How the heads of a block are fused into one [N, N] matrix.
enum class HeadFusion { mean, max, min };

/// @brief A square matrix [n, n], row-major.
struct Square {
  std::size_t n = 0;      ///< rows = columns
  std::vector<double> a;  ///< [n, n]
  /// @brief Element (i, j).
  double& operator()(std::size_t i, std::size_t j) { return a[i * n + j]; }
  /// @brief Element (i, j).
  double operator()(std::size_t i, std::size_t j) const { return a[i * n + j]; }
};

/// @brief Fuse the heads of one block's attention [h, N, N] into [N, N].
template <class T>
Square fuse_heads(std::span<const T> attention, std::size_t heads, std::size_t N, HeadFusion fusion) {
  if (attention.size() != heads * N * N) throw std::invalid_argument("fuse_heads: attention must hold h * N * N values");
  Square s{N, std::vector<double>(N * N)};
  for (std::size_t i = 0; i < N * N; ++i) {
    double v = double(attention[i]);
    for (std::size_t j = 1; j < heads; ++j) {
      const double x = double(attention[j * N * N + i]);
      v = fusion == HeadFusion::mean ? v + x : fusion == HeadFusion::max ? std::max(v, x) : std::min(v, x);
    }
    s.a[i] = fusion == HeadFusion::mean ? v / double(heads) : v;
  }
  return s;
}

/// @brief The class token's attention over the patches of a fused block: row 0, columns 1..N-1,
/// as a [grid, grid] map (row-major), grid = sqrt(N - 1).
inline std::vector<double> class_token_map(const Square& fused) {
  return std::vector<double>(fused.a.begin() + 1, fused.a.begin() + std::ptrdiff_t(fused.n));
}

/// @brief Options of attention rollout.
struct RolloutOptions {
  HeadFusion fusion = HeadFusion::mean;  ///< how heads are fused per block
  double discard_ratio = 0.0;  ///< zero this lowest fraction of each fused matrix (never row 0 or column 0)
};

/// @brief Set the lowest `ratio` fraction of the entries to 0, except in the class token's row and
/// column (which carry the explanation); ties at the threshold are discarded in index order.
inline void discard_lowest(Square& m, double ratio) {
  if (ratio <= 0) return;
  std::vector<std::size_t> idx;
  for (std::size_t i = 1; i < m.n; ++i)
    for (std::size_t j = 1; j < m.n; ++j) idx.push_back(i * m.n + j);
  const std::size_t k = std::size_t(std::floor(ratio * double(idx.size())));
  if (k == 0) return;
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t x, std::size_t y) { return m.a[x] < m.a[y]; });
  for (std::size_t t = 0; t < std::min(k, idx.size()); ++t) m.a[idx[t]] = 0.0;
}

/// @brief Add the identity (the residual path) and renormalise each ROW to sum 1: 0.5 (A + I) for
/// a row-stochastic A, exactly as the paper; rows are renormalised so that any A is accepted.
inline void add_identity_and_normalise_rows(Square& m) {
  for (std::size_t i = 0; i < m.n; ++i) {
    m(i, i) += 1.0;
    double s = 0;
    for (std::size_t j = 0; j < m.n; ++j) s += m(i, j);
    for (std::size_t j = 0; j < m.n; ++j) m(i, j) /= s;
  }
}

/// @brief C = A B for [n, n] matrices.
inline Square multiply(const Square& A, const Square& B) {
  Square C{A.n, std::vector<double>(A.n * A.n, 0.0)};
  for (std::size_t i = 0; i < A.n; ++i)
    for (std::size_t k = 0; k < A.n; ++k) {
      const double a = A(i, k);
      if (a == 0) continue;
      for (std::size_t j = 0; j < A.n; ++j) C(i, j) += a * B(k, j);
    }
  return C;
}

/// @brief Rollout of already fused per-block matrices (first block first): each gets the
/// identity and row normalisation, then R = M_L ... M_2 M_1 (multiplied from the first block
/// upward). Returns R [N, N]; its row 0 over columns 1..N-1 is the explanation.
inline Square rollout_fused(std::vector<Square> blocks, double discard_ratio = 0.0) {
  if (blocks.empty()) throw std::invalid_argument("rollout: no blocks");
  Square R;
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    discard_lowest(blocks[l], discard_ratio);
    add_identity_and_normalise_rows(blocks[l]);
    R = l == 0 ? blocks[l] : multiply(blocks[l], R);
  }
  return R;
}

/// @brief Attention rollout for one image. `attention[l]` is block l's attention [h, N, N].
/// @return the class-token row of the rollout over the patches, [grid, grid] row-major.
template <class T>
std::vector<double> attention_rollout(const std::vector<std::vector<T>>& attention, std::size_t heads, std::size_t N,
                                      const RolloutOptions& opt = {}) {
  std::vector<Square> fused;
  for (const auto& a : attention) fused.push_back(fuse_heads<T>(a, heads, N, opt.fusion));
  return class_token_map(rollout_fused(std::move(fused), opt.discard_ratio));
}

/// @brief Gradient-weighted rollout: per block the heads' fusion (mean by default) of
/// max(0, dS/dA * A) (attention times the gradient of the chosen class score w.r.t. it, negatives
/// clipped), then rollout as attention_rollout (discard, identity, row normalisation, product).
/// `gradients[l]` has the shape of `attention[l]`, [h, N, N]; attention_with_gradients() gives both.
/// @return the class-token row of the rollout over the patches, [grid, grid] row-major
template <class T>
std::vector<double> gradient_rollout(const std::vector<std::vector<T>>& attention,
                                     const std::vector<std::vector<T>>& gradients, std::size_t heads, std::size_t N,
                                     const RolloutOptions& opt = {}) {
  if (attention.size() != gradients.size()) throw std::invalid_argument("gradient_rollout: one gradient per block");
  std::vector<Square> fused;
  for (std::size_t l = 0; l < attention.size(); ++l) {
    if (attention[l].size() != heads * N * N || gradients[l].size() != heads * N * N)
      throw std::invalid_argument("gradient_rollout: block " + std::to_string(l) + " must hold h * N * N values");
    std::vector<double> w(heads * N * N);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::max(0.0, double(attention[l][i]) * double(gradients[l][i]));
    fused.push_back(fuse_heads<double>(w, heads, N, opt.fusion));
  }
  return class_token_map(rollout_fused(std::move(fused), opt.discard_ratio));
}

/// @brief Raw attention maps: for every block, the class token's attention over the patches of
/// the heads' fusion, [L][grid * grid] (row-major [grid, grid]). No identity, no normalisation:
/// with LSA the class token's row has a zero diagonal, so each map sums to 1 for the mean fusion.
template <class T>
std::vector<std::vector<double>> raw_attention_maps(const std::vector<std::vector<T>>& attention, std::size_t heads,
                                                    std::size_t N, HeadFusion fusion = HeadFusion::mean) {
  std::vector<std::vector<double>> maps;
  for (const auto& a : attention) maps.push_back(class_token_map(fuse_heads<T>(a, heads, N, fusion)));
  return maps;
}

/// @brief The full per-head matrices of one image: [L][h] matrices [N, N] (row i = what token i
/// attends to; rows sum to 1).
template <class T>
std::vector<std::vector<Square>> head_matrices(const std::vector<std::vector<T>>& attention, std::size_t heads,
                                               std::size_t N) {
  std::vector<std::vector<Square>> out;
  for (const auto& a : attention) {
    if (a.size() != heads * N * N) throw std::invalid_argument("head_matrices: attention must hold h * N * N values");
    std::vector<Square> blocks;
    for (std::size_t j = 0; j < heads; ++j)
      blocks.push_back(Square{N, std::vector<double>(a.begin() + std::ptrdiff_t(j * N * N),
                                                     a.begin() + std::ptrdiff_t((j + 1) * N * N))});
    out.push_back(std::move(blocks));
  }
  return out;
}

/// @brief Host copies of the attention of image `b` of the model's last forward: [L][h * N * N]
/// (block l's [h, N, N]), converted to double.
///
/// The forward must have kept every block's maps: call model.keep_attention_maps(true) before it
/// (with class-token pooling the last block otherwise computes the class token's row alone).
/// @throws std::out_of_range when b is not an image of the last forward (or there was none)
/// @throws std::logic_error when the last forward did not keep the last block's maps
template <class Model>
std::vector<std::vector<double>> image_attention(const Model& model, std::size_t b) {
  constexpr std::size_t L = std::size_t(Model::L), HNN = std::size_t(Model::h * Model::N * Model::N);
  if (b >= std::size_t(model.batch())) throw std::out_of_range("image_attention: image " + std::to_string(b) + " is not in the last forward");
  std::vector<std::vector<double>> out;
  for (std::size_t l = 0; l < L; ++l) {
    const auto all = model.attention_to_host(std::ptrdiff_t(l));  // [B, h, N, N]
    out.emplace_back(all.begin() + std::ptrdiff_t(b * HNN), all.begin() + std::ptrdiff_t((b + 1) * HNN));
  }
  return out;
}

/// @brief What one forward/backward pair of attention_with_gradients() gives.
struct AttentionGradients {
  std::vector<std::vector<double>> attention;  ///< [L][h * N * N], post-softmax attention
  std::vector<std::vector<double>> gradients;  ///< [L][h * N * N], dS/dA for the class score S
  std::vector<double> logits;                  ///< [K]
  int target = 0;                              ///< the 0-based class whose logit is S
};

/// @brief Attention and the gradient of one class score w.r.t. every block's post-softmax
/// attention, for one image: forward in evaluation mode, backward of S = logits[target] (the
/// pre-softmax score, as Chefer et al. 2021), read through ViT::keep_attention_gradients().
///
/// Side effects on the model: the parameter gradients are zeroed afterwards, the training mode is
/// restored, keep_attention_gradients() is switched off again (the activation cache then holds
/// this image's forward, with the model's own keep_attention_maps() setting).
/// @param model  a vitiq::ViT (any backend)
/// @param image  [C, S, S] one normalised image
/// @param target 0-based class; -1: the arg-max class
/// @throws std::invalid_argument when image does not hold C * S * S values or target >= K
template <class Model>
AttentionGradients attention_with_gradients(Model& model, std::span<const typename Model::T> image, int target = -1) {
  using T = typename Model::T;
  constexpr std::size_t K = std::size_t(Model::K);
  if (image.size() != std::size_t(Model::Ch * Model::S * Model::S))
    throw std::invalid_argument("attention_with_gradients: the image must hold C * S * S values");
  if (target >= int(K)) throw std::invalid_argument("attention_with_gradients: target class " + std::to_string(target) + " >= K");
  const bool was_training = model.training();
  model.set_training(false);
  model.keep_attention_gradients(true);
  AttentionGradients r;
  const auto logits = model.forward(image, 1);  // [1, K]
  r.logits.assign(logits.begin(), logits.end());
  r.target = target >= 0 ? target : int(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin());
  std::vector<T> dlogits(K, T(0));
  dlogits[std::size_t(r.target)] = T(1);  // dS/dlogits for S = logits[target]
  model.backward(std::span<const T>(dlogits));
  r.attention = image_attention(model, 0);
  constexpr std::size_t HNN = std::size_t(Model::h * Model::N * Model::N);
  for (std::ptrdiff_t l = 0; l < Model::L; ++l) {
    std::vector<T> g(HNN);
    model.backend().to_host(g.data(), model.attention_gradient(l), HNN);
    r.gradients.emplace_back(g.begin(), g.end());
  }
  model.zero_grad();
  model.keep_attention_gradients(false);
  model.forward(image, 1);  // keep the cache valid for the caller (attention(), backward())
  model.set_training(was_training);
  return r;
}

/// @brief Scale a map to [0, 1] (a constant map becomes all zeros).
inline std::vector<double> normalise01(std::vector<double> m) {
  if (m.empty()) return m;
  const auto [lo, hi] = std::minmax_element(m.begin(), m.end());
  const double a = *lo, b = *hi;
  for (auto& x : m) x = b > a ? (x - a) / (b - a) : 0.0;
  return m;
}

/// @brief Share of a map's mass that falls on the cells where `mask` is true (same layout).
inline double mass_share(std::span<const double> map, std::span<const bool> mask) {
  double in = 0, total = 0;
  for (std::size_t i = 0; i < map.size(); ++i) {
    total += map[i];
    if (mask[i]) in += map[i];
  }
  return total > 0 ? in / total : 0.0;
}

/// @brief Share of a map's mass inside a region given as each cell's covered fraction in [0, 1]
/// (same layout; explain::region_coverage computes it for a pixel rectangle):
/// sum(map * coverage) / sum(map).
inline double mass_share(std::span<const double> map, std::span<const double> coverage) {
  if (map.size() != coverage.size()) throw std::invalid_argument("mass_share: map and coverage differ in size");
  double in = 0, total = 0;
  for (std::size_t i = 0; i < map.size(); ++i) {
    total += map[i];
    in += map[i] * coverage[i];
  }
  return total > 0 ? in / total : 0.0;
}

}  // namespace vitiq::explain
