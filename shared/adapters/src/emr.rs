//! EMR Serverless through the official SDK: the application's state and its capacity.

use crate::aws::sdk_err;
use async_trait::async_trait;
use aws_sdk_emrserverless::types::{
    ApplicationState, InitialCapacityConfig, MaximumAllowedResources, WorkerResourceConfig,
};
use handlers::ports::*;
use std::collections::HashMap;

/// Read "16 vCPU", "64 GB", "64GB" or "2048 MB" as a number of vCPUs or GB.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let value: f64 = s[..end].parse().ok()?;
    let unit = s[end..].trim().to_ascii_uppercase();
    match unit.as_str() {
        "" | "VCPU" | "GB" => Some(value),
        "MB" => Some(value / 1024.0),
        "TB" => Some(value * 1024.0),
        _ => None,
    }
}

/// One EMR Serverless application.
pub struct EmrServerless {
    client: aws_sdk_emrserverless::Client,
    application_id: String,
}

impl EmrServerless {
    pub fn new(client: aws_sdk_emrserverless::Client, application_id: &str) -> Self {
        Self { client, application_id: application_id.to_string() }
    }
}

fn state_of(s: &ApplicationState) -> AppState {
    match s {
        ApplicationState::Creating => AppState::Creating,
        ApplicationState::Created => AppState::Created,
        ApplicationState::Starting => AppState::Starting,
        ApplicationState::Started => AppState::Started,
        ApplicationState::Stopping => AppState::Stopping,
        ApplicationState::Stopped => AppState::Stopped,
        _ => AppState::Terminated,
    }
}

#[async_trait]
impl EmrControl for EmrServerless {
    async fn get_application(&self) -> PortResult<AppStatus> {
        let out = self
            .client
            .get_application()
            .application_id(&self.application_id)
            .send()
            .await
            .map_err(sdk_err("emr-serverless", "GetApplication"))?;
        let app = out.application().ok_or_else(|| {
            PortError::new("emr-serverless", "GetApplication", "no application in the response")
        })?;
        let max = app.maximum_capacity();
        let executor = app.initial_capacity().and_then(|m| m.get("Executor"));
        let worker = executor.and_then(|e| e.worker_configuration());
        let num = |v: Option<&str>| v.and_then(parse_quantity).unwrap_or(0.0).round() as u32;
        Ok(AppStatus {
            state: state_of(app.state()),
            capacity: Capacity {
                max_vcpu: num(max.map(|m| m.cpu())),
                max_memory_gb: num(max.map(|m| m.memory())),
                initial_executors: executor.map_or(0, |e| e.worker_count().max(0) as u32),
                worker_vcpu: worker.map_or(4, |w| num(Some(w.cpu())).max(1)),
                worker_memory_gb: worker.map_or(16, |w| num(Some(w.memory())).max(1)),
            },
        })
    }

    async fn update_capacity(&self, c: &Capacity) -> PortResult<()> {
        let build = |e: aws_sdk_emrserverless::error::BuildError| {
            PortError::new("emr-serverless", "UpdateApplication", e)
        };
        let max = MaximumAllowedResources::builder()
            .cpu(format!("{} vCPU", c.max_vcpu))
            .memory(format!("{} GB", c.max_memory_gb))
            .build()
            .map_err(build)?;
        // Initial capacity replaces the whole map: keep the driver entry as it is.
        let current = self
            .client
            .get_application()
            .application_id(&self.application_id)
            .send()
            .await
            .map_err(sdk_err("emr-serverless", "GetApplication"))?;
        let mut initial: HashMap<String, InitialCapacityConfig> =
            current.application().and_then(|a| a.initial_capacity()).cloned().unwrap_or_default();
        if c.initial_executors == 0 {
            // The API's minimum worker count is 1: no pre-initialised executors means no entry.
            initial.remove("Executor");
        } else {
            let worker = WorkerResourceConfig::builder()
                .cpu(format!("{} vCPU", c.worker_vcpu))
                .memory(format!("{} GB", c.worker_memory_gb))
                .build()
                .map_err(build)?;
            let executor = InitialCapacityConfig::builder()
                .worker_count(c.initial_executors as i64)
                .worker_configuration(worker)
                .build()
                .map_err(build)?;
            initial.insert("Executor".into(), executor);
        }
        self.client
            .update_application()
            .application_id(&self.application_id)
            .maximum_capacity(max)
            .set_initial_capacity(Some(initial))
            .send()
            .await
            .map_err(sdk_err("emr-serverless", "UpdateApplication"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn capacity_strings_parse() {
        assert_eq!(parse_quantity("16 vCPU"), Some(16.0));
        assert_eq!(parse_quantity("64 GB"), Some(64.0));
        assert_eq!(parse_quantity("64GB"), Some(64.0));
        assert_eq!(parse_quantity("2048 MB"), Some(2.0));
        assert_eq!(parse_quantity("lots"), None);
    }
}
