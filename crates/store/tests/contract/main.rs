//! The store contract: one story module per area, each story pinning a behaviour of the `Store`
//! traits, and one list that runs every story against every backend on a fresh, empty database.
//!
//! A story takes an `Arc<dyn Store>` and nothing else, so it can only use what the traits promise;
//! a backend joins the contract by adding a constructor to [`backends`] and a line to the list at
//! the end of this file. Tests of one backend's internals (migrations on planted data, pragmas, the
//! writer connection) live with that backend, not here.

mod accounts;
mod admin;
mod blobs;
mod documents;
mod history;
mod oplog;
mod shares;
mod usage;
mod webhooks;
mod workspaces;

#[path = "../support/postgres_cluster.rs"]
mod postgres_cluster;

use std::sync::Arc;

use concord_store::{DeviceKind, NewDevice, NewUser, Store};

/// A store on a fresh database, with whatever keeps that database alive until the story ends.
pub struct Fresh {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

/// One constructor per backend, each returning an empty, migrated store of its own.
mod backends {
    use super::Fresh;

    pub async fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = concord_store::sqlite::SqliteStore::open(&dir.path().join("concord.db")).await.unwrap();
        Fresh { store: std::sync::Arc::new(store), _keep: Box::new(dir) }
    }

    /// A database of its own in the process's throwaway cluster (dropped with the cluster).
    pub async fn postgres() -> Fresh {
        let url = crate::postgres_cluster::cluster().fresh_database().await;
        let store = concord_store::postgres::PgStore::connect(&url).await.unwrap();
        Fresh { store: std::sync::Arc::new(store), _keep: Box::new(()) }
    }
}

/// A device of `user_id` with nothing but its kind.
pub fn device(user_id: &str, kind: DeviceKind) -> NewDevice {
    NewDevice { user_id: user_id.to_owned(), kind, name: None, vault_id: None, client_version: None, user_agent: None }
}

/// A password registration, unconfirmed until its link is opened.
pub fn registration(username: &str, email: &str) -> NewUser {
    NewUser { email: email.to_owned(), username: username.to_owned(), password_hash: "stranger's".to_owned() }
}

/// One `#[tokio::test]` per (backend, area, story), named `backend::area::story`. Multi-threaded,
/// so the concurrent stories really run their writers in parallel.
macro_rules! stories {
    ($backend:ident; $($area:ident: [$($story:ident),* $(,)?]),* $(,)?) => {
        mod $backend {
            $(mod $area {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $story() {
                    let fresh = crate::backends::$backend().await;
                    crate::$area::$story(fresh.store.clone()).await;
                })*
            })*
        }
    };
}

/// Every story of the contract, for one backend.
macro_rules! every_story {
    ($backend:ident) => {
        stories!($backend;
            accounts: [
                story_usernames_are_one_name_in_any_case,
                story_sign_in_codes_work_once_and_lock_after_too_many_wrong_guesses,
                story_account_tokens_are_single_use_and_for_their_purpose,
                story_reset_revokes_every_device,
                story_cleanup_removes_expired_sessions_only,
                story_proving_an_address_discards_an_unconfirmed_registration_of_it,
                story_a_reset_of_an_unconfirmed_account_keeps_only_the_new_password,
                story_cleanup_frees_names_held_by_stale_unconfirmed_registrations,
                story_devices_are_revoked_and_deleted_only_by_their_owner,
                story_device_caps_hold_under_concurrent_inserts,
                story_a_new_session_at_the_cap_evicts_the_oldest_session_never_a_client,
                story_still_valid_applies_expiry_revocation_and_blocking_to_every_token_at_once,
                story_admin_changes_report_whether_the_user_exists,
            ],
            workspaces: [
                story_workspaces_are_created_once_and_deleted_with_their_documents,
                story_a_workspace_is_visible_only_to_its_owner,
                story_workspace_caps_spare_default_and_existing_names,
            ],
            documents: [
                story_a_document_is_its_snapshot_plus_later_updates,
                story_a_stale_or_overreaching_compaction_changes_nothing,
                story_racing_compactions_keep_the_latest_snapshot,
                story_concurrent_appenders_get_gap_free_seqs_in_commit_order,
                story_a_large_interleaved_batch_is_numbered_in_batch_order,
                story_concurrent_batches_sharing_documents_in_opposite_orders_both_commit,
                story_a_failed_batch_stores_nothing,
                story_documents_are_listed_found_and_deleted_by_name,
                story_updates_after_a_seq_are_what_a_holder_of_it_lacks,
            ],
            history: [
                story_versions_are_listed_read_back_and_kept_within_retention,
            ],
            oplog: [
                story_sequences_are_per_scope_and_resent_ops_are_acknowledged_once,
                story_a_full_batch_is_stored_field_for_field_and_resent_parts_take_no_number,
                story_pull_pages_through_the_log_with_the_head,
                story_idempotency_key_replays_the_stored_response_per_scope,
                story_purged_idempotency_keys_are_new_pushes_and_younger_ones_still_replay,
                story_conflicts_are_advisory,
                story_blob_references_are_checked_per_scope_inside_the_push,
                story_concurrent_pushers_get_every_op_once_gap_free_in_commit_order,
                story_concurrent_pushes_with_mixed_outcomes_each_get_their_own,
            ],
            blobs: [
                story_references_are_per_scope_and_quotas_count_vault_and_user,
                story_concurrent_uploads_cannot_overshoot_a_quota,
                story_a_claim_holds_off_references_until_released,
                story_an_expired_claim_blocks_nothing_and_is_taken_over,
                story_a_claim_and_a_reference_racing_never_both_win,
            ],
            shares: [
                story_a_share_opens_while_live_and_only_its_owner_manages_it,
                story_a_share_ends_with_its_workspace_and_with_its_owners_block,
            ],
            usage: [story_usage_counts_a_users_vaults_workspaces_and_documents_only],
            admin: [
                story_stats_count_each_thing_once,
                story_user_listings_filter_sort_and_page_without_overlap,
                story_editing_a_user_refuses_names_another_user_has,
                story_device_listings_filter_by_user_kind_and_state,
                story_deleting_a_user_or_a_vault_unreferences_its_blobs,
                story_workspace_listings_count_documents_and_bytes,
                story_the_audit_log_filters_pages_and_ages_out,
                story_live_settings_are_saved_and_cleared_together,
            ],
            webhooks: [
                story_hooks_are_their_owners_and_events_reach_the_hooks_that_subscribe,
                story_claims_hold_deliveries_and_attempts_retry_until_delivered_or_given_up,
            ],
        );
    };
}

// The backends the contract runs against; a new backend adds its line here.
every_story!(sqlite);
every_story!(postgres);
