// examples/train.cpp -- vitiq-train: train artificial individual observers (AIOs) on a study.
//
//   vitiq-train --data STUDY --out RUNS [--mode pipeline|all|observer|iterative] [options]
//
// A study folder (as vitiq-make-dataset writes it) holds images/, ratings.csv (long format:
// image,observer,session,vote) and split.csv (image,source,split with split train|val|test).
// Modes:
//   all        one model on all training stimuli ("AIO0"), labelled with the JPEG band of the file
//              name (_I<band>_) or with the stimulus MOS (--label mos)
//   observer   one AIO per observer, trained from scratch on that observer's votes
//   iterative  per observer, start from --init (typically AIO0) and fine-tune session by session
//   pipeline   all, then iterative from the AIO0 just trained (the default: the main job)
// Output: RUNS/aio0/, RUNS/observer_<id>/ each with best.safetensors, last.safetensors,
// metrics.csv and last.ckpt.safetensors; ctrl-C stops after the current step and writes the
// checkpoint, --resume continues exactly where a run stopped.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "vitiq/eval/study_eval.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/weights.hpp"
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
  --label band|mos        AIO0's label: the JPEG band of the file name (default) or the MOS
model and data:
  --preset NAME           tiny, cifar, aio (default), iqa, seed
  --crop-grid N           crop offsets on multiples of N pixels (default 8, the JPEG grid)
  --crops N               random crops per stimulus per epoch (default 4)
  --no-flip               no random horizontal flips
optimisation (AIO0 / per-observer fine-tuning):
  --epochs N              AIO0 epochs (default 40)
  --finetune-epochs N     epochs per session in iterative mode (default 4)
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
  --early-stop N          stop after N epochs without a better validation score (default 0: off)
  --seed N                (default 1)
  --threads N             OpenMP threads (default: all cores)
  --resume                continue each model from its last checkpoint
  -h, --help              this text
)";

struct Args {
  fs::path data, out, init;
  std::string mode = "pipeline", preset = "aio", label = "band", optimizer = "adamw", schedule = "cosine",
              labels = "gaussian";
  std::vector<std::string> observers;
  int shard_i = 0, shard_n = 1, crop_grid = 8, crops = 4, epochs = 40, finetune_epochs = 4, observer_epochs = 40,
      batch = 64, early_stop = 0, threads = 0;
  double lr = 1e-3, finetune_lr = 2e-4, weight_decay = 0.05, warmup = 1.0, sigma = 0.49, clip = 1.0, dropout = 0,
         emb_dropout = 0, attn_dropout = 0;
  bool flip = true, resume = false;
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
    else if (o == "--epochs") a.epochs = to_int(need(i), "--epochs");
    else if (o == "--finetune-epochs") a.finetune_epochs = to_int(need(i), "--finetune-epochs");
    else if (o == "--observer-epochs") a.observer_epochs = to_int(need(i), "--observer-epochs");
    else if (o == "--batch") a.batch = to_int(need(i), "--batch");
    else if (o == "--early-stop") a.early_stop = to_int(need(i), "--early-stop");
    else if (o == "--threads") a.threads = to_int(need(i), "--threads");
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
  if (a.label != "band" && a.label != "mos") usage_error("--label must be band or mos");
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

template <vitiq::Config C>
struct Runner {
  using Model = vitiq::ViT<C>;
  const Args& a;

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
                .sigma = a.sigma};
    o.clip_norm = a.clip;
    o.regularization = {.emb_dropout = a.emb_dropout, .attn_dropout = a.attn_dropout, .dropout = a.dropout};
    o.early_stopping = a.early_stop;
    o.seed = seed;
    o.out_dir = out;
    o.resume = a.resume;
    o.stop = &g_stop;
    return o;
  }

  /// Train `model` on `train`, validating on `val`; prints progress with ETA. False when stopped.
  bool train(Model& model, const std::string& title, const std::vector<vitiq::Stimulus>& train_set,
             const std::vector<vitiq::Stimulus>& val_set, const vitiq::TrainOptions& o) {
    const auto crops = repeat(train_set, a.crops);
    vitiq::CropBatchSource<float> source(crops, C.image_size, {.grid = a.crop_grid, .hflip = a.flip, .seed = o.seed});
    vitiq::TileEvalSource<float> val(val_set, C.image_size);
    vitiq::Trainer<Model> trainer(model, o);
    // On a terminal one line is rewritten every 2 s; in a log file a line is added every 30 s.
    const bool tty = ::isatty(::fileno(stdout));
    auto last_print = std::chrono::steady_clock::now();
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
      std::printf("%s  %s epoch %d/%d  lr %.2e  train loss %.4f acc %.3f | val loss %.4f acc %.3f%s  (%.1f s, %.0f img/s)\n",
                  tty ? "\r" : "", title.c_str(), r.epoch, o.epochs, r.lr, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy,
                  r.best ? " *best" : "", r.seconds, r.images_per_second);
      std::fflush(stdout);
    };
    const auto result = trainer.fit(source, val_set.empty() ? nullptr : &val);
    if (result.stopped) {
      std::printf("\n  %s: stopped; checkpoint written to %s (continue with --resume)\n", title.c_str(),
                  (o.out_dir / "last.ckpt.safetensors").c_str());
      return false;
    }
    std::printf("  %s: best validation accuracy %.3f at epoch %d\n", title.c_str(), result.best_val_accuracy,
                result.best_epoch);
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
        const auto& m = mos.at(name);
        return m.first / m.second;
      };
      const auto tr = set_of("train", label), va = set_of("val", label);
      if (tr.empty()) throw vitiq::Error("no training stimuli with a " + a.label + " label");
      std::printf("AIO0: %zu training and %zu validation stimuli, labels: %s, %d crops each per epoch\n", tr.size(),
                  va.size(), a.label.c_str(), a.crops);
      Model model({}, a.seed);
      if (!train(model, "AIO0", tr, va, options(a.out / "aio0", a.epochs, a.lr, a.seed))) return 130;
      init = a.out / "aio0" / "best.safetensors";
    }
    if (a.mode == "all") return 0;

    for (const auto& obs : mine) {
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
      Model model({}, a.seed + 1000);
      if (a.mode == "observer") {
        std::vector<vitiq::Stimulus> all;
        for (auto& [s, v] : sessions) all.insert(all.end(), v.begin(), v.end());
        std::printf("observer %s: %zu training votes, %zu validation stimuli, from scratch\n", obs.c_str(), all.size(), val.size());
        if (!train(model, "AIO " + obs, all, val, options(out, a.observer_epochs, a.lr, a.seed + 7))) return 130;
        continue;
      }
      vitiq::load_weights(model, init);
      std::printf("observer %s: fine-tuning %s session by session (%zu sessions), %zu validation stimuli\n",
                  obs.c_str(), init.c_str(), sessions.size(), val.size());
      for (auto& [session, set] : sessions) {
        const fs::path sdir = out / ("session_" + std::to_string(session));
        if (!train(model, "AIO " + obs + " s" + std::to_string(session), set, val,
                   options(sdir, a.finetune_epochs, a.finetune_lr, a.seed + 100 + std::uint64_t(session))))
          return 130;
        vitiq::load_weights(model, sdir / "best.safetensors");  // continue from the best of this session
      }
      fs::create_directories(out);
      vitiq::save_weights(model, out / "best.safetensors", vitiq::NamingScheme::current,
                          {{"observer", obs}, {"init", init.string()}});
    }
    return 0;
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
    const bool known = vitiq::dispatch_preset(args.preset, [&]<vitiq::Config C>() { rc = Runner<C>{args}.run(); });
    if (!known) usage_error("unknown preset '" + args.preset + "'");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nvitiq-train: %s\n", e.what());
    return 1;
  }
  return rc;
}
