data_dir   = "/var/lib/dls"          # relative paths: to the config file's folder
plugin_dir = "/usr/libexec/dls"

http {
  listen = "192.168.77.1:9180"        # /metrics /healthz /readyz /api/v1 /boot; default 127.0.0.1:9180
}

boot {
  url             = "http://192.168.77.1:9180"  # what clients use; default: http.listen when it is a specific IP
  iqn_prefix      = "iqn.2026-11.io.dls"        # target <prefix>:<client>, initiator <prefix>:initiator:<client>
  unknown_clients = "ignore"                    # or "register" (then default_image = "<image>")
  files           = "boot"                      # kernels, initrds, iPXE binaries served at /boot/files/
}

database "sqlite" {}                  # or: database "postgres" { dsn = env("DLS_PG_DSN") }

storage "zfs" "tank" {
  config {
    dataset = "tank/dls"
  }
}

auth "local" "admins" {
  config {}
}

protocol "dhcp" "lan" {
  config {
    interface = "br0"
    mode      = "full"                # full | proxy | reservation | off
    server_ip = "192.168.77.1"
    pool {                            # may repeat; optional name = metric label
      start      = "192.168.77.100"
      end        = "192.168.77.199"
      netmask    = "255.255.255.0"
      router     = "192.168.77.1"
      lease_time = "1h"
    }
  }
}

protocol "tftp" "boot" {
  config {
    listen = "192.168.77.1:69"
    root   = "tftp"
  }
}

protocol "iscsi" "disks" {
  config {
    listen = "192.168.77.1:3260"
  }
}

image "lab" {
  storage = "tank"
  source  = "images/lab.img"
  # optional: boot an OS kernel with root on the clone instead of sanboot
  # boot {
  #   kernel  = "lab/vmlinuz"       # under boot.files
  #   initrd  = "lab/initrd.img"
  #   cmdline = "iscsi_auto root=/dev/sda rw"
  #   confirm = true                # the OS posts /boot/done
  # }
}

client "pc-01" {
  mac        = "52:54:00:12:34:56"
  image      = "lab"
  address    = "192.168.77.21"        # reservation (optional)
  initiators = []                     # extra initiator IQNs allowed (optional)
  persistent = true                   # default true; false: volume reset at every boot
}
