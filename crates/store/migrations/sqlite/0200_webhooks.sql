-- Webhooks: a workspace owner's (or, with no owner, an admin's server-wide) subscription of a URL
-- to events, and the outbox of deliveries to it. A hook's secret is not stored: it is derived from
-- the server key and `salt`. Deliveries go with their hook; hooks go with their workspace.

CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    -- Both NULL for a server-wide hook.
    user_id      TEXT REFERENCES users(id) ON DELETE CASCADE,
    workspace_id TEXT REFERENCES workspaces(id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    -- The subscribed event names between commas: ',document.updated,share.created,'.
    events       TEXT NOT NULL,
    salt         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    CHECK ((user_id IS NULL) = (workspace_id IS NULL))
);
CREATE INDEX webhooks_by_workspace ON webhooks(workspace_id);
CREATE INDEX webhooks_by_user ON webhooks(user_id);

CREATE TABLE webhook_deliveries (
    -- The event id and the hook id: the same on every attempt, for the receiver's idempotency.
    id              TEXT PRIMARY KEY,
    hook_id         TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    -- The exact JSON bytes that are signed and sent.
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    -- For a pending delivery: when it is due, or, while a worker holds it, when its claim lapses.
    next_attempt_at INTEGER NOT NULL,
    claim           TEXT,
    finished_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(hook_id, created_at);
