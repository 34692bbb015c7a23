//! The `Stream` controller's pipeline, one module per step:
//! [`validate`] → [`dereference`] → [`data_plane`] → [`build`] → [`apply`] → [`status`], and the
//! gateway's [`routes`] computed from every stream, the sizing of on-demand streams
//! ([`on_demand`]) and the leadership of replicated shard groups ([`leadership`]).
//!
//! `validate`, `build`, `status`, `routes` and the choice of the next data-plane change are pure
//! and unit-tested on fixtures; `dereference` and `apply` are the only steps that talk to the API
//! server, and `data_plane` and `leadership` the only ones that talk to the shard groups.

pub mod apply;
pub mod build;
pub mod data_plane;
pub mod dereference;
pub mod leadership;
pub mod naming;
pub mod on_demand;
pub mod routes;
pub mod shards;
pub mod status;
pub mod validate;

#[cfg(test)]
pub mod fixtures;
