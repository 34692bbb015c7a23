//! Wire formats of the Kinesis API: pure encoding and decoding, no I/O.
//!
//! Requests arrive as `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>` and a body in
//! AWS JSON 1.1 or AWS CBOR 1.1 ([`Format`]). Both decode into one document model, [`Value`],
//! so an operation is written once against [`Doc`], whose typed accessors produce the errors AWS
//! gives: a `SerializationException` naming the member for a wrong type, a
//! `ValidationException` (`Value null at 'streamName' failed to satisfy constraint: Member must
//! not be null`) for a missing one. Responses are built with [`Value::map`] and encoded in the
//! request's format; failures are rendered with [`AwsError::to_body`].
//!
//! - [`json`]: AWS JSON 1.1. Blobs are base64, timestamps epoch seconds.
//! - [`cbor`]: AWS CBOR 1.1. Blobs are byte strings, timestamps tag 1 over epoch milliseconds.
//! - [`event_stream`]: the `application/vnd.amazon.eventstream` framing of SubscribeToShard.
//! - [`validation`]: AWS-style validation messages, one or many violations.
//!
//! Decoders never panic on any input and bound nesting at [`MAX_DEPTH`].

// Tests assert with unwrap; production code must not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cbor;
mod doc;
mod error;
pub mod event_stream;
mod format;
pub mod json;
pub mod validation;
mod value;

pub use doc::Doc;
pub use error::{AwsError, kind};
pub use format::{CBOR_CONTENT_TYPE, Format, JSON_CONTENT_TYPE};
pub use value::{Key, MapBuilder, Value};

/// The deepest nesting of maps, lists (and CBOR tags) a request may have; deeper bodies are a
/// `SerializationException`. Kinesis requests nest at most four levels.
pub const MAX_DEPTH: usize = 64;
