//! Enhanced fan-out consumers and their subscription slots.

use std::time::{Duration, Instant};

use super::error::{ApiError, ApiResult, ErrorKind};
use super::model::ConsumerMeta;
use super::{Catalog, StreamChange};

/// Most consumers per stream.
pub const MAX_CONSUMERS: usize = 20;

/// A consumer as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    /// Consumer name.
    pub name: String,
    /// Consumer ARN.
    pub arn: String,
    /// Registration time, seconds since the Unix epoch.
    pub created_s: i64,
    /// The stream's ARN.
    pub stream_arn: String,
}

/// A second subscription to the same consumer and shard within this time is refused.
const RESUBSCRIBE_GUARD: Duration = Duration::from_secs(5);

impl Catalog {
    fn consumer_view(&self, stream: &str, consumer: &ConsumerMeta) -> ConsumerView {
        let stream_arn = self.stream_arn(stream);
        ConsumerView {
            name: consumer.name.clone(),
            arn: format!(
                "{stream_arn}/consumer/{}:{}",
                consumer.name, consumer.created_s
            ),
            created_s: consumer.created_s,
            stream_arn,
        }
    }

    /// Splits a consumer ARN into its stream name and consumer name.
    pub fn parse_consumer_arn(&self, arn: &str) -> ApiResult<(String, String)> {
        let invalid = || ApiError::invalid(format!("Invalid ConsumerARN {arn}."));
        let (stream_arn, rest) = arn.split_once("/consumer/").ok_or_else(invalid)?;
        let stream = self
            .stream_name_from_arn(stream_arn)
            .map_err(|_| invalid())?;
        let (name, created) = rest.rsplit_once(':').ok_or_else(invalid)?;
        if name.is_empty() || created.parse::<i64>().is_err() {
            return Err(invalid());
        }
        Ok((stream, name.to_string()))
    }

    /// RegisterStreamConsumer, registered now or at `created_s` (seconds since the Unix epoch;
    /// the other shard groups of a stream register its consumers with the first group's time).
    pub async fn register_consumer(
        &self,
        stream_name: &str,
        name: &str,
        created_s: Option<i64>,
    ) -> ApiResult<ConsumerView> {
        let change = StreamChange::RegisterConsumer {
            name: name.to_string(),
            created_s,
        };
        self.change_stream(stream_name, change).await?;
        self.describe_consumer(stream_name, name).await
    }

    /// Registers consumer `name` here, at `created_s`.
    pub(super) async fn register_consumer_here(
        &self,
        stream_name: &str,
        name: &str,
        created_s: i64,
    ) -> ApiResult<()> {
        self.update_here(stream_name, |stream, meta| {
            if meta.consumers.iter().any(|c| c.name == name) {
                return Err(ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Consumer {name} under stream {} already exists for account {}.",
                        stream.name, self.config.account
                    ),
                ));
            }
            if meta.consumers.len() >= MAX_CONSUMERS {
                return Err(ApiError::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "Stream {} under account {} has reached the limit of {MAX_CONSUMERS} consumers.",
                        stream.name, self.config.account
                    ),
                ));
            }
            meta.consumers.push(ConsumerMeta {
                name: name.to_string(),
                created_s,
            });
            Ok(())
        })
        .await
    }

    /// DeregisterStreamConsumer.
    pub async fn deregister_consumer(&self, stream_name: &str, name: &str) -> ApiResult<()> {
        let change = StreamChange::DeregisterConsumer {
            name: name.to_string(),
        };
        self.change_stream(stream_name, change).await
    }

    /// Deregisters consumer `name` here.
    pub(super) async fn deregister_consumer_here(
        &self,
        stream_name: &str,
        name: &str,
    ) -> ApiResult<()> {
        self.update_here(stream_name, |stream, meta| {
            let before = meta.consumers.len();
            meta.consumers.retain(|c| c.name != name);
            if meta.consumers.len() == before {
                return Err(self.consumer_not_found(&stream.name, name));
            }
            Ok(())
        })
        .await
    }

    /// DescribeStreamConsumer.
    pub async fn describe_consumer(
        &self,
        stream_name: &str,
        name: &str,
    ) -> ApiResult<ConsumerView> {
        self.describe(stream_name, |meta, _| {
            meta.consumers
                .iter()
                .find(|c| c.name == name)
                .map(|c| self.consumer_view(stream_name, c))
                .ok_or_else(|| self.consumer_not_found(stream_name, name))
        })
        .await?
    }

    /// ListStreamConsumers, ordered by name.
    pub async fn list_consumers(&self, stream_name: &str) -> ApiResult<Vec<ConsumerView>> {
        self.describe(stream_name, |meta, _| {
            let mut consumers: Vec<ConsumerView> = meta
                .consumers
                .iter()
                .map(|c| self.consumer_view(stream_name, c))
                .collect();
            consumers.sort_by(|a, b| a.name.cmp(&b.name));
            consumers
        })
        .await
    }

    fn consumer_not_found(&self, stream: &str, name: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Consumer {name} under stream {stream} not found for account {}.",
                self.config.account
            ),
        )
    }

    /// Takes the subscription slot of (consumer, shard). Refused within five seconds of the
    /// previous subscription; otherwise the previous one is superseded. Returns the slot's
    /// generation, which [`Catalog::holds_subscription`] checks.
    pub fn claim_subscription(&self, consumer_arn: &str, shard_index: u32) -> ApiResult<u64> {
        let mut slots = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (consumer_arn.to_string(), shard_index);
        let now = Instant::now();
        let generation = match slots.get(&key) {
            Some((since, _)) if now.duration_since(*since) < RESUBSCRIBE_GUARD => {
                return Err(ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Another active subscription exists for consumer {consumer_arn} and shard {}.",
                        super::model::shard_id(shard_index)
                    ),
                ));
            }
            Some((_, generation)) => generation + 1,
            None => 1,
        };
        slots.insert(key, (now, generation));
        Ok(generation)
    }

    /// Whether the subscription with `generation` still holds its slot.
    pub fn holds_subscription(
        &self,
        consumer_arn: &str,
        shard_index: u32,
        generation: u64,
    ) -> bool {
        let slots = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .get(&(consumer_arn.to_string(), shard_index))
            .is_some_and(|(_, current)| *current == generation)
    }
}
