//! The document model shared by the JSON and CBOR codecs.

use std::borrow::Cow;

use bytes::Bytes;

/// A map key. Response keys are almost always literals, so they are borrowed rather than
/// allocated for every record of a large response.
pub type Key = Cow<'static, str>;

/// A decoded request or a response to encode: the common ground of AWS JSON 1.1 and CBOR 1.1.
///
/// Maps keep their members in order, duplicates included; lookups see the last duplicate, as
/// AWS's own JSON readers do.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`, CBOR null or undefined. An absent member and a null member mean the same.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A text string. In JSON this is also how a blob arrives (base64).
    Str(String),
    /// A blob (CBOR byte string). JSON encodes it as base64.
    Bytes(Bytes),
    /// A point in time, in epoch seconds.
    Timestamp(f64),
    /// An array.
    List(Vec<Value>),
    /// A map with text keys, in wire order.
    Map(Vec<(Key, Value)>),
}

impl Value {
    /// Starts building a map: `Value::map().with("StreamName", "s").build()`.
    pub fn map() -> MapBuilder {
        MapBuilder(Vec::new())
    }

    /// Starts building a map with room for `capacity` members.
    pub fn map_with_capacity(capacity: usize) -> MapBuilder {
        MapBuilder(Vec::with_capacity(capacity))
    }

    /// A timestamp from epoch milliseconds, the resolution Kinesis stores.
    pub fn timestamp_millis(millis: i64) -> Value {
        Value::Timestamp(millis as f64 / 1000.0)
    }

    /// The member `key` of a map (the last one if repeated); `None` for other values.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Bytes(_) => "blob",
            Value::Timestamp(_) => "timestamp",
            Value::List(_) => "list",
            Value::Map(_) => "structure or map",
        }
    }
}

/// Builds a [`Value::Map`] member by member; converts into a [`Value`] wherever one is expected.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a MapBuilder does nothing until built"]
pub struct MapBuilder(Vec<(Key, Value)>);

impl MapBuilder {
    /// Adds a member.
    pub fn with(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Self {
        self.0.push((key.into(), value.into()));
        self
    }

    /// Adds a member only when there is a value: optional response members are omitted
    /// rather than sent as null.
    pub fn with_opt<V: Into<Value>>(self, key: impl Into<Key>, value: Option<V>) -> Self {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    /// Adds a member in place.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }

    /// The finished map.
    pub fn build(self) -> Value {
        Value::Map(self.0)
    }
}

impl From<MapBuilder> for Value {
    fn from(builder: MapBuilder) -> Value {
        builder.build()
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Str(v.clone())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u64> for Value {
    /// Values past `i64::MAX` become floats.
    fn from(v: u64) -> Value {
        i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
    }
}

impl From<usize> for Value {
    /// Values past `i64::MAX` become floats.
    fn from(v: usize) -> Value {
        i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<Bytes> for Value {
    fn from(v: Bytes) -> Value {
        Value::Bytes(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}

impl<V: Into<Value>> FromIterator<V> for Value {
    /// Collects into a [`Value::List`].
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Value {
        Value::List(iter.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_order_and_skips_none() {
        let v = Value::map()
            .with("B", 1)
            .with_opt("Skipped", None::<i64>)
            .with_opt("A", Some("x"))
            .with("Nested", Value::map().with("K", true))
            .with("L", ["a", "b"].into_iter().collect::<Value>())
            .build();
        let Value::Map(members) = &v else {
            panic!("not a map")
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["B", "A", "Nested", "L"]);
        assert_eq!(v.get("A"), Some(&Value::Str("x".into())));
        assert_eq!(
            v.get("Nested").and_then(|n| n.get("K")),
            Some(&Value::Bool(true))
        );
        assert_eq!(v.get("Skipped"), None);
    }

    #[test]
    fn get_sees_the_last_duplicate() {
        let v = Value::Map(vec![
            ("K".into(), Value::Int(1)),
            ("K".into(), Value::Int(2)),
        ]);
        assert_eq!(v.get("K"), Some(&Value::Int(2)));
    }

    #[test]
    fn big_unsigned_values_become_floats() {
        assert_eq!(Value::from(u64::MAX), Value::Float(u64::MAX as f64));
        assert_eq!(Value::from(7u64), Value::Int(7));
    }

    #[test]
    fn timestamp_millis_is_seconds() {
        assert_eq!(
            Value::timestamp_millis(1_700_000_000_123),
            Value::Timestamp(1_700_000_000.123)
        );
    }
}
