// examples/attention.cpp -- vitiq-attention: what artificial observers look at.
//
//   vitiq-attention --weights FILE.safetensors [--weights FILE ...] --out DIR [--preset NAME]
//                   [options] IMAGE...
//
// Per model and image: the class token's attention of every block (heads fused by mean, max and
// min), attention rollout and gradient-weighted rollout, overlaid on the image in one PNG grid.
// With several models (AIOs): the comparison figure, one row per image and one column per AIO,
// each AIO's map as its deviation from the mean map over the AIOs on a diverging scale -1..1.
// With --region and --change: the quantitative check, the share of attention inside the region
// before and after a local change, per AIO, as CSV and a bar chart.
//
// The weights' model cards (vitiq/io/model_card.hpp) give the preset, the tile size, the view and
// the normalisation; flags override them. Images are explained the way the AIOs are evaluated: as
// non-overlapping native-resolution tiles of the model's size (their maps stitched together; what
// is left of the last whole tile is cut off, as vitiq-eval's tiles leave it), unless the card or
// --view says resize. Only the tile as it is is shown to the model, not the card's test-time
// symmetries: a map is a map of one view (docs/attention.md). Without a card the view is tiles
// when the image sides are multiples of the model's size, else resize. Exit codes: 0 done, 1 an
// error, 2 a usage error.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/cli.hpp"
#include "plot/attention_figures.hpp"
#include "vitiq/data/csv.hpp"
#include "vitiq/explain/heatmap.hpp"
#include "vitiq/explain/local_change.hpp"
#include "vitiq/explain/rollout.hpp"
#include "vitiq/io/atomic_file.hpp"
#include "vitiq/io/image.hpp"
#include "vitiq/io/model_card.hpp"
#include "vitiq/io/weights.hpp"
#include "vitiq/vitiq.hpp"

namespace {

namespace fs = std::filesystem;
namespace ex = vitiq::explain;
namespace io = vitiq::io;

constexpr const char* program = "vitiq-attention";

constexpr const char* footer_text = R"(
The weights' model card (written by vitiq-train) gives the preset, the tile size, the view and
the normalisation; flags override it. With several --weights their cards must agree on the
preset and the view. Without a card --preset is required and the view is chosen per image.

output in DIR (per model in DIR/<name>/ when there are several):
  <image>_layers.png            rows: head fusion mean / max / min; columns: the image, the class
                                token's attention of every block, rollout, gradient rollout; each
                                map scaled to its own minimum..maximum
  <image>_heads.png             (--heads) blocks x heads, the full [N, N] attention matrices
  comparison.png                (several models) the deviation of each AIO's map from their mean
  <image>_<change>.png          (--change) the changed image; the figures above also for it
  check.csv, check.png          (--change) per model and image the share of attention inside the
                                region (raw last block, rollout, gradient rollout) before and
                                after the change; the region's area share for reference

exit status: 0 done; 1 an error (unknown or disagreeing preset, weights or image that cannot be
read); 2 a usage error.
)";

enum class View { automatic, tiles, resize };
enum class Method { rollout, raw, gradient };

struct Options {
  std::string preset;  // "" = the model cards'
  std::vector<fs::path> weights;
  std::vector<std::string> names;
  fs::path out;
  std::vector<std::string> images;
  ex::HeadFusion fusion = ex::HeadFusion::mean;
  double discard = 0.0;
  View view = View::automatic;  // after resolve_cards(): the card's view unless --view was given
  Method compare = Method::rollout;
  ex::Colormap colormap = ex::Colormap::inferno;
  double alpha = 0.55;
  bool grey = false, contrast = false, heads = false;
  bool no_normalize = false;          // --no-normalize
  std::vector<bool> normalize;        // per model: the card's normalisation unless --no-normalize
  std::vector<std::optional<vitiq::ModelCard>> cards;  // per model
  std::optional<ex::Region> region;
  std::optional<ex::LocalChange> change;
};

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (true) {
    const auto c = s.find(',', at);
    out.emplace_back(s.substr(at, c == std::string_view::npos ? std::string_view::npos : c - at));
    if (c == std::string_view::npos) break;
    at = c + 1;
  }
  return out;
}

/// A CLI11 check that runs one of vitiq's parsers (which throw vitiq::Error naming the text).
template <class Parse>
CLI::Validator parsed_by(Parse parse, std::string name) {
  return CLI::Validator(
      [parse](std::string& v) -> std::string {
        try {
          parse(v);
          return {};
        } catch (const vitiq::Error& e) {
          return e.what();
        }
      },
      std::move(name));
}

Options parse_args(int argc, char** argv) {
  Options o;
  CLI::App app("Shows what vitiq models (artificial observers, AIOs) attend to: raw class-token attention per\n"
               "block, attention rollout (Abnar & Zuidema 2020) and gradient-weighted rollout, overlaid on IMAGE.",
               program);
  app.footer(footer_text);
  std::vector<std::string> weights;
  app.add_option("--weights", weights, "model weights (.safetensors); repeat for several AIOs")
      ->required()
      ->allow_extra_args(false)
      ->type_name("FILE");
  app.add_option("--preset", o.preset,
                 "model configuration: tiny, cifar, aio, iqa or seed (default: the model card's; required for "
                 "weights without a card)")
      ->check(vitiq::cli::preset_name());
  app.add_option("--out", o.out, "output folder (created)")->required()->type_name("DIR");
  std::string fusion = "mean", view, compare = "rollout", colormap = "inferno", region, change, names;
  app.add_option("--fusion", fusion, "how heads are fused for rollout and the comparison: mean (default), max, min")
      ->check(CLI::IsMember({"mean", "max", "min"}))
      ->type_name("F");
  app.add_option("--discard", o.discard,
                 "rollout discards this lowest fraction of each fused matrix, never the class token's row or "
                 "column (default 0)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            double x = -1;
            try { x = std::stod(v); } catch (...) {}
            return x >= 0 && x < 1 ? "" : "must be in [0, 1), not '" + v + "'";
          },
          "[0, 1)"))
      ->type_name("X");
  app.add_option("--view", view,
                 "tiles: non-overlapping native-resolution tiles of the model's size, maps stitched; resize: "
                 "the whole image resized to the model's size (default: the model card's view; without a card "
                 "tiles when the image sides are multiples of the model's size, else resize)")
      ->check(CLI::IsMember({"tiles", "resize"}))
      ->type_name("V");
  app.add_flag("--no-normalize", o.no_normalize,
               "feed pixels in [0, 1] (default: as the model card says; without a card ImageNet mean/std, "
               "as vitiq-train)");
  app.add_option("--names", names,
                 "model names for titles and folders, A,B,... (default: the folder of each weights file when it "
                 "is named best/last.safetensors, else the file's stem)")
      ->type_name("A,B,...");
  app.add_option("--compare", compare, "map of the comparison figure: rollout (default), raw (last block), gradient")
      ->check(CLI::IsMember({"rollout", "raw", "gradient"}))
      ->type_name("M");
  app.add_option("--colormap", colormap, "inferno (default) or jet for the per-layer maps")
      ->check(parsed_by([](const std::string& v) { ex::parse_colormap(v); }, "C"))
      ->type_name("C");
  app.add_option("--alpha", o.alpha, "weight of the map's colour over the image (default 0.55)")
      ->check(CLI::Range(0.0, 1.0))
      ->type_name("X");
  app.add_flag("--grey,--gray", o.grey, "greyscale background");
  app.add_flag("--contrast", o.contrast, "contrast-boosted background (1 % percentile stretch)");
  app.add_flag("--heads", o.heads, "also write every block's full per-head attention matrices (first view)");
  app.add_option("--region", region,
                 "quantitative check (with --change): a pixel rectangle of the image (after tiling crops it to "
                 "whole tiles)")
      ->check(parsed_by([](const std::string& v) { ex::parse_region(v); }, "X,Y,W,H"))
      ->type_name("X,Y,W,H");
  app.add_option("--change", change,
                 "quantitative check (with --region): occlude[:GREY], jpeg[:QUALITY] (default 5), blur[:SIGMA] "
                 "(default 3), grey")
      ->check(parsed_by([](const std::string& v) { ex::parse_change(v); }, "C"))
      ->type_name("C");
  app.add_option("images", o.images, "image files")->type_name("IMAGE");
  vitiq::cli::parse(app, argc, argv);

  for (const auto& w : weights) o.weights.emplace_back(w);
  o.fusion = fusion == "max" ? ex::HeadFusion::max : fusion == "min" ? ex::HeadFusion::min : ex::HeadFusion::mean;
  if (!view.empty()) o.view = view == "tiles" ? View::tiles : View::resize;
  o.compare = compare == "raw" ? Method::raw : compare == "gradient" ? Method::gradient : Method::rollout;
  o.colormap = ex::parse_colormap(colormap);
  if (!region.empty()) o.region = ex::parse_region(region);
  if (!change.empty()) o.change = ex::parse_change(change);
  if (!names.empty()) o.names = split_commas(names);
  if (o.images.empty()) vitiq::cli::usage_error(program, "no IMAGE given");
  if (o.region.has_value() != o.change.has_value()) vitiq::cli::usage_error(program, "--region and --change go together");
  if (!o.names.empty() && o.names.size() != o.weights.size())
    vitiq::cli::usage_error(program, "--names gives " + std::to_string(o.names.size()) + " names for " +
                                         std::to_string(o.weights.size()) + " --weights");
  if (o.names.empty())
    for (const auto& w : o.weights) {
      const std::string stem = w.stem().string();
      const bool generic = (stem == "best" || stem == "last") && w.has_parent_path() && !w.parent_path().filename().empty();
      o.names.push_back(generic ? w.parent_path().filename().string() : stem);
    }
  return o;
}

/// Read the model cards of o.weights and settle the preset, the view and each model's
/// normalisation: the cards' unless flags say otherwise. Throws vitiq::Error naming the files when
/// a card disagrees with --preset or with another card; exits 2 when no preset is known.
void resolve_cards(Options& o) {
  const vitiq::ModelCard* first = nullptr;  // the first carded file
  std::size_t first_index = 0;
  o.cards.reserve(o.weights.size());  // `first` points into it
  for (std::size_t a = 0; a < o.weights.size(); ++a) {
    const std::string w = o.weights[a].string();
    o.cards.push_back(vitiq::read_model_card(o.weights[a]));
    const auto& card = o.cards.back();
    o.normalize.push_back(!o.no_normalize && (card ? card->normalize : true));
    if (!card) continue;
    if (!o.preset.empty() && first == nullptr && o.preset != card->preset)
      throw vitiq::Error(w + ": --preset " + o.preset + " disagrees with the model card's preset " + card->preset);
    if (first == nullptr) {
      first = &*card, first_index = a;
      continue;
    }
    const std::string w0 = o.weights[first_index].string();
    if (card->preset != first->preset)
      throw vitiq::Error(w + ": the model card's preset " + card->preset + " disagrees with " + first->preset + " of " + w0);
    if (o.view == View::automatic && card->view != first->view)
      throw vitiq::Error(w + ": the model card's view " + std::string(vitiq::to_string(card->view)) + " disagrees with " +
                         std::string(vitiq::to_string(first->view)) + " of " + w0 + " (choose one with --view)");
  }
  if (first != nullptr) {
    const vitiq::ModelCard& c = *first;
    if (o.preset.empty()) o.preset = c.preset;
    if (o.view == View::automatic) o.view = c.view == vitiq::InputView::native_tiles ? View::tiles : View::resize;
  }
  if (o.preset.empty())
    vitiq::cli::usage_error(program, o.weights.front().string() + " has no model card: --preset is required");
}

void report(const std::string& message) { std::fprintf(stderr, "%s: %s\n", program, message.c_str()); }

const char* fusion_name(ex::HeadFusion f) {
  return f == ex::HeadFusion::mean ? "mean" : f == ex::HeadFusion::max ? "max" : "min";
}
constexpr std::array<ex::HeadFusion, 3> fusions{ex::HeadFusion::mean, ex::HeadFusion::max, ex::HeadFusion::min};

/// An image as the model sees it: cropped to whole tiles (tiles view) or kept (resize view).
struct Prepared {
  io::ImageU8 shown;       // [H, W, 3] the pixels the maps cover
  std::vector<float> inputs;  // [views, 3, S, S], normalised
  std::size_t tile_rows = 1, tile_cols = 1;
};

/// @param normalize ImageNet mean / std (the model's card, or --no-normalize)
template <vitiq::Config C>
Prepared prepare(const io::ImageU8& img, const Options& o, bool normalize, const std::string& name) {
  constexpr int S = C.image_size;
  const std::size_t H = img.shape(0), W = img.shape(1), s = std::size_t(S);
  const bool tiles = o.view == View::tiles || (o.view == View::automatic && H % s == 0 && W % s == 0);
  Prepared p;
  if (tiles) {
    if (H < s || W < s)
      throw vitiq::Error(name + ": image of " + std::to_string(W) + " x " + std::to_string(H) + " is smaller than one " +
                         std::to_string(S) + "-pixel tile (use --view resize)");
    p.tile_rows = H / s, p.tile_cols = W / s;
    p.shown = xt::view(img, xt::range(0, p.tile_rows * s), xt::range(0, p.tile_cols * s), xt::all());
  } else {
    p.shown = img;
  }
  const io::ImageF all = io::to_chw_float(p.shown);
  for (std::size_t r = 0; r < p.tile_rows; ++r)
    for (std::size_t c = 0; c < p.tile_cols; ++c) {
      io::ImageF v = tiles ? io::crop(all, int(r * s), int(c * s), S, S) : io::resize_bilinear(all, S, S);
      if (normalize) io::normalize(v, io::imagenet_mean, io::imagenet_std);
      p.inputs.insert(p.inputs.end(), v.begin(), v.end());
    }
  return p;
}

/// Every map of one model for one image, stitched over the views: [rows, cols] patch cells.
struct Maps {
  std::size_t rows = 0, cols = 0;
  std::array<std::vector<std::vector<double>>, 3> raw;  // [fusion][block][rows * cols]
  std::array<std::vector<double>, 3> rollout, gradient;  // [fusion][rows * cols]
  std::vector<double> probabilities;                    // [K], mean over the views
  std::vector<std::vector<double>> first_view;          // [L][h * N * N], attention of view 0
  double expected_vote() const {
    double e = 0;
    for (std::size_t k = 0; k < probabilities.size(); ++k) e += double(k + 1) * probabilities[k];
    return e;
  }
  const std::vector<double>& get(Method m, ex::HeadFusion f) const {
    const auto i = std::size_t(f);
    return m == Method::rollout ? rollout[i] : m == Method::gradient ? gradient[i] : raw[i].back();
  }
};

template <vitiq::Config C>
Maps explain(vitiq::ViT<C>& model, const Prepared& p, const Options& o) {
  constexpr std::size_t g = std::size_t(C.image_size / C.patch_size), N = std::size_t(C.num_tokens()),
                        H = std::size_t(C.heads), L = std::size_t(C.depth), K = std::size_t(C.num_classes);
  constexpr std::size_t per = std::size_t(3 * C.image_size * C.image_size);
  Maps m;
  m.rows = p.tile_rows * g, m.cols = p.tile_cols * g;
  const std::size_t cells = m.rows * m.cols;
  for (std::size_t f = 0; f < 3; ++f) {
    m.raw[f].assign(L, std::vector<double>(cells));
    m.rollout[f].assign(cells, 0.0);
    m.gradient[f].assign(cells, 0.0);
  }
  m.probabilities.assign(K, 0.0);
  const std::size_t views = p.tile_rows * p.tile_cols;
  const auto paste = [&](std::vector<double>& dst, const std::vector<double>& src, std::size_t view) {
    const std::size_t r0 = view / p.tile_cols * g, c0 = view % p.tile_cols * g;
    for (std::size_t y = 0; y < g; ++y)
      for (std::size_t x = 0; x < g; ++x) dst[(r0 + y) * m.cols + c0 + x] = src[y * g + x];
  };
  for (std::size_t v = 0; v < views; ++v) {
    const auto ag = ex::attention_with_gradients(model, std::span<const float>(p.inputs.data() + v * per, per));
    const double top = *std::max_element(ag.logits.begin(), ag.logits.end());
    double z = 0;
    for (double l : ag.logits) z += std::exp(l - top);
    for (std::size_t k = 0; k < K; ++k) m.probabilities[k] += std::exp(ag.logits[k] - top) / z / double(views);
    for (std::size_t f = 0; f < 3; ++f) {
      const ex::RolloutOptions ro{.fusion = fusions[f], .discard_ratio = o.discard};
      const auto raw = ex::raw_attention_maps(ag.attention, H, N, fusions[f]);
      for (std::size_t l = 0; l < L; ++l) paste(m.raw[f][l], raw[l], v);
      paste(m.rollout[f], ex::attention_rollout(ag.attention, H, N, ro), v);
      paste(m.gradient[f], ex::gradient_rollout(ag.attention, ag.gradients, H, N, ro), v);
    }
    if (v == 0) m.first_view = ag.attention;
  }
  return m;
}

ex::OverlayOptions overlay_options(const Options& o) {
  return {.colormap = o.colormap, .alpha = o.alpha, .background = {.greyscale = o.grey, .contrast_boost = o.contrast}};
}

plot::Rgb to_rgb(ex::Colour c) { return {c[0], c[1], c[2]}; }

/// The per-layer grid of one model and one image.
void layer_figure(const fs::path& path, const io::ImageU8& shown, const Maps& m, const std::string& title,
                  const Options& o) {
  plot::PanelGrid g;
  g.title = title;
  g.subtitle = "class-token attention per block, rollout (discard " + plot::format("%.2f", o.discard) +
               ") and gradient-weighted rollout; each map scaled to its own min..max";
  g.cmap = [cm = o.colormap](double t) { return to_rgb(ex::colour(cm, t)); };
  g.ticks = {0, 0.5, 1};
  g.bar_label = "relative";
  const auto opt = overlay_options(o);
  for (std::size_t f = 0; f < 3; ++f) {
    std::vector<plot::Panel> row;
    row.push_back({ex::background(shown, opt.background), "image", false});
    for (std::size_t l = 0; l < m.raw[f].size(); ++l) {
      const auto& map = m.raw[f][l];
      const double mx = *std::max_element(map.begin(), map.end());
      row.push_back({ex::overlay_map(shown, map, m.rows, m.cols, opt), plot::format("block %zu (max %.2f)", l + 1, mx), false});
    }
    row.push_back({ex::overlay_map(shown, m.rollout[f], m.rows, m.cols, opt), "rollout", false});
    row.push_back({ex::overlay_map(shown, m.gradient[f], m.rows, m.cols, opt), "gradient rollout", true});
    g.rows.push_back(std::move(row));
    g.row_labels.push_back(std::string("heads: ") + fusion_name(fusions[f]));
  }
  plot::save_panel_grid(g, path);
}

/// Every block's full per-head matrices of the first view.
void heads_figure(const fs::path& path, const Maps& m, std::size_t heads, std::size_t N, const std::string& title) {
  plot::PanelGrid g;
  g.title = title;
  g.subtitle = "full attention matrices [N, N] of the first view: row = query token (0: class token), column = key";
  g.cmap = [](double t) { return to_rgb(ex::colour(ex::Colormap::inferno, t)); };
  g.ticks = {0, 0.5, 1};
  g.bar_label = "of the maximum";
  g.panel = 130;
  const auto hm = ex::head_matrices(m.first_view, heads, N);
  for (std::size_t l = 0; l < hm.size(); ++l) {
    std::vector<plot::Panel> row;
    for (std::size_t j = 0; j < hm[l].size(); ++j) {
      const auto& a = hm[l][j].a;
      const double mx = *std::max_element(a.begin(), a.end());
      row.push_back({ex::colour_image(a, N, N, ex::Colormap::inferno, 0.0, mx), plot::format("head %zu (max %.2f)", j + 1, mx),
                     j + 1 == hm[l].size()});
    }
    g.rows.push_back(std::move(row));
    g.row_labels.push_back("block " + std::to_string(l + 1));
  }
  plot::save_panel_grid(g, path);
}

/// Per image (row) the deviation of each model's map from the mean map over the models.
void comparison_figure(const fs::path& path, const std::vector<io::ImageU8>& shown,
                       const std::vector<std::vector<Maps>>& maps /* [model][image] */,
                       const std::vector<std::string>& image_names, const Options& o, const std::string& title) {
  plot::PanelGrid g;
  const char* method = o.compare == Method::rollout ? "rollout" : o.compare == Method::raw ? "raw last block" : "gradient rollout";
  g.title = title;
  g.subtitle = std::string(method) + " (heads: " + fusion_name(o.fusion) +
               "), each map as a distribution; deviation from the mean over the AIOs, scaled per image to [-1, 1]";
  g.cmap = [](double t) { return to_rgb(ex::colour(ex::Colormap::diverging, t)); };
  g.lo = -1, g.hi = 1;
  g.ticks = {-1, -0.5, 0, 0.5, 1};
  const ex::OverlayOptions opt{.colormap = ex::Colormap::diverging, .vmin = -1, .vmax = 1, .alpha = 0.7,
                               .background = {.greyscale = true, .contrast_boost = o.contrast, .fade = 0.5}};
  for (std::size_t i = 0; i < shown.size(); ++i) {
    const Maps& first = maps[0][i];
    const std::size_t cells = first.rows * first.cols, M = maps.size();
    std::vector<std::vector<double>> p(M);
    std::vector<double> mean(cells, 0.0);
    for (std::size_t a = 0; a < M; ++a) {
      p[a] = maps[a][i].get(o.compare, o.fusion);
      double s = 0;
      for (double v : p[a]) s += v;
      for (auto& v : p[a]) v = s > 0 ? v / s : 0.0;
      for (std::size_t c = 0; c < cells; ++c) mean[c] += p[a][c] / double(M);
    }
    double scale = 0;
    for (auto& q : p)
      for (std::size_t c = 0; c < cells; ++c) scale = std::max(scale, std::abs(q[c] -= mean[c]));
    std::vector<plot::Panel> row;
    row.push_back({shown[i], "original", false});
    const int Hs = int(shown[i].shape(0)), Ws = int(shown[i].shape(1));
    for (std::size_t a = 0; a < M; ++a) {
      for (auto& v : p[a]) v = scale > 0 ? v / scale : 0.0;
      const auto up = ex::upsample_bilinear(p[a], first.rows, first.cols, Hs, Ws);
      row.push_back({ex::overlay(shown[i], up, opt), plot::format("%s: vote %.2f", o.names[a].c_str(), maps[a][i].expected_vote()),
                     true});
    }
    g.rows.push_back(std::move(row));
    g.row_labels.push_back(image_names[i]);
  }
  plot::save_panel_grid(g, path);
}

struct ShareRow {
  std::string model, image;
  double raw_before, raw_after, rollout_before, rollout_after, gradient_before, gradient_after, vote_before, vote_after;
};

using vitiq::data::csv_field;  // the one CSV writer (data/csv.hpp)

template <vitiq::Config C>
void run(const Options& o) {
  static_assert(C.channels == 3, "vitiq-attention reads RGB images");
  fs::create_directories(o.out);
  const bool several = o.weights.size() > 1, check = o.change.has_value();
  const std::string change = check ? ex::change_name(*o.change) : "";
  for (std::size_t a = 0; a < o.weights.size(); ++a)
    if (o.cards[a] && o.cards[a]->tile_size != C.image_size)
      throw vitiq::FormatError(o.weights[a].string() + ": metadata 'card.tile_size': " +
                               std::to_string(o.cards[a]->tile_size) + " is not the " + std::to_string(C.image_size) +
                               "-pixel input of preset " + o.preset);
  // Images: read, prepared (cropped to tiles), changed. The inputs are prepared again for a model
  // whose normalisation differs from the previous one's.
  std::vector<io::ImageU8> originals, shown, changed;
  std::vector<Prepared> before, after;
  std::vector<std::string> stems, names;
  bool prepared_normalize = o.normalize.front();
  for (const auto& file : o.images) {
    const io::ImageU8 img = io::load_image(file);
    Prepared p = prepare<C>(img, o, prepared_normalize, file);
    stems.push_back(fs::path(file).stem().string());
    names.push_back(fs::path(file).filename().string());
    if (check) {
      const io::ImageU8 c = ex::apply_local_change(p.shown, *o.region, *o.change);
      io::write_png(o.out / (stems.back() + "_" + change + ".png"), c);
      Prepared q = prepare<C>(c, o, prepared_normalize, file);
      changed.push_back(q.shown);
      after.push_back(std::move(q));
    }
    originals.push_back(img);
    shown.push_back(p.shown);
    before.push_back(std::move(p));
  }
  std::vector<std::vector<Maps>> maps_before, maps_after;  // [model][image]
  std::vector<ShareRow> shares;
  const double area = check ? ex::area_share(*o.region, int(shown[0].shape(0)), int(shown[0].shape(1))) : 0.0;
  for (std::size_t a = 0; a < o.weights.size(); ++a) {
    if (o.normalize[a] != prepared_normalize) {
      prepared_normalize = o.normalize[a];
      for (std::size_t i = 0; i < originals.size(); ++i) {
        before[i] = prepare<C>(originals[i], o, prepared_normalize, o.images[i]);
        if (check) after[i] = prepare<C>(changed[i], o, prepared_normalize, o.images[i]);
      }
    }
    vitiq::ViT<C> model;
    vitiq::load_weights(model, o.weights[a]);
    const fs::path dir = several ? o.out / o.names[a] : o.out;
    fs::create_directories(dir);
    maps_before.emplace_back();
    maps_after.emplace_back();
    for (std::size_t i = 0; i < before.size(); ++i) {
      Maps m = explain<C>(model, before[i], o);
      const std::string what = o.names[a] + ", " + names[i];
      layer_figure(dir / (stems[i] + "_layers.png"), shown[i], m,
                   what + plot::format(": expected vote %.2f", m.expected_vote()), o);
      if (o.heads) heads_figure(dir / (stems[i] + "_heads.png"), m, std::size_t(C.heads), std::size_t(C.num_tokens()), what);
      if (check) {
        Maps c = explain<C>(model, after[i], o);
        layer_figure(dir / (stems[i] + "_" + change + "_layers.png"), changed[i], c,
                     what + " (" + change + plot::format(" in the region): expected vote %.2f", c.expected_vote()), o);
        const auto cov = ex::region_coverage(*o.region, int(shown[i].shape(0)), int(shown[i].shape(1)), m.rows, m.cols);
        const std::size_t f = std::size_t(o.fusion);
        shares.push_back({o.names[a], names[i], ex::mass_share(m.raw[f].back(), cov), ex::mass_share(c.raw[f].back(), cov),
                          ex::mass_share(m.rollout[f], cov), ex::mass_share(c.rollout[f], cov),
                          ex::mass_share(m.gradient[f], cov), ex::mass_share(c.gradient[f], cov), m.expected_vote(),
                          c.expected_vote()});
        maps_after.back().push_back(std::move(c));
      }
      maps_before.back().push_back(std::move(m));
    }
    std::printf("%s: %s done\n", program, o.names[a].c_str());
  }
  if (several) {
    comparison_figure(o.out / "comparison.png", shown, maps_before, names, o, "What each AIO looks at, relative to the others");
    if (check)
      comparison_figure(o.out / ("comparison_" + change + ".png"), changed, maps_after, names, o,
                        "The same after the change (" + change + ") in the region");
  }
  if (!check) return;

  // The quantitative check: CSV, a chart and a summary on stdout.
  const ex::Region& r = *o.region;
  std::ostringstream csv;
  csv << "model,image,change,region,area_share,raw_before,raw_after,rollout_before,rollout_after,gradient_before,"
         "gradient_after,expected_vote_before,expected_vote_after\n";
  for (const auto& s : shares)
    csv << csv_field(s.model) << ',' << csv_field(s.image) << ',' << change << ",\"" << r.x << ',' << r.y << ',' << r.w << ','
        << r.h << "\"," << plot::format("%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.4f,%.4f", area, s.raw_before, s.raw_after,
                                        s.rollout_before, s.rollout_after, s.gradient_before, s.gradient_after,
                                        s.vote_before, s.vote_after)
        << '\n';
  io::atomic_write(o.out / "check.csv", csv.str());
  plot::ShareChart chart;
  chart.title = "Attention inside the region " + plot::format("%d,%d,%d,%d", r.x, r.y, r.w, r.h) + " before / after " + change +
                plot::format(" (mean of %zu images, whiskers: standard error)", o.images.size());
  chart.models = o.names;
  chart.series = {"raw last block, before", "raw last block, after", "rollout, before", "rollout, after"};
  chart.colours = {{0.62, 0.79, 0.88}, {0.12, 0.47, 0.71}, {0.99, 0.75, 0.52}, {0.90, 0.33, 0.05}};
  chart.values.assign(4, std::vector<double>(o.names.size(), 0.0));
  chart.spread.assign(4, std::vector<double>(o.names.size(), 0.0));
  chart.area_share = area;
  std::printf("\nshare of attention inside the region (area share %.3f), mean over %zu images:\n", area, o.images.size());
  std::printf("%-14s %10s %10s %10s %10s %10s %10s\n", "model", "raw bef.", "raw aft.", "roll bef.", "roll aft.", "grad bef.",
              "grad aft.");
  for (std::size_t a = 0; a < o.names.size(); ++a) {
    std::array<std::vector<double>, 6> v;
    for (const auto& s : shares)
      if (s.model == o.names[a]) {
        const double x[6] = {s.raw_before, s.raw_after, s.rollout_before, s.rollout_after, s.gradient_before, s.gradient_after};
        for (int k = 0; k < 6; ++k) v[std::size_t(k)].push_back(x[k]);
      }
    double mean[6];
    for (std::size_t k = 0; k < 6; ++k) {
      double s = 0, ss = 0;
      for (double x : v[k]) s += x;
      mean[k] = s / double(v[k].size());
      for (double x : v[k]) ss += (x - mean[k]) * (x - mean[k]);
      if (k < 4) {
        chart.values[k][a] = mean[k];
        chart.spread[k][a] = v[k].size() > 1 ? std::sqrt(ss / double(v[k].size() - 1) / double(v[k].size())) : 0.0;
      }
    }
    std::printf("%-14s %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f\n", o.names[a].c_str(), mean[0], mean[1], mean[2], mean[3],
                mean[4], mean[5]);
  }
  plot::save_share_chart(chart, o.out / "check.png");
  std::printf("wrote %s and %s\n", (o.out / "check.csv").c_str(), (o.out / "check.png").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse_args(argc, argv);
    resolve_cards(o);
    const bool known = vitiq::dispatch_preset(o.preset, [&]<vitiq::Config C>() { run<C>(o); });
    if (!known) {  // only a card can name a preset the validator has not seen
      std::string names;
      for (const std::string_view n : vitiq::preset_names) names += (names.empty() ? "" : ", ") + std::string(n);
      report("unknown preset '" + o.preset + "' in the model card (known: " + names + ")");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    report(e.what());
    return 1;
  }
}
