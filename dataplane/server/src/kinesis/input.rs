//! Reading and validating the members many operations share, with Kinesis's errors.

use riffle_wire::validation::{self, Violations};
use riffle_wire::{AwsError, Doc};

use crate::streams::Catalog;

/// The pattern of stream and consumer names.
const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";

fn is_name(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a name member: 1..=128 characters of `[a-zA-Z0-9_.-]`.
pub fn check_name(doc: &Doc<'_>, member: &str, value: &str, violations: &mut Violations) {
    let path = doc.path(member);
    if value.is_empty() {
        violations.push(&path, Some(value), validation::min_length(1));
    } else if value.chars().count() > 128 {
        violations.push(&path, Some(value), validation::max_length(128));
    }
    if !value.is_empty() && !is_name(value) {
        violations.push(&path, Some(value), validation::pattern(NAME_PATTERN));
    }
}

/// The stream an operation names, by `StreamName` or `StreamARN`.
pub fn stream_name(catalog: &Catalog, doc: &Doc<'_>) -> Result<String, AwsError> {
    let name = doc.str_opt("StreamName")?;
    let arn = doc.str_opt("StreamARN")?;
    match (name, arn) {
        (Some(name), _) => {
            let mut violations = Violations::new();
            check_name(doc, "StreamName", name, &mut violations);
            violations.into_result()?;
            if let Some(arn) = arn {
                let from_arn = catalog.stream_name_from_arn(arn)?;
                if from_arn != name {
                    return Err(AwsError::invalid_argument(format!(
                        "StreamARN {arn} does not name stream {name}."
                    )));
                }
            }
            Ok(name.to_string())
        }
        (None, Some(arn)) => Ok(catalog.stream_name_from_arn(arn)?),
        (None, None) => Err(AwsError::invalid_argument(
            "Either StreamName or StreamARN should be provided.",
        )),
    }
}

/// The stream named only by `StreamARN` (operations that take no `StreamName`).
pub fn stream_arn(catalog: &Catalog, doc: &Doc<'_>, member: &str) -> Result<String, AwsError> {
    let arn = doc.str_required(member)?;
    Ok(catalog.stream_name_from_arn(arn)?)
}

/// An optional integer member within `min..=max`.
pub fn int_in(doc: &Doc<'_>, member: &str, min: i64, max: i64) -> Result<Option<i64>, AwsError> {
    doc.int_in(member, min, max)
}

/// A required integer member within `min..=max`.
pub fn int_in_required(doc: &Doc<'_>, member: &str, min: i64, max: i64) -> Result<i64, AwsError> {
    int_in(doc, member, min, max).and_then(|v| doc.required(member, v))
}

/// A shard id member (`shardId-000000000000`), checked for length and pattern.
pub fn shard_id<'a>(doc: &Doc<'a>, member: &str) -> Result<&'a str, AwsError> {
    let value = doc.str_required(member)?;
    let mut violations = Violations::new();
    check_name(doc, member, value, &mut violations);
    violations.into_result()?;
    Ok(value)
}

/// An enum member, checked against its allowed values.
pub fn enum_member<'a>(
    doc: &Doc<'a>,
    member: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, AwsError> {
    match doc.str_opt(member)? {
        Some(value) if !allowed.contains(&value) => Err(validation::single(
            &doc.path(member),
            Some(value),
            &validation::enum_value(allowed),
        )),
        other => Ok(other),
    }
}

/// Epoch seconds to milliseconds.
pub fn seconds_to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}
