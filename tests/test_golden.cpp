// tests/test_golden.cpp -- golden parity against PyTorch.
//
// tests/reference/make_golden.py (PyTorch, float64) wrote tests/data/golden_<name>.safetensors:
// inputs, initial weights, logits, loss, every parameter gradient, the attention probabilities of
// every block, and the losses and final weights of 10 AdamW steps. This test runs the same
// computation with vitiq in double (agreement near machine precision expected) and in float
// (tolerances of the specification: logits 1e-5 relative, gradients 1e-4, the scalar temperature
// gradients 1e-3, 10-step losses 1e-4) and prints the measured errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

namespace {

std::string data_file(const std::string& name) { return std::string(VITIQ_TEST_DATA_DIR) + "/" + name; }

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) { return {v.begin(), v.end()}; }

struct Tolerances {
  double logits, loss, grad, temperature_grad, attention, train_loss, final_weights;
};

// keep_maps: the full last block, whose attention maps are compared too; without (class-token
// pooling only) the class-token-only last block, whose logits, gradients and steps must match alike.
template <vitiq::Config C, class T>
void check_golden_path(const std::string& name, const Tolerances& tol, bool keep_maps) {
  using Be = vitiq::CpuBackend<T>;
  const auto file = vitiq::io::SafetensorsFile::load(data_file("golden_" + name + ".safetensors"));
  const auto& md = file.metadata();
  REQUIRE(vitiq::check_config_metadata(C, md, file.source()) == 13);
  const int B = std::stoi(md.at("batch"));
  const int steps = std::stoi(md.at("steps"));
  const auto table = vitiq::param_table<C>();

  vitiq::ViT<C, Be> model;
  model.keep_attention_maps(keep_maps);
  REQUIRE(model.class_token_last_block() == (!keep_maps && C.pool == vitiq::Pool::cls));
  vitiq::load_weights(model, file, "param.");
  const std::vector<T> input = file.read<T>("input");
  const std::vector<T> target = file.read<T>("target");

  // Soft labels: vitiq's Gaussian targets equal PyTorch's.
  const auto votes = file.read<double>("votes");
  CHECK(rel_error(widen(vitiq::make_targets<T>(votes, C.num_classes)), file.read<double>("target")) < 1e-6);

  // Forward: logits, attention, loss.
  const T* logits = model.forward_device(input.data(), B);
  std::vector<T> host_logits(logits, logits + B * C.num_classes);
  const double e_logits = rel_error(widen(host_logits), file.read<double>("logits"));
  vitiq::Criterion<Be> criterion;
  const double loss = criterion.forward_backward(model.backend(), logits, target.data(), B, C.num_classes);
  const double e_loss = std::abs(loss - file.read<double>("loss")[0]) / std::abs(file.read<double>("loss")[0]);
  double e_attn = 0;
  for (int l = 0; l < C.depth; ++l) {
    if (!keep_maps && l == C.depth - 1) {
      CHECK_THROWS_AS(model.attention_to_host(l), std::logic_error);  // only the class row was computed
      continue;
    }
    e_attn = std::max(e_attn, rel_error(widen(model.attention_to_host(l)), file.read<double>("attn." + std::to_string(l))));
  }

  // Backward: every parameter gradient.
  model.zero_grad();
  model.backward_device(criterion.dlogits());
  const auto grads = model.gradients_to_host();
  double e_grad = 0, e_temp = 0;
  for (const auto& p : table) {
    const std::vector<double> mine(grads.begin() + long(p.offset), grads.begin() + long(p.offset + p.size));
    const double e = rel_error(mine, file.read<double>("grad." + p.name));
    INFO(name << " gradient " << p.name << " relative error " << e);
    if (p.kind == vitiq::ParamKind::temperature) {
      CHECK(e < tol.temperature_grad);
      e_temp = std::max(e_temp, e);
    } else {
      CHECK(e < tol.grad);
      e_grad = std::max(e_grad, e);
    }
  }

  // 10 AdamW steps on the same batch: lr 1e-3, decay 0.05 on Linear weights only.
  vitiq::AdamOptions opt{.kind = vitiq::OptimizerKind::adamw, .lr = std::stod(md.at("lr")),
                         .beta1 = std::stod(md.at("beta1")), .beta2 = std::stod(md.at("beta2")),
                         .eps = std::stod(md.at("eps")), .weight_decay = std::stod(md.at("weight_decay"))};
  vitiq::load_weights(model, file, "param.");
  vitiq::Adam<Be> adam(model.backend(), table, model.num_params, opt);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const T* z = model.forward_device(input.data(), B);
    losses.push_back(criterion.forward_backward(model.backend(), z, target.data(), B, C.num_classes));
    model.zero_grad();
    model.backward_device(criterion.dlogits());
    adam.step(model.parameters(), model.gradients());
  }
  const auto expected_losses = file.read<double>("train.loss");
  double e_train = 0;
  for (int s = 0; s < steps; ++s)
    e_train = std::max(e_train, std::abs(losses[std::size_t(s)] - expected_losses[std::size_t(s)]) /
                                    std::abs(expected_losses[std::size_t(s)]));
  const auto final_params = model.parameters_to_host();
  double e_final = 0;
  for (const auto& p : table) {
    const std::vector<double> mine(final_params.begin() + long(p.offset),
                                   final_params.begin() + long(p.offset + p.size));
    e_final = std::max(e_final, rel_error(mine, file.read<double>("final." + p.name)));
  }

  std::printf("golden %-13s %-6s %-9s logits %.2e  loss %.2e  attention %.2e  grads %.2e  temperature %.2e  "
              "10-step losses %.2e  final weights %.2e\n",
              name.c_str(), sizeof(T) == 4 ? "float" : "double", keep_maps ? "full" : "cls-last", e_logits, e_loss, e_attn, e_grad, e_temp,
              e_train, e_final);
  CHECK(e_logits < tol.logits);
  CHECK(e_loss < tol.loss);
  CHECK(e_attn < tol.attention);
  CHECK(e_train < tol.train_loss);
  CHECK(e_final < tol.final_weights);
}

// Every configuration with its full last block; class-token pooling also with the class-token-only one.
template <vitiq::Config C, class T>
void check_golden(const std::string& name, const Tolerances& tol) {
  check_golden_path<C, T>(name, tol, true);
  if constexpr (C.pool == vitiq::Pool::cls) check_golden_path<C, T>(name, tol, false);
}

constexpr Tolerances double_tol{1e-12, 1e-12, 1e-9, 1e-9, 1e-12, 1e-10, 1e-8};
constexpr Tolerances float_tol{1e-5, 1e-5, 1e-4, 1e-3, 1e-5, 1e-4, 1e-3};

constexpr vitiq::Config diag_perhead{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 24, .depth = 2,
                                     .heads = 3, .dim_head = 8, .mlp_dim = 48, .num_classes = 5,
                                     .spt = vitiq::SptVariant::diagonal, .lsa = true,
                                     .temperature = vitiq::Temperature::per_head, .pool = vitiq::Pool::mean};
constexpr vitiq::Config none_shared{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 2,
                                    .heads = 2, .dim_head = 8, .mlp_dim = 32, .num_classes = 5,
                                    .spt = vitiq::SptVariant::none, .lsa = true,
                                    .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::cls};
constexpr vitiq::Config mhsa{.image_size = 16, .patch_size = 4, .channels = 3, .dim = 16, .depth = 1,
                             .heads = 2, .dim_head = 8, .mlp_dim = 32, .num_classes = 5,
                             .spt = vitiq::SptVariant::axial, .lsa = false,
                             .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::cls};
constexpr vitiq::Config odd{.image_size = 12, .patch_size = 2, .channels = 3, .dim = 12, .depth = 2,
                            .heads = 3, .dim_head = 4, .mlp_dim = 20, .num_classes = 5,
                            .spt = vitiq::SptVariant::axial, .lsa = true,
                            .temperature = vitiq::Temperature::shared_log, .pool = vitiq::Pool::mean};

}  // namespace

TEMPLATE_TEST_CASE("golden parity with PyTorch: tiny (axial SPT, shared_log temperature)", "[golden]", float, double) {
  check_golden<vitiq::presets::tiny, TestType>("tiny", sizeof(TestType) == 4 ? float_tol : double_tol);
}
TEMPLATE_TEST_CASE("golden parity with PyTorch: diagonal SPT, per-head temperature, mean pool", "[golden]", float, double) {
  check_golden<diag_perhead, TestType>("diag_perhead", sizeof(TestType) == 4 ? float_tol : double_tol);
}
TEMPLATE_TEST_CASE("golden parity with PyTorch: no SPT shifts, shared_log temperature", "[golden]", float, double) {
  check_golden<none_shared, TestType>("none_shared", sizeof(TestType) == 4 ? float_tol : double_tol);
}
TEMPLATE_TEST_CASE("golden parity with PyTorch: plain MHSA (LSA off)", "[golden]", float, double) {
  check_golden<mhsa, TestType>("mhsa", sizeof(TestType) == 4 ? float_tol : double_tol);
}
TEMPLATE_TEST_CASE("golden parity with PyTorch: odd shape (patch 2, three heads)", "[golden]", float, double) {
  check_golden<odd, TestType>("odd", sizeof(TestType) == 4 ? float_tol : double_tol);
}
