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

#include "common/cli.hpp"
#include "vitiq/data/dataset_builder.hpp"

int main(int argc, char** argv) {
  vitiq::data::BuildOptions opt;
  bool quiet = false;
  std::string photos, split;
  CLI::App app("Builds a per-observer image-quality study: JPEG stimuli cut from real photos, rated by simulated\n"
               "observers calibrated to the five real observers of the original study, with the ground truth\n"
               "(every vote probability, Bayes ceilings, look-up baselines).\n"
               "Example: vitiq-make-dataset --out study",
               "vitiq-make-dataset");
  app.add_option("--out", opt.out,
                 "output folder (created): images/, ratings/, ratings.csv, split.csv, ground_truth.json, "
                 "ground_truth_stimuli.csv")
      ->required();
  app.add_option("--photos", photos,
                 "use every image in DIR as a reference photo, each its own source (default: the colour photos of "
                 "Debian's python3-skimage, found in $VITIQ_PHOTO_PATH or /usr/lib/python3/dist-packages/skimage/data)");
  app.add_option("--crop", opt.crop_size, "stimulus side in pixels, a multiple of 8 (default 256)");
  app.add_option("--half-scale", opt.half_scale_fraction,
                 "share of crops cut from photos downscaled by 2, where they are large enough (default 0.5; JPEG photos "
                 "always, when possible)");
  app.add_flag("--regional", opt.regional,
               "add one stimulus per crop with a rectangle compressed at I1 inside a milder background, and make every "
               "second observer weigh the centre");
  app.add_option("--region-weight", opt.region_weight, "weight of the centre for those observers (default 4)");
  app.add_flag("--write-references", opt.write_references, "also write the undistorted crops to references/");
  app.add_option("--observers", opt.design.observers,
                 "simulated observers (default 5; observer o imitates real observer ((o - 1) mod 5) + 1)");
  app.add_option("--sessions", opt.design.sessions, "training sessions per observer (default 3)");
  app.add_option("--session-size", opt.design.session_size, "stimuli per training session (default 300)");
  bool no_repeat = false;
  app.add_flag("--no-repeat", no_repeat, "no session repeating the first (default: session N + 1 repeats it)");
  app.add_option("--test-size", opt.design.test_size, "common test stimuli rated by all, in the last session (default 300)");
  app.add_option("--pool-ratio", opt.design.pool_ratio, "distinct training stimuli / all training ratings (default 0.62)");
  app.add_option("--core-fraction", opt.design.core_fraction,
                 "share of each observer's training stimuli rated by all (default 1/3)");
  app.add_option("--split", split, "A,B,C: train,val,test shares of the source photos (default 0.7,0.1,0.2)");
  app.add_option("--reference-q", opt.reference_quality, "JPEG quality of the content measure (default 25)");
  app.add_option("--seed", opt.seed, "(default 1); the same seed gives the same study");
  app.add_option("--threads", opt.threads, "worker threads (default: all cores)");
  app.add_flag("--quiet", quiet, "print only the final line");
  vitiq::cli::parse(app, argc, argv);
  if (no_repeat) opt.design.repeat_first = false;
  if (!split.empty()) {
    const auto f = vitiq::cli::shares(split);
    if (!f) vitiq::cli::usage_error("vitiq-make-dataset", "--split needs three numbers train,val,test, got '" + split + "'");
    opt.fractions = {(*f)[0], (*f)[1], (*f)[2]};
  }
  if (!photos.empty()) {
    try {
      opt.photos = vitiq::data::photos_in_directory(photos);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vitiq-make-dataset: %s\n", e.what());
      return 1;
    }
    if (opt.photos.empty()) vitiq::cli::usage_error("vitiq-make-dataset", "no image files in " + photos);
  }
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
