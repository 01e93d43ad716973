//! The five sparkpilot functions as plain async handlers.
//!
//! Each handler takes a decoded [`Trigger`] and returns an [`Outcome`]: what it did, as types (JSON
//! only at the function's edge). It reaches the outside world only through the port traits in
//! [`ports`] — a [`StateStore`](ports::StateStore) (Redis), a
//! [`Publisher`](ports::Publisher) (Kafka), [`EmrControl`](ports::EmrControl) (EMR Serverless),
//! [`HotTier`](ports::HotTier) (ElastiCache) and [`ObjectStore`](ports::ObjectStore)s (S3, NVMe) —
//! so the same handler runs in a Lambda, behind the OpenFaaS watchdog, in `sparkpilot invoke` on
//! the in-memory backends of [`memory`], and in tests. The decisions themselves come from the
//! `control` and `policy` crates, the code the simulator evaluates.
//!
//! The two functions that run a policy model (meta-weights, scaling-decision) need the `policy`
//! feature (on by default), which links the ONNX runtime; the other three are built without it.
//!
//! ```
//! # #[cfg(feature = "policy")] {
//! use handlers::{Backends, Handler, Settings, Trigger};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backends = Backends::embedded();
//! let meta = handlers::meta_weights::MetaWeights::new(&Settings::default(), &backends).unwrap();
//! let out = meta.handle(Trigger::Direct(serde_json::json!({"scenario": "healthcare_critical", "budget_remaining": 40.0}))).await.unwrap();
//! let handlers::Outcome::Weights(w) = out else { unreachable!() };
//! assert!(w.weights.alpha <= 1.0);
//! # });
//! # }
//! ```

pub mod burst_signal;
mod error;
pub mod events;
pub mod memory;
#[cfg(feature = "policy")]
pub mod meta_weights;
pub mod metrics;
pub mod outcome;
pub mod ports;
pub mod prewarmer;
pub mod records;
#[cfg(feature = "policy")]
pub mod scaling_decision;
mod settings;
pub mod shuffle_router;
mod wire;

pub use error::HandlerError;
pub use events::{
    decode_http, decode_lambda, decode_lambda_bytes, KafkaMessage, RecordError, RecordRef, Trigger,
};
pub use outcome::Outcome;
pub use settings::{Settings, Topics};
pub use wire::{
    ActuationPart, AgentReport, Applies, BurstEvent, ClusterBurst, Context, DecisionRecord, EdgeRecord,
    ExecutorReport, JobRunConfig, Keys, Setting, SparkMetrics, Weights,
};

use async_trait::async_trait;
use ports::{EmrControl, HotTier, ObjectStore, Publisher, StateStore};
use std::sync::Arc;

/// A function's handler: one invocation in, what it did out.
#[async_trait]
pub trait Handler: Send + Sync {
    /// The function's name (folder, binary and deployment name).
    fn name(&self) -> &'static str;
    async fn handle(&self, trigger: Trigger) -> Result<Outcome, HandlerError>;
}

/// The outside world, as ports. Built once at init and shared by every invocation.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn StateStore>,
    pub publisher: Arc<dyn Publisher>,
    pub emr: Arc<dyn EmrControl>,
    pub hot_tier: Arc<dyn HotTier>,
    /// S3 (standard and Glacier classes).
    pub objects: Arc<dyn ObjectStore>,
    /// The NVMe tier: a local directory (or an EFS mount).
    pub nvme: Arc<dyn ObjectStore>,
}

/// The in-memory backends, kept typed so tests and `sparkpilot invoke` can look inside.
#[derive(Clone, Default)]
pub struct Embedded {
    pub store: Arc<memory::MemoryStore>,
    pub publisher: Arc<memory::MemoryPublisher>,
    pub emr: Arc<memory::MemoryEmr>,
    pub hot_tier: Arc<memory::MemoryHotTier>,
    pub objects: Arc<memory::MemoryObjectStore>,
    pub nvme: Arc<memory::MemoryObjectStore>,
}

impl Embedded {
    pub fn backends(&self) -> Backends {
        Backends {
            store: self.store.clone(),
            publisher: self.publisher.clone(),
            emr: self.emr.clone(),
            hot_tier: self.hot_tier.clone(),
            objects: self.objects.clone(),
            nvme: self.nvme.clone(),
        }
    }
}

impl Backends {
    /// Everything in memory: the embedded default.
    pub fn embedded() -> Self {
        Embedded::default().backends()
    }
}

/// The ports a function reaches, so its binary connects those and links no client for the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub store: bool,
    pub publisher: bool,
    pub emr: bool,
    pub hot_tier: bool,
    pub objects: bool,
    pub nvme: bool,
}

impl Ports {
    const STORE: Ports =
        Ports { store: true, publisher: false, emr: false, hot_tier: false, objects: false, nvme: false };
    pub const BURST_SIGNAL: Ports = Ports { publisher: true, ..Ports::STORE };
    pub const META_WEIGHTS: Ports = Ports::STORE;
    pub const SCALING_DECISION: Ports = Ports { publisher: true, emr: true, hot_tier: true, ..Ports::STORE };
    pub const SHUFFLE_ROUTER: Ports = Ports { objects: true, nvme: true, ..Ports::STORE };
    pub const PREWARMER: Ports = Ports { emr: true, ..Ports::STORE };

    /// The ports of a function named at run time (the CLI and the local bridge, which run all five).
    pub fn of(name: &str) -> Result<Ports, HandlerError> {
        Ok(match name {
            "burst-signal" => Ports::BURST_SIGNAL,
            "meta-weights" => Ports::META_WEIGHTS,
            "scaling-decision" => Ports::SCALING_DECISION,
            "shuffle-router" => Ports::SHUFFLE_ROUTER,
            "prewarmer" => Ports::PREWARMER,
            other => return Err(unknown_function(other)),
        })
    }
}

/// A function known at compile time. A function binary is generic over one of these, so that it
/// links that handler and the clients of its [`Ports`] only: no policy runtime in the shuffle
/// router, no Kafka client where nothing is published.
pub trait Function: Handler + Sized + 'static {
    /// Folder, crate, binary and deployment name.
    const NAME: &'static str;
    const PORTS: Ports;
    /// Build the handler once, at init.
    fn init(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError>;
}

macro_rules! function {
    ($ty:ty, $name:literal, $ports:expr) => {
        impl Function for $ty {
            const NAME: &'static str = $name;
            const PORTS: Ports = $ports;
            fn init(settings: &Settings, backends: &Backends) -> Result<Self, HandlerError> {
                <$ty>::new(settings, backends)
            }
        }
    };
}

function!(burst_signal::BurstSignal, "burst-signal", Ports::BURST_SIGNAL);
#[cfg(feature = "policy")]
function!(meta_weights::MetaWeights, "meta-weights", Ports::META_WEIGHTS);
#[cfg(feature = "policy")]
function!(scaling_decision::ScalingDecision, "scaling-decision", Ports::SCALING_DECISION);
function!(shuffle_router::ShuffleRouter, "shuffle-router", Ports::SHUFFLE_ROUTER);
function!(prewarmer::Prewarmer, "prewarmer", Ports::PREWARMER);

fn unknown_function(name: &str) -> HandlerError {
    HandlerError::Config(format!("unknown function {name:?}; expected one of {}", FUNCTIONS.join(", ")))
}

/// Build the handler of a function named at run time (links all five; a function binary uses
/// [`Function::init`] instead).
pub fn build(name: &str, settings: &Settings, backends: &Backends) -> Result<Arc<dyn Handler>, HandlerError> {
    Ok(match name {
        burst_signal::BurstSignal::NAME => Arc::new(burst_signal::BurstSignal::new(settings, backends)?),
        #[cfg(feature = "policy")]
        meta_weights::MetaWeights::NAME => Arc::new(meta_weights::MetaWeights::new(settings, backends)?),
        #[cfg(feature = "policy")]
        scaling_decision::ScalingDecision::NAME => {
            Arc::new(scaling_decision::ScalingDecision::new(settings, backends)?)
        }
        #[cfg(not(feature = "policy"))]
        "meta-weights" | "scaling-decision" => {
            return Err(HandlerError::Config(format!("{name} needs the handlers crate's `policy` feature")))
        }
        shuffle_router::ShuffleRouter::NAME => {
            Arc::new(shuffle_router::ShuffleRouter::new(settings, backends)?)
        }
        prewarmer::Prewarmer::NAME => Arc::new(prewarmer::Prewarmer::new(settings, backends)?),
        other => return Err(unknown_function(other)),
    })
}

/// The five functions.
pub const FUNCTIONS: [&str; 5] =
    ["burst-signal", "meta-weights", "scaling-decision", "shuffle-router", "prewarmer"];

/// Decode a record's value as JSON of type `T`, with a message naming what was wrong.
pub(crate) fn record_json<T: serde::de::DeserializeOwned>(m: &KafkaMessage) -> Result<Option<T>, String> {
    match &m.value {
        None => Ok(None),
        Some(Err(e)) => Err(e.clone()),
        Some(Ok(bytes)) => {
            serde_json::from_slice(bytes).map(Some).map_err(|e| format!("value is not a valid record: {e}"))
        }
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data serialises")
}

/// Read stored state that the function can do without: a value that does not parse (written by a
/// bug, an older version, or by hand) is logged, named in `discarded`, and read as absent, so that
/// the function starts that part afresh and overwrites it, instead of failing every invocation
/// until someone deletes the key.
pub(crate) fn read_or_discard<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: Option<&Vec<u8>>,
    discarded: &mut Vec<String>,
) -> Option<T> {
    match from_json(key, bytes) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(key, error = %e, "stored state unreadable; starting that part afresh");
            discarded.push(key.to_string());
            None
        }
    }
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: Option<&Vec<u8>>,
) -> Result<Option<T>, HandlerError> {
    match bytes {
        None => Ok(None),
        Some(b) => serde_json::from_slice(b)
            .map(Some)
            .map_err(|e| HandlerError::State(format!("{key} is unreadable: {e}"))),
    }
}

#[cfg(all(test, feature = "policy"))]
mod function_tests {
    use super::*;

    #[test]
    fn each_function_type_has_the_ports_and_name_the_runtime_lookup_gives() {
        fn check<F: Function>() {
            assert_eq!(Ports::of(F::NAME).unwrap(), F::PORTS, "{}", F::NAME);
            assert!(FUNCTIONS.contains(&F::NAME));
        }
        check::<burst_signal::BurstSignal>();
        check::<meta_weights::MetaWeights>();
        check::<scaling_decision::ScalingDecision>();
        check::<shuffle_router::ShuffleRouter>();
        check::<prewarmer::Prewarmer>();
        assert!(Ports::of("nope").is_err());
    }
}
