//! The bounded fuzz run of `cargo test` for core's decoders: one test per target of
//! `targets.rs`, each driven by `driver.rs` for at most `CONCORD_FUZZ_SECS` (default 2).

mod driver;
mod targets;

use driver::fuzz;

#[test]
fn fuzz_yjs_frame() {
    fuzz("yjs_frame", targets::yjs_frame);
}

#[test]
fn fuzz_yjs_session() {
    fuzz("yjs_session", targets::yjs_session);
}

#[test]
fn fuzz_hocuspocus_session() {
    fuzz("hocuspocus_session", targets::hocuspocus_session);
}

#[test]
fn fuzz_range_raw() {
    fuzz("range_raw", targets::range_raw);
}

#[test]
fn fuzz_range_oracle() {
    fuzz("range_oracle", targets::range_oracle);
}

#[test]
fn fuzz_multipart_head() {
    fuzz("multipart_head", targets::multipart_head);
}

#[test]
fn fuzz_multipart_file() {
    fuzz("multipart_file", targets::multipart_file);
}

#[test]
fn fuzz_doc_name() {
    fuzz("doc_name", targets::doc_name);
}

#[test]
fn fuzz_oplog_push() {
    fuzz("oplog_push", targets::oplog_push);
}
