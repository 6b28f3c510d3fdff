-- Aggregate snapshots: per stream of a tenant, the latest state folded from
-- its events, keyed as herald_events keys streams. A cache of the log, not
-- part of it: outside the hash chain, no reference to herald_events, and
-- deleting rows loses nothing but the time to fold the streams again. Saves
-- upsert with a guard so a row's stream_version never goes down.
-- state_version is a u32, which integer cannot hold whole.
CREATE TABLE herald_snapshots (
    tenant          text        NOT NULL,
    domain          text        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    state_version   bigint      NOT NULL CHECK (state_version BETWEEN 0 AND 4294967295),
    state           jsonb       NOT NULL,
    taken_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant, domain, stream_id)
);
