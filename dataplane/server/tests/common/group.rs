//! A replicated shard group of three real processes (`riffle-group-replica`) on loopback, and
//! the replicas' metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::{HttpClient, free_port};

/// One replica: its addresses, its data directory and its process while it runs.
pub struct Member {
    pub id: u64,
    pub api: String,
    pub grpc: String,
    pub raft: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

/// Three replicas of one shard group (`riffle-group-replica` processes on loopback), killed
/// when dropped; their stderr tails are printed if a test panics.
pub struct Group {
    pub members: Vec<Member>,
    peers: String,
    apis: String,
    _root: tempfile::TempDir,
}

impl Group {
    /// Starts replicas 1 to 3, each over its own data directory.
    pub fn start() -> Group {
        let root = tempfile::tempdir().unwrap();
        let mut members: Vec<Member> = (1..=3)
            .map(|id| Member {
                id,
                api: format!("127.0.0.1:{}", free_port()),
                grpc: format!("127.0.0.1:{}", free_port()),
                raft: format!("127.0.0.1:{}", free_port()),
                dir: root.path().join(format!("replica-{id}")),
                child: None,
            })
            .collect();
        let peers = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.raft))
            .collect::<Vec<_>>()
            .join(",");
        let apis = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.api))
            .collect::<Vec<_>>()
            .join(",");
        let mut group = Group {
            members: Vec::new(),
            peers,
            apis,
            _root: root,
        };
        for member in &mut members {
            group.spawn(member);
        }
        group.members = members;
        group
    }

    fn spawn(&self, member: &mut Member) {
        std::fs::create_dir_all(&member.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.dir.join("stderr.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_riffle-group-replica"))
            .args([
                member.dir.to_str().unwrap(),
                &member.api,
                &member.grpc,
                &member.id.to_string(),
                &self.peers,
                &self.apis,
                &member.raft,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        member.child = Some(child);
    }

    /// Kills replica `id` with SIGKILL.
    pub fn kill(&mut self, id: u64) {
        let member = self.members.iter_mut().find(|m| m.id == id).unwrap();
        let mut child = member.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Starts replica `id` again over its data directory.
    pub fn restart(&mut self, id: u64) {
        let mut members = std::mem::take(&mut self.members);
        let member = members.iter_mut().find(|m| m.id == id).unwrap();
        self.spawn(member);
        self.members = members;
    }

    /// Sends `signal` (`STOP` or `CONT`) to replica `id`: a stopped replica answers nothing,
    /// as if cut off.
    pub fn signal(&self, id: u64, signal: &str) {
        let member = self.members.iter().find(|m| m.id == id).unwrap();
        let pid = member.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The Kinesis API address of replica `id`.
    pub fn api_of(&self, id: u64) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .api
            .clone()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for member in &self.members {
                if let Ok(log) = std::fs::read_to_string(member.dir.join("stderr.log")) {
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    eprintln!(
                        "--- replica {} stderr (last lines, newest first) ---",
                        member.id
                    );
                    for line in tail {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// The `riffle_replica_*` series on the `/metrics` page at `address`; `None` if it was not
/// answered within 2 s.
pub async fn metrics(client: &HttpClient, address: &str) -> Option<HashMap<String, u64>> {
    let request = http::Request::get(format!("http://{address}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(2), client.request(request))
        .await
        .ok()?
        .ok()?;
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    // Series with several label sets (one per voter) are summed.
    let mut series = HashMap::new();
    for (name, value) in text
        .lines()
        .filter(|l| l.starts_with("riffle_replica_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let name = name.split('{').next()?;
            Some((name.to_string(), value.parse::<u64>().ok()?))
        })
    {
        *series.entry(name).or_default() += value;
    }
    Some(series)
}
