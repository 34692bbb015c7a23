//! The status of a stream, computed only from what the operator applied and observed.
//!
//! The status is a deterministic function of its inputs: the same stream, outcome and previous
//! status always give byte-identical output, whatever the clock says. The clock is read only when
//! a condition changes its `status`, so an unchanged stream never rewrites its status and never
//! wakes its own controller.

use kube::ResourceExt;

use crate::crd::{Condition, ConditionStatus, ConditionType, Stream, StreamStatus};
use crate::settings::Settings;
use crate::stream::build::StreamPlan;
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

/// How the last reconciliation ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Everything in `plan` was applied; `groups` is what was observed, in group order.
    Applied {
        /// The applied plan.
        plan: &'a StreamPlan,
        /// Observed shard groups.
        groups: &'a [GroupState],
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
        Outcome::Applied { plan, .. } => (
            Some(i32::try_from(plan.layout.open_count()).unwrap_or(i32::MAX)),
            plan.layout.to_status(),
        ),
        // Nothing new was applied: the shards are still what was last published.
        Outcome::Invalid(_) | Outcome::Failed { .. } => {
            (previous.open_shard_count, previous.shards.clone())
        }
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
    }
}

fn verdicts(previous: &StreamStatus, outcome: Outcome<'_>) -> [Verdict; 3] {
    match outcome {
        Outcome::Applied { plan, groups } => {
            let mut waiting: Vec<&GroupState> = groups.iter().filter(|g| !g.is_ready()).collect();
            waiting.sort_by(|a, b| a.name.cmp(&b.name));
            let waiting_text = waiting
                .iter()
                .map(|g| format!("{} ({}/{} ready)", g.name, g.ready.max(0), g.replicas))
                .collect::<Vec<_>>()
                .join(", ");
            let ready = if waiting.is_empty() {
                verdict(
                    ConditionStatus::True,
                    "GroupsReady",
                    format!("all {} shard groups are ready", groups.len()),
                )
            } else {
                verdict(
                    ConditionStatus::False,
                    "GroupsNotReady",
                    format!("waiting for shard groups: {waiting_text}"),
                )
            };
            let progressing = if plan.reshard_pending() {
                verdict(
                    ConditionStatus::True,
                    "ReshardPending",
                    format!(
                        "{} shards open, {} requested",
                        plan.layout.open_count(),
                        plan.requested_shards
                    ),
                )
            } else if !waiting.is_empty() {
                verdict(
                    ConditionStatus::True,
                    "RollingOut",
                    format!("waiting for shard groups: {waiting_text}"),
                )
            } else {
                verdict(
                    ConditionStatus::False,
                    "Reconciled",
                    "the stream matches its spec",
                )
            };
            let degraded = verdict(ConditionStatus::False, "AsExpected", "");
            [ready, progressing, degraded]
        }
        Outcome::Invalid(problems) => [
            carried_ready(previous),
            verdict(
                ConditionStatus::False,
                "InvalidSpec",
                "the spec must be fixed before the stream can change",
            ),
            verdict(ConditionStatus::True, "InvalidSpec", problems.to_string()),
        ],
        Outcome::Failed { reason, message } => [
            carried_ready(previous),
            verdict(ConditionStatus::True, reason, "retrying"),
            verdict(ConditionStatus::True, reason, message),
        ],
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
            replicas: 3,
            ready,
            updated: 3,
            observed: true,
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
    fn ready_stream_reports_every_field() {
        let stream = Stream::test().with_shards(10);
        let p = planned(&stream);
        let groups = [group("orders-g0", 3), group("orders-g1", 3)];
        let status = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
            },
            T1,
        );
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.open_shard_count, Some(10));
        assert_eq!(status.shards.len(), 10);
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
        assert_eq!(
            condition(&status, ConditionType::Ready).status,
            ConditionStatus::True
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
    fn status_is_idempotent_and_ignores_the_clock_without_transitions() {
        let stream = Stream::test().with_shards(10);
        let p = planned(&stream);
        let groups = [group("orders-g1", 1), group("orders-g0", 2)];
        let outcome = Outcome::Applied {
            plan: &p,
            groups: &groups,
        };
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
        let p = planned(&stream);
        let groups = [group("orders-g1", 0), group("orders-g0", 2)];
        let status = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
            },
            T1,
        );
        let ready = condition(&status, ConditionType::Ready);
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(
            ready.message,
            "waiting for shard groups: orders-g0 (2/3 ready), orders-g1 (0/3 ready)"
        );
        assert_eq!(
            condition(&status, ConditionType::Progressing).reason,
            "RollingOut"
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let stream = Stream::test();
        let p = planned(&stream);
        let not_ready = [group("orders-g0", 1)];
        let first = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &not_ready,
            },
            T1,
        );
        let ready = [group("orders-g0", 3)];
        let second = compute(
            &stream.clone().with_status(first.clone()),
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &ready,
            },
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
        let stream = Stream::test();
        let p = planned(&stream);
        let groups = [group("orders-g0", 0)];
        let first = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
            },
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
        let groups = [group("orders-g0", 3)];
        let applied = compute(
            &stream,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
            },
            T1,
        );
        let broken = stream
            .with_retention(10)
            .at_generation(2)
            .with_status(applied.clone());
        let problems = Problems(vec![Problem::RetentionOutOfRange(10)]);
        let status = compute(&broken, &Settings::test(), Outcome::Invalid(&problems), T2);
        let degraded = condition(&status, ConditionType::Degraded);
        assert_eq!(degraded.status, ConditionStatus::True);
        assert_eq!(degraded.reason, "InvalidSpec");
        assert!(degraded.message.contains("retentionPeriodHours"));
        assert_eq!(degraded.last_transition_time, T2);
        assert_eq!(
            condition(&status, ConditionType::Ready),
            &Condition {
                observed_generation: Some(2),
                ..condition(&applied, ConditionType::Ready).clone()
            }
        );
        assert_eq!(status.shards, applied.shards);
        assert_eq!(status.observed_generation, Some(2));
        let warnings: Vec<_> = transitions(Some(&applied), &status)
            .into_iter()
            .filter(Transition::is_warning)
            .collect();
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_pending_reshard_is_progress_not_unreadiness() {
        let stream = Stream::test().with_shards(4);
        let first = planned(&stream);
        let scaled = stream.with_shards(6).at_generation(2);
        let valid = validate(&scaled, &[]).expect("valid");
        let p = plan(&scaled, &valid, Some(first.layout));
        let groups = [group("orders-g0", 3)];
        let status = compute(
            &scaled,
            &Settings::test(),
            Outcome::Applied {
                plan: &p,
                groups: &groups,
            },
            T1,
        );
        assert_eq!(
            condition(&status, ConditionType::Ready).status,
            ConditionStatus::True
        );
        let progressing = condition(&status, ConditionType::Progressing);
        assert_eq!(progressing.reason, "ReshardPending");
        assert_eq!(progressing.message, "4 shards open, 6 requested");
        assert_eq!(status.open_shard_count, Some(4));
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
