-- API keys and the store's epoch (see the Postgres migration of the same
-- purpose). Scopes are a JSON array of strings; times are canonical text.
CREATE TABLE herald_api_keys (
    key_id         TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    secret_sha256  BLOB    NOT NULL CHECK (length(secret_sha256) = 32),
    label          TEXT,
    rate_per_sec   INTEGER CHECK (rate_per_sec > 0),
    created_at     TEXT    NOT NULL,
    revoked_at     TEXT
);

CREATE TABLE herald_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

INSERT INTO herald_meta (key, value) VALUES ('epoch', lower(hex(randomblob(16))));
