-- Accounts: people, their devices, bearer tokens (hashes only), magic links and workspaces.
-- Times are unix seconds. Append-only: later changes go in new files.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    username      TEXT UNIQUE,
    password_hash TEXT,
    confirmed     INTEGER NOT NULL DEFAULT 0,
    blocked       INTEGER NOT NULL DEFAULT 0,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
);

CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('session', 'client')),
    name           TEXT,
    vault_id       TEXT,
    client_version TEXT,
    user_agent     TEXT,
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    revoked_at     INTEGER
);
CREATE INDEX devices_by_user ON devices(user_id, last_seen_at DESC);

-- Only SHA-256 hashes of bearer tokens are stored; the primary key is the lookup index.
CREATE TABLE tokens (
    hash       BLOB PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'device', 'web')),
    expires_at INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_by_device ON tokens(device_id);
CREATE INDEX tokens_by_expiry ON tokens(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE magic_tokens (
    hash       BLOB PRIMARY KEY,
    email      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX magic_tokens_by_email ON magic_tokens(email, created_at);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
