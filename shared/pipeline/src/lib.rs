//! sparkpilot as a system.
//!
//! * [`gateways`]: the edge gateway simulator, a trace as many gateways report it;
//! * [`replay`]: a trace driven through the five handlers with the arena standing in for EMR
//!   Serverless and the Spark job, on the embedded default ([`replay::InProcess`]) or live;
//! * [`live`]: the handlers on their real backends behind the Kafka event-source bridge (the
//!   `bridge` crate; `sparkpilot bridge`), and the live control plane of `sparkpilot replay --live`;
//! * [`spark`]: the same control plane around a real Spark job.
//!
//! ```
//! use pipeline::replay::{replay_embedded, ReplayOptions};
//! let mut arena = sim::Arena::embedded();
//! arena.config.edge.gateways = 4;
//! let trace = traces::resolve("step-burst", 1).unwrap().window(0, 120);
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let report = rt.block_on(replay_embedded(&arena, &trace, 1, &ReplayOptions::default())).unwrap();
//! assert_eq!(report.burst_agreement, 1.0);
//! assert_eq!(report.decisions, 120 / arena.config.decision_interval_s);
//! ```

mod error;
pub mod gateways;
pub mod http;
pub mod live;
pub mod replay;
pub mod spark;

pub use error::PipelineError;
