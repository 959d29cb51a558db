package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Drive runs the echo load of the load scenarios against a Petrel server
// that is already running at addr ("host:port" or "unix:///path"): conns
// synchronous connections, each sending payload-byte requests for d, every
// answer verified. It returns the number of answers. It is the load side
// of measurements made outside the suite, such as perf stat on a server
// started with -serve (see bench/perfstat.sh).
func Drive(ctx context.Context, addr string, conns, payload int, d time.Duration) (int64, error) {
	sys := System{Name: "driven", Protocol: ProtoPetrel}
	sc := Scenario{Name: "drive", Conns: conns, Payload: payload}
	callers, err := dialAll(ctx, ProtoPetrel, dialConfig{addr: addr}, conns, nil)
	if err != nil {
		return 0, err
	}
	defer closeAll(callers)
	end := time.Now().Add(d)
	for _, cl := range callers {
		cl.setDeadline(end.Add(time.Minute))
	}
	var total atomic.Int64
	fl := newFailure()
	var wg sync.WaitGroup
	for i, cl := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, payload)
			fillPayload(p, i)
			for n := int64(1); time.Now().Before(end) && ctx.Err() == nil; n++ {
				stamp(p, i, n)
				got, err := cl.call(reqEcho, p)
				if err == nil {
					err = verify(sys, sc, i, n, got, p)
				}
				if err != nil {
					fl.set(fmt.Errorf("connection %d, request %d: %w", i, n, err))
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	if fl.err != nil {
		return total.Load(), fl.err
	}
	return total.Load(), ctx.Err()
}
