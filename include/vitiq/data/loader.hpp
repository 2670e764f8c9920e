// vitiq/data/loader.hpp -- a batch loader that decodes and augments stimuli on worker threads
// while the training step runs, and yields float batches [B, 3, S, S] with their labels.
//
// Determinism: the order of an epoch comes from (seed, epoch) and every sample's random view
// from its own generator seeded by (seed, epoch, sample index) -- never from which thread made
// it or in which order. So a given seed gives bit-identical batches with 0, 1 or 16 threads, and
// batch k of epoch e can be rebuilt alone (e.g. when resuming mid-epoch).
//
// Threads: `threads` workers each build whole batches, at most `prefetch` batches ahead of the
// consumer; next() hands them out in order. threads = 0 builds each batch inside next() on the
// calling thread. An exception on a worker (unreadable file, image too small) is rethrown by the
// next() that would have returned that batch.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/preprocess.hpp"
#include "vitiq/detail/xtensor.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/image.hpp"

namespace vitiq::data {

/// @brief One sample: its image (a file, or an image already in memory) and its label.
struct LoaderSample {
  std::filesystem::path path;                  ///< image file (used when `image` is null)
  std::shared_ptr<const io::ImageU8> image;    ///< [H, W, 3] in memory, or null
  double label = 0;                            ///< 1-based vote, band, MOS, ...
};

/// @brief What the loader keeps between epochs.
enum class LoaderCache {
  none,     ///< read and decode every time
  encoded,  ///< keep the file bytes (a JPEG stimulus: ~10-40 kB), decode every time
  decoded,  ///< keep the decoded pixels (256 x 256 RGB: 192 kB per stimulus)
};

/// @brief Loader settings.
struct LoaderOptions {
  int batch_size = 64;
  PreprocessOptions preprocess;   ///< the view: native_crop (default) or resize_crop, size S, ...
  bool train = true;              ///< true: random training views; false: the fixed eval_view()
  bool shuffle = true;            ///< a new order each epoch (from seed and epoch)
  bool drop_last = false;         ///< drop a last batch smaller than batch_size
  std::uint64_t seed = 0;
  int threads = 2;                ///< worker threads; 0: build batches on the calling thread
  int prefetch = 0;               ///< batches built ahead of the consumer; 0: 2 * threads
  LoaderCache cache = LoaderCache::encoded;
};

/// @brief One batch.
struct Batch {
  std::uint64_t epoch = 0;
  std::size_t index = 0;              ///< batch number within the epoch
  xt::xtensor<float, 4> images;       ///< [B, 3, S, S]
  std::vector<double> labels;         ///< [B]
  std::vector<std::size_t> samples;   ///< [B] sample indices
};

/// @brief Batches of preprocessed samples, built ahead on worker threads (see the file comment).
class BatchLoader {
 public:
  /// @throws Error when there are no samples, batch_size < 1 or the size S < 1.
  BatchLoader(std::vector<LoaderSample> samples, LoaderOptions opt)
      : samples_(std::move(samples)), opt_(opt), encoded_(samples_.size()), decoded_(samples_.size()) {
    if (samples_.empty()) throw Error("BatchLoader: no samples");
    if (opt_.batch_size < 1) throw Error("BatchLoader: batch_size must be at least 1");
    if (opt_.preprocess.size < 1) throw Error("BatchLoader: the view size must be at least 1");
    if (opt_.threads < 0) opt_.threads = 0;
    if (opt_.prefetch <= 0) opt_.prefetch = std::max(1, 2 * opt_.threads);
    for (int t = 0; t < opt_.threads; ++t) workers_.emplace_back([this] { work(); });
  }
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;
  ~BatchLoader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// @brief Number of samples.
  std::size_t size() const { return samples_.size(); }
  /// @brief Batches in one epoch.
  std::size_t batches_per_epoch() const {
    const std::size_t B = std::size_t(opt_.batch_size);
    return opt_.drop_last ? samples_.size() / B : (samples_.size() + B - 1) / B;
  }
  const LoaderOptions& options() const { return opt_; }

  /// @brief The seed of one sample's view generator: a function of (seed, epoch, index) only.
  static std::uint64_t sample_seed(std::uint64_t seed, std::uint64_t epoch, std::size_t index) {
    return mix64(mix64(seed ^ 0x10ADE2ULL) ^ mix64(epoch + 0x9E37ULL)) ^ mix64(std::uint64_t(index) + 0xC0FFEEULL);
  }

  /// @brief Sample order of an epoch: a permutation drawn from (seed, epoch) when shuffling,
  /// 0..N-1 otherwise.
  std::vector<std::size_t> epoch_order(std::uint64_t epoch) const {
    std::vector<std::size_t> order(samples_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (opt_.shuffle) {
      Rng rng(mix64(opt_.seed ^ 0x5A0FF1EULL) ^ mix64(epoch));
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    }
    return order;
  }

  /// @brief Start producing the batches of `epoch` (workers begin at once). Discards whatever
  /// was prepared for another epoch.
  void start_epoch(std::uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++generation_;
    epoch_ = epoch;
    order_ = epoch_order(epoch);
    nbatches_ = batches_per_epoch();
    next_job_ = 0;
    consumed_ = 0;
    ready_.clear();
    started_ = true;
    cv_.notify_all();
  }

  /// @brief The next batch of the current epoch, in order; false after the last one.
  /// @throws Error when start_epoch() was not called; whatever building the batch threw.
  bool next(Batch& out) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!started_) throw Error("BatchLoader::next: call start_epoch() first");
    if (consumed_ >= nbatches_) return false;
    const std::size_t k = consumed_;
    if (workers_.empty()) {
      const std::uint64_t epoch = epoch_;
      const std::vector<std::size_t> idx = batch_indices(k);
      ++consumed_;
      lock.unlock();
      out = build(epoch, k, idx);
      return true;
    }
    cv_.wait(lock, [&] { return ready_.count(k) > 0; });
    Result r = std::move(ready_[k]);
    ready_.erase(k);
    ++consumed_;
    cv_.notify_all();
    lock.unlock();
    if (r.error) std::rethrow_exception(r.error);
    out = std::move(r.batch);
    return true;
  }

  /// @brief Fill views of the given samples (as the batch of an epoch would), on the calling
  /// thread: images [n, 3, S, S], labels [n].
  void fill(std::span<const std::size_t> indices, std::uint64_t epoch, float* images, double* labels) {
    const std::size_t per = std::size_t(3) * std::size_t(opt_.preprocess.size) * std::size_t(opt_.preprocess.size);
    for (std::size_t b = 0; b < indices.size(); ++b) {
      const std::size_t i = indices[b];
      if (i >= samples_.size()) throw Error("BatchLoader::fill: sample index out of range");
      const std::shared_ptr<const io::ImageU8> img = image(i);
      if (opt_.train) {
        Rng rng(sample_seed(opt_.seed, epoch, i));
        train_view(*img, opt_.preprocess, rng, images + b * per);
      } else {
        const io::ImageF v = eval_view(*img, opt_.preprocess);
        std::copy(v.begin(), v.end(), images + b * per);
      }
      labels[b] = samples_[i].label;
    }
  }

 private:
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };

  std::vector<std::size_t> batch_indices(std::size_t k) const {
    const std::size_t B = std::size_t(opt_.batch_size), lo = k * B, hi = std::min(order_.size(), lo + B);
    return std::vector<std::size_t>(order_.begin() + std::ptrdiff_t(lo), order_.begin() + std::ptrdiff_t(hi));
  }

  Batch build(std::uint64_t epoch, std::size_t k, const std::vector<std::size_t>& idx) {
    Batch b;
    b.epoch = epoch;
    b.index = k;
    b.samples = idx;
    const std::size_t S = std::size_t(opt_.preprocess.size);
    b.images = xt::xtensor<float, 4>::from_shape({idx.size(), 3, S, S});
    b.labels.resize(idx.size());
    fill(idx, epoch, b.images.data(), b.labels.data());
    return b;
  }

  /// The decoded image of sample i, through the cache.
  std::shared_ptr<const io::ImageU8> image(std::size_t i) {
    const LoaderSample& s = samples_[i];
    if (s.image) return s.image;
    if (opt_.cache == LoaderCache::decoded) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (decoded_[i]) return decoded_[i];
    }
    std::shared_ptr<const std::vector<std::byte>> bytes;
    if (opt_.cache == LoaderCache::encoded) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      bytes = encoded_[i];
    }
    if (!bytes) bytes = std::make_shared<const std::vector<std::byte>>(io::read_file(s.path));
    auto img = std::make_shared<const io::ImageU8>(io::decode_image(*bytes, s.path.string()));
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (opt_.cache == LoaderCache::encoded && !encoded_[i]) encoded_[i] = bytes;
    if (opt_.cache == LoaderCache::decoded && !decoded_[i]) decoded_[i] = img;
    return img;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || (started_ && next_job_ < nbatches_ && next_job_ < consumed_ + std::size_t(opt_.prefetch)); });
      if (stop_) return;
      const std::size_t k = next_job_++;
      const std::uint64_t gen = generation_, epoch = epoch_;
      const std::vector<std::size_t> idx = batch_indices(k);
      lock.unlock();
      Result r;
      try {
        r.batch = build(epoch, k, idx);
      } catch (...) {
        r.error = std::current_exception();
      }
      lock.lock();
      if (gen == generation_) {
        ready_[k] = std::move(r);
        cv_.notify_all();
      }
    }
  }

  std::vector<LoaderSample> samples_;
  LoaderOptions opt_;
  // cache (guarded by cache_mutex_)
  std::mutex cache_mutex_;
  std::vector<std::shared_ptr<const std::vector<std::byte>>> encoded_;
  std::vector<std::shared_ptr<const io::ImageU8>> decoded_;
  // epoch state (guarded by mutex_)
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false, started_ = false;
  std::uint64_t generation_ = 0, epoch_ = 0;
  std::vector<std::size_t> order_;
  std::size_t nbatches_ = 0, next_job_ = 0, consumed_ = 0;
  std::map<std::size_t, Result> ready_;
  std::vector<std::thread> workers_;  // last: started after everything above exists
};

}  // namespace vitiq::data
