-- Share tokens: a workspace owner lets whoever holds the token open one document, or every
-- document of one workspace, read-only or read-write, until it expires or is revoked. Only the
-- token's SHA-256 is stored. Deleted with the workspace (and so with the owner).

CREATE TABLE shares (
    id           TEXT PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    -- NULL shares the whole workspace.
    doc_name     TEXT,
    -- 'read-only' or 'read-write'.
    access       TEXT NOT NULL CHECK (access IN ('read-only', 'read-write')),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX shares_by_user ON shares(user_id, created_at);
