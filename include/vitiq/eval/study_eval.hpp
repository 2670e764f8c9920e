// vitiq/eval/study_eval.hpp -- evaluate a whole per-observer study: every artificial individual
// observer (AIO) of a training run against its observer's test votes, every AIO against every
// observer, the panel of AIOs against the MOS, and the baselines each result must be read beside
// (majority vote, image-blind Q look-up, the observer's self-agreement, the Bayes ceiling of a
// simulated study), and whether each AIO's margin over the baselines and the other AIOs is
// significant (eval/significance.hpp: exact McNemar and a stimulus bootstrap, paired on the same
// test votes). Also reads the study and the run folders from disk, and writes the report
// (summary.json and CSV files, all atomically).
//
// Nothing here runs a model: a caller turns each AIO's weights into per-stimulus vote
// probabilities (vitiq::predict_probabilities over the test stimuli) and hands them to
// evaluate_run(). So this header needs no image or model code, and a user can evaluate
// probabilities from anywhere (PyTorch, another program) the same way:
// @code
// namespace ev = vitiq::eval;
// const vitiq::data::Study study = vitiq::data::read_study("study");
// std::vector<ev::ModelPredictions> preds;   // one per AIO: images [N], probabilities [N, 5]
// ...                                        // fill from vitiq::predict_probabilities
// const ev::StudyEvaluation e = ev::evaluate_run(study, preds, vitiq::data::read_ground_truth("study/ground_truth.json"));
// ev::write_report(e, "report");
// std::fputs(ev::format_table(e).c_str(), stdout);
// @endcode
//
// Study layout: data/study.hpp (images/, ratings.csv, split.csv; file names
// `<id><source>_I<band>_Q<q>.jpeg` give band and Q), optionally ground_truth.json (data/ground_truth.hpp).
// Run layout (vitiq-train --out RUNS): RUNS/aio0/ and RUNS/observer_<id>/, each with
// best.safetensors and metrics.csv (iterative mode: session_<s>/metrics.csv per session).
//
// Conventions: votes 1..K; "each vote counts": an observer who rated a test stimulus twice
// contributes both votes (the AIO's one prediction is scored against each); NaN marks an
// undefined or unavailable number (JSON null, "n/a" in the table).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitiq/data/csv.hpp"
#include "vitiq/data/ground_truth.hpp"
#include "vitiq/data/ratings.hpp"
#include "vitiq/data/stats.hpp"
#include "vitiq/data/study.hpp"
#include "vitiq/error.hpp"
#include "vitiq/eval/metrics.hpp"
#include "vitiq/eval/report.hpp"
#include "vitiq/eval/significance.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::eval {

// ---------------------------------------------------------------------------------------------
// The study, its ground truth and self-agreement are vitiq::data's (data/study.hpp,
// data/ground_truth.hpp, data/stats.hpp): one definition that every program uses.

using data::GroundTruth;
using data::GroundTruthObserver;
using data::observer_less;
using data::SelfAgreement;
using data::Study;

// ---------------------------------------------------------------------------------------------
// The runs

/// @brief One trained model of a run folder.
struct ModelRun {
  std::string name;               ///< "aio0" or "observer_ID"
  std::string observer;           ///< the observer id; empty for AIO0 (the band model)
  std::filesystem::path dir;      ///< RUNS/name
  std::filesystem::path weights;  ///< RUNS/name/best.safetensors
};

/// @brief The models of a run folder that have best.safetensors: every observer_<id>/ (ordered by
/// observer_less() of the id), then aio0/. Throws IoError when `runs` is not a directory.
inline std::vector<ModelRun> find_models(const std::filesystem::path& runs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(runs, ec)) throw IoError(runs.string() + ": not a directory");
  std::vector<ModelRun> out;
  for (const auto& e : fs::directory_iterator(runs)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("observer_", 0) != 0 || name.size() == 9) continue;
    if (!fs::is_regular_file(e.path() / "best.safetensors", ec)) continue;
    out.push_back({name, name.substr(9), e.path(), e.path() / "best.safetensors"});
  }
  std::sort(out.begin(), out.end(), [](const ModelRun& a, const ModelRun& b) { return observer_less(a.observer, b.observer); });
  if (fs::is_regular_file(runs / "aio0" / "best.safetensors", ec))
    out.push_back({"aio0", "", runs / "aio0", runs / "aio0" / "best.safetensors"});
  return out;
}

/// @brief One epoch of a training curve (a row of metrics.csv).
struct EpochRecord {
  double x = 0;        ///< position on the curve: epochs since the start, over all sessions
  int session = 0;     ///< session number (iterative fine-tuning), 0 for a single run
  int epoch = 0;       ///< epoch within its run or session
  double lr = kNaN;              ///< learning rate at the end of the epoch
  double train_loss = kNaN;      ///< mean training loss of the epoch
  double train_accuracy = kNaN;  ///< training accuracy of the epoch
  double val_loss = kNaN;        ///< validation loss (NaN without validation)
  double val_accuracy = kNaN;    ///< validation accuracy (NaN without validation)
  bool best = false;   ///< a new best validation score (its weights were kept)
};

/// @brief A model's training history: one record per epoch, sessions concatenated.
struct TrainingCurve {
  std::vector<EpochRecord> epochs;  ///< every epoch of every session, in order
  /// x of the boundary before each session after the first: half-way between the previous
  /// session's last epoch and this session's first.
  std::vector<double> session_starts;
  std::vector<int> session_ids;  ///< [session_starts] the session that starts there
};

/// @brief Read the training curve of a model folder: `dir`/metrics.csv when it exists, else
/// `dir`/session_<s>/metrics.csv of every session in order of s, concatenated (x continues
/// across sessions). Columns used: epoch, lr, train_loss, train_accuracy, val_loss,
/// val_accuracy, best (missing ones stay NaN). Empty when there is no metrics.csv.
/// Throws FormatError on a malformed file.
inline TrainingCurve read_training_curve(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<int, fs::path>> files;
  std::error_code ec;
  if (fs::is_regular_file(dir / "metrics.csv", ec)) {
    files.emplace_back(0, dir / "metrics.csv");
  } else if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      const auto s = name.rfind("session_", 0) == 0 ? data::parse_int(std::string_view(name).substr(8)) : std::nullopt;
      if (s && *s >= 0 && *s <= 1000000 && fs::is_regular_file(e.path() / "metrics.csv", ec))
        files.emplace_back(int(*s), e.path() / "metrics.csv");
    }
    std::sort(files.begin(), files.end());
  }
  TrainingCurve curve;
  double offset = 0;
  for (std::size_t f = 0; f < files.size(); ++f) {
    const data::CsvTable t = data::read_csv_table(files[f].second);
    const std::size_t epoch_column = t.require("epoch");
    if (f > 0) curve.session_starts.push_back(offset + 0.5), curve.session_ids.push_back(files[f].first);
    int last_epoch = 0;
    for (const auto& row : t.rows) {
      EpochRecord r;
      r.session = files[f].first;
      // A number, or NaN for an empty field or "nan" (metrics.csv writes NaN where there was no
      // validation); "inf" / "-inf" are read as such (the epoch check below refuses them).
      const auto get = [&](const char* col, double& out) {
        const auto c = t.find(col);
        if (!c) return;
        const std::string_view field = data::trim(row.fields[*c]);
        if (field.empty() || field == "nan" || field == "NaN" || field == "-nan") return void(out = kNaN);
        if (field == "inf" || field == "-inf") return void(out = (field[0] == '-' ? -1 : 1) * std::numeric_limits<double>::infinity());
        const auto v = data::parse_double(field);
        if (!v) {
          if (std::string_view(col) == "epoch") throw FormatError(t.where(row) + "epoch '" + std::string(field) + "' is not an epoch number");
          throw FormatError(t.where(row) + "column '" + col + "' is not a number");
        }
        out = *v;
      };
      double epoch = 0, best = 0;
      get("epoch", epoch);
      get("lr", r.lr);
      get("train_loss", r.train_loss);
      get("train_accuracy", r.train_accuracy);
      get("val_loss", r.val_loss);
      get("val_accuracy", r.val_accuracy);
      get("best", best);
      if (!(std::abs(epoch) <= 1e9))  // NaN, inf, 1e300: converting those to int is undefined
        throw FormatError(t.where(row) + "epoch '" + std::string(data::trim(row.fields[epoch_column])) +
                          "' is not an epoch number");
      r.epoch = int(epoch);
      r.best = best == 1;
      r.x = offset + epoch;
      last_epoch = std::max(last_epoch, r.epoch);
      curve.epochs.push_back(r);
    }
    offset += last_epoch;
  }
  return curve;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// @brief One model's output on the test stimuli.
struct ModelPredictions {
  std::string name;                  ///< "aio0" or "observer_<id>" (any unique name)
  std::string observer;              ///< the observer it models; empty for AIO0 (the band model)
  std::vector<std::string> images;   ///< [N] stimulus names; must cover every test image
  std::vector<double> probabilities; ///< [N, K] row-major: P(vote k+1 | image i), rows sum to 1
};

/// @brief The image-blind baselines of one observer, scored on their test votes.
struct ObserverBaselines {
  std::string observer;            ///< the observer id
  std::size_t train_votes = 0;     ///< votes on train-split stimuli (fit data)
  std::size_t test_votes = 0;      ///< votes on test-split stimuli (score data)
  int majority_vote = 0;           ///< most frequent training vote (ties: smallest); 0 if none
  ClassificationReport majority{}; ///< always predicting majority_vote (expected = that vote)
  bool q_lookup_available = false; ///< false when a train or test file name has no _Q<q>
  std::map<int, int> q_table;      ///< fitted Q -> vote
  std::vector<int> q_predictions;  ///< [N] the look-up's vote per test stimulus (0 if unavailable)
  ClassificationReport q_lookup{}; ///< the Q look-up (QLookup fit on the train votes)
  SelfAgreement self;              ///< data::self_agreement(): the test-retest rule
  GroundTruthObserver truth;       ///< from ground_truth.json, NaN when absent
  /// With per-stimulus ground truth (truth.stimulus_probabilities covering every test stimulus the
  /// observer rated), else NaN: the Bayes predictor (arg-max of the true vote distribution) scored
  /// against the observer's actual test votes, and its expected accuracy (the mean largest
  /// probability: the Bayes ceiling of these test votes). Their difference is the luck of the draw
  /// of the test votes, which no model can do anything about.
  double bayes_realized_accuracy = kNaN;
  double bayes_expected_accuracy = kNaN;  ///< see bayes_realized_accuracy
  /// The Q look-up's exact accuracy in expectation over the observer's vote noise (mean true
  /// probability of its vote), NaN without per-stimulus ground truth or Q look-up.
  double q_lookup_expected_accuracy = kNaN;
};

/// @brief One model's evaluation.
struct AioEvaluation {
  std::string name;                 ///< as ModelPredictions::name
  std::string observer;             ///< as ModelPredictions::observer (empty for AIO0)
  std::vector<int> predicted;       ///< [N] arg-max vote per test stimulus (ties: smallest vote)
  std::vector<double> expected;     ///< [N] expected vote sum_k k p_k
  std::vector<double> probabilities;///< [N, K] in test_images order
  /// Against the observer's test votes (each vote counts); for AIO0 against the JPEG band of
  /// each test stimulus (file name _I<band>_; stimuli without a band in 1..K are left out).
  ClassificationReport report{};
  double share_of_ceiling = kNaN;   ///< report.exact_accuracy / Bayes ceiling (NaN if unknown)
  /// With per-stimulus ground truth, else NaN: the exact accuracy the model's arg-max votes have in
  /// expectation over the observer's vote noise (mean true probability of the predicted vote over
  /// the observer's test votes), and its share of the Bayes ceiling. Free of the sampling noise of
  /// the test votes (+-0.03 for 300 votes), so it shows the model's own distance to the ceiling.
  double expected_accuracy = kNaN;
  double expected_share_of_ceiling = kNaN;  ///< expected_accuracy / Bayes ceiling
  /// Paired significance on the observer's test votes (eval/significance.hpp: exact McNemar and a
  /// bootstrap that resamples test stimuli), AIO minus the observer's Q look-up: accuracy and MAE
  /// of the arg-max vote, PLCC of the expected vote. Not available() for AIO0, an observer
  /// without test votes, or without a Q look-up.
  ModelComparison vs_q_lookup_test;
  /// The same against the majority vote (PLCC undefined: NaN); not available() without
  /// training votes.
  ModelComparison vs_majority_test;
  /// The same against every other model of the run (AIO0 included), in the order of
  /// StudyEvaluation::aios, on this AIO's observer's test votes; empty for AIO0 and an observer
  /// without test votes.
  std::vector<ModelComparison> vs_aios;
};

/// @brief The panel: the per-observer AIOs averaged, against the MOS of the test stimuli.
struct PanelEvaluation {
  std::vector<std::string> members;  ///< names of the AIOs averaged (those with an observer)
  std::vector<double> mean_argmax;   ///< [N] mean of the members' arg-max votes
  std::vector<double> mean_expected; ///< [N] mean of the members' expected votes
  std::vector<double> q_lookup_mean; ///< [N] mean of the observers' Q look-up votes (baseline)
  PanelReport argmax{kNaN, kNaN, kNaN, kNaN};    ///< mean_argmax against the MOS
  PanelReport expected{kNaN, kNaN, kNaN, kNaN};  ///< mean_expected against the MOS
  PanelReport q_lookup{kNaN, kNaN, kNaN, kNaN};  ///< q_lookup_mean against the MOS (image-blind baseline)
};

/// @brief Settings of evaluate_run() beyond the data: the paired bootstrap of the significance
/// comparisons (AioEvaluation::vs_q_lookup_test and the others).
struct EvalOptions {
  /// Bootstrap resamples of the test stimuli per comparison; 0 skips the bootstrap (NaN
  /// intervals, verdicts "not significant"; McNemar p-values are still computed).
  int bootstrap = 2000;
  std::uint64_t seed = 1;  ///< seed of the resampling (every comparison uses the same resamples)
};

/// @brief Everything evaluate_run() computes.
struct StudyEvaluation {
  int K = 5;                                          ///< number of vote classes
  EvalOptions options;                                ///< the options evaluate_run() was given
  std::vector<std::string> test_images;               ///< [N] sorted names
  std::vector<int> test_q;                            ///< [N] JPEG Q from the names (-1 if absent)
  std::vector<int> test_band;                         ///< [N] band from the names (0 if absent)
  std::vector<std::string> observers;                 ///< [O] ids, observer_less() order
  std::vector<std::vector<std::vector<int>>> test_votes;  ///< [O][N] -> that observer's votes (session order)
  std::vector<MosStats> mos;                          ///< [N] all observers' votes pooled
  std::vector<ObserverBaselines> baselines;           ///< [O]
  std::vector<AioEvaluation> aios;                    ///< [M] in the order given
  /// [M][O]: exact accuracy of model m against observer o's test votes (each vote counts); NaN
  /// when o has no test votes.
  std::vector<std::vector<double>> cross;
  PanelEvaluation panel;                              ///< the per-observer AIOs as a panel
  /// [O][B][K]: votes of observer o (all splits) on stimuli of band b+1 with vote k+1, B = 5
  /// bands; stimuli without a band in 1..5 are not counted.
  std::vector<std::vector<std::vector<long>>> distribution;
  std::vector<std::string> warnings;                  ///< things worth saying (unknown observer, ...)

  /// Index of observer `id` in observers, -1 if absent.
  int observer_index(const std::string& id) const {
    for (std::size_t i = 0; i < observers.size(); ++i) if (observers[i] == id) return int(i);
    return -1;
  }
  /// The baselines of AIO `a`'s observer, or nullptr (AIO0, unknown observer).
  const ObserverBaselines* baselines_of(const AioEvaluation& a) const {
    const int o = observer_index(a.observer);
    return a.observer.empty() || o < 0 ? nullptr : &baselines[std::size_t(o)];
  }
};

/// @brief Number of JPEG bands in StudyEvaluation::distribution.
inline constexpr int kBands = 5;

/// @brief Evaluate a run: every model against its observer and against every observer, the
/// panel, and the baselines.
///
/// @param study  the ratings and split (data::read_study())
/// @param models one entry per model; each must give probabilities for every test image
///               (study.test_images()); extra images are ignored
/// @param truth  ground truth of a simulated study (read_ground_truth()), may be empty
/// @param K      number of vote classes
///
/// Per observer o (study.observers() order): the test votes are all of o's votes on test
/// stimuli (every session); the majority vote and the Q look-up (QLookup: most frequent vote per
/// JPEG Q, nearest Q for unseen ones) are fit on o's train-split votes and scored like a model
/// (its expected vote = its vote); self-agreement as data::self_agreement() (pairs of votes
/// on one stimulus from two different sessions: the test-retest rule).
/// Per model: arg-max and expected vote per test stimulus; evaluate_votes() against the
/// observer's votes (the prediction repeated for each vote), or for AIO0 against the band.
/// Cross: exact accuracy of every model against every observer. Panel: the per-observer AIOs'
/// mean arg-max and mean expected vote against the pooled MOS (mos_with_ci of every vote on the
/// stimulus), plus the mean of the observers' Q look-ups as the image-blind panel baseline.
/// Significance, per model with an observer that has test votes, on those votes: compare_models()
/// of the AIO against its observer's Q look-up, majority vote and every other model (arg-max
/// votes and expected votes, each vote an item, stimuli resampled: `options.bootstrap` resamples
/// seeded with `options.seed`, 95 % percentile intervals); cost about 3 x bootstrap x
/// test stimuli per comparison, M (M + 1) comparisons for M models.
/// @throws std::invalid_argument when a model lacks a test image, its probabilities do not have
/// N x K entries, K < 2, or options.bootstrap < 0.
inline StudyEvaluation evaluate_run(const Study& study, std::span<const ModelPredictions> models,
                                    const GroundTruth& truth = {}, int K = 5, const EvalOptions& options = {}) {
  if (K < 2) throw std::invalid_argument("vitiq::eval::evaluate_run: K = " + std::to_string(K) + " < 2");
  if (options.bootstrap < 0)
    throw std::invalid_argument("vitiq::eval::evaluate_run: bootstrap = " + std::to_string(options.bootstrap) + " < 0");
  StudyEvaluation ev;
  ev.K = K;
  ev.options = options;
  ev.test_images = study.test_images();
  ev.observers = study.observers();
  // Band and Q of a stimulus name (data::parse_stimulus_name); -1 / 0 when the name carries none.
  const auto name_q = [](std::string_view name) {
    const auto n = data::parse_stimulus_name(name);
    return n.original_form ? n.q : -1;
  };
  const auto name_band = [](std::string_view name) { return data::parse_stimulus_name(name).band; };
  const std::size_t N = ev.test_images.size(), O = ev.observers.size(), k = std::size_t(K);
  std::map<std::string, std::size_t> test_index, obs_index;
  for (std::size_t s = 0; s < N; ++s) {
    test_index[ev.test_images[s]] = s;
    ev.test_q.push_back(name_q(ev.test_images[s]));
    ev.test_band.push_back(name_band(ev.test_images[s]));
  }
  for (std::size_t o = 0; o < O; ++o) obs_index[ev.observers[o]] = o;

  // Votes per observer: test votes by stimulus (session order), training votes with their Q.
  std::vector<std::vector<std::vector<std::pair<int, int>>>> by_session(O, std::vector<std::vector<std::pair<int, int>>>(N));
  std::vector<std::vector<int>> train_votes(O), train_q(O);
  std::vector<bool> train_q_ok(O, true);
  ev.distribution.assign(O, std::vector<std::vector<long>>(kBands, std::vector<long>(k, 0)));
  for (const auto& r : study.ratings) {
    const std::size_t o = obs_index.at(r.observer);
    const auto part = study.split.part(r.image);
    if (part == data::Part::test) by_session[o][test_index.at(r.image)].emplace_back(r.session, r.vote);
    if (part == data::Part::train) {
      train_votes[o].push_back(r.vote);
      const int q = name_q(r.image);
      train_q[o].push_back(q);
      if (q < 0) train_q_ok[o] = false;
    }
    const int band = name_band(r.image);
    if (band >= 1 && band <= kBands && r.vote >= 1 && r.vote <= K) ++ev.distribution[o][std::size_t(band - 1)][std::size_t(r.vote - 1)];
  }
  ev.test_votes.assign(O, std::vector<std::vector<int>>(N));
  std::vector<std::vector<double>> pooled(N);
  for (std::size_t o = 0; o < O; ++o)
    for (std::size_t s = 0; s < N; ++s) {
      auto& v = by_session[o][s];
      std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [session, vote] : v) ev.test_votes[o][s].push_back(vote), pooled[s].push_back(vote);
    }
  for (std::size_t s = 0; s < N; ++s) ev.mos.push_back(mos_with_ci(std::span<const double>(pooled[s])));

  // Flatten: per observer, the test votes and the stimulus of each.
  const auto flat = [&](std::size_t o, std::vector<int>& votes, std::vector<std::size_t>& stim) {
    for (std::size_t s = 0; s < N; ++s)
      for (int v : ev.test_votes[o][s]) votes.push_back(v), stim.push_back(s);
  };
  const auto score_constant = [&](const std::vector<int>& truth_votes, const std::vector<int>& pred) {
    const std::vector<double> expected(pred.begin(), pred.end());
    return evaluate_votes(truth_votes, pred, expected, K);
  };

  // Baselines.
  const bool all_test_q = std::all_of(ev.test_q.begin(), ev.test_q.end(), [](int q) { return q >= 0; });
  for (std::size_t o = 0; o < O; ++o) {
    ObserverBaselines b;
    b.observer = ev.observers[o];
    std::vector<int> tv;
    std::vector<std::size_t> ts;
    flat(o, tv, ts);
    b.train_votes = train_votes[o].size();
    b.test_votes = tv.size();
    if (!train_votes[o].empty()) {
      b.majority_vote = majority_vote(train_votes[o]);
      b.majority = score_constant(tv, std::vector<int>(tv.size(), b.majority_vote));
      if (train_q_ok[o] && all_test_q) {
        QLookup look;
        look.fit(train_q[o], train_votes[o]);
        b.q_lookup_available = true;
        b.q_table = look.table();
        b.q_predictions = look.predict(ev.test_q);
        std::vector<int> pred;
        for (std::size_t i = 0; i < tv.size(); ++i) pred.push_back(b.q_predictions[ts[i]]);
        b.q_lookup = score_constant(tv, pred);
      } else {
        ev.warnings.push_back("observer " + b.observer + ": no Q look-up (a file name lacks _Q<q>)");
      }
    } else {
      ev.warnings.push_back("observer " + b.observer + ": no training votes, no majority or Q look-up baseline");
    }
    if (!b.q_lookup_available) {
      b.q_predictions.assign(N, 0);
      b.q_lookup = evaluate_votes({}, {}, {}, K);
    }
    if (train_votes[o].empty()) b.majority = evaluate_votes({}, {}, {}, K);
    b.self = data::self_agreement(study.ratings, b.observer);
    if (const auto it = truth.find(b.observer); it != truth.end()) b.truth = it->second;
    if (const auto& sp = b.truth.stimulus_probabilities; !sp.empty() && !tv.empty()) {
      double realized = 0, expected = 0, lookup = 0;
      bool complete = true;
      for (std::size_t i = 0; i < tv.size(); ++i) {
        const auto it = sp.find(ev.test_images[ts[i]]);
        if (it == sp.end() || it->second.size() != k) { complete = false; break; }
        const auto& p = it->second;
        const std::size_t best = std::size_t(std::max_element(p.begin(), p.end()) - p.begin());
        realized += double(int(best) + 1 == tv[i]);
        expected += p[best];
        const int q_vote = b.q_lookup_available ? b.q_predictions[ts[i]] : 0;
        if (q_vote >= 1 && q_vote <= K) lookup += p[std::size_t(q_vote - 1)];
      }
      if (complete) {
        b.bayes_realized_accuracy = realized / double(tv.size());
        b.bayes_expected_accuracy = expected / double(tv.size());
        if (b.q_lookup_available) b.q_lookup_expected_accuracy = lookup / double(tv.size());
      } else {
        ev.warnings.push_back("observer " + b.observer + ": the per-stimulus ground truth lacks a test stimulus");
      }
    }
    ev.baselines.push_back(std::move(b));
  }

  // Models.
  for (const auto& m : models) {
    if (m.probabilities.size() != m.images.size() * k)
      throw std::invalid_argument("vitiq::eval::evaluate_run: model '" + m.name + "' has " +
                                  std::to_string(m.probabilities.size()) + " probabilities for " +
                                  std::to_string(m.images.size()) + " images x " + std::to_string(K) + " votes");
    std::map<std::string, std::size_t> row;
    for (std::size_t i = 0; i < m.images.size(); ++i) row[m.images[i]] = i;
    AioEvaluation a;
    a.name = m.name;
    a.observer = m.observer;
    for (std::size_t s = 0; s < N; ++s) {
      const auto it = row.find(ev.test_images[s]);
      if (it == row.end())
        throw std::invalid_argument("vitiq::eval::evaluate_run: model '" + m.name + "' has no prediction for test image '" +
                                    ev.test_images[s] + "'");
      const double* p = m.probabilities.data() + it->second * k;
      std::size_t best = 0;
      double e = 0;
      for (std::size_t c = 0; c < k; ++c) {
        if (p[c] > p[best]) best = c;
        e += double(c + 1) * p[c];
        a.probabilities.push_back(p[c]);
      }
      a.predicted.push_back(int(best) + 1);
      a.expected.push_back(e);
    }
    std::vector<int> tv, pv;
    std::vector<double> xv;
    if (m.observer.empty()) {
      for (std::size_t s = 0; s < N; ++s)
        if (ev.test_band[s] >= 1 && ev.test_band[s] <= K)
          tv.push_back(ev.test_band[s]), pv.push_back(a.predicted[s]), xv.push_back(a.expected[s]);
    } else if (const auto o = obs_index.find(m.observer); o != obs_index.end()) {
      std::vector<std::size_t> ts;
      flat(o->second, tv, ts);
      for (std::size_t s : ts) pv.push_back(a.predicted[s]), xv.push_back(a.expected[s]);
    } else {
      ev.warnings.push_back("model " + m.name + ": observer '" + m.observer + "' has no ratings in the study");
    }
    a.report = evaluate_votes(tv, pv, xv, K);
    if (const ObserverBaselines* b = ev.baselines_of(a)) {
      a.share_of_ceiling = a.report.exact_accuracy / b->truth.bayes_ceiling;
      if (!std::isnan(b->bayes_expected_accuracy)) {  // every test stimulus of the observer has its truth
        const auto& sp = b->truth.stimulus_probabilities;
        std::vector<int> votes;
        std::vector<std::size_t> ts;
        flat(std::size_t(ev.observer_index(a.observer)), votes, ts);
        double expected = 0;
        for (std::size_t s : ts) expected += sp.at(ev.test_images[s])[std::size_t(a.predicted[s] - 1)];
        a.expected_accuracy = expected / double(ts.size());
        a.expected_share_of_ceiling = a.expected_accuracy / b->truth.bayes_ceiling;
      }
    }
    ev.aios.push_back(std::move(a));
  }

  // Cross comparison: [model][observer], each vote counts.
  for (const auto& a : ev.aios) {
    std::vector<double> row(O, kNaN);
    for (std::size_t o = 0; o < O; ++o) {
      long hit = 0, total = 0;
      for (std::size_t s = 0; s < N; ++s)
        for (int v : ev.test_votes[o][s]) ++total, hit += v == a.predicted[s];
      if (total) row[o] = double(hit) / double(total);
    }
    ev.cross.push_back(std::move(row));
  }

  // Paired significance of each AIO against the baselines and the other models, on its
  // observer's test votes (each vote an item, grouped by stimulus).
  for (std::size_t m = 0; m < ev.aios.size(); ++m) {
    AioEvaluation& a = ev.aios[m];
    const ObserverBaselines* b = ev.baselines_of(a);
    if (!b) continue;  // AIO0, or an observer without ratings
    std::vector<int> tv;
    std::vector<std::size_t> ts;
    flat(std::size_t(ev.observer_index(a.observer)), tv, ts);
    if (tv.empty()) continue;
    const auto on_votes = [&](const std::vector<int>& vote, const std::vector<double>* expected) {
      ItemPredictions p;  // per-stimulus predictions repeated for each vote of the stimulus
      for (std::size_t s : ts) p.vote.push_back(vote[s]), p.expected.push_back(expected ? (*expected)[s] : double(vote[s]));
      return p;
    };
    std::vector<ItemPredictions> others;
    std::vector<std::string> names;
    if (b->q_lookup_available) others.push_back(on_votes(b->q_predictions, nullptr)), names.push_back("q_lookup");
    const bool majority = b->majority_vote != 0;  // 0: no training votes, no baselines
    if (majority) others.push_back(on_votes(std::vector<int>(N, b->majority_vote), nullptr)), names.push_back("majority");
    for (std::size_t j = 0; j < ev.aios.size(); ++j)
      if (j != m) others.push_back(on_votes(ev.aios[j].predicted, &ev.aios[j].expected)), names.push_back(ev.aios[j].name);
    BootstrapOptions bo;
    bo.resamples = options.bootstrap;
    bo.seed = options.seed;
    std::vector<ModelComparison> c = compare_models(ts, tv, on_votes(a.predicted, &a.expected), others, names, bo);
    std::size_t next = 0;
    if (b->q_lookup_available) a.vs_q_lookup_test = std::move(c[next++]);
    if (majority) a.vs_majority_test = std::move(c[next++]);
    for (; next < c.size(); ++next) a.vs_aios.push_back(std::move(c[next]));
  }

  // Panel.
  PanelEvaluation& p = ev.panel;
  std::vector<const AioEvaluation*> members;
  for (const auto& a : ev.aios)
    if (!a.observer.empty()) members.push_back(&a), p.members.push_back(a.name);
  std::vector<double> mos(N);
  for (std::size_t s = 0; s < N; ++s) mos[s] = ev.mos[s].mean;
  if (!members.empty()) {
    p.mean_argmax.assign(N, 0);
    p.mean_expected.assign(N, 0);
    for (const AioEvaluation* a : members)
      for (std::size_t s = 0; s < N; ++s) {
        p.mean_argmax[s] += double(a->predicted[s]) / double(members.size());
        p.mean_expected[s] += a->expected[s] / double(members.size());
      }
    p.argmax = evaluate_panel(p.mean_argmax, mos);
    p.expected = evaluate_panel(p.mean_expected, mos);
  }
  std::size_t looked = 0;
  for (const auto& b : ev.baselines) looked += b.q_lookup_available;
  if (looked) {
    p.q_lookup_mean.assign(N, 0);
    for (const auto& b : ev.baselines)
      if (b.q_lookup_available)
        for (std::size_t s = 0; s < N; ++s) p.q_lookup_mean[s] += double(b.q_predictions[s]) / double(looked);
    p.q_lookup = evaluate_panel(p.q_lookup_mean, mos);
  }
  return ev;
}

// ---------------------------------------------------------------------------------------------
// Writing the report

/// @brief A JSON value as indented text (2 spaces); arrays holding no array or object, and
/// objects holding only numbers (e.g. a Q look-up table), stay on one line.
inline std::string json_pretty(const json::Value& v, int indent = 0) {
  const std::string pad(std::size_t(indent) * 2, ' '), pad2(std::size_t(indent + 1) * 2, ' ');
  const auto flat_array = [](const json::Value& a) {
    if (!a.is_array()) return false;
    for (const auto& e : a.as_array()) if (e.is_array() || e.is_object()) return false;
    return true;
  };
  if (v.is_array()) {
    if (v.as_array().empty() || flat_array(v)) return v.dump();
    std::string s = "[\n";
    const auto& a = v.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) s += pad2 + json_pretty(a[i], indent + 1) + (i + 1 < a.size() ? ",\n" : "\n");
    return s + pad + "]";
  }
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (o.empty()) return "{}";
    if (std::all_of(o.begin(), o.end(), [](const auto& m) { return m.second.is_number(); })) return v.dump();
    std::string s = "{\n";
    for (std::size_t i = 0; i < o.size(); ++i)
      s += pad2 + json::escape(o[i].first) + ": " + json_pretty(o[i].second, indent + 1) + (i + 1 < o.size() ? ",\n" : "\n");
    return s + pad + "}";
  }
  return v.dump();
}

namespace detail {

inline json::Value jnum(double d) { return json::Value::make_number(d); }
inline json::Value jstr(std::string s) { return json::Value::make_string(std::move(s)); }
inline json::Value jreport(const ClassificationReport& r) {
  return json::parse(classification_report_to_json(r), "classification_report_to_json");
}
inline json::Value jpanel(const PanelReport& r, std::size_t n) {
  json::Value o = json::Value::make_object();
  o.set("n", jnum(double(n)));
  o.set("plcc", jnum(r.plcc));
  o.set("srcc", jnum(r.srcc));
  o.set("krcc", jnum(r.krcc));
  o.set("rmse", jnum(r.rmse));
  return o;
}
inline json::Value jself(const SelfAgreement& a) {
  json::Value o = json::Value::make_object();
  o.set("pairs", jnum(double(a.pairs)));
  o.set("exact", jnum(a.exact));
  o.set("within_one", jnum(a.within_one));
  o.set("rmse", jnum(a.rmse));
  return o;
}
template <class T>
json::Value jarray(const std::vector<T>& v) {
  json::Value a = json::Value::make_array();
  for (const auto& x : v) a.push_back(jnum(double(x)));
  return a;
}
inline std::string fd(double v) { return format_double(v); }
/// One statistic of a paired comparison; the McNemar members only for accuracy.
inline json::Value jpaired(const PairedComparison& p, bool mcnemar) {
  json::Value o = json::Value::make_object();
  o.set("difference", jnum(p.difference));
  o.set("ci_low", jnum(p.ci_low));
  o.set("ci_high", jnum(p.ci_high));
  if (mcnemar) {
    o.set("mcnemar_p", jnum(p.mcnemar_p));
    o.set("b", jnum(double(p.b)));
    o.set("c", jnum(double(p.c)));
  }
  o.set("verdict", jstr(verdict_name(p.verdict)));
  return o;
}
/// A ModelComparison, or null when it is not available().
inline json::Value jcomparison(const ModelComparison& c) {
  if (!c.available()) return json::Value();
  json::Value o = json::Value::make_object();
  o.set("n_votes", jnum(double(c.accuracy.n)));
  o.set("stimuli", jnum(double(c.accuracy.stimuli)));
  o.set("resamples", jnum(double(c.accuracy.resamples)));
  o.set("accuracy", jpaired(c.accuracy, true));
  o.set("mae", jpaired(c.mae, false));
  o.set("plcc", jpaired(c.plcc, false));
  return o;
}

}  // namespace detail

/// @brief The whole evaluation as one JSON object: {"K", "test_stimuli": N, "observers": [..],
/// "warnings", "observer_baselines": {id: {train_votes, test_votes, majority_vote, majority
/// (report), q_lookup_available, q_table {Q: vote}, q_lookup (report), self_agreement {pairs,
/// exact, within_one, rmse}, ground_truth {bayes_ceiling, expected_self_agreement,
/// q_lookup_accuracy, bayes_realized_accuracy, bayes_expected_accuracy,
/// q_lookup_expected_accuracy}}}, "aios": [{name,
/// observer, target ("observer votes"|"band"), report, share_of_ceiling, expected_accuracy,
/// expected_share_of_ceiling, vs_q_lookup, vs_majority, vs_q_lookup_test, vs_majority_test,
/// vs_aios {name: ..}}], "cross_accuracy": {rows: [names], columns:
/// [ids], values [M][O]}, "panel": {members, argmax, expected, q_lookup: {n, plcc, srcc, krcc,
/// rmse}}, "rating_distribution": {id: [B][K]}, "significance": {bootstrap_resamples, seed,
/// level, test, verdict}} plus `extra` members appended at the end (e.g. the program's
/// settings). NaN is null. vs_q_lookup / vs_majority are the plain accuracy differences;
/// vs_q_lookup_test, vs_majority_test and each vs_aios entry are the paired comparisons
/// (AioEvaluation::vs_q_lookup_test): {n_votes, stimuli, resamples, accuracy {difference, ci_low,
/// ci_high, mcnemar_p, b, c, verdict}, mae {difference, ci_low, ci_high, verdict}, plcc {..}},
/// null when not available (AIO0, no Q look-up, no test votes); vs_aios is {} for AIO0.
inline json::Value summary_json(const StudyEvaluation& ev, const std::vector<std::pair<std::string, json::Value>>& extra = {}) {
  using detail::jnum, detail::jstr;
  json::Value root = json::Value::make_object();
  root.set("K", jnum(ev.K));
  root.set("test_stimuli", jnum(double(ev.test_images.size())));
  json::Value obs = json::Value::make_array();
  for (const auto& o : ev.observers) obs.push_back(jstr(o));
  root.set("observers", obs);
  json::Value warn = json::Value::make_array();
  for (const auto& w : ev.warnings) warn.push_back(jstr(w));
  root.set("warnings", warn);

  json::Value base = json::Value::make_object();
  for (const auto& b : ev.baselines) {
    json::Value o = json::Value::make_object();
    o.set("train_votes", jnum(double(b.train_votes)));
    o.set("test_votes", jnum(double(b.test_votes)));
    o.set("majority_vote", jnum(b.majority_vote));
    o.set("majority", detail::jreport(b.majority));
    o.set("q_lookup_available", json::Value::make_bool(b.q_lookup_available));
    json::Value table = json::Value::make_object();
    for (const auto& [q, v] : b.q_table) table.set(std::to_string(q), jnum(v));
    o.set("q_table", table);
    o.set("q_lookup", detail::jreport(b.q_lookup));
    o.set("self_agreement", detail::jself(b.self));
    json::Value gt = json::Value::make_object();
    gt.set("bayes_ceiling", jnum(b.truth.bayes_ceiling));
    gt.set("expected_self_agreement", jnum(b.truth.expected_self_agreement));
    gt.set("q_lookup_accuracy", jnum(b.truth.q_lookup_accuracy));
    gt.set("bayes_realized_accuracy", jnum(b.bayes_realized_accuracy));
    gt.set("bayes_expected_accuracy", jnum(b.bayes_expected_accuracy));
    gt.set("q_lookup_expected_accuracy", jnum(b.q_lookup_expected_accuracy));
    o.set("ground_truth", gt);
    base.set(b.observer, o);
  }
  root.set("observer_baselines", base);

  json::Value aios = json::Value::make_array();
  for (const auto& a : ev.aios) {
    json::Value o = json::Value::make_object();
    o.set("name", jstr(a.name));
    o.set("observer", a.observer.empty() ? json::Value() : jstr(a.observer));
    o.set("target", jstr(a.observer.empty() ? "band" : "observer votes"));
    o.set("report", detail::jreport(a.report));
    o.set("share_of_ceiling", jnum(a.share_of_ceiling));
    o.set("expected_accuracy", jnum(a.expected_accuracy));
    o.set("expected_share_of_ceiling", jnum(a.expected_share_of_ceiling));
    const ObserverBaselines* b = ev.baselines_of(a);
    o.set("vs_q_lookup", jnum(b ? a.report.exact_accuracy - b->q_lookup.exact_accuracy : kNaN));
    o.set("vs_majority", jnum(b ? a.report.exact_accuracy - b->majority.exact_accuracy : kNaN));
    o.set("vs_q_lookup_test", detail::jcomparison(a.vs_q_lookup_test));
    o.set("vs_majority_test", detail::jcomparison(a.vs_majority_test));
    json::Value others = json::Value::make_object();
    for (const auto& c : a.vs_aios) others.set(c.against, detail::jcomparison(c));
    o.set("vs_aios", others);
    aios.push_back(o);
  }
  root.set("aios", aios);

  json::Value cross = json::Value::make_object();
  json::Value rows = json::Value::make_array(), values = json::Value::make_array();
  for (std::size_t m = 0; m < ev.aios.size(); ++m) rows.push_back(jstr(ev.aios[m].name)), values.push_back(detail::jarray(ev.cross[m]));
  cross.set("rows", rows);
  cross.set("columns", obs);
  cross.set("values", values);
  root.set("cross_accuracy", cross);

  json::Value panel = json::Value::make_object();
  json::Value members = json::Value::make_array();
  for (const auto& m : ev.panel.members) members.push_back(jstr(m));
  panel.set("members", members);
  panel.set("argmax", detail::jpanel(ev.panel.argmax, ev.panel.mean_argmax.size()));
  panel.set("expected", detail::jpanel(ev.panel.expected, ev.panel.mean_expected.size()));
  panel.set("q_lookup", detail::jpanel(ev.panel.q_lookup, ev.panel.q_lookup_mean.size()));
  root.set("panel", panel);

  json::Value dist = json::Value::make_object();
  for (std::size_t o = 0; o < ev.observers.size(); ++o) {
    json::Value bands = json::Value::make_array();
    for (const auto& b : ev.distribution[o]) bands.push_back(detail::jarray(b));
    dist.set(ev.observers[o], bands);
  }
  root.set("rating_distribution", dist);

  json::Value sig = json::Value::make_object();
  sig.set("bootstrap_resamples", jnum(ev.options.bootstrap));
  sig.set("seed", json::Value::make_number(double(ev.options.seed), std::to_string(ev.options.seed)));
  sig.set("level", jnum(0.95));
  sig.set("test", jstr("paired on the observer's test votes: exact two-sided McNemar on the discordant votes (accuracy); "
                       "percentile bootstrap of the difference, test stimuli resampled with all their votes"));
  sig.set("verdict", jstr("accuracy: yes if the interval is above 0 and McNemar p < 0.05, no if below 0 and p < 0.05, "
                          "else not significant; mae / plcc: the interval alone (lower MAE, higher PLCC is better)"));
  root.set("significance", sig);
  for (const auto& [k, v] : extra) root.set(k, v);
  return root;
}

/// @brief Votes as text separated by spaces ("3 4"); empty for none.
inline std::string join_votes(const std::vector<int>& votes) {
  std::string s;
  for (int v : votes) {  // (appending, not "literal + temporary": g++ 12 -O3 warns -Wrestrict there)
    if (!s.empty()) s += ' ';
    s += std::to_string(v);
  }
  return s;
}

/// @brief Write the report files into `dir` (created), each atomically:
///  - summary.json: summary_json(ev, extra), indented;
///  - per_aio.csv: one row per model: aio, observer, target, n_votes, the ClassificationReport
///    numbers, share_of_ceiling, and beside them the observer's baselines (majority vote and its
///    accuracy, Q look-up accuracy / within-one / MAE / kappa, self-agreement pairs / exact /
///    within-one / RMSE, ground-truth Bayes ceiling, expected self-agreement, generator's Q
///    look-up accuracy), the differences vs the Q look-up and the majority, and with per-stimulus
///    ground truth the expected accuracy and its share of the ceiling, the Bayes predictor's
///    realised and expected accuracy on the observer's test votes and the Q look-up's expected
///    accuracy; then (appended last) the paired significance of the accuracy difference against
///    the Q look-up and the majority (AioEvaluation::vs_q_lookup_test, vs_majority_test):
///    beats_q_lookup ("yes" / "no" / "not significant"; empty when not available),
///    q_lookup_diff_ci_low, q_lookup_diff_ci_high (bootstrap interval of AIO minus Q look-up
///    accuracy), q_lookup_mcnemar_p, and beats_majority, majority_diff_ci_low / _high,
///    majority_mcnemar_p;
///  - cross_accuracy.csv: aio, then observer_<id> per observer: cross[m][o];
///  - panel.csv: predictor (aio_argmax_mean | aio_expected_mean | q_lookup_mean), members, n,
///    plcc, srcc, krcc, rmse;
///  - mos_test.csv: image, q, band, n_votes, mos, ci95_halfwidth, ci95_low, ci95_high,
///    panel_argmax_mean, panel_expected_mean, q_lookup_mean (one row per test stimulus);
///  - confusion_<name>.csv per model (write_confusion_csv());
///  - predictions.csv: aio, observer, image, q, band, observer_votes (space-separated; empty for
///    AIO0), predicted_vote, expected_vote, p_1..p_K.
/// Numbers as format_double() (17 digits, "nan" when undefined). Throws vitiq::IoError when a
/// file cannot be written.
inline void write_report(const StudyEvaluation& ev, const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, json::Value>>& extra = {}) {
  using detail::fd;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create: " + ec.message());
  write_text_file_atomic(dir / "summary.json", json_pretty(summary_json(ev, extra)) + "\n");

  {
    const std::vector<std::string> header{
        "aio", "observer", "target", "n_votes", "exact_accuracy", "within_one", "mae_argmax", "rmse_argmax",
        "mae_expected", "rmse_expected", "macro_f1", "quadratic_kappa", "plcc", "srcc", "krcc", "share_of_ceiling",
        "majority_vote", "majority_accuracy", "q_lookup_accuracy", "q_lookup_within_one", "q_lookup_mae",
        "q_lookup_kappa", "self_agreement_pairs", "self_agreement_exact", "self_agreement_within_one",
        "self_agreement_rmse", "bayes_ceiling", "expected_self_agreement", "truth_q_lookup_accuracy",
        "accuracy_minus_q_lookup", "accuracy_minus_majority", "expected_accuracy", "expected_share_of_ceiling",
        "bayes_realized_accuracy", "bayes_expected_accuracy", "q_lookup_expected_accuracy",
        // appended for the paired significance (readers of the columns above are unaffected)
        "beats_q_lookup", "q_lookup_diff_ci_low", "q_lookup_diff_ci_high", "q_lookup_mcnemar_p", "beats_majority",
        "majority_diff_ci_low", "majority_diff_ci_high", "majority_mcnemar_p"};
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : ev.aios) {
      const auto& r = a.report;
      const ObserverBaselines* b = ev.baselines_of(a);
      const ObserverBaselines none{};
      const ObserverBaselines& x = b ? *b : none;
      const double nan = kNaN;
      rows.push_back({a.name, a.observer, a.observer.empty() ? "band" : "observer votes", std::to_string(r.count),
                      fd(r.exact_accuracy), fd(r.within_one), fd(r.mae_argmax), fd(r.rmse_argmax), fd(r.mae_expected),
                      fd(r.rmse_expected), fd(r.macro_f1), fd(r.quadratic_kappa), fd(r.plcc), fd(r.srcc), fd(r.krcc),
                      fd(a.share_of_ceiling), b ? std::to_string(x.majority_vote) : "",
                      fd(b ? x.majority.exact_accuracy : nan), fd(b ? x.q_lookup.exact_accuracy : nan),
                      fd(b ? x.q_lookup.within_one : nan), fd(b ? x.q_lookup.mae_argmax : nan),
                      fd(b ? x.q_lookup.quadratic_kappa : nan), std::to_string(x.self.pairs), fd(x.self.exact),
                      fd(x.self.within_one), fd(x.self.rmse), fd(x.truth.bayes_ceiling),
                      fd(x.truth.expected_self_agreement), fd(x.truth.q_lookup_accuracy),
                      fd(b ? r.exact_accuracy - x.q_lookup.exact_accuracy : nan),
                      fd(b ? r.exact_accuracy - x.majority.exact_accuracy : nan), fd(a.expected_accuracy),
                      fd(a.expected_share_of_ceiling), fd(x.bayes_realized_accuracy), fd(x.bayes_expected_accuracy),
                      fd(x.q_lookup_expected_accuracy)});
      for (const ModelComparison* c : {&a.vs_q_lookup_test, &a.vs_majority_test}) {
        const PairedComparison& acc = c->accuracy;
        const bool ok = c->available();
        rows.back().insert(rows.back().end(), {ok ? verdict_name(acc.verdict) : "", fd(ok ? acc.ci_low : nan),
                                               fd(ok ? acc.ci_high : nan), fd(ok ? acc.mcnemar_p : nan)});
      }
    }
    write_csv(dir / "per_aio.csv", header, rows);
  }
  {
    std::vector<std::string> header{"aio"};
    for (const auto& o : ev.observers) header.push_back("observer_" + o);
    std::vector<std::vector<std::string>> rows;
    for (std::size_t m = 0; m < ev.aios.size(); ++m) {
      std::vector<std::string> row{ev.aios[m].name};
      for (double v : ev.cross[m]) row.push_back(fd(v));
      rows.push_back(std::move(row));
    }
    write_csv(dir / "cross_accuracy.csv", header, rows);
  }
  {
    std::string members;
    for (const auto& m : ev.panel.members) members += (members.empty() ? "" : " ") + m;
    const auto row = [&](const char* name, const std::string& who, std::size_t n, const PanelReport& r) {
      return std::vector<std::string>{name, who, std::to_string(n), fd(r.plcc), fd(r.srcc), fd(r.krcc), fd(r.rmse)};
    };
    std::string lookups;
    for (const auto& b : ev.baselines)
      if (b.q_lookup_available) lookups += (lookups.empty() ? "q_lookup_" : " q_lookup_") + b.observer;
    const std::vector<std::vector<std::string>> rows{
        row("aio_argmax_mean", members, ev.panel.mean_argmax.size(), ev.panel.argmax),
        row("aio_expected_mean", members, ev.panel.mean_expected.size(), ev.panel.expected),
        row("q_lookup_mean", lookups, ev.panel.q_lookup_mean.size(), ev.panel.q_lookup)};
    write_csv(dir / "panel.csv", std::vector<std::string>{"predictor", "members", "n", "plcc", "srcc", "krcc", "rmse"}, rows);
  }
  {
    std::vector<std::vector<std::string>> rows;
    for (std::size_t s = 0; s < ev.test_images.size(); ++s) {
      const MosStats& m = ev.mos[s];
      const auto at = [&](const std::vector<double>& v) { return v.empty() ? kNaN : v[s]; };
      rows.push_back({ev.test_images[s], std::to_string(ev.test_q[s]), std::to_string(ev.test_band[s]), std::to_string(m.n),
                      fd(m.mean), fd(m.ci95_halfwidth), fd(m.mean - m.ci95_halfwidth), fd(m.mean + m.ci95_halfwidth),
                      fd(at(ev.panel.mean_argmax)), fd(at(ev.panel.mean_expected)), fd(at(ev.panel.q_lookup_mean))});
    }
    write_csv(dir / "mos_test.csv",
              std::vector<std::string>{"image", "q", "band", "n_votes", "mos", "ci95_halfwidth", "ci95_low", "ci95_high",
                                       "panel_argmax_mean", "panel_expected_mean", "q_lookup_mean"},
              rows);
  }
  for (const auto& a : ev.aios) write_confusion_csv(dir / ("confusion_" + a.name + ".csv"), a.report.confusion);
  {
    std::vector<std::string> header{"aio", "observer", "image", "q", "band", "observer_votes", "predicted_vote", "expected_vote"};
    for (int c = 1; c <= ev.K; ++c) header.push_back(std::string("p_").append(std::to_string(c)));
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : ev.aios) {
      const int o = a.observer.empty() ? -1 : ev.observer_index(a.observer);
      for (std::size_t s = 0; s < ev.test_images.size(); ++s) {
        std::vector<std::string> row{a.name, a.observer, ev.test_images[s], std::to_string(ev.test_q[s]),
                                     std::to_string(ev.test_band[s]),
                                     o >= 0 ? join_votes(ev.test_votes[std::size_t(o)][s]) : std::string(),
                                     std::to_string(a.predicted[s]), fd(a.expected[s])};
        for (int c = 0; c < ev.K; ++c) row.push_back(fd(a.probabilities[s * std::size_t(ev.K) + std::size_t(c)]));
        rows.push_back(std::move(row));
      }
    }
    write_csv(dir / "predictions.csv", header, rows);
  }
}

/// @brief The terminal summary: one line per model with exact accuracy, within +-1, MAE (arg-max),
/// quadratic kappa, PLCC (expected vote), and beside them the observer's Q look-up accuracy with
/// the difference, whether the AIO beats the Q look-up ("beats Q": yes / no / n.s., the verdict
/// of AioEvaluation::vs_q_lookup_test.accuracy; n/a without the comparison or without bootstrap
/// resamples, with a line explaining the rule below the table), the majority-vote accuracy, the
/// self-agreement (exact), the Bayes ceiling and the share of it reached; with per-stimulus ground truth one line per AIO with its expected
/// accuracy and the Bayes predictor's score on the same votes; then the panel lines. "n/a" for
/// unavailable numbers. AIO0's line is scored against the JPEG band.
inline std::string format_table(const StudyEvaluation& ev) {
  const auto num = [](double v, int prec = 3) {
    if (std::isnan(v)) return std::string("n/a");
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return std::string(b);
  };
  const auto sgn = [](double v) {
    if (std::isnan(v)) return std::string("n/a");
    char b[32];
    std::snprintf(b, sizeof b, "%+.3f", v);
    return std::string(b);
  };
  const std::vector<std::string> head{"AIO", "target", "n", "exact", "+-1", "MAE", "kappa", "PLCC",
                                      "Q-look", "vs Q", "beats Q", "major.", "self", "ceiling", "share"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : ev.aios) {
    const auto& r = a.report;
    const ObserverBaselines* b = ev.baselines_of(a);
    rows.push_back({a.name, a.observer.empty() ? "band" : "obs " + a.observer, std::to_string(r.count),
                    num(r.exact_accuracy), num(r.within_one), num(r.mae_argmax), num(r.quadratic_kappa), num(r.plcc),
                    num(b ? b->q_lookup.exact_accuracy : kNaN),
                    sgn(b ? r.exact_accuracy - b->q_lookup.exact_accuracy : kNaN),
                    a.vs_q_lookup_test.available() && a.vs_q_lookup_test.accuracy.resamples > 0
                        ? verdict_short(a.vs_q_lookup_test.accuracy.verdict)
                        : "n/a",
                    num(b ? b->majority.exact_accuracy : kNaN), num(b ? b->self.exact : kNaN),
                    num(b ? b->truth.bayes_ceiling : kNaN), num(a.share_of_ceiling * 100, 0) + (std::isnan(a.share_of_ceiling) ? "" : "%")});
  }
  std::vector<std::size_t> width(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  const auto line = [&](const std::vector<std::string>& r) {
    for (std::size_t c = 0; c < r.size(); ++c) {
      const std::string pad(width[c] - r[c].size(), ' ');
      out += c < 2 ? r[c] + pad : pad + r[c];  // names left, numbers right
      out += c + 1 < r.size() ? "  " : "\n";
    }
  };
  line(head);
  std::size_t total = 0;
  for (auto w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& r : rows) line(r);
  if (std::any_of(ev.aios.begin(), ev.aios.end(), [](const AioEvaluation& a) { return a.vs_q_lookup_test.available(); }))
    out += "beats Q: yes / no = exact accuracy significantly above / below the Q look-up's on the same test votes\n"
           "  (bootstrap 95 % interval of the difference, " + std::to_string(ev.options.bootstrap) +
           " resamples of the test stimuli, excludes 0,\n  and exact McNemar p < 0.05); n.s. = not significant\n";
  bool truth_lines = false;
  for (const auto& a : ev.aios) {
    if (std::isnan(a.expected_accuracy)) continue;
    const ObserverBaselines* b = ev.baselines_of(a);
    if (!truth_lines)
      out += "\nagainst the true vote distributions (per-stimulus ground truth: no sampling noise of the test votes):\n";
    truth_lines = true;
    char line_text[300];
    std::snprintf(line_text, sizeof line_text,
                  "  %-16s expected exact %s = %s%% of the ceiling (Q look-up %s); the Bayes predictor scores %s "
                  "on these votes (expected %s)\n",
                  a.name.c_str(), num(a.expected_accuracy).c_str(), num(a.expected_share_of_ceiling * 100, 1).c_str(),
                  num(b->q_lookup_expected_accuracy).c_str(), num(b->bayes_realized_accuracy).c_str(),
                  num(b->bayes_expected_accuracy).c_str());
    out += line_text;
  }
  out += "\npanel vs MOS (" + std::to_string(ev.test_images.size()) + " test stimuli, " +
         std::to_string(ev.panel.members.size()) + " AIOs):\n";
  const auto panel = [&](const char* name, const PanelReport& p) {
    char b[200];
    std::snprintf(b, sizeof b, "  %-22s PLCC %s  SRCC %s  KRCC %s  RMSE %s\n", name, num(p.plcc).c_str(),
                  num(p.srcc).c_str(), num(p.krcc).c_str(), num(p.rmse).c_str());
    out += b;
  };
  panel("mean arg-max vote", ev.panel.argmax);
  panel("mean expected vote", ev.panel.expected);
  panel("mean Q look-up (blind)", ev.panel.q_lookup);
  return out;
}

}  // namespace vitiq::eval
