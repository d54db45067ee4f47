# /etc/dls/dls.hcl — the DLS host's config (package default).
#
# As shipped it starts the admin API on loopback with no boot protocols, so
# `dls user add` and `dls status` work at once. To boot machines, write a
# config for this machine's LAN with dls init (it reads the interface's
# address, proposes a DHCP pool and names the iPXE binaries of Debian's
# ipxe package):
#
#   sudo dls init --interface eth1 --out /etc/dls/dls.hcl.new
#   sudo mv /etc/dls/dls.hcl.new /etc/dls/dls.hcl
#   sudo dls validate --config /etc/dls/dls.hcl
#   sudo systemctl restart dls
#
# (or install with DLS_INIT_INTERFACE=eth1 set and the package runs dls
# init for you on its first configure).

data_dir   = "/var/lib/dls"           # state: database, images, volumes
plugin_dir = "/usr/lib/dls/plugins"   # the package's plugins

http {
  listen = "127.0.0.1:9180"   # admin API, /metrics, /healthz: keep it on loopback
}

# boot {
#   listen          = "192.168.77.1:9184"   # the boot network's address: /boot only
#   unknown_clients = "discover"            # record unknown machines; adopt them with dls client adopt
# }

database "sqlite" {}          # /var/lib/dls/dls.db

# Admins: create the first one with
#   echo 'a long passphrase' | sudo dls user add admin --password-stdin --role admin
auth "local" "admins" {}

# Images, versions and per-client copy-on-write volumes as files under
# /var/lib/dls/plugins/local/storage.
storage "dir" "local" {
  config {
    root = "storage"
  }
}

# The boot protocols, on the boot network's interface (dls init writes
# these for you):
#
# protocol "dhcp" "lan" {
#   config {
#     interface = "eth1"
#     mode      = "full"                  # full | proxy | reservation | off
#     server_ip = "192.168.77.1"
#     pool {
#       start   = "192.168.77.100"
#       end     = "192.168.77.199"
#       netmask = "255.255.255.0"
#     }
#   }
# }
#
# protocol "tftp" "tftp" {
#   config {
#     listen = "192.168.77.1:69"
#     root   = "tftp"                     # copy /usr/lib/ipxe/{undionly.kpxe,ipxe.efi} here
#   }
# }
#
# protocol "iscsi" "iscsi" {
#   config {
#     listen = "192.168.77.1:3260"
#   }
# }
