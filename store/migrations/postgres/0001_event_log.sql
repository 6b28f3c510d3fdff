-- The global event log. Positions are assigned in commit order by writers
-- holding the lock on herald_log_head's row, so they are gapless and a reader
-- that has seen position P never later finds a committed event below P.
CREATE TABLE herald_events (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    tenant          text        NOT NULL,
    domain          text        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid        NOT NULL,
    producer        text        NOT NULL,
    payload         jsonb       NOT NULL,
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
    UNIQUE (tenant, domain, stream_id, stream_version)
);

CREATE INDEX herald_events_type ON herald_events (event_type, position);

-- One row: the last committed event. Appenders lock it for the length of
-- their transaction; it is also where the hash chain continues from.
CREATE TABLE herald_log_head (
    id           integer     PRIMARY KEY CHECK (id = 1),
    position     bigint      NOT NULL,
    hash         bytea       NOT NULL,
    recorded_at  timestamptz
);

INSERT INTO herald_log_head (id, position, hash, recorded_at)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), NULL);
