//! `report.html`: a self-contained page with hand-written inline SVG charts.
//!
//! [`line_chart`] draws any list of named per-second [`Series`]; the page draws
//! requests/s by outcome, then (when the report has any) one chart with every
//! `extra_series` on the same time axis, so new producers need no chart code, then
//! latency percentiles (log scale) and in-flight.

use std::fmt::Write as _;

use super::Report;

/// One named line: one value per second, `None` where there is no value (a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Values, index = second.
    pub values: Vec<Option<f64>>,
    /// CSS color.
    pub color: String,
    /// Draw dashed.
    pub dashed: bool,
}

impl Series {
    /// A solid series from counts.
    pub fn counts(name: &str, values: &[u64], color: &str) -> Self {
        Self {
            name: name.to_string(),
            values: values.iter().map(|v| Some(*v as f64)).collect(),
            color: color.to_string(),
            dashed: false,
        }
    }

    /// A solid series from optional values.
    pub fn values(name: &str, values: &[Option<f64>], color: &str) -> Self {
        Self {
            name: name.to_string(),
            values: values.to_vec(),
            color: color.to_string(),
            dashed: false,
        }
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// Vertical scale of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear from zero.
    Linear,
    /// Base-10 logarithmic; values ≤ 0 are not drawn.
    Log,
}

/// A chart: title, y-axis label and unit suffix for ticks, scale and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the chart.
    pub title: String,
    /// Y-axis label.
    pub y_label: String,
    /// Vertical scale.
    pub scale: Scale,
    /// The lines.
    pub series: Vec<Series>,
}

/// A palette for series without a fixed color.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const W: f64 = 960.0;
const H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Formats a tick value compactly.
fn tick_label(v: f64, unit: &str) -> String {
    if unit == "ms" {
        return if v >= 1000.0 {
            format!("{}s", trim(v / 1000.0))
        } else {
            format!("{}ms", trim(v))
        };
    }
    if v >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Renders a chart as an `<svg>` element.
pub fn line_chart(chart: &Chart, unit: &str) -> String {
    let n = chart
        .series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let all = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for v in all {
        if v > 0.0 {
            lo = lo.min(v);
        }
        hi = hi.max(v);
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x_of = |i: f64| LEFT + pw * i / n as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(&chart.title)
    );
    // Y ticks and the value→y mapping.
    let ticks: Vec<f64>;
    let y_of: Box<dyn Fn(f64) -> Option<f64>>;
    match chart.scale {
        Scale::Linear => {
            let step = nice_step(hi.max(1.0), 5.0);
            let top = (hi.max(1.0) / step).ceil() * step;
            ticks = (0..=((top / step).round() as usize).min(20))
                .map(|i| i as f64 * step)
                .collect();
            y_of = Box::new(move |v| Some(TOP + ph * (1.0 - v / top)));
        }
        Scale::Log => {
            let lo = if lo.is_finite() { lo } else { 1.0 };
            let d0 = lo.log10().floor();
            let d1 = hi.max(lo * 10.0).log10().ceil().max(d0 + 1.0);
            ticks = (0..=((d1 - d0) as usize).min(12))
                .map(|i| 10f64.powf(d0 + i as f64))
                .collect();
            y_of = Box::new(move |v| {
                (v > 0.0).then(|| TOP + ph * (1.0 - (v.log10() - d0) / (d1 - d0)))
            });
        }
    }
    for t in &ticks {
        if let Some(y) = y_of(*t) {
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                esc(&tick_label(*t, unit))
            );
        }
    }
    // X ticks every nice number of seconds.
    let xstep = nice_step(n as f64, 10.0).max(1.0);
    let mut xs = 0.0;
    while xs <= n as f64 + 1e-9 {
        let x = x_of(xs);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#f0f0f0"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            trim(xs)
        );
        xs += xstep;
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle" fill="#444">seconds</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle" fill="#444">{}</text>"##,
        LEFT + pw / 2.0,
        H - 6.0,
        TOP + ph / 2.0,
        esc(&chart.y_label)
    );
    // Legend in one row under the title.
    let mut lx = LEFT;
    for s in &chart.series {
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="40" y2="40" stroke="{}" stroke-width="2.5"{dash}/><text x="{}" y="44">{}</text>"#,
            lx + 18.0,
            esc(&s.color),
            lx + 22.0,
            esc(&s.name)
        );
        lx += 34.0 + 7.0 * s.name.chars().count() as f64;
    }
    // Lines: a value at second i is drawn at the middle of [i, i+1); None breaks the line.
    for s in &chart.series {
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, v) in s.values.iter().enumerate() {
            match v.and_then(&y_of) {
                Some(y) => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x_of(i as f64 + 0.5), y));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            if run.len() == 1 {
                let (x, y) = run[0];
                let _ = write!(
                    svg,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#,
                    esc(&s.color)
                );
            } else {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"{dash} points="{}"/>"#,
                    esc(&s.color),
                    pts.join(" ")
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Requests per second by outcome.
pub fn rate_chart(r: &Report) -> Chart {
    let t = &r.timeline;
    let mut series = vec![
        Series::counts("offered", &t.offered, "#888888").dashed(),
        Series::counts("sent", &t.sent, "#1f77b4").dashed(),
        Series::counts("admitted (2xx)", &t.admitted, "#2ca02c"),
        Series::counts("rejected (429/503)", &t.rejected, "#ff7f0e"),
        Series::counts("failed (other)", &t.failed, "#9467bd"),
        Series::counts("errors", &t.errors, "#d62728"),
    ];
    if t.dropped.iter().any(|v| *v > 0) {
        series.push(Series::counts("dropped (cap)", &t.dropped, "#000000"));
    }
    Chart {
        title: "Requests per second by outcome".into(),
        y_label: "requests / s".into(),
        scale: Scale::Linear,
        series,
    }
}

/// Latency percentiles per second (log scale).
pub fn latency_chart(r: &Report) -> Chart {
    let get = |class: &str, p: &str| {
        r.timeline
            .latency_ms
            .get(class)
            .and_then(|m| m.get(p))
            .cloned()
            .unwrap_or_default()
    };
    Chart {
        title: "Latency from intended send time (responses received in each second)".into(),
        y_label: "latency".into(),
        scale: Scale::Log,
        series: vec![
            Series::values("admitted p50", &get("admitted", "p50"), "#98df8a"),
            Series::values("admitted p99", &get("admitted", "p99"), "#2ca02c"),
            Series::values("admitted p99.9", &get("admitted", "p999"), "#1b5e20").dashed(),
            Series::values("rejected p99", &get("rejected", "p99"), "#ff7f0e"),
            Series::values("all p99", &get("all", "p99"), "#555555").dashed(),
        ],
    }
}

/// Requests in flight (queued + on the wire).
pub fn in_flight_chart(r: &Report) -> Chart {
    Chart {
        title: "Requests in flight (queued + on the wire)".into(),
        y_label: "count".into(),
        scale: Scale::Linear,
        series: vec![Series::counts(
            "in flight (max)",
            &r.timeline.in_flight,
            "#1f77b4",
        )],
    }
}

/// Every extra series (e.g. desired and ready replicas), on the same time axis as the
/// rate chart; `None` when the report has none.
pub fn extra_chart(r: &Report) -> Option<Chart> {
    if r.extra_series.is_empty() {
        return None;
    }
    let series = r
        .extra_series
        .iter()
        .enumerate()
        .map(|(i, (name, values))| Series::values(name, values, PALETTE[(i + 1) % PALETTE.len()]))
        .collect();
    Some(Chart {
        title: "Extra series (last sample of each second)".into(),
        y_label: "value".into(),
        scale: Scale::Linear,
        series,
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.1} ms"))
}

/// The whole `report.html` page.
pub fn html(r: &Report) -> String {
    let s = &r.summary;
    let title = r
        .name
        .clone()
        .unwrap_or_else(|| "floodgate-load run".into());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f4f4f4}}\
         .fail{{color:#b00}}.pass{{color:#070}}svg{{display:block;margin:12px 0}}</style></head><body>\
         <h1>{t}</h1><p>{g} · schema {schema} · targets: {targets} · protocol {p:?} · {c} connections</p>",
        t = esc(&title),
        g = esc(&r.generator),
        schema = esc(&r.schema),
        targets = esc(&r
            .config
            .targets
            .iter()
            .map(|t| format!("{} {}", t.method, t.url))
            .collect::<Vec<_>>()
            .join(", ")),
        p = r.config.protocol,
        c = r.config.connections,
    );
    let _ = write!(
        page,
        "<table><tr><th>offered/s</th><th>sent/s</th><th>goodput (2xx/s)</th><th>peak goodput</th>\
         <th>admitted p50</th><th>admitted p99</th><th>rejected p99</th><th>unanswered</th><th>dropped</th></tr>\
         <tr><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        s.offered_rps,
        s.send_rps,
        s.goodput_rps,
        s.goodput_peak_rps,
        fmt_opt(s.latency_ms.admitted.p50),
        fmt_opt(s.latency_ms.admitted.p99),
        fmt_opt(s.latency_ms.rejected.p99),
        s.unanswered,
        s.dropped
    );
    if !r.checks.is_empty() {
        page.push_str("<table><tr><th>check</th><th>actual</th><th>verdict</th></tr>");
        for c in &r.checks {
            let (cls, word) = if c.passed {
                ("pass", "PASS")
            } else {
                ("fail", "FAIL")
            };
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"{cls}\">{word}</td></tr>",
                esc(&c.gate),
                c.actual
                    .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
            );
        }
        page.push_str("</table>");
    }
    page.push_str(&line_chart(&rate_chart(r), "rps"));
    // Right under the rates, on the same per-second axis: e.g. desired/ready replicas.
    if let Some(extra) = extra_chart(r) {
        page.push_str(&line_chart(&extra, "value"));
    }
    page.push_str(&line_chart(&latency_chart(r), "ms"));
    page.push_str(&line_chart(&in_flight_chart(r), "count"));
    page.push_str(
        "<p>Latency is measured from each request's intended send time (open loop), so time spent \
         waiting behind a stalled server counts. Rates are per second of arrival; see report.json \
         for every series.</p></body></html>",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(4000.0, 5.0), 1000.0);
        assert_eq!(nice_step(7.0, 10.0), 1.0);
    }

    #[test]
    fn chart_has_one_line_per_series_and_breaks_on_gaps() {
        let c = Chart {
            title: "t <x>".into(),
            y_label: "y".into(),
            scale: Scale::Log,
            series: vec![
                Series::values(
                    "a",
                    &[Some(1.0), Some(10.0), None, Some(5.0), Some(6.0)],
                    "red",
                ),
                Series::values("b", &[Some(100.0), Some(200.0)], "blue"),
            ],
        };
        let svg = line_chart(&c, "ms");
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains(">100ms<"));
    }
}
