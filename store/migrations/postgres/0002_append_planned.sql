-- Writes a batch planned by a writer that remembers the log head, in one
-- statement: locks the head row, checks the head is exactly where the writer
-- expects it (position and hash), inserts the rows, moves the head and
-- notifies listeners. Called as a statement of its own it is its own
-- transaction, so a whole batch costs one round trip.
--
-- If the head is anywhere else (another process wrote, or an earlier batch
-- did not commit), it raises SQLSTATE HR001 before writing anything and the
-- writer reads the head afresh. The hash covers the whole log, so a match
-- means the log is exactly what the batch was planned on.
CREATE FUNCTION herald_append_planned(
    expected_position bigint,
    expected_hash bytea,
    head_position bigint,
    head_hash bytea,
    head_recorded_at timestamptz,
    positions bigint[],
    event_ids uuid[],
    tenants text[],
    domains text[],
    stream_ids text[],
    stream_versions bigint[],
    event_types text[],
    schema_versions integer[],
    occurred_ats timestamptz[],
    recorded_ats timestamptz[],
    correlation_ids uuid[],
    causation_ids uuid[],
    producers text[],
    payloads jsonb[],
    hashes bytea[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current_position bigint;
BEGIN
    -- Moving the head first takes its lock for the rest of the transaction;
    -- the condition makes it move only from where the writer expects it
    -- (re-checked on the latest row version if it had to wait for the lock).
    UPDATE herald_log_head
       SET position = head_position, hash = head_hash, recorded_at = head_recorded_at
     WHERE id = 1 AND position = expected_position AND hash = expected_hash;
    IF NOT FOUND THEN
        SELECT position INTO current_position FROM herald_log_head WHERE id = 1;
        RAISE EXCEPTION USING
            ERRCODE = 'HR001',
            MESSAGE = format('the log head is at %s, the writer expected %s',
                             current_position, expected_position);
    END IF;
    INSERT INTO herald_events (position, event_id, tenant, domain, stream_id, stream_version,
                               event_type, schema_version, occurred_at, recorded_at,
                               correlation_id, causation_id, producer, payload, hash)
    SELECT * FROM unnest(positions, event_ids, tenants, domains, stream_ids, stream_versions,
                         event_types, schema_versions, occurred_ats, recorded_ats,
                         correlation_ids, causation_ids, producers, payloads, hashes);
    PERFORM pg_notify('herald_events', head_position::text);
END
$$;
