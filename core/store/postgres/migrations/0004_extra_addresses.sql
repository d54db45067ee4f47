-- 0004_extra_addresses: the addresses a client's extra initiators may log
-- in from (client block's extra_addresses), in the order the admin wrote
-- them. (Rules for migrations: see 0001_init.sql.)

ALTER TABLE clients
    ADD COLUMN extra_addresses inet[] NOT NULL DEFAULT '{}';
