//! Typed, path-aware reading of request documents.
//!
//! Operations read their input through [`Doc`], which hides the differences between JSON and
//! CBOR (a blob is base64 text in one and a byte string in the other) and turns every type
//! mismatch into the error AWS gives: a `SerializationException` naming the member. A missing
//! required member is a `ValidationException` with AWS's `Member must not be null` message.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use crate::error::{AwsError, lower_camel};
use crate::format::Format;
use crate::validation;
use crate::value::{Key, Value};

/// Epoch values at or above this magnitude are milliseconds, below it seconds. 1e11 seconds is
/// the year 5138 and 1e11 milliseconds is March 1973, so every plausible time reads correctly
/// whichever unit a CBOR client chose.
pub(crate) const MILLIS_THRESHOLD: f64 = 1e11;

/// Reads a CBOR epoch number, which AWS SDKs send in milliseconds and other clients in seconds.
pub(crate) fn epoch_to_seconds(epoch: f64) -> f64 {
    if epoch.abs() >= MILLIS_THRESHOLD {
        epoch / 1000.0
    } else {
        epoch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Member(&'a str),
    Index(usize),
    Key(&'a str),
}

/// A structure inside a request: its members, the body format and where it sits in the request.
///
/// Accessors treat an absent member and a `null` one alike. `*_opt` accessors return `Ok(None)`
/// for both; `*_required` ones answer a `ValidationException`.
#[derive(Debug, Clone)]
pub struct Doc<'a> {
    members: &'a [(Key, Value)],
    format: Format,
    path: Vec<Segment<'a>>,
}

impl<'a> Doc<'a> {
    /// The top-level structure of a decoded request; anything but a map is a
    /// `SerializationException`.
    pub fn new(value: &'a Value, format: Format) -> Result<Doc<'a>, AwsError> {
        match value {
            Value::Map(members) => Ok(Doc {
                members,
                format,
                path: Vec::new(),
            }),
            other => Err(AwsError::serialization(format!(
                "The request must be a structure, not a {}",
                other.type_name()
            ))),
        }
    }

    /// The body format this document came in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// All members in wire order, nulls and duplicates included.
    pub fn members(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + use<'a> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The raw value of a member; `None` when absent or null.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.lookup(name).map(|(_, v)| v)
    }

    /// Whether the member is present and not null.
    pub fn has(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// The AWS validation path of a member: `streamName` at the top level,
    /// `records.1.member.partitionKey` inside the first element of `Records`.
    pub fn path(&self, name: &str) -> String {
        if name.is_empty() {
            return render_validation_path(&self.path);
        }
        let mut path: Vec<Segment<'_>> = self.path.clone();
        path.push(Segment::Member(name));
        render_validation_path(&path)
    }

    /// The `ValidationException` for a missing required member.
    pub fn missing(&self, name: &str) -> AwsError {
        validation::single(&self.path(name), None, &validation::not_null())
    }

    /// Unwraps an optional member or answers [`Doc::missing`].
    pub fn required<T>(&self, name: &str, value: Option<T>) -> Result<T, AwsError> {
        value.ok_or_else(|| self.missing(name))
    }

    /// A string member.
    pub fn str_opt(&self, name: &str) -> Result<Option<&'a str>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((_, Value::Str(s))) => Ok(Some(s)),
            Some((key, other)) => Err(self.type_error(&self.child(key), "a string", other)),
        }
    }

    /// A required string member.
    pub fn str_required(&self, name: &str) -> Result<&'a str, AwsError> {
        self.str_opt(name).and_then(|v| self.required(name, v))
    }

    /// An integer member. Integral floats (`5.0`) are accepted; fractions and values outside
    /// `i64` are `SerializationException`s.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((_, Value::Int(i))) => Ok(Some(*i)),
            Some((key, Value::Float(f))) => {
                // 2^63 is exactly representable, so the range check is exact.
                if f.fract() == 0.0
                    && *f >= -9_223_372_036_854_775_808.0
                    && *f < 9_223_372_036_854_775_808.0
                {
                    Ok(Some(*f as i64))
                } else {
                    Err(AwsError::serialization(format!(
                        "Member '{}' must be an integer, not {f}",
                        render_wire_path(&self.child(key))
                    )))
                }
            }
            Some((key, other)) => Err(self.type_error(&self.child(key), "an integer", other)),
        }
    }

    /// An optional integer member within `min..=max`; outside it, the `ValidationException`
    /// AWS gives (`Member must have value greater than or equal to {min}` / `less than or equal
    /// to {max}`).
    pub fn int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, AwsError> {
        let Some(value) = self.int_opt(name)? else {
            return Ok(None);
        };
        let constraint = if value < min {
            validation::min_value(min)
        } else if value > max {
            validation::max_value(max)
        } else {
            return Ok(Some(value));
        };
        Err(validation::single(
            &self.path(name),
            Some(&value.to_string()),
            &constraint,
        ))
    }

    /// A required integer member.
    pub fn int_required(&self, name: &str) -> Result<i64, AwsError> {
        self.int_opt(name).and_then(|v| self.required(name, v))
    }

    /// A boolean member.
    pub fn bool_opt(&self, name: &str) -> Result<Option<bool>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(*b)),
            Some((key, other)) => Err(self.type_error(&self.child(key), "a boolean", other)),
        }
    }

    /// A required boolean member.
    pub fn bool_required(&self, name: &str) -> Result<bool, AwsError> {
        self.bool_opt(name).and_then(|v| self.required(name, v))
    }

    /// A blob member. JSON carries it as padded standard base64 (anything else is a
    /// `SerializationException`); CBOR as a byte string, or a text string taken as its UTF-8 bytes.
    pub fn blob_opt(&self, name: &str) -> Result<Option<Bytes>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((_, Value::Bytes(b))) => Ok(Some(b.clone())),
            Some((key, Value::Str(s))) => match self.format {
                Format::Json => STANDARD
                    .decode(s)
                    .map(|v| Some(Bytes::from(v)))
                    .map_err(|e| {
                        AwsError::serialization(format!(
                            "Member '{}' is not valid base64: {e}",
                            render_wire_path(&self.child(key))
                        ))
                    }),
                Format::Cbor => Ok(Some(Bytes::copy_from_slice(s.as_bytes()))),
            },
            Some((key, other)) => Err(self.type_error(&self.child(key), "a blob", other)),
        }
    }

    /// A required blob member.
    pub fn blob_required(&self, name: &str) -> Result<Bytes, AwsError> {
        self.blob_opt(name).and_then(|v| self.required(name, v))
    }

    /// A timestamp member, in epoch seconds. JSON numbers are seconds. In CBOR, tag 1 and plain
    /// numbers are accepted and read as milliseconds when at least 1e11 (AWS SDKs send
    /// milliseconds), seconds otherwise.
    pub fn timestamp_opt(&self, name: &str) -> Result<Option<f64>, AwsError> {
        let (key, secs) = match self.lookup(name) {
            None => return Ok(None),
            Some((key, Value::Timestamp(secs))) => (key, *secs),
            Some((key, Value::Int(i))) => (key, self.number_to_seconds(*i as f64)),
            Some((key, Value::Float(f))) => (key, self.number_to_seconds(*f)),
            Some((key, other)) => {
                return Err(self.type_error(&self.child(key), "a timestamp", other));
            }
        };
        if secs.is_finite() {
            Ok(Some(secs))
        } else {
            Err(AwsError::serialization(format!(
                "Member '{}' is not a valid timestamp",
                render_wire_path(&self.child(key))
            )))
        }
    }

    /// A required timestamp member.
    pub fn timestamp_required(&self, name: &str) -> Result<f64, AwsError> {
        self.timestamp_opt(name)
            .and_then(|v| self.required(name, v))
    }

    /// A nested structure member.
    pub fn doc_opt(&self, name: &str) -> Result<Option<Doc<'a>>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((key, Value::Map(members))) => Ok(Some(Doc {
                members,
                format: self.format,
                path: self.child(key),
            })),
            Some((key, other)) => Err(self.type_error(&self.child(key), "a structure", other)),
        }
    }

    /// A required nested structure member.
    pub fn doc_required(&self, name: &str) -> Result<Doc<'a>, AwsError> {
        self.doc_opt(name).and_then(|v| self.required(name, v))
    }

    /// A list of structures (e.g. `Records`). A null element is a `ValidationException`
    /// at `records.N.member`, any other non-structure a `SerializationException`.
    pub fn list_opt(&self, name: &str) -> Result<Option<Vec<Doc<'a>>>, AwsError> {
        let Some((key, items)) = self.list_items(name)? else {
            return Ok(None);
        };
        let mut docs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut path = self.child(key);
            path.push(Segment::Index(i));
            match item {
                Value::Map(members) => docs.push(Doc {
                    members,
                    format: self.format,
                    path,
                }),
                Value::Null => {
                    return Err(validation::single(
                        &render_validation_path(&path),
                        None,
                        &validation::not_null(),
                    ));
                }
                other => return Err(self.type_error(&path, "a structure", other)),
            }
        }
        Ok(Some(docs))
    }

    /// A required list of structures.
    pub fn list_required(&self, name: &str) -> Result<Vec<Doc<'a>>, AwsError> {
        self.list_opt(name).and_then(|v| self.required(name, v))
    }

    /// A list of strings (e.g. `TagKeys`, `ShardLevelMetrics`).
    pub fn str_list_opt(&self, name: &str) -> Result<Option<Vec<&'a str>>, AwsError> {
        let Some((key, items)) = self.list_items(name)? else {
            return Ok(None);
        };
        let mut strings = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Str(s) => strings.push(s.as_str()),
                other => {
                    let mut path = self.child(key);
                    path.push(Segment::Index(i));
                    return Err(self.type_error(&path, "a string", other));
                }
            }
        }
        Ok(Some(strings))
    }

    /// A required list of strings.
    pub fn str_list_required(&self, name: &str) -> Result<Vec<&'a str>, AwsError> {
        self.str_list_opt(name).and_then(|v| self.required(name, v))
    }

    /// A map of strings to strings (e.g. `Tags`), in wire order.
    pub fn map_opt(&self, name: &str) -> Result<Option<Vec<(&'a str, &'a str)>>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((key, Value::Map(members))) => {
                let mut entries = Vec::with_capacity(members.len());
                for (k, v) in members {
                    match v {
                        Value::Str(s) => entries.push((k.as_ref(), s.as_str())),
                        other => {
                            let mut path = self.child(key);
                            path.push(Segment::Key(k));
                            return Err(self.type_error(&path, "a string", other));
                        }
                    }
                }
                Ok(Some(entries))
            }
            Some((key, other)) => Err(self.type_error(&self.child(key), "a map", other)),
        }
    }

    /// A required map of strings to strings.
    pub fn map_required(&self, name: &str) -> Result<Vec<(&'a str, &'a str)>, AwsError> {
        self.map_opt(name).and_then(|v| self.required(name, v))
    }

    fn lookup(&self, name: &str) -> Option<(&'a str, &'a Value)> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(k, v)| match v {
                Value::Null => None,
                v => Some((k.as_ref(), v)),
            })
    }

    fn list_items(&self, name: &str) -> Result<Option<(&'a str, &'a [Value])>, AwsError> {
        match self.lookup(name) {
            None => Ok(None),
            Some((key, Value::List(items))) => Ok(Some((key, items))),
            Some((key, other)) => Err(self.type_error(&self.child(key), "a list", other)),
        }
    }

    fn number_to_seconds(&self, n: f64) -> f64 {
        match self.format {
            Format::Json => n,
            Format::Cbor => epoch_to_seconds(n),
        }
    }

    fn child(&self, key: &'a str) -> Vec<Segment<'a>> {
        let mut path = Vec::with_capacity(self.path.len() + 2);
        path.extend_from_slice(&self.path);
        path.push(Segment::Member(key));
        path
    }

    fn type_error(&self, path: &[Segment<'_>], expected: &str, found: &Value) -> AwsError {
        AwsError::serialization(format!(
            "Member '{}' must be {expected}, not a {}",
            render_wire_path(path),
            found.type_name()
        ))
    }
}

/// The path as the client wrote it: `Records[0].PartitionKey`, `Tags[key]`.
fn render_wire_path(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Member(m) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(m);
            }
            Segment::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Segment::Key(k) => {
                let _ = write!(out, "[{k}]");
            }
        }
    }
    out
}

fn render_validation_path(path: &[Segment<'_>]) -> String {
    let parts: Vec<Cow<'_, str>> = path
        .iter()
        .map(|segment| match segment {
            Segment::Member(m) => lower_camel(m),
            Segment::Index(i) => Cow::Owned(format!("{}.member", i + 1)),
            Segment::Key(k) => Cow::Borrowed(*k),
        })
        .collect();
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn json_doc(body: &str) -> Value {
        json::decode(body.as_bytes()).unwrap()
    }

    #[test]
    fn strings_and_missing_members() {
        let v = json_doc(r#"{"StreamName":"s","Null":null,"N":1}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        assert_eq!(d.str_opt("StreamName").unwrap(), Some("s"));
        assert_eq!(d.str_required("StreamName").unwrap(), "s");
        assert_eq!(d.str_opt("Absent").unwrap(), None);
        assert_eq!(d.str_opt("Null").unwrap(), None);
        assert!(!d.has("Null"));
        let err = d.str_required("StreamARN").unwrap_err();
        assert_eq!(err.kind, "ValidationException");
        assert_eq!(
            err.message,
            "1 validation error detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null"
        );
        let err = d.str_opt("N").unwrap_err();
        assert_eq!(err.kind, "SerializationException");
        assert_eq!(err.message, "Member 'N' must be a string, not a number");
    }

    #[test]
    fn type_mismatches_name_the_member() {
        let v = json_doc(
            r#"{"StreamName":{"a":1},"Limit":"10","Records":[{"Data":"aGk=","PartitionKey":5}],"Flag":1,"Tags":{"k":2}}"#,
        );
        let d = Doc::new(&v, Format::Json).unwrap();
        let cases = [
            (
                d.str_opt("StreamName").unwrap_err(),
                "'StreamName' must be a string, not a structure or map",
            ),
            (
                d.int_opt("Limit").unwrap_err(),
                "'Limit' must be an integer, not a string",
            ),
            (
                d.bool_opt("Flag").unwrap_err(),
                "'Flag' must be a boolean, not a number",
            ),
            (
                d.map_opt("Tags").unwrap_err(),
                "'Tags[k]' must be a string, not a number",
            ),
            (
                d.list_opt("StreamName").unwrap_err(),
                "'StreamName' must be a list",
            ),
            (
                d.doc_opt("Limit").unwrap_err(),
                "'Limit' must be a structure, not a string",
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(err.kind, "SerializationException");
            assert!(
                err.message.contains(expected),
                "{} vs {expected}",
                err.message
            );
        }
        let records = d.list_required("Records").unwrap();
        let err = records[0].str_required("PartitionKey").unwrap_err();
        assert_eq!(err.kind, "SerializationException");
        assert!(
            err.message.contains("'Records[0].PartitionKey'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn nested_paths_use_aws_validation_form() {
        let v = json_doc(r#"{"Records":[{"Data":"aGk="},{"Data":"aGk="}],"ShardFilter":{}}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        let records = d.list_required("Records").unwrap();
        assert_eq!(
            records[1].path("PartitionKey"),
            "records.2.member.partitionKey"
        );
        let err = records[1].str_required("PartitionKey").unwrap_err();
        assert_eq!(
            err.message,
            "1 validation error detected: Value null at 'records.2.member.partitionKey' failed to satisfy constraint: Member must not be null"
        );
        let filter = d.doc_required("ShardFilter").unwrap();
        assert_eq!(filter.path("Type"), "shardFilter.type");
        assert_eq!(d.path("StreamName"), "streamName");
    }

    #[test]
    fn null_list_element_is_a_validation_error() {
        let v = json_doc(r#"{"Records":[{},null]}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        let err = d.list_opt("Records").unwrap_err();
        assert_eq!(err.kind, "ValidationException");
        assert!(
            err.message.contains("'records.2.member'"),
            "{}",
            err.message
        );
        let v = json_doc(r#"{"Records":[{},"x"]}"#);
        let err = Doc::new(&v, Format::Json)
            .unwrap()
            .list_opt("Records")
            .unwrap_err();
        assert_eq!(err.kind, "SerializationException");
        assert!(err.message.contains("'Records[1]'"), "{}", err.message);
    }

    #[test]
    fn integers_accept_integral_floats_only() {
        let v = json_doc(r#"{"A":5,"B":5.0,"C":5.5,"D":1e30,"E":-9.223372036854775808e18}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        assert_eq!(d.int_opt("A").unwrap(), Some(5));
        assert_eq!(d.int_opt("B").unwrap(), Some(5));
        assert_eq!(d.int_opt("C").unwrap_err().kind, "SerializationException");
        assert_eq!(d.int_opt("D").unwrap_err().kind, "SerializationException");
        assert_eq!(d.int_opt("E").unwrap(), Some(i64::MIN));
        assert_eq!(d.int_opt("Z").unwrap(), None);
        assert_eq!(d.int_required("Z").unwrap_err().kind, "ValidationException");
    }

    #[test]
    fn json_blobs_are_strict_padded_base64() {
        let v = json_doc(
            r#"{"Ok":"aGVsbG8=","Empty":"","Two":"aGk=","NoPad":"aGk","BadChar":"aG*k","UrlSafe":"-_8=","Space":"aG k","BadBits":"aGl=","Num":3}"#,
        );
        let d = Doc::new(&v, Format::Json).unwrap();
        assert_eq!(d.blob_required("Ok").unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(d.blob_required("Empty").unwrap(), Bytes::new());
        assert_eq!(d.blob_required("Two").unwrap(), Bytes::from_static(b"hi"));
        for name in ["NoPad", "BadChar", "UrlSafe", "Space", "BadBits"] {
            let err = d.blob_opt(name).unwrap_err();
            assert_eq!(err.kind, "SerializationException", "{name}");
            assert!(
                err.message.contains(&format!("'{name}'")),
                "{}",
                err.message
            );
        }
        assert_eq!(
            d.blob_opt("Num").unwrap_err().kind,
            "SerializationException"
        );
        assert_eq!(
            d.blob_required("Data").unwrap_err().kind,
            "ValidationException"
        );
    }

    #[test]
    fn cbor_blobs_take_bytes_or_utf8_text() {
        let v = Value::map()
            .with("Bytes", Bytes::from_static(b"\x00\xff"))
            .with("Text", "aGk=")
            .build();
        let d = Doc::new(&v, Format::Cbor).unwrap();
        assert_eq!(
            d.blob_required("Bytes").unwrap(),
            Bytes::from_static(b"\x00\xff")
        );
        assert_eq!(
            d.blob_required("Text").unwrap(),
            Bytes::from_static(b"aGk=")
        );
    }

    #[test]
    fn timestamps_by_format() {
        let v = json_doc(r#"{"T":1700000000.5,"I":1700000000,"S":"2023-11-14"}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        assert_eq!(d.timestamp_opt("T").unwrap(), Some(1_700_000_000.5));
        assert_eq!(d.timestamp_opt("I").unwrap(), Some(1_700_000_000.0));
        assert_eq!(
            d.timestamp_opt("S").unwrap_err().kind,
            "SerializationException"
        );

        let v = Value::map()
            .with("Tagged", Value::Timestamp(1_700_000_000.25))
            .with("Millis", 1_700_000_000_250i64)
            .with("Secs", 1_700_000_000i64)
            .with("Nan", f64::NAN)
            .build();
        let d = Doc::new(&v, Format::Cbor).unwrap();
        assert_eq!(d.timestamp_required("Tagged").unwrap(), 1_700_000_000.25);
        assert_eq!(d.timestamp_required("Millis").unwrap(), 1_700_000_000.25);
        assert_eq!(d.timestamp_required("Secs").unwrap(), 1_700_000_000.0);
        assert_eq!(
            d.timestamp_opt("Nan").unwrap_err().kind,
            "SerializationException"
        );
    }

    #[test]
    fn string_lists_and_maps() {
        let v = json_doc(r#"{"Keys":["a","b"],"Bad":["a",1],"Tags":{"k1":"v1","k2":"v2"}}"#);
        let d = Doc::new(&v, Format::Json).unwrap();
        assert_eq!(d.str_list_required("Keys").unwrap(), ["a", "b"]);
        let err = d.str_list_opt("Bad").unwrap_err();
        assert!(err.message.contains("'Bad[1]'"), "{}", err.message);
        assert_eq!(
            d.map_required("Tags").unwrap(),
            [("k1", "v1"), ("k2", "v2")]
        );
        assert_eq!(d.map_opt("Nope").unwrap(), None);
    }

    #[test]
    fn non_map_root_is_rejected() {
        let err = Doc::new(&Value::Int(1), Format::Json).unwrap_err();
        assert_eq!(err.kind, "SerializationException");
    }

    #[test]
    fn epoch_unit_heuristic() {
        assert_eq!(epoch_to_seconds(1.7e9), 1.7e9);
        assert_eq!(epoch_to_seconds(1.7e12), 1.7e9);
        assert_eq!(epoch_to_seconds(-1.7e12), -1.7e9);
    }
}
