// examples/eval.cpp -- vitiq-eval: evaluate the artificial individual observers (AIOs) of a
// training run on the test split of their study, beside the baselines a useful AIO must beat.
//
//   vitiq-eval --data STUDY --runs RUNS --out REPORT [--preset aio] [--tta 1|2|8] [--threads N]
//
// Runs every model of RUNS (observer_<id>/best.safetensors and aio0/best.safetensors, as
// vitiq-train writes them) on the test stimuli of STUDY (all non-overlapping tiles of a stimulus,
// probabilities averaged), then vitiq::eval::evaluate_run() computes per AIO the metrics against
// its observer's test votes, the model x observer cross accuracy, the panel against the MOS, and
// the baselines (majority vote, image-blind Q look-up, self-agreement, Bayes ceiling from
// STUDY/ground_truth.json; with STUDY/ground_truth_stimuli.csv also each AIO's accuracy expected
// under its observer's true vote distributions, free of the test votes' sampling noise). REPORT receives summary.json, CSV files and PNG figures (cairo, via
// examples/plot/figures.hpp); a table is printed at the end.
// Exit status: 0 done, 1 error (one line on stderr), 2 usage error.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "plot/figures.hpp"
#include "vitiq/data/ground_truth.hpp"
#include "vitiq/data/study.hpp"
#include "vitiq/eval/study_eval.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fs = std::filesystem;
namespace ev = vitiq::eval;

namespace {

struct Args {
  fs::path data, runs, out;
  std::string preset;  // empty: the model card's preset, else aio
  int threads = 0;
  int tta = 1;
};

Args parse_args(int argc, char** argv) {
  Args a;
  CLI::App app("Evaluates every AIO of a training run on the study's test split, beside its baselines.\n"
               "Example: vitiq-eval --data study --runs runs --out report", "vitiq-eval");
  app.add_option("--data", a.data, "study folder: images/, ratings.csv, split.csv, optionally ground_truth.json")
      ->required();
  app.add_option("--runs", a.runs, "run folder of vitiq-train: observer_<id>/best.safetensors, aio0/best.safetensors")
      ->required();
  app.add_option("--out", a.out,
                 "report folder (created): summary.json, per_aio.csv, cross_accuracy.csv, panel.csv, mos_test.csv, "
                 "confusion_<aio>.csv, predictions.csv and PNG figures")
      ->required();
  app.add_option("--preset", a.preset,
                 "model configuration of the weights: tiny, cifar, aio, iqa, seed (default: the preset in the "
                 "models' card, else aio)")
      ->check(vitiq::cli::preset_name());
  app.add_option("--tta", a.tta,
                 "views per tile: 1 (the tile as it is, default), 2 (also mirrored left-right, the flip of training "
                 "crops), 8 (every symmetry of the square); a stimulus' probabilities are the mean over all its views")
      ->check(CLI::IsMember(std::vector<int>{1, 2, 8}));
  app.add_option("--threads", a.threads, "OpenMP threads (default: all cores)")->check(CLI::Range(1, 4096));
  vitiq::cli::parse(app, argc, argv);
  return a;
}

/// Load `run`'s weights into `model`; a configuration mismatch names the preset.
template <class Model>
void load(Model& model, const ev::ModelRun& run, const std::string& preset) {
  try {
    vitiq::load_weights(model, run.weights);
  } catch (const vitiq::ConfigMismatch& e) {
    throw vitiq::Error(std::string(e.what()) + " (wrong --preset? evaluated with --preset " + preset + ")");
  }
}

/// Every model's vote probabilities on the test stimuli of the study (tiles of the model's input
/// size, averaged). All weights are checked before any image is decoded.
template <vitiq::Config C>
std::vector<ev::ModelPredictions> predict_all(const std::vector<ev::ModelRun>& runs, const fs::path& data,
                                              const std::vector<std::string>& names, const std::string& preset,
                                              int tta) {
  for (const auto& run : runs) {
    vitiq::ViT<C> model({}, 1);
    load(model, run, preset);
  }
  const auto stimuli = vitiq::load_stimuli(data, names);
  for (const auto& s : stimuli)
    if (s.height < C.image_size || s.width < C.image_size)
      throw vitiq::Error("image '" + s.name + "' is " + std::to_string(s.width) + " x " + std::to_string(s.height) +
                         ", smaller than the " + std::to_string(C.image_size) + "-pixel input of preset " + preset);
  vitiq::TileEvalSource<float> source(stimuli, C.image_size, true, tta);
  std::size_t tiles = 0;
  for (std::size_t i = 0; i < source.size(); ++i) tiles += source.views(i);
  std::vector<ev::ModelPredictions> out;
  for (const auto& run : runs) {
    vitiq::ViT<C> model({}, 1);
    load(model, run, preset);
    const auto t0 = std::chrono::steady_clock::now();
    ev::ModelPredictions p;
    p.name = run.name;
    p.observer = run.observer;
    for (const auto& s : stimuli) p.images.push_back(s.name);
    p.probabilities = vitiq::predict_probabilities(model, source);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %-16s %zu stimuli, %zu views in %.1f s (%.0f views/s)\n", run.name.c_str(), stimuli.size(), tiles, sec,
                double(tiles) / std::max(sec, 1e-9));
    std::fflush(stdout);
    out.push_back(std::move(p));
  }
  return out;
}

// ------------------------------------------------------------------ figures

std::string fmt3(double v) { return std::isnan(v) ? "n/a" : plot::format("%.3f", v); }

void figure_confusion(const ev::StudyEvaluation& e, const ev::AioEvaluation& a, const fs::path& path) {
  plot::HeatMap h;
  const auto& r = a.report;
  const ev::ObserverBaselines* b = e.baselines_of(a);
  h.title = a.observer.empty() ? a.name + " vs JPEG band (" + std::to_string(r.count) + " test stimuli)"
                               : a.name + " vs observer " + a.observer + " (" + std::to_string(r.count) + " test votes)";
  h.x_label = a.observer.empty() ? "predicted band" : "predicted vote (arg-max)";
  h.y_label = a.observer.empty() ? "true band" : "observer's vote";
  h.colorbar_label = "count";
  h.value_format = "%.0f";
  h.vmin = 0;
  for (int k = 1; k <= e.K; ++k) h.row_labels.push_back(std::to_string(k)), h.col_labels.push_back(std::to_string(k));
  for (const auto& row : r.confusion) {
    long total = 0;
    for (long c : row) total += c;
    std::vector<double> v;
    std::vector<std::string> sub;
    for (long c : row) {
      v.push_back(double(c));
      sub.push_back(total ? plot::format("%.0f%%", 100.0 * double(c) / double(total)) : "");
    }
    h.values.push_back(v);
    h.sublabels.push_back(sub);
  }
  plot::Canvas cv(620, 600);
  plot::draw_heat_map(cv, {10, 0, 600, 540}, h);
  std::string foot = "exact " + fmt3(r.exact_accuracy) + "   +-1 " + fmt3(r.within_one) + "   kappa " + fmt3(r.quadratic_kappa);
  if (b) foot += "   Q look-up " + fmt3(b->q_lookup.exact_accuracy) + "   ceiling " + fmt3(b->truth.bayes_ceiling);
  plot::text(cv.cr(), 310, 555, foot, 12, 0.5, 0);
  plot::text(cv.cr(), 310, 575, std::string("cells: count and share of the row (") + (a.observer.empty() ? "true band)" : "observer's vote)"), 11, 0.5,
             0, false, 0, {0.4, 0.4, 0.4});
  cv.save_png(path);
}

void figure_distribution(const ev::StudyEvaluation& e, const fs::path& path) {
  const std::size_t O = e.observers.size(), per_row = std::min<std::size_t>(O, 3), rows = (O + per_row - 1) / per_row;
  const double pw = 430, ph = 380;
  plot::Canvas cv(int(pw * double(per_row)), int(ph * double(rows) + 40));
  plot::text(cv.cr(), cv.width() / 2.0, 10, "Rating distribution per observer and JPEG band (all splits)", 16, 0.5, 0, true);
  for (std::size_t o = 0; o < O; ++o) {
    plot::StackedBars b;
    b.title = "observer " + e.observers[o];
    b.x_label = "band (file name _I<band>_)";
    b.y_label = "share of votes (%)";
    b.legend_title = "vote";
    b.y_max = 110;  // room for the n= notes above the bars
    b.legend = o % per_row == per_row - 1 || o + 1 == O;
    for (int k = 1; k <= e.K; ++k) b.stack_labels.push_back(std::to_string(k)), b.colours.push_back(plot::vote_colour(k, e.K));
    for (int band = 1; band <= ev::kBands; ++band) {
      const auto& counts = e.distribution[o][std::size_t(band - 1)];
      long total = 0;
      for (long c : counts) total += c;
      std::vector<double> v;
      for (long c : counts) v.push_back(total ? 100.0 * double(c) / double(total) : 0.0);
      b.categories.push_back(plot::format("I%d", band));
      b.values.push_back(v);
      b.bar_notes.push_back(plot::format("n=%ld", total));
    }
    const double x = pw * double(o % per_row), y = 40 + ph * double(o / per_row);
    plot::draw_stacked_bars(cv, {x, y, pw - (b.legend ? 0 : 40), ph - 10}, b);
  }
  cv.save_png(path);
}

bool figure_training(const ev::ModelRun& run, const fs::path& path) {
  const ev::TrainingCurve c = ev::read_training_curve(run.dir);
  if (c.epochs.empty()) return false;
  std::vector<double> x, tl, vl, ta, va;
  std::vector<bool> best;
  for (const auto& r : c.epochs) {
    x.push_back(r.x), tl.push_back(r.train_loss), vl.push_back(r.val_loss), ta.push_back(r.train_accuracy),
        va.push_back(r.val_accuracy), best.push_back(r.best);
  }
  const plot::Rgb train_c = plot::category_colour(0), val_c = plot::category_colour(1);
  const bool sessions = !c.session_starts.empty();
  const std::string what = run.observer.empty() ? "band labels" : "observer " + run.observer + "'s votes";
  plot::Canvas cv(1200, 470);
  plot::text(cv.cr(), 600, 10, "Training of " + run.name + " (" + what + (sessions ? ", session by session)" : ")"), 16, 0.5, 0, true);
  for (int panel = 0; panel < 2; ++panel) {
    plot::LineChart l;
    l.title = panel == 0 ? "loss (cross-entropy)" : "accuracy (exact vote / band)";
    l.x_label = sessions ? "epoch (all sessions)" : "epoch";
    l.y_label = panel == 0 ? "loss" : "accuracy";
    l.vlines = c.session_starts;
    for (int id : c.session_ids) l.vline_labels.push_back(plot::format("session %d", id));
    l.x_integer = true;
    plot::Series tr{"train", x, panel == 0 ? tl : ta, train_c, true, false, true, {}, {}};
    plot::Series vs{"validation", x, panel == 0 ? vl : va, val_c, true, true, true, {}, best};
    l.series = {tr, vs};
    l.highlight_label = "best (kept)";
    if (panel == 1) l.y_min = 0, l.y_max = 1, l.legend_right = false;
    plot::draw_line_chart(cv, {600.0 * panel, 40, 600, 425}, l);
  }
  cv.save_png(path);
  return true;
}

void figure_cross(const ev::StudyEvaluation& e, const fs::path& path) {
  plot::HeatMap h;
  h.title = "Exact accuracy of every model against every observer";
  h.x_label = "observer (test votes)";
  h.y_label = "model";
  h.colorbar_label = "exact accuracy";
  h.value_format = "%.3f";
  for (const auto& o : e.observers) h.col_labels.push_back("obs " + o);
  for (std::size_t m = 0; m < e.aios.size(); ++m) {
    h.row_labels.push_back(e.aios[m].name + (e.aios[m].observer.empty() ? " (band)" : ""));
    h.values.push_back(e.cross[m]);
  }
  const double cell = 110;
  const int w = int(std::max(560.0, cell * double(e.observers.size()) + 330));
  const int hh = int(std::max(380.0, cell * double(e.aios.size()) + 120));
  plot::Canvas cv(w, hh + 20);
  plot::draw_heat_map(cv, {10, 0, double(w) - 10, double(hh)}, h);
  plot::text(cv.cr(), w / 2.0, hh, "diagonal: each AIO against its own observer", 11, 0.5, 0, false, 0, {0.4, 0.4, 0.4});
  cv.save_png(path);
}

void figure_panel(const ev::StudyEvaluation& e, const fs::path& path) {
  std::vector<double> mos, ci;
  for (const auto& m : e.mos) mos.push_back(m.mean), ci.push_back(m.ci95_halfwidth);
  plot::LineChart l;
  l.title = "Panel of " + std::to_string(e.panel.members.size()) + " AIOs vs MOS (" + std::to_string(e.test_images.size()) +
            " test stimuli, bars: 95 % CI of the MOS)";
  l.x_label = "MOS of the observers";
  l.y_label = "predicted MOS";
  l.x_min = 0.8, l.x_max = e.K + 0.2, l.y_min = 0.8, l.y_max = e.K + 0.2;
  l.diagonal = true;
  l.legend_right = false;
  if (!e.panel.mean_expected.empty())
    l.series.push_back({"AIO mean expected vote (PLCC " + fmt3(e.panel.expected.plcc) + ", SRCC " + fmt3(e.panel.expected.srcc) + ")",
                        mos, e.panel.mean_expected, plot::category_colour(0), false, false, true, ci, {}});
  if (!e.panel.q_lookup_mean.empty())
    l.series.push_back({"mean Q look-up, image-blind (PLCC " + fmt3(e.panel.q_lookup.plcc) + ", SRCC " + fmt3(e.panel.q_lookup.srcc) + ")",
                        mos, e.panel.q_lookup_mean, plot::category_colour(1), false, false, true, {}, {}});
  plot::Canvas cv(720, 660);
  plot::draw_line_chart(cv, {0, 0, 720, 660}, l);
  cv.save_png(path);
}

template <vitiq::Config C>
int run(const Args& a) {
  std::error_code fe;
  if (!fs::is_directory(a.data, fe)) throw vitiq::Error("study folder '" + a.data.string() + "' does not exist");
  if (!fs::is_directory(a.runs, fe)) throw vitiq::Error("run folder '" + a.runs.string() + "' does not exist");
  const vitiq::data::Study study = vitiq::data::read_study(a.data);
  const std::vector<ev::ModelRun> runs = ev::find_models(a.runs);
  if (runs.empty())
    throw vitiq::Error("no AIOs found in '" + a.runs.string() + "' (expected observer_<id>/best.safetensors or aio0/best.safetensors)");
  const fs::path gt_path = a.data / "ground_truth.json";
  vitiq::data::GroundTruth truth = vitiq::data::read_ground_truth(gt_path);
  const fs::path gt_stimuli_path = a.data / "ground_truth_stimuli.csv";
  const std::size_t stimulus_truth = vitiq::data::read_stimulus_truth(gt_stimuli_path, truth);
  const std::vector<std::string> names = study.test_images();
  if (names.empty()) throw vitiq::Error((a.data / "split.csv").string() + ": no rated stimulus has split 'test'");

  std::string list;
  for (const auto& r : runs) list += (list.empty() ? "" : ", ") + r.name;
  std::printf("vitiq-eval: %zu ratings, %zu observers, %zu test stimuli; %zu models (%s), preset %s\n", study.ratings.size(),
              study.observers().size(), names.size(), runs.size(), list.c_str(), a.preset.c_str());
  std::printf("ground truth: %s\n", fs::exists(gt_path, fe)
                                        ? (gt_path.string() + " (" + std::to_string(truth.size()) + " observers read)").c_str()
                                        : "none (no ground_truth.json: ceiling n/a)");
  if (stimulus_truth)
    std::printf("per-stimulus ground truth: %s (%zu observers)\n", gt_stimuli_path.string().c_str(), stimulus_truth);
  std::fflush(stdout);
  const auto predictions = predict_all<C>(runs, a.data, names, a.preset, a.tta);

  const ev::StudyEvaluation e = ev::evaluate_run(study, predictions, truth);
  namespace js = vitiq::json;
  js::Value settings = js::Value::make_object();
  settings.set("data", js::Value::make_string(fs::absolute(a.data).string()));
  settings.set("runs", js::Value::make_string(fs::absolute(a.runs).string()));
  settings.set("preset", js::Value::make_string(a.preset));
  settings.set("tta", js::Value::make_number(a.tta));
  settings.set("ground_truth", fs::exists(gt_path, fe) ? js::Value::make_string(fs::absolute(gt_path).string()) : js::Value());
  js::Value training = js::Value::make_object();  // per model: the epoch whose weights were kept
  for (const auto& r : runs) {
    const ev::TrainingCurve c = ev::read_training_curve(r.dir);
    js::Value t = js::Value::make_object();
    t.set("epochs", js::Value::make_number(double(c.epochs.size())));
    t.set("sessions", js::Value::make_number(double(c.session_starts.size() + (c.epochs.empty() ? 0 : 1))));
    const ev::EpochRecord* best = nullptr;
    for (const auto& ep : c.epochs)
      if (ep.best) best = &ep;  // the last new best is the one kept
    t.set("best_x", js::Value::make_number(best ? best->x : ev::kNaN));
    t.set("best_val_accuracy", js::Value::make_number(best ? best->val_accuracy : ev::kNaN));
    t.set("best_val_loss", js::Value::make_number(best ? best->val_loss : ev::kNaN));
    training.set(r.name, t);
  }
  ev::write_report(e, a.out, {{"settings", settings}, {"training", training}});

  std::vector<std::string> figures;
  const auto add = [&](const fs::path& p) { figures.push_back(p.filename().string()); };
  for (const auto& aio : e.aios) {
    figure_confusion(e, aio, a.out / ("confusion_" + aio.name + ".png"));
    add(a.out / ("confusion_" + aio.name + ".png"));
  }
  figure_distribution(e, a.out / "rating_distribution.png");
  add("rating_distribution.png");
  for (const auto& r : runs)
    if (figure_training(r, a.out / ("training_" + r.name + ".png"))) add("training_" + r.name + ".png");
  figure_cross(e, a.out / "cross_accuracy.png");
  add("cross_accuracy.png");
  if (!e.panel.members.empty()) {
    figure_panel(e, a.out / "panel_scatter.png");
    add("panel_scatter.png");
  }

  for (const auto& w : e.warnings) std::printf("warning: %s\n", w.c_str());
  std::printf("\n%s", ev::format_table(e).c_str());
  std::printf("\n(aio0 is scored against the JPEG band; Q-look = image-blind per-observer Q look-up, major. = majority vote,\n"
              " self = exact agreement of the observer's repeated votes, share = exact / ceiling)\n");
  std::string figs;
  for (const auto& f : figures) figs += (figs.empty() ? "" : " ") + f;
  std::printf("\nreport: %s\n  summary.json per_aio.csv cross_accuracy.csv panel.csv mos_test.csv predictions.csv confusion_*.csv\n  %s\n",
              fs::absolute(a.out).c_str(), figs.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
#if defined(_OPENMP)
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  int rc = 0;
  try {
    {  // the report folder must take files: find out now, not after the evaluation
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
    Args a = args;
    if (a.preset.empty()) {  // the preset the models were trained with, from their model card
      std::error_code ec;
      const auto runs = fs::is_directory(a.runs, ec) ? ev::find_models(a.runs) : std::vector<ev::ModelRun>{};
      const auto card = runs.empty() ? std::nullopt : vitiq::read_model_card(runs.front().weights);
      a.preset = card ? card->preset : "aio";
    }
    if (!vitiq::dispatch_preset(a.preset, [&]<vitiq::Config C>() { rc = run<C>(a); }))
      throw vitiq::Error("the model card names an unknown preset '" + a.preset + "' (give --preset)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitiq-eval: %s\n", e.what());
    return 1;
  }
  return rc;
}
