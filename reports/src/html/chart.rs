//! SVG charts drawn by plotters (SVG backend only, its built-in font metrics, no system fonts),
//! returned as inline `<svg>` markup. Legends are drawn by the page in HTML beside each chart,
//! so they never cover data. Same input ⇒ the same bytes: plotters' SVG output has no ids,
//! timestamps or randomness.

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width and height of every chart, in SVG user units; the page scales them to its width.
pub(super) const SIZE: (u32, u32) = (880, 300);

/// Colours given to series in order (Tableau 10: distinguishable, and readable in print).
pub(super) const PALETTE: [(u8, u8, u8); 10] = [
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

/// The colour of series number `i`.
pub(super) fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The CSS form of series number `i`'s colour.
pub(super) fn css_colour(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// One named series of (x, y) points.
#[derive(Clone, Debug)]
pub(super) struct Series {
    /// Shown in the legend.
    pub name: String,
    /// Its points, x ascending.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (the second run of a comparison).
    pub dashed: bool,
    /// Index into `PALETTE`.
    pub colour: usize,
}

/// How the series of a chart are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// One line per series.
    Lines,
    /// Areas stacked in series order (the first at the bottom).
    Stacked,
}

/// A chart: axis descriptions (with units) and its series.
#[derive(Clone, Debug)]
pub(super) struct Chart {
    /// The x axis description, units included.
    pub x_desc: String,
    /// The y axis description, units included.
    pub y_desc: String,
    /// Lines or stacked areas.
    pub style: Style,
    /// The series.
    pub series: Vec<Series>,
    /// The x axis is HdrHistogram's percentile axis: `1/(1-p)` on a log scale, labelled as
    /// percentiles.
    pub percentile_axis: bool,
    /// A fixed top for the y axis (a share in percent tops at 100); else a round number
    /// a little above the highest value.
    pub y_top: Option<f64>,
}

/// The chart as inline SVG (no `xmlns`: inline SVG in HTML needs none, and the page holds no
/// URL at all), or a visible note when there is nothing to draw or drawing failed.
pub(super) fn svg(chart: &Chart) -> String {
    if chart.series.iter().all(|s| s.points.is_empty()) {
        return "<p class=\"empty\">No data.</p>".to_owned();
    }
    render(|root| draw(root, chart))
}

/// Inline SVG drawn by `paint` on a chart-sized area (no `xmlns`), or a visible note when
/// drawing failed.
pub(super) fn render(
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> String {
    let mut buf = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        paint(&root).and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => buf.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1),
        Err(e) => format!(
            "<p class=\"empty\">Chart not drawn: {}</p>",
            super::escape(&e)
        ),
    }
}

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, chart: &Chart) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let stacked = stack(chart);
    let points = || stacked.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(f64::MIN, f64::max);
    let x_min = points().map(|p| p.0).fold(f64::MAX, f64::min);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    let y_top = chart.y_top.unwrap_or_else(|| nice_top(y_max));
    if chart.percentile_axis {
        let x = (1.0..x_max.max(10.0) * 1.5).log_scale();
        return plot(root, chart, &stacked, x, 0.0..y_top, &|v: &f64| {
            percentile_label(*v)
        });
    }
    let x_hi = if x_max > x_min { x_max } else { x_min + 1.0 };
    plot(
        root,
        chart,
        &stacked,
        x_min..x_hi,
        0.0..y_top,
        &|v: &f64| trim(*v),
    )
}

fn plot<X>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    series: &[Series],
    x: X,
    y: std::ops::Range<f64>,
    x_label: &dyn Fn(&f64) -> String,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut c = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    c.configure_mesh()
        .x_desc(chart.x_desc.as_str())
        .y_desc(chart.y_desc.as_str())
        .x_label_formatter(x_label)
        .y_label_formatter(&|v: &f64| trim(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    match chart.style {
        Style::Lines => {
            for s in series {
                let style = colour(s.colour).stroke_width(2);
                let result = if s.dashed {
                    c.draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))
                        .map(|_| ())
                } else {
                    c.draw_series(LineSeries::new(s.points.iter().copied(), style))
                        .map(|_| ())
                };
                result.map_err(|e| e.to_string())?;
            }
        }
        Style::Stacked => {
            // Topmost band first, so each lower band paints over the part it owns.
            for s in series.iter().rev() {
                let fill = colour(s.colour).mix(0.85);
                c.draw_series(AreaSeries::new(s.points.iter().copied(), 0.0, fill))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// For a stacked chart, each series' points summed with the ones below it (all series share
/// their x values); otherwise the series as they are.
fn stack(chart: &Chart) -> Vec<Series> {
    if chart.style != Style::Stacked {
        return chart.series.clone();
    }
    let mut below: Vec<f64> = Vec::new();
    chart
        .series
        .iter()
        .map(|s| {
            if below.len() < s.points.len() {
                below.resize(s.points.len(), 0.0);
            }
            let points = (s.points.iter().zip(below.iter_mut()))
                .map(|(&(x, y), b)| {
                    *b += y;
                    (x, *b)
                })
                .collect();
            Series {
                points,
                ..s.clone()
            }
        })
        .collect()
}

/// A round number a little above `v` (1, 2 or 5 times a power of ten), for the y axis top.
pub(super) fn nice_top(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let v = v * 1.05;
    let power = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|t| *t >= v)
        .unwrap_or(10.0 * power)
}

/// An axis number without trailing zeros: `2`, `2.5`, `0.25`.
pub(super) fn trim(v: f64) -> String {
    crate::json::trim_decimals(v, 3)
}

/// The label of `1/(1-p)` on the percentile axis: `90%`, `99.9%`.
fn percentile_label(v: f64) -> String {
    if v < 1.0 {
        return String::new();
    }
    format!("{}%", trim(100.0 * (1.0 - 1.0 / v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_and_labels_are_round() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(9.0), 10.0);
        assert_eq!(nice_top(101.0), 120.0);
        assert_eq!(nice_top(570.0), 600.0);
        assert_eq!(nice_top(0.22), 0.25);
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(3.0), "3");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(1.0), "0%");
    }

    #[test]
    fn stacked_series_sum_from_the_bottom() {
        let s = |name: &str, ys: &[f64]| Series {
            name: name.into(),
            points: ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect(),
            dashed: false,
            colour: 0,
        };
        let chart = Chart {
            x_desc: String::new(),
            y_desc: String::new(),
            style: Style::Stacked,
            series: vec![s("a", &[1.0, 2.0]), s("b", &[3.0, 4.0])],
            percentile_axis: false,
            y_top: None,
        };
        let stacked = stack(&chart);
        assert_eq!(stacked[1].points, vec![(0.0, 4.0), (1.0, 6.0)]);
        let svg = svg(&chart);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("http"), "no URL in the inline SVG");
    }
}
