//! A small scatter/line chart rendered to inline SVG (no script, no external assets).

use std::fmt::Write;

use super::escape::escape;

/// How a point is drawn: by the verdict of its trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Stable,
    Unstable,
    Failed,
    /// A concurrency level whose trial was stable but missed the objective.
    Missed,
}

impl Mark {
    fn color(self) -> &'static str {
        match self {
            Mark::Stable => "#2a9d3f",
            Mark::Unstable => "#e09b00",
            Mark::Failed | Mark::Missed => "#d62828",
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Mark::Stable => "stable",
            Mark::Unstable => "unstable",
            Mark::Failed => "failed",
            Mark::Missed => "missed SLO",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Point {
    pub x: f64,
    /// `None`: no reading (a failure before anything was measured), drawn on the x axis.
    pub y: Option<f64>,
    /// Half-height of an error bar (one standard deviation).
    pub err: Option<f64>,
    pub mark: Mark,
    /// Tooltip.
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// Join the points with a line (in x order).
    pub connect: bool,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic x axis in base 2 (contexts, batches, concurrency levels).
    pub log2_x: bool,
    pub series: Vec<Series>,
    /// Horizontal limit lines (a memory limit, the bounds of an objective): value and
    /// label.
    pub limits: Vec<(f64, String)>,
    /// What a stable point means here ("stable", or "passed" where an objective judges).
    pub stable_means: &'static str,
}

const W: f64 = 660.0;
const H: f64 = 340.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 52.0;

impl Chart {
    pub fn render(&self) -> String {
        let points: Vec<&Point> = self.series.iter().flat_map(|s| &s.points).collect();
        let tx = |x: f64| if self.log2_x { x.max(1e-9).log2() } else { x };
        let (mut x0, mut x1) = points
            .iter()
            .map(|p| tx(p.x))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        let pad = ((x1 - x0) * 0.06).max(0.5);
        let (x0, x1) = (x0 - pad, x1 + pad);
        let y_max = points
            .iter()
            .filter_map(|p| p.y.map(|y| y + p.err.unwrap_or(0.0)))
            .chain(self.limits.iter().map(|(v, _)| *v))
            .fold(0.0, f64::max);
        let y_ticks = nice_ticks(if y_max > 0.0 { y_max * 1.08 } else { 1.0 });
        let y1 = *y_ticks.last().unwrap_or(&1.0);

        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (tx(x) - x0) / (x1 - x0) * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y1 * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{title}" class="chart">"#,
            title = escape(&self.title)
        );
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="18" class="title">{}</text>"#,
            escape(&self.title)
        );
        // Axes and grid.
        for t in &y_ticks {
            let y = sy(*t);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(*t)
            );
        }
        for t in x_ticks(x0, x1, self.log2_x) {
            let x = sx(t);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#f0f0f0"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                fmt_x(t)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text>"#,
            LEFT + plot_w / 2.0,
            H - 10.0,
            escape(&self.x_label)
        );
        let _ = write!(
            svg,
            r#"<text x="16" y="{:.1}" text-anchor="middle" class="axis" transform="rotate(-90 16 {:.1})">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (value, label) in &self.limits {
            let y = sy(*value);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#d62828" stroke-dasharray="6 4" class="limit"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="limit-label">{}</text>"##,
                W - RIGHT,
                W - RIGHT - 4.0,
                y - 5.0,
                escape(label)
            );
        }
        // Series.
        for s in &self.series {
            if s.connect {
                let mut measured: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter_map(|p| p.y.map(|y| (p.x, y)))
                    .collect();
                measured.sort_by(|a, b| a.0.total_cmp(&b.0));
                if measured.len() > 1 {
                    let path: Vec<String> = measured
                        .iter()
                        .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                        .collect();
                    let _ = write!(
                        svg,
                        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                        path.join(" "),
                        s.color
                    );
                }
            }
            for p in &s.points {
                let (x, y) = (sx(p.x), sy(p.y.unwrap_or(0.0)));
                if let (Some(err), Some(v)) = (p.err, p.y) {
                    let _ = write!(
                        svg,
                        r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" class="err"/>"#,
                        sy((v - err).max(0.0)),
                        sy(v + err),
                        s.color
                    );
                }
                svg.push_str(&marker(x, y, p.mark, s.color, &p.label));
            }
        }
        // Legend.
        let mut lx = LEFT + 8.0;
        let ly = TOP - 10.0;
        let missed = points.iter().any(|p| p.mark == Mark::Missed);
        let marks = [Mark::Stable, Mark::Unstable, Mark::Failed, Mark::Missed];
        for mark in marks.into_iter().filter(|m| *m != Mark::Missed || missed) {
            let name = if mark == Mark::Stable {
                self.stable_means
            } else {
                mark.legend()
            };
            svg.push_str(&marker(lx, ly - 4.0, mark, "#555", name));
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{ly:.1}" class="legend">{name}</text>"#,
                lx + 8.0
            );
            lx += 24.0 + 7.0 * name.len() as f64;
        }
        for s in self
            .series
            .iter()
            .filter(|s| self.series.len() > 1 || s.connect)
        {
            let _ = write!(
                svg,
                r#"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{ly:.1}" class="legend">{}</text>"#,
                lx + 16.0,
                ly - 4.0,
                ly - 4.0,
                s.color,
                lx + 20.0,
                escape(&s.name)
            );
            lx += 28.0 + 7.0 * s.name.len() as f64;
        }
        svg.push_str("</svg>");
        svg
    }
}

/// A stable point is a filled circle, an unstable one a filled diamond, a failed one a
/// red cross, a level that missed its objective a hollow red ring: readable in print and
/// without colour.
fn marker(x: f64, y: f64, mark: Mark, series_color: &str, label: &str) -> String {
    let title = format!("<title>{}</title>", escape(label));
    match mark {
        Mark::Stable => format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{}" stroke="{series_color}" class="stable">{title}</circle>"#,
            mark.color()
        ),
        Mark::Unstable => format!(
            r#"<path d="M{x:.1} {:.1} l5 5 l-5 5 l-5 -5 z" fill="{}" stroke="{series_color}" class="unstable">{title}</path>"#,
            y - 5.0,
            mark.color()
        ),
        Mark::Failed => format!(
            r#"<path d="M{:.1} {:.1} l10 10 m0 -10 l-10 10" stroke="{}" stroke-width="2.5" class="failed">{title}</path>"#,
            x - 5.0,
            y - 5.0,
            mark.color()
        ),
        Mark::Missed => format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="white" stroke="{}" stroke-width="2.5" class="missed">{title}</circle>"#,
            mark.color()
        ),
    }
}

/// 0, then steps of 1, 2 or 5 × 10^k up to at least `max` (about 5 intervals).
fn nice_ticks(max: f64) -> Vec<f64> {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let mut ticks = vec![0.0];
    while *ticks.last().unwrap_or(&0.0) < max {
        let next = ticks.len() as f64 * step;
        ticks.push(next);
    }
    ticks
}

fn x_ticks(x0: f64, x1: f64, log2: bool) -> Vec<f64> {
    if log2 {
        (x0.ceil() as i32..=x1.floor() as i32)
            .map(|e| 2f64.powi(e))
            .collect()
    } else {
        nice_ticks(x1).into_iter().filter(|t| *t >= x0).collect()
    }
}

fn fmt_x(v: f64) -> String {
    if v >= 1024.0 && (v % 1024.0) == 0.0 {
        format!("{}k", v / 1024.0)
    } else {
        fmt_tick(v)
    }
}

fn fmt_tick(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_the_range_with_round_steps() {
        assert_eq!(nice_ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(1700.0).last(), Some(&2000.0));
        assert_eq!(
            x_ticks(11.5, 15.5, true),
            vec![4096.0, 8192.0, 16384.0, 32768.0]
        );
        assert_eq!(fmt_x(16384.0), "16k");
        assert_eq!(fmt_x(2.0), "2");
    }

    #[test]
    fn chart_marks_each_point_by_verdict_and_draws_the_limit() {
        let chart = Chart {
            title: "t <1>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log2_x: true,
            series: vec![Series {
                name: "s".into(),
                color: "#333",
                connect: true,
                points: vec![
                    Point {
                        x: 4096.0,
                        y: Some(600.0),
                        err: Some(5.0),
                        mark: Mark::Stable,
                        label: "a".into(),
                    },
                    Point {
                        x: 8192.0,
                        y: Some(900.0),
                        err: None,
                        mark: Mark::Unstable,
                        label: "b".into(),
                    },
                    Point {
                        x: 32768.0,
                        y: None,
                        err: None,
                        mark: Mark::Failed,
                        label: "c & d".into(),
                    },
                ],
            }],
            limits: vec![(1536.0, "budget 1536 MiB".into())],
            stable_means: "stable",
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;1&gt;"));
        // One marker per point plus one per legend entry.
        assert_eq!(svg.matches(r#"class="stable""#).count(), 2);
        assert_eq!(svg.matches(r#"class="unstable""#).count(), 2);
        assert_eq!(svg.matches(r#"class="failed""#).count(), 2);
        assert!(svg.contains("<title>c &amp; d</title>"));
        assert!(svg.contains(r#"class="limit""#) && svg.contains("budget 1536 MiB"));
        assert!(svg.contains("<polyline"));
    }
}
