-- 0001_init: clients, DHCP leases and the audit log.
--
-- Rules for migrations: files are NNNN_name.sql, numbered from 0001 without
-- gaps; each runs in its own transaction with its row in schema_migrations,
-- so it applies completely or not at all. Never edit a released migration:
-- add the next one. Names are unqualified: the tables go to the first
-- schema of the connection's search_path. Times are timestamptz, written
-- with millisecond precision.

CREATE TABLE clients (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (name <> ''),
    mac        text        NOT NULL UNIQUE,   -- canonical aa:bb:cc:dd:ee:ff (text: net.ParseMAC also takes 8- and 20-byte addresses)
    image      text        NOT NULL DEFAULT '',
    address    inet        UNIQUE             -- reserved IPv4; NULL (any number of them) = none
               CHECK (family(address) = 4 AND masklen(address) = 32),
    persistent boolean     NOT NULL DEFAULT true,
    labels     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Extra initiator IQNs, lower case. The primary key makes an initiator
-- belong to one client only, so a login maps to one volume.
CREATE TABLE client_initiators (
    iqn       text    PRIMARY KEY,
    client_id bigint  NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    position  integer NOT NULL               -- keeps the order the admin wrote
);

CREATE INDEX client_initiators_client ON client_initiators (client_id, position);

-- One row per address: the primary key is what guarantees one MAC per
-- address, however many hosts share the database. A new MAC takes the row
-- over only through the conditional upsert in CommitLeases (same MAC,
-- released or expired holder), which PostgreSQL decides on the latest
-- version of the row while holding its lock.
CREATE TABLE leases (
    address    inet        PRIMARY KEY CHECK (family(address) = 4 AND masklen(address) = 32),
    pool       text        NOT NULL,
    mac        text        NOT NULL,
    expires    timestamptz NOT NULL,
    state      text        NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
    hostname   text        NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL      -- the committing host's clock: "now" for the expiry test
);

CREATE INDEX leases_pool ON leases (pool);

CREATE TABLE audit (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused, so ids order entries even after pruning
    time   timestamptz NOT NULL,
    actor  text        NOT NULL DEFAULT '',
    action text        NOT NULL CHECK (action <> ''),
    object text        NOT NULL DEFAULT '',
    detail text        NOT NULL DEFAULT '',
    source text        NOT NULL DEFAULT ''
);
