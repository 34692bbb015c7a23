//! The stream service's errors as gRPC statuses.
//!
//! The gRPC code says what kind of failure it is; the message keeps the Kinesis exception name
//! in front (`ResourceNotFoundException: Stream orders under account ... not found.`), so a
//! client can branch exactly as a Kinesis client would.

use tonic::{Code, Status};

use crate::streams::{ApiError, ErrorKind};

/// The gRPC code of an error kind.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::ResourceNotFound => Code::NotFound,
        ErrorKind::ResourceInUse | ErrorKind::KmsInvalidState => Code::FailedPrecondition,
        ErrorKind::InvalidArgument | ErrorKind::Validation => Code::InvalidArgument,
        ErrorKind::LimitExceeded | ErrorKind::ProvisionedThroughputExceeded => {
            Code::ResourceExhausted
        }
        ErrorKind::ExpiredIterator => Code::OutOfRange,
        ErrorKind::AccessDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::NotHosted | ErrorKind::NotLeader => Code::Unavailable,
    }
}

/// The status a client receives for `error`.
pub fn status(error: ApiError) -> Status {
    Status::new(code(error.kind), error.to_string())
}

/// Like [`status`], but `ResourceInUse` means the name is taken (CreateStream).
pub fn create_status(error: ApiError) -> Status {
    match error.kind {
        ErrorKind::ResourceInUse => Status::already_exists(error.to_string()),
        _ => status(error),
    }
}

/// An `InvalidArgumentException` for a request this API rejects before calling the service.
pub fn invalid(message: impl Into<String>) -> Status {
    status(ApiError::invalid(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_kinesis_type_in_the_message() {
        let error = ApiError::stream_not_found("orders", "000000000000");
        let status = status(error);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "ResourceNotFoundException: Stream orders under account 000000000000 not found."
        );
    }

    #[test]
    fn maps_every_kind() {
        let cases = [
            (ErrorKind::ResourceNotFound, Code::NotFound),
            (ErrorKind::ResourceInUse, Code::FailedPrecondition),
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::Validation, Code::InvalidArgument),
            (ErrorKind::LimitExceeded, Code::ResourceExhausted),
            (
                ErrorKind::ProvisionedThroughputExceeded,
                Code::ResourceExhausted,
            ),
            (ErrorKind::ExpiredIterator, Code::OutOfRange),
            (ErrorKind::KmsInvalidState, Code::FailedPrecondition),
            (ErrorKind::AccessDenied, Code::PermissionDenied),
            (ErrorKind::Internal, Code::Internal),
            (ErrorKind::NotHosted, Code::Unavailable),
        ];
        for (kind, expected) in cases {
            assert_eq!(code(kind), expected, "{kind:?}");
        }
        let taken = ApiError::new(ErrorKind::ResourceInUse, "Stream s already exists.");
        assert_eq!(create_status(taken).code(), Code::AlreadyExists);
    }
}
