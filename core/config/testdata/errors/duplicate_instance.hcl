storage "dir" "main" {}

auth "local" "admins" {}

protocol "tftp" "main" {}
