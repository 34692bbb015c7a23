#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_wire::{Doc, Format, cbor};

mod walk;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = cbor::decode(data) else {
        return;
    };
    if let Ok(doc) = Doc::new(&value, Format::Cbor) {
        walk::walk(&doc);
    }
    let shared = cbor::decode_shared(&bytes_of(data));
    assert!(shared.is_ok(), "shared decode disagrees");
    let encoded = cbor::encode(&value);
    assert!(
        cbor::decode(&encoded).is_ok(),
        "re-encoded body does not decode"
    );
    let _ = riffle_wire::json::encode(&value);
});

fn bytes_of(data: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(data)
}
