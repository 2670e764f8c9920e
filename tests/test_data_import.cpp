// tests/test_data_import.cpp -- vitiq::data::import_study() (vitiq/data/import.hpp): small studies
// in the original layout (Obs_iterative/, Test/, Dataset/, an Obs0, a repeat session, a source in
// test and training, a source name with dots and underscores), vitiq's session files and a long
// table, turned into study folders; every count, the split, overlap drop and keep, and one test per
// error (each message naming file and line, nothing written afterwards).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"
#include "support/catch.hpp"
#include "vitiq/data/import.hpp"
#include "vitiq/data/study.hpp"
#include "vitiq/io/image.hpp"

namespace fs = std::filesystem;
using namespace vitiq::data;

namespace {

using vitiq_test::TempDir;

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// Replace line `line` (1-based) of a file.
void replace_line(const fs::path& p, std::size_t line, const std::string& with) {
  std::istringstream in(read_text(p));
  std::string out, l;
  for (std::size_t i = 1; std::getline(in, l); ++i) out += (i == line ? with : l) + "\n";
  write_text(p, out);
}

// The stimuli of the original-layout study. Training: 9 stimuli of 7 sources (one named like an
// ImageNet file, with dots and underscores; one, "over", also in the test set). Test: 3 stimuli.
const std::vector<std::string> train_stimuli = {
    "00001alpha_I1_Q5.jpeg", "00002alpha_I3_Q22.jpeg", "00003beta_I2_Q15.jpeg",
    "00004beta_I4_Q40.jpeg", "00005gamma_I5_Q80.jpeg", "00006delta_I2_Q12.jpeg",
    "00007eps_I3_Q20.jpeg",  "691ILSVRC2013_train_00031900.JPEG_I4_Q41.jpeg", "00008over_I1_Q4.jpeg"};
const std::vector<std::string> test_stimuli = {"00010tst1_I2_Q14.jpeg", "00011tst2_I4_Q30.jpeg", "00012over_I5_Q90.jpeg"};

void write_images(const fs::path& dir, const std::vector<std::string>& names) {
  fs::create_directories(dir);
  vitiq::io::ImageU8 img = vitiq::io::ImageU8::from_shape({64, 64, 3});
  for (std::size_t i = 0; i < img.size(); ++i) img.data()[i] = std::uint8_t((i * 7) % 251);
  const std::string png = read_text([&] {
    vitiq::io::write_png(dir / "template.png", img);
    return dir / "template.png";
  }());
  fs::remove(dir / "template.png");
  for (const auto& n : names) write_text(dir / n, png);  // a PNG under a .jpeg name: only linked, never decoded
}

/// Vote of observer o on training stimulus i in session k (session 4 repeats session 1: observer 1
/// always agrees with itself, observers 2 and 3 once not).
int vote_of(int o, std::size_t i, int k) {
  const int base = 1 + int((i + std::size_t(o)) % 5);
  if (k == 4 && o != 1 && i == 0) return base % 5 + 1;
  return base;
}

std::string row(const std::string& image, int vote, int t) {
  return image + "," + std::to_string(vote) + ",1.5,20-Jan-2023 11:47:" + std::to_string(10 + t) + "\n";
}

/// The original layout: observers 1..3 (plus Obs0), sessions 1..3, 4 = repeat of 1, Test/, Dataset/.
/// Session k holds training stimuli 3(k-1)..3(k-1)+2; session 4 holds those of session 1.
/// Dataset/: observer 1 lists the repeats twice, observers 2 and 3 once.
struct OriginalStudy {
  fs::path root, ratings, images;
  explicit OriginalStudy(const fs::path& r) : root(r), ratings(r / "orig"), images(r / "stimuli") {
    std::vector<std::string> all = train_stimuli;
    all.insert(all.end(), test_stimuli.begin(), test_stimuli.end());
    write_images(images, all);
    const std::string head = "Image Name,Vote,Duration,Timestamp\n";
    for (int o = 0; o <= 3; ++o) {
      const std::string obs = "Obs" + std::to_string(o);
      std::string dataset = head;
      for (int k = 1; k <= 4; ++k) {
        std::string text = head;
        for (std::size_t j = 0; j < 3; ++j) {
          const std::size_t i = (k == 4 ? 0 : std::size_t(k - 1) * 3) + j;
          text += row(train_stimuli[i], vote_of(o, i, k), int(j));
          if (k < 4 || o == 1) dataset += row(train_stimuli[i], vote_of(o, i, k), int(j));
        }
        const std::string name = obs + "_" + std::to_string(k) + (k == 4 ? "_selfacc" : "") + ".csv";
        write_text(ratings / "Obs_iterative" / obs / name, text);
      }
      write_text(ratings / "Dataset" / (obs + ".csv"), dataset);
      std::string test = head;
      for (std::size_t j = 0; j < test_stimuli.size(); ++j) test += row(test_stimuli[j], 1 + int((j + std::size_t(o)) % 5), int(j));
      write_text(ratings / "Test" / (obs + ".csv"), test);
    }
  }
  fs::path session_file(int o, int k) const {
    const std::string obs = "Obs" + std::to_string(o);
    return ratings / "Obs_iterative" / obs / (obs + "_" + std::to_string(k) + (k == 4 ? "_selfacc" : "") + ".csv");
  }
  fs::path dataset_file(int o) const { return ratings / "Dataset" / ("Obs" + std::to_string(o) + ".csv"); }
  fs::path test_file(int o) const { return ratings / "Test" / ("Obs" + std::to_string(o) + ".csv"); }
  ImportOptions options(const std::string& out = "out") const {
    ImportOptions opt;
    opt.ratings = ratings;
    opt.images = images;
    opt.out = root / out;
    return opt;
  }
};

Rating rating(const std::string& image, const std::string& observer, int session, int vote) {
  Rating r;
  r.image = image;
  r.observer = observer;
  r.session = session;
  r.vote = vote;
  return r;
}

bool contains(const std::vector<std::string>& v, const std::string& needle) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.find(needle) != std::string::npos; });
}

/// import_study must throw a vitiq::Error whose message holds every one of `parts`, and leave no
/// output folder (and no temporary sibling) behind.
void require_import_error(const ImportOptions& opt, const std::vector<std::string>& parts) {
  std::string msg;
  try {
    import_study(opt);
  } catch (const vitiq::Error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  REQUIRE(!msg.empty());
  for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
  CHECK_FALSE(fs::exists(opt.out));
  for (const auto& e : fs::directory_iterator(opt.out.parent_path()))
    CHECK(e.path().filename().string().find(".import.") == std::string::npos);
}

}  // namespace

TEST_CASE("import: the layout of a ratings folder is detected", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  CHECK(detect_layout(s.ratings).layout == ImportLayout::original);
  write_text(t.path / "sess" / "obs1_session1.csv", "Image Name,Vote\n");
  CHECK(detect_layout(t.path / "sess").layout == ImportLayout::sessions);
  write_text(t.path / "long" / "ratings.csv", "image,observer,session,vote\n");
  CHECK(detect_layout(t.path / "long").layout == ImportLayout::long_table);
  CHECK(detect_layout(t.path / "long" / "ratings.csv").layout == ImportLayout::long_table);
  fs::create_directories(t.path / "empty");
  CHECK_THROWS_AS(detect_layout(t.path / "empty"), vitiq::FormatError);
  CHECK_THROWS_AS(detect_layout(t.path / "absent"), vitiq::IoError);
  CHECK(parse_import_layout("long") == ImportLayout::long_table);
  CHECK_FALSE(parse_import_layout("wide"));
}

TEST_CASE("import: the original layout becomes a study folder", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  const ImportReport rep = import_study(s.options());
  const fs::path out = t.path / "out";

  CHECK(rep.layout == ImportLayout::original);
  CHECK(rep.observers == std::vector<std::string>{"1", "2", "3"});  // Obs0 is no observer
  CHECK(contains(rep.skipped_files, "Obs0"));
  CHECK(rep.skipped_files.size() == 6);  // 4 session files, Dataset/ and Test/
  CHECK(rep.test_session == 5);
  CHECK(contains(rep.notes, "session 5"));
  CHECK(rep.test_set_size == 3);
  // 15 votes per observer (4 sessions of 3, 3 test); the overlap source's training stimulus
  // (session 3, all observers) is dropped: 3 votes.
  CHECK(rep.votes == 42);
  CHECK(rep.overlap_sources == std::vector<std::string>{"over"});
  CHECK(rep.overlap_stimuli == std::vector<std::string>{"00008over_I1_Q4.jpeg"});
  CHECK(rep.overlap_votes == 3);
  CHECK(rep.stimuli == 11);
  CHECK(rep.sources == 9);
  CHECK(rep.test_stimuli == 3);
  CHECK(rep.train_stimuli + rep.val_stimuli == 8);
  for (const auto& o : rep.observers) {
    const auto& ss = rep.sessions.at(o);
    CHECK(ss == std::map<int, std::size_t>{{1, 3}, {2, 3}, {3, 2}, {4, 3}, {5, 3}});
    CHECK(rep.repeats.at(o).pairs == 3);
    CHECK(rep.repeats.at(o).agree == (o == "1" ? 3u : 2u));
  }
  CHECK(rep.warnings.empty());
  CHECK(rep.skipped_rows.empty());

  // The folder reads back as a study; the split is the common test set plus train/val by source.
  const Study study = read_study(out);
  CHECK(study.ratings.size() == 42);
  std::vector<std::string> want_test = test_stimuli;
  std::sort(want_test.begin(), want_test.end());
  CHECK(study.test_images() == want_test);
  CHECK(study.split.source("691ILSVRC2013_train_00031900.JPEG_I4_Q41.jpeg") == "ILSVRC2013_train_00031900.JPEG");
  CHECK_FALSE(study.split.part("00008over_I1_Q4.jpeg"));  // dropped
  for (const auto& [src, part] : study.split.sources())
    if (src == "tst1" || src == "tst2" || src == "over") CHECK(part == Part::test);
    else CHECK(part != Part::test);
  for (const auto& e : study.split.entries()) {
    CHECK(fs::is_symlink(out / "images" / e.image));
    CHECK(fs::is_regular_file(out / "images" / e.image));
  }
  const auto j = vitiq::json::parse(read_text(out / "import_report.json"), "import_report.json");
  CHECK(j.at("votes").as_number() == 42);
  CHECK(j.at("test_session").as_number() == 5);
  CHECK(j.at("overlap_sources").as_array().size() == 1);
  CHECK(j.at("repeats").at("1").at("self_agreement").as_number() == 1.0);
}

TEST_CASE("import: the split is seeded and deterministic", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  import_study(s.options("a"));
  import_study(s.options("b"));
  CHECK(read_text(t.path / "a" / "split.csv") == read_text(t.path / "b" / "split.csv"));
  CHECK(read_text(t.path / "a" / "ratings.csv") == read_text(t.path / "b" / "ratings.csv"));
  // Other seeds: the test part stays the common test set whatever the seed.
  for (std::uint64_t seed = 2; seed < 6; ++seed) {
    ImportOptions opt = s.options("s" + std::to_string(seed));
    opt.seed = seed;
    import_study(opt);
    const ContentSplit sp = ContentSplit::read_csv(opt.out / "split.csv");
    CHECK(sp.images(Part::test).size() == 3);
  }
}

TEST_CASE("import: --overlap keep keeps the training stimuli, their source marked", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  ImportOptions opt = s.options();
  opt.overlap = OverlapPolicy::keep;
  opt.copy_images = true;
  const ImportReport rep = import_study(opt);
  CHECK(rep.votes == 45);
  CHECK(rep.stimuli == 12);
  CHECK(rep.sources == 10);
  CHECK(contains(rep.notes, "#overlap"));
  const Study study = read_study(opt.out);
  CHECK(study.split.part("00008over_I1_Q4.jpeg") == Part::train);
  CHECK(study.split.source("00008over_I1_Q4.jpeg") == "over#overlap");
  CHECK(study.split.source("00012over_I5_Q90.jpeg") == "over");
  CHECK(fs::is_regular_file(fs::symlink_status(opt.out / "images" / "00008over_I1_Q4.jpeg")));  // --copy
}

TEST_CASE("import: warnings for missing test votes", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  fs::remove(s.test_file(3));
  write_text(s.test_file(2), "Image Name,Vote,Duration,Timestamp\n" + row(test_stimuli[1], 3, 0) + row(test_stimuli[2], 4, 1));
  const ImportReport rep = import_study(s.options());
  CHECK(contains(rep.warnings, "observer 3 has no test votes"));
  CHECK(contains(rep.warnings, "observer 2 did not rate test stimulus '" + test_stimuli[0] + "'"));
}

TEST_CASE("import: errors name file and line, and nothing is written", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  const ImportOptions opt = s.options();
  const std::string obs1_3 = s.session_file(1, 3).string();

  SECTION("vote outside 1..5") {
    replace_line(s.session_file(1, 3), 3, row(train_stimuli[7], 7, 0));
    require_import_error(opt, {obs1_3 + ":3:", "vote 7 outside 1..5"});
  }
  SECTION("vote not an integer") {
    replace_line(s.session_file(1, 3), 2, train_stimuli[6] + ",3.5,1.0,x");
    require_import_error(opt, {obs1_3 + ":2:", "vote '3.5' is not an integer"});
  }
  SECTION("missing image") {
    fs::remove(s.images / train_stimuli[4]);  // session 2 of every observer, line 3
    require_import_error(opt, {s.session_file(1, 2).string() + ":3:", "not found"});
  }
  SECTION("the same stimulus twice in one session") {
    replace_line(s.session_file(2, 1), 3, row(train_stimuli[0], 2, 5));
    require_import_error(opt, {s.session_file(2, 1).string() + ":3:", "duplicate rating", ":2)"});
  }
  SECTION("broken CSV quoting") {
    replace_line(s.session_file(3, 2), 4, "\"" + train_stimuli[5] + ",3,1.0,x");
    require_import_error(opt, {s.session_file(3, 2).string() + ":4:", "unterminated quoted field"});
  }
  SECTION("a Dataset vote that disagrees with the session files") {
    const int v = vote_of(2, 3, 2);  // Dataset/Obs2.csv line 5: training stimulus 3 (session 2)
    replace_line(s.dataset_file(2), 5, row(train_stimuli[3], v % 5 + 1, 0));
    require_import_error(opt, {s.dataset_file(2).string() + ":5:", "disagrees", s.session_file(2, 2).string() + ":2"});
  }
  SECTION("a Dataset row in no session file") {
    replace_line(s.dataset_file(3), 2, row(test_stimuli[0], 1, 0));
    require_import_error(opt, {s.dataset_file(3).string() + ":2:", "in no session file"});
  }
  SECTION("a session vote missing from Dataset") {
    replace_line(s.dataset_file(1), 4, "");   // stimulus 2 (session 1), which observer 1 repeats ...
    replace_line(s.dataset_file(1), 13, "");  // ... and its repeat (session 4): both gone
    require_import_error(opt, {s.session_file(1, 1).string() + ":4:", "missing from", s.dataset_file(1).string()});
  }
  SECTION("an existing non-empty output folder") {
    write_text(opt.out / "mine.txt", "precious");
    CHECK_THROWS_WITH(import_study(opt), Catch::Matchers::Contains("not empty"));
    CHECK(read_text(opt.out / "mine.txt") == "precious");
  }
}

TEST_CASE("import: --skip-invalid turns a missing image into a listed warning", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  fs::remove(s.images / train_stimuli[6]);  // session 3 line 2 of every observer, and in Dataset/
  ImportOptions opt = s.options();
  opt.skip_invalid = true;
  const ImportReport rep = import_study(opt);
  CHECK(rep.votes == 39);
  CHECK(contains(rep.skipped_rows, s.session_file(1, 3).string() + ":2: image '" + train_stimuli[6] + "' not found"));
  CHECK(contains(rep.skipped_rows, s.dataset_file(2).string() + ":8:"));
  CHECK(std::count_if(rep.skipped_rows.begin(), rep.skipped_rows.end(),
                      [](const std::string& w) { return w.find("(row skipped)") != std::string::npos; }) == 6);
  CHECK_FALSE(read_study(opt.out).split.part(train_stimuli[6]));
}

TEST_CASE("import: only Dataset/ files: sessions unknown", "[import]") {
  TempDir t;
  OriginalStudy s(t.path);
  fs::remove_all(s.ratings / "Obs_iterative");
  const ImportReport rep = import_study(s.options());
  CHECK(contains(rep.warnings, "sessions are unknown"));
  // Observer 1 lists its repeats twice: second votes as session 2; the test set follows: 3.
  CHECK(rep.test_session == 3);
  CHECK(rep.sessions.at("1") == std::map<int, std::size_t>{{1, 8}, {2, 3}, {3, 3}});
  CHECK(rep.sessions.at("2") == std::map<int, std::size_t>{{1, 8}, {3, 3}});
}

TEST_CASE("import: vitiq's session files, a name without band and Q", "[import]") {
  TempDir t;
  const fs::path images = t.path / "img";
  write_images(images, {"a_I1_Q5.png", "b_I2_Q15.png", "c_I3_Q22.png", "d_I4_Q40.png", "plain.png", "t1_I2_Q12.png",
                        "t2_I5_Q70.png"});
  std::vector<Rating> rs;
  for (std::string o : {"1", "2"}) {
    int v = o == "1" ? 1 : 2;
    for (std::string img : {"a_I1_Q5.png", "b_I2_Q15.png", "plain.png"}) rs.push_back(rating(img, o, 1, v++ % 5 + 1));
    for (std::string img : {"c_I3_Q22.png", "d_I4_Q40.png"}) rs.push_back(rating(img, o, 2, v++ % 5 + 1));
    for (std::string img : {"t1_I2_Q12.png", "t2_I5_Q70.png"}) rs.push_back(rating(img, o, 3, v++ % 5 + 1));
  }
  write_original_files(t.path / "sess", rs);
  ImportOptions opt;
  opt.ratings = t.path / "sess";
  opt.images = images;
  opt.out = t.path / "out";
  const ImportReport rep = import_study(opt);
  CHECK(rep.layout == ImportLayout::sessions);
  CHECK(rep.test_session == 3);
  CHECK(rep.votes == 14);
  CHECK(contains(rep.warnings, "'plain.png' has no _I<band>_Q<q>"));
  CHECK(contains(rep.warnings, "Q look-up baseline will be unavailable"));
  const Study study = read_study(opt.out);
  CHECK(study.test_images() == std::vector<std::string>{"t1_I2_Q12.png", "t2_I5_Q70.png"});
  CHECK(study.split.source("plain.png") == "plain");
}

TEST_CASE("import: a long table without a test set gets a drawn test split", "[import]") {
  TempDir t;
  const fs::path images = t.path / "img";
  std::vector<std::string> names;
  for (int src = 0; src < 10; ++src)
    for (int q : {5, 40}) names.push_back(std::to_string(src) + "src" + std::to_string(src) + "_I" + std::to_string(band_of_q(q)) + "_Q" + std::to_string(q) + ".png");
  write_images(images, names);
  std::vector<Rating> rs;
  for (std::size_t i = 0; i < names.size(); ++i) {
    rs.push_back(rating(names[i], "A", 1 + int(i % 2), 1 + int(i % 5)));
    if (i % 3 == 0) rs.push_back(rating(names[i], "B", 1, 1 + int((i + 1) % 5)));
  }
  write_long_csv(t.path / "long.csv", rs);
  ImportOptions opt;
  opt.ratings = t.path / "long.csv";
  opt.images = images;
  opt.out = t.path / "out";
  const ImportReport rep = import_study(opt);
  CHECK(rep.layout == ImportLayout::long_table);
  CHECK(rep.test_session == 0);
  CHECK(rep.test_how.find("drawn") != std::string::npos);
  CHECK(rep.votes == rs.size());
  CHECK(rep.test_stimuli > 0);
  CHECK(rep.train_stimuli > rep.test_stimuli);
  const ContentSplit sp = ContentSplit::read_csv(opt.out / "split.csv");  // throws if a source were in two parts
  CHECK(sp.entries().size() == names.size());
  CHECK(sp.sources().size() == 10);

  SECTION("a bad row of a long table names file and line") {
    write_text(t.path / "bad.csv", "image,observer,session,vote\n" + names[0] + ",A,1,3\n" + names[1] + ",A,1,0\n");
    opt.ratings = t.path / "bad.csv";
    opt.out = t.path / "out2";
    require_import_error(opt, {(t.path / "bad.csv").string() + ":3:", "vote 0 outside 1..5"});
  }
}
