boot {
  unknown_clients = "register"
  max_registered  = -1
  session_history = "-1h"
}
