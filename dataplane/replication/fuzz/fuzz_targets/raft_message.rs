//! Bytes from a peer, read as a request by the replication server and as a reply by a client:
//! either is refused with an error or decoded, never a panic or an allocation its length alone
//! asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = riffle_replication::network::decode_untrusted(data);
});
