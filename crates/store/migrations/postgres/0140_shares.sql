-- Share tokens (SQLite 0140): a workspace owner lets whoever holds the token open one document,
-- or every document of one workspace, read-only or read-write, until it expires or is revoked.

CREATE TABLE shares (
    id           TEXT PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    doc_name     TEXT,
    access       TEXT NOT NULL CHECK (access IN ('read-only', 'read-write')),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX shares_by_user ON shares (user_id, created_at);
