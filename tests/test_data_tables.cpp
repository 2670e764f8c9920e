// tests/test_data_tables.cpp -- rating tables (original and long CSV formats), stimulus names,
// content splits and rating statistics (vitiq/data/{csv,ratings,split,stats}.hpp).
//
// Literals: Student-t quantiles and MOS confidence half-widths from scipy 1.10
// (scipy.stats.t.ppf, t.ppf(0.975, n - 1) * scipy.stats.sem(v)); everything else hand-computed.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/catch.hpp"
#include "vitiq/data/csv.hpp"
#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/data/stats.hpp"

namespace fs = std::filesystem;
using namespace vitiq::data;

namespace {

/// A fresh empty folder under the system temporary folder, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("vitiq_test_data_tables_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return path / name;
  }
};

/// The message of the FormatError that f throws ("" when it throws none).
template <class F>
std::string format_error(F&& f) {
  try {
    f();
  } catch (const vitiq::FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("csv: quoted fields, CRLF, BOM and blank lines", "[data][csv]") {
  const std::string text =
      "\xEF\xBB\xBF" "a,b,c\r\n"
      "1,\"x, y\",\"say \"\"hi\"\"\"\r\n"
      "\r\n"
      "2,\"two\nlines\",\r\n"
      "3,,z\r\n"
      "\r\n\n   \n";
  const auto recs = parse_csv(text, "t.csv");
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].fields == std::vector<std::string>{"a", "b", "c"});
  CHECK(recs[1].fields == std::vector<std::string>{"1", "x, y", "say \"hi\""});
  CHECK(recs[1].line == 2);
  CHECK(recs[2].fields == std::vector<std::string>{"2", "two\nlines", ""});
  CHECK(recs[2].line == 4);
  CHECK(recs[3].fields == std::vector<std::string>{"3", "", "z"});
  CHECK(recs[3].line == 6);  // the quoted line break counts

  CHECK(format_error([] { parse_csv("a,b\n1,\"open\n", "q.csv"); }) == "q.csv:2: unterminated quoted field");
  CHECK(format_error([] { parse_csv("a,b\n\"x\"y,2\n", "q.csv"); }) == "q.csv:2: character 'y' after a closing quote");
  CHECK(format_error([] { parse_csv_table("a,b\n1,2,3\n", "f.csv"); }) == "f.csv:2: 3 fields, the header has 2");
  CHECK(format_error([] { parse_csv_table("", "e.csv"); }) == "e.csv:1: empty file, expected a header line");
}

TEST_CASE("csv: fields written need no more quoting than necessary and read back", "[data][csv]") {
  const std::vector<std::string> fields = {"plain", "with,comma", "with \"quote\"", "two\nlines", " padded ", ""};
  const std::string line = csv_line(fields);
  CHECK(line == "plain,\"with,comma\",\"with \"\"quote\"\"\",\"two\nlines\",\" padded \",\n");
  const auto recs = parse_csv(line, "x");
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].fields == fields);
  CHECK(parse_int(" 42 ") == 42);
  CHECK(!parse_int("4.0"));
  CHECK(!parse_int(""));
  CHECK(parse_double("2.5") == 2.5);
  CHECK(!parse_double("2.5s"));
}

TEST_CASE("stimulus names of the original form", "[data][ratings]") {
  const auto a = parse_stimulus_name("00012astronaut_I3_Q22.jpeg");
  CHECK(a.original_form);
  CHECK(a.id == "00012");
  CHECK(a.source == "astronaut");
  CHECK(a.band == 3);
  CHECK(a.q == 22);
  CHECK(a.region_q == 0);
  const auto b = parse_stimulus_name("some/dir/7n01440764_10026_I1_Q2.jpeg");
  CHECK(b.id == "7");
  CHECK(b.source == "n01440764_10026");
  CHECK(b.band == 1);
  CHECK(b.q == 2);
  const auto c = parse_stimulus_name("00003coffee_I5_Q91_R4.png");
  CHECK(c.band == 5);
  CHECK(c.q == 91);
  CHECK(c.region_q == 4);
  const auto d = parse_stimulus_name("holiday.png");
  CHECK(!d.original_form);
  CHECK(d.band == 0);
  CHECK(d.source == "holiday");
  CHECK(stimulus_file_name("00012", "astronaut", 3, 22) == "00012astronaut_I3_Q22.jpeg");
  CHECK(stimulus_file_name("1", "x", 5, 91, ".png", 4) == "1x_I5_Q91_R4.png");
  CHECK(band_of_q(2) == 1);
  CHECK(band_of_q(10) == 1);
  CHECK(band_of_q(11) == 2);
  CHECK(band_of_q(25) == 3);
  CHECK(band_of_q(50) == 4);
  CHECK(band_of_q(51) == 5);
  CHECK(band_of_q(100) == 5);
  CHECK(band_of_q(0) == 0);
}

TEST_CASE("observer and session from original file names", "[data][ratings]") {
  CHECK(parse_observer_session("obs3_session2.csv") == std::make_pair(std::string("3"), 2));
  CHECK(parse_observer_session("Observer12-Session4.csv") == std::make_pair(std::string("12"), 4));
  CHECK(parse_observer_session("subject_A_s1.csv") == std::make_pair(std::string("A"), 1));
  CHECK(!parse_observer_session("ratings.csv"));
}

TEST_CASE("original format: read, validate, write, read back", "[data][ratings]") {
  TempDir dir;
  const fs::path f = dir.write("obs2_session1.csv",
                               "Image Name,Vote,Duration,Timestamp\r\n"
                               "00001astronaut_I1_Q5.jpeg,1,2.345,20-Jan-2023 11:47:37\r\n"
                               "\"00002astronaut_I2_Q12.jpeg\",3,1.5,20-Jan-2023 11:47:41\r\n"
                               "\r\n");
  ReadReport rep;
  const auto rs = read_original_csv(f, "2", 1, {}, &rep);
  REQUIRE(rs.size() == 2);
  CHECK(rep.rows == 2);
  CHECK(rep.kept == 2);
  CHECK(rs[0].image == "00001astronaut_I1_Q5.jpeg");
  CHECK(rs[0].observer == "2");
  CHECK(rs[0].session == 1);
  CHECK(rs[0].vote == 1);
  CHECK(rs[0].duration == Approx(2.345));
  CHECK(rs[1].timestamp == "20-Jan-2023 11:47:41");
  CHECK(rs[1].origin == f.string() + ":3");

  // round trip through the writer (one file per observer and session) and the folder reader
  TempDir out;
  std::vector<Rating> all = rs;
  Rating r = rs[0];
  r.session = 4;
  all.push_back(r);
  const auto files = write_original_files(out.path, all);
  REQUIRE(files.size() == 2);
  CHECK(files[0].filename() == "obs2_session1.csv");
  CHECK(files[1].filename() == "obs2_session4.csv");
  const auto back = read_original_dir(out.path);
  REQUIRE(back.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(back[i].image == all[i].image);
    CHECK(back[i].observer == all[i].observer);
    CHECK(back[i].session == all[i].session);
    CHECK(back[i].vote == all[i].vote);
    CHECK(back[i].duration == Approx(all[i].duration));
    CHECK(back[i].timestamp == all[i].timestamp);
  }
}

TEST_CASE("long format: any column order, extra columns, round trip", "[data][ratings]") {
  TempDir dir;
  const fs::path f = dir.write("study.csv",
                               "Vote,notes,Session,Observer,Image\n"
                               "4,\"good, clean\",1,a,x_I5_Q90.jpeg\n"
                               "2,,1,b,x_I5_Q90.jpeg\n"
                               "3,,2,a,y_I3_Q20.jpeg\n");
  const auto rs = read_long_csv(f);
  REQUIRE(rs.size() == 3);
  CHECK(rs[0].vote == 4);
  CHECK(rs[0].observer == "a");
  CHECK(rs[0].image == "x_I5_Q90.jpeg");
  CHECK(rs[2].session == 2);
  CHECK(std::isnan(rs[0].duration));
  const fs::path g = dir.path / "copy.csv";
  write_long_csv(g, rs);
  const auto back = read_long_csv(g);
  REQUIRE(back.size() == rs.size());
  for (std::size_t i = 0; i < rs.size(); ++i) {
    CHECK(back[i].image == rs[i].image);
    CHECK(back[i].observer == rs[i].observer);
    CHECK(back[i].session == rs[i].session);
    CHECK(back[i].vote == rs[i].vote);
  }
  CHECK(observers_of(rs) == std::vector<std::string>{"a", "b"});
  const ObserverView v = observer_view(rs, "a");
  CHECK(v.size() == 2);
  CHECK(v.sessions.size() == 2);
  CHECK(v.images() == std::vector<std::string>{"x_I5_Q90.jpeg", "y_I3_Q20.jpeg"});
  CHECK(observer_less("2", "10"));
  CHECK(!observer_less("10", "2"));
}

TEST_CASE("ratings: every invalid row is an error naming file and line, or a warning when skipping", "[data][ratings]") {
  TempDir dir;
  const std::string head = "image,observer,session,vote\n";
  const fs::path f = dir.write("ratings.csv", head +
                                                  "a_I1_Q5.jpeg,1,1,2\n"
                                                  "b_I1_Q5.jpeg,1,1,7\n"         // line 3: vote outside
                                                  "c_I1_Q5.jpeg,1,1,x\n"         // line 4: not an integer
                                                  "a_I1_Q5.jpeg,1,1,3\n"         // line 5: duplicate of line 2
                                                  "d_I1_Q5.jpeg,1,-1,3\n"        // line 6: bad session
                                                  "e_I1_Q5.jpeg,,1,3\n"          // line 7: empty observer
                                                  "a_I1_Q5.jpeg,1,2,5\n");       // line 8: fine (other session)
  const std::string name = f.string();
  CHECK(format_error([&] { read_long_csv(f); }) == name + ":3: vote 7 outside 1..5");

  ReadOptions skip;
  skip.skip_invalid = true;
  ReadReport rep;
  const auto rs = read_long_csv(f, skip, &rep);
  CHECK(rs.size() == 2);
  CHECK(rep.rows == 7);
  CHECK(rep.kept == 2);
  REQUIRE(rep.warnings.size() == 5);
  CHECK(rep.warnings[0] == name + ":3: vote 7 outside 1..5 (row skipped)");
  CHECK(rep.warnings[1] == name + ":4: vote 'x' is not an integer (row skipped)");
  CHECK(rep.warnings[2] == name + ":5: duplicate rating of 'a_I1_Q5.jpeg' by observer 1 in session 1 (first at " + name +
                               ":2) (row skipped)");
  CHECK(rep.warnings[3] == name + ":6: session '-1' is not a non-negative integer (row skipped)");
  CHECK(rep.warnings[4] == name + ":7: empty observer id (row skipped)");

  // a missing column
  const fs::path g = dir.write("nocol.csv", "image,observer,vote\na,1,3\n");
  CHECK(format_error([&] { read_long_csv(g); }) == g.string() + ":1: missing column 'session' (header: image,observer,vote)");
  const fs::path h = dir.write("obs1_session1.csv", "Image Name,Duration\na,1\n");
  CHECK(format_error([&] { read_original_csv(h, "1", 1); }) ==
        h.string() + ":1: missing column 'Vote' (header: Image Name,Duration)");

  // a missing image file
  fs::create_directories(dir.path / "images");
  std::ofstream(dir.path / "images" / "a_I1_Q5.jpeg") << "x";
  const fs::path k = dir.write("img.csv", head + "a_I1_Q5.jpeg,1,1,2\nmissing_I1_Q5.jpeg,1,1,2\n");
  ReadOptions with_images;
  with_images.image_dir = dir.path / "images";
  CHECK(format_error([&] { read_long_csv(k, with_images); }) ==
        k.string() + ":3: image 'missing_I1_Q5.jpeg' not found in " + (dir.path / "images").string());
  with_images.skip_invalid = true;
  ReadReport rep2;
  CHECK(read_long_csv(k, with_images, &rep2).size() == 1);
  CHECK(rep2.warnings.size() == 1);

  // a duplicate across two original-format files
  TempDir two;
  two.write("obs1_session1.csv", "Image Name,Vote\na,3\n");
  two.write("obs1_session1b.csv", "Image Name,Vote\nb,3\n");  // also observer 1, session 1
  two.write("obs1_session01.csv", "Image Name,Vote\na,2\n");  // session 01 = 1: duplicate of the first
  const std::string msg = format_error([&] { read_original_dir(two.path); });
  CHECK(msg.find("duplicate rating of 'a' by observer 1 in session 1") != std::string::npos);
}

TEST_CASE("content split: seeded, sources never on two sides, stored and read back", "[data][split]") {
  std::vector<std::pair<std::string, std::string>> images;
  for (int s = 0; s < 12; ++s)
    for (int k = 0; k < 3 + s % 4; ++k) images.push_back({"img" + std::to_string(s) + "_" + std::to_string(k), "src" + std::to_string(s)});
  const ContentSplit a = ContentSplit::make(images, {0.6, 0.2, 0.2}, 7);
  const ContentSplit b = ContentSplit::make(images, {0.6, 0.2, 0.2}, 7);
  CHECK(a.sources() == b.sources());
  // no source in two parts; every part non-empty; roughly the asked shares of images
  std::map<std::string, std::set<Part>> parts;
  std::array<int, 3> n{};
  for (const auto& e : a.entries()) parts[e.source].insert(e.part), ++n[std::size_t(e.part)];
  for (const auto& [src, ps] : parts) CHECK(ps.size() == 1);
  CHECK(n[0] > 0);
  CHECK(n[1] > 0);
  CHECK(n[2] > 0);
  CHECK(std::abs(double(n[0]) / double(images.size()) - 0.6) < 0.15);
  // another seed gives another split (for these 12 sources)
  bool differs = false;
  for (int seed = 8; seed < 12 && !differs; ++seed) differs = ContentSplit::make(images, {0.6, 0.2, 0.2}, std::uint64_t(seed)).sources() != a.sources();
  CHECK(differs);

  TempDir dir;
  a.write_csv(dir.path / "split.csv");
  const ContentSplit c = ContentSplit::read_csv(dir.path / "split.csv");
  REQUIRE(c.entries().size() == a.entries().size());
  for (std::size_t i = 0; i < c.entries().size(); ++i) {
    CHECK(c.entries()[i].image == a.entries()[i].image);
    CHECK(c.entries()[i].source == a.entries()[i].source);
    CHECK(c.entries()[i].part == a.entries()[i].part);
  }
  CHECK(c.part("img0_0") == a.part("img0_0"));
  CHECK(!c.part("nope"));

  const fs::path bad = dir.write("bad.csv", "image,source,split\na,s1,train\nb,s1,test\n");
  CHECK(format_error([&] { ContentSplit::read_csv(bad); }) ==
        bad.string() + ":3: source 's1' is in test here but in train at line 2");
  const fs::path bad2 = dir.write("bad2.csv", "image,source,split\na,s1,train\nb,s2,holdout\n");
  CHECK(format_error([&] { ContentSplit::read_csv(bad2); }) == bad2.string() + ":3: split 'holdout' is not train, val or test");
  CHECK_THROWS_AS(ContentSplit({{"a", "s", Part::train}, {"b", "s", Part::val}}), vitiq::FormatError);
}

TEST_CASE("Student t quantile against scipy and mpmath", "[data][stats]") {
  struct Case { double p, df, scipy, exact; };
  // scipy: scipy 1.10 scipy.stats.t.ppf(p, df) (cdflib: about 1e-9 relative, 2e-9 at p = 0.9,
  // df = 3); exact: mpmath at 40 digits, bisection on the regularised incomplete beta function.
  const Case cases[] = {{0.975, 1, 12.706204736432095, 12.706204736174693314},
                        {0.975, 2, 4.302652729911275, 4.3026527297494617894},
                        {0.975, 4, 2.7764451051977987, 2.7764451051977934898},
                        {0.975, 9, 2.2621571627409915, 2.2621571627982049992},
                        {0.975, 29, 2.045229642132703, 2.0452296421327038745},
                        {0.975, 299, 1.9679296690653618, 1.9679296690656695531},
                        {0.995, 5, 4.032142983557536, 4.0321429835552271793},
                        {0.9, 3, 1.637744357215907, 1.6377443536962103222},
                        {0.6, 7, 0.2631668613520166, 0.26316686135202275215},
                        {0.025, 10, -2.2281388519649385, -2.2281388519862747157}};
  for (const auto& c : cases) {
    INFO("p = " << c.p << ", df = " << c.df);
    CHECK(student_t_quantile(c.p, c.df) == Approx(c.scipy).epsilon(5e-9));
    CHECK(student_t_quantile(c.p, c.df) == Approx(c.exact).epsilon(1e-13));
  }
}

TEST_CASE("MOS with 95 % interval, histograms per band, self-agreement", "[data][stats]") {
  // MOS: three stimuli, votes from observers 1..7; literals from scipy (t.ppf(0.975, n-1) * sem)
  std::vector<Rating> rs;
  auto add = [&](const std::string& img, const std::string& obs, int session, int vote) {
    Rating r;
    r.image = img;
    r.observer = obs;
    r.session = session;
    r.vote = vote;
    rs.push_back(r);
  };
  const std::vector<int> a = {3, 4, 4, 5, 2}, b = {1, 2}, c = {5, 5, 4, 4, 4, 3, 5};
  for (std::size_t i = 0; i < a.size(); ++i) add("a_I3_Q20.jpeg", std::to_string(i + 1), 1, a[i]);
  for (std::size_t i = 0; i < b.size(); ++i) add("b_I1_Q4.jpeg", std::to_string(i + 1), 1, b[i]);
  for (std::size_t i = 0; i < c.size(); ++i) add("c_I5_Q80.jpeg", std::to_string(i + 1), 1, c[i]);
  add("a_I3_Q20.jpeg", "1", 4, 1);  // a repeat of observer 1: ignored by one_vote_per_observer
  const auto mos = mos_per_stimulus(rs);
  REQUIRE(mos.size() == 3);
  CHECK(mos[0].image == "a_I3_Q20.jpeg");
  CHECK(mos[0].n == 5);
  CHECK(mos[0].mos == Approx(3.6));
  CHECK(mos[0].ci95 == Approx(1.4157147769822749).epsilon(1e-9));
  CHECK(mos[1].mos == Approx(1.5));
  CHECK(mos[1].ci95 == Approx(6.353102368216048).epsilon(1e-9));
  CHECK(mos[2].mos == Approx(4.285714285714286));
  CHECK(mos[2].ci95 == Approx(0.6991176710833372).epsilon(1e-9));
  const auto all_votes = mos_per_stimulus(rs, {.one_vote_per_observer = false});
  CHECK(all_votes[0].n == 6);
  CHECK(all_votes[0].mos == Approx(19.0 / 6.0));

  // histograms: observer 1 voted 3 (I3), 1 (I1), 5 (I5) and 1 (I3, session 4)
  const auto h = vote_histograms(rs);
  const VoteHistogram& h1 = h.at("1");
  CHECK(h1.total(3) == 2);
  CHECK(h1.counts[3][0] == 1);
  CHECK(h1.counts[3][2] == 1);
  CHECK(h1.share(3, 3) == Approx(0.5));
  CHECK(h1.mean(3) == Approx(2.0));
  CHECK(h1.total(1) == 1);
  CHECK(std::isnan(h1.share(2, 1)));

  // self-agreement, hand-computed: pairs (3,1) for observer 1 only
  const SelfAgreement s1 = self_agreement(rs, "1");
  CHECK(s1.pairs == 1);
  CHECK(s1.exact == 0.0);
  CHECK(s1.within_one == 0.0);
  CHECK(s1.rmse == Approx(2.0));
  // a session pair: votes (2,2), (3,4), (5,3), (1,1) -> exact 2/4, within 1 3/4, RMSE sqrt(5/4)
  std::vector<Rating> t;
  const int s1v[] = {2, 3, 5, 1}, s4v[] = {2, 4, 3, 1};
  for (int i = 0; i < 4; ++i) {
    Rating r;
    r.image = "x" + std::to_string(i);
    r.observer = "o";
    r.session = 1;
    r.vote = s1v[i];
    t.push_back(r);
    r.session = 4;
    r.vote = s4v[i];
    t.push_back(r);
  }
  const SelfAgreement s = self_agreement(t, "o", 1, 4);
  CHECK(s.pairs == 4);
  CHECK(s.exact == Approx(0.5));
  CHECK(s.within_one == Approx(0.75));
  CHECK(s.rmse == Approx(std::sqrt(5.0 / 4.0)));
  CHECK(self_agreement_all(t).at("o").pairs == 4);
}
