// examples/plot/figures.hpp -- a small plotting helper for the example programs, drawn with
// cairo (image surfaces, PNG output, text through cairo's toy text API): heat maps with a colour
// bar and cell labels, stacked bar charts, line / scatter charts with legends, RGB pictures scaled
// into a rectangle and stand-alone colour bars.
//
// Only the programs under examples/ use it; the library under include/ knows nothing of cairo.
// Every chart draws into a rectangle of a Canvas, so one PNG can hold several panels. Sizes are
// in pixels; text is DejaVu Sans (fontconfig picks a fallback when it is missing).
#pragma once

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace plot {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kPi = 3.14159265358979323846;

/// @brief A rectangle: top-left corner and size in pixels.
struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
};

/// @brief A colour, components in [0, 1].
struct Rgb {
  double r = 0, g = 0, b = 0;
};

/// @brief The viridis colour map at t in [0, 1] (piecewise linear through 9 of matplotlib's stops).
inline Rgb viridis(double t) {
  static const Rgb stops[] = {{0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
                              {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
                              {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441}, {0.478, 0.821, 0.318},
                              {0.741, 0.873, 0.150}, {0.993, 0.906, 0.144}};
  constexpr int n = int(sizeof stops / sizeof stops[0]);
  t = std::clamp(std::isnan(t) ? 0.0 : t, 0.0, 1.0) * (n - 1);
  const int i = std::min(int(t), n - 2);
  const double f = t - i;
  return {stops[i].r + f * (stops[i + 1].r - stops[i].r), stops[i].g + f * (stops[i + 1].g - stops[i].g),
          stops[i].b + f * (stops[i + 1].b - stops[i].b)};
}

/// @brief Categorical colours (matplotlib's tab10), cycled.
inline Rgb category_colour(std::size_t i) {
  static const Rgb c[] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
                          {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
                          {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};
  return c[i % 10];
}

/// @brief Five ordered colours for ACR votes 1 (bad, red) .. 5 (excellent, green); more or fewer
/// classes are interpolated along the same ramp.
inline Rgb vote_colour(int vote, int K = 5) {
  static const Rgb ramp[] = {{0.843, 0.188, 0.153}, {0.988, 0.553, 0.349}, {0.996, 0.878, 0.545},
                             {0.569, 0.812, 0.376}, {0.102, 0.596, 0.314}};
  const double t = K > 1 ? double(vote - 1) / double(K - 1) * 4.0 : 2.0;
  const int i = std::clamp(int(t), 0, 3);
  const double f = std::clamp(t - i, 0.0, 1.0);
  return {ramp[i].r + f * (ramp[i + 1].r - ramp[i].r), ramp[i].g + f * (ramp[i + 1].g - ramp[i].g),
          ramp[i].b + f * (ramp[i + 1].b - ramp[i].b)};
}

/// @brief printf-style formatting into a std::string.
template <class... A>
std::string format(const char* fmt, A... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

/// @brief About `target` evenly spaced "nice" tick values (steps of 1, 2, 2.5 or 5 times a power
/// of ten, and at least `min_step`) covering [lo, hi].
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5, double min_step = 0) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = std::max((hi - lo) / std::max(1, target), min_step);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (min_step >= 1 && m == 2.5 && mag < 10) continue;  // whole-number steps stay whole
    if (m * mag >= raw) { step = m * mag; break; }
  }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return t;
}

/// @brief A tick label: as few decimals as the tick step needs.
inline std::string tick_label(double v, double step) {
  int dec = 0;
  while (dec < 6 && std::abs(step * std::pow(10.0, dec) - std::round(step * std::pow(10.0, dec))) > 1e-6) ++dec;
  return format("%.*f", dec, v);
}

/// @brief An RGB image to draw on, white at first; save_png() writes it.
class Canvas {
 public:
  Canvas(int width, int height) : width_(width), height_(height) {
    surface_ = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cr_ = cairo_create(surface_);
    if (cairo_status(cr_) != CAIRO_STATUS_SUCCESS) throw std::runtime_error("plot: cannot create a cairo surface");
    cairo_set_source_rgb(cr_, 1, 1, 1);
    cairo_paint(cr_);
  }
  ~Canvas() {
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
  }
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  cairo_t* cr() const { return cr_; }
  int width() const { return width_; }
  int height() const { return height_; }

  /// @brief Write the image as PNG atomically (to "<path>.tmp", then renamed). Throws
  /// std::runtime_error naming the file on failure.
  void save_png(const std::filesystem::path& path) const {
    cairo_surface_flush(surface_);
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    if (cairo_surface_write_to_png(surface_, tmp.c_str()) != CAIRO_STATUS_SUCCESS)
      throw std::runtime_error("cannot write '" + tmp.string() + "'");
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw std::runtime_error("cannot rename '" + tmp.string() + "' to '" + path.string() + "': " + ec.message());
  }

 private:
  int width_, height_;
  cairo_surface_t* surface_ = nullptr;
  cairo_t* cr_ = nullptr;
};

/// @brief Text anchored at (x, y): ax = 0 / 0.5 / 1 puts x at the left / centre / right of the
/// text, ay = 0 / 0.5 / 1 puts y at its top / middle / baseline-ish bottom; `angle` in radians
/// (counter-clockwise, about the anchor).
inline void text(cairo_t* cr, double x, double y, const std::string& s, double size, double ax = 0, double ay = 1,
                 bool bold = false, double angle = 0, Rgb colour = {0.1, 0.1, 0.1}) {
  cairo_save(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -angle);
  const double h = fe.ascent;  // steady height for all strings of one size
  cairo_move_to(cr, -ax * e.x_advance, -ay * h + h);
  cairo_set_source_rgb(cr, colour.r, colour.g, colour.b);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

/// @brief Width of a text at a size.
inline double text_width(cairo_t* cr, const std::string& s, double size, bool bold = false) {
  cairo_save(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_restore(cr);
  return e.x_advance;
}

inline void set_colour(cairo_t* cr, Rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

/// @brief A title centred on the top of `r`; returns the height it took.
inline double draw_title(cairo_t* cr, const Rect& r, const std::string& title, double size = 15) {
  if (title.empty()) return 0;
  text(cr, r.x + r.w / 2, r.y + 6, title, size, 0.5, 0, true);
  return size + 14;
}

// ---------------------------------------------------------------------------------------------
// Heat map

/// @brief A matrix drawn as coloured cells with optional value labels and a colour bar.
struct HeatMap {
  std::string title, x_label, y_label, colorbar_label;
  std::vector<std::string> row_labels, col_labels;  ///< [R], [C]
  std::vector<std::vector<double>> values;          ///< [R][C]; NaN cells are grey, labelled "n/a"
  double vmin = kNaN, vmax = kNaN;                  ///< colour range; NaN: the data's range
  std::string value_format = "%.2f";                ///< printf format of the cell labels
  bool annotate = true;                             ///< write each value in its cell
  /// Optional second, smaller line per cell (e.g. a row percentage); [R][C] or empty.
  std::vector<std::vector<std::string>> sublabels;
};

/// @brief Draw `h` into `area` of the canvas: title on top, y label and row labels left, column
/// labels and x label below, colour bar with ticks on the right.
inline void draw_heat_map(Canvas& cv, const Rect& area, const HeatMap& h) {
  cairo_t* cr = cv.cr();
  const std::size_t R = h.values.size(), C = R ? h.values[0].size() : 0;
  double lo = h.vmin, hi = h.vmax;
  if (std::isnan(lo) || std::isnan(hi)) {
    double dlo = std::numeric_limits<double>::infinity(), dhi = -dlo;
    for (const auto& row : h.values)
      for (double v : row)
        if (!std::isnan(v)) dlo = std::min(dlo, v), dhi = std::max(dhi, v);
    if (std::isnan(lo)) lo = std::isfinite(dlo) ? dlo : 0;
    if (std::isnan(hi)) hi = std::isfinite(dhi) ? dhi : 1;
  }
  if (!(hi > lo)) hi = lo + 1;

  const double font = 12;
  const double top = area.y + draw_title(cr, area, h.title);
  double row_w = 0;
  for (const auto& l : h.row_labels) row_w = std::max(row_w, text_width(cr, l, font));
  const double left = area.x + (h.y_label.empty() ? 8 : 30) + row_w + 8;
  const double right = area.x + area.w - 95;  // colour bar and its ticks
  const double bottom = area.y + area.h - (h.x_label.empty() ? 26 : 48);
  if (R == 0 || C == 0 || right <= left || bottom <= top) return;
  // Square-ish cells, centred in the space left.
  const double cell = std::min((right - left) / double(C), (bottom - top) / double(R));
  const double gx = left + ((right - left) - cell * double(C)) / 2, gy = top;
  const double cell_font = std::clamp(cell * 0.22, 9.0, 16.0);

  for (std::size_t i = 0; i < R; ++i)
    for (std::size_t j = 0; j < C; ++j) {
      const double v = h.values[i][j];
      const Rgb c = std::isnan(v) ? Rgb{0.85, 0.85, 0.85} : viridis((v - lo) / (hi - lo));
      set_colour(cr, c);
      cairo_rectangle(cr, gx + double(j) * cell, gy + double(i) * cell, cell, cell);
      cairo_fill(cr);
      if (!h.annotate) continue;
      const double lum = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b;
      const Rgb ink = lum < 0.5 ? Rgb{1, 1, 1} : Rgb{0.05, 0.05, 0.05};
      const std::string s = std::isnan(v) ? "n/a" : format(h.value_format.c_str(), v);
      const bool sub = i < h.sublabels.size() && j < h.sublabels[i].size() && !h.sublabels[i][j].empty();
      const double cx = gx + (double(j) + 0.5) * cell, cy = gy + (double(i) + 0.5) * cell;
      text(cr, cx, sub ? cy - cell_font * 0.1 : cy, s, cell_font, 0.5, sub ? 1.0 : 0.5, true, 0, ink);
      if (sub) text(cr, cx, cy + cell_font * 0.25, h.sublabels[i][j], cell_font * 0.75, 0.5, 0, false, 0, ink);
    }
  // Grid lines between cells.
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_set_line_width(cr, 1);
  for (std::size_t i = 0; i <= R; ++i) {
    cairo_move_to(cr, gx, gy + double(i) * cell);
    cairo_line_to(cr, gx + double(C) * cell, gy + double(i) * cell);
  }
  for (std::size_t j = 0; j <= C; ++j) {
    cairo_move_to(cr, gx + double(j) * cell, gy);
    cairo_line_to(cr, gx + double(j) * cell, gy + double(R) * cell);
  }
  cairo_stroke(cr);
  // Labels.
  for (std::size_t i = 0; i < R && i < h.row_labels.size(); ++i)
    text(cr, gx - 6, gy + (double(i) + 0.5) * cell, h.row_labels[i], font, 1, 0.5);
  for (std::size_t j = 0; j < C && j < h.col_labels.size(); ++j)
    text(cr, gx + (double(j) + 0.5) * cell, gy + double(R) * cell + 5, h.col_labels[j], font, 0.5, 0);
  if (!h.x_label.empty()) text(cr, gx + double(C) * cell / 2, gy + double(R) * cell + 26, h.x_label, 13, 0.5, 0);
  if (!h.y_label.empty()) text(cr, area.x + 8, gy + double(R) * cell / 2, h.y_label, 13, 0.5, 0, false, kPi / 2);

  // Colour bar.
  const double bx = gx + double(C) * cell + 18, bw = 16, by = gy, bh = double(R) * cell;
  cairo_pattern_t* grad = cairo_pattern_create_linear(0, by + bh, 0, by);
  for (int s = 0; s <= 16; ++s) {
    const Rgb c = viridis(s / 16.0);
    cairo_pattern_add_color_stop_rgb(grad, s / 16.0, c.r, c.g, c.b);
  }
  cairo_rectangle(cr, bx, by, bw, bh);
  cairo_set_source(cr, grad);
  cairo_fill(cr);
  cairo_pattern_destroy(grad);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, bx, by, bw, bh);
  cairo_stroke(cr);
  const auto ticks = nice_ticks(lo, hi, 5);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  for (double t : ticks) {
    const double y = by + bh - (t - lo) / (hi - lo) * bh;
    cairo_move_to(cr, bx + bw, y);
    cairo_line_to(cr, bx + bw + 4, y);
    cairo_stroke(cr);
    text(cr, bx + bw + 7, y, tick_label(t, step), 11, 0, 0.5);
  }
  if (!h.colorbar_label.empty())
    text(cr, bx + bw + 48, by + bh / 2, h.colorbar_label, 12, 0.5, 0, false, kPi / 2);
}

// ---------------------------------------------------------------------------------------------
// Axes shared by bar and line charts

/// @brief A plot frame: the data rectangle and the mapping of data to pixels.
struct Frame {
  Rect box;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double px(double x) const { return box.x + (x - x0) / (x1 - x0) * box.w; }
  double py(double y) const { return box.y + box.h - (y - y0) / (y1 - y0) * box.h; }
};

/// @brief Title, axis labels, y grid with ticks (and x ticks unless `x_ticks` is false) in `area`;
/// returns the data frame. `right_margin` leaves room for a legend; `x_integer` keeps x ticks on
/// whole numbers (epochs).
inline Frame draw_axes(Canvas& cv, const Rect& area, const std::string& title, const std::string& x_label,
                       const std::string& y_label, double x0, double x1, double y0, double y1, bool x_ticks = true,
                       double right_margin = 12, bool x_integer = false) {
  cairo_t* cr = cv.cr();
  const double top = area.y + draw_title(cr, area, title) + 4;
  Frame f;
  f.x0 = x0, f.x1 = x1 > x0 ? x1 : x0 + 1, f.y0 = y0, f.y1 = y1 > y0 ? y1 : y0 + 1;
  const double left = area.x + 70, bottom = area.y + area.h - 50;
  f.box = {left, top, std::max(10.0, area.x + area.w - right_margin - left), std::max(10.0, bottom - top)};
  cairo_set_line_width(cr, 1);
  const auto yt = nice_ticks(f.y0, f.y1, 5);
  const double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double t : yt) {
    const double y = f.py(t);
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, f.box.x, y);
    cairo_line_to(cr, f.box.x + f.box.w, y);
    cairo_stroke(cr);
    text(cr, f.box.x - 6, y, tick_label(t, ystep), 11, 1, 0.5);
  }
  if (x_ticks) {
    const auto xt = nice_ticks(f.x0, f.x1, 6, x_integer ? 1.0 : 0.0);
    const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
    for (double t : xt) {
      const double x = f.px(t);
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      cairo_move_to(cr, x, f.box.y + f.box.h);
      cairo_line_to(cr, x, f.box.y + f.box.h + 4);
      cairo_stroke(cr);
      text(cr, x, f.box.y + f.box.h + 6, tick_label(t, xstep), 11, 0.5, 0);
    }
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, f.box.x, f.box.y, f.box.w, f.box.h);
  cairo_stroke(cr);
  if (!x_label.empty()) text(cr, f.box.x + f.box.w / 2, area.y + area.h - 20, x_label, 13, 0.5, 0);
  if (!y_label.empty()) text(cr, area.x + 10, f.box.y + f.box.h / 2, y_label, 13, 0.5, 0, false, kPi / 2);
  return f;
}

/// @brief How a legend entry shows its series.
enum class Swatch { box, line, dashed_line, dot, ring };

/// @brief One legend entry.
struct LegendEntry {
  std::string label;
  Rgb colour;
  Swatch swatch = Swatch::box;
};

/// @brief Size of the legend box draw_legend() would draw.
inline std::pair<double, double> legend_size(Canvas& cv, const std::vector<LegendEntry>& entries, const std::string& heading = "") {
  double w = text_width(cv.cr(), heading, 11, true);
  for (const auto& e : entries) w = std::max(w, text_width(cv.cr(), e.label, 11) + 30);
  return {w + 12, 17 * double(entries.size()) + (heading.empty() ? 6 : 17 + 6)};
}

/// @brief A legend box with its top-left corner at (x, y): one swatch and label per entry, under
/// an optional bold heading.
inline void draw_legend(Canvas& cv, double x, double y, const std::vector<LegendEntry>& entries, const std::string& heading = "") {
  cairo_t* cr = cv.cr();
  const auto [w, h] = legend_size(cv, entries, heading);
  const double row = 17;
  cairo_new_path(cr);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  double yy = y + 4;
  if (!heading.empty()) text(cr, x + 6, yy, heading, 11, 0, 0, true), yy += row;
  for (const auto& e : entries) {
    set_colour(cr, e.colour);
    switch (e.swatch) {
      case Swatch::box:
        cairo_rectangle(cr, x + 8, yy + 1, 14, 12);
        cairo_fill(cr);
        break;
      case Swatch::line:
      case Swatch::dashed_line: {
        cairo_set_line_width(cr, 2);
        const double d[] = {5, 3};
        if (e.swatch == Swatch::dashed_line) cairo_set_dash(cr, d, 2, 0);
        cairo_move_to(cr, x + 6, yy + 7);
        cairo_line_to(cr, x + 28, yy + 7);
        cairo_stroke(cr);
        cairo_set_dash(cr, nullptr, 0, 0);
        break;
      }
      case Swatch::dot:
        cairo_new_sub_path(cr);
        cairo_arc(cr, x + 17, yy + 7, 3.5, 0, 2 * kPi);
        cairo_fill(cr);
        break;
      case Swatch::ring:
        cairo_set_line_width(cr, 1.5);
        cairo_new_sub_path(cr);
        cairo_arc(cr, x + 17, yy + 7, 5, 0, 2 * kPi);
        cairo_stroke(cr);
        break;
    }
    text(cr, x + 34, yy, e.label, 11, 0, 0);
    yy += row;
  }
}

// ---------------------------------------------------------------------------------------------
// Stacked bars

/// @brief Bars of stacked segments: values[c][s] is segment s of bar c.
struct StackedBars {
  std::string title, x_label, y_label, legend_title;
  std::vector<std::string> categories;         ///< [C] bar labels
  std::vector<std::string> stack_labels;       ///< [S] legend entries
  std::vector<Rgb> colours;                    ///< [S]
  std::vector<std::vector<double>> values;     ///< [C][S]
  std::vector<std::string> bar_notes;          ///< [C] optional text above each bar (e.g. "n=300")
  double y_max = kNaN;                         ///< NaN: the tallest bar
  bool legend = true;
  bool segment_labels = true;                  ///< write values >= 8 % of the axis inside segments
  std::string segment_format = "%.0f";
};

/// @brief Draw stacked bars into `area` (legend on the right when `legend`).
inline void draw_stacked_bars(Canvas& cv, const Rect& area, const StackedBars& b) {
  cairo_t* cr = cv.cr();
  double top = 0;
  for (const auto& bar : b.values) {
    double s = 0;
    for (double v : bar) s += v;
    top = std::max(top, s);
  }
  const double ymax = std::isnan(b.y_max) ? (top > 0 ? top * 1.05 : 1) : b.y_max;
  const double legend_w = b.legend ? 100 : 12;
  const Frame f = draw_axes(cv, area, b.title, b.x_label, b.y_label, 0, double(b.categories.size()), 0, ymax, false, legend_w);
  const double slot = f.box.w / double(std::max<std::size_t>(1, b.categories.size())), bw = slot * 0.7;
  for (std::size_t c = 0; c < b.categories.size(); ++c) {
    const double x = f.box.x + slot * (double(c) + 0.15);
    double acc = 0;
    for (std::size_t s = 0; c < b.values.size() && s < b.values[c].size(); ++s) {
      const double v = b.values[c][s];
      if (!(v > 0)) continue;
      const double y_top = f.py(acc + v), y_bot = f.py(acc);
      const Rgb col = s < b.colours.size() ? b.colours[s] : category_colour(s);
      set_colour(cr, col);
      cairo_rectangle(cr, x, y_top, bw, y_bot - y_top);
      cairo_fill(cr);
      if (b.segment_labels && v >= 0.08 * ymax && y_bot - y_top >= 13) {
        const double lum = 0.299 * col.r + 0.587 * col.g + 0.114 * col.b;
        text(cr, x + bw / 2, (y_top + y_bot) / 2, format(b.segment_format.c_str(), v), 10, 0.5, 0.5, false, 0,
             lum < 0.5 ? Rgb{1, 1, 1} : Rgb{0.1, 0.1, 0.1});
      }
      acc += v;
    }
    text(cr, x + bw / 2, f.box.y + f.box.h + 6, b.categories[c], 12, 0.5, 0);
    if (c < b.bar_notes.size() && !b.bar_notes[c].empty())
      text(cr, x + bw / 2, f.py(acc) - 3, b.bar_notes[c], 10, 0.5, 1, false, 0, {0.35, 0.35, 0.35});
  }
  if (b.legend) {
    std::vector<LegendEntry> entries;
    for (std::size_t s = 0; s < b.stack_labels.size(); ++s)
      entries.push_back({b.stack_labels[s], s < b.colours.size() ? b.colours[s] : category_colour(s), Swatch::box});
    draw_legend(cv, f.box.x + f.box.w + 10, f.box.y, entries, b.legend_title);
  }
}

// ---------------------------------------------------------------------------------------------
// Lines and scatter

/// @brief One series of a line chart.
struct Series {
  std::string label;
  std::vector<double> x, y;     ///< [n] each; NaN points break the line and are not marked
  Rgb colour{0.12, 0.47, 0.71};
  bool line = true;             ///< join the points
  bool dashed = false;
  bool markers = false;         ///< a dot at every point
  std::vector<double> xerr;     ///< [n] optional horizontal error half-widths
  std::vector<bool> highlight;  ///< [n] optional: ring these points (e.g. best epochs)
};

/// @brief A line or scatter chart.
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::vector<double> vlines;  ///< x positions of dashed grey vertical lines (e.g. session starts)
  std::vector<std::string> vline_labels;  ///< [vlines] written at the top right of each line
  bool x_integer = false;      ///< x ticks on whole numbers only
  double x_min = kNaN, x_max = kNaN, y_min = kNaN, y_max = kNaN;  ///< NaN: from the data
  bool diagonal = false;       ///< draw y = x (dotted)
  bool legend = true;
  bool legend_right = true;    ///< legend inside the frame at the top right (else top left)
  std::string highlight_label; ///< legend entry for ringed points ("" for none)
};

/// @brief Draw `c` into `area`.
inline void draw_line_chart(Canvas& cv, const Rect& area, const LineChart& c) {
  cairo_t* cr = cv.cr();
  double xl = std::numeric_limits<double>::infinity(), xh = -xl, yl = xl, yh = -xl;
  for (const auto& s : c.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (std::isnan(s.x[i]) || std::isnan(s.y[i])) continue;
      const double e = i < s.xerr.size() && !std::isnan(s.xerr[i]) ? s.xerr[i] : 0;
      xl = std::min(xl, s.x[i] - e), xh = std::max(xh, s.x[i] + e);
      yl = std::min(yl, s.y[i]), yh = std::max(yh, s.y[i]);
    }
  if (!std::isfinite(xl)) xl = 0, xh = 1, yl = 0, yh = 1;
  const double ypad = (yh - yl) * 0.06 + 1e-9;
  const double x0 = std::isnan(c.x_min) ? xl : c.x_min, x1 = std::isnan(c.x_max) ? xh : c.x_max;
  const double y0 = std::isnan(c.y_min) ? yl - ypad : c.y_min, y1 = std::isnan(c.y_max) ? yh + ypad : c.y_max;
  const Frame f = draw_axes(cv, area, c.title, c.x_label, c.y_label, x0, x1, y0, y1, true, 12, c.x_integer);
  cairo_save(cr);
  cairo_rectangle(cr, f.box.x, f.box.y, f.box.w, f.box.h);
  cairo_clip(cr);
  if (c.diagonal) {
    const double lo = std::max(f.x0, f.y0), hi = std::min(f.x1, f.y1);
    cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
    const double d[] = {2, 3};
    cairo_set_dash(cr, d, 2, 0);
    cairo_move_to(cr, f.px(lo), f.py(lo));
    cairo_line_to(cr, f.px(hi), f.py(hi));
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  for (std::size_t k = 0; k < c.vlines.size(); ++k) {
    const double v = c.vlines[k];
    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    const double d[] = {6, 4};
    cairo_set_dash(cr, d, 2, 0);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, f.px(v), f.box.y);
    cairo_line_to(cr, f.px(v), f.box.y + f.box.h);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (k < c.vline_labels.size())
      text(cr, f.px(v) + 3, f.box.y + f.box.h - 4, c.vline_labels[k], 10, 0, 1, false, 0, {0.45, 0.45, 0.45});
  }
  for (const auto& s : c.series) {
    set_colour(cr, s.colour);
    const std::size_t n = std::min(s.x.size(), s.y.size());
    for (std::size_t i = 0; i < n && i < s.xerr.size(); ++i) {
      if (std::isnan(s.x[i]) || std::isnan(s.y[i]) || std::isnan(s.xerr[i])) continue;
      cairo_set_source_rgba(cr, s.colour.r, s.colour.g, s.colour.b, 0.35);
      cairo_set_line_width(cr, 1);
      cairo_move_to(cr, f.px(s.x[i] - s.xerr[i]), f.py(s.y[i]));
      cairo_line_to(cr, f.px(s.x[i] + s.xerr[i]), f.py(s.y[i]));
      cairo_stroke(cr);
    }
    set_colour(cr, s.colour);
    if (s.line) {
      cairo_set_line_width(cr, 2);
      if (s.dashed) {
        const double d[] = {6, 4};
        cairo_set_dash(cr, d, 2, 0);
      }
      bool pen = false;
      for (std::size_t i = 0; i < n; ++i) {
        if (std::isnan(s.x[i]) || std::isnan(s.y[i])) { pen = false; continue; }
        if (pen) cairo_line_to(cr, f.px(s.x[i]), f.py(s.y[i]));
        else cairo_move_to(cr, f.px(s.x[i]), f.py(s.y[i]));
        pen = true;
      }
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(s.x[i]) || std::isnan(s.y[i])) continue;
      if (s.markers) {
        cairo_set_source_rgba(cr, s.colour.r, s.colour.g, s.colour.b, s.line ? 1.0 : 0.7);
        cairo_new_sub_path(cr);
        cairo_arc(cr, f.px(s.x[i]), f.py(s.y[i]), s.line ? 2.5 : 3.5, 0, 2 * kPi);
        cairo_fill(cr);
      }
      if (i < s.highlight.size() && s.highlight[i]) {
        set_colour(cr, s.colour);
        cairo_set_line_width(cr, 1.5);
        cairo_new_sub_path(cr);
        cairo_arc(cr, f.px(s.x[i]), f.py(s.y[i]), 5, 0, 2 * kPi);
        cairo_stroke(cr);
      }
    }
  }
  cairo_restore(cr);
  if (c.legend && !c.series.empty()) {
    std::vector<LegendEntry> entries;
    for (const auto& s : c.series)
      entries.push_back({s.label, s.colour, s.line ? (s.dashed ? Swatch::dashed_line : Swatch::line) : Swatch::dot});
    if (!c.highlight_label.empty()) entries.push_back({c.highlight_label, {0.3, 0.3, 0.3}, Swatch::ring});
    const double w = legend_size(cv, entries).first;
    draw_legend(cv, c.legend_right ? f.box.x + f.box.w - w - 8 : f.box.x + 8, f.box.y + 8, entries);
  }
}

// ---------------------------------------------------------------------------------------------
// Pictures and colour bars

/// @brief Draw an RGB picture ([h, w, 3] bytes, row-major) scaled to fill `r` (nearest
/// neighbour when enlarged, so patch maps keep sharp cells; bilinear when reduced).
inline void draw_rgb(Canvas& cv, const Rect& r, const std::uint8_t* rgb, int w, int h) {
  if (w <= 0 || h <= 0) return;
  cairo_surface_t* img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_surface_flush(img);
  unsigned char* dst = cairo_image_surface_get_data(img);
  const int stride = cairo_image_surface_get_stride(img);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::uint8_t* p = rgb + (std::size_t(y) * std::size_t(w) + std::size_t(x)) * 3;
      reinterpret_cast<std::uint32_t*>(dst + std::size_t(y) * std::size_t(stride))[x] =
          (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | std::uint32_t(p[2]);
    }
  cairo_surface_mark_dirty(img);
  cairo_t* cr = cv.cr();
  cairo_save(cr);
  cairo_rectangle(cr, r.x, r.y, r.w, r.h);
  cairo_clip(cr);
  cairo_translate(cr, r.x, r.y);
  cairo_scale(cr, r.w / w, r.h / h);
  cairo_set_source_surface(cr, img, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), r.w >= w ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_BILINEAR);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(img);
}

/// @brief A vertical colour bar in `bar` (low values at the bottom) with tick labels on its right
/// (`ticks`, or about five nice ticks when empty) and an optional label turned along it.
inline void draw_colour_bar(Canvas& cv, const Rect& bar, const std::function<Rgb(double)>& cmap, double lo, double hi,
                            std::vector<double> ticks = {}, const std::string& label = "", double font = 10) {
  cairo_t* cr = cv.cr();
  if (!(hi > lo)) hi = lo + 1;
  cairo_pattern_t* grad = cairo_pattern_create_linear(0, bar.y + bar.h, 0, bar.y);
  for (int s = 0; s <= 32; ++s) {
    const Rgb c = cmap(s / 32.0);
    cairo_pattern_add_color_stop_rgb(grad, s / 32.0, c.r, c.g, c.b);
  }
  cairo_rectangle(cr, bar.x, bar.y, bar.w, bar.h);
  cairo_set_source(cr, grad);
  cairo_fill(cr);
  cairo_pattern_destroy(grad);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, bar.x, bar.y, bar.w, bar.h);
  cairo_stroke(cr);
  if (ticks.empty()) ticks = nice_ticks(lo, hi, 4);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  double right = bar.x + bar.w + 4;
  for (double t : ticks) {
    const double y = bar.y + bar.h - (t - lo) / (hi - lo) * bar.h;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, bar.x + bar.w, y);
    cairo_line_to(cr, bar.x + bar.w + 3, y);
    cairo_stroke(cr);
    const std::string s = tick_label(t, step);
    text(cr, bar.x + bar.w + 5, y, s, font, 0, 0.5);
    right = std::max(right, bar.x + bar.w + 5 + text_width(cr, s, font));
  }
  if (!label.empty()) text(cr, right + 4, bar.y + bar.h / 2, label, font, 0.5, 0, false, kPi / 2);
}

}  // namespace plot
