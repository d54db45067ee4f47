package hostservices

// WithoutScriptCache renders every script at its request, as before the
// script cache: the benchmarks' and tests' reference.
func WithoutScriptCache() Option { return func(s *Services) { s.scripts = nil } }
