-- Locks the log head for an append transaction and checks it is where the
-- writer expects it. A writer that remembers the head from its last commit
-- sends its whole batch in one round trip; if another process moved the head
-- meanwhile, this raises SQLSTATE HR001, the transaction aborts before any row
-- is written, and the writer reads the head afresh.
CREATE FUNCTION herald_lock_head(expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    SELECT position INTO current FROM herald_log_head WHERE id = 1 FOR UPDATE;
    IF current <> expected THEN
        RAISE EXCEPTION USING
            ERRCODE = 'HR001',
            MESSAGE = format('the log head is at %s, the writer expected %s', current, expected);
    END IF;
    RETURN current;
END
$$;
