// vitiq/model/flops.hpp -- matrix-multiply FLOP counts of the model, for benchmarks.
//
// Counts only the GEMMs (2 FLOPs per multiply-add): patch embedding, q/k/v, scores, attention
// times values, output projection, the two MLP layers and the head. A training step is counted as
// three forwards (forward, and two GEMMs per forward GEMM in the backward). forward_flops() is the
// model's nominal count (the benchmark's FLOP rate and share of the GEMM peak use it);
// executed_forward_flops() / executed_training_flops() are what ViT runs (the class-token-only
// last block; the folded patch LayerNorm's backward).
#pragma once

#include "vitiq/config.hpp"

namespace vitiq {

/// @brief Matmul FLOPs of one transformer block's forward for one image, with the query, attention,
/// projection and MLP computed for the first `queries` tokens (all N: a full block; 1: the
/// class-token-only last block) and k, v for all N.
/// @param c       the model configuration
/// @param queries tokens whose outputs the block computes, 1..N
/// @return FLOPs per image
constexpr double block_forward_flops(const Config& c, double queries) {
  const double N = c.num_tokens(), D = c.dim, I = c.inner_dim(), M = c.mlp_dim, h = c.heads, d = c.dim_head;
  return 2 * N * D * 2 * I          // k, v
         + 2 * queries * D * I      // q
         + 2 * h * queries * N * d  // q k^T
         + 2 * h * queries * N * d  // A v
         + 2 * queries * I * D      // output projection
         + 2 * queries * D * M      // MLP up
         + 2 * queries * M * D;     // MLP down
}

/// @brief Matmul FLOPs of one image's forward pass.
///
/// Counts 2 FLOPs per multiply-add of the GEMMs only (no LayerNorm, softmax, GELU, ...).
/// @param c the model configuration
/// @return FLOPs per image; multiply by the batch size for a batch
constexpr double forward_flops(const Config& c) {
  const double n = c.num_patches(), D = c.dim, PD = c.patch_dim(), K = c.num_classes;
  return 2 * n * PD * D + c.depth * block_forward_flops(c, c.num_tokens()) + 2 * D * K;
}

/// @brief Matmul FLOPs of one image's forward as ViT executes it when class_token_last_block()
/// holds: the last block computes k and v for all N tokens, but q, the attention row, the
/// projection and the MLP for the class token only. Equals forward_flops() for other models.
/// @param c                the model configuration
/// @param class_token_last whether the last block is the class-token-only one
/// @return FLOPs per image
constexpr double executed_forward_flops(const Config& c, bool class_token_last) {
  if (!class_token_last) return forward_flops(c);
  return forward_flops(c) - block_forward_flops(c, c.num_tokens()) + block_forward_flops(c, 1);
}

/// @brief Matmul FLOPs of one image's training step (forward + backward = 3 x forward).
/// @param c the model configuration
/// @return FLOPs per image
constexpr double training_flops(const Config& c) { return 3 * forward_flops(c); }

/// @brief Matmul FLOPs of one image's training step as ViT executes it: 3 x
/// executed_forward_flops(), less the patch embedding's input-gradient GEMM (n x PD x D) when the
/// patch LayerNorm is folded into the patch Linear (ViT::patch_norm_folded_at(B)), whose backward
/// needs no gradient w.r.t. the patches.
/// @param c                 the model configuration
/// @param class_token_last  whether the last block is the class-token-only one
/// @param patch_norm_folded whether the batch folds the patch LayerNorm
/// @return FLOPs per image
constexpr double executed_training_flops(const Config& c, bool class_token_last, bool patch_norm_folded) {
  const double patch_input_grad = 2.0 * c.num_patches() * c.patch_dim() * c.dim;
  return 3 * executed_forward_flops(c, class_token_last) - (patch_norm_folded ? patch_input_grad : 0.0);
}

}  // namespace vitiq
