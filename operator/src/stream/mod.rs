//! The `Stream` controller's pipeline, one module per step:
//! [`validate`] → [`dereference`] → [`build`] → [`apply`] → [`status`].
//!
//! `validate`, `build` and `status` are pure and unit-tested on fixtures; `dereference` and
//! `apply` are the only steps that talk to the API server.

pub mod apply;
pub mod build;
pub mod dereference;
pub mod naming;
pub mod shards;
pub mod status;
pub mod validate;

#[cfg(test)]
pub mod fixtures;
