// examples/import.cpp -- vitiq-import: turn your own per-observer study into a vitiq study folder.
//
//   vitiq-import --ratings DIR|FILE --images DIR --out DIR [--layout auto|original|sessions|long]
//                [--split A,B,C] [--seed N] [--overlap drop|keep] [--skip-invalid] [--copy] [--json]
//
// All the work is vitiq::data::import_study() (include/vitiq/data/import.hpp); this program reads
// the command line and prints the report. Nothing is written when anything is wrong.
// Exit status: 0 done, 1 error (one line "vitiq-import: <file>:<line>: <reason>"), 2 usage error.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include "common/cli.hpp"
#include "vitiq/data/import.hpp"

namespace {

constexpr const char* program = "vitiq-import";

constexpr const char* description = R"(Turns a per-observer study into the study folder vitiq-train and vitiq-eval read:
OUT/images/ (links to the input images, or copies with --copy), OUT/ratings.csv (long format),
OUT/split.csv (by source content; a common test set in the input is the test split) and
OUT/import_report.json (counts, repeats, overlap, every warning and skipped row). Nothing is
written when an error is found; an existing non-empty OUT is refused.

Layouts (detected; --layout forces one):
  original  DIR/Obs_iterative/Obs<N>/Obs<N>_<k>.csv (training session k; Obs<N>_4_selfacc.csv:
            session 4, the repeat of session 1), DIR/Test/Obs<N>.csv (common test set, imported as
            the session after the highest training one), DIR/Dataset/Obs<N>.csv (all training
            votes, checked against the session files); columns Image Name,Vote,Duration,Timestamp
  sessions  DIR/obs<id>_session<n>.csv (vitiq's own per-session files)
  long      FILE, or DIR/ratings.csv: image,observer,session,vote[,duration,timestamp]

examples:
  vitiq-import --ratings study_csv --images stimuli --out my_study
  vitiq-import --ratings ratings.csv --images stimuli --out my_study --split 0.8,0.2,0 --copy
  vitiq-import --ratings study_csv --images stimuli --out my_study --overlap keep --json
)";

}  // namespace

int main(int argc, char** argv) {
  vitiq::data::ImportOptions opt;
  std::string layout = "auto", split = "0.7,0.1,0.2", overlap = "drop";
  bool json = false;
  CLI::App app(description, program);
  app.add_option("--ratings", opt.ratings, "ratings folder (original or sessions layout) or long-format CSV file")
      ->required();
  app.add_option("--images", opt.images, "folder of the stimuli, named as in the tables")->required();
  app.add_option("--out", opt.out, "study folder to create (must not exist, or be empty)")->required();
  app.add_option("--layout", layout, "auto (default), original, sessions or long")
      ->check(CLI::IsMember({"auto", "original", "sessions", "long"}));
  app.add_option("--split", split,
                 "train,val,test shares of the sources (default 0.7,0.1,0.2; with a common test set in the "
                 "input, only train:val matters)");
  long long seed = 1;
  app.add_option("--seed", seed, "seed of the split (default 1)")->check(CLI::Validator(
      [](std::string& v) -> std::string {
        const auto n = vitiq::data::parse_int(v);
        return n && *n >= 0 ? std::string() : "needs a non-negative integer, got '" + v + "'";
      },
      "N"));
  app.add_option("--overlap", overlap,
                 "a source with stimuli in the test set and in training: drop (default) its training stimuli, or "
                 "keep them in train, their source marked '<source>#overlap' in split.csv")
      ->check(CLI::IsMember({"drop", "keep"}));
  app.add_flag("--skip-invalid", opt.skip_invalid, "skip invalid rows with a warning instead of stopping");
  app.add_flag("--copy", opt.copy_images, "copy the images (default: symbolic links to them)");
  app.add_flag("--json", json, "print the report as JSON instead of the summary");
  vitiq::cli::parse(app, argc, argv);

  opt.seed = std::uint64_t(seed);
  opt.layout = *vitiq::data::parse_import_layout(layout);
  opt.overlap = overlap == "keep" ? vitiq::data::OverlapPolicy::keep : vitiq::data::OverlapPolicy::drop;
  {  // --split A,B,C as in vitiq-make-dataset
    const auto f = vitiq::cli::shares(split);
    if (!f) vitiq::cli::usage_error(program, "--split needs three non-negative numbers train,val,test, got '" + split + "'");
    if ((*f)[0] + (*f)[1] + (*f)[2] <= 0) vitiq::cli::usage_error(program, "--split shares are all 0");
    opt.fractions = {(*f)[0], (*f)[1], (*f)[2]};
  }

  try {
    const vitiq::data::ImportReport rep = vitiq::data::import_study(opt);
    if (json) {
      std::printf("%s\n", rep.to_json().dump().c_str());
    } else {
      std::fputs(rep.summary().c_str(), stdout);
      std::printf("%s: %zu votes of %zu observers on %zu stimuli written to %s\n", program, rep.votes,
                  rep.observers.size(), rep.stimuli, opt.out.string().c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
  return 0;
}
