-- Personal data that can be forgotten: each subject (a person) of a tenant
-- has a data key that encrypts its personal fields in event payloads, kept
-- here wrapped (encrypted) by a master key the store never holds. The
-- subject is named by a keyed hash of its id (subject_ref); the id itself
-- is never stored. Forgetting the subject destroys its key: wrapped becomes
-- NULL and forgotten_at is set, and the row stays as a record of it. A
-- subject has at most one live key; a new one may follow a forgotten one.
CREATE TABLE herald_subject_keys (
    key_id        uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    subject_ref   text        NOT NULL,
    wrapped       bytea,
    wrapped_by    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    forgotten_at  timestamptz,
    -- Live: the wrapped key is there. Forgotten: it is gone.
    CHECK ((wrapped IS NULL) = (forgotten_at IS NOT NULL))
);

CREATE INDEX herald_subject_keys_subject ON herald_subject_keys (tenant, subject_ref);

CREATE UNIQUE INDEX herald_subject_keys_live ON herald_subject_keys (tenant, subject_ref)
    WHERE forgotten_at IS NULL;

-- Named deployment secrets of the privacy layer (the blind-index key),
-- wrapped by a master key like the subjects' keys; written once by the
-- first process that needs one, re-wrapped after a master key rotation.
CREATE TABLE herald_personal_secrets (
    name        text  PRIMARY KEY,
    value       bytea NOT NULL,
    wrapped_by  text  NOT NULL
);
