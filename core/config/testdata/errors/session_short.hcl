http {
  session_lifetime = "30s"
}
