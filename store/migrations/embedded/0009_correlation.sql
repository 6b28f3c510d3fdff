-- The events one command, publish or automation caused share a correlation
-- id: the console and `GET /v1/events/search?correlation=` follow that chain,
-- which this index answers without scanning the log.
CREATE INDEX herald_events_correlation ON herald_events (correlation_id);
