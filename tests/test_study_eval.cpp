// tests/test_study_eval.cpp -- vitiq::eval study evaluation (include/vitiq/eval/study_eval.hpp)
// on a tiny hand-made study whose every expected number is worked out in the comments: the Q
// look-up (seen, unseen and equidistant Q), majority vote, self-agreement, per-AIO reports with
// repeated votes, the cross matrix, the panel against the MOS, the ground-truth reader, the
// report files, and the study / run readers.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "vitiq/data/ground_truth.hpp"
#include "vitiq/data/study.hpp"
#include "vitiq/eval/study_eval.hpp"

namespace {

namespace ev = vitiq::eval;
namespace data = vitiq::data;
namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("vitiq_study_eval_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The hand-made study. Six training stimuli at Q 5, 20, 80; five test stimuli g..k, two of them
// (j at Q 40, k at Q 50) at a Q not seen in training.
//
//            band Q   split  observer 1 (session: vote)   observer 2
//   a_I1_Q5   1   5   train  s1: 1, s2: 1                 s1: 2
//   b_I1_Q5   1   5   train  s1: 2                        s1: 2
//   c_I3_Q20  3   20  train  s1: 3, s2: 2                 s1: 4
//   d_I3_Q20  3   20  train  s1: 3                        s1: 3
//   e_I5_Q80  5   80  train  s1: 4                        s1: 5
//   f_I5_Q80  5   80  train  s1: 5                        s1: 5
//   g_I1_Q5   1   5   test   s1: 1, s2: 2                 s1: 2
//   h_I3_Q20  3   20  test   s1: 3                        s1: 3
//   i_I5_Q80  5   80  test   s1: 5                        s1: 4
//   j_I4_Q40  4   40  test   s1: 4                        -
//   k_I4_Q50  4   50  test   -                            s1: 3
//   v_I2_Q15  2   15  val    s1: 2                        -        (not test: ignored by the scores)
ev::Study hand_study() {
  ev::Study s;
  const auto r = [&](const char* img, const char* obs, int session, int vote) { s.ratings.push_back({img, obs, session, vote}); };
  r("a_I1_Q5.jpeg", "1", 1, 1), r("b_I1_Q5.jpeg", "1", 1, 2), r("c_I3_Q20.jpeg", "1", 1, 3), r("d_I3_Q20.jpeg", "1", 1, 3);
  r("e_I5_Q80.jpeg", "1", 1, 4), r("f_I5_Q80.jpeg", "1", 1, 5), r("a_I1_Q5.jpeg", "1", 2, 1), r("c_I3_Q20.jpeg", "1", 2, 2);
  r("g_I1_Q5.jpeg", "1", 2, 2), r("g_I1_Q5.jpeg", "1", 1, 1);  // out of session order on purpose
  r("h_I3_Q20.jpeg", "1", 1, 3), r("i_I5_Q80.jpeg", "1", 1, 5), r("j_I4_Q40.jpeg", "1", 1, 4);
  r("v_I2_Q15.jpeg", "1", 1, 2);
  r("a_I1_Q5.jpeg", "2", 1, 2), r("b_I1_Q5.jpeg", "2", 1, 2), r("c_I3_Q20.jpeg", "2", 1, 4), r("d_I3_Q20.jpeg", "2", 1, 3);
  r("e_I5_Q80.jpeg", "2", 1, 5), r("f_I5_Q80.jpeg", "2", 1, 5);
  r("g_I1_Q5.jpeg", "2", 1, 2), r("h_I3_Q20.jpeg", "2", 1, 3), r("i_I5_Q80.jpeg", "2", 1, 4), r("k_I4_Q50.jpeg", "2", 1, 3);
  std::vector<data::SplitEntry> split;  // every stimulus its own source
  for (const char* t : {"a_I1_Q5.jpeg", "b_I1_Q5.jpeg", "c_I3_Q20.jpeg", "d_I3_Q20.jpeg", "e_I5_Q80.jpeg", "f_I5_Q80.jpeg"})
    split.push_back({t, t, data::Part::train});
  for (const char* t : {"g_I1_Q5.jpeg", "h_I3_Q20.jpeg", "i_I5_Q80.jpeg", "j_I4_Q40.jpeg", "k_I4_Q50.jpeg"})
    split.push_back({t, t, data::Part::test});
  split.push_back({"v_I2_Q15.jpeg", "v_I2_Q15.jpeg", data::Part::val});
  s.split = data::ContentSplit(std::move(split));
  return s;
}

std::vector<double> one_hot(std::vector<int> votes) {
  std::vector<double> p;
  for (int v : votes)
    for (int k = 1; k <= 5; ++k) p.push_back(k == v ? 1.0 : 0.0);
  return p;
}

// Three models on the test stimuli g, h, i, j, k (listed in another order to check the lookup by
// name):
//   observer_1: g [.6 .4 0 0 0] (vote 1, expected 1.4), h 3, i [0 0 0 .2 .8] (5, 4.8), j 4, k 2
//   observer_2: g 2, h 4, i 4, j 1, k 3            (one-hot)
//   aio0:       g 1, h 3, i 5, j 3, k 4            (bands; one-hot)
std::vector<ev::ModelPredictions> hand_models() {
  ev::ModelPredictions m1{"observer_1", "1", {"k_I4_Q50.jpeg", "g_I1_Q5.jpeg", "h_I3_Q20.jpeg", "i_I5_Q80.jpeg", "j_I4_Q40.jpeg"}, {}};
  m1.probabilities = {0, 1, 0, 0, 0,  0.6, 0.4, 0, 0, 0,  0, 0, 1, 0, 0,  0, 0, 0, 0.2, 0.8,  0, 0, 0, 1, 0};
  const std::vector<std::string> order{"g_I1_Q5.jpeg", "h_I3_Q20.jpeg", "i_I5_Q80.jpeg", "j_I4_Q40.jpeg", "k_I4_Q50.jpeg"};
  ev::ModelPredictions m2{"observer_2", "2", order, one_hot({2, 4, 4, 1, 3})};
  ev::ModelPredictions m0{"aio0", "", order, one_hot({1, 3, 5, 3, 4})};
  return {m1, m2, m0};
}

ev::GroundTruth hand_truth() {
  ev::GroundTruth t;
  t["1"].bayes_ceiling = 0.9;
  return t;
}

}  // namespace

TEST_CASE("evaluate_run takes band and Q from data::parse_stimulus_name", "[study_eval]") {
  // The one stimulus-name parser (data/ratings.hpp); the cases the evaluation depends on.
  CHECK(data::parse_stimulus_name("00000astronaut_I1_Q6.jpeg").q == 6);
  CHECK(data::parse_stimulus_name("00000astronaut_I1_Q6.jpeg").band == 1);
  CHECK(data::parse_stimulus_name("12chelsea_I5_Q100.jpeg").q == 100);
  CHECK(data::parse_stimulus_name("12my_Image_I4_Q26.jpeg").band == 4);  // "_I" inside the source name is skipped
  const auto dotted = data::parse_stimulus_name("691ILSVRC2013_train_00031900.JPEG_I4_Q41.jpeg");
  CHECK(dotted.original_form);
  CHECK(dotted.source == "ILSVRC2013_train_00031900.JPEG");
  CHECK(dotted.band == 4);
  CHECK(dotted.q == 41);
  CHECK_FALSE(data::parse_stimulus_name("x_Q7b.jpeg").original_form);
  CHECK(data::parse_stimulus_name("plain.jpeg").band == 0);
  // A name without _I<band>_Q<q>: no Q look-up for that observer, with a warning.
  ev::Study s = hand_study();
  s.ratings.push_back({"plain.jpeg", "2", 1, 3});
  std::vector<data::SplitEntry> entries = s.split.entries();
  entries.push_back({"plain.jpeg", "plain", data::Part::train});
  s.split = data::ContentSplit(std::move(entries));
  const auto e = ev::evaluate_run(s, hand_models());
  CHECK(e.baselines[1].observer == "2");
  CHECK_FALSE(e.baselines[1].q_lookup_available);
  CHECK(e.baselines[0].q_lookup_available);
}

TEST_CASE("observer ids sort numerically when numeric", "[study_eval]") {
  ev::Study s;
  for (const char* o : {"10", "2", "1", "b", "a"}) s.ratings.push_back({"x.jpeg", o, 1, 3});
  CHECK(s.observers() == std::vector<std::string>{"1", "2", "10", "a", "b"});
}

TEST_CASE("self-agreement pairs an observer's votes on one stimulus from two sessions (test-retest)", "[study_eval]") {
  const ev::Study s = hand_study();
  // Observer 1 repeated a (1, 1), c (3, 2) and g (1, 2), each in sessions 1 and 2: one equal pair,
  // all within one, squared differences 0 + 1 + 1.
  const auto a = data::self_agreement(s.ratings, "1");
  CHECK(a.pairs == 3);
  CHECK(a.exact == Approx(1.0 / 3));
  CHECK(a.within_one == 1.0);
  CHECK(a.rmse == Approx(std::sqrt(2.0 / 3)));
  // Observer 2 repeated nothing.
  const auto b = data::self_agreement(s.ratings, "2");
  CHECK(b.pairs == 0);
  CHECK(std::isnan(b.exact));
  CHECK(std::isnan(b.rmse));
  // Three votes on one stimulus in three sessions give three pairs: (1,2) (1,4) (2,4).
  std::vector<data::Rating> t;
  for (int v : {1, 2, 4}) t.push_back({"x.jpeg", "o", v, v});
  const auto c = data::self_agreement(t, "o");
  CHECK(c.pairs == 3);
  CHECK(c.exact == 0.0);
  CHECK(c.within_one == Approx(1.0 / 3));
  CHECK(c.rmse == Approx(std::sqrt((1.0 + 9.0 + 4.0) / 3)));
  // Two votes in one session are no retest (a study reader refuses them; in memory they do not pair).
  t.push_back({"x.jpeg", "o", 4, 5});
  CHECK(data::self_agreement(t, "o").pairs == 5);  // 3 + 2: the new vote pairs with sessions 1 and 2, not with 4
  // evaluate_run's baseline is the same function.
  CHECK(ev::evaluate_run(s, hand_models()).baselines[0].self.pairs == 3);
}

TEST_CASE("evaluate_run: baselines of the hand-made study", "[study_eval]") {
  const auto models = hand_models();
  const ev::StudyEvaluation e = ev::evaluate_run(hand_study(), models, hand_truth());
  REQUIRE(e.test_images == std::vector<std::string>{"g_I1_Q5.jpeg", "h_I3_Q20.jpeg", "i_I5_Q80.jpeg", "j_I4_Q40.jpeg", "k_I4_Q50.jpeg"});
  CHECK(e.test_q == std::vector<int>{5, 20, 80, 40, 50});
  CHECK(e.test_band == std::vector<int>{1, 3, 5, 4, 4});
  REQUIRE(e.observers == std::vector<std::string>{"1", "2"});
  // Test votes per observer and stimulus, in session order; -: not rated.
  CHECK(e.test_votes[0] == std::vector<std::vector<int>>{{1, 2}, {3}, {5}, {4}, {}});
  CHECK(e.test_votes[1] == std::vector<std::vector<int>>{{2}, {3}, {4}, {}, {3}});

  // Observer 1, training votes by Q: Q5 {1, 2, 1} -> 1; Q20 {3, 3, 2} -> 3; Q80 {4, 5} tie -> 4.
  // All 8 training votes: 1, 2, 3 twice each -> overall majority 1 (ties to the smallest).
  // Test: g (Q5) 1; h (Q20) 3; i (Q80) 4; j (Q40: 20 is nearer than 80) 3;
  // k (Q50: 20 and 80 equally near, predicting 3 and 4) -> overall majority 1.
  const auto& b1 = e.baselines[0];
  CHECK(b1.train_votes == 8);
  CHECK(b1.test_votes == 5);
  CHECK(b1.q_lookup_available);
  CHECK(b1.q_table == std::map<int, int>{{5, 1}, {20, 3}, {80, 4}});
  CHECK(b1.q_predictions == std::vector<int>{1, 3, 4, 3, 1});
  // Scored on the 5 test votes g 1, g 2, h 3, i 5, j 4 against 1, 1, 3, 4, 3: hits g 1 and h:
  // 2/5; every error is 1: within one 5/5, MAE 3/5.
  CHECK(b1.q_lookup.count == 5);
  CHECK(b1.q_lookup.exact_accuracy == Approx(0.4));
  CHECK(b1.q_lookup.within_one == 1.0);
  CHECK(b1.q_lookup.mae_argmax == Approx(0.6));
  // Majority vote 1: only g's first vote: 1/5.
  CHECK(b1.majority_vote == 1);
  CHECK(b1.majority.exact_accuracy == Approx(0.2));
  CHECK(b1.self.pairs == 3);
  CHECK(b1.truth.bayes_ceiling == 0.9);

  // Observer 2: Q5 {2, 2} -> 2; Q20 {4, 3} tie -> 3; Q80 {5, 5} -> 5; overall {2: 2, 5: 2, 3, 4}
  // -> 2. Test: g 2, h 3, i 5, j (Q40) 3, k (Q50, equidistant, 3 vs 5) -> 2.
  const auto& b2 = e.baselines[1];
  CHECK(b2.q_table == std::map<int, int>{{5, 2}, {20, 3}, {80, 5}});
  CHECK(b2.q_predictions == std::vector<int>{2, 3, 5, 3, 2});
  // Votes g 2, h 3, i 4, k 3 against 2, 3, 5, 2: 2/4.
  CHECK(b2.q_lookup.exact_accuracy == Approx(0.5));
  CHECK(b2.majority_vote == 2);
  CHECK(b2.majority.exact_accuracy == Approx(0.25));  // g
  CHECK(std::isnan(b2.truth.bayes_ceiling));

  // Rating distribution (all splits), observer 1, band 1 (a, b, g): votes 1, 1, 2, 1, 2.
  CHECK(e.distribution[0][0] == std::vector<long>{3, 2, 0, 0, 0});
  CHECK(e.distribution[0][1] == std::vector<long>{0, 1, 0, 0, 0});   // v (val) counts too
  CHECK(e.distribution[1][3] == std::vector<long>{0, 0, 1, 0, 0});   // k
}

TEST_CASE("evaluate_run: AIO reports, cross matrix and panel of the hand-made study", "[study_eval]") {
  const auto models = hand_models();
  const ev::StudyEvaluation e = ev::evaluate_run(hand_study(), models, hand_truth());
  REQUIRE(e.aios.size() == 3);

  // observer_1 predicts g 1, h 3, i 5, j 4, k 2; expected g 1.4, i 4.8.
  const auto& a1 = e.aios[0];
  CHECK(a1.predicted == std::vector<int>{1, 3, 5, 4, 2});
  CHECK(a1.expected[0] == Approx(1.4));
  CHECK(a1.expected[2] == Approx(4.8));
  // Against observer 1's votes g 1, g 2, h 3, i 5, j 4 (g counted twice): 4/5 exact, the miss
  // (g 2 -> 1) is off by one; expected errors 0.4, 0.6, 0, 0.2, 0 -> MAE 0.24.
  CHECK(a1.report.count == 5);
  CHECK(a1.report.exact_accuracy == Approx(0.8));
  CHECK(a1.report.within_one == 1.0);
  CHECK(a1.report.mae_argmax == Approx(0.2));
  CHECK(a1.report.mae_expected == Approx(0.24));
  CHECK(a1.report.confusion == std::vector<std::vector<long>>{{1, 0, 0, 0, 0}, {1, 0, 0, 0, 0}, {0, 0, 1, 0, 0},
                                                              {0, 0, 0, 1, 0}, {0, 0, 0, 0, 1}});
  CHECK(a1.share_of_ceiling == Approx(0.8 / 0.9));
  // observer_2 predicts g 2, h 4, i 4, j 1, k 3 against g 2, h 3, i 4, k 3: 3/4; no ceiling.
  CHECK(e.aios[1].report.exact_accuracy == Approx(0.75));
  CHECK(e.aios[1].report.count == 4);
  CHECK(std::isnan(e.aios[1].share_of_ceiling));
  // aio0 against the bands 1, 3, 5, 4, 4 of g..k: predicts 1, 3, 5, 3, 4 -> 4/5.
  CHECK(e.aios[2].report.count == 5);
  CHECK(e.aios[2].report.exact_accuracy == Approx(0.8));
  CHECK(std::isnan(e.aios[2].share_of_ceiling));
  CHECK(e.baselines_of(e.aios[2]) == nullptr);

  // Cross matrix, every vote counting. Observer 1 votes g 1, g 2, h 3, i 5, j 4; observer 2
  // votes g 2, h 3, i 4, k 3.
  //   observer_1 (1 3 5 4 2): obs 1 g1 h i j = 4/5; obs 2 h = 1/4
  //   observer_2 (2 4 4 1 3): obs 1 g2 = 1/5;      obs 2 g i k = 3/4
  //   aio0       (1 3 5 3 4): obs 1 g1 h i = 3/5;  obs 2 h = 1/4
  REQUIRE(e.cross.size() == 3);
  CHECK(e.cross[0][0] == Approx(0.8));
  CHECK(e.cross[0][1] == Approx(0.25));
  CHECK(e.cross[1][0] == Approx(0.2));
  CHECK(e.cross[1][1] == Approx(0.75));
  CHECK(e.cross[2][0] == Approx(0.6));
  CHECK(e.cross[2][1] == Approx(0.25));
  // The diagonal is each AIO's own exact accuracy.
  CHECK(e.cross[0][0] == Approx(e.aios[0].report.exact_accuracy));
  CHECK(e.cross[1][1] == Approx(e.aios[1].report.exact_accuracy));

  // MOS pooled over observers: g {1, 2, 2} = 5/3, h {3, 3} = 3, i {5, 4} = 4.5, j {4}, k {3}.
  CHECK(e.mos[0].mean == Approx(5.0 / 3));
  CHECK(e.mos[0].n == 3);
  // CI of g: sd of {1, 2, 2} = sqrt(1/3), t(0.975, 2) = 4.302652729749464.
  CHECK(e.mos[0].ci95_halfwidth == Approx(4.302652729749464 * std::sqrt(1.0 / 3) / std::sqrt(3.0)));
  CHECK(e.mos[2].mean == Approx(4.5));
  CHECK(std::isnan(e.mos[3].ci95_halfwidth));  // one vote

  // Panel of observer_1 and observer_2 (aio0 is no member).
  CHECK(e.panel.members == std::vector<std::string>{"observer_1", "observer_2"});
  const std::vector<double> argmax{1.5, 3.5, 4.5, 2.5, 2.5}, expected{1.7, 3.5, 4.4, 2.5, 2.5};
  for (std::size_t s = 0; s < 5; ++s) {
    CHECK(e.panel.mean_argmax[s] == Approx(argmax[s]));
    CHECK(e.panel.mean_expected[s] == Approx(expected[s]));
  }
  // Arg-max mean vs MOS (5/3, 3, 4.5, 4, 3): errors -1/6, 1/2, 0, -3/2, -1/2 -> RMSE sqrt(5/9).
  CHECK(e.panel.argmax.rmse == Approx(std::sqrt(5.0 / 9)));
  // PLCC: deviations x (-1.4, .6, 1.6, -.4, -.4), y (-47, -7, 38, 23, -7) / 30:
  // sum xy = 116/30, sum x^2 = 5.2, sum y^2 = 4280/900.
  CHECK(e.panel.argmax.plcc == Approx((116.0 / 30) / std::sqrt(5.2 * 4280.0 / 900)));
  // SRCC: ranks x (1, 4, 5, 2.5, 2.5), y (1, 2.5, 5, 4, 2.5): 7.25 / 9.5.
  CHECK(e.panel.argmax.srcc == Approx(7.25 / 9.5));
  // KRCC: 7 concordant, 1 discordant (h-j), one pair tied in x (j-k), one in y (h-k):
  // (7 - 1) / sqrt(9 * 9).
  CHECK(e.panel.argmax.krcc == Approx(6.0 / 9));
  // Image-blind panel: mean of the two look-ups (1, 3, 4, 3, 1) and (2, 3, 5, 3, 2).
  const std::vector<double> look{1.5, 3.0, 4.5, 3.0, 1.5};
  for (std::size_t s = 0; s < 5; ++s) CHECK(e.panel.q_lookup_mean[s] == Approx(look[s]));
  // Errors -1/6, 0, 0, -1, -3/2 -> squares 1/36 + 1 + 9/4 = 118/36 -> RMSE sqrt(118/180).
  CHECK(e.panel.q_lookup.rmse == Approx(std::sqrt(118.0 / 180)));
}

TEST_CASE("evaluate_run rejects a model without a test image or with the wrong shape", "[study_eval]") {
  const ev::Study s = hand_study();
  auto models = hand_models();
  models[1].images[3] = "zzz.jpeg";
  CHECK_THROWS_AS(ev::evaluate_run(s, models), std::invalid_argument);
  models = hand_models();
  models[0].probabilities.pop_back();
  CHECK_THROWS_AS(ev::evaluate_run(s, models), std::invalid_argument);
  // A model for an observer without ratings is evaluated on nothing, with a warning.
  models = hand_models();
  models[1].observer = "9";
  const auto e = ev::evaluate_run(s, models);
  CHECK(e.aios[1].report.count == 0);
  CHECK(std::isnan(e.aios[1].report.exact_accuracy));
  CHECK(e.warnings.size() == 1);
}

TEST_CASE("ground truth: put_observer_truth writes what parse_ground_truth reads, strictly", "[study_eval]") {
  namespace js = vitiq::json;
  const auto document = [](const std::vector<std::pair<std::string, data::GroundTruthObserver>>& obs) {
    js::Value arr = js::Value::make_array();
    for (const auto& [id, g] : obs) {
      js::Value e = js::Value::make_object(), ex = js::Value::make_object(), te = js::Value::make_object();
      ex.set("self_agreement_within_one", js::Value::make_number(0.97));  // the writer's own members stay
      data::put_observer_truth(ex, te, g);
      e.set("id", js::Value::make_string(id));
      e.set("expected", ex);
      e.set("test", te);
      arr.push_back(e);
    }
    js::Value root = js::Value::make_object();
    root.set("observers", arr);
    return js::parse(root.dump(), "gt");
  };
  SECTION("round trip, null for an unknown number") {
    data::GroundTruthObserver a, b;
    a.bayes_ceiling = 0.71, a.expected_self_agreement = 0.61, a.q_lookup_accuracy = 0.63;
    b.bayes_ceiling = 0.5, b.expected_self_agreement = 0.47;  // q_lookup NaN -> null
    const auto t = data::parse_ground_truth(document({{"3", a}, {"b", b}}), "gt");
    REQUIRE(t.size() == 2);
    CHECK(t.at("3").bayes_ceiling == 0.71);
    CHECK(t.at("3").expected_self_agreement == 0.61);
    CHECK(t.at("3").q_lookup_accuracy == 0.63);
    CHECK(t.at("b").bayes_ceiling == 0.5);
    CHECK(std::isnan(t.at("b").q_lookup_accuracy));
  }
  SECTION("malformed files name the file and the key") {
    const auto message = [](const std::string& text) {
      try {
        data::parse_ground_truth(js::parse(text, "gt.json"), "gt.json");
      } catch (const vitiq::FormatError& x) {
        return std::string(x.what());
      }
      return std::string("no error");
    };
    CHECK(message(R"({"version": 1})") == "gt.json: observers: missing or not an array");
    CHECK(message(R"({"observers": [{"id": 4}]})") == "gt.json: observers[0].id: missing or not a string");
    CHECK(message(R"({"observers": [{"id": "4", "test": {}}]})") == "gt.json: observers[0].expected: missing or not an object");
    CHECK(message(R"({"observers": [{"id": "4", "expected": {"self_agreement_exact": 0.5}, "test": {"bayes_ceiling": "high"}}]})") ==
          "gt.json: observers[0].test.bayes_ceiling: not a number in [0, 1]");
    CHECK(message(R"({"observers": [{"id": "4", "expected": {"self_agreement_exact": 0.5}, "test": {"bayes_ceiling": 0.5}}]})") ==
          "gt.json: observers[0].test.q_lookup_accuracy: missing");
  }
  SECTION("a missing file is no ground truth (a real study)") {
    CHECK(data::read_ground_truth(fs::temp_directory_path() / "vitiq_no_such_ground_truth.json").empty());
  }
}

TEST_CASE("write_report writes the report files", "[study_eval]") {
  const auto models = hand_models();
  const ev::StudyEvaluation e = ev::evaluate_run(hand_study(), models, hand_truth());
  const fs::path dir = temp_dir("report") / "out";
  ev::write_report(e, dir, {{"note", vitiq::json::Value::make_string("hand")}});
  for (const char* f : {"summary.json", "per_aio.csv", "cross_accuracy.csv", "panel.csv", "mos_test.csv", "predictions.csv",
                        "confusion_observer_1.csv", "confusion_observer_2.csv", "confusion_aio0.csv"})
    CHECK(fs::exists(dir / f));
  CHECK(slurp(dir / "cross_accuracy.csv") ==
        "aio,observer_1,observer_2\n"
        "observer_1,0.80000000000000004,0.25\n"
        "observer_2,0.20000000000000001,0.75\n"
        "aio0,0.59999999999999998,0.25\n");
  CHECK(slurp(dir / "confusion_observer_2.csv").rfind("true_vote,pred_1,pred_2,pred_3,pred_4,pred_5\n1,0,0,0,0,0\n2,0,1,0,0,0\n", 0) == 0);
  const std::string preds = slurp(dir / "predictions.csv");
  CHECK(preds.rfind("aio,observer,image,q,band,observer_votes,predicted_vote,expected_vote,p_1,p_2,p_3,p_4,p_5\n", 0) == 0);
  CHECK(preds.find("observer_1,1,g_I1_Q5.jpeg,5,1,1 2,1,1.3999999999999999,0.59999999999999998,0.40000000000000002,0,0,0\n") !=
        std::string::npos);
  CHECK(preds.find("aio0,,j_I4_Q40.jpeg,40,4,,3,3,0,0,1,0,0\n") != std::string::npos);

  const auto summary = vitiq::json::parse(slurp(dir / "summary.json"), "summary.json");
  CHECK(summary.at("aios").as_array()[0].at("report").at("exact_accuracy").as_number() == Approx(0.8));
  CHECK(summary.at("aios").as_array()[0].at("vs_q_lookup").as_number() == Approx(0.4));
  CHECK(summary.at("aios").as_array()[2].at("target").as_string() == "band");
  CHECK(summary.at("aios").as_array()[1].at("share_of_ceiling").is_null());
  CHECK(summary.at("observer_baselines").at("1").at("self_agreement").at("pairs").as_number() == 3);
  CHECK(summary.at("panel").at("argmax").at("krcc").as_number() == Approx(6.0 / 9));
  CHECK(summary.at("note").as_string() == "hand");

  const std::string table = ev::format_table(e);
  CHECK(table.find("observer_1") != std::string::npos);
  CHECK(table.find("0.800") != std::string::npos);
  CHECK(table.find("89%") != std::string::npos);  // 0.8 / 0.9
  fs::remove_all(dir.parent_path());
}

TEST_CASE("read_study, find_models and read_training_curve read a study and a run on disk", "[study_eval]") {
  const fs::path d = temp_dir("disk");
  write(d / "study" / "ratings.csv", "image,observer,session,vote,duration\r\na_I1_Q5.jpeg,1,1,2,3.5\r\nb_I2_Q12.jpeg,1,1,5,1\r\n");
  write(d / "study" / "split.csv", "\xEF\xBB\xBFimage,source,split\na_I1_Q5.jpeg,x.png,train\nb_I2_Q12.jpeg,y.png,test\n");
  const ev::Study s = data::read_study(d / "study");
  REQUIRE(s.ratings.size() == 2);
  CHECK(s.ratings[1].vote == 5);
  CHECK(s.part_of("b_I2_Q12.jpeg") == data::Part::test);
  CHECK(s.test_images() == std::vector<std::string>{"b_I2_Q12.jpeg"});
  write(d / "bad" / "ratings.csv", "image,observer,session,vote\na_I1_Q5.jpeg,1,1,6\n");
  write(d / "bad" / "split.csv", "image,source,split\na_I1_Q5.jpeg,a,train\n");
  CHECK_THROWS_WITH(data::read_study(d / "bad"), Catch::Matchers::Contains("ratings.csv:2: vote 6 outside 1..5"));
  write(d / "unsplit" / "ratings.csv", "image,observer,session,vote\na_I1_Q5.jpeg,1,1,3\nz.jpeg,1,1,3\n");
  write(d / "unsplit" / "split.csv", "image,source,split\na_I1_Q5.jpeg,a,train\n");
  CHECK_THROWS_WITH(data::read_study(d / "unsplit"), Catch::Matchers::Contains("ratings.csv:3: image 'z.jpeg' has no row in"));
  CHECK_THROWS_AS(data::read_study(d / "none"), vitiq::IoError);

  for (const char* m : {"observer_10", "observer_2", "aio0"}) write(d / "runs" / m / "best.safetensors", "x");
  write(d / "runs" / "observer_3" / "last.safetensors", "x");  // no best: not a model
  const auto runs = ev::find_models(d / "runs");
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].name == "observer_2");
  CHECK(runs[0].observer == "2");
  CHECK(runs[1].name == "observer_10");
  CHECK(runs[2].name == "aio0");
  CHECK(runs[2].observer.empty());
  CHECK_THROWS_AS(ev::find_models(d / "nowhere"), vitiq::IoError);

  const std::string head = "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_second,best\n";
  write(d / "runs" / "observer_2" / "session_1" / "metrics.csv", head + "1,5,0.001,1.6,0.2,1.5,0.3,1,1,1\n2,10,0.001,1.4,0.3,1.45,0.35,1,1,1\n");
  write(d / "runs" / "observer_2" / "session_2" / "metrics.csv", head + "1,5,0.001,1.3,0.4,1.5,0.33,1,1,0\n");
  const auto c = ev::read_training_curve(d / "runs" / "observer_2");
  REQUIRE(c.epochs.size() == 3);
  CHECK(c.epochs[2].x == 3);
  CHECK(c.epochs[2].session == 2);
  CHECK(c.epochs[1].val_accuracy == 0.35);
  CHECK(c.epochs[1].best);
  CHECK_FALSE(c.epochs[2].best);
  CHECK(c.session_starts == std::vector<double>{2.5});
  CHECK(c.session_ids == std::vector<int>{2});
  CHECK(ev::read_training_curve(d / "runs" / "aio0").epochs.empty());
  fs::remove_all(d);
}

// Per-stimulus ground truth (ground_truth_stimuli.csv) of observer 1 on its test stimuli:
//   g [.5 .3 .2 0 0]   Bayes vote 1    observer 1's votes 1, 2   AIO predicts 1   Q look-up 1
//   h [0 .25 .5 .25 0] Bayes vote 3    vote 3                    AIO 3            Q look-up 3
//   i [0 0 0 .6 .4]    Bayes vote 4    vote 5                    AIO 5            Q look-up 4
//   j [0 0 .3 .3 .4]   Bayes vote 5    vote 4                    AIO 4            Q look-up 3
// Over the five test votes (g counts twice): the Bayes predictor hits g's 1 and h: 2/5 realised,
// expected (.5 + .5 + .5 + .6 + .4) / 5 = 0.5; the AIO's expected accuracy (.5 + .5 + .5 + .4 +
// .3) / 5 = 0.44, 0.44 / 0.9 of the ceiling; the Q look-up's (.5 + .5 + .5 + .6 + .3) / 5 = 0.48.
// Observer 2 rated k, which has no row: its numbers stay NaN and a warning says why.
TEST_CASE("read_stimulus_truth and the expected accuracies of evaluate_run", "[study_eval]") {
  const fs::path dir = temp_dir("stimulus_truth");
  const std::string header = "image,split,obs1_p1,obs1_p2,obs1_p3,obs1_p4,obs1_p5,obs2_p1,obs2_p2,obs2_p3,obs2_p4,obs2_p5\n";
  write(dir / "gt.csv", header +
                            "g_I1_Q5.jpeg,test,0.5,0.3,0.2,0,0,0,1,0,0,0\n"
                            "h_I3_Q20.jpeg,test,0,0.25,0.5,0.25,0,0,0,1,0,0\n"
                            "i_I5_Q80.jpeg,test,0,0,0,0.6,0.4,0,0,0,1,0\n"
                            "j_I4_Q40.jpeg,test,0,0,0.3,0.3,0.4,0.2,0.2,0.2,0.2,0.2\n"
                            "v_I2_Q15.jpeg,val,0,1,0,0,0,0,1,0,0,0\n");
  ev::GroundTruth truth = hand_truth();
  REQUIRE(data::read_stimulus_truth(dir / "gt.csv", truth) == 2);
  REQUIRE(truth.at("1").stimulus_probabilities.size() == 5);
  CHECK(truth.at("1").stimulus_probabilities.at("h_I3_Q20.jpeg") == std::vector<double>{0, 0.25, 0.5, 0.25, 0});
  CHECK(truth.at("1").bayes_ceiling == 0.9);  // what ground_truth.json gave is kept
  CHECK(std::isnan(truth.at("2").bayes_ceiling));

  const auto models = hand_models();
  const ev::StudyEvaluation e = ev::evaluate_run(hand_study(), models, truth);
  const auto& b1 = e.baselines[0];
  CHECK(b1.bayes_realized_accuracy == Approx(0.4));
  CHECK(b1.bayes_expected_accuracy == Approx(0.5));
  CHECK(b1.q_lookup_expected_accuracy == Approx(0.48));
  CHECK(e.aios[0].expected_accuracy == Approx(0.44));
  CHECK(e.aios[0].expected_share_of_ceiling == Approx(0.44 / 0.9));
  CHECK(std::isnan(e.baselines[1].bayes_realized_accuracy));
  CHECK(std::isnan(e.aios[1].expected_accuracy));
  CHECK(std::isnan(e.aios[2].expected_accuracy));  // AIO0 has no observer
  bool warned = false;
  for (const auto& w : e.warnings) warned |= w == "observer 2: the per-stimulus ground truth lacks a test stimulus";
  CHECK(warned);
  const std::string table = ev::format_table(e);
  CHECK(table.find("observer_1       expected exact 0.440 = 48.9% of the ceiling (Q look-up 0.480); the Bayes predictor "
                   "scores 0.400 on these votes (expected 0.500)") != std::string::npos);
  ev::write_report(e, dir / "report");
  const auto per_aio = data::read_csv_table(dir / "report" / "per_aio.csv");
  REQUIRE(per_aio.rows.size() == 3);
  const auto cell = [&](const char* column) {
    REQUIRE(per_aio.find(column));
    return std::stod(std::string(per_aio.rows[0].fields[per_aio.require(column)]));
  };
  CHECK(cell("expected_accuracy") == Approx(0.44));
  CHECK(cell("expected_share_of_ceiling") == Approx(0.44 / 0.9));
  CHECK(cell("bayes_realized_accuracy") == Approx(0.4));
  CHECK(cell("bayes_expected_accuracy") == Approx(0.5));
  CHECK(cell("q_lookup_expected_accuracy") == Approx(0.48));

  SECTION("no file: nothing read, nothing changed") {
    ev::GroundTruth t = hand_truth();
    CHECK(data::read_stimulus_truth(dir / "none.csv", t) == 0);
    CHECK(t.at("1").stimulus_probabilities.empty());
  }
  SECTION("bad files name file, line and column") {
    ev::GroundTruth t;
    const auto message = [&](const std::string& text) {
      write(dir / "bad.csv", text);
      try {
        data::read_stimulus_truth(dir / "bad.csv", t);
      } catch (const vitiq::FormatError& x) {
        return std::string(x.what());
      }
      return std::string("no error");
    };
    const std::string bad = (dir / "bad.csv").string();
    CHECK(message("image,obs1_p1,obs1_p2,obs1_p3,obs1_p4\ng.jpeg,1,0,0,0\n") == bad + ":1: observer 1 has no column 'obs1_p5'");
    CHECK(message("image,obs1_p1,obs1_p2,obs1_p3,obs1_p4,obs1_p5\ng.jpeg,1,0,0,0,0\nh.jpeg,0.5,x,0,0,0\n") ==
          bad + ":3: column 'obs1_p2': 'x' is not a probability");
    CHECK(message("image,obs1_p1,obs1_p2,obs1_p3,obs1_p4,obs1_p5\ng.jpeg,1.5,0,0,0,0\n") ==
          bad + ":2: column 'obs1_p1': '1.5' is not a probability");
    CHECK(message("image,obs1_p1,obs1_p2,obs1_p3,obs1_p4,obs1_p5\ng.jpeg,0.5,0.4,0,0,0\n").rfind(
              bad + ":2: observer 1's probabilities sum to 0.9", 0) == 0);
    CHECK(message("file,obs1_p1\n").rfind(bad + ":1: missing column 'image'", 0) == 0);
  }
}

// Paired significance on the hand-made study. observer_1 (predicting g 1, h 3, i 5, j 4) on
// observer 1's test votes g 1, g 2, h 3, i 5, j 4 (4 stimuli, 5 votes) hits g 1, h, i, j:
//   Q look-up 1, 1, 3, 4, 3 hits g 1, h:   b (only the AIO) = i, j = 2; c = 0; 0.8 - 0.4 = 0.4;
//     McNemar 2 P(X <= 0 | 2) = 0.5. MAE of the arg-max votes: 0.2 - 0.6 = -0.4.
//     Resamples: D = (w_i + w_j) / (2 w_g + w_h + w_i + w_j); P(D = 0) = P(neither i nor j drawn)
//     = (2/4)^4 = 1/16 and P(D = 1) = 1/16, both above 2.5 %: the interval is exactly [0, 1].
//   majority 1 hits g 1:                    b = h, i, j = 3; c = 0; 0.6; McNemar 2 / 2^3 = 0.25.
//   observer_2 (2 4 4 1 3) hits g 2:        b = g 1, h, i, j = 4; c = 1; 0.8 - 0.2 = 0.6 (the cross
//     matrix: cross[0][0] - cross[1][0]); McNemar 2 (1 + 5) / 2^5 = 0.375.
//   aio0 (1 3 5 3 4) hits g 1, h, i:        b = j = 1; c = 0; 0.2; McNemar 1.
// observer_2 on observer 2's votes g 2, h 3, i 4, k 3 hits g, i, k; its Q look-up (2 3 5 . 2)
// hits g, h: b = i, k = 2, c = h = 1; 0.75 - 0.5 = 0.25; McNemar 2 * 4/8 = 1.
TEST_CASE("evaluate_run: paired significance of each AIO on its observer's test votes", "[study_eval][significance]") {
  const auto models = hand_models();
  const ev::StudyEvaluation e = ev::evaluate_run(hand_study(), models, hand_truth());
  CHECK(e.options.bootstrap == 2000);
  CHECK(e.options.seed == 1);
  const auto& a1 = e.aios[0];
  const auto& q = a1.vs_q_lookup_test;
  REQUIRE(q.available());
  CHECK(q.against == "q_lookup");
  CHECK(q.accuracy.difference == Approx(a1.report.exact_accuracy - e.baselines[0].q_lookup.exact_accuracy));
  CHECK(q.accuracy.difference == Approx(0.4));
  CHECK(q.accuracy.n == 5);
  CHECK(q.accuracy.stimuli == 4);
  CHECK(q.accuracy.b == 2);
  CHECK(q.accuracy.c == 0);
  CHECK(q.accuracy.mcnemar_p == Approx(0.5));
  CHECK(q.accuracy.resamples == 2000);
  CHECK(q.accuracy.ci_low == 0.0);
  CHECK(q.accuracy.ci_high == 1.0);
  CHECK(q.accuracy.verdict == ev::Verdict::not_significant);
  CHECK(q.mae.difference == Approx(a1.report.mae_argmax - e.baselines[0].q_lookup.mae_argmax));
  CHECK(q.mae.difference == Approx(-0.4));
  CHECK(q.mae.ci_low <= q.mae.difference);
  CHECK(q.mae.ci_high >= q.mae.difference);
  const auto& m = a1.vs_majority_test;
  CHECK(m.accuracy.difference == Approx(0.6));
  CHECK(m.accuracy.b == 3);
  CHECK(m.accuracy.c == 0);
  CHECK(m.accuracy.mcnemar_p == Approx(0.25));
  CHECK(std::isnan(m.plcc.difference));  // the majority vote is constant: no PLCC
  REQUIRE(a1.vs_aios.size() == 2);
  CHECK(a1.vs_aios[0].against == "observer_2");
  CHECK(a1.vs_aios[0].accuracy.difference == Approx(e.cross[0][0] - e.cross[1][0]));
  CHECK(a1.vs_aios[0].accuracy.b == 4);
  CHECK(a1.vs_aios[0].accuracy.c == 1);
  CHECK(a1.vs_aios[0].accuracy.mcnemar_p == Approx(0.375));
  CHECK(a1.vs_aios[1].against == "aio0");
  CHECK(a1.vs_aios[1].accuracy.difference == Approx(0.2));
  CHECK(a1.vs_aios[1].accuracy.b == 1);
  CHECK(a1.vs_aios[1].accuracy.mcnemar_p == 1.0);
  const auto& q2 = e.aios[1].vs_q_lookup_test;
  CHECK(q2.accuracy.difference == Approx(0.25));
  CHECK(q2.accuracy.b == 2);
  CHECK(q2.accuracy.c == 1);
  CHECK(q2.accuracy.mcnemar_p == 1.0);
  CHECK(e.aios[1].vs_aios[0].against == "observer_1");
  // AIO0 has no observer: no comparisons.
  CHECK_FALSE(e.aios[2].vs_q_lookup_test.available());
  CHECK_FALSE(e.aios[2].vs_majority_test.available());
  CHECK(e.aios[2].vs_aios.empty());

  // Deterministic for a seed; bootstrap = 0 keeps McNemar and drops the intervals.
  const ev::StudyEvaluation again = ev::evaluate_run(hand_study(), models, hand_truth());
  CHECK(again.aios[0].vs_aios[0].accuracy.ci_low == a1.vs_aios[0].accuracy.ci_low);
  CHECK(again.aios[0].vs_aios[0].mae.ci_high == a1.vs_aios[0].mae.ci_high);
  ev::EvalOptions none;
  none.bootstrap = 0;
  const ev::StudyEvaluation quick = ev::evaluate_run(hand_study(), models, hand_truth(), 5, none);
  CHECK(std::isnan(quick.aios[0].vs_q_lookup_test.accuracy.ci_low));
  CHECK(quick.aios[0].vs_q_lookup_test.accuracy.mcnemar_p == Approx(0.5));
  CHECK(quick.aios[0].vs_q_lookup_test.accuracy.verdict == ev::Verdict::not_significant);
  none.bootstrap = -1;
  CHECK_THROWS_AS(ev::evaluate_run(hand_study(), models, hand_truth(), 5, none), std::invalid_argument);

  // The report: summary.json, per_aio.csv (new columns at the end) and the table.
  const fs::path dir = temp_dir("significance");
  ev::write_report(e, dir);
  const auto summary = vitiq::json::parse(slurp(dir / "summary.json"), "summary.json");
  const auto& j1 = summary.at("aios").as_array()[0];
  CHECK(j1.at("vs_q_lookup").as_number() == Approx(0.4));  // the old plain difference stays
  CHECK(j1.at("vs_q_lookup_test").at("accuracy").at("b").as_number() == 2);
  CHECK(j1.at("vs_q_lookup_test").at("accuracy").at("mcnemar_p").as_number() == Approx(0.5));
  CHECK(j1.at("vs_q_lookup_test").at("accuracy").at("verdict").as_string() == "not significant");
  CHECK(j1.at("vs_q_lookup_test").at("stimuli").as_number() == 4);
  CHECK(j1.at("vs_majority_test").at("mae").at("difference").as_number() == Approx(0.2 - 2.0));  // majority 1 errs 0, 1, 2, 4, 3
  CHECK(j1.at("vs_aios").at("observer_2").at("accuracy").at("c").as_number() == 1);
  CHECK(summary.at("aios").as_array()[2].at("vs_q_lookup_test").is_null());
  CHECK(summary.at("significance").at("bootstrap_resamples").as_number() == 2000);
  const auto per_aio = data::read_csv_table(dir / "per_aio.csv");
  REQUIRE(per_aio.header.size() >= 8);
  CHECK(per_aio.header[per_aio.header.size() - 9] == "q_lookup_expected_accuracy");
  CHECK(per_aio.header.back() == "majority_mcnemar_p");
  CHECK(per_aio.rows[0].fields[per_aio.require("beats_q_lookup")] == "not significant");
  CHECK(per_aio.rows[0].fields[per_aio.require("q_lookup_diff_ci_low")] == "0");
  CHECK(per_aio.rows[0].fields[per_aio.require("q_lookup_diff_ci_high")] == "1");
  CHECK(per_aio.rows[0].fields[per_aio.require("q_lookup_mcnemar_p")] == "0.5");
  CHECK(per_aio.rows[0].fields[per_aio.require("majority_mcnemar_p")] == "0.25");
  CHECK(per_aio.rows[2].fields[per_aio.require("beats_q_lookup")].empty());  // aio0
  const std::string table = ev::format_table(e);
  CHECK(table.find("beats Q") != std::string::npos);
  CHECK(table.find("n.s.") != std::string::npos);
  fs::remove_all(dir);
}
