-- The global event log (see the Postgres migration of the same number). Times
-- are text `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which sorts in time order; payloads
-- are canonical JSON text, queryable with SQLite's JSON functions.
CREATE TABLE herald_events (
    position        INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    domain          TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT    NOT NULL,
    producer        TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    hash            BLOB    NOT NULL CHECK (length(hash) = 32),
    UNIQUE (tenant, domain, stream_id, stream_version)
);

CREATE INDEX herald_events_type ON herald_events (event_type, position);

CREATE TABLE herald_log_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    position     INTEGER NOT NULL,
    hash         BLOB    NOT NULL,
    recorded_at  TEXT
);

INSERT INTO herald_log_head (id, position, hash, recorded_at) VALUES (1, 0, zeroblob(32), NULL);
