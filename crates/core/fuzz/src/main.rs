//! One libFuzzer binary for all of core's fuzz targets, chosen by `CONCORD_FUZZ_TARGET`; the
//! targets are the test suite's own, included by path.

#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

use std::sync::OnceLock;

fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("CONCORD_FUZZ_TARGET").unwrap_or_default();
        match name.as_str() {
            "yjs_frame" => targets::yjs_frame,
            "yjs_session" => targets::yjs_session,
            "hocuspocus_session" => targets::hocuspocus_session,
            "range_raw" => targets::range_raw,
            "range_oracle" => targets::range_oracle,
            "multipart_head" => targets::multipart_head,
            "multipart_file" => targets::multipart_file,
            "doc_name" => targets::doc_name,
            "oplog_push" => targets::oplog_push,
            other => panic!("unknown CONCORD_FUZZ_TARGET {other:?}"),
        }
    })
}

libfuzzer_sys::fuzz_target!(
    // libfuzzer-sys aborts on every panic, also the ones core catches on purpose (yrs asserts
    // where it should report; `wire::without_panics` and `Room::apply` turn those into errors).
    // A silent hook lets caught panics pass; one escaping a target still aborts in libfuzzer-sys's
    // own `catch_unwind`, and replaying the saved input with the test driver shows its message.
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| target()(data)
);
