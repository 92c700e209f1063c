-- A collector's claim to delete the bytes of a blob no scope references (SQLite 0300): while it is
-- live (expires_ms, by the database's clock, is ahead), no scope may reference the blob. The
-- argument is in `src/sqlite/blobs.rs`; here both sides also take the blob's advisory lock.
CREATE TABLE blob_claims (
    sha256     TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    token      TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
