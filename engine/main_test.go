package engine_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChildMode(mode))
	}
	// IgnoreCurrent ignores only the goroutines that exist before any test
	// runs: gnet's package-level worker pool (pkg/pool/goroutine's
	// DefaultWorkerPool, an ants pool created at init whose purge and
	// ticktock goroutines live for the whole process). Every goroutine a
	// server starts must be gone after Close.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
