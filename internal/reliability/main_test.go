package reliability_test

import (
	"testing"

	"go.uber.org/goleak"
)

// runAndCloseShared runs the tests, then closes the servers the fuzz
// target shares across its inputs, so that goleak sees only leaks.
type runAndCloseShared struct{ m *testing.M }

func (r runAndCloseShared) Run() int {
	code := r.m.Run()
	closeFuzzServers()
	return code
}

func TestMain(m *testing.M) {
	// IgnoreCurrent ignores only the goroutines that exist before any test
	// runs: gnet's package-level worker pool, started at init. Every
	// goroutine a server, a handler or a test starts must be gone at the
	// end.
	goleak.VerifyTestMain(runAndCloseShared{m}, goleak.IgnoreCurrent())
}
