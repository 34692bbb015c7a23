//! The two body encodings of the Kinesis API and how a request names them.

use crate::error::AwsError;
use crate::value::Value;
use crate::{cbor, json};

/// `Content-Type` of AWS JSON 1.1 bodies.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// `Content-Type` of AWS CBOR 1.1 bodies.
pub const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// A body encoding. A response is always written in the request's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// AWS JSON 1.1: blobs are base64 strings, timestamps epoch seconds.
    Json,
    /// AWS CBOR 1.1: blobs are byte strings, timestamps tag 1 over epoch milliseconds.
    Cbor,
}

impl Format {
    /// The format a `Content-Type` header names, ignoring case and parameters
    /// (`; charset=utf-8`). AWS JSON 1.0/1.1 and plain `application/json` are JSON;
    /// `application/x-amz-cbor-1.1` is CBOR; anything else is `None`.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case(JSON_CONTENT_TYPE)
            || media.eq_ignore_ascii_case("application/x-amz-json-1.0")
            || media.eq_ignore_ascii_case("application/json")
        {
            Some(Format::Json)
        } else if media.eq_ignore_ascii_case(CBOR_CONTENT_TYPE) {
            Some(Format::Cbor)
        } else {
            None
        }
    }

    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_CONTENT_TYPE,
            Format::Cbor => CBOR_CONTENT_TYPE,
        }
    }

    /// Decodes a request body; an empty body is an empty map, anything but a map at the top
    /// level is a `SerializationException`.
    pub fn decode(self, body: &[u8]) -> Result<Value, AwsError> {
        match self {
            Format::Json => json::decode(body),
            Format::Cbor => cbor::decode(body),
        }
    }

    /// Encodes a response body.
    pub fn encode(self, value: &Value) -> Vec<u8> {
        match self {
            Format::Json => json::encode(value),
            Format::Cbor => cbor::encode(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_map_to_formats() {
        assert_eq!(
            Format::from_content_type("application/x-amz-json-1.1"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("Application/X-Amz-Json-1.1; charset=UTF-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/x-amz-json-1.0"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/x-amz-cbor-1.1"),
            Some(Format::Cbor)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!(Format::from_content_type(""), None);
    }

    #[test]
    fn content_type_round_trips() {
        for format in [Format::Json, Format::Cbor] {
            assert_eq!(
                Format::from_content_type(format.content_type()),
                Some(format)
            );
        }
    }
}
