//! The status of a stream, computed only from what the operator applied and observed.
//!
//! The status is a deterministic function of its inputs: the same stream, outcome and previous
//! status always give byte-identical output, whatever the clock says. The clock is read only when
//! a condition changes its `status`, so an unchanged stream never rewrites its status and never
//! wakes its own controller.

use kube::ResourceExt;

use crate::crd::{Condition, ConditionStatus, ConditionType, GroupStatus, Stream, StreamStatus};
use crate::settings::Settings;
use crate::stream::build::StreamPlan;
use crate::stream::data_plane::Observed;
use crate::stream::naming::GatewayNames;
use crate::stream::validate::Problems;

/// What the operator saw of one shard group's StatefulSet after applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// StatefulSet name.
    pub name: String,
    /// Replicas asked for.
    pub replicas: i32,
    /// Replicas passing their readiness probe.
    pub ready: i32,
    /// Replicas running the current pod template.
    pub updated: i32,
    /// Whether the StatefulSet controller has seen the latest spec.
    pub observed: bool,
}

impl GroupState {
    fn is_ready(&self) -> bool {
        self.observed && self.ready >= self.replicas && self.updated >= self.replicas
    }
}

/// What the operator learnt of the stream inside its shard group.
#[derive(Debug, Clone, Copy)]
pub enum DataPlaneView<'a> {
    /// The group has no ready pod to ask yet.
    Waiting,
    /// The group serves the stream as described (after this pass's changes).
    Serving(&'a Observed),
    /// Asking or changing the data plane failed; retried with backoff.
    Failed(&'a str),
}

/// How the last reconciliation ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Everything in `plan` was applied; `groups` is what was observed, in group order.
    Applied {
        /// The applied plan.
        plan: &'a StreamPlan,
        /// Observed shard groups.
        groups: &'a [GroupState],
        /// The stream as the data plane reports it.
        data_plane: DataPlaneView<'a>,
        /// Leadership of each replicated shard group, ordered by name (empty for a stream
        /// whose groups are not replicated).
        leadership: &'a [GroupStatus],
    },
    /// The spec has problems; nothing was applied.
    Invalid(&'a Problems),
    /// Applying failed; the error is retried with backoff.
    Failed {
        /// CamelCase reason, such as `ApplyFailed`.
        reason: &'a str,
        /// The error, without anything that changes between attempts.
        message: &'a str,
    },
}

/// A condition's content before its transition time is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    status: ConditionStatus,
    reason: String,
    message: String,
}

fn verdict(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Verdict {
    Verdict {
        status,
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// Computes the status of `stream` after `outcome`. `now` (RFC 3339) is used only as the
/// transition time of conditions whose `status` changed from the previous status.
pub fn compute(
    stream: &Stream,
    settings: &Settings,
    outcome: Outcome<'_>,
    now: &str,
) -> StreamStatus {
    let previous = stream.status.clone().unwrap_or_default();
    let generation = stream.metadata.generation;
    let [ready, progressing, degraded] = verdicts(&previous, outcome);
    let (open_shard_count, shards) = match outcome {
        // Shards are what the data plane reports, never what the operator expects.
        Outcome::Applied {
            data_plane: DataPlaneView::Serving(observed),
            ..
        } => (
            Some(i32::try_from(observed.open_shards()).unwrap_or(i32::MAX)),
            observed.layout.to_status(),
        ),
        // Nothing new was observed: the shards are still what was last reported.
        _ => (previous.open_shard_count, previous.shards.clone()),
    };
    let groups = match outcome {
        Outcome::Applied { leadership, .. } => leadership.to_vec(),
        // Nothing was asked: leadership is still what was last reported.
        _ => previous.groups.clone(),
    };
    let conditions = ConditionType::ALL
        .into_iter()
        .zip([ready, progressing, degraded])
        .map(|(type_, v)| settle(&previous, type_, v, generation, now))
        .collect();
    StreamStatus {
        observed_generation: generation,
        conditions,
        endpoint: Some(GatewayNames::new(&settings.namespace).endpoint()),
        stream_arn: Some(settings.stream_arn(&stream.name_any())),
        open_shard_count,
        shards,
        groups,
    }
}

fn verdicts(previous: &StreamStatus, outcome: Outcome<'_>) -> [Verdict; 3] {
    match outcome {
        Outcome::Applied {
            plan,
            groups,
            data_plane,
            ..
        } => {
            let mut waiting: Vec<&GroupState> = groups.iter().filter(|g| !g.is_ready()).collect();
            waiting.sort_by(|a, b| a.name.cmp(&b.name));
            let waiting_text = waiting
                .iter()
                .map(|g| format!("{} ({}/{} ready)", g.name, g.ready.max(0), g.replicas))
                .collect::<Vec<_>>()
                .join(", ");
            let mut group_names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            group_names.sort_unstable();
            let ready = match data_plane {
                DataPlaneView::Failed(message) => {
                    verdict(ConditionStatus::False, "DataPlaneUnavailable", message)
                }
                _ if !waiting.is_empty() => verdict(
                    ConditionStatus::False,
                    "GroupsNotReady",
                    format!("waiting for shard groups: {waiting_text}"),
                ),
                DataPlaneView::Waiting => verdict(
                    ConditionStatus::False,
                    "GroupsNotReady",
                    "waiting for the shard group's pod to become ready",
                ),
                DataPlaneView::Serving(_) => verdict(
                    ConditionStatus::True,
                    "Serving",
                    format!("served by shard group {}", group_names.join(", ")),
                ),
            };
            let progressing = match data_plane {
                DataPlaneView::Failed(_) => {
                    verdict(ConditionStatus::True, "DataPlaneUnavailable", "retrying")
                }
                _ if !waiting.is_empty() => verdict(
                    ConditionStatus::True,
                    "RollingOut",
                    format!("waiting for shard groups: {waiting_text}"),
                ),
                DataPlaneView::Waiting => verdict(
                    ConditionStatus::True,
                    "RollingOut",
                    "waiting for the shard group's pod to become ready",
                ),
                DataPlaneView::Serving(observed)
                    if plan.requested_shards != observed.open_shards() =>
                {
                    resharding(observed.open_shards(), plan.requested_shards)
                }
                DataPlaneView::Serving(_) => verdict(
                    ConditionStatus::False,
                    "Reconciled",
                    "the stream matches its spec",
                ),
            };
            let degraded = match data_plane {
                DataPlaneView::Failed(message) => {
                    verdict(ConditionStatus::True, "DataPlaneUnavailable", message)
                }
                _ => verdict(ConditionStatus::False, "AsExpected", ""),
            };
            [ready, progressing, degraded]
        }
        Outcome::Invalid(problems) => {
            let reason = problems.reason();
            let ready = if has_condition(previous, ConditionType::Ready) {
                carried_ready(previous)
            } else {
                // Never created: say why, rather than that nothing was observed.
                verdict(ConditionStatus::False, reason, problems.to_string())
            };
            [
                ready,
                verdict(
                    ConditionStatus::False,
                    reason,
                    "the spec must be fixed before the stream can change",
                ),
                verdict(ConditionStatus::True, reason, problems.to_string()),
            ]
        }
        Outcome::Failed { reason, message } => [
            carried_ready(previous),
            verdict(ConditionStatus::True, reason, "retrying"),
            verdict(ConditionStatus::True, reason, message),
        ],
    }
}

fn resharding(from: u32, to: u32) -> Verdict {
    verdict(
        ConditionStatus::True,
        "Resharding",
        format!("{from} \u{2192} {to} shards"),
    )
}

fn has_condition(status: &StreamStatus, type_: ConditionType) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_)
}

/// The stored status with `Progressing` set to a reshard from `from` to `to` open shards, written
/// before the data plane is asked to reshard, so the reshard in flight is visible (the data plane
/// stays the source of truth: a restarted operator describes the stream again).
pub fn resharding_status(stream: &Stream, from: u32, to: u32, now: &str) -> StreamStatus {
    let previous = stream.status.clone().unwrap_or_default();
    let generation = stream.metadata.generation;
    let conditions = ConditionType::ALL
        .into_iter()
        .map(|type_| {
            let v = if type_ == ConditionType::Progressing {
                resharding(from, to)
            } else {
                previous
                    .conditions
                    .iter()
                    .find(|c| c.type_ == type_)
                    .map(|c| verdict(c.status, &c.reason, c.message.clone()))
                    .unwrap_or_else(|| verdict(ConditionStatus::Unknown, "NotObserved", ""))
            };
            settle(&previous, type_, v, generation, now)
        })
        .collect();
    StreamStatus {
        observed_generation: generation,
        conditions,
        ..previous
    }
}

/// When nothing was observed, readiness stays what was last observed.
fn carried_ready(previous: &StreamStatus) -> Verdict {
    previous
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready)
        .map(|c| verdict(c.status, &c.reason, c.message.clone()))
        .unwrap_or_else(|| verdict(ConditionStatus::Unknown, "NotObserved", ""))
}

fn settle(
    previous: &StreamStatus,
    type_: ConditionType,
    v: Verdict,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == v.status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_owned());
    Condition {
        type_,
        status: v.status,
        reason: v.reason,
        message: v.message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// A condition whose status or reason changed, worth a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The condition.
    pub type_: ConditionType,
    /// Its new status.
    pub status: ConditionStatus,
    /// Its new reason.
    pub reason: String,
    /// Its new message.
    pub message: String,
}

impl Transition {
    /// Whether the transition is bad news (`Warning` rather than `Normal`).
    pub fn is_warning(&self) -> bool {
        matches!(
            (self.type_, self.status),
            (ConditionType::Degraded, ConditionStatus::True)
                | (ConditionType::Ready, ConditionStatus::False)
        )
    }
}

/// The conditions of `new` whose status or reason differ from `old`, in condition order. A
/// first `Degraded=False` is not news and is left out.
pub fn transitions(old: Option<&StreamStatus>, new: &StreamStatus) -> Vec<Transition> {
    new.conditions
        .iter()
        .filter(|c| {
            let before = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
            match before {
                Some(p) => p.status != c.status || p.reason != c.reason,
                None => !(c.type_ == ConditionType::Degraded && c.status == ConditionStatus::False),
            }
        })
        .map(|c| Transition {
            type_: c.type_,
            status: c.status,
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::build::plan;
    use crate::stream::shards::ShardLayout;
    use crate::stream::validate::{Problem, validate};

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:05:00Z";

    fn planned(stream: &Stream) -> StreamPlan {
        let valid = validate(stream, &[]).expect("valid");
        plan(stream, &valid, None)
    }

    fn group(name: &str, ready: i32) -> GroupState {
        GroupState {
            name: name.into(),
            replicas: 1,
            ready,
            updated: 1,
            observed: true,
        }
    }

    fn serving(open: u32) -> Observed {
        Observed {
            layout: ShardLayout::initial(open, 8),
            retention_hours: 24,
            mode: "PROVISIONED".into(),
            max_record_size_kib: 1024,
            reshard_count: 0,
        }
    }

    fn applied<'a>(
        plan: &'a StreamPlan,
        groups: &'a [GroupState],
        data_plane: DataPlaneView<'a>,
    ) -> Outcome<'a> {
        Outcome::Applied {
            plan,
            groups,
            data_plane,
            leadership: &[],
        }
    }

    fn condition(status: &StreamStatus, type_: ConditionType) -> &Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn a_served_stream_reports_every_field() {
        let stream = Stream::test().with_replication(1);
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let observed = serving(4);
        let status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.open_shard_count, Some(4));
        assert_eq!(status.shards.len(), 4);
        assert_eq!(
            status.endpoint.as_deref(),
            Some("http://riffle-gateway.riffle-system.svc:4567")
        );
        assert_eq!(
            status.stream_arn.as_deref(),
            Some("arn:aws:kinesis:us-east-1:000000000000:stream/orders")
        );
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_).collect();
        assert_eq!(types, ConditionType::ALL);
        let ready = condition(&status, ConditionType::Ready);
        assert_eq!(
            (ready.status, ready.reason.as_str(), ready.message.as_str()),
            (
                ConditionStatus::True,
                "Serving",
                "served by shard group orders-g0"
            )
        );
        assert_eq!(
            condition(&status, ConditionType::Progressing).status,
            ConditionStatus::False
        );
        assert_eq!(
            condition(&status, ConditionType::Degraded).status,
            ConditionStatus::False
        );
    }

    #[test]
    fn shards_are_what_the_data_plane_reports() {
        let stream = Stream::test().with_shards(4);
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let before = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Waiting),
            T1,
        );
        assert_eq!(before.open_shard_count, None, "nothing reported yet");
        assert!(before.shards.is_empty());
        let observed = serving(2);
        let after = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        assert_eq!(after.open_shard_count, Some(2));
        // A pass that cannot ask the data plane keeps what it last reported.
        let again = compute(
            &stream.clone().with_status(after.clone()),
            &Settings::test(),
            applied(&p, &[group("orders-g0", 0)], DataPlaneView::Waiting),
            T2,
        );
        assert_eq!(again.open_shard_count, Some(2));
        assert_eq!(again.shards, after.shards);
    }

    #[test]
    fn a_replicated_stream_serving_its_spec_is_not_degraded() {
        let stream = Stream::test().with_shards(4).with_replication(3);
        let p = planned(&stream);
        assert_eq!(p.replicas, 3);
        let groups = [group("orders-g0", 3)];
        let observed = serving(4);
        let status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        let degraded = condition(&status, ConditionType::Degraded);
        assert_eq!(degraded.status, ConditionStatus::False);
        assert_eq!(degraded.reason, "AsExpected");
        assert_eq!(
            condition(&status, ConditionType::Ready).status,
            ConditionStatus::True
        );
        assert_eq!(
            condition(&status, ConditionType::Progressing).reason,
            "Reconciled"
        );
    }

    fn replicated_group(leader: u32, term: u64, applied: u64) -> GroupStatus {
        use crate::stream::leadership::{ReplicaReport, ReplicaView, group_status};
        let views: Vec<ReplicaView> = (0..3)
            .map(|ordinal| ReplicaView {
                pod: format!("orders-g0-{ordinal}"),
                ready: true,
                report: Some(ReplicaReport {
                    is_leader: ordinal == leader,
                    term,
                    leader: Some(u64::from(leader) + 1),
                    applied: applied - u64::from(ordinal),
                    role: None,
                }),
            })
            .collect();
        group_status("orders-g0", &views)
    }

    #[test]
    fn a_replicated_stream_reports_its_leader_and_replicas() {
        let stream = Stream::test().with_shards(4).with_replication(3);
        let p = planned(&stream);
        let groups = [group("orders-g0", 3)];
        let observed = serving(4);
        let leadership = [replicated_group(1, 3, 500)];
        let status = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
                data_plane: DataPlaneView::Serving(&observed),
                leadership: &leadership,
            },
            T1,
        );
        assert_eq!(status.groups.len(), 1);
        let group = &status.groups[0];
        assert_eq!(group.leader.as_deref(), Some("orders-g0-1"));
        assert_eq!(group.term, Some(3));
        let pods: Vec<_> = group.replicas.iter().map(|r| r.pod.as_str()).collect();
        assert_eq!(pods, ["orders-g0-0", "orders-g0-1", "orders-g0-2"]);
        assert!(group.replicas.iter().all(|r| r.ready && r.caught_up));
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["groups"][0]["leader"], "orders-g0-1");
        assert_eq!(json["groups"][0]["replicas"][1]["role"], "Leader");
        assert_eq!(json["groups"][0]["replicas"][0]["caughtUp"], true);
    }

    #[test]
    fn writes_do_not_rewrite_a_replicated_stream_s_status_but_a_new_leader_does() {
        let stream = Stream::test().with_shards(4).with_replication(3);
        let p = planned(&stream);
        let groups = [group("orders-g0", 3)];
        let observed = serving(4);
        let pass = |stream: &Stream, leadership: &[GroupStatus], now: &str| {
            compute(
                stream,
                &Settings::test(),
                Outcome::Applied {
                    plan: &p,
                    groups: &groups,
                    data_plane: DataPlaneView::Serving(&observed),
                    leadership,
                },
                now,
            )
        };
        let first = pass(&stream, &[replicated_group(0, 2, 100)], T1);
        // Thousands of records later, the same leader in the same term.
        let later = pass(
            &stream.clone().with_status(first.clone()),
            &[replicated_group(0, 2, 90_100)],
            T2,
        );
        assert_eq!(
            serde_json::to_string(&first).expect("json"),
            serde_json::to_string(&later).expect("json")
        );
        let failed_over = pass(
            &stream.clone().with_status(first.clone()),
            &[replicated_group(2, 3, 90_100)],
            T2,
        );
        assert_ne!(failed_over, first);
        assert_eq!(failed_over.groups[0].leader.as_deref(), Some("orders-g0-2"));
        assert_eq!(
            failed_over.conditions, first.conditions,
            "a failover is not a transition"
        );
        // A pass that could not apply keeps the leadership last reported.
        let failed = compute(
            &stream.clone().with_status(failed_over.clone()),
            &Settings::test(),
            Outcome::Failed {
                reason: "ApplyFailed",
                message: "StatefulSet orders-g0: forbidden",
            },
            T2,
        );
        assert_eq!(failed.groups, failed_over.groups);
    }

    #[test]
    fn a_shard_count_change_on_a_replicated_stream_is_a_reshard() {
        let stream = Stream::test().with_shards(6).with_replication(3);
        let p = planned(&stream);
        let groups = [group("orders-g0", 3)];
        let observed = serving(4);
        let status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        let progressing = condition(&status, ConditionType::Progressing);
        assert_eq!(progressing.status, ConditionStatus::True);
        assert_eq!(progressing.reason, "Resharding");
        assert_eq!(progressing.message, "4 \u{2192} 6 shards");
        assert_eq!(
            condition(&status, ConditionType::Degraded).status,
            ConditionStatus::False
        );
        assert_eq!(status.open_shard_count, Some(4));
    }

    #[test]
    fn status_is_idempotent_and_ignores_the_clock_without_transitions() {
        let stream = Stream::test();
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let observed = serving(4);
        let outcome = applied(&p, &groups, DataPlaneView::Serving(&observed));
        let first = compute(&stream, &Settings::test(), outcome, T1);
        let again = compute(
            &stream.clone().with_status(first.clone()),
            &Settings::test(),
            outcome,
            T2,
        );
        assert_eq!(
            serde_json::to_string(&first).expect("json"),
            serde_json::to_string(&again).expect("json")
        );
    }

    #[test]
    fn waiting_groups_are_listed_in_name_order() {
        let stream = Stream::test().with_shards(10);
        let valid = crate::stream::validate::ValidStream {
            requested_shards: 10,
            shards_per_group: 8,
            replication_factor: 1,
        };
        let p = plan(&stream, &valid, None);
        let groups = [group("orders-g1", 0), group("orders-g0", 0)];
        let status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Waiting),
            T1,
        );
        let ready = condition(&status, ConditionType::Ready);
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(
            ready.message,
            "waiting for shard groups: orders-g0 (0/1 ready), orders-g1 (0/1 ready)"
        );
        assert_eq!(
            condition(&status, ConditionType::Progressing).reason,
            "RollingOut"
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let stream = Stream::test().with_replication(1);
        let p = planned(&stream);
        let not_ready = [group("orders-g0", 0)];
        let first = compute(
            &stream,
            &Settings::test(),
            applied(&p, &not_ready, DataPlaneView::Waiting),
            T1,
        );
        let ready = [group("orders-g0", 1)];
        let observed = serving(4);
        let second = compute(
            &stream.clone().with_status(first.clone()),
            &Settings::test(),
            applied(&p, &ready, DataPlaneView::Serving(&observed)),
            T2,
        );
        assert_eq!(
            condition(&second, ConditionType::Ready).last_transition_time,
            T2
        );
        assert_eq!(
            condition(&second, ConditionType::Degraded).last_transition_time,
            T1
        );
        let moved: Vec<_> = transitions(Some(&first), &second)
            .into_iter()
            .map(|t| t.type_)
            .collect();
        assert_eq!(moved, [ConditionType::Ready, ConditionType::Progressing]);
        assert!(transitions(Some(&second), &second).is_empty());
    }

    #[test]
    fn a_first_status_announces_readiness_but_not_the_absence_of_problems() {
        let stream = Stream::test().with_replication(1);
        let p = planned(&stream);
        let groups = [group("orders-g0", 0)];
        let first = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Waiting),
            T1,
        );
        let types: Vec<_> = transitions(None, &first)
            .into_iter()
            .map(|t| t.type_)
            .collect();
        assert_eq!(types, [ConditionType::Ready, ConditionType::Progressing]);
    }

    #[test]
    fn invalid_spec_is_degraded_and_keeps_the_published_shards() {
        let stream = Stream::test();
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let observed = serving(4);
        let applied_status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        let broken = stream
            .with_retention(10)
            .at_generation(2)
            .with_status(applied_status.clone());
        let problems = Problems(vec![Problem::RetentionOutOfRange(10)]);
        let status = compute(&broken, &Settings::test(), Outcome::Invalid(&problems), T2);
        let degraded = condition(&status, ConditionType::Degraded);
        assert_eq!(degraded.status, ConditionStatus::True);
        assert_eq!(degraded.reason, "InvalidSpec");
        assert!(degraded.message.contains("retentionPeriodHours"));
        assert_eq!(
            condition(&status, ConditionType::Ready),
            &Condition {
                observed_generation: Some(2),
                ..condition(&applied_status, ConditionType::Ready).clone()
            }
        );
        assert_eq!(status.shards, applied_status.shards);
        assert_eq!(status.observed_generation, Some(2));
        let warnings: Vec<_> = transitions(Some(&applied_status), &status)
            .into_iter()
            .filter(Transition::is_warning)
            .collect();
        // Degraded moved from AsExpected to InvalidSpec.
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_reshard_is_progress_not_unreadiness() {
        let stream = Stream::test()
            .with_shards(4)
            .with_replication(1)
            .at_generation(2);
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let observed = serving(2);
        let status = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        assert_eq!(
            condition(&status, ConditionType::Ready).status,
            ConditionStatus::True
        );
        let progressing = condition(&status, ConditionType::Progressing);
        assert_eq!(progressing.reason, "Resharding");
        assert_eq!(progressing.message, "2 \u{2192} 4 shards");
        assert_eq!(status.open_shard_count, Some(2));
    }

    #[test]
    fn the_reshard_in_flight_is_recorded_without_touching_the_rest() {
        let stream = Stream::test().with_replication(1);
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let observed = serving(2);
        let before = compute(
            &stream,
            &Settings::test(),
            applied(&p, &groups, DataPlaneView::Serving(&observed)),
            T1,
        );
        let during = resharding_status(&stream.clone().with_status(before.clone()), 2, 4, T2);
        assert_eq!(
            condition(&during, ConditionType::Progressing).message,
            "2 \u{2192} 4 shards"
        );
        assert_eq!(
            condition(&during, ConditionType::Ready),
            condition(&before, ConditionType::Ready)
        );
        assert_eq!(during.shards, before.shards);
        assert_eq!(
            condition(&during, ConditionType::Progressing).last_transition_time,
            T1,
            "Progressing was already True"
        );
    }

    #[test]
    fn a_data_plane_failure_is_degraded_and_not_ready() {
        let stream = Stream::test();
        let p = planned(&stream);
        let groups = [group("orders-g0", 1)];
        let status = compute(
            &stream,
            &Settings::test(),
            applied(
                &p,
                &groups,
                DataPlaneView::Failed("cannot reach the data plane at 10.244.0.9:4568"),
            ),
            T1,
        );
        let ready = condition(&status, ConditionType::Ready);
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "DataPlaneUnavailable");
        let degraded = condition(&status, ConditionType::Degraded);
        assert_eq!(degraded.status, ConditionStatus::True);
        assert!(degraded.message.contains("10.244.0.9"));
    }

    #[test]
    fn failures_are_degraded_and_retried() {
        let stream = Stream::test();
        let status = compute(
            &stream,
            &Settings::test(),
            Outcome::Failed {
                reason: "ApplyFailed",
                message: "StatefulSet orders-g0: forbidden",
            },
            T1,
        );
        assert_eq!(
            condition(&status, ConditionType::Ready).status,
            ConditionStatus::Unknown
        );
        assert_eq!(
            condition(&status, ConditionType::Degraded).message,
            "StatefulSet orders-g0: forbidden"
        );
        assert_eq!(status.open_shard_count, None);
    }
}
