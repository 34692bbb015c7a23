//! One network namespace per replica, joined by a bridge in a "switch" namespace, with a
//! veth from the host namespace so the test can reach every replica. A partition is an
//! nftables table inside one replica's namespace that drops packets to and from its peers
//! (the test's own address stays reachable).
//!
//! Names carry the test process id, and everything is removed on drop (deleting a namespace
//! deletes the interfaces in it).

use std::process::{Command, Output};

/// The namespaces and addresses of one test group.
pub struct Net {
    prefix: String,
    subnet: String,
    n: u64,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    succeeded(&format!("ip {args:?}"), out)
}

/// `Ok` if the command exited successfully, else its stderr prefixed with `what`.
fn succeeded(what: &str, out: Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Builds the namespaces for replicas `1..=n`, or says why it cannot (not root, no `ip`).
    pub fn create(n: u64) -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            prefix: format!("rr{}", pid % 100_000),
            subnet: format!("10.213.{}", 20 + pid % 200),
            n,
        };
        // Remove leftovers of a crashed run with the same pid.
        net.remove();
        net.build().inspect_err(|_| net.remove())?;
        Ok(net)
    }

    fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The namespace of replica `id`.
    pub fn ns(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    /// The address of replica `id`.
    pub fn addr(&self, id: u64) -> String {
        format!("{}.{id}", self.subnet)
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.sw();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for id in 1..=self.n {
            let ns = self.ns(id);
            let (inner, outer) = (
                format!("{}a{id}", self.prefix),
                format!("{}b{id}", self.prefix),
            );
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "netns", &sw])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", self.addr(id));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &outer, "up"])?;
        }
        let (host, port) = (format!("{}h", self.prefix), format!("{}s", self.prefix));
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &port])?;
        ip(&["link", "set", &port, "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &sw, "link", "set", &port, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", self.subnet),
            "dev",
            &host,
        ])?;
        ip(&["link", "set", &host, "up"])?;
        Ok(())
    }

    fn remove(&self) {
        let _ = ip(&["link", "del", &format!("{}h", self.prefix)]);
        for id in 1..=self.n {
            let _ = ip(&["netns", "del", &self.ns(id)]);
        }
        let _ = ip(&["netns", "del", &self.sw()]);
    }

    /// Drops every packet between replica `id` and `peers`, in its namespace.
    pub fn cut(&self, id: u64, peers: &[u64]) -> Result<(), String> {
        let set = peers
            .iter()
            .map(|p| self.addr(*p))
            .collect::<Vec<_>>()
            .join(", ");
        let script = format!(
            "table inet riffle_partition {{\n\
             chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
             chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        nft(&self.ns(id), &script)
    }

    /// Removes the partition rules of replica `id`.
    pub fn heal(&self, id: u64) -> Result<(), String> {
        nft(&self.ns(id), "delete table inet riffle_partition\n")
    }
}

fn nft(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    succeeded("nft", out)
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}
