package interop_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent ignores only the goroutines that exist before any test
	// runs: gnet's package-level worker pool, started at init. Every
	// goroutine a test starts, ours or the original's (its server's
	// accept loop and message handler, one per connection), must be gone
	// at the end.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
