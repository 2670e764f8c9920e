// tests/test_protocol.cpp -- vitiq::protocol, the per-observer training protocol of vitiq-train
// (include/vitiq/train/protocol.hpp): observer shards, the qband label at the band edges, the
// final-model rule (average or select, ties, NaN validation), the linear probe's targets,
// stages.csv, the job scheduler, SpreadViews, and one short end-to-end run (preset tiny, a
// temp-dir study of random 64 x 64 images and 2 observers) whose weights files carry the model
// card and whose averaged model is the mean of its stages.
#include "support/temp_dir.hpp"
#include "support/catch.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "vitiq/io/image.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/train/protocol.hpp"

namespace fs = std::filesystem;
namespace vp = vitiq::protocol;
using Catch::Matchers::Contains;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using vitiq_test::TempDir;

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// The qband formula vitiq-train had before it read data::quality_bands: its own Q ranges.
double old_qband(int band, int q) {
  static constexpr int lo[] = {2, 11, 19, 26, 51}, hi[] = {10, 18, 25, 50, 100};
  if (band < 1 || band > 5 || q < 1) return band;
  const double pos = std::clamp((double(q) - lo[band - 1] + 0.5) / double(hi[band - 1] - lo[band - 1] + 1), 0.0, 1.0);
  return std::clamp(double(band) - 0.5 + pos, 1.0, 5.0);
}

std::vector<vp::Stage> stages_of(const std::vector<double>& acc) {
  std::vector<vp::Stage> s;
  for (std::size_t i = 0; i < acc.size(); ++i) s.push_back({"s" + std::to_string(i), "s" + std::to_string(i) + ".safetensors", acc[i]});
  return s;
}

/// An EvalSource of `n` stimuli with `views` views each; view v of stimulus i is filled with v.
class CountingViews : public vitiq::EvalSource<float> {
 public:
  CountingViews(std::size_t n, std::size_t views, std::size_t per_view) : n_(n), views_(views), per_(per_view) {}
  std::size_t size() const override { return n_; }
  std::size_t views(std::size_t) const override { return views_; }
  void fill_views(std::size_t, float* images) override {
    for (std::size_t v = 0; v < views_; ++v) std::fill_n(images + v * per_, per_, float(v));
  }
  double vote(std::size_t i) const override { return double(i + 1); }

 private:
  std::size_t n_, views_, per_;
};

/// A study of random 64 x 64 PNG images: 6 training, 2 validation, 2 test stimuli; observers 1
/// and 2 rate each in sessions 1 and 2.
void write_study(const fs::path& d) {
  fs::create_directories(d / "images");
  std::mt19937 rng(7);
  std::string split = "image,source,split\n", ratings = "image,observer,session,vote\n";
  const char* parts[] = {"train", "train", "train", "train", "train", "train", "val", "val", "test", "test"};
  const int bands[] = {1, 2, 3, 4, 5, 3, 2, 4, 1, 5}, qs[] = {5, 15, 22, 40, 80, 20, 12, 30, 8, 90};
  for (int i = 0; i < 10; ++i) {
    const std::string name = "0000" + std::to_string(i) + "src" + std::to_string(i) + "_I" + std::to_string(bands[i]) +
                             "_Q" + std::to_string(qs[i]) + ".png";
    vitiq::io::ImageU8 img = vitiq::io::ImageU8::from_shape({64, 64, 3});
    for (auto& p : img) p = std::uint8_t(rng() % 256);
    vitiq::io::write_png(d / "images" / name, img);
    split += name + ",src" + std::to_string(i) + "," + parts[i] + "\n";
    for (int obs = 1; obs <= 2; ++obs)
      for (int session = 1; session <= 2; ++session)
        ratings += name + "," + std::to_string(obs) + "," + std::to_string(session) + "," +
                   std::to_string(1 + (i + obs * session) % 5) + "\n";
  }
  std::ofstream(d / "split.csv") << split;
  std::ofstream(d / "ratings.csv") << ratings;
}

std::vector<float> parameters(const fs::path& weights) {
  vitiq::ViT<vitiq::presets::tiny> m({}, 0);
  vitiq::load_weights(m, weights);
  return m.parameters_to_host();
}

}  // namespace

TEST_CASE("shard_of picks the observers at positions congruent to the shard index", "[protocol]") {
  const std::vector<std::string> obs{"1", "10", "2", "3", "4"};
  CHECK(vp::shard_of(obs, 0, 1) == obs);
  CHECK(vp::shard_of(obs, 0, 2) == std::vector<std::string>{"1", "2", "4"});
  CHECK(vp::shard_of(obs, 1, 2) == std::vector<std::string>{"10", "3"});
  CHECK(vp::shard_of(obs, 2, 3) == std::vector<std::string>{"2"});
  CHECK(vp::shard_of(obs, 5, 6).empty());
  // Every observer in exactly one shard.
  std::multiset<std::string> all;
  for (int i = 0; i < 3; ++i)
    for (const auto& o : vp::shard_of(obs, i, 3)) all.insert(o);
  CHECK(all == std::multiset<std::string>(obs.begin(), obs.end()));
}

TEST_CASE("qband_label moves the band by Q inside the band's range (data::quality_bands)", "[protocol]") {
  // The band edges: Q = q_min is half a step above band - 0.5, Q = q_max is band + 0.5; clamped to 1..5.
  CHECK(vp::qband_label("x_I1_Q2.png") == 1.0);                       // 0.5 + 0.5 / 9, clamped
  CHECK(vp::qband_label("x_I1_Q10.png") == Approx(0.5 + 8.5 / 9));
  CHECK(vp::qband_label("x_I2_Q11.png") == Approx(1.5 + 0.5 / 8));
  CHECK(vp::qband_label("x_I2_Q18.png") == Approx(2.5 - 0.5 / 8));
  CHECK(vp::qband_label("x_I3_Q19.jpeg") == Approx(2.5 + 0.5 / 7));
  CHECK(vp::qband_label("x_I4_Q26.jpeg") == Approx(3.5 + 0.5 / 25));
  CHECK(vp::qband_label("x_I4_Q50.jpeg") == Approx(4.5 - 0.5 / 25));
  CHECK(vp::qband_label("x_I5_Q51.jpeg") == Approx(4.5 + 0.5 / 50));  // I5 starts at 51 in the table
  CHECK(vp::qband_label("x_I5_Q100.jpeg") == 5.0);                     // 5.49, clamped
  CHECK(vp::qband_label("00012astronaut_I3_Q22_R5.jpeg") == Approx(2.5 + 3.5 / 7));
  CHECK(vp::qband_label("no_band.png") == 0.0);
  // The same numbers as the formula with vitiq-train's former lo/hi arrays, for every Q of every band.
  for (const auto& b : vitiq::data::quality_bands)
    for (int q = b.q_min; q <= b.q_max; ++q)
      CHECK(vp::qband_label("s_I" + std::to_string(b.band) + "_Q" + std::to_string(q) + ".jpeg") == old_qband(b.band, q));
}

TEST_CASE("best_stage: best validation accuracy, a later stage wins a tie, NaN never beats a number", "[protocol]") {
  CHECK(vp::best_stage(stages_of({0.4})) == 0);
  CHECK(vp::best_stage(stages_of({0.5, 0.5})) == 1);
  CHECK(vp::best_stage(stages_of({0.7, 0.5, 0.6})) == 0);
  CHECK(vp::best_stage(stages_of({0.5, 0.7, 0.7, 0.6})) == 2);
  CHECK(vp::best_stage(stages_of({kNaN, 0.2, kNaN})) == 1);
  CHECK(vp::best_stage(stages_of({0.2, kNaN})) == 0);
  CHECK(vp::best_stage(stages_of({kNaN, kNaN, kNaN})) == 2);
}

TEST_CASE("StageList::average_inputs counts the start once per fine-tuning run", "[protocol]") {
  vp::StageList list;
  list.stages = stages_of({0.1, 0.2, 0.3, 0.4, 0.5});
  list.runs = {{0, 1, 2}, {0, 3, 4}};
  const auto files = list.average_inputs();
  const std::vector<fs::path> want{"s0.safetensors", "s1.safetensors", "s2.safetensors",
                                   "s0.safetensors", "s3.safetensors", "s4.safetensors"};
  CHECK(files == want);
}

TEST_CASE("probe_targets: one sample per stimulus, the mean of its votes' targets, weighted by votes", "[protocol]") {
  const vitiq::LabelOptions hard{.form = vitiq::LabelForm::hard};
  const auto t = vp::probe_targets({{3, 2.0}, {1, 4.0}, {3, 4.0}, {3, 4.0}}, 5, hard);
  REQUIRE(t.stimuli == std::vector<std::size_t>{1, 3});
  CHECK(t.weights == std::vector<double>{1, 3});
  const std::vector<double> want{0, 0, 0, 1, 0,  // stimulus 1: one vote 4
                                 0, 1.0 / 3, 0, 2.0 / 3, 0};  // stimulus 3: votes 2, 4, 4
  REQUIRE(t.targets.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(t.targets[i] == Approx(want[i]));

  const vitiq::LabelOptions gauss{};
  const auto g = vp::probe_targets({{0, 1.0}, {0, 5.0}}, 5, gauss);
  std::vector<double> a(5), b(5);
  vitiq::make_target(a.data(), 1.0, 5, gauss);
  vitiq::make_target(b.data(), 5.0, 5, gauss);
  for (int k = 0; k < 5; ++k) CHECK(g.targets[std::size_t(k)] == Approx((a[std::size_t(k)] + b[std::size_t(k)]) / 2));
  CHECK_THROWS_AS(vp::probe_targets({{0, 6.0}}, 5, gauss), std::invalid_argument);
}

TEST_CASE("select_features keeps the views of the chosen stimuli, in order", "[protocol]") {
  vitiq::ProbeFeatures all;
  all.dim = 2;
  all.first_view = {0, 1, 3, 4};  // stimulus 0: 1 view, 1: 2 views, 2: 1 view
  all.x = {0, 0, 10, 11, 12, 13, 20, 21};
  const auto f = vp::select_features(all, {1, 2});
  CHECK(f.dim == 2);
  CHECK(f.first_view == std::vector<std::size_t>{0, 2, 3});
  CHECK(f.x == std::vector<double>{10, 11, 12, 13, 20, 21});
}

TEST_CASE("stages.csv lists the stages, the kept one marked", "[protocol]") {
  const std::vector<vp::Stage> st{{"probe", "obs/probe.safetensors", 0.25},
                                  {"session_1", "obs/session_1/best.safetensors", 0.5},
                                  {"session_2", "obs/session_2/best.safetensors", kNaN}};
  CHECK(vp::stages_csv(st, vp::FinalRule::average, 1, 0.75) ==
        "stage,weights,val_accuracy,selected\n"
        "probe,probe.safetensors,0.250000,0\n"
        "session_1,best.safetensors,0.500000,0\n"
        "session_2,best.safetensors,nan,0\n"
        "average,best.safetensors,0.750000,1\n");
  CHECK(vp::stages_csv(st, vp::FinalRule::select, 1, 0.75) ==
        "stage,weights,val_accuracy,selected\n"
        "probe,probe.safetensors,0.250000,0\n"
        "session_1,best.safetensors,0.500000,1\n"
        "session_2,best.safetensors,nan,0\n");
  TempDir tmp;
  vp::write_stages_csv(tmp.path / "stages.csv", st, vp::FinalRule::select, 1, 0.75);
  CHECK(read_text(tmp.path / "stages.csv") == vp::stages_csv(st, vp::FinalRule::select, 1, 0.75));
  for (const auto& e : fs::directory_iterator(tmp.path)) CHECK(e.path().filename() == "stages.csv");  // no temporaries left
}

TEST_CASE("run_jobs runs every task once, on up to `jobs` workers", "[protocol]") {
  for (int jobs : {1, 3, 8}) {
    CAPTURE(jobs);
    std::vector<std::atomic<int>> runs(5);
    std::atomic<bool> stop{false};
    CHECK(vp::run_jobs(5, jobs, 1, stop, [&](std::size_t i) { ++runs[i]; return true; }));
    for (auto& r : runs) CHECK(r == 1);
    CHECK_FALSE(stop);
  }
  std::atomic<bool> stop{false};
  CHECK(vp::run_jobs(0, 4, 1, stop, [](std::size_t) -> bool { throw std::logic_error("no task to run"); }));

  // More jobs than tasks.
  std::vector<std::atomic<int>> two(2);
  CHECK(vp::run_jobs(2, 16, 1, stop, [&](std::size_t i) { ++two[i]; return true; }));
  CHECK(two[0] == 1);
  CHECK(two[1] == 1);

  // A stopped task: the result says so.
  CHECK_FALSE(vp::run_jobs(3, 2, 1, stop, [](std::size_t i) { return i != 1; }));
}

TEST_CASE("run_jobs rethrows a task's error and stops the other workers", "[protocol]") {
  for (int jobs : {1, 2}) {
    CAPTURE(jobs);
    std::atomic<bool> stop{false};
    std::atomic<int> started{0};
    CHECK_THROWS_WITH(vp::run_jobs(50, jobs, 1, stop,
                                   [&](std::size_t i) {
                                     ++started;
                                     if (i == 1) throw vitiq::Error("observer 1 failed");
                                     return true;
                                   }),
                      "observer 1 failed");
    CHECK(stop);               // the others were told to stop
    CHECK(started < 50);       // and took no new observers
  }
}

TEST_CASE("plan_jobs: jobs clamped to the observers, threads shared among them", "[protocol]") {
  auto p = vp::plan_jobs(0, 4, 2);
  CHECK(p.threads == 4);
  CHECK(p.jobs == 2);
  CHECK(p.threads_per_job == 2);
  p = vp::plan_jobs(3, 2, 10);
  CHECK(p.jobs == 3);
  CHECK(p.threads_per_job == 1);
  p = vp::plan_jobs(1, 6, 10);
  CHECK(p.jobs == 1);
  CHECK(p.threads_per_job == 6);
  p = vp::plan_jobs(0, 0, 1);
  CHECK(p.jobs == 1);
  CHECK(p.threads >= 1);
}

TEST_CASE("SpreadViews spreads `count` views over the inner source's views", "[protocol]") {
  CountingViews inner(2, 16, 3);
  vp::SpreadViews<float> four(inner, 4, 3);
  REQUIRE(four.views(0) == 4);
  std::vector<float> img(4 * 3);
  four.fill_views(0, img.data());
  CHECK(img == std::vector<float>{0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15, 15});  // the diagonal of the 4 x 4 grid
  CHECK(four.vote(1) == 2.0);
  vp::SpreadViews<float> all(inner, 0, 3);
  CHECK(all.views(1) == 16);
  vp::SpreadViews<float> more(inner, 20, 3);
  CHECK(more.views(0) == 16);
}

TEST_CASE("check_options names the first bad combination", "[protocol]") {
  vp::Options o;
  CHECK(vp::check_options(o) == "--data is required");
  o.data = "study";
  o.out = "runs";
  CHECK(vp::check_options(o).empty());
  o.mode = vp::Mode::iterative;
  CHECK(vp::check_options(o) == "--mode iterative needs --init");
  o.init = "aio0.safetensors";
  o.finetune_runs = 0;
  CHECK(vp::check_options(o) == "--finetune-runs must be >= 1");
  o.finetune_runs = 1;
  o.shard_index = 2;
  o.shard_count = 2;
  CHECK(vp::check_options(o) == "--shard I/N needs 0 <= I < N");
}

TEST_CASE("the protocol end to end: AIO0, probe, two fine-tuning runs, the average, model cards", "[protocol]") {
  TempDir tmp;
  const fs::path study = tmp.path / "study", out = tmp.path / "runs";
  write_study(study);
  vp::Options o;
  o.data = study;
  o.out = out;
  o.preset = "tiny";
  o.epochs = 1;
  o.finetune_epochs = 1;
  o.finetune_runs = 2;
  o.batch = 8;
  o.crops = 1;
  o.threads = 1;
  o.jobs = 1;
  o.probe_iterations = 20;
  REQUIRE(vp::check_options(o).empty());
  std::vector<std::string> lines;
  int epochs = 0;
  vp::Events events{.message = [&](std::string_view l) { lines.emplace_back(l); },
                    .step = {},
                    .epoch = [&](const vp::EpochEvent&) { ++epochs; }};
  const vp::Outcome r = vp::run(o, events);
  CHECK_FALSE(r.stopped);
  CHECK(epochs == 1 + 2 * 2 * 2);  // AIO0, then 2 observers x 2 runs x 2 sessions
  std::string log;
  for (const auto& l : lines) log += l + "\n";
  CHECK_THAT(log, Contains("average of 5 stages (2 runs)"));

  const std::string digest = vitiq::file_digest(study / "split.csv");
  const auto check_card = [&](const fs::path& f, vitiq::LabelKind labels, const std::string& observer) {
    CAPTURE(f);
    REQUIRE(fs::exists(f));
    const auto card = vitiq::read_model_card(f);
    REQUIRE(card.has_value());
    CHECK(card->preset == "tiny");
    CHECK(card->view == vitiq::InputView::native_tiles);
    CHECK(card->tile_size == 32);
    CHECK(card->symmetries == 1);
    CHECK(card->normalize);
    CHECK(card->labels == labels);
    CHECK(card->observer == observer);
    CHECK(card->study == fs::absolute(study).lexically_normal().string());
    CHECK(card->split_digest == digest);
  };
  check_card(out / "aio0" / "best.safetensors", vitiq::LabelKind::band, "");
  check_card(out / "aio0" / "last.safetensors", vitiq::LabelKind::band, "");
  for (const std::string obs : {"1", "2"}) {
    const fs::path d = out / ("observer_" + obs);
    for (const char* f : {"best.safetensors", "probe.safetensors", "run_1/session_1/best.safetensors",
                          "run_1/session_2/last.safetensors", "run_2/session_1/best.safetensors",
                          "run_2/session_2/best.safetensors", "run_2/session_2/last.safetensors"})
      check_card(d / f, vitiq::LabelKind::vote, obs);
    // The extra metadata is kept beside the card.
    const auto md = vitiq::io::SafetensorsFile::load(d / "best.safetensors").metadata();
    CHECK(md.at("observer") == obs);
    CHECK(md.at("stage") == "average of 5 stages (2 runs)");
    CHECK(md.at("init") == (out / "aio0" / "best.safetensors").string());
    CHECK(vitiq::io::SafetensorsFile::load(d / "probe.safetensors").metadata().at("stage") == "linear probe");

    const std::string csv = read_text(d / "stages.csv");
    CHECK_THAT(csv, Contains("stage,weights,val_accuracy,selected\nprobe,probe.safetensors,"));
    CHECK_THAT(csv, Contains("\nrun_2/session_2,best.safetensors,"));
    CHECK_THAT(csv, Contains("\naverage,best.safetensors,"));

    // best.safetensors is the mean of the stages, the probe counted once per run.
    std::vector<std::vector<float>> stages;
    for (const char* f : {"probe.safetensors", "run_1/session_1/best.safetensors", "run_1/session_2/best.safetensors",
                          "probe.safetensors", "run_2/session_1/best.safetensors", "run_2/session_2/best.safetensors"})
      stages.push_back(parameters(d / f));
    const auto best = parameters(d / "best.safetensors");
    std::size_t off = 0;
    for (std::size_t i = 0; i < best.size(); ++i) {
      double sum = 0;
      for (const auto& s : stages) sum += double(s[i]);
      off += best[i] != float(sum / double(stages.size()));
    }
    CHECK(off == 0);
    CHECK(parameters(d / "run_1/session_1/best.safetensors") != parameters(d / "run_2/session_1/best.safetensors"));
  }
  CHECK_FALSE(fs::exists(out / "observer_1" / "session_1"));  // with 2 runs the sessions are under run_<r>/

  SECTION("--final select from the AIO0 just trained, the second observer of two shards, in parallel") {
    vp::Options s = o;
    s.out = tmp.path / "select";
    s.mode = vp::Mode::iterative;
    s.init = out / "aio0" / "best.safetensors";
    s.final_rule = vp::FinalRule::select;
    s.finetune_runs = 1;
    s.shard_index = 1;
    s.shard_count = 2;
    s.jobs = 2;
    s.threads = 2;
    REQUIRE_FALSE(vp::run(s, events).stopped);
    CHECK_FALSE(fs::exists(s.out / "observer_1"));
    const fs::path d = s.out / "observer_2";
    const std::string csv = read_text(d / "stages.csv");
    CHECK(csv.find("average") == std::string::npos);
    std::istringstream rows(csv);
    std::string row, kept;
    int selected = 0;
    std::getline(rows, row);
    while (std::getline(rows, row))
      if (row.size() > 2 && row.substr(row.size() - 2) == ",1") { ++selected; kept = row.substr(0, row.find(',')); }
    REQUIRE(selected == 1);
    CHECK(parameters(d / "best.safetensors") == parameters(kept == "probe" ? d / "probe.safetensors" : d / kept / "best.safetensors"));
    check_card(d / "best.safetensors", vitiq::LabelKind::vote, "2");
  }

  SECTION("a set stop flag ends the run with a checkpoint") {
    vp::Options s = o;
    s.out = tmp.path / "stopped";
    s.mode = vp::Mode::all;
    std::atomic<bool> stop{true};
    s.stop = &stop;
    CHECK(vp::run(s, events).stopped);
    CHECK(fs::exists(s.out / "aio0" / "last.ckpt.safetensors"));
  }
}

TEST_CASE("the protocol names what is wrong with a study", "[protocol]") {
  TempDir tmp;
  write_study(tmp.path / "study");
  vp::Options o;
  o.data = tmp.path / "study";
  o.out = tmp.path / "runs";
  o.preset = "tiny";
  o.observers = {"7"};
  CHECK_THROWS_WITH(vp::run(o, {}), Contains("observer '7' has no ratings"));
  o.observers = {};
  o.preset = "huge";
  CHECK_THROWS_AS(vp::run(o, {}), std::invalid_argument);
  o.preset = "tiny";
  std::ofstream(tmp.path / "study" / "images" / "00001src1_I2_Q15.png") << "not an image";
  CHECK_THROWS_WITH(vp::run(o, {}), Contains("00001src1_I2_Q15.png"));
}
