-- Document history (SQLite 0190): whole-document states (lib0 v1 updates), taken automatically or
-- on request with a label. Retention deletes old ones as new ones are added; deleted with their
-- document. Ids come from one sequence, so a later version of a document has a larger id.

CREATE TABLE doc_versions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id     TEXT NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    -- NULL for automatic versions.
    label      TEXT,
    state      BYTEA NOT NULL
);
CREATE INDEX doc_versions_by_doc ON doc_versions (doc_id, id);
