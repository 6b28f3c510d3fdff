-- Aggregate snapshots (see the Postgres migration of the same purpose): the
-- state is JSON text, the time text `YYYY-MM-DDTHH:MM:SS.ffffffZ`. A rowid
-- table, as states may be large.
CREATE TABLE herald_snapshots (
    tenant          TEXT    NOT NULL,
    domain          TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    state_version   INTEGER NOT NULL CHECK (state_version BETWEEN 0 AND 4294967295),
    state           TEXT    NOT NULL,
    taken_at        TEXT    NOT NULL,
    PRIMARY KEY (tenant, domain, stream_id)
);
