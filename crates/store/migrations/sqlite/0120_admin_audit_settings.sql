-- The admin console: the audit log and the settings saved through it.
-- Append-only: later changes go in new files (0121-0139).

-- Who did what, when, from where. Never a secret: detail holds what changed, never a password,
-- token or hash. actor and subject are labels as they were at the time (an email, a device id),
-- so entries stay readable after their user is deleted. Kept for the configured retention.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    event   TEXT NOT NULL,
    actor   TEXT,
    subject TEXT,
    detail  TEXT NOT NULL DEFAULT '',
    ip      TEXT
);
CREATE INDEX audit_log_by_time ON audit_log(at);
CREATE INDEX audit_log_by_event ON audit_log(event, at);

-- Settings saved in the admin console, by name; a missing row means the flag, environment or
-- file value (or the built-in default) applies.
CREATE TABLE live_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
