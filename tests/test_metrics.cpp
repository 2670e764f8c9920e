// tests/test_metrics.cpp -- vitiq::eval metrics (include/vitiq/eval/metrics.hpp) and report
// writers (include/vitiq/eval/report.hpp).
//
// The literals between BEGIN GENERATED and END GENERATED come from
//   /usr/bin/python3 tests/reference/make_metric_expectations.py
// (numpy, scipy 1.10.1, scikit-learn 1.2.1, mpmath 1.2.1; see the script for which function gives
// which value). Doubles are compared at 1e-12 relative (exact where the expected value is 0 or
// the quantity is an integer count); NaN expectations require NaN.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "vitiq/eval/metrics.hpp"
#include "vitiq/eval/report.hpp"

namespace {

namespace ev = vitiq::eval;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
[[maybe_unused]] constexpr double kInf = std::numeric_limits<double>::infinity();

struct VoteCase {
  const char* name;
  int K;
  std::vector<int> truth, predicted;
  std::vector<double> expected;
  double exact_accuracy, within_one, mae_argmax, rmse_argmax, mae_expected, rmse_expected, macro_f1,
      quadratic_kappa, plcc, srcc, krcc;
  std::vector<std::vector<long>> confusion;
};

struct CorrCase {
  const char* name;
  std::vector<double> x, y;
  double pearson, spearman, kendall, rmse, mae;
};

struct TQuantileCase {
  int df;
  double mpmath, scipy;
};

struct MosCase {
  std::vector<double> votes;
  double mean, ci95;
};

/// |actual - expected| <= rel |expected| (so exact when expected is 0); NaN expects NaN.
bool rel_close(double actual, double expected, double rel = 1e-12) {
  if (std::isnan(expected)) return std::isnan(actual);
  if (std::isinf(expected)) return actual == expected;
  return std::abs(actual - expected) <= rel * std::abs(expected);
}

#define CHECK_CLOSE(actual, expected)                                              \
  do {                                                                             \
    const double a_ = (actual), e_ = (expected);                                   \
    INFO(#actual << std::setprecision(17) << " = " << a_ << ", expected " << e_); \
    CHECK(rel_close(a_, e_));                                                      \
  } while (0)

// ==== BEGIN GENERATED (tests/reference/make_metric_expectations.py) ====
// clang-format off
// ---- evaluate_votes cases: name, K, truth, predicted, expected, then
// exact_accuracy, within_one, mae_argmax, rmse_argmax, mae_expected, rmse_expected, macro_f1,
// quadratic_kappa, plcc, srcc, krcc, confusion
const std::vector<VoteCase> kVoteCases = {
    {"mixed", 5,
     {1, 2, 3, 4, 5, 3, 3, 4, 2, 5, 1, 3, 4, 4, 2, 3, 5, 1, 2, 4},
     {1, 3, 3, 4, 4, 3, 2, 4, 2, 5, 2, 3, 5, 3, 2, 3, 4, 1, 1, 4},
     {1.3, 2.6, 3.1, 3.9, 4.4, 3.0, 2.4, 4.1, 2.2, 4.8, 1.7, 3.0, 4.6, 3.4, 2.0, 3.1, 4.2, 1.2, 1.6, 3.9},
     0.6, 1.0, 0.4, 0.6324555320336759, 0.31499999999999995, 0.4092676385936224, 0.5787878787878787, 0.8711755233494364, 0.9529598866194937, 0.9544268931579966, 0.8726536555967739,
     {{2, 1, 0, 0, 0}, {1, 2, 1, 0, 0}, {0, 1, 4, 0, 0}, {0, 0, 1, 3, 1}, {0, 0, 0, 2, 1}}},
    {"perfect", 5,
     {1, 2, 3, 4, 5, 2, 3, 4},
     {1, 2, 3, 4, 5, 2, 3, 4},
     {1.0, 2.0, 3.0, 4.0, 5.0, 2.0, 3.0, 4.0},
     1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0,
     {{1, 0, 0, 0, 0}, {0, 2, 0, 0, 0}, {0, 0, 2, 0, 0}, {0, 0, 0, 2, 0}, {0, 0, 0, 0, 1}}},
    {"constant_prediction", 5,
     {1, 2, 3, 4, 5, 3, 4, 2, 3},
     {3, 3, 3, 3, 3, 3, 3, 3, 3},
     {3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0},
     0.3333333333333333, 0.7777777777777778, 0.8888888888888888, 1.1547005383792515, 0.8888888888888888, 1.1547005383792515, 0.1, 0.0, kNaN, kNaN, kNaN,
     {{0, 0, 1, 0, 0}, {0, 0, 2, 0, 0}, {0, 0, 3, 0, 0}, {0, 0, 2, 0, 0}, {0, 0, 1, 0, 0}}},
    {"all_one_class_truth", 5,
     {4, 4, 4, 4, 4, 4, 4},
     {4, 3, 4, 5, 4, 4, 2},
     {3.9, 3.2, 4.1, 4.6, 4.0, 3.8, 2.5},
     0.5714285714285714, 0.8571428571428571, 0.5714285714285714, 0.9258200997725514, 0.47142857142857136, 0.6876460883747851, 0.14545454545454545, 0.0, kNaN, kNaN, kNaN,
     {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 1, 1, 4, 1}, {0, 0, 0, 0, 0}}},
    {"all_one_class_perfect", 5,
     {4, 4, 4, 4, 4},
     {4, 4, 4, 4, 4},
     {4.0, 4.1, 3.9, 4.0, 4.2},
     1.0, 1.0, 0.0, 0.0, 0.07999999999999999, 0.10954451150103324, 0.2, kNaN, kNaN, kNaN, kNaN,
     {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 5, 0}, {0, 0, 0, 0, 0}}},
    {"absent_classes", 5,
     {1, 2, 3, 2, 3, 1, 2, 3, 3, 2},
     {2, 2, 3, 4, 3, 1, 2, 4, 3, 3},
     {1.8, 2.1, 3.2, 3.6, 2.9, 1.4, 2.3, 3.7, 3.1, 2.8},
     0.6, 0.9, 0.5, 0.8366600265340756, 0.51, 0.6819090848492928, 0.39761904761904765, 0.5679012345679012, 0.7937851131959128, 0.7784989441615229, 0.6851601597031488,
     {{1, 1, 0, 0, 0}, {0, 2, 1, 1, 0}, {0, 0, 3, 1, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}},
    {"reversed_ties", 5,
     {1, 1, 2, 2, 3, 3, 4, 4, 5, 5},
     {5, 4, 4, 4, 3, 3, 2, 2, 1, 1},
     {4.5, 4.5, 4.0, 3.5, 3.0, 3.0, 2.0, 2.5, 1.5, 1.5},
     0.2, 0.2, 2.3, 2.701851217221259, 2.1, 2.479919353527449, 0.2, -0.972972972972973, -0.9890707100936804, -0.9938079899999065, -0.975900072948533,
     {{0, 0, 0, 1, 1}, {0, 0, 0, 2, 0}, {0, 0, 2, 0, 0}, {0, 2, 0, 0, 0}, {2, 0, 0, 0, 0}}},
    {"k3", 3,
     {1, 2, 3, 1, 2, 3, 2, 2},
     {1, 2, 2, 2, 2, 3, 1, 3},
     {1.2, 2.0, 2.4, 1.8, 2.1, 2.9, 1.4, 2.6},
     0.5, 1.0, 0.5, 0.7071067811865476, 0.37500000000000006, 0.47169905660283024, 0.5, 0.5, 0.7485862381397371, 0.7715167498104596, 0.6761234037828132,
     {{1, 1, 0}, {1, 2, 1}, {0, 1, 1}}},
};
// ---- correlation cases: name, x, y, pearson, spearman, kendall_tau_b, rmse, mae
const std::vector<CorrCase> kCorrCases = {
    {"no_ties", {0.5, 1.7, 2.2, 3.9, 4.1, 2.8, 0.1},
     {1.1, 2.0, 1.9, 4.4, 3.6, 3.3, 0.4},
     0.9617439780349372, 0.9285714285714288, 0.8095238095238096, 0.44400772194057303, 0.42857142857142855},
    {"ties_both", {1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 5.0},
     {2.0, 1.0, 3.0, 3.0, 4.0, 3.0, 5.0, 5.0, 4.0},
     0.8080749189443178, 0.8596491228070176, 0.7419354838709679, 0.816496580927726, 0.6666666666666666},
    {"negative", {1.0, 2.0, 3.0, 4.0, 5.0, 6.0},
     {9.0, 7.5, 7.5, 4.0, 3.0, -1.0},
     -0.9605796468617563, -0.9856107606091623, -0.9660917830792959, 5.283622494715786, 4.5},
    {"perfect", {1.0, 2.0, 3.0, 4.0},
     {10.0, 20.0, 30.0, 40.0},
     1.0, 1.0, 1.0, 24.647515087732476, 22.5},
    {"monotone_nonlinear", {1.0, 2.0, 3.0, 4.0, 5.0},
     {1.0, 4.0, 9.0, 16.0, 100.0},
     0.7952035738296035, 0.9999999999999999, 0.9999999999999999, 42.91619740843776, 23.0},
    {"two_points", {1.0, 3.0},
     {5.0, 2.0},
     -1.0, -0.9999999999999999, -1.0, 2.9154759474226504, 2.5},
    {"constant_y", {1.0, 2.0, 3.0, 4.0},
     {2.5, 2.5, 2.5, 2.5},
     kNaN, kNaN, kNaN, 1.118033988749895, 1.0},
    {"constant_x", {7.0, 7.0, 7.0},
     {1.0, 2.0, 3.0},
     kNaN, kNaN, kNaN, 5.066228051190222, 5.0},
    {"one_point", {1.0},
     {2.0},
     kNaN, kNaN, kNaN, 1.0, 1.0},
    {"vote_like_60", {3.0, 1.0, 3.0, 5.0, 2.0, 3.0, 5.0, 5.0, 2.0, 2.0, 5.0, 1.0, 4.0, 4.0, 1.0, 3.0, 1.0, 5.0, 2.0, 4.0, 2.0, 1.0, 4.0, 3.0, 5.0, 4.0, 5.0, 4.0, 2.0, 2.0, 1.0, 4.0, 2.0, 3.0, 4.0, 5.0, 2.0, 3.0, 3.0, 1.0, 1.0, 5.0, 3.0, 4.0, 2.0, 1.0, 3.0, 5.0, 2.0, 5.0, 2.0, 2.0, 2.0, 5.0, 3.0, 2.0, 5.0, 4.0, 3.0, 1.0},
     {4.5, 0.6, 3.8, 5.2, 3.9, 0.8, 6.0, 3.9, 1.0, 2.0, 3.3, -0.3, 3.4, 3.6, -1.1, 2.0, 0.8, 4.9, 1.3, 4.0, 1.4, 2.3, 3.1, 3.1, 4.5, 4.9, 3.9, 5.0, 0.7, 0.5, 0.4, 4.1, 0.3, 2.4, 4.0, 5.0, 3.0, 3.9, 3.4, 2.0, 2.0, 3.8, 5.4, 3.9, 1.3, 1.7, 2.5, 5.7, 0.7, 5.8, 0.6, 2.4, 1.8, 4.4, 3.2, 1.4, 4.2, 4.4, 5.1, -0.1},
     0.8138989166886462, 0.8148325751808663, 0.6584474294442825, 1.0333602147041143, 0.8483333333333333},
};
// ---- average ranks: x, scipy.stats.rankdata(x)
const std::vector<std::pair<std::vector<double>, std::vector<double>>> kRankCases = {
    {{3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0}, {4.5, 1.5, 6.0, 1.5, 8.0, 11.0, 3.0, 10.0, 8.0, 4.5, 8.0}},
    {{2.0, 2.0, 2.0, 2.0}, {2.5, 2.5, 2.5, 2.5}},
    {{-1.5, 0.0, -0.0, 7.25}, {1.0, 2.5, 2.5, 4.0}},
    {{10.0}, {1.0}},
};
// ---- t quantiles at p = 0.975: df, mpmath (40 digits), scipy.stats.t.ppf (cdflib, errors up to 1.2e-9)
const std::vector<TQuantileCase> kT975 = {
    {1, 12.706204736174694, 12.706204736432095},
    {2, 4.302652729749462, 4.302652729911275},
    {3, 3.1824463052837086, 3.182446305284263},
    {4, 2.7764451051977934, 2.7764451051977987},
    {5, 2.5705818356363146, 2.5705818366147395},
    {6, 2.4469118511449692, 2.4469118487916806},
    {7, 2.364624251592785, 2.3646242510102993},
    {8, 2.3060041352041662, 2.3060041350333704},
    {9, 2.262157162798205, 2.2621571627409915},
    {10, 2.2281388519862744, 2.2281388519649385},
    {11, 2.2009851600916392, 2.200985160082949},
    {12, 2.1788128296672284, 2.1788128296634177},
    {13, 2.160368656462792, 2.1603686564610127},
    {14, 2.1447866879178035, 2.1447866879169273},
    {15, 2.131449545559775, 2.131449545559323},
    {16, 2.119905299221254, 2.1199052992210112},
    {17, 2.1098155778333165, 2.1098155778331806},
    {18, 2.1009220402410382, 2.10092204024096},
    {19, 2.093024054408309, 2.093024054408263},
    {20, 2.0859634472658644, 2.0859634472658364},
    {21, 2.07961384472768, 2.079613844727662},
    {22, 2.073873067904026, 2.0738730679040147},
    {23, 2.068657610419048, 2.0686576104190406},
    {24, 2.0638985616280254, 2.0638985616280205},
    {25, 2.0595385527532972, 2.059538552753294},
    {26, 2.0555294386428726, 2.055529438642871},
    {27, 2.051830516480285, 2.0518305164802833},
    {28, 2.0484071417952445, 2.048407141795244},
    {29, 2.045229642132704, 2.045229642132703},
    {30, 2.0422724563012378, 2.0422724563012373},
    {50, 2.0085591121007607, 2.008559109715206},
    {100, 1.9839715185235518, 1.9839715184496334},
    {1000, 1.962339080826408, 1.9623390808264074},
};
// ---- t quantiles at other p: p, df, mpmath
const std::vector<std::tuple<double, double, double>> kTOther = {
    {0.95, 4.0, 2.1318467863266495},
    {0.995, 2.0, 9.92484320091829},
    {0.9, 1.0, 3.077683537175254},
    {0.6, 7.0, 0.2631668613520228},
    {0.999, 3.0, 10.214531852407383},
    {0.99, 1000.0, 2.330082674755513},
    {0.975, 2.5, 3.5746548420036817},
    {0.975, 0.5, 164.55767348048823},
    {0.999999, 1.0, 318309.88617359026},
    {0.75, 10000.0, 0.6745142844835924},
};
// ---- MOS with CI: votes, mean, ci95 half-width
const std::vector<MosCase> kMosCases = {
    {{4.0, 5.0, 3.0, 4.0, 4.0, 5.0, 2.0, 4.0, 3.0, 4.0, 5.0, 4.0, 3.0, 4.0, 4.0}, 3.8666666666666667, 0.46174824816530224},
    {{1.0, 2.0}, 1.5, 6.353102368087347},
    {{3.0, 3.0, 3.0, 3.0}, 3.0, 0.0},
    {{2.5, 4.0, 3.5}, 3.3333333333333335, 1.8972915167983797},
    {{1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0}, 3.064516129032258, 0.5352096731523056},
};
// clang-format on
// ==== END GENERATED ====

}  // namespace

namespace {

/// Deterministic pseudo-random integers in [lo, hi] (64-bit LCG), for property tests.
struct Lcg {
  std::uint64_t s;
  int next(int lo, int hi) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + int((s >> 33) % std::uint64_t(hi - lo + 1));
  }
};

/// Kendall's tau-b by counting all pairs, O(n^2).
double kendall_brute(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = x.size();
  std::int64_t c = 0, d = 0, tx = 0, ty = 0, tot = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      ++tot;
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) ++tx;
      if (dy == 0) ++ty;
      if (dx * dy > 0) ++c;
      if (dx * dy < 0) ++d;
    }
  if (tx == tot || ty == tot) return kNaN;
  return double(c - d) / std::sqrt(double(tot - tx)) / std::sqrt(double(tot - ty));
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("vitiq_test_metrics_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// evaluate_votes

TEST_CASE("evaluate_votes matches sklearn/scipy on fixed cases", "[eval][metrics]") {
  for (const VoteCase& c : kVoteCases) {
    INFO("case " << c.name);
    const ev::ClassificationReport r = ev::evaluate_votes(c.truth, c.predicted, c.expected, c.K);
    CHECK(r.count == c.truth.size());
    CHECK_CLOSE(r.exact_accuracy, c.exact_accuracy);
    CHECK_CLOSE(r.within_one, c.within_one);
    CHECK_CLOSE(r.mae_argmax, c.mae_argmax);
    CHECK_CLOSE(r.rmse_argmax, c.rmse_argmax);
    CHECK_CLOSE(r.mae_expected, c.mae_expected);
    CHECK_CLOSE(r.rmse_expected, c.rmse_expected);
    CHECK_CLOSE(r.macro_f1, c.macro_f1);
    CHECK_CLOSE(r.quadratic_kappa, c.quadratic_kappa);
    CHECK_CLOSE(r.plcc, c.plcc);
    CHECK_CLOSE(r.srcc, c.srcc);
    CHECK_CLOSE(r.krcc, c.krcc);
    CHECK(r.confusion == c.confusion);
  }
}

TEST_CASE("evaluate_votes conventions: NaN cases, absent classes, confusion sums", "[eval][metrics]") {
  SECTION("constant prediction: correlations NaN, kappa exactly 0") {
    const std::vector<int> t{1, 2, 3, 4, 5}, p(5, 3);
    const std::vector<double> e(5, 3.0);
    const auto r = ev::evaluate_votes(t, p, e);
    CHECK(std::isnan(r.plcc));
    CHECK(std::isnan(r.srcc));
    CHECK(std::isnan(r.krcc));
    CHECK(r.quadratic_kappa == 0.0);
  }
  SECTION("all votes one class, predicted perfectly: kappa NaN (0/0), F1 = 1/K") {
    const std::vector<int> t(6, 2);
    const std::vector<double> e(6, 2.0);
    const auto r = ev::evaluate_votes(t, t, e);
    CHECK(r.exact_accuracy == 1.0);
    CHECK(std::isnan(r.quadratic_kappa));
    CHECK(r.macro_f1 == 0.2);  // class 2: F1 = 1; classes 1, 3, 4, 5 absent: F1 = 0
  }
  SECTION("no samples: every metric NaN, zero confusion") {
    const auto r = ev::evaluate_votes({}, {}, {}, 4);
    CHECK(r.count == 0);
    for (double v : {r.exact_accuracy, r.within_one, r.mae_argmax, r.rmse_argmax, r.mae_expected, r.rmse_expected,
                     r.macro_f1, r.quadratic_kappa, r.plcc, r.srcc, r.krcc})
      CHECK(std::isnan(v));
    CHECK(r.confusion == std::vector<std::vector<long>>(4, std::vector<long>(4, 0)));
  }
  SECTION("random cases: confusion K x K sums to count, row sums = true counts; perfect -> kappa 1") {
    Lcg g{7};
    for (int trial = 0; trial < 20; ++trial) {
      const int K = g.next(2, 7);
      const std::size_t n = std::size_t(g.next(2, 200));
      std::vector<int> t(n), p(n);
      std::vector<double> e(n);
      for (std::size_t i = 0; i < n; ++i) {
        t[i] = g.next(1, K);
        p[i] = g.next(1, K);
        e[i] = 1 + 0.01 * g.next(0, 100 * (K - 1));
      }
      t[0] = 1, t[1] = K;  // at least two classes
      const auto r = ev::evaluate_votes(t, p, e, K);
      REQUIRE(r.confusion.size() == std::size_t(K));
      long total = 0;
      for (int k = 0; k < K; ++k) {
        REQUIRE(r.confusion[std::size_t(k)].size() == std::size_t(K));
        long row = 0;
        for (long c : r.confusion[std::size_t(k)]) row += c;
        CHECK(row == std::count(t.begin(), t.end(), k + 1));
        total += row;
      }
      CHECK(total == long(n));
      CHECK(r.within_one >= r.exact_accuracy);
      CHECK(r.rmse_argmax >= r.mae_argmax);
      CHECK(r.quadratic_kappa <= 1.0);
      const auto perfect = ev::evaluate_votes(t, t, e, K);
      CHECK(perfect.quadratic_kappa == 1.0);
      CHECK(perfect.exact_accuracy == 1.0);
      CHECK(perfect.mae_argmax == 0.0);
    }
  }
}

TEST_CASE("evaluate_votes rejects bad input", "[eval][metrics]") {
  const std::vector<int> t{1, 2, 3}, p{1, 2, 3};
  const std::vector<double> e{1, 2, 3};
  CHECK_THROWS_AS(ev::evaluate_votes(t, std::vector<int>{1, 2}, e), std::invalid_argument);
  CHECK_THROWS_AS(ev::evaluate_votes(t, p, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(ev::evaluate_votes(std::vector<int>{0, 2, 3}, p, e), std::invalid_argument);
  CHECK_THROWS_AS(ev::evaluate_votes(t, std::vector<int>{1, 2, 6}, e), std::invalid_argument);
  CHECK_THROWS_AS(ev::evaluate_votes(t, p, e, 2), std::invalid_argument);  // vote 3 > K
  CHECK_THROWS_AS(ev::evaluate_votes(t, p, e, 0), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Correlations, ranks, errors

TEST_CASE("correlations, RMSE and MAE match scipy/numpy on fixed cases", "[eval][metrics]") {
  for (const CorrCase& c : kCorrCases) {
    INFO("case " << c.name);
    CHECK_CLOSE(ev::pearson(c.x, c.y), c.pearson);
    CHECK_CLOSE(ev::spearman(c.x, c.y), c.spearman);
    CHECK_CLOSE(ev::kendall_tau_b(c.x, c.y), c.kendall);
    CHECK_CLOSE(ev::rmse(c.x, c.y), c.rmse);
    CHECK_CLOSE(ev::mae(c.x, c.y), c.mae);
    // Symmetry: swapping x and y gives the same value (bit-exact here).
    const double p1 = ev::pearson(c.x, c.y), p2 = ev::pearson(c.y, c.x);
    const double s1 = ev::spearman(c.x, c.y), s2 = ev::spearman(c.y, c.x);
    const double k1 = ev::kendall_tau_b(c.x, c.y), k2 = ev::kendall_tau_b(c.y, c.x);
    CHECK((p1 == p2 || (std::isnan(p1) && std::isnan(p2))));
    CHECK((s1 == s2 || (std::isnan(s1) && std::isnan(s2))));
    CHECK((k1 == k2 || (std::isnan(k1) && std::isnan(k2))));
  }
}

TEST_CASE("correlation conventions: NaN, bounds, invariance", "[eval][metrics]") {
  const std::vector<double> x{1, 2, 3, 4}, y{2, 1, 4, 3};
  CHECK(std::isnan(ev::pearson(std::vector<double>{}, std::vector<double>{})));
  CHECK(std::isnan(ev::kendall_tau_b(std::vector<double>{}, std::vector<double>{})));
  const std::vector<double> with_nan{1, kNaN, 3, 4};
  CHECK(std::isnan(ev::pearson(with_nan, y)));
  CHECK(std::isnan(ev::spearman(x, with_nan)));
  CHECK(std::isnan(ev::kendall_tau_b(with_nan, y)));
  CHECK_THROWS_AS(ev::pearson(x, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(ev::spearman(x, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(ev::kendall_tau_b(x, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(ev::rmse(x, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(ev::mae(x, std::vector<double>{1, 2}), std::invalid_argument);
  CHECK(std::isnan(ev::rmse(std::vector<double>{}, std::vector<double>{})));
  CHECK(std::isnan(ev::mae(std::vector<double>{}, std::vector<double>{})));
  CHECK(ev::pearson(x, x) == 1.0);
  CHECK(ev::spearman(x, x) == 1.0);
  CHECK(ev::kendall_tau_b(x, x) == 1.0);
  // Affine maps leave PLCC unchanged; monotone maps leave SRCC and KRCC unchanged.
  Lcg g{11};
  std::vector<double> a(50), b(50), a2(50), a3(50);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = g.next(0, 20);
    b[i] = a[i] + g.next(-8, 8);
    a2[i] = 3.5 * a[i] - 7;
    a3[i] = std::exp(0.3 * a[i]);
  }
  CHECK(std::abs(ev::pearson(a2, b) - ev::pearson(a, b)) <= 1e-14);
  std::vector<double> neg_b(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) neg_b[i] = -b[i];
  CHECK(std::abs(ev::pearson(a, neg_b) + ev::pearson(a, b)) <= 1e-15);
  CHECK(ev::kendall_tau_b(a, neg_b) == -ev::kendall_tau_b(a, b));
  CHECK(ev::spearman(a3, b) == ev::spearman(a, b));
  CHECK(ev::kendall_tau_b(a3, b) == ev::kendall_tau_b(a, b));
  for (double r : {ev::pearson(a, b), ev::spearman(a, b), ev::kendall_tau_b(a, b)}) CHECK((r >= -1 && r <= 1));
}

TEST_CASE("kendall_tau_b (O(n log n)) equals the O(n^2) pair count", "[eval][metrics]") {
  Lcg g{2024};
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t n = std::size_t(g.next(2, 400));
    const int levels = g.next(2, 12);  // few levels: many ties in both
    std::vector<double> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = g.next(1, levels);
      y[i] = 0.5 * (x[i] + g.next(1, levels));
    }
    const double fast = ev::kendall_tau_b(x, y), brute = kendall_brute(x, y);
    INFO("n = " << n << ", levels = " << levels);
    if (std::isnan(brute))
      CHECK(std::isnan(fast));
    else
      CHECK(fast == brute);  // same integer counts, same formula
  }
}

TEST_CASE("average_ranks matches scipy.stats.rankdata(method='average')", "[eval][metrics]") {
  for (const auto& [x, expected] : kRankCases) CHECK(ev::average_ranks(x) == expected);
  CHECK(ev::average_ranks(std::vector<double>{}).empty());
  const auto r = ev::average_ranks(std::vector<double>{2, kNaN, 1});
  REQUIRE(r.size() == 3);
  for (double v : r) CHECK(std::isnan(v));  // as rankdata(nan_policy='propagate')
}

// ---------------------------------------------------------------------------------------------
// Student t, MOS

TEST_CASE("student_t_quantile(0.975, df) matches mpmath and scipy.stats.t.ppf", "[eval][metrics]") {
  for (const TQuantileCase& c : kT975) {
    INFO("df = " << c.df);
    const double t = ev::student_t_quantile(0.975, c.df);
    CHECK(rel_close(t, c.mpmath, 1e-13));
    CHECK(rel_close(t, c.scipy, 5e-9));  // scipy 1.10's cdflib-based t.ppf errs by up to 1.2e-9
    CHECK(rel_close(ev::student_t_quantile(0.025, c.df), -c.mpmath, 1e-13));
    CHECK(rel_close(ev::student_t_cdf(t, c.df), 0.975, 1e-14));
  }
  for (const auto& [p, df, expected] : kTOther) {
    INFO("p = " << p << ", df = " << df);
    CHECK(rel_close(ev::student_t_quantile(p, df), expected, 1e-13));
  }
}

TEST_CASE("student_t_quantile: closed forms and edge cases", "[eval][metrics]") {
  const double pi = std::acos(-1.0);
  for (double p : {0.55, 0.8, 0.9, 0.975, 0.999}) {
    INFO("p = " << p);
    CHECK(rel_close(ev::student_t_quantile(p, 1), std::tan(pi * (p - 0.5)), 1e-13));  // Cauchy
    const double a = 4 * p * (1 - p);
    CHECK(rel_close(ev::student_t_quantile(p, 2), 2 * (p - 0.5) * std::sqrt(2 / a), 1e-13));
  }
  CHECK(ev::student_t_quantile(0.5, 3) == 0.0);
  CHECK(ev::student_t_quantile(1.0, 3) == kInf);
  CHECK(ev::student_t_quantile(0.0, 3) == -kInf);
  CHECK(std::isnan(ev::student_t_quantile(1.5, 3)));
  CHECK(std::isnan(ev::student_t_quantile(0.975, 0)));
  CHECK(std::isnan(ev::student_t_quantile(kNaN, 3)));
  CHECK(ev::student_t_cdf(0.0, 5) == 0.5);
  CHECK(ev::student_t_cdf(kInf, 5) == 1.0);
  // Decreasing in df towards the normal quantile 1.959963984540054.
  double prev = kInf;
  for (int df = 1; df <= 200; ++df) {
    const double t = ev::student_t_quantile(0.975, df);
    CHECK(t < prev);
    CHECK(t > 1.959963984540054);
    prev = t;
  }
}

TEST_CASE("mos_with_ci matches mean +- t * s / sqrt(n)", "[eval][metrics]") {
  for (const MosCase& c : kMosCases) {
    const ev::MosStats m = ev::mos_with_ci(c.votes);
    CHECK(m.n == int(c.votes.size()));
    CHECK_CLOSE(m.mean, c.mean);
    CHECK_CLOSE(m.ci95_halfwidth, c.ci95);
  }
  const std::vector<int> ints{4, 5, 3, 4, 4, 5, 2, 4, 3, 4, 5, 4, 3, 4, 4};
  const auto mi = ev::mos_with_ci(ints);
  CHECK_CLOSE(mi.mean, kMosCases[0].mean);
  CHECK_CLOSE(mi.ci95_halfwidth, kMosCases[0].ci95);
  const auto none = ev::mos_with_ci(std::vector<double>{});
  CHECK(none.n == 0);
  CHECK(std::isnan(none.mean));
  CHECK(std::isnan(none.ci95_halfwidth));
  const auto one = ev::mos_with_ci(std::vector<double>{4});
  CHECK(one.n == 1);
  CHECK(one.mean == 4.0);
  CHECK(std::isnan(one.ci95_halfwidth));
}

// ---------------------------------------------------------------------------------------------
// Baselines

TEST_CASE("majority vote baseline: most frequent, ties to the smaller vote", "[eval][metrics]") {
  CHECK(ev::majority_vote(std::vector<int>{3, 4, 4, 3, 5}) == 3);  // 3 and 4 tie -> 3
  CHECK(ev::majority_vote(std::vector<int>{5, 4, 4, 2}) == 4);
  CHECK(ev::majority_vote(std::vector<int>{2}) == 2);
  CHECK(ev::majority_vote_predictions(std::vector<int>{1, 5, 5, 2}, 3) == std::vector<int>{5, 5, 5});
  CHECK(ev::majority_vote_predictions(std::vector<int>{1, 5, 5, 2}, 0).empty());
  CHECK_THROWS_AS(ev::majority_vote_predictions(std::vector<int>{}, 3), std::invalid_argument);
}

TEST_CASE("QLookup rules", "[eval][metrics]") {
  ev::QLookup q;
  CHECK_FALSE(q.fitted());
  CHECK_THROWS_AS(q.predict(10), std::logic_error);
  // Q:      10 10 10 | 30 30 30 30 | 50 50 | 90
  // votes:   1  2  2 |  3  4  3  4 |  5  5 |  2     overall: 2 x3, 3 x2, 4 x2, 5 x2, 1 x1 -> 2
  const std::vector<int> qs{10, 10, 10, 30, 30, 30, 30, 50, 50, 90};
  const std::vector<int> votes{1, 2, 2, 3, 4, 3, 4, 5, 5, 2};
  q.fit(qs, votes);
  CHECK(q.fitted());
  CHECK(q.overall_majority() == 2);
  CHECK(q.table() == std::map<int, int>{{10, 2}, {30, 3}, {50, 5}, {90, 2}});
  SECTION("seen Q: the mode there, ties to the smaller vote") {
    CHECK(q.predict(10) == 2);
    CHECK(q.predict(30) == 3);  // 3 and 4 tie
    CHECK(q.predict(50) == 5);
  }
  SECTION("unseen Q: the nearest seen Q") {
    CHECK(q.predict(0) == 2);     // below the range: Q 10
    CHECK(q.predict(1000) == 2);  // above the range: Q 90
    CHECK(q.predict(19) == 2);    // nearer 10
    CHECK(q.predict(21) == 3);    // nearer 30
    CHECK(q.predict(44) == 5);    // nearer 50
    CHECK(q.predict(69) == 5);
    CHECK(q.predict(71) == 2);
  }
  SECTION("equidistant unseen Q: the neighbours' vote if they agree, else the overall majority") {
    CHECK(q.predict(20) == 2);  // 10 -> 2 and 30 -> 3 disagree: overall majority 2
    CHECK(q.predict(40) == 2);  // 30 -> 3 and 50 -> 5 disagree: overall majority 2
    ev::QLookup q2;
    q2.fit(std::vector<int>{0, 10, 20, 20, 20}, std::vector<int>{4, 4, 1, 1, 1});
    CHECK(q2.overall_majority() == 1);
    CHECK(q2.predict(5) == 4);   // both neighbours say 4
    CHECK(q2.predict(15) == 1);  // 10 -> 4, 20 -> 1: overall majority 1
  }
  SECTION("vector predict, refit replaces, extreme Q") {
    CHECK(q.predict(std::vector<int>{10, 21, 1000}) == std::vector<int>{2, 3, 2});
    q.fit(std::vector<int>{std::numeric_limits<int>::min(), std::numeric_limits<int>::max()},
          std::vector<int>{1, 5});
    CHECK(q.table().size() == 2);
    CHECK(q.predict(-5) == 1);  // |q - INT_MIN| computed without overflow
    CHECK(q.predict(5) == 5);
    CHECK(q.predict(-1) == 1);  // equidistant, disagree: overall majority 1 (1 and 5 tie -> 1)
  }
  CHECK_THROWS_AS(q.fit(std::vector<int>{1, 2}, std::vector<int>{3}), std::invalid_argument);
  CHECK_THROWS_AS(q.fit(std::vector<int>{}, std::vector<int>{}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Cross comparison, panels

TEST_CASE("cross_accuracy: M x O exact accuracy over the rated stimuli", "[eval][metrics]") {
  const int nr = ev::kNotRated;
  const std::vector<std::vector<int>> predicted{{1, 2, 3, 4, 5, 3}, {3, 3, 3, 3, 3, 3}};
  const std::vector<std::vector<int>> truth{{1, 2, 3, 4, 5, 3},       // all rated
                                            {nr, 2, nr, 3, 3, nr},    // 3 rated
                                            {nr, nr, nr, nr, nr, nr},  // none rated
                                            {5, 5, 1, 1, 2, 2}};
  const auto acc = ev::cross_accuracy(predicted, truth);
  REQUIRE(acc.size() == 2);
  REQUIRE(acc[0].size() == 4);
  CHECK(acc[0][0] == 1.0);
  CHECK(acc[0][1] == 1.0 / 3.0);
  CHECK(std::isnan(acc[0][2]));
  CHECK(acc[0][3] == 0.0);
  CHECK(acc[1][0] == 2.0 / 6.0);
  CHECK(acc[1][1] == 2.0 / 3.0);
  CHECK(std::isnan(acc[1][2]));
  CHECK(acc[1][3] == 0.0);
  // Agrees with evaluate_votes on the rated stimuli.
  const std::vector<int> t1{2, 3, 3}, p1{3, 3, 3};
  CHECK(ev::evaluate_votes(t1, p1, std::vector<double>{3, 3, 3}).exact_accuracy == acc[1][1]);
  CHECK(ev::cross_accuracy(std::vector<std::vector<int>>{}, truth).empty());
  CHECK_THROWS_AS(ev::cross_accuracy(std::vector<std::vector<int>>{{1, 2}}, truth), std::invalid_argument);
  CHECK_THROWS_AS(ev::cross_accuracy(predicted, std::vector<std::vector<int>>{{1, 2, 3, 4, 5, 0}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(ev::cross_accuracy(std::vector<std::vector<int>>{{1, 2, 3, 4, 5, 6}}, truth),
                  std::invalid_argument);
}

TEST_CASE("evaluate_panel: PLCC, SRCC, KRCC, RMSE of MOS vectors", "[eval][metrics]") {
  for (const CorrCase& c : kCorrCases) {
    INFO("case " << c.name);
    const ev::PanelReport r = ev::evaluate_panel(c.x, c.y);
    CHECK_CLOSE(r.plcc, c.pearson);
    CHECK_CLOSE(r.srcc, c.spearman);
    CHECK_CLOSE(r.krcc, c.kendall);
    CHECK_CLOSE(r.rmse, c.rmse);
  }
  CHECK_THROWS_AS(ev::evaluate_panel(std::vector<double>{1, 2}, std::vector<double>{1}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Reports

TEST_CASE("format_double and json_number", "[eval][report]") {
  CHECK(ev::format_double(0.1) == "0.10000000000000001");  // %.17g
  CHECK(ev::format_double(1.0) == "1");
  CHECK(ev::format_double(-2.5e-300) == "-2.5e-300");
  CHECK(ev::format_double(1e21) == "1e+21");
  CHECK(ev::format_double(123456789012345678.0) == "1.2345678901234568e+17");
  CHECK(ev::json_number(kNaN) == "null");
  CHECK(ev::json_number(kInf) == "null");
  CHECK(ev::json_number(-kInf) == "null");
  for (double v : {0.6324555320336759, 1.0 / 3.0, 12.706204736174705, -0.972972972972973})
    CHECK(std::stod(ev::format_double(v)) == v);  // round trip
}

TEST_CASE("classification_report_to_json", "[eval][report]") {
  const VoteCase& c = kVoteCases[2];  // constant prediction: correlations NaN
  const auto r = ev::evaluate_votes(c.truth, c.predicted, c.expected, c.K);
  const std::string j = ev::classification_report_to_json(r);
  CHECK(j ==
        "{\"count\":9,\"exact_accuracy\":0.33333333333333331,\"within_one\":0.77777777777777779,"
        "\"mae_argmax\":0.88888888888888884,\"rmse_argmax\":1.1547005383792515,"
        "\"mae_expected\":0.88888888888888884,\"rmse_expected\":1.1547005383792515,\"macro_f1\":0.10000000000000001,"
        "\"quadratic_kappa\":0,\"plcc\":null,\"srcc\":null,\"krcc\":null,"
        "\"confusion\":[[0,0,1,0,0],[0,0,2,0,0],[0,0,3,0,0],[0,0,2,0,0],[0,0,1,0,0]]}");
  const auto mixed = ev::evaluate_votes(kVoteCases[0].truth, kVoteCases[0].predicted, kVoteCases[0].expected);
  const std::string jm = ev::classification_report_to_json(mixed);
  const auto pos = jm.find("\"plcc\":");
  REQUIRE(pos != std::string::npos);
  CHECK(std::stod(jm.substr(pos + 7)) == mixed.plcc);  // bit-exact round trip
}

TEST_CASE("CSV: quoting, atomic write, confusion", "[eval][report]") {
  CHECK(ev::csv_field("plain") == "plain");
  CHECK(ev::csv_field("") == "");
  CHECK(ev::csv_field("a,b") == "\"a,b\"");
  CHECK(ev::csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(ev::csv_field("two\nlines") == "\"two\nlines\"");
  CHECK(ev::csv_field("cr\r") == "\"cr\r\"");
  CHECK(ev::csv_field(" padded") == "\" padded\"");
  CHECK(ev::csv_field("tab\t") == "\"tab\t\"");  // the reader trims edge tabs: quoted, they survive
  // The report writer is the study tables' writer: what it writes, data::parse_csv reads back.
  const std::vector<std::string> odd{" lead", "tab\t", "a,b", "q\"q", "two\nlines", ""};
  const auto back = vitiq::data::parse_csv(ev::csv_line(odd), "odd.csv");
  REQUIRE(back.size() == 1);
  REQUIRE(back[0].fields.size() == odd.size());
  for (std::size_t i = 0; i < odd.size(); ++i) CHECK(back[0].fields[i] == odd[i]);

  const auto dir = scratch_dir("csv");
  const auto path = dir / "report.csv";
  const std::vector<std::string> header{"model", "observer", "accuracy"};
  std::vector<std::vector<std::string>> rows{{"vit,small", "obs \"7\"", ev::format_double(0.5)},
                                             {"vit_tiny", "obs8", ev::format_double(1.0 / 3.0)}};
  ev::write_csv(path, header, rows);
  CHECK(slurp(path) ==
        "model,observer,accuracy\n\"vit,small\",\"obs \"\"7\"\"\",0.5\nvit_tiny,obs8,0.33333333333333331\n");
  // Nothing but the report itself: no temporary file is left behind.
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}) == 1);

  // Overwrites an existing file; a malformed row leaves the old file untouched.
  rows.pop_back();
  ev::write_csv(path, header, rows);
  CHECK(slurp(path) == "model,observer,accuracy\n\"vit,small\",\"obs \"\"7\"\"\",0.5\n");
  rows.push_back({"only", "two"});
  CHECK_THROWS_AS(ev::write_csv(path, header, rows), std::invalid_argument);
  CHECK(slurp(path) == "model,observer,accuracy\n\"vit,small\",\"obs \"\"7\"\"\",0.5\n");
  // No header: rows of any width.
  ev::write_csv(path, std::vector<std::string>{}, rows);
  CHECK(slurp(path) == "\"vit,small\",\"obs \"\"7\"\"\",0.5\nonly,two\n");
  // A missing directory is an IoError naming the file.
  CHECK_THROWS_AS(ev::write_csv(dir / "missing" / "x.csv", header, {}), vitiq::IoError);

  const std::vector<std::vector<long>> cm{{2, 1, 0}, {0, 3, 1}, {0, 0, 4}};
  CHECK(ev::confusion_to_csv(cm) == "true_vote,pred_1,pred_2,pred_3\n1,2,1,0\n2,0,3,1\n3,0,0,4\n");
  CHECK_THROWS_AS(ev::confusion_to_csv({{1, 2}, {3}}), std::invalid_argument);
  ev::write_confusion_csv(dir / "cm.csv", cm);
  CHECK(slurp(dir / "cm.csv") == ev::confusion_to_csv(cm));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}) == 2);
  std::filesystem::remove_all(dir);
}
