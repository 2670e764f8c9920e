// examples/make_dataset.cpp -- vitiq-make-dataset: build a per-observer study from real photos.
//
//   vitiq-make-dataset --out DIR            the default study (Debian's scikit-image photos,
//                                           5 simulated observers, 3090 stimuli)
//   vitiq-make-dataset --out DIR --photos PHOTOS --observers 3 --regional ...
//
// All the work is vitiq::data::build_study() (include/vitiq/data/dataset_builder.hpp); this
// program reads the command line, prints progress and the report, and times the build.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "vitiq/data/dataset_builder.hpp"

namespace {

constexpr const char* usage_text = R"(usage: vitiq-make-dataset --out DIR [options]

Builds a per-observer image-quality study: JPEG stimuli cut from real photos, rated by simulated
observers calibrated to the five real observers of the original study, with the ground truth
(every vote probability, Bayes ceilings, look-up baselines).

required:
  --out DIR             output folder (created): images/, ratings/, ratings.csv, split.csv,
                        ground_truth.json, ground_truth_stimuli.csv
content:
  --photos DIR          use every image in DIR as a reference photo, each its own source
                        (default: the colour photos of Debian's python3-skimage, found in
                        $VITIQ_PHOTO_PATH or /usr/lib/python3/dist-packages/skimage/data)
  --crop N              stimulus side in pixels, a multiple of 8 (default 256)
  --half-scale X        share of crops cut from photos downscaled by 2, where they are large
                        enough (default 0.5; JPEG photos always, when possible)
  --regional            add one stimulus per crop with a rectangle compressed at I1 inside a
                        milder background, and make every second observer weigh the centre
  --region-weight X     weight of the centre for those observers (default 4)
  --write-references    also write the undistorted crops to references/
design (defaults: the original study):
  --observers N         simulated observers (default 5; observer o imitates real observer
                        ((o - 1) mod 5) + 1)
  --sessions N          training sessions per observer (default 3)
  --session-size N      stimuli per training session (default 300)
  --no-repeat           no session repeating the first (default: session N + 1 repeats it)
  --test-size N         common test stimuli rated by all, in the last session (default 300)
  --pool-ratio X        distinct training stimuli / all training ratings (default 0.62)
  --core-fraction X     share of each observer's training stimuli rated by all (default 1/3)
  --split A,B,C         train,val,test shares of the source photos (default 0.7,0.1,0.2)
other:
  --reference-q Q       JPEG quality of the content measure (default 25)
  --seed N              (default 1); the same seed gives the same study
  --threads N           worker threads (default: all cores)
  --quiet               print only the final line
  --help                this text
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "vitiq-make-dataset: %s (see --help)\n", msg.c_str());
  std::exit(2);
}

long to_long(const std::string& s, const char* opt) {
  const auto v = vitiq::data::parse_int(s);
  if (!v) usage_error(std::string(opt) + " needs an integer, got '" + s + "'");
  return long(*v);
}

double to_double(const std::string& s, const char* opt) {
  const auto v = vitiq::data::parse_double(s);
  if (!v) usage_error(std::string(opt) + " needs a number, got '" + s + "'");
  return *v;
}

}  // namespace

int main(int argc, char** argv) {
  vitiq::data::BuildOptions opt;
  bool quiet = false;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto need = [&]() -> const std::string& {
      if (i + 1 >= args.size()) usage_error(a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      return 0;
    } else if (a == "--out") opt.out = need();
    else if (a == "--photos") {
      const std::string dir = need();
      try {
        opt.photos = vitiq::data::photos_in_directory(dir);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "vitiq-make-dataset: %s\n", e.what());
        return 1;
      }
      if (opt.photos.empty()) usage_error("no image files in " + dir);
    } else if (a == "--crop") opt.crop_size = int(to_long(need(), "--crop"));
    else if (a == "--half-scale") opt.half_scale_fraction = to_double(need(), "--half-scale");
    else if (a == "--regional") opt.regional = true;
    else if (a == "--region-weight") opt.region_weight = to_double(need(), "--region-weight");
    else if (a == "--write-references") opt.write_references = true;
    else if (a == "--observers") opt.design.observers = int(to_long(need(), "--observers"));
    else if (a == "--sessions") opt.design.sessions = int(to_long(need(), "--sessions"));
    else if (a == "--session-size") opt.design.session_size = int(to_long(need(), "--session-size"));
    else if (a == "--no-repeat") opt.design.repeat_first = false;
    else if (a == "--test-size") opt.design.test_size = int(to_long(need(), "--test-size"));
    else if (a == "--pool-ratio") opt.design.pool_ratio = to_double(need(), "--pool-ratio");
    else if (a == "--core-fraction") opt.design.core_fraction = to_double(need(), "--core-fraction");
    else if (a == "--split") {
      const std::string v = need();
      std::vector<double> f;
      std::size_t start = 0;
      for (std::size_t k = 0; k <= v.size(); ++k)
        if (k == v.size() || v[k] == ',') {
          f.push_back(to_double(v.substr(start, k - start), "--split"));
          start = k + 1;
        }
      if (f.size() != 3) usage_error("--split needs three numbers train,val,test");
      opt.fractions = {f[0], f[1], f[2]};
    } else if (a == "--reference-q") opt.reference_quality = int(to_long(need(), "--reference-q"));
    else if (a == "--seed") opt.seed = std::uint64_t(to_long(need(), "--seed"));
    else if (a == "--threads") opt.threads = int(to_long(need(), "--threads"));
    else if (a == "--quiet") quiet = true;
    else usage_error("unknown option '" + a + "'");
  }
  if (opt.out.empty()) usage_error("--out DIR is required");
  if (!quiet) opt.log = [](const std::string& s) { std::printf("vitiq-make-dataset: %s\n", s.c_str()); std::fflush(stdout); };
  try {
    {  // the output folder must take files: find out now, not after decoding the photos
      std::error_code ec;
      std::filesystem::create_directories(opt.out, ec);
      if (ec) throw vitiq::IoError("cannot create the output folder '" + opt.out.string() + "' (" + ec.message() + ")");
      try {
        vitiq::io::atomic_write(opt.out / ".vitiq-write-test", std::string_view());
      } catch (const vitiq::IoError& e) {
        throw vitiq::IoError("the output folder '" + opt.out.string() + "' is not writable (" + e.what() + ")");
      }
      std::filesystem::remove(opt.out / ".vitiq-write-test", ec);
    }
    const auto summary = vitiq::data::build_study(opt);
    if (!quiet) std::fputs(vitiq::data::study_report(summary).c_str(), stdout);
    std::printf("vitiq-make-dataset: %zu stimuli, %zu ratings written to %s in %.1f s\n", summary.stimuli.size(),
                summary.ratings.size(), opt.out.string().c_str(), summary.seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitiq-make-dataset: %s\n", e.what());
    return 1;
  }
  return 0;
}
