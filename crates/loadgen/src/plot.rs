//! PNG line plots, drawn with plotters' bitmap backend: recovery curves (the share of dropped
//! clients back online, 0–100 %, against the seconds since the first drop), latency CDFs and
//! memory against users ([`line_png`] with its [`Axes`]).
//! Plotters is built without fonts (its text would need the machine's fonts), so labels are
//! drawn here pixel by pixel from font8x8's public-domain 8×8 glyphs: the plot looks the same
//! on every machine.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub label: String,
    /// `(x, y)` in order; for a share axis `y` is 0–1.
    pub points: Vec<(f64, f64)>,
}

/// What the axes show.
#[derive(Debug, Clone)]
pub struct Axes {
    /// Under the x axis.
    pub x_label: String,
    /// Above the y axis.
    pub y_label: String,
    /// The y axis: a share drawn as 0–100 %, or plain numbers from 0 to the largest `y`.
    pub y_share: bool,
}

impl Axes {
    /// A recovery curve's axes.
    pub fn recovery() -> Self {
        Self {
            x_label: "seconds since the first connection dropped".into(),
            y_label: "share back".into(),
            y_share: true,
        }
    }
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
/// Room around the plotting area for labels: left, right, top, bottom.
const MARGIN: (i32, i32, i32, i32) = (80, 60, 60, 70);
/// Glyphs are 8×8, drawn at this many pixels per dot.
const TEXT_SCALE: i32 = 2;
/// One color per series, in order.
const COLORS: [RGBColor; 5] = [
    RGBColor(200, 30, 30),
    RGBColor(30, 80, 200),
    RGBColor(20, 140, 60),
    RGBColor(150, 60, 170),
    RGBColor(220, 130, 0),
];
const GRID: RGBColor = RGBColor(225, 225, 225);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Writes recovery curves as a PNG plot at `path` (960×600), titled `title`.
pub fn recovery_png(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    line_png(path, title, &Axes::recovery(), series)
}

/// Writes `series` as a PNG line plot at `path` (960×600), titled `title`.
pub fn line_png(path: &Path, title: &str, axes: &Axes, series: &[Series]) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    draw(&root, title, axes, series).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// A round tick step that cuts `range` into about eight parts.
fn tick_step(range: f64) -> f64 {
    let raw = (range / 8.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(1e-9)
}

fn draw(root: &Area<'_>, title: &str, axes: &Axes, series: &[Series]) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1e-9f64, f64::max);
    let x_step = tick_step(x_max);
    let x_end = (x_max / x_step).ceil() * x_step;
    // A share is drawn in percent; other values as they are, from 0 to a round end.
    let scale = if axes.y_share { 100.0 } else { 1.0 };
    let y_max =
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1 * scale)).fold(1e-9, f64::max);
    let (y_end, y_step) = if axes.y_share {
        (100.0, 10.0)
    } else {
        let step = tick_step(y_max);
        ((y_max / step).ceil() * step, step)
    };
    let (left, right, top, bottom) = MARGIN;
    let plot_area = root.margin(top, bottom, left, right);
    let mut chart =
        ChartBuilder::on(&plot_area).build_cartesian_2d(0f64..x_end, 0f64..y_end).map_err(err)?;

    // Grid and axes first, curves on top.
    let ticks = (x_end / x_step).round() as usize;
    let xs: Vec<f64> = (0..=ticks).map(|i| i as f64 * x_step).collect();
    let y_ticks = (y_end / y_step).round() as usize;
    let ys: Vec<f64> = (0..=y_ticks).map(|i| i as f64 * y_step).collect();
    for x in &xs {
        chart.draw_series(LineSeries::new([(*x, 0.0), (*x, y_end)], GRID)).map_err(err)?;
    }
    for y in &ys {
        chart.draw_series(LineSeries::new([(0.0, *y), (x_end, *y)], GRID)).map_err(err)?;
    }
    chart.draw_series(LineSeries::new([(0.0, 0.0), (x_end, 0.0)], BLACK)).map_err(err)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (0.0, y_end)], BLACK)).map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or(BLACK);
        let points = s.points.iter().map(|(x, y)| (*x, y * scale));
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(err)?;
    }

    // Labels, in root pixels.
    let glyph = 8 * TEXT_SCALE;
    for x in &xs {
        let (px, py) = chart.backend_coord(&(*x, 0.0));
        text(root, px, py + 8, &number(*x, x_step), Anchor::Center)?;
    }
    for y in ys.iter().step_by(2) {
        let (px, py) = chart.backend_coord(&(0.0, *y));
        let label = if axes.y_share { format!("{y:.0}%") } else { number(*y, y_step) };
        text(root, px - 8, py - glyph / 2, &label, Anchor::Right)?;
    }
    let width = i32::try_from(WIDTH).unwrap_or(i32::MAX);
    let height = i32::try_from(HEIGHT).unwrap_or(i32::MAX);
    text(root, width / 2, 14, title, Anchor::Center)?;
    let y_label = axes.y_label.as_str();
    text(root, 4 + text_width(y_label) / 2, top - glyph - 8, y_label, Anchor::Center)?;
    text(
        root,
        left + (width - left - right) / 2,
        height - glyph - 12,
        &axes.x_label,
        Anchor::Center,
    )?;
    // Legend, bottom right inside the plot.
    let (_, y_bottom) = chart.backend_coord(&(0.0, 0.0));
    for (i, s) in series.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or(BLACK);
        let row = i32::try_from(series.len() - i).unwrap_or(1);
        let y = y_bottom - 16 - row * (glyph + 8);
        let x = width - right - 16;
        text(root, x, y, &s.label, Anchor::Right)?;
        let line_x = x - text_width(&s.label) - 48;
        let line = [(line_x, y + glyph / 2), (line_x + 36, y + glyph / 2)];
        root.draw(&PathElement::new(line, color.stroke_width(3))).map_err(err)?;
    }
    Ok(())
}

/// `value` with as many decimals as `step` needs.
fn number(value: f64, step: f64) -> String {
    if step >= 1.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// Where a label's `x` is.
#[derive(Clone, Copy)]
enum Anchor {
    Center,
    Right,
}

fn text_width(s: &str) -> i32 {
    i32::try_from(s.chars().count()).unwrap_or(0) * 8 * TEXT_SCALE
}

/// Draws `s` with its top at `y`, in black, with font8x8's basic glyphs (ASCII; anything else
/// is drawn as `?`).
fn text(root: &Area<'_>, x: i32, y: i32, s: &str, anchor: Anchor) -> Result<(), String> {
    let start = match anchor {
        Anchor::Center => x - text_width(s) / 2,
        Anchor::Right => x - text_width(s),
    };
    let glyphs = &font8x8::legacy::BASIC_LEGACY;
    for (i, c) in s.chars().enumerate() {
        let code = if c.is_ascii() { c as usize } else { '?' as usize };
        let Some(glyph) = glyphs.get(code) else { continue };
        let left = start + i32::try_from(i).unwrap_or(0) * 8 * TEXT_SCALE;
        for (row, bits) in (0i32..).zip(glyph.iter()) {
            for col in 0..8i32 {
                // Bit 0 is the leftmost dot.
                if bits & (1 << col) != 0 {
                    let (px, py) = (left + col * TEXT_SCALE, y + row * TEXT_SCALE);
                    let dot = [(px, py), (px + TEXT_SCALE - 1, py + TEXT_SCALE - 1)];
                    root.draw(&Rectangle::new(dot, BLACK.filled())).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        for (range, step) in [(10.0, 2.0), (35.0, 5.0), (1.0, 0.2), (120.0, 20.0)] {
            assert!((tick_step(range) - step).abs() < 1e-9, "{range}: {}", tick_step(range));
        }
    }

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        let series = [
            Series { label: "storm A".into(), points: vec![(0.0, 0.0), (1.5, 0.5), (3.0, 1.0)] },
            Series { label: "storm B".into(), points: vec![(0.0, 0.0), (7.2, 1.0)] },
        ];
        recovery_png(&path, "Recovery", &series).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");

        let memory = dir.path().join("memory.png");
        let axes = Axes { x_label: "users".into(), y_label: "MiB".into(), y_share: false };
        let line = Series { label: "RSS".into(), points: vec![(0.0, 40.0), (50_000.0, 900.0)] };
        line_png(&memory, "Memory", &axes, &[line]).unwrap();
        assert!(std::fs::read(&memory).unwrap().starts_with(b"\x89PNG"), "a PNG file");
    }
}
