//! Server-side applies what `build` produced, deletes labelled objects the plan no longer has,
//! and releases a deleted stream's volumes.
//!
//! Every write uses the one field manager `riffle-operator` and forces conflicts: the operator is
//! the only writer of the fields it sets, and sets no field that a user or another controller
//! should manage.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, PersistentVolumeClaim, Service},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::stream::build::Desired;
use crate::stream::naming::{MANAGER, StreamNames};
use crate::stream::status::GroupState;

/// A failed API call of the apply step.
#[derive(Debug, thiserror::Error)]
#[error("{action} {kind} {name}: {source}")]
pub struct ApplyError {
    /// What was being done: `applying`, `listing`, `deleting`.
    pub action: &'static str,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object (or the selector, for lists).
    pub name: String,
    /// The client error.
    #[source]
    pub source: kube::Error,
}

fn params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply_one<K>(client: &Client, namespace: &str, object: &K) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    api.patch(&name, &params(), &Patch::Apply(object))
        .await
        .map_err(|source| ApplyError {
            action: "applying",
            kind: K::kind(&()).into_owned(),
            name,
            source,
        })
}

/// Applies every object of `desired` in `namespace` (the shard map first, since pods read it)
/// and returns the state of each shard group's StatefulSet as the API server returned it.
pub async fn apply(
    client: &Client,
    namespace: &str,
    desired: &Desired,
) -> Result<Vec<GroupState>, ApplyError> {
    apply_one(client, namespace, &desired.config_map).await?;
    let mut groups = Vec::with_capacity(desired.groups.len());
    for group in &desired.groups {
        apply_one(client, namespace, &group.service).await?;
        let applied = apply_one(client, namespace, &group.stateful_set).await?;
        apply_one(client, namespace, &group.pdb).await?;
        groups.push(group_state(&applied));
    }
    Ok(groups)
}

/// What status needs from an applied StatefulSet.
pub fn group_state(sts: &StatefulSet) -> GroupState {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.as_ref();
    let observed = match (
        status.and_then(|s| s.observed_generation),
        sts.metadata.generation,
    ) {
        (Some(seen), Some(current)) => seen >= current,
        _ => false,
    };
    GroupState {
        name: sts.name_any(),
        replicas,
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        observed,
    }
}

async fn delete_unlisted<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = K::kind(&()).into_owned();
    let listed = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| ApplyError {
            action: "listing",
            kind: kind.clone(),
            name: selector.to_owned(),
            source,
        })?;
    let mut deleted = Vec::new();
    for object in listed.items {
        let name = object.name_any();
        if keep.contains(&name) || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{kind}/{name}")),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(ApplyError {
                    action: "deleting",
                    kind,
                    name,
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Deletes the objects labelled as the stream's that `desired` does not contain (a shard group
/// that is no longer planned leaves its StatefulSet, Service and PDB behind otherwise). Volumes
/// are kept: they hold data and go only with the stream. Returns `Kind/name` of what was deleted.
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
    desired: &Desired,
) -> Result<Vec<String>, ApplyError> {
    let selector = names.owned_selector();
    let names_of = |f: &dyn Fn(&crate::stream::build::GroupObjects) -> Option<String>| {
        desired.groups.iter().filter_map(f).collect::<BTreeSet<_>>()
    };
    let stateful_sets = names_of(&|g| g.stateful_set.metadata.name.clone());
    let services = names_of(&|g| g.service.metadata.name.clone());
    let pdbs = names_of(&|g| g.pdb.metadata.name.clone());
    let config_maps: BTreeSet<String> = desired.config_map.metadata.name.iter().cloned().collect();
    let mut deleted = Vec::new();
    deleted.extend(
        delete_unlisted::<StatefulSet>(client, namespace, &selector, &stateful_sets).await?,
    );
    deleted
        .extend(delete_unlisted::<PodDisruptionBudget>(client, namespace, &selector, &pdbs).await?);
    deleted.extend(delete_unlisted::<Service>(client, namespace, &selector, &services).await?);
    deleted.extend(delete_unlisted::<ConfigMap>(client, namespace, &selector, &config_maps).await?);
    Ok(deleted)
}

/// Deletes the StatefulSets and then the volumes of the stream `names` in `namespace`. Succeeds
/// when they are already gone, so a finalizer calling it can never block deletion on its own
/// earlier success, and waits for nothing (pods and volumes finish terminating on their own).
/// The StatefulSets go first: while one exists, its controller recreates a deleted volume for a
/// pod that needs it. The other objects go with the stream through their owner references.
pub async fn release_volumes(
    client: &Client,
    namespace: &str,
    names: &StreamNames,
) -> Result<(), ApplyError> {
    delete_all::<StatefulSet>(client, namespace, &names.owned_selector()).await?;
    delete_all::<PersistentVolumeClaim>(client, namespace, &names.volume_selector()).await
}

async fn delete_all<K>(client: &Client, namespace: &str, selector: &str) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(selector),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError {
            action: "deleting",
            kind: K::kind(&()).into_owned(),
            name: selector.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use kube::api::ObjectMeta;

    fn sts(generation: i64, observed: i64, ready: i32, updated: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("orders-g0".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                replicas: 3,
                ..StatefulSetStatus::default()
            }),
        }
    }

    #[test]
    fn group_state_reads_readiness_and_rollout() {
        let ready = group_state(&sts(2, 2, 3, 3));
        assert_eq!(
            ready,
            GroupState {
                name: "orders-g0".into(),
                replicas: 3,
                ready: 3,
                updated: 3,
                observed: true
            }
        );
        assert!(!group_state(&sts(3, 2, 3, 3)).observed);
        let fresh = group_state(&StatefulSet::default());
        assert_eq!((fresh.ready, fresh.observed), (0, false));
    }
}
