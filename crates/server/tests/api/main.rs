//! Black-box tests: each starts the real `concord` binary on port 0 with its own data directory
//! and talks to it over HTTP and WebSocket. One test binary, so the suite links once.

mod accounts_diaryx;
mod accounts_limits;
mod accounts_secret;
mod accounts_security;
mod accounts_slice;
mod accounts_takeover;
mod accounts_verstak;
mod blobs_limits;
mod blobs_range;
mod blobs_upload;
mod config_secrets;
mod disk_full;
mod edge_limits;
mod foundation;
mod fuzz_json;
mod helpers;
mod mail_mode;
mod maintenance;
mod metrics;
mod oplog_client;
mod oplog_desktop;
mod oplog_input;
mod oplog_push_pull;
mod ops_backup;
mod ops_cli;
mod ops_install;
mod pg_nodes;
mod pg_server;
#[path = "../../../store/tests/support/postgres_cluster.rs"]
mod postgres_cluster;
mod proxy;
mod smtp_sink;
mod sync_limits;
mod tidy;
mod yjs_client;
mod yjs_durability;
mod yjs_isolation;
mod yjs_limits;
mod yjs_revocation;
mod yjs_robustness;
mod yjs_sync;
mod yjs_wire;
