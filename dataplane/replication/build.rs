//! Compiles the test binary's client API (`riffle/replication/testing/v1`) with `protox`, so
//! building needs no `protoc`.

use std::error::Error;

const PROTOS: &[&str] = &["proto/riffle/replication/testing/v1/replica_test.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".riffle.replication")
        .compile_fds(descriptors)?;
    Ok(())
}
