//! Shuffle blocks in S3 (standard and Glacier classes) through the official SDK.

use crate::aws::sdk_err;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, StorageClass as S3Class, Tier as RestoreTier};
use handlers::ports::*;

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
                let bytes =
                    out.body.collect().await.map_err(|e| PortError::new("s3", "GetObject body", e))?;
                Ok(ObjectRead::Bytes(bytes.into_bytes().to_vec()))
            }
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_no_such_key()) {
                    return Ok(ObjectRead::Missing);
                }
                if service.is_some_and(|s| s.is_invalid_object_state()) {
                    // Archived: HeadObject's Restore header says whether a restore is running.
                    let head = self
                        .client
                        .head_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(sdk_err("s3", "HeadObject"))?;
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
        self.client
            .restore_object()
            .bucket(&self.bucket)
            .key(key)
            .restore_request(request)
            .send()
            .await
            .map_err(sdk_err("s3", "RestoreObject"))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_err("s3", "DeleteObject"))?;
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
