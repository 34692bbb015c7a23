//! The `Stream` controller: a thin `reconcile` around the finalizer helper, with the pipeline
//! validate → dereference → data plane → build → apply → status behind it, per-object error
//! backoff, Kubernetes Events when a condition changes, and the gateway's route table kept in step
//! with every stream's readiness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, Event as FinalizerEvent, finalizer},
        reflector::Store,
        watcher,
    },
};
use serde_json::json;

use crate::crd::{Stream, StreamMode, StreamStatus};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::stream::{
    apply::{self, ApplyError},
    build::{BuildError, StreamPlan, build, plan},
    data_plane::{Change, DataPlane, DataPlaneError, Observed, Wanted, follow_change, next_change},
    dereference::{self, DereferenceError},
    leadership,
    naming::{GatewayNames, LABEL_MANAGED_BY, MANAGER, StreamNames},
    on_demand::{Tracker, decide},
    routes::{self, RouteTable},
    status::{self, DataPlaneView, GroupState, Outcome},
    validate::{Problems, ValidStream, validate},
};

/// Finalizer the operator puts on every stream; removed once the stream's volumes are released.
pub const FINALIZER: &str = "riffle.dev/cleanup";
/// How often a healthy stream is reconciled even when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a healthy stream with replicated shard groups is reconciled, to notice a leader
/// elected without any pod or object changing (a partition). A pod deleted or turning unready
/// wakes the stream sooner, through its StatefulSet.
pub const LEADERSHIP_RECHECK: Duration = Duration::from_secs(10);
/// How soon a replicated stream is looked at again while one of its groups has no leader or a
/// ready replica not yet caught up (after a restart: the pods turn Ready before they elect a
/// leader, and nothing else wakes the stream when they do).
pub const LEADERSHIP_SETTLING: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing stream.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How soon a stream is looked at again while it waits for its shard group's pod (readiness
/// changes also wake it through its StatefulSet; this is the safety net).
pub const WAITING_RECHECK: Duration = Duration::from_secs(10);
/// How long one watch call lasts before it is made again. A watch re-established just after the
/// API server restarts can stall without an error; the watcher gives up on a silent watch after
/// this (plus a margin), so a short call bounds how long the controller can miss changes.
pub const WATCH_TIMEOUT_SECS: u32 = 30;
/// How often an on-demand stream's writes are sampled (each pass takes one sample).
pub const ON_DEMAND_SAMPLE: Duration = Duration::from_secs(5);
/// How soon the next step of a reshard that needs several is taken.
pub const RESHARD_STEP: Duration = Duration::from_secs(1);
/// How often the gateway's route table is recomputed from every stream even without a change
/// (it also catches an edit of the ConfigMap by someone else).
pub const ROUTES_RESYNC: Duration = Duration::from_secs(15);

/// A failed reconciliation, one variant per pipeline step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be realised; reported in the status, not retried until it changes.
    #[error("invalid spec: {0}")]
    Invalid(Problems),
    /// The recorded shard map could not be read.
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    /// Objects could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An API call of the apply step failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The shard group could not be asked about the stream or could not change it.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// The status could not be written.
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    /// Releasing the finalizer of an unreadable object failed.
    #[error("removing the finalizer: {0}")]
    RemoveFinalizer(#[source] kube::Error),
    /// Adding or removing the finalizer, or one of its branches, failed.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
    /// The object is namespaced but came without a namespace.
    #[error("stream has no namespace")]
    MissingNamespace,
}

impl Error {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Dereference(_) => "dereference",
            Error::Build(_) => "build",
            Error::Apply(_) => "apply",
            Error::DataPlane(_) => "data_plane",
            Error::Status(_) => "status",
            Error::RemoveFinalizer(_) => "finalizer",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
            Error::MissingNamespace => "metadata",
        }
    }

    /// CamelCase reason for the `Degraded` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "InvalidSpec",
            Error::Dereference(DereferenceError::Unreadable { .. }) => "ShardMapUnreadable",
            Error::Dereference(_) => "ReadFailed",
            Error::Build(_) => "BuildFailed",
            Error::Apply(_) => "ApplyFailed",
            Error::DataPlane(_) => "DataPlaneUnavailable",
            Error::Status(_) => "StatusFailed",
            Error::RemoveFinalizer(_) | Error::Finalizer(_) => "FinalizerFailed",
            Error::MissingNamespace => "BuildFailed",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Installation settings.
    pub settings: Settings,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Every stream in the cluster (the controller's cache), for cluster-wide name checks.
    streams: Store<DeserializeGuard<Stream>>,
    /// Consecutive failures per `namespace/name`, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Serializes writes of the gateway's route table.
    routes: tokio::sync::Mutex<()>,
    /// Write samples of on-demand streams per `namespace/name`, for sizing them.
    on_demand: Mutex<HashMap<String, Tracker>>,
    /// The instant on-demand samples are timed from.
    started: std::time::Instant,
}

fn object_key(obj: &DeserializeGuard<Stream>) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Reconciles one stream: the finalizer helper decides between apply and cleanup; an object that
/// cannot be deserialized is reported and, if it is being deleted, still released.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Stream>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = match &obj.0 {
        Ok(stream) => {
            let namespace = stream.namespace().ok_or(Error::MissingNamespace)?;
            let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &namespace);
            let stream = Arc::new(stream.clone());
            let ctx = ctx.clone();
            let outcome = finalizer(&api, FINALIZER, stream, |event| async move {
                match event {
                    FinalizerEvent::Apply(stream) => apply_stream(&stream, &ctx).await,
                    FinalizerEvent::Cleanup(stream) => {
                        cleanup(&namespace, &stream.name_any(), &ctx).await
                    }
                }
            })
            .await;
            match outcome {
                Ok(action) => Ok(action),
                // A second cleanup pass for an object already gone (the cache lagged behind the
                // first pass's finalizer removal): there is nothing left to release.
                Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(status)))
                    if status.code == 404 =>
                {
                    Ok(Action::await_change())
                }
                Err(e) => Err(Error::Finalizer(Box::new(e))),
            }
        }
        Err(invalid) => unreadable(invalid, &ctx).await,
    };
    if result.is_ok() {
        lock(&ctx.failures).remove(&object_key(&obj));
    }
    result
}

/// Backs off per object: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`], reset by a success.
pub fn error_policy(
    obj: Arc<DeserializeGuard<Stream>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed(error.kind());
    let key = object_key(&obj);
    let attempt = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(attempt);
    tracing::warn!(stream = %key, attempt, retry_in = ?delay, %error, "reconcile failed");
    Action::requeue(delay)
}

/// The wait before retry number `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What one pass did to a valid stream.
struct Converged {
    plan: StreamPlan,
    groups: Vec<GroupState>,
    data_plane: DataPlaneResult,
    /// Leadership of each replicated shard group, ordered by name.
    leadership: Vec<crate::crd::GroupStatus>,
}

/// What the pass learnt from the data plane.
enum DataPlaneResult {
    /// The shard group has no ready pod yet.
    Waiting,
    /// The stream as the data plane described it last.
    Serving(Observed),
    /// A call failed; reported in the status, then retried with backoff.
    Failed(DataPlaneError),
}

impl DataPlaneResult {
    /// The result as the status sees it; `failure` is the rendered error of a failed call.
    fn view<'a>(&'a self, failure: &'a str) -> DataPlaneView<'a> {
        match self {
            DataPlaneResult::Waiting => DataPlaneView::Waiting,
            DataPlaneResult::Serving(observed) => DataPlaneView::Serving(observed),
            DataPlaneResult::Failed(_) => DataPlaneView::Failed(failure),
        }
    }
}

/// The Apply branch: converge, then write the status that describes the result.
async fn apply_stream(stream: &Stream, ctx: &Context) -> Result<Action, Error> {
    let namespace = stream.namespace().ok_or(Error::MissingNamespace)?;
    let names = StreamNames::new(&stream.name_any());
    // The cached object can predate this controller's last status write (an owned object's event
    // may arrive first); computing from it would rewrite the status with fresh timestamps. The
    // status is therefore computed against what the API server holds now.
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = api
        .get_status(&stream.name_any())
        .await
        .map_err(Error::Status)?;
    let mut stream = stream.clone();
    stream.status = current.status;
    let result = converge(&mut stream, ctx, &namespace, &names).await;
    let stream = &stream;
    let now = now_rfc3339();
    let new_status = match &result {
        Ok(converged) => {
            let failure = match &converged.data_plane {
                DataPlaneResult::Failed(error) => error.to_string(),
                _ => String::new(),
            };
            for group in &converged.leadership {
                ctx.metrics.group_observed(&namespace, group);
            }
            let outcome = Outcome::Applied {
                plan: &converged.plan,
                groups: &converged.groups,
                data_plane: converged.data_plane.view(&failure),
                leadership: &converged.leadership,
            };
            status::compute(stream, &ctx.settings, outcome, &now)
        }
        Err(Error::Invalid(problems)) => {
            status::compute(stream, &ctx.settings, Outcome::Invalid(problems), &now)
        }
        Err(error) => {
            let message = error.to_string();
            let outcome = Outcome::Failed {
                reason: error.reason(),
                message: &message,
            };
            status::compute(stream, &ctx.settings, outcome, &now)
        }
    };
    write_status(stream, &namespace, new_status, ctx).await?;
    publish_routes(ctx).await;
    match result {
        Ok(converged) => match converged.data_plane {
            DataPlaneResult::Failed(error) => Err(Error::DataPlane(error)),
            DataPlaneResult::Waiting => Ok(Action::requeue(WAITING_RECHECK)),
            DataPlaneResult::Serving(observed)
                if converged.plan.requested_shards != observed.open_shards() =>
            {
                Ok(Action::requeue(RESHARD_STEP))
            }
            DataPlaneResult::Serving(_) if stream.spec.stream_mode == StreamMode::OnDemand => {
                Ok(Action::requeue(ON_DEMAND_SAMPLE))
            }
            DataPlaneResult::Serving(_)
                if converged.leadership.iter().any(leadership::is_settling) =>
            {
                Ok(Action::requeue(LEADERSHIP_SETTLING))
            }
            DataPlaneResult::Serving(_) if converged.plan.replicated() => {
                Ok(Action::requeue(LEADERSHIP_RECHECK))
            }
            DataPlaneResult::Serving(_) => Ok(Action::requeue(RESYNC)),
        },
        // An invalid spec is waiting for the user; the resync notices a freed-up name.
        Err(Error::Invalid(_)) => Ok(Action::requeue(RESYNC)),
        Err(error) => Err(error),
    }
}

async fn converge(
    stream: &mut Stream,
    ctx: &Context,
    namespace: &str,
    names: &StreamNames,
) -> Result<Converged, Error> {
    let cached = ctx.streams.state();
    let namesakes: Vec<&Stream> = cached
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| {
            other.name_any() == names.stream() && other.namespace().as_deref() != Some(namespace)
        })
        .collect();
    let valid = validate(stream, &namesakes).map_err(Error::Invalid)?;
    let uid = stream.uid().unwrap_or_default();
    let recorded = dereference::recorded_layout(&ctx.client, namespace, names, &uid).await?;
    // The objects exist before their pods do, so on a first pass this finds nothing and the
    // stream is created in the data plane on the pass its pods' readiness triggers.
    let data_plane = sync_data_plane(stream, &valid, ctx, namespace, names).await?;
    let known = match &data_plane {
        DataPlaneResult::Serving(observed) => Some(observed.layout.clone()),
        _ => recorded,
    };
    let plan = plan(stream, &valid, known);
    let desired = build(stream, &plan, &ctx.settings)?;
    let groups = apply::apply(&ctx.client, namespace, &desired).await?;
    let deleted = apply::delete_orphans(&ctx.client, namespace, names, &desired).await?;
    if !deleted.is_empty() {
        tracing::info!(
            stream = names.stream(),
            ?deleted,
            "deleted objects no longer planned"
        );
        publish(
            ctx,
            &stream.object_ref(&()),
            normal("OrphansDeleted", format!("deleted {}", deleted.join(", "))),
        )
        .await;
    }
    let leadership = if plan.replicated() {
        let indexes: Vec<u32> = desired.groups.iter().map(|g| g.group).collect();
        leadership::observe(&ctx.client, namespace, names, &indexes, plan.replicas).await?
    } else {
        Vec::new()
    };
    Ok(Converged {
        plan,
        groups,
        data_plane,
        leadership,
    })
}

/// Brings the stream in its shard groups towards the spec, one change at a time, describing it
/// after each change: the data plane, not this operator, says what the stream is. Group 0 is
/// created from the spec and leads; every further group imports group 0's description and then
/// follows its reshard steps (see [`follow_change`]). Only a failed status write or API read is
/// an error here; a failed data-plane call is a result the status reports.
async fn sync_data_plane(
    stream: &mut Stream,
    valid: &ValidStream,
    ctx: &Context,
    namespace: &str,
    names: &StreamNames,
) -> Result<DataPlaneResult, Error> {
    let name = stream.name_any();
    let wanted = Wanted {
        initial_shards: valid.requested_shards,
        shards: match stream.spec.stream_mode {
            StreamMode::Provisioned => Some(valid.requested_shards),
            // The operator does not size on-demand streams yet: they keep their shards.
            StreamMode::OnDemand => None,
        },
        retention_hours: stream.spec.retention_period_hours.unsigned_abs(),
        mode: match stream.spec.stream_mode {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        },
        max_record_size_kib: stream.spec.max_record_size_kib.unsigned_abs(),
        shards_per_group: valid.shards_per_group,
    };
    // Changes reach whichever replica of a replicated group leads: DataPlane moves on from a
    // pod that declines them.
    let mut leader = match connect_group(ctx, stream, names, 0).await {
        Ok(Some(data_plane)) => data_plane,
        Ok(None) => return Ok(DataPlaneResult::Waiting),
        Err(Error::DataPlane(error)) => return Ok(DataPlaneResult::Failed(error)),
        Err(error) => return Err(error),
    };
    let mut observed = match leader.describe(&name).await {
        Ok(observed) => observed,
        Err(error) => return Ok(DataPlaneResult::Failed(error)),
    };
    // Create, set the retention and settings: group 0 on its own, at most these three changes.
    for _ in 0..3 {
        let change = match next_change(&wanted, observed.as_ref()) {
            None | Some(Change::Reshard { .. }) => break,
            Some(change) => change,
        };
        tracing::info!(stream = %name, namespace, ?change, "changing the stream in shard group 0");
        if let Err(error) = leader.apply(&name, change, &wanted, &[]).await {
            return Ok(DataPlaneResult::Failed(error));
        }
        publish(ctx, &stream.object_ref(&()), change_event(0, change)).await;
        observed = match leader.describe(&name).await {
            Ok(observed) => observed,
            Err(error) => return Ok(DataPlaneResult::Failed(error)),
        };
    }
    let Some(mut current) = observed else {
        return Ok(DataPlaneResult::Failed(leader.missing(&name)));
    };
    let in_step = match follow_group_zero(stream, &wanted, &mut leader, &current, ctx, names).await
    {
        Ok(in_step) => in_step,
        Err(Error::DataPlane(error)) => return Ok(DataPlaneResult::Failed(error)),
        Err(error) => return Err(error),
    };
    // One reshard step per pass, taken only while every group is in step; the status records
    // each step before it is taken, and the other groups follow at once. The spec sizes
    // provisioned streams; on-demand streams are sized by their writes.
    let step = match stream.spec.stream_mode {
        StreamMode::Provisioned => next_change(&wanted, Some(&current)),
        StreamMode::OnDemand if in_step => {
            size_on_demand(stream, &mut leader, &current, ctx, names).await?
        }
        StreamMode::OnDemand => None,
    };
    if in_step && let Some(change @ Change::Reshard { from, to, .. }) = step {
        let during = status::resharding_status(stream, from, to, &now_rfc3339());
        write_status(stream, namespace, during.clone(), ctx).await?;
        stream.status = Some(during);
        tracing::info!(stream = %name, namespace, ?change, "resharding in shard group 0");
        if let Err(error) = leader.apply(&name, change, &wanted, &[]).await {
            return Ok(DataPlaneResult::Failed(error));
        }
        publish(ctx, &stream.object_ref(&()), change_event(0, change)).await;
        current = match leader.describe(&name).await {
            Ok(Some(observed)) => observed,
            Ok(None) => return Ok(DataPlaneResult::Failed(leader.missing(&name))),
            Err(error) => return Ok(DataPlaneResult::Failed(error)),
        };
        match follow_group_zero(stream, &wanted, &mut leader, &current, ctx, names).await {
            Ok(_) => {}
            Err(Error::DataPlane(error)) => return Ok(DataPlaneResult::Failed(error)),
            Err(error) => return Err(error),
        }
    }
    Ok(DataPlaneResult::Serving(current))
}

/// A connection to shard group `group` of `stream` (through its first ready pod that accepts
/// one; changes move on to the pod that leads a replicated group), or `None` while no pod of it
/// is ready.
async fn connect_group(
    ctx: &Context,
    stream: &Stream,
    names: &StreamNames,
    group: u32,
) -> Result<Option<DataPlane>, Error> {
    let namespace = stream.namespace().unwrap_or_default();
    let replicas = stream.spec.replication_factor.unsigned_abs();
    let ips = dereference::ready_pod_ips(&ctx.client, &namespace, names, group, replicas).await?;
    if ips.is_empty() {
        return Ok(None);
    }
    Ok(Some(DataPlane::connect_group(&ips).await?))
}

/// Samples the writes of an on-demand stream across its groups and returns the reshard step
/// its load calls for, publishing the figures behind it as an Event. A group that cannot be
/// asked skips this sample.
async fn size_on_demand(
    stream: &Stream,
    leader: &mut DataPlane,
    current: &Observed,
    ctx: &Context,
    names: &StreamNames,
) -> Result<Option<Change>, Error> {
    let name = stream.name_any();
    let namespace = stream.namespace().unwrap_or_default();
    let mut counters = match leader.counters(&name).await {
        Ok(counters) => counters,
        Err(_) => return Ok(None),
    };
    for group in current.layout.groups().into_iter().filter(|g| *g != 0) {
        let more = match connect_group(ctx, stream, names, group).await {
            Ok(Some(mut data_plane)) => data_plane.counters(&name).await.ok(),
            Ok(None) | Err(Error::DataPlane(_)) => None,
            Err(error) => return Err(error),
        };
        let Some(more) = more else {
            return Ok(None);
        };
        counters.bytes += more.bytes;
        counters.records += more.records;
        counters.throttled += more.throttled;
    }
    let now = ctx.started.elapsed();
    let key = format!("{namespace}/{name}");
    let decision = {
        let mut trackers = lock(&ctx.on_demand);
        let tracker = trackers.entry(key).or_default();
        let Some(load) = tracker.observe(now, counters) else {
            return Ok(None);
        };
        let since_change = tracker.last_change().map(|at| now.saturating_sub(at));
        let decision = decide(current.open_shards(), &load, &tracker.peak(), since_change);
        if decision.is_some() {
            tracker.changed(now);
        }
        decision
    };
    let Some(decision) = decision else {
        return Ok(None);
    };
    tracing::info!(stream = %name, namespace, reason = %decision.reason, "sizing an on-demand stream");
    publish(
        ctx,
        &stream.object_ref(&()),
        normal("OnDemandScaling", decision.reason),
    )
    .await;
    let from = current.open_shards();
    Ok(Some(Change::Reshard {
        from,
        to: decision.target,
        target: decision.target,
    }))
}

/// Brings every shard group but 0 in step with group 0 (`current`): imports the stream where a
/// group lacks it, then settings, then the reshard step group 0 took last. Returns whether all
/// groups are in step; a group whose pod is not ready yet is not (its StatefulSet's readiness
/// shows in the status, and wakes the stream again).
async fn follow_group_zero(
    stream: &Stream,
    wanted: &Wanted,
    leader: &mut DataPlane,
    current: &Observed,
    ctx: &Context,
    names: &StreamNames,
) -> Result<bool, Error> {
    let name = stream.name_any();
    let namespace = stream.namespace().unwrap_or_default();
    let mut description: Option<Vec<u8>> = None;
    let mut in_step = true;
    for group in current.layout.groups().into_iter().filter(|g| *g != 0) {
        let Some(mut follower) = connect_group(ctx, stream, names, group).await? else {
            in_step = false;
            continue;
        };
        let mut seen = follower.describe(&name).await?;
        for _ in 0..4 {
            let Some(change) = follow_change(wanted, group, current, seen.as_ref()) else {
                break;
            };
            if matches!(
                change,
                Change::Import { .. } | Change::FollowReshards { .. }
            ) && description.is_none()
            {
                description = Some(leader.export(&name).await?);
            }
            tracing::info!(stream = %name, namespace, group, ?change, "shard group follows group 0");
            follower
                .apply(
                    &name,
                    change,
                    wanted,
                    description.as_deref().unwrap_or_default(),
                )
                .await?;
            publish(ctx, &stream.object_ref(&()), change_event(group, change)).await;
            seen = follower.describe(&name).await?;
        }
        match seen {
            Some(seen) if seen.in_step_with(current) => {}
            // Same history but other shards, or a longer history than group 0's: changed apart.
            Some(seen) if seen.reshard_count >= current.reshard_count => {
                return Err(Error::DataPlane(DataPlaneError::Diverged { group }));
            }
            _ => in_step = false,
        }
    }
    Ok(in_step)
}

fn change_event(group: u32, change: Change) -> Event {
    match change {
        Change::Create { shards } => normal(
            "StreamCreated",
            format!("created the stream in shard group 0 with {shards} shards"),
        ),
        Change::Import { group } => normal(
            "GroupAdded",
            format!("shard group {group} took the stream's description from group 0"),
        ),
        Change::SetRetention { hours } => normal(
            "RetentionChanged",
            format!("shard group {group}: retention set to {hours} hours"),
        ),
        Change::UpdateSettings {
            mode,
            max_record_size_kib,
        } => normal(
            "SettingsChanged",
            format!(
                "shard group {group}: {}",
                [
                    mode.map(|m| format!("mode {m}")),
                    max_record_size_kib.map(|k| format!("largest record {k} KiB")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            ),
        ),
        Change::FollowReshards { from, to } => normal(
            "Resharded",
            format!(
                "shard group {group} replayed reshards {} to {to} of group 0",
                from + 1
            ),
        ),
        Change::Reshard { from, to, target } if group == 0 => normal(
            "Resharded",
            format!("UpdateShardCount {from} \u{2192} {target} shards (towards {to})"),
        ),
        Change::Reshard { from, target, .. } => normal(
            "Resharded",
            format!("shard group {group}: UpdateShardCount {from} \u{2192} {target} shards"),
        ),
    }
}

fn normal(reason: &str, note: String) -> Event {
    event(EventType::Normal, reason, note)
}

/// An Event of the reconciliation, its note cut to the length the API server takes.
fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&note)),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Recomputes the gateway's route table from every cached stream and publishes it if it changed.
/// Failures are logged and left to the next pass or the periodic resync: a stale route table
/// delays a new stream's endpoint but harms no stream.
async fn publish_routes(ctx: &Context) {
    let _writer = ctx.routes.lock().await;
    let cached = ctx.streams.state();
    let streams = cached.iter().filter_map(|guard| guard.0.as_ref().ok());
    let gateway = GatewayNames::new(&ctx.settings.namespace);
    let table = RouteTable::compute(streams, &gateway);
    match routes::publish(&ctx.client, &gateway, &table).await {
        Ok(true) => {
            tracing::info!(
                streams = table.streams.len(),
                "published the gateway's routes"
            );
            ctx.metrics.routes_published();
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%error, "publishing the gateway's routes failed");
            return;
        }
    }
    // Also after an unchanged table: a gateway pod started since the last write, or a stamp
    // that failed, is caught up here.
    match routes::nudge_gateways(&ctx.client, &gateway, &table).await {
        Ok(0) => {}
        Ok(pods) => tracing::debug!(pods, "stamped the route checksum on gateway pods"),
        Err(error) => tracing::warn!(%error, "stamping the route checksum on gateway pods failed"),
    }
}

/// Writes `new` if it differs from the stored status, then publishes an Event per condition
/// that changed.
async fn write_status(
    stream: &Stream,
    namespace: &str,
    new: StreamStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if stream.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": Stream::api_version(&()),
        "kind": Stream::kind(&()),
        "status": new,
    });
    api.patch_status(
        &stream.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(Error::Status)?;
    ctx.metrics.status_written();
    let reference = stream.object_ref(&());
    for change in status::transitions(stream.status.as_ref(), &new) {
        let mut note = format!("{} is {}", change.type_.as_str(), change.status.as_str());
        if !change.message.is_empty() {
            note = format!("{note}: {}", change.message);
        }
        let type_ = if change.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let event = event(type_, &change.reason, note);
        publish(ctx, &reference, event).await;
    }
    let before = stream.status.as_ref().map_or(&[][..], |s| &s.groups[..]);
    for change in leadership::leader_changes(before, &new.groups) {
        let event = match (&change.leader, change.term) {
            (Some(leader), term) => normal(
                "LeaderElected",
                format!(
                    "{leader} leads shard group {} in term {}",
                    change.group,
                    term.unwrap_or_default()
                ),
            ),
            (None, _) => event(
                EventType::Warning,
                "NoLeader",
                format!(
                    "no replica of shard group {} that the operator can reach leads it",
                    change.group
                ),
            ),
        };
        publish(ctx, &reference, event).await;
    }
    Ok(())
}

/// Events are best effort: failing to publish one must not fail the reconciliation.
async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    event: Event,
) {
    match ctx.recorder.publish(&event, reference).await {
        Ok(()) => ctx.metrics.event_published(),
        Err(error) => tracing::warn!(%error, reason = %event.reason, "publishing an event failed"),
    }
}

/// Event notes are limited to 1 kB.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 1000;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The Cleanup branch: release the volumes and drop the gateway's route (the cached stream is
/// being deleted, so the table leaves it out); everything else goes through owner references.
async fn cleanup(namespace: &str, name: &str, ctx: &Context) -> Result<Action, Error> {
    apply::release_volumes(&ctx.client, namespace, &StreamNames::new(name)).await?;
    tracing::info!(stream = name, namespace, "released volumes");
    ctx.metrics.forget_groups(namespace, name);
    publish_routes(ctx).await;
    Ok(Action::await_change())
}

/// An object the operator cannot deserialize (written under another CRD version, say). It is
/// reported instead of stalling the controller, and a deletion still runs the cleanup and
/// releases the finalizer, so the object can always go away.
async fn unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let namespace = meta.namespace.clone().ok_or(Error::MissingNamespace)?;
    let name = meta.name.clone().unwrap_or_default();
    tracing::warn!(stream = %format!("{namespace}/{name}"), error = %invalid.error, "stream cannot be read");
    let finalizers: Vec<String> = meta.finalizers.clone().unwrap_or_default();
    if meta.deletion_timestamp.is_some() && finalizers.iter().any(|f| f == FINALIZER) {
        cleanup(&namespace, &name, ctx).await?;
        let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            &namespace,
            &ApiResource::erase::<Stream>(&()),
        );
        let patch = json!({
            "metadata": {"finalizers": remaining, "resourceVersion": meta.resource_version}
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::RemoveFinalizer)?;
        return Ok(Action::await_change());
    }
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(Stream::api_version(&()).into_owned()),
        kind: Some(Stream::kind(&()).into_owned()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    publish(
        ctx,
        &reference,
        event(EventType::Warning, "Unreadable", invalid.error.clone()),
    )
    .await;
    Ok(Action::await_change())
}

/// Runs the `Stream` controller until `shutdown` resolves. `watch_namespace` limits it to one
/// namespace (then the cluster-wide name check sees only that namespace); `None` watches all.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    watch_namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let streams: Api<DeserializeGuard<Stream>> = scoped(&client, watch_namespace);
    let owned = watcher::Config::default()
        .timeout(WATCH_TIMEOUT_SECS)
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let watched = watcher::Config::default()
        .timeout(WATCH_TIMEOUT_SECS)
        .any_semantic();
    let controller = Controller::new(streams, watched)
        .owns(
            scoped::<StatefulSet>(&client, watch_namespace),
            owned.clone(),
        )
        .owns(scoped::<Service>(&client, watch_namespace), owned.clone())
        .owns(scoped::<ConfigMap>(&client, watch_namespace), owned.clone())
        .owns(
            scoped::<PodDisruptionBudget>(&client, watch_namespace),
            owned,
        )
        .graceful_shutdown_on(shutdown);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance,
        },
    );
    let ctx = Arc::new(Context {
        client,
        settings,
        recorder,
        metrics,
        streams: controller.store(),
        failures: Mutex::new(HashMap::new()),
        routes: tokio::sync::Mutex::new(()),
        on_demand: Mutex::new(HashMap::new()),
        started: std::time::Instant::now(),
    });
    // The route table must name the operator even before any stream exists, and must converge
    // when nothing reconciles (a stream deleted while the operator was down, an edited ConfigMap).
    let routes_loop = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            if ctx.streams.wait_until_ready().await.is_err() {
                return;
            }
            loop {
                publish_routes(&ctx).await;
                tokio::time::sleep(ROUTES_RESYNC).await;
            }
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(stream = %object, "reconciled"),
                Err(error) => tracing::debug!(%error, "controller"),
            }
        })
        .await;
    routes_loop.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn notes_are_cut_at_a_char_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long);
        assert!(cut.len() <= 1003);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn error_reasons_name_the_step() {
        assert_eq!(Error::Invalid(Problems(vec![])).reason(), "InvalidSpec");
        assert_eq!(Error::Build(BuildError::MissingUid).reason(), "BuildFailed");
        assert_eq!(Error::MissingNamespace.kind(), "metadata");
    }
}
