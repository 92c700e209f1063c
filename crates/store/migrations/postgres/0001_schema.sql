-- Concord's schema on PostgreSQL: the SQLite schema as of its migration 0160, with every rule
-- SQLite enforces in the schema enforced here too (uniqueness regardless of case, checks,
-- cascades, the per-user cap triggers). Times are unix seconds. Append-only: later changes go in
-- new files, numbered in the same ranges as the SQLite migrations of their area.

-- Accounts (SQLite 0001, 0002, 0030).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    username      TEXT,
    password_hash TEXT,
    confirmed     BOOLEAN NOT NULL DEFAULT FALSE,
    blocked       BOOLEAN NOT NULL DEFAULT FALSE,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT
);
-- Usernames are ASCII (checked at registration), so lower() is SQLite's NOCASE.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('session', 'client')),
    name           TEXT,
    vault_id       TEXT,
    client_version TEXT,
    user_agent     TEXT,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id, last_seen_at DESC);

CREATE TABLE tokens (
    hash       BYTEA PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'device', 'web')),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_by_device ON tokens (device_id);
CREATE INDEX tokens_by_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE magic_tokens (
    hash       BYTEA PRIMARY KEY,
    email      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL,
    code_hash  BYTEA,
    attempts   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX magic_tokens_by_email ON magic_tokens (email, created_at);
CREATE INDEX magic_tokens_by_expiry ON magic_tokens (expires_at);

CREATE TABLE account_tokens (
    hash       BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset')),
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX account_tokens_by_expiry ON account_tokens (expires_at);
CREATE INDEX account_tokens_by_user ON account_tokens (user_id);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

-- Per-user caps (SQLite 0031). SQLite's single writer serialises the count and the insert; here
-- each trigger first locks the user's row, which holds until commit, so concurrent inserts for
-- one user (from any node) queue, and the count, a new statement with a fresh snapshot under READ
-- COMMITTED, sees every device or workspace committed before. A missing cap row means no cap.
-- The message is what `StoreError::from_write` recognises.
CREATE TABLE account_caps (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE FUNCTION devices_per_user_cap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users WHERE id = NEW.user_id FOR UPDATE;
    IF (SELECT count(*) FROM devices WHERE user_id = NEW.user_id AND revoked_at IS NULL)
       >= (SELECT value FROM account_caps WHERE name = 'devices_per_user') THEN
        RAISE EXCEPTION 'concord cap reached: devices_per_user';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER devices_per_user_cap BEFORE INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_per_user_cap();

-- `default` is outside the cap; a name the user already has is left to the unique constraint.
CREATE FUNCTION workspaces_per_user_cap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'default' THEN
        RETURN NEW;
    END IF;
    PERFORM 1 FROM users WHERE id = NEW.user_id FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM workspaces WHERE user_id = NEW.user_id AND name = NEW.name)
       AND (SELECT count(*) FROM workspaces WHERE user_id = NEW.user_id AND name <> 'default')
           >= (SELECT value FROM account_caps WHERE name = 'workspaces_per_user') THEN
        RAISE EXCEPTION 'concord cap reached: workspaces_per_user';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER workspaces_per_user_cap BEFORE INSERT ON workspaces
    FOR EACH ROW EXECUTE FUNCTION workspaces_per_user_cap();

-- Operation log and blob references (SQLite 0010): one head row per scope, advanced in the
-- pushing transaction under its row lock (see `src/sqlite/oplog.rs`).
CREATE TABLE oplog_heads (
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vault_id TEXT NOT NULL,
    head     BIGINT NOT NULL CHECK (head >= 0),
    PRIMARY KEY (user_id, vault_id)
);

CREATE TABLE oplog_ops (
    user_id              TEXT NOT NULL,
    vault_id             TEXT NOT NULL,
    server_sequence      BIGINT NOT NULL CHECK (server_sequence > 0),
    op_id                TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    entity_type          TEXT NOT NULL,
    entity_id            TEXT NOT NULL,
    op_type              TEXT NOT NULL,
    payload_json         TEXT NOT NULL,
    client_sequence      BIGINT NOT NULL,
    last_seen_server_seq BIGINT NOT NULL,
    created_at           TEXT NOT NULL,
    pushed_at            BIGINT NOT NULL,
    UNIQUE (user_id, vault_id, server_sequence),
    UNIQUE (user_id, vault_id, op_id),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);
CREATE INDEX oplog_ops_by_entity ON oplog_ops (user_id, vault_id, entity_type, entity_id, server_sequence);

CREATE TABLE oplog_tombstones (
    user_id         TEXT NOT NULL,
    vault_id        TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    op_id           TEXT NOT NULL,
    server_sequence BIGINT NOT NULL,
    deleted_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, vault_id, entity_type, entity_id),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);

CREATE TABLE oplog_idempotency (
    user_id         TEXT NOT NULL,
    vault_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    response        BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, vault_id, idempotency_key),
    FOREIGN KEY (user_id, vault_id) REFERENCES oplog_heads(user_id, vault_id) ON DELETE CASCADE
);
CREATE INDEX oplog_idempotency_by_age ON oplog_idempotency (created_at);

CREATE TABLE blob_refs (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vault_id   TEXT NOT NULL,
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64),
    size       BIGINT NOT NULL CHECK (size >= 0),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, vault_id, sha256)
);
CREATE INDEX blob_refs_by_hash ON blob_refs (sha256);

-- Yjs documents (SQLite 0020, 0160): an opaque id, a head row numbering its updates 1, 2, 3...
-- (see `src/sqlite/docs.rs`), a snapshot covering seqs up to snapshot_seq.
CREATE TABLE docs (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    snapshot     BYTEA,
    snapshot_seq BIGINT NOT NULL DEFAULT 0 CHECK (snapshot_seq >= 0),
    head         BIGINT NOT NULL DEFAULT 0 CHECK (head >= snapshot_seq),
    created_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE doc_updates (
    doc_id TEXT NOT NULL REFERENCES docs(id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL CHECK (seq > 0),
    data   BYTEA NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

-- Health (SQLite 0040).
CREATE TABLE health_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL
);
