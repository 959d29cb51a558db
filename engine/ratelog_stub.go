package engine

import (
	"context"
	"log/slog"
)

// logRated is a stand-in until the dispatch layer's rate limiter lands.
func (s *Server) logRated(key string, level slog.Level, msg string, args ...any) {
	s.log.Log(context.Background(), level, msg, args...)
}
