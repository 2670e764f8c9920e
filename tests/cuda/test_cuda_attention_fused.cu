// tests/cuda/test_cuda_attention_fused.cu -- CudaBackend's attention_forward and
// attention_backward, and their class-token versions attention_cls_forward/backward (gemm_batched
// and the softmax kernels composed) against the CPU backend's ops, on the same random inputs,
// every temperature mode with and without the LSA mask, float and double. Tolerances as in
// test_cuda_ops.cu.
#include "support/catch.hpp"

#include <cstdint>
#include <vector>

#include "support.hpp"

using vitiq_test::DeviceCopy;
using vitiq_test::random_values;
using vitiq_test::rel_error;
using Index = std::ptrdiff_t;

namespace {

/// The fused attention ops (cls false) or their class-token versions (cls true) on the CPU and the
/// GPU, same random inputs, every temperature mode with and without the mask. All outputs start at
/// 5 on both sides: what an op leaves unwritten (the other rows' q gradient columns of the class-token
/// backward) must stay equal too.
template <class T>
void check_attention_ops(bool cls, std::uint64_t seed) {
  vitiq::CpuBackend<T> cpu;
  vitiq::CudaBackend<T> gpu;
  const Index B = 3, h = 3, N = 17, d = 8, I = h * d, Nq = cls ? 1 : N;  // Nq query rows per image
  const std::size_t maps = std::size_t(B * h * Nq * N);
  const auto qkv = random_values<T>(std::size_t(B * N * 3 * I), seed, -2.0, 2.0);
  const auto d_out = random_values<T>(std::size_t(B * Nq * I), seed + 1);
  for (const auto mode :
       {vitiq::TemperatureMode::shared_log, vitiq::TemperatureMode::per_head, vitiq::TemperatureMode::fixed})
    for (const bool mask : {true, false}) {
      const std::vector<T> param = mode == vitiq::TemperatureMode::shared_log ? std::vector<T>{T(-0.7)}
                                                                              : std::vector<T>{T(0.3), T(0.5), T(0.9)};
      const T fixed = T(0.35);
      std::vector<T> out(std::size_t(B * Nq * I), T(5)), A(maps, T(5)), S(maps, T(5)),
          d_qkv(std::size_t(B * N * 3 * I), T(5)), dparam = {T(0.25), T(-0.5), T(1)};
      DeviceCopy<T> gqkv(gpu, qkv), gd_out(gpu, d_out), gparam(gpu, param), gout(gpu, out), gA(gpu, A), gS(gpu, S),
          gd_qkv(gpu, d_qkv), gdparam(gpu, dparam);
      if (cls) {
        cpu.attention_cls_forward(out.data(), A.data(), S.data(), qkv.data(), param.data(), mode, fixed, mask, B, h,
                                  N, d);
        gpu.attention_cls_forward(gout.get(), gA.get(), gS.get(), gqkv.get(), gparam.get(), mode, fixed, mask, B, h,
                                  N, d);
        cpu.attention_cls_backward(d_qkv.data(), dparam.data(), d_out.data(), qkv.data(), A.data(), S.data(),
                                   param.data(), mode, fixed, B, h, N, d);
        gpu.attention_cls_backward(gd_qkv.get(), gdparam.get(), gd_out.get(), gqkv.get(), gA.get(), gS.get(),
                                   gparam.get(), mode, fixed, B, h, N, d);
      } else {
        cpu.attention_forward(out.data(), A.data(), S.data(), qkv.data(), param.data(), mode, fixed, mask, B, h, N, d);
        gpu.attention_forward(gout.get(), gA.get(), gS.get(), gqkv.get(), gparam.get(), mode, fixed, mask, B, h, N,
                              d);
        cpu.attention_backward(d_qkv.data(), dparam.data(), d_out.data(), qkv.data(), A.data(), S.data(),
                               param.data(), mode, fixed, B, h, N, d);
        gpu.attention_backward(gd_qkv.get(), gdparam.get(), gd_out.get(), gqkv.get(), gA.get(), gS.get(),
                               gparam.get(), mode, fixed, B, h, N, d);
      }
      INFO("cls " << cls << " mode " << int(mode) << " mask " << mask);
      CHECK(rel_error(gS.host(), S) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gA.host(), A) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gout.host(), out) < vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gd_qkv.host(), d_qkv) < 10 * vitiq_test::op_tolerance<T>());
      CHECK(rel_error(gdparam.host(), dparam) < 10 * vitiq_test::op_tolerance<T>());
    }
}

}  // namespace

TEMPLATE_TEST_CASE("cuda: fused attention_forward and attention_backward agree with the CPU", "[cuda][device]", float,
                   double) {
  check_attention_ops<TestType>(false, 81);
}

TEMPLATE_TEST_CASE("cuda: attention_cls_forward and attention_cls_backward agree with the CPU", "[cuda][device]",
                   float, double) {
  check_attention_ops<TestType>(true, 83);
}
