-- 0001_init: clients, DHCP leases and the audit log.
--
-- Rules for migrations: files are NNNN_name.sql, numbered from 0001 without
-- gaps; each runs in its own transaction with its row in schema_migrations,
-- so it applies completely or not at all. Never edit a released migration:
-- add the next one. Times are INTEGER unix milliseconds (UTC). Tables are
-- STRICT so that a wrongly typed value is an error, not a silent coercion.

CREATE TABLE clients (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    mac        TEXT    NOT NULL UNIQUE,   -- canonical aa:bb:cc:dd:ee:ff
    image      TEXT    NOT NULL DEFAULT '',
    address    TEXT    UNIQUE,            -- reserved IPv4; NULL (any number of them) = none
    persistent INTEGER NOT NULL DEFAULT 1 CHECK (persistent IN (0, 1)),
    labels     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Extra initiator IQNs, lower case. The primary key makes an initiator
-- belong to one client only, so a login maps to one volume.
CREATE TABLE client_initiators (
    iqn       TEXT    PRIMARY KEY,
    client_id INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL            -- keeps the order the admin wrote
) STRICT;

CREATE INDEX client_initiators_client ON client_initiators (client_id, position);

-- One row per address: the primary key is what guarantees one MAC per
-- address, whatever the Go code does and however many hosts share the
-- database. A new MAC takes the row over only through the conditional
-- upsert in CommitLeases (released or expired holder).
CREATE TABLE leases (
    address    TEXT    PRIMARY KEY,       -- dotted IPv4
    pool       TEXT    NOT NULL,
    mac        TEXT    NOT NULL,
    expires    INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
    hostname   TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX leases_pool ON leases (pool);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused, so they order entries even after pruning
    time   INTEGER NOT NULL,
    actor  TEXT    NOT NULL DEFAULT '',
    action TEXT    NOT NULL,
    object TEXT    NOT NULL DEFAULT '',
    detail TEXT    NOT NULL DEFAULT '',
    source TEXT    NOT NULL DEFAULT ''
) STRICT;
