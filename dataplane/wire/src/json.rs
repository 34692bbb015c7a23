//! AWS JSON 1.1 bodies.
//!
//! The decoder is hand-written rather than serde-based so that it can bound nesting, keep map
//! order and duplicates, parse floats exactly (a re-encoded body decodes to the same document)
//! and copy each string once. Blobs stay base64 text until an accessor asks for them, because
//! only the operation knows which members are blobs.
//!
//! The encoder writes straight into one pre-sized buffer: a 10 MiB GetRecords response is a
//! single allocation plus base64 work, with no intermediate tree.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::MAX_DEPTH;
use crate::error::AwsError;
use crate::value::Value;

/// Decodes a request body. An empty (or all-whitespace) body is an empty map; the top level
/// must be an object. Any malformation is a `SerializationException`.
pub fn decode(body: &[u8]) -> Result<Value, AwsError> {
    let mut parser = Parser {
        input: body,
        pos: 0,
    };
    parser.skip_whitespace();
    if parser.pos == body.len() {
        return Ok(Value::Map(Vec::new()));
    }
    if body[parser.pos] != b'{' {
        return Err(parser.error("the body must be a JSON object"));
    }
    let value = parser.parse_value(0)?;
    parser.skip_whitespace();
    if parser.pos != body.len() {
        return Err(parser.error("unexpected data after the top-level object"));
    }
    Ok(value)
}

/// Encodes a document. Blobs become padded standard base64, timestamps epoch seconds with
/// millisecond precision (`1700000000.123`), non-finite floats `null`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len_hint(value));
    encode_into(value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(*i, out),
        Value::Float(f) => write_f64(*f, out),
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => {
            out.push(b'"');
            write_base64(b, out);
            out.push(b'"');
        }
        Value::Timestamp(secs) => write_timestamp(*secs, out),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_into(item, out);
            }
            out.push(b']');
        }
        Value::Map(members) => {
            out.push(b'{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                encode_into(item, out);
            }
            out.push(b'}');
        }
    }
}

/// A close upper-bound guess of the encoded size, so that encoding allocates once. Escapes
/// are not counted; they are rare in responses.
fn encoded_len_hint(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Int(_) => 20,
        Value::Float(_) | Value::Timestamp(_) => 24,
        Value::Str(s) => s.len() + 2,
        Value::Bytes(b) => b.len().div_ceil(3) * 4 + 2,
        Value::List(items) => 2 + items.iter().map(|v| encoded_len_hint(v) + 1).sum::<usize>(),
        Value::Map(members) => {
            2 + members
                .iter()
                .map(|(k, v)| k.len() + 4 + encoded_len_hint(v))
                .sum::<usize>()
        }
    }
}

fn write_base64(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = data.len().div_ceil(3) * 4;
    out.resize(start + len, 0);
    // The slice is sized exactly for padded output, so encoding cannot run out of room.
    let written = STANDARD.encode_slice(data, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

fn write_i64(value: i64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut n = value.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[pos..]);
}

fn write_f64(value: f64, out: &mut Vec<u8>) {
    if value.is_finite() {
        // `Debug` is the shortest text that reads back to the same f64, switching to an
        // exponent for very large or small magnitudes: always a valid JSON number.
        out.extend_from_slice(format!("{value:?}").as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Epoch seconds with at most three decimals; trailing zeros are dropped.
pub(crate) fn write_timestamp(secs: f64, out: &mut Vec<u8>) {
    let millis = (secs * 1000.0).round();
    if !millis.is_finite() || millis.abs() >= 9.0e18 {
        out.extend_from_slice(b"null");
        return;
    }
    let millis = millis as i64;
    if millis < 0 {
        out.push(b'-');
    }
    let abs = millis.unsigned_abs();
    let (whole, frac) = (abs / 1000, abs % 1000);
    write_i64(whole as i64, out);
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let keep = if frac % 100 == 0 {
            1
        } else if frac % 10 == 0 {
            2
        } else {
            3
        };
        out.push(b'.');
        out.extend_from_slice(&digits[..keep]);
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        out.extend_from_slice(escape);
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> AwsError {
        AwsError::serialization(format!("Malformed JSON at byte {}: {what}", self.pos))
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn expect_literal(&mut self, literal: &[u8], value: Value) -> Result<Value, AwsError> {
        if self.input[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// Parses one value; `depth` is the number of containers already open around it.
    fn parse_value(&mut self, depth: usize) -> Result<Value, AwsError> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'{') => self.parse_object(depth + 1),
            Some(b'[') => self.parse_array(depth + 1),
            Some(b'"') => self.parse_string().map(Value::Str),
            Some(b't') => self.expect_literal(b"true", Value::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Value::Bool(false)),
            Some(b'n') => self.expect_literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), AwsError> {
        if depth > MAX_DEPTH {
            Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn parse_object(&mut self, depth: usize) -> Result<Value, AwsError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Map(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name"));
            }
            let key = self.parse_string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            let value = self.parse_value(depth)?;
            members.push((key.into(), value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Map(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn parse_array(&mut self, depth: usize) -> Result<Value, AwsError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.parse_value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// Parses a string starting at its opening quote.
    fn parse_string(&mut self) -> Result<String, AwsError> {
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes, which is every base64 blob.
        while let Some(&b) = self.input.get(self.pos) {
            match b {
                b'"' => {
                    let text = std::str::from_utf8(&self.input[start..self.pos])
                        .map_err(|_| self.error("string is not valid UTF-8"))?;
                    self.pos += 1;
                    return Ok(text.to_owned());
                }
                b'\\' => return self.parse_escaped_string(start),
                0x00..=0x1f => return Err(self.error("control character in string")),
                _ => self.pos += 1,
            }
        }
        Err(self.error("unterminated string"))
    }

    fn parse_escaped_string(&mut self, start: usize) -> Result<String, AwsError> {
        let mut buf = Vec::with_capacity(self.pos - start + 16);
        buf.extend_from_slice(&self.input[start..self.pos]);
        while let Some(&b) = self.input.get(self.pos) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(buf)
                        .map_err(|_| self.error("string is not valid UTF-8"));
                }
                b'\\' => {
                    self.pos += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 1;
                    match escaped {
                        b'"' => buf.push(b'"'),
                        b'\\' => buf.push(b'\\'),
                        b'/' => buf.push(b'/'),
                        b'b' => buf.push(0x08),
                        b'f' => buf.push(0x0c),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let c = self.parse_unicode_escape()?;
                            let mut utf8 = [0u8; 4];
                            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                0x00..=0x1f => return Err(self.error("control character in string")),
                _ => {
                    buf.push(b);
                    self.pos += 1;
                }
            }
        }
        Err(self.error("unterminated string"))
    }

    /// Parses the hex digits after `\u`, joining a surrogate pair into one character.
    fn parse_unicode_escape(&mut self) -> Result<char, AwsError> {
        let first = self.parse_hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if !self.input[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("unpaired surrogate"));
                }
                self.pos += 2;
                let second = self.parse_hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("unpaired surrogate"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("unpaired surrogate")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid code point"))
    }

    fn parse_hex4(&mut self) -> Result<u32, AwsError> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let mut code = 0u32;
        for &d in digits {
            let nibble = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + nibble;
        }
        self.pos += 4;
        Ok(code)
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn parse_number(&mut self) -> Result<Value, AwsError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let int_digits = self.skip_digits();
        if int_digits == 0 {
            return Err(self.error("expected digits"));
        }
        if int_digits > 1 && self.input[int_start] == b'0' {
            return Err(self.error("leading zero in number"));
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(self.error("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integral = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(self.error("expected exponent digits"));
            }
        }
        // The grammar above admits only ASCII.
        let text = std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| self.error("invalid number"))?;
        if integral && let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(self.error("number out of range")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode_str(s: &str) -> Result<Value, AwsError> {
        decode(s.as_bytes())
    }

    fn encode_str(v: &Value) -> String {
        String::from_utf8(encode(v)).unwrap()
    }

    #[test]
    fn empty_body_is_an_empty_map() {
        assert_eq!(decode(b"").unwrap(), Value::Map(vec![]));
        assert_eq!(decode(b" \n\t").unwrap(), Value::Map(vec![]));
    }

    #[test]
    fn top_level_must_be_an_object() {
        for body in ["[]", "1", "\"s\"", "null", "true"] {
            let err = decode_str(body).unwrap_err();
            assert_eq!(err.kind, "SerializationException", "{body}");
        }
    }

    #[test]
    fn malformed_bodies_are_serialization_errors() {
        for body in [
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"unterminated}",
            "{\"a\":\"bad \\x escape\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"raw\nnewline\"}",
            "{\"a\":1e400}",
            "{\"a\":NaN}",
        ] {
            let err = decode_str(body).unwrap_err();
            assert_eq!(err.kind, "SerializationException", "{body}");
            assert_eq!(err.status, 400);
        }
        let err = decode(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(err.kind, "SerializationException");
    }

    #[test]
    fn scalars_decode_to_their_types() {
        let v = decode_str(
            r#"{"i":-42,"big":18446744073709551615,"f":1.5,"e":2E3,"t":true,"n":null,"s":"x"}"#,
        )
        .unwrap();
        assert_eq!(v.get("i"), Some(&Value::Int(-42)));
        assert_eq!(v.get("big"), Some(&Value::Float(18446744073709551615.0)));
        assert_eq!(v.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(v.get("e"), Some(&Value::Float(2000.0)));
        assert_eq!(v.get("t"), Some(&Value::Bool(true)));
        assert_eq!(v.get("n"), Some(&Value::Null));
        assert_eq!(v.get("s"), Some(&Value::Str("x".into())));
    }

    #[test]
    fn escapes_decode() {
        let v = decode_str(r#"{"s":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(v.get("s"), Some(&Value::Str("a\"b\\c/d\n\té😀".into())));
    }

    #[test]
    fn members_keep_order_and_duplicates() {
        let v = decode_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        let Value::Map(members) = &v else { panic!() };
        assert_eq!(members.len(), 3);
        assert_eq!(members[0].0, "b");
        assert_eq!(v.get("b"), Some(&Value::Int(3)));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok =
            format!("{}{}", "{\"a\":".repeat(MAX_DEPTH - 1), "{}") + &"}".repeat(MAX_DEPTH - 1);
        assert!(decode_str(&ok).is_ok());
        let too_deep = format!("{}{}", "{\"a\":".repeat(MAX_DEPTH), "{}") + &"}".repeat(MAX_DEPTH);
        let err = decode_str(&too_deep).unwrap_err();
        assert_eq!(err.kind, "SerializationException");
        assert!(err.message.contains("nesting"), "{}", err.message);
    }

    #[test]
    fn very_deep_nesting_does_not_overflow_the_stack() {
        let body = format!("{{\"a\":{}", "[".repeat(1_000_000));
        assert_eq!(
            decode_str(&body).unwrap_err().kind,
            "SerializationException"
        );
    }

    #[test]
    fn encodes_compactly_in_order() {
        let v = Value::map()
            .with("S", "a\"b\\\u{1}\n")
            .with("I", -12)
            .with("F", 0.5)
            .with("N", Value::Null)
            .with("B", Bytes::from_static(b"hello"))
            .with(
                "L",
                Value::List(vec![Value::Bool(true), Value::Bool(false)]),
            )
            .with("M", Value::map())
            .build();
        assert_eq!(
            encode_str(&v),
            r#"{"S":"a\"b\\\u0001\n","I":-12,"F":0.5,"N":null,"B":"aGVsbG8=","L":[true,false],"M":{}}"#
        );
    }

    #[test]
    fn extreme_numbers_encode_as_valid_json() {
        assert_eq!(encode_str(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(encode_str(&Value::Int(0)), "0");
        assert_eq!(encode_str(&Value::Float(f64::NAN)), "null");
        assert_eq!(encode_str(&Value::Float(f64::INFINITY)), "null");
        for f in [1e300, -1e-300, 5e-324, f64::MAX, 0.1, -0.0, 3.0] {
            let body = format!("{{\"f\":{}}}", encode_str(&Value::Float(f)));
            assert_eq!(
                decode_str(&body).unwrap().get("f"),
                Some(&Value::Float(f)),
                "{body}"
            );
        }
    }

    #[test]
    fn timestamps_encode_as_seconds_with_millis() {
        let cases = [
            (1_700_000_000.123, "1700000000.123"),
            (1_700_000_000.1, "1700000000.1"),
            (1_700_000_000.12, "1700000000.12"),
            (1_700_000_000.0, "1700000000"),
            (1_700_000_000.000_4, "1700000000"),
            (1_700_000_000.099_6, "1700000000.1"),
            (1_700_000_000.005, "1700000000.005"),
            (-1.5, "-1.5"),
            (0.0, "0"),
            (f64::NAN, "null"),
        ];
        for (secs, text) in cases {
            assert_eq!(encode_str(&Value::Timestamp(secs)), text, "{secs}");
        }
        assert_eq!(
            encode_str(&Value::timestamp_millis(1_700_000_000_123)),
            "1700000000.123"
        );
    }

    #[test]
    fn blobs_encode_with_padding() {
        for (data, text) in [
            (&b""[..], "\"\""),
            (b"f", "\"Zg==\""),
            (b"fo", "\"Zm8=\""),
            (b"foo", "\"Zm9v\""),
            (b"\xff\xfe\xfd\xfc", "\"//79/A==\""),
        ] {
            assert_eq!(
                encode_str(&Value::Bytes(Bytes::copy_from_slice(data))),
                text
            );
        }
    }

    #[test]
    fn round_trip_is_stable() {
        let body = r#"{"a":[1,-2.5,1e100,"x\u0000y",{"b":null}],"c":{},"d":[],"e":"é"}"#;
        let v = decode_str(body).unwrap();
        let again = decode(&encode(&v)).unwrap();
        assert_eq!(v, again);
        assert_eq!(encode(&v), encode(&again));
    }

    #[test]
    fn agrees_with_serde_json_on_a_realistic_body() {
        let body =
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k\u00e9"}],"N":3}"#;
        let ours = encode(&decode(body).unwrap());
        let theirs: serde_json::Value = serde_json::from_slice(body).unwrap();
        let reparsed: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        assert_eq!(theirs, reparsed);
    }

    #[test]
    fn encode_allocates_once_for_large_responses() {
        let record = || {
            Value::map()
                .with("Data", Bytes::from(vec![7u8; 1000]))
                .with("PartitionKey", "pk")
                .build()
        };
        let v = Value::map()
            .with("Records", (0..100).map(|_| record()).collect::<Value>())
            .build();
        let out = encode(&v);
        assert!(out.capacity() >= out.len());
        assert!(
            out.capacity() - out.len() < out.len() / 10,
            "hint far too large"
        );
        assert_eq!(out.capacity(), encoded_len_hint(&v));
    }
}
