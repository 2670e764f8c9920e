// examples/plot/attention_figures.hpp -- the figures of vitiq-attention, drawn with cairo through
// figures.hpp: a grid of picture panels (a title over each, optional colour bar beside each, row
// labels turned along the left edge) for the per-layer maps and the AIO comparison, and a grouped
// bar chart of the attention share inside a changed region before and after the change.
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "figures.hpp"
#include "vitiq/io/image.hpp"

namespace plot {

/// @brief One picture of a grid figure.
struct Panel {
  vitiq::io::ImageU8 picture;  ///< [h, w, 3]; empty: the cell stays blank
  std::string title;           ///< written above the picture
  bool colour_bar = false;     ///< draw the figure's colour bar beside this picture
};

/// @brief A grid of panels: rows of pictures of the same displayed size.
struct PanelGrid {
  std::string title;                          ///< over the whole figure
  std::string subtitle;                       ///< a smaller second line (e.g. what the colours mean)
  std::vector<std::string> row_labels;        ///< [rows], turned along the left edge
  std::vector<std::vector<Panel>> rows;       ///< [rows][columns]
  std::function<Rgb(double)> cmap;            ///< colour bar colours over t in [0, 1]
  double lo = 0, hi = 1;                      ///< colour bar range
  std::vector<double> ticks;                  ///< colour bar ticks (empty: nice ticks)
  std::string bar_label;                      ///< along each colour bar
  double panel = 150;                         ///< displayed picture side in pixels
};

/// @brief Draw a PanelGrid and write it as PNG.
inline void save_panel_grid(const PanelGrid& g, const std::filesystem::path& path) {
  std::size_t cols = 0;
  for (const auto& r : g.rows) cols = std::max(cols, r.size());
  std::vector<bool> bar_in_col(cols, false);
  for (const auto& r : g.rows)
    for (std::size_t c = 0; c < r.size(); ++c) bar_in_col[c] = bar_in_col[c] || r[c].colour_bar;
  const double bar_w = g.bar_label.empty() ? 40 : 54, gap = 14, title_h = 20, label_w = g.row_labels.empty() ? 8 : 30;
  std::vector<double> col_x(cols + 1, label_w + 10);
  for (std::size_t c = 0; c < cols; ++c) col_x[c + 1] = col_x[c] + g.panel + (bar_in_col[c] ? bar_w : 0) + gap;
  const double head = (g.title.empty() ? 8 : 34) + (g.subtitle.empty() ? 0 : 18);
  const double row_h = title_h + g.panel + gap;
  Canvas cv(int(col_x[cols] + 6), int(head + row_h * double(g.rows.size()) + 6));
  cairo_t* cr = cv.cr();
  if (!g.title.empty()) text(cr, cv.width() / 2.0, 8, g.title, 16, 0.5, 0, true);
  if (!g.subtitle.empty()) text(cr, cv.width() / 2.0, g.title.empty() ? 8 : 32, g.subtitle, 11, 0.5, 0, false, 0, {0.35, 0.35, 0.35});
  for (std::size_t r = 0; r < g.rows.size(); ++r) {
    const double y = head + row_h * double(r);
    if (r < g.row_labels.size())
      text(cr, 8, y + title_h + g.panel / 2, g.row_labels[r], 11, 0.5, 0, true, kPi / 2);
    for (std::size_t c = 0; c < g.rows[r].size(); ++c) {
      const Panel& p = g.rows[r][c];
      const double x = col_x[c];
      if (p.picture.size() == 0) continue;
      // Titles are shortened to fit the panel.
      std::string t = p.title;
      while (t.size() > 4 && text_width(cr, t, 11) > g.panel + (p.colour_bar ? bar_w : 0)) t = t.substr(0, t.size() - 4) + "..";
      text(cr, x + g.panel / 2, y + 3, t, 11, 0.5, 0);
      draw_rgb(cv, {x, y + title_h, g.panel, g.panel}, p.picture.data(), int(p.picture.shape(1)), int(p.picture.shape(0)));
      if (p.colour_bar && g.cmap)
        draw_colour_bar(cv, {x + g.panel + 5, y + title_h, 9, g.panel}, g.cmap, g.lo, g.hi, g.ticks, g.bar_label, 9);
    }
  }
  cv.save_png(path);
}

/// @brief Shares of attention inside a region per model, before and after a change.
struct ShareChart {
  std::string title;
  std::vector<std::string> models;                 ///< [M]
  std::vector<std::string> series;                 ///< [S] e.g. "raw last block, before"
  std::vector<Rgb> colours;                        ///< [S]
  std::vector<std::vector<double>> values;         ///< [S][M] mean share
  std::vector<std::vector<double>> spread;         ///< [S][M] optional +- (e.g. standard error), drawn as whiskers
  double area_share = 0;                           ///< drawn as a dashed line
};

/// @brief Grouped bars (one group per model, one bar per series) with the region's area share as a
/// dashed line; written as PNG.
inline void save_share_chart(const ShareChart& s, const std::filesystem::path& path) {
  const double w = std::max(640.0, 150.0 + 110.0 * double(s.models.size()));
  Canvas cv(int(w), 440);
  double top = s.area_share;
  for (std::size_t k = 0; k < s.values.size(); ++k)
    for (std::size_t m = 0; m < s.values[k].size(); ++m)
      top = std::max(top, s.values[k][m] + (k < s.spread.size() && m < s.spread[k].size() ? s.spread[k][m] : 0.0));
  const double legend_w = 200;
  const Frame f = draw_axes(cv, {0, 0, w, 440}, s.title, "model", "share of attention inside the region", 0,
                            double(s.models.size()), 0, std::min(1.0, top * 1.15 + 0.02), false, legend_w);
  cairo_t* cr = cv.cr();
  const double slot = f.box.w / double(std::max<std::size_t>(1, s.models.size()));
  const double bw = slot * 0.8 / double(std::max<std::size_t>(1, s.series.size()));
  for (std::size_t m = 0; m < s.models.size(); ++m) {
    for (std::size_t k = 0; k < s.series.size() && k < s.values.size(); ++k) {
      const double v = s.values[k][m], x = f.box.x + slot * double(m) + slot * 0.1 + bw * double(k);
      set_colour(cr, k < s.colours.size() ? s.colours[k] : category_colour(k));
      cairo_rectangle(cr, x + 1, f.py(v), bw - 2, f.py(0) - f.py(v));
      cairo_fill(cr);
      if (k < s.spread.size() && m < s.spread[k].size() && s.spread[k][m] > 0) {
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_set_line_width(cr, 1);
        cairo_move_to(cr, x + bw / 2, f.py(v - s.spread[k][m]));
        cairo_line_to(cr, x + bw / 2, f.py(v + s.spread[k][m]));
        cairo_stroke(cr);
      }
    }
    text(cr, f.box.x + slot * (double(m) + 0.5), f.box.y + f.box.h + 6, s.models[m], 11, 0.5, 0);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  const double d[] = {6, 4};
  cairo_set_dash(cr, d, 2, 0);
  cairo_set_line_width(cr, 1.5);
  cairo_move_to(cr, f.box.x, f.py(s.area_share));
  cairo_line_to(cr, f.box.x + f.box.w, f.py(s.area_share));
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  std::vector<LegendEntry> entries;
  for (std::size_t k = 0; k < s.series.size(); ++k)
    entries.push_back({s.series[k], k < s.colours.size() ? s.colours[k] : category_colour(k), Swatch::box});
  entries.push_back({format("area share %.3f", s.area_share), {0.2, 0.2, 0.2}, Swatch::dashed_line});
  draw_legend(cv, f.box.x + f.box.w + 10, f.box.y, entries);
  cv.save_png(path);
}

}  // namespace plot
