package engine_test

import (
	"bytes"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// cpuTime is the CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// With no write timeout, a std connection waiting for the kernel to send a
// large answer looks at it now and then, and does not spin. (A negative
// WriteTimeout made its poll deadline lie in the past: a whole CPU spent
// while the peer did not read.) Not parallel: it measures the process's
// CPU time.
func TestStdNoSpinWithoutWriteTimeout(t *testing.T) {
	e := env{variants[2], "tcp"}
	srv := e.listen(t, engine.Config{WriteTimeout: -1, MaxPayload: 4 << 20})
	c := dial(t, srv)
	c.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	c.send("echo", bytes.Repeat([]byte("n"), 1<<20))
	testnet.WaitFor(t, ioTimeout, "the answer to start", func() bool { return srv.Stats().BytesOut > 0 })
	before := cpuTime(t)
	const pause = 500 * time.Millisecond
	time.Sleep(pause) // the client not reading: the behaviour under test
	if used := cpuTime(t) - before; used > pause/2 {
		t.Errorf("%v of CPU time used in %v while the peer did not read", used, pause)
	}
}
