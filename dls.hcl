# The default DLS config: runs on a fresh machine with no root.
# Loopback addresses, ports above 1024, state under ./var.
# Relative paths are relative to this file's folder.

data_dir   = "var"
plugin_dir = "bin/plugins"

http {
  listen = "127.0.0.1:9180"   # /api/v1 /metrics /healthz /readyz (and /boot without boot.listen)
}

boot {
  # listen        = "192.168.77.1:9184"  # the boot network's address: /boot only, plain HTTP;
  #                                      # boot.url then defaults to http://<listen>
  iqn_prefix      = "iqn.2026-11.io.dls"
  unknown_clients = "ignore"   # "register": boot firmware of unknown MACs becomes
                               # client auto-<mac>, booting default_image,
  # max_registered = 4096      # at most this many (a flood of random MACs stops there)
  # session_history = "2160h"  # ended boot sessions are purged after 90 days; "0": kept forever
}

database "sqlite" {}          # var/dls.db; sync = "normal" trades power-cut safety for ACK delay (README)

# Folders the admin API may import image files from by path (dls image
# import --host-source). None by default: the API then refuses every path
# on this machine, and dls image import --source FILE uploads instead.
# images {
#   import_dirs = ["/srv/images"]
# }

# Admins: users in var/plugins/admins/users.json (argon2id). Create the
# first one with: bin/dls user add admin --password-stdin --role admin
auth "local" "admins" {}

# The embedded default storage: images, versions and per-client
# copy-on-write volumes as files (plugins/storage/dir).
storage "dir" "local" {
  config {
    root          = "storage"  # under var/plugins/local/
    keep_versions = 5
  }
}

# The example vendor plugin (examples/storage-file): images, versions and
# volumes as plain files. Built to bin/plugins/dls-storage-file.
storage "file" "files" {
  config {
    root = "file-storage"     # under the plugin's data dir, var/plugins/files/
  }
}

# First-stage boot files over TFTP (plugins/protocol/tftp): iPXE binaries in
# var/plugins/boot/tftp/ (make run copies Debian's), per-client scripts as
# mac/<mac>.ipxe.
protocol "tftp" "boot" {
  config {
    listen = "127.0.0.1:6970"
    root   = "tftp"
  }
}
