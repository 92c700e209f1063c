//! The room's delivery path under a join storm: many clients joining one large document at once
//! share one encoded state, sent in fragments, and every one of them ends up holding all of it.

use crate::helpers::TestApp;
use crate::yjs_client::{Provider, RawClient};

/// Text the writer types per update, and how many updates: 2 MB in all, so the state is sent in
/// about 30 fragments of 64 KiB, and a copy of it per joiner (what the room did before) would
/// show plainly against the bound below.
const CHUNK: usize = 100_000;
const CHUNKS: usize = 20;
/// Joiners connecting at once: the storm's shape (the benchmark's Y4 has 200 of a 5 MB document)
/// at a size that takes a few seconds here.
const JOINERS: usize = 40;

#[tokio::test]
async fn a_storm_of_joiners_of_a_large_document_all_converge_on_one_shared_state() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/big?token={alice}"));
    let mut writer = RawClient::connect(&url).await;
    let mut expected = String::new();
    for i in 0..CHUNKS {
        let chunk: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), CHUNK).collect();
        writer.insert(&chunk).await;
        expected.push_str(&chunk);
    }
    // A witness holding everything proves the server took every update.
    let mut witness = RawClient::connect(&url).await;
    assert!(witness.pump_until(|c| c.text().len() == expected.len()).await);
    let before = app.peak_rss_kib();

    let joiners = (0..JOINERS).map(|_| {
        let url = url.clone();
        let expected = &expected;
        async move {
            let mut joiner = RawClient::connect(&url).await;
            assert!(joiner.pump_until(|c| c.text().len() == expected.len()).await, "closed before syncing");
            assert!(joiner.text() == *expected, "a joiner's text differs from the writer's");
            joiner
        }
    });
    let joined = futures_util::future::join_all(joiners).await;
    // The real y-websocket provider reassembles the fragmented SyncStep2 too.
    let mut provider = Provider::start(&app, "big", &alice).await;
    let state = provider.wait_for(|s| s["text"].as_str().is_some_and(|t| t.len() == expected.len())).await;
    assert!(state["text"] == expected.as_str());
    provider.quit().await;

    // One encoded state shared by every joiner, and socket buffers a few fragments long: the
    // storm adds far less than the document once per joiner (80 MB) would.
    let grown_mib = (app.peak_rss_kib() - before) / 1024;
    let per_joiner_mib = (CHUNK * CHUNKS * JOINERS / (1 << 20)) as u64;
    assert!(grown_mib < per_joiner_mib / 2, "peak RSS grew {grown_mib} MiB during the storm");
    drop((joined, writer, witness));
}
