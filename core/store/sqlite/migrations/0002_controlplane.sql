-- 0002_controlplane: CHAP secrets of clients, images, boot sessions and
-- refresh tokens. (Rules for migrations: see 0001_init.sql.) Column names
-- match the PostgreSQL store's (username: "user" is reserved there).

-- CHAP secrets are kept in clear: the iSCSI target needs them to compute
-- the CHAP response, so a hash would be useless. '' = no CHAP.
ALTER TABLE clients ADD COLUMN chap_secret        TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN chap_mutual_secret TEXT NOT NULL DEFAULT '';

-- DeleteImage refuses while a client boots the image: look that up by index.
CREATE INDEX clients_image ON clients (image);

-- No foreign key from clients.image: config may name an image before it
-- declares it, and clients of an unknown image simply do not boot.
CREATE TABLE images (
    name       TEXT    PRIMARY KEY CHECK (name <> ''),
    storage    TEXT    NOT NULL DEFAULT '',
    source     TEXT    NOT NULL DEFAULT '',
    boot       TEXT    CHECK (boot IS NULL OR json_valid(boot)),  -- BootProfile; NULL = sanboot
    origin     TEXT    NOT NULL DEFAULT '',                      -- config, api
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- One row per machine boot. client is a name, not a key: the history
-- outlives the client.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an id names one boot for good
    client       TEXT    NOT NULL DEFAULT '',
    mac          TEXT    NOT NULL DEFAULT '',
    address      TEXT    NOT NULL DEFAULT '',
    stages       TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(stages)),  -- {"stage": unix ms}
    expect       TEXT    NOT NULL DEFAULT '',
    state        TEXT    NOT NULL CHECK (state IN ('active', 'done', 'failed')),
    failed_stage TEXT    NOT NULL DEFAULT '',
    token_hash   TEXT    UNIQUE,                     -- SHA-256 hex of the boot token; NULL = none
    token_used   INTEGER NOT NULL DEFAULT 0 CHECK (token_used IN (0, 1)),
    started      INTEGER NOT NULL,
    ended        INTEGER                             -- NULL while active
) STRICT;

CREATE INDEX sessions_client  ON sessions (client, started);
CREATE INDEX sessions_state   ON sessions (state, started);
CREATE INDEX sessions_started ON sessions (started);

-- Refresh tokens by hash; the token itself is never stored. A token is
-- rotated by one conditional UPDATE (NOT used AND NOT revoked AND not
-- expired), so of two rotations of one token only one can succeed.
CREATE TABLE refresh_tokens (
    hash     TEXT    PRIMARY KEY CHECK (hash <> ''),  -- SHA-256 hex
    username TEXT    NOT NULL CHECK (username <> ''),
    role     TEXT    NOT NULL DEFAULT '',
    groups   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(groups)),
    issued   INTEGER NOT NULL,
    expires  INTEGER NOT NULL,
    used     INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    revoked  INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;

CREATE INDEX refresh_tokens_username ON refresh_tokens (username);
