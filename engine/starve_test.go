//go:build unix

package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// #14.3: handlers that block every worker do not starve the server: a new
// connection's PROTOCHECK (and every library answer) is answered without
// a worker, and a request that cannot get a worker within QueueTimeout is
// answered busy without running, on a connection that stays usable.
func TestWorkersNeverStarve(t *testing.T) {
	const workers = 4
	e := env{variants[0], "tcp"}
	release := make(chan struct{})
	started := make(chan struct{}, 64)
	handlers := testHandlers()
	handlers["sleep"] = func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
		started <- struct{}{}
		<-release
		return 200, nil, nil
	}
	srv := e.listen(t, engine.Config{Workers: workers, QueueTimeout: 200 * time.Millisecond, Handlers: handlers})
	t.Cleanup(func() { close(release) })
	// Fill every worker, and queue more behind them.
	for i := range 3 * workers {
		c := dial(t, srv)
		c.send("sleep", nil)
		if i < workers {
			testnet.RecvOrFail(t, started, ioTimeout, "a sleeper to start")
		}
	}
	c := dial(t, srv)
	begin := time.Now()
	c.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0})
	if d := time.Since(begin); d > time.Second {
		t.Errorf("PROTOCHECK took %v with every worker blocked", d)
	}
	c.expect("nope", nil, codec.StatusNoHandler, nil)
	begin = time.Now()
	c.expect("echo", []byte("x"), codec.StatusHandlerError, []byte("server busy"))
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("busy answer took %v", d)
	}
	c.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0}) // still usable
	if st := srv.Stats(); st.Busy == 0 {
		t.Errorf("Busy = 0: %+v", st)
	}
}
