-- 0007_leases_ipv6: leases of IPv6 addresses (protocol "dhcp6") beside
-- IPv4 ones: one table, the address still the key. (Rules for migrations:
-- see 0001_init.sql.) SQLite needs no step: its address column is text.

ALTER TABLE leases DROP CONSTRAINT leases_address_check;
ALTER TABLE leases ADD CONSTRAINT leases_address_check CHECK (
    (family(address) = 4 AND masklen(address) = 32) OR
    (family(address) = 6 AND masklen(address) = 128)
);
