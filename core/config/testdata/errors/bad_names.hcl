protocol "DHCP" "lan" {}
storage "dir" "-disks" {}
image "Lab" {
  storage = "x"
  source  = "y"
}
client "pc_01" {
  mac   = "52:54:00:12:34:56"
  image = "Lab"
}
