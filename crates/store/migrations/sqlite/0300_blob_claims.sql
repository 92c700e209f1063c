-- A collector's claim to delete the bytes of a blob no scope references: while it is live
-- (expires_ms, by the database's clock, is ahead), no scope may reference the blob. The argument is
-- in `src/sqlite/blobs.rs`.
CREATE TABLE blob_claims (
    sha256     TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    token      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
