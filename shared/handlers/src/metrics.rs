//! Metrics an operator can alarm on, as CloudWatch embedded metric format (EMF) lines: one JSON
//! object per line on stdout, which Lambda's log pipeline turns into CloudWatch metrics without an
//! API call. Written when `SPARKPILOT_METRICS=emf` (the template sets it); a plain log line otherwise.

use crate::{Applies, DecisionRecord};
use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "sparkpilot";

/// One EMF line: `metrics` (name, value, unit) with the given dimensions at `time_s`.
pub fn emf_line(function: &str, time_s: f64, metrics: &[(&str, f64, &str)]) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": (time_s * 1_000.0).max(0.0) as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Function".into(), Value::from(function));
    for (name, value, _) in metrics {
        // EMF values must be numbers: a non-finite one is left out rather than written as null.
        if value.is_finite() {
            root.insert((*name).into(), json!(value));
        }
    }
    Value::Object(root).to_string()
}

/// What one scaling decision reports: that it was made, the guardrail changes, the settings that
/// wait (for the next run or the next stop), whether the reference rule stood in for the model, the
/// executors asked for, the burst signal, and the events over the SLA as the job reported them.
pub fn decision_metrics(record: &DecisionRecord) -> Vec<(&'static str, f64, &'static str)> {
    let waiting = record.actuation.iter().filter(|p| matches!(p.applies, Applies::NextJobRun | Applies::WhenStopped)).count();
    let over_sla = if record.inputs.latency_ms > record.inputs.sla_ms { record.inputs.input_rate } else { 0.0 };
    vec![
        ("Decisions", 1.0, "Count"),
        ("GuardrailChanges", record.guardrail_changes.len() as f64, "Count"),
        ("SettingsWaiting", waiting as f64, "Count"),
        ("ModelFallback", f64::from(u8::from(record.fallback.is_some())), "Count"),
        ("ExecutorsRequested", record.applied.executors as f64, "Count"),
        ("BurstSignal", f64::from(u8::from(record.inputs.burst_signal)), "None"),
        ("LatencyMs", record.inputs.latency_ms, "Milliseconds"),
        ("EventsPerSecondOverSla", over_sla, "Count/Second"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_name_each_metric_and_carry_its_value() {
        let line = emf_line("scaling-decision", 1_700_000_000.5, &[("Decisions", 1.0, "Count"), ("LatencyMs", f64::INFINITY, "Milliseconds")]);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_500u64);
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], NAMESPACE);
        assert_eq!(spec["Dimensions"], json!([["Function"]]));
        assert_eq!(spec["Metrics"][0], json!({"Name": "Decisions", "Unit": "Count"}));
        assert_eq!((v["Function"].as_str(), v["Decisions"].as_f64()), (Some("scaling-decision"), Some(1.0)));
        assert!(v.get("LatencyMs").is_none(), "a non-finite value is left out, not null");
        assert!(!line.contains('\n'));
    }
}
