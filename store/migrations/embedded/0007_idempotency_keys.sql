-- Idempotency keys (see the Postgres migration of the same purpose): the
-- answer is JSON text, the times text `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which
-- sorts in time order.
CREATE TABLE herald_idempotency_keys (
    tenant           TEXT NOT NULL,
    domain           TEXT NOT NULL,
    stream_id        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    answer           TEXT,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    PRIMARY KEY (tenant, domain, stream_id, idempotency_key)
);

CREATE INDEX herald_idempotency_keys_expiry ON herald_idempotency_keys (expires_at);
