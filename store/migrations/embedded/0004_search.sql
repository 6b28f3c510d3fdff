-- Event search (see the Postgres migration of the same purpose): time-range
-- searches scan one tenant's events by recording time, then order them by
-- position. Payload filters use json_extract, which no index here serves.
CREATE INDEX herald_events_tenant_recorded ON herald_events (tenant, recorded_at, position);
