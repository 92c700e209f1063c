-- Per-user caps on devices and workspaces, enforced by the inserting statement itself.
--
-- The server writes its configured caps into `account_caps` at start. The triggers count and refuse
-- inside the INSERT, so the count and the insert are one atomic step: concurrent requests cannot
-- overshoot (and the single writer serialises them anyway). A missing cap row means no cap. The
-- RAISE message is what `StoreError::from_write` recognises.
CREATE TABLE account_caps (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Live devices count; revoked ones are kept for a while only to explain refusals.
CREATE TRIGGER devices_per_user_cap BEFORE INSERT ON devices
WHEN (SELECT count(*) FROM devices WHERE user_id = NEW.user_id AND revoked_at IS NULL)
     >= (SELECT value FROM account_caps WHERE name = 'devices_per_user')
BEGIN
    SELECT RAISE(ABORT, 'concord cap reached: devices_per_user');
END;

-- The `default` workspace is outside the cap (always allowed, never counted), so signing in never
-- fails on it; inserting a name the user already has is left to the unique constraint (and to
-- ON CONFLICT DO NOTHING).
CREATE TRIGGER workspaces_per_user_cap BEFORE INSERT ON workspaces
WHEN NEW.name <> 'default'
     AND NOT EXISTS (SELECT 1 FROM workspaces WHERE user_id = NEW.user_id AND name = NEW.name)
     AND (SELECT count(*) FROM workspaces WHERE user_id = NEW.user_id AND name <> 'default')
         >= (SELECT value FROM account_caps WHERE name = 'workspaces_per_user')
BEGIN
    SELECT RAISE(ABORT, 'concord cap reached: workspaces_per_user');
END;
