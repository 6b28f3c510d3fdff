-- See the Postgres migration of the same purpose.
ALTER TABLE herald_checkpoints ADD COLUMN state TEXT;
