// vitiq/io/weights.hpp -- model weights and training checkpoints as safetensors files, with the
// PyTorch parameter names of the specification (both naming schemes on import).
//
// A weights file stores every parameter under its PyTorch name and the configuration in
// `__metadata__` (keys = Config field names). Loading refuses, naming the field or tensor, a file
// whose configuration or shapes differ from the model's. A checkpoint adds the optimiser moments
// (`optimizer.exp_avg.<name>`, `optimizer.exp_avg_sq.<name>`) and the training state (step,
// epoch, RNG state, dropout stream) in the metadata. Every write is atomic (temporary file, then
// rename), so an interrupted write never leaves a partial file in place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "vitiq/config.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/safetensors.hpp"
#include "vitiq/model/param_layout.hpp"
#include "vitiq/train/optimizer.hpp"

namespace vitiq {

/// @brief Which PyTorch naming scheme to write (both are accepted on read).
enum class NamingScheme {
  current,  ///< norms inside the modules (the current reference implementation)
  legacy,   ///< PreNorm wrappers (the original per-observer project)
};

/// @brief The configuration as safetensors metadata (keys = Config field names).
///
/// Values are decimal integers, "true"/"false" for lsa, and the to_string() names of the enums.
/// @param c the configuration
/// @return the 13 fields, keyed by name
inline std::map<std::string, std::string> config_to_metadata(const Config& c) {
  return {{"image_size", std::to_string(c.image_size)},
          {"patch_size", std::to_string(c.patch_size)},
          {"channels", std::to_string(c.channels)},
          {"dim", std::to_string(c.dim)},
          {"depth", std::to_string(c.depth)},
          {"heads", std::to_string(c.heads)},
          {"dim_head", std::to_string(c.dim_head)},
          {"mlp_dim", std::to_string(c.mlp_dim)},
          {"num_classes", std::to_string(c.num_classes)},
          {"spt", std::string(to_string(c.spt))},
          {"lsa", c.lsa ? "true" : "false"},
          {"temperature", std::string(to_string(c.temperature))},
          {"pool", std::string(to_string(c.pool))}};
}

/// @brief Compare the configuration stored in `metadata` with `expected`.
/// Fields absent from the metadata are not checked (files written by other tools); a present
/// field that differs or does not parse throws ConfigMismatch naming the file and the field.
/// @param expected the model's configuration
/// @param metadata the file's `__metadata__`
/// @param source   the file name, for error messages
/// @return the number of configuration fields found and checked
/// @throws ConfigMismatch when a present field differs from `expected`
inline int check_config_metadata(const Config& expected, const std::map<std::string, std::string>& metadata,
                                 const std::string& source) {
  int found = 0;
  for (const auto& [key, want] : config_to_metadata(expected)) {
    auto it = metadata.find(key);
    if (it == metadata.end()) continue;
    ++found;
    if (it->second != want)
      throw ConfigMismatch(source + ": configuration field '" + key + "' is " + it->second +
                           " in the file, but the model has " + want);
  }
  return found;
}

namespace detail {

inline std::vector<std::int64_t> to_shape(const std::vector<std::size_t>& s) {
  return {s.begin(), s.end()};
}

template <class T>
constexpr io::DType dtype_of() {
  return std::is_same_v<T, double> ? io::DType::F64 : io::DType::F32;
}

/// Which naming scheme a file uses: the first tensor whose two names differ decides.
inline NamingScheme detect_scheme(const io::SafetensorsFile& file, const std::vector<ParamInfo>& table,
                                  const std::string& prefix) {
  for (const ParamInfo& p : table) {
    if (p.name == p.legacy_name) continue;
    if (file.contains(prefix + p.name)) return NamingScheme::current;
    if (file.contains(prefix + p.legacy_name)) return NamingScheme::legacy;
    throw ConfigMismatch(file.source() + ": no tensor named '" + prefix + p.name + "' (nor its legacy name '" +
                         prefix + p.legacy_name + "')");
  }
  return NamingScheme::current;
}

/// Read every tensor of `table` under `prefix` into host[offset...], checking shapes.
template <class T>
void read_tensors(const io::SafetensorsFile& file, const std::vector<ParamInfo>& table, const std::string& prefix,
                  std::vector<T>& host) {
  const NamingScheme scheme = detect_scheme(file, table, prefix);
  for (const ParamInfo& p : table) {
    const std::string name = prefix + (scheme == NamingScheme::current ? p.name : p.legacy_name);
    if (!file.contains(name)) throw ConfigMismatch(file.source() + ": no tensor named '" + name + "'");
    const auto shape = to_shape(p.shape);
    file.read_into<T>(name, shape, std::span<T>(host.data() + p.offset, p.size));
  }
}

template <class T>
void add_tensors(io::SafetensorsWriter& w, const std::vector<ParamInfo>& table, const std::string& prefix,
                 const std::vector<T>& host, NamingScheme scheme) {
  for (const ParamInfo& p : table)
    w.add<T>(prefix + (scheme == NamingScheme::current ? p.name : p.legacy_name), to_shape(p.shape),
             std::span<const T>(host.data() + p.offset, p.size), dtype_of<T>());
}

/// The parameters of `file` in Model's flat layout, after checking its configuration metadata
/// (what load_weights() and average_weights() read).
template <class Model>
std::vector<typename Model::T> read_parameters(const io::SafetensorsFile& file, const std::string& prefix) {
  check_config_metadata(Model::config, file.metadata(), file.source());
  std::vector<typename Model::T> host(Model::num_params);
  read_tensors<typename Model::T>(file, param_table<Model::config>(), prefix, host);
  return host;
}

}  // namespace detail

/// @brief Write the model's parameters to a safetensors file (atomically).
///
/// Tensors are stored under their PyTorch names in the model's scalar type (F32 or F64); the
/// metadata holds the configuration and "format" = "vitiq-weights".
/// @tparam Model         a ViT instantiation
/// @param model          the model
/// @param path           the file to create or replace
/// @param scheme         which PyTorch names to write
/// @param extra_metadata written beside the configuration (e.g. training provenance); a key
/// equal to a configuration field or "format" is overwritten
/// @throws IoError when the file cannot be written
template <class Model>
void save_weights(const Model& model, const std::filesystem::path& path, NamingScheme scheme = NamingScheme::current,
                  const std::map<std::string, std::string>& extra_metadata = {}) {
  using T = typename Model::T;
  io::SafetensorsWriter w;
  for (const auto& [k, v] : extra_metadata) w.set_metadata(k, v);
  for (const auto& [k, v] : config_to_metadata(Model::config)) w.set_metadata(k, v);
  w.set_metadata("format", "vitiq-weights");
  detail::add_tensors<T>(w, param_table<Model::config>(), "", model.parameters_to_host(), scheme);
  w.write(path);
}

/// @brief Load parameters from a safetensors file written by vitiq or converted from PyTorch
/// (either naming scheme, F32/F64/F16/BF16). Throws ConfigMismatch naming the field or tensor
/// when the file does not fit the model, FormatError when the file is malformed.
///
/// The model is changed only when every tensor was read.
/// @tparam Model  a ViT instantiation
/// @param model  the model whose parameters are replaced
/// @param path   the file
/// @param prefix prefix of the tensor names (e.g. "param." in the golden test files)
/// @throws IoError when the file cannot be read
/// @throws FormatError when the file is malformed
/// @throws ConfigMismatch when a configuration field, a tensor name or a shape differs
template <class Model>
void load_weights(Model& model, const std::filesystem::path& path, const std::string& prefix = "") {
  const io::SafetensorsFile file = io::SafetensorsFile::load(path);
  load_weights(model, file, prefix);
}

/// @brief load_weights from an already parsed file.
/// @tparam Model  a ViT instantiation
/// @param model  the model whose parameters are replaced
/// @param file   the parsed file
/// @param prefix prefix of the tensor names
/// @throws ConfigMismatch when a configuration field differs, a tensor is missing, or a shape
/// differs
template <class Model>
void load_weights(Model& model, const io::SafetensorsFile& file, const std::string& prefix = "") {
  model.set_parameters(detail::read_parameters<Model>(file, prefix));
}

/// @brief Set `model`'s parameters to the element-wise mean of the weights files `paths` (a
/// "model soup", Wortsman et al. 2022; on a fine-tuning trajectory the weight average of
/// stochastic weight averaging, Izmailov et al. 2018). Meant for models fine-tuned from one
/// start, which stay in one basin: the average is one model that behaves like the ensemble of
/// the stages and needs no choice among them on a small, noisy validation set. Sums in double.
/// @tparam Model a ViT instantiation
/// @param model the model whose parameters are replaced (unchanged when an error is thrown)
/// @param paths at least one weights file of Model's configuration
/// @throws std::invalid_argument when `paths` is empty
/// @throws IoError, FormatError, ConfigMismatch as load_weights, naming the file
template <class Model>
void average_weights(Model& model, const std::vector<std::filesystem::path>& paths) {
  using T = typename Model::T;
  if (paths.empty()) throw std::invalid_argument("vitiq::average_weights: no weights files");
  std::vector<double> sum(Model::num_params, 0.0);
  for (const auto& path : paths) {
    const std::vector<T> host = detail::read_parameters<Model>(io::SafetensorsFile::load(path), "");
    for (std::size_t i = 0; i < host.size(); ++i) sum[i] += double(host[i]);
  }
  std::vector<T> host(Model::num_params);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = T(sum[i] / double(paths.size()));
  model.set_parameters(host);
}

/// @brief Everything besides weights and optimiser moments that a resumed run needs.
struct TrainState {
  std::int64_t step = 0;             ///< optimiser steps taken
  std::int64_t epoch = 0;            ///< epochs completed
  std::uint64_t rng_state[4] = {};   ///< the data-order / augmentation generator (Rng::state)
  std::uint64_t forward_count = 0;   ///< the model's dropout stream counter
  std::uint64_t dropout_seed = 0;    ///< the model's dropout seed
  std::map<std::string, std::string> extra;  ///< anything else (schedule state, best metric, ...)
};

/// @brief Write a training checkpoint (weights, Adam moments, TrainState), atomically.
///
/// Metadata: the configuration, "format" = "vitiq-checkpoint", the optimiser's options and step
/// count ("optimizer.*"), the state ("train.*") and state.extra ("extra.<key>"). Tensors: the
/// parameters, "optimizer.exp_avg.<name>" and "optimizer.exp_avg_sq.<name>" (current names).
/// @tparam Model     a ViT instantiation
/// @tparam Optimizer Adam over the model's backend
/// @param path  the file to create or replace
/// @param model the model
/// @param opt   its optimiser
/// @param state the rest of the training state
/// @throws IoError when the file cannot be written
template <class Model, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const Model& model, const Optimizer& opt,
                     const TrainState& state) {
  using T = typename Model::T;
  const auto table = param_table<Model::config>();
  io::SafetensorsWriter w;
  for (const auto& [k, v] : state.extra) w.set_metadata("extra." + k, v);
  for (const auto& [k, v] : config_to_metadata(Model::config)) w.set_metadata(k, v);
  const AdamOptions& o = opt.options();
  auto num = [](auto x) { std::ostringstream s; s.precision(17); s << x; return s.str(); };
  w.set_metadata("format", "vitiq-checkpoint");
  w.set_metadata("optimizer.kind", o.kind == OptimizerKind::adamw ? "adamw" : "adam");
  w.set_metadata("optimizer.lr", num(o.lr));
  w.set_metadata("optimizer.beta1", num(o.beta1));
  w.set_metadata("optimizer.beta2", num(o.beta2));
  w.set_metadata("optimizer.eps", num(o.eps));
  w.set_metadata("optimizer.weight_decay", num(o.weight_decay));
  w.set_metadata("optimizer.decay_all", o.decay_all ? "true" : "false");
  w.set_metadata("optimizer.step", std::to_string(opt.steps()));
  w.set_metadata("train.step", std::to_string(state.step));
  w.set_metadata("train.epoch", std::to_string(state.epoch));
  w.set_metadata("train.forward_count", std::to_string(state.forward_count));
  w.set_metadata("train.dropout_seed", std::to_string(state.dropout_seed));
  for (int i = 0; i < 4; ++i) w.set_metadata("train.rng_state." + std::to_string(i), std::to_string(state.rng_state[i]));
  detail::add_tensors<T>(w, table, "", model.parameters_to_host(), NamingScheme::current);
  std::vector<T> host(Model::num_params);
  model.backend().to_host(host.data(), opt.m(), host.size());
  detail::add_tensors<T>(w, table, "optimizer.exp_avg.", host, NamingScheme::current);
  model.backend().to_host(host.data(), opt.v(), host.size());
  detail::add_tensors<T>(w, table, "optimizer.exp_avg_sq.", host, NamingScheme::current);
  w.write(path);
}

/// @brief Restore a checkpoint written by save_checkpoint into `model` and `opt`; returns the
/// training state. The optimiser keeps its own hyper-parameters; only its moments and step
/// count are restored. Throws FormatError naming the file and key when the state is missing.
///
/// Also restores the model's forward count and dropout seed. Nothing is changed unless the
/// whole file was read and checked.
/// @tparam Model     a ViT instantiation
/// @tparam Optimizer Adam over the model's backend
/// @param path  the checkpoint
/// @param model receives the parameters, forward count and dropout seed
/// @param opt   receives the moments and the step count
/// @return the training state (step, epoch, RNG state, dropout state, extra entries)
/// @throws IoError when the file cannot be read
/// @throws FormatError when the file is malformed or not a vitiq checkpoint, or when a
/// configuration field or state key is missing or a state value is not a number
/// @throws ConfigMismatch when the configuration differs from the model's, or a tensor is
/// missing or has another shape
template <class Model, class Optimizer>
TrainState load_checkpoint(const io::SafetensorsFile& file, Model& model, Optimizer& opt);

template <class Model, class Optimizer>
TrainState load_checkpoint(const std::filesystem::path& path, Model& model, Optimizer& opt) {
  return load_checkpoint(io::SafetensorsFile::load(path), model, opt);
}

/// @brief load_checkpoint from an already parsed file (e.g. bytes given to
/// io::SafetensorsFile::parse); the same checks, the same guarantee that nothing changes unless
/// the whole file was read and checked.
/// @tparam Model     a ViT instantiation
/// @tparam Optimizer Adam over the model's backend
/// @param file  the parsed checkpoint
/// @param model receives the parameters, forward count and dropout seed
/// @param opt   receives the moments and the step count
/// @return the training state
/// @throws FormatError, ConfigMismatch as the overload taking a path
template <class Model, class Optimizer>
TrainState load_checkpoint(const io::SafetensorsFile& file, Model& model, Optimizer& opt) {
  using T = typename Model::T;
  const auto& md = file.metadata();
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = md.find(key);
    if (it == md.end()) throw FormatError(file.source() + ": checkpoint metadata has no '" + key + "'");
    return it->second;
  };
  auto to_u64 = [&](const std::string& key) -> std::uint64_t {
    const std::string& s = get(key);
    std::size_t used = 0;
    unsigned long long v = 0;
    try { v = std::stoull(s, &used); } catch (...) { used = 0; }
    if (used != s.size() || s.empty() || s[0] == '-')
      throw FormatError(file.source() + ": checkpoint metadata '" + key + "' is not a number: '" + s + "'");
    return v;
  };
  if (get("format") != "vitiq-checkpoint")
    throw FormatError(file.source() + ": not a vitiq checkpoint (format '" + get("format") + "')");
  if (check_config_metadata(Model::config, md, file.source()) != 13)
    throw FormatError(file.source() + ": checkpoint metadata lacks configuration fields");
  TrainState st;
  st.step = std::int64_t(to_u64("train.step"));
  st.epoch = std::int64_t(to_u64("train.epoch"));
  st.forward_count = to_u64("train.forward_count");
  st.dropout_seed = to_u64("train.dropout_seed");
  for (int i = 0; i < 4; ++i) st.rng_state[i] = to_u64("train.rng_state." + std::to_string(i));
  for (const auto& [k, v] : md)
    if (k.rfind("extra.", 0) == 0) st.extra[k.substr(6)] = v;
  const auto table = param_table<Model::config>();
  std::vector<T> host(Model::num_params), m(Model::num_params), v(Model::num_params);
  detail::read_tensors<T>(file, table, "", host);
  detail::read_tensors<T>(file, table, "optimizer.exp_avg.", m);
  detail::read_tensors<T>(file, table, "optimizer.exp_avg_sq.", v);
  const std::int64_t opt_steps = std::int64_t(to_u64("optimizer.step"));
  // Everything is parsed: only now change the caller's objects.
  model.set_parameters(host);
  model.backend().to_device(opt.m(), m.data(), m.size());
  model.backend().to_device(opt.v(), v.data(), v.size());
  opt.set_steps(opt_steps);
  model.set_forward_count(st.forward_count);
  model.set_dropout_seed(st.dropout_seed);
  return st;
}

}  // namespace vitiq
