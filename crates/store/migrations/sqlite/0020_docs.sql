-- Yjs documents. Each belongs to one workspace (and so to one user). Its state is the snapshot
-- plus every update appended after it; compaction folds updates into a new snapshot.

CREATE TABLE docs (
    id           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- A lib0 v1 update holding the whole document as of `snapshot_seq`; NULL before compaction.
    snapshot     BLOB,
    -- Updates with seq <= snapshot_seq are contained in the snapshot (and deleted).
    snapshot_seq INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);

-- AUTOINCREMENT so that a seq is never reused after compaction deletes the newest rows.
CREATE TABLE doc_updates (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
    data   BLOB NOT NULL
);
CREATE INDEX doc_updates_by_doc ON doc_updates(doc_id, seq);
