// vitiq/train/trainer.hpp -- the training loop over any backend: batches from a BatchSource,
// targets from votes, loss, backward, clipping, AdamW, learning-rate schedule, validation on
// stimuli (predictions averaged over each stimulus' views), best and last checkpoints, early
// stopping, exact resume, a stop flag (ctrl-C) and a NaN/Inf guard.
//
// Determinism: the order of epoch e is a permutation drawn from (seed, e), and a BatchSource is
// asked for samples by (epoch, index), so the run is a function of the seed alone; a resumed run
// continues bit for bit where the checkpoint was written (same backend, same thread count).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/model/param_layout.hpp"
#include "vitiq/model/vit.hpp"
#include "vitiq/train/loss.hpp"
#include "vitiq/train/optimizer.hpp"
#include "vitiq/train/schedule.hpp"

namespace vitiq {

/// @brief A source of training samples: images and votes, addressed by (epoch, index).
/// Implementations draw their augmentation randomness from (seed, epoch, index) only.
template <class T>
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// @brief Number of samples in one epoch.
  virtual std::size_t size() const = 0;
  /// @brief Fill images [B, C, S, S] (host memory, normalised) and votes [B] (1-based; fractional
  /// allowed, e.g. a MOS) for the samples `indices` of epoch `epoch`.
  virtual void fill(std::span<const std::size_t> indices, std::uint64_t epoch, T* images, double* votes) = 0;
};

/// @brief A set of stimuli to evaluate: each stimulus has one or more views (e.g. all grid-aligned
/// tiles), whose predicted probabilities are averaged.
template <class T>
class EvalSource {
 public:
  virtual ~EvalSource() = default;
  /// @brief Number of stimuli.
  virtual std::size_t size() const = 0;
  /// @brief Number of views of stimulus i.
  virtual std::size_t views(std::size_t i) const = 0;
  /// @brief Fill the views of stimulus i: images [views(i), C, S, S], host memory.
  virtual void fill_views(std::size_t i, T* images) = 0;
  /// @brief The observer's vote (or MOS) for stimulus i.
  virtual double vote(std::size_t i) const = 0;
};

namespace detail {
/// @brief Forward every view of `source` in inference mode, views of consecutive stimuli sharing a
/// batch of up to `max_batch` images (a stimulus with more views is split over several batches).
/// After each forward calls on_batch(first_view, nb, owner, logits): the batch holds views
/// first_view .. first_view + nb - 1 (numbered over all stimuli), owner[b] is the stimulus of
/// view b of the batch, logits the host logits [nb, K]; the model's other outputs of that forward
/// (e.g. head_features()) can be read inside the call.
template <class Model, class OnBatch>
void forward_views(Model& model, EvalSource<typename Model::T>& source, int max_batch, OnBatch&& on_batch) {
  using T = typename Model::T;
  constexpr std::size_t per_image = std::size_t(Model::config.channels) * Model::config.image_size * Model::config.image_size;
  const bool was_training = model.training();
  model.set_training(false);
  std::vector<T> images;
  std::vector<std::size_t> owner;  // [views gathered]: the stimulus of each view
  std::size_t next = 0, first_view = 0;
  while (next < source.size()) {
    std::size_t end = next, nviews = 0;
    while (end < source.size() && (nviews == 0 || nviews + source.views(end) <= std::size_t(max_batch)))
      nviews += source.views(end++);
    images.resize(nviews * per_image);
    owner.clear();
    for (std::size_t i = next; i < end; ++i) {
      source.fill_views(i, images.data() + owner.size() * per_image);
      owner.insert(owner.end(), source.views(i), i);
    }
    for (std::size_t b0 = 0; b0 < nviews; b0 += std::size_t(max_batch)) {
      const std::size_t nb = std::min<std::size_t>(std::size_t(max_batch), nviews - b0);
      const auto logits = model.forward(std::span<const T>(images.data() + b0 * per_image, nb * per_image), long(nb));
      on_batch(first_view + b0, nb, owner.data() + b0, logits);
    }
    first_view += nviews;
    next = end;
  }
  model.set_training(was_training);
}
}  // namespace detail

/// @brief Probabilities [size, K] of every stimulus of `source`: softmax averaged over its views.
///
/// Views of consecutive stimuli share a forward batch of up to `max_batch` images (a stimulus with
/// more views than that is split over several batches).
template <class Model>
std::vector<double> predict_probabilities(Model& model, EvalSource<typename Model::T>& source, int max_batch = 64) {
  constexpr int K = Model::config.num_classes;
  std::vector<double> probs(source.size() * K, 0.0);
  detail::forward_views(model, source, max_batch, [&](std::size_t, std::size_t nb, const std::size_t* owner, const auto& logits) {
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t i = owner[b];
      double mx = -std::numeric_limits<double>::infinity(), sum = 0;
      for (int k = 0; k < K; ++k) mx = std::max(mx, double(logits[b * K + k]));
      double e[K];
      for (int k = 0; k < K; ++k) sum += (e[k] = std::exp(double(logits[b * K + k]) - mx));
      for (int k = 0; k < K; ++k) probs[i * K + k] += e[k] / sum / double(source.views(i));
    }
  });
  return probs;
}

/// @brief Learning-rate schedule of a Trainer.
enum class ScheduleKind { constant, warmup_cosine, plateau };

/// @brief Everything a training run is configured by (the flags of vitiq-train map onto it).
struct TrainOptions {
  int epochs = 30;               ///< passes over the BatchSource
  int batch_size = 64;           ///< samples per step (the last batch of an epoch may be smaller)
  /// Optimiser; `optimizer.lr` is the peak learning rate of the schedule.
  AdamOptions optimizer{.kind = OptimizerKind::adamw, .lr = 1e-3, .weight_decay = 0.05};
  ScheduleKind schedule = ScheduleKind::warmup_cosine;  ///< learning-rate schedule
  double warmup_epochs = 1.0;    ///< warmup_cosine: linear warm-up length
  double min_lr = 1e-5;          ///< warmup_cosine: final learning rate
  double plateau_factor = 0.5;   ///< plateau: factor, on the validation loss
  int plateau_patience = 5;      ///< plateau: epochs without improvement before a reduction
  LabelOptions labels{};         ///< target form for cross-entropy
  LossKind loss = LossKind::cross_entropy;  ///< cross-entropy on targets, or expected-vote MSE
  double clip_norm = 1.0;        ///< 0 disables clipping
  Regularization regularization{};  ///< dropout and stochastic depth in training mode
  int early_stopping = 0;        ///< stop after this many epochs without a better validation metric (0: off)
  int validate_every = 1;        ///< validate after every n-th epoch and after the last (best/early stopping count validated epochs)
  std::uint64_t seed = 0;        ///< fixes the epoch order and the dropout masks
  std::filesystem::path out_dir;  ///< checkpoints and metrics.csv; empty: keep nothing on disk
  bool resume = false;            ///< continue from out_dir/last.ckpt.safetensors when it exists
  const std::atomic<bool>* stop = nullptr;  ///< when set to true, stop after the current step
  /// Written into the metadata of best.safetensors and last.safetensors (e.g. the model card,
  /// io/model_card.hpp); best's "epoch" and "val_accuracy" and the configuration keys win a clash.
  std::map<std::string, std::string> weights_metadata;
};

/// @brief One epoch's numbers (a row of metrics.csv).
struct EpochReport {
  int epoch = 0;            ///< 1-based epoch number
  std::int64_t step = 0;    ///< optimiser steps taken so far
  double lr = 0;            ///< learning rate of the epoch's last step
  double train_loss = 0;    ///< mean training loss over the epoch
  double train_accuracy = 0;  ///< arg-max accuracy on the training samples (rounded votes)
  double val_loss = std::numeric_limits<double>::quiet_NaN();      ///< validation cross-entropy (NaN: no validation)
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< validation exact accuracy, tiles averaged
  double seconds = 0;       ///< wall time of the epoch's training (validation excluded)
  double images_per_second = 0;  ///< training throughput
  bool best = false;        ///< this epoch improved the validation score (best.safetensors written)
};

/// @brief Progress of a running step (for terminal output).
struct StepProgress {
  int epoch;                 ///< 1-based current epoch
  int epochs;                ///< total epochs
  std::size_t batch;         ///< 1-based batch within the epoch
  std::size_t batches;       ///< batches per epoch
  double loss;               ///< mean loss of the epoch so far
  double accuracy;           ///< training accuracy of the epoch so far
  double images_per_second;  ///< throughput of this run so far
  double eta_seconds;        ///< estimated time to the end of the run
};

/// @brief How a fit() ended.
struct FitResult {
  std::vector<EpochReport> history;  ///< one report per completed epoch (earlier runs included on resume)
  double best_val_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< at the best epoch
  int best_epoch = -1;               ///< 1-based epoch of best.safetensors (-1: none)
  bool stopped = false;     ///< stop flag seen: a checkpoint was written, resume to continue
  bool early_stopped = false;  ///< ended by TrainOptions::early_stopping
};

/// @brief Trains a model. See the file comment for the determinism and resume guarantees.
template <class Model>
class Trainer {
 public:
  using T = typename Model::T;                ///< scalar type of the model
  using BackendT = typename Model::Backend;  ///< the model's backend
  static constexpr Config C = Model::config;  ///< the model's configuration
  /// Values per image, C * H * W.
  static constexpr std::size_t per_image = std::size_t(C.channels) * C.image_size * C.image_size;

  /// @brief A trainer of `model` (kept by reference) with the optimiser state it creates.
  Trainer(Model& model, TrainOptions options)
      : model_(model), opt_(options),
        adam_(model.backend(), param_table<C>(), Model::num_params, options.optimizer),
        criterion_(options.loss) {}

  /// @brief Called after each step and each epoch (progress output).
  std::function<void(const StepProgress&)> on_step;
  /// @brief Called after each epoch's validation and checkpoint.
  std::function<void(const EpochReport&)> on_epoch;

  /// @brief Train on `train`, validating on `val` (may be null) after every epoch.
  FitResult fit(BatchSource<T>& train, EvalSource<T>* val) {
    namespace fs = std::filesystem;
    FitResult result;
    const std::size_t n = train.size();
    if (n == 0) throw Error("vitiq::Trainer: the training set is empty");
    const int B = int(std::min<std::size_t>(std::size_t(opt_.batch_size), n));
    const std::size_t batches = (n + std::size_t(B) - 1) / std::size_t(B);
    const std::int64_t total_steps = std::int64_t(batches) * opt_.epochs;
    const std::int64_t warmup = std::int64_t(std::llround(opt_.warmup_epochs * double(batches)));
    ReduceOnPlateau plateau(opt_.optimizer.lr, opt_.plateau_factor, opt_.plateau_patience);

    TrainState state;
    state.dropout_seed = mix64(opt_.seed ^ 0xD50D50ULL);
    model_.set_dropout_seed(state.dropout_seed);
    model_.set_regularization(opt_.regularization);
    double best_metric = -std::numeric_limits<double>::infinity();
    int epochs_since_best = 0;
    std::size_t start_batch = 0;
    if (!opt_.out_dir.empty()) fs::create_directories(opt_.out_dir);
    const fs::path last = opt_.out_dir / "last.ckpt.safetensors";
    if (opt_.resume && !opt_.out_dir.empty()) remove_stale_temporaries();
    if (opt_.resume && !opt_.out_dir.empty() && fs::exists(last)) {
      state = load_checkpoint(last, model_, adam_);
      try {
        history_from(state, result, best_metric, epochs_since_best, plateau);
      } catch (const std::exception& e) {  // std::stod and friends on a damaged training state
        throw FormatError(last.string() + ": the checkpoint's training state is malformed (" + e.what() + ")");
      }
      start_batch = std::size_t(state.step - std::int64_t(batches) * state.epoch);
    }

    std::vector<T> images(std::size_t(B) * per_image);
    std::vector<double> votes(static_cast<std::size_t>(B));
    std::vector<T> targets(std::size_t(B) * C.num_classes);
    std::vector<T> host_logits(std::size_t(B) * C.num_classes);
    typename BackendT::Buffer dev_images = model_.backend().allocate(images.size());
    typename BackendT::Buffer dev_targets = model_.backend().allocate(targets.size());
    const auto t_start = std::chrono::steady_clock::now();
    std::int64_t steps_this_run = 0;

    for (int epoch = int(state.epoch); epoch < opt_.epochs; ++epoch) {
      const std::vector<std::size_t> order = permutation(n, std::uint64_t(epoch));
      const auto t_epoch = std::chrono::steady_clock::now();
      double loss_sum = partial_loss_, correct = partial_correct_, seen = partial_seen_;
      partial_loss_ = partial_correct_ = partial_seen_ = 0;
      model_.set_training(true);
      for (std::size_t bi = start_batch; bi < batches; ++bi) {
        const std::size_t b0 = bi * std::size_t(B), nb = std::min<std::size_t>(std::size_t(B), n - b0);
        train.fill(std::span<const std::size_t>(order.data() + b0, nb), std::uint64_t(epoch), images.data(), votes.data());
        const double lr = current_lr(state.step, total_steps, warmup, plateau);
        const double loss = train_step(images, votes, targets, host_logits, dev_images, dev_targets, long(nb), lr,
                                       state.step, correct);
        loss_sum += loss * double(nb);
        seen += double(nb);
        ++state.step;
        ++steps_this_run;
        if (on_step) {
          const double el = seconds_since(t_start);
          const double ips = double(steps_this_run) * B / std::max(el, 1e-9);
          const double remaining = double(total_steps - state.step) * B / std::max(ips, 1e-9);
          on_step({epoch + 1, opt_.epochs, bi + 1, batches, loss_sum / seen, correct / seen, ips, remaining});
        }
        if (opt_.stop && opt_.stop->load()) {  // ctrl-C: keep this epoch's partial sums and stop
          partial_loss_ = loss_sum; partial_correct_ = correct; partial_seen_ = seen;
          state.epoch = epoch;
          save_state(state, result, best_metric, epochs_since_best, plateau);
          result.stopped = true;
          return result;
        }
      }
      start_batch = 0;
      EpochReport rep;
      rep.epoch = epoch + 1;
      rep.step = state.step;
      rep.lr = current_lr(state.step - 1, total_steps, warmup, plateau);
      rep.train_loss = loss_sum / seen;
      rep.train_accuracy = correct / seen;
      rep.seconds = seconds_since(t_epoch);
      rep.images_per_second = seen / std::max(rep.seconds, 1e-9);
      double metric = -rep.train_loss;
      const bool has_val = val && val->size();
      const bool validate_now = !has_val || rep.epoch == opt_.epochs || rep.epoch % std::max(1, opt_.validate_every) == 0;
      if (has_val && validate_now) {
        const auto probs = predict_probabilities(model_, *val);
        evaluate(probs, *val, rep.val_loss, rep.val_accuracy);
        metric = rep.val_accuracy - 1e-3 * rep.val_loss;  // accuracy first, loss breaks ties
        if (opt_.schedule == ScheduleKind::plateau) plateau.step(rep.val_loss);
      }
      rep.best = validate_now && metric > best_metric;
      if (!validate_now) {
        // not validated this epoch: neither a new best nor an epoch without improvement
      } else if (rep.best) {
        best_metric = metric;
        epochs_since_best = 0;
        result.best_epoch = rep.epoch;
        result.best_val_accuracy = rep.val_accuracy;
        if (!opt_.out_dir.empty()) {
          std::map<std::string, std::string> md = opt_.weights_metadata;
          md["epoch"] = std::to_string(rep.epoch);
          md["val_accuracy"] = num(rep.val_accuracy);
          save_weights(model_, opt_.out_dir / "best.safetensors", NamingScheme::current, md);
        }
      } else {
        ++epochs_since_best;
      }
      result.history.push_back(rep);
      state.epoch = epoch + 1;
      save_state(state, result, best_metric, epochs_since_best, plateau);
      if (on_epoch) on_epoch(rep);
      if (opt_.early_stopping > 0 && epochs_since_best >= opt_.early_stopping) {
        result.early_stopped = true;
        break;
      }
    }
    if (!opt_.out_dir.empty())
      save_weights(model_, opt_.out_dir / "last.safetensors", NamingScheme::current, opt_.weights_metadata);
    return result;
  }

  /// @brief The optimiser (its moments and step count are part of every checkpoint).
  Adam<BackendT>& optimizer() { return adam_; }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }
  static std::string num(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
  }

  std::vector<std::size_t> permutation(std::size_t n, std::uint64_t epoch) const {
    std::vector<std::size_t> p(n);
    std::iota(p.begin(), p.end(), std::size_t(0));
    Rng rng(mix64(opt_.seed) ^ mix64(epoch + 0x5EEDULL));
    for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
    return p;
  }

  double current_lr(std::int64_t step, std::int64_t total, std::int64_t warmup, const ReduceOnPlateau& plateau) const {
    switch (opt_.schedule) {
      case ScheduleKind::constant: return opt_.optimizer.lr;
      case ScheduleKind::plateau: return plateau.lr();
      default: return warmup_cosine_lr(step, opt_.optimizer.lr, warmup, total, opt_.min_lr);
    }
  }

  /// One optimisation step; returns the batch loss and adds the number of correct arg-max votes.
  double train_step(const std::vector<T>& images, const std::vector<double>& votes, std::vector<T>& targets,
                    std::vector<T>& host_logits, typename BackendT::Buffer& dev_images,
                    typename BackendT::Buffer& dev_targets, long nb, double lr, std::int64_t step, double& correct) {
    constexpr int K = C.num_classes;
    auto& be = model_.backend();
    if (opt_.loss == LossKind::cross_entropy) {
      for (long b = 0; b < nb; ++b) make_target(targets.data() + b * K, votes[std::size_t(b)], K, opt_.labels);
      be.to_device(dev_targets.data(), targets.data(), std::size_t(nb) * K);
    } else {
      for (long b = 0; b < nb; ++b) targets[std::size_t(b)] = T(votes[std::size_t(b)]);
      be.to_device(dev_targets.data(), targets.data(), std::size_t(nb));
    }
    be.to_device(dev_images.data(), images.data(), std::size_t(nb) * per_image);
    const T* logits = model_.forward_device(dev_images.data(), nb);
    const double loss = criterion_.forward_backward(be, logits, dev_targets.data(), nb, K);
    if (!std::isfinite(loss))  // the parameters are finite (checked after every update): the logits overflowed
      throw Error("training diverged at step " + std::to_string(step) + ": the loss is " + num(loss) +
                  " (the first non-finite tensor: the logits; the last good checkpoint is kept)");
    be.to_host(host_logits.data(), logits, std::size_t(nb) * K);
    for (long b = 0; b < nb; ++b) {
      int arg = 0;
      for (int k = 1; k < K; ++k) if (host_logits[std::size_t(b * K + k)] > host_logits[std::size_t(b * K + arg)]) arg = k;
      correct += double(arg + 1 == int(std::lround(votes[std::size_t(b)])));
    }
    model_.zero_grad();
    model_.backward_device(criterion_.dlogits());
    if (!be.all_finite(model_.gradients(), Model::num_params)) {
      const auto grads = model_.gradients_to_host();
      for (const ParamInfo& p : param_table<C>())
        for (std::size_t i = 0; i < p.size; ++i)
          if (!std::isfinite(double(grads[p.offset + i])))
            throw Error("training diverged at step " + std::to_string(step) + ": the gradient of '" + p.name +
                        "' is not finite (the last good checkpoint is kept)");
    }
    if (opt_.clip_norm > 0) clip_grad_norm(be, model_.gradients(), Model::num_params, opt_.clip_norm);
    adam_.step(model_.parameters(), model_.gradients(), lr);
    // An update can overflow finite gradients into infinite parameters (a learning-rate blow-up):
    // stop before they reach a checkpoint.
    if (!be.all_finite(model_.parameters(), Model::num_params)) {
      const auto params = model_.parameters_to_host();
      for (const ParamInfo& p : param_table<C>())
        for (std::size_t i = 0; i < p.size; ++i)
          if (!std::isfinite(double(params[p.offset + i])))
            throw Error("training diverged at step " + std::to_string(step) + ": the update made parameter '" +
                        p.name + "' not finite (learning rate " + num(lr) +
                        "; the last good checkpoint is kept)");
    }
    return loss;
  }

  /// A run killed while writing leaves atomic_write's temporary files (<file>.tmp.<pid>.<n>)
  /// beside its outputs; a resumed run removes those of the files it writes.
  void remove_stale_temporaries() const {
    namespace fs = std::filesystem;
    std::vector<fs::path> stale;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(opt_.out_dir, ec)) {
      const std::string name = e.path().filename().string();
      for (const char* f : {"last.ckpt.safetensors", "metrics.csv", "best.safetensors", "last.safetensors"})
        if (name.rfind(std::string(f) + ".tmp.", 0) == 0) stale.push_back(e.path());
    }
    for (const auto& p : stale) fs::remove(p, ec);
  }

  void evaluate(const std::vector<double>& probs, EvalSource<T>& val, double& loss, double& accuracy) const {
    constexpr int K = C.num_classes;
    double l = 0, ok = 0;
    std::vector<double> t(K);
    for (std::size_t i = 0; i < val.size(); ++i) {
      const double v = val.vote(i);
      make_target(t.data(), v, K, opt_.labels.form == LabelForm::gaussian ? opt_.labels : LabelOptions{.form = LabelForm::hard});
      int arg = 0;
      for (int k = 0; k < K; ++k) {
        l -= t[std::size_t(k)] * std::log(std::max(probs[i * K + k], 1e-12));
        if (probs[i * K + k] > probs[i * K + arg]) arg = k;
      }
      ok += double(arg + 1 == int(std::lround(v)));
    }
    loss = l / double(val.size());
    accuracy = ok / double(val.size());
  }

  /// Checkpoint (atomic) and metrics.csv (atomic rewrite) after an epoch or on a stop.
  void save_state(TrainState& state, const FitResult& result, double best_metric, int since_best,
                  const ReduceOnPlateau& plateau) {
    if (opt_.out_dir.empty()) return;
    state.forward_count = model_.forward_count();
    state.extra["best_metric"] = num(best_metric);
    state.extra["best_epoch"] = std::to_string(result.best_epoch);
    state.extra["best_val_accuracy"] = num(result.best_val_accuracy);
    state.extra["epochs_since_best"] = std::to_string(since_best);
    state.extra["plateau"] = num(plateau.lr()) + " " + num(plateau.best()) + " " + std::to_string(plateau.bad_epochs()) +
                             " " + std::to_string(plateau.cooldown_counter());
    state.extra["partial"] = num(partial_loss_) + " " + num(partial_correct_) + " " + num(partial_seen_);
    std::string csv = "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_second,best\n";
    for (const auto& r : result.history)
      csv += std::to_string(r.epoch) + "," + std::to_string(r.step) + "," + num(r.lr) + "," + num(r.train_loss) + "," +
             num(r.train_accuracy) + "," + num(r.val_loss) + "," + num(r.val_accuracy) + "," + num(r.seconds) + "," +
             num(r.images_per_second) + "," + (r.best ? "1" : "0") + "\n";
    state.extra["history"] = csv;
    save_checkpoint(opt_.out_dir / "last.ckpt.safetensors", model_, adam_, state);
    io::atomic_write(opt_.out_dir / "metrics.csv", csv);
  }

  void history_from(const TrainState& st, FitResult& result, double& best_metric, int& since_best,
                    ReduceOnPlateau& plateau) {
    auto get = [&](const char* k) -> std::string {
      auto it = st.extra.find(k);
      return it == st.extra.end() ? std::string() : it->second;
    };
    best_metric = std::stod(get("best_metric"));
    result.best_epoch = std::stoi(get("best_epoch"));
    result.best_val_accuracy = std::stod(get("best_val_accuracy"));
    since_best = std::stoi(get("epochs_since_best"));
    {
      std::istringstream s(get("plateau"));
      double lr, best;
      int bad, cool;
      s >> lr >> best >> bad >> cool;
      plateau.restore(lr, best, bad, cool);
    }
    {
      std::istringstream s(get("partial"));
      s >> partial_loss_ >> partial_correct_ >> partial_seen_;
    }
    std::istringstream csv(get("history"));
    std::string line;
    std::getline(csv, line);  // header
    while (std::getline(csv, line)) {
      std::istringstream row(line);
      std::string f[10];
      for (auto& x : f) std::getline(row, x, ',');
      EpochReport r;
      r.epoch = std::stoi(f[0]);
      r.step = std::stoll(f[1]);
      r.lr = std::stod(f[2]);
      r.train_loss = std::stod(f[3]);
      r.train_accuracy = std::stod(f[4]);
      r.val_loss = std::stod(f[5]);
      r.val_accuracy = std::stod(f[6]);
      r.seconds = std::stod(f[7]);
      r.images_per_second = std::stod(f[8]);
      r.best = f[9] == "1";
      result.history.push_back(r);
    }
  }

  Model& model_;
  TrainOptions opt_;
  Adam<BackendT> adam_;
  Criterion<BackendT> criterion_;
  double partial_loss_ = 0, partial_correct_ = 0, partial_seen_ = 0;
};

}  // namespace vitiq
