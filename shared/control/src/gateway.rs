//! One edge gateway's report: the events it saw in a second, through its [`BurstDetector`], as the
//! `iot-metadata` [`EdgeRecord`] it publishes. The arena's simulated gateways and the real one
//! (`sparkpilot edge`, counting MQTT messages) both make their records here.
//!
//! ```
//! use control::{gateway::Gateway, BurstDetectorConfig};
//! let mut gw = Gateway::new("edge-0001", BurstDetectorConfig::default()).unwrap();
//! for s in 0..60 {
//!     gw.report(1_000.0 + s as f64, 100.0, false);
//! }
//! let calm = gw.report(1_060.0, 100.0, false);
//! assert_eq!(calm.burst_signal, Some(false));
//! let burst = (0..5).map(|s| gw.report(1_061.0 + s as f64, 400.0, false)).last().unwrap();
//! assert_eq!(burst.burst_signal, Some(true));
//! assert_eq!(burst.rate, Some(400.0));
//! ```

use crate::{BurstDetector, BurstDetectorConfig, ControlError, EdgeRecord};

/// A gateway's detector and identity.
#[derive(Debug, Clone)]
pub struct Gateway {
    id: String,
    detector: BurstDetector,
}

impl Gateway {
    pub fn new(id: impl Into<String>, detector: BurstDetectorConfig) -> Result<Self, ControlError> {
        Ok(Self { id: id.into(), detector: BurstDetector::new(detector)? })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn detector(&self) -> &BurstDetector {
        &self.detector
    }

    /// The record for the second ending at `timestamp` (Unix seconds) in which `rate` events/s were
    /// seen: the rate, the short average as the gateway's forecast, and the burst signal (raised by
    /// the detector, or by `alarm`: the arena's false alarms).
    pub fn report(&mut self, timestamp: f64, rate: f64, alarm: bool) -> EdgeRecord {
        let burst = self.detector.observe(rate);
        EdgeRecord {
            edge_id: self.id.clone(),
            timestamp,
            rate: Some(rate),
            predicted_load: Some(self.detector.short_average()),
            burst_signal: Some(burst || alarm),
        }
    }

    /// A record of the load before anything was watched (warming a gateway on a known rate): the
    /// detector learns it, and the record never signals a burst.
    pub fn warm(&mut self, timestamp: f64, rate: f64) -> EdgeRecord {
        let mut record = self.report(timestamp, rate, false);
        record.burst_signal = Some(false);
        record
    }
}
