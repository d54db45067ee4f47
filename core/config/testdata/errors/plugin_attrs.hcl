storage "dir" "disks" {
  sha256 = "abc"
  source = ""
  restart {
    initial_delay = "0s"
    max_delay     = "100ms"
    max_failures  = 0
    reset_after   = "soon"
    jitter        = true
  }
  config {}
  config {}
}
