-- 0006_discovered: machines that asked to boot without being clients
-- (boot.unknown_clients = "discover"), waiting for an admin to adopt them;
-- and the volume a renamed client keeps. (Rules for migrations: see
-- 0001_init.sql.)

CREATE TABLE discovered (
    mac          text        PRIMARY KEY,           -- canonical aa:bb:cc:dd:ee:ff
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    arch         integer     NOT NULL DEFAULT 0,    -- DHCP option 93
    vendor_class text        NOT NULL DEFAULT '',   -- DHCP option 60
    user_class   text        NOT NULL DEFAULT '',   -- DHCP option 77
    address      text        NOT NULL DEFAULT '',   -- where it asked from (relay or source), '' unknown
    seen_count   bigint      NOT NULL DEFAULT 1 CHECK (seen_count > 0)
);

-- Adoption goes in order of first sight.
CREATE INDEX discovered_first_seen ON discovered (first_seen, mac);

-- The storage volume of a client renamed since its volume was made ('':
-- the volume has the client's name). Volumes are named after clients, and
-- a rename keeps the machine's disk.
ALTER TABLE clients ADD COLUMN volume text NOT NULL DEFAULT '';
