//! Errors of the stream service, in the vocabulary of the Kinesis API.

/// What went wrong, named after the Kinesis exception a client receives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// `ResourceNotFoundException`.
    ResourceNotFound,
    /// `ResourceInUseException`.
    ResourceInUse,
    /// `InvalidArgumentException`.
    InvalidArgument,
    /// `LimitExceededException`.
    LimitExceeded,
    /// `ProvisionedThroughputExceededException`.
    ProvisionedThroughputExceeded,
    /// `ExpiredIteratorException`.
    ExpiredIterator,
    /// `ValidationException`.
    Validation,
    /// `KMSInvalidStateException`.
    KmsInvalidState,
    /// `AccessDeniedException`.
    AccessDenied,
    /// `InternalFailure`.
    Internal,
    /// `ServiceUnavailable`: the shard is stored by another shard group of the stream; the
    /// gateway retries at the right one.
    NotHosted,
    /// `ServiceUnavailable`: this replica of a replicated shard group is not its leader (or
    /// lost leadership before the write committed); the client retries at the leader.
    NotLeader,
}

impl ErrorKind {
    /// The `__type` a Kinesis client branches on.
    pub fn aws_type(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::InvalidArgument => "InvalidArgumentException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorKind::ExpiredIterator => "ExpiredIteratorException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::KmsInvalidState => "KMSInvalidStateException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::Internal => "InternalFailure",
            ErrorKind::NotHosted => "ServiceUnavailable",
            ErrorKind::NotLeader => "ServiceUnavailable",
        }
    }

    /// The HTTP status Kinesis answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::AccessDenied => 403,
            ErrorKind::Internal => 500,
            ErrorKind::NotHosted | ErrorKind::NotLeader => 503,
            _ => 400,
        }
    }
}

/// An error with the message a Kinesis client would see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.aws_type())]
pub struct ApiError {
    /// The exception type.
    pub kind: ErrorKind,
    /// The human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// `ResourceNotFoundException` for a stream, worded as Kinesis words it.
    pub fn stream_not_found(stream: &str, account: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {stream} under account {account} not found."),
        )
    }

    /// `InvalidArgumentException`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }

    /// `ServiceUnavailable` for a request that reached a shard group not hosting `shard`.
    pub fn not_hosted(stream: &str, shard: &super::model::ShardMeta) -> ApiError {
        ApiError::new(
            ErrorKind::NotHosted,
            format!(
                "{NOT_HOSTED_PREFIX}{} of stream {stream} is stored by shard group {}.",
                shard.id(),
                shard.group
            ),
        )
    }

    /// `InternalFailure`, for storage errors a client cannot fix.
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::Internal, message.to_string())
    }
}

impl From<riffle_log::LogError> for ApiError {
    fn from(error: riffle_log::LogError) -> ApiError {
        ApiError::internal(error)
    }
}

/// How the message of a [`ErrorKind::NotHosted`] error starts.
pub const NOT_HOSTED_PREFIX: &str = "Shard ";

/// The shard group named by the message of a [`ErrorKind::NotHosted`] error.
pub fn not_hosted_group(message: &str) -> Option<u32> {
    message
        .strip_suffix('.')?
        .rsplit_once("is stored by shard group ")?
        .1
        .parse()
        .ok()
}

/// Shorthand for results of the stream service.
pub type ApiResult<T> = Result<T, ApiError>;
