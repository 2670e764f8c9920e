// vitiq/data/stats.hpp -- descriptive statistics of a rating table: MOS with a Student-t 95 %
// confidence interval per stimulus, each observer's vote histogram per JPEG band, and
// self-agreement where sessions repeat stimuli.
//
// The t quantile is vitiq::eval::student_t_quantile (bisection on the regularised incomplete beta
// function, checked against mpmath and scipy literals in the tests); it is not duplicated here.
#pragma once

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/data/ratings.hpp"
#include "vitiq/eval/metrics.hpp"

namespace vitiq::data {

/// @brief Quantile of Student's t (see vitiq::eval::student_t_quantile).
inline double student_t_quantile(double p, double df) { return eval::student_t_quantile(p, df); }

/// @brief MOS of one stimulus.
struct StimulusMos {
  std::string image;
  double mos = 0;    ///< mean vote
  double ci95 = 0;   ///< half-width of the 95 % interval, t_{0.975, n-1} s / sqrt(n); NaN for n < 2
  int n = 0;         ///< number of votes used
};

/// @brief Which votes make a MOS.
struct MosOptions {
  /// true: an observer who rated the stimulus in several sessions counts once, with the vote of
  /// the lowest session number (the usual "one vote per observer"); false: every vote counts.
  bool one_vote_per_observer = true;
};

/// @brief MOS and 95 % confidence interval (Student t, n - 1 degrees of freedom) per stimulus.
/// @return one entry per image, sorted by image name
inline std::vector<StimulusMos> mos_per_stimulus(std::span<const Rating> ratings, const MosOptions& opt = {}) {
  // image -> observer -> (session, vote) of the chosen vote(s)
  std::map<std::string, std::map<std::string, std::vector<std::pair<int, int>>>> votes;
  for (const auto& r : ratings) votes[r.image][r.observer].push_back({r.session, r.vote});
  std::vector<StimulusMos> out;
  out.reserve(votes.size());
  for (auto& [image, by_obs] : votes) {
    std::vector<double> v;
    for (auto& [obs, sv] : by_obs) {
      if (opt.one_vote_per_observer) {
        std::pair<int, int> first = sv.front();
        for (const auto& x : sv) if (x.first < first.first) first = x;
        v.push_back(first.second);
      } else {
        for (const auto& x : sv) v.push_back(x.second);
      }
    }
    const eval::MosStats m = eval::mos_with_ci(std::span<const double>(v));
    out.push_back({image, m.mean, m.ci95_halfwidth, m.n});
  }
  return out;
}

/// @brief Counts of votes 1..5 per JPEG band (band 0 collects stimuli whose name carries none).
struct VoteHistogram {
  std::array<std::array<long, kCategories>, 6> counts{};  ///< [band 0..5][vote - 1]

  /// @brief Votes in a band.
  long total(int band) const {
    long n = 0;
    for (long c : counts[std::size_t(band)]) n += c;
    return n;
  }
  /// @brief Share of `vote` (1..5) among the votes of `band`; NaN when the band has none.
  double share(int band, int vote) const {
    const long n = total(band);
    return n ? double(counts[std::size_t(band)][std::size_t(vote - 1)]) / double(n)
             : std::numeric_limits<double>::quiet_NaN();
  }
  /// @brief Mean vote in a band; NaN when the band has none.
  double mean(int band) const {
    const long n = total(band);
    if (!n) return std::numeric_limits<double>::quiet_NaN();
    double s = 0;
    for (int k = 0; k < kCategories; ++k) s += double(k + 1) * double(counts[std::size_t(band)][std::size_t(k)]);
    return s / double(n);
  }
};

/// @brief Each observer's vote histogram per band; the band comes from the image name
/// (parse_stimulus_name), every vote counts (repeats included).
/// @return observer -> histogram
inline std::map<std::string, VoteHistogram> vote_histograms(std::span<const Rating> ratings) {
  std::map<std::string, VoteHistogram> out;
  std::map<std::string, int> band_cache;
  for (const auto& r : ratings) {
    auto it = band_cache.find(r.image);
    if (it == band_cache.end()) it = band_cache.emplace(r.image, parse_stimulus_name(r.image).band).first;
    if (r.vote < 1 || r.vote > kCategories) continue;  // a validated table has none
    const int band = it->second >= 1 && it->second <= 5 ? it->second : 0;
    ++out[r.observer].counts[std::size_t(band)][std::size_t(r.vote - 1)];
  }
  return out;
}

/// @brief Agreement of an observer with themself on repeated stimuli.
struct SelfAgreement {
  long pairs = 0;  ///< vote pairs compared
  double exact = std::numeric_limits<double>::quiet_NaN();       ///< share of pairs with equal votes
  double within_one = std::numeric_limits<double>::quiet_NaN();  ///< share with |difference| <= 1
  double rmse = std::numeric_limits<double>::quiet_NaN();        ///< sqrt(mean squared difference)
};

namespace detail {
inline SelfAgreement agreement_of(const std::vector<std::pair<int, int>>& pairs) {
  SelfAgreement a;
  a.pairs = long(pairs.size());
  if (pairs.empty()) return a;
  long exact = 0, within = 0;
  double sq = 0;
  for (const auto& [x, y] : pairs) {
    const int d = x - y;
    exact += d == 0;
    within += d >= -1 && d <= 1;
    sq += double(d) * d;
  }
  const double n = double(pairs.size());
  a.exact = double(exact) / n;
  a.within_one = double(within) / n;
  a.rmse = std::sqrt(sq / n);
  return a;
}
}  // namespace detail

/// @brief Self-agreement of one observer between two sessions: the votes on every image rated
/// in both sessions are paired.
inline SelfAgreement self_agreement(std::span<const Rating> ratings, std::string_view observer, int session_a,
                                    int session_b) {
  std::map<std::string, int> a;
  for (const auto& r : ratings)
    if (r.observer == observer && r.session == session_a) a[r.image] = r.vote;
  std::vector<std::pair<int, int>> pairs;
  for (const auto& r : ratings)
    if (r.observer == observer && r.session == session_b) {
      const auto it = a.find(r.image);
      if (it != a.end()) pairs.push_back({it->second, r.vote});
    }
  return detail::agreement_of(pairs);
}

/// @brief Self-agreement of one observer over all repeats, by the test-retest rule: for every image
/// the observer rated in more than one session, every pair of its votes from two different
/// sessions (votes within one session cannot pair: a study reader refuses a second vote of one
/// observer on one image in one session). This is the one self-agreement of vitiq: vitiq-eval's
/// baseline, vitiq-make-dataset's realised agreement and vitiq-import's report all use it.
inline SelfAgreement self_agreement(std::span<const Rating> ratings, std::string_view observer) {
  std::map<std::string, std::vector<std::pair<int, int>>> by_image;  // image -> (session, vote)
  for (const auto& r : ratings)
    if (r.observer == observer) by_image[r.image].push_back({r.session, r.vote});
  std::vector<std::pair<int, int>> pairs;
  for (const auto& [img, v] : by_image)
    for (std::size_t i = 0; i < v.size(); ++i)
      for (std::size_t j = i + 1; j < v.size(); ++j)
        if (v[i].first != v[j].first) pairs.push_back({v[i].second, v[j].second});
  return detail::agreement_of(pairs);
}

/// @brief self_agreement() of every observer that repeated at least one stimulus.
inline std::map<std::string, SelfAgreement> self_agreement_all(std::span<const Rating> ratings) {
  std::map<std::string, SelfAgreement> out;
  for (const auto& o : observers_of(ratings)) {
    SelfAgreement a = self_agreement(ratings, o);
    if (a.pairs > 0) out[o] = a;
  }
  return out;
}

}  // namespace vitiq::data
