//! The client commands of `riffle`: stream administration (`riffle stream ...`), writing
//! (`riffle put`) and reading (`riffle tail`), all over the server's gRPC API.
//!
//! Every command takes `--endpoint` (or `RIFFLE_ENDPOINT`), the URL of that API. Failures come
//! back as one readable line ([`errors`]); the caller prints it and exits non-zero.

mod errors;
mod put;
mod stream;
mod tail;

use std::time::Duration;

use anyhow::anyhow;
use riffle_proto::v1::streams_client::StreamsClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

pub use put::PutArgs;
pub use stream::StreamCommand;
pub use tail::TailArgs;

/// Where the standalone server's gRPC API listens by default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4568";

/// Largest message sent or received: batches of large records.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client commands, to be flattened into the binary's own subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe, scale and delete streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Write records: each DATA argument is one, or else each line of standard input.
    Put(PutArgs),
    /// Print a stream's records as they arrive, following every shard through resharding.
    Tail(TailArgs),
}

/// Runs a client command; errors carry a one-line message meant for the user.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Stream(command) => stream::run(command).await,
        ClientCommand::Put(args) => put::run(args).await,
        ClientCommand::Tail(args) => tail::run(args).await,
    }
}

/// Which server to talk to.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// URL of the riffle server's gRPC API.
    #[arg(long, env = "RIFFLE_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

impl Connection {
    /// Connects, or explains why the server cannot be reached.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|_| {
                anyhow!(
                    "invalid endpoint {:?}: expected a URL such as {DEFAULT_ENDPOINT}",
                    self.endpoint
                )
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|error| {
            anyhow!(
                "cannot reach the riffle server at {} ({}); is it running?",
                self.endpoint,
                errors::root_cause(&error)
            )
        })?;
        Ok(Client {
            api: StreamsClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            endpoint: self.endpoint.clone(),
        })
    }
}

/// A connected client, remembering its endpoint for error messages.
pub struct Client {
    /// The generated gRPC client.
    pub api: StreamsClient<Channel>,
    endpoint: String,
}

impl Client {
    /// A readable error for a failed call.
    pub fn error(&self, status: Status) -> anyhow::Error {
        anyhow!(errors::readable(&status, &self.endpoint))
    }
}

#[cfg(test)]
mod tests;
