//! Who leads each replicated shard group, and how its replicas stand, as the replicas report it.
//!
//! Every replica of a replicated group serves its raft status as `riffle_replica_*` gauges on its
//! Kinesis API port's `/metrics`. The operator asks each ready replica and condenses the answers
//! into the stream's `status.groups`: the leader's pod and term, and per replica its role,
//! readiness and whether it is caught up. Log positions are compared but never recorded, so the
//! result changes only when leadership or membership does, never because records were written.
//!
//! Reading and condensing are pure ([`parse_report`], [`group_status`]) and tested on fixtures;
//! [`observe`] only makes the calls.

use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client as HttpClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use kube::Client;

use crate::crd::{GroupStatus, ReplicaRole, ReplicaStatus};
use crate::stream::dereference::{self, DereferenceError};
use crate::stream::naming::{HTTP_PORT, StreamNames};

/// How long asking one replica for its status may take; a replica that does not answer in time
/// is reported as `Unknown` for this pass.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/metrics` answer read (a group hosting many shards reports a series per shard).
const MAX_METRICS_BYTES: usize = 8 << 20;
/// A follower that has applied all but at most this many of the entries its leader has applied
/// is caught up. Replicas are asked one after another within milliseconds, while a busy group
/// applies a few entries per millisecond at most, so a follower that keeps up stays well inside
/// this, and one that needs a snapshot (5 000 entries behind or more) is well outside it.
pub const CAUGHT_UP_ENTRIES: u64 = 1_000;

/// What one replica says of itself (its `riffle_replica_*` gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Whether it leads its group.
    pub is_leader: bool,
    /// Its current raft term.
    pub term: u64,
    /// The replica id it knows as leader (its pod's ordinal plus one), if any.
    pub leader: Option<u64>,
    /// Index of the last entry applied to its streams.
    pub applied: u64,
    /// Its raft role, as `riffle_replica_role` names it (replicas that do not report it are
    /// given a role from the other gauges).
    pub role: Option<ReplicaRole>,
}

/// Reads a replica's report from its `/metrics` text, or `None` if the text lacks one of the
/// gauges (a pod of a group that is not replicated, or another program).
pub fn parse_report(text: &str) -> Option<ReplicaReport> {
    let gauge = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            // The name must end here: `riffle_replica_leader` is a prefix of no other gauge
            // today, but a label set or a space must follow all the same.
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None if rest.starts_with(' ') => rest,
                None => return None,
            };
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let role = text.lines().find_map(|line| {
        let labels = line.strip_prefix("riffle_replica_role{")?;
        let (labels, value) = labels.split_once('}')?;
        if value.trim() != "1" {
            return None;
        }
        let role = labels.split(',').find_map(|l| l.strip_prefix("role="))?;
        Some(match role.trim_matches('"') {
            "leader" => ReplicaRole::Leader,
            "follower" => ReplicaRole::Follower,
            "candidate" => ReplicaRole::Candidate,
            "learner" => ReplicaRole::Learner,
            _ => ReplicaRole::Unknown,
        })
    });
    Some(ReplicaReport {
        is_leader: gauge("riffle_replica_is_leader")? == 1,
        term: gauge("riffle_replica_term")?,
        leader: Some(gauge("riffle_replica_leader")?).filter(|&id| id != 0),
        applied: gauge("riffle_replica_applied_index")?,
        role,
    })
}

/// One replica as the operator found it: its pod, whether the pod is ready, and its report
/// (`None` when it is not ready or did not answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// The pod, `{stream}-g{group}-{ordinal}`; index `i` of a group's views is ordinal `i`,
    /// replica id `i + 1`.
    pub pod: String,
    /// Whether the pod passes its readiness probe.
    pub ready: bool,
    /// What the replica reported.
    pub report: Option<ReplicaReport>,
}

/// The status of group `name` from its replicas' views, in ordinal order. The leader is the
/// replica that says it leads in the highest term (a leader cut off from its group can still
/// believe it leads, in the term it was elected in, after the others elected a new one).
pub fn group_status(name: &str, views: &[ReplicaView]) -> GroupStatus {
    let leader = views
        .iter()
        .enumerate()
        .filter_map(|(ordinal, view)| Some((ordinal, view.report?)))
        .filter(|(_, report)| report.is_leader)
        // Highest term first; of equal terms the lowest ordinal, so the choice is stable.
        .min_by_key(|(ordinal, report)| (std::cmp::Reverse(report.term), *ordinal));
    let leader_id = leader.map(|(ordinal, _)| replica_id(ordinal));
    let replicas = views
        .iter()
        .enumerate()
        .map(|(ordinal, view)| {
            let (role, caught_up) = match (view.report, leader) {
                (None, _) => (ReplicaRole::Unknown, false),
                (Some(_), Some((lead, _))) if lead == ordinal => (ReplicaRole::Leader, true),
                // A replica that still believes it leads, in an older term.
                (Some(report), _) if report.is_leader => (ReplicaRole::Leader, false),
                (Some(report), leader) => {
                    let role = match report.role {
                        Some(role) if role != ReplicaRole::Leader => role,
                        _ if report.leader.is_some() => ReplicaRole::Follower,
                        // Knows no leader: standing for election, or about to.
                        _ => ReplicaRole::Candidate,
                    };
                    let caught_up = leader.is_some_and(|(_, lead)| {
                        report.leader == leader_id
                            && report.term == lead.term
                            && lead.applied.saturating_sub(report.applied) <= CAUGHT_UP_ENTRIES
                    });
                    (role, caught_up)
                }
            };
            ReplicaStatus {
                pod: view.pod.clone(),
                role,
                ready: view.ready,
                caught_up,
            }
        })
        .collect();
    GroupStatus {
        name: name.to_owned(),
        leader: leader.map(|(ordinal, _)| views[ordinal].pod.clone()),
        term: leader.map(|(_, report)| i64::try_from(report.term).unwrap_or(i64::MAX)),
        replicas,
    }
}

/// Whether a group's leadership is still changing as far as the operator can tell: no replica
/// it reached leads, or a ready replica does not yet follow that leader caught up. Replicas
/// that are not ready are left out, so a pod that stays down does not keep the group settling.
pub fn is_settling(group: &GroupStatus) -> bool {
    group.leader.is_none()
        || group
            .replicas
            .iter()
            .any(|replica| replica.ready && !replica.caught_up)
}

fn replica_id(ordinal: usize) -> u64 {
    u64::try_from(ordinal).unwrap_or(u64::MAX).saturating_add(1)
}

/// The leadership of each of `groups` (group indexes) of the stream `names`, whose groups run
/// `replicas` pods each, ordered by group name. Only reading the pods can fail; a replica that
/// does not answer is reported as `Unknown`.
pub async fn observe(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
    groups: &[u32],
    replicas: u32,
) -> Result<Vec<GroupStatus>, DereferenceError> {
    let http = http_client();
    let mut statuses = Vec::with_capacity(groups.len());
    for &group in groups {
        let pods = dereference::group_pods(client, namespace, names, group, replicas).await?;
        let reports = join_all(
            pods.iter()
                .map(|(_, ip)| async { ask(&http, (*ip)?).await }),
        )
        .await;
        let views: Vec<ReplicaView> = pods
            .into_iter()
            .zip(reports)
            .map(|((pod, ip), report)| ReplicaView {
                pod,
                ready: ip.is_some(),
                report,
            })
            .collect();
        statuses.push(group_status(&names.group(group), &views));
    }
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(statuses)
}

/// Asks the replica at `ip` (its Kinesis API port) for its report; `None` if it cannot be
/// reached or read in time.
pub async fn ask_replica(ip: IpAddr) -> Option<ReplicaReport> {
    ask(&http_client(), ip).await
}

fn http_client() -> HttpClient<HttpConnector, Empty<Bytes>> {
    HttpClient::builder(TokioExecutor::new()).build({
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(ASK_TIMEOUT));
        connector.set_nodelay(true);
        connector
    })
}

async fn ask(http: &HttpClient<HttpConnector, Empty<Bytes>>, ip: IpAddr) -> Option<ReplicaReport> {
    let host = match ip {
        IpAddr::V4(v4) => format!("{v4}:{HTTP_PORT}"),
        IpAddr::V6(v6) => format!("[{v6}]:{HTTP_PORT}"),
    };
    let uri: hyper::Uri = format!("http://{host}/metrics").parse().ok()?;
    let exchange = async {
        let response = http.get(uri).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = Limited::new(response.into_body(), MAX_METRICS_BYTES)
            .collect()
            .await
            .ok()?
            .to_bytes();
        parse_report(std::str::from_utf8(&body).ok()?)
    };
    match tokio::time::timeout(ASK_TIMEOUT, exchange).await {
        Ok(report) => report,
        Err(_) => {
            tracing::debug!(%ip, "a replica did not report its status in time");
            None
        }
    }
}

/// A leader change between two statuses of the same stream: the group, and its new leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    /// The group's StatefulSet.
    pub group: String,
    /// The pod now leading it, or `None` if no replica does.
    pub leader: Option<String>,
    /// The new leader's term.
    pub term: Option<i64>,
}

/// The groups of `new` whose leader differs from the one `old` names. A group seen for the
/// first time counts once it has a leader (its first election).
pub fn leader_changes(old: &[GroupStatus], new: &[GroupStatus]) -> Vec<LeaderChange> {
    new.iter()
        .filter(|group| {
            let before = old.iter().find(|o| o.name == group.name);
            match before {
                Some(before) => before.leader != group.leader || before.term != group.term,
                None => group.leader.is_some(),
            }
        })
        .map(|group| LeaderChange {
            group: group.name.clone(),
            leader: group.leader.clone(),
            term: group.term,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `/metrics` text of a replica, as the data plane renders it, after some other series.
    fn metrics(id: u64, is_leader: bool, term: u64, leader: u64, applied: u64) -> String {
        format!(
            "# HELP riffle_incoming_records_total Records accepted.\n\
             # TYPE riffle_incoming_records_total counter\n\
             riffle_incoming_records_total{{stream=\"orders\",shard=\"shardId-000000000000\"}} 12\n\
             # HELP riffle_replica_is_leader Whether this replica leads its shard group (1) or not (0).\n\
             # TYPE riffle_replica_is_leader gauge\n\
             riffle_replica_is_leader{{replica=\"{id}\"}} {}\n\
             # TYPE riffle_replica_term gauge\n\
             riffle_replica_term{{replica=\"{id}\"}} {term}\n\
             # TYPE riffle_replica_leader gauge\n\
             riffle_replica_leader{{replica=\"{id}\"}} {leader}\n\
             # TYPE riffle_replica_last_log_index gauge\n\
             riffle_replica_last_log_index{{replica=\"{id}\"}} {}\n\
             # TYPE riffle_replica_applied_index gauge\n\
             riffle_replica_applied_index{{replica=\"{id}\"}} {applied}\n",
            u64::from(is_leader),
            applied + 3,
        )
    }

    fn view(ordinal: u32, report: Option<ReplicaReport>) -> ReplicaView {
        ReplicaView {
            pod: format!("orders-g0-{ordinal}"),
            ready: report.is_some(),
            report,
        }
    }

    fn leader(term: u64, applied: u64) -> Option<ReplicaReport> {
        Some(ReplicaReport {
            is_leader: true,
            term,
            leader: None,
            applied,
            role: None,
        })
    }

    fn follower(term: u64, leader: u64, applied: u64) -> Option<ReplicaReport> {
        Some(ReplicaReport {
            is_leader: false,
            term,
            leader: Some(leader),
            applied,
            role: None,
        })
    }

    fn candidate(term: u64, applied: u64) -> Option<ReplicaReport> {
        Some(ReplicaReport {
            is_leader: false,
            term,
            leader: None,
            applied,
            role: None,
        })
    }

    fn roles(status: &GroupStatus) -> Vec<(ReplicaRole, bool, bool)> {
        status
            .replicas
            .iter()
            .map(|r| (r.role, r.ready, r.caught_up))
            .collect()
    }

    #[test]
    fn the_role_a_replica_reports_is_taken_as_it_is() {
        let text = format!(
            "{}riffle_replica_role{{replica=\"3\",role=\"learner\"}} 1\n",
            metrics(3, false, 7, 2, 1_230)
        );
        let learner = parse_report(&text).expect("report");
        assert_eq!(learner.role, Some(ReplicaRole::Learner));
        let status = group_status(
            "orders-g0",
            &[
                view(0, follower(7, 2, 1_234)),
                view(1, leader(7, 1_234)),
                view(2, Some(learner)),
            ],
        );
        assert_eq!(status.replicas[2].role, ReplicaRole::Learner);
        // Without the gauge, a replica that knows its leader is taken for a follower.
        assert_eq!(status.replicas[0].role, ReplicaRole::Follower);
    }

    #[test]
    fn a_replica_report_is_read_from_its_metrics() {
        assert_eq!(
            parse_report(&metrics(2, true, 7, 2, 1_234)),
            Some(ReplicaReport {
                is_leader: true,
                term: 7,
                leader: Some(2),
                applied: 1_234,
                role: None,
            })
        );
        let no_leader = parse_report(&metrics(1, false, 3, 0, 0)).expect("report");
        assert_eq!(no_leader.leader, None);
        assert!(!no_leader.is_leader);
        // A pod of a group of one has no replica series.
        assert_eq!(
            parse_report("riffle_incoming_records_total{stream=\"orders\"} 1\n"),
            None
        );
        // Prefixes of a gauge's name are other series.
        assert_eq!(
            parse_report(
                "riffle_replica_is_leader_x 1\nriffle_replica_is_leader 0\nriffle_replica_term 2\n\
                 riffle_replica_leader 1\nriffle_replica_applied_index 9\n"
            ),
            Some(ReplicaReport {
                is_leader: false,
                term: 2,
                leader: Some(1),
                applied: 9,
                role: None,
            })
        );
    }

    #[test]
    fn a_healthy_group_names_its_leader_and_caught_up_followers() {
        let status = group_status(
            "orders-g0",
            &[
                view(0, follower(4, 2, 990)),
                view(1, leader(4, 1_000)),
                view(2, follower(4, 2, 1_000)),
            ],
        );
        assert_eq!(status.name, "orders-g0");
        assert_eq!(status.leader.as_deref(), Some("orders-g0-1"));
        assert_eq!(status.term, Some(4));
        assert_eq!(
            roles(&status),
            [
                (ReplicaRole::Follower, true, true),
                (ReplicaRole::Leader, true, true),
                (ReplicaRole::Follower, true, true),
            ]
        );
        assert_eq!(status.replicas[2].pod, "orders-g0-2");
    }

    #[test]
    fn a_group_settles_once_every_ready_replica_follows_its_leader_caught_up() {
        let settled = group_status(
            "orders-g0",
            &[
                view(0, leader(3, 500)),
                view(1, follower(3, 1, 500)),
                // Down: left out.
                view(2, None),
            ],
        );
        assert!(!is_settling(&settled));
        let leaderless = group_status(
            "orders-g0",
            &[view(0, candidate(3, 500)), view(1, candidate(3, 500))],
        );
        assert!(is_settling(&leaderless));
        let catching_up = group_status(
            "orders-g0",
            &[
                view(0, leader(3, 50_000)),
                view(1, follower(3, 1, 10)),
                view(2, follower(3, 1, 50_000)),
            ],
        );
        assert!(is_settling(&catching_up));
        let electing_elsewhere = group_status(
            "orders-g0",
            &[
                view(0, leader(3, 500)),
                view(1, follower(3, 1, 500)),
                view(2, candidate(4, 500)),
            ],
        );
        assert!(is_settling(&electing_elsewhere));
    }

    #[test]
    fn log_positions_move_without_changing_the_status() {
        let before = group_status(
            "orders-g0",
            &[
                view(0, leader(4, 1_000)),
                view(1, follower(4, 1, 998)),
                view(2, follower(4, 1, 1_000)),
            ],
        );
        let after = group_status(
            "orders-g0",
            &[
                view(0, leader(4, 90_000)),
                view(1, follower(4, 1, 89_500)),
                view(2, follower(4, 1, 90_000)),
            ],
        );
        assert_eq!(before, after);
    }

    #[test]
    fn a_follower_far_behind_or_following_another_leader_is_not_caught_up() {
        let status = group_status(
            "orders-g0",
            &[
                view(0, leader(5, 50_000)),
                view(1, follower(5, 1, 50_000 - CAUGHT_UP_ENTRIES - 1)),
                // Still following the leader of the term before.
                view(2, follower(4, 2, 50_000)),
            ],
        );
        assert_eq!(
            roles(&status),
            [
                (ReplicaRole::Leader, true, true),
                (ReplicaRole::Follower, true, false),
                (ReplicaRole::Follower, true, false),
            ]
        );
    }

    #[test]
    fn the_leader_of_the_highest_term_leads_a_partitioned_group() {
        // Replica 1 was cut off from the others, who elected replica 3 in term 6; replica 1
        // still believes it leads, in term 5.
        let status = group_status(
            "orders-g0",
            &[
                view(0, leader(5, 700)),
                view(1, follower(6, 3, 800)),
                view(2, leader(6, 800)),
            ],
        );
        assert_eq!(status.leader.as_deref(), Some("orders-g0-2"));
        assert_eq!(status.term, Some(6));
        assert_eq!(
            roles(&status),
            [
                (ReplicaRole::Leader, true, false),
                (ReplicaRole::Follower, true, true),
                (ReplicaRole::Leader, true, true),
            ]
        );
    }

    #[test]
    fn a_group_without_a_leader_says_so() {
        // Replica 1 stands for election in `term`; replica 2 is ready but does not answer.
        let leaderless = |term| {
            group_status(
                "orders-g0",
                &[
                    view(0, None),
                    view(1, candidate(term, 10)),
                    ReplicaView {
                        pod: "orders-g0-2".into(),
                        ready: true,
                        report: None,
                    },
                ],
            )
        };
        let status = leaderless(9);
        assert_eq!(status.leader, None);
        assert_eq!(status.term, None);
        assert_eq!(
            roles(&status),
            [
                (ReplicaRole::Unknown, false, false),
                (ReplicaRole::Candidate, true, false),
                (ReplicaRole::Unknown, true, false),
            ]
        );
        // A candidate whose term grows with every election it stands in changes nothing.
        assert_eq!(status, leaderless(15));
    }

    #[test]
    fn leader_changes_name_the_group_and_its_new_leader() {
        let elected = group_status(
            "orders-g0",
            &[
                view(0, leader(2, 10)),
                view(1, follower(2, 1, 10)),
                view(2, None),
            ],
        );
        assert_eq!(
            leader_changes(&[], std::slice::from_ref(&elected)),
            [LeaderChange {
                group: "orders-g0".into(),
                leader: Some("orders-g0-0".into()),
                term: Some(2),
            }]
        );
        assert!(
            leader_changes(
                std::slice::from_ref(&elected),
                std::slice::from_ref(&elected)
            )
            .is_empty()
        );
        let lost = group_status("orders-g0", &[view(0, None), view(1, None), view(2, None)]);
        assert!(leader_changes(&[], std::slice::from_ref(&lost)).is_empty());
        let changes = leader_changes(std::slice::from_ref(&elected), std::slice::from_ref(&lost));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].leader, None);
    }
}
