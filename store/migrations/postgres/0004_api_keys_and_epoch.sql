-- API keys (stored as a SHA-256 of their secret part; the secret itself is
-- shown once, at creation) and the store's epoch: a random id made when the
-- store is created, carried in subscription cursors so a cursor from another
-- store (or one rebuilt from scratch) is recognised and refused.
CREATE TABLE herald_api_keys (
    key_id         text        PRIMARY KEY,
    tenant         text        NOT NULL,
    scopes         text[]      NOT NULL,
    secret_sha256  bytea       NOT NULL CHECK (octet_length(secret_sha256) = 32),
    label          text,
    rate_per_sec   integer     CHECK (rate_per_sec > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);

CREATE TABLE herald_meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

INSERT INTO herald_meta (key, value) VALUES ('epoch', gen_random_uuid()::text);
