// vitiq/data/trainer_source.hpp -- the bridge from vitiq::data to the trainer: a
// vitiq::BatchSource that fills the trainer's batches with BatchLoader views (native crops or
// resize crops, from files or memory), the samples of a batch prepared on several threads.
//
// Invariant: what fill() writes depends only on (loader seed, epoch, sample indices) -- the same
// as BatchLoader::fill() on one thread -- so training stays reproducible for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <thread>
#include <type_traits>
#include <vector>

#include "vitiq/data/loader.hpp"
#include "vitiq/train/trainer.hpp"

namespace vitiq::data {

/// @brief A vitiq::BatchSource<T> over a BatchLoader: the trainer chooses the indices, the
/// loader's preprocessing makes the views.
/// @tparam T  the model's scalar type (float or double)
template <class T>
class LoaderBatchSource : public BatchSource<T> {
 public:
  /// @param loader   supplies samples, preprocessing, seed and cache; must outlive this source
  /// @param threads  threads preparing one batch (0: the loader's `threads`, at least 1)
  explicit LoaderBatchSource(BatchLoader& loader, int threads = 0)
      : loader_(loader), threads_(std::max(1, threads > 0 ? threads : loader.options().threads)) {}

  std::size_t size() const override { return loader_.size(); }

  /// @brief images [n, 3, S, S] and votes [n] of the samples `indices` in epoch `epoch`.
  void fill(std::span<const std::size_t> indices, std::uint64_t epoch, T* images, double* votes) override {
    const std::size_t S = std::size_t(loader_.options().preprocess.size), per = 3 * S * S, n = indices.size();
    std::vector<float> tmp;
    float* dst = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      dst = images;
    } else {
      tmp.resize(n * per);
      dst = tmp.data();
    }
    const std::size_t t = std::min<std::size_t>(std::size_t(threads_), std::max<std::size_t>(n, 1));
    if (t <= 1) {
      loader_.fill(indices, epoch, dst, votes);
    } else {
      std::vector<std::thread> pool;
      std::vector<std::exception_ptr> errors(t);
      for (std::size_t k = 0; k < t; ++k) {
        const std::size_t lo = n * k / t, hi = n * (k + 1) / t;
        pool.emplace_back([&, k, lo, hi] {
          try {
            loader_.fill(indices.subspan(lo, hi - lo), epoch, dst + lo * per, votes + lo);
          } catch (...) {
            errors[k] = std::current_exception();
          }
        });
      }
      for (auto& th : pool) th.join();
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    }
    if constexpr (!std::is_same_v<T, float>) std::copy(tmp.begin(), tmp.end(), images);
  }

 private:
  BatchLoader& loader_;
  int threads_;
};

}  // namespace vitiq::data
