database "postgres" {
  dsn = env("DLS_TEST_DSN")
}

boot {
  url = "${env("DLS_TEST_SCHEME", "https")}://boot.example:9180/"
}

storage "dir" "disks" {
  config {
    root  = env("DLS_TEST_ROOT")
    label = env("DLS_TEST_UNSET", "fallback")
  }
}
