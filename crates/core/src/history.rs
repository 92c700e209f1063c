//! Document history rules: when a version is taken automatically, which versions retention
//! keeps, and the update that restores a version (computed from the current state and the
//! version's, so a restore reaches clients as an ordinary update). Bytes and `now` in, decisions
//! and bytes out.

use std::collections::BTreeSet;

use yrs::branch::{Branch, BranchPtr};
use yrs::types::Delta;
use yrs::types::text::YChange;
use yrs::types::xml::XmlIn;
use yrs::types::{AsPrelim, ToJson};
use yrs::updates::decoder::Decode;
use yrs::{
    Array, ArrayRef, Doc, GetString, In, Map, MapRef, Out, ReadTxn, Text, TextRef, Transact, TransactionMut, Update,
    WriteTxn, XmlFragment, XmlFragmentRef, XmlOut,
};

/// Why a restore could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("{0} state does not decode: {1}")]
pub struct RestoreError(&'static str, String);

/// Whether to take an automatic version now: only if the document changed since the last one,
/// and then either because it is compacting (its updates are being folded away) or because
/// `interval_secs` have passed since the last version (or there is none yet) while it is active.
pub fn version_due(
    last_version_at: Option<i64>,
    changed: bool,
    compacting: bool,
    now: i64,
    interval_secs: i64,
) -> bool {
    changed && (compacting || last_version_at.is_none_or(|at| now - at >= interval_secs))
}

/// Which versions to keep; a version is deleted once it is past either bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Newest versions kept per document.
    pub keep: usize,
    /// Versions older than this (seconds) are deleted, however few remain.
    pub max_age_secs: i64,
}

impl Retention {
    /// Of versions `(id, created_at)` newest first, the ids to delete at `now`.
    pub fn expired(&self, versions: &[(i64, i64)], now: i64) -> Vec<i64> {
        versions
            .iter()
            .enumerate()
            .filter(|(index, (_, at))| *index >= self.keep || now - at > self.max_age_secs)
            .map(|(_, (id, _))| *id)
            .collect()
    }
}

fn load(what: &'static str, state: &[u8]) -> Result<Doc, RestoreError> {
    let doc = Doc::new();
    let update = Update::decode_v1(state).map_err(|e| RestoreError(what, e.to_string()))?;
    doc.transact_mut().apply_update(update).map_err(|e| RestoreError(what, e.to_string()))?;
    Ok(doc)
}

/// The update that, applied to the document whose whole state is `current`, makes every
/// top-level type equal to its content in `version` (lib0 v1 both): roots the version lacks are
/// emptied, texts and XML are rewritten where they differ, map keys set or removed where they
/// differ, arrays rewritten where they differ. Ordinary CRDT operations, so clients merge it
/// like any edit; empty when the document already equals the version.
pub fn restore_update(current: &[u8], version: &[u8]) -> Result<Vec<u8>, RestoreError> {
    let doc = load("current", current)?;
    let target = load("version", version)?;
    let target_txn = target.transact();
    let mut txn = doc.transact_mut();
    let wanted: Vec<(String, Out)> = target_txn.root_refs().map(|(name, out)| (name.to_owned(), out)).collect();
    let present: BTreeSet<String> = txn.root_refs().map(|(name, _)| name.to_owned()).collect();
    for name in present.iter().filter(|name| !wanted.iter().any(|(wanted, _)| wanted == *name)) {
        let prelim = txn.root_refs().find(|(n, _)| n == name).map(|(_, out)| out.as_prelim(&txn));
        empty_root(&mut txn, name, prelim);
    }
    for (name, out) in &wanted {
        match out.as_prelim(&target_txn) {
            In::Text(_) | In::XmlText(_) => {
                let source = TextRef::from(root_branch(out));
                let text = txn.get_or_insert_text(name.as_str());
                if text.get_string(&txn) != source.get_string(&target_txn) {
                    let len = text.len(&txn);
                    text.remove_range(&mut txn, 0, len);
                    let delta = source.diff(&target_txn, YChange::identity);
                    let inserts =
                        delta.into_iter().map(|d| Delta::Inserted(d.insert.as_prelim(&target_txn), d.attributes));
                    text.apply_delta(&mut txn, inserts);
                }
            }
            In::Map(_) => {
                let source = MapRef::from(root_branch(out));
                let map = txn.get_or_insert_map(name.as_str());
                let keys: Vec<String> = map.keys(&txn).map(str::to_owned).collect();
                for key in keys.iter().filter(|key| !source.contains_key(&target_txn, key)) {
                    map.remove(&mut txn, key);
                }
                for (key, value) in source.iter(&target_txn) {
                    let same = map.get(&txn, key).map(|v| v.to_json(&txn)) == Some(value.to_json(&target_txn));
                    if !same {
                        map.insert(&mut txn, key, value.as_prelim(&target_txn));
                    }
                }
            }
            In::Array(_) => {
                let source = ArrayRef::from(root_branch(out));
                let array = txn.get_or_insert_array(name.as_str());
                if array.to_json(&txn) != source.to_json(&target_txn) {
                    let len = array.len(&txn);
                    array.remove_range(&mut txn, 0, len);
                    for (index, value) in source.iter(&target_txn).enumerate() {
                        array.insert(&mut txn, index as u32, value.as_prelim(&target_txn));
                    }
                }
            }
            In::XmlElement(_) | In::XmlFragment(_) => {
                let source = XmlFragmentRef::from(root_branch(out));
                let fragment = txn.get_or_insert_xml_fragment(name.as_str());
                if fragment.get_string(&txn) != source.get_string(&target_txn) {
                    let len = fragment.len(&txn);
                    fragment.remove_range(&mut txn, 0, len);
                    for (index, child) in source.children(&target_txn).enumerate() {
                        fragment.insert(&mut txn, index as u32, xml_prelim(&child, &target_txn));
                    }
                }
            }
            // Roots yrs cannot read as one of the above (none a client can create today).
            _ => {}
        }
    }
    Ok(txn.encode_update_v1())
}

fn root_branch(out: &Out) -> BranchPtr {
    match out {
        Out::YText(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::YMap(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::YArray(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::YXmlFragment(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::YXmlElement(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::YXmlText(r) => BranchPtr::from(AsRef::<Branch>::as_ref(r)),
        Out::UndefinedRef(branch) => *branch,
        // Roots are always shared types.
        other => unreachable!("a root is a shared type, not {other:?}"),
    }
}

fn xml_prelim<T: ReadTxn>(node: &XmlOut, txn: &T) -> XmlIn {
    match node {
        XmlOut::Element(e) => XmlIn::from(e.as_prelim(txn)),
        XmlOut::Fragment(f) => XmlIn::from(f.as_prelim(txn)),
        XmlOut::Text(t) => XmlIn::from(t.as_prelim(txn)),
    }
}

/// Empties a root the version does not have (a root cannot be removed from a Yjs document).
fn empty_root(txn: &mut TransactionMut, name: &str, prelim: Option<In>) {
    match prelim {
        Some(In::Map(_)) => {
            let map = txn.get_or_insert_map(name);
            map.clear(txn);
        }
        Some(In::Array(_)) => {
            let array = txn.get_or_insert_array(name);
            let len = array.len(txn);
            array.remove_range(txn, 0, len);
        }
        Some(In::XmlElement(_) | In::XmlFragment(_)) => {
            let fragment = txn.get_or_insert_xml_fragment(name);
            let len = fragment.len(txn);
            fragment.remove_range(txn, 0, len);
        }
        Some(In::Text(_) | In::XmlText(_)) => {
            let text = txn.get_or_insert_text(name);
            let len = text.len(txn);
            text.remove_range(txn, 0, len);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use yrs::{StateVector, XmlElementPrelim, XmlTextPrelim};

    use super::*;
    use crate::yjs::Room;

    fn check_due(last: Option<i64>, changed: bool, compacting: bool, now: i64, expected: bool) {
        assert_eq!(version_due(last, changed, compacting, now, 600), expected, "{last:?} {changed} {compacting} {now}");
    }

    #[test]
    fn versions_are_due_on_change_at_compaction_or_after_the_interval() {
        check_due(None, false, true, 0, false);
        check_due(None, true, false, 0, true);
        check_due(Some(100), true, false, 699, false);
        check_due(Some(100), true, false, 700, true);
        check_due(Some(100), true, true, 101, true);
        check_due(Some(100), false, true, 10_000, false);
    }

    fn check_expired(keep: usize, max_age_secs: i64, versions: &[(i64, i64)], now: i64, expected: &[i64]) {
        assert_eq!(Retention { keep, max_age_secs }.expired(versions, now), expected);
    }

    #[test]
    fn retention_keeps_the_newest_within_count_and_age() {
        let versions = [(5, 1000), (4, 900), (3, 800), (2, 100)];
        check_expired(10, 10_000, &versions, 1000, &[]);
        check_expired(2, 10_000, &versions, 1000, &[3, 2]);
        check_expired(10, 500, &versions, 1000, &[2]);
        check_expired(0, 10_000, &versions, 1000, &[5, 4, 3, 2]);
        check_expired(3, 150, &versions, 1000, &[3, 2]);
    }

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    fn json(state: &[u8]) -> serde_json::Value {
        serde_json::to_value(Room::load(Some(state), []).unwrap().to_json().unwrap()).unwrap()
    }

    fn edit(doc: &Doc, f: impl FnOnce(&mut TransactionMut)) {
        let mut txn = doc.transact_mut();
        f(&mut txn);
    }

    #[test]
    fn a_restore_update_makes_every_root_equal_the_version_and_merges_with_peers() {
        let doc = Doc::new();
        edit(&doc, |txn| {
            let text = txn.get_or_insert_text("body");
            text.insert(txn, 0, "version one");
            let map = txn.get_or_insert_map("m");
            map.insert(txn, "kept", 1);
            map.insert(txn, "changed", "old");
            let array = txn.get_or_insert_array("list");
            array.push_back(txn, "a");
            let xml = txn.get_or_insert_xml_fragment("default");
            let p = xml.push_back(txn, XmlElementPrelim::empty("p"));
            p.push_back(txn, XmlTextPrelim::new("para"));
        });
        let version = state(&doc);
        let expected = json(&version);
        edit(&doc, |txn| {
            let text = txn.get_or_insert_text("body");
            text.insert(txn, 0, "not ");
            let map = txn.get_or_insert_map("m");
            map.insert(txn, "changed", "new");
            map.insert(txn, "added", true);
            let array = txn.get_or_insert_array("list");
            array.push_back(txn, "b");
            let xml = txn.get_or_insert_xml_fragment("default");
            xml.push_back(txn, XmlElementPrelim::empty("h1"));
            txn.get_or_insert_text("extra").insert(txn, 0, "later root");
        });
        assert_ne!(json(&state(&doc)), expected);
        // A peer that has the current state receives the restore as an ordinary update.
        let peer = Doc::new();
        peer.transact_mut().apply_update(Update::decode_v1(&state(&doc)).unwrap()).unwrap();
        let update = restore_update(&state(&doc), &version).unwrap();
        peer.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
        let mut restored = json(&state(&peer));
        let extra = restored.as_object_mut().unwrap().remove("extra");
        assert_eq!(extra, Some(serde_json::json!([])), "a root the version lacks is emptied");
        assert_eq!(restored, expected);
        // Restoring what the document already is changes nothing.
        let again = restore_update(&state(&peer), &state(&peer)).unwrap();
        let applied = Doc::new();
        applied.transact_mut().apply_update(Update::decode_v1(&state(&peer)).unwrap()).unwrap();
        let before = applied.transact().state_vector();
        applied.transact_mut().apply_update(Update::decode_v1(&again).unwrap()).unwrap();
        assert_eq!(applied.transact().state_vector(), before);
        assert!(restore_update(b"\x05", &version).is_err());
    }
}
