// tests/test_hardening.cpp -- hostile inputs and failures: every fuzz seed and every input that
// once found a bug (tests/data/fuzz_regressions/<target>/) replayed through the fuzz targets'
// bodies (tests/fuzz/fuzz_targets.hpp), one regression test per fix with the input that found
// it, a training run SIGKILLed at random points and resumed ending bit-identical to an
// uninterrupted one with no partial checkpoint ever on disk, and the NaN/Inf guard naming the step
// and the first tensor that went bad while keeping the last good checkpoint.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VITIQ_FUZZ_WITH_IMAGE  // the image target too (stb from libstb, as vitiq::io links it)
#include "fuzz/fuzz_targets.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/train/stimulus_set.hpp"
#include "vitiq/vitiq.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

const fs::path source_dir = VITIQ_SOURCE_DIR;
const fs::path regressions = fs::path(VITIQ_TEST_DATA_DIR) / "fuzz_regressions";

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Run every seed and regression input of `target` through `body`; returns how many ran.
template <class Body>
std::size_t replay(const std::string& target, Body body) {
  std::size_t n = 0;
  for (const fs::path& dir : {source_dir / "tests" / "fuzz" / "corpus" / target, regressions / target})
    for (const fs::path& f : files_in(dir)) {
      INFO(f.string());
      const std::string bytes = slurp(f);
      CHECK_NOTHROW(body(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
      ++n;
    }
  return n;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("vitiq_hardening_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Fuzz corpora and regressions: each replayed input must neither crash (the sanitizer build runs
// these too) nor throw anything but vitiq::Error (the bodies let only those escape).

TEST_CASE("hardening: fuzz seeds and regressions replay cleanly", "[hardening][fuzz]") {
  CHECK(replay("safetensors", vitiq_fuzz::safetensors) >= 5);
  CHECK(replay("checkpoint", vitiq_fuzz::checkpoint) >= 1);
  CHECK(replay("ratings_csv", vitiq_fuzz::ratings_csv) >= 4);
  CHECK(replay("study", vitiq_fuzz::study) >= 2);
  CHECK(replay("image", vitiq_fuzz::image) >= 12);
  // The library's two entry points for images agree: decode_image from memory, load_image from a file.
  std::size_t images = 0;
  for (const fs::path& dir : {source_dir / "tests" / "fuzz" / "corpus" / "image"})
    for (const fs::path& f : files_in(dir)) {
      INFO(f.string());
      const std::string bytes = slurp(f);
      try {
        const auto a = vitiq::io::decode_image(std::as_bytes(std::span(bytes.data(), bytes.size())), f.string());
        const auto b = vitiq::io::load_image(f);
        CHECK(a == b);
      } catch (const vitiq::Error& e) {
        CHECK_THAT(e.what(), Contains(f.string()));  // errors name the file
      }
      ++images;
    }
  CHECK(images >= 10);
}

TEST_CASE("hardening: the committed checkpoint seed is a valid checkpoint of the fuzz model", "[hardening][fuzz]") {
  // If the checkpoint format changes, regenerate it: vitiq_tests "[.write_checkpoint_seed]".
  const fs::path seed = source_dir / "tests" / "fuzz" / "corpus" / "checkpoint" / "small.ckpt.safetensors";
  vitiq_fuzz::SmallModel model({}, 5);
  vitiq::Adam<vitiq_fuzz::SmallModel::Backend> adam(model.backend(), vitiq::param_table<vitiq_fuzz::small_config>(),
                                                    vitiq_fuzz::SmallModel::num_params);
  const vitiq::TrainState st = vitiq::load_checkpoint(seed, model, adam);
  CHECK(st.step == 3);
  CHECK(st.epoch == 1);
  CHECK(adam.steps() == 3);
}

TEST_CASE("hardening: write the checkpoint seed of the fuzz corpus", "[.write_checkpoint_seed]") {
  vitiq_fuzz::SmallModel model({}, 1);
  vitiq::Adam<vitiq_fuzz::SmallModel::Backend> adam(model.backend(), vitiq::param_table<vitiq_fuzz::small_config>(),
                                                    vitiq_fuzz::SmallModel::num_params);
  std::vector<float> images(2 * 3 * 8 * 8, 0.25f);
  std::vector<double> votes{2, 4};
  const auto targets = vitiq::make_targets<float>(votes, 5);
  vitiq::Criterion<vitiq_fuzz::SmallModel::Backend> loss;
  model.set_training(true);
  for (int s = 0; s < 3; ++s) {
    const float* logits = model.forward_device(images.data(), 2);
    loss.forward_backward(model.backend(), logits, targets.data(), 2, 5);
    model.zero_grad();
    model.backward_device(loss.dlogits());
    adam.step(model.parameters(), model.gradients());
  }
  vitiq::TrainState st;
  st.step = 3;
  st.epoch = 1;
  st.extra["best_metric"] = "-1.5";
  const fs::path dir = source_dir / "tests" / "fuzz" / "corpus" / "checkpoint";
  fs::create_directories(dir);
  vitiq::save_checkpoint(dir / "small.ckpt.safetensors", model, adam, st);
  vitiq::save_weights(model, dir / "small.weights.safetensors");
  CHECK(fs::exists(dir / "small.ckpt.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// Regressions: one test per fix, with the input that found it.

TEST_CASE("hardening: a safetensors header claiming a 100 GB tensor is refused from the header alone", "[hardening]") {
  const std::string bytes = slurp(source_dir / "tests" / "fuzz" / "corpus" / "safetensors" / "huge_claim.st");
  std::vector<std::byte> v(bytes.size());
  std::memcpy(v.data(), bytes.data(), bytes.size());
  // The file is 88 bytes; refusing it must not depend on trying (and failing) to allocate 100 GB:
  // libFuzzer's -malloc_limit_mb in tests/fuzz/run_fuzzers.sh turns any such allocation into a crash.
  CHECK_THROWS_WITH(vitiq::io::SafetensorsFile::parse(std::move(v), "huge.safetensors"),
                    Contains("huge.safetensors") && Contains("beyond the data section"));
}

TEST_CASE("hardening: a 100,000-character stimulus name does not overflow the stack", "[hardening]") {
  // Found by review of std::regex use, confirmed by tests/data/fuzz_regressions/ratings_csv/long_image_name.csv:
  // libstdc++'s std::regex recursed once per character and crashed (SIGSEGV) at ~30,000 characters.
  const std::string name = std::string(100000, 'a') + "_I1_Q2.jpeg";
  const auto s = vitiq::data::parse_stimulus_name(name);
  CHECK_FALSE(s.original_form);
  CHECK(s.band == 0);
  CHECK(s.source.size() == 100000 + 6);  // the stem: "aaa..._I1_Q2"
  // Short names are still parsed.
  CHECK(vitiq::data::parse_stimulus_name("00012astronaut_I3_Q22.jpeg").band == 3);
  // The same name in a rating table, through both readers and the name parser.
  const std::string csv = "image,observer,session,vote\n" + name + ",1,1,3\n";
  vitiq_fuzz::ratings_csv(reinterpret_cast<const std::uint8_t*>(csv.data()), csv.size());
}

TEST_CASE("hardening: a session number beyond int in a rating file name is not a session", "[hardening]") {
  // std::stoi threw std::out_of_range (not a vitiq::Error) and ended vitiq programs with an abort.
  CHECK_FALSE(vitiq::data::parse_observer_session("obs1_session99999999999.csv"));
  CHECK_FALSE(vitiq::data::parse_observer_session("obs" + std::string(5000, '1') + "_session1.csv"));
  const auto ok = vitiq::data::parse_observer_session("obs1_session2147483647.csv");
  REQUIRE(ok);
  CHECK(ok->second == 2147483647);
  // In a folder: the file is listed in the warnings, not a crash.
  const fs::path dir = temp_dir("obs_overflow");
  vitiq::io::atomic_write(dir / "obs1_session99999999999.csv", std::string("Image Name,Vote\na.jpeg,3\n"));
  vitiq::io::atomic_write(dir / "obs2_session1.csv", std::string("Image Name,Vote\na.jpeg,3\n"));
  vitiq::data::ReadReport report;
  const auto rs = vitiq::data::read_original_dir(dir, {}, &report);
  CHECK(rs.size() == 1);
  REQUIRE(report.warnings.size() == 1);
  CHECK_THAT(report.warnings[0], Contains("obs1_session99999999999.csv"));
  fs::remove_all(dir);
}

TEST_CASE("hardening: metrics.csv with an infinite epoch is a format error, not undefined behaviour", "[hardening]") {
  // Found by fuzz_study (UBSan: "inf is outside the range of representable values of type 'int'"):
  // tests/data/fuzz_regressions/study/epoch_inf_ubsan.txt.
  const std::string input = slurp(regressions / "study" / "epoch_inf_ubsan.txt");
  const auto parts = vitiq_fuzz::split_parts(input, vitiq_fuzz::study_separator, 4);
  const fs::path dir = temp_dir("epoch_inf");
  vitiq::io::atomic_write(dir / "metrics.csv", std::string(parts[3]));
  CHECK_THROWS_WITH(vitiq::eval::read_training_curve(dir), Contains("metrics.csv:3") && Contains("epoch 'inf'"));
  for (const char* bad : {"nan", "1e300", "-1e300", ""}) {
    vitiq::io::atomic_write(dir / "metrics.csv", "epoch,lr\n" + std::string(bad) + ",0.1\n");
    CHECK_THROWS_AS(vitiq::eval::read_training_curve(dir), vitiq::FormatError);
  }
  vitiq::io::atomic_write(dir / "metrics.csv", std::string("epoch,lr\n1,0.1\n2,0.05\n"));
  CHECK(vitiq::eval::read_training_curve(dir).epochs.size() == 2);
  fs::remove_all(dir);
}

TEST_CASE("hardening: a checkpoint with a damaged training state is a format error naming the file", "[hardening]") {
  // std::stod on the checkpoint's "extra.best_metric" threw std::invalid_argument ("stod"), which
  // named neither the file nor the field.
  const fs::path dir = temp_dir("bad_state");
  vitiq_fuzz::SmallModel model({}, 1);
  vitiq::Adam<vitiq_fuzz::SmallModel::Backend> adam(model.backend(), vitiq::param_table<vitiq_fuzz::small_config>(),
                                                    vitiq_fuzz::SmallModel::num_params);
  vitiq::TrainState st;
  st.extra["best_metric"] = "not a number";
  vitiq::save_checkpoint(dir / "last.ckpt.safetensors", model, adam, st);
  struct One : vitiq::BatchSource<float> {
    std::size_t size() const override { return 1; }
    void fill(std::span<const std::size_t>, std::uint64_t, float* images, double* votes) override {
      std::fill(images, images + 3 * 8 * 8, 0.5f);
      votes[0] = 3;
    }
  } source;
  vitiq::TrainOptions o;
  o.epochs = 1;
  o.out_dir = dir;
  o.resume = true;
  vitiq::Trainer<vitiq_fuzz::SmallModel> t(model, o);
  CHECK_THROWS_WITH(t.fit(source, nullptr), Contains("last.ckpt.safetensors") && Contains("training state is malformed"));
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Interrupted training loses nothing. The training runs in a child process (this executable,
// re-executed with the hidden test case below), which the test SIGKILLs at random moments and as
// soon as a checkpoint write is under way, then resumes.

namespace {

constexpr vitiq::Config kill_config = vitiq::presets::tiny;
using KillModel = vitiq::ViT<kill_config>;
constexpr int kill_epochs = 10;

std::vector<vitiq::Stimulus> kill_stimuli(int count, std::uint64_t seed) {
  vitiq::Rng rng(seed);
  std::vector<vitiq::Stimulus> out;
  for (int i = 0; i < count; ++i) {
    vitiq::Stimulus s;
    s.name = "s" + std::to_string(i);
    s.height = s.width = 40;
    s.vote = double(1 + i % 5);
    s.rgb.resize(40 * 40 * 3);
    for (auto& p : s.rgb) p = std::uint8_t(std::clamp(40.0 * s.vote + 25.0 * rng.normal(), 0.0, 255.0));
    out.push_back(std::move(s));
  }
  return out;
}

/// The training the child runs: 10 epochs of 2 steps, dropout on, validation, checkpoints.
void kill_training(const fs::path& dir) {
  const auto train = kill_stimuli(16, 1), val = kill_stimuli(5, 2);
  vitiq::CropBatchSource<float> source(train, kill_config.image_size, {.seed = 4});
  vitiq::TileEvalSource<float> eval(val, kill_config.image_size);
  KillModel model({}, 3);
  vitiq::TrainOptions o;
  o.epochs = kill_epochs;
  o.batch_size = 8;
  o.optimizer.lr = 2e-3;
  o.warmup_epochs = 1;
  o.seed = 11;
  o.regularization.dropout = 0.1;
  o.out_dir = dir;
  o.resume = true;
  vitiq::Trainer<KillModel> t(model, o);
  t.fit(source, &eval);
}

/// Start this executable on the hidden child test case, training into `dir`; output to `log`.
pid_t spawn_child(const fs::path& dir, const fs::path& log) {
  // Everything execve needs is prepared before fork (the child may only make async-signal-safe calls).
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {exe, "[.hardening_child]"};
  std::vector<std::string> env = {"VITIQ_HARDENING_CHILD_DIR=" + dir.string(), "OMP_NUM_THREADS=1"};
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).rfind("OMP_NUM_THREADS=", 0) != 0 && std::string_view(*e).rfind("VITIQ_HARDENING", 0) != 0)
      env.emplace_back(*e);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (fd >= 0) { ::dup2(fd, 1); ::dup2(fd, 2); }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (fd >= 0) ::close(fd);
  return pid;
}

/// Wait for `pid`; its exit code, or 128 + the signal that ended it.
int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool has_temporary(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

/// Every file the trainer keeps in `dir` is complete: each checkpoint and weights file loads,
/// metrics.csv parses. Temporary files of an interrupted write are the only other files allowed.
void check_complete(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    INFO("after a kill: " << e.path().string());
    if (name.find(".tmp.") != std::string::npos) continue;
    KillModel m({}, 0);
    if (name == "last.ckpt.safetensors") {
      vitiq::Adam<KillModel::Backend> adam(m.backend(), vitiq::param_table<kill_config>(), KillModel::num_params);
      CHECK_NOTHROW(vitiq::load_checkpoint(e.path(), m, adam));
    } else if (name == "best.safetensors" || name == "last.safetensors") {
      CHECK_NOTHROW(vitiq::load_weights(m, e.path()));
    } else if (name == "metrics.csv") {
      CHECK_NOTHROW(vitiq::eval::read_training_curve(dir));
    } else {
      FAIL_CHECK("unexpected file " << name);
    }
  }
}

}  // namespace

TEST_CASE("hardening child: the training that the SIGKILL test interrupts", "[.hardening_child]") {
  const char* dir = std::getenv("VITIQ_HARDENING_CHILD_DIR");
  REQUIRE(dir != nullptr);
  kill_training(dir);
}

TEST_CASE("hardening: training SIGKILLed at random points and resumed ends bit-identical, never a partial checkpoint",
          "[hardening][kill]") {
  const fs::path root = temp_dir("kill");
  const fs::path ref = root / "reference", run = root / "interrupted", log = root / "child.log";
  fs::create_directories(ref);
  fs::create_directories(run);
  INFO("child output: " << log.string());

  // The uninterrupted run (a child too: same thread count, same process set-up).
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(reap(spawn_child(ref, log)) == 0);
  const double full_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Kill, check, resume, until a run finishes. Even attempts: at a random moment within the first
  // 40 % of a whole run's duration (a resumed run has less left to do); odd ones: as soon as a
  // temporary file shows that a write of best.safetensors or the checkpoint is under way.
  std::mt19937_64 rng(Catch::rngSeed());
  std::uniform_real_distribution<double> when(0.0, 0.4 * full_s);
  int kills = 0, kills_mid_write = 0, attempt = 0;
  for (;; ++attempt) {
    REQUIRE(attempt < 40);
    const bool finish = kills >= 12;  // enough: let the last run complete
    const pid_t pid = spawn_child(run, log);
    if (!finish && attempt % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
      ::kill(pid, SIGKILL);
    } else if (!finish) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(2 * full_s + 1);
      while (std::chrono::steady_clock::now() < give_up) {
        if (has_temporary(run)) { ::kill(pid, SIGKILL); break; }
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {  // finished before a write was caught
          REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
          goto done;
        }
      }
    }
    {
      const int rc = reap(pid);
      if (rc == 0) break;  // the run completed (before or despite the kill signal)
      REQUIRE(rc == 128 + SIGKILL);
      ++kills;
      if (has_temporary(run)) ++kills_mid_write;
      check_complete(run);
    }
  }
done:
  INFO(kills << " kills, " << kills_mid_write << " of them during a write; full run " << full_s << " s");
  CHECK(kills >= 6);
  CHECK(kills_mid_write >= 1);
  CHECK_FALSE(has_temporary(run));  // a resumed run removes what killed writes left behind
  for (const char* f : {"last.safetensors", "best.safetensors"}) {
    INFO(f);
    REQUIRE(fs::exists(run / f));
    CHECK(slurp(run / f) == slurp(ref / f));  // bit for bit (the files hold no time stamps)
  }
  const auto a = vitiq::eval::read_training_curve(ref), b = vitiq::eval::read_training_curve(run);
  REQUIRE(a.epochs.size() == std::size_t(kill_epochs));
  REQUIRE(b.epochs.size() == a.epochs.size());
  for (std::size_t i = 0; i < a.epochs.size(); ++i) {
    CHECK(a.epochs[i].train_loss == b.epochs[i].train_loss);
    CHECK(a.epochs[i].val_accuracy == b.epochs[i].val_accuracy);
  }
  fs::remove_all(root);
}

// ---------------------------------------------------------------------------------------------
// Numerical failure.

TEST_CASE("hardening: a learning-rate blow-up stops training naming the step and the tensor, keeping the last good checkpoint",
          "[hardening][nan]") {
  const auto train = kill_stimuli(16, 5);
  vitiq::CropBatchSource<float> source(train, kill_config.image_size, {.seed = 2});
  const fs::path dir = temp_dir("blowup");
  auto options = [&](double lr, int epochs) {
    vitiq::TrainOptions o;
    o.epochs = epochs;
    o.batch_size = 8;
    o.optimizer.lr = lr;
    o.optimizer.weight_decay = 0;
    o.schedule = vitiq::ScheduleKind::constant;
    o.clip_norm = 0;
    o.seed = 3;
    o.out_dir = dir;
    o.resume = true;
    return o;
  };
  // Two good epochs (4 steps) at a sane learning rate.
  KillModel model({}, 1);
  {
    vitiq::Trainer<KillModel> t(model, options(1e-3, 2));
    t.fit(source, nullptr);
  }
  const std::string good = slurp(dir / "last.ckpt.safetensors");
  // Resume with a learning rate that overflows the parameters in the first update (float max ~3.4e38).
  vitiq::Trainer<KillModel> t(model, options(1e39, 6));
  std::string message;
  try {
    t.fit(source, nullptr);
  } catch (const vitiq::Error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK_THAT(message, Contains("training diverged at step 4: the update made parameter '"));
  // The first tensor that went bad, by its PyTorch name (param_table order).
  bool named = false;
  for (const vitiq::ParamInfo& p : vitiq::param_table<kill_config>())
    named = named || message.find("'" + p.name + "'") != std::string::npos;
  CHECK(named);
  CHECK_THAT(message, Contains("last good checkpoint is kept"));
  // The checkpoint is the one of epoch 2, unchanged, with finite parameters.
  CHECK(slurp(dir / "last.ckpt.safetensors") == good);
  KillModel back({}, 0);
  vitiq::Adam<KillModel::Backend> adam(back.backend(), vitiq::param_table<kill_config>(), KillModel::num_params);
  const auto st = vitiq::load_checkpoint(dir / "last.ckpt.safetensors", back, adam);
  CHECK(st.step == 4);
  const auto params = back.parameters_to_host();
  CHECK(std::all_of(params.begin(), params.end(), [](float v) { return std::isfinite(v); }));
  fs::remove_all(dir);
}

TEST_CASE("hardening: a NaN input stops training at the loss, naming the step and the logits", "[hardening][nan]") {
  // A NaN pixel makes the loss NaN before any parameter is touched: the guard must name the logits.
  struct Poisoned : vitiq::BatchSource<float> {
    std::size_t size() const override { return 4; }
    void fill(std::span<const std::size_t> idx, std::uint64_t, float* images, double* votes) override {
      const std::size_t per = 3 * 32 * 32;
      std::fill(images, images + idx.size() * per, 0.1f);
      images[7] = std::numeric_limits<float>::quiet_NaN();
      for (std::size_t b = 0; b < idx.size(); ++b) votes[b] = 3;
    }
  } source;
  KillModel model({}, 1);
  vitiq::TrainOptions o;
  o.epochs = 1;
  o.batch_size = 4;
  vitiq::Trainer<KillModel> t(model, o);
  CHECK_THROWS_WITH(t.fit(source, nullptr), Contains("training diverged at step 0") && Contains("the logits"));
}

TEST_CASE("hardening: a JPEG whose Huffman table claims more than 256 codes is refused before stb_image parses it",
          "[hardening]") {
  // Found by fuzz_image (UBSan: "index 257 out of bounds for type 'stbi_uc[257]'" in
  // stbi__build_huffman, then a heap overflow): Debian 12's stb_image does not check the counts.
  // tests/data/fuzz_regressions/image/jpeg_dht_overflow.jpg; then with the table behind bytes that
  // stb_image skips between segments (jpeg_dht_after_junk.jpg).
  for (const char* name : {"jpeg_dht_overflow.jpg", "jpeg_dht_after_junk.jpg"}) {
    const fs::path file = regressions / "image" / name;
    CHECK_THROWS_WITH(vitiq::io::load_image(file), Contains(file.string()) && Contains("corrupt JPEG") &&
                                                       Contains("Huffman table of"));
  }
  // The check is exact: a valid baseline and a valid progressive JPEG (several DHT segments
  // between scans) still decode.
  for (const char* ok : {"base.jpg", "progressive.jpg", "grey.jpg"}) {
    const auto img = vitiq::io::load_image(source_dir / "tests" / "fuzz" / "corpus" / "image" / ok);
    CHECK(img.shape(0) == 12);
    CHECK(img.shape(1) == 10);
  }
  // Found by fuzz_image (UBSan: "index 320 out of bounds for type 'stbi_uc[257]'" in
  // stbi__jpeg_huff_decode): a progressive AC scan decoding with AC table 1, which no DHT defined, so
  // stb_image read a Huffman table from uninitialised memory.
  // tests/data/fuzz_regressions/image/jpeg_scan_uses_undefined_huffman_table.jpg.
  const fs::path undefined_table = regressions / "image" / "jpeg_scan_uses_undefined_huffman_table.jpg";
  CHECK_THROWS_WITH(vitiq::io::load_image(undefined_table),
                    Contains(undefined_table.string()) && Contains("the scan at byte 342 uses AC Huffman table 1, which no DHT segment"));
  // A minimal DHT of 17 x 16 = 272 codes after the SOI, built here.
  std::vector<unsigned char> jpeg = {0xFF, 0xD8, 0xFF, 0xC4, 0x01, 0x23, 0x00};
  for (int c = 0; c < 16; ++c) jpeg.push_back(17);
  jpeg.resize(jpeg.size() + 272, 0);
  jpeg.insert(jpeg.end(), {0xFF, 0xD9});
  CHECK_THROWS_WITH(vitiq::io::decode_image(std::as_bytes(std::span(jpeg)), "built.jpg"),
                    Contains("built.jpg") && Contains("272 codes"));
}

TEST_CASE("hardening: a PGM/PPM header number that overflows an int is refused before stb_image reads it",
          "[hardening]") {
  // Found by fuzz_image in a CI run (UBSan: "signed integer overflow: 555555555 * 10 cannot be
  // represented in type 'int'" in stbi__pnm_getinteger): Debian 12's stb_image reads the PNM header
  // numbers without an overflow check. tests/data/fuzz_regressions/image/pnm_width_overflows_int.pgm.
  const fs::path file = regressions / "image" / "pnm_width_overflows_int.pgm";
  CHECK_THROWS_WITH(vitiq::io::load_image(file), Contains(file.string()) && Contains("corrupt PNM header") &&
                                                     Contains("the width at byte 2"));
  const auto decode = [](const std::string& bytes) {
    return vitiq::io::decode_image(std::as_bytes(std::span(bytes.data(), bytes.size())), "built.ppm");
  };
  // Height and maximum value are checked too, after comments; INT_MAX itself is not an overflow
  // (stb_image then refuses the size by its own rules).
  CHECK_THROWS_WITH(decode("P6 3 # c\n99999999999 255\n"), Contains("built.ppm") && Contains("the height at byte 9"));
  CHECK_THROWS_WITH(decode("P5\n2 2\n2147483648\n"), Contains("the maximum value at byte 7"));
  CHECK_THROWS_WITH(decode("P5\n2147483647 1\n255\n"), !Contains("corrupt PNM header"));
  // Found by fuzz_image (ASan: heap-buffer-overflow in stbi__convert_16_to_8 after stbi__pnm_load):
  // stb_image 2.27 converts a 16-bit PNM's samples with its 8-bit routine. 16-bit PNM is refused.
  // tests/data/fuzz_regressions/image/pnm_16bit_heap_overflow.pgm.
  const fs::path pnm16 = regressions / "image" / "pnm_16bit_heap_overflow.pgm";
  CHECK_THROWS_WITH(vitiq::io::load_image(pnm16), Contains(pnm16.string()) && Contains("16-bit PGM/PPM is not supported"));
  CHECK_THROWS_WITH(decode("P5 1 1 65535\n\x01\x02"), Contains("maximum value 65535 at byte 7"));
  // Valid binary PGM and PPM still decode (grey becomes RGB).
  const auto grey = decode(std::string("P5\n# a comment\n2 1\n255\n") + char(10) + char(200));
  REQUIRE(grey.shape(1) == 2);
  CHECK(int(grey(0, 1, 2)) == 200);
  const auto rgb = decode(std::string("P6 1 1 255\n") + char(1) + char(2) + char(3));
  CHECK(int(rgb(0, 0, 0)) == 1);
  CHECK(int(rgb(0, 0, 2)) == 3);
}

TEST_CASE("hardening: only JPEG, PNG, BMP and 8-bit binary PGM/PPM reach stb_image", "[hardening]") {
  // Debian 12's stb_image has memory errors in decoders image quality data never needs (fuzz_image
  // found three within minutes in JPEG/PNM code; GIF, TGA, PSD, HDR and PIC are older still), so
  // decode_image sniffs the format and refuses the rest by name.
  const fs::path corpus = source_dir / "tests" / "fuzz" / "corpus" / "image";
  for (const char* ok : {"base.jpg", "rgb.png", "rgb.bmp", "rgb.ppm"})
    CHECK(vitiq::io::load_image(corpus / ok).shape(0) == 12);
  for (const char* refused : {"rgb.gif", "rgb.tga"}) {
    const fs::path f = corpus / refused;
    CHECK_THROWS_WITH(vitiq::io::load_image(f), Contains(f.string()) && Contains("not a JPEG, PNG, BMP or binary PGM/PPM file"));
  }
  const auto decode = [](const std::string& bytes) {
    return vitiq::io::decode_image(std::as_bytes(std::span(bytes.data(), bytes.size())), "x.img");
  };
  CHECK_THROWS_WITH(decode("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80"), Contains("not a JPEG, PNG"));
  CHECK_THROWS_WITH(decode("8BPS\x00\x01"), Contains("not a JPEG, PNG"));
  CHECK_THROWS_WITH(decode("P3 1 1 255 1 2 3"), Contains("not a JPEG, PNG"));  // ASCII PPM: stb_image never read it
  CHECK(vitiq::io::detail::sniff_format(std::as_bytes(std::span("\xFF\xFF\xD8", 3))) == "JPEG");  // fill bytes
}

TEST_CASE("hardening: a PNG chunk claiming more bytes than follow is refused before stb_image allocates for it",
          "[hardening]") {
  // Found by fuzz_image (libFuzzer: "out-of-memory (malloc(1073742113))" in stbi__parse_png_file):
  // stb_image grew its IDAT buffer to the claimed length of a 320-byte file before reading it.
  // tests/data/fuzz_regressions/image/png_idat_claims_1GB.png.
  const fs::path file = regressions / "image" / "png_idat_claims_1GB.png";
  CHECK_THROWS_WITH(vitiq::io::load_image(file), Contains(file.string()) && Contains("truncated PNG") &&
                                                     Contains("chunk 'IDAT'"));
  // Found by fuzz_image (UBSan: "null pointer passed as argument 1" to memcpy in stbi__getn): an
  // empty IDAT chunk before any image data. tests/data/fuzz_regressions/image/png_empty_first_idat.png.
  const fs::path empty_idat = regressions / "image" / "png_empty_first_idat.png";
  CHECK_THROWS_WITH(vitiq::io::load_image(empty_idat),
                    Contains(empty_idat.string()) && Contains("an empty IDAT chunk at byte") && Contains("before any image data"));
  // Valid PNGs (RGB, grey + alpha, 16-bit, palette) still decode; a cut one is refused by name.
  for (const char* ok : {"rgb.png", "grey_alpha.png", "rgb16.png", "palette.png"})
    CHECK(vitiq::io::load_image(source_dir / "tests" / "fuzz" / "corpus" / "image" / ok).shape(0) == 12);
  std::string png = slurp(source_dir / "tests" / "fuzz" / "corpus" / "image" / "rgb.png");
  png.resize(png.size() - 20);
  CHECK_THROWS_WITH(vitiq::io::decode_image(std::as_bytes(std::span(png.data(), png.size())), "cut.png"),
                    Contains("cut.png") && Contains("truncated PNG"));
  // Cut inside a chunk header, stb_image's own message was "IDA" (a chunk type cut by a NUL).
  png.resize(40);
  CHECK_THROWS_WITH(vitiq::io::decode_image(std::as_bytes(std::span(png.data(), png.size())), "cut.png"),
                    Contains("cut.png") && Contains("chunk header at byte 33 is cut short"));
}
