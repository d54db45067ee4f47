database "mysql" {}
database "postgres" {
  dsn = ""
}
