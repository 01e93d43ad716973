//! Function settings, from the environment (Lambda and OpenFaaS both configure functions that way).

use crate::HandlerError;
use control::{ClusterConfig, GuardrailConfig, Scenario, TierRouterConfig};
use std::path::PathBuf;

/// Kafka topics the functions publish to.
#[derive(Debug, Clone, PartialEq)]
pub struct Topics {
    pub scaling_requests: String,
    pub scaling_decisions: String,
    pub spark_metrics: String,
    pub iot_metadata: String,
}

impl Topics {
    /// The default names with `-{tag}` appended: a run of its own on a shared broker (replays, tests).
    pub fn tagged(tag: &str) -> Self {
        let d = Self::default();
        Self {
            scaling_requests: format!("{}-{tag}", d.scaling_requests),
            scaling_decisions: format!("{}-{tag}", d.scaling_decisions),
            spark_metrics: format!("{}-{tag}", d.spark_metrics),
            iot_metadata: format!("{}-{tag}", d.iot_metadata),
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            scaling_requests: "scaling-requests".into(),
            scaling_decisions: "scaling-decisions".into(),
            spark_metrics: "spark-metrics".into(),
            iot_metadata: "iot-metadata".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    pub topics: Topics,
    /// Decide and record, never change EMR Serverless or ElastiCache.
    pub dry_run: bool,
    /// Model files overriding the ones built into the binaries.
    pub scaling_model: Option<PathBuf>,
    pub meta_model: Option<PathBuf>,
    pub guardrails: GuardrailConfig,
    /// How edge records become the cluster burst (the arena's edge model uses the same).
    pub cluster: ClusterConfig,
    pub router: TierRouterConfig,
    /// vCPUs and default memory of an executor (EMR Serverless worker).
    pub vcpu_per_executor: u32,
    pub sla_ms: f64,
    pub region: String,
    /// Scenario and budget until a context change says otherwise.
    pub scenario: Scenario,
    pub budget_usd: f64,
    pub budget_horizon_s: f64,
    /// Most ElastiCache shards the hot tier may grow to.
    pub max_cache_shards: u32,
    /// TTL of shuffle blocks kept in Redis, seconds.
    pub block_ttl_s: u64,
    /// Redis writes of shuffle blocks are sent in pipelines of at most this many bytes.
    pub pipeline_bytes: usize,
    /// Target utilisation the prewarmer sizes warm capacity for.
    pub prewarm_utilisation: f64,
    /// Records and reports stamped more than this far ahead of the function's clock are refused,
    /// seconds: producers' clocks drift, but a time far ahead would pin state (the cooldown, the newest
    /// metrics, an edge that never goes stale).
    pub max_clock_skew_s: f64,
    /// The SHA-256 (hex) the scaling model file must have; unset: any file that loads.
    pub scaling_model_sha256: Option<String>,
    /// Write CloudWatch embedded-metric-format lines to stdout (`SPARKPILOT_METRICS=emf`).
    pub emf_metrics: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key_prefix: "sparkpilot".into(),
            topics: Topics::default(),
            dry_run: false,
            scaling_model: None,
            meta_model: None,
            guardrails: GuardrailConfig::default(),
            cluster: ClusterConfig::default(),
            router: TierRouterConfig::default(),
            vcpu_per_executor: 4,
            sla_ms: 1_000.0,
            region: "us-east-1".into(),
            scenario: Scenario::Balanced,
            budget_usd: 100.0,
            budget_horizon_s: 86_400.0,
            max_cache_shards: 4,
            block_ttl_s: 3_600,
            pipeline_bytes: 10 * 1024 * 1024,
            prewarm_utilisation: control::PREWARM_UTILISATION,
            max_clock_skew_s: 300.0,
            scaling_model_sha256: None,
            emf_metrics: false,
        }
    }
}

impl Settings {
    /// Read `SPARKPILOT_*` variables over the defaults; a value that does not parse is an error
    /// naming the variable.
    pub fn from_env() -> Result<Self, HandlerError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, HandlerError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            key: &str,
            into: &mut T,
        ) -> Result<(), HandlerError>
        where
            T::Err: std::fmt::Display,
        {
            if let Some(v) = get(key) {
                *into = v.trim().parse().map_err(|e| HandlerError::Config(format!("{key}={v:?}: {e}")))?;
            }
            Ok(())
        }
        let mut s = Self::default();
        let g = &get;
        parse(g, "SPARKPILOT_KEY_PREFIX", &mut s.key_prefix)?;
        parse(g, "SPARKPILOT_TOPIC_SCALING_REQUESTS", &mut s.topics.scaling_requests)?;
        parse(g, "SPARKPILOT_TOPIC_SCALING_DECISIONS", &mut s.topics.scaling_decisions)?;
        parse(g, "SPARKPILOT_TOPIC_SPARK_METRICS", &mut s.topics.spark_metrics)?;
        parse(g, "SPARKPILOT_TOPIC_IOT_METADATA", &mut s.topics.iot_metadata)?;
        if let Some(v) = get("SPARKPILOT_DRY_RUN") {
            s.dry_run = match v.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(HandlerError::Config(format!(
                        "SPARKPILOT_DRY_RUN={other:?}: expected 1 or 0"
                    )))
                }
            };
        }
        s.scaling_model = get("SPARKPILOT_SCALING_MODEL").map(PathBuf::from);
        s.meta_model = get("SPARKPILOT_META_MODEL").map(PathBuf::from);
        parse(g, "SPARKPILOT_MIN_EXECUTORS", &mut s.guardrails.min_executors)?;
        parse(g, "SPARKPILOT_MAX_EXECUTORS", &mut s.guardrails.max_executors)?;
        parse(g, "SPARKPILOT_MAX_STEP", &mut s.guardrails.max_step)?;
        parse(g, "SPARKPILOT_COOLDOWN_S", &mut s.guardrails.cooldown_s)?;
        parse(g, "SPARKPILOT_STEP_WINDOW_S", &mut s.guardrails.step_window_s)?;
        parse(g, "SPARKPILOT_BACKLOG_DRAIN_S", &mut s.guardrails.backlog_drain_s)?;
        parse(g, "SPARKPILOT_MAX_CLOCK_SKEW_S", &mut s.max_clock_skew_s)?;
        if !(s.max_clock_skew_s.is_finite() && s.max_clock_skew_s >= 0.0) {
            return Err(HandlerError::Config(format!(
                "SPARKPILOT_MAX_CLOCK_SKEW_S must be a non-negative number of seconds, got {}",
                s.max_clock_skew_s
            )));
        }
        if let Some(v) = get("SPARKPILOT_METRICS") {
            s.emf_metrics = match v.trim() {
                "emf" => true,
                "" | "off" | "log" => false,
                other => {
                    return Err(HandlerError::Config(format!(
                        "SPARKPILOT_METRICS={other:?}: expected emf or off"
                    )))
                }
            };
        }
        if let Some(v) = get("SPARKPILOT_SCALING_MODEL_SHA256") {
            let hex = v.trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(HandlerError::Config(format!(
                    "SPARKPILOT_SCALING_MODEL_SHA256={v:?}: expected 64 hex digits"
                )));
            }
            s.scaling_model_sha256 = Some(hex);
        }
        parse(g, "SPARKPILOT_MAX_PREWARM", &mut s.guardrails.max_prewarm)?;
        if let Some(v) = get("SPARKPILOT_MAX_USD_PER_HOUR") {
            let cap: f64 = v
                .trim()
                .parse()
                .map_err(|e| HandlerError::Config(format!("SPARKPILOT_MAX_USD_PER_HOUR={v:?}: {e}")))?;
            s.guardrails.max_usd_per_hour = Some(cap);
        }
        parse(g, "SPARKPILOT_SLA_MS", &mut s.sla_ms)?;
        parse(g, "SPARKPILOT_REGION", &mut s.region)?;
        if let Some(v) = get("SPARKPILOT_SCENARIO") {
            s.scenario = Scenario::from_name(v.trim()).ok_or_else(|| {
                HandlerError::Config(format!("SPARKPILOT_SCENARIO={v:?}: unknown scenario"))
            })?;
        }
        parse(g, "SPARKPILOT_BUDGET_USD", &mut s.budget_usd)?;
        parse(g, "SPARKPILOT_BUDGET_HORIZON_S", &mut s.budget_horizon_s)?;
        parse(g, "SPARKPILOT_MAX_CACHE_SHARDS", &mut s.max_cache_shards)?;
        parse(g, "SPARKPILOT_BLOCK_TTL_S", &mut s.block_ttl_s)?;
        parse(g, "SPARKPILOT_PIPELINE_BYTES", &mut s.pipeline_bytes)?;
        parse(g, "SPARKPILOT_QUORUM_RAISE", &mut s.cluster.quorum_raise)?;
        parse(g, "SPARKPILOT_QUORUM_CLEAR", &mut s.cluster.quorum_clear)?;
        parse(g, "SPARKPILOT_EDGE_STALE_S", &mut s.cluster.edge_stale_s)?;
        parse(g, "SPARKPILOT_FORECAST_WINDOW_S", &mut s.cluster.forecast_window_s)?;
        s.guardrails.validate()?;
        s.cluster.validate()?;
        if !(s.budget_usd.is_finite() && s.budget_usd > 0.0) {
            return Err(HandlerError::Config(format!(
                "SPARKPILOT_BUDGET_USD must be positive, got {}",
                s.budget_usd
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_defaults_and_bad_values_name_the_variable() {
        let env = |k: &str| match k {
            "SPARKPILOT_DRY_RUN" => Some("1".to_string()),
            "SPARKPILOT_MAX_EXECUTORS" => Some("32".to_string()),
            "SPARKPILOT_SCENARIO" => Some("smart_city_budget".to_string()),
            _ => None,
        };
        let s = Settings::from_lookup(env).unwrap();
        assert!(s.dry_run);
        assert_eq!(s.guardrails.max_executors, 32);
        assert_eq!(s.scenario, Scenario::SmartCityBudget);
        let e = Settings::from_lookup(|k| (k == "SPARKPILOT_COOLDOWN_S").then(|| "soon".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("SPARKPILOT_COOLDOWN_S=\"soon\""), "{e}");
        let e =
            Settings::from_lookup(|k| (k == "SPARKPILOT_SCENARIO").then(|| "mars".to_string())).unwrap_err();
        assert!(e.to_string().contains("unknown scenario"), "{e}");
    }
}
