//! Records written to the log as JSON objects, not as strings inside one.
//!
//! tracing's JSON formatter writes a field's value as a string: a decision record logged through it
//! arrives as `"decision": "{\"time_s\":…}"`, escaped JSON that CloudWatch Logs Insights (and `jq`
//! without `fromjson`) cannot look into. A record line is one JSON object per line on stdout, in the
//! shape of the tracing lines (`level`, `target`, `message`) with a `type` to select it by and the
//! record as a nested object under its type's name, so Logs Insights discovers its fields as
//! `decision.applied.executors`, `decision.inputs.latency_ms`, and so on. Lambda passes a JSON
//! line through unchanged under `LogFormat: JSON`; the OpenFaaS watchdog logs it as it is.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// The line for `record` of kind `kind`: `{"level", "target", "type": kind, "message", kind: record}`.
/// The record is written straight into the line (a `RawValue` of JSON already made is copied as
/// it is).
pub fn record_line<T: Serialize + ?Sized>(target: &str, kind: &str, message: &str, record: &T) -> String {
    struct Line<'a, T: ?Sized>(&'a str, &'a str, &'a str, &'a T);
    impl<T: Serialize + ?Sized> Serialize for Line<'_, T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Line(target, kind, message, record) = self;
            let mut m = s.serialize_map(Some(5))?;
            m.serialize_entry("level", "INFO")?;
            m.serialize_entry("target", target)?;
            m.serialize_entry("type", kind)?;
            m.serialize_entry("message", message)?;
            m.serialize_entry(kind, record)?;
            m.end()
        }
    }
    serde_json::to_string(&Line(target, kind, message, record)).unwrap_or_else(|e| {
        serde_json::json!({"level": "ERROR", "target": target, "type": kind, "message": format!("{message}: the record did not serialise: {e}")}).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_record_is_a_nested_object_not_a_string() {
        #[derive(serde::Serialize)]
        struct Action {
            executors: u32,
        }
        #[derive(serde::Serialize)]
        struct R {
            applied: Action,
            reason: &'static str,
        }
        let line = record_line(
            "handlers::scaling_decision",
            "decision",
            "scaling decision",
            &R { applied: Action { executors: 12 }, reason: "burst \"raised\"" },
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["message"].as_str(), v["level"].as_str()),
            (Some("decision"), Some("scaling decision"), Some("INFO"))
        );
        assert_eq!(v["decision"]["applied"]["executors"], 12);
        assert_eq!(v["decision"]["reason"], "burst \"raised\"");
        // JSON already made goes in as an object too.
        let raw = serde_json::value::RawValue::from_string(r#"{"applied":{"executors":3}}"#.into()).unwrap();
        let v: Value = serde_json::from_str(&record_line("t", "decision", "m", &raw)).unwrap();
        assert_eq!(v["decision"]["applied"]["executors"], 3);
    }
}
