//! Plots a person can read (tick labels, axis titles, legends), drawn with plotters into a pixel
//! buffer and written as PNG: training losses, the confusion matrix, accuracy by checkpoint.
//!
//! Text uses DejaVu Sans compiled into the binary (assets/fonts, licence beside it), so a machine
//! without system fonts draws the same picture. Every plot can be drawn with [`Text::Off`], the
//! same layout without any text, which is how the tests find the text pixels.

use std::path::Path;
use std::sync::Once;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// The family name the font is registered under.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing the plot: {0}")]
    Draw(String),
    #[error("nothing to plot: {0}")]
    Empty(&'static str),
    #[error("encoding the PNG: {0}")]
    Encode(#[from] image::ImageError),
    /// The io error names the file (fsutil::write_atomic).
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// With or without text. Without: the same picture with no labels, titles, legend or numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    On,
    Off,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file compiled in; a failure here is a build defect.
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            panic!("assets/fonts/DejaVuSans.ttf is not a readable font");
        }
    });
}

/// Draws into a white `width` x `height` canvas.
fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), PlotError>,
) -> Result<RgbImage, PlotError> {
    register_font();
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(RgbImage::from_raw(width, height, buffer).expect("buffer of width x height x 3"))
}

/// Writes `image` as PNG at `path`, atomically.
pub fn write_png(image: &RgbImage, path: &Path) -> Result<(), PlotError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(crate::fsutil::write_atomic(path, bytes.get_ref())?)
}

/// One curve.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: [u8; 3],
    pub points: &'a [(f64, f64)],
    /// A dot on every point (few points that each mean something, e.g. checkpoints).
    pub dots: bool,
}

/// Where a panel's legend goes: where its curves are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperRight,
    MiddleRight,
    LowerRight,
}

/// One panel: its curves over a y axis of its own.
pub struct Panel<'a> {
    pub y_title: &'a str,
    pub legend: Legend,
    /// A fixed y range (e.g. 0 to 1 for probabilities); None: the data's, padded 5%.
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series<'a>>,
}

/// Panels stacked vertically over one shared x axis.
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_title: &'a str,
    pub panels: Vec<Panel<'a>>,
}

const PANEL_HEIGHT: u32 = 320;
const PLOT_WIDTH: u32 = 900;

fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn padded(min: f64, max: f64) -> (f64, f64) {
    let pad = ((max - min) * 0.05).max(1e-6);
    (min - pad, max + pad)
}

fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// The shared x axis: the finite points' span (one unit wide around a single x), widened 3% each side
/// where dots are drawn.
fn x_range(plot: &LinePlot) -> Result<(f64, f64), PlotError> {
    let x_span = span(plot.panels.iter().flat_map(|p| &p.series).flat_map(|s| finite(s.points).map(|p| p.0)))
        .ok_or(PlotError::Empty("no finite point"))?;
    let (x_min, x_max) = if x_span.1 > x_span.0 { x_span } else { (x_span.0 - 0.5, x_span.0 + 0.5) };
    // Dots at the ends would be cut in half by the plotting area's edge.
    let dots = plot.panels.iter().flat_map(|p| &p.series).any(|s| s.dots);
    Ok(if dots { (x_min - 0.03 * (x_max - x_min), x_max + 0.03 * (x_max - x_min)) } else { (x_min, x_max) })
}

/// Draws `plot`: tick labels on both axes, the axis titles, a legend per panel.
pub fn render_line_plot(plot: &LinePlot, text: Text) -> Result<RgbImage, PlotError> {
    let (x_min, x_max) = x_range(plot)?;
    let title_h = 36;
    let height = title_h + plot.panels.len() as u32 * PANEL_HEIGHT;
    render(PLOT_WIDTH, height, |root| {
        root.fill(&WHITE).map_err(draw_err)?;
        let (top, body) = root.split_vertically(title_h);
        if text == Text::On {
            let style = TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            top.draw_text(plot.title, &style, (PLOT_WIDTH as i32 / 2, title_h as i32 / 2)).map_err(draw_err)?;
        }
        let areas = body.split_evenly((plot.panels.len(), 1));
        for (k, (area, panel)) in areas.iter().zip(&plot.panels).enumerate() {
            let last = k + 1 == plot.panels.len();
            let y_span = panel.y_range.or_else(|| {
                span(panel.series.iter().flat_map(|s| finite(s.points).map(|p| p.1))).map(|(a, b)| padded(a, b))
            });
            let (y_min, y_max) = y_span.unwrap_or((0.0, 1.0));
            let mut chart = ChartBuilder::on(area)
                .margin_left(10)
                .margin_right(24)
                .margin_top(8)
                .margin_bottom(4)
                .x_label_area_size(if last { 52 } else { 28 })
                .y_label_area_size(72)
                .build_cartesian_2d(x_min..x_max, y_min..y_max)
                .map_err(draw_err)?;
            let labels = if text == Text::On { 8 } else { 0 };
            let mut mesh = chart.configure_mesh();
            mesh.x_labels(labels)
                .y_labels(if text == Text::On { 6 } else { 0 })
                .label_style((FONT, 15))
                .axis_desc_style((FONT, 16))
                .light_line_style(RGBColor(236, 236, 236))
                .bold_line_style(RGBColor(214, 214, 214))
                .x_label_formatter(&|x| short_number(*x))
                .y_label_formatter(&|y| short_number(*y));
            if text == Text::On {
                mesh.y_desc(panel.y_title);
                if last {
                    mesh.x_desc(plot.x_title);
                }
            }
            mesh.draw().map_err(draw_err)?;
            for series in &panel.series {
                let [r, g, b] = series.color;
                let color = RGBColor(r, g, b);
                if series.dots {
                    chart
                        .draw_series(finite(series.points).map(|p| Circle::new(p, 4, color.filled())))
                        .map_err(draw_err)?;
                }
                let drawn = chart
                    .draw_series(LineSeries::new(finite(series.points), color.stroke_width(2)))
                    .map_err(draw_err)?;
                if text == Text::On {
                    drawn
                        .label(series.name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
                }
            }
            if text == Text::On {
                chart
                    .configure_series_labels()
                    .position(match panel.legend {
                        Legend::UpperRight => SeriesLabelPosition::UpperRight,
                        Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
                        Legend::LowerRight => SeriesLabelPosition::LowerRight,
                    })
                    .label_font((FONT, 15))
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(180, 180, 180))
                    .draw()
                    .map_err(draw_err)?;
            }
        }
        Ok(())
    })
}

/// Draws `plot` and writes it as PNG.
pub fn write_line_plot(plot: &LinePlot, path: &Path) -> Result<(), PlotError> {
    write_png(&render_line_plot(plot, Text::On)?, path)
}

/// A tick label: no more digits than a reader needs (1200 -> "1200", 0.25 -> "0.25", 1e-5 -> "1e-5").
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Validation accuracy (0 to 1) by checkpoint epoch, as a line with a dot per checkpoint; the y
/// axis in percent.
pub fn render_accuracy_by_epoch(points: &[(f64, f64)], text: Text) -> Result<RgbImage, PlotError> {
    let percent: Vec<(f64, f64)> = points.iter().map(|&(e, a)| (e, 100.0 * a)).collect();
    let (lo, hi) = span(finite(&percent).map(|p| p.1)).ok_or(PlotError::Empty("no finite accuracy"))?;
    let (lo, hi) = (lo.min(hi - 1.0), hi.max(lo + 1.0));
    let y_range = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo));
    let plot = LinePlot {
        title: "Validation accuracy by checkpoint",
        x_title: "epoch",
        panels: vec![Panel {
            y_title: "validation accuracy (%)",
            legend: Legend::LowerRight,
            y_range: Some(y_range),
            series: vec![Series { name: "SVM on D's features", color: [36, 88, 166], points: &percent, dots: true }],
        }],
    };
    render_line_plot(&plot, text)
}

/// Writes the accuracy-by-epoch plot of `points` ((epoch, accuracy in 0..1)) as PNG at `path`.
pub fn write_accuracy_by_epoch(points: &[(f64, f64)], path: &Path) -> Result<(), PlotError> {
    write_png(&render_accuracy_by_epoch(points, Text::On)?, path)
}

/// Text on white.
const DARK: RGBColor = RGBColor(29, 35, 42);
const CELL: u32 = 60;
const NAMES_W: u32 = 110;
const HEADER_H: u32 = 80;

/// The confusion matrix (`counts[true][predicted]`) as a grid: class names on both axes, each
/// cell's count written in it and shaded by its share of the row (the class's recall on the
/// diagonal), each row's accuracy at its end.
pub fn render_confusion(counts: &[Vec<usize>], names: &[&str], text: Text) -> Result<RgbImage, PlotError> {
    let k = counts.len() as u32;
    if k == 0 {
        return Err(PlotError::Empty("no classes"));
    }
    let name = |i: usize| names.get(i).map_or(format!("class {i}"), |n| n.to_string());
    let (width, height) = (NAMES_W + k * CELL + 90, HEADER_H + k * CELL + 16);
    render(width, height, |root| {
        root.fill(&WHITE).map_err(draw_err)?;
        let style = |size: u32, h: HPos, color: &'static RGBColor| {
            TextStyle::from((FONT, size).into_font()).color(color).pos(Pos::new(h, VPos::Center))
        };
        let put = |s: &str, st: &TextStyle, at: (i32, i32)| -> Result<(), PlotError> {
            if text == Text::On {
                root.draw_text(s, st, at).map_err(draw_err)?;
            }
            Ok(())
        };
        put("predicted class", &style(16, HPos::Center, &DARK), ((NAMES_W + k * CELL / 2) as i32, 16))?;
        put("true class", &style(16, HPos::Right, &DARK), ((NAMES_W - 8) as i32, 16))?;
        put("accuracy", &style(14, HPos::Center, &DARK), ((NAMES_W + k * CELL + 45) as i32, (HEADER_H - 14) as i32))?;
        for j in 0..k as usize {
            // Column names alternate between two lines so that long names do not collide.
            let y = HEADER_H as i32 - if j % 2 == 0 { 38 } else { 16 };
            put(&name(j), &style(13, HPos::Center, &DARK), ((NAMES_W + j as u32 * CELL + CELL / 2) as i32, y))?;
        }
        for (i, row) in counts.iter().enumerate() {
            let total = row.iter().sum::<usize>();
            let top = (HEADER_H + i as u32 * CELL) as i32;
            put(&name(i), &style(14, HPos::Right, &DARK), ((NAMES_W - 8) as i32, top + CELL as i32 / 2))?;
            for (j, &c) in row.iter().enumerate() {
                let share = c as f64 / total.max(1) as f64;
                let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
                let left = (NAMES_W + j as u32 * CELL) as i32;
                let cell = [(left + 1, top + 1), (left + CELL as i32 - 1, top + CELL as i32 - 1)];
                root.draw(&Rectangle::new(cell, RGBColor(shade(8.0), shade(48.0), shade(107.0)).filled()))
                    .map_err(draw_err)?;
                let ink = if share > 0.5 { &WHITE } else { &DARK };
                put(&c.to_string(), &style(15, HPos::Center, ink), (left + CELL as i32 / 2, top + CELL as i32 / 2))?;
            }
            let accuracy = row.get(i).map_or(0.0, |&d| 100.0 * d as f64 / total.max(1) as f64);
            put(
                &format!("{accuracy:.1}%"),
                &style(14, HPos::Center, &DARK),
                ((NAMES_W + k * CELL + 45) as i32, top + CELL as i32 / 2),
            )?;
        }
        let frame = [(NAMES_W as i32, HEADER_H as i32), ((NAMES_W + k * CELL) as i32, (HEADER_H + k * CELL) as i32)];
        root.draw(&Rectangle::new(frame, RGBColor(180, 180, 180))).map_err(draw_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark pixels (text, lines) in the rectangle [x0, x1) x [y0, y1).
    fn ink(image: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        (y0..y1.min(image.height()))
            .flat_map(|y| (x0..x1.min(image.width())).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0.iter().all(|&c| c < 140))
            .count()
    }

    fn curve(n: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..n).map(|i| (10.0 * i as f64, f(i as f64))).collect()
    }

    fn losses(shift: f64) -> RgbImage {
        let (ld, lg) = (curve(50, |i| 1.4 - 0.01 * i + shift), curve(50, |i| 0.7 + 0.02 * i));
        let (dx, dgz) = (curve(50, |i| 0.5 + 0.005 * i), curve(50, |i| 0.5 - 0.004 * i));
        let plot = LinePlot {
            title: "t",
            x_title: "step",
            panels: vec![
                Panel {
                    y_title: "loss",
                    legend: Legend::UpperRight,
                    y_range: None,
                    series: vec![
                        Series { name: "D loss", color: [200, 30, 30], points: &ld, dots: false },
                        Series { name: "G loss", color: [30, 60, 200], points: &lg, dots: false },
                    ],
                },
                Panel {
                    y_title: "D output",
                    legend: Legend::UpperRight,
                    y_range: Some((0.0, 1.0)),
                    series: vec![
                        Series { name: "D(x)", color: [200, 30, 30], points: &dx, dots: false },
                        Series { name: "D(G(z))", color: [30, 60, 200], points: &dgz, dots: false },
                    ],
                },
            ],
        };
        render_line_plot(&plot, Text::On).unwrap()
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short_number(1200.0), "1200");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(1.0), "1");
        assert_eq!(short_number(0.00001), "1e-5");
    }

    #[test]
    fn the_loss_plot_follows_its_data_and_nothing_else() {
        let a = losses(0.0);
        assert_eq!(a.dimensions(), (PLOT_WIDTH, 36 + 2 * PANEL_HEIGHT));
        assert_eq!(a, losses(0.0), "the same data, the same picture");
        let b = losses(0.3);
        assert_ne!(a, b, "other data, another picture");
        // Only the top panel (the losses) moved; D's outputs panel below is the same.
        let rows = |img: &RgbImage, y0: u32| {
            img.rows().skip(y0 as usize).flat_map(|r| r.flat_map(|p| p.0)).collect::<Vec<u8>>()
        };
        assert_eq!(rows(&a, 36 + PANEL_HEIGHT + 40), rows(&b, 36 + PANEL_HEIGHT + 40));
    }

    #[test]
    fn axis_labels_are_drawn_where_they_belong() {
        let points = curve(20, |i| i * i);
        let plot = |text| {
            let series = vec![Series { name: "a curve", color: [200, 30, 30], points: &points, dots: false }];
            render_line_plot(
                &LinePlot {
                    title: "A title",
                    x_title: "step",
                    panels: vec![Panel { y_title: "value", legend: Legend::UpperRight, y_range: None, series }],
                },
                text,
            )
            .unwrap()
        };
        let (with, without) = (plot(Text::On), plot(Text::Off));
        assert_eq!(with.dimensions(), without.dimensions());
        let bottom = 36 + PANEL_HEIGHT;
        // Left of the y axis: tick numbers and the axis title; under the x axis: the same.
        let y_labels = ((0, 76), (36, bottom - 56));
        let x_labels = ((90, PLOT_WIDTH), (bottom - 48, bottom));
        let title = ((0, PLOT_WIDTH), (0, 36));
        for (what, (xs, ys)) in [("y labels", y_labels), ("x labels", x_labels), ("title", title)] {
            let (on, off) = (ink(&with, xs, ys), ink(&without, xs, ys));
            assert!(on > 150 && off == 0, "{what}: {on} dark pixels with text, {off} without");
        }
        // The legend names the curve: text inside the plotting area, top right.
        assert!(ink(&with, (600, PLOT_WIDTH - 24), (44, 110)) > ink(&without, (600, PLOT_WIDTH - 24), (44, 110)) + 50);
    }

    #[test]
    fn the_confusion_matrix_names_its_classes_and_counts() {
        let names = ["airplane", "automobile", "bird"];
        let counts = vec![vec![8, 1, 1], vec![2, 7, 1], vec![0, 3, 7]];
        let (with, without) = (
            render_confusion(&counts, &names, Text::On).unwrap(),
            render_confusion(&counts, &names, Text::Off).unwrap(),
        );
        let (w, h) = with.dimensions();
        // Row names left of the grid, column names above it.
        assert!(ink(&with, (0, NAMES_W), (HEADER_H, h)) > 200 && ink(&without, (0, NAMES_W), (HEADER_H, h)) == 0);
        assert!(
            ink(&with, (NAMES_W, NAMES_W + 3 * CELL), (0, HEADER_H - 2)) > 200
                && ink(&without, (NAMES_W, NAMES_W + 3 * CELL), (0, HEADER_H - 2)) == 0
        );
        // Each count is written in its cell (the picture changes with one count), the shading too.
        let mut other = counts.clone();
        other[2][1] = 4;
        let changed = render_confusion(&other, &names, Text::On).unwrap();
        assert_ne!(with, changed);
        let cell = ((NAMES_W + CELL + 5, NAMES_W + 2 * CELL - 5), (HEADER_H + 5, HEADER_H + CELL - 5));
        assert!(ink(&with, cell.0, cell.1) > 10, "the diagonal cell (7 of 10) has its number");
        assert!(w > NAMES_W + 3 * CELL);
        // Darker cells for larger shares: the diagonal's 8 of 10 against row 0's 1 of 10.
        let shade = |x: u32, y: u32| with.get_pixel(x, y).0[0];
        assert!(shade(NAMES_W + 3, HEADER_H + 3) < shade(NAMES_W + CELL + 3, HEADER_H + 3));
    }

    #[test]
    fn accuracy_by_epoch_is_plotted_and_written() {
        let a = render_accuracy_by_epoch(&[(5.0, 0.61), (10.0, 0.66), (15.0, 0.70), (20.0, 0.69)], Text::On).unwrap();
        let b = render_accuracy_by_epoch(&[(5.0, 0.61), (10.0, 0.60), (15.0, 0.70), (20.0, 0.69)], Text::On).unwrap();
        assert_ne!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accuracy.png");
        write_accuracy_by_epoch(&[(1.0, 0.5)], &path).unwrap();
        let read = image::open(&path).unwrap().to_rgb8();
        assert_eq!(read.dimensions(), (PLOT_WIDTH, 36 + PANEL_HEIGHT), "one point is a plot too");
        assert!(matches!(render_accuracy_by_epoch(&[], Text::On), Err(PlotError::Empty(_))));
    }
}
