//! Generates the messages and the client and server stubs of `riffle/v1/*.proto`.
//!
//! The .proto files are compiled by `protox` (a protobuf compiler in Rust), so building needs
//! no `protoc`. The generated code lands in `OUT_DIR` and is included by `src/lib.rs`.

use std::error::Error;

const PROTOS: &[&str] = &["riffle/v1/streams.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".riffle.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
