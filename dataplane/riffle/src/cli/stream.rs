//! `riffle stream`: create, list, describe, scale and delete streams.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use riffle_proto::v1;

use super::{Client, Connection};

/// The stream administration commands.
#[derive(clap::Subcommand, Debug)]
pub enum StreamCommand {
    /// Create a stream.
    Create {
        /// Stream name: 1 to 128 letters, digits, '_', '.' or '-'.
        name: String,
        /// Number of shards, dividing the hash-key space evenly.
        #[arg(long, default_value_t = 1)]
        shards: u32,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the streams.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a stream and its shards.
    Describe {
        /// Stream name.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Change the number of open shards (between half and double the current number).
    Scale {
        /// Stream name.
        name: String,
        /// Target number of open shards.
        #[arg(long)]
        shards: u32,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a stream and all its records.
    Delete {
        /// Stream name.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs a stream command, printing its result on standard output.
pub async fn run(command: StreamCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let connection = match &command {
        StreamCommand::Create { connection, .. }
        | StreamCommand::List { connection }
        | StreamCommand::Describe { connection, .. }
        | StreamCommand::Scale { connection, .. }
        | StreamCommand::Delete { connection, .. } => connection.clone(),
    };
    let mut client = connection.connect().await?;
    execute(&mut client, command, &mut out).await
}

/// Runs `command` with `client`, writing what it prints to `out`.
pub async fn execute(
    client: &mut Client,
    command: StreamCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        StreamCommand::Create { name, shards, .. } => {
            client
                .api
                .create_stream(v1::CreateStreamRequest {
                    name: name.clone(),
                    shard_count: shards,
                    ..Default::default()
                })
                .await
                .map_err(|s| client.error(s))?;
            let plural = if shards == 1 { "" } else { "s" };
            writeln!(out, "created stream {name} with {shards} shard{plural}")?;
        }
        StreamCommand::List { .. } => {
            let list = client
                .api
                .list_streams(v1::ListStreamsRequest {})
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            for name in list.names {
                writeln!(out, "{name}")?;
            }
        }
        StreamCommand::Describe { name, .. } => {
            let stream = describe(client, &name).await?;
            write!(out, "{}", render_description(&stream))?;
        }
        StreamCommand::Scale { name, shards, .. } => {
            let change = scale(client, &name, shards).await?;
            writeln!(
                out,
                "{name}: {} open shards (was {})",
                change.target_shard_count, change.current_shard_count
            )?;
        }
        StreamCommand::Delete { name, .. } => {
            client
                .api
                .delete_stream(v1::DeleteStreamRequest {
                    name: name.clone(),
                    enforce_consumer_deletion: false,
                })
                .await
                .map_err(|s| client.error(s))?;
            writeln!(out, "deleted stream {name}")?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn describe(client: &mut Client, name: &str) -> anyhow::Result<v1::StreamDescription> {
    let response = client
        .api
        .describe_stream(v1::DescribeStreamRequest { name: name.into() })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    response
        .stream
        .ok_or_else(|| anyhow::anyhow!("the server described no stream {name}"))
}

/// UpdateShardCount, with a progress line on standard error while the server reshards.
async fn scale(
    client: &mut Client,
    name: &str,
    target: u32,
) -> anyhow::Result<v1::UpdateShardCountResponse> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    eprint!("scaling {name} to {target} shards...");
    let request = v1::UpdateShardCountRequest {
        name: name.into(),
        target_shard_count: target,
    };
    let result = {
        let call = client.api.update_shard_count(request);
        tokio::pin!(call);
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                result = &mut call => break result,
                _ = ticker.tick() => {
                    if tty {
                        eprint!(
                            "\rscaling {name} to {target} shards... {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        }
    };
    match result {
        Ok(response) => {
            let seconds = started.elapsed().as_secs_f64();
            if tty {
                eprintln!("\rscaling {name} to {target} shards... done in {seconds:.1} s");
            } else {
                eprintln!(" done in {seconds:.1} s");
            }
            Ok(response.into_inner())
        }
        Err(status) => {
            eprintln!();
            Err(client.error(status))
        }
    }
}

/// The stream's summary line and a table of its shards.
pub fn render_description(stream: &v1::StreamDescription) -> String {
    let status = v1::StreamStatus::try_from(stream.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("STREAM_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| "UNKNOWN".into());
    let open = stream.shards.iter().filter(|s| s.open).count();
    let mut text = format!(
        "{}  {status}  {} open shards ({} retained)  retention {} h  {}{}\n{}\n\n",
        stream.name,
        open,
        stream.shards.len(),
        stream.retention_hours,
        stream.mode,
        if stream.encrypted { "  encrypted" } else { "" },
        stream.arn
    );
    let mut rows = vec![[
        "SHARD".to_string(),
        "STATE".to_string(),
        "HASH RANGE".to_string(),
        "KEYS".to_string(),
        "PARENTS".to_string(),
    ]];
    for shard in &stream.shards {
        let parents: Vec<&str> = shard
            .parent_shard_id
            .iter()
            .chain(&shard.adjacent_parent_shard_id)
            .map(String::as_str)
            .collect();
        rows.push([
            shard.id.clone(),
            if shard.open { "open" } else { "closed" }.to_string(),
            abbreviate_range(&shard.starting_hash_key, &shard.ending_hash_key),
            key_share(&shard.starting_hash_key, &shard.ending_hash_key),
            if parents.is_empty() {
                "-".to_string()
            } else {
                parents.join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// A hash-key range by the top 32 bits of its bounds, in hex: `00000000..7fffffff`.
pub fn abbreviate_range(start: &str, end: &str) -> String {
    let top = |key: &str| match key.parse::<u128>() {
        Ok(key) => format!("{:08x}", key >> 96),
        Err(_) => key.to_string(),
    };
    format!("{}..{}", top(start), top(end))
}

/// The share of the hash-key space a range covers, as a percentage.
pub fn key_share(start: &str, end: &str) -> String {
    match (start.parse::<u128>(), end.parse::<u128>()) {
        (Ok(start), Ok(end)) if start <= end => {
            let share = (end - start) as f64 / u128::MAX as f64 * 100.0;
            format!("{share:.1}%")
        }
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviates_hash_ranges() {
        let half = (u128::MAX / 2).to_string();
        assert_eq!(abbreviate_range("0", &half), "00000000..7fffffff");
        assert_eq!(
            abbreviate_range(&(u128::MAX / 2 + 1).to_string(), &u128::MAX.to_string()),
            "80000000..ffffffff"
        );
        assert_eq!(key_share("0", &half), "50.0%");
        assert_eq!(key_share("0", &u128::MAX.to_string()), "100.0%");
        assert_eq!(key_share("x", "1"), "?");
    }

    #[test]
    fn renders_a_table_of_shards() {
        let shard =
            |id: &str, open: bool, start: u128, end: u128, parent: Option<&str>| v1::Shard {
                id: id.into(),
                starting_hash_key: start.to_string(),
                ending_hash_key: end.to_string(),
                parent_shard_id: parent.map(Into::into),
                adjacent_parent_shard_id: None,
                open,
                starting_sequence_number: String::new(),
                ending_sequence_number: None,
                group: 0,
            };
        let stream = v1::StreamDescription {
            name: "orders".into(),
            arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
            status: v1::StreamStatus::Active.into(),
            mode: "PROVISIONED".into(),
            retention_hours: 24,
            created_ms: 0,
            encrypted: false,
            max_record_size_kib: 1024,
            placement: None,
            reshard_count: 0,
            shards: vec![
                shard("shardId-000000000000", false, 0, u128::MAX, None),
                shard(
                    "shardId-000000000001",
                    true,
                    0,
                    u128::MAX / 2,
                    Some("shardId-000000000000"),
                ),
                shard(
                    "shardId-000000000002",
                    true,
                    u128::MAX / 2 + 1,
                    u128::MAX,
                    Some("shardId-000000000000"),
                ),
            ],
        };
        let text = render_description(&stream);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "orders  ACTIVE  2 open shards (3 retained)  retention 24 h  PROVISIONED"
        );
        assert_eq!(
            lines[1],
            "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
        );
        assert_eq!(
            lines[3],
            "SHARD                 STATE   HASH RANGE          KEYS    PARENTS"
        );
        assert_eq!(
            lines[4],
            "shardId-000000000000  closed  00000000..ffffffff  100.0%  -"
        );
        assert_eq!(
            lines[5],
            "shardId-000000000001  open    00000000..7fffffff  50.0%   shardId-000000000000"
        );
        assert_eq!(lines.len(), 7);
    }
}
