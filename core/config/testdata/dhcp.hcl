storage "dir" "disks" {}

protocol "dhcp" "lan" {
  config {
    interface = "br0"
    server_ip = "192.168.77.1"
    dns       = ["192.168.77.1", "9.9.9.9"]
    labels    = { rack = "a", "row.x" = "b" }
    pool {
      start = "192.168.77.100"
      end   = "192.168.77.149"
    }
    pool {
      name       = "second"
      start      = "192.168.77.150"
      end        = "192.168.77.199"
      lease_time = "2h"
    }
  }
}

protocol "dhcp" "bare" {
}
