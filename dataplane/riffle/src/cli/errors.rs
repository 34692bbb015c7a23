//! Turning gRPC failures into one line a user can act on.
//!
//! The server puts the Kinesis exception name in front of each message
//! (`ResourceNotFoundException: Stream orders under account ... not found.`); users get the
//! plain sentence, and for the failures that usually mean "wrong server", a hint naming the
//! endpoint.

use tonic::{Code, Status};

/// The innermost cause of an error (e.g. "Connection refused (os error 111)" rather than
/// "transport error").
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The message without its leading exception name.
fn sentence(message: &str) -> &str {
    match message.split_once(": ") {
        Some((kind, rest)) if kind.ends_with("Exception") || kind == "InternalFailure" => rest,
        _ => message,
    }
}

/// The stream named by a Kinesis "Stream X under account Y not found." message.
fn missing_stream(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("Stream ")?;
    let (name, tail) = rest.split_once(" under account ")?;
    tail.ends_with("not found.").then_some(name)
}

/// One line describing a failed call to the server at `endpoint`.
pub fn readable(status: &Status, endpoint: &str) -> String {
    let message = sentence(status.message());
    match status.code() {
        Code::NotFound => match missing_stream(message) {
            Some(stream) => {
                format!("stream {stream} not found (is the server running at {endpoint}?)")
            }
            None => message.trim_end_matches('.').to_string(),
        },
        Code::Unavailable => format!(
            "cannot reach the riffle server at {endpoint} ({}); is it running?",
            status.message()
        ),
        Code::Unimplemented => format!(
            "{endpoint} does not serve the riffle gRPC API (the standalone server's gRPC port is 4568)"
        ),
        Code::DeadlineExceeded | Code::Cancelled => {
            format!("the riffle server at {endpoint} did not answer in time")
        }
        _ if message.is_empty() => format!("the call failed with {:?}", status.code()),
        _ => message.trim_end_matches('.').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:4568";

    #[test]
    fn a_missing_stream_hints_at_the_endpoint() {
        let status = Status::not_found(
            "ResourceNotFoundException: Stream orders under account 000000000000 not found.",
        );
        assert_eq!(
            readable(&status, ENDPOINT),
            "stream orders not found (is the server running at http://127.0.0.1:4568?)"
        );
    }

    #[test]
    fn other_failures_keep_the_servers_sentence() {
        let status = Status::invalid_argument(
            "InvalidArgumentException: UpdateShardCount cannot scale up over double your current open shard count (2).",
        );
        assert_eq!(
            readable(&status, ENDPOINT),
            "UpdateShardCount cannot scale up over double your current open shard count (2)"
        );
        let shard = Status::not_found(
            "ResourceNotFoundException: Shard shardId-000000000009 in stream s under account 0 does not exist",
        );
        assert_eq!(
            readable(&shard, ENDPOINT),
            "Shard shardId-000000000009 in stream s under account 0 does not exist"
        );
        let plain = Status::internal("something odd: with a colon");
        assert_eq!(readable(&plain, ENDPOINT), "something odd: with a colon");
        let unreachable = Status::unavailable("tcp connect error");
        assert!(readable(&unreachable, ENDPOINT).starts_with("cannot reach the riffle server at"));
    }
}
