// tests/test_data_observers.cpp -- simulated observers (vitiq/data/observers.hpp) and the
// distortion measures that drive them (vitiq/data/quality.hpp).
//
// Tolerances: the calibrated observers must reproduce every per-band vote share of their
// DATA.md row within 0.05 absolute, measured on 40 sampled votes per stimulus (60,000 votes,
// about 12,000 per band: sampling error < 0.005), and their exact self-agreement within 0.04.
#include <array>
#include <cmath>
#include <vector>

#include "support/catch.hpp"
#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/observers.hpp"
#include "vitiq/data/quality.hpp"
#include "vitiq/data/ratings.hpp"

using namespace vitiq::data;

namespace {

/// A synthetic study of 1500 stimuli (300 "crops" x 5 bands) whose measures behave like PSNR-B
/// of 256-pixel JPEG crops of the default photos: per band, m = mean + 0.95 (c - 28.2) +
/// slope (q - mean q) + residual, c the crop's content measure (sd 2.65 dB), q uniform in the
/// band -- the regression of the default study's ground_truth_stimuli.csv, seed 1
/// (tests/reference/data/measure_regression.py).
struct SyntheticStudy {
  std::vector<double> measure, content;
  std::vector<int> band;
  explicit SyntheticStudy(std::uint64_t seed, int crops = 300) {
    vitiq::Rng rng(seed);
    const double mean[5] = {22.96, 26.35, 27.70, 29.62, 35.76}, slope[5] = {0.642, 0.231, 0.155, 0.097, 0.302},
                 resid[5] = {0.67, 0.29, 0.12, 0.30, 2.85};
    for (int c = 0; c < crops; ++c) {
      const double d = 2.65 * rng.normal();
      for (int b = 0; b < 5; ++b) {
        const QualityBand& B = quality_bands[std::size_t(b)];
        const double q = B.q_min + double(rng.below(std::uint64_t(B.q_max - B.q_min + 1)));
        measure.push_back(mean[b] + 0.95 * d + slope[b] * (q - 0.5 * (B.q_min + B.q_max)) + resid[b] * rng.normal());
        content.push_back(28.16 + d);
        band.push_back(b + 1);
      }
    }
  }
};

}  // namespace

TEST_CASE("normal cdf and vote sampling", "[data][observers]") {
  // scipy.stats.norm.cdf
  CHECK(normal_cdf(0.3) == Approx(0.6179114221889526).epsilon(1e-14));
  CHECK(normal_cdf(-1.7) == Approx(0.04456546275854304).epsilon(1e-13));
  CHECK(normal_cdf(0.0) == 0.5);
  const VoteProbs p = {0.1, 0.2, 0.3, 0.25, 0.15};
  CHECK(sample_vote(p, 0.0) == 1);
  CHECK(sample_vote(p, 0.0999) == 1);
  CHECK(sample_vote(p, 0.1) == 2);
  CHECK(sample_vote(p, 0.5999) == 3);
  CHECK(sample_vote(p, 0.6001) == 4);
  CHECK(sample_vote(p, 0.9999999) == 5);
  // hand-computed: sum p^2 = 0.01 + 0.04 + 0.09 + 0.0625 + 0.0225 = 0.225
  CHECK(expected_exact_agreement(p) == Approx(0.225));
  // P(|d| <= 1) = 0.225 + 2 (0.1*0.2 + 0.2*0.3 + 0.3*0.25 + 0.25*0.15) = 0.225 + 2 * 0.1925 = 0.61
  CHECK(expected_within_one(p) == Approx(0.61));
  CHECK(most_probable_vote(p) == 3);
  CHECK(most_probable_vote({0.3, 0.3, 0.2, 0.1, 0.1}) == 1);
}

TEST_CASE("ordered-probit probabilities: a distribution, shifting up with quality", "[data][observers]") {
  OrderedProbitObserver o;
  o.knot_x = {20, 30, 40};
  o.knot_y = {1, 3, 5};
  o.sigma = 0.6;
  o.validate();
  CHECK(o.latent(25) == Approx(2.0));
  CHECK(o.latent(45) == Approx(6.0));  // linear beyond the last knot
  CHECK(o.latent(10) == Approx(-1.0));
  double prev_mean = 0;
  for (double m = 15; m <= 45; m += 2.5) {
    const VoteProbs p = o.probabilities(m);
    double s = 0, mean = 0;
    for (int k = 0; k < 5; ++k) {
      CHECK(p[std::size_t(k)] >= 0);
      s += p[std::size_t(k)];
      mean += (k + 1) * p[std::size_t(k)];
    }
    CHECK(s == Approx(1.0).epsilon(1e-12));
    CHECK(mean > prev_mean);
    prev_mean = mean;
  }
  // P(vote = 3) at mu = 3 (m = 30): Phi(0.5 / 0.6) - Phi(-0.5 / 0.6)
  CHECK(o.probabilities(30)[2] == Approx(normal_cdf(0.5 / 0.6) - normal_cdf(-0.5 / 0.6)));
  // the content term: alpha = 1 moves the measure by the content's distance from its mean
  o.content_weight = 1;
  o.content_mean = 28;
  CHECK(o.effective(30, 30) == Approx(28));
  CHECK(o.probabilities(30, 30)[2] == Approx(o.probabilities(28)[2]));
  // sampling follows the probabilities
  vitiq::Rng rng(5);
  std::array<int, 5> n{};
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) ++n[std::size_t(o.sample(31, 29, rng) - 1)];
  const VoteProbs p = o.probabilities(31, 29);
  for (int k = 0; k < 5; ++k) CHECK(double(n[std::size_t(k)]) / draws == Approx(p[std::size_t(k)]).margin(0.005));
  o.thresholds = {1.5, 1.4, 3.5, 4.5};
  CHECK_THROWS_AS(o.validate(), vitiq::Error);
}

TEST_CASE("calibrated observers reproduce their DATA.md rows", "[data][observers]") {
  const SyntheticStudy study(11);
  const auto targets = real_observer_targets();
  // rows are normalised: observer 1, band I1 is 37/52/10/0/0 (sum 99)
  CHECK(targets[0].share[0][0] == Approx(37.0 / 99.0));
  CHECK(targets[2].self_agreement == 0.73);
  for (const auto& t : targets) {
    INFO("real observer " << t.id);
    const CalibrationResult fit = calibrate_observer(study.measure, study.content, study.band, t, {.knots = 10});
    fit.observer.validate();
    CHECK(fit.max_share_error < 0.05);
    CHECK(std::abs(fit.self_agreement - t.self_agreement) < 0.04);
    // sample 40 votes per stimulus; the shares of the sample match the target
    vitiq::Rng rng(100 + std::uint64_t(t.id));
    std::array<std::array<double, 5>, 5> count{};
    std::array<double, 5> total{};
    double agree = 0, pairs = 0;
    for (std::size_t i = 0; i < study.measure.size(); ++i) {
      const VoteProbs p = fit.observer.probabilities(study.measure[i], study.content[i]);
      const int b = study.band[i] - 1;
      for (int d = 0; d < 20; ++d) {
        const int v1 = sample_vote(p, rng.uniform()), v2 = sample_vote(p, rng.uniform());
        count[std::size_t(b)][std::size_t(v1 - 1)] += 1;
        count[std::size_t(b)][std::size_t(v2 - 1)] += 1;
        total[std::size_t(b)] += 2;
        agree += v1 == v2;
        pairs += 1;
      }
    }
    for (int b = 0; b < 5; ++b)
      for (int k = 0; k < 5; ++k) {
        INFO("band I" << b + 1 << ", vote " << k + 1);
        CHECK(count[std::size_t(b)][std::size_t(k)] / total[std::size_t(b)] ==
              Approx(t.share[std::size_t(b)][std::size_t(k)]).margin(0.05));
      }
    CHECK(agree / pairs == Approx(t.self_agreement).margin(0.04));
  }
}

TEST_CASE("Bayes ceiling and expected self-agreement equal their sampled estimates", "[data][observers]") {
  const SyntheticStudy study(12, 60);
  const CalibrationResult fit = calibrate_observer(study.measure, study.content, study.band, real_observer_targets()[4], {.knots = 6});
  std::vector<VoteProbs> probs;
  for (std::size_t i = 0; i < study.measure.size(); ++i) probs.push_back(fit.observer.probabilities(study.measure[i], study.content[i]));
  const double ceiling = bayes_ceiling(probs);
  const ExpectedAgreement ea = expected_agreement(probs);
  vitiq::Rng rng(3);
  double hits = 0, n = 0, same = 0, within = 0, sq = 0;
  for (int rep = 0; rep < 400; ++rep)
    for (const auto& p : probs) {
      const int v = sample_vote(p, rng.uniform()), w = sample_vote(p, rng.uniform());
      hits += v == most_probable_vote(p);  // the best predictor: the most probable vote
      same += v == w;
      within += std::abs(v - w) <= 1;
      sq += double((v - w) * (v - w));
      n += 1;
    }
  // 120,000 draws: standard errors about 0.0015
  CHECK(hits / n == Approx(ceiling).margin(0.006));
  CHECK(same / n == Approx(ea.exact).margin(0.006));
  CHECK(within / n == Approx(ea.within_one).margin(0.006));
  CHECK(std::sqrt(sq / n) == Approx(ea.rmse).margin(0.01));
  CHECK(ceiling >= ea.exact);  // max p >= sum p^2 for every stimulus
  CHECK(std::isnan(bayes_ceiling({})));
}

TEST_CASE("PSNR-B: zero blocking on identical images, more with coarser quantisation", "[data][quality]") {
  // A smooth 64 x 64 gradient; "blocky" copies: each 8 x 8 block replaced by its mean.
  vitiq::io::ImageU8 ref = vitiq::io::ImageU8::from_shape({64, 64, 3});
  for (std::size_t y = 0; y < 64; ++y)
    for (std::size_t x = 0; x < 64; ++x)
      for (std::size_t c = 0; c < 3; ++c) ref(y, x, c) = std::uint8_t(40 + 2 * x + y + 10 * c);
  const Distortion same = measure_distortion(ref, ref);
  CHECK(std::isinf(same.psnr_b));
  CHECK(same.bef == 0);
  vitiq::io::ImageU8 blocky = ref;
  for (std::size_t by = 0; by < 64; by += 8)
    for (std::size_t bx = 0; bx < 64; bx += 8)
      for (std::size_t c = 0; c < 3; ++c) {
        int s = 0;
        for (std::size_t y = 0; y < 8; ++y)
          for (std::size_t x = 0; x < 8; ++x) s += ref(by + y, bx + x, c);
        for (std::size_t y = 0; y < 8; ++y)
          for (std::size_t x = 0; x < 8; ++x) blocky(by + y, bx + x, c) = std::uint8_t((s + 32) / 64);
      }
  const Distortion d = measure_distortion(ref, blocky);
  CHECK(d.bef > 0);                       // the steps sit on the block boundaries
  CHECK(d.psnr_b < d.psnr_y);
  CHECK(d.psnr_y == Approx(10 * std::log10(255.0 * 255.0 / d.mse_y)));
  // the same error shifted off the grid is not blocking
  vitiq::io::ImageU8 shifted = ref;
  for (std::size_t y = 0; y < 64; ++y)
    for (std::size_t x = 0; x < 64; ++x)
      for (std::size_t c = 0; c < 3; ++c) shifted(y, x, c) = blocky(y, (x + 4) % 64, c);
  CHECK(measure_distortion(ref, blocky, {}, 8).bef > measure_distortion(ref, shifted, {}, 8).bef);
  // a weight rectangle over an undistorted region raises the weighted PSNR
  vitiq::io::ImageU8 half = ref;
  for (std::size_t y = 0; y < 32; ++y)
    for (std::size_t x = 0; x < 64; ++x) half(y, x, 0) = std::uint8_t(half(y, x, 0) + 20);
  const WeightRect bottom{32, 0, 32, 64, 9.0};
  CHECK(measure_distortion(ref, half, bottom).psnr_y > measure_distortion(ref, half).psnr_y);
  const WeightRect c = WeightRect::centre(256, 256, 0.5, 4);
  CHECK(c.top == 64);
  CHECK(c.left == 64);
  CHECK(c.height == 128);
  CHECK(c.width == 128);
}
