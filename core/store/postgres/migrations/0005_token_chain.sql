-- 0004_token_chain: what a refresh token needs so that refreshing re-asks
-- the auth backend and a session has an absolute lifetime. (Rules for
-- migrations: see 0001_init.sql.)
--
-- backend: the auth plugin instance that verified the login; refresh asks
-- it again. '' for tokens issued before this migration (refresh then asks
-- every auth plugin, as a login does).
-- session_start: when the login that started the token's chain of
-- rotations happened; every token of the chain carries it. Tokens issued
-- before this migration start their chain at their own issue time.

ALTER TABLE refresh_tokens ADD COLUMN backend text NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN session_start timestamptz;
UPDATE refresh_tokens SET session_start = issued;
ALTER TABLE refresh_tokens ALTER COLUMN session_start SET NOT NULL;
