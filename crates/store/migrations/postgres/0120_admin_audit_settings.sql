-- The admin console (SQLite 0120): the audit log and the settings saved through it.

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    event   TEXT NOT NULL,
    actor   TEXT,
    subject TEXT,
    detail  TEXT NOT NULL DEFAULT '',
    ip      TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_event ON audit_log (event, at);

CREATE TABLE live_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
