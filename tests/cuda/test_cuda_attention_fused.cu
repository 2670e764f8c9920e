// tests/cuda/test_cuda_attention_fused.cu -- CudaBackend's attention_forward and
// attention_backward (gemm_batched and the softmax kernels composed) against the CPU backend's
// fused ops, on the same random inputs, every temperature mode with and without the LSA mask,
// float and double. Tolerances as in test_cuda_ops.cu.
#include "support/catch.hpp"

#include <vector>

#include "support.hpp"

using vitiq_test::DeviceCopy;
using vitiq_test::random_values;
using vitiq_test::rel_error;
using Index = std::ptrdiff_t;

TEMPLATE_TEST_CASE("cuda: fused attention_forward and attention_backward agree with the CPU", "[cuda][device]", float,
                   double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 3, h = 3, N = 17, d = 8, I = h * d;
  const std::size_t bhnn = std::size_t(B * h * N * N);
  const auto qkv = random_values<T>(std::size_t(B * N * 3 * I), 81, -2.0, 2.0);
  const auto d_out = random_values<T>(std::size_t(B * N * I), 82);
  for (const auto mode :
       {vitiq::TemperatureMode::shared_log, vitiq::TemperatureMode::per_head, vitiq::TemperatureMode::fixed})
    for (const bool mask : {true, false}) {
      const std::vector<T> param = mode == vitiq::TemperatureMode::shared_log ? std::vector<T>{T(-0.7)}
                                                                              : std::vector<T>{T(0.3), T(0.5), T(0.9)};
      const T fixed = T(0.35);
      std::vector<T> out(std::size_t(B * N * I), T(5)), A(bhnn, T(5)), S(bhnn, T(5)),
          d_qkv(std::size_t(B * N * 3 * I), T(5)), dparam = {T(0.25), T(-0.5), T(1)};
      DeviceCopy<T> gqkv(gpu, qkv), gd_out(gpu, d_out), gparam(gpu, param), gout(gpu, out), gA(gpu, A), gS(gpu, S),
          gd_qkv(gpu, d_qkv), gdparam(gpu, dparam);
      cpu.attention_forward(out.data(), A.data(), S.data(), qkv.data(), param.data(), mode, fixed, mask, B, h, N, d);
      gpu.attention_forward(gout.get(), gA.get(), gS.get(), gqkv.get(), gparam.get(), mode, fixed, mask, B, h, N, d);
      cpu.attention_backward(d_qkv.data(), dparam.data(), d_out.data(), qkv.data(), A.data(), S.data(), param.data(),
                             mode, fixed, B, h, N, d);
      gpu.attention_backward(gd_qkv.get(), gdparam.get(), gd_out.get(), gqkv.get(), gA.get(), gS.get(), gparam.get(),
                             mode, fixed, B, h, N, d);
      INFO("mode " << int(mode) << " mask " << mask);
      CHECK(rel_error(gS.host(), S) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gA.host(), A) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gout.host(), out) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gd_qkv.host(), d_qkv) < 10 * vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gdparam.host(), dparam) < 10 * vitiq_test::op_tolerance<T>());
    }
}

TEMPLATE_TEST_CASE("cuda: attention_cls_forward and attention_cls_backward agree with the CPU", "[cuda][device]",
                   float, double) {
  using T = TestType;
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 3, h = 3, N = 17, d = 8, I = h * d;
  const std::size_t bhn = std::size_t(B * h * N);
  const auto qkv = random_values<T>(std::size_t(B * N * 3 * I), 83, -2.0, 2.0);
  const auto d_out = random_values<T>(std::size_t(B * I), 84);
  for (const auto mode :
       {vitiq::TemperatureMode::shared_log, vitiq::TemperatureMode::per_head, vitiq::TemperatureMode::fixed})
    for (const bool mask : {true, false}) {
      const std::vector<T> param = mode == vitiq::TemperatureMode::shared_log ? std::vector<T>{T(-0.7)}
                                                                              : std::vector<T>{T(0.3), T(0.5), T(0.9)};
      const T fixed = T(0.35);
      // d_qkv starts at 5 on both sides: the q columns of rows other than the class rows stay 5.
      std::vector<T> out(std::size_t(B * I), T(5)), A(bhn, T(5)), S(bhn, T(5)),
          d_qkv(std::size_t(B * N * 3 * I), T(5)), dparam = {T(0.25), T(-0.5), T(1)};
      DeviceCopy<T> gqkv(gpu, qkv), gd_out(gpu, d_out), gparam(gpu, param), gout(gpu, out), gA(gpu, A), gS(gpu, S),
          gd_qkv(gpu, d_qkv), gdparam(gpu, dparam);
      cpu.attention_cls_forward(out.data(), A.data(), S.data(), qkv.data(), param.data(), mode, fixed, mask, B, h, N, d);
      gpu.attention_cls_forward(gout.get(), gA.get(), gS.get(), gqkv.get(), gparam.get(), mode, fixed, mask, B, h, N, d);
      cpu.attention_cls_backward(d_qkv.data(), dparam.data(), d_out.data(), qkv.data(), A.data(), S.data(),
                                 param.data(), mode, fixed, B, h, N, d);
      gpu.attention_cls_backward(gd_qkv.get(), gdparam.get(), gd_out.get(), gqkv.get(), gA.get(), gS.get(),
                                 gparam.get(), mode, fixed, B, h, N, d);
      INFO("mode " << int(mode) << " mask " << mask);
      CHECK(rel_error(gS.host(), S) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gA.host(), A) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gout.host(), out) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gd_qkv.host(), d_qkv) < 10 * vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gdparam.host(), dparam) < 10 * vitiq_test::op_tolerance<T>());
    }
}
