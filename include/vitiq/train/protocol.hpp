// vitiq/train/protocol.hpp -- the per-observer training protocol of vitiq-train: how artificial
// individual observers (AIOs) are trained on a study (images/, ratings.csv, split.csv).
//
//   AIO0        one model on every training stimulus, labelled with the JPEG band of its file name
//               (LabelKind::band), the band refined by the name's Q (qband_label(), LabelKind::qband)
//               or the stimulus' mean vote (LabelKind::mos); validation labels are whole classes.
//   observer    (Mode::observer) one AIO per observer, from scratch, on all its training votes.
//   iterative   (Mode::iterative; Mode::pipeline = AIO0 first, then this from AIO0's best) per
//               observer, start from the start model, then
//                 1. the linear probe (LP-FT): the head alone fitted on the frozen features of the
//                    start model (Options::probe_views tiles per stimulus, SpreadViews), one sample
//                    per training stimulus with the vote-weighted mean of its votes' targets
//                    (probe_targets());
//                 2. fine-tuning session by session, each session continuing from the best epoch
//                    of the previous one; Options::finetune_runs independent passes over the
//                    sessions from the same start (other crops and order);
//                 3. the final model: the weight average of all stages (FinalRule::average; each
//                    run counts the start once) or the stage with the best validation accuracy
//                    (FinalRule::select; a later stage wins a tie, a NaN never beats a number);
//                    stages.csv lists the stages (write_stages_csv()).
// Observers are picked by shard (shard_of()) and trained in parallel by run_jobs(), each worker
// with its own OpenMP thread count. A stop flag (ctrl-C) ends every run after its current step
// with a checkpoint; Options::resume continues each run where it stopped.
//
// Determinism: the same Options give bit-identical weights: the seeds are fixed (AIO0 model
// init and training: seed; observer model init: seed + 1000; observer mode training: seed + 7;
// session s of run r: seed + 100 + s + 1000 (r - 1)) and nothing depends on the order in which
// parallel observers finish. Every weights file carries the ModelCard (io/model_card.hpp).
//
// Output: out/aio0/, out/observer_<id>/ with best.safetensors, last.safetensors, metrics.csv and
// last.ckpt.safetensors; an iterative observer's folder also holds probe.safetensors, its stages
// session_<s>/ (run_<r>/session_<s>/ when finetune_runs > 1) and stages.csv.
//
// The library prints nothing: progress goes to the Events callbacks.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/data/study.hpp"
#include "vitiq/error.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/model/vit.hpp"
#include "vitiq/train/linear_probe.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/train/trainer.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vitiq::protocol {

// ------------------------------------------------------------------ the study

/// @brief The study the protocol reads: `ratings` (image, observer, session, vote) and the split
/// (vitiq::data::Study, data/study.hpp: the one study type every program uses).
using Study = data::Study;

/// @brief Read `dir`/ratings.csv and `dir`/split.csv (errors name file and line).
inline Study read_study(const std::filesystem::path& dir) { return data::read_study(dir); }

/// @brief The part (train, val, test) of `image` in the study's split; nullopt when split.csv has
/// no row for it. The protocol reads the split through this alone.
inline std::optional<data::Part> part_of(const Study& study, const std::string& image) { return study.split.part(image); }

// ------------------------------------------------------------------ options

/// @brief What vitiq-train trains.
enum class Mode {
  pipeline,   ///< AIO0, then every observer iteratively from AIO0's best
  all,        ///< AIO0 only
  observer,   ///< every observer from scratch
  iterative,  ///< every observer from Options::init, session by session
};

/// @brief How an iteratively trained observer's final model is made from its stages.
enum class FinalRule {
  average,  ///< the weight average of all stages (probe or start, and every session's best)
  select,   ///< the stage with the best validation accuracy (a later stage wins a tie)
};

/// @brief Every setting of the protocol (the options of vitiq-train, with the same defaults).
struct Options {
  std::filesystem::path data;  ///< study folder: images/, ratings.csv, split.csv
  std::filesystem::path out;   ///< output folder (created), one subfolder per model
  std::filesystem::path init;  ///< start weights of Mode::iterative (pipeline: AIO0's best)
  Mode mode = Mode::pipeline;  ///< what is trained
  std::string preset = "aio";  ///< preset name, written into the model card
  LabelKind label = LabelKind::band;  ///< AIO0's label: band, qband or mos
  FinalRule final_rule = FinalRule::average;  ///< iterative: the final model
  std::vector<std::string> observers;  ///< observer ids; empty: all in ratings.csv (sorted as text)
  int shard_index = 0;  ///< train the observers at positions p with p mod shard_count = shard_index
  int shard_count = 1;  ///< number of shards (job arrays)

  int crop_grid = 8;       ///< crop offsets on multiples of this (8: the JPEG grid)
  int crops = 4;           ///< random crops per stimulus per epoch
  bool flip = true;        ///< random horizontal flips
  bool dihedral = false;   ///< any of the 8 symmetries of the square
  double desaturate = 1;   ///< probability that a training crop loses a random share of its colour

  int epochs = 40;           ///< AIO0 epochs
  int finetune_epochs = 4;   ///< epochs per session (iterative)
  int finetune_runs = 1;     ///< iterative: independent passes over the sessions, all averaged
  int observer_epochs = 40;  ///< epochs in Mode::observer
  int batch = 64;            ///< batch size
  double lr = 1e-3;          ///< AIO0 / observer peak learning rate
  double finetune_lr = 2e-4; ///< iterative fine-tuning learning rate
  double weight_decay = 0.05;  ///< AdamW decoupled weight decay
  OptimizerKind optimizer = OptimizerKind::adamw;  ///< adamw or adam
  double warmup = 1.0;       ///< warm-up epochs before the cosine decay
  ScheduleKind schedule = ScheduleKind::warmup_cosine;  ///< learning-rate schedule
  LabelForm labels = LabelForm::gaussian;  ///< target form
  double sigma = 0.49;       ///< Gaussian label width
  double clip = 1.0;         ///< gradient-norm clip (0: off)
  double dropout = 0;        ///< MLP / projection dropout
  double emb_dropout = 0;    ///< embedding dropout
  double attn_dropout = 0;   ///< attention dropout
  double stochastic_depth = 0;  ///< per-sample drop rate of each residual branch
  double smoothing = 0.1;    ///< label smoothing eps (LabelForm::smoothed)
  int early_stop = 0;        ///< epochs without a better validation score before stopping (0: off)
  int val_every = 1;         ///< AIO0: validate after every n-th epoch and the last

  bool probe = true;          ///< iterative: fit the head first (linear probe)
  int probe_iterations = 300; ///< full-batch steps of the linear probe
  int probe_views = 4;        ///< tiles per stimulus the probe fits (0: all)

  std::uint64_t seed = 1;  ///< fixes every initialisation, crop and order
  int threads = 0;         ///< OpenMP threads in all (0: all cores)
  int jobs = 0;            ///< observers trained at the same time (0: the thread count)
  bool resume = false;     ///< continue each run from its last checkpoint
  /// Stop flag (e.g. set by a SIGINT handler): every run stops after its current step with a
  /// checkpoint. The protocol sets it itself when an observer fails, so the others stop too.
  /// Null: the protocol uses a flag of its own.
  std::atomic<bool>* stop = nullptr;
};

/// @brief The first problem of a combination of options, empty when there is none (what
/// vitiq-train reports as a usage error).
inline std::string check_options(const Options& a) {
  if (a.data.empty()) return "--data is required";
  if (a.out.empty()) return "--out is required";
  if (a.mode == Mode::iterative && a.init.empty()) return "--mode iterative needs --init";
  if (a.label != LabelKind::band && a.label != LabelKind::qband && a.label != LabelKind::mos)
    return "--label must be band, qband or mos";
  if (a.shard_count < 1 || a.shard_index < 0 || a.shard_index >= a.shard_count) return "--shard I/N needs 0 <= I < N";
  if (!(a.desaturate >= 0 && a.desaturate <= 1)) return "--desaturate needs a probability in [0, 1]";
  if (a.finetune_runs < 1) return "--finetune-runs must be >= 1";
  if (a.jobs < 0 || a.threads < 0) return "--jobs and --threads must be >= 0";
  if (a.val_every < 1 || a.probe_iterations < 0 || a.probe_views < 0)
    return "--val-every must be >= 1, --probe-iterations and --probe-views >= 0";
  if (!(a.stochastic_depth >= 0 && a.stochastic_depth < 1) || !(a.smoothing >= 0 && a.smoothing < 1))
    return "--stochastic-depth and --smoothing must be in [0, 1)";
  if (a.crops < 1 || a.batch < 1 || a.epochs < 0) return "--crops, --batch must be >= 1 and --epochs >= 0";
  return {};
}

/// @brief The Trainer's options of one run of the protocol.
/// @param a      the protocol's options (batch, optimiser, schedule, labels, regularisation, ...)
/// @param out    the run's folder (checkpoints, metrics.csv, best/last weights)
/// @param epochs epochs of the run
/// @param lr     peak learning rate (the cosine schedule ends at 1 % of it)
/// @param seed   the run's seed
inline TrainOptions train_options(const Options& a, const std::filesystem::path& out, int epochs, double lr,
                                  std::uint64_t seed) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = a.batch;
  o.optimizer = {.kind = a.optimizer, .lr = lr, .weight_decay = a.weight_decay};
  o.schedule = a.schedule;
  o.warmup_epochs = a.warmup;
  o.min_lr = lr * 0.01;
  o.labels = {.form = a.labels, .smoothing = a.smoothing, .sigma = a.sigma};
  o.clip_norm = a.clip;
  o.regularization = {.emb_dropout = a.emb_dropout, .attn_dropout = a.attn_dropout, .dropout = a.dropout,
                      .stochastic_depth = a.stochastic_depth};
  o.early_stopping = a.early_stop;
  o.seed = seed;
  o.out_dir = out;
  o.resume = a.resume;
  o.stop = a.stop;
  return o;
}

// ------------------------------------------------------------------ observers, labels

/// @brief The observers of shard `index` of `count`: those at positions p with p mod count = index
/// (in the given order).
/// @pre 0 <= index < count
inline std::vector<std::string> shard_of(const std::vector<std::string>& observers, int index, int count) {
  std::vector<std::string> mine;
  for (std::size_t i = 0; i < observers.size(); ++i)
    if (int(i % std::size_t(count)) == index) mine.push_back(observers[i]);
  return mine;
}

/// @brief AIO0's continuous label for LabelKind::qband: the band of the file name, moved inside
/// [band - 0.5, band + 0.5] by where the name's Q lies in the band's Q range
/// (data::quality_bands): Q = q_min gives band - 0.5 + 0.5 / width, Q = q_max band + 0.5,
/// clamped to [1, 5]. A name without band or Q gives its band (0 when none).
inline double qband_label(std::string_view name) {
  const data::StimulusName parsed = data::parse_stimulus_name(name);
  const int band = parsed.band, q = parsed.q;
  if (band < 1 || band > int(data::quality_bands.size()) || q < 1) return band;
  const data::QualityBand& b = data::quality_bands[std::size_t(band - 1)];
  const double pos = std::clamp((double(q) - b.q_min + 0.5) / double(b.q_max - b.q_min + 1), 0.0, 1.0);
  return std::clamp(double(band) - 0.5 + pos, 1.0, 5.0);
}

/// @brief `count` of the views of another EvalSource per stimulus, evenly spread over its view
/// list (all when it has no more): the linear probe's features need not cover all 16 tiles of a
/// stimulus. View j of n is inner view j * all / n + (j mod all / n): 4 of 16 tiles are 0, 5, 10,
/// 15, the diagonal of the 4 x 4 grid (one tile in every row and every column).
template <class T>
class SpreadViews : public EvalSource<T> {
 public:
  /// @param inner    the source whose views are picked (kept by reference)
  /// @param count    views per stimulus (0: all)
  /// @param per_view values per view, C * S * S
  SpreadViews(EvalSource<T>& inner, std::size_t count, std::size_t per_view)
      : inner_(inner), count_(count), per_view_(per_view) {}
  /// @brief Number of stimuli (the inner source's).
  std::size_t size() const override { return inner_.size(); }
  /// @brief min(count, inner views), or all inner views when count is 0.
  std::size_t views(std::size_t i) const override {
    return count_ == 0 ? inner_.views(i) : std::min(count_, inner_.views(i));
  }
  /// @brief The picked views of stimulus i: images [views(i), C, S, S].
  void fill_views(std::size_t i, T* images) override {
    const std::size_t all = inner_.views(i), n = views(i);
    buffer_.resize(all * per_view_);
    inner_.fill_views(i, buffer_.data());
    const std::size_t step = std::max<std::size_t>(1, all / n);
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t src = std::min(all - 1, j * all / n + j % step);
      std::copy_n(buffer_.data() + src * per_view_, per_view_, images + j * per_view_);
    }
  }
  /// @brief The inner source's vote of stimulus i.
  double vote(std::size_t i) const override { return inner_.vote(i); }

 private:
  EvalSource<T>& inner_;
  std::size_t count_, per_view_;
  std::vector<T> buffer_;
};

/// @brief The linear probe's samples: one per distinct stimulus, in increasing feature index.
struct ProbeTargets {
  std::vector<std::size_t> stimuli;  ///< [n] feature indices (stimuli of the ProbeFeatures), increasing
  std::vector<double> targets;       ///< [n, K] the mean of the targets of the votes on each stimulus
  std::vector<double> weights;       ///< [n] the number of votes on each stimulus
};

/// @brief Aggregate an observer's votes into probe samples: the target of stimulus i is the mean of
/// make_target(vote) over the votes on it, its weight the number of those votes. Sums in the
/// order of `votes`.
/// @param votes  (feature index, vote) pairs, one per vote
/// @param K      number of classes
/// @param labels the target form (as in training)
/// @throws std::invalid_argument for a vote outside [1, K] (make_target())
inline ProbeTargets probe_targets(const std::vector<std::pair<std::size_t, double>>& votes, int K,
                                  const LabelOptions& labels) {
  std::map<std::size_t, std::pair<std::vector<double>, double>> per;  // feature index -> (target sum, votes)
  std::vector<double> t(static_cast<std::size_t>(K));
  for (const auto& [index, vote] : votes) {
    auto& e = per[index];
    if (e.first.empty()) e.first.assign(std::size_t(K), 0.0);
    make_target(t.data(), vote, K, labels);
    for (int k = 0; k < K; ++k) e.first[std::size_t(k)] += t[std::size_t(k)];
    e.second += 1;
  }
  ProbeTargets out;
  for (const auto& [index, e] : per) {
    out.stimuli.push_back(index);
    for (int k = 0; k < K; ++k) out.targets.push_back(e.first[std::size_t(k)] / e.second);
    out.weights.push_back(e.second);
  }
  return out;
}

/// @brief The features of the stimuli `indices` (in that order) of `all`.
inline ProbeFeatures select_features(const ProbeFeatures& all, const std::vector<std::size_t>& indices) {
  ProbeFeatures f;
  f.dim = all.dim;
  f.first_view.push_back(0);
  for (std::size_t idx : indices) {
    const std::size_t v0 = all.first_view[idx], v1 = all.first_view[idx + 1];
    f.x.insert(f.x.end(), all.x.begin() + std::ptrdiff_t(v0 * std::size_t(f.dim)),
               all.x.begin() + std::ptrdiff_t(v1 * std::size_t(f.dim)));
    f.first_view.push_back(f.first_view.back() + (v1 - v0));
  }
  return f;
}

// ------------------------------------------------------------------ stages and the final model

/// @brief One stage of an iteratively trained observer.
struct Stage {
  std::string name;               ///< "probe", "start", "session_<s>" or "run_<r>/session_<s>"
  std::filesystem::path weights;  ///< its weights file
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< NaN: no validation votes
};

/// @brief An observer's stages: the list and, per fine-tuning run, the stages it contributes.
struct StageList {
  std::vector<Stage> stages;  ///< the start (probe or start model) first, then the sessions in order
  /// Per run, indices into `stages`: the start (0), then that run's sessions.
  std::vector<std::vector<std::size_t>> runs;

  /// @brief The weights files the average is taken over: every run's list (each counts the start once).
  std::vector<std::filesystem::path> average_inputs() const {
    std::vector<std::filesystem::path> files;
    for (const auto& run : runs)
      for (std::size_t i : run) files.push_back(stages[i].weights);
    return files;
  }
};

/// @brief The stage FinalRule::select keeps: the best validation accuracy, a later stage winning a
/// tie (it has seen more votes); a stage with a number beats any NaN one, and of all-NaN stages the
/// last is kept.
/// @pre `stages` is not empty
inline std::size_t best_stage(const std::vector<Stage>& stages) {
  std::size_t pick = 0;
  for (std::size_t i = 1; i < stages.size(); ++i)
    if (std::isnan(stages[pick].val_accuracy) || stages[i].val_accuracy >= stages[pick].val_accuracy) pick = i;
  return pick;
}

/// @brief stages.csv: `stage,weights,val_accuracy,selected`, one row per stage (weights as a file
/// name, accuracy %.6f, `nan` when none), then with FinalRule::average an `average` row
/// (best.safetensors, `average_accuracy`), the kept row marked 1.
/// @param pick the stage kept by FinalRule::select (best_stage()); ignored for average
inline std::string stages_csv(const std::vector<Stage>& stages, FinalRule rule, std::size_t pick,
                              double average_accuracy) {
  std::string csv = "stage,weights,val_accuracy,selected\n";
  const auto row = [&](const std::string& name, const std::string& file, double acc, bool selected) {
    char num[64];
    std::snprintf(num, sizeof num, "%.6f", acc);
    csv += name + "," + file + "," + num + "," + (selected ? "1" : "0") + "\n";
  };
  for (std::size_t i = 0; i < stages.size(); ++i)
    row(stages[i].name, stages[i].weights.filename().string(), stages[i].val_accuracy,
        rule == FinalRule::select && i == pick);
  if (rule == FinalRule::average) row("average", "best.safetensors", average_accuracy, true);
  return csv;
}

/// @brief Write stages_csv() to `path` atomically.
/// @throws IoError naming the file
inline void write_stages_csv(const std::filesystem::path& path, const std::vector<Stage>& stages, FinalRule rule,
                             std::size_t pick, double average_accuracy) {
  io::atomic_write(path, stages_csv(stages, rule, pick, average_accuracy));
}

// ------------------------------------------------------------------ scheduling

/// @brief How many observers train at once and with how many OpenMP threads each.
struct JobPlan {
  int threads = 1;          ///< threads in all
  int jobs = 1;             ///< workers (observers at the same time)
  int threads_per_job = 1;  ///< OpenMP threads of each worker: max(1, threads / jobs)
};

/// @brief The plan of `tasks` observers: threads = `threads` (0: all cores), jobs = `jobs` (0: the
/// thread count) clamped to 1 .. tasks, threads_per_job = max(1, threads / jobs).
inline JobPlan plan_jobs(int jobs, int threads, std::size_t tasks) {
  JobPlan p;
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  p.threads = threads > 0 ? threads : cores;
  p.jobs = std::clamp(jobs > 0 ? jobs : p.threads, 1, int(std::max<std::size_t>(1, tasks)));
  p.threads_per_job = std::max(1, p.threads / p.jobs);
  return p;
}

/// @brief Run task(0) .. task(tasks - 1), each once, on `jobs` workers taking the next index as
/// they finish (one worker: on the calling thread). Each worker first sets its OpenMP thread count
/// to `threads_per_job`. A task returns false when it was stopped. No new task starts once `stop`
/// is set; a task that throws sets `stop` (the others end after their current step) and, once
/// every worker has ended, the first error (in worker order) is rethrown.
/// @return true when every task ran and none was stopped (and `stop` stayed false)
inline bool run_jobs(std::size_t tasks, int jobs, int threads_per_job, std::atomic<bool>& stop,
                     const std::function<bool(std::size_t)>& task) {
  if (tasks == 0) return !stop;
  jobs = std::clamp(jobs, 1, int(tasks));
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stopped{false};
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(jobs));
  auto worker = [&](int w) {
#if defined(_OPENMP)
    omp_set_num_threads(std::max(1, threads_per_job));
#else
    (void)threads_per_job;
#endif
    try {
      for (std::size_t i = next++; i < tasks && !stop; i = next++)
        if (!task(i)) stopped = true;
    } catch (...) {
      errors[std::size_t(w)] = std::current_exception();
      stop = true;  // the others stop after their current step, with a checkpoint
    }
  };
  if (jobs == 1) {
    worker(0);
  } else {
    std::vector<std::thread> pool;
    for (int w = 0; w < jobs; ++w) pool.emplace_back(worker, w);
    for (auto& t : pool) t.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return !(stopped || stop);
}

/// @brief Samples done against samples planned over all observers trained in parallel: one ETA.
class EtaTracker {
 public:
  /// @brief Add `n` planned samples.
  void plan(double n) { std::lock_guard lock(m_); planned_ += n; }
  /// @brief Add `n` samples done; returns the seconds left for everything planned at the rate so far.
  double add(double n) {
    std::lock_guard lock(m_);
    done_ += n;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return done_ > 0 ? el / done_ * std::max(0.0, planned_ - done_) : 0.0;
  }

 private:
  std::mutex m_;
  double planned_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// ------------------------------------------------------------------ progress

/// @brief A step of a training run (only while one run trains at a time).
struct StepEvent {
  const std::string& title;         ///< "AIO0", "AIO <id> s<session>", ...
  const StepProgress& progress;     ///< the Trainer's numbers
};

/// @brief An epoch of a training run.
struct EpochEvent {
  const std::string& title;      ///< the run
  const EpochReport& report;     ///< the Trainer's numbers
  int epochs = 0;                ///< epochs of the run
  double eta_all_seconds = std::numeric_limits<double>::quiet_NaN();  ///< all observers' ETA (NaN for AIO0)
  bool parallel = false;         ///< several observers train at once
};

/// @brief Where the protocol reports progress. Each callback may be empty; the protocol calls them
/// one at a time (under one mutex), from the worker threads.
struct Events {
  std::function<void(std::string_view line)> message;  ///< a finished line of text (no newline)
  std::function<void(const StepEvent&)> step;          ///< after a training step (not in parallel)
  std::function<void(const EpochEvent&)> epoch;        ///< after an epoch's validation and checkpoint
};

/// @brief How a protocol run ended (errors are thrown).
struct Outcome {
  bool stopped = false;  ///< the stop flag ended it: checkpoints written, resume to continue
};

// ------------------------------------------------------------------ the protocol

/// @brief The model card of a weights file the protocol writes.
/// @param a        the options (preset, data)
/// @param tile     the model's image_size
/// @param labels   LabelKind::vote for observers, Options::label for AIO0
/// @param observer observer id ("" for AIO0)
/// @param digest   file_digest() of split.csv
inline ModelCard protocol_card(const Options& a, int tile, LabelKind labels, const std::string& observer,
                               const std::string& digest) {
  ModelCard c;
  c.preset = a.preset;
  c.view = InputView::native_tiles;
  c.tile_size = tile;
  c.symmetries = 1;
  c.normalize = true;
  c.labels = labels;
  c.observer = observer;
  std::filesystem::path study = std::filesystem::absolute(a.data).lexically_normal();
  if (study.has_parent_path() && study.filename().empty()) study = study.parent_path();  // "dir/" -> "dir"
  c.study = study.string();
  c.split_digest = digest;
  return c;
}

/// @brief The protocol over preset C (see the file comment); run() does everything.
template <Config C>
class Protocol {
 public:
  using Model = ViT<C>;  ///< the model trained

  /// @brief A protocol with options `a` (checked by the caller: check_options()) and progress sink
  /// `events` (both kept by reference).
  Protocol(const Options& a, const Events& events) : a_(a), events_(events) {
    stop_ = a.stop ? a.stop : &own_stop_;
  }

  /// @brief Read the study, train what Options::mode asks, write everything under Options::out.
  /// @throws Error (IoError, FormatError, ConfigMismatch) naming the file at fault
  Outcome run() {
    namespace fs = std::filesystem;
#if defined(_OPENMP)
    if (a_.threads > 0) omp_set_num_threads(a_.threads);
#endif
    const Study study = read_study(a_.data);
    digest_ = file_digest(a_.data / "split.csv");
    std::set<std::string> observer_set;
    for (const auto& r : study.ratings) observer_set.insert(r.observer);
    const std::vector<std::string> observers =
        a_.observers.empty() ? std::vector<std::string>(observer_set.begin(), observer_set.end()) : a_.observers;
    for (const auto& o : observers)
      if (!observer_set.count(o)) throw Error("observer '" + o + "' has no ratings in " + (a_.data / "ratings.csv").string());
    const std::vector<std::string> mine = shard_of(observers, a_.shard_index, a_.shard_count);

    std::set<std::string> names;
    for (const auto& r : study.ratings) {
      const auto part = part_of(study, r.image);
      if (!part) throw FormatError((a_.data / "split.csv").string() + ": no split for image '" + r.image + "'");
      if (*part != data::Part::test) names.insert(r.image);
    }
    say(std::to_string(study.ratings.size()) + " ratings, " + std::to_string(observer_set.size()) +
        " observers, decoding " + std::to_string(names.size()) + " training/validation stimuli");
    std::map<std::string, Stimulus> stimuli;
    {
      auto decoded = load_stimuli(a_.data, std::vector<std::string>(names.begin(), names.end()));
      for (auto& s : decoded) {
        std::string name = s.name;
        stimuli.emplace(std::move(name), std::move(s));
      }
    }
    fs::create_directories(a_.out);

    auto set_of = [&](data::Part part, auto&& vote_of) {
      std::vector<Stimulus> out;
      for (const auto& [name, s] : stimuli) {
        if (part_of(study, name) != part) continue;
        const double v = vote_of(name);
        if (v <= 0) continue;
        Stimulus c = s;
        c.vote = v;
        out.push_back(std::move(c));
      }
      return out;
    };

    fs::path init = a_.init;
    if (a_.mode == Mode::all || a_.mode == Mode::pipeline) {
      std::map<std::string, std::pair<double, int>> mos;
      for (const auto& r : study.ratings) { mos[r.image].first += r.vote; mos[r.image].second += 1; }
      auto label = [&](const std::string& name) -> double {
        if (a_.label == LabelKind::band) return data::parse_stimulus_name(name).band;
        if (a_.label == LabelKind::qband) return qband_label(name);
        const auto& m = mos.at(name);
        return m.first / m.second;
      };
      // Validation labels are whole classes (accuracy is exact-class agreement).
      auto val_label = [&](const std::string& name) -> double { return std::round(label(name)); };
      const auto tr = set_of(data::Part::train, label), va = set_of(data::Part::val, val_label);
      const std::string label_name(to_string(a_.label));
      if (tr.empty()) throw Error("no training stimuli with a " + label_name + " label");
      say("AIO0: " + std::to_string(tr.size()) + " training and " + std::to_string(va.size()) +
          " validation stimuli, labels: " + label_name + ", " + std::to_string(a_.crops) + " crops each per epoch");
      Model model({}, a_.seed);
      auto o = options(a_.out / "aio0", a_.epochs, a_.lr, a_.seed, a_.label, "");
      o.validate_every = a_.val_every;
      if (!train(model, "AIO0", tr, va, o, nullptr)) return {.stopped = true};
      init = a_.out / "aio0" / "best.safetensors";
    }
    if (a_.mode == Mode::all || mine.empty()) return {};

    const JobPlan plan = plan_jobs(a_.jobs, a_.threads, mine.size());
    parallel_ = plan.jobs > 1;

    std::unique_ptr<ProbeBase> probe;
    if (a_.mode != Mode::observer && a_.probe) {
      // Features of the start model on every training stimulus any of these observers rated (all threads).
      probe = std::make_unique<ProbeBase>();
      std::set<std::string> rated;
      for (const auto& r : study.ratings)
        if (part_of(study, r.image) == data::Part::train && std::find(mine.begin(), mine.end(), r.observer) != mine.end())
          rated.insert(r.image);
      for (const auto& name : rated) {
        probe->index[name] = probe->stimuli.size();
        probe->stimuli.push_back(stimuli.at(name));
      }
      const auto t0 = std::chrono::steady_clock::now();
      Model base({}, a_.seed);
      load_weights(base, init);
      TileEvalSource<float> tiles(probe->stimuli, C.image_size);
      SpreadViews<float> src(tiles, std::size_t(a_.probe_views), std::size_t(C.channels) * C.image_size * C.image_size);
      probe->features = extract_features(base, src);
      char line[160];
      std::snprintf(line, sizeof line, " on %zu stimuli (%zu views) in %.1f s", probe->stimuli.size(),
                    probe->features.views(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      say("linear probe: features of " + init.string() + line);
    }

    // Plan the samples of every epoch of every observer, for the overall ETA.
    EtaTracker overall;
    for (const auto& obs : mine) {
      std::map<int, std::size_t> per_session;
      for (const auto& r : study.ratings)
        if (r.observer == obs && part_of(study, r.image) == data::Part::train) ++per_session[r.session];
      for (const auto& [s, n] : per_session)
        overall.plan(double(n) * a_.crops *
                     (a_.mode == Mode::observer ? a_.observer_epochs : a_.finetune_epochs * a_.finetune_runs));
    }
    say("training " + std::to_string(mine.size()) + " observers, " + std::to_string(plan.jobs) + " at a time with " +
        std::to_string(plan.threads_per_job) + " thread(s) each");

    const bool done = run_jobs(mine.size(), plan.jobs, plan.threads_per_job, *stop_,
                               [&](std::size_t i) { return train_observer(mine[i], study, stimuli, init, probe.get(), overall); });
    return {.stopped = !done};
  }

 private:
  /// Features of the start model on every training stimulus, for the linear probe.
  struct ProbeBase {
    std::vector<Stimulus> stimuli;  // in feature order
    std::map<std::string, std::size_t> index;
    ProbeFeatures features;
  };

  const Options& a_;
  const Events& events_;
  std::atomic<bool> own_stop_{false};
  std::atomic<bool>* stop_ = nullptr;
  bool parallel_ = false;  // several AIOs at once: no step events
  std::mutex events_mutex_;
  std::string digest_;

  void say(const std::string& text) {
    std::lock_guard lock(events_mutex_);
    if (events_.message) events_.message(text);
  }

  ModelCard card(LabelKind labels, const std::string& observer) const {
    return protocol_card(a_, C.image_size, labels, observer, digest_);
  }

  /// Metadata of a weights file the protocol itself writes: the card and `extra`.
  std::map<std::string, std::string> metadata(const std::string& observer, std::map<std::string, std::string> extra) const {
    for (auto& [k, v] : card(LabelKind::vote, observer).to_metadata()) extra[k] = v;
    return extra;
  }

  TrainOptions options(const std::filesystem::path& out, int epochs, double lr, std::uint64_t seed, LabelKind labels,
                       const std::string& observer) const {
    TrainOptions o = train_options(a_, out, epochs, lr, seed);
    o.stop = stop_;
    o.weights_metadata = card(labels, observer).to_metadata();
    return o;
  }

  /// Each stimulus repeated `crops` times: one random crop per copy per epoch.
  static std::vector<Stimulus> repeat(const std::vector<Stimulus>& s, int crops) {
    std::vector<Stimulus> out;
    out.reserve(s.size() * std::size_t(crops));
    for (int c = 0; c < crops; ++c) out.insert(out.end(), s.begin(), s.end());
    return out;
  }

  /// Train `model` on `train_set`, validating on `val_set`; reports progress (with the ETA of all
  /// parallel runs when `overall` is given). False when stopped.
  bool train(Model& model, const std::string& title, const std::vector<Stimulus>& train_set,
             const std::vector<Stimulus>& val_set, const TrainOptions& o, EtaTracker* overall,
             FitResult* out_result = nullptr) {
    const auto crops = repeat(train_set, a_.crops);
    CropBatchSource<float> source(crops, C.image_size,
                                  {.grid = a_.crop_grid, .hflip = a_.flip, .dihedral = a_.dihedral,
                                   .desaturate = a_.desaturate, .seed = o.seed});
    TileEvalSource<float> val(val_set, C.image_size);
    Trainer<Model> trainer(model, o);
    if (!parallel_ && events_.step)
      trainer.on_step = [&](const StepProgress& p) {
        std::lock_guard lock(events_mutex_);
        events_.step(StepEvent{title, p});
      };
    trainer.on_epoch = [&](const EpochReport& r) {
      const double eta = overall ? overall->add(double(crops.size())) : std::numeric_limits<double>::quiet_NaN();
      std::lock_guard lock(events_mutex_);
      if (events_.epoch) events_.epoch(EpochEvent{title, r, o.epochs, eta, parallel_});
    };
    const auto result = trainer.fit(source, val_set.empty() ? nullptr : &val);
    if (out_result) *out_result = result;
    if (result.stopped) {
      say("  " + title + ": stopped; checkpoint written to " + (o.out_dir / "last.ckpt.safetensors").string() +
          " (continue with --resume)");
      return false;
    }
    char line[96];
    std::snprintf(line, sizeof line, ": best validation accuracy %.3f at epoch %d", result.best_val_accuracy,
                  result.best_epoch);
    say("  " + title + line);
    return true;
  }

  /// Exact accuracy of `model` on `val_set` (views averaged), NaN when there is none.
  double val_accuracy(Model& model, const std::vector<Stimulus>& val_set) {
    if (val_set.empty()) return std::numeric_limits<double>::quiet_NaN();
    TileEvalSource<float> val(val_set, C.image_size);
    const auto probs = predict_probabilities(model, val);
    double ok = 0;
    for (std::size_t i = 0; i < val_set.size(); ++i) {
      const double* p = probs.data() + i * C.num_classes;
      ok += double(std::max_element(p, p + C.num_classes) - p + 1 == std::lround(val_set[i].vote));
    }
    return ok / double(val_set.size());
  }

  /// One observer, fine-tuned from `init` session by session (iterative) or trained from scratch
  /// (observer mode). Returns false when stopped.
  bool train_observer(const std::string& obs, const Study& study, const std::map<std::string, Stimulus>& stimuli,
                      const std::filesystem::path& init, const ProbeBase* probe, EtaTracker& overall) {
    namespace fs = std::filesystem;
    // The observer's votes on training/validation stimuli, by session.
    std::map<int, std::vector<Stimulus>> sessions;
    std::map<std::string, std::pair<double, int>> val_votes;
    for (const auto& r : study.ratings) {
      if (r.observer != obs) continue;
      const auto part = part_of(study, r.image);
      if (part == data::Part::train) {
        Stimulus c = stimuli.at(r.image);
        c.vote = r.vote;
        sessions[r.session].push_back(std::move(c));
      } else if (part == data::Part::val) {
        val_votes[r.image].first += r.vote;
        val_votes[r.image].second += 1;
      }
    }
    std::vector<Stimulus> val;
    for (const auto& [name, v] : val_votes) {
      Stimulus c = stimuli.at(name);
      c.vote = double(std::lround(v.first / v.second));
      val.push_back(std::move(c));
    }
    const fs::path out = a_.out / ("observer_" + obs);
    fs::create_directories(out);
    Model model({}, a_.seed + 1000);
    if (a_.mode == Mode::observer) {
      std::vector<Stimulus> all;
      for (auto& [s, v] : sessions) all.insert(all.end(), v.begin(), v.end());
      say("observer " + obs + ": " + std::to_string(all.size()) + " training votes, " + std::to_string(val.size()) +
          " validation stimuli, from scratch");
      return train(model, "AIO " + obs, all, val, options(out, a_.observer_epochs, a_.lr, a_.seed + 7, LabelKind::vote, obs),
                   &overall);
    }

    load_weights(model, init);
    StageList list;
    std::vector<Stage>& stages = list.stages;
    if (probe) {
      // Linear probe: one sample per distinct training stimulus, its target the mean of the targets
      // of the observer's votes on it, weighted by the number of votes.
      std::vector<std::pair<std::size_t, double>> votes;
      for (const auto& [session, set] : sessions)
        for (const auto& st : set) votes.emplace_back(probe->index.at(st.name), st.vote);
      const LabelOptions labels = train_options(a_, {}, 1, 0, 0).labels;
      const ProbeTargets pt = probe_targets(votes, C.num_classes, labels);
      const ProbeFeatures f = select_features(probe->features, pt.stimuli);
      const auto fit = fit_head(f, pt.targets, pt.weights, get_head(model), {.iterations = a_.probe_iterations});
      set_head(model, fit.head);
      const double acc = val_accuracy(model, val);
      save_weights(model, out / "probe.safetensors", NamingScheme::current,
                   metadata(obs, {{"observer", obs}, {"init", init.string()}, {"stage", "linear probe"}}));
      stages.push_back({"probe", out / "probe.safetensors", acc});
      char line[256];
      std::snprintf(line, sizeof line, "  AIO %s: linear probe on %zu stimuli (%zu votes): loss %.4f -> %.4f, val acc %.3f",
                    obs.c_str(), pt.stimuli.size(), std::size_t(std::accumulate(pt.weights.begin(), pt.weights.end(), 0.0)),
                    fit.initial_loss, fit.final_loss, acc);
      say(line);
    } else {
      stages.push_back({"start", init, val_accuracy(model, val)});
    }
    say("observer " + obs + ": fine-tuning " + init.string() + " session by session (" + std::to_string(sessions.size()) +
        " sessions" + (a_.finetune_runs > 1 ? ", " + std::to_string(a_.finetune_runs) + " runs" : std::string()) + "), " +
        std::to_string(val.size()) + " validation stimuli");
    // finetune_runs R: R independent passes over the sessions from the same start (other crops
    // and order); every pass's stages join the average (each pass counts its start once).
    const Stage start = stages.front();
    for (int run = 1; run <= a_.finetune_runs; ++run) {
      if (run > 1) load_weights(model, start.weights);
      const std::string run_name = a_.finetune_runs > 1 ? "run_" + std::to_string(run) : "";
      list.runs.push_back({0});
      for (auto& [session, set] : sessions) {
        const std::string sname = (run_name.empty() ? "" : run_name + "/") + "session_" + std::to_string(session);
        const fs::path sdir = out / sname;
        FitResult fr;
        const std::uint64_t seed = a_.seed + 100 + std::uint64_t(session) + 1000 * std::uint64_t(run - 1);
        if (!train(model, "AIO " + obs + (run_name.empty() ? "" : " r" + std::to_string(run)) + " s" + std::to_string(session),
                   set, val, options(sdir, a_.finetune_epochs, a_.finetune_lr, seed, LabelKind::vote, obs), &overall, &fr))
          return false;
        load_weights(model, sdir / "best.safetensors");  // continue from the best of this session
        list.runs.back().push_back(stages.size());
        stages.push_back({sname, sdir / "best.safetensors", fr.best_val_accuracy});
      }
    }
    const std::size_t pick = best_stage(stages);
    std::string kept = stages[pick].name;
    double kept_accuracy = stages[pick].val_accuracy;
    if (a_.final_rule == FinalRule::average) {
      average_weights(model, list.average_inputs());
      kept = "average of " + std::to_string(stages.size()) + " stages";
      if (a_.finetune_runs > 1) kept += " (" + std::to_string(a_.finetune_runs) + " runs)";
      kept_accuracy = val_accuracy(model, val);
    } else {
      load_weights(model, stages[pick].weights);
    }
    save_weights(model, out / "best.safetensors", NamingScheme::current,
                 metadata(obs, {{"observer", obs}, {"init", init.string()}, {"stage", kept}}));
    write_stages_csv(out / "stages.csv", stages, a_.final_rule, pick, kept_accuracy);
    char line[200];
    std::snprintf(line, sizeof line, "  AIO %s: kept %s%s (validation accuracy %.3f; best single stage %s, %.3f)", obs.c_str(),
                  a_.final_rule == FinalRule::average ? "" : "stage ", kept.c_str(), kept_accuracy, stages[pick].name.c_str(),
                  stages[pick].val_accuracy);
    say(line);
    return true;
  }
};

/// @brief Run the protocol with the preset named `a.preset` (dispatch_preset()).
/// @throws std::invalid_argument for an unknown preset; Error as Protocol::run()
inline Outcome run(const Options& a, const Events& events) {
  Outcome out;
  const bool known = dispatch_preset(a.preset, [&]<Config C>() { out = Protocol<C>(a, events).run(); });
  if (!known) throw std::invalid_argument("unknown preset '" + a.preset + "'");
  return out;
}

}  // namespace vitiq::protocol
