-- Sign-in codes beside magic links, and the single-use tokens of registration and password reset.

-- The 6-digit code mailed with a magic link, hashed together with its address. Wrong guesses are
-- counted per row; a row that reached the limit no longer accepts its code (its link still works).
ALTER TABLE magic_tokens ADD COLUMN code_hash BLOB;
ALTER TABLE magic_tokens ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX magic_tokens_by_expiry ON magic_tokens(expires_at);

-- Email confirmation (48 h) and password reset (1 h) tokens; SHA-256 hashes only, single use.
CREATE TABLE account_tokens (
    hash       BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset')),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX account_tokens_by_expiry ON account_tokens(expires_at);
CREATE INDEX account_tokens_by_user ON account_tokens(user_id);
