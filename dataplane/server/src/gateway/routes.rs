//! The gateway's route table: which data-plane endpoint serves each stream, and where
//! stream-management calls go. Read from a JSON file (on Kubernetes, a ConfigMap the operator
//! maintains) and re-read whenever it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

/// How often the route file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The contents of the route file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteTable {
    /// Stream name → base URL of the data-plane endpoint hosting it
    /// (e.g. `http://orders-g0.shop.svc:4567`).
    #[serde(default)]
    pub streams: BTreeMap<String, String>,
    /// Base URL that CreateStream, DeleteStream and UpdateShardCount are sent to (the
    /// operator, which turns them into changes of `Stream` objects); absent when streams are
    /// managed only declaratively.
    #[serde(default)]
    pub admin: Option<String>,
}

impl RouteTable {
    /// Parses a route file.
    pub fn parse(bytes: &[u8]) -> Result<RouteTable, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The current route table, shared by every request, replaced when the file changes.
#[derive(Debug, Clone)]
pub struct Routes {
    path: PathBuf,
    table: Arc<RwLock<Arc<RouteTable>>>,
}

impl Routes {
    /// Loads the table from `path`. A missing file is an empty table (the operator may not have
    /// written it yet); a malformed one is an error.
    pub fn load(path: &Path) -> std::io::Result<Routes> {
        let table = read(path)?;
        Ok(Routes {
            path: path.to_path_buf(),
            table: Arc::new(RwLock::new(Arc::new(table))),
        })
    }

    /// The table in force.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the file periodically for as long as the returned task runs. A malformed file
    /// keeps the previous table and is logged.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let routes = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                interval.tick().await;
                match read(&routes.path) {
                    Ok(table) => {
                        let changed = *routes.current() != table;
                        if changed {
                            tracing::info!(streams = table.streams.len(), "routes changed");
                            *routes.table.write().unwrap_or_else(|p| p.into_inner()) =
                                Arc::new(table);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(path = %routes.path.display(), %error, "keeping the previous routes");
                    }
                }
            }
        })
    }
}

fn read(path: &Path) -> std::io::Result<RouteTable> {
    match std::fs::read(path) {
        Ok(bytes) => RouteTable::parse(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(RouteTable::default()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operator_format() {
        let table = RouteTable::parse(
            br#"{"streams":{"orders":"http://orders-g0.shop.svc:4567"},"admin":"http://op:4570"}"#,
        )
        .unwrap();
        assert_eq!(
            table.streams.get("orders").map(String::as_str),
            Some("http://orders-g0.shop.svc:4567")
        );
        assert_eq!(table.admin.as_deref(), Some("http://op:4570"));
        assert_eq!(RouteTable::parse(b"{}").unwrap(), RouteTable::default());
        assert!(RouteTable::parse(b"{\"streams\": 3}").is_err());
    }

    #[tokio::test]
    async fn a_missing_file_is_an_empty_table_and_changes_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        let routes = Routes::load(&path).unwrap();
        assert!(routes.current().streams.is_empty());
        std::fs::write(&path, br#"{"streams":{"a":"http://x:1"}}"#).unwrap();
        let task = routes.spawn_reloader();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while routes.current().streams.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "route change not seen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
    }
}
