//! EMR Serverless, ElastiCache and S3 through the official AWS SDK crates.

use async_trait::async_trait;
use aws_sdk_emrserverless::types::{ApplicationState, InitialCapacityConfig, MaximumAllowedResources, WorkerResourceConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, StorageClass as S3Class, Tier as RestoreTier};
use handlers::ports::*;
use std::collections::HashMap;

fn sdk_err<E: std::error::Error + 'static>(backend: &'static str, op: &'static str) -> impl Fn(aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api_shim::HttpResponse>) -> PortError {
    move |e| PortError::new(backend, op, aws_sdk_s3::error::DisplayErrorContext(&e))
}

// The SDK crates re-export the same smithy response type under each service; name it once.
mod aws_smithy_runtime_api_shim {
    pub type HttpResponse = aws_sdk_s3::config::http::HttpResponse;
}

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
        let out = self.client.get_application().application_id(&self.application_id).send().await.map_err(sdk_err("emr-serverless", "GetApplication"))?;
        let app = out.application().ok_or_else(|| PortError::new("emr-serverless", "GetApplication", "no application in the response"))?;
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
        let build = |e: aws_sdk_emrserverless::error::BuildError| PortError::new("emr-serverless", "UpdateApplication", e);
        let max = MaximumAllowedResources::builder().cpu(format!("{} vCPU", c.max_vcpu)).memory(format!("{} GB", c.max_memory_gb)).build().map_err(build)?;
        // Initial capacity replaces the whole map: keep the driver entry as it is.
        let current = self.client.get_application().application_id(&self.application_id).send().await.map_err(sdk_err("emr-serverless", "GetApplication"))?;
        let mut initial: HashMap<String, InitialCapacityConfig> = current.application().and_then(|a| a.initial_capacity()).cloned().unwrap_or_default();
        if c.initial_executors == 0 {
            // The API's minimum worker count is 1: no pre-initialised executors means no entry.
            initial.remove("Executor");
        } else {
            let worker = WorkerResourceConfig::builder().cpu(format!("{} vCPU", c.worker_vcpu)).memory(format!("{} GB", c.worker_memory_gb)).build().map_err(build)?;
            let executor = InitialCapacityConfig::builder().worker_count(c.initial_executors as i64).worker_configuration(worker).build().map_err(build)?;
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

/// The hot tier as an ElastiCache replication group (cluster mode enabled: shards are node groups).
pub struct ElastiCacheHotTier {
    client: aws_sdk_elasticache::Client,
    group: String,
}

impl ElastiCacheHotTier {
    pub fn new(client: aws_sdk_elasticache::Client, replication_group_id: &str) -> Self {
        Self { client, group: replication_group_id.to_string() }
    }
}

#[async_trait]
impl HotTier for ElastiCacheHotTier {
    async fn shards(&self) -> PortResult<u32> {
        let out = self.client.describe_replication_groups().replication_group_id(&self.group).send().await.map_err(sdk_err("elasticache", "DescribeReplicationGroups"))?;
        let group = out.replication_groups().first().ok_or_else(|| PortError::new("elasticache", "DescribeReplicationGroups", format!("no replication group {}", self.group)))?;
        Ok(group.node_groups().len().max(1) as u32)
    }

    async fn set_shards(&self, shards: u32) -> PortResult<()> {
        self.client
            .modify_replication_group_shard_configuration()
            .replication_group_id(&self.group)
            .node_group_count(shards as i32)
            .apply_immediately(true)
            .send()
            .await
            .map_err(sdk_err("elasticache", "ModifyReplicationGroupShardConfiguration"))?;
        Ok(())
    }
}

/// Objects in one S3 bucket; the Glacier class is S3 Glacier Flexible Retrieval (`GLACIER`).
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        Self { client, bucket: bucket.to_string() }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>, class: StorageClass) -> PortResult<()> {
        let class = match class {
            StorageClass::Standard => S3Class::Standard,
            StorageClass::Glacier => S3Class::Glacier,
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(class)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(sdk_err("s3", "PutObject"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> PortResult<ObjectRead> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| PortError::new("s3", "GetObject body", e))?;
                Ok(ObjectRead::Bytes(bytes.into_bytes().to_vec()))
            }
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_no_such_key()) {
                    return Ok(ObjectRead::Missing);
                }
                if service.is_some_and(|s| s.is_invalid_object_state()) {
                    // Archived: HeadObject's Restore header says whether a restore is running.
                    let head = self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(sdk_err("s3", "HeadObject"))?;
                    let ongoing = head.restore().is_some_and(|r| r.contains("ongoing-request=\"true\""));
                    return Ok(ObjectRead::Archived { restore_in_progress: ongoing });
                }
                Err(sdk_err("s3", "GetObject")(e))
            }
        }
    }

    async fn restore(&self, key: &str, days: u32) -> PortResult<()> {
        let build = |e: aws_sdk_s3::error::BuildError| PortError::new("s3", "RestoreObject", e);
        let job = GlacierJobParameters::builder().tier(RestoreTier::Expedited).build().map_err(build)?;
        let request = RestoreRequest::builder().days(days as i32).glacier_job_parameters(job).build();
        self.client.restore_object().bucket(&self.bucket).key(key).restore_request(request).send().await.map_err(sdk_err("s3", "RestoreObject"))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(sdk_err("s3", "DeleteObject"))?;
        Ok(())
    }

    async fn list(&self, prefix: &str, limit: usize) -> PortResult<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < limit {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys((limit - out.len()).min(1_000) as i32)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(sdk_err("s3", "ListObjectsV2"))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let modified_s = o.last_modified().map_or(0.0, |t| t.as_secs_f64());
                out.push(ObjectInfo { key: key.to_string(), modified_s });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn bucket(&self) -> Option<&str> {
        Some(&self.bucket)
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
