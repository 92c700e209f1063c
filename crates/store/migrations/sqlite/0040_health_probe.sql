-- One row the health check rewrites: a committed write is the only honest test that the
-- database still takes writes (a full disk fails the commit, not a read).
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
