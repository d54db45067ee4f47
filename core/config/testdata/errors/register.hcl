boot {
  unknown_clients = "register"
  default_image   = "nope"
}
boot {
  unknown_clients = "maybe"
}
