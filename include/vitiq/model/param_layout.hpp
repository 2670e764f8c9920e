// vitiq/model/param_layout.hpp -- where every parameter lives in the one flat parameter buffer.
//
// Parameters, gradients and the optimiser's moments are flat buffers of the same length and this
// same layout (llm.c style). The layout is a constexpr function of the Config: offsets are known at
// compile time, and the table of named tensors (PyTorch names, shapes, weight-decay group) is built
// from the same offsets, so the two can never disagree.
//
// Order: patch LayerNorm w,b; patch Linear W,b; pos_embedding; cls_token; per block: temperature,
// attention LayerNorm w,b, Wqkv, Wout, bout, MLP LayerNorm w,b, W1, b1, W2, b2; head LayerNorm
// w,b; head W, b.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "vitiq/config.hpp"

namespace vitiq {

/// @brief Offsets (in elements) of one transformer block's parameters.
struct BlockOffsets {
  std::size_t temperature;   ///< [1] (shared_log) or [h] (per_head); size 0 without LSA
  std::size_t attn_norm_w;   ///< [D]
  std::size_t attn_norm_b;   ///< [D]
  std::size_t qkv_w;         ///< [3I, D]
  std::size_t out_w;         ///< [D, I]
  std::size_t out_b;         ///< [D]
  std::size_t mlp_norm_w;    ///< [D]
  std::size_t mlp_norm_b;    ///< [D]
  std::size_t fc1_w;         ///< [M, D]
  std::size_t fc1_b;         ///< [M]
  std::size_t fc2_w;         ///< [D, M]
  std::size_t fc2_b;         ///< [D]
  std::size_t end;           ///< one past the block's last element
};

/// @brief Offsets (in elements) of every parameter tensor; `total` is the length of the flat
/// buffers.
///
/// The depth is a template parameter, so the block array has a fixed size and the struct is a
/// literal type (usable in constexpr).
/// @tparam Depth number of transformer blocks (Config::depth)
template <int Depth>
struct ParamOffsets {
  std::size_t patch_norm_w;  ///< [PD]
  std::size_t patch_norm_b;  ///< [PD]
  std::size_t patch_w;       ///< [D, PD]
  std::size_t patch_b;       ///< [D]
  std::size_t pos_embedding; ///< [N, D]
  std::size_t cls_token;     ///< [D]
  /// Offsets of each block's parameters, block 0 first.
  BlockOffsets blocks[Depth];
  std::size_t head_norm_w;   ///< [D]
  std::size_t head_norm_b;   ///< [D]
  std::size_t head_w;        ///< [K, D]
  std::size_t head_b;        ///< [K]
  /// Total number of elements: the length of the parameter, gradient and moment buffers.
  std::size_t total;
};

/// @brief Compute the layout of configuration C (constexpr).
/// @tparam C the model configuration
/// @return the offsets of every tensor, in the order given at the top of this header
template <Config C>
constexpr ParamOffsets<C.depth> param_offsets() {
  ParamOffsets<C.depth> o{};
  const std::size_t D = C.dim, PD = C.patch_dim(), N = C.num_tokens(), I = C.inner_dim(),
                    M = C.mlp_dim, K = C.num_classes;
  std::size_t at = 0;
  auto take = [&at](std::size_t n) { std::size_t here = at; at += n; return here; };
  o.patch_norm_w = take(PD);
  o.patch_norm_b = take(PD);
  o.patch_w = take(D * PD);
  o.patch_b = take(D);
  o.pos_embedding = take(N * D);
  o.cls_token = take(D);
  for (int l = 0; l < C.depth; ++l) {
    BlockOffsets& b = o.blocks[l];
    b.temperature = take(static_cast<std::size_t>(C.temperature_size()));
    b.attn_norm_w = take(D);
    b.attn_norm_b = take(D);
    b.qkv_w = take(3 * I * D);
    b.out_w = take(D * I);
    b.out_b = take(D);
    b.mlp_norm_w = take(D);
    b.mlp_norm_b = take(D);
    b.fc1_w = take(M * D);
    b.fc1_b = take(M);
    b.fc2_w = take(D * M);
    b.fc2_b = take(D);
    b.end = at;
  }
  o.head_norm_w = take(D);
  o.head_norm_b = take(D);
  o.head_w = take(K * D);
  o.head_b = take(K);
  o.total = at;
  return o;
}

/// @brief Number of learnable scalars of configuration C.
/// @tparam C the model configuration
/// @return param_offsets<C>().total
template <Config C>
constexpr std::size_t param_count() { return param_offsets<C>().total; }

/// @brief The optimiser group a tensor belongs to (weight decay is usually off for all but `weight`).
enum class ParamKind {
  weight,       ///< a Linear weight matrix
  bias,         ///< a Linear bias
  norm,         ///< a LayerNorm weight or bias
  embedding,    ///< position embedding, class token
  temperature,  ///< LSA temperature
};

/// @brief One named tensor of the flat buffer.
struct ParamInfo {
  std::string name;               ///< PyTorch name (current reference scheme, see SPEC.md)
  std::string legacy_name;        ///< PyTorch name in the older PreNorm scheme
  std::vector<std::size_t> shape; ///< PyTorch shape (pos_embedding is [1, N, D], temperature [] or [h])
  std::size_t offset;             ///< first element in the flat buffer
  std::size_t size;               ///< number of elements
  /// Optimiser group (decides weight decay and the initialisation).
  ParamKind kind;
};

/// @brief The table of named parameter tensors of configuration C, in buffer order.
///
/// Built from param_offsets<C>(), so names and layout agree. Without LSA there is no
/// temperature entry.
/// @tparam C the model configuration
/// @return one entry per tensor; the entries tile [0, param_count<C>()) without gaps
template <Config C>
std::vector<ParamInfo> param_table() {
  constexpr auto o = param_offsets<C>();
  const std::size_t D = C.dim, PD = C.patch_dim(), N = C.num_tokens(), I = C.inner_dim(),
                    M = C.mlp_dim, K = C.num_classes, h = C.heads;
  std::vector<ParamInfo> t;
  auto add = [&t](std::string name, std::string legacy, std::vector<std::size_t> shape,
                  std::size_t offset, ParamKind kind) {
    std::size_t n = 1;
    for (auto s : shape) n *= s;
    t.push_back({std::move(name), std::move(legacy), std::move(shape), offset, n, kind});
  };
  auto same = [&add](const std::string& name, std::vector<std::size_t> shape, std::size_t off,
                     ParamKind kind) { add(name, name, std::move(shape), off, kind); };
  same("to_patch_embedding.to_patch_tokens.1.weight", {PD}, o.patch_norm_w, ParamKind::norm);
  same("to_patch_embedding.to_patch_tokens.1.bias", {PD}, o.patch_norm_b, ParamKind::norm);
  same("to_patch_embedding.to_patch_tokens.2.weight", {D, PD}, o.patch_w, ParamKind::weight);
  same("to_patch_embedding.to_patch_tokens.2.bias", {D}, o.patch_b, ParamKind::bias);
  same("pos_embedding", {1, N, D}, o.pos_embedding, ParamKind::embedding);
  same("cls_token", {1, 1, D}, o.cls_token, ParamKind::embedding);
  for (int l = 0; l < C.depth; ++l) {
    const BlockOffsets& b = o.blocks[l];
    const std::string p = "transformer.layers." + std::to_string(l) + ".";
    if constexpr (C.lsa) {
      add(p + "0.temperature", p + "0.fn.temperature",
          C.temperature == Temperature::shared_log ? std::vector<std::size_t>{}
                                                   : std::vector<std::size_t>{h},
          b.temperature, ParamKind::temperature);
    }
    add(p + "0.norm.weight", p + "0.norm.weight", {D}, b.attn_norm_w, ParamKind::norm);
    add(p + "0.norm.bias", p + "0.norm.bias", {D}, b.attn_norm_b, ParamKind::norm);
    add(p + "0.to_qkv.weight", p + "0.fn.to_qkv.weight", {3 * I, D}, b.qkv_w, ParamKind::weight);
    add(p + "0.to_out.0.weight", p + "0.fn.to_out.0.weight", {D, I}, b.out_w, ParamKind::weight);
    add(p + "0.to_out.0.bias", p + "0.fn.to_out.0.bias", {D}, b.out_b, ParamKind::bias);
    add(p + "1.net.0.weight", p + "1.norm.weight", {D}, b.mlp_norm_w, ParamKind::norm);
    add(p + "1.net.0.bias", p + "1.norm.bias", {D}, b.mlp_norm_b, ParamKind::norm);
    add(p + "1.net.1.weight", p + "1.fn.net.0.weight", {M, D}, b.fc1_w, ParamKind::weight);
    add(p + "1.net.1.bias", p + "1.fn.net.0.bias", {M}, b.fc1_b, ParamKind::bias);
    add(p + "1.net.4.weight", p + "1.fn.net.3.weight", {D, M}, b.fc2_w, ParamKind::weight);
    add(p + "1.net.4.bias", p + "1.fn.net.3.bias", {D}, b.fc2_b, ParamKind::bias);
  }
  same("mlp_head.0.weight", {D}, o.head_norm_w, ParamKind::norm);
  same("mlp_head.0.bias", {D}, o.head_norm_b, ParamKind::norm);
  same("mlp_head.1.weight", {K, D}, o.head_w, ParamKind::weight);
  same("mlp_head.1.bias", {K}, o.head_b, ParamKind::bias);
  return t;
}

}  // namespace vitiq
