// examples/cuda_predict.cu -- the CUDA path of vitiq-predict (see cuda_predict.hpp): the same
// ViT as on the CPU, with CudaBackend<float> as its backend type.
#include "cuda_predict.hpp"

#include <string>

#include "vitiq/cuda.hpp"

namespace vitiq_examples {

namespace {

template <vitiq::Config C>
class CudaForward final : public DeviceForward {
 public:
  explicit CudaForward(std::span<const float> parameters) {
    if (parameters.size() != Model::num_params)
      throw vitiq::Error("vitiq-predict: " + std::to_string(parameters.size()) + " parameters given, the model has " +
                         std::to_string(Model::num_params));
    model_.set_parameters(parameters);
  }
  std::span<const float> forward(std::span<const float> images, std::ptrdiff_t batch) override {
    return model_.forward(images, batch);
  }

 private:
  using Model = vitiq::ViT<C, vitiq::CudaBackend<float>>;
  Model model_;
};

}  // namespace

std::string cuda_unavailable_reason() { return vitiq::cuda::no_device_reason(); }

std::string cuda_device_description() { return vitiq::cuda::device_description(vitiq::cuda::Context::shared_default()->device()); }

std::unique_ptr<DeviceForward> make_cuda_forward(std::string_view preset, std::span<const float> parameters) {
  std::unique_ptr<DeviceForward> out;
  const bool known = vitiq::dispatch_preset(preset, [&]<vitiq::Config C>() {
    out = std::make_unique<CudaForward<C>>(parameters);
  });
  if (!known) throw vitiq::Error("vitiq-predict: unknown preset '" + std::string(preset) + "'");
  return out;
}

}  // namespace vitiq_examples
