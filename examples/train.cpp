// examples/train.cpp -- vitiq-train: train artificial individual observers (AIOs) on a study.
//
//   vitiq-train --data STUDY --out RUNS [--mode pipeline|all|observer|iterative] [options]
//
// A study folder (as vitiq-make-dataset writes it) holds images/, ratings.csv (long format:
// image,observer,session,vote) and split.csv (image,source,split with split train|val|test).
// Modes:
//   all        one model on all training stimuli ("AIO0"), labelled with the JPEG band of the file
//              name (_I<band>_), with the band refined by Q (--label qband) or with the stimulus MOS
//              (--label mos)
//   observer   one AIO per observer, trained from scratch on that observer's votes
//   iterative  per observer, start from --init (typically AIO0) and fine-tune session by session
//   pipeline   all, then iterative from the AIO0 just trained (the default: the main job)
// Iterative fine-tuning first fits the head alone on the frozen features of the start model (a
// linear probe, LP-FT), then fine-tunes everything session by session; the observer's model is the
// weight average of these stages (--final average, the default) or the best of them on the
// observer's validation votes (--final select). Observers train in parallel (--jobs),
// each on its own cores.
// Output: RUNS/aio0/, RUNS/observer_<id>/ each with best.safetensors, last.safetensors,
// metrics.csv and last.ckpt.safetensors; an observer's folder also holds probe.safetensors, its
// stages session_<s>/ (run_<r>/session_<s>/ with --finetune-runs R > 1) and stages.csv. ctrl-C
// stops after the current step and writes the checkpoint, --resume continues exactly where a run
// stopped.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <limits>
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "vitiq/eval/study_eval.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/train/linear_probe.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fs = std::filesystem;

namespace {

constexpr const char* usage_text = R"(usage: vitiq-train --data STUDY --out RUNS [options]

Trains artificial individual observers (AIOs) on a per-observer study.

required:
  --data DIR              study folder: images/, ratings.csv, split.csv (vitiq-make-dataset)
  --out DIR               output folder (created); one subfolder per model
mode:
  --mode M                pipeline (default: AIO0, then every observer iteratively from it),
                          all (AIO0 only), observer (each observer from scratch),
                          iterative (each observer from --init, session by session)
  --observers LIST        comma-separated observer ids (default: all in ratings.csv)
  --shard I/N             train only observers whose position modulo N is I (job arrays)
  --init FILE             weights to start from (iterative mode)
  --label L               AIO0's label: band (the JPEG band of the file name, default), qband
                          (the band refined by the file name's Q: a continuous position inside
                          the band), or mos (the stimulus' mean vote over all observers)
  --jobs N                observers trained at the same time (default: the number of cores,
                          at most the number of observers); each gets --threads / N threads
model and data:
  --preset NAME           tiny, cifar, aio (default), iqa, seed
  --crop-grid N           crop offsets on multiples of N pixels (default 8, the JPEG grid)
  --crops N               random crops per stimulus per epoch (default 4)
  --no-flip               no random horizontal flips
  --dihedral              also random vertical flips and transposes (any of the 8 symmetries of
                          the square; grid-aligned crops stay on the JPEG grid)
  --desaturate P          with probability P a training crop keeps only a uniform random share
                          of its colour (mixed with its luma; default 1, 0 = off): colourfulness
                          stops being a shortcut for the compression level (on the default
                          study it raised AIO0's test band accuracy from 0.27 to 0.86)
optimisation (AIO0 / per-observer fine-tuning):
  --epochs N              AIO0 epochs (default 40)
  --finetune-epochs N     epochs per session in iterative mode (default 4)
  --finetune-runs R       iterative: R independent passes over the sessions from the same start
                          (other crops and order), all their stages averaged (default 1)
  --observer-epochs N     epochs in observer mode (default 40)
  --batch N               batch size (default 64)
  --lr X                  AIO0 / observer peak learning rate (default 1e-3)
  --finetune-lr X         iterative fine-tuning learning rate (default 2e-4)
  --weight-decay X        AdamW decoupled weight decay on Linear weights (default 0.05)
  --optimizer adamw|adam  (default adamw)
  --warmup X              warm-up epochs before the cosine decay (default 1)
  --schedule S            cosine (default), plateau, constant
  --labels gaussian|hard|smooth   target form (default gaussian, s = 0.49)
  --sigma X               Gaussian label width (default 0.49)
  --clip X                gradient-norm clip (default 1, 0 = off)
  --dropout X             MLP/projection dropout (default 0); --emb-dropout X, --attn-dropout X
  --stochastic-depth X    per-sample drop rate of each residual branch (default 0)
  --smoothing X           label smoothing eps for --labels smooth (default 0.1)
  --early-stop N          stop after N epochs without a better validation score (default 0: off)
  --val-every N           AIO0: validate after every N-th epoch and the last (default 1)
  --no-probe              iterative: start fine-tuning from the start model's head instead of
                          first fitting the head on the observer's votes (linear probe)
  --probe-iterations N    full-batch steps of the linear probe (default 300)
  --probe-views N         tiles per stimulus whose features the probe fits (default 4, spread
                          over the stimulus; 0 = all)
  --final F               iterative: the observer's model is `average` (default: the weight
                          average of all its stages, probe and sessions -- a validation split of
                          about 100 votes cannot tell the stages apart) or `select` (the stage
                          with the best validation accuracy)
  --seed N                (default 1)
  --threads N             OpenMP threads (default: all cores)
  --resume                continue each model from its last checkpoint
  -h, --help              this text
)";

struct Args {
  fs::path data, out, init;
  std::string mode = "pipeline", preset = "aio", label = "band", optimizer = "adamw", schedule = "cosine",
              labels = "gaussian", final = "average";
  std::vector<std::string> observers;
  int shard_i = 0, shard_n = 1, crop_grid = 8, crops = 4, epochs = 40, finetune_epochs = 4, observer_epochs = 40,
      batch = 64, early_stop = 0, finetune_runs = 1, threads = 0, jobs = 0, val_every = 1, probe_iterations = 300, probe_views = 4;
  double lr = 1e-3, finetune_lr = 2e-4, weight_decay = 0.05, warmup = 1.0, sigma = 0.49, clip = 1.0, dropout = 0,
         emb_dropout = 0, attn_dropout = 0, stochastic_depth = 0, smoothing = 0.1, desaturate = 1;
  bool flip = true, dihedral = false, resume = false, probe = true;
  std::uint64_t seed = 1;
};

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop = true; }

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "vitiq-train: %s (see --help)\n", what.c_str());
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage_error(std::string("option ") + argv[i] + " needs a value");
    return argv[++i];
  };
  auto to_int = [](const std::string& s, const char* name) {
    try { std::size_t u; int v = std::stoi(s, &u); if (u == s.size()) return v; } catch (...) {}
    usage_error(std::string(name) + " needs an integer, got '" + s + "'");
  };
  auto to_double = [](const std::string& s, const char* name) {
    try { std::size_t u; double v = std::stod(s, &u); if (u == s.size()) return v; } catch (...) {}
    usage_error(std::string(name) + " needs a number, got '" + s + "'");
  };
  for (int i = 1; i < argc; ++i) {
    const std::string o = argv[i];
    if (o == "-h" || o == "--help") { std::fputs(usage_text, stdout); std::exit(0); }
    else if (o == "--data") a.data = need(i);
    else if (o == "--out") a.out = need(i);
    else if (o == "--init") a.init = need(i);
    else if (o == "--mode") a.mode = need(i);
    else if (o == "--preset") a.preset = need(i);
    else if (o == "--label") a.label = need(i);
    else if (o == "--optimizer") a.optimizer = need(i);
    else if (o == "--schedule") a.schedule = need(i);
    else if (o == "--labels") a.labels = need(i);
    else if (o == "--observers") {
      std::stringstream s(need(i));
      for (std::string x; std::getline(s, x, ',');) if (!x.empty()) a.observers.push_back(x);
    } else if (o == "--shard") {
      const std::string s = need(i);
      const auto slash = s.find('/');
      if (slash == std::string::npos) usage_error("--shard needs I/N");
      a.shard_i = to_int(s.substr(0, slash), "--shard");
      a.shard_n = to_int(s.substr(slash + 1), "--shard");
      if (a.shard_n < 1 || a.shard_i < 0 || a.shard_i >= a.shard_n) usage_error("--shard I/N needs 0 <= I < N");
    }
    else if (o == "--crop-grid") a.crop_grid = to_int(need(i), "--crop-grid");
    else if (o == "--crops") a.crops = to_int(need(i), "--crops");
    else if (o == "--no-flip") a.flip = false;
    else if (o == "--dihedral") a.dihedral = true;
    else if (o == "--desaturate") {
      a.desaturate = to_double(need(i), "--desaturate");
      if (!(a.desaturate >= 0 && a.desaturate <= 1)) usage_error("--desaturate needs a probability in [0, 1]");
    }
    else if (o == "--epochs") a.epochs = to_int(need(i), "--epochs");
    else if (o == "--finetune-epochs") a.finetune_epochs = to_int(need(i), "--finetune-epochs");
    else if (o == "--finetune-runs") a.finetune_runs = to_int(need(i), "--finetune-runs");
    else if (o == "--observer-epochs") a.observer_epochs = to_int(need(i), "--observer-epochs");
    else if (o == "--batch") a.batch = to_int(need(i), "--batch");
    else if (o == "--early-stop") a.early_stop = to_int(need(i), "--early-stop");
    else if (o == "--threads") a.threads = to_int(need(i), "--threads");
    else if (o == "--jobs") a.jobs = to_int(need(i), "--jobs");
    else if (o == "--val-every") a.val_every = to_int(need(i), "--val-every");
    else if (o == "--probe-iterations") a.probe_iterations = to_int(need(i), "--probe-iterations");
    else if (o == "--probe-views") a.probe_views = to_int(need(i), "--probe-views");
    else if (o == "--no-probe") a.probe = false;
    else if (o == "--final") a.final = need(i);
    else if (o == "--stochastic-depth") a.stochastic_depth = to_double(need(i), "--stochastic-depth");
    else if (o == "--smoothing") a.smoothing = to_double(need(i), "--smoothing");
    else if (o == "--lr") a.lr = to_double(need(i), "--lr");
    else if (o == "--finetune-lr") a.finetune_lr = to_double(need(i), "--finetune-lr");
    else if (o == "--weight-decay") a.weight_decay = to_double(need(i), "--weight-decay");
    else if (o == "--warmup") a.warmup = to_double(need(i), "--warmup");
    else if (o == "--sigma") a.sigma = to_double(need(i), "--sigma");
    else if (o == "--clip") a.clip = to_double(need(i), "--clip");
    else if (o == "--dropout") a.dropout = to_double(need(i), "--dropout");
    else if (o == "--emb-dropout") a.emb_dropout = to_double(need(i), "--emb-dropout");
    else if (o == "--attn-dropout") a.attn_dropout = to_double(need(i), "--attn-dropout");
    else if (o == "--seed") a.seed = std::uint64_t(to_int(need(i), "--seed"));
    else if (o == "--resume") a.resume = true;
    else usage_error("unknown option '" + o + "'");
  }
  if (a.data.empty()) usage_error("--data is required");
  if (a.out.empty()) usage_error("--out is required");
  if (a.mode != "pipeline" && a.mode != "all" && a.mode != "observer" && a.mode != "iterative")
    usage_error("--mode must be pipeline, all, observer or iterative");
  if (a.mode == "iterative" && a.init.empty()) usage_error("--mode iterative needs --init");
  if (a.label != "band" && a.label != "qband" && a.label != "mos") usage_error("--label must be band, qband or mos");
  if (a.final != "average" && a.final != "select") usage_error("--final must be average or select");
  if (a.finetune_runs < 1) usage_error("--finetune-runs must be >= 1");
  if (a.jobs < 0 || a.threads < 0) usage_error("--jobs and --threads must be >= 0");
  if (a.val_every < 1 || a.probe_iterations < 0 || a.probe_views < 0)
    usage_error("--val-every must be >= 1, --probe-iterations and --probe-views >= 0");
  if (!(a.stochastic_depth >= 0 && a.stochastic_depth < 1) || !(a.smoothing >= 0 && a.smoothing < 1))
    usage_error("--stochastic-depth and --smoothing must be in [0, 1)");
  if (a.labels != "gaussian" && a.labels != "hard" && a.labels != "smooth") usage_error("--labels must be gaussian, hard or smooth");
  if (a.schedule != "cosine" && a.schedule != "plateau" && a.schedule != "constant") usage_error("--schedule must be cosine, plateau or constant");
  if (a.crops < 1 || a.batch < 1 || a.epochs < 0) usage_error("--crops, --batch must be >= 1 and --epochs >= 0");
  return a;
}

// ------------------------------------------------------------------ the study on disk

using vitiq::eval::Study;  // ratings.csv + split.csv, validated (errors name file and line)

/// Decode every image named in `names` once (threads), keyed by name.
std::map<std::string, vitiq::Stimulus> load_stimuli(const fs::path& dir, const std::set<std::string>& names) {
  std::vector<std::string> list(names.begin(), names.end());
  std::vector<vitiq::Stimulus> decoded(list.size());
  std::vector<std::string> errors(list.size());
#pragma omp parallel for schedule(dynamic, 8)
  for (long i = 0; i < long(list.size()); ++i) {
    try {
      const auto img = vitiq::io::load_image(dir / "images" / list[std::size_t(i)]);
      vitiq::Stimulus& s = decoded[std::size_t(i)];
      s.name = list[std::size_t(i)];
      s.height = int(img.shape()[0]);
      s.width = int(img.shape()[1]);
      s.rgb.assign(img.begin(), img.end());
    } catch (const std::exception& e) {
      errors[std::size_t(i)] = e.what();
    }
  }
  std::map<std::string, vitiq::Stimulus> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!errors[i].empty()) throw vitiq::Error(errors[i]);
    out[list[i]] = std::move(decoded[i]);
  }
  return out;
}

// ------------------------------------------------------------------ training

/// Each stimulus repeated `crops` times: one random crop per copy per epoch.
std::vector<vitiq::Stimulus> repeat(const std::vector<vitiq::Stimulus>& s, int crops) {
  std::vector<vitiq::Stimulus> out;
  out.reserve(s.size() * std::size_t(crops));
  for (int c = 0; c < crops; ++c) out.insert(out.end(), s.begin(), s.end());
  return out;
}

std::string hms(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

/// Progress over all AIOs trained in parallel: samples done against samples planned, for one ETA.
struct Overall {
  std::mutex m;
  double planned = 0, done = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  void plan(double n) { std::lock_guard lock(m); planned += n; }
  /// Add `n` samples done; returns the ETA of everything planned, as h:mm:ss.
  std::string add(double n) {
    std::lock_guard lock(m);
    done += n;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return hms(done > 0 ? el / done * std::max(0.0, planned - done) : 0.0);
  }
};

/// `count` of the views of another EvalSource per stimulus, evenly spread over its view list (all
/// when it has no more): the linear probe's features need not cover all 16 tiles of a stimulus.
template <class T>
class SpreadViews : public vitiq::EvalSource<T> {
 public:
  SpreadViews(vitiq::EvalSource<T>& inner, std::size_t count, std::size_t per_view)
      : inner_(inner), count_(count), per_view_(per_view) {}
  std::size_t size() const override { return inner_.size(); }
  std::size_t views(std::size_t i) const override {
    return count_ == 0 ? inner_.views(i) : std::min(count_, inner_.views(i));
  }
  void fill_views(std::size_t i, T* images) override {
    const std::size_t all = inner_.views(i), n = views(i);
    buffer_.resize(all * per_view_);
    inner_.fill_views(i, buffer_.data());
    // View j of n is inner view j * all / n + (j mod all / n): 4 of 16 tiles are 0, 5, 10, 15, the
    // diagonal of the 4 x 4 grid (one tile in every row and every column).
    const std::size_t step = std::max<std::size_t>(1, all / n);
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t src = std::min(all - 1, j * all / n + j % step);
      std::copy_n(buffer_.data() + src * per_view_, per_view_, images + j * per_view_);
    }
  }
  double vote(std::size_t i) const override { return inner_.vote(i); }

 private:
  vitiq::EvalSource<T>& inner_;
  std::size_t count_, per_view_;
  std::vector<T> buffer_;
};

/// The observer's continuous AIO0 label for --label qband: the band, moved inside [band - 0.5,
/// band + 0.5] by where the file name's Q lies in the band's Q range (vitiq::data quality bands).
double qband_label(const std::string& name) {
  const int band = vitiq::eval::jpeg_band(name), q = vitiq::eval::jpeg_quality(name);
  static constexpr int lo[] = {2, 11, 19, 26, 51}, hi[] = {10, 18, 25, 50, 100};
  if (band < 1 || band > 5 || q < 1) return band;
  const double pos = std::clamp((double(q) - lo[band - 1] + 0.5) / double(hi[band - 1] - lo[band - 1] + 1), 0.0, 1.0);
  return std::clamp(double(band) - 0.5 + pos, 1.0, 5.0);
}

template <vitiq::Config C>
struct Runner {
  using Model = vitiq::ViT<C>;
  const Args& a;
  bool parallel = false;  ///< several AIOs at once: no per-step progress lines
  std::mutex print_mutex;
  explicit Runner(const Args& args) : a(args) {}

  vitiq::TrainOptions options(const fs::path& out, int epochs, double lr, std::uint64_t seed) const {
    vitiq::TrainOptions o;
    o.epochs = epochs;
    o.batch_size = a.batch;
    o.optimizer = {.kind = a.optimizer == "adam" ? vitiq::OptimizerKind::adam : vitiq::OptimizerKind::adamw,
                   .lr = lr, .weight_decay = a.weight_decay};
    o.schedule = a.schedule == "plateau" ? vitiq::ScheduleKind::plateau
                 : a.schedule == "constant" ? vitiq::ScheduleKind::constant : vitiq::ScheduleKind::warmup_cosine;
    o.warmup_epochs = a.warmup;
    o.min_lr = lr * 0.01;
    o.labels = {.form = a.labels == "hard" ? vitiq::LabelForm::hard
                       : a.labels == "smooth" ? vitiq::LabelForm::smoothed : vitiq::LabelForm::gaussian,
                .smoothing = a.smoothing, .sigma = a.sigma};
    o.clip_norm = a.clip;
    o.regularization = {.emb_dropout = a.emb_dropout, .attn_dropout = a.attn_dropout, .dropout = a.dropout,
                        .stochastic_depth = a.stochastic_depth};
    o.early_stopping = a.early_stop;
    o.seed = seed;
    o.out_dir = out;
    o.resume = a.resume;
    o.stop = &g_stop;
    return o;
  }

  /// Train `model` on `train_set`, validating on `val_set`; prints progress with ETA (of this run,
  /// and of all parallel runs when `overall` is given). False when stopped.
  bool train(Model& model, const std::string& title, const std::vector<vitiq::Stimulus>& train_set,
             const std::vector<vitiq::Stimulus>& val_set, const vitiq::TrainOptions& o, Overall* overall,
             vitiq::FitResult* out_result = nullptr) {
    const auto crops = repeat(train_set, a.crops);
    vitiq::CropBatchSource<float> source(crops, C.image_size, {.grid = a.crop_grid, .hflip = a.flip, .dihedral = a.dihedral, .desaturate = a.desaturate, .seed = o.seed});
    vitiq::TileEvalSource<float> val(val_set, C.image_size);
    vitiq::Trainer<Model> trainer(model, o);
    // On a terminal one line is rewritten every 2 s; in a log file a line is added every 30 s.
    const bool tty = ::isatty(::fileno(stdout));
    auto last_print = std::chrono::steady_clock::now();
    if (!parallel)
      trainer.on_step = [&](const vitiq::StepProgress& p) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_print < std::chrono::seconds(tty ? 2 : 30) || p.batch == p.batches) return;
        last_print = now;
        std::printf("%s  %s epoch %d/%d batch %zu/%zu  loss %.4f  acc %.3f  %.0f img/s  ETA %s   %s", tty ? "\r" : "",
                    title.c_str(), p.epoch, p.epochs, p.batch, p.batches, p.loss, p.accuracy, p.images_per_second,
                    hms(p.eta_seconds).c_str(), tty ? "" : "\n");
        std::fflush(stdout);
      };
    trainer.on_epoch = [&](const vitiq::EpochReport& r) {
      const std::string eta = overall ? "  ETA all " + overall->add(double(crops.size())) : "";
      char val_text[64] = "";
      if (!std::isnan(r.val_accuracy)) std::snprintf(val_text, sizeof val_text, " | val loss %.4f acc %.3f", r.val_loss, r.val_accuracy);
      std::lock_guard lock(print_mutex);
      std::printf("%s  %s epoch %d/%d  lr %.2e  train loss %.4f acc %.3f%s%s  (%.1f s, %.0f img/s)%s\n",
                  tty && !parallel ? "\r" : "", title.c_str(), r.epoch, o.epochs, r.lr, r.train_loss, r.train_accuracy,
                  val_text, r.best ? " *best" : "", r.seconds, r.images_per_second, eta.c_str());
      std::fflush(stdout);
    };
    const auto result = trainer.fit(source, val_set.empty() ? nullptr : &val);
    if (out_result) *out_result = result;
    std::lock_guard lock(print_mutex);
    if (result.stopped) {
      std::printf("\n  %s: stopped; checkpoint written to %s (continue with --resume)\n", title.c_str(),
                  (o.out_dir / "last.ckpt.safetensors").c_str());
      return false;
    }
    std::printf("  %s: best validation accuracy %.3f at epoch %d\n", title.c_str(), result.best_val_accuracy,
                result.best_epoch);
    return true;
  }

  /// Exact accuracy of `model` on `val_set` (views averaged), NaN when there is none.
  double val_accuracy(Model& model, const std::vector<vitiq::Stimulus>& val_set) {
    if (val_set.empty()) return std::numeric_limits<double>::quiet_NaN();
    vitiq::TileEvalSource<float> val(val_set, C.image_size);
    const auto probs = vitiq::predict_probabilities(model, val);
    double ok = 0;
    for (std::size_t i = 0; i < val_set.size(); ++i) {
      const double* p = probs.data() + i * C.num_classes;
      ok += double(std::max_element(p, p + C.num_classes) - p + 1 == std::lround(val_set[i].vote));
    }
    return ok / double(val_set.size());
  }

  /// Features of the start model on every training stimulus, for the linear probe.
  struct ProbeBase {
    std::vector<vitiq::Stimulus> stimuli;   // in feature order
    std::map<std::string, std::size_t> index;
    vitiq::ProbeFeatures features;
  };

  /// One observer, fine-tuned from `init` session by session (iterative) or trained from scratch
  /// (observer mode). Returns false when stopped.
  bool train_observer(const std::string& obs, const Study& study, const std::map<std::string, vitiq::Stimulus>& stimuli,
                      const fs::path& init, const ProbeBase* probe, Overall& overall) {
    // The observer's votes on training/validation stimuli, by session.
    std::map<int, std::vector<vitiq::Stimulus>> sessions;
    std::map<std::string, std::pair<double, int>> val_votes;
    for (const auto& r : study.ratings) {
      if (r.observer != obs) continue;
      const std::string& sp = study.split.at(r.image);
      if (sp == "train") {
        vitiq::Stimulus c = stimuli.at(r.image);
        c.vote = r.vote;
        sessions[r.session].push_back(std::move(c));
      } else if (sp == "val") {
        val_votes[r.image].first += r.vote;
        val_votes[r.image].second += 1;
      }
    }
    std::vector<vitiq::Stimulus> val;
    for (const auto& [name, v] : val_votes) {
      vitiq::Stimulus c = stimuli.at(name);
      c.vote = double(std::lround(v.first / v.second));
      val.push_back(std::move(c));
    }
    const fs::path out = a.out / ("observer_" + obs);
    fs::create_directories(out);
    Model model({}, a.seed + 1000);
    auto say = [&](const std::string& text) {
      std::lock_guard lock(print_mutex);
      std::printf("%s\n", text.c_str());
      std::fflush(stdout);
    };
    if (a.mode == "observer") {
      std::vector<vitiq::Stimulus> all;
      for (auto& [s, v] : sessions) all.insert(all.end(), v.begin(), v.end());
      say("observer " + obs + ": " + std::to_string(all.size()) + " training votes, " + std::to_string(val.size()) +
          " validation stimuli, from scratch");
      return train(model, "AIO " + obs, all, val, options(out, a.observer_epochs, a.lr, a.seed + 7), &overall);
    }

    vitiq::load_weights(model, init);
    // Stages: the probe (or the start model), then each session's best; the observer's model is the
    // weight average of the stages (--final average) or the stage with the best validation accuracy
    // (--final select; a later stage wins a tie: it has seen more votes).
    struct Stage { std::string name; fs::path weights; double val_accuracy; };
    std::vector<Stage> stages;
    if (probe) {
      // Linear probe: one sample per distinct training stimulus, its target the mean of the targets
      // of the observer's votes on it, weighted by the number of votes.
      constexpr int K = C.num_classes;
      std::map<std::size_t, std::pair<std::vector<double>, double>> per;  // feature index -> (target sum, votes)
      const vitiq::LabelOptions labels = options({}, 1, 0, 0).labels;
      std::vector<double> t(K);
      for (const auto& [session, set] : sessions)
        for (const auto& st : set) {
          auto& e = per[probe->index.at(st.name)];
          if (e.first.empty()) e.first.assign(K, 0.0);
          vitiq::make_target(t.data(), st.vote, K, labels);
          for (int k = 0; k < K; ++k) e.first[std::size_t(k)] += t[std::size_t(k)];
          e.second += 1;
        }
      vitiq::ProbeFeatures f;
      f.dim = probe->features.dim;
      f.first_view.push_back(0);
      std::vector<double> targets, weights;
      for (const auto& [idx, e] : per) {
        const std::size_t v0 = probe->features.first_view[idx], v1 = probe->features.first_view[idx + 1];
        f.x.insert(f.x.end(), probe->features.x.begin() + std::ptrdiff_t(v0 * std::size_t(f.dim)),
                   probe->features.x.begin() + std::ptrdiff_t(v1 * std::size_t(f.dim)));
        f.first_view.push_back(f.first_view.back() + (v1 - v0));
        for (int k = 0; k < K; ++k) targets.push_back(e.first[std::size_t(k)] / e.second);
        weights.push_back(e.second);
      }
      const auto fit = vitiq::fit_head(f, targets, weights, vitiq::get_head(model), {.iterations = a.probe_iterations});
      vitiq::set_head(model, fit.head);
      const double acc = val_accuracy(model, val);
      vitiq::save_weights(model, out / "probe.safetensors", vitiq::NamingScheme::current,
                          {{"observer", obs}, {"init", init.string()}, {"stage", "linear probe"}});
      stages.push_back({"probe", out / "probe.safetensors", acc});
      char line[256];
      std::snprintf(line, sizeof line, "  AIO %s: linear probe on %zu stimuli (%zu votes): loss %.4f -> %.4f, val acc %.3f",
                    obs.c_str(), per.size(), std::size_t(std::accumulate(weights.begin(), weights.end(), 0.0)),
                    fit.initial_loss, fit.final_loss, acc);
      say(line);
    } else {
      stages.push_back({"start", init, val_accuracy(model, val)});
    }
    say("observer " + obs + ": fine-tuning " + init.string() + " session by session (" + std::to_string(sessions.size()) +
        " sessions" + (a.finetune_runs > 1 ? ", " + std::to_string(a.finetune_runs) + " runs" : std::string()) + "), " +
        std::to_string(val.size()) + " validation stimuli");
    // --finetune-runs R: R independent passes over the sessions from the same start (other crops
    // and order); every pass's stages join the average (each pass counts its start once).
    const Stage start = stages.front();
    std::vector<std::vector<std::size_t>> run_stages;  // indices into `stages`, per run, start first
    for (int run = 1; run <= a.finetune_runs; ++run) {
      if (run > 1) vitiq::load_weights(model, start.weights);
      const std::string run_name = a.finetune_runs > 1 ? "run_" + std::to_string(run) : "";
      run_stages.push_back({0});
      for (auto& [session, set] : sessions) {
        const std::string sname = (run_name.empty() ? "" : run_name + "/") + "session_" + std::to_string(session);
        const fs::path sdir = out / sname;
        vitiq::FitResult fr;
        const std::uint64_t seed = a.seed + 100 + std::uint64_t(session) + 1000 * std::uint64_t(run - 1);
        if (!train(model, "AIO " + obs + (run_name.empty() ? "" : " r" + std::to_string(run)) + " s" + std::to_string(session),
                   set, val, options(sdir, a.finetune_epochs, a.finetune_lr, seed), &overall, &fr))
          return false;
        vitiq::load_weights(model, sdir / "best.safetensors");  // continue from the best of this session
        run_stages.back().push_back(stages.size());
        stages.push_back({sname, sdir / "best.safetensors", fr.best_val_accuracy});
      }
    }
    std::size_t pick = 0;
    for (std::size_t i = 1; i < stages.size(); ++i)
      if (std::isnan(stages[pick].val_accuracy) || stages[i].val_accuracy >= stages[pick].val_accuracy) pick = i;
    std::string kept = stages[pick].name;
    double kept_accuracy = stages[pick].val_accuracy;
    if (a.final == "average") {
      std::vector<fs::path> files;
      for (const auto& run : run_stages)
        for (std::size_t i : run) files.push_back(stages[i].weights);
      vitiq::average_weights(model, files);
      kept = "average of " + std::to_string(stages.size()) + " stages";
      if (a.finetune_runs > 1) kept += " (" + std::to_string(a.finetune_runs) + " runs)";
      kept_accuracy = val_accuracy(model, val);
    } else {
      vitiq::load_weights(model, stages[pick].weights);
    }
    vitiq::save_weights(model, out / "best.safetensors", vitiq::NamingScheme::current,
                        {{"observer", obs}, {"init", init.string()}, {"stage", kept}});
    std::string csv = "stage,weights,val_accuracy,selected\n";
    const auto row = [&](const std::string& name, const std::string& file, double acc, bool selected) {
      char num[64];
      std::snprintf(num, sizeof num, "%.6f", acc);
      csv += name + "," + file + "," + num + "," + (selected ? "1" : "0") + "\n";
    };
    for (std::size_t i = 0; i < stages.size(); ++i)
      row(stages[i].name, stages[i].weights.filename().string(), stages[i].val_accuracy, a.final == "select" && i == pick);
    if (a.final == "average") row("average", "best.safetensors", kept_accuracy, true);
    vitiq::io::atomic_write(out / "stages.csv", csv);
    char line[200];
    std::snprintf(line, sizeof line, "  AIO %s: kept %s%s (validation accuracy %.3f; best single stage %s, %.3f)", obs.c_str(),
                  a.final == "average" ? "" : "stage ", kept.c_str(), kept_accuracy, stages[pick].name.c_str(),
                  stages[pick].val_accuracy);
    say(line);
    return true;
  }

  int run() {
    const Study study = vitiq::eval::read_study(a.data);
    std::set<std::string> observer_set;
    for (const auto& r : study.ratings) observer_set.insert(r.observer);
    std::vector<std::string> observers = a.observers.empty() ? std::vector<std::string>(observer_set.begin(), observer_set.end())
                                                              : a.observers;
    for (const auto& o : observers)
      if (!observer_set.count(o)) throw vitiq::Error("observer '" + o + "' has no ratings in " + (a.data / "ratings.csv").string());
    std::vector<std::string> mine;
    for (std::size_t i = 0; i < observers.size(); ++i)
      if (int(i % std::size_t(a.shard_n)) == a.shard_i) mine.push_back(observers[i]);

    std::set<std::string> names;
    for (const auto& r : study.ratings) {
      auto it = study.split.find(r.image);
      if (it == study.split.end())
        throw vitiq::FormatError((a.data / "split.csv").string() + ": no split for image '" + r.image + "'");
      if (it->second != "test") names.insert(r.image);
    }
    std::printf("vitiq-train: %zu ratings, %zu observers, decoding %zu training/validation stimuli\n",
                study.ratings.size(), observer_set.size(), names.size());
    const auto stimuli = load_stimuli(a.data, names);
    fs::create_directories(a.out);

    auto set_of = [&](const std::string& split, auto&& vote_of) {
      std::vector<vitiq::Stimulus> out;
      for (const auto& [name, s] : stimuli) {
        if (study.split.at(name) != split) continue;
        const double v = vote_of(name);
        if (v <= 0) continue;
        vitiq::Stimulus c = s;
        c.vote = v;
        out.push_back(std::move(c));
      }
      return out;
    };

    fs::path init = a.init;
    if (a.mode == "all" || a.mode == "pipeline") {
      std::map<std::string, std::pair<double, int>> mos;
      for (const auto& r : study.ratings) { mos[r.image].first += r.vote; mos[r.image].second += 1; }
      auto label = [&](const std::string& name) -> double {
        if (a.label == "band") return vitiq::eval::jpeg_band(name);
        if (a.label == "qband") return qband_label(name);
        const auto& m = mos.at(name);
        return m.first / m.second;
      };
      // Validation labels are whole classes (accuracy is exact-class agreement).
      auto val_label = [&](const std::string& name) -> double { return std::round(label(name)); };
      const auto tr = set_of("train", label), va = set_of("val", val_label);
      if (tr.empty()) throw vitiq::Error("no training stimuli with a " + a.label + " label");
      std::printf("AIO0: %zu training and %zu validation stimuli, labels: %s, %d crops each per epoch\n", tr.size(),
                  va.size(), a.label.c_str(), a.crops);
      Model model({}, a.seed);
      auto o = options(a.out / "aio0", a.epochs, a.lr, a.seed);
      o.validate_every = a.val_every;
      if (!train(model, "AIO0", tr, va, o, nullptr)) return 130;
      init = a.out / "aio0" / "best.safetensors";
    }
    if (a.mode == "all" || mine.empty()) return 0;

    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    const int threads = a.threads > 0 ? a.threads : cores;
    const int jobs = std::clamp(a.jobs > 0 ? a.jobs : threads, 1, int(mine.size()));
    parallel = jobs > 1;

    std::unique_ptr<ProbeBase> probe;
    if (a.mode != "observer" && a.probe) {
      // Features of the start model on every training stimulus any of these observers rated (all threads).
      probe = std::make_unique<ProbeBase>();
      std::set<std::string> rated;
      for (const auto& r : study.ratings)
        if (study.split.at(r.image) == "train" && std::find(mine.begin(), mine.end(), r.observer) != mine.end())
          rated.insert(r.image);
      for (const auto& name : rated) {
        probe->index[name] = probe->stimuli.size();
        probe->stimuli.push_back(stimuli.at(name));
      }
      const auto t0 = std::chrono::steady_clock::now();
      Model base({}, a.seed);
      vitiq::load_weights(base, init);
      vitiq::TileEvalSource<float> tiles(probe->stimuli, C.image_size);
      SpreadViews<float> src(tiles, std::size_t(a.probe_views), std::size_t(C.channels) * C.image_size * C.image_size);
      probe->features = vitiq::extract_features(base, src);
      std::printf("linear probe: features of %s on %zu stimuli (%zu views) in %.1f s\n", init.c_str(),
                  probe->stimuli.size(), probe->features.views(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }

    // Plan the samples of every epoch of every observer, for the overall ETA.
    Overall overall;
    for (const auto& obs : mine) {
      std::map<int, std::size_t> per_session;
      for (const auto& r : study.ratings)
        if (r.observer == obs && study.split.at(r.image) == "train") ++per_session[r.session];
      for (const auto& [s, n] : per_session)
        overall.plan(double(n) * a.crops *
                     (a.mode == "observer" ? a.observer_epochs : a.finetune_epochs * a.finetune_runs));
    }
    std::printf("training %zu observers, %d at a time with %d thread(s) each\n", mine.size(), jobs,
                std::max(1, threads / jobs));
    std::fflush(stdout);

    std::atomic<std::size_t> next{0};
    std::atomic<bool> stopped{false};
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(jobs));
    auto worker = [&](int w) {
#if defined(_OPENMP)
      omp_set_num_threads(std::max(1, threads / jobs));
#endif
      try {
        for (std::size_t i = next++; i < mine.size() && !g_stop; i = next++)
          if (!train_observer(mine[i], study, stimuli, init, probe.get(), overall)) stopped = true;
      } catch (...) {
        errors[std::size_t(w)] = std::current_exception();
        g_stop = true;  // the others stop after their current step, with a checkpoint
      }
    };
    if (jobs == 1) {
#if defined(_OPENMP)
      omp_set_num_threads(threads);
#endif
      try { worker(0); } catch (...) { throw; }
    } else {
      std::vector<std::thread> pool;
      for (int w = 0; w < jobs; ++w) pool.emplace_back(worker, w);
      for (auto& t : pool) t.join();
    }
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    return stopped || g_stop ? 130 : 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
#if defined(_OPENMP)
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  std::signal(SIGINT, on_sigint);
  int rc = 0;
  try {
    {  // the output folder must take files: find out now, not after decoding the study
      std::error_code ec;
      fs::create_directories(args.out, ec);
      if (ec) throw vitiq::IoError("cannot create the output folder '" + args.out.string() + "' (" + ec.message() + ")");
      try {
        vitiq::io::atomic_write(args.out / ".vitiq-write-test", std::string_view());
      } catch (const vitiq::IoError& e) {
        throw vitiq::IoError("the output folder '" + args.out.string() + "' is not writable (" + e.what() + ")");
      }
      fs::remove(args.out / ".vitiq-write-test", ec);
    }
    const bool known = vitiq::dispatch_preset(args.preset, [&]<vitiq::Config C>() { rc = Runner<C>(args).run(); });
    if (!known) usage_error("unknown preset '" + args.preset + "'");
  } catch (const std::exception& e) {
    // One line; on a terminal, first end the progress line that may be open on stdout.
    std::fprintf(stderr, "%svitiq-train: %s\n", ::isatty(::fileno(stdout)) ? "\n" : "", e.what());
    return 1;
  }
  return rc;
}
