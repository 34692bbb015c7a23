//! openraft's storage conformance suite, run against [`LogStore`] and [`StateMachineStore`],
//! one case per test.

use std::sync::{Arc, Mutex};

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use crate::state_machine::StateMachineStore;
use crate::state_machine::tests::Memory;
use crate::storage::{LogConfig, LogStore};
use crate::types::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Memory>, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore<Memory>), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("raft"), LogConfig::default()).expect("open log");
        let sm = StateMachineStore::open(
            Arc::new(Mutex::new(Memory::default())),
            &dir.path().join("snapshot"),
        )
        .expect("open state machine");
        Ok((dir, log, sm))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachineStore<Memory>, Builder, tempfile::TempDir>;

macro_rules! suite_case {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            let (_dir, log, sm) = Builder.build().await.expect("build");
            S::$name(log, sm).await.expect(stringify!($name));
        }
    };
}

suite_case!(last_membership_in_log_initial);
suite_case!(last_membership_in_log);
suite_case!(last_membership_in_log_multi_step);
suite_case!(get_membership_initial);
suite_case!(get_membership_from_log_and_empty_sm);
suite_case!(get_membership_from_empty_log_and_sm);
suite_case!(get_membership_from_log_le_sm_last_applied);
suite_case!(get_membership_from_log_gt_sm_last_applied_1);
suite_case!(get_membership_from_log_gt_sm_last_applied_2);
suite_case!(get_initial_state_without_init);
suite_case!(get_initial_state_membership_from_empty_log_and_sm);
suite_case!(get_initial_state_membership_from_sm_inlog_is_smaller);
suite_case!(get_initial_state_membership_from_log_insm_is_smaller);
suite_case!(get_initial_state_with_state);
suite_case!(get_initial_state_last_log_gt_sm);
suite_case!(get_initial_state_last_log_lt_sm);
suite_case!(get_initial_state_inverted_log_order);
suite_case!(get_initial_state_conflict_at_same_index);
suite_case!(get_initial_state_log_ids);
suite_case!(get_initial_state_re_apply_committed);
suite_case!(save_vote);
suite_case!(get_log_entries);
suite_case!(limited_get_log_entries);
suite_case!(leader_bounded_stream);
suite_case!(entries_stream);
suite_case!(try_get_log_entry);
suite_case!(log_reader_reads_new_entries);
suite_case!(initial_logs);
suite_case!(get_log_state);
suite_case!(get_log_id);
suite_case!(last_id_in_log);
suite_case!(last_applied_state);
suite_case!(purge_logs_upto_0);
suite_case!(purge_logs_upto_5);
suite_case!(purge_logs_upto_20);
suite_case!(delete_logs_after_11);
suite_case!(delete_logs_after_5);
suite_case!(delete_logs_after_0);
suite_case!(delete_logs_after_none);
suite_case!(append_to_log);
suite_case!(snapshot_meta);
suite_case!(snapshot_meta_optional);
suite_case!(apply_single);
suite_case!(apply_multiple);

/// A snapshot built by one state machine installs on another (the case takes the builder: it
/// needs two stores).
#[tokio::test]
async fn transfer_snapshot() {
    S::transfer_snapshot(&Builder)
        .await
        .expect("transfer_snapshot");
}
