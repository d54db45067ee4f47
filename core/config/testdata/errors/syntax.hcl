storage "dir" "disks" {
  source = "a"
