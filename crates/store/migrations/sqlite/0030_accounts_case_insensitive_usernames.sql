-- Usernames are unique regardless of case: `Bob` and `bob` are one name, as logins treat them.
--
-- Databases from before this rule may hold names that differ only in case. Of each such group the
-- earliest confirmed account keeps the name (the earliest account if none is confirmed); the
-- others lose their username, not their account: they still sign in with their email address,
-- which has always been a login. Usernames are ASCII (checked at registration), so NOCASE, which
-- folds ASCII, is the whole rule.
UPDATE users SET username = NULL
WHERE username IS NOT NULL AND EXISTS (
    SELECT 1 FROM users keeper
    WHERE keeper.username = users.username COLLATE NOCASE
      AND keeper.id <> users.id
      AND (keeper.confirmed > users.confirmed
           OR (keeper.confirmed = users.confirmed AND keeper.created_at < users.created_at)
           OR (keeper.confirmed = users.confirmed AND keeper.created_at = users.created_at AND keeper.id < users.id))
);

CREATE UNIQUE INDEX users_username_nocase ON users(username COLLATE NOCASE);
