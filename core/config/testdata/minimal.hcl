# The smallest useful config: everything else has a default.
storage "dir" "disks" {}
