-- 0002_controlplane: CHAP secrets of clients, images, boot sessions and
-- refresh tokens. (Rules for migrations: see 0001_init.sql.)

-- CHAP secrets are kept in clear: the iSCSI target needs them to compute
-- the CHAP response, so a hash would be useless. '' = no CHAP.
ALTER TABLE clients
    ADD COLUMN chap_secret        text NOT NULL DEFAULT '',
    ADD COLUMN chap_mutual_secret text NOT NULL DEFAULT '';

-- DeleteImage refuses while a client boots the image: look that up by index.
CREATE INDEX clients_image ON clients (image);

-- No foreign key from clients.image: config may name an image before it
-- declares it, and clients of an unknown image simply do not boot.
CREATE TABLE images (
    name       text        PRIMARY KEY CHECK (name <> ''),
    storage    text        NOT NULL DEFAULT '',
    source     text        NOT NULL DEFAULT '',
    boot       jsonb       CHECK (jsonb_typeof(boot) = 'object'),  -- BootProfile; NULL = sanboot
    origin     text        NOT NULL DEFAULT '',                    -- config, api
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One row per machine boot. client is a name, not a key: the history
-- outlives the client.
CREATE TABLE sessions (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client       text        NOT NULL DEFAULT '',
    mac          text        NOT NULL DEFAULT '',
    address      text        NOT NULL DEFAULT '',
    stages       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(stages) = 'object'),  -- {"stage": unix ms}
    expect       text        NOT NULL DEFAULT '',
    state        text        NOT NULL CHECK (state IN ('active', 'done', 'failed')),
    failed_stage text        NOT NULL DEFAULT '',
    token_hash   text        UNIQUE,                 -- SHA-256 hex of the boot token; NULL = none
    token_used   boolean     NOT NULL DEFAULT false,
    started      timestamptz NOT NULL,
    ended        timestamptz                         -- NULL while active
);

CREATE INDEX sessions_client  ON sessions (client, started);
CREATE INDEX sessions_state   ON sessions (state, started);
CREATE INDEX sessions_started ON sessions (started);

-- Refresh tokens by hash; the token itself is never stored. A token is
-- rotated by one conditional UPDATE (NOT used AND NOT revoked AND not
-- expired): a second rotation waits for the first's row lock, then
-- re-checks the condition on the row the first left (READ COMMITTED), so
-- of two rotations of one token only one can succeed, whichever host runs
-- them. ("user" is reserved in PostgreSQL, hence username.)
CREATE TABLE refresh_tokens (
    hash     text        PRIMARY KEY CHECK (hash <> ''),  -- SHA-256 hex
    username text        NOT NULL CHECK (username <> ''),
    role     text        NOT NULL DEFAULT '',
    groups   jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(groups) = 'array'),
    issued   timestamptz NOT NULL,
    expires  timestamptz NOT NULL,
    used     boolean     NOT NULL DEFAULT false,
    revoked  boolean     NOT NULL DEFAULT false
);

CREATE INDEX refresh_tokens_username ON refresh_tokens (username);
