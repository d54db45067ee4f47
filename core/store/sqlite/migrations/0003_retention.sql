-- 0003_retention: indexes for the retention purge (Store.Purge), which
-- deletes boot sessions that ended, and refresh tokens that expired,
-- before a time. (Rules for migrations: see 0001_init.sql.) Without them
-- every hourly purge would read the whole of both tables.

CREATE INDEX sessions_ended         ON sessions (ended);         -- NULL while active
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires);
