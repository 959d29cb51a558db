package petrelprom_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent: gnet starts a package-level worker pool at init whose
	// goroutines live for the whole process. Every goroutine a server
	// starts must be gone once it stopped.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
