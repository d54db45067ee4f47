data_dir   = env("DLS_TEST_UNSET_VAR")
plugin_dir = file("/etc/passwd")
boot {
  files = var.files
}
