// benchmarks/bench_cuda.cu -- vitiq-bench-cuda: throughput of ViT<C, CudaBackend<float>> on the GPU.
//
//   vitiq-bench-cuda [--preset NAME]... [--iters N] [--tf32] [--json]
//       inference (eval mode, forward only) and a training step (forward, soft-label
//       cross-entropy, backward, AdamW with weight decay 0.05 on the Linear weights; no clipping,
//       as benchmarks/pytorch_gpu_peer.py does it) for each preset (default: iqa and seed) at
//       fixed batch sizes: inference 256 (iqa) / 64 (seed), training 128 (iqa) / 32 (seed).
//       Prints images/s and achieved TFLOP/s (GEMM FLOPs of vitiq/model/flops.hpp); with --json
//       one JSON line per measurement ("side": "vitiq").
//   vitiq-bench-cuda --smoke
//       a few training steps of preset aio at batch 8 with dropout on, checking that loss and
//       gradients stay finite (the run compute-sanitizer checks in benchmarks/gpu_check.sh).
//
// Timing: CUDA events on the backend's stream around `iters` steps after 3 warm-up steps.
// Exit status 0 on success, 1 on an error (no CUDA device, a CUDA failure, a non-finite value).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "vitiq/cuda.hpp"

namespace {

struct Options {
  std::vector<std::string> presets;
  int iters = 20;
  bool tf32 = false;
  bool json = false;
  bool smoke = false;
};

struct Batches {
  int infer, train;
};

Batches batches_for(const std::string& preset) {
  if (preset == "seed") return {64, 32};
  if (preset == "iqa") return {256, 128};
  return {256, 128};
}

/// Seconds per step of `step` over `iters` runs after 3 warm-up runs, timed with CUDA events.
template <class F>
double time_steps(vitiq::cuda::Context& ctx, int iters, F step) {
  for (int i = 0; i < 3; ++i) step();
  cudaEvent_t start, stop;
  VITIQ_CUDA_CHECK(cudaEventCreate(&start));
  VITIQ_CUDA_CHECK(cudaEventCreate(&stop));
  VITIQ_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
  for (int i = 0; i < iters; ++i) step();
  VITIQ_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
  VITIQ_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  VITIQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  VITIQ_CUDA_CHECK(cudaEventDestroy(start));
  VITIQ_CUDA_CHECK(cudaEventDestroy(stop));
  return double(ms) / 1000.0 / iters;
}

void report(const Options& o, const std::string& preset, const char* work, int B, double seconds, double flops) {
  const double ips = B / seconds, tflops = flops / seconds * 1e-12;
  if (o.json)
    std::printf("{\"side\": \"vitiq\", \"preset\": \"%s\", \"work\": \"%s\", \"batch\": %d, \"seconds\": %.6e, "
                "\"images_per_s\": %.1f, \"tflops\": %.3f, \"tf32\": %s}\n",
                preset.c_str(), work, B, seconds, ips, tflops, o.tf32 ? "true" : "false");
  else
    std::printf("vitiq-cuda  %-5s %-6s batch %4d  %10.1f images/s  %7.2f TFLOP/s  %8.3f ms/step\n", preset.c_str(),
                work, B, ips, tflops, seconds * 1e3);
  std::fflush(stdout);
}

template <vitiq::Config C>
void bench(const Options& o, const std::string& preset) {
  using Be = vitiq::CudaBackend<float>;
  using Model = vitiq::ViT<C, Be>;
  constexpr int K = C.num_classes;
  const std::size_t per_image = std::size_t(C.channels) * C.image_size * C.image_size;
  const Batches nb = batches_for(preset);
  Model model({}, 1);
  Be& be = model.backend();
  be.set_tf32(o.tf32);
  vitiq::Rng rng(2);

  // Inference.
  {
    const int B = nb.infer;
    std::vector<float> host(per_image * std::size_t(B));
    for (auto& x : host) x = float(rng.normal());
    auto images = be.allocate(host.size());
    be.to_device(images.data(), host.data(), host.size());
    model.set_training(false);
    const double s = time_steps(be.context(), o.iters, [&] { model.forward_device(images.data(), B); });
    report(o, preset, "infer", B, s, vitiq::forward_flops(C) * B);
  }
  // Training step.
  {
    const int B = nb.train;
    std::vector<float> host(per_image * std::size_t(B));
    for (auto& x : host) x = float(rng.normal());
    std::vector<double> votes(static_cast<std::size_t>(B));
    for (int b = 0; b < B; ++b) votes[std::size_t(b)] = double(1 + b % K);
    const auto targets_host = vitiq::make_targets<float>(votes, K);
    auto images = be.allocate(host.size());
    auto targets = be.allocate(targets_host.size());
    be.to_device(images.data(), host.data(), host.size());
    be.to_device(targets.data(), targets_host.data(), targets_host.size());
    vitiq::Adam<Be> adam(be, vitiq::param_table<C>(), Model::num_params,
                         {.kind = vitiq::OptimizerKind::adamw, .lr = 1e-4, .weight_decay = 0.05});
    vitiq::Criterion<Be> loss;
    model.set_training(true);
    double last = 0;
    const double s = time_steps(be.context(), o.iters, [&] {
      last = loss.forward_backward(be, model.forward_device(images.data(), B), targets.data(), B, K);
      model.zero_grad();
      model.backward_device(loss.dlogits());
      adam.step(model.parameters(), model.gradients());
    });
    if (!std::isfinite(last)) throw vitiq::Error("vitiq-bench-cuda: " + preset + ": the training loss is not finite");
    report(o, preset, "train", B, s, vitiq::training_flops(C) * B);
  }
}

/// A few training steps of preset aio with dropout; fails on a non-finite loss or gradient.
int smoke() {
  constexpr vitiq::Config C = vitiq::presets::aio;
  using Be = vitiq::CudaBackend<float>;
  vitiq::ViT<C, Be> model({}, 1);
  Be& be = model.backend();
  const int B = 8, K = C.num_classes;
  const std::size_t per_image = std::size_t(C.channels) * C.image_size * C.image_size;
  vitiq::Rng rng(3);
  std::vector<float> host(per_image * B);
  for (auto& x : host) x = float(rng.normal());
  std::vector<double> votes{1, 2, 3, 4, 5, 4, 3, 2};
  const auto t = vitiq::make_targets<float>(votes, K);
  auto images = be.allocate(host.size()), targets = be.allocate(t.size()), dimages = be.allocate(host.size());
  be.to_device(images.data(), host.data(), host.size());
  be.to_device(targets.data(), t.data(), t.size());
  vitiq::Adam<Be> adam(be, vitiq::param_table<C>(), model.num_params, {.lr = 1e-3, .weight_decay = 0.05});
  vitiq::Criterion<Be> loss;
  model.set_training(true);
  model.set_regularization({.emb_dropout = 0.1, .attn_dropout = 0.1, .dropout = 0.1, .stochastic_depth = 0.1});
  for (int s = 0; s < 3; ++s) {
    const double l = loss.forward_backward(be, model.forward_device(images.data(), B), targets.data(), B, K);
    model.zero_grad();
    model.backward_device(loss.dlogits(), dimages.data());
    if (!std::isfinite(l) || !be.all_finite(model.gradients(), model.num_params))
      throw vitiq::Error("vitiq-bench-cuda --smoke: non-finite loss or gradient at step " + std::to_string(s));
    const double norm = vitiq::clip_grad_norm(be, model.gradients(), model.num_params, 1.0);
    adam.step(model.parameters(), model.gradients());
    std::printf("smoke step %d: loss %.6f, gradient norm %.6f\n", s, l, norm);
  }
  model.set_training(false);
  std::vector<float> logits(std::size_t(B * K));
  model.forward_device(images.data(), B);
  be.to_host(logits.data(), model.logits(), logits.size());
  for (const float z : logits)
    if (!std::isfinite(z)) throw vitiq::Error("vitiq-bench-cuda --smoke: non-finite logits");
  std::printf("smoke: ok on %s\n", vitiq::cuda::device_description(be.context().device()).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw vitiq::Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--preset") o.presets.push_back(value());
      else if (a == "--iters") o.iters = std::stoi(value());
      else if (a == "--tf32") o.tf32 = true;
      else if (a == "--json") o.json = true;
      else if (a == "--smoke") o.smoke = true;
      else throw vitiq::Error("unknown option '" + a + "' (options: --preset NAME, --iters N, --tf32, --json, --smoke)");
    }
    if (const std::string why = vitiq::cuda::no_device_reason(); !why.empty()) throw vitiq::Error(why);
    if (o.smoke) return smoke();
    if (o.presets.empty()) o.presets = {"iqa", "seed"};
    if (o.iters < 1) throw vitiq::Error("--iters must be at least 1");
    if (!o.json)
      std::printf("vitiq-bench-cuda on %s, float32, TF32 %s\n",
                  vitiq::cuda::device_description(vitiq::cuda::Context::shared_default()->device()).c_str(),
                  o.tf32 ? "on" : "off");
    for (const std::string& p : o.presets) {
      const bool known = vitiq::dispatch_preset(p, [&]<vitiq::Config C>() {
        if constexpr (C.image_size >= 64) bench<C>(o, p);  // the small presets are not worth a GPU
        else throw vitiq::Error("preset '" + p + "': use aio, iqa or seed");
      });
      if (!known) throw vitiq::Error("unknown preset '" + p + "'");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitiq-bench-cuda: %s\n", e.what());
    return 1;
  }
}
