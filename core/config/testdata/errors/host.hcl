http {
  listen         = "localhost"
  scrape_timeout = "-1s"
}
http {}

boot {
  url             = "ftp://x"
  iqn_prefix      = "IQN.2026-11.io.dls"
  unknown_clients = "register"
  session_history = "90d"
}
