package engine

// dispatchState is the dispatch layer's per-server state (log rate
// limits, introspection, per-handler concurrency).
type dispatchState struct{}

// initDispatch sets up s.disp from s.cfg; it runs in Listen after the
// handlers are registered... (dispatch layer).
func (s *Server) initDispatch() error { return nil }
