-- When a document last changed, for the document HTTP API's listing. Set on creation and by every
-- appended update (the caller's clock); documents from before this migration start at creation.

ALTER TABLE docs ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE docs SET updated_at = created_at;
