//! The report's chart types, each a [`Figure`] drawn the same way on the PNG and SVG backends:
//! line panels on a log x-axis ([`LineFigure`]), grouped bars ([`BarFigure`]), annotated heatmaps
//! ([`HeatmapFigure`]), scatter grids with captions ([`ScatterFigure`]) and training-loss panels
//! ([`LossFigure`]). Panels are laid out in a grid under a title and a shared legend.
//!
//! All font sizes are even: plotters' bitmap text renderer places each glyph at
//! `trunc(size / 2 + glyph top)`, which for odd sizes puts glyphs whose tops lie on either side
//! of that line a pixel apart (a raised decimal point); with `size / 2` whole, all glyphs share
//! the baseline.
use super::format;
use super::render::{FAMILY, Figure};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Tableau 10: distinguishable, colour-blind friendlier than the plotters default palette.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The i-th palette colour (cycling).
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The colour of a data source, the same in every figure (math blue, code orange, general green).
pub fn source_color(source: &str, all: &[String]) -> RGBColor {
    match format::ABILITIES.iter().position(|a| *a == source) {
        Some(i) => color(i),
        None => color(3 + all.iter().position(|s| s == source).unwrap_or(0)),
    }
}

const TITLE_H: u32 = 40;
const GRID: RGBColor = RGBColor(225, 225, 225);
const TEXT: RGBColor = RGBColor(30, 30, 30);

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A categorical axis of `n` unit-wide slots, `[i, i + 1)` for category `i`, ticked at the
/// slot centres (plotters' key-point wrapper cannot format a plain f64 axis).
struct Slots(usize);

impl Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = value / self.0.max(1) as f64;
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }
    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    Line,
    Dashed,
    Square,
}

/// One legend entry.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub mark: Mark,
}

/// Height of the legend strip for `entries` laid out in rows across `width`.
fn legend_rows(entries: &[LegendEntry], width: u32) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let mut rows = 1;
    let mut x = 10u32;
    for e in entries {
        let w = 40 + 8 * e.label.chars().count() as u32;
        if x + w > width && x > 10 {
            rows += 1;
            x = 10;
        }
        x += w;
    }
    rows
}

const LEGEND_ROW_H: u32 = 24;

/// Draw the title, then the legend; returns the area left for panels.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[LegendEntry],
) -> Result<DrawingArea<DB, Shift>, String> {
    let (w, _) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(TITLE_H);
    top.draw(&Text::new(
        title.to_string(),
        (12, 10),
        (FAMILY, 20).into_font().color(&TEXT),
    ))
    .map_err(err)?;
    let rows = legend_rows(legend, w);
    if rows == 0 {
        return Ok(rest);
    }
    let (strip, rest) = rest.split_vertically(rows * LEGEND_ROW_H + 6);
    let font = (FAMILY, 14).into_font().color(&TEXT);
    let (mut x, mut y) = (10i32, 4i32);
    for e in legend {
        let (tw, _) = strip.estimate_text_size(&e.label, &font).map_err(err)?;
        let item = 34 + tw as i32 + 18;
        if x + item > w as i32 && x > 10 {
            x = 10;
            y += LEGEND_ROW_H as i32;
        }
        let cy = y + 9;
        match e.mark {
            Mark::Line => strip
                .draw(&PathElement::new(
                    vec![(x, cy), (x + 26, cy)],
                    e.color.stroke_width(3),
                ))
                .map_err(err)?,
            Mark::Dashed => {
                for s in [0, 10, 20] {
                    strip
                        .draw(&PathElement::new(
                            vec![(x + s, cy), (x + s + 6, cy)],
                            e.color.stroke_width(3),
                        ))
                        .map_err(err)?;
                }
            }
            Mark::Square => strip
                .draw(&Rectangle::new(
                    [(x + 6, cy - 7), (x + 20, cy + 7)],
                    e.color.filled(),
                ))
                .map_err(err)?,
        }
        strip
            .draw(&Text::new(
                e.label.clone(),
                (x + 32, cy),
                font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
        x += item;
    }
    Ok(rest)
}

/// The widest a figure should be: the report page's content width, so figures are shown at
/// their own pixel size, unscaled.
const MAX_WIDTH: u32 = 1120;

/// How many panels of width `panel_w` fit side by side, at most `columns`.
fn fit_columns(columns: usize, panel_w: u32) -> usize {
    columns.min((MAX_WIDTH / panel_w.max(1)) as usize).max(1)
}

/// Grid dimensions (rows, columns) for `n` panels in at most `columns` columns.
fn grid(n: usize, columns: usize) -> (usize, usize) {
    let cols = columns.clamp(1, n.max(1));
    (n.div_ceil(cols).max(1), cols)
}

/// Figure size for a grid of panels under a title and legend.
fn grid_size(n: usize, columns: usize, panel: (u32, u32), legend: &[LegendEntry]) -> (u32, u32) {
    let (rows, cols) = grid(n, columns);
    let w = (cols as u32 * panel.0).max(640);
    let lh = match legend_rows(legend, w) {
        0 => 0,
        r => r * LEGEND_ROW_H + 6,
    };
    (w, TITLE_H + lh + rows as u32 * panel.1)
}

/// A value range padded by 8% (or ±0.5 around a single value).
fn padded(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.08;
    (if from_zero && lo >= 0.0 { lo } else { lo - pad }, hi + pad)
}

/// One line of a [`LinePanel`].
#[derive(Debug, Clone)]
pub struct Line {
    pub color: RGBColor,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// One panel: lines over a log x-axis whose ticks are the data's own x values.
#[derive(Debug, Clone)]
pub struct LinePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
}

/// Panels of lines (scaling curves, ratio and k sweeps).
#[derive(Debug, Clone)]
pub struct LineFigure {
    pub title: String,
    pub legend: Vec<LegendEntry>,
    pub panels: Vec<LinePanel>,
    pub columns: usize,
}

const LINE_PANEL: (u32, u32) = (370, 330);

impl LineFigure {
    fn cols(&self) -> usize {
        fit_columns(self.columns, LINE_PANEL.0)
    }
}

impl Figure for LineFigure {
    fn size(&self) -> (u32, u32) {
        grid_size(self.panels.len(), self.cols(), LINE_PANEL, &self.legend)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = frame(root, &self.title, &self.legend)?;
        let areas = body.split_evenly(grid(self.panels.len(), self.cols()));
        for (panel, area) in self.panels.iter().zip(areas) {
            let xs: Vec<f64> = {
                let mut v: Vec<f64> = panel
                    .lines
                    .iter()
                    .flat_map(|l| l.points.iter().map(|p| p.0))
                    .filter(|x| *x > 0.0)
                    .collect();
                v.sort_by(f64::total_cmp);
                v.dedup_by(|a, b| (*a / *b - 1.0).abs() < 1e-9);
                v
            };
            let (xlo, xhi) = match (xs.first(), xs.last()) {
                (Some(a), Some(b)) => (a / 1.6, b * 1.6),
                _ => (0.1, 1.0),
            };
            let (ylo, yhi) = padded(
                panel
                    .lines
                    .iter()
                    .flat_map(|l| l.points.iter().map(|p| p.1)),
                false,
            );
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FAMILY, 16).into_font().color(&TEXT))
                .margin(10)
                .x_label_area_size(42)
                .y_label_area_size(58)
                .build_cartesian_2d((xlo..xhi).log_scale().with_key_points(xs.clone()), ylo..yhi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .label_style((FAMILY, 14).into_font().color(&TEXT))
                .axis_desc_style((FAMILY, 14).into_font().color(&TEXT))
                .x_label_formatter(&|v| format::fraction(*v))
                .y_label_formatter(&|v| format::num(*v))
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .draw()
                .map_err(err)?;
            for line in &panel.lines {
                let pts: Vec<(f64, f64)> =
                    line.points.iter().copied().filter(|p| p.0 > 0.0).collect();
                let style = line.color.stroke_width(2);
                if line.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 7, 5, style))
                        .map_err(err)?;
                    chart
                        .draw_series(
                            pts.iter()
                                .map(|&p| TriangleMarker::new(p, 6, line.color.filled())),
                        )
                        .map_err(err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(err)?;
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, line.color.filled())))
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

/// One group of bars (one colour across categories).
#[derive(Debug, Clone)]
pub struct BarSeries {
    pub color: RGBColor,
    /// One value per category; `None` draws no bar and writes `n/a`.
    pub values: Vec<Option<f64>>,
}

/// One panel of grouped bars.
#[derive(Debug, Clone)]
pub struct BarPanel {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
}

/// Panels of grouped bars (strategies, k values, ablations).
#[derive(Debug, Clone)]
pub struct BarFigure {
    pub title: String,
    pub legend: Vec<LegendEntry>,
    pub panels: Vec<BarPanel>,
    pub columns: usize,
}

impl BarFigure {
    fn cols(&self) -> usize {
        fit_columns(self.columns, self.panel_size().0)
    }

    fn panel_size(&self) -> (u32, u32) {
        let cats = self
            .panels
            .iter()
            .map(|p| p.categories.len())
            .max()
            .unwrap_or(1) as u32;
        let longest = self
            .panels
            .iter()
            .flat_map(|p| p.categories.iter().map(|c| c.chars().count()))
            .max()
            .unwrap_or(4) as u32;
        let per_cat = (longest * 7 + 14).max(64);
        ((cats * per_cat + 90).max(360), 330)
    }
}

impl Figure for BarFigure {
    fn size(&self) -> (u32, u32) {
        grid_size(
            self.panels.len(),
            self.cols(),
            self.panel_size(),
            &self.legend,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = frame(root, &self.title, &self.legend)?;
        let areas = body.split_evenly(grid(self.panels.len(), self.cols()));
        for (panel, area) in self.panels.iter().zip(areas) {
            let n = panel.categories.len().max(1);
            let (ylo, yhi) = padded(
                panel
                    .series
                    .iter()
                    .flat_map(|s| s.values.iter().flatten().copied()),
                true,
            );
            let cats = panel.categories.clone();
            let fmt_cat = move |v: &f64| {
                let i = v.floor().max(0.0) as usize;
                cats.get(i).cloned().unwrap_or_default()
            };
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FAMILY, 16).into_font().color(&TEXT))
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(58)
                .build_cartesian_2d(Slots(n), ylo..yhi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(&panel.y_label)
                .label_style((FAMILY, 14).into_font().color(&TEXT))
                .axis_desc_style((FAMILY, 14).into_font().color(&TEXT))
                .x_label_formatter(&fmt_cat)
                .y_label_formatter(&|v| format::num(*v))
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .draw()
                .map_err(err)?;
            let k = panel.series.len().max(1) as f64;
            let width = 0.8 / k;
            let value_font = (FAMILY, 12)
                .into_font()
                .color(&TEXT)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            for (j, s) in panel.series.iter().enumerate() {
                for (i, v) in s.values.iter().enumerate() {
                    let x0 = i as f64 + 0.1 + j as f64 * width;
                    let xc = x0 + width / 2.0;
                    match v {
                        Some(v) => {
                            chart
                                .draw_series(std::iter::once(Rectangle::new(
                                    [(x0, 0f64.max(ylo)), (x0 + width * 0.92, *v)],
                                    s.color.filled(),
                                )))
                                .map_err(err)?;
                            let top = if *v >= 0.0 { *v } else { 0.0 };
                            chart
                                .draw_series(std::iter::once(Text::new(
                                    format::num(*v),
                                    (xc, top),
                                    value_font.clone(),
                                )))
                                .map_err(err)?;
                        }
                        None => {
                            chart
                                .draw_series(std::iter::once(Text::new(
                                    "n/a".to_string(),
                                    (xc, 0f64.max(ylo)),
                                    value_font.clone(),
                                )))
                                .map_err(err)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// One annotated heatmap panel.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `values[row][column]`; `None` is drawn grey with `n/a`.
    pub values: Vec<Vec<Option<f64>>>,
    /// Written under the panel (e.g. which direction is better).
    pub note: String,
}

/// Heatmap panels side by side (forgetting matrices, CKA drift).
#[derive(Debug, Clone)]
pub struct HeatmapFigure {
    pub title: String,
    pub panels: Vec<Heatmap>,
    pub columns: usize,
}

impl HeatmapFigure {
    fn cols(&self) -> usize {
        fit_columns(self.columns, self.panel_size().0)
    }

    fn panel_size(&self) -> (u32, u32) {
        let label = self
            .panels
            .iter()
            .flat_map(|p| p.rows.iter().map(|r| r.chars().count()))
            .max()
            .unwrap_or(4) as u32;
        let cols = self
            .panels
            .iter()
            .map(|p| p.columns.len())
            .max()
            .unwrap_or(1) as u32;
        let rows = self.panels.iter().map(|p| p.rows.len()).max().unwrap_or(1) as u32;
        (
            (label * 8 + 40 + cols * 86).max(360),
            (rows * 38 + 130).max(220),
        )
    }
}

impl Figure for HeatmapFigure {
    fn size(&self) -> (u32, u32) {
        grid_size(self.panels.len(), self.cols(), self.panel_size(), &[])
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = frame(root, &self.title, &[])?;
        let areas = body.split_evenly(grid(self.panels.len(), self.cols()));
        let label = self
            .panels
            .iter()
            .flat_map(|p| p.rows.iter().map(|r| r.chars().count()))
            .max()
            .unwrap_or(4) as u32;
        for (panel, area) in self.panels.iter().zip(areas) {
            let (_, h) = area.dim_in_pixel();
            let (area, foot) = area.split_vertically(h.saturating_sub(26));
            foot.draw(&Text::new(
                panel.note.clone(),
                (12, 4),
                (FAMILY, 14).into_font().color(&RGBColor(90, 90, 90)),
            ))
            .map_err(err)?;
            let (nr, nc) = (panel.rows.len().max(1), panel.columns.len().max(1));
            let vals: Vec<f64> = panel
                .values
                .iter()
                .flatten()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let rows = panel.rows.clone();
            let cols = panel.columns.clone();
            let fmt_row = move |v: &f64| {
                // Rows run top to bottom: row 0 is drawn at the top.
                let i = nr as f64 - v.floor() - 1.0;
                rows.get(i.max(0.0) as usize).cloned().unwrap_or_default()
            };
            let fmt_col = move |v: &f64| {
                cols.get(v.floor().max(0.0) as usize)
                    .cloned()
                    .unwrap_or_default()
            };
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FAMILY, 16).into_font().color(&TEXT))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(label * 8 + 16)
                .build_cartesian_2d(Slots(nc), Slots(nr))
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .label_style((FAMILY, 14).into_font().color(&TEXT))
                .x_label_formatter(&fmt_col)
                .y_label_formatter(&fmt_row)
                .draw()
                .map_err(err)?;
            for (r, row) in panel.values.iter().enumerate() {
                let y = (nr - 1 - r) as f64;
                for (c, v) in row.iter().enumerate() {
                    let x = c as f64;
                    let (fill, ink, label) = match v {
                        Some(v) if v.is_finite() => {
                            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                            let fill = ViridisRGB.get_color(t as f32);
                            let ink = if t > 0.55 { BLACK } else { WHITE };
                            (fill, ink, format::num(*v))
                        }
                        _ => (RGBColor(200, 200, 200), BLACK, "n/a".to_string()),
                    };
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x + 0.02, y + 0.04), (x + 0.98, y + 0.96)],
                            fill.filled(),
                        )))
                        .map_err(err)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            label,
                            (x + 0.5, y + 0.5),
                            (FAMILY, 14)
                                .into_font()
                                .color(&ink)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        )))
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

/// One scatter panel: 2-D points coloured by source, with caption lines under it.
#[derive(Debug, Clone)]
pub struct ScatterPanel {
    pub title: String,
    /// (x, y, colour index into the figure's legend); empty draws a "no data" note.
    pub points: Vec<(f64, f64, usize)>,
    pub caption: Vec<String>,
}

/// A grid of scatter panels (t-SNE maps: models × layers).
#[derive(Debug, Clone)]
pub struct ScatterFigure {
    pub title: String,
    pub legend: Vec<LegendEntry>,
    pub panels: Vec<ScatterPanel>,
    pub columns: usize,
}

impl ScatterFigure {
    fn cols(&self) -> usize {
        self.columns.max(1)
    }

    /// Panel width: all columns fit the page, between 220 and 330 pixels.
    fn panel_w(&self) -> u32 {
        (MAX_WIDTH / self.cols() as u32).clamp(220, 330)
    }

    fn caption_h(&self) -> u32 {
        self.panels
            .iter()
            .map(|p| p.caption.len())
            .max()
            .unwrap_or(0) as u32
            * 18
            + 8
    }
}

impl Figure for ScatterFigure {
    fn size(&self) -> (u32, u32) {
        grid_size(
            self.panels.len(),
            self.cols(),
            (self.panel_w(), self.panel_w() - 10 + self.caption_h()),
            &self.legend,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = frame(root, &self.title, &self.legend)?;
        let areas = body.split_evenly(grid(self.panels.len(), self.cols()));
        let caption_h = self.caption_h();
        for (panel, area) in self.panels.iter().zip(areas) {
            let (_, h) = area.dim_in_pixel();
            let (plot, foot) = area.split_vertically(h.saturating_sub(caption_h));
            let (xlo, xhi) = padded(panel.points.iter().map(|p| p.0), false);
            let (ylo, yhi) = padded(panel.points.iter().map(|p| p.1), false);
            let mut chart = ChartBuilder::on(&plot)
                .caption(&panel.title, (FAMILY, 16).into_font().color(&TEXT))
                .margin(8)
                .build_cartesian_2d(xlo..xhi, ylo..yhi)
                .map_err(err)?;
            chart
                .plotting_area()
                .fill(&RGBColor(250, 250, 250))
                .map_err(err)?;
            chart
                .plotting_area()
                .draw(&Rectangle::new([(xlo, ylo), (xhi, yhi)], GRID))
                .map_err(err)?;
            if panel.points.is_empty() {
                chart
                    .plotting_area()
                    .draw(&Text::new(
                        "no projection".to_string(),
                        ((xlo + xhi) / 2.0, (ylo + yhi) / 2.0),
                        (FAMILY, 14)
                            .into_font()
                            .color(&RGBColor(120, 120, 120))
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))
                    .map_err(err)?;
            }
            let colors: Vec<RGBColor> = self.legend.iter().map(|e| e.color).collect();
            chart
                .draw_series(panel.points.iter().map(|&(x, y, c)| {
                    let col = colors.get(c).copied().unwrap_or(BLACK);
                    Circle::new((x, y), 3, col.mix(0.75).filled())
                }))
                .map_err(err)?;
            for (i, line) in panel.caption.iter().enumerate() {
                foot.draw(&Text::new(
                    line.clone(),
                    (10, 4 + 18 * i as i32),
                    (FAMILY, 14).into_font().color(&TEXT),
                ))
                .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// One training run's loss curves.
#[derive(Debug, Clone)]
pub struct LossPanel {
    pub title: String,
    /// (colour index into the legend, (step, loss) points).
    pub series: Vec<(usize, Vec<(f64, f64)>)>,
    /// (first step, name) of every stage after the first.
    pub stages: Vec<(f64, String)>,
}

/// Training-loss panels, one per cell.
#[derive(Debug, Clone)]
pub struct LossFigure {
    pub title: String,
    pub legend: Vec<LegendEntry>,
    pub panels: Vec<LossPanel>,
    pub columns: usize,
}

const LOSS_PANEL: (u32, u32) = (370, 280);

impl LossFigure {
    fn cols(&self) -> usize {
        fit_columns(self.columns, LOSS_PANEL.0)
    }
}

impl Figure for LossFigure {
    fn size(&self) -> (u32, u32) {
        grid_size(self.panels.len(), self.cols(), LOSS_PANEL, &self.legend)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = frame(root, &self.title, &self.legend)?;
        let areas = body.split_evenly(grid(self.panels.len(), self.cols()));
        for (panel, area) in self.panels.iter().zip(areas) {
            let all = || panel.series.iter().flat_map(|s| s.1.iter());
            let (xlo, xhi) = padded(all().map(|p| p.0), false);
            let (ylo, yhi) = padded(all().map(|p| p.1), false);
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FAMILY, 16).into_font().color(&TEXT))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(xlo.max(0.0)..xhi, ylo..yhi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("optimizer step")
                .y_desc("loss (nats/token)")
                .label_style((FAMILY, 12).into_font().color(&TEXT))
                .axis_desc_style((FAMILY, 14).into_font().color(&TEXT))
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format::num(*v))
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .draw()
                .map_err(err)?;
            for (start, name) in &panel.stages {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(*start, ylo), (*start, yhi)],
                        RGBColor(150, 150, 150).stroke_width(1),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        name.clone(),
                        (*start, yhi),
                        (FAMILY, 12).into_font().color(&RGBColor(90, 90, 90)),
                    )))
                    .map_err(err)?;
            }
            for (c, pts) in &panel.series {
                let col = self.legend.get(*c).map(|e| e.color).unwrap_or(BLACK);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}
