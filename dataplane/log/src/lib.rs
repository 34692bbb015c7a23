//! Durable, segmented, append-only shard logs.
