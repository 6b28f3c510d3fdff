-- Event search. Payload equality is asked as containment (`payload @> …`),
-- which this GIN index answers; jsonb_path_ops keeps it smaller than the
-- default operator class and supports exactly `@>`. Time-range searches scan
-- one tenant's events by recording time, then order them by position.
-- Built inside the migration transaction, so not CONCURRENTLY: on a large
-- existing log, appends wait while these indexes are built.
CREATE INDEX herald_events_payload ON herald_events USING gin (payload jsonb_path_ops);

CREATE INDEX herald_events_tenant_recorded ON herald_events (tenant, recorded_at, position);
