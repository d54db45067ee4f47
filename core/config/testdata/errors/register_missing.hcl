boot {
  unknown_clients = "register"
}
