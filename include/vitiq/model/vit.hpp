// vitiq/model/vit.hpp -- the Vision Transformer with Shifted Patch Tokenization and Locality
// Self-Attention (Lee, Lee & Song 2021), forward and backward, on any backend.
//
// The model owns three flat buffers in backend memory: parameters, gradients (same layout, see
// param_layout.hpp) and activations (sized for the current batch). forward() keeps everything the
// backward needs, including the post-softmax attention of every block [L, B, h, N, N], which
// attention rollout reads directly (with class-token pooling the last block is computed for the
// class token alone unless keep_attention_maps(true) asks for its full maps: only that token's row
// of its output is ever read). backward() follows the forward line by line in reverse:
// parameter gradients accumulate, activation gradients are assigned, the residual stream's
// gradient accumulates over the branches.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/backend.hpp"
#include "vitiq/config.hpp"
#include "vitiq/cpu/backend.hpp"
#include "vitiq/cpu/rng.hpp"
#include "vitiq/model/param_layout.hpp"

namespace vitiq {

/// @brief Run-time regularisation of a model in training mode (all off by default).
struct Regularization {
  double emb_dropout = 0.0;       ///< dropout after the position embedding
  double attn_dropout = 0.0;      ///< dropout on the attention probabilities
  double dropout = 0.0;           ///< dropout after the attention projection and in the MLP
  double stochastic_depth = 0.0;  ///< per-sample drop rate of each residual branch
};

/// @brief A ViT of shape `C` on backend `Backend` (CpuBackend<float> by default).
///
/// Owns the flat parameter and gradient buffers [num_params] and the activation cache of the last
/// forward. Shapes below use the static constants: B batch, C channels (Ch), H = W = S image
/// size, n patches, N = n + 1 tokens, D width, h heads, K classes.
/// Parameter gradients accumulate (+=); see docs/design.md for the accumulation rule.
/// Usage: forward(), a loss on the logits, zero_grad(), backward(), then an optimiser step on
/// parameters() with gradients().
/// @tparam C        the model configuration (validated at compile time)
/// @tparam BackendT a type satisfying vitiq::Backend
template <Config C, class BackendT = CpuBackend<float>>
class ViT {
  static_assert(validate_config<C>());
  static_assert(Backend<BackendT>, "vitiq::ViT: BackendT does not satisfy the vitiq::Backend concept");

 public:
  /// The backend type.
  using Backend = BackendT;
  /// The scalar type of parameters, activations and gradients.
  using T = typename Backend::Scalar;
  /// The backend's owning buffer type.
  using Buffer = typename Backend::Buffer;
  /// Signed type of sizes and indices.
  using Index = std::ptrdiff_t;

  /// The model configuration C.
  static constexpr Config config = C;
  /// Offsets of every parameter tensor in parameters() and gradients() (param_offsets<C>()).
  static constexpr auto offsets = param_offsets<C>();
  /// Number of learnable scalars (length of parameters() and gradients()).
  static constexpr std::size_t num_params = offsets.total;

  /// D, token width (Config::dim).
  static constexpr Index D = C.dim, L = C.depth, h = C.heads, d = C.dim_head, I = C.inner_dim(),
                         M = C.mlp_dim, K = C.num_classes, N = C.num_tokens(), n = C.num_patches(),
                         PD = C.patch_dim(), Ch = C.channels, S = C.image_size, P = C.patch_size;
  /// @var L
  /// L, number of transformer blocks (Config::depth).
  /// @var h
  /// h, number of attention heads (Config::heads).
  /// @var d
  /// d, width of one head (Config::dim_head).
  /// @var I
  /// I = h * d, width of q, k and v (Config::inner_dim()).
  /// @var M
  /// M, hidden width of the MLP (Config::mlp_dim).
  /// @var K
  /// K, number of classes: the logits are [B, K] (Config::num_classes).
  /// @var N
  /// N = n + 1, tokens per image, class token first (Config::num_tokens()).
  /// @var n
  /// n, patches per image (Config::num_patches()).
  /// @var PD
  /// PD, features of one patch before the embedding (Config::patch_dim()).
  /// @var Ch
  /// Ch = C, image channels (Config::channels).
  /// @var S
  /// H = W, image size in pixels (Config::image_size).
  /// @var P
  /// P, patch size in pixels (Config::patch_size).

  /// @brief A model with default initialisation (see init_parameters) from `seed`.
  ///
  /// Allocates the parameter and gradient buffers; the activations are allocated by the first
  /// forward. The model starts in evaluation mode with no regularisation.
  /// @param backend the backend instance (execution context), moved into the model
  /// @param seed    seed of the parameter initialisation
  explicit ViT(Backend backend = {}, std::uint64_t seed = 0)
      : backend_(std::move(backend)),
        params_(backend_.allocate(num_params)),
        grads_(backend_.allocate(num_params)) {
    init_parameters(seed);
  }

  /// @brief Move constructor; the model is move-only (it owns backend buffers).
  ViT(ViT&&) noexcept = default;
  /// @brief Move assignment.
  ViT& operator=(ViT&&) noexcept = default;

  /// @brief The specification's default initialisation: Linear weights and biases
  /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm weight 1, bias 0; position embedding and class
  /// token N(0, 1); temperature log(d^-0.5) (shared_log) or d^-0.5 (per_head).
  ///
  /// Draws from Rng(seed) in param_table<C>() order, then zeroes the gradients.
  /// @param seed seed of the generator; the same seed gives the same values (rounded to T) on
  /// every backend
  void init_parameters(std::uint64_t seed) {
    std::vector<T> host(num_params, T(0));
    Rng rng(seed);
    for (const ParamInfo& p : param_table<C>()) {
      T* x = host.data() + p.offset;
      switch (p.kind) {
        case ParamKind::weight:
        case ParamKind::bias: {
          const double fan_in = p.kind == ParamKind::weight ? double(p.shape[1]) : bias_fan_in(p);
          const double bound = 1.0 / std::sqrt(fan_in);
          for (std::size_t i = 0; i < p.size; ++i) x[i] = T(rng.uniform(-bound, bound));
          break;
        }
        case ParamKind::norm: {
          const bool is_weight = p.name.ends_with("weight");
          for (std::size_t i = 0; i < p.size; ++i) x[i] = is_weight ? T(1) : T(0);
          break;
        }
        case ParamKind::embedding:
          for (std::size_t i = 0; i < p.size; ++i) x[i] = T(rng.normal());
          break;
        case ParamKind::temperature: {
          const double tau = 1.0 / std::sqrt(double(d));
          for (std::size_t i = 0; i < p.size; ++i)
            x[i] = T(C.temperature == Temperature::shared_log ? std::log(tau) : tau);
          break;
        }
      }
    }
    backend_.to_device(params_.data(), host.data(), num_params);
    ++param_version_;
    zero_grad();
  }

  /// @brief The backend instance the model runs on.
  Backend& backend() { return backend_; }
  /// @brief The backend instance the model runs on.
  const Backend& backend() const { return backend_; }

  /// @brief The flat parameter buffer [num_params] in backend memory (layout: param_layout.hpp).
  ///
  /// Counts as a change of the parameters for set_weight_packing()'s packed copy.
  T* parameters() {
    ++param_version_;
    return params_.data();
  }
  /// @brief The flat parameter buffer [num_params] in backend memory (read-only).
  const T* parameters() const { return params_.data(); }
  /// @brief The flat gradient buffer [num_params], same layout; backward() accumulates into it.
  T* gradients() { return grads_.data(); }
  /// @brief The flat gradient buffer [num_params] in backend memory (read-only).
  const T* gradients() const { return grads_.data(); }

  /// @brief Copy the parameters to a host vector [num_params].
  std::vector<T> parameters_to_host() const { return to_host_vector(params_.data(), num_params); }
  /// @brief Copy the gradients to a host vector [num_params].
  std::vector<T> gradients_to_host() const { return to_host_vector(grads_.data(), num_params); }
  /// @brief Replace all parameters from host memory [num_params].
  /// @param host the new parameters [num_params], in the param_layout.hpp order
  /// @throws std::invalid_argument when host.size() != num_params
  void set_parameters(std::span<const T> host) {
    if (host.size() != num_params) throw std::invalid_argument("vitiq::ViT::set_parameters: wrong length");
    backend_.to_device(params_.data(), host.data(), num_params);
    ++param_version_;
  }

  /// @brief Set every gradient to zero.
  void zero_grad() { backend_.fill(grads_.data(), T(0), num_params); }

  /// @brief Training mode enables dropout and stochastic depth; evaluation (default) disables them.
  ///
  /// Keep the mode unchanged between a forward and its backward.
  /// @param on true for training mode, false for evaluation mode
  void set_training(bool on) { training_ = on; }
  /// @brief True in training mode.
  bool training() const { return training_; }
  /// @brief Set the dropout and stochastic-depth rates used in training mode.
  ///
  /// Keep them unchanged between a forward and its backward.
  /// @param r the rates, each in [0, 1)
  void set_regularization(const Regularization& r) { reg_ = r; }
  /// @brief The rates used in training mode.
  const Regularization& regularization() const { return reg_; }
  /// @brief Seed of the dropout masks; with the forward counter it fixes every mask.
  /// @param seed any 64-bit value
  void set_dropout_seed(std::uint64_t seed) { dropout_seed_ = seed; }
  /// @brief Number of forward passes run in training mode (the dropout stream counter).
  std::uint64_t forward_count() const { return forward_count_; }
  /// @brief Restore the dropout stream counter (resuming from a checkpoint).
  /// @param c the value forward_count() had when the checkpoint was written
  void set_forward_count(std::uint64_t c) { forward_count_ = c; }

  /// @brief Forward pass on images in backend memory.
  ///
  /// Caches every activation the backward needs and the attention of every block. In training
  /// mode it applies the configured regularisation and increments forward_count().
  /// @param images [B, C, H, W], normalised.
  /// @param batch  B >= 1.
  /// @return logits [B, K] in backend memory, valid until the next forward.
  /// @throws std::invalid_argument when batch < 1
  const T* forward_device(const T* images, Index batch) {
    if (batch < 1) throw std::invalid_argument("vitiq::ViT::forward: batch must be >= 1");
    prepare(batch);
    use_packed_ = pack_weights_ && !training_ && batch * N <= packed_rows_max;
    if (use_packed_ && packed_version_ != param_version_) pack_weights();
    const Index B = batch, BN = B * N;
    Backend& be = backend_;
    const T* w = params_.data();
    const auto& o = offsets;
    const bool train = training_;
    const std::uint64_t pass = train ? forward_count_++ : 0;
    std::uint64_t stream = pass * 4096;  // each masked tensor of this pass gets its own stream

    // Patch embedding: SPT gather, LayerNorm over PD features, Linear PD -> D.
    be.spt_forward(a_.patches, images, B, Ch, S, S, P, C.spt);                    // [B, n, PD]
    if (patch_norm_folded()) {
      // LN(x) W^T + b = xhat (W diag(w_ln))^T + (b + W b_ln): the patches are normalised in place
      // (xhat) and the LayerNorm's scale and shift go into the Linear's weight and bias, so no
      // [B*n, PD] LayerNorm output is written, and the backward needs no [B*n, PD] gradient.
      be.layernorm_forward(a_.patches, a_.patch_mean, a_.patch_rstd, a_.patches, nullptr, nullptr, B * n, PD);
      be.scale_columns(a_.patch_w_folded, w + o.patch_w, w + o.patch_norm_w, D, PD);  // [D, PD]
      be.copy(a_.patch_b_folded, w + o.patch_b, std::size_t(D));
      be.gemm(false, false, D, 1, PD, T(1), w + o.patch_w, PD, w + o.patch_norm_b, 1, T(1), a_.patch_b_folded,
              1);                                                                 // [D]
      linear_forward(a_.tokens, nullptr, a_.patches, PD, a_.patch_w_folded, a_.patch_b_folded, B * n, D);
    } else {  // a few patches (B*n < D): the LayerNorm's affine part costs less on them than folding
      be.layernorm_forward(a_.patch_ln, a_.patch_mean, a_.patch_rstd, a_.patches, w + o.patch_norm_w,
                           w + o.patch_norm_b, B * n, PD);                       // [B*n, PD]
      linear_forward(a_.tokens, nullptr, a_.patch_ln, PD, w + o.patch_w, w + o.patch_b, B * n, D);
    }                                                                             // tokens [B*n, D]
    be.embed_forward(a_.resid[0], a_.tokens, w + o.cls_token, w + o.pos_embedding, B, N, D);  // [B, N, D]
    if (train && reg_.emb_dropout > 0) {
      be.dropout_mask(a_.emb_mask, BN * D, T(reg_.emb_dropout), dropout_seed_, stream++);
      be.multiply(a_.resid[0], a_.resid[0], a_.emb_mask, BN * D);
    }

    for (Index l = 0; l < L; ++l) {
      if (l == L - 1 && cls_last_) {
        last_block_cls_forward();  // writes pooled [B, D]
        break;
      }
      const BlockOffsets& bo = o.blocks[l];
      BlockActs& ba = a_.block[l];
      // ---- attention branch: mid = resid + drop(LSA(LN1(resid)))
      be.layernorm_forward(ba.ln1, ba.ln1_mean, ba.ln1_rstd, a_.resid[l], w + bo.attn_norm_w,
                           w + bo.attn_norm_b, BN, D);                            // [B*N, D]
      linear_product(ba.qkv, 3 * I, ba.ln1, D, w + bo.qkv_w, BN, 3 * I, D, false);  // [B*N, 3I]
      if (!(train && reg_.attn_dropout > 0)) {
        // S_bj = Q_bj K_bj^T, A_bj = softmax(mask(S_bj tau)), o[b, :, j*d:(j+1)*d] = A_bj V_bj,
        // block by block (the composition below without the dropout, up to a few ulp).
        be.attention_forward(ba.attn_out, ba.attn, ba.scores, ba.qkv, w + bo.temperature, temperature_mode(),
                             fixed_tau(), C.lsa, B, h, N, d);                     // [B, N, I]
      } else {
        // scores S[b, j] = Q_bj K_bj^T: Q_bj rows of qkv at column j*d, K_bj at column I + j*d.
        be.gemm_batched(false, true, N, N, d, T(1), ba.qkv, 3 * I, N * 3 * I, d, ba.qkv + I, 3 * I,
                        N * 3 * I, d, T(0), ba.scores, N, h * N * N, N * N, B, h);  // [B, h, N, N]
        be.attention_softmax_forward(ba.attn, ba.scores, w + bo.temperature, temperature_mode(),
                                     fixed_tau(), C.lsa, B, h, N);                  // [B, h, N, N]
        be.dropout_mask(ba.attn_mask, B * h * N * N, T(reg_.attn_dropout), dropout_seed_, stream++);
        be.multiply(ba.attn_dropped, ba.attn, ba.attn_mask, B * h * N * N);
        // o[b, :, j*d:(j+1)*d] = A_bj V_bj, heads concatenated head-major.
        be.gemm_batched(false, false, N, d, N, T(1), ba.attn_dropped, N, h * N * N, N * N, ba.qkv + 2 * I,
                        3 * I, N * 3 * I, d, T(0), ba.attn_out, I, N * I, d, B, h);  // [B, N, I]
      }
      add_branch_output(ba.mid, a_.resid[l], ba.attn_out, I, w + bo.out_w, w + bo.out_b, ba.proj_mask,
                        ba.sd_attn, B, stream);                                   // [B, N, D]

      // ---- MLP branch: resid' = mid + drop(W2 drop(GELU(W1 LN2(mid) + b1)) + b2)
      be.layernorm_forward(ba.ln2, ba.ln2_mean, ba.ln2_rstd, ba.mid, w + bo.mlp_norm_w,
                           w + bo.mlp_norm_b, BN, D);                             // [B*N, D]
      linear_forward(ba.hidden_pre, nullptr, ba.ln2, D, w + bo.fc1_w, w + bo.fc1_b, BN, M);  // [B*N, M]
      be.gelu_forward(ba.hidden, ba.hidden_pre, BN * M);                          // [B*N, M]
      const T* hidden_used = ba.hidden;
      if (train && reg_.dropout > 0) {
        be.dropout_mask(ba.hidden_mask, BN * M, T(reg_.dropout), dropout_seed_, stream++);
        be.multiply(ba.hidden_dropped, ba.hidden, ba.hidden_mask, BN * M);
        hidden_used = ba.hidden_dropped;
      }
      add_branch_output(a_.resid[l + 1], ba.mid, hidden_used, M, w + bo.fc2_w, w + bo.fc2_b, ba.fc2_mask,
                        ba.sd_mlp, B, stream);                                    // [B, N, D]
    }

    // Pool, head LayerNorm, Linear D -> K.
    if (!cls_last_) be.pool_forward(a_.pooled, a_.resid[L], C.pool, B, N, D);     // [B, D]
    be.layernorm_forward(a_.head_ln, a_.head_mean, a_.head_rstd, a_.pooled, w + o.head_norm_w,
                         w + o.head_norm_b, B, D);                                // [B, D]
    linear_forward(a_.logits, nullptr, a_.head_ln, D, w + o.head_w, w + o.head_b, B, K);  // [B, K]
    return a_.logits;
  }

  /// @brief Forward pass from host memory: copies images [B, C, H, W] in and logits [B, K] out.
  /// @param images host memory [B, C, H, W], normalised
  /// @param batch  B >= 1
  /// @return host logits [B, K], owned by the model and valid until the next forward()
  /// @throws std::invalid_argument when images.size() != B * C * H * W or batch < 1
  std::span<const T> forward(std::span<const T> images, Index batch) {
    const std::size_t per_image = std::size_t(Ch * S * S);
    if (images.size() != per_image * std::size_t(batch))
      throw std::invalid_argument("vitiq::ViT::forward: images must hold batch * C * H * W values");
    const T* input = images.data();
    if constexpr (!std::is_same_v<Backend, CpuBackend<T>>) {
      input_ = backend_.allocate(images.size());
      backend_.to_device(input_.data(), images.data(), images.size());
      input = input_.data();
    }
    const T* logits = forward_device(input, batch);
    host_logits_.resize(std::size_t(batch * K));
    backend_.to_host(host_logits_.data(), logits, host_logits_.size());
    return host_logits_;
  }

  /// @brief Backward pass of the last forward: accumulates every parameter gradient.
  ///
  /// Adds (+=) into gradients(); call zero_grad() before a step. Parameters, training mode and
  /// regularisation must be those of the forward.
  /// @param dlogits [B, K] gradient of the loss w.r.t. the logits, in backend memory.
  /// @param dimages optional [B, C, H, W] output: gradient w.r.t. the input images (assigned).
  /// @throws std::logic_error when there is no forward pass to differentiate
  void backward_device(const T* dlogits, T* dimages = nullptr) {
    const Index B = batch_, BN = B * N;
    if (B == 0) throw std::logic_error("vitiq::ViT::backward: no forward pass to differentiate");
    Backend& be = backend_;
    const T* w = params_.data();
    T* g = grads_.data();
    const auto& o = offsets;
    const bool train = training_;

    // Head: logits = head_ln Wh^T + bh; head_ln = LN(pooled).
    be.gemm(true, false, K, D, B, T(1), dlogits, K, a_.head_ln, D, T(1), g + o.head_w, D);  // dWh += dlogits^T head_ln
    be.bias_backward(g + o.head_b, dlogits, B, K);
    be.gemm(false, false, B, D, K, T(1), dlogits, K, w + o.head_w, D, T(0), a_.d_head_ln, D);  // [B, D]
    be.layernorm_backward(a_.d_pooled, g + o.head_norm_w, g + o.head_norm_b, a_.d_head_ln, a_.pooled,
                          a_.head_mean, a_.head_rstd, w + o.head_norm_w, B, D);  // [B, D]
    if (cls_last_) last_block_cls_backward();  // d_resid: dL/d resid[L-1]
    else be.pool_backward(a_.d_resid, a_.d_pooled, C.pool, B, N, D);            // [B, N, D]

    for (Index l = cls_last_ ? L - 2 : L - 1; l >= 0; --l) {
      const BlockOffsets& bo = o.blocks[l];
      BlockActs& ba = a_.block[l];
      // ---- MLP branch. d_resid holds dL/d resid[l+1] = dL/d mid (identity path) + branch path.
      const T* d_fc2 = branch_output_grad(ba.fc2_mask, ba.sd_mlp, B);             // [B*N, D]
      const bool hidden_drop = train && reg_.dropout > 0;
      const T* hidden_used = hidden_drop ? ba.hidden_dropped : ba.hidden;
      be.gemm(true, false, D, M, BN, T(1), d_fc2, D, hidden_used, M, T(1), g + bo.fc2_w, M);
      be.bias_backward(g + bo.fc2_b, d_fc2, BN, D);
      be.gemm(false, false, BN, M, D, T(1), d_fc2, D, w + bo.fc2_w, M, T(0), a_.d_hidden, M);  // [B*N, M]
      if (hidden_drop) be.multiply(a_.d_hidden, a_.d_hidden, ba.hidden_mask, BN * M);
      be.gelu_backward(a_.d_hidden, a_.d_hidden, ba.hidden_pre, BN * M);         // d hidden_pre
      be.gemm(true, false, M, D, BN, T(1), a_.d_hidden, M, ba.ln2, D, T(1), g + bo.fc1_w, D);
      be.bias_backward(g + bo.fc1_b, a_.d_hidden, BN, M);
      be.gemm(false, false, BN, D, M, T(1), a_.d_hidden, M, w + bo.fc1_w, D, T(0), a_.d_ln, D);  // [B*N, D]
      be.layernorm_backward(a_.d_resid, g + bo.mlp_norm_w, g + bo.mlp_norm_b, a_.d_ln, ba.mid,
                            ba.ln2_mean, ba.ln2_rstd, w + bo.mlp_norm_w, BN, D, true);  // d_resid += : now dL/d mid

      // ---- attention branch.
      const T* d_proj = branch_output_grad(ba.proj_mask, ba.sd_attn, B);          // [B*N, D]
      be.gemm(true, false, D, I, BN, T(1), d_proj, D, ba.attn_out, I, T(1), g + bo.out_w, I);
      be.bias_backward(g + bo.out_b, d_proj, BN, D);
      be.gemm(false, false, BN, I, D, T(1), d_proj, D, w + bo.out_w, I, T(0), a_.d_attn_out, I);  // [B*N, I]
      const bool attn_drop = train && reg_.attn_dropout > 0;
      if (!unfused_attention_backward()) {
        // d_qkv (q, k, v columns) and the temperature gradient, block by block (the composition
        // below without dropout and kept gradients, up to a few ulp).
        be.attention_backward(a_.d_qkv, g + bo.temperature, a_.d_attn_out, ba.qkv, ba.attn, ba.scores,
                              w + bo.temperature, temperature_mode(), fixed_tau(), B, h, N, d);  // [B, N, 3I]
      } else {
        const T* attn_used = attn_drop ? ba.attn_dropped : ba.attn;
        // dA_used[b,j] = dO_bj V_bj^T      [B, h, N, N]
        be.gemm_batched(false, true, N, N, d, T(1), a_.d_attn_out, I, N * I, d, ba.qkv + 2 * I, 3 * I,
                        N * 3 * I, d, T(0), a_.d_attn, N, h * N * N, N * N, B, h);
        // dV_bj = A_used^T dO_bj  -> the v columns of d_qkv
        be.gemm_batched(true, false, N, d, N, T(1), attn_used, N, h * N * N, N * N, a_.d_attn_out, I,
                        N * I, d, T(0), a_.d_qkv + 2 * I, 3 * I, N * 3 * I, d, B, h);
        if (attn_drop) be.multiply(a_.d_attn, a_.d_attn, ba.attn_mask, B * h * N * N);
        if (keep_attn_grad_) be.copy(ba.d_attn_kept, a_.d_attn, std::size_t(B * h * N * N));
        be.attention_softmax_backward(a_.d_scores, g + bo.temperature, a_.d_attn, ba.attn, ba.scores,
                                      w + bo.temperature, temperature_mode(), fixed_tau(), B, h, N);
        // dQ_bj = dS_bj K_bj ; dK_bj = dS_bj^T Q_bj
        be.gemm_batched(false, false, N, d, N, T(1), a_.d_scores, N, h * N * N, N * N, ba.qkv + I, 3 * I,
                        N * 3 * I, d, T(0), a_.d_qkv, 3 * I, N * 3 * I, d, B, h);
        be.gemm_batched(true, false, N, d, N, T(1), a_.d_scores, N, h * N * N, N * N, ba.qkv, 3 * I,
                        N * 3 * I, d, T(0), a_.d_qkv + I, 3 * I, N * 3 * I, d, B, h);
      }
      be.gemm(true, false, 3 * I, D, BN, T(1), a_.d_qkv, 3 * I, ba.ln1, D, T(1), g + bo.qkv_w, D);
      be.gemm(false, false, BN, D, 3 * I, T(1), a_.d_qkv, 3 * I, w + bo.qkv_w, D, T(0), a_.d_ln, D);
      be.layernorm_backward(a_.d_resid, g + bo.attn_norm_w, g + bo.attn_norm_b, a_.d_ln, a_.resid[l],
                            ba.ln1_mean, ba.ln1_rstd, w + bo.attn_norm_w, BN, D, true);  // now dL/d resid[l]
    }

    // Embedding: resid[0] = drop(embed(tokens, cls, pos)).
    if (train && reg_.emb_dropout > 0) be.multiply(a_.d_resid, a_.d_resid, a_.emb_mask, BN * D);
    be.embed_backward(a_.d_tokens, g + o.cls_token, g + o.pos_embedding, a_.d_resid, B, N, D);  // [B*n, D]
    if (patch_norm_folded()) {
      patch_embedding_backward_folded(dimages, B);
      return;
    }
    be.gemm(true, false, D, PD, B * n, T(1), a_.d_tokens, D, a_.patch_ln, PD, T(1), g + o.patch_w, PD);
    be.bias_backward(g + o.patch_b, a_.d_tokens, B * n, D);
    be.gemm(false, false, B * n, PD, D, T(1), a_.d_tokens, D, w + o.patch_w, PD, T(0), a_.d_patch_ln, PD);
    // The patches' own gradient is needed only for dimages (the images need none in training).
    be.layernorm_backward(dimages ? a_.d_patches : nullptr, g + o.patch_norm_w, g + o.patch_norm_b, a_.d_patch_ln,
                          a_.patches, a_.patch_mean, a_.patch_rstd, w + o.patch_norm_w, B * n, PD);
    if (dimages) be.spt_backward(dimages, a_.d_patches, B, Ch, S, S, P, C.spt);
  }

  /// @brief Host-memory variant of backward_device: dlogits [B, K] from the host.
  /// @param dlogits host memory [B, K], B the batch of the last forward
  /// @throws std::invalid_argument when dlogits.size() != B * K
  /// @throws std::logic_error when there is no forward pass to differentiate
  void backward(std::span<const T> dlogits) {
    if (dlogits.size() != std::size_t(batch_ * K))
      throw std::invalid_argument("vitiq::ViT::backward: dlogits must hold B * K values");
    const T* src = dlogits.data();
    if constexpr (!std::is_same_v<Backend, CpuBackend<T>>) {
      dlogits_ = backend_.allocate(dlogits.size());
      backend_.to_device(dlogits_.data(), dlogits.data(), dlogits.size());
      src = dlogits_.data();
    }
    backward_device(src);
  }

  /// @brief Batch size of the last forward (0 before the first).
  Index batch() const { return batch_; }
  /// @brief Logits [B, K] of the last forward, in backend memory (nullptr before the first).
  const T* logits() const { return a_.logits; }
  /// @brief The head's input of the last forward: LayerNorm(pooled) [B, D], in backend memory
  /// (logits = head_features() W_head^T + b_head). A linear probe fits W_head, b_head on these.
  const T* head_features() const { return a_.head_ln; }
  /// @brief Host copy of head_features(), [B, D].
  std::vector<T> head_features_to_host() const { return to_host_vector(head_features(), std::size_t(batch_ * D)); }
  /// @brief Post-softmax attention of block `layer` from the last forward, [B, h, N, N], in
  /// backend memory (before attention dropout).
  ///
  /// The last block's maps exist only when the forward kept them: with class-token pooling the
  /// last block computes the class token's row alone unless keep_attention_maps(true) was set
  /// (see class_token_last_block()).
  /// @param layer block index in [0, L)
  /// @return backend memory, valid until the next forward
  /// @throws std::out_of_range when layer is outside [0, L) or before the first forward
  /// @throws std::logic_error for the last block when the last forward did not keep its maps
  const T* attention(Index layer) const {
    const BlockActs& ba = a_.block.at(std::size_t(layer));
    if (cls_last_ && layer == L - 1)
      throw std::logic_error("vitiq::ViT::attention: the last block's attention maps were not kept (class-token-only "
                             "last block); call keep_attention_maps(true) before the forward");
    return ba.attn;
  }
  /// @brief Host copy of attention(layer), [B, h, N, N].
  /// @param layer block index in [0, L)
  /// @throws std::out_of_range, std::logic_error as attention()
  std::vector<T> attention_to_host(Index layer) const {
    return to_host_vector(attention(layer), std::size_t(batch_ * h * N * N));
  }
  /// @brief Gradient of the loss w.r.t. the post-softmax attention of block `layer` from the last
  /// backward, [B, h, N, N], kept only when keep_attention_gradients(true) was set.
  /// @param layer block index in [0, L)
  /// @return backend memory, or nullptr when attention gradients are not kept
  /// @throws std::out_of_range as attention()
  const T* attention_gradient(Index layer) const { return a_.block.at(std::size_t(layer)).d_attn_kept; }
  /// @brief Keep (or stop keeping) the attention gradients for attention_gradient().
  ///
  /// Invalidates the cached forward: run a new forward before the next backward.
  /// @param on true to keep them from the next forward/backward pair on
  void keep_attention_gradients(bool on) { keep_attn_grad_ = on; batch_ = 0; }
  /// @brief Keep (or stop keeping) every block's full attention maps for attention().
  ///
  /// Off by default: with class-token pooling the last block then works on the class token's row
  /// alone (class_token_last_block()). Switch it on before a forward whose maps are read (attention
  /// rollout, figures). Invalidates the cached forward: run a new forward before the next backward.
  /// @param on true to keep the full maps from the next forward on
  void keep_attention_maps(bool on) { keep_attn_maps_ = on; batch_ = 0; }
  /// @brief True when keep_attention_maps(true) is set.
  bool attention_maps_kept() const { return keep_attn_maps_; }

  /// Token rows (B*N) up to which an evaluation-mode forward uses the packed weights.
  static constexpr Index packed_rows_max = 512;
  /// @brief Let evaluation-mode forwards of few rows (B*N <= packed_rows_max, e.g. batch-1
  /// latency) run their Linear layers on weights packed once (CpuBackend::linear_packed) instead
  /// of BLAS GEMMs that pack every weight matrix again in every call.
  ///
  /// Off by default. The weights are packed again in the first such forward after the parameters
  /// may have changed: after a call of non-const parameters(), set_parameters() or
  /// init_parameters(). A write through a pointer obtained from parameters() before that packing
  /// is not seen: call weights_changed() after writing. Holds a second copy of the parameters. On
  /// the CUDA backend the packed copy is plain (no speed-up).
  /// @param on true to use packed weights from the next forward on
  void set_weight_packing(bool on) { pack_weights_ = on; }
  /// @brief True when set_weight_packing(true) is set.
  bool weight_packing() const { return pack_weights_; }
  /// @brief Tell the model that its parameters changed (for set_weight_packing()'s packed copy).
  void weights_changed() { ++param_version_; }
  /// @brief Whether a forward of B images folds the patch LayerNorm into the patch Linear: where
  /// the patches outnumber the embedding's outputs, B*n >= D (scaling the [D, PD] weight then costs
  /// less than the LayerNorm's affine part on the [B*n, PD] patches, and the backward needs no
  /// [B*n, PD] patch gradient). The same logits and gradients either way, up to rounding.
  /// @param B batch size
  static constexpr bool patch_norm_folded_at(Index B) { return B * n >= D; }
  /// @brief Whether the next forward computes the last block for the class token alone.
  ///
  /// With Pool::cls only the class token's row of the last block's output is read, so that block
  /// needs the keys and values of every token but the query, attention row, projection and MLP of
  /// the class token only (three quarters of that block's matmul FLOPs for the aio preset). Used
  /// unless the full last block is needed: kept attention maps or attention gradients, or training
  /// with dropout, attention dropout or stochastic depth (their masks are drawn for every token).
  /// Both paths give the same logits and gradients up to rounding (tests/test_attention_fused.cpp,
  /// tests/test_golden.cpp).
  bool class_token_last_block() const {
    return C.pool == Pool::cls && !keep_attn_maps_ && !keep_attn_grad_ && !branch_regularized() &&
           !(training_ && reg_.attn_dropout > 0);
  }

 private:
  struct BlockActs {
    T *ln1, *ln1_mean, *ln1_rstd, *qkv, *scores, *attn, *attn_mask, *attn_dropped, *attn_out,
        *proj_mask, *sd_attn, *mid, *ln2, *ln2_mean, *ln2_rstd, *hidden_pre, *hidden, *hidden_mask,
        *hidden_dropped, *fc2_mask, *sd_mlp, *d_attn_kept;
  };
  struct Acts {
    // patches: the SPT patches [B*n, PD], normalised in place (xhat) when the patch LayerNorm is
    // folded into the patch Linear (patch_w_folded [D, PD], patch_b_folded [D]); else patch_ln
    // holds the LayerNorm's output.
    T *patches, *patch_ln, *patch_mean, *patch_rstd, *patch_w_folded, *patch_b_folded, *tokens, *emb_mask, *pooled,
        *head_ln, *head_mean, *head_rstd, *logits, *branch;
    std::vector<T*> resid;            // L + 1 tensors [B, N, D]
    std::vector<BlockActs> block;     // L
    // backward scratch
    T *d_head_ln, *d_pooled, *d_resid, *d_branch, *d_hidden, *d_ln, *d_attn_out, *d_attn, *d_scores,
        *d_qkv, *d_tokens, *d_patch_ln, *d_patches, *d_patch_w, *d_patch_b;
  };

  static constexpr TemperatureMode temperature_mode() {
    if (!C.lsa) return TemperatureMode::fixed;
    return C.temperature == Temperature::shared_log ? TemperatureMode::shared_log : TemperatureMode::per_head;
  }
  static T fixed_tau() { return T(1.0 / std::sqrt(double(d))); }
  /// The backward goes through the separate attention ops (and needs the [B, h, N, N] gradient
  /// scratch) only for attention dropout or kept attention gradients; otherwise attention_backward.
  bool unfused_attention_backward() const { return (training_ && reg_.attn_dropout > 0) || keep_attn_grad_; }

  static double bias_fan_in(const ParamInfo& p) {
    // A bias's fan-in is its Linear's input width: find it from the name's weight sibling.
    if (p.name.find("to_patch_tokens") != std::string::npos) return double(PD);
    if (p.name.find("to_out") != std::string::npos) return double(I);
    if (p.name.find("net.1") != std::string::npos) return double(D);
    if (p.name.find("net.4") != std::string::npos) return double(M);
    return double(D);  // mlp_head.1
  }

  std::vector<T> to_host_vector(const T* src, std::size_t count) const {
    std::vector<T> out(count);
    backend_.to_host(out.data(), src, count);
    return out;
  }

  /// Whether the patch LayerNorm is folded into the patch Linear (forward_device) at the prepared
  /// batch: where the patches outnumber the embedding's outputs, B*n >= D, so that scaling the
  /// [D, PD] weight costs less than the LayerNorm's affine part on the [B*n, PD] patches.
  bool patch_norm_folded() const { return patch_norm_folded_at(batch_); }

  /// The patch embedding's backward when forward_device folded the LayerNorm: tokens = xhat W'^T +
  /// b' with W' = W diag(w_ln), b' = b + W b_ln. With s = the column sums of d_tokens and
  /// G = d_tokens^T xhat [D, PD] (one GEMM of the unfolded backward's two):
  ///   db += s;  dW += G diag(w_ln) + s b_ln^T;  dw_ln[c] += sum_j W[j, c] G[j, c];  db_ln += W^T s.
  /// No [B*n, PD] gradient is formed unless dimages asks for it (d xhat = d_tokens W', then the
  /// LayerNorm's backward without affine part and SPT's transpose).
  void patch_embedding_backward_folded(T* dimages, Index B) {
    Backend& be = backend_;
    const T* w = params_.data();
    T* g = grads_.data();
    const auto& o = offsets;
    const Index Bn = B * n;
    be.fill(a_.d_patch_b, T(0), std::size_t(D));
    be.bias_backward(a_.d_patch_b, a_.d_tokens, Bn, D);                          // s [D]
    be.add(g + o.patch_b, a_.d_patch_b, std::size_t(D));
    be.gemm(true, false, D, PD, Bn, T(1), a_.d_tokens, D, a_.patches, PD, T(0), a_.d_patch_w, PD);  // G [D, PD]
    be.column_dots(g + o.patch_norm_w, w + o.patch_w, a_.d_patch_w, D, PD);
    be.gemm(true, false, PD, 1, D, T(1), w + o.patch_w, PD, a_.d_patch_b, 1, T(1), g + o.patch_norm_b, 1);
    be.scale_columns(a_.d_patch_w, a_.d_patch_w, w + o.patch_norm_w, D, PD);    // G diag(w_ln)
    be.gemm(false, false, D, PD, 1, T(1), a_.d_patch_b, 1, w + o.patch_norm_b, PD, T(1), a_.d_patch_w, PD);
    be.add(g + o.patch_w, a_.d_patch_w, std::size_t(D * PD));
    if (!dimages) return;
    const std::size_t count = std::size_t(Bn * PD);
    if (dimage_scratch_.size() < 2 * count) dimage_scratch_ = backend_.allocate(2 * count);
    T* d_xhat = dimage_scratch_.data();
    T* d_patches = d_xhat + count;
    be.gemm(false, false, Bn, PD, D, T(1), a_.d_tokens, D, a_.patch_w_folded, PD, T(0), d_xhat, PD);  // [B*n, PD]
    be.layernorm_backward(d_patches, nullptr, nullptr, d_xhat, a_.patches, nullptr, a_.patch_rstd, nullptr, Bn, PD);
    be.spt_backward(dimages, d_patches, B, Ch, S, S, P, C.spt);
  }

  /// The last block for the class token alone (class_token_last_block()), writing pooled [B, D]:
  /// LN1 and the keys and values of every token, the query of the class token (row 0 of each
  /// image, row stride N*D in ln1), its attention row, then projection, LN2 and MLP on B rows.
  /// No regularisation reaches here (class_token_last_block() excludes it).
  void last_block_cls_forward() {
    Backend& be = backend_;
    const T* w = params_.data();
    const BlockOffsets& bo = offsets.blocks[L - 1];
    BlockActs& ba = a_.block[std::size_t(L - 1)];
    const Index B = batch_, BN = B * N;
    const T* resid = a_.resid[std::size_t(L - 1)];
    be.layernorm_forward(ba.ln1, ba.ln1_mean, ba.ln1_rstd, resid, w + bo.attn_norm_w, w + bo.attn_norm_b, BN,
                         D);                                                      // [B*N, D]
    linear_product(ba.qkv + I, 3 * I, ba.ln1, D, w + bo.qkv_w + I * D, BN, 2 * I, D, false);  // k, v [B*N, 2I]
    linear_product(ba.qkv, N * 3 * I, ba.ln1, N * D, w + bo.qkv_w, B, I, D, false);         // q_0 [B, I]
    be.attention_cls_forward(ba.attn_out, ba.attn, ba.scores, ba.qkv, w + bo.temperature, temperature_mode(),
                             fixed_tau(), C.lsa, B, h, N, d);                     // [B, I]
    be.pool_forward(ba.mid, resid, Pool::cls, B, N, D);                           // class rows [B, D]
    linear_forward(ba.mid, ba.mid, ba.attn_out, I, w + bo.out_w, w + bo.out_b, B, D);  // mid [B, D]
    be.layernorm_forward(ba.ln2, ba.ln2_mean, ba.ln2_rstd, ba.mid, w + bo.mlp_norm_w, w + bo.mlp_norm_b, B, D);
    linear_forward(ba.hidden_pre, nullptr, ba.ln2, D, w + bo.fc1_w, w + bo.fc1_b, B, M);  // [B, M]
    be.gelu_forward(ba.hidden, ba.hidden_pre, B * M);
    linear_forward(a_.pooled, ba.mid, ba.hidden, M, w + bo.fc2_w, w + bo.fc2_b, B, D);  // [B, D]
  }

  /// Backward of last_block_cls_forward, from d_pooled [B, D] (used as scratch: it becomes
  /// dL/d mid) to d_resid = dL/d resid[L-1] [B*N, D] (assigned).
  void last_block_cls_backward() {
    Backend& be = backend_;
    const T* w = params_.data();
    T* g = grads_.data();
    const BlockOffsets& bo = offsets.blocks[L - 1];
    const BlockActs& ba = a_.block[std::size_t(L - 1)];
    const Index B = batch_, BN = B * N;
    T* d_mid = a_.d_pooled;  // [B, D]: dL/d (class rows of resid[L]), then dL/d mid
    // ---- MLP branch on the class rows.
    be.gemm(true, false, D, M, B, T(1), d_mid, D, ba.hidden, M, T(1), g + bo.fc2_w, M);
    be.bias_backward(g + bo.fc2_b, d_mid, B, D);
    be.gemm(false, false, B, M, D, T(1), d_mid, D, w + bo.fc2_w, M, T(0), a_.d_hidden, M);  // [B, M]
    be.gelu_backward(a_.d_hidden, a_.d_hidden, ba.hidden_pre, B * M);
    be.gemm(true, false, M, D, B, T(1), a_.d_hidden, M, ba.ln2, D, T(1), g + bo.fc1_w, D);
    be.bias_backward(g + bo.fc1_b, a_.d_hidden, B, M);
    be.gemm(false, false, B, D, M, T(1), a_.d_hidden, M, w + bo.fc1_w, D, T(0), a_.d_ln, D);  // [B, D]
    be.layernorm_backward(d_mid, g + bo.mlp_norm_w, g + bo.mlp_norm_b, a_.d_ln, ba.mid, ba.ln2_mean, ba.ln2_rstd,
                          w + bo.mlp_norm_w, B, D, true);                         // d_mid += : now dL/d mid
    // ---- attention branch: projection, the class token's attention row, q_0 and every k, v.
    be.gemm(true, false, D, I, B, T(1), d_mid, D, ba.attn_out, I, T(1), g + bo.out_w, I);
    be.bias_backward(g + bo.out_b, d_mid, B, D);
    be.gemm(false, false, B, I, D, T(1), d_mid, D, w + bo.out_w, I, T(0), a_.d_attn_out, I);  // [B, I]
    be.attention_cls_backward(a_.d_qkv, g + bo.temperature, a_.d_attn_out, ba.qkv, ba.attn, ba.scores,
                              w + bo.temperature, temperature_mode(), fixed_tau(), B, h, N, d);  // q_0, k, v
    be.gemm(true, false, I, D, B, T(1), a_.d_qkv, N * 3 * I, ba.ln1, N * D, T(1), g + bo.qkv_w, D);  // dWq
    be.gemm(true, false, 2 * I, D, BN, T(1), a_.d_qkv + I, 3 * I, ba.ln1, D, T(1), g + bo.qkv_w + I * D, D);  // dWk, dWv
    be.gemm(false, false, BN, D, 2 * I, T(1), a_.d_qkv + I, 3 * I, w + bo.qkv_w + I * D, D, T(0), a_.d_ln,
            D);                                                                   // [B*N, D]
    be.gemm(false, false, B, D, I, T(1), a_.d_qkv, N * 3 * I, w + bo.qkv_w, D, T(1), a_.d_ln, N * D);  // class rows
    be.pool_backward(a_.d_resid, d_mid, Pool::cls, B, N, D);                      // identity path [B, N, D]
    be.layernorm_backward(a_.d_resid, g + bo.attn_norm_w, g + bo.attn_norm_b, a_.d_ln, a_.resid[std::size_t(L - 1)],
                          ba.ln1_mean, ba.ln1_rstd, w + bo.attn_norm_w, BN, D, true);  // now dL/d resid[L-1]
  }

  /// Whether dropout or stochastic depth masks the branches in this pass (training with either).
  bool branch_regularized() const { return training_ && (reg_.dropout > 0 || reg_.stochastic_depth > 0); }

  /// out [rows, n] = (resid ? resid : 0) + in [rows, k] W^T + b: a Linear layer (W [n, k], b [n]),
  /// optionally added to a residual stream [rows, n]. The bias (and the residual) is written first
  /// and the GEMM adds the product (beta = 1): one pass over out fewer than zeroing it for the GEMM
  /// and adding the bias after.
  void linear_forward(T* out, const T* resid, const T* in, Index k, const T* W, const T* b, Index rows, Index n) {
    backend_.bias_init(out, resid, b, rows, n);
    linear_product(out, n, in, k, W, rows, n, k, true);
  }

  /// out [rows, n] (ldo apart) = in [rows, k] (ldi apart) W^T, or += with `accumulate`: a Linear
  /// layer's product, through the packed copy of W (CpuBackend::linear_packed) where this forward
  /// uses packed weights and W is one of the model's parameters, else gemm().
  void linear_product(T* out, Index ldo, const T* in, Index ldi, const T* W, Index rows, Index n, Index k,
                      bool accumulate) {
    const T* base = params_.data();
    const std::less<const T*> before;  // a total order, also for pointers into other buffers
    if (use_packed_ && !before(W, base) && before(W, base + num_params)) {
      backend_.linear_packed(out, ldo, in, ldi, packed_.data() + (W - base), rows, n, k, accumulate);
      return;
    }
    backend_.gemm(false, true, rows, n, k, T(1), in, ldi, W, k, accumulate ? T(1) : T(0), out, ldo);
  }

  /// Pack every Linear weight into packed_ at its own offset (CpuBackend::pack_linear_weight).
  void pack_weights() {
    if (packed_.size() < num_params) packed_ = backend_.allocate(num_params);
    for (const ParamInfo& p : param_table<C>())
      if (p.kind == ParamKind::weight)
        backend_.pack_linear_weight(packed_.data() + p.offset, params_.data() + p.offset, Index(p.shape[0]),
                                    Index(p.shape[1]));
    packed_version_ = param_version_;
  }

  /// resid_out [B*N, D] = resid_in + sd(drop(in [B*N, k] W^T + b)): a branch's last Linear (W [D, k],
  /// b [D]), its dropout and stochastic depth (masks kept for the backward), added to the residual
  /// stream. Unmasked (!branch_regularized()), one linear_forward from resid_in writes resid_out and
  /// no branch buffer is written.
  void add_branch_output(T* resid_out, const T* resid_in, const T* in, Index k, const T* W, const T* b, T* mask,
                         T* sd_scale, Index B, std::uint64_t& stream) {
    Backend& be = backend_;
    const Index BN = B * N;
    if (!branch_regularized()) {
      linear_forward(resid_out, resid_in, in, k, W, b, BN, D);
      return;
    }
    T* branch = a_.branch;  // [B*N, D]
    linear_forward(branch, nullptr, in, k, W, b, BN, D);
    if (reg_.dropout > 0) {
      be.dropout_mask(mask, std::size_t(BN * D), T(reg_.dropout), dropout_seed_, stream++);
      be.multiply(branch, branch, mask, std::size_t(BN * D));
    }
    if (reg_.stochastic_depth > 0) {
      be.dropout_mask(sd_scale, std::size_t(B), T(reg_.stochastic_depth), dropout_seed_, stream++);
      be.scale_rows(branch, sd_scale, B, N * D);
    }
    be.copy(resid_out, resid_in, std::size_t(BN * D));
    be.add(resid_out, branch, std::size_t(BN * D));
  }
  /// The gradient w.r.t. the output of add_branch_output's Linear [B*N, D]: d_resid itself when
  /// the branch was not masked, else d_resid through the masks, in d_branch.
  const T* branch_output_grad(const T* mask, const T* sd_scale, Index B) {
    if (!branch_regularized()) return a_.d_resid;
    Backend& be = backend_;
    const std::size_t count = std::size_t(B * N * D);
    be.copy(a_.d_branch, a_.d_resid, count);
    if (reg_.dropout > 0) be.multiply(a_.d_branch, a_.d_branch, mask, count);
    if (reg_.stochastic_depth > 0) be.scale_rows(a_.d_branch, sd_scale, B, N * D);
    return a_.d_branch;
  }

  /// Size the activation buffer for batch B and carve the named views out of it.
  void prepare(Index B) {
    const bool drop = training_ && reg_.dropout > 0, attn_drop = training_ && reg_.attn_dropout > 0,
               emb_drop = training_ && reg_.emb_dropout > 0, sd = training_ && reg_.stochastic_depth > 0;
    const bool cls_last = class_token_last_block();
    const std::uint32_t shape_key = (drop ? 1u : 0u) | (attn_drop ? 2u : 0u) | (emb_drop ? 4u : 0u) |
                                    (sd ? 8u : 0u) | (keep_attn_grad_ ? 16u : 0u) | (cls_last ? 32u : 0u);
    if (B == batch_ && shape_key == shape_key_) return;
    const std::size_t BN = std::size_t(B * N), BHNN = std::size_t(B * h * N * N), Bn = std::size_t(B * n);
    std::size_t total = 0;
    // Two passes: the first counts, the second hands out pointers.
    for (int pass = 0; pass < 2; ++pass) {
      T* base = pass ? acts_.data() : nullptr;
      std::size_t at = 0;
      auto take = [&](std::size_t count) -> T* {
        T* p = (base && count) ? base + at : nullptr;
        at += (count + 15) / 16 * 16;  // keep every tensor 64-byte aligned
        return p;
      };
      const bool fold = patch_norm_folded_at(B);
      a_.patches = take(Bn * PD);
      a_.patch_ln = take(fold ? 0 : Bn * PD);
      a_.patch_w_folded = take(fold ? std::size_t(D * PD) : 0);
      a_.patch_b_folded = take(fold ? std::size_t(D) : 0);
      a_.patch_mean = take(Bn);
      a_.patch_rstd = take(Bn);
      a_.tokens = take(Bn * D);
      a_.emb_mask = take(emb_drop ? BN * D : 0);
      a_.resid.assign(std::size_t(L + 1), nullptr);
      for (Index l = 0; l <= L; ++l) a_.resid[std::size_t(l)] = take(l == L && cls_last ? 0 : BN * D);
      a_.block.assign(std::size_t(L), BlockActs{});
      for (Index l = 0; l < L; ++l) {
        BlockActs& ba = a_.block[std::size_t(l)];
        // The class-token-only last block keeps one row per image after its attention.
        const bool cls_rows = cls_last && l == L - 1;
        const std::size_t rows = cls_rows ? std::size_t(B) : BN, maps = cls_rows ? std::size_t(B * h * N) : BHNN;
        ba.ln1 = take(BN * D);
        ba.ln1_mean = take(BN);
        ba.ln1_rstd = take(BN);
        ba.qkv = take(BN * 3 * I);
        ba.scores = take(maps);
        ba.attn = take(maps);
        ba.attn_mask = take(attn_drop ? BHNN : 0);
        ba.attn_dropped = take(attn_drop ? BHNN : 0);
        ba.attn_out = take(rows * I);
        ba.proj_mask = take(drop ? BN * D : 0);
        ba.sd_attn = take(sd ? std::size_t(B) : 0);
        ba.mid = take(rows * D);
        ba.ln2 = take(rows * D);
        ba.ln2_mean = take(rows);
        ba.ln2_rstd = take(rows);
        ba.hidden_pre = take(rows * M);
        ba.hidden = take(rows * M);
        ba.hidden_mask = take(drop ? BN * M : 0);
        ba.hidden_dropped = take(drop ? BN * M : 0);
        ba.fc2_mask = take(drop ? BN * D : 0);
        ba.sd_mlp = take(sd ? std::size_t(B) : 0);
        ba.d_attn_kept = take(keep_attn_grad_ ? BHNN : 0);
      }
      a_.branch = take(drop || sd ? BN * D : 0);  // only where a branch is masked (add_branch_output)
      a_.pooled = take(std::size_t(B * D));
      a_.head_ln = take(std::size_t(B * D));
      a_.head_mean = take(std::size_t(B));
      a_.head_rstd = take(std::size_t(B));
      a_.logits = take(std::size_t(B * K));
      a_.d_head_ln = take(std::size_t(B * D));
      a_.d_pooled = take(std::size_t(B * D));
      a_.d_resid = take(BN * D);
      a_.d_branch = take(drop || sd ? BN * D : 0);  // only where a branch is masked (branch_output_grad)
      a_.d_hidden = take(BN * M);
      a_.d_ln = take(BN * D);
      a_.d_attn_out = take(BN * I);
      a_.d_attn = take(unfused_attention_backward() ? BHNN : 0);
      a_.d_scores = take(unfused_attention_backward() ? BHNN : 0);
      a_.d_qkv = take(BN * 3 * I);
      a_.d_tokens = take(Bn * D);
      a_.d_patch_ln = take(fold ? 0 : Bn * PD);  // folded: dimage_scratch_, only when asked
      a_.d_patches = take(fold ? 0 : Bn * PD);
      a_.d_patch_w = take(fold ? std::size_t(D * PD) : 0);
      a_.d_patch_b = take(fold ? std::size_t(D) : 0);
      if (pass == 0) {
        total = at;
        if (acts_.size() < total) acts_ = backend_.allocate(total);
      }
    }
    batch_ = B;
    shape_key_ = shape_key;
    cls_last_ = cls_last;
  }

  Backend backend_;
  Buffer params_, grads_, acts_, input_, dlogits_;
  Buffer dimage_scratch_;  // d xhat and d patches [B*n, PD] each, for an image gradient of a folded forward
  Acts a_{};
  std::vector<T> host_logits_;
  Index batch_ = 0;
  std::uint32_t shape_key_ = 0;
  bool training_ = false;
  bool keep_attn_grad_ = false;
  bool keep_attn_maps_ = false;
  bool pack_weights_ = false;       // set_weight_packing()
  bool use_packed_ = false;         // this forward's Linear layers read packed_
  Buffer packed_;                   // the Linear weights packed (pack_linear_weight), parameter offsets
  std::uint64_t param_version_ = 1;   // bumped wherever the parameters may change
  std::uint64_t packed_version_ = 0;  // param_version_ when packed_ was made
  bool cls_last_ = false;  // the prepared forward computes the last block for the class token alone
  Regularization reg_{};
  std::uint64_t dropout_seed_ = 0;
  std::uint64_t forward_count_ = 0;
};

}  // namespace vitiq
