http {
  session_lifetime = "1d"
}
