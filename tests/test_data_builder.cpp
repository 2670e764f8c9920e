// tests/test_data_builder.cpp -- the study builder (vitiq/data/dataset_builder.hpp) on small
// synthetic photos: the files it writes read back through the library's own readers, the split
// keeps sources apart, the design holds, the ground truth is consistent (the Bayes ceiling it
// states equals the one computed and sampled from its vote probabilities), and the same seed
// gives the same study with any thread count.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/catch.hpp"
#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/dataset_builder.hpp"
#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/json.hpp"

namespace fs = std::filesystem;
using namespace vitiq::data;

namespace {

/// Four synthetic "photos" (112 x 96): smooth colour gradients, a few discs, and some texture.
fs::path make_photos(const fs::path& dir) {
  fs::create_directories(dir);
  for (int p = 0; p < 4; ++p) {
    vitiq::Rng rng(std::uint64_t(50 + p));
    vitiq::io::ImageU8 img = vitiq::io::ImageU8::from_shape({96, 112, 3});
    const double cx = 20 + 70 * rng.uniform(), cy = 20 + 50 * rng.uniform(), r = 10 + 20 * rng.uniform();
    for (std::size_t y = 0; y < 96; ++y)
      for (std::size_t x = 0; x < 112; ++x) {
        const bool disc = (double(x) - cx) * (double(x) - cx) + (double(y) - cy) * (double(y) - cy) < r * r;
        for (std::size_t c = 0; c < 3; ++c) {
          double v = 60 + 1.2 * double(x) * (c == 0) + 1.5 * double(y) * (c == 1) + 40 * (c == 2) + (disc ? 70.0 : 0.0);
          v += (p % 2 ? 25.0 : 6.0) * (rng.uniform() - 0.5);  // texture: stronger in two photos
          img(y, x, c) = std::uint8_t(std::clamp(v, 0.0, 255.0));
        }
      }
    vitiq::io::write_png(dir / ("photo" + std::to_string(p) + ".png"), img);
  }
  return dir;
}

BuildOptions small_options(const fs::path& photos, const fs::path& out, int threads) {
  BuildOptions opt;
  opt.out = out;
  opt.photos = photos_in_directory(photos);
  opt.crop_size = 48;
  opt.design.observers = 2;
  opt.design.sessions = 2;
  opt.design.session_size = 12;
  opt.design.test_size = 10;
  opt.fractions = {0.5, 0.25, 0.25};
  opt.seed = 9;
  opt.threads = threads;
  opt.calibration.knots = 4;
  opt.calibration.max_iterations = 40;
  return opt;
}

std::string slurp(const fs::path& p) {
  const auto b = vitiq::io::read_file(p);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

TEST_CASE("builder helpers: timestamps, names, apportionment", "[data][builder]") {
  CHECK(detail::matlab_timestamp(0) == "01-Jan-2023 00:00:00");
  CHECK(detail::matlab_timestamp(86400.0 * 31 + 3661) == "01-Feb-2023 01:01:01");
  CHECK(detail::matlab_timestamp(86400.0 * (365 + 31 + 28)) == "29-Feb-2024 00:00:00");
  CHECK(detail::matlab_timestamp(86400.0 * 19 + 11 * 3600 + 47 * 60 + 37) == "20-Jan-2023 11:47:37");
  CHECK(source_name_of("motorcycle_left") == "motorcycle-left");
  CHECK(source_name_of("2019 beach") == "p2019-beach");
  CHECK(detail::apportion(10, {1, 1, 2}) == std::vector<int>{3, 2, 5});
  CHECK(detail::apportion(2, {5, 0, 1, 1}) == std::vector<int>{1, 0, 1, 0});
  const auto defaults = find_default_photos({fs::path("/nonexistent")});
  CHECK(defaults.empty());
}

TEST_CASE("a small study: files, split, design, ground truth, determinism", "[data][builder]") {
  const fs::path root = fs::temp_directory_path() / ("vitiq_test_data_builder_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path photos = make_photos(root / "photos");
  const StudySummary a = build_study(small_options(photos, root / "a", 1));
  const StudySummary b = build_study(small_options(photos, root / "b", 3));

  // the same seed: the same bytes, whatever the thread count
  for (const char* f : {"ratings.csv", "split.csv", "ground_truth_stimuli.csv", "ratings/obs1_session1.csv"})
    CHECK(slurp(root / "a" / f) == slurp(root / "b" / f));
  for (const auto& s : a.stimuli) CHECK(slurp(root / "a" / "images" / s.image) == slurp(root / "b" / "images" / s.image));

  // the tables read back, every image present
  ReadOptions ro;
  ro.image_dir = root / "a" / "images";
  const std::vector<Rating> ratings = read_long_csv(root / "a" / "ratings.csv", ro);
  REQUIRE(ratings.size() == a.ratings.size());
  const std::vector<Rating> original = read_original_dir(root / "a" / "ratings", ro);
  CHECK(original.size() == ratings.size());
  std::map<std::string, int> long_votes;
  for (const auto& r : ratings) long_votes[r.image + "/" + r.observer + "/" + std::to_string(r.session)] = r.vote;
  for (const auto& r : original) CHECK(long_votes.at(r.image + "/" + r.observer + "/" + std::to_string(r.session)) == r.vote);

  // design: 2 training sessions of 12, session 3 repeats session 1, session 4 = the common test set
  CHECK(a.repeat_session == 3);
  CHECK(a.test_session == 4);
  std::set<std::string> test_a, test_b;
  for (const auto& obs : {"1", "2"}) {
    const ObserverView v = observer_view(ratings, obs);
    REQUIRE(v.sessions.size() == 4);
    CHECK(v.sessions.at(1).size() == 12);
    CHECK(v.sessions.at(2).size() == 12);
    std::multiset<std::string> s1, s3;
    for (const auto& r : v.sessions.at(1)) s1.insert(r.image);
    for (const auto& r : v.sessions.at(3)) s3.insert(r.image);
    CHECK(s1 == s3);
    for (const auto& r : v.sessions.at(4)) (std::string(obs) == "1" ? test_a : test_b).insert(r.image);
  }
  CHECK(test_a.size() == 10);
  CHECK(test_a == test_b);

  // split: every image listed, sources never on two sides, the test session only from test
  const ContentSplit split = ContentSplit::read_csv(root / "a" / "split.csv");
  std::map<std::string, std::set<Part>> parts;
  for (const auto& e : split.entries()) parts[e.source].insert(e.part);
  for (const auto& [src, ps] : parts) CHECK(ps.size() == 1);
  CHECK(parts.size() == 4);
  for (const auto& r : ratings) {
    const auto p = split.part(r.image);
    REQUIRE(p);
    CHECK((*p == Part::test) == (r.session == 4));
    CHECK(split.source(r.image) == parse_stimulus_name(r.image).source);
  }

  // ground truth: the ceiling it states = mean max probability over the test stimuli of its
  // per-stimulus table = what sampling votes from those probabilities gives
  const vitiq::json::Value gt = vitiq::json::parse(slurp(root / "a" / "ground_truth.json"), "ground_truth.json");
  const CsvTable table = read_csv_table(root / "a" / "ground_truth_stimuli.csv");
  const std::size_t img_col = table.require("image"), split_col = table.require("split");
  vitiq::Rng rng(1);
  for (const auto& obs : gt.at("observers").as_array()) {
    const std::string id = obs.at("id").as_string();
    std::size_t pc[5];
    for (int k = 0; k < 5; ++k) pc[k] = table.require("obs" + id + "_p" + std::to_string(k + 1));
    std::vector<VoteProbs> test_probs;
    for (const auto& row : table.rows) {
      if (row.fields[split_col] != "test") continue;
      VoteProbs p{};
      for (int k = 0; k < 5; ++k) p[std::size_t(k)] = *parse_double(row.fields[pc[k]]);
      test_probs.push_back(p);
      CHECK(test_a.count(row.fields[img_col]) == 1);
    }
    REQUIRE(test_probs.size() == 10);
    const double stated = obs.at("test").at("bayes_ceiling").as_number();
    CHECK(bayes_ceiling(test_probs) == Approx(stated).margin(1e-5));  // the table has 6 decimals
    double hits = 0, n = 0;
    for (int rep = 0; rep < 20000; ++rep)
      for (const auto& p : test_probs) hits += sample_vote(p, rng.uniform()) == most_probable_vote(p), n += 1;
    CHECK(hits / n == Approx(stated).margin(0.01));  // 200,000 draws
    const auto& model = obs.at("model");
    CHECK(model.at("knot_x").as_array().size() == model.at("knot_y").as_array().size());
    CHECK(model.at("sigma").as_number() > 0);
    const double ql = obs.at("test").at("q_lookup_accuracy").as_number();
    CHECK(ql >= 0);
    CHECK(ql <= 1);
  }
  CHECK(gt.at("design").at("stimuli").at("total").as_number() == double(a.stimuli.size()));
  fs::remove_all(root);
}

TEST_CASE("a small regional study: composite stimuli and a centre-weighing observer", "[data][builder]") {
  const fs::path root = fs::temp_directory_path() / ("vitiq_test_data_builder_r_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path photos = make_photos(root / "photos");
  BuildOptions opt = small_options(photos, root / "out", 2);
  opt.regional = true;
  opt.write_references = true;
  const StudySummary s = build_study(opt);
  int regional = 0;
  for (const auto& st : s.stimuli) {
    const StimulusName n = parse_stimulus_name(st.image);
    CHECK(n.band == st.band);
    CHECK(n.q == st.q);
    if (st.region_q == 0) continue;
    ++regional;
    CHECK(n.region_q == st.region_q);
    CHECK(st.region_q <= 10);
    CHECK(st.band >= 3);
    CHECK(st.region.height > 0);
    CHECK(st.region.top % 8 == 0);
    CHECK(st.region.left % 8 == 0);
    CHECK(st.region.top + st.region.height <= 48);
    CHECK(fs::path(st.image).extension() == ".png");
    // the region was compressed harder: a larger error there than outside
    const auto img = vitiq::io::load_image(root / "out" / "images" / st.image);
    char id[16];
    std::snprintf(id, sizeof id, "%05d", st.crop);
    const auto ref = vitiq::io::load_image(root / "out" / "references" / (id + st.source + ".png"));
    REQUIRE(img.shape() == ref.shape());
    double in = 0, out = 0, n_in = 0, n_out = 0;
    for (std::size_t y = 0; y < 48; ++y)
      for (std::size_t x = 0; x < 48; ++x)
        for (std::size_t c = 0; c < 3; ++c) {
          const double d = double(img(y, x, c)) - double(ref(y, x, c));
          const bool inside = int(y) >= st.region.top && int(y) < st.region.top + st.region.height &&
                              int(x) >= st.region.left && int(x) < st.region.left + st.region.width;
          (inside ? in : out) += d * d;
          (inside ? n_in : n_out) += 1;
        }
    CHECK(in / n_in > out / n_out);
  }
  CHECK(regional > 0);
  REQUIRE(s.observers.size() == 2);
  CHECK(!s.observers[0].weighs_centre);
  CHECK(s.observers[1].weighs_centre);
  const vitiq::json::Value gt = vitiq::json::parse(slurp(root / "out" / "ground_truth.json"), "ground_truth.json");
  CHECK(gt.at("observers").as_array()[0].at("region").is_null());
  CHECK(gt.at("observers").as_array()[1].at("region").at("weight").as_number() == 4.0);
  const CsvTable table = read_csv_table(root / "out" / "ground_truth_stimuli.csv");
  CHECK(table.find("psnr_b_centre"));
  CHECK(table.find("region_q"));
  fs::remove_all(root);
}

TEST_CASE("the default study from Debian's photos: observers match DATA.md, under two minutes", "[data][builder][slow]") {
  const auto photos = find_default_photos();
  if (photos.size() < 3) {
    WARN("scikit-image's photos not found (install python3-skimage): default study not built");
    return;
  }
  const fs::path out = fs::temp_directory_path() / ("vitiq_test_data_default_" + std::to_string(::getpid()));
  fs::remove_all(out);
  BuildOptions opt;
  opt.out = out;
  const StudySummary s = build_study(opt);
  CHECK(s.seconds < 120);
  CHECK(s.stimuli.size() == 3090);
  CHECK(s.ratings.size() == 5 * 1500u);
  CHECK(s.overlap_min >= 300);
  CHECK(s.overlap_max <= 410);
  for (const auto& o : s.observers) {
    INFO("observer " << o.id);
    // expected shares on the observer's stimuli: within 0.05 of DATA.md
    CHECK(o.fit.max_share_error < 0.05);
    // the drawn votes (about 300 per band): within 0.05 + 3.5 standard errors of a share
    for (int b = 0; b < 5; ++b)
      for (int k = 0; k < 5; ++k) {
        const double t = o.target.share[std::size_t(b)][std::size_t(k)];
        const double se = std::sqrt(std::max(t * (1 - t), 0.01) / double(o.realised_count[std::size_t(b)]));
        CHECK(std::abs(o.realised_share[std::size_t(b)][std::size_t(k)] - t) < 0.05 + 3.5 * se);
      }
    CHECK(std::abs(o.expected_agreement.exact - o.target.self_agreement) < 0.04);
    CHECK(o.realised_agreement.within_one >= 0.85);
    CHECK(o.bayes_ceiling >= o.q_lookup_expected - 1e-9);  // nothing beats the ceiling in expectation
  }
  fs::remove_all(out);
}
