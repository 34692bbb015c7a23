//! AWS-style `ValidationException` messages.
//!
//! AWS reports every violated constraint of a request in one message:
//! `2 validation errors detected: Value null at 'streamName' failed to satisfy constraint:
//! Member must not be null; Value '0' at 'shardCount' failed to satisfy constraint: Member must
//! have value greater than or equal to 1`. Paths are lower-camel-cased member names joined by
//! dots, with list elements written `records.1.member` (1-based); [`crate::Doc::path`] builds them.

use crate::error::AwsError;

/// One violated constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The member path, e.g. `records.1.member.partitionKey`.
    pub path: String,
    /// The offending value as AWS prints it; `None` prints as `null`.
    pub value: Option<String>,
    /// The constraint text, e.g. `Member must not be null`.
    pub constraint: String,
}

impl Violation {
    fn render(&self, out: &mut String) {
        match &self.value {
            Some(value) => {
                out.push_str("Value '");
                out.push_str(value);
                out.push('\'');
            }
            None => out.push_str("Value null"),
        }
        out.push_str(" at '");
        out.push_str(&self.path);
        out.push_str("' failed to satisfy constraint: ");
        out.push_str(&self.constraint);
    }
}

/// Collects violations in request order and turns them into one `ValidationException`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation; `value` is the offending value (`None` for null).
    pub fn push(
        &mut self,
        path: impl Into<String>,
        value: Option<&str>,
        constraint: impl Into<String>,
    ) {
        self.0.push(Violation {
            path: path.into(),
            value: value.map(str::to_owned),
            constraint: constraint.into(),
        });
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded violations.
    pub fn violations(&self) -> &[Violation] {
        &self.0
    }

    /// The `ValidationException` for the recorded violations, if any.
    pub fn into_error(self) -> Option<AwsError> {
        if self.0.is_empty() {
            return None;
        }
        let count = self.0.len();
        let mut message = format!(
            "{count} validation error{} detected: ",
            if count == 1 { "" } else { "s" }
        );
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            violation.render(&mut message);
        }
        Some(AwsError::validation(message))
    }

    /// `Ok` when nothing was recorded, else the `ValidationException`.
    pub fn into_result(self) -> Result<(), AwsError> {
        match self.into_error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// A `ValidationException` for a single violation.
pub fn single(path: &str, value: Option<&str>, constraint: &str) -> AwsError {
    let mut violations = Violations::new();
    violations.push(path, value, constraint);
    violations
        .into_error()
        .unwrap_or_else(|| AwsError::validation(String::new()))
}

/// `Member must not be null`.
pub fn not_null() -> String {
    "Member must not be null".to_owned()
}

/// `Member must have length less than or equal to {max}`.
pub fn max_length(max: usize) -> String {
    format!("Member must have length less than or equal to {max}")
}

/// `Member must have length greater than or equal to {min}`.
pub fn min_length(min: usize) -> String {
    format!("Member must have length greater than or equal to {min}")
}

/// `Member must satisfy regular expression pattern: {pattern}`.
pub fn pattern(pattern: &str) -> String {
    format!("Member must satisfy regular expression pattern: {pattern}")
}

/// `Member must have value greater than or equal to {min}`.
pub fn min_value(min: i64) -> String {
    format!("Member must have value greater than or equal to {min}")
}

/// `Member must have value less than or equal to {max}`.
pub fn max_value(max: i64) -> String {
    format!("Member must have value less than or equal to {max}")
}

/// `Member must satisfy enum value set: [A, B]`.
pub fn enum_value(allowed: &[&str]) -> String {
    format!(
        "Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_message_matches_aws() {
        let err = single("streamName", None, &not_null());
        assert_eq!(err.kind, "ValidationException");
        assert_eq!(err.status, 400);
        assert_eq!(
            err.message,
            "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn several_errors_are_counted_and_joined() {
        let mut v = Violations::new();
        assert!(v.is_empty());
        v.push("streamName", Some("a b"), pattern("[a-zA-Z0-9_.-]+"));
        v.push("streamName", Some(&"x".repeat(3)), max_length(128));
        v.push("shardCount", Some("0"), min_value(1));
        assert_eq!(v.violations().len(), 3);
        let err = v.into_result().unwrap_err();
        assert_eq!(
            err.message,
            "3 validation errors detected: \
             Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; \
             Value 'xxx' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128; \
             Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
    }

    #[test]
    fn no_violations_is_ok() {
        assert_eq!(Violations::new().into_result(), Ok(()));
        assert_eq!(Violations::new().into_error(), None);
    }

    #[test]
    fn constraint_texts() {
        assert_eq!(
            min_length(1),
            "Member must have length greater than or equal to 1"
        );
        assert_eq!(
            max_value(100000),
            "Member must have value less than or equal to 100000"
        );
        assert_eq!(
            enum_value(&["PROVISIONED", "ON_DEMAND"]),
            "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
        );
    }
}
