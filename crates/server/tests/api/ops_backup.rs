//! Online backup and restore: a backup taken while clients push ops, upload blobs and edit a
//! document restores into a directory that passes `doctor` and serves everything acknowledged
//! before the backup began, to the old tokens; clients ahead of it resync or push their state
//! back. Also: damaged archives and occupied targets are refused, and scheduled backups rotate.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use crate::helpers::{CliRun, DEADLINE, TestApp, concord_cli, eventually, json as json_of};
use crate::oplog_client::{Device, device, download_verified, op, pull_all, pull_raw, push, upload};
use crate::yjs_client::{RawClient, open_ws};

/// The tests run as root (they install packages); restores must hand files to the directory's owner.
const NOBODY: u32 = 65534;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn doctor(dir: &Path) -> CliRun {
    concord_cli(&["doctor", "--data", path(dir)], "").await
}

/// Every op id that was acknowledged and every blob a file op names.
#[derive(Default)]
struct Acked {
    ops: Vec<String>,
    blobs: Vec<(String, usize)>,
}

#[tokio::test]
async fn a_backup_under_load_restores_everything_acknowledged_before_it() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let session = app.sign_in("carol@example.com").await;
    let doc_url = |app: &TestApp| app.ws_url(&format!("/sync/notes?token={session}"));
    let mut editor = RawClient::connect(&doc_url(&app)).await;
    let mut observer = RawClient::connect(&doc_url(&app)).await;
    editor.insert("before;").await;
    assert!(observer.pump_until(|c| c.text().contains("before;")).await);

    let acked = Mutex::new(Acked::default());
    let stop = AtomicBool::new(false);
    // What the observer had received (so what the server had stored) when the backup started.
    let seen_by_observer = Mutex::new(String::new());
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = archive_dir.path().join("backup.tar");

    let pusher = async {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let ops = (0..5).map(|k| op(&format!("p{i}-{k}"), &format!("e{i}"), "update", json!({}), 0)).collect();
            let r = push(&app, &d, ops).await;
            let ids = r["accepted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned());
            acked.lock().unwrap().ops.extend(ids);
            i += 1;
        }
    };
    let uploader = async {
        let mut i = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let data: Vec<u8> = (0..20_000u32).map(|b| (b.wrapping_mul(31).wrapping_add(i)) as u8).collect();
            let sha = upload(&app, &d, &data).await;
            let file = op(
                &format!("f{i}"),
                &format!("f{i}.bin"),
                "create",
                json!({"blob": {"sha256": sha, "size": data.len()}}),
                0,
            );
            push(&app, &d, vec![file]).await;
            let mut acked = acked.lock().unwrap();
            acked.ops.push(format!("f{i}"));
            acked.blobs.push((sha, data.len()));
            i += 1;
        }
    };
    let edits = async {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            editor.insert(&format!("e{n};")).await;
            observer.pump_for(Duration::from_millis(5)).await;
            *seen_by_observer.lock().unwrap() = observer.text();
            n += 1;
        }
    };
    let backup = async {
        eventually(|| async { acked.lock().unwrap().ops.len() >= 50 }).await;
        let before: HashSet<String> = acked.lock().unwrap().ops.iter().cloned().collect();
        let blobs_before = acked.lock().unwrap().blobs.clone();
        let text_before = seen_by_observer.lock().unwrap().clone();
        let run = concord_cli(&["backup", "--data", path(app.data_dir()), "--out", path(&archive)], "").await;
        assert_eq!(run.code, 0, "{run:?}");
        // Writes go on after the backup, so the live server ends up ahead of it.
        let after = acked.lock().unwrap().ops.len();
        eventually(|| async { acked.lock().unwrap().ops.len() >= after + 20 }).await;
        stop.store(true, Ordering::SeqCst);
        (before, blobs_before, text_before)
    };
    let ((before, blobs_before, text_before), (), (), ()) = tokio::join!(backup, pusher, uploader, edits);
    assert!(text_before.contains("before;"));
    let (_, live_head) = pull_all(&app, &d, 0).await;

    // An occupied target is refused and left alone; a damaged archive restores nothing.
    let occupied = tempfile::tempdir().unwrap();
    std::fs::write(occupied.path().join("keep.txt"), b"mine").unwrap();
    let refused = concord_cli(&["restore", "--from", path(&archive), "--data", path(occupied.path())], "").await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--force"), "{refused:?}");
    assert_eq!(std::fs::read_dir(occupied.path()).unwrap().count(), 1);
    let mut damaged = std::fs::read(&archive).unwrap();
    damaged[512 + 4096] ^= 0x40; // inside the database entry, which follows the first 512-byte header
    let damaged_path = archive_dir.path().join("damaged.tar");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let run = concord_cli(&["restore", "--from", path(&damaged_path), "--data", path(empty.path())], "").await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("checksum mismatch for concord.db"), "{run:?}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "nothing restored");

    // With --force, verified data replaces what was there; unrelated files stay. Restored files
    // take the directory's owner (the service user), since operators restore as root.
    std::os::unix::fs::chown(occupied.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::write(occupied.path().join("concord.db"), b"not a database").unwrap();
    std::fs::create_dir_all(occupied.path().join("blobs/ff/ff")).unwrap();
    std::fs::write(occupied.path().join("blobs/ff/ff/stale"), b"old").unwrap();
    let forced =
        concord_cli(&["restore", "--from", path(&archive), "--data", path(occupied.path()), "--force"], "").await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(!occupied.path().join("blobs/ff").exists(), "old blobs replaced");
    assert_eq!(std::fs::read(occupied.path().join("keep.txt")).unwrap(), b"mine");
    assert_eq!(doctor(occupied.path()).await.code, 0);
    for restored in ["concord.db", "blobs"] {
        let meta = std::fs::metadata(occupied.path().join(restored)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{restored}");
    }

    let restored = tempfile::tempdir().unwrap();
    let run = concord_cli(&["restore", "--from", path(&archive), "--data", path(restored.path())], "").await;
    assert_eq!(run.code, 0, "{run:?}");
    let checked = doctor(restored.path()).await;
    assert_eq!(checked.code, 0, "{checked:?}");
    for line in ["integrity_check: ok", "referenced blobs present", "no orphan blob files"] {
        assert!(checked.stdout.contains(line), "{line:?} in {}", checked.stdout);
    }

    let b = TestApp::builder().data_dir(restored.path()).spawn().await;
    // The old device token pulls a gap-free log holding every op acknowledged before the backup.
    let (ops, head) = pull_all(&b, &d, 0).await;
    let restored_ids: HashSet<String> = ops.iter().map(|o| o["op_id"].as_str().unwrap().to_owned()).collect();
    let lost: Vec<&String> = before.difference(&restored_ids).collect();
    assert!(lost.is_empty(), "acknowledged before the backup but not restored: {lost:?}");
    assert!(head < live_head, "the backup predates the last writes ({head} vs {live_head})");
    for (sha, size) in &blobs_before {
        download_verified(&b, &d, sha, *size).await;
    }
    // Every blob the restored log names is there too, not only those acknowledged before.
    for file in ops.iter().filter(|o| o["op_id"].as_str().unwrap().starts_with('f')) {
        let payload: Value = serde_json::from_str(file["payload_json"].as_str().unwrap()).unwrap();
        download_verified(
            &b,
            &d,
            payload["blob"]["sha256"].as_str().unwrap(),
            payload["blob"]["size"].as_u64().unwrap() as usize,
        )
        .await;
    }
    // A client whose cursor is past the restored head is told to resync; one at the head is served.
    let ahead = json_of(pull_raw(&b, &d, live_head, 0).await, 409).await;
    assert_eq!(ahead["code"], "resync_required");
    json_of(pull_raw(&b, &d, head, 0).await, 200).await;
    // The Diaryx session token still works, over HTTP and for the document.
    json_of(b.get_auth("/auth/me", &session).await, 200).await;
    let mut fresh = RawClient::connect(&doc_url(&b)).await;
    assert!(fresh.pump_until(|c| c.text().starts_with(&text_before)).await, "restored text holds what was stored");

    // The editor holds state newer than the backup; reconnecting pushes it back.
    let full = editor.text();
    assert!(full.len() > text_before.len());
    let ws = open_ws(&doc_url(&b)).await.unwrap();
    let mut back = RawClient { ws, doc: editor.doc, closed: None };
    let state_vector = back.doc.transact().state_vector();
    back.send(Message::Sync(SyncMessage::SyncStep1(state_vector)).encode_v1()).await;
    let joined = async {
        let mut late = RawClient::connect(&doc_url(&b)).await;
        assert!(late.pump_until(|c| c.text() == full).await);
    };
    tokio::select! {
        () = joined => {}
        () = back.pump_for(DEADLINE) => panic!("the reconnected editor's state never reached the server"),
    }
    assert!(fresh.pump_until(|c| c.text() == full).await, "open clients receive the pushed-back state");
}

#[tokio::test]
async fn scheduled_backups_rotate_and_each_restores() {
    let archives = tempfile::tempdir().unwrap();
    let app = TestApp::builder()
        .arg("--backup-dir")
        .arg(path(archives.path()))
        .arg("--backup-every")
        .arg("1s")
        .arg("--backup-keep")
        .arg("2")
        .spawn()
        .await;
    let d: Device = device(&app, "alice", "v").await;
    push(&app, &d, vec![op("scheduled", "e", "create", json!({}), 0)]).await;
    // Three runs prove rotation: the oldest is deleted, two remain.
    eventually(|| async { app.logs().matches("backup written").count() >= 3 }).await;
    let archived = || {
        let mut names: Vec<String> = std::fs::read_dir(archives.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tar"))
            .collect();
        names.sort();
        names
    };
    // A fourth run may be renaming its archive into place just now, before it prunes.
    eventually(|| async { archived().len() == 2 }).await;
    let names = archived();
    let newest = archives.path().join(names.last().unwrap());
    let restored = tempfile::tempdir().unwrap();
    let run = concord_cli(&["restore", "--from", path(&newest), "--data", path(restored.path())], "").await;
    assert_eq!(run.code, 0, "{run:?}");
    let b = TestApp::builder().data_dir(restored.path()).spawn().await;
    let (ops, _) = pull_all(&b, &d, 0).await;
    assert_eq!(ops[0]["op_id"], "scheduled");
}
