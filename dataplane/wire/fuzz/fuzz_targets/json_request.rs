#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_wire::{Doc, Format, json};

mod walk;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = json::decode(data) else {
        return;
    };
    if let Ok(doc) = Doc::new(&value, Format::Json) {
        walk::walk(&doc);
    }
    let encoded = json::encode(&value);
    let again = match json::decode(&encoded) {
        Ok(again) => again,
        Err(err) => panic!("re-encoded body does not decode: {err}"),
    };
    assert_eq!(value, again, "round trip changed the document");
    assert_eq!(
        encoded,
        json::encode(&again),
        "round trip changed the encoding"
    );
});
