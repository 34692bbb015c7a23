//! A replica of a replicated shard group, for the server's fault tests (`tests/replicated*.rs`):
//! `riffle server` with its replication flags, without the rest of the command line.
//!
//! `riffle-group-replica DATA_DIR LISTEN GRPC_LISTEN ID PEERS PEER_APIS RAFT_LISTEN`, where
//! PEERS and PEER_APIS are `ID=HOST:PORT,...`. Throttling is off; appends are synced.

use std::collections::BTreeMap;
use std::process::ExitCode;

use riffle_server::replicated::ReplicationOptions;
use riffle_server::server::{ServerOptions, load_data_key, run};
use riffle_server::streams::StreamsConfig;

fn peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    text.split(',')
        .map(|item| {
            let (id, address) = item
                .split_once('=')
                .ok_or_else(|| format!("expected ID=HOST:PORT, got {item:?}"))?;
            let id = id.parse().map_err(|_| format!("bad replica id {id:?}"))?;
            Ok((id, address.to_string()))
        })
        .collect()
}

fn options() -> Result<ServerOptions, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, listen, grpc, id, peer_list, apis, raft] = args.as_slice() else {
        return Err(
            "usage: riffle-group-replica DATA_DIR LISTEN GRPC_LISTEN ID PEERS PEER_APIS RAFT_LISTEN"
                .into(),
        );
    };
    let data_dir = std::path::PathBuf::from(data_dir);
    let key = load_data_key(None, &data_dir).map_err(|e| e.to_string())?;
    let mut streams = StreamsConfig::new(data_dir, key);
    streams.limits.enabled = false;
    Ok(ServerOptions {
        listen: listen.parse().map_err(|e| format!("{listen}: {e}"))?,
        grpc_listen: grpc.parse().map_err(|e| format!("{grpc}: {e}"))?,
        streams,
        replication: Some(ReplicationOptions {
            id: id.parse().map_err(|_| format!("bad replica id {id:?}"))?,
            peers: peers(peer_list)?,
            raft_listen: raft.parse().map_err(|e| format!("{raft}: {e}"))?,
            peer_apis: peers(apis)?,
        }),
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
