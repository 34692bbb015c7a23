//! The Riffle operator: reconciles `Stream` objects into shard-group StatefulSets, headless
//! Services, PodDisruptionBudgets and a shard-map ConfigMap (DESIGN §4, §5), creates and reshards
//! each stream inside its shard group over the data plane's gRPC API, keeps the gateway's route
//! table, and serves CreateStream, DeleteStream and UpdateShardCount of the Kinesis API ([`api`]).
//!
//! Each controller follows one pipeline: `validate` and `build` are pure functions of the object
//! (unit-tested without a cluster), `apply` server-side applies what was built and deletes
//! labelled orphans, and `status` is computed only from what was applied and observed.

pub mod api;
pub mod controller;
pub mod crd;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod settings;
pub mod stream;
pub mod watchdog;
