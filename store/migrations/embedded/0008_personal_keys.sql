-- Subjects' data keys and the privacy layer's secrets (see the Postgres
-- migration of the same purpose). Key ids are hyphenated lowercase UUID
-- text, times text `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which sorts in time order.
-- Every writing connection runs with `secure_delete` on, so a key forgotten
-- (or re-wrapped) is overwritten in the file, not only unlinked.
CREATE TABLE herald_subject_keys (
    key_id        TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    subject_ref   TEXT NOT NULL,
    wrapped       BLOB,
    wrapped_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    forgotten_at  TEXT,
    CHECK ((wrapped IS NULL) = (forgotten_at IS NOT NULL))
);

CREATE INDEX herald_subject_keys_subject ON herald_subject_keys (tenant, subject_ref);

CREATE UNIQUE INDEX herald_subject_keys_live ON herald_subject_keys (tenant, subject_ref)
    WHERE forgotten_at IS NULL;

CREATE TABLE herald_personal_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    wrapped_by  TEXT NOT NULL
);
