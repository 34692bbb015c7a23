#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_wire::event_stream::{decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((message, used)) = decode_message(rest) {
        assert!(used >= 16 && used <= rest.len());
        let headers: Vec<(&str, _)> = message
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let frame = match encode_message(&headers, &message.payload) {
            Ok(frame) => frame,
            Err(err) => panic!("a decoded message does not re-encode: {err}"),
        };
        assert_eq!(&frame[..], &rest[..used], "re-encoding changed the frame");
        rest = &rest[used..];
    }
});
