//! The gateway's route table: which data-plane endpoints serve each stream, and where
//! stream-management calls go. Read from a JSON file (on Kubernetes, a ConfigMap the operator
//! maintains) and re-read whenever it changes.
//!
//! A stream lives in one shard group (its value is the group's base URL) or is spread over
//! several (its value lists the groups and which group hosts each retained shard):
//!
//! ```json
//! {"streams": {
//!    "small": "http://small-g0.ns.svc:4567",
//!    "orders": {"groups": ["http://orders-g0.shop.svc:4567", "http://orders-g1.shop.svc:4567"],
//!               "shards": [{"index": 0, "start": "0", "end": "170141183460469231731687303715884105727", "group": 0, "open": true},
//!                          {"index": 1, "start": "170141183460469231731687303715884105728", "end": "340282366920938463463374607431768211455", "group": 1, "open": true}]}},
//!  "admin": "http://riffle-operator.riffle-system.svc:4570"}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::streams::hash_key::u128_string;

/// How often the route file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The contents of the route file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteTable {
    /// Stream name → the shard group(s) hosting it.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamRoute>,
    /// Base URL that CreateStream, DeleteStream and UpdateShardCount are sent to (the
    /// operator, which turns them into changes of `Stream` objects); absent when streams are
    /// managed only declaratively.
    #[serde(default)]
    pub admin: Option<String>,
}

impl RouteTable {
    /// Parses a route file. Anything but the documented shapes is an error, and so is a
    /// spread stream whose shards name a group it does not list or whose open shards do not
    /// cover the hash-key space exactly once.
    pub fn parse(bytes: &[u8]) -> Result<RouteTable, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Where one stream lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StreamRoute {
    /// Base URL of the one data-plane endpoint hosting the whole stream
    /// (e.g. `http://orders-g0.shop.svc:4567`).
    Single(String),
    /// The stream's shards spread over several shard groups.
    Groups(GroupedRoute),
}

impl StreamRoute {
    /// Base URLs of the stream's groups, group 0 first; never empty.
    pub fn groups(&self) -> &[String] {
        match self {
            StreamRoute::Single(base) => std::slice::from_ref(base),
            StreamRoute::Groups(grouped) => &grouped.groups,
        }
    }

    /// Base URL of group 0, which answers for the stream as a whole.
    pub fn first(&self) -> &str {
        &self.groups()[0]
    }

    /// The placement of a stream spread over more than one group; `None` when one endpoint
    /// serves everything (requests then go there unchanged).
    pub fn spread(&self) -> Option<&GroupedRoute> {
        match self {
            StreamRoute::Groups(grouped) if grouped.groups.len() > 1 => Some(grouped),
            _ => None,
        }
    }
}

/// A stream spread over several shard groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawGroupedRoute")]
pub struct GroupedRoute {
    /// Base URLs of the groups; a shard's `group` is a position in this list.
    pub groups: Vec<String>,
    /// Every retained shard (open and closed), ordered by index.
    pub shards: Vec<ShardRoute>,
    /// Positions in `shards` of the open shards, ordered by hash range.
    open: Vec<usize>,
}

/// One retained shard of a spread stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRoute {
    /// Index in `shardId-<index:012>`.
    pub index: u32,
    /// First hash key of the shard's range (decimal string in the file).
    #[serde(with = "u128_string")]
    pub start: u128,
    /// Last hash key of the shard's range, inclusive.
    #[serde(with = "u128_string")]
    pub end: u128,
    /// Position in [`GroupedRoute::groups`] of the group storing the shard's records.
    pub group: usize,
    /// Whether the shard still takes writes.
    pub open: bool,
}

impl GroupedRoute {
    /// Builds a placement, checking what [`RouteTable::parse`] promises.
    pub fn new(groups: Vec<String>, mut shards: Vec<ShardRoute>) -> Result<GroupedRoute, String> {
        if groups.is_empty() {
            return Err("a stream needs at least one group".into());
        }
        shards.sort_by_key(|s| s.index);
        if shards.windows(2).any(|pair| pair[0].index == pair[1].index) {
            return Err("a shard index is listed twice".into());
        }
        for shard in &shards {
            if shard.group >= groups.len() {
                return Err(format!(
                    "shard {} is placed in group {}, but only {} groups are listed",
                    shard.index,
                    shard.group,
                    groups.len()
                ));
            }
            if shard.start > shard.end {
                return Err(format!("shard {} has an empty hash-key range", shard.index));
            }
        }
        let mut open: Vec<usize> = (0..shards.len()).filter(|&i| shards[i].open).collect();
        open.sort_by_key(|&i| shards[i].start);
        let mut next = Some(0u128);
        for &i in &open {
            if next != Some(shards[i].start) {
                return Err(format!(
                    "the open shards do not cover the hash-key space exactly once (at shard {})",
                    shards[i].index
                ));
            }
            next = shards[i].end.checked_add(1);
        }
        if open.is_empty() || next.is_some() {
            return Err("the open shards do not reach the end of the hash-key space".into());
        }
        Ok(GroupedRoute {
            groups,
            shards,
            open,
        })
    }

    /// The open shard whose range holds `hash_key` (the open shards cover the whole space).
    pub fn shard_for_key(&self, hash_key: u128) -> &ShardRoute {
        let position = self
            .open
            .partition_point(|&i| self.shards[i].start <= hash_key);
        // `position` ≥ 1 since the first open shard starts at 0.
        &self.shards[self.open[position.saturating_sub(1)]]
    }

    /// The group storing shard `index`, if the shard is listed.
    pub fn group_of_shard(&self, index: u32) -> Option<usize> {
        self.shards
            .binary_search_by_key(&index, |s| s.index)
            .ok()
            .map(|i| self.shards[i].group)
    }
}

/// The file's form of [`GroupedRoute`], before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupedRoute {
    groups: Vec<String>,
    shards: Vec<ShardRoute>,
}

impl TryFrom<RawGroupedRoute> for GroupedRoute {
    type Error = String;

    fn try_from(raw: RawGroupedRoute) -> Result<GroupedRoute, String> {
        GroupedRoute::new(raw.groups, raw.shards)
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

    /// Re-reads the file now (rather than at the next periodic check) and returns the table in
    /// force afterwards. A malformed file keeps the previous table and is logged.
    pub fn refresh(&self) -> Arc<RouteTable> {
        match read(&self.path) {
            Ok(table) => {
                if *self.current() != table {
                    tracing::info!(streams = table.streams.len(), "routes changed");
                    *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
                }
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "keeping the previous routes");
            }
        }
        self.current()
    }

    /// Re-reads the file periodically for as long as the returned task runs.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let routes = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                interval.tick().await;
                routes.refresh();
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
pub(crate) mod tests {
    use super::*;
    use crate::streams::hash_key::HashRange;

    const HALF: &str = "170141183460469231731687303715884105727";
    const HALF_NEXT: &str = "170141183460469231731687303715884105728";
    const TOP: &str = "340282366920938463463374607431768211455";

    /// A stream resharded from two shards to four: closed halves 0 (group 0) and 1 (group 1),
    /// open quarters 2 and 3 in group 0, 4 and 5 in group 1.
    pub(crate) fn spread_route() -> GroupedRoute {
        let quarters = HashRange::divide_evenly(4);
        let halves = HashRange::divide_evenly(2);
        let mut shards = vec![
            ShardRoute {
                index: 0,
                start: halves[0].start,
                end: halves[0].end,
                group: 0,
                open: false,
            },
            ShardRoute {
                index: 1,
                start: halves[1].start,
                end: halves[1].end,
                group: 1,
                open: false,
            },
        ];
        for (i, quarter) in quarters.iter().enumerate() {
            shards.push(ShardRoute {
                index: 2 + i as u32,
                start: quarter.start,
                end: quarter.end,
                group: i / 2,
                open: true,
            });
        }
        GroupedRoute::new(vec!["http://g0".into(), "http://g1".into()], shards).unwrap()
    }

    #[test]
    fn parses_the_operator_format() {
        let table = RouteTable::parse(
            br#"{"streams":{"orders":"http://orders-g0.shop.svc:4567"},"admin":"http://op:4570"}"#,
        )
        .unwrap();
        assert_eq!(
            table.streams.get("orders"),
            Some(&StreamRoute::Single(
                "http://orders-g0.shop.svc:4567".into()
            ))
        );
        assert_eq!(
            table.streams["orders"].first(),
            "http://orders-g0.shop.svc:4567"
        );
        assert!(table.streams["orders"].spread().is_none());
        assert_eq!(table.admin.as_deref(), Some("http://op:4570"));
        assert_eq!(RouteTable::parse(b"{}").unwrap(), RouteTable::default());
        assert!(RouteTable::parse(b"{\"streams\": 3}").is_err());
    }

    #[test]
    fn parses_streams_spread_over_groups() {
        let text = format!(
            r#"{{"streams": {{
                "small": "http://small-g0:4567",
                "orders": {{"groups": ["http://orders-g0:4567", "http://orders-g1:4567"],
                           "shards": [{{"index": 1, "start": "{HALF_NEXT}", "end": "{TOP}", "group": 1, "open": true}},
                                      {{"index": 0, "start": "0", "end": "{HALF}", "group": 0, "open": true}}]}}}}}}"#
        );
        let table = RouteTable::parse(text.as_bytes()).unwrap();
        assert_eq!(table.streams["small"].groups(), ["http://small-g0:4567"]);
        let orders = &table.streams["orders"];
        assert_eq!(orders.first(), "http://orders-g0:4567");
        let spread = orders.spread().unwrap();
        assert_eq!(spread.shards[0].index, 0, "shards are kept in index order");
        assert_eq!(spread.group_of_shard(1), Some(1));
        assert_eq!(spread.group_of_shard(7), None);
        assert_eq!(spread.shard_for_key(0).index, 0);
        assert_eq!(spread.shard_for_key(u128::MAX).index, 1);
        assert_eq!(spread.shard_for_key(u128::MAX / 2).index, 0);
        assert_eq!(spread.shard_for_key(u128::MAX / 2 + 1).index, 1);
        // A one-group object behaves like the plain form.
        let one = RouteTable::parse(
            format!(
                r#"{{"streams":{{"s":{{"groups":["http://a"],"shards":[{{"index":0,"start":"0","end":"{TOP}","group":0,"open":true}}]}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(one.streams["s"].spread().is_none());
        assert_eq!(one.streams["s"].first(), "http://a");
    }

    #[test]
    fn rejects_inconsistent_placements() {
        let shard = |index: u32, start: &str, end: &str, group: usize, open: bool| {
            format!(
                r#"{{"index":{index},"start":"{start}","end":"{end}","group":{group},"open":{open}}}"#
            )
        };
        let table = |groups: &str, shards: Vec<String>| {
            format!(
                r#"{{"streams":{{"s":{{"groups":{groups},"shards":[{}]}}}}}}"#,
                shards.join(",")
            )
        };
        let two = r#"["http://a","http://b"]"#;
        let cases = [
            // group out of range
            table(
                two,
                vec![
                    shard(0, "0", HALF, 0, true),
                    shard(1, HALF_NEXT, TOP, 2, true),
                ],
            ),
            // a gap in the key space
            table(
                two,
                vec![shard(0, "0", "5", 0, true), shard(1, HALF_NEXT, TOP, 1, true)],
            ),
            // overlapping open shards
            table(
                two,
                vec![shard(0, "0", TOP, 0, true), shard(1, HALF_NEXT, TOP, 1, true)],
            ),
            // the space is not covered to its end
            table(two, vec![shard(0, "0", HALF, 0, true)]),
            // no groups
            table("[]", vec![shard(0, "0", TOP, 0, true)]),
            // a hash key that is not a u128
            table(two, vec![shard(0, "0", "340282366920938463463374607431768211456", 0, true)]),
            // a repeated index
            table(
                two,
                vec![shard(0, "0", HALF, 0, true), shard(0, HALF_NEXT, TOP, 1, true)],
            ),
            // a number where a string is expected, and garbage
            r#"{"streams":{"s":{"groups":["http://a"],"shards":[{"index":0,"start":0,"end":"1","group":0,"open":true}]}}}"#.to_string(),
            r#"{"streams":{"s":7}}"#.to_string(),
            r#"{"streams":{"s":{"groups":"http://a"}}}"#.to_string(),
        ];
        for case in cases {
            assert!(
                RouteTable::parse(case.as_bytes()).is_err(),
                "accepted {case}"
            );
        }
        // Closed shards may overlap the open ones: they are the stream's history.
        let closed = table(
            two,
            vec![
                shard(0, "0", TOP, 0, false),
                shard(1, "0", HALF, 0, true),
                shard(2, HALF_NEXT, TOP, 1, true),
            ],
        );
        let parsed = RouteTable::parse(closed.as_bytes()).unwrap();
        let spread = parsed.streams["s"].spread().unwrap();
        assert_eq!(spread.shard_for_key(u128::MAX).index, 2);
        assert_eq!(spread.group_of_shard(0), Some(0));
    }

    #[test]
    fn hash_keys_find_their_shard_and_group() {
        let route = spread_route();
        let quarters = HashRange::divide_evenly(4);
        for (i, quarter) in quarters.iter().enumerate() {
            for key in [
                quarter.start,
                quarter.end,
                quarter.start / 2 + quarter.end / 2,
            ] {
                let shard = route.shard_for_key(key);
                assert_eq!(shard.index, 2 + i as u32, "key {key}");
                assert_eq!(shard.group, i / 2);
            }
        }
        assert_eq!(
            route.group_of_shard(1),
            Some(1),
            "closed shards keep their group"
        );
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
        // A refresh sees a change at once; a malformed file keeps the table in force.
        std::fs::write(&path, br#"{"streams":{"b":"http://y:1"}}"#).unwrap();
        assert!(routes.refresh().streams.contains_key("b"));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(routes.refresh().streams.contains_key("b"));
    }
}
