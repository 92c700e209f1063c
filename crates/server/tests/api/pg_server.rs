//! The real server on PostgreSQL (`DATABASE_URL`): a representative set of the black-box tests,
//! the same test bodies as on SQLite, each on a fresh database of the process's throwaway
//! cluster. The store contract already pins every trait behaviour on both backends; these prove
//! the wiring (setting, pool, migrations at start, caps at start) and the promises that only a
//! running server shows: concurrent pushers through HTTP, Yjs through real providers, and that
//! what was acknowledged survives `kill -9` of the server.

use crate::helpers::{TestApp, concord_cli, concord_refuses_to_start};
use crate::smtp_sink::SmtpSink;

#[tokio::test]
async fn accounts_register_confirm_login_pair_revoke_and_reset() {
    let sink = SmtpSink::start().await;
    let app = sink.app().postgres().await.spawn().await;
    crate::accounts_verstak::register_flow(&sink, app).await;
}

#[tokio::test]
async fn oplog_four_pushers_and_two_pullers_see_every_op_once_in_order() {
    crate::oplog_push_pull::four_pushers_and_two_pullers(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn oplog_events_announce_the_new_head_after_each_push() {
    crate::oplog_push_pull::events_announce_new_heads(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn acknowledged_pushes_and_uploads_survive_kill_9() {
    crate::oplog_push_pull::pushes_and_uploads_survive_kill_9(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn yjs_providers_converge_and_a_late_joiner_gets_everything() {
    crate::yjs_sync::providers_converge(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn yjs_every_update_an_observer_received_survives_kill_9() {
    crate::yjs_durability::observed_updates_survive_kill_9(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn docs_deleting_a_document_closes_its_connections_and_forgets_it() {
    crate::docs_http::deleting_closes_and_forgets(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn docs_deleting_a_workspace_closes_its_rooms_with_the_workspace_close_and_no_other() {
    crate::docs_http::deleting_a_workspace_closes_its_rooms(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn history_a_restore_reaches_every_provider_and_they_converge_on_the_versions_content() {
    crate::history_restore::restore_reaches_every_provider(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn blobs_upload_download_head_range_and_etag() {
    crate::blobs_upload::upload_download_range(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn event_streams_end_when_their_device_is_revoked_or_their_user_blocked() {
    // Blocking goes through the recovery CLI on the same database (`--database-url`).
    crate::oplog_push_pull::streams_end_on_revocation_and_blocking(TestApp::on_postgres().await).await;
}

#[tokio::test]
async fn the_server_on_postgres_keeps_no_sqlite_file_and_the_file_commands_refuse() {
    let app = TestApp::on_postgres().await;
    app.sign_in("alice@example.com").await;
    assert!(!app.data_dir().join("concord.db").exists(), "the data directory holds blobs only");
    let url = app.env_value("DATABASE_URL").expect("on PostgreSQL");
    let data = app.data_dir().to_str().unwrap().to_owned();
    // The account commands work on the server's database; the file commands refuse (exit 2).
    let listed = concord_cli(&["user", "list", "--data", &data, "--database-url", &url], "").await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("alice@example.com"), "{listed:?}");
    for (command, instead) in [("backup", "pg_dump"), ("doctor", "pg_amcheck")] {
        let mut args = vec![command, "--data", &data, "--database-url", &url];
        if command == "backup" {
            args.extend(["--out", "/nonexistent/backup.tar"]);
        }
        let run = concord_cli(&args, "").await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("SQLite-only") && run.stderr.contains(instead), "{run:?}");
    }
}

#[test]
fn a_database_url_is_checked_at_start() {
    // (environment, what the refusal names)
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("DATABASE_URL", "mysql://localhost/db")], "DATABASE_URL"),
        (&[("DATABASE_URL", "postgres://localhost/db"), ("DATABASE_PATH", "/tmp/x.db")], "DATABASE_PATH"),
        (&[("DATABASE_URL", "postgres://localhost/db"), ("CONCORD_BACKUP_DIR", "/tmp/b")], "pg_dump"),
    ];
    for (envs, named) in cases {
        let stderr = concord_refuses_to_start(envs, &[]);
        assert!(stderr.contains(named), "{envs:?}: {stderr}");
        assert!(!stderr.contains("localhost/db"), "the URL (which may hold a password) is not echoed: {stderr}");
    }
}
