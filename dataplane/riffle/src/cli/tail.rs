//! `riffle tail`: print a stream's records, following every shard and every reshard.

use std::io::{self, BufWriter, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use riffle_proto::v1;
use riffle_proto::v1::starting_position::Type;

use super::{Client, Connection};

/// Where in the stream to start.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The oldest retained record of every shard.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

/// How records are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `<shard>  <sequence number>  <partition key>  <data as UTF-8>`.
    Text,
    /// One JSON object per line, data in base64.
    Json,
}

/// Arguments of `riffle tail`.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The stream to read.
    pub stream: String,
    /// Where to start.
    #[arg(long, value_enum, default_value = "latest")]
    pub from: From,
    /// Keep waiting for new records (the default).
    #[arg(short = 'f', long, overrides_with = "no_follow")]
    pub follow: bool,
    /// Stop once every shard has been read up to its newest record.
    #[arg(long, overrides_with = "follow")]
    pub no_follow: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `riffle tail`.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let mut client = args.connection.connect().await?;
    let mut out = BufWriter::new(io::stdout());
    match tail(&mut client, &args, &mut out).await {
        // The reader went away (`riffle tail s | head`): that is how tailing ends.
        Err(error)
            if error
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Subscribes and prints every batch as it arrives.
pub async fn tail(
    client: &mut Client,
    args: &TailArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let kind = match args.from {
        From::TrimHorizon => Type::TrimHorizon,
        From::Latest => Type::Latest,
    };
    let request = v1::SubscribeRequest {
        stream: args.stream.clone(),
        position: Some(v1::StartingPosition {
            r#type: kind.into(),
            ..Default::default()
        }),
        stop_when_caught_up: args.no_follow,
    };
    let mut batches = client
        .api
        .subscribe(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    while let Some(batch) = batches.message().await.map_err(|s| client.error(s))? {
        for record in &batch.records {
            let line = match args.format {
                Format::Text => text_line(&batch.shard_id, record),
                Format::Json => json_line(&batch.shard_id, record),
            };
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// `shardId-000000000000  <seq>  <key>  <data as UTF-8, invalid bytes replaced>`.
pub fn text_line(shard: &str, record: &v1::Record) -> String {
    format!(
        "{shard}  {}  {}  {}",
        record.sequence_number,
        record.partition_key,
        String::from_utf8_lossy(&record.data)
    )
}

/// One JSON object with the data in base64.
pub fn json_line(shard: &str, record: &v1::Record) -> String {
    serde_json::json!({
        "shardId": shard,
        "sequenceNumber": record.sequence_number,
        "partitionKey": record.partition_key,
        "arrivalMs": record.arrival_ms,
        "data": STANDARD.encode(&record.data),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> v1::Record {
        v1::Record {
            sequence_number: "49".into(),
            partition_key: "user-1".into(),
            data: bytes::Bytes::from_static(b"caf\xc3\xa9 \xff"),
            arrival_ms: 1_764_000_000_000,
        }
    }

    #[test]
    fn prints_text_lines() {
        assert_eq!(
            text_line("shardId-000000000003", &sample()),
            "shardId-000000000003  49  user-1  café \u{fffd}"
        );
    }

    #[test]
    fn prints_json_lines() {
        let line = json_line("shardId-000000000003", &sample());
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["shardId"], "shardId-000000000003");
        assert_eq!(value["sequenceNumber"], "49");
        assert_eq!(value["partitionKey"], "user-1");
        assert_eq!(value["arrivalMs"], 1_764_000_000_000i64);
        let data = STANDARD
            .decode(value["data"].as_str().expect("a string"))
            .expect("base64");
        assert_eq!(data, b"caf\xc3\xa9 \xff");
        assert!(!line.contains('\n'));
    }
}
