boot {
  unknown_clients = "register"
  max_registered  = -1
}
