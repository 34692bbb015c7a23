//! AWS CBOR 1.1 bodies (RFC 8949), as the Java SDKs and the KCL send them.
//!
//! Hand-written rather than built on ciborium so that byte strings can be sliced out of the
//! request without copying ([`decode_shared`]), nesting is bounded, and timestamps follow AWS
//! rather than RFC 8949: the AWS SDKs write and read tag 1 over integer epoch *milliseconds*
//! (their timestamp parser rejects anything but an integer), so that is what
//! [`encode`] produces. On decode, a tag 1 value of at least 1e11 is taken as milliseconds and
//! a smaller one as seconds, so standard-conforming clients work too.

use bytes::Bytes;

use crate::MAX_DEPTH;
use crate::doc::epoch_to_seconds;
use crate::error::AwsError;
use crate::value::Value;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const TAG_EPOCH: u64 = 1;
const BREAK: u8 = 0xff;

/// Decodes a request body, copying byte strings out of it. An empty body is an empty map; the
/// top level must be a map with text keys. Any malformation is a `SerializationException`.
pub fn decode(body: &[u8]) -> Result<Value, AwsError> {
    Decoder {
        input: body,
        shared: None,
        pos: 0,
    }
    .decode_top()
}

/// Like [`decode`], but byte strings are zero-copy slices of `body`.
pub fn decode_shared(body: &Bytes) -> Result<Value, AwsError> {
    Decoder {
        input: body,
        shared: Some(body),
        pos: 0,
    }
    .decode_top()
}

/// Encodes a document with definite lengths. Integers use their shortest form, floats are
/// 64-bit, timestamps are tag 1 over integer epoch milliseconds.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len_hint(value));
    encode_into(value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Int(i) => write_int(*i, out),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => {
            write_head(MAJOR_TEXT, s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            write_head(MAJOR_BYTES, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Timestamp(secs) => {
            write_head(MAJOR_TAG, TAG_EPOCH, out);
            let millis = (secs * 1000.0).round();
            if millis.is_finite() {
                // Saturating cast: out-of-range instants clamp rather than wrap.
                write_int(millis as i64, out);
            } else {
                out.push(0xf6);
            }
        }
        Value::List(items) => {
            write_head(MAJOR_ARRAY, items.len() as u64, out);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(members) => {
            write_head(MAJOR_MAP, members.len() as u64, out);
            for (key, item) in members {
                write_head(MAJOR_TEXT, key.len() as u64, out);
                out.extend_from_slice(key.as_bytes());
                encode_into(item, out);
            }
        }
    }
}

fn encoded_len_hint(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) | Value::Timestamp(_) => 10,
        Value::Str(s) => s.len() + 9,
        Value::Bytes(b) => b.len() + 9,
        Value::List(items) => 9 + items.iter().map(encoded_len_hint).sum::<usize>(),
        Value::Map(members) => {
            9 + members
                .iter()
                .map(|(k, v)| k.len() + 9 + encoded_len_hint(v))
                .sum::<usize>()
        }
    }
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        write_head(MAJOR_UNSIGNED, i as u64, out);
    } else {
        // -1 - i, computed without overflow for i64::MIN.
        write_head(MAJOR_NEGATIVE, !(i as u64), out);
    }
}

fn write_head(major: u8, n: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// An item's length or count: definite, or indefinite (terminated by a break byte).
enum Length {
    Definite(u64),
    Indefinite,
}

struct Decoder<'a> {
    input: &'a [u8],
    shared: Option<&'a Bytes>,
    pos: usize,
}

impl Decoder<'_> {
    fn error(&self, what: &str) -> AwsError {
        AwsError::serialization(format!("Malformed CBOR at byte {}: {what}", self.pos))
    }

    fn decode_top(mut self) -> Result<Value, AwsError> {
        if self.input.is_empty() {
            return Ok(Value::Map(Vec::new()));
        }
        if self.input[0] >> 5 != MAJOR_MAP {
            return Err(self.error("the body must be a CBOR map"));
        }
        let value = self.decode_item(1)?;
        if self.pos != self.input.len() {
            return Err(self.error("unexpected data after the top-level map"));
        }
        Ok(value)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], AwsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| self.error("unexpected end of input"))?;
        let slice = &self.input[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn take_u8(&mut self) -> Result<u8, AwsError> {
        Ok(self.take(1)?[0])
    }

    fn take_be<const N: usize>(&mut self) -> Result<[u8; N], AwsError> {
        let mut buf = [0u8; N];
        buf.copy_from_slice(self.take(N)?);
        Ok(buf)
    }

    /// Reads the argument of an item whose initial byte had additional information `info`.
    fn argument(&mut self, info: u8) -> Result<Length, AwsError> {
        Ok(match info {
            0..=23 => Length::Definite(info.into()),
            24 => Length::Definite(self.take_u8()?.into()),
            25 => Length::Definite(u16::from_be_bytes(self.take_be()?).into()),
            26 => Length::Definite(u32::from_be_bytes(self.take_be()?).into()),
            27 => Length::Definite(u64::from_be_bytes(self.take_be()?)),
            31 => Length::Indefinite,
            _ => return Err(self.error("reserved additional information")),
        })
    }

    fn definite(&mut self, info: u8) -> Result<u64, AwsError> {
        match self.argument(info)? {
            Length::Definite(n) => Ok(n),
            Length::Indefinite => Err(self.error("indefinite length not allowed here")),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), AwsError> {
        if depth > MAX_DEPTH {
            Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn at_break(&mut self) -> Result<bool, AwsError> {
        match self.input.get(self.pos) {
            Some(&BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(self.error("unexpected end of input")),
        }
    }

    /// Decodes one item; `depth` counts the containers and tags around it, itself included.
    fn decode_item(&mut self, depth: usize) -> Result<Value, AwsError> {
        let initial = self.take_u8()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        match major {
            MAJOR_UNSIGNED => {
                let n = self.definite(info)?;
                Ok(i64::try_from(n).map_or(Value::Float(n as f64), Value::Int))
            }
            MAJOR_NEGATIVE => {
                let n = self.definite(info)?;
                // The value is -1 - n.
                Ok(i64::try_from(n).map_or(Value::Float(-1.0 - n as f64), |n| Value::Int(-1 - n)))
            }
            MAJOR_BYTES => {
                let length = self.argument(info)?;
                self.decode_bytes(length)
            }
            MAJOR_TEXT => {
                let length = self.argument(info)?;
                self.decode_text(length).map(Value::Str)
            }
            MAJOR_ARRAY => {
                self.check_depth(depth)?;
                let length = self.argument(info)?;
                self.decode_array(length, depth)
            }
            MAJOR_MAP => {
                self.check_depth(depth)?;
                let length = self.argument(info)?;
                self.decode_map(length, depth)
            }
            MAJOR_TAG => {
                self.check_depth(depth)?;
                let tag = self.definite(info)?;
                let inner = self.decode_item(depth + 1)?;
                if tag != TAG_EPOCH {
                    // Other tags add nothing AWS shapes use; keep the content.
                    return Ok(inner);
                }
                match inner {
                    Value::Int(i) => Ok(Value::Timestamp(epoch_to_seconds(i as f64))),
                    Value::Float(f) if f.is_finite() => Ok(Value::Timestamp(epoch_to_seconds(f))),
                    _ => Err(self.error("tag 1 must enclose a finite number")),
                }
            }
            MAJOR_SIMPLE => self.decode_simple(info),
            _ => Err(self.error("unknown major type")),
        }
    }

    fn decode_simple(&mut self, info: u8) -> Result<Value, AwsError> {
        match info {
            20 => Ok(Value::Bool(false)),
            21 => Ok(Value::Bool(true)),
            22 | 23 => Ok(Value::Null),
            25 => Ok(Value::Float(f16_to_f64(u16::from_be_bytes(
                self.take_be()?,
            )))),
            26 => Ok(Value::Float(f32::from_be_bytes(self.take_be()?).into())),
            27 => Ok(Value::Float(f64::from_be_bytes(self.take_be()?))),
            31 => Err(self.error("unexpected break")),
            _ => Err(self.error("unsupported simple value")),
        }
    }

    fn definite_len(&self, n: u64) -> Result<usize, AwsError> {
        usize::try_from(n).map_err(|_| self.error("length too large"))
    }

    /// Collects the chunks of a definite or indefinite string of `major` type as byte ranges.
    fn string_chunks(
        &mut self,
        major: u8,
        length: Length,
    ) -> Result<Vec<(usize, usize)>, AwsError> {
        match length {
            Length::Definite(n) => {
                let n = self.definite_len(n)?;
                let start = self.pos;
                self.take(n)?;
                Ok(vec![(start, start + n)])
            }
            Length::Indefinite => {
                let mut chunks = Vec::new();
                while !self.at_break()? {
                    let initial = self.take_u8()?;
                    if initial >> 5 != major {
                        return Err(self.error("indefinite string chunk of the wrong type"));
                    }
                    let n = self.definite(initial & 0x1f)?;
                    let n = self.definite_len(n)?;
                    let start = self.pos;
                    self.take(n)?;
                    chunks.push((start, start + n));
                }
                Ok(chunks)
            }
        }
    }

    fn decode_bytes(&mut self, length: Length) -> Result<Value, AwsError> {
        let chunks = self.string_chunks(MAJOR_BYTES, length)?;
        if let [(start, end)] = chunks[..] {
            return Ok(Value::Bytes(match self.shared {
                Some(shared) => shared.slice(start..end),
                None => Bytes::copy_from_slice(&self.input[start..end]),
            }));
        }
        let total = chunks.iter().map(|(s, e)| e - s).sum();
        let mut buf = Vec::with_capacity(total);
        for (start, end) in chunks {
            buf.extend_from_slice(&self.input[start..end]);
        }
        Ok(Value::Bytes(buf.into()))
    }

    fn decode_text(&mut self, length: Length) -> Result<String, AwsError> {
        let chunks = self.string_chunks(MAJOR_TEXT, length)?;
        let mut text = String::new();
        for (start, end) in chunks {
            let chunk = std::str::from_utf8(&self.input[start..end])
                .map_err(|_| self.error("text string is not valid UTF-8"))?;
            text.push_str(chunk);
        }
        Ok(text)
    }

    /// A capacity for `count` items that an attacker cannot inflate: every item takes at
    /// least one byte of the remaining input.
    fn bounded_capacity(&self, count: u64) -> usize {
        let remaining = self.input.len() - self.pos;
        usize::try_from(count).map_or(remaining, |c| c.min(remaining))
    }

    fn decode_array(&mut self, length: Length, depth: usize) -> Result<Value, AwsError> {
        match length {
            Length::Definite(count) => {
                let mut items = Vec::with_capacity(self.bounded_capacity(count));
                for _ in 0..count {
                    items.push(self.decode_item(depth + 1)?);
                }
                Ok(Value::List(items))
            }
            Length::Indefinite => {
                let mut items = Vec::new();
                while !self.at_break()? {
                    items.push(self.decode_item(depth + 1)?);
                }
                Ok(Value::List(items))
            }
        }
    }

    fn decode_key(&mut self) -> Result<String, AwsError> {
        let initial = self.take_u8()?;
        if initial >> 5 != MAJOR_TEXT {
            return Err(self.error("map keys must be text strings"));
        }
        let length = self.argument(initial & 0x1f)?;
        self.decode_text(length)
    }

    fn decode_map(&mut self, length: Length, depth: usize) -> Result<Value, AwsError> {
        match length {
            Length::Definite(count) => {
                let mut members = Vec::with_capacity(self.bounded_capacity(count) / 2);
                for _ in 0..count {
                    let key = self.decode_key()?;
                    members.push((key.into(), self.decode_item(depth + 1)?));
                }
                Ok(Value::Map(members))
            }
            Length::Indefinite => {
                let mut members = Vec::new();
                while !self.at_break()? {
                    let key = self.decode_key()?;
                    members.push((key.into(), self.decode_item(depth + 1)?));
                }
                Ok(Value::Map(members))
            }
        }
    }
}

/// IEEE 754 half precision to double.
fn f16_to_f64(half: u16) -> f64 {
    let sign = if half & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((half >> 10) & 0x1f);
    let mantissa = f64::from(half & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mantissa + 1024.0) * 2f64.powi(exponent - 25),
    };
    sign * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value as C;

    fn to_cbor(value: &C) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    fn map(entries: Vec<(&str, C)>) -> C {
        C::Map(
            entries
                .into_iter()
                .map(|(k, v)| (C::Text(k.into()), v))
                .collect(),
        )
    }

    #[test]
    fn empty_body_is_an_empty_map() {
        assert_eq!(decode(b"").unwrap(), Value::Map(vec![]));
    }

    #[test]
    fn top_level_must_be_a_map() {
        for value in [C::Array(vec![]), C::Integer(1.into()), C::Text("x".into())] {
            assert_eq!(
                decode(&to_cbor(&value)).unwrap_err().kind,
                "SerializationException"
            );
        }
    }

    #[test]
    fn scalars_decode_like_ciborium_wrote_them() {
        let body = to_cbor(&map(vec![
            ("u", C::Integer(1_000_000u64.into())),
            ("n", C::Integer((-500i64).into())),
            ("big", C::Integer(u64::MAX.into())),
            ("f", C::Float(2.5)),
            ("t", C::Bool(true)),
            ("null", C::Null),
            ("s", C::Text("héllo".into())),
            ("b", C::Bytes(vec![0, 1, 255])),
        ]));
        let v = decode(&body).unwrap();
        assert_eq!(v.get("u"), Some(&Value::Int(1_000_000)));
        assert_eq!(v.get("n"), Some(&Value::Int(-500)));
        assert_eq!(v.get("big"), Some(&Value::Float(u64::MAX as f64)));
        assert_eq!(v.get("f"), Some(&Value::Float(2.5)));
        assert_eq!(v.get("t"), Some(&Value::Bool(true)));
        assert_eq!(v.get("null"), Some(&Value::Null));
        assert_eq!(v.get("s"), Some(&Value::Str("héllo".into())));
        assert_eq!(
            v.get("b"),
            Some(&Value::Bytes(Bytes::from_static(&[0, 1, 255])))
        );
    }

    #[test]
    fn extreme_integers() {
        // {"a": -2^64} and {"b": i64::MIN}
        let body = [
            0xa2, 0x61, b'a', 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x61, b'b',
            0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let v = decode(&body).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Float(-18446744073709551616.0)));
        assert_eq!(v.get("b"), Some(&Value::Int(i64::MIN)));
        let encoded = encode(&Value::map().with("b", i64::MIN).build());
        assert_eq!(encoded, [&[0xa1, 0x61, b'b'][..], &body[14..]].concat());
    }

    #[test]
    fn half_and_single_floats() {
        // {"h": 1.5 (f16), "s": 0.15625 (f32), "i": -inf (f16), "z": 5.960464477539063e-8 (f16)}
        let body = [
            0xa4, 0x61, b'h', 0xf9, 0x3e, 0x00, 0x61, b's', 0xfa, 0x3e, 0x20, 0x00, 0x00, 0x61,
            b'i', 0xf9, 0xfc, 0x00, 0x61, b'z', 0xf9, 0x00, 0x01,
        ];
        let v = decode(&body).unwrap();
        assert_eq!(v.get("h"), Some(&Value::Float(1.5)));
        assert_eq!(v.get("s"), Some(&Value::Float(0.15625)));
        assert_eq!(v.get("i"), Some(&Value::Float(f64::NEG_INFINITY)));
        assert_eq!(v.get("z"), Some(&Value::Float(5.960464477539063e-8)));
    }

    #[test]
    fn indefinite_lengths_decode() {
        // {_ "k": (_ h'0102', h'03'), "t": (_ "ab", "c"), "l": [_ 1, [_ ]], "m": {_ "x": null}}
        let body = [
            0xbf, 0x61, b'k', 0x5f, 0x42, 1, 2, 0x41, 3, 0xff, 0x61, b't', 0x7f, 0x62, b'a', b'b',
            0x61, b'c', 0xff, 0x61, b'l', 0x9f, 0x01, 0x9f, 0xff, 0xff, 0x61, b'm', 0xbf, 0x61,
            b'x', 0xf6, 0xff, 0xff,
        ];
        let v = decode(&body).unwrap();
        assert_eq!(
            v.get("k"),
            Some(&Value::Bytes(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(v.get("t"), Some(&Value::Str("abc".into())));
        assert_eq!(
            v.get("l"),
            Some(&Value::List(vec![Value::Int(1), Value::List(vec![])]))
        );
        assert_eq!(
            v.get("m"),
            Some(&Value::Map(vec![("x".into(), Value::Null)]))
        );
    }

    #[test]
    fn malformed_bodies_are_serialization_errors() {
        let cases: &[&[u8]] = &[
            &[0xa1],                                     // missing key
            &[0xa1, 0x61],                               // truncated key
            &[0xa1, 0x01, 0x01],                         // integer key
            &[0xa1, 0x61, b'a', 0x5f, 0x61, b'x', 0xff], // text chunk in a byte string
            &[0xa1, 0x61, b'a', 0x5f, 0x5f, 0xff, 0xff], // nested indefinite chunk
            &[0xa1, 0x61, b'a', 0x1c],                   // reserved info
            &[0xa1, 0x61, b'a', 0xff],                   // stray break
            &[0xa1, 0x61, b'a', 0xf8, 0x20],             // simple value 32
            &[0xa1, 0x61, b'a', 0x62, 0xff, 0xfe],       // invalid UTF-8
            &[0xa1, 0x61, b'a', 0xc1, 0x61, b'x'],       // tag 1 over text
            &[
                0xa1, 0x61, b'a', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ], // huge length
            &[
                0xa1, 0x61, b'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ], // huge count
            &[0xbf, 0x61, b'a', 0x01],                   // unterminated indefinite map
            &[0xa0, 0x00],                               // trailing data
        ];
        for body in cases {
            let err = decode(body).unwrap_err();
            assert_eq!(err.kind, "SerializationException", "{body:x?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut body = Vec::new();
            for _ in 0..depth - 1 {
                body.extend_from_slice(&[0xa1, 0x61, b'a']);
            }
            body.push(0xa0);
            body
        };
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        let err = decode(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
        // Tags and indefinite arrays count too, and a million of them must not overflow the stack.
        let mut tags = vec![0xa1, 0x61, b'a'];
        tags.extend(std::iter::repeat_n(0xc6, 1_000_000));
        assert_eq!(decode(&tags).unwrap_err().kind, "SerializationException");
        let mut arrays = vec![0xa1, 0x61, b'a'];
        arrays.extend(std::iter::repeat_n(0x9f, 1_000_000));
        assert_eq!(decode(&arrays).unwrap_err().kind, "SerializationException");
    }

    #[test]
    fn timestamps_follow_the_aws_sdks() {
        let body = to_cbor(&map(vec![
            (
                "millis",
                C::Tag(1, Box::new(C::Integer(1_700_000_000_123i64.into()))),
            ),
            (
                "secs",
                C::Tag(1, Box::new(C::Integer(1_700_000_000.into()))),
            ),
            ("float", C::Tag(1, Box::new(C::Float(1_700_000_000.5)))),
            ("other_tag", C::Tag(32, Box::new(C::Text("x".into())))),
        ]));
        let v = decode(&body).unwrap();
        assert_eq!(v.get("millis"), Some(&Value::Timestamp(1_700_000_000.123)));
        assert_eq!(v.get("secs"), Some(&Value::Timestamp(1_700_000_000.0)));
        assert_eq!(v.get("float"), Some(&Value::Timestamp(1_700_000_000.5)));
        assert_eq!(v.get("other_tag"), Some(&Value::Str("x".into())));

        let encoded = encode(
            &Value::map()
                .with("T", Value::Timestamp(1_700_000_000.123))
                .build(),
        );
        let back: C = ciborium::from_reader(&encoded[..]).unwrap();
        assert_eq!(
            back,
            map(vec![(
                "T",
                C::Tag(1, Box::new(C::Integer(1_700_000_000_123i64.into())))
            )])
        );
        assert_eq!(
            decode(&encoded).unwrap().get("T"),
            Some(&Value::Timestamp(1_700_000_000.123))
        );
    }

    #[test]
    fn encode_is_readable_by_ciborium() {
        let v = Value::map()
            .with("S", "s")
            .with("I", 23)
            .with("J", 24)
            .with("K", 65_536)
            .with("N", -25)
            .with("F", 1.25)
            .with("B", Bytes::from_static(b"\x00\x01"))
            .with("L", Value::List(vec![Value::Null, Value::Bool(false)]))
            .build();
        let back: C = ciborium::from_reader(&encode(&v)[..]).unwrap();
        assert_eq!(
            back,
            map(vec![
                ("S", C::Text("s".into())),
                ("I", C::Integer(23.into())),
                ("J", C::Integer(24.into())),
                ("K", C::Integer(65_536.into())),
                ("N", C::Integer((-25).into())),
                ("F", C::Float(1.25)),
                ("B", C::Bytes(vec![0, 1])),
                ("L", C::Array(vec![C::Null, C::Bool(false)])),
            ])
        );
        assert_eq!(decode(&encode(&v)).unwrap(), v);
    }

    #[test]
    fn shared_decode_slices_without_copying() {
        let body = Bytes::from(to_cbor(&map(vec![("Data", C::Bytes(vec![9; 100]))])));
        let v = decode_shared(&body).unwrap();
        let Some(Value::Bytes(data)) = v.get("Data") else {
            panic!("no data")
        };
        assert_eq!(&data[..], &[9; 100][..]);
        let offset = data.as_ptr() as usize - body.as_ptr() as usize;
        assert!(offset < body.len(), "Data was copied");
    }
}
