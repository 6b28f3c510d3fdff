-- Durable coordination (see the Postgres migration of the same purpose).
-- Times are milliseconds since the Unix epoch by the writing process's clock,
-- which processes sharing one file on one machine agree on.
CREATE TABLE herald_leases (
    name              TEXT    PRIMARY KEY,
    holder            TEXT    NOT NULL,
    expires_at_millis INTEGER NOT NULL
);

CREATE TABLE herald_checkpoints (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL CHECK (position >= 0),
    updated_at  TEXT    NOT NULL
);
