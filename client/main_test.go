package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent ignores only the goroutines that exist before any test
	// runs: gnet's package-level worker pool (an ants pool created at init,
	// imported here through the engine the tests run against). Every
	// goroutine a client, pool or test server starts must be gone at the end.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
