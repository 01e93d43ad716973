//! A dependency-free SVG plot of load, executors and latency over time, one row per policy.

use crate::Timeline;
use std::fmt::Write;

const PANEL_W: f64 = 380.0;
const PANEL_H: f64 = 120.0;
const MARGIN_L: f64 = 150.0;
const GAP: f64 = 30.0;
const ROW_H: f64 = PANEL_H + 40.0;
const MAX_POINTS: usize = 600;

/// Reduce a series to at most `MAX_POINTS` points, keeping each bucket's maximum (spikes stay visible).
fn downsample(series: &[f32]) -> Vec<f64> {
    if series.len() <= MAX_POINTS {
        return series.iter().map(|&v| v as f64).collect();
    }
    let per = series.len().div_ceil(MAX_POINTS);
    series.chunks(per).map(|c| c.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64).collect()
}

fn polyline(out: &mut String, values: &[f64], x0: f64, y0: f64, ymax: f64, log: bool, colour: &str) {
    if values.is_empty() {
        return;
    }
    let scale = |v: f64| {
        if log {
            let lo = 1.0f64.ln();
            ((v.max(1.0)).ln() - lo) / ((ymax.max(10.0)).ln() - lo)
        } else if ymax > 0.0 {
            v / ymax
        } else {
            0.0
        }
    };
    let dx = PANEL_W / (values.len().max(2) - 1) as f64;
    let _ = write!(out, "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.2\" points=\"");
    for (i, v) in values.iter().enumerate() {
        let y = y0 + PANEL_H - PANEL_H * scale(*v).clamp(0.0, 1.0);
        let _ = write!(out, "{:.1},{:.1} ", x0 + i as f64 * dx, y);
    }
    out.push_str("\"/>\n");
}

fn frame(out: &mut String, x0: f64, y0: f64, title: &str) {
    let _ = writeln!(
        out,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{PANEL_W}\" height=\"{PANEL_H}\" fill=\"#fafafa\" stroke=\"#999\"/>\
         <text x=\"{x0}\" y=\"{}\" font-size=\"11\">{title}</text>",
        y0 - 4.0
    );
}

/// Render one row per (policy, timeline); `sla_ms` is drawn on the latency panels.
pub fn render(title: &str, rows: &[(String, Timeline)], sla_ms: f64) -> String {
    let width = MARGIN_L + 3.0 * PANEL_W + 3.0 * GAP;
    let height = 40.0 + rows.len() as f64 * ROW_H;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"10\" y=\"20\" font-size=\"14\">{}</text>",
        escape(title)
    );
    let load_max = rows.iter().flat_map(|(_, t)| t.load.iter()).fold(0.0f32, |a, &b| a.max(b)) as f64 * 1.05;
    let exec_max = rows.iter().flat_map(|(_, t)| t.executors.iter()).fold(1.0f32, |a, &b| a.max(b)) as f64 * 1.1;
    let lat_max = rows.iter().flat_map(|(_, t)| t.latency_ms.iter()).fold(sla_ms as f32 * 2.0, |a, &b| a.max(b)) as f64;
    for (i, (name, tl)) in rows.iter().enumerate() {
        let y0 = 45.0 + i as f64 * ROW_H;
        let _ = writeln!(out, "<text x=\"10\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>", y0 + PANEL_H / 2.0, escape(name));
        let x_load = MARGIN_L;
        let x_exec = MARGIN_L + PANEL_W + GAP;
        let x_lat = MARGIN_L + 2.0 * (PANEL_W + GAP);
        frame(&mut out, x_load, y0, &format!("load (grey) and processed (blue), events/s, max {load_max:.0}"));
        polyline(&mut out, &downsample(&tl.load), x_load, y0, load_max, false, "#999");
        polyline(&mut out, &downsample(&tl.processed), x_load, y0, load_max, false, "#1f77b4");
        frame(&mut out, x_exec, y0, &format!("running executors, max {exec_max:.0}"));
        polyline(&mut out, &downsample(&tl.executors), x_exec, y0, exec_max, false, "#2ca02c");
        frame(&mut out, x_lat, y0, &format!("latency ms (log), SLA {sla_ms:.0} ms dashed"));
        let sla_y = y0 + PANEL_H - PANEL_H * (sla_ms.ln() / lat_max.max(10.0).ln()).clamp(0.0, 1.0);
        let _ = writeln!(
            out,
            "<line x1=\"{x_lat}\" x2=\"{}\" y1=\"{sla_y:.1}\" y2=\"{sla_y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>",
            x_lat + PANEL_W
        );
        polyline(&mut out, &downsample(&tl.latency_ms), x_lat, y0, lat_max, true, "#ff7f0e");
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_row_per_policy_and_escapes_names() {
        let tl = Timeline { load: vec![1.0; 2_000], processed: vec![1.0; 2_000], executors: vec![2.0; 2_000], latency_ms: vec![300.0; 2_000], tier: vec![] };
        let svg = render("t<1>", &[("a".into(), tl.clone()), ("b&c".into(), tl)], 1_000.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 8);
        assert!(svg.contains("b&amp;c") && svg.contains("t&lt;1&gt;"));
    }
}
