//! Metrics an operator can alarm on, as CloudWatch embedded metric format (EMF) lines: one JSON
//! object per line on stdout, which Lambda's log pipeline turns into CloudWatch metrics without an
//! API call. Written when `SPARKPILOT_METRICS=emf` (the template sets it); a plain log line otherwise.

use crate::{Applies, ClusterBurst, DecisionRecord, Weights};
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

/// One metric of a line: name, value, CloudWatch unit.
pub type Metric = (&'static str, f64, &'static str);

/// The units a metric may carry: CloudWatch's `StandardUnit` names.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Print one EMF line to stdout if metrics are on. Lambda sends stdout to CloudWatch Logs, which
/// turns the line into metrics; one `println!` holds the stdout lock for the whole line, so lines
/// from concurrent invocations never interleave.
pub fn emit(on: bool, function: &str, time_s: f64, metrics: &[Metric]) {
    if on {
        println!("{}", emf_line(function, time_s, metrics));
    }
}

/// Every metric scaling-decision emits (the dashboard and alarms in template.yaml may use only these).
pub const SCALING_DECISION_METRICS: [&str; 9] = [
    "Decisions",
    "GuardrailChanges",
    "SettingsWaiting",
    "ModelFallback",
    "ExecutorsRequested",
    "BurstSignal",
    "LatencyMs",
    "EventsPerSecondOverSla",
    "RecordsRejected",
];

/// What one scaling decision reports: that it was made, the guardrail changes, the settings that
/// wait (for the next run or the next stop), whether the reference rule stood in for the model, the
/// executors asked for, the burst signal, the events over the SLA as the job reported them, and the
/// records of its batch that could not be used (`rejected`).
pub fn decision_metrics(record: &DecisionRecord, rejected: usize) -> Vec<Metric> {
    let waiting = record
        .actuation
        .iter()
        .filter(|p| matches!(p.applies, Applies::NextJobRun | Applies::WhenStopped))
        .count();
    let over_sla =
        if record.inputs.latency_ms > record.inputs.sla_ms { record.inputs.input_rate } else { 0.0 };
    vec![
        ("Decisions", 1.0, "Count"),
        ("GuardrailChanges", record.guardrail_changes.len() as f64, "Count"),
        ("SettingsWaiting", waiting as f64, "Count"),
        ("ModelFallback", f64::from(u8::from(record.fallback.is_some())), "Count"),
        ("ExecutorsRequested", record.applied.executors as f64, "Count"),
        ("BurstSignal", f64::from(u8::from(record.inputs.burst_signal)), "None"),
        ("LatencyMs", record.inputs.latency_ms, "Milliseconds"),
        ("EventsPerSecondOverSla", over_sla, "Count/Second"),
        ("RecordsRejected", rejected as f64, "Count"),
    ]
}

/// Every metric burst-signal emits.
pub const BURST_SIGNAL_METRICS: [&str; 7] = [
    "ClusterBurst",
    "BurstChanges",
    "EdgesReporting",
    "EdgesBursting",
    "EdgeEventsPerSecond",
    "RecordsAccepted",
    "RecordsRejected",
];

/// What one burst-signal batch reports: the cluster's burst state after it (0/1, the signal
/// scaling-decision acts on) and whether the batch changed it, the edges the cluster hears from and
/// how many of them burst, their summed load, and the batch's records used and refused. An edge
/// gateway that goes quiet shows as fewer edges reporting; one that sends garbage, as rejections.
pub fn burst_metrics(cluster: &ClusterBurst, changed: bool, accepted: usize, rejected: usize) -> Vec<Metric> {
    vec![
        ("ClusterBurst", f64::from(u8::from(cluster.burst)), "None"),
        ("BurstChanges", f64::from(u8::from(changed)), "Count"),
        ("EdgesReporting", cluster.edges.len() as f64, "Count"),
        ("EdgesBursting", cluster.edges_bursting as f64, "Count"),
        ("EdgeEventsPerSecond", cluster.total_rate, "Count/Second"),
        ("RecordsAccepted", accepted as f64, "Count"),
        ("RecordsRejected", rejected as f64, "Count"),
    ]
}

/// Every metric shuffle-router emits.
pub const SHUFFLE_ROUTER_METRICS: [&str; 10] = [
    "BlocksWritten",
    "BlocksMoved",
    "BlocksRead",
    "BlockFailures",
    "BytesWritten",
    "NvmeFallbacks",
    "OrphansLeft",
    "SweepOrphansRemoved",
    "SweepErrors",
    "RecordsRejected",
];

/// What one shuffle-router invocation did, counted as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShuffleCounts {
    pub written: usize,
    pub moved: usize,
    pub read: usize,
    /// Block writes, moves and reads that failed (a block that was not stored, a move or read that
    /// returned an error): blocks a job may not find.
    pub failures: usize,
    /// Bytes of the blocks written (before framing and compression).
    pub bytes_written: u64,
    /// Blocks put on S3 because NVMe is not offered where the function runs.
    pub nvme_fallbacks: usize,
    /// Old copies a write could not delete: the sweep's work.
    pub orphans_left: usize,
    pub swept: usize,
    pub sweep_errors: usize,
    /// Manifests (records) that could not be used at all.
    pub rejected: usize,
}

/// What one shuffle-router invocation reports. Failures and sweep errors are what to alarm on; a
/// steady count of NVMe fallbacks means the NVMe tier is configured but not shared (no EFS mount).
pub fn shuffle_metrics(c: &ShuffleCounts) -> Vec<Metric> {
    vec![
        ("BlocksWritten", c.written as f64, "Count"),
        ("BlocksMoved", c.moved as f64, "Count"),
        ("BlocksRead", c.read as f64, "Count"),
        ("BlockFailures", c.failures as f64, "Count"),
        ("BytesWritten", c.bytes_written as f64, "Bytes"),
        ("NvmeFallbacks", c.nvme_fallbacks as f64, "Count"),
        ("OrphansLeft", c.orphans_left as f64, "Count"),
        ("SweepOrphansRemoved", c.swept as f64, "Count"),
        ("SweepErrors", c.sweep_errors as f64, "Count"),
        ("RecordsRejected", c.rejected as f64, "Count"),
    ]
}

/// Every metric prewarmer emits.
pub const PREWARMER_METRICS: [&str; 5] =
    ["PrewarmWorkers", "PrewarmApplied", "PrewarmDeferred", "ForecastPeak", "SamplesIgnored"];

/// What one prewarmer run reports: the pre-initialised workers it wants, whether that was sent to
/// EMR Serverless now or deferred to the application's next stop (a job keeps it started), the
/// forecast peak it sized for, and history samples it could not use (unreadable or out of its
/// window). Deferred runs in a row mean the pre-warm never lands while the job runs.
pub fn prewarm_metrics(
    workers: u32,
    applies: Applies,
    forecast_peak: f64,
    samples_ignored: usize,
) -> Vec<Metric> {
    vec![
        ("PrewarmWorkers", f64::from(workers), "Count"),
        ("PrewarmApplied", f64::from(u8::from(applies == Applies::Now)), "Count"),
        ("PrewarmDeferred", f64::from(u8::from(applies == Applies::WhenStopped)), "Count"),
        ("ForecastPeak", forecast_peak, "Count/Second"),
        ("SamplesIgnored", samples_ignored as f64, "Count"),
    ]
}

/// Every metric meta-weights emits.
pub const META_WEIGHTS_METRICS: [&str; 5] =
    ["WeightAlpha", "WeightBeta", "WeightGamma", "RecentViolationShare", "RecordsRejected"];

/// What one meta-weights run reports: the weights the scaling policy now works with (alpha cost,
/// beta latency, from the meta model; gamma throughput, the scenario's, which the model does not
/// set), the share of recent decisions over the SLA it weighed them on, and the context changes of
/// its batch that were refused.
pub fn weights_metrics(weights: &Weights, violation_share: f64, rejected: usize) -> Vec<Metric> {
    let [_, _, gamma] = weights.scenario.weights();
    vec![
        ("WeightAlpha", weights.alpha, "None"),
        ("WeightBeta", weights.beta, "None"),
        ("WeightGamma", gamma, "None"),
        ("RecentViolationShare", violation_share, "None"),
        ("RecordsRejected", rejected as f64, "Count"),
    ]
}

/// The metrics each function emits, by function name.
pub fn metric_names(function: &str) -> &'static [&'static str] {
    match function {
        "scaling-decision" => &SCALING_DECISION_METRICS,
        "burst-signal" => &BURST_SIGNAL_METRICS,
        "shuffle-router" => &SHUFFLE_ROUTER_METRICS,
        "prewarmer" => &PREWARMER_METRICS,
        "meta-weights" => &META_WEIGHTS_METRICS,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_name_each_metric_and_carry_its_value() {
        let line = emf_line(
            "scaling-decision",
            1_700_000_000.5,
            &[("Decisions", 1.0, "Count"), ("LatencyMs", f64::INFINITY, "Milliseconds")],
        );
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

    /// Parse a helper's line back as CloudWatch would: the `_aws` block names exactly `names`, each
    /// with a valid unit, under the namespace and the `Function` dimension, and the line carries a
    /// number for each and nothing else.
    fn parse_back(function: &str, metrics: &[Metric], names: &[&str]) -> Value {
        let line = emf_line(function, 1_795_341_600.0, metrics);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let spec = &v["_aws"]["CloudWatchMetrics"];
        assert_eq!(spec.as_array().map(Vec::len), Some(1), "{line}");
        assert_eq!(spec[0]["Namespace"], NAMESPACE);
        assert_eq!(spec[0]["Dimensions"], json!([["Function"]]));
        assert_eq!(v["Function"], function);
        let declared: Vec<&str> =
            spec[0]["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(declared, names, "the line declares exactly the function's metrics, in order");
        for m in spec[0]["Metrics"].as_array().unwrap() {
            let (name, unit) = (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap());
            assert!(UNITS.contains(&unit), "{name}: {unit:?} is not a CloudWatch unit");
            assert!(v[name].is_number(), "{name} has no value: {line}");
        }
        let keys: Vec<&String> =
            v.as_object().unwrap().keys().filter(|k| *k != "_aws" && *k != "Function").collect();
        assert_eq!(keys.len(), names.len(), "only the declared metrics at the root: {line}");
        // At most 100 metrics per line (the EMF limit); names unique.
        let mut sorted = names.to_vec();
        sorted.sort();
        sorted.dedup();
        assert!(sorted.len() == names.len() && names.len() <= 100);
        v
    }

    #[cfg(feature = "policy")]
    #[tokio::test]
    async fn a_decisions_line_counts_it_and_its_rejected_records() {
        let backends = crate::Backends::embedded();
        let f =
            crate::scaling_decision::ScalingDecision::new(&crate::Settings::default(), &backends).unwrap();
        let out =
            crate::Handler::handle(&f, crate::Trigger::Schedule { time_s: 1_795_341_600.0 }).await.unwrap();
        let record = out.decision().expect("a decision").clone();
        let v = parse_back("scaling-decision", &decision_metrics(&record, 3), &SCALING_DECISION_METRICS);
        assert_eq!(
            (v["Decisions"].as_f64(), v["ModelFallback"].as_f64(), v["RecordsRejected"].as_f64()),
            (Some(1.0), Some(0.0), Some(3.0)),
            "{v}"
        );
        assert_eq!(v["ExecutorsRequested"].as_f64(), Some(record.applied.executors as f64));
    }

    #[test]
    fn burst_signal_reports_the_cluster_state_edges_and_rejections() {
        let mut cluster =
            ClusterBurst::new(control::cluster::ClusterConfig::default().cluster_detector).unwrap();
        cluster.burst = true;
        cluster.edges_bursting = 2;
        cluster.total_rate = 1_250.0;
        let v = parse_back("burst-signal", &burst_metrics(&cluster, true, 280, 4), &BURST_SIGNAL_METRICS);
        assert_eq!(
            (v["ClusterBurst"].as_f64(), v["BurstChanges"].as_f64(), v["EdgesBursting"].as_f64()),
            (Some(1.0), Some(1.0), Some(2.0)),
            "{v}"
        );
        assert_eq!(
            (v["RecordsAccepted"].as_f64(), v["RecordsRejected"].as_f64(), v["EdgeEventsPerSecond"].as_f64()),
            (Some(280.0), Some(4.0), Some(1_250.0)),
            "{v}"
        );
    }

    #[test]
    fn shuffle_router_reports_each_count() {
        let c = ShuffleCounts {
            written: 5,
            moved: 1,
            read: 2,
            failures: 1,
            bytes_written: 4_096,
            nvme_fallbacks: 3,
            orphans_left: 1,
            swept: 7,
            sweep_errors: 0,
            rejected: 2,
        };
        let v = parse_back("shuffle-router", &shuffle_metrics(&c), &SHUFFLE_ROUTER_METRICS);
        let got: Vec<f64> = SHUFFLE_ROUTER_METRICS.iter().map(|n| v[n].as_f64().unwrap()).collect();
        assert_eq!(got, [5.0, 1.0, 2.0, 1.0, 4_096.0, 3.0, 1.0, 7.0, 0.0, 2.0]);
    }

    #[test]
    fn prewarmer_tells_applied_from_deferred() {
        let now = parse_back("prewarmer", &prewarm_metrics(6, Applies::Now, 900.0, 1), &PREWARMER_METRICS);
        assert_eq!(
            (now["PrewarmApplied"].as_f64(), now["PrewarmDeferred"].as_f64(), now["PrewarmWorkers"].as_f64()),
            (Some(1.0), Some(0.0), Some(6.0))
        );
        let later =
            parse_back("prewarmer", &prewarm_metrics(6, Applies::WhenStopped, 900.0, 0), &PREWARMER_METRICS);
        assert_eq!(
            (later["PrewarmApplied"].as_f64(), later["PrewarmDeferred"].as_f64()),
            (Some(0.0), Some(1.0))
        );
    }

    #[test]
    fn meta_weights_reports_the_three_weights() {
        let w = Weights {
            alpha: 0.2,
            beta: 0.7,
            version: 3,
            scenario: control::Scenario::HealthcareCritical,
            time_s: 0.0,
            model_version: "m".into(),
        };
        let v = parse_back("meta-weights", &weights_metrics(&w, 0.25, 1), &META_WEIGHTS_METRICS);
        assert_eq!(
            (v["WeightAlpha"].as_f64(), v["WeightBeta"].as_f64(), v["WeightGamma"].as_f64()),
            (Some(0.2), Some(0.7), Some(0.1)),
            "{v}"
        );
        assert_eq!(
            (v["RecentViolationShare"].as_f64(), v["RecordsRejected"].as_f64()),
            (Some(0.25), Some(1.0))
        );
    }

    #[test]
    fn every_function_has_its_metric_list() {
        for f in crate::FUNCTIONS {
            assert!(!metric_names(f).is_empty(), "{f} emits no metrics");
        }
        assert!(metric_names("nope").is_empty());
    }
}
