-- Operation log and blob references, scoped per (user_id, vault_id). Times are unix seconds.
-- Append-only: later changes go in new files (0011-0019).

-- One row per scope holding the last assigned sequence. A push reads and advances it in the same
-- write transaction as its inserts, so sequences are 1, 2, 3... with no gaps and in commit order.
CREATE TABLE oplog_heads (
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vault_id TEXT NOT NULL,
    head     INTEGER NOT NULL CHECK (head >= 0),
    PRIMARY KEY (user_id, vault_id)
) WITHOUT ROWID;

-- A rowid table on purpose: payloads reach 256 KiB, which WITHOUT ROWID tables store poorly.
CREATE TABLE oplog_ops (
    user_id              TEXT NOT NULL,
    vault_id             TEXT NOT NULL,
    server_sequence      INTEGER NOT NULL CHECK (server_sequence > 0),
    op_id                TEXT NOT NULL,
    -- The authenticated device, never the one named in the request body. No foreign key: the log
    -- outlives devices that are later deleted.
    device_id            TEXT NOT NULL,
    entity_type          TEXT NOT NULL,
    entity_id            TEXT NOT NULL,
    op_type              TEXT NOT NULL,
    payload_json         TEXT NOT NULL,
    client_sequence      INTEGER NOT NULL,
    last_seen_server_seq INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    pushed_at            INTEGER NOT NULL,
    UNIQUE (user_id, vault_id, server_sequence),
    UNIQUE (user_id, vault_id, op_id),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);
-- Conflict detection looks up later ops on the same entity.
CREATE INDEX oplog_ops_by_entity ON oplog_ops(user_id, vault_id, entity_type, entity_id, server_sequence);

-- The last delete of each entity, so a deleted entity stays deleted for clients that come later.
CREATE TABLE oplog_tombstones (
    user_id         TEXT NOT NULL,
    vault_id        TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    op_id           TEXT NOT NULL,
    server_sequence INTEGER NOT NULL,
    deleted_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, vault_id, entity_type, entity_id),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);

-- The response of each push that carried an idempotency key, replayed when the key comes again.
CREATE TABLE oplog_idempotency (
    user_id         TEXT NOT NULL,
    vault_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    response        BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, vault_id, idempotency_key),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);

-- Which scopes may read which blob. Files are shared physically (content addressing) but a scope
-- sees only what it uploaded itself.
CREATE TABLE blob_refs (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vault_id   TEXT NOT NULL,
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64),
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, vault_id, sha256)
) WITHOUT ROWID;
-- The garbage collector asks whether any scope still references a hash.
CREATE INDEX blob_refs_by_hash ON blob_refs(sha256);
