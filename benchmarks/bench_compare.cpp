// benchmarks/bench_compare.cpp -- the vitiq side of the PyTorch comparison (benchmarks/compare.py):
// a plain timing harness, one measurement per process, results as one JSON line on stdout.
//
//   vitiq-bench-compare export --preset P --out DIR [--batch B]
//       writes DIR/P.weights.safetensors (PyTorch names, seed-0 initialisation) and
//       DIR/P.parity.safetensors (images [B, C, H, W] and vitiq's float logits [B, K]) so that
//       the PyTorch side can check that both compute the same logits on the same weights.
//   vitiq-bench-compare time --preset P --work train|infer --batch B [--min-time S] [--threads T]
//       median seconds per forward (infer; with ViT::set_weight_packing, which small batches use)
//       or per training step (forward + soft-label
//       cross-entropy + backward + AdamW), images/s, matmul GFLOP/s (vitiq/model/flops.hpp) and
//       the process's peak resident memory (getrusage ru_maxrss).
//   vitiq-bench-compare gemm [--size 2048] [--min-time S] [--threads T]
//       a float32 size^3 GEMM through CpuBackend<float>::gemm: the GEMM peak of this build.
//   vitiq-bench-compare gemm --shape M,N,K [--min-time S] [--threads T]
//       C [M, N] = X [M, K] W^T with W [N, K], as the model's Linear layers call it (e.g. 65,768,256:
//       the iqa preset's qkv projection of one image), on the same operands every run.
//   vitiq-bench-compare engines
//       {"eigen": true, "blas": true|false}: the GEMM engines of this build (VITIQ_GEMM chooses).
//
// The thread count is OpenMP's (OMP_NUM_THREADS, or --threads); the GEMM engine is VITIQ_GEMM's. Not a Google Benchmark program
// (one process per case keeps ru_maxrss per case), though CMake links the library like the others.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/io/safetensors.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string command, preset = "aio", work = "train", out = ".";
  long batch = 64, size = 2048, threads = 0;
  long m = 0, n = 0, k = 0;  // --shape M,N,K: a Linear-layer GEMM instead of size^3
  double min_time = 2.0;
};

Args parse(int argc, char** argv) {
  if (argc < 2) throw std::invalid_argument("usage: vitiq-bench-compare export|time|gemm|engines [--option value]...");
  Args a;
  a.command = argv[1];
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("option " + k + " needs a value");
    const std::string v = argv[i + 1];
    if (k == "--preset") a.preset = v;
    else if (k == "--work") a.work = v;
    else if (k == "--out") a.out = v;
    else if (k == "--batch") a.batch = std::stol(v);
    else if (k == "--size") a.size = std::stol(v);
    else if (k == "--shape") {
      if (std::sscanf(v.c_str(), "%ld,%ld,%ld", &a.m, &a.n, &a.k) != 3 || a.m < 1 || a.n < 1 || a.k < 1)
        throw std::invalid_argument("--shape must be M,N,K (positive integers), not " + v);
    }
    else if (k == "--threads") a.threads = std::stol(v);
    else if (k == "--min-time") a.min_time = std::stod(v);
    else throw std::invalid_argument("unknown option " + k);
  }
  if (a.batch < 1) throw std::invalid_argument("--batch must be >= 1");
  return a;
}

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;  // KiB on Linux
}

/// User + system CPU seconds of the process so far (all threads).
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int omp_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Runs f once to warm up, then repeatedly until min_time has passed and at least 3 runs were
/// made; returns every run's wall seconds. cpu_per_run: CPU seconds (all threads) per timed run,
/// a measure of the work done that a busy machine disturbs less than wall time.
template <class F>
std::vector<double> time_runs(F f, double min_time, double& cpu_per_run) {
  f();
  std::vector<double> t;
  const double cpu0 = cpu_seconds();
  const auto start = Clock::now();
  while (true) {
    const auto t0 = Clock::now();
    f();
    const auto t1 = Clock::now();
    t.push_back(std::chrono::duration<double>(t1 - t0).count());
    if (std::chrono::duration<double>(t1 - start).count() >= min_time && t.size() >= 3) break;
  }
  cpu_per_run = (cpu_seconds() - cpu0) / double(t.size());
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

template <vitiq::Config C>
std::vector<float> random_images(long batch, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<float> x(std::size_t(batch) * C.channels * C.image_size * C.image_size);
  for (auto& v : x) v = float(rng.normal());
  return x;
}

template <vitiq::Config C>
int run_export(const Args& a) {
  namespace fs = std::filesystem;
  fs::create_directories(a.out);
  vitiq::ViT<C> model({}, /*seed=*/0);
  model.set_weight_packing(true);  // the parity logits come from the path `time --work infer` times
  vitiq::save_weights(model, fs::path(a.out) / (a.preset + ".weights.safetensors"));
  const auto images = random_images<C>(a.batch, 11);
  const auto logits = model.forward(images, a.batch);
  vitiq::io::SafetensorsWriter w;
  w.set_metadata("preset", a.preset);
  w.add<float>("images", {a.batch, C.channels, C.image_size, C.image_size}, images, vitiq::io::DType::F32);
  w.add<float>("logits", {a.batch, C.num_classes}, logits, vitiq::io::DType::F32);
  w.write(fs::path(a.out) / (a.preset + ".parity.safetensors"));
  std::printf("{\"side\": \"vitiq\", \"command\": \"export\", \"preset\": \"%s\", \"batch\": %ld}\n",
              a.preset.c_str(), a.batch);
  return 0;
}

template <vitiq::Config C>
int run_time(const Args& a) {
  const long B = a.batch;
  vitiq::ViT<C> model({}, /*seed=*/0);
  const auto images = random_images<C>(B, 11);
  std::vector<double> runs;
  double flops = 0, cpu = 0;
  // Executed matmul FLOPs as a share of the nominal count (forward_flops, training_flops): the
  // class-token-only last block, and in training the folded patch LayerNorm's backward.
  double executed = 1;
  if (a.work == "infer") {
    model.set_training(false);
    model.set_weight_packing(true);  // small batches run on weights packed once (ViT::set_weight_packing)
    executed = vitiq::executed_forward_flops(C, model.class_token_last_block()) / vitiq::forward_flops(C);
    runs = time_runs([&] { model.forward_device(images.data(), B); }, a.min_time, cpu);
    flops = vitiq::forward_flops(C) * double(B);
  } else if (a.work == "train") {
    std::vector<double> votes(static_cast<std::size_t>(B));
    for (long b = 0; b < B; ++b) votes[std::size_t(b)] = double(1 + b % C.num_classes);
    const auto targets = vitiq::make_targets<float>(votes, C.num_classes);
    vitiq::Criterion<vitiq::CpuBackend<float>> loss;
    vitiq::Adam<vitiq::CpuBackend<float>> opt(model.backend(), vitiq::param_table<C>(), model.num_params,
                                              {.lr = 1e-4, .weight_decay = 0.05});
    model.set_training(true);
    executed = vitiq::executed_training_flops(C, model.class_token_last_block(), model.patch_norm_folded_at(B)) /
               vitiq::training_flops(C);
    runs = time_runs([&] {
      const float* logits = model.forward_device(images.data(), B);
      loss.forward_backward(model.backend(), logits, targets.data(), B, C.num_classes);
      model.zero_grad();
      model.backward_device(loss.dlogits());
      opt.step(model.parameters(), model.gradients());
    }, a.min_time, cpu);
    flops = vitiq::training_flops(C) * double(B);
  } else {
    throw std::invalid_argument("--work must be train or infer");
  }
  const double t = median(runs);
  std::printf("{\"side\": \"vitiq\", \"preset\": \"%s\", \"work\": \"%s\", \"batch\": %ld, \"threads\": %d, "
              "\"runs\": %zu, \"seconds\": %.6g, \"images_per_s\": %.6g, \"gflops\": %.6g, \"cpu_seconds\": %.6g, "
              "\"peak_rss_kib\": %ld, \"executed_flops_share\": %.6g}\n",
              a.preset.c_str(), a.work.c_str(), B, omp_threads(), runs.size(), t, double(B) / t, flops / t * 1e-9, cpu,
              peak_rss_kib(), executed);
  return 0;
}

int run_gemm(const Args& a) {
  const bool linear = a.m > 0;  // --shape: C = X W^T as the model's Linear layers; else size^3, C = A B
  const long M = linear ? a.m : a.size, N = linear ? a.n : a.size, K = linear ? a.k : a.size;
  std::vector<float> A(std::size_t(M * K)), Bm(std::size_t(K * N)), Cm(std::size_t(M * N));
  vitiq::Rng rng(3);
  for (auto& v : A) v = float(rng.uniform(-1, 1));
  for (auto& v : Bm) v = float(rng.uniform(-1, 1));
  vitiq::CpuBackend<float> be;
  double cpu = 0;
  const auto runs = time_runs([&] {
    if (linear) be.gemm(false, true, M, N, K, 1.f, A.data(), K, Bm.data(), K, 0.f, Cm.data(), N);
    else be.gemm(false, false, M, N, K, 1.f, A.data(), K, Bm.data(), N, 0.f, Cm.data(), N);
  }, a.min_time, cpu);
  const double t = median(runs);
  std::printf("{\"side\": \"vitiq\", \"command\": \"gemm\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"linear\": %s, "
              "\"threads\": %d, \"seconds\": %.6g, \"gflops\": %.6g}\n",
              M, N, K, linear ? "true" : "false", omp_threads(), t, 2.0 * double(M) * double(N) * double(K) / t * 1e-9);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
#if defined(_OPENMP)
    if (a.threads > 0) omp_set_num_threads(int(a.threads));
#endif
    if (a.command == "engines") {  // the GEMM engines this build offers (vitiq::GemmEngine)
      std::printf("{\"eigen\": true, \"blas\": %s}\n", vitiq::blas_available() ? "true" : "false");
      return 0;
    }
    if (a.command == "gemm") return run_gemm(a);
    if (a.command != "export" && a.command != "time") throw std::invalid_argument("unknown command " + a.command);
    int rc = -1;
    const bool found = vitiq::dispatch_preset(a.preset, [&]<vitiq::Config C>() {
      rc = a.command == "export" ? run_export<C>(a) : run_time<C>(a);
    });
    if (!found) throw std::invalid_argument("unknown preset " + a.preset);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitiq-bench-compare: %s\n", e.what());
    return 2;
  }
}
