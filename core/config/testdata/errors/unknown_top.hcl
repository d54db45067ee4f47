data_dir = "var"
datadir  = "var"

frobnicate {
}
