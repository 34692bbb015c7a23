//! Riffle's native gRPC API, generated from `riffle/v1/*.proto`.
//!
//! [`v1`] holds the messages, the client ([`v1::streams_client::StreamsClient`]) and the server
//! trait ([`v1::streams_server::Streams`]) of the `riffle.v1.Streams` service. The operator, the
//! `riffle` CLI and the data plane all depend on this crate, never on each other.

/// Package `riffle.v1`: streams, shards and records.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("riffle.v1");
}
