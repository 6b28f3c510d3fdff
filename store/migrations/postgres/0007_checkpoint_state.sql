-- A checkpoint may carry the state a job folded from the log up to its
-- position (the timer scheduler's index of pending timers), so that a
-- restart reads only the log's tail. A cache of the log: losing it costs a
-- longer catch-up, nothing else.
ALTER TABLE herald_checkpoints ADD COLUMN state text;
