//go:build !race

package engine

import (
	"io"
	"log/slog"
	"testing"
)

// logRated with its level disabled allocates nothing (the race detector
// allocates, hence the build tag).
func TestLogRatedDisabledAllocs(t *testing.T) {
	s := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	n := testing.AllocsPerRun(1000, func() {
		s.logRated("refusal", slog.LevelWarn, "petrel: frame refused", "status", 402, "reason", "over the limit")
	})
	if n != 0 {
		t.Errorf("%v allocations per disabled logRated", n)
	}
}
