-- When a document last changed (SQLite 0141), for the document HTTP API's listing. Set on creation
-- and by every appended update (the caller's clock); documents from before this start at creation.

ALTER TABLE docs ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
UPDATE docs SET updated_at = created_at;
