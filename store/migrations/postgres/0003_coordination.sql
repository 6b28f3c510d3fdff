-- Durable coordination between processes sharing the store: leases (one
-- active relay per store; others stand by) and named checkpoints (how far a
-- relay or consumer has got in the global log).
CREATE TABLE herald_leases (
    name        text        PRIMARY KEY,
    holder      text        NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE herald_checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
