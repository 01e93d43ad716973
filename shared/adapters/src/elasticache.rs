//! The ElastiCache hot tier through the official SDK.

use crate::aws::sdk_err;
use async_trait::async_trait;
use handlers::ports::*;

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
        let out = self
            .client
            .describe_replication_groups()
            .replication_group_id(&self.group)
            .send()
            .await
            .map_err(sdk_err("elasticache", "DescribeReplicationGroups"))?;
        let group = out.replication_groups().first().ok_or_else(|| {
            PortError::new(
                "elasticache",
                "DescribeReplicationGroups",
                format!("no replication group {}", self.group),
            )
        })?;
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
