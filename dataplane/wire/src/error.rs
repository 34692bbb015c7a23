//! AWS-shaped errors: an exception type name, a message and the HTTP status that carries them.

use std::borrow::Cow;

use crate::format::Format;
use crate::value::Value;

/// Exception type names, as SDKs match them against `__type`.
///
/// The modeled Kinesis exceptions come from the service model; the rest are the common errors every
/// AWS JSON service answers with before an operation runs.
pub mod kind {
    /// The named stream, shard or consumer does not exist.
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
    /// The resource is not in a state that allows the call (e.g. stream still CREATING).
    pub const RESOURCE_IN_USE: &str = "ResourceInUseException";
    /// A parameter is well-formed but not acceptable.
    pub const INVALID_ARGUMENT: &str = "InvalidArgumentException";
    /// An account or stream limit would be exceeded.
    pub const LIMIT_EXCEEDED: &str = "LimitExceededException";
    /// The shard's read or write throughput was exceeded.
    pub const PROVISIONED_THROUGHPUT_EXCEEDED: &str = "ProvisionedThroughputExceededException";
    /// A shard iterator is older than five minutes.
    pub const EXPIRED_ITERATOR: &str = "ExpiredIteratorException";
    /// A pagination token has expired.
    pub const EXPIRED_NEXT_TOKEN: &str = "ExpiredNextTokenException";
    /// The caller may not perform the action (modeled Kinesis exception).
    pub const ACCESS_DENIED: &str = "AccessDeniedException";
    /// The KMS key is disabled.
    pub const KMS_DISABLED: &str = "KMSDisabledException";
    /// The KMS key is not in a usable state.
    pub const KMS_INVALID_STATE: &str = "KMSInvalidStateException";
    /// The caller may not use the KMS key.
    pub const KMS_ACCESS_DENIED: &str = "KMSAccessDeniedException";
    /// The KMS key does not exist.
    pub const KMS_NOT_FOUND: &str = "KMSNotFoundException";
    /// The account is not subscribed to KMS.
    pub const KMS_OPT_IN_REQUIRED: &str = "KMSOptInRequired";
    /// KMS throttled the request.
    pub const KMS_THROTTLING: &str = "KMSThrottlingException";
    /// A modeled internal failure, as carried in SubscribeToShard event streams.
    pub const INTERNAL_FAILURE_EXCEPTION: &str = "InternalFailureException";
    /// A member violates its modeled constraints.
    pub const VALIDATION: &str = "ValidationException";
    /// The body could not be parsed, or a member has the wrong type.
    pub const SERIALIZATION: &str = "SerializationException";
    /// `X-Amz-Target` names no operation of this service.
    pub const UNKNOWN_OPERATION: &str = "UnknownOperationException";
    /// The request carries no `Authorization` header or query signature.
    pub const MISSING_AUTHENTICATION_TOKEN: &str = "MissingAuthenticationTokenException";
    /// The `Authorization` header is malformed.
    pub const INCOMPLETE_SIGNATURE: &str = "IncompleteSignatureException";
    /// The signature does not match the request.
    pub const INVALID_SIGNATURE: &str = "InvalidSignatureException";
    /// The access key id is not known.
    pub const UNRECOGNIZED_CLIENT: &str = "UnrecognizedClientException";
    /// The request rate for the account is too high.
    pub const THROTTLING: &str = "ThrottlingException";
    /// An unexpected server-side failure (the common, unmodeled error).
    pub const INTERNAL_FAILURE: &str = "InternalFailure";
    /// The service is temporarily unable to answer.
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
}

/// An error as an AWS client sees it: `__type`, `message` and the HTTP status.
///
/// Every failure a Kinesis operation can report is one of these; rendering it with
/// [`AwsError::to_body`] gives the exact body the SDKs parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AwsError {
    /// The exception type name, e.g. `ResourceNotFoundException`.
    pub kind: &'static str,
    /// The human-readable message.
    pub message: String,
    /// The HTTP status code that carries the error.
    pub status: u16,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:path, $status:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new($kind, $status, message)
            }
        )*
    };
}

impl AwsError {
    /// An error of any type with an explicit status.
    pub fn new(kind: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status,
        }
    }

    /// An error of `kind` with the status AWS uses for it: 403 for authentication failures,
    /// 500 for `InternalFailure`, 503 for `ServiceUnavailable`, 400 otherwise.
    pub fn of_kind(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(kind, default_status(kind), message)
    }

    constructors! {
        /// `ResourceNotFoundException` (400).
        resource_not_found => kind::RESOURCE_NOT_FOUND, 400;
        /// `ResourceInUseException` (400).
        resource_in_use => kind::RESOURCE_IN_USE, 400;
        /// `InvalidArgumentException` (400).
        invalid_argument => kind::INVALID_ARGUMENT, 400;
        /// `LimitExceededException` (400).
        limit_exceeded => kind::LIMIT_EXCEEDED, 400;
        /// `ProvisionedThroughputExceededException` (400).
        provisioned_throughput_exceeded => kind::PROVISIONED_THROUGHPUT_EXCEEDED, 400;
        /// `ExpiredIteratorException` (400).
        expired_iterator => kind::EXPIRED_ITERATOR, 400;
        /// `ExpiredNextTokenException` (400).
        expired_next_token => kind::EXPIRED_NEXT_TOKEN, 400;
        /// `AccessDeniedException` (400: the Kinesis model gives it no other status).
        access_denied => kind::ACCESS_DENIED, 400;
        /// `KMSDisabledException` (400).
        kms_disabled => kind::KMS_DISABLED, 400;
        /// `KMSInvalidStateException` (400).
        kms_invalid_state => kind::KMS_INVALID_STATE, 400;
        /// `KMSAccessDeniedException` (400).
        kms_access_denied => kind::KMS_ACCESS_DENIED, 400;
        /// `KMSNotFoundException` (400).
        kms_not_found => kind::KMS_NOT_FOUND, 400;
        /// `KMSOptInRequired` (400).
        kms_opt_in_required => kind::KMS_OPT_IN_REQUIRED, 400;
        /// `KMSThrottlingException` (400).
        kms_throttling => kind::KMS_THROTTLING, 400;
        /// `ValidationException` (400). See [`crate::validation`] for AWS-style messages.
        validation => kind::VALIDATION, 400;
        /// `SerializationException` (400).
        serialization => kind::SERIALIZATION, 400;
        /// `UnknownOperationException` (400).
        unknown_operation => kind::UNKNOWN_OPERATION, 400;
        /// `MissingAuthenticationTokenException` (403).
        missing_authentication_token => kind::MISSING_AUTHENTICATION_TOKEN, 403;
        /// `IncompleteSignatureException` (400).
        incomplete_signature => kind::INCOMPLETE_SIGNATURE, 400;
        /// `InvalidSignatureException` (403).
        invalid_signature => kind::INVALID_SIGNATURE, 403;
        /// `UnrecognizedClientException` (403).
        unrecognized_client => kind::UNRECOGNIZED_CLIENT, 403;
        /// `ThrottlingException` (400).
        throttling => kind::THROTTLING, 400;
        /// `InternalFailure` (500).
        internal_failure => kind::INTERNAL_FAILURE, 500;
        /// `ServiceUnavailable` (503).
        service_unavailable => kind::SERVICE_UNAVAILABLE, 503;
    }

    /// The error as a document: `{"__type": kind, "message": message}`.
    pub fn to_value(&self) -> Value {
        Value::map()
            .with("__type", self.kind)
            .with("message", self.message.as_str())
            .build()
    }

    /// The response body in `format`: `{"__type":"…","message":"…"}` in JSON, the same map in CBOR.
    pub fn to_body(&self, format: Format) -> Vec<u8> {
        format.encode(&self.to_value())
    }
}

fn default_status(kind: &str) -> u16 {
    match kind {
        kind::MISSING_AUTHENTICATION_TOKEN
        | kind::INVALID_SIGNATURE
        | kind::UNRECOGNIZED_CLIENT => 403,
        kind::INTERNAL_FAILURE => 500,
        kind::SERVICE_UNAVAILABLE => 503,
        _ => 400,
    }
}

/// Lower-cases the first character of a member name, as AWS does in validation paths
/// (`StreamName` → `streamName`, `StreamARN` → `streamARN`).
pub(crate) fn lower_camel(name: &str) -> Cow<'_, str> {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_uppercase() => {
            let mut out = String::with_capacity(name.len());
            out.extend(first.to_lowercase());
            out.push_str(chars.as_str());
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_is_exact() {
        let err = AwsError::resource_not_found("Stream s under account 000000000000 not found.");
        assert_eq!(err.status, 400);
        assert_eq!(
            String::from_utf8(err.to_body(Format::Json)).unwrap(),
            r#"{"__type":"ResourceNotFoundException","message":"Stream s under account 000000000000 not found."}"#
        );
    }

    #[test]
    fn json_body_escapes_message() {
        let err = AwsError::serialization("bad \"x\"\n");
        assert_eq!(
            err.to_body(Format::Json),
            br#"{"__type":"SerializationException","message":"bad \"x\"\n"}"#
        );
    }

    #[test]
    fn cbor_body_is_the_same_map() {
        let err = AwsError::expired_iterator("Iterator expired.");
        let decoded: ciborium::Value =
            ciborium::from_reader(&err.to_body(Format::Cbor)[..]).unwrap();
        assert_eq!(
            decoded,
            ciborium::Value::Map(vec![
                ("__type".into(), "ExpiredIteratorException".into()),
                ("message".into(), "Iterator expired.".into()),
            ])
        );
    }

    #[test]
    fn statuses_follow_aws() {
        assert_eq!(AwsError::missing_authentication_token("x").status, 403);
        assert_eq!(AwsError::internal_failure("x").status, 500);
        assert_eq!(AwsError::service_unavailable("x").status, 503);
        assert_eq!(AwsError::unknown_operation("x").status, 400);
        assert_eq!(AwsError::of_kind(kind::INVALID_SIGNATURE, "x").status, 403);
        assert_eq!(AwsError::of_kind(kind::INTERNAL_FAILURE, "x").status, 500);
        assert_eq!(AwsError::of_kind(kind::LIMIT_EXCEEDED, "x").status, 400);
    }

    #[test]
    fn display_names_type_and_message() {
        assert_eq!(
            AwsError::invalid_argument("nope").to_string(),
            "InvalidArgumentException: nope"
        );
    }

    #[test]
    fn lower_camel_only_touches_the_first_letter() {
        assert_eq!(lower_camel("StreamName"), "streamName");
        assert_eq!(lower_camel("StreamARN"), "streamARN");
        assert_eq!(lower_camel("already"), "already");
        assert_eq!(lower_camel(""), "");
    }
}
