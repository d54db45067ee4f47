storage "dir" "disks" {}
protocol "tftp" "boot" {}

image "lab" {
  storage = "disks"
  source  = "lab.img"
}
image "bad" {
  storage = "boot"
  source  = "bad.img"
}
image "lab" {
  storage = "nowhere"
  source  = "x.img"
}

client "pc-01" {
  mac     = "52-54-00-12-34-56"
  image   = "lab"
  address = "192.168.77.21"
}
client "pc-02" {
  mac        = "52:54:00:12:34:56"
  image      = "lab"
  address    = "192.168.77.21"
}
client "pc-03" {
  mac        = "52:54:00:zz:34:56"
  image      = "missing"
  address    = "fe80::1"
  initiators = ["iqn.2026-11.io.dls:x", "pc-03"]
  persistent = "maybe"
  chap {
    secret        = "twelve-chars"
    mutual_secret = "twelve-chars"
  }
}
client "pc-01" {
  mac   = "52:54:00:00:00:01"
  image = "lab"
}
