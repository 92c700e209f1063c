-- Documents get an opaque id (`uid`) that is all callers see, and their updates are numbered per
-- document by a head row (`docs.head`) advanced in the appending transaction, as the operation log
-- numbers ops per scope: seqs are 1, 2, 3... per document with no gaps and in commit order, on any
-- backend and with writers on several nodes (see `src/sqlite/docs.rs`). The integer `id` stays
-- as this backend's internal key (other tables may reference it) and never leaves it.
--
-- Existing data: each document's `uid` is `doc_<id>`. Updates already folded into the snapshot
-- were deleted by the compaction that folded them, so the remaining ones (seq > snapshot_seq) are
-- renumbered 1..n in their old order and the snapshot covers seq 0: the document reads the same.
ALTER TABLE docs ADD COLUMN uid TEXT;
ALTER TABLE docs ADD COLUMN head INTEGER NOT NULL DEFAULT 0 CHECK (head >= 0);
UPDATE docs SET uid = 'doc_' || id;
CREATE UNIQUE INDEX docs_by_uid ON docs(uid);

CREATE TABLE doc_updates_v2 (
    doc_id INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL CHECK (seq > 0),
    data   BLOB NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
INSERT INTO doc_updates_v2 (doc_id, seq, data)
SELECT u.doc_id, row_number() OVER (PARTITION BY u.doc_id ORDER BY u.seq), u.data
FROM doc_updates u JOIN docs d ON d.id = u.doc_id
WHERE u.seq > d.snapshot_seq;
UPDATE docs SET head = (SELECT count(*) FROM doc_updates_v2 u WHERE u.doc_id = docs.id), snapshot_seq = 0;

DROP TABLE doc_updates;
DELETE FROM sqlite_sequence WHERE name = 'doc_updates';
ALTER TABLE doc_updates_v2 RENAME TO doc_updates;
