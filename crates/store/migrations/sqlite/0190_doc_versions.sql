-- Document history: whole-document states (lib0 v1 updates), taken automatically or on request
-- with a label. Retention deletes old ones as new ones are added; deleted with their document.

CREATE TABLE doc_versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id     INTEGER NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    -- NULL for automatic versions.
    label      TEXT,
    state      BLOB NOT NULL
);
CREATE INDEX doc_versions_by_doc ON doc_versions(doc_id, id);
