//! The Riffle Streams data plane.
//!
//! [`streams`] holds streams, shards and records independent of any protocol; [`kinesis`]
//! serves them over the Kinesis Data Streams API, [`grpc`] over Riffle's native gRPC API,
//! and [`server`] binds the listeners of the standalone process.

pub mod gateway;
pub mod grpc;
pub mod http;
pub mod kinesis;
pub mod metrics;
pub mod replicated;
pub mod server;
pub mod streams;
