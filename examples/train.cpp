// examples/train.cpp -- vitiq-train: train artificial individual observers (AIOs) on a study.
//
//   vitiq-train --data STUDY --out RUNS [--mode pipeline|all|observer|iterative] [options]
//
// A study folder (as vitiq-make-dataset writes it) holds images/, ratings.csv (long format:
// image,observer,session,vote) and split.csv (image,source,split with split train|val|test).
// The protocol itself (AIO0, the linear probe, session-by-session fine-tuning, the average or
// selected final model, sharding, parallel observers, resume) is vitiq::protocol
// (include/vitiq/train/protocol.hpp, whose file comment describes it); this program parses the
// options (examples/common/cli.hpp), prints the protocol's progress and turns ctrl-C into the
// protocol's stop flag: it stops after the current step and writes the checkpoint, --resume
// continues exactly where a run stopped. Exit code 0, 1 on an error, 2 on a usage error, 130
// when stopped.
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/cli.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/train/protocol.hpp"

namespace fs = std::filesystem;
namespace vp = vitiq::protocol;

namespace {

constexpr const char* program = "vitiq-train";

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop = true; }

/// The options of vitiq-train, as the protocol takes them (plus the text forms of the enums).
struct Args {
  vp::Options o;
  std::string mode = "pipeline", label = "band", optimizer = "adamw", schedule = "cosine", labels = "gaussian",
              final_rule = "average", observers, shard;
  bool no_flip = false, no_probe = false;
};

int to_int(const std::string& s, const char* name) {
  try { std::size_t u; int v = std::stoi(s, &u); if (u == s.size()) return v; } catch (...) {}
  vitiq::cli::usage_error(program, std::string(name) + " needs an integer, got '" + s + "'");
}

Args parse_args(int argc, char** argv) {
  Args a;
  vp::Options& o = a.o;
  CLI::App app("Trains artificial individual observers (AIOs) on a per-observer study.", program);
  app.get_formatter()->column_width(34);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // as before: the last one counts
  const std::string req = "required", mode = "mode", model = "model and data",
                    opt = "optimisation (AIO0 / per-observer fine-tuning)";
  app.add_option("--data", o.data, "study folder: images/, ratings.csv, split.csv (vitiq-make-dataset)")
      ->required()->type_name("DIR")->group(req);
  app.add_option("--out", o.out, "output folder (created); one subfolder per model")->required()->type_name("DIR")->group(req);

  app.add_option("--mode", a.mode,
                 "pipeline (default: AIO0, then every observer iteratively from it), all (AIO0 only), observer "
                 "(each observer from scratch), iterative (each observer from --init, session by session)")
      ->check(CLI::IsMember({"pipeline", "all", "observer", "iterative"}))->type_name("M")->group(mode);
  app.add_option("--observers", a.observers, "comma-separated observer ids (default: all in ratings.csv)")
      ->type_name("LIST")->group(mode);
  app.add_option("--shard", a.shard, "train only observers whose position modulo N is I (job arrays)")
      ->type_name("I/N")->group(mode);
  app.add_option("--init", o.init, "weights to start from (iterative mode)")->type_name("FILE")->group(mode);
  app.add_option("--label", a.label,
                 "AIO0's label: band (the JPEG band of the file name, default), qband (the band refined by the file "
                 "name's Q: a continuous position inside the band), or mos (the stimulus' mean vote over all observers)")
      ->check(CLI::IsMember({"band", "qband", "mos"}))->type_name("L")->group(mode);
  app.add_option("--jobs", o.jobs,
                 "observers trained at the same time (default: the number of cores, at most the number of "
                 "observers); each gets --threads / N threads")
      ->type_name("N")->group(mode);

  app.add_option("--preset", o.preset, "tiny, cifar, aio (default), iqa, seed")
      ->check(vitiq::cli::preset_name())->type_name("NAME")->group(model);
  app.add_option("--crop-grid", o.crop_grid, "crop offsets on multiples of N pixels (default 8, the JPEG grid)")
      ->type_name("N")->group(model);
  app.add_option("--crops", o.crops, "random crops per stimulus per epoch (default 4)")->type_name("N")->group(model);
  app.add_flag("--no-flip", a.no_flip, "no random horizontal flips")->group(model);
  app.add_flag("--dihedral", o.dihedral,
               "also random vertical flips and transposes (any of the 8 symmetries of the square; grid-aligned "
               "crops stay on the JPEG grid)")
      ->group(model);
  app.add_option("--desaturate", o.desaturate,
                 "with probability P a training crop keeps only a uniform random share of its colour (mixed with its "
                 "luma; default 1, 0 = off): colourfulness stops being a shortcut for the compression level (on the "
                 "default study it raised AIO0's test band accuracy from 0.27 to 0.86)")
      ->type_name("P")->group(model);

  app.add_option("--epochs", o.epochs, "AIO0 epochs (default 40)")->type_name("N")->group(opt);
  app.add_option("--finetune-epochs", o.finetune_epochs, "epochs per session in iterative mode (default 4)")
      ->type_name("N")->group(opt);
  app.add_option("--finetune-runs", o.finetune_runs,
                 "iterative: R independent passes over the sessions from the same start (other crops and order), "
                 "all their stages averaged (default 1)")
      ->type_name("R")->group(opt);
  app.add_option("--observer-epochs", o.observer_epochs, "epochs in observer mode (default 40)")->type_name("N")->group(opt);
  app.add_option("--batch", o.batch, "batch size (default 64)")->type_name("N")->group(opt);
  app.add_option("--lr", o.lr, "AIO0 / observer peak learning rate (default 1e-3)")->type_name("X")->group(opt);
  app.add_option("--finetune-lr", o.finetune_lr, "iterative fine-tuning learning rate (default 2e-4)")
      ->type_name("X")->group(opt);
  app.add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay on Linear weights (default 0.05)")
      ->type_name("X")->group(opt);
  app.add_option("--optimizer", a.optimizer, "adamw|adam (default adamw)")
      ->check(CLI::IsMember({"adamw", "adam"}))->type_name("NAME")->group(opt);
  app.add_option("--warmup", o.warmup, "warm-up epochs before the cosine decay (default 1)")->type_name("X")->group(opt);
  app.add_option("--schedule", a.schedule, "cosine (default), plateau, constant")
      ->check(CLI::IsMember({"cosine", "plateau", "constant"}))->type_name("S")->group(opt);
  app.add_option("--labels", a.labels, "gaussian|hard|smooth: target form (default gaussian, s = 0.49)")
      ->check(CLI::IsMember({"gaussian", "hard", "smooth"}))->type_name("FORM")->group(opt);
  app.add_option("--sigma", o.sigma, "Gaussian label width (default 0.49)")->type_name("X")->group(opt);
  app.add_option("--clip", o.clip, "gradient-norm clip (default 1, 0 = off)")->type_name("X")->group(opt);
  app.add_option("--dropout", o.dropout, "MLP/projection dropout (default 0)")->type_name("X")->group(opt);
  app.add_option("--emb-dropout", o.emb_dropout, "embedding dropout (default 0)")->type_name("X")->group(opt);
  app.add_option("--attn-dropout", o.attn_dropout, "attention dropout (default 0)")->type_name("X")->group(opt);
  app.add_option("--stochastic-depth", o.stochastic_depth, "per-sample drop rate of each residual branch (default 0)")
      ->type_name("X")->group(opt);
  app.add_option("--smoothing", o.smoothing, "label smoothing eps for --labels smooth (default 0.1)")
      ->type_name("X")->group(opt);
  app.add_option("--early-stop", o.early_stop, "stop after N epochs without a better validation score (default 0: off)")
      ->type_name("N")->group(opt);
  app.add_option("--val-every", o.val_every, "AIO0: validate after every N-th epoch and the last (default 1)")
      ->type_name("N")->group(opt);
  app.add_flag("--no-probe", a.no_probe,
               "iterative: start fine-tuning from the start model's head instead of first fitting the head on the "
               "observer's votes (linear probe)")
      ->group(opt);
  app.add_option("--probe-iterations", o.probe_iterations, "full-batch steps of the linear probe (default 300)")
      ->type_name("N")->group(opt);
  app.add_option("--probe-views", o.probe_views,
                 "tiles per stimulus whose features the probe fits (default 4, spread over the stimulus; 0 = all)")
      ->type_name("N")->group(opt);
  app.add_option("--final", a.final_rule,
                 "iterative: the observer's model is `average` (default: the weight average of all its stages, probe "
                 "and sessions -- a validation split of about 100 votes cannot tell the stages apart) or `select` "
                 "(the stage with the best validation accuracy)")
      ->check(CLI::IsMember({"average", "select"}))->type_name("F")->group(opt);
  app.add_option("--seed", o.seed, "(default 1)")->type_name("N")->group(opt);
  app.add_option("--threads", o.threads, "OpenMP threads (default: all cores)")->type_name("N")->group(opt);
  app.add_flag("--resume", o.resume, "continue each model from its last checkpoint")->group(opt);
  vitiq::cli::parse(app, argc, argv);

  // The text forms, and the checks of combinations (vp::check_options).
  o.mode = a.mode == "all" ? vp::Mode::all : a.mode == "observer" ? vp::Mode::observer
           : a.mode == "iterative" ? vp::Mode::iterative : vp::Mode::pipeline;
  o.label = a.label == "qband" ? vitiq::LabelKind::qband : a.label == "mos" ? vitiq::LabelKind::mos : vitiq::LabelKind::band;
  o.final_rule = a.final_rule == "select" ? vp::FinalRule::select : vp::FinalRule::average;
  o.optimizer = a.optimizer == "adam" ? vitiq::OptimizerKind::adam : vitiq::OptimizerKind::adamw;
  o.schedule = a.schedule == "plateau" ? vitiq::ScheduleKind::plateau
               : a.schedule == "constant" ? vitiq::ScheduleKind::constant : vitiq::ScheduleKind::warmup_cosine;
  o.labels = a.labels == "hard" ? vitiq::LabelForm::hard
             : a.labels == "smooth" ? vitiq::LabelForm::smoothed : vitiq::LabelForm::gaussian;
  o.flip = !a.no_flip;
  o.probe = !a.no_probe;
  std::stringstream list(a.observers);
  for (std::string x; std::getline(list, x, ',');)
    if (!x.empty()) o.observers.push_back(x);
  if (!a.shard.empty()) {
    const auto slash = a.shard.find('/');
    if (slash == std::string::npos) vitiq::cli::usage_error(program, "--shard needs I/N");
    o.shard_index = to_int(a.shard.substr(0, slash), "--shard");
    o.shard_count = to_int(a.shard.substr(slash + 1), "--shard");
  }
  if (const std::string problem = vp::check_options(o); !problem.empty()) vitiq::cli::usage_error(program, problem);
  return a;
}

std::string hms(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

/// Prints the protocol's events on stdout. On a terminal one progress line is rewritten every
/// 2 s; in a log file a line is added every 30 s.
struct Printer {
  bool tty = ::isatty(::fileno(stdout));
  bool open = false;  ///< a progress line without its newline is on the terminal
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();

  void end_line() {
    if (open) std::fputc('\n', stdout);
    open = false;
  }
  void message(std::string_view line) {
    end_line();
    std::printf("%.*s\n", int(line.size()), line.data());
    std::fflush(stdout);
  }
  void step(const vp::StepEvent& e) {
    const auto& p = e.progress;
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(tty ? 2 : 30) || p.batch == p.batches) return;
    last = now;
    std::printf("%s  %s epoch %d/%d batch %zu/%zu  loss %.4f  acc %.3f  %.0f img/s  ETA %s   %s", tty ? "\r" : "",
                e.title.c_str(), p.epoch, p.epochs, p.batch, p.batches, p.loss, p.accuracy, p.images_per_second,
                hms(p.eta_seconds).c_str(), tty ? "" : "\n");
    open = tty;
    std::fflush(stdout);
  }
  void epoch(const vp::EpochEvent& e) {
    const auto& r = e.report;
    const std::string eta = std::isnan(e.eta_all_seconds) ? "" : "  ETA all " + hms(e.eta_all_seconds);
    char val_text[64] = "";
    if (!std::isnan(r.val_accuracy)) std::snprintf(val_text, sizeof val_text, " | val loss %.4f acc %.3f", r.val_loss, r.val_accuracy);
    if (e.parallel) end_line();
    std::printf("%s  %s epoch %d/%d  lr %.2e  train loss %.4f acc %.3f%s%s  (%.1f s, %.0f img/s)%s\n",
                open ? "\r" : "", e.title.c_str(), r.epoch, e.epochs, r.lr, r.train_loss, r.train_accuracy, val_text,
                r.best ? " *best" : "", r.seconds, r.images_per_second, eta.c_str());
    open = false;
    std::fflush(stdout);
  }
};

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  args.o.stop = &g_stop;
  std::signal(SIGINT, on_sigint);
  Printer printer;
  const vp::Events events{
      .message = [&](std::string_view line) { printer.message(line); },
      .step = [&](const vp::StepEvent& e) { printer.step(e); },
      .epoch = [&](const vp::EpochEvent& e) { printer.epoch(e); },
  };
  try {
    {  // the output folder must take files: find out now, not after decoding the study
      std::error_code ec;
      fs::create_directories(args.o.out, ec);
      if (ec) throw vitiq::IoError("cannot create the output folder '" + args.o.out.string() + "' (" + ec.message() + ")");
      try {
        vitiq::io::atomic_write(args.o.out / ".vitiq-write-test", std::string_view());
      } catch (const vitiq::IoError& e) {
        throw vitiq::IoError("the output folder '" + args.o.out.string() + "' is not writable (" + e.what() + ")");
      }
      fs::remove(args.o.out / ".vitiq-write-test", ec);
    }
    const vp::Outcome outcome = vp::run(args.o, events);
    return outcome.stopped ? 130 : 0;
  } catch (const std::exception& e) {
    printer.end_line();  // one line on stderr; first end the progress line that may be open on stdout
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}
