data_dir   = "state"
plugin_dir = "../plugins"

http {
  listen         = "0.0.0.0:8080"
  scrape_timeout = "500ms"
}

boot {
  files = "/srv/boot/"
}

database "sqlite" {
  path = "db/dls.sqlite"
}

storage "dir" "disks" {
  source = "vendor/dls-storage-dir"
}

auth "local" "admins" {
  source = "/opt/dls/auth-local"
  sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
  restart {
    initial_delay = "1s"
    max_failures  = 10
  }
}

protocol "tftp" "boot" {}
