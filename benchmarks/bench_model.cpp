// benchmarks/bench_model.cpp -- forward and training-step throughput of the CPU backend (float)
// for the `aio` and `iqa` presets: images/s and achieved GFLOP/s (matmul FLOPs, see
// vitiq/model/flops.hpp). A training step is forward + cross-entropy + backward + AdamW.
//
// Before timing, each benchmark checks that the float model agrees with a double model on the
// same weights and images (the double model is itself verified against PyTorch by the tests).
#include <benchmark/benchmark.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "vitiq/vitiq.hpp"

namespace {

template <vitiq::Config C>
std::vector<float> random_images(long batch) {
  vitiq::Rng rng(7);
  std::vector<float> x(std::size_t(batch) * C.channels * C.image_size * C.image_size);
  for (auto& v : x) v = float(rng.normal());
  return x;
}

/// Throws unless the float forward matches a double forward within 1e-4 relative.
template <vitiq::Config C>
void validate(vitiq::ViT<C>& model, const std::vector<float>& images, long batch) {
  vitiq::ViT<C, vitiq::CpuBackend<double>> ref;
  const auto p = model.parameters_to_host();
  ref.set_parameters(std::vector<double>(p.begin(), p.end()));
  const std::vector<double> x(images.begin(), images.end());
  const auto a = model.forward(images, batch);
  const auto b = ref.forward(x, batch);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
  if (std::sqrt(num / den) > 1e-4) throw std::runtime_error("float forward disagrees with double reference");
}

template <vitiq::Config C>
void BM_Forward(benchmark::State& state) {
  const long B = state.range(0);
  vitiq::ViT<C> model;
  const auto images = random_images<C>(B);
  validate<C>(model, images, B);
  for (auto _ : state) benchmark::DoNotOptimize(model.forward_device(images.data(), B));
  state.counters["images/s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(double(B) * state.iterations() * vitiq::forward_flops(C) * 1e-9,
                                                 benchmark::Counter::kIsRate);
}

template <vitiq::Config C>
void BM_TrainStep(benchmark::State& state) {
  const long B = state.range(0);
  vitiq::ViT<C> model;
  const auto images = random_images<C>(B);
  validate<C>(model, images, B);
  std::vector<double> votes(static_cast<std::size_t>(B));
  for (long b = 0; b < B; ++b) votes[std::size_t(b)] = double(1 + b % C.num_classes);
  const auto targets = vitiq::make_targets<float>(votes, C.num_classes);
  vitiq::Criterion<vitiq::CpuBackend<float>> loss;
  vitiq::Adam<vitiq::CpuBackend<float>> opt(model.backend(), vitiq::param_table<C>(), model.num_params,
                                            {.lr = 1e-4, .weight_decay = 0.05});
  model.set_training(true);
  for (auto _ : state) {
    const float* logits = model.forward_device(images.data(), B);
    benchmark::DoNotOptimize(loss.forward_backward(model.backend(), logits, targets.data(), B, C.num_classes));
    model.zero_grad();
    model.backward_device(loss.dlogits());
    opt.step(model.parameters(), model.gradients());
  }
  state.counters["images/s"] = benchmark::Counter(double(B) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(double(B) * state.iterations() * vitiq::training_flops(C) * 1e-9,
                                                 benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_Forward, vitiq::presets::aio)->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_TrainStep, vitiq::presets::aio)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Forward, vitiq::presets::iqa)->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_TrainStep, vitiq::presets::iqa)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
