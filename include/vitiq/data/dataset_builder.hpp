// vitiq/data/dataset_builder.hpp -- builds a per-observer study from real photos: crops, JPEG
// stimuli in the five quality bands, the original study design (sessions, repeats, a common test
// set), simulated observers calibrated to the real ones, and the ground truth that makes the
// best achievable score known. vitiq-make-dataset is a thin command line around build_study().
//
// Pipeline (all of it deterministic for a seed, whatever the thread count; another compiler or
// other flags -- e.g. -march=native's fused multiply-adds -- may move a probability in its last
// bits, and so the calibration's path and a few drawn votes: compare studies built by one binary):
//   1. photos -> sources (photos of one scene share a source: the stereo pair motorcycle
//      left/right is one source); sources -> train / val / test (split_sources);
//   2. crops: crop_size x crop_size at random positions (optionally of the photo downscaled by 2),
//      as many per part as the design needs, spread over the part's sources by pixel area;
//   3. stimuli: each crop JPEG-encoded once per band at a Q drawn in the band (I1..I5), named
//      `<id><source>_I<band>_Q<q>.jpeg`; optionally (regional) one more stimulus per crop whose
//      rectangle (the centre, or a random one on the 8-pixel grid) comes from a much harder
//      compression than the rest (two decodes composited, stored as PNG, `..._R<q region>.png`);
//   4. measures: PSNR-B of each decoded stimulus against its crop (quality.hpp), and the crop's
//      content measure (PSNR-B of the crop at Q = reference_quality), uniform and, for observers
//      that weigh a region, weighted;
//   5. design: per observer `sessions` training sessions of `session_size` stimuli from the
//      train/val pool (a core rated by all, the rest shared by at most a few observers), a
//      session repeating the first, and the common test set in the last session;
//   6. observers: observer o imitates real observer ((o - 1) mod 5) + 1 of DATA.md; its
//      ordered-probit model is calibrated on the stimuli it rates (observers.hpp); votes are drawn
//      from the model's probabilities;
//   7. output: images/, ratings/obs<o>_session<s>.csv (original format), ratings.csv (long),
//      split.csv, ground_truth.json, ground_truth_stimuli.csv (see docs/data_formats.md).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "vitiq/cpu/rng.hpp"
#include "vitiq/data/csv.hpp"
#include "vitiq/data/ground_truth.hpp"
#include "vitiq/data/observers.hpp"
#include "vitiq/data/quality.hpp"
#include "vitiq/data/ratings.hpp"
#include "vitiq/data/split.hpp"
#include "vitiq/data/stats.hpp"
#include "vitiq/detail/xtensor.hpp"
#include "vitiq/error.hpp"
#include "vitiq/eval/metrics.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/json.hpp"

namespace vitiq::data {

// ---------------------------------------------------------------------------------------------
// Photos

/// @brief A reference photo and the source (scene) it belongs to.
struct PhotoSpec {
  std::filesystem::path path;
  std::string source;   ///< split unit and the `<source name>` of the stimulus names
  std::string licence;  ///< as far as known (written to the ground truth)
};

/// @brief A photo vitiq uses by default when it finds it.
struct KnownPhoto {
  const char* file;
  const char* source;
  const char* licence;
};

/// @brief The default reference photos: the colour photographs of Debian's python3-skimage
/// (licences as DATA.md and scikit-image's documentation state them; see docs/data_licences.md).
inline constexpr KnownPhoto default_photos[] = {
    {"astronaut.png", "astronaut", "public domain (NASA)"},
    {"chelsea.png", "chelsea", "CC0 (Stefan van der Walt)"},
    {"coffee.png", "coffee", "CC0 (Rachel Michetti)"},
    {"rocket.jpg", "rocket", "public domain (SpaceX)"},
    {"hubble_deep_field.jpg", "hubble", "public domain (NASA)"},
    {"motorcycle_left.png", "motorcycle", "Middlebury 2014 stereo data set via scikit-image (BSD-3-Clause package)"},
    {"motorcycle_right.png", "motorcycle", "Middlebury 2014 stereo data set via scikit-image (BSD-3-Clause package)"},
};

/// @brief Folders searched for the default photos, in order: those in the environment variable
/// VITIQ_PHOTO_PATH (':'-separated), then where Debian and pip put scikit-image's data.
inline std::vector<std::filesystem::path> default_photo_search_path() {
  std::vector<std::filesystem::path> out;
  if (const char* env = std::getenv("VITIQ_PHOTO_PATH")) {
    std::string s(env), cur;
    for (char c : s + ":") {
      if (c == ':') {
        if (!cur.empty()) out.emplace_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
  }
  for (const char* d : {"/usr/lib/python3/dist-packages/skimage/data", "/usr/local/lib/python3/dist-packages/skimage/data",
                        "/usr/share/scikit-image/data"})
    out.emplace_back(d);
  return out;
}

/// @brief The default photos found in the search path (each file in the first folder that has
/// it), in default_photos order; missing ones are left out.
inline std::vector<PhotoSpec> find_default_photos(const std::vector<std::filesystem::path>& search = default_photo_search_path()) {
  std::vector<PhotoSpec> out;
  for (const auto& k : default_photos)
    for (const auto& dir : search) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(dir / k.file, ec)) {
        out.push_back({dir / k.file, k.source, k.licence});
        break;
      }
    }
  return out;
}

/// @brief A photo file name turned into a source name: letters, digits and '-' kept, anything
/// else '-', a leading digit prefixed with 'p' (the digits before the source are the stimulus id).
inline std::string source_name_of(std::string_view stem) {
  std::string s;
  for (char c : stem) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "p" + s;
  return s;
}

/// @brief Every image file (png, jpg, jpeg, bmp, ppm, pgm, tga, gif) in a folder, sorted by
/// name; each photo is its own source (source_name_of its stem).
/// @throws IoError when the folder cannot be listed.
inline std::vector<PhotoSpec> photos_in_directory(const std::filesystem::path& dir) {
  std::vector<PhotoSpec> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".ppm" || ext == ".pgm" ||
        ext == ".tga" || ext == ".gif")
      out.push_back({e.path(), source_name_of(e.path().stem().string()), "unknown (user supplied)"});
  }
  if (ec) throw IoError(dir.string() + ": cannot list (" + ec.message() + ")");
  std::sort(out.begin(), out.end(), [](const PhotoSpec& a, const PhotoSpec& b) { return a.path < b.path; });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Options

/// @brief The rating design, after the original study.
struct StudyDesign {
  int observers = 5;
  int sessions = 3;            ///< training sessions per observer
  int session_size = 300;      ///< stimuli per training session
  bool repeat_first = true;    ///< one more session repeating the first (in a new order)
  int test_size = 300;         ///< common test stimuli, rated by every observer in the last session
  /// distinct training stimuli / (observers * sessions * session_size): 2790 / 4500 = 0.62 in
  /// the real study (any two observers then share about a third of their training stimuli)
  double pool_ratio = 0.62;
  double core_fraction = 1.0 / 3.0;  ///< share of an observer's training stimuli rated by all
};

/// @brief Everything build_study() needs.
struct BuildOptions {
  std::filesystem::path out;           ///< output folder (created)
  std::vector<PhotoSpec> photos;       ///< reference photos; empty: find_default_photos()
  int crop_size = 256;                 ///< stimulus side, pixels (a multiple of 8)
  double half_scale_fraction = 0.5;    ///< share of crops cut from the photo downscaled by 2 (when
                                       ///< that still leaves >= 64 crop positions; JPEG photos
                                       ///< always use it then, so their own artefacts vanish)
  StudyDesign design;
  SplitFractions fractions{0.7, 0.1, 0.2};  ///< shares of the *sources* in train / val / test
  bool regional = false;               ///< add region-distorted stimuli and region-weighing observers
  double region_weight = 4.0;          ///< weight of the centre for region-weighing observers
  int reference_quality = 25;          ///< Q of the content measure
  std::uint64_t seed = 1;
  int threads = 0;                     ///< 0: all hardware threads
  bool write_references = false;       ///< also write the crops as references/<id><source>.png
  CalibrationOptions calibration{.knots = 10};
  std::function<void(const std::string&)> log;  ///< progress lines (may be empty)
};

// ---------------------------------------------------------------------------------------------
// Results

/// @brief One stimulus of a built study.
struct StimulusInfo {
  std::string image;            ///< file name in images/
  std::string source, photo;    ///< source and the photo's file name
  Part part = Part::train;
  int crop = 0;                 ///< crop number (the id in the name)
  int scale = 1;                ///< 1: native, 2: cut from the photo downscaled by 2
  int crop_top = 0, crop_left = 0;  ///< in the (possibly downscaled) photo
  int band = 0, q = 0;
  int region_q = 0;             ///< 0: uniform stimulus
  WeightRect region;            ///< harder-compressed rectangle (height 0 when none)
  Distortion uniform;           ///< measures, uniform weight
  double content_uniform = 0;   ///< content measure (PSNR-B at reference_quality), uniform
  double measure_centre = 0;    ///< PSNR-B with the centre weighted (regional observers)
  double content_centre = 0;    ///< content measure with the centre weighted
};

/// @brief One simulated observer: its model, its targets and what it did.
struct ObserverSummary {
  std::string id;
  int target_id = 0;                 ///< row of DATA.md's table
  bool weighs_centre = false;        ///< uses the centre-weighted measure
  WeightRect centre;                 ///< the weighted rectangle (when weighs_centre)
  ObserverTarget target;
  CalibrationResult fit;             ///< model and expected shares on the observer's (uniform) stimuli
  ExpectedAgreement expected_agreement;  ///< on the stimuli of the repeated session
  SelfAgreement realised_agreement;  ///< session 1 vs the repeat, from the drawn votes
  BandShares realised_share{};       ///< from the drawn votes (all sessions; uniform stimuli only)
  std::array<long, 5> realised_count{};
  std::size_t test_stimuli = 0;
  double bayes_ceiling = 0;          ///< mean over test stimuli of max_k P(vote = k)
  double test_accuracy_of_mode = 0;  ///< realised: share of test votes equal to the most probable vote
  double q_lookup_accuracy = 0;      ///< realised: Q look-up (fit on train-split votes) on test votes
  double q_lookup_expected = 0;      ///< expected: mean over test stimuli of P(vote = look-up)
  double band_lookup_accuracy = 0;   ///< realised: band look-up on test votes
  double band_lookup_expected = 0;
  std::size_t ratings = 0;
};

/// @brief What build_study() made.
struct StudySummary {
  std::vector<StimulusInfo> stimuli;
  std::vector<Rating> ratings;
  std::vector<ObserverSummary> observers;
  std::map<std::string, Part> source_parts;
  std::vector<PhotoSpec> photos;
  std::size_t pool_size = 0, core_size = 0;
  std::size_t overlap_min = 0, overlap_max = 0;  ///< training stimuli shared by two observers
  double overlap_mean = 0;
  int repeat_session = 0, test_session = 0;
  double seconds = 0;                 ///< wall time of build_study()
};

// ---------------------------------------------------------------------------------------------
// Helpers

namespace detail {

/// "DD-Mon-YYYY HH:MM:SS" (MATLAB's datestr default) of a time given in seconds since
/// 2023-01-01 00:00:00; independent of locale and time zone.
inline std::string matlab_timestamp(double seconds_since_2023) {
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  long long s = (long long)std::floor(seconds_since_2023);
  long long days = s / 86400;
  const long long rem = s % 86400;
  // days since 1970-01-01 -> civil date (Howard Hinnant's algorithm); 2023-01-01 is day 19358.
  long long z = days + 19358 + 719468;
  const long long era = (z >= 0 ? z : z - 146096) / 146097;
  const long long doe = z - era * 146097;
  const long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long long y = yoe + era * 400;
  const long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const long long mp = (5 * doy + 2) / 153;
  const long long d = doy - (153 * mp + 2) / 5 + 1;
  const long long m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%02lld-%s-%04lld %02lld:%02lld:%02lld", d, months[m - 1], y, rem / 3600, (rem / 60) % 60,
                rem % 60);
  return buf;
}

/// Copy the rectangle (top, left, S x S) of an [H, W, 3] image.
inline io::ImageU8 crop_u8(const io::ImageU8& img, int top, int left, int S) {
  io::ImageU8 out = io::ImageU8::from_shape({std::size_t(S), std::size_t(S), 3});
  const std::size_t W = img.shape(1);
  for (int y = 0; y < S; ++y)
    std::copy_n(img.data() + ((std::size_t(top + y) * W + std::size_t(left)) * 3), std::size_t(S) * 3,
                out.data() + std::size_t(y) * std::size_t(S) * 3);
  return out;
}

/// 2 x 2 box downscale (rounded mean), [H, W, 3] -> [H / 2, W / 2, 3].
inline io::ImageU8 half_scale(const io::ImageU8& img) {
  const std::size_t H = img.shape(0) / 2, W = img.shape(1) / 2, iw = img.shape(1);
  io::ImageU8 out = io::ImageU8::from_shape({H, W, 3});
  const std::uint8_t* s = img.data();
  for (std::size_t y = 0; y < H; ++y)
    for (std::size_t x = 0; x < W; ++x)
      for (std::size_t c = 0; c < 3; ++c) {
        const unsigned v = s[((2 * y) * iw + 2 * x) * 3 + c] + s[((2 * y) * iw + 2 * x + 1) * 3 + c] +
                           s[((2 * y + 1) * iw + 2 * x) * 3 + c] + s[((2 * y + 1) * iw + 2 * x + 1) * 3 + c];
        out.data()[(y * W + x) * 3 + c] = std::uint8_t((v + 2) / 4);
      }
  return out;
}

/// Write a file as a temporary sibling renamed over the target: readers never see a partial
/// file, but (unlike io::atomic_write) without fsync -- thousands of stimuli would spend most of
/// the build waiting for the disk. The tables are written with io::atomic_write.
inline void write_file_renamed(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw IoError(path.string() + ": cannot write");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw IoError(path.string() + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw IoError(path.string() + ": rename failed (" + ec.message() + ")");
  }
}

/// Run f(i) for i in [0, n) on `threads` threads; rethrows the first exception.
template <class F>
void parallel_for(std::size_t n, int threads, F&& f) {
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex m;
  auto body = [&] {
    for (;;) {
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      {
        std::lock_guard<std::mutex> lock(m);
        if (error) return;
      }
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
      }
    }
  };
  const int t = std::max(1, std::min<int>(threads, int(std::max<std::size_t>(n, 1))));
  std::vector<std::thread> pool;
  for (int k = 1; k < t; ++k) pool.emplace_back(body);
  body();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

/// Largest-remainder apportionment of `total` items by weights (ties: the earlier item); then
/// every positive weight left with nothing takes one item from the item holding the most, as
/// long as total allows.
inline std::vector<int> apportion(int total, const std::vector<double>& weights) {
  std::vector<int> out(weights.size(), 0);
  if (weights.empty() || total <= 0) return out;
  double sum = 0;
  for (double w : weights) sum += std::max(0.0, w);
  if (!(sum > 0)) return out;
  std::vector<std::pair<double, std::size_t>> frac;
  int used = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double exact = total * std::max(0.0, weights[i]) / sum;
    out[i] = int(exact);
    used += out[i];
    frac.push_back({exact - std::floor(exact), i});
  }
  std::stable_sort(frac.begin(), frac.end(), [](auto& x, auto& y) { return x.first > y.first; });
  for (int k = 0; k < total - used; ++k) ++out[frac[std::size_t(k) % frac.size()].second];
  for (std::size_t i = 0; i < weights.size(); ++i)
    if (weights[i] > 0 && out[i] == 0) {
      const std::size_t big = std::size_t(std::max_element(out.begin(), out.end()) - out.begin());
      if (out[big] <= 1) break;
      --out[big];
      ++out[i];
    }
  return out;
}

inline double capped(double db) { return std::isfinite(db) ? std::min(db, 60.0) : 60.0; }

// -- pretty JSON --------------------------------------------------------------------------------
inline void pretty_json(const json::Value& v, std::string& out, int indent) {
  using K = json::Value::Kind;
  const std::string pad(std::size_t(indent) * 2, ' '), pad2(std::size_t(indent + 1) * 2, ' ');
  if (v.kind() == K::object) {
    const auto& o = v.as_object();
    if (o.empty()) { out += "{}"; return; }
    out += "{\n";
    for (std::size_t i = 0; i < o.size(); ++i) {
      out += pad2 + json::escape(o[i].first) + ": ";
      pretty_json(o[i].second, out, indent + 1);
      out += i + 1 < o.size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (v.kind() == K::array) {
    const auto& a = v.as_array();
    bool flat = true;
    for (const auto& e : a) flat = flat && e.kind() != K::object && e.kind() != K::array;
    if (flat) { out += v.dump(); return; }
    bool rows = true;  // an array of flat arrays: one per line
    for (const auto& e : a) {
      if (e.kind() != K::array) { rows = false; break; }
      for (const auto& x : e.as_array()) rows = rows && x.kind() != K::object && x.kind() != K::array;
    }
    out += "[\n";
    for (std::size_t i = 0; i < a.size(); ++i) {
      out += pad2;
      if (rows) out += a[i].dump();
      else pretty_json(a[i], out, indent + 1);
      out += i + 1 < a.size() ? ",\n" : "\n";
    }
    out += pad + "]";
  } else {
    out += v.dump();
  }
}

inline json::Value num(double d) { return json::Value::make_number(d); }
inline json::Value str(std::string s) { return json::Value::make_string(std::move(s)); }
inline json::Value shares_json(const BandShares& s) {
  json::Value a = json::Value::make_array();
  for (const auto& row : s) {
    json::Value r = json::Value::make_array();
    for (double x : row) r.push_back(num(std::round(x * 1e4) / 1e4));
    a.push_back(std::move(r));
  }
  return a;
}
inline json::Value rect_json(const WeightRect& r) {
  json::Value o = json::Value::make_object();
  o.set("top", num(r.top));
  o.set("left", num(r.left));
  o.set("height", num(r.height));
  o.set("width", num(r.width));
  o.set("weight", num(r.weight));
  return o;
}
inline std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "nan";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// The build

/// @brief Build a study in opt.out (see the file comment for what and how).
/// @return everything that was written, and the observers' summaries
/// @throws Error when no photo is usable, the design cannot be met (too few sources for the
///         non-empty parts, sizes not positive), or a file cannot be read or written.
inline StudySummary build_study(const BuildOptions& opt_in) {
  namespace fs = std::filesystem;
  const auto t_start = std::chrono::steady_clock::now();
  BuildOptions opt = opt_in;
  auto log = [&](const std::string& s) {
    if (!opt.log) return;
    char t[32];
    std::snprintf(t, sizeof t, "[%5.1f s] ", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
    opt.log(t + s);
  };
  const StudyDesign& D = opt.design;
  const int S = opt.crop_size;
  if (S < 16 || S % 8 != 0) throw Error("crop size must be a multiple of 8 and at least 16, got " + std::to_string(S));
  if (D.observers < 1 || D.sessions < 1 || D.session_size < 1 || D.test_size < 0)
    throw Error("design: observers, sessions and session size must be positive, the test size non-negative");
  if (opt.out.empty()) throw Error("no output folder given");
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const std::uint64_t seed = opt.seed;

  StudySummary sum;
  // -- 1. photos and sources ------------------------------------------------------------------
  if (opt.photos.empty()) opt.photos = find_default_photos();
  if (opt.photos.empty())
    throw Error("no reference photos: install python3-skimage (its data folder holds the default photos), set "
                "VITIQ_PHOTO_PATH, or pass a folder of photos");
  struct Photo {
    PhotoSpec spec;
    io::ImageU8 full, half;
    bool use_half = false, jpeg = false;
    double area = 0;
  };
  std::vector<Photo> photos;
  for (const auto& p : opt.photos) {
    Photo ph;
    ph.spec = p;
    ph.full = io::load_image(p.path);
    const long H = long(ph.full.shape(0)), W = long(ph.full.shape(1));
    std::string ext = p.path.extension().string();
    for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    ph.jpeg = ext == ".jpg" || ext == ".jpeg";
    if ((H / 2 - S + 1) * (W / 2 - S + 1) >= 64 && H / 2 >= S && W / 2 >= S) {
      ph.half = detail::half_scale(ph.full);
      ph.use_half = true;
    }
    if (H < S || W < S) {
      log("skipping " + p.path.string() + ": " + std::to_string(W) + " x " + std::to_string(H) + " is smaller than a crop");
      continue;
    }
    ph.area = double(H) * double(W);
    photos.push_back(std::move(ph));
  }
  if (photos.empty()) throw Error("no photo is at least " + std::to_string(S) + " x " + std::to_string(S) + " pixels");
  for (const auto& p : photos) sum.photos.push_back(p.spec);
  std::map<std::string, std::vector<std::size_t>> source_photos;
  for (std::size_t i = 0; i < photos.size(); ++i) source_photos[photos[i].spec.source].push_back(i);
  {
    std::vector<std::pair<std::string, double>> w;
    for (const auto& [s, v] : source_photos) w.push_back({s, 1.0});
    int nonzero = (opt.fractions.train > 0) + (opt.fractions.val > 0) + (opt.fractions.test > 0);
    if (int(w.size()) < nonzero)
      throw Error("the photos give " + std::to_string(w.size()) + " source(s), fewer than the " + std::to_string(nonzero) +
                  " non-empty parts of the split");
    sum.source_parts = split_sources(w, opt.fractions, seed);
  }
  if (opt.fractions.test <= 0 && D.test_size > 0) throw Error("a test set needs a positive test fraction");
  if (opt.fractions.train + opt.fractions.val <= 0) throw Error("the train and val fractions cannot both be 0");

  // -- 2. how many stimuli where ----------------------------------------------------------------
  const int N = D.sessions * D.session_size;  // training stimuli per observer
  const int n_obs = D.observers;
  long pool = std::lround(D.pool_ratio * double(n_obs) * double(N));
  pool = std::clamp<long>(pool, N, long(n_obs) * N);
  long core = std::lround(D.core_fraction * N);
  if (n_obs > 1) core = std::min<long>(core, (long(n_obs) * N - pool) / (n_obs - 1));
  else core = N;
  core = std::clamp<long>(core, 0, N);
  sum.pool_size = std::size_t(pool);
  sum.core_size = std::size_t(core);
  const double tv = opt.fractions.train + opt.fractions.val;
  long n_val = opt.fractions.val > 0 ? std::lround(double(pool) * opt.fractions.val / tv) : 0;
  if (opt.fractions.train <= 0) n_val = pool;
  const std::array<long, 3> part_count = {pool - n_val, n_val, opt.fractions.test > 0 ? long(D.test_size) : 0L};
  const int per_crop = 5 + (opt.regional ? 1 : 0);

  // crops: per part, spread over the part's sources by area, round-robin over a source's photos
  struct CropPlan {
    std::size_t photo;
    Part part;
    int scale, top, left;
  };
  std::vector<CropPlan> crops;
  std::vector<int> crop_stimuli;  // stimuli to make from each crop
  {
    std::set<std::tuple<std::size_t, int, int, int>> used;
    int crop_no = 0;
    for (int p = 0; p < 3; ++p) {
      const long want = part_count[std::size_t(p)];
      if (want <= 0) continue;
      std::vector<std::string> srcs;
      std::vector<double> w;
      for (const auto& [s, idx] : source_photos)
        if (sum.source_parts.at(s) == Part(p)) {
          srcs.push_back(s);
          double a = 0;
          for (auto i : idx) a += photos[i].area;
          w.push_back(a);
        }
      if (srcs.empty()) throw Error(std::string("no source photo in the ") + std::string(to_string(Part(p))) + " part");
      const int n_crops = int((want + per_crop - 1) / per_crop);
      const std::vector<int> per_source = detail::apportion(n_crops, w);
      long left_to_make = want;
      for (std::size_t si = 0; si < srcs.size(); ++si)
        for (int k = 0; k < per_source[si]; ++k) {
          const auto& idx = source_photos[srcs[si]];
          const std::size_t ph = idx[std::size_t(k) % idx.size()];
          Rng rng(mix64(seed ^ 0xC20F5ULL) ^ mix64(std::uint64_t(crop_no)));
          CropPlan c{ph, Part(p), 1, 0, 0};
          for (int attempt = 0; attempt < 50; ++attempt) {
            const Photo& P = photos[ph];
            c.scale = P.use_half && (P.jpeg || rng.uniform() < opt.half_scale_fraction) ? 2 : 1;
            const io::ImageU8& im = c.scale == 2 ? P.half : P.full;
            c.top = int(rng.below(im.shape(0) - std::size_t(S) + 1));
            c.left = int(rng.below(im.shape(1) - std::size_t(S) + 1));
            if (!used.count({ph, c.scale, c.top, c.left})) break;
          }
          used.insert({ph, c.scale, c.top, c.left});
          crops.push_back(c);
          const int make = int(std::min<long>(per_crop, left_to_make));
          crop_stimuli.push_back(make);
          left_to_make -= make;
          ++crop_no;
        }
    }
  }

  // -- 3-4. stimuli, encoded and measured on threads --------------------------------------------
  const fs::path img_dir = opt.out / "images";
  fs::create_directories(img_dir);
  if (opt.write_references) fs::create_directories(opt.out / "references");
  const WeightRect centre = WeightRect::centre(S, S, 0.5, opt.region_weight);
  const bool need_centre = opt.regional;
  std::vector<std::vector<StimulusInfo>> per_crop_stimuli(crops.size());
  log("encoding " + std::to_string(std::accumulate(crop_stimuli.begin(), crop_stimuli.end(), 0)) + " stimuli from " +
      std::to_string(crops.size()) + " crops of " + std::to_string(photos.size()) + " photos on " + std::to_string(threads) +
      " threads");
  detail::parallel_for(crops.size(), threads, [&](std::size_t ci) {
    const CropPlan& c = crops[ci];
    const Photo& P = photos[c.photo];
    const io::ImageU8 ref = detail::crop_u8(c.scale == 2 ? P.half : P.full, c.top, c.left, S);
    char idbuf[16];
    std::snprintf(idbuf, sizeof idbuf, "%05zu", ci);
    const std::string id = idbuf, src = P.spec.source;
    if (opt.write_references) detail::write_file_renamed(opt.out / "references" / (id + src + ".png"), io::encode_png(ref));
    // content measure: the same crop at the reference quality
    const io::ImageU8 at_ref = io::decode_image(io::encode_jpeg(ref, opt.reference_quality), id + src);
    const double content_u = detail::capped(measure_distortion(ref, at_ref).psnr_b);
    const double content_c = need_centre ? detail::capped(measure_distortion(ref, at_ref, centre).psnr_b) : content_u;
    Rng rng(mix64(seed ^ 0x57111ULL) ^ mix64(std::uint64_t(ci)));
    std::vector<StimulusInfo> out;
    for (int k = 0; k < crop_stimuli[ci]; ++k) {
      StimulusInfo s;
      s.source = src;
      s.photo = P.spec.path.filename().string();
      s.part = c.part;
      s.crop = int(ci);
      s.scale = c.scale;
      s.crop_top = c.top;
      s.crop_left = c.left;
      s.content_uniform = content_u;
      s.content_centre = content_c;
      io::ImageU8 dist;
      std::vector<std::byte> bytes;
      if (k < 5) {  // uniform stimulus of band k + 1
        const QualityBand& B = quality_bands[std::size_t(k)];
        s.band = B.band;
        s.q = B.q_min + int(rng.below(std::uint64_t(B.q_max - B.q_min + 1)));
        s.image = stimulus_file_name(id, src, s.band, s.q, ".jpeg");
        bytes = io::encode_jpeg(ref, s.q);
        dist = io::decode_image(bytes, s.image);
      } else {  // regional: a rectangle compressed at I1 inside a mild background (I3..I5)
        const QualityBand& B = quality_bands[std::size_t(2 + rng.below(3))];
        s.band = B.band;
        s.q = B.q_min + int(rng.below(std::uint64_t(B.q_max - B.q_min + 1)));
        s.region_q = quality_bands[0].q_min + int(rng.below(std::uint64_t(quality_bands[0].q_max - quality_bands[0].q_min + 1)));
        if (rng.uniform() < 0.5) {
          s.region = WeightRect::centre(S, S, 0.5, 1.0);
        } else {
          const int side_h = 8 * (S / 32 + int(rng.below(std::uint64_t(S / 16 - S / 32 + 1))));  // S/4 .. S/2
          const int side_w = 8 * (S / 32 + int(rng.below(std::uint64_t(S / 16 - S / 32 + 1))));
          s.region.height = side_h;
          s.region.width = side_w;
          s.region.top = 8 * int(rng.below(std::uint64_t((S - side_h) / 8 + 1)));
          s.region.left = 8 * int(rng.below(std::uint64_t((S - side_w) / 8 + 1)));
        }
        s.image = stimulus_file_name(id, src, s.band, s.q, ".png", s.region_q);
        dist = io::decode_image(io::encode_jpeg(ref, s.q), s.image);
        const io::ImageU8 hard = io::decode_image(io::encode_jpeg(ref, s.region_q), s.image);
        for (int y = s.region.top; y < s.region.top + s.region.height; ++y)
          std::copy_n(hard.data() + (std::size_t(y) * std::size_t(S) + std::size_t(s.region.left)) * 3,
                      std::size_t(s.region.width) * 3,
                      dist.data() + (std::size_t(y) * std::size_t(S) + std::size_t(s.region.left)) * 3);
        bytes = io::encode_png(dist);
      }
      detail::write_file_renamed(img_dir / s.image, bytes);
      s.uniform = measure_distortion(ref, dist);
      s.uniform.psnr_b = detail::capped(s.uniform.psnr_b);
      s.uniform.psnr_y = detail::capped(s.uniform.psnr_y);
      s.uniform.psnr_rgb = detail::capped(s.uniform.psnr_rgb);
      s.measure_centre = need_centre ? detail::capped(measure_distortion(ref, dist, centre).psnr_b) : s.uniform.psnr_b;
      out.push_back(std::move(s));
    }
    per_crop_stimuli[ci] = std::move(out);
  });
  for (auto& v : per_crop_stimuli)
    for (auto& s : v) sum.stimuli.push_back(std::move(s));
  const std::size_t n_stim = sum.stimuli.size();
  log("stimuli written: " + std::to_string(n_stim));

  // -- 5. design ------------------------------------------------------------------------------------
  std::vector<std::size_t> pool_idx, test_idx;
  for (std::size_t i = 0; i < n_stim; ++i) (sum.stimuli[i].part == Part::test ? test_idx : pool_idx).push_back(i);
  Rng drng(mix64(seed ^ 0xDE5161ULL));
  auto shuffle = [&](std::vector<std::size_t>& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[drng.below(i)]);
  };
  shuffle(pool_idx);
  std::vector<std::vector<std::size_t>> train_sets(static_cast<std::size_t>(n_obs));
  {
    const std::size_t c = std::min<std::size_t>(sum.core_size, pool_idx.size());
    std::vector<std::vector<std::size_t>> owned(static_cast<std::size_t>(n_obs));
    for (std::size_t i = c; i < pool_idx.size(); ++i) owned[(i - c) % std::size_t(n_obs)].push_back(pool_idx[i]);
    for (int o = 0; o < n_obs; ++o) {
      auto& set = train_sets[std::size_t(o)];
      set.assign(pool_idx.begin(), pool_idx.begin() + std::ptrdiff_t(c));
      const auto& mine = owned[std::size_t(o)];
      set.insert(set.end(), mine.begin(), mine.begin() + std::ptrdiff_t(std::min<std::size_t>(mine.size(), std::size_t(N) - c)));
      // the rest from other observers' stimuli, drawn at random
      std::vector<std::size_t> others;
      for (int p = 0; p < n_obs; ++p)
        if (p != o) others.insert(others.end(), owned[std::size_t(p)].begin(), owned[std::size_t(p)].end());
      shuffle(others);
      for (std::size_t k = 0; k < others.size() && set.size() < std::size_t(N); ++k) set.push_back(others[k]);
      if (set.size() < std::size_t(N))
        throw Error("design: only " + std::to_string(set.size()) + " training stimuli for observer " + std::to_string(o + 1) +
                    ", " + std::to_string(N) + " needed");
      shuffle(set);
    }
    sum.overlap_min = std::size_t(-1);
    double tot = 0;
    int pairs = 0;
    for (int a = 0; a < n_obs; ++a)
      for (int b = a + 1; b < n_obs; ++b) {
        std::set<std::size_t> sa(train_sets[std::size_t(a)].begin(), train_sets[std::size_t(a)].end());
        std::size_t common = 0;
        for (auto i : train_sets[std::size_t(b)]) common += sa.count(i);
        sum.overlap_min = std::min(sum.overlap_min, common);
        sum.overlap_max = std::max(sum.overlap_max, common);
        tot += double(common);
        ++pairs;
      }
    if (!pairs) sum.overlap_min = 0;
    sum.overlap_mean = pairs ? tot / pairs : 0;
  }
  sum.repeat_session = D.repeat_first ? D.sessions + 1 : 0;
  sum.test_session = D.sessions + (D.repeat_first ? 2 : 1);

  // -- 6. observers ------------------------------------------------------------------------------------
  const auto targets = real_observer_targets();
  sum.observers.resize(std::size_t(n_obs));
  // (observer, session) -> stimuli in presentation order
  std::vector<std::map<int, std::vector<std::size_t>>> sessions(static_cast<std::size_t>(n_obs));
  for (int o = 0; o < n_obs; ++o) {
    auto& ses = sessions[std::size_t(o)];
    const auto& set = train_sets[std::size_t(o)];
    for (int s = 0; s < D.sessions; ++s)
      ses[s + 1].assign(set.begin() + std::ptrdiff_t(s) * D.session_size, set.begin() + std::ptrdiff_t(s + 1) * D.session_size);
    if (D.repeat_first) {
      ses[sum.repeat_session] = ses[1];
      shuffle(ses[sum.repeat_session]);
    }
    if (!test_idx.empty()) {
      ses[sum.test_session] = test_idx;
      shuffle(ses[sum.test_session]);
    }
  }
  log("calibrating " + std::to_string(n_obs) + " observers");
  detail::parallel_for(std::size_t(n_obs), threads, [&](std::size_t o) {
    ObserverSummary& os = sum.observers[o];
    os.id = std::to_string(o + 1);
    os.target_id = int(o % 5) + 1;
    os.target = targets[o % 5];
    os.weighs_centre = opt.regional && (o % 2 == 1);
    os.centre = centre;
    std::set<std::size_t> rated;
    for (const auto& [s, v] : sessions[o]) rated.insert(v.begin(), v.end());
    std::vector<double> m, c;
    std::vector<int> b;
    for (auto i : rated) {
      const StimulusInfo& st = sum.stimuli[i];
      m.push_back(os.weighs_centre ? st.measure_centre : st.uniform.psnr_b);
      c.push_back(os.weighs_centre ? st.content_centre : st.content_uniform);
      b.push_back(st.region_q > 0 ? 0 : st.band);  // regional stimuli: agreement term only
    }
    os.fit = calibrate_observer(m, c, b, os.target, opt.calibration);
  });
  auto probs_of = [&](const ObserverSummary& os, const StimulusInfo& st) {
    return os.weighs_centre ? os.fit.observer.probabilities(st.measure_centre, st.content_centre)
                            : os.fit.observer.probabilities(st.uniform.psnr_b, st.content_uniform);
  };
  // probabilities of every stimulus for every observer: [observer][stimulus]
  std::vector<std::vector<VoteProbs>> P(static_cast<std::size_t>(n_obs), std::vector<VoteProbs>(n_stim));
  for (int o = 0; o < n_obs; ++o)
    for (std::size_t i = 0; i < n_stim; ++i) P[std::size_t(o)][i] = probs_of(sum.observers[std::size_t(o)], sum.stimuli[i]);

  // votes, durations, timestamps
  for (int o = 0; o < n_obs; ++o) {
    for (const auto& [s, list] : sessions[std::size_t(o)]) {
      Rng trng(mix64(seed ^ 0x7135ULL) ^ mix64((std::uint64_t(o) << 20) + std::uint64_t(s)));
      double t = 86400.0 * (15 + 7 * o + 2 * (s - 1)) + 3600.0 * (9 + (o * 3 + s) % 8) + 60.0 * double(trng.below(60));
      for (std::size_t k = 0; k < list.size(); ++k) {
        const std::size_t i = list[k];
        Rng vr(mix64(seed ^ 0x707E5ULL) ^ mix64((std::uint64_t(o) << 40) ^ (std::uint64_t(s) << 24) ^ std::uint64_t(k)));
        Rating r;
        r.image = sum.stimuli[i].image;
        r.observer = sum.observers[std::size_t(o)].id;
        r.session = s;
        r.vote = sample_vote(P[std::size_t(o)][i], vr.uniform());
        r.duration = std::round((0.4 + std::exp(std::log(2.2) + 0.45 * vr.normal())) * 1000.0) / 1000.0;
        t += r.duration + 1.0 + vr.uniform();
        r.timestamp = detail::matlab_timestamp(t);
        sum.ratings.push_back(std::move(r));
      }
    }
  }

  // summaries
  std::map<std::string, std::size_t> index_of;
  for (std::size_t i = 0; i < n_stim; ++i) index_of[sum.stimuli[i].image] = i;
  for (int o = 0; o < n_obs; ++o) {
    ObserverSummary& os = sum.observers[std::size_t(o)];
    const auto& probs = P[std::size_t(o)];
    std::vector<VoteProbs> rep;
    if (D.repeat_first)
      for (auto i : sessions[std::size_t(o)][1]) rep.push_back(probs[i]);
    os.expected_agreement = expected_agreement(rep);
    std::vector<int> q_train, v_train, b_train;
    std::vector<std::pair<std::size_t, int>> test_votes;
    for (const auto& r : sum.ratings) {
      if (r.observer != os.id) continue;
      ++os.ratings;
      const StimulusInfo& st = sum.stimuli[index_of[r.image]];
      if (st.region_q == 0) {  // the targets describe uniform JPEG stimuli
        ++os.realised_count[std::size_t(st.band - 1)];
        os.realised_share[std::size_t(st.band - 1)][std::size_t(r.vote - 1)] += 1;
      }
      if (st.part == Part::train) q_train.push_back(st.q), v_train.push_back(r.vote), b_train.push_back(st.band);
      if (st.part == Part::test && r.session == sum.test_session) test_votes.push_back({index_of[r.image], r.vote});
    }
    for (int b = 0; b < 5; ++b)
      for (auto& x : os.realised_share[std::size_t(b)])
        if (os.realised_count[std::size_t(b)]) x /= double(os.realised_count[std::size_t(b)]);
    if (D.repeat_first) os.realised_agreement = self_agreement(sum.ratings, os.id, 1, sum.repeat_session);
    os.test_stimuli = test_votes.size();
    if (!test_votes.empty()) {
      std::vector<VoteProbs> tp;
      double mode_hits = 0, ql = 0, qle = 0, bl = 0, ble = 0;
      eval::QLookup qlook, blook;
      if (!q_train.empty()) qlook.fit(q_train, v_train), blook.fit(b_train, v_train);
      for (const auto& [i, v] : test_votes) {
        tp.push_back(probs[i]);
        mode_hits += most_probable_vote(probs[i]) == v;
        if (qlook.fitted()) {
          const int pq = qlook.predict(sum.stimuli[i].q), pb = blook.predict(sum.stimuli[i].band);
          ql += pq == v;
          qle += probs[i][std::size_t(pq - 1)];
          bl += pb == v;
          ble += probs[i][std::size_t(pb - 1)];
        }
      }
      const double n = double(test_votes.size());
      os.bayes_ceiling = bayes_ceiling(tp);
      os.test_accuracy_of_mode = mode_hits / n;
      os.q_lookup_accuracy = ql / n;
      os.q_lookup_expected = qle / n;
      os.band_lookup_accuracy = bl / n;
      os.band_lookup_expected = ble / n;
    }
  }

  // -- 7. files ------------------------------------------------------------------------------------
  log("writing tables");
  write_original_files(opt.out / "ratings", sum.ratings);
  write_long_csv(opt.out / "ratings.csv", sum.ratings);
  {
    std::vector<SplitEntry> e;
    for (const auto& s : sum.stimuli) e.push_back({s.image, s.source, s.part});
    ContentSplit(std::move(e)).write_csv(opt.out / "split.csv");
  }
  {  // per-stimulus ground truth
    std::vector<std::string> head = {"image", "source", "photo", "split", "crop", "scale", "crop_top", "crop_left",
                                     "band", "q", "region_q", "region_top", "region_left", "region_height",
                                     "region_width", "psnr_rgb", "psnr_y", "psnr_b", "content_psnr_b"};
    if (opt.regional) head.insert(head.end(), {"psnr_b_centre", "content_psnr_b_centre"});
    for (const auto& os : sum.observers)
      for (int k = 1; k <= 5; ++k) head.push_back(stimulus_truth_column(os.id, k));
    std::string text = csv_line(head);
    for (std::size_t i = 0; i < n_stim; ++i) {
      const StimulusInfo& s = sum.stimuli[i];
      std::vector<std::string> row = {s.image, s.source, s.photo, std::string(to_string(s.part)), std::to_string(s.crop),
                                      std::to_string(s.scale), std::to_string(s.crop_top), std::to_string(s.crop_left),
                                      std::to_string(s.band), std::to_string(s.q), std::to_string(s.region_q),
                                      std::to_string(s.region.top), std::to_string(s.region.left),
                                      std::to_string(s.region.height), std::to_string(s.region.width),
                                      detail::fixed(s.uniform.psnr_rgb, 4), detail::fixed(s.uniform.psnr_y, 4),
                                      detail::fixed(s.uniform.psnr_b, 4), detail::fixed(s.content_uniform, 4)};
      if (opt.regional) row.insert(row.end(), {detail::fixed(s.measure_centre, 4), detail::fixed(s.content_centre, 4)});
      for (int o = 0; o < n_obs; ++o)
        for (int k = 0; k < 5; ++k) row.push_back(detail::fixed(P[std::size_t(o)][i][std::size_t(k)], 6));
      text += csv_line(row);
    }
    io::atomic_write(opt.out / "ground_truth_stimuli.csv", text);
  }
  {  // ground_truth.json
    using detail::num;
    using detail::str;
    json::Value root = json::Value::make_object();
    root.set("generator", str("vitiq-make-dataset (vitiq::data::build_study)"));
    root.set("seed", json::Value::make_number(double(seed), std::to_string(seed)));
    json::Value o = json::Value::make_object();
    o.set("crop_size", num(S));
    o.set("half_scale_fraction", num(opt.half_scale_fraction));
    o.set("regional", json::Value::make_bool(opt.regional));
    o.set("reference_quality", num(opt.reference_quality));
    o.set("split_fractions", [&] {
      json::Value f = json::Value::make_object();
      f.set("train", num(opt.fractions.train));
      f.set("val", num(opt.fractions.val));
      f.set("test", num(opt.fractions.test));
      return f;
    }());
    root.set("options", std::move(o));
    json::Value ph = json::Value::make_array();
    for (const auto& p : photos) {
      json::Value x = json::Value::make_object();
      x.set("file", str(p.spec.path.string()));
      x.set("source", str(p.spec.source));
      x.set("split", str(std::string(to_string(sum.source_parts.at(p.spec.source)))));
      x.set("width", num(double(p.full.shape(1))));
      x.set("height", num(double(p.full.shape(0))));
      x.set("licence", str(p.spec.licence));
      ph.push_back(std::move(x));
    }
    root.set("photos", std::move(ph));
    json::Value d = json::Value::make_object();
    d.set("observers", num(n_obs));
    d.set("training_sessions", num(D.sessions));
    d.set("session_size", num(D.session_size));
    d.set("repeat_session", num(sum.repeat_session));
    d.set("repeated_session", num(D.repeat_first ? 1 : 0));
    d.set("test_session", num(test_idx.empty() ? 0 : sum.test_session));
    d.set("test_size", num(double(test_idx.size())));
    d.set("pool_size", num(double(pool_idx.size())));
    d.set("core_size", num(double(sum.core_size)));
    d.set("pairwise_training_overlap", [&] {
      json::Value v = json::Value::make_object();
      v.set("min", num(double(sum.overlap_min)));
      v.set("mean", num(sum.overlap_mean));
      v.set("max", num(double(sum.overlap_max)));
      return v;
    }());
    std::array<std::size_t, 3> cnt{};
    for (const auto& s : sum.stimuli) ++cnt[std::size_t(s.part)];
    d.set("stimuli", [&] {
      json::Value v = json::Value::make_object();
      v.set("train", num(double(cnt[0])));
      v.set("val", num(double(cnt[1])));
      v.set("test", num(double(cnt[2])));
      v.set("total", num(double(n_stim)));
      return v;
    }());
    root.set("design", std::move(d));
    json::Value bands = json::Value::make_array();
    for (const auto& b : quality_bands) {
      json::Value x = json::Value::make_array();
      x.push_back(num(b.band));
      x.push_back(num(b.q_min));
      x.push_back(num(b.q_max));
      bands.push_back(std::move(x));
    }
    root.set("quality_bands", std::move(bands));
    json::Value model = json::Value::make_object();
    model.set("measure", str("psnr_b: PSNR-B (Yim & Bovik 2011) of the decoded stimulus' BT.601 luma against its crop, dB, capped at 60"));
    model.set("content", str("content_psnr_b: PSNR-B of the same crop JPEG-encoded at Q = reference_quality"));
    model.set("latent", str("mu = g(psnr_b - content_weight * (content_psnr_b - content_mean)), g piecewise linear through (knot_x, knot_y)"));
    model.set("votes", str("P(vote = k) = Phi((t_k - mu) / sigma) - Phi((t_{k-1} - mu) / sigma), t_0 = -inf, t_5 = +inf"));
    root.set("observer_model", std::move(model));
    json::Value obs = json::Value::make_array();
    for (const auto& os : sum.observers) {
      json::Value x = json::Value::make_object();
      x.set("id", str(os.id));
      x.set("imitates_real_observer", num(os.target_id));
      x.set("region", os.weighs_centre ? detail::rect_json(os.centre) : json::Value());
      json::Value m = json::Value::make_object();
      auto arr = [](const std::vector<double>& v) {
        json::Value a = json::Value::make_array();
        for (double e : v) a.push_back(detail::num(e));
        return a;
      };
      m.set("knot_x", arr(os.fit.observer.knot_x));
      m.set("knot_y", arr(os.fit.observer.knot_y));
      m.set("thresholds", arr({os.fit.observer.thresholds.begin(), os.fit.observer.thresholds.end()}));
      m.set("sigma", num(os.fit.observer.sigma));
      m.set("content_weight", num(os.fit.observer.content_weight));
      m.set("content_mean", num(os.fit.observer.content_mean));
      x.set("model", std::move(m));
      json::Value t = json::Value::make_object();
      t.set("share", detail::shares_json(os.target.share));
      t.set("self_agreement_exact", num(os.target.self_agreement));
      x.set("target", std::move(t));
      json::Value e = json::Value::make_object();
      e.set("share", detail::shares_json(os.fit.share));
      e.set("max_share_error", num(os.fit.max_share_error));
      e.set("self_agreement_within_one", num(os.expected_agreement.within_one));
      e.set("self_agreement_rmse", num(os.expected_agreement.rmse));
      json::Value r = json::Value::make_object();
      r.set("ratings", num(double(os.ratings)));
      r.set("share", detail::shares_json(os.realised_share));
      r.set("self_agreement_exact", num(os.realised_agreement.exact));
      r.set("self_agreement_within_one", num(os.realised_agreement.within_one));
      r.set("self_agreement_rmse", num(os.realised_agreement.rmse));
      x.set("realised", std::move(r));
      json::Value te = json::Value::make_object();
      te.set("stimuli", num(double(os.test_stimuli)));
      te.set("most_probable_vote_accuracy", num(os.test_accuracy_of_mode));
      GroundTruthObserver truth;  // the fields vitiq-eval reads back (ground_truth.hpp)
      truth.expected_self_agreement = os.expected_agreement.exact;
      truth.bayes_ceiling = os.bayes_ceiling;
      truth.q_lookup_accuracy = os.q_lookup_accuracy;
      put_observer_truth(e, te, truth);
      te.set("q_lookup_expected_accuracy", num(os.q_lookup_expected));
      te.set("band_lookup_accuracy", num(os.band_lookup_accuracy));
      te.set("band_lookup_expected_accuracy", num(os.band_lookup_expected));
      x.set("expected", std::move(e));
      x.set("test", std::move(te));
      obs.push_back(std::move(x));
    }
    root.set("observers", std::move(obs));
    root.set("stimulus_probabilities", str("ground_truth_stimuli.csv (columns obs<id>_p1 .. obs<id>_p5)"));
    std::string text;
    detail::pretty_json(root, text, 0);
    text += "\n";
    io::atomic_write(opt.out / "ground_truth.json", text);
  }
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return sum;
}

/// @brief A plain-text report of a built study: design, and per observer the vote shares per band
/// (realised / target), self-agreement, Bayes ceiling and look-up baselines.
inline std::string study_report(const StudySummary& s) {
  std::string out;
  char buf[256];
  std::array<std::size_t, 3> cnt{};
  for (const auto& st : s.stimuli) ++cnt[std::size_t(st.part)];
  std::snprintf(buf, sizeof buf, "%zu stimuli (train %zu, val %zu, test %zu), %zu ratings, %zu observers\n", s.stimuli.size(),
                cnt[0], cnt[1], cnt[2], s.ratings.size(), s.observers.size());
  out += buf;
  out += "sources:";
  for (const auto& [src, p] : s.source_parts) {
    out += ' ';
    out += src;
    out += '=';
    out += to_string(p);
  }
  out += "\n";
  std::snprintf(buf, sizeof buf, "training pool %zu, core %zu, pairwise overlap %zu..%zu (mean %.0f)\n", s.pool_size, s.core_size,
                s.overlap_min, s.overlap_max, s.overlap_mean);
  out += buf;
  for (const auto& o : s.observers) {
    std::snprintf(buf, sizeof buf, "observer %s (imitates real observer %d%s): %zu ratings, max |expected - target| share %.3f\n",
                  o.id.c_str(), o.target_id, o.weighs_centre ? ", weighs the centre" : "", o.ratings, o.fit.max_share_error);
    out += buf;
    for (int b = 0; b < 5; ++b) {
      std::snprintf(buf, sizeof buf, "  I%d  realised", b + 1);
      out += buf;
      const auto row = [&](const char* label, const BandShares& sh) {
        out += label;
        for (int k = 0; k < 5; ++k) {
          std::snprintf(buf, sizeof buf, " %.0f", 100 * sh[std::size_t(b)][std::size_t(k)]);
          out += buf;
        }
      };
      row("", o.realised_share);
      row("  expected", o.fit.share);
      row("  target", o.target.share);
      out += "\n";
    }
    std::snprintf(buf, sizeof buf,
                  "  self-agreement exact %.3f (expected %.3f, target %.2f), within 1 %.3f, RMSE %.3f; sigma %.2f, content weight %.2f\n",
                  o.realised_agreement.exact, o.expected_agreement.exact, o.target.self_agreement, o.realised_agreement.within_one,
                  o.realised_agreement.rmse, o.fit.observer.sigma, o.fit.observer.content_weight);
    out += buf;
    std::snprintf(buf, sizeof buf,
                  "  test (%zu): Bayes ceiling %.3f; Q look-up %.3f (expected %.3f); band look-up %.3f (expected %.3f)\n",
                  o.test_stimuli, o.bayes_ceiling, o.q_lookup_accuracy, o.q_lookup_expected, o.band_lookup_accuracy,
                  o.band_lookup_expected);
    out += buf;
  }
  return out;
}

}  // namespace vitiq::data
