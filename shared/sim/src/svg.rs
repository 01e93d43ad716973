//! The tournament's `timeline.svg`, drawn with plotters: three panels over a shared time axis
//! (the load and what each policy processed, each policy's running executors, each policy's latency
//! on a log scale with the SLA), with axes, units and a legend naming every policy in full.

use crate::Timeline;
use plotters::prelude::*;

/// Most points drawn per series; longer series keep each bucket's maximum (spikes stay visible).
const MAX_POINTS: usize = 800;

/// The time axis: what one timeline step is.
#[derive(Debug, Clone, Copy)]
pub struct TimeAxis {
    pub label: &'static str,
    /// Axis units per timeline step (1/60 for one-second steps shown in minutes).
    pub per_step: f64,
}

impl TimeAxis {
    /// One point per second, shown in minutes.
    pub const SECONDS_AS_MINUTES: TimeAxis = TimeAxis { label: "time (min)", per_step: 1.0 / 60.0 };
    /// One point per environment step.
    pub const STEPS: TimeAxis = TimeAxis { label: "step", per_step: 1.0 };
}

fn downsample(series: &[f32], axis: TimeAxis) -> Vec<(f64, f64)> {
    let per = series.len().div_ceil(MAX_POINTS).max(1);
    series
        .chunks(per)
        .enumerate()
        .map(|(i, c)| ((i * per) as f64 * axis.per_step, c.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64))
        .collect()
}

fn colour(i: usize) -> RGBColor {
    // Tableau's ten, then plotters' palette.
    const TEN: [(u8, u8, u8); 10] = [
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
    match TEN.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Tick labels without decimals: ticks fall on whole minutes, events, executors and milliseconds.
fn whole(v: &f64) -> String {
    format!("{v:.0}")
}

fn max_of<'a>(series: impl Iterator<Item = &'a f32>, floor: f64) -> f64 {
    series.fold(floor as f32, |a, &b| if b.is_finite() { a.max(b) } else { a }) as f64
}

/// Render the timelines (the first seed's, one per policy); `sla_ms` is drawn on the latency panel.
pub fn render(
    title: &str,
    rows: &[(String, Timeline)],
    sla_ms: f64,
    axis: TimeAxis,
) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, title, rows, sla_ms, axis).map_err(|e| format!("drawing the timeline: {e}"))?;
    Ok(svg)
}

type Panel<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

fn draw(svg: &mut String, title: &str, rows: &[(String, Timeline)], sla_ms: f64, axis: TimeAxis) -> Drawn {
    let steps = rows.iter().map(|(_, t)| t.load.len()).max().unwrap_or(0).max(2);
    let x_max = (steps - 1) as f64 * axis.per_step;
    let root = SVGBackend::with_string(svg, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let panels = root.split_evenly((3, 1));
    draw_load(&panels[0], rows, axis, x_max)?;
    draw_executors(&panels[1], rows, axis, x_max)?;
    draw_latency(&panels[2], rows, axis, x_max, sla_ms)?;
    root.present()?;
    Ok(())
}

/// The legend, upper left, over a translucent box.
fn legend<'a, 'b: 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'b>, CT>) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn draw_load(panel: &Panel, rows: &[(String, Timeline)], axis: TimeAxis, x_max: f64) -> Drawn {
    let load_max = max_of(rows.iter().flat_map(|(_, t)| t.load.iter().chain(&t.processed)), 1.0) * 1.05;
    let mut chart = ChartBuilder::on(panel)
        .caption("Load and events processed", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..load_max)?;
    chart
        .configure_mesh()
        .x_desc(axis.label)
        .y_desc("events/s")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    if let Some((_, first)) = rows.first() {
        chart
            .draw_series(LineSeries::new(downsample(&first.load, axis), BLACK.mix(0.35).stroke_width(3)))?
            .label("load (the trace)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.35).stroke_width(3)));
    }
    for (i, (name, tl)) in rows.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(downsample(&tl.processed, axis), c.stroke_width(1)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)
}

fn draw_executors(panel: &Panel, rows: &[(String, Timeline)], axis: TimeAxis, x_max: f64) -> Drawn {
    let exec_max = max_of(rows.iter().flat_map(|(_, t)| t.executors.iter()), 1.0) * 1.1;
    let mut chart = ChartBuilder::on(panel)
        .caption("Running executors", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..exec_max)?;
    chart
        .configure_mesh()
        .x_desc(axis.label)
        .y_desc("executors")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (name, tl)) in rows.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(downsample(&tl.executors, axis), c.stroke_width(1)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)
}

/// Latency on a log scale, with the SLA dashed.
fn draw_latency(
    panel: &Panel,
    rows: &[(String, Timeline)],
    axis: TimeAxis,
    x_max: f64,
    sla_ms: f64,
) -> Drawn {
    let lat_max = max_of(rows.iter().flat_map(|(_, t)| t.latency_ms.iter()), sla_ms * 2.0).max(10.0) * 1.2;
    let mut chart = ChartBuilder::on(panel)
        .caption("Event latency (log scale)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, (1.0..lat_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(axis.label)
        .y_desc("latency (ms)")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let sla = RED.mix(0.8).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(vec![(0.0, sla_ms), (x_max, sla_ms)], 6, 4, sla))?
        .label(format!("SLA {sla_ms:.0} ms"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], sla));
    for (i, (name, tl)) in rows.iter().enumerate() {
        let c = colour(i);
        let points: Vec<(f64, f64)> =
            downsample(&tl.latency_ms, axis).into_iter().map(|(x, y)| (x, y.max(1.0))).collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(1)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_three_panels_with_axes_units_and_every_policy_in_the_legend() {
        let tl = Timeline {
            load: vec![100.0; 2_000],
            processed: vec![90.0; 2_000],
            executors: vec![2.0; 2_000],
            latency_ms: vec![300.0; 2_000],
            tier: vec![],
        };
        let long = "clairvoyant-schedule-with-a-long-name";
        let svg = render(
            "t<1>",
            &[("a".into(), tl.clone()), (format!("b&c {long}"), tl)],
            1_000.0,
            TimeAxis::SECONDS_AS_MINUTES,
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "time (min)",
            "events/s",
            "executors",
            "latency (ms)",
            "SLA 1000 ms",
            "load (the trace)",
            "Running executors",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        // Every policy once per panel's legend, names escaped and whole.
        assert_eq!(svg.matches(&format!("b&amp;c {long}")).count(), 3);
        assert!(svg.contains("t&lt;1&gt;"));
        // Tick labels on the time axis: 2,000 s is about 33 minutes.
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1))
            .map(|t| t.trim_end_matches("</text").trim())
            .collect();
        assert!(texts.contains(&"30"), "a 30-minute tick: {texts:?}");
        assert!(texts.contains(&"1000"), "a 1000 ms tick on the latency axis: {texts:?}");
    }
}
